/*
 * scribble: a process that rewrites its memory all the time (ckpt --live's
 * tests).
 *
 *   scribble [-d MS] [-n N] [-e CODE] [-m MIB] [-w PAGES] [-k K] [-l LOG]
 *
 * Maps MIB MiB (default 32) of private anonymous memory; page p holds 512
 * words derived from (p, gen[p]), or zeros when gen[p] is 0. Every
 * iteration it rewrites PAGES (default 64) pseudo-random pages with a new
 * generation, writes zeros over one page and drops another with
 * MADV_DONTNEED (both then read as zeros), then sleeps MS (default 2).
 * Every K iterations (default 10) it verifies all of its memory against
 * the generation table and prints "count N ok sum S" (S: a checksum of the
 * table), on standard output or appended to LOG. A page restored stale, or a dropped page restored with old
 * contents, fails the next verification.
 */
#include "common.h"
#include <sys/mman.h>

#define PAGE 4096UL
#define WORDS (PAGE / 8)

static uint8_t *mem;
static size_t npages;
static uint32_t *gen;

static inline uint64_t word(size_t p, uint32_t g, size_t i)
{
	return mix64(((uint64_t)p << 40) ^ ((uint64_t)g << 12) ^ i) | 1;
}

static void write_page(size_t p, uint32_t g)
{
	uint64_t *w = (uint64_t *)(mem + p * PAGE);
	for (size_t i = 0; i < WORDS; i++)
		w[i] = word(p, g, i);
	gen[p] = g;
}

int main(int argc, char **argv)
{
	long mib = 32, per = 64, k = 10;
	const char *logpath = NULL;
	int c;
	opt_delay_ms = 2;
	while ((c = getopt(argc, argv, COMMON_OPTS "m:w:k:l:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		switch (c) {
		case 'm':
			mib = (long)parse_num(optarg, "size");
			break;
		case 'w':
			per = (long)parse_num(optarg, "pages");
			break;
		case 'k':
			k = (long)parse_num(optarg, "verify interval");
			break;
		case 'l':
			logpath = optarg;
			break;
		default:
			usage("scribble [-m MIB] [-w PAGES] [-k K] [-l LOG]");
		}
	}
	if (logpath) {
		int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
		CHECK_SYS(fd >= 0, "open log");
		CHECK_SYS(dup2(fd, 1) == 1, "dup2");
		close(fd);
	}
	if (mib < 1)
		mib = 1;
	if (k < 1)
		k = 1;
	npages = (size_t)mib * 1024 * 1024 / PAGE;
	mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_SYS(mem != MAP_FAILED, "mmap");
	gen = calloc(npages, sizeof(*gen));
	CHECK_SYS(gen != NULL, "calloc");
	for (size_t p = 0; p < npages; p++)
		write_page(p, 1);
	uint64_t rng = 42;
	for (long long n = 1;; n++) {
		for (long i = 0; i < per; i++) {
			size_t p = mix64(rng++) % npages;
			write_page(p, gen[p] + 1);
		}
		size_t z = mix64(rng++) % npages;
		memset(mem + z * PAGE, 0, PAGE);
		gen[z] = 0;
		size_t d = mix64(rng++) % npages;
		CHECK_SYS(madvise(mem + d * PAGE, PAGE, MADV_DONTNEED) == 0, "madvise");
		gen[d] = 0;
		if (n % k == 0) {
			uint64_t sum = 0;
			for (size_t p = 0; p < npages; p++) {
				const uint64_t *w = (const uint64_t *)(mem + p * PAGE);
				for (size_t i = 0; i < WORDS; i++)
					if (w[i] != (gen[p] ? word(p, gen[p], i) : 0))
						fail("page %zu word %zu wrong (gen %u) at count %lld", p, i, gen[p], n);
				sum = mix64(sum ^ ((uint64_t)p << 32 | gen[p]));
			}
			out("count %lld ok sum %016llx", n / k, (unsigned long long)sum);
			maybe_done(n / k);
		}
		sleep_ms(opt_delay_ms);
	}
}
