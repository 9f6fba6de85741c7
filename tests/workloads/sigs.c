/*
 * sigs: signal dispositions, mask and alternate stack.
 *
 *   sigs [-d MS] [-n N] [-e CODE]
 *
 * Sets up:
 *   SIGUSR1  SA_SIGINFO|SA_RESTART|SA_ONSTACK, sa_mask {SIGUSR2, SIGTTIN}
 *   SIGUSR2  plain handler, SA_RESTART|SA_NODEFER (runs on the normal stack)
 *   SIGRTMIN+2  SA_SIGINFO handler recording queued values in order
 *   SIGHUP   ignored; SIGWINCH SA_RESETHAND handler (never raised)
 *   SIGTERM  default
 *   mask     {SIGPWR, SIGRTMIN+5} blocked
 *   sigaltstack: 64 KiB malloc'd
 * Every iteration checks that each disposition (handler, flags, mask), the
 * blocked mask and the alternate stack read back exactly as recorded after
 * setup, then sends itself SIGUSR1 (alternating raise() and sigqueue() with
 * value N; the handler must run on the alternate stack with SIGUSR2 blocked
 * and see the right siginfo), SIGUSR2 (must run on the normal stack), and
 * queues three SIGRTMIN+2 while it is blocked, which must arrive in order
 * once unblocked. Prints "count N ok".
 */
#include "common.h"

#define ALTSZ (64 * 1024)

static const int sigs[] = { SIGUSR1, SIGUSR2, SIGHUP, SIGWINCH, SIGTERM, 0 /* SIGRTMIN+2 */ };
#define NSIGS (sizeof(sigs) / sizeof(sigs[0]))
static struct sigaction recorded[NSIGS];
static sigset_t recorded_mask;
static stack_t recorded_stack;
static char *altstack;

static volatile long long usr1_runs, usr2_runs, expect_value;
static volatile int expect_code;
static volatile int rt_vals[8], rt_n;
static volatile int handler_error;
static char handler_msg[160];

static int sig_at(size_t i)
{
	return sigs[i] ? sigs[i] : SIGRTMIN + 2;
}

static int on_altstack(void *p)
{
	return (char *)p >= altstack && (char *)p < altstack + ALTSZ;
}

static void herr(const char *msg)
{
	if (!handler_error) {
		strncpy(handler_msg, msg, sizeof(handler_msg) - 1);
		handler_error = 1;
	}
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	int local;
	(void)uc;
	if (sig != SIGUSR1 || si->si_signo != SIGUSR1)
		herr("SIGUSR1 handler: wrong signal number");
	if (!on_altstack(&local))
		herr("SIGUSR1 handler not on the alternate stack");
	stack_t ss;
	if (sigaltstack(NULL, &ss) != 0 || !(ss.ss_flags & SS_ONSTACK))
		herr("SIGUSR1 handler: sigaltstack does not report SS_ONSTACK");
	sigset_t cur;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	if (!sigismember(&cur, SIGUSR2) || !sigismember(&cur, SIGTTIN) || !sigismember(&cur, SIGUSR1))
		herr("SIGUSR1 handler: sa_mask not applied");
	if (si->si_code != expect_code)
		herr("SIGUSR1 handler: unexpected si_code");
	if (si->si_pid != getpid())
		herr("SIGUSR1 handler: si_pid is not our pid");
	if (expect_code == SI_QUEUE && si->si_value.sival_int != (int)expect_value)
		herr("SIGUSR1 handler: wrong si_value");
	usr1_runs++;
}

static void on_usr2(int sig)
{
	int local;
	if (sig != SIGUSR2)
		herr("SIGUSR2 handler: wrong signal number");
	if (on_altstack(&local))
		herr("SIGUSR2 handler ran on the alternate stack");
	sigset_t cur;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	if (sigismember(&cur, SIGUSR2))
		herr("SIGUSR2 handler: SA_NODEFER not applied");
	usr2_runs++;
}

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig != SIGRTMIN + 2 || si->si_code != SI_QUEUE)
		herr("RT handler: wrong signal or si_code");
	if (rt_n < 8)
		rt_vals[rt_n] = si->si_value.sival_int;
	rt_n++;
}

static void on_winch(int sig)
{
	(void)sig;
	herr("SIGWINCH handler ran");
}

static void install(int sig, void *handler, int flags, const int *mask)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	if (flags & SA_SIGINFO)
		sa.sa_sigaction = handler;
	else
		sa.sa_handler = handler;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	for (; mask && *mask; mask++)
		sigaddset(&sa.sa_mask, *mask);
	CHECK_SYS(sigaction(sig, &sa, NULL) == 0, "sigaction");
}

