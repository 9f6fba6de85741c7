/*
 * forest: a root with many children, each counting.
 *
 *   forest [-d MS] [-n N] [-e CODE] [-c CHILDREN] [-g PGID] [-p]
 *
 * The root forks CHILDREN children (default 63: 64 processes in all). Child K
 * (1-based) prints "cK count N", the root "root count N". Each child checks
 * every iteration that its parent is still the root (getppid) and that its
 * process group is what it was set to.
 *   -g PGID  child 1 moves itself into process group PGID (a group led by a
 *            process outside the tree, in the same session)
 *   -p       children make groups among themselves: each odd child K leads a
 *            new group, and child K+1 joins it; the root checks each child's
 *            group with getpgid
 * With -n, children stop at count N; the root reaps them (each must exit 0).
 */
#include "common.h"
#include <sys/wait.h>

int main(int argc, char **argv)
{
	long nchildren = 63;
	pid_t join = 0;
	int pairs = 0;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "c:g:p")) != -1) {
		if (common_opt(c, optarg))
			continue;
		switch (c) {
		case 'c':
			nchildren = (long)parse_num(optarg, "children");
			break;
		case 'g':
			join = (pid_t)parse_num(optarg, "pgid");
			break;
		case 'p':
			pairs = 1;
			break;
		default:
			usage("forest [-c CHILDREN] [-g PGID] [-p]");
		}
	}
	if (nchildren < 0 || nchildren > 4096)
		usage("forest: CHILDREN out of range");
	pid_t root = getpid();
	pid_t *kids = calloc((size_t)nchildren + 1, sizeof(pid_t));
	pid_t *groups = calloc((size_t)nchildren + 1, sizeof(pid_t));
	CHECK_SYS(kids && groups, "calloc");
	for (long k = 1; k <= nchildren; k++) {
		pid_t want = getpgrp();
		if (k == 1 && join > 0)
			want = join;
		if (pairs)
			want = (k % 2 == 1) ? 0 : kids[k - 1];
		pid_t p = fork();
		CHECK_SYS(p >= 0, "fork");
		if (p == 0) {
			char tag[16];
			snprintf(tag, sizeof(tag), "c%ld", k);
			set_tag(tag);
			if (want != getpgrp())
				CHECK_SYS(setpgid(0, want) == 0 || errno == EACCES, "setpgid");
			pid_t g = want == 0 ? getpid() : want;
			CHECK(getpgrp() == g, "process group %d, expected %d", getpgrp(), g);
			for (long long n = 1;; n++) {
				CHECK(getppid() == root, "parent %d, expected %d", getppid(), root);
				CHECK(getpgrp() == g, "process group %d, expected %d", getpgrp(), g);
				out("count %lld", n);
				if (opt_max > 0 && n >= opt_max)
					_exit(0);
				sleep_ms(opt_delay_ms);
			}
		}
		/* The parent sets the group too, so it is right before anyone looks. */
		if (want != getpgrp())
			setpgid(p, want == 0 ? p : want);
		kids[k] = p;
		groups[k] = want == 0 ? p : want;
	}
	set_tag("root");
	for (long long n = 1;; n++) {
		if (pairs)
			for (long k = 1; k <= nchildren; k++) {
				pid_t g = getpgid(kids[k]);
				CHECK(g == groups[k], "child %ld in group %d, expected %d", k, g, groups[k]);
			}
		out("count %lld", n);
		if (opt_max > 0 && n >= opt_max) {
			for (long k = 1; k <= nchildren; k++) {
				int st;
				CHECK_SYS(waitpid(kids[k], &st, 0) == kids[k], "waitpid");
				CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %ld ended with status %#x", k, st);
			}
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
