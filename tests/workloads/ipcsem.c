/*
 * ipcsem: two SysV semaphore sets of three, values 0, 1, 2.
 *
 *   ipcsem [-d MS] [-n N] [-e CODE]
 *
 * Creates two private sets of 3 semaphores with values {0, 1, 2}. Each
 * iteration checks the values (GETALL), that a non-blocking decrement of
 * semaphore 0 fails with EAGAIN, and that a non-blocking decrement of
 * semaphores 1 and 2 succeeds; then it puts them back (+1). The second set's
 * semaphore 2 also goes to 1 + N%3 (after the decrement) and back.
 * Prints "count N ids=A,B". With -n it removes both sets before exiting.
 */
#include "common.h"
#include <sys/ipc.h>
#include <sys/sem.h>

union semun {
	int val;
	struct semid_ds *buf;
	unsigned short *array;
};

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS)) != -1)
		if (!common_opt(c, optarg))
			usage("ipcsem");
	int ids[2];
	unsigned short init[3] = { 0, 1, 2 };
	for (int s = 0; s < 2; s++) {
		ids[s] = semget(IPC_PRIVATE, 3, IPC_CREAT | 0600);
		CHECK_SYS(ids[s] >= 0, "semget");
		CHECK_SYS(semctl(ids[s], 0, SETALL, (union semun){ .array = init }) == 0, "SETALL");
	}
	for (long long n = 1;; n++) {
		for (int s = 0; s < 2; s++) {
			unsigned short v[3];
			CHECK_SYS(semctl(ids[s], 0, GETALL, (union semun){ .array = v }) == 0, "GETALL");
			CHECK(v[0] == 0 && v[1] == 1 && v[2] == 2, "set %d values %u %u %u, expected 0 1 2", ids[s], v[0], v[1],
			      v[2]);
			struct sembuf down0 = { 0, -1, IPC_NOWAIT };
			CHECK(semop(ids[s], &down0, 1) < 0 && errno == EAGAIN, "decrementing semaphore 0 did not fail");
			struct sembuf down[2] = { { 1, -1, IPC_NOWAIT }, { 2, -1, IPC_NOWAIT } };
			CHECK_SYS(semop(ids[s], down, 2) == 0, "non-blocking decrement");
			if (s == 1 && n % 3) {
				struct sembuf up = { 2, (short)(n % 3), 0 };
				CHECK_SYS(semop(ids[s], &up, 1) == 0, "semop");
				CHECK(semctl(ids[s], 2, GETVAL) == 1 + n % 3, "GETVAL");
				struct sembuf back = { 2, (short)-(n % 3), IPC_NOWAIT };
				CHECK_SYS(semop(ids[s], &back, 1) == 0, "semop");
			}
			struct sembuf up[2] = { { 1, 1, 0 }, { 2, 1, 0 } };
			CHECK_SYS(semop(ids[s], up, 2) == 0, "increment");
		}
		out("count %lld ids=%d,%d", n, ids[0], ids[1]);
		if (opt_max > 0 && n >= opt_max) {
			semctl(ids[0], 0, IPC_RMID);
			semctl(ids[1], 0, IPC_RMID);
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
