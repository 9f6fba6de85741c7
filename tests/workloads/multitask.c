/*
 * multitask: a process tree root{A{A1},B{B1}} in one process group, sharing
 * one log file description.
 *
 *   multitask [-d MS] [-n N] [-e CODE] [-l LOGFILE]
 *
 * Each process prints "TAG count N" (TAG: root, A, A1, B, B1). With -l, the
 * root opens LOGFILE O_WRONLY|O_CREAT|O_TRUNC (no O_APPEND) before forking, so
 * all five share one file offset: each writes its line at the shared offset,
 * and lines only stay intact if the offset is still shared after a restore
 * (a test can check the log: every line well-formed, each tag consecutive).
 * Each process checks every iteration that it is in its parent's process
 * group and session, and that the shared offset never went backwards from
 * where its own last write ended. With -n, children stop at count N and the
 * root reaps them (checking they exited 0) before exiting.
 */
#include "common.h"
#include <sys/wait.h>

static int logfd = -1;

static void loop(void)
{
	off_t last = 0;
	pid_t pgrp = getpgrp(), sid = getsid(0);
	for (long long n = 1;; n++) {
		pid_t pp = getppid();
		CHECK(getpgrp() == pgrp && getsid(0) == sid, "process group or session changed");
		if (strcmp(out_tag, "root ") != 0)
			CHECK(getpgid(pp) == pgrp && getsid(pp) == sid, "not in the parent's (%d) group/session", pp);
		out("count %lld", n);
		if (logfd >= 0) {
			char line[128];
			size_t len = format_line(line, sizeof(line), "count %lld", n);
			off_t pos = lseek(logfd, 0, SEEK_CUR);
			CHECK(pos >= last, "shared log offset %lld went back from %lld", (long long)pos, (long long)last);
			CHECK_SYS(write_all(logfd, line, len) == 0, "write log");
			last = lseek(logfd, 0, SEEK_CUR);
		}
		if (opt_max > 0 && n >= opt_max)
			return;
		sleep_ms(opt_delay_ms);
	}
}

static pid_t spawn(const char *tag, void (*body)(void))
{
	pid_t p = fork();
	CHECK_SYS(p >= 0, "fork");
	if (p == 0) {
		set_tag(tag);
		body();
		_exit(0);
	}
	return p;
}

static void reap(pid_t p)
{
	int st;
	while (waitpid(p, &st, 0) < 0)
		CHECK_SYS(errno == EINTR, "waitpid");
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d ended with status %#x", p, st);
}

static void leaf(void)
{
	loop();
}

static void a_body(void)
{
	pid_t c = spawn("A1", leaf);
	loop();
	reap(c);
}

static void b_body(void)
{
	pid_t c = spawn("B1", leaf);
	loop();
	reap(c);
}

int main(int argc, char **argv)
{
	const char *logpath = NULL;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "l:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'l')
			logpath = optarg;
		else
			usage("multitask [-l LOGFILE]");
	}
	if (logpath) {
		logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		CHECK_SYS(logfd >= 0, "open log");
	}
	set_tag("root");
	pid_t a = spawn("A", a_body), b = spawn("B", b_body);
	loop();
	reap(a);
	reap(b);
	return opt_exit;
}
