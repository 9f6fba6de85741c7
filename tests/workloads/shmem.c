/*
 * shmem: shared anonymous memory between a parent and its child.
 *
 *   shmem [-d MS] [-n N] [-e CODE] [-m KIB]
 *
 * A MAP_SHARED|MAP_ANONYMOUS region (default 256 KiB) holds a turn flag, a
 * counter both processes increment in turn (parent: odd values, child: even),
 * and a data area rewritten by whoever increments, with a pattern derived
 * from the counter. Each process waits for its turn (futex with a timeout),
 * checks the counter and the whole data area, increments, rewrites, and hands
 * over. The parent also passes its pid and the child's through a pipe, which
 * the child reads back at its count 3 (the data sits in the pipe until then)
 * and compares with getppid()/getpid() (skipped with -s: new pids on restore).
 * Lines: "parent count N counter=C" and "child count N counter=C".
 */
#include "common.h"
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

struct shared {
	uint32_t turn; /* 0: parent, 1: child */
	uint32_t pad;
	uint64_t counter;
	uint64_t data[];
};

static struct shared *sh;
static size_t words;

static void fill(uint64_t v)
{
	for (size_t i = 0; i < words; i++)
		sh->data[i] = mix64(v * 0x10001 + i);
}

static void verify(uint64_t v)
{
	for (size_t i = 0; i < words; i++)
		CHECK(sh->data[i] == mix64(v * 0x10001 + i), "shared word %zu wrong for counter %llu", i,
		      (unsigned long long)v);
}

static void wait_turn(uint32_t me)
{
	while (__atomic_load_n(&sh->turn, __ATOMIC_ACQUIRE) != me) {
		struct timespec ts = { 0, 100 * 1000000L };
		syscall(SYS_futex, &sh->turn, FUTEX_WAIT, 1 - me, &ts, NULL, 0);
	}
}

static void give_turn(uint32_t other)
{
	__atomic_store_n(&sh->turn, other, __ATOMIC_RELEASE);
	syscall(SYS_futex, &sh->turn, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void loop(uint32_t me, int pfd, int structural)
{
	for (long long n = 1;; n++) {
		wait_turn(me);
		uint64_t want = (uint64_t)(2 * (n - 1) + me);
		CHECK(sh->counter == want, "counter %llu, expected %llu", (unsigned long long)sh->counter,
		      (unsigned long long)want);
		verify(want);
		sh->counter = want + 1;
		fill(want + 1);
		out("count %lld counter=%llu", n, (unsigned long long)(want + 1));
		if (me == 1 && n == 3) {
			pid_t pids[2];
			CHECK_SYS(read(pfd, pids, sizeof(pids)) == sizeof(pids), "read pids");
			CHECK(structural || (pids[0] == getppid() && pids[1] == getpid()),
			      "pids from the pipe %d %d, expected %d %d", pids[0], pids[1], getppid(), getpid());
		}
		int last = opt_max > 0 && n >= opt_max;
		give_turn(1 - me);
		if (last)
			return;
		sleep_ms(opt_delay_ms);
	}
}

int main(int argc, char **argv)
{
	long kib = 256;
	int structural = 0;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "m:s")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'm')
			kib = (long)parse_num(optarg, "size");
		else if (c == 's')
			structural = 1;
		else
			usage("shmem [-m KIB] [-s]");
	}
	if (kib < 4)
		kib = 4;
	size_t size = (size_t)kib * 1024;
	sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK_SYS(sh != MAP_FAILED, "mmap");
	words = (size - sizeof(*sh)) / 8;
	fill(0);
	int p[2];
	CHECK_SYS(pipe(p) == 0, "pipe");
	pid_t child = fork();
	CHECK_SYS(child >= 0, "fork");
	if (child == 0) {
		set_tag("child");
		close(p[1]);
		loop(1, p[0], structural);
		_exit(0);
	}
	close(p[0]);
	pid_t pids[2] = { getpid(), child };
	CHECK_SYS(write_all(p[1], pids, sizeof(pids)) == 0, "write pids");
	set_tag("parent");
	loop(0, -1, structural);
	int st;
	CHECK_SYS(waitpid(child, &st, 0) == child, "waitpid");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	return opt_exit;
}
