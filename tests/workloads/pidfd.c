/*
 * pidfd: pidfds of processes of the tree (and, with -o, of one outside).
 *
 *   pidfd [-d MS] [-n N] [-k K] [-o]
 *
 * The parent forks a child that counts, and holds three pidfds: A of the
 * child (blocking, close-on-exec), B of the child (PIDFD_NONBLOCK, no
 * close-on-exec, at descriptor 20), S of itself. Every iteration it
 * checks that A and B still refer to a live child (pidfd_send_signal
 * with signal 0, poll, waitid(P_PIDFD, WNOHANG)) and that S is itself,
 * and their flags. At parent count K it ends the child through A
 * (pidfd_send_signal SIGTERM), waits for it through A (poll, waitid) and
 * prints "reaped PID signal 15" with the child's pid, then goes on
 * counting alone. With -o it also holds a pidfd of its parent (outside
 * the tree: crtools refuses it).
 */
#include "common.h"
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open(pid_t pid, unsigned flags)
{
	return (int)syscall(SYS_pidfd_open, pid, flags);
}

static int pidfd_send_signal(int fd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
}

/* The pid a pidfd refers to, from its fdinfo. */
static long pidfd_pid(int fd)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	int f = open(path, O_RDONLY);
	CHECK_SYS(f >= 0, "open fdinfo");
	ssize_t n = read(f, buf, sizeof buf - 1);
	close(f);
	CHECK_SYS(n > 0, "read fdinfo");
	buf[n] = 0;
	char *p = strstr(buf, "\nPid:");
	CHECK(p != NULL, "no Pid: in fdinfo of %d", fd);
	return strtol(p + 5, NULL, 10);
}

int main(int argc, char **argv)
{
	long long kill_at = 0;
	int outside = 0, c;
	while ((c = getopt(argc, argv, COMMON_OPTS "k:o")) != -1) {
		if (c == 'k')
			kill_at = atoll(optarg);
		else if (c == 'o')
			outside = 1;
		else if (!common_opt(c, optarg))
			usage("pidfd [-d MS] [-n N] [-k K] [-o]");
	}
	pid_t child = fork();
	CHECK_SYS(child >= 0, "fork");
	if (child == 0) {
		set_tag("child");
		for (long long n = 1;; n++) {
			out("count %lld", n);
			sleep_ms(opt_delay_ms);
		}
	}
	set_tag("parent");
	int a = pidfd_open(child, 0);
	CHECK_SYS(a >= 0, "pidfd_open A");
	int b0 = pidfd_open(child, PIDFD_NONBLOCK);
	CHECK_SYS(b0 >= 0, "pidfd_open B");
	CHECK_SYS(dup2(b0, 20) == 20, "dup2");
	close(b0);
	int b = 20;
	int s = pidfd_open(getpid(), 0);
	CHECK_SYS(s >= 0, "pidfd_open S");
	if (outside)
		CHECK_SYS(pidfd_open(getppid(), 0) >= 0, "pidfd_open of the parent");
	int alive = 1;
	for (long long n = 1;; n++) {
		if (alive) {
			CHECK_SYS(pidfd_send_signal(a, 0) == 0, "pidfd_send_signal A");
			CHECK_SYS(pidfd_send_signal(b, 0) == 0, "pidfd_send_signal B");
			struct pollfd p = { .fd = a, .events = POLLIN };
			CHECK(poll(&p, 1, 0) == 0, "A polls readable: the child exited");
			siginfo_t si = { 0 };
			CHECK_SYS(waitid(P_PIDFD, b, &si, WEXITED | WNOHANG) == 0 && si.si_pid == 0,
				  "waitid B");
			CHECK(pidfd_pid(a) == child && pidfd_pid(b) == child, "A or B is not the child");
		}
		CHECK(pidfd_pid(s) == getpid(), "S refers to %ld", pidfd_pid(s));
		CHECK(fcntl(a, F_GETFD) == FD_CLOEXEC && fcntl(b, F_GETFD) == 0, "close-on-exec of A, B");
		CHECK(!(fcntl(a, F_GETFL) & O_NONBLOCK) && (fcntl(b, F_GETFL) & O_NONBLOCK), "flags of A, B");
		if (alive && kill_at > 0 && n == kill_at) {
			CHECK_SYS(pidfd_send_signal(a, SIGTERM) == 0, "pidfd_send_signal SIGTERM");
			struct pollfd p = { .fd = a, .events = POLLIN };
			CHECK_SYS(poll(&p, 1, 10000) == 1, "poll A");
			siginfo_t si = { 0 };
			CHECK_SYS(waitid(P_PIDFD, a, &si, WEXITED) == 0, "waitid A");
			CHECK(si.si_pid == child && si.si_code == CLD_KILLED, "waitid gave pid %d code %d",
			      si.si_pid, si.si_code);
			out("reaped %d signal %d", si.si_pid, si.si_status);
			alive = 0;
		}
		out("count %lld", n);
		if (opt_max > 0 && n >= opt_max) {
			if (alive) {
				kill(child, SIGKILL);
				waitpid(child, NULL, 0);
			}
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
