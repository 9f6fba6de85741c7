/*
 * rewrite: a process whose memory changes in a known share between two
 * checkpoints (cr-delta's tests).
 *
 *   rewrite [-d MS] [-n N] [-e CODE] [-m MIB] [-s SHARE]
 *
 * Fills MIB MiB (default 64) of private anonymous memory with data derived
 * from (page, generation). On SIGUSR1 it rewrites one page in SHARE
 * (default 20, i.e. 5%) with the next generation and prints "rewrote P
 * pages gen G". Every iteration verifies all of its memory and prints
 * "count N ok gen G".
 */
#include "common.h"
#include <sys/mman.h>

#define PAGE 4096UL
#define WORDS (PAGE / 8)

static uint8_t *mem;
static size_t npages;
static uint32_t *gen;
static volatile sig_atomic_t rewrite_asked;

static void on_usr1(int sig)
{
	(void)sig;
	rewrite_asked = 1;
}

static inline uint64_t word(size_t p, uint32_t g, size_t i)
{
	/* Half the bytes zero: compressible, never an all-zero page. */
	return (mix64(((uint64_t)p << 40) ^ ((uint64_t)g << 12) ^ i) & 0x00ff00ff00ff00ffULL) | 1;
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
	long mib = 64, share = 20;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "m:s:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		switch (c) {
		case 'm':
			mib = (long)parse_num(optarg, "size");
			break;
		case 's':
			share = (long)parse_num(optarg, "share");
			break;
		default:
			usage("rewrite [-m MIB] [-s SHARE]");
		}
	}
	if (mib < 1)
		mib = 1;
	if (share < 1)
		share = 1;
	npages = (size_t)mib * 1024 * 1024 / PAGE;
	mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_SYS(mem != MAP_FAILED, "mmap");
	gen = calloc(npages, sizeof(*gen));
	CHECK_SYS(gen != NULL, "calloc");
	for (size_t p = 0; p < npages; p++)
		write_page(p, 0);
	struct sigaction sa = {.sa_handler = on_usr1};
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");

	uint32_t g = 0;
	for (long long n = 1;; n++) {
		if (rewrite_asked) {
			rewrite_asked = 0;
			g++;
			size_t done = 0;
			for (size_t p = 0; p < npages; p += (size_t)share, done++)
				write_page(p, g);
			out("rewrote %zu pages gen %u", done, g);
		}
		for (size_t p = 0; p < npages; p++) {
			const uint64_t *w = (const uint64_t *)(mem + p * PAGE);
			for (size_t i = 0; i < WORDS; i++)
				if (w[i] != word(p, gen[p], i))
					fail("page %zu word %zu wrong (gen %u) at count %lld", p, i, gen[p], n);
		}
		out("count %lld ok gen %u", n, g);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
