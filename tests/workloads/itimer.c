/*
 * itimer: interval timers firing into a partly busy process.
 *
 *   itimer [-d MS] [-n N] [-e CODE] [-v VIRT_MS] [-p PROF_MS]
 *
 * ITIMER_REAL fires every MS (default 50) and ITIMER_VIRTUAL every VIRT_MS of
 * CPU time (default 5); with -p, ITIMER_PROF every PROF_MS of CPU time too.
 * Each iteration spins until a SIGVTALRM (and with -p a SIGPROF) arrives,
 * then waits in sigsuspend for the next SIGALRM, so every signal must keep
 * arriving. Checks each iteration that getitimer still reports the
 * intervals, and prints "count N alrm=A vtalrm=V prof=P" (A, V >= N; P >= N
 * with -p). If 5 s of CPU are spent without the signals, or a timer is
 * disarmed, it fails.
 */
#include "common.h"
#include <sys/time.h>

static volatile long long alrm, vtalrm, prof;

static void on_alrm(int s)
{
	(void)s;
	alrm++;
}

static void on_vtalrm(int s)
{
	(void)s;
	vtalrm++;
}

static void on_prof(int s)
{
	(void)s;
	prof++;
}

static double cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long virt_ms = 5, prof_ms = 0;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "v:p:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'v')
			virt_ms = (long)parse_num(optarg, "virtual interval");
		else if (c == 'p')
			prof_ms = (long)parse_num(optarg, "profiling interval");
		else
			usage("itimer [-v VIRT_MS] [-p PROF_MS]");
	}
	if (opt_delay_ms < 1)
		opt_delay_ms = 1;
	if (virt_ms < 1)
		virt_ms = 1;

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = on_alrm;
	CHECK_SYS(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction");
	sa.sa_handler = on_vtalrm;
	CHECK_SYS(sigaction(SIGVTALRM, &sa, NULL) == 0, "sigaction");
	sa.sa_handler = on_prof;
	CHECK_SYS(sigaction(SIGPROF, &sa, NULL) == 0, "sigaction");

	/* SIGALRM is blocked except inside sigsuspend. */
	sigset_t block, waitmask;
	sigemptyset(&block);
	sigaddset(&block, SIGALRM);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &block, &waitmask) == 0, "sigprocmask");
	sigdelset(&waitmask, SIGALRM);

	struct itimerval real = { { opt_delay_ms / 1000, (opt_delay_ms % 1000) * 1000 },
				  { opt_delay_ms / 1000, (opt_delay_ms % 1000) * 1000 } };
	struct itimerval virt = { { virt_ms / 1000, (virt_ms % 1000) * 1000 }, { virt_ms / 1000, (virt_ms % 1000) * 1000 } };
	CHECK_SYS(setitimer(ITIMER_REAL, &real, NULL) == 0, "setitimer");
	CHECK_SYS(setitimer(ITIMER_VIRTUAL, &virt, NULL) == 0, "setitimer");
	struct itimerval profv = { { prof_ms / 1000, (prof_ms % 1000) * 1000 }, { prof_ms / 1000, (prof_ms % 1000) * 1000 } };
	if (prof_ms > 0)
		CHECK_SYS(setitimer(ITIMER_PROF, &profv, NULL) == 0, "setitimer");

	for (long long n = 1;; n++) {
		long long v0 = vtalrm, p0 = prof;
		double start = cpu_seconds();
		volatile unsigned long spin = 0;
		while (vtalrm == v0 || (prof_ms > 0 && prof == p0)) {
			spin++;
			if ((spin & 0xfffff) == 0)
				CHECK(cpu_seconds() - start < 5.0, "no SIGVTALRM%s after 5 s of CPU time at count %lld",
				      prof_ms > 0 ? " or SIGPROF" : "", n);
		}
		long long a0 = alrm;
		while (alrm == a0)
			sigsuspend(&waitmask);

		struct itimerval cur;
		CHECK_SYS(getitimer(ITIMER_REAL, &cur) == 0, "getitimer");
		CHECK(cur.it_interval.tv_sec == real.it_interval.tv_sec && cur.it_interval.tv_usec == real.it_interval.tv_usec,
		      "ITIMER_REAL interval is %ld.%06ld", (long)cur.it_interval.tv_sec, (long)cur.it_interval.tv_usec);
		/* A periodic ITIMER_REAL reads 0 between an expiry and the dequeue
		 * of its SIGALRM (blocked here), which re-arms it: under load it can
		 * expire again before this check. */
		sigset_t pend;
		CHECK_SYS(sigpending(&pend) == 0, "sigpending");
		CHECK(cur.it_value.tv_sec || cur.it_value.tv_usec || sigismember(&pend, SIGALRM),
		      "ITIMER_REAL is disarmed");
		CHECK_SYS(getitimer(ITIMER_VIRTUAL, &cur) == 0, "getitimer");
		CHECK(cur.it_interval.tv_sec == virt.it_interval.tv_sec && cur.it_interval.tv_usec == virt.it_interval.tv_usec,
		      "ITIMER_VIRTUAL interval is %ld.%06ld", (long)cur.it_interval.tv_sec, (long)cur.it_interval.tv_usec);
		CHECK(cur.it_value.tv_sec || cur.it_value.tv_usec, "ITIMER_VIRTUAL is disarmed");
		if (prof_ms > 0) {
			CHECK_SYS(getitimer(ITIMER_PROF, &cur) == 0, "getitimer");
			CHECK(cur.it_interval.tv_sec == profv.it_interval.tv_sec &&
				      cur.it_interval.tv_usec == profv.it_interval.tv_usec,
			      "ITIMER_PROF interval is %ld.%06ld", (long)cur.it_interval.tv_sec,
			      (long)cur.it_interval.tv_usec);
			CHECK(cur.it_value.tv_sec || cur.it_value.tv_usec, "ITIMER_PROF is disarmed");
			CHECK(prof >= n, "prof %lld at count %lld", prof, n);
		}
		CHECK(alrm >= n && vtalrm >= n, "alrm %lld vtalrm %lld at count %lld", alrm, vtalrm, n);
		out("count %lld alrm=%lld vtalrm=%lld prof=%lld", n, alrm, vtalrm, prof);
		maybe_done(n);
	}
}
