/*
 * shm3: one SysV shared memory segment attached in three processes (the
 * parent and two children). Each process increments its own counter slot
 * every iteration and checks that the other two slots keep moving (each
 * sees the others' writes).
 *
 *   shm3 [-d MS] [-n N] [-e CODE]
 *
 * Lines: "p0 count N", "p1 count N", "p2 count N", N = this process's own
 * counter. Run it in its own IPC namespace (unshare --ipc); the segment is
 * removed when the parent exits through -n.
 */
#include "common.h"
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/wait.h>

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS)) != -1) {
		if (!common_opt(c, optarg))
			usage("shm3");
	}
	int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
	CHECK_SYS(id >= 0, "shmget");
	volatile long long *slot = shmat(id, NULL, 0);
	CHECK_SYS(slot != (void *)-1, "shmat");
	pid_t kids[2];
	int me = 0;
	for (int i = 1; i <= 2; i++) {
		pid_t p = fork();
		CHECK_SYS(p >= 0, "fork");
		if (p == 0) {
			me = i;
			break;
		}
		kids[i - 1] = p;
	}
	char tag[8];
	snprintf(tag, sizeof tag, "p%d", me);
	set_tag(tag);
	long long seen[3] = {0, 0, 0}, stale[3] = {0, 0, 0};
	for (long long n = 1;; n++) {
		CHECK(slot[me] == n - 1, "own slot is %lld, expected %lld", slot[me], n - 1);
		slot[me] = n;
		for (int o = 0; o < 3; o++) {
			if (o == me)
				continue;
			long long v = slot[o];
			CHECK(v >= seen[o], "slot %d went back from %lld to %lld", o, seen[o], v);
			stale[o] = v == seen[o] ? stale[o] + 1 : 0;
			CHECK(stale[o] < 100, "slot %d stuck at %lld: writes not shared", o, v);
			seen[o] = v;
		}
		out("count %lld", n);
		if (me == 0 && opt_max > 0 && n >= opt_max) {
			kill(kids[0], SIGKILL);
			kill(kids[1], SIGKILL);
			waitpid(kids[0], NULL, 0);
			waitpid(kids[1], NULL, 0);
			shmctl(id, IPC_RMID, NULL);
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
