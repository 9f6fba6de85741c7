/*
 * cowtree: a pre-forking server's memory: a parent fills a private
 * anonymous region and forks children that share it copy-on-write.
 *
 *   cowtree [-d MS] [-n N] [-e CODE] [-m MIB] [-c CHILDREN] [-g]
 *
 * The parent fills every page of an M MiB MAP_PRIVATE|MAP_ANONYMOUS region
 * (default 100) with a pattern of its index, then forks C children
 * (default 8), tagged c0, c1, ...; child k writes a marker to two pages of
 * its own (k + 1 and the k-th from the end). Child 1 also makes the last
 * MiB read-only (its VMA is split). With -g, child 2 forks a grandchild
 * (tag g) after its own writes, which writes one page more (a chain of
 * three). Every process checks, each iteration, the first 64 pages, every
 * 64th page and each page written in its ancestry, against what it must
 * see: its own and its ancestors' writes (made before it was forked), the
 * pattern everywhere else. On SIGUSR1 a process writes a new marker to
 * page 3 and page 1000 and expects it from then on; no other process may
 * see it (copy-on-write). Lines: "TAG count N".
 */
#include "common.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096
#define MAX_WRITES 64

static unsigned char *region;
static size_t npages;
static struct {
	size_t page;
	uint64_t value;
} writes[MAX_WRITES];
static int nwrites;
static volatile sig_atomic_t usr1;

static uint64_t pattern(size_t i)
{
	return mix64(i + 1);
}

static void fill_page(size_t i)
{
	memset(region + i * PAGE, (int)((i & 0x7f) | 0x80), PAGE);
	*(uint64_t *)(region + i * PAGE) = pattern(i);
}

static void write_marker(size_t page, uint64_t value)
{
	CHECK(nwrites < MAX_WRITES, "too many writes");
	*(uint64_t *)(region + page * PAGE + 8) = value;
	writes[nwrites].page = page;
	writes[nwrites].value = value;
	nwrites++;
}

static void check_page(size_t i)
{
	const unsigned char *p = region + i * PAGE;
	uint64_t w0 = *(const uint64_t *)p;
	CHECK(w0 == pattern(i), "page %zu word 0 is %#llx, expected %#llx", i, (unsigned long long)w0,
	      (unsigned long long)pattern(i));
	uint64_t want = 0;
	int written = 0;
	for (int k = 0; k < nwrites; k++) {
		if (writes[k].page == i) {
			want = writes[k].value;
			written = 1;
		}
	}
	uint64_t w1 = *(const uint64_t *)(p + 8);
	if (written) {
		CHECK(w1 == want, "page %zu marker is %#llx, expected %#llx", i, (unsigned long long)w1,
		      (unsigned long long)want);
	} else {
		unsigned char b = (unsigned char)((i & 0x7f) | 0x80);
		uint64_t fillw;
		memset(&fillw, b, 8);
		CHECK(w1 == fillw, "page %zu word 1 is %#llx: another process's write shows here", i,
		      (unsigned long long)w1);
	}
	CHECK(p[PAGE - 1] == (unsigned char)((i & 0x7f) | 0x80), "page %zu last byte %#x", i, p[PAGE - 1]);
}

static void check_all(void)
{
	for (size_t i = 0; i < npages && i < 64; i++)
		check_page(i);
	for (size_t i = 64; i < npages; i += 64)
		check_page(i);
	for (int k = 0; k < nwrites; k++)
		check_page(writes[k].page);
}

static void on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

static void loop(uint64_t id)
{
	signal(SIGUSR1, on_usr1);
	for (long long n = 1;; n++) {
		if (usr1) {
			usr1 = 0;
			write_marker(3, 0xAF7E000000000000ULL | (id << 8) | (uint64_t)n);
			write_marker(1000 % npages, 0xAF7F000000000000ULL | (id << 8) | (uint64_t)n);
		}
		check_all();
		out("count %lld", n);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}

int main(int argc, char **argv)
{
	long mib = 100, children = 8;
	int grandchild = 0;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "m:c:g")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'm')
			mib = (long)parse_num(optarg, "size");
		else if (c == 'c')
			children = (long)parse_num(optarg, "children");
		else if (c == 'g')
			grandchild = 1;
		else
			usage("cowtree [-m MIB] [-c CHILDREN] [-g]");
	}
	if (mib < 2)
		mib = 2;
	if (children > 16)
		children = 16;
	npages = (size_t)mib * 256;
	region = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_SYS(region != MAP_FAILED, "mmap");
	for (size_t i = 0; i < npages; i++)
		fill_page(i);
	set_tag("parent");
	for (long k = 0; k < children; k++) {
		pid_t pid = fork();
		CHECK_SYS(pid >= 0, "fork");
		if (pid > 0)
			continue;
		char tag[8];
		snprintf(tag, sizeof(tag), "c%ld", k);
		set_tag(tag);
		write_marker((size_t)k + 1, 0xC0DE000000000000ULL | (uint64_t)k);
		write_marker(npages - 1 - (size_t)k, 0xC0DF000000000000ULL | (uint64_t)k);
		if (k == 1)
			CHECK_SYS(mprotect(region + (npages - 256) * PAGE, 256 * PAGE, PROT_READ) == 0, "mprotect");
		if (k == 2 && grandchild) {
			pid_t g = fork();
			CHECK_SYS(g >= 0, "fork");
			if (g == 0) {
				set_tag("g");
				write_marker(20, 0x6A00000000000000ULL);
				loop(100);
			}
		}
		loop((uint64_t)k + 1);
	}
	loop(0);
}
