/*
 * sleeper: a process that spends its time blocked in syscalls, so a
 * checkpoint catches it inside one and the restore must restart it.
 *
 *   sleeper [-d MS] [-n N] [-e CODE] [-m MODE]
 *
 * MODE (default all):
 *   nanosleep     nanosleep(MS)                 (ERESTART_RESTARTBLOCK)
 *   poll          poll() on an empty pipe, MS timeout
 *   select        select() on an empty pipe, MS timeout
 *   futex         FUTEX_WAIT with an MS timeout  (ERESTARTSYS)
 *   sigtimedwait  sigtimedwait() for a blocked SIGUSR2, MS timeout
 *   read          blocking read() on a pipe; a child writes one byte every MS
 *   wait          waitpid() on a child that sleeps MS and exits with N & 0x7f
 *   all           cycles nanosleep, poll, select, futex, sigtimedwait
 *
 * Prints "count N MODE" each time the call returns. EINTR is allowed and
 * handled by retrying the call; every other outcome is checked.
 */
#include "common.h"
#include <linux/futex.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static const char *const cycle[] = { "nanosleep", "poll", "select", "futex", "sigtimedwait" };
static int pfd[2];
static uint32_t futex_word = 42;

static struct timespec delay_ts(void)
{
	struct timespec ts = { opt_delay_ms / 1000, (opt_delay_ms % 1000) * 1000000L };
	return ts;
}

static void do_nanosleep(void)
{
	struct timespec ts = delay_ts(), rem;
	while (nanosleep(&ts, &rem) < 0) {
		CHECK_SYS(errno == EINTR, "nanosleep");
		ts = rem;
	}
}

static void do_poll(void)
{
	struct pollfd p = { .fd = pfd[0], .events = POLLIN };
	int r;
	while ((r = poll(&p, 1, (int)opt_delay_ms)) < 0)
		CHECK_SYS(errno == EINTR, "poll");
	CHECK(r == 0, "poll on an empty pipe returned %d (revents %#x)", r, p.revents);
}

static void do_select(void)
{
	int r;
	fd_set set;
	do {
		struct timeval tv = { opt_delay_ms / 1000, (opt_delay_ms % 1000) * 1000 };
		FD_ZERO(&set);
		FD_SET(pfd[0], &set);
		r = select(pfd[0] + 1, &set, NULL, NULL, &tv);
		CHECK_SYS(r >= 0 || errno == EINTR, "select");
	} while (r < 0);
	CHECK(r == 0, "select on an empty pipe returned %d", r);
}

static void do_futex(void)
{
	for (;;) {
		struct timespec ts = delay_ts();
		long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 42, &ts, NULL, 0);
		CHECK(r < 0, "futex wait returned %ld", r);
		if (errno == ETIMEDOUT)
			break;
		CHECK_SYS(errno == EINTR, "futex wait");
	}
	CHECK(futex_word == 42, "futex word changed to %u", futex_word);
}

static void do_sigtimedwait(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	for (;;) {
		struct timespec ts = delay_ts();
		int r = sigtimedwait(&set, NULL, &ts);
		CHECK(r < 0, "sigtimedwait returned signal %d", r);
		if (errno == EAGAIN)
			break;
		CHECK_SYS(errno == EINTR, "sigtimedwait");
	}
}

static void do_read(long long n)
{
	unsigned char b;
	ssize_t r;
	while ((r = read(pfd[0], &b, 1)) < 0)
		CHECK_SYS(errno == EINTR, "read");
	CHECK(r == 1, "read from the writer child returned %zd", r);
	CHECK(b == (unsigned char)n, "read byte %u, expected %u", b, (unsigned char)n);
}

static void do_wait(long long n)
{
	pid_t child = fork();
	CHECK_SYS(child >= 0, "fork");
	if (child == 0) {
		sleep_ms(opt_delay_ms);
		_exit((int)(n & 0x7f));
	}
	int status;
	pid_t r;
	while ((r = waitpid(child, &status, 0)) < 0)
		CHECK_SYS(errno == EINTR, "waitpid");
	CHECK(r == child, "waitpid returned %d, expected %d", r, child);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == (n & 0x7f), "child status %#x, expected exit %lld",
	      status, n & 0x7f);
}

int main(int argc, char **argv)
{
	const char *mode = "all";
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "m:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'm')
			mode = optarg;
		else
			usage("sleeper [-m nanosleep|poll|select|futex|sigtimedwait|read|wait|all]");
	}
	int known = !strcmp(mode, "all") || !strcmp(mode, "read") || !strcmp(mode, "wait");
	for (size_t i = 0; i < sizeof(cycle) / sizeof(cycle[0]); i++)
		known |= !strcmp(mode, cycle[i]);
	if (!known)
		usage("sleeper [-m nanosleep|poll|select|futex|sigtimedwait|read|wait|all]");

	CHECK_SYS(pipe(pfd) == 0, "pipe");
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &set, NULL) == 0, "sigprocmask");

	if (!strcmp(mode, "read")) {
		pid_t w = fork();
		CHECK_SYS(w >= 0, "fork");
		if (w == 0) {
			set_tag("writer");
			close(pfd[0]);
			for (long long i = 1;; i++) {
				sleep_ms(opt_delay_ms);
				unsigned char b = (unsigned char)i;
				CHECK_SYS(write_all(pfd[1], &b, 1) == 0, "write");
			}
		}
		close(pfd[1]);
	}

	for (long long n = 1;; n++) {
		const char *m = mode;
		if (!strcmp(mode, "all"))
			m = cycle[(n - 1) % (sizeof(cycle) / sizeof(cycle[0]))];
		if (!strcmp(m, "nanosleep"))
			do_nanosleep();
		else if (!strcmp(m, "poll"))
			do_poll();
		else if (!strcmp(m, "select"))
			do_select();
		else if (!strcmp(m, "futex"))
			do_futex();
		else if (!strcmp(m, "sigtimedwait"))
			do_sigtimedwait();
		else if (!strcmp(m, "read"))
			do_read(n);
		else
			do_wait(n);
		out("count %lld %s", n, m);
		maybe_done(n);
	}
}
