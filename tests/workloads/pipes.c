/*
 * pipes: two processes, one pipe holding data, the ends split between them.
 *
 *   pipes [-d MS] [-n N] [-e CODE] [-k K]
 *
 * The parent writes a 64-byte record derived from N every iteration; the
 * child (which closed the write end) starts K iterations later (default 3) and
 * then reads one record per iteration, so about K records are always in the
 * pipe. The child checks every record. Lines: "parent count N" and
 * "child count N" (N = the record the child read). With -n, the parent closes
 * the pipe at count N; the child drains it (must get EOF after record N) and
 * exits 0, and the parent checks that.
 */
#include "common.h"
#include <sys/wait.h>

#define REC 64

static void record(unsigned char *r, long long n)
{
	for (int i = 0; i < REC; i++)
		r[i] = (unsigned char)(mix64((uint64_t)n * 977 + (uint64_t)i) & 0xff);
}

int main(int argc, char **argv)
{
	long k = 3;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "k:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'k')
			k = (long)parse_num(optarg, "lag");
		else
			usage("pipes [-k K]");
	}
	int p[2];
	CHECK_SYS(pipe(p) == 0, "pipe");
	pid_t child = fork();
	CHECK_SYS(child >= 0, "fork");
	unsigned char want[REC], got[REC];
	if (child == 0) {
		set_tag("child");
		close(p[1]);
		sleep_ms(opt_delay_ms * k);
		for (long long n = 1;; n++) {
			size_t have = 0;
			while (have < REC) {
				ssize_t r = read(p[0], got + have, REC - have);
				if (r < 0 && errno == EINTR)
					continue;
				CHECK_SYS(r >= 0, "read");
				if (r == 0) {
					CHECK(have == 0 && opt_max > 0 && n == opt_max + 1, "EOF at record %lld", n);
					_exit(0);
				}
				have += (size_t)r;
			}
			record(want, n);
			CHECK(!memcmp(got, want, REC), "record %lld read wrong", n);
			out("count %lld", n);
			if (!(opt_max > 0 && n >= opt_max))
				sleep_ms(opt_delay_ms);
		}
	}
	close(p[0]);
	set_tag("parent");
	for (long long n = 1;; n++) {
		record(want, n);
		CHECK_SYS(write_all(p[1], want, REC) == 0, "write");
		out("count %lld", n);
		if (opt_max > 0 && n >= opt_max) {
			close(p[1]);
			int st;
			CHECK_SYS(waitpid(child, &st, 0) == child, "waitpid");
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