static void check_state(long long n)
{
	for (size_t i = 0; i < NSIGS; i++) {
		struct sigaction cur;
		int sig = sig_at(i);
		CHECK_SYS(sigaction(sig, NULL, &cur) == 0, "sigaction");
		CHECK(cur.sa_handler == recorded[i].sa_handler, "signal %d: handler %p, expected %p at count %lld", sig,
		      (void *)cur.sa_handler, (void *)recorded[i].sa_handler, n);
		CHECK(cur.sa_flags == recorded[i].sa_flags, "signal %d: flags %#x, expected %#x at count %lld", sig,
		      (unsigned)cur.sa_flags, (unsigned)recorded[i].sa_flags, n);
#ifdef SA_RESTORER
		CHECK(cur.sa_restorer == recorded[i].sa_restorer, "signal %d: restorer changed", sig);
#endif
		for (int s = 1; s < NSIG; s++)
			CHECK(sigismember(&cur.sa_mask, s) == sigismember(&recorded[i].sa_mask, s),
			      "signal %d: sa_mask differs at signal %d at count %lld", sig, s, n);
	}
	sigset_t mask;
	CHECK_SYS(sigprocmask(SIG_BLOCK, NULL, &mask) == 0, "sigprocmask");
	for (int s = 1; s < NSIG; s++)
		CHECK(sigismember(&mask, s) == sigismember(&recorded_mask, s), "blocked mask differs at signal %d at count %lld",
		      s, n);
	stack_t ss;
	CHECK_SYS(sigaltstack(NULL, &ss) == 0, "sigaltstack");
	CHECK(ss.ss_sp == recorded_stack.ss_sp && ss.ss_size == recorded_stack.ss_size &&
		      ss.ss_flags == recorded_stack.ss_flags,
	      "sigaltstack is %p+%zu flags %#x, expected %p+%zu flags %#x", ss.ss_sp, ss.ss_size, ss.ss_flags,
	      recorded_stack.ss_sp, recorded_stack.ss_size, recorded_stack.ss_flags);
	sigset_t pending;
	CHECK_SYS(sigpending(&pending) == 0, "sigpending");
	for (int s = 1; s < NSIG; s++)
		CHECK(!sigismember(&pending, s), "signal %d pending at count %lld", s, n);
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS)) != -1)
		if (!common_opt(c, optarg))
			usage("sigs");

	altstack = malloc(ALTSZ);
	CHECK_SYS(altstack != NULL, "malloc");
	stack_t ss = { .ss_sp = altstack, .ss_size = ALTSZ, .ss_flags = 0 };
	CHECK_SYS(sigaltstack(&ss, NULL) == 0, "sigaltstack");

	const int usr1_mask[] = { SIGUSR2, SIGTTIN, 0 };
	install(SIGUSR1, (void *)on_usr1, SA_SIGINFO | SA_RESTART | SA_ONSTACK, usr1_mask);
	install(SIGUSR2, (void *)on_usr2, SA_RESTART | SA_NODEFER, NULL);
	install(SIGRTMIN + 2, (void *)on_rt, SA_SIGINFO, NULL);
	install(SIGHUP, (void *)SIG_IGN, 0, NULL);
	install(SIGWINCH, (void *)on_winch, SA_RESETHAND, NULL);
	install(SIGTERM, (void *)SIG_DFL, 0, NULL);

	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGPWR);
	sigaddset(&block, SIGRTMIN + 5);
	CHECK_SYS(sigprocmask(SIG_SETMASK, &block, NULL) == 0, "sigprocmask");

	for (size_t i = 0; i < NSIGS; i++)
		CHECK_SYS(sigaction(sig_at(i), NULL, &recorded[i]) == 0, "sigaction");
	CHECK_SYS(sigprocmask(SIG_BLOCK, NULL, &recorded_mask) == 0, "sigprocmask");
	CHECK_SYS(sigaltstack(NULL, &recorded_stack) == 0, "sigaltstack");

	for (long long n = 1;; n++) {
		check_state(n);

		expect_value = n;
		if (n % 2) {
			expect_code = SI_TKILL;
			CHECK_SYS(raise(SIGUSR1) == 0, "raise");
		} else {
			expect_code = SI_QUEUE;
			CHECK_SYS(sigqueue(getpid(), SIGUSR1, (union sigval){ .sival_int = (int)n }) == 0, "sigqueue");
		}
		CHECK(usr1_runs == n, "SIGUSR1 handler ran %lld times, expected %lld", usr1_runs, n);
		CHECK_SYS(raise(SIGUSR2) == 0, "raise");
		CHECK(usr2_runs == n, "SIGUSR2 handler ran %lld times, expected %lld", usr2_runs, n);

		sigset_t rt;
		sigemptyset(&rt);
		sigaddset(&rt, SIGRTMIN + 2);
		CHECK_SYS(sigprocmask(SIG_BLOCK, &rt, NULL) == 0, "sigprocmask");
		rt_n = 0;
		for (int k = 0; k < 3; k++)
			CHECK_SYS(sigqueue(getpid(), SIGRTMIN + 2, (union sigval){ .sival_int = (int)(n * 3 + k) }) == 0,
				  "sigqueue");
		CHECK_SYS(sigprocmask(SIG_UNBLOCK, &rt, NULL) == 0, "sigprocmask");
		CHECK(rt_n == 3, "%d realtime signals delivered, expected 3", rt_n);
		for (int k = 0; k < 3; k++)
			CHECK(rt_vals[k] == (int)(n * 3 + k), "realtime signal %d carried %d, expected %lld", k, rt_vals[k],
			      n * 3 + k);
		CHECK(!handler_error, "%s", handler_msg);

		check_state(n);
		out("count %lld ok", n);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
