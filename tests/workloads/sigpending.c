/*
 * sigpending: blocked signals waiting to be delivered.
 *
 *   sigpending [-d MS] [-n N] [-e CODE] [-u U]
 *
 * SIGUSR1 (sent with kill: process-wide queue), SIGUSR2 (sent with tgkill:
 * the thread's private queue) and SIGRTMIN+1 (sigqueue'd twice, values
 * carried) are blocked and pending. Every iteration checks sigpending()
 * shows exactly those and no handler has run. Every U iterations (default 10)
 * it unblocks them: both standard handlers must run once, with the right
 * si_code, and the realtime handler twice with the queued values in order;
 * then it blocks and sends them again. Prints "count N pending" or, on the
 * iterations that unblock, "count N delivered".
 */
#include "common.h"
#include <sys/syscall.h>

static volatile int usr1, usr2, bad;
static volatile int rt; /* realtime deliveries in this cycle */
static volatile int rtvals[4];
static volatile long long cycle;

static void handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig == SIGUSR1) {
		usr1++;
		if (si->si_code != SI_USER || si->si_pid != getpid())
			bad = 1;
	} else if (sig == SIGUSR2) {
		usr2++;
		if (si->si_code != SI_TKILL || si->si_pid != getpid())
			bad = 2;
	} else {
		if (rt < 4)
			rtvals[rt] = si->si_value.sival_int;
		rt++;
		if (si->si_code != SI_QUEUE)
			bad = 3;
	}
}

static void send_all(void)
{
	CHECK_SYS(kill(getpid(), SIGUSR1) == 0, "kill");
	CHECK_SYS(syscall(SYS_tgkill, getpid(), gettid(), SIGUSR2) == 0, "tgkill");
	for (int k = 0; k < 2; k++)
		CHECK_SYS(sigqueue(getpid(), SIGRTMIN + 1, (union sigval){ .sival_int = (int)(cycle * 2 + k) }) == 0,
			  "sigqueue");
}

int main(int argc, char **argv)
{
	long every = 10;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "u:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'u')
			every = (long)parse_num(optarg, "unblock interval");
		else
			usage("sigpending [-u U]");
	}
	if (every < 1)
		every = 1;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
	CHECK_SYS(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction");
	CHECK_SYS(sigaction(SIGRTMIN + 1, &sa, NULL) == 0, "sigaction");

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGRTMIN + 1);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &set, NULL) == 0, "sigprocmask");
	send_all();

	for (long long n = 1;; n++) {
		sigset_t pend;
		CHECK_SYS(sigpending(&pend) == 0, "sigpending");
		for (int s = 1; s < NSIG; s++)
			CHECK(sigismember(&pend, s) == sigismember(&set, s), "signal %d %s pending at count %lld", s,
			      sigismember(&pend, s) ? "is" : "is not", n);
		CHECK(usr1 == cycle && usr2 == cycle && rt == 0,
		      "handlers ran while blocked: usr1 %d usr2 %d rt %d, cycle %lld", usr1, usr2, rt, cycle);
		const char *what = "pending";
		if (n % every == 0) {
			CHECK_SYS(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0, "sigprocmask");
			CHECK(usr1 == cycle + 1 && usr2 == cycle + 1 && rt == 2,
			      "after unblocking: usr1 %d usr2 %d rt %d, expected %lld %lld 2", usr1, usr2, rt, cycle + 1,
			      cycle + 1);
			CHECK(bad == 0, "handler saw wrong siginfo (%d)", bad);
			for (int k = 0; k < 2; k++)
				CHECK(rtvals[k] == (int)(cycle * 2 + k), "realtime signal %d carried %d", k, rtvals[k]);
			rt = 0;
			cycle++;
			CHECK_SYS(sigprocmask(SIG_BLOCK, &set, NULL) == 0, "sigprocmask");
			send_all();
			what = "delivered";
		}
		out("count %lld %s", n, what);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
