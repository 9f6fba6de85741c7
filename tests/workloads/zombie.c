/*
 * zombie: unreaped children.
 *
 *   zombie [-d MS] [-n N] [-e CODE]
 *
 * Forks three children: one exits 0, one exits 51, one is killed by SIGTERM.
 * Once all three are zombies, every iteration checks with
 * waitid(WEXITED|WNOHANG|WNOWAIT), which does not reap, that each reports
 * exactly its status, and that the zombies are still there. Prints
 * "count N zombies=3". With -n, at count N it reaps them with waitpid,
 * checking the statuses again, and checks no child is left (ECHILD).
 */
#include "common.h"
#include <sys/wait.h>

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS)) != -1)
		if (!common_opt(c, optarg))
			usage("zombie");

	pid_t kids[3];
	for (int i = 0; i < 3; i++) {
		kids[i] = fork();
		CHECK_SYS(kids[i] >= 0, "fork");
		if (kids[i] == 0) {
			if (i == 0)
				_exit(0);
			if (i == 1)
				_exit(51);
			for (;;)
				pause();
		}
	}
	CHECK_SYS(kill(kids[2], SIGTERM) == 0, "kill");
	const int code[3] = { CLD_EXITED, CLD_EXITED, CLD_KILLED };
	const int status[3] = { 0, 51, SIGTERM };

	/* Wait (without reaping) until all three have ended. */
	for (int i = 0; i < 3; i++) {
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		while (waitid(P_PID, (id_t)kids[i], &si, WEXITED | WNOWAIT) < 0)
			CHECK_SYS(errno == EINTR, "waitid");
	}

	for (long long n = 1;; n++) {
		for (int i = 0; i < 3; i++) {
			siginfo_t si;
			memset(&si, 0, sizeof(si));
			int r = waitid(P_PID, (id_t)kids[i], &si, WEXITED | WNOHANG | WNOWAIT);
			CHECK_SYS(r == 0, "waitid");
			CHECK(si.si_pid == kids[i], "child %d is not a zombie any more (si_pid %d)", kids[i], si.si_pid);
			CHECK(si.si_code == code[i] && si.si_status == status[i],
			      "child %d: si_code %d si_status %d, expected %d %d", i, si.si_code, si.si_status, code[i],
			      status[i]);
		}
		out("count %lld zombies=3", n);
		if (opt_max > 0 && n >= opt_max) {
			for (int i = 0; i < 3; i++) {
				int st;
				CHECK_SYS(waitpid(kids[i], &st, 0) == kids[i], "waitpid");
				if (i < 2)
					CHECK(WIFEXITED(st) && WEXITSTATUS(st) == status[i], "child %d status %#x", i, st);
				else
					CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "child %d status %#x", i, st);
			}
			CHECK(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "an unexpected child is left");
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
