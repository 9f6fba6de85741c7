/*
 * pgrp: a process group whose leader has exited.
 *
 *   pgrp [-d MS] [-n N] [-e CODE] [-s] [-r]
 *
 * The root forks L; L makes its own process group (setpgid(0, 0)), forks M
 * into it and exits; the root reaps L. So M lives in a group G whose leader
 * is gone: no process has pid G. M (reparented to init or a subreaper when L
 * exits) prints "M count N pgid=G sid=S" and checks every iteration that its
 * group is still G and its session still S, that it is not its own group
 * leader, that its group is not the root's, that the group has no leader
 * (kill(G, 0) fails with ESRCH) and still has a member (kill(-G, 0) works).
 * The root prints "root count N" and checks its group and session stay the
 * same. The ids are remembered, so a restore must keep them; with --no-pids
 * use -s (structural checks only: no comparison with remembered ids).
 *
 * M is not a descendant of the root: run it with Workload::spawn_session (the
 * harness then kills the whole session), or track M's group. With -r the root
 * makes itself a child subreaper first, so M is reparented to the root and the
 * whole thing is one tree (what ckpt of the root takes).
 */
#include "common.h"
#include <sys/prctl.h>
#include <sys/wait.h>

static int structural, subreaper;

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "sr")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 's')
			structural = 1;
		else if (c == 'r')
			subreaper = 1;
		else
			usage("pgrp [-s] [-r]");
	}
	if (subreaper)
		CHECK_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "PR_SET_CHILD_SUBREAPER");
	pid_t root_pgrp = getpgrp(), sid = getsid(0);
	int pfd[2];
	CHECK_SYS(pipe(pfd) == 0, "pipe");

	pid_t l = fork();
	CHECK_SYS(l >= 0, "fork");
	if (l == 0) {
		CHECK_SYS(setpgid(0, 0) == 0, "setpgid");
		pid_t m = fork();
		CHECK_SYS(m >= 0, "fork");
		if (m == 0) {
			set_tag("M");
			close(pfd[1]);
			char b;
			/* Wait until L is gone and reaped (the root closes the pipe). */
			while (read(pfd[0], &b, 1) < 0)
				CHECK_SYS(errno == EINTR, "read");
			close(pfd[0]);
			pid_t g = getpgrp();
			for (long long n = 1;; n++) {
				pid_t now = getpgrp();
				if (!structural) {
					CHECK(now == g, "process group %d, expected %d", now, g);
					CHECK(getsid(0) == sid, "session %d, expected %d", getsid(0), sid);
					CHECK(now != root_pgrp, "in the root's process group");
				}
				CHECK(now != getpid(), "became its own group leader");
				CHECK(kill(now, 0) < 0 && errno == ESRCH, "group %d has a leader process", now);
				CHECK(kill(-now, 0) == 0, "group %d has no member", now);
				out("count %lld pgid=%d sid=%d", n, now, getsid(0));
				if (opt_max > 0 && n >= opt_max)
					_exit(0);
				sleep_ms(opt_delay_ms);
			}
		}
		_exit(0);
	}
	int st;
	CHECK_SYS(waitpid(l, &st, 0) == l, "waitpid");
	close(pfd[0]);
	close(pfd[1]);

	set_tag("root");
	for (long long n = 1;; n++) {
		CHECK(structural || getpgrp() == root_pgrp, "root process group changed");
		CHECK(structural || getsid(0) == sid, "root session changed");
		out("count %lld", n);
		if (opt_max > 0 && n >= opt_max)
			exit(opt_exit); /* M stops at count N by itself */
		sleep_ms(opt_delay_ms);
	}
}
