/*
 * ipcshm: two SysV shared memory segments, one detached.
 *
 *   ipcshm [-d MS] [-n N] [-e CODE] [-m KIB]
 *
 * Creates two private segments of KIB KiB (default 128). A stays attached;
 * its pattern is rewritten from N every iteration after checking the previous
 * one. B is filled with a fixed pattern and detached; every iteration attaches
 * it (at a new address), checks it, and detaches it again. Also checks that
 * shm_nattch is 1 for A and 0 for B. Prints "count N ids=A,B". With -n it
 * removes both segments before exiting.
 */
#include "common.h"
#include <sys/ipc.h>
#include <sys/shm.h>

static size_t words;

static void fill(uint64_t *p, uint64_t seed)
{
	for (size_t i = 0; i < words; i++)
		p[i] = mix64(seed * 0x100000001ULL + i);
}

static void verify(const uint64_t *p, uint64_t seed, const char *what)
{
	for (size_t i = 0; i < words; i++)
		CHECK(p[i] == mix64(seed * 0x100000001ULL + i), "segment %s word %zu wrong (seed %llu)", what, i,
		      (unsigned long long)seed);
}

int main(int argc, char **argv)
{
	long kib = 128;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "m:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'm')
			kib = (long)parse_num(optarg, "size");
		else
			usage("ipcshm [-m KIB]");
	}
	if (kib < 4)
		kib = 4;
	size_t size = (size_t)kib * 1024;
	words = size / 8;
	int a = shmget(IPC_PRIVATE, size, IPC_CREAT | 0600), b = shmget(IPC_PRIVATE, size, IPC_CREAT | 0600);
	CHECK_SYS(a >= 0 && b >= 0, "shmget");
	uint64_t *pa = shmat(a, NULL, 0);
	CHECK_SYS(pa != (void *)-1, "shmat");
	uint64_t *pb = shmat(b, NULL, 0);
	CHECK_SYS(pb != (void *)-1, "shmat");
	fill(pa, 0);
	fill(pb, 0xb0b);
	CHECK_SYS(shmdt(pb) == 0, "shmdt");
	for (long long n = 1;; n++) {
		struct shmid_ds ds;
		CHECK_SYS(shmctl(a, IPC_STAT, &ds) == 0, "shmctl");
		CHECK(ds.shm_nattch == 1, "segment A has %lu attaches", (unsigned long)ds.shm_nattch);
		CHECK_SYS(shmctl(b, IPC_STAT, &ds) == 0, "shmctl");
		CHECK(ds.shm_nattch == 0, "segment B has %lu attaches", (unsigned long)ds.shm_nattch);
		verify(pa, (uint64_t)n - 1, "A");
		fill(pa, (uint64_t)n);
		pb = shmat(b, NULL, SHM_RDONLY);
		CHECK_SYS(pb != (void *)-1, "shmat");
		verify(pb, 0xb0b, "B");
		CHECK_SYS(shmdt(pb) == 0, "shmdt");
		out("count %lld ids=%d,%d", n, a, b);
		if (opt_max > 0 && n >= opt_max) {
			shmctl(a, IPC_RMID, NULL);
			shmctl(b, IPC_RMID, NULL);
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
