/*
 * bigmem: a process with a lot of dirtied memory.
 *
 *   bigmem [-d MS] [-n N] [-e CODE] [-m MIB] [-k K]
 *
 * Maps MIB MiB (default 64) of private anonymous memory. Page p is:
 *   p % 8 in 0..4  data: 512 words derived from (p, gen[p]); one such page is
 *                  rewritten with a new generation every iteration
 *   p % 8 == 5     written with zeros (present, all zero)
 *   p % 8 == 6     only read (maps the zero page)
 *   p % 8 == 7     never touched
 * plus a separate region of MIB/4 MiB that is mapped and never touched at all,
 * and a malloc'd generation table. The page rewritten in an iteration is
 * verified before it is rewritten; everything is verified every K iterations
 * (default 10) and at count 1. Prints "count N ok", and on full verifications
 * "count N ok verified untouched_resident=R" where R is how many pages of the
 * untouched region are resident (mincore; 0 unless something wrote them).
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
	return mix64(((uint64_t)p << 40) ^ ((uint64_t)g << 12) ^ i);
}

static int is_data(size_t p)
{
	return p % 8 < 5;
}

static void write_page(size_t p, uint32_t g)
{
	uint64_t *w = (uint64_t *)(mem + p * PAGE);
	for (size_t i = 0; i < WORDS; i++)
		w[i] = word(p, g, i);
}

static void check_page(size_t p, long long n)
{
	const uint64_t *w = (const uint64_t *)(mem + p * PAGE);
	if (p % 8 == 7)
		return; /* reading it would touch it */
	if (is_data(p)) {
		uint32_t g = gen[p];
		for (size_t i = 0; i < WORDS; i++)
			if (w[i] != word(p, g, i))
				fail("page %zu word %zu wrong (gen %u) at count %lld: %016llx", p, i, g, n,
				     (unsigned long long)w[i]);
	} else {
		for (size_t i = 0; i < WORDS; i++)
			if (w[i] != 0)
				fail("zero page %zu word %zu is %016llx at count %lld", p, i,
				     (unsigned long long)w[i], n);
	}
}

/* The data page rewritten at count n (visits data pages in a scattered order). */
static size_t page_for(long long n)
{
	size_t ndata = npages / 8 * 5;
	size_t k = (size_t)(mix64((uint64_t)n) % ndata);
	return k / 5 * 8 + k % 5;
}

int main(int argc, char **argv)
{
	long mib = 64, every = 10;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "m:k:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		switch (c) {
		case 'm':
			mib = (long)parse_num(optarg, "size");
			break;
		case 'k':
			every = (long)parse_num(optarg, "verify interval");
			break;
		default:
			usage("bigmem [-m MIB] [-k K]");
		}
	}
	if (mib < 1)
		mib = 1;
	if (every < 1)
		every = 1;

	npages = (size_t)mib * 1024 * 1024 / PAGE;
	mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_SYS(mem != MAP_FAILED, "mmap");
	size_t nuntouched = npages / 4;
	uint8_t *untouched = mmap(NULL, nuntouched * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_SYS(untouched != MAP_FAILED, "mmap");
	gen = calloc(npages, sizeof(*gen));
	CHECK_SYS(gen != NULL, "calloc");
	unsigned char *vec = malloc(nuntouched);
	CHECK_SYS(vec != NULL, "malloc");

	volatile uint8_t sink = 0;
	for (size_t p = 0; p < npages; p++) {
		if (is_data(p))
			write_page(p, 0);
		else if (p % 8 == 5)
			memset(mem + p * PAGE, 0, PAGE);
		else if (p % 8 == 6)
			sink += *(volatile uint8_t *)(mem + p * PAGE);
	}
	(void)sink;

	for (long long n = 1;; n++) {
		size_t p = page_for(n);
		check_page(p, n);
		gen[p] = (uint32_t)n;
		write_page(p, (uint32_t)n);

		if (n == 1 || n % every == 0) {
			for (size_t q = 0; q < npages; q++)
				check_page(q, n);
			CHECK_SYS(mincore(untouched, nuntouched * PAGE, vec) == 0, "mincore");
			size_t resident = 0;
			for (size_t q = 0; q < nuntouched; q++)
				resident += vec[q] & 1;
			out("count %lld ok verified untouched_resident=%zu", n, resident);
		} else {
			out("count %lld ok", n);
		}
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
