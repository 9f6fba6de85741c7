/*
 * onetask: one process counting.
 *
 *   onetask [-d MS] [-n N] [-e CODE] [-l LOGFILE] [-s HEAP_KIB]
 *
 * Prints "count N f=F" where F is the running sum of 1/k for k = 1..N kept in
 * a register-friendly local and printed with %.17g (exact: the test may
 * recompute it). A heap buffer holds a pattern derived from N, verified and
 * rewritten every iteration. With -l the same line is appended to LOGFILE
 * (O_WRONLY|O_CREAT|O_APPEND); before each write the file offset must be where
 * our previous write left it, so a lost offset is detected.
 */
#include "common.h"
#include <sys/stat.h>

static void fill(uint64_t *buf, size_t words, long long n)
{
	for (size_t i = 0; i < words; i++)
		buf[i] = mix64(((uint64_t)n << 32) ^ i);
}

static void verify(const uint64_t *buf, size_t words, long long n)
{
	for (size_t i = 0; i < words; i++)
		if (buf[i] != mix64(((uint64_t)n << 32) ^ i))
			fail("heap word %zu wrong at count %lld: %016llx", i, n, (unsigned long long)buf[i]);
}

int main(int argc, char **argv)
{
	const char *logpath = NULL;
	long heap_kib = 256;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "l:s:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		switch (c) {
		case 'l':
			logpath = optarg;
			break;
		case 's':
			heap_kib = (long)parse_num(optarg, "heap size");
			break;
		default:
			usage("onetask [-l LOGFILE] [-s HEAP_KIB]");
		}
	}
	if (heap_kib < 1)
		heap_kib = 1;

	size_t words = (size_t)heap_kib * 1024 / sizeof(uint64_t);
	uint64_t *heap = malloc(words * sizeof(uint64_t));
	CHECK_SYS(heap != NULL, "malloc");
	fill(heap, words, 0);

	int logfd = -1;
	off_t logpos = 0;
	if (logpath) {
		logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
		CHECK_SYS(logfd >= 0, "open log");
		logpos = lseek(logfd, 0, SEEK_CUR);
		CHECK_SYS(logpos >= 0, "lseek log");
	}

	double f = 0.0;
	for (long long n = 1;; n++) {
		verify(heap, words, n - 1);
		fill(heap, words, n);
		f += 1.0 / (double)n;
		double want = harmonic(n);
		CHECK(f == want, "float sequence broken at count %lld: %.17g != %.17g", n, f, want);

		out("count %lld f=%.17g", n, f);
		if (logfd >= 0) {
			char line[256];
			size_t len = format_line(line, sizeof(line), "count %lld f=%.17g", n, f);
			off_t pos = lseek(logfd, 0, SEEK_CUR);
			CHECK_SYS(pos >= 0, "lseek log");
			CHECK(pos == logpos, "log offset %lld, expected %lld", (long long)pos, (long long)logpos);
			CHECK_SYS(write_all(logfd, line, len) == 0, "write log");
			off_t after = lseek(logfd, 0, SEEK_CUR);
			CHECK_SYS(after >= 0, "lseek log");
			/* Another writer may append too (a checkpointed original that kept running). */
			CHECK(after >= pos + (off_t)len, "log offset %lld after write, expected >= %lld",
			      (long long)after, (long long)(pos + (off_t)len));
			logpos = after;
		}
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
