/*
 * posixtimer: POSIX timers (timer_create) firing into a process.
 *
 *   posixtimer [-d MS] [-n N] [-e CODE] [-q]
 *
 * Creates two timers: A on CLOCK_MONOTONIC with SIGEV_SIGNAL SIGRTMIN+3 and
 * sigev_value 0x5eed0001, B on CLOCK_REALTIME with SIGEV_SIGNAL SIGRTMIN+4 and
 * sigev_value 0x5eed0002, both periodic every MS (default 50). Their handlers
 * (SA_SIGINFO) check si_code == SI_TIMER, si_value and si_timerid, and count.
 * Each iteration waits (sigsuspend) until both timers fired at least once
 * more, checks timer_gettime still reports the interval, and prints
 * "count N a=A b=B ids=IDA,IDB" (A, B >= N: how often each fired). The timer
 * ids are remembered and must stay the same.
 *
 * With -q it also keeps one sigqueue'd SIGRTMIN+6 with value N pending
 * (blocked) at all times: each iteration unblocks it, the handler must see
 * exactly the value queued in the previous iteration (si_code SI_QUEUE), then
 * it blocks it again and queues the next value.
 */
#include "common.h"
#include <sys/syscall.h>

static volatile sig_atomic_t fired[2];
static volatile sig_atomic_t bad;
static timer_t ids[2];
static volatile long long q_got = -1;
static volatile sig_atomic_t q_calls;

static void on_timer(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	int k = sig - (SIGRTMIN + 3);
	if (k < 0 || k > 1) {
		bad = 1;
		return;
	}
	if (si->si_code != SI_TIMER)
		bad = 10 + k;
	else if (si->si_value.sival_int != 0x5eed0001 + k)
		bad = 20 + k;
	fired[k]++;
}

static void on_queue(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	if (si->si_code != SI_QUEUE)
		bad = 30;
	q_got = si->si_value.sival_int;
	q_calls++;
}

int main(int argc, char **argv)
{
	int queue = 0;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "q")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'q')
			queue = 1;
		else
			usage("posixtimer [-q]");
	}
	int sigs[2] = { SIGRTMIN + 3, SIGRTMIN + 4 };
	int qsig = SIGRTMIN + 6;
	sigset_t both;
	sigemptyset(&both);
	sigaddset(&both, sigs[0]);
	sigaddset(&both, sigs[1]);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &both, NULL) == 0, "sigprocmask");
	for (int k = 0; k < 2; k++) {
		struct sigaction sa = { 0 };
		sa.sa_sigaction = on_timer;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		CHECK_SYS(sigaction(sigs[k], &sa, NULL) == 0, "sigaction");
	}
	struct sigaction qa = { 0 };
	qa.sa_sigaction = on_queue;
	qa.sa_flags = SA_SIGINFO | SA_RESTART;
	CHECK_SYS(sigaction(qsig, &qa, NULL) == 0, "sigaction");
	sigset_t qset;
	sigemptyset(&qset);
	sigaddset(&qset, qsig);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &qset, NULL) == 0, "sigprocmask");

	clockid_t clocks[2] = { CLOCK_MONOTONIC, CLOCK_REALTIME };
	struct itimerspec its = { 0 };
	its.it_interval.tv_sec = opt_delay_ms / 1000;
	its.it_interval.tv_nsec = (opt_delay_ms % 1000) * 1000000L;
	its.it_value = its.it_interval;
	for (int k = 0; k < 2; k++) {
		struct sigevent sev = { 0 };
		sev.sigev_notify = SIGEV_SIGNAL;
		sev.sigev_signo = sigs[k];
		sev.sigev_value.sival_int = 0x5eed0001 + k;
		CHECK_SYS(timer_create(clocks[k], &sev, &ids[k]) == 0, "timer_create");
		CHECK_SYS(timer_settime(ids[k], 0, &its, NULL) == 0, "timer_settime");
	}
	timer_t first[2] = { ids[0], ids[1] };

	long long queued = -1;
	if (queue) {
		union sigval v = { .sival_int = 1000 };
		CHECK_SYS(sigqueue(getpid(), qsig, v) == 0, "sigqueue");
		queued = 1000;
	}

	sigset_t wait_mask;
	CHECK_SYS(sigprocmask(SIG_SETMASK, NULL, &wait_mask) == 0, "sigprocmask");
	sigdelset(&wait_mask, sigs[0]);
	sigdelset(&wait_mask, sigs[1]);

	for (long long n = 1;; n++) {
		sig_atomic_t a0 = fired[0], b0 = fired[1];
		while (fired[0] == a0 || fired[1] == b0) {
			sigsuspend(&wait_mask);
			CHECK(!bad, "bad timer signal (code %d)", (int)bad);
		}
		CHECK(!bad, "bad timer signal (code %d)", (int)bad);
		for (int k = 0; k < 2; k++) {
			CHECK(ids[k] == first[k], "timer id changed");
			struct itimerspec cur;
			CHECK_SYS(timer_gettime(ids[k], &cur) == 0, "timer_gettime");
			CHECK(cur.it_interval.tv_sec == its.it_interval.tv_sec &&
				      cur.it_interval.tv_nsec == its.it_interval.tv_nsec,
			      "timer %d interval changed: %lld.%09ld", k, (long long)cur.it_interval.tv_sec,
			      cur.it_interval.tv_nsec);
			CHECK(cur.it_value.tv_sec != 0 || cur.it_value.tv_nsec != 0, "timer %d disarmed", k);
		}
		if (queue) {
			sigset_t pend;
			CHECK_SYS(sigpending(&pend) == 0, "sigpending");
			CHECK(sigismember(&pend, qsig), "queued signal not pending at count %lld", n);
			int calls = q_calls;
			CHECK_SYS(sigprocmask(SIG_UNBLOCK, &qset, NULL) == 0, "sigprocmask");
			CHECK_SYS(sigprocmask(SIG_BLOCK, &qset, NULL) == 0, "sigprocmask");
			CHECK(q_calls == calls + 1, "queued handler ran %d times, expected 1", q_calls - calls);
			CHECK(q_got == queued, "queued value %lld, expected %lld", (long long)q_got, queued);
			CHECK(!bad, "queued signal with si_code != SI_QUEUE");
			queued = 1000 + n;
			union sigval v = { .sival_int = (int)queued };
			CHECK_SYS(sigqueue(getpid(), qsig, v) == 0, "sigqueue");
		}
		out("count %lld a=%d b=%d ids=%ld,%ld", n, (int)fired[0], (int)fired[1], (long)(intptr_t)ids[0],
		    (long)(intptr_t)ids[1]);
		maybe_done(n);
	}
}
