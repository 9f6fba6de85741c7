/*
 * zombielive: unreaped children beside a live one (issue 18, item 3).
 *
 *   zombielive [-d MS] [-n N] [-e CODE] [-z ZOMBIES]
 *
 * Forks ZOMBIES children (default 4) that exit at once with status 10, 11,
 * ..., then one child that stays alive in pause(). Once all the first ones are
 * zombies, every iteration checks with waitid(WNOHANG|WNOWAIT), which does not
 * reap, that each zombie is there with its status and that the live child has
 * not exited, and prints "count N zombies=Z live=1". With -n, at count N it
 * reaps the zombies (checking their statuses), kills the live child with
 * SIGTERM, reaps it and checks no child is left (ECHILD).
 */
#include "common.h"
#include <sys/wait.h>

#define MAX_ZOMBIES 64

int main(int argc, char **argv)
{
	long nz = 4;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "z:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'z')
			nz = (long)parse_num(optarg, "zombies");
		else
			usage("zombielive [-z ZOMBIES]");
	}
	if (nz < 0 || nz > MAX_ZOMBIES)
		usage("zombielive [-z ZOMBIES (0..64)]");

	pid_t kids[MAX_ZOMBIES];
	for (long i = 0; i < nz; i++) {
		kids[i] = fork();
		CHECK_SYS(kids[i] >= 0, "fork");
		if (kids[i] == 0)
			_exit(10 + (int)i);
	}
	pid_t live = fork();
	CHECK_SYS(live >= 0, "fork");
	if (live == 0) {
		for (;;)
			pause();
	}

	/* Wait (without reaping) until the zombies have exited. */
	for (long i = 0; i < nz; i++) {
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		while (waitid(P_PID, (id_t)kids[i], &si, WEXITED | WNOWAIT) < 0)
			CHECK_SYS(errno == EINTR, "waitid");
	}

	for (long long n = 1;; n++) {
		for (long i = 0; i < nz; i++) {
			siginfo_t si;
			memset(&si, 0, sizeof(si));
			CHECK_SYS(waitid(P_PID, (id_t)kids[i], &si, WEXITED | WNOHANG | WNOWAIT) == 0, "waitid");
			CHECK(si.si_pid == kids[i], "child %d is not a zombie any more (si_pid %d)", kids[i], si.si_pid);
			CHECK(si.si_code == CLD_EXITED && si.si_status == 10 + i, "zombie %d: si_code %d si_status %d",
			      kids[i], si.si_code, si.si_status);
		}
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		CHECK_SYS(waitid(P_PID, (id_t)live, &si, WEXITED | WSTOPPED | WNOHANG | WNOWAIT) == 0, "waitid");
		CHECK(si.si_pid == 0, "the live child %d changed state (si_code %d)", live, si.si_code);
		CHECK_SYS(kill(live, 0) == 0, "kill 0");
		out("count %lld zombies=%ld live=1", n, nz);
		if (opt_max > 0 && n >= opt_max) {
			for (long i = 0; i < nz; i++) {
				int st;
				CHECK_SYS(waitpid(kids[i], &st, 0) == kids[i], "waitpid");
				CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 10 + i, "zombie %ld status %#x", i, st);
			}
			CHECK_SYS(kill(live, SIGTERM) == 0, "kill");
			int st;
			CHECK_SYS(waitpid(live, &st, 0) == live, "waitpid");
			CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "live child status %#x", st);
			CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "an unexpected child is left");
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
