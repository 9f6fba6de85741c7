/*
 * traps: a process that catches SIGTRAP and its child that ignores it, each
 * with a second thread that sleeps.
 *
 *   traps [-d MS] [-n N] [-e CODE]
 *
 * Each process prints "TAG count N" (TAG: catch, ignore) and checks every
 * iteration, with sigaction, that its SIGTRAP action is still the one it
 * set (handler and flags): a checkpoint must not change it. A caught
 * SIGTRAP (none is sent) fails too.
 */
#include "common.h"
#include <pthread.h>
#include <sys/wait.h>

static void on_trap(int s)
{
	(void)s;
	fail("SIGTRAP delivered");
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static void check_action(void (*want)(int), int flags)
{
	struct sigaction sa;
	CHECK_SYS(sigaction(SIGTRAP, NULL, &sa) == 0, "sigaction");
	CHECK(sa.sa_handler == want, "SIGTRAP handler changed to %p", (void *)sa.sa_handler);
	CHECK((sa.sa_flags & SA_RESTART) == (flags & SA_RESTART), "SIGTRAP flags changed to %#x",
	      (unsigned)sa.sa_flags);
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS)) != -1)
		if (!common_opt(c, optarg))
			usage("traps");

	pid_t child = fork();
	CHECK_SYS(child >= 0, "fork");
	void (*want)(int) = child ? on_trap : SIG_IGN;
	int flags = child ? SA_RESTART : 0;
	set_tag(child ? "catch" : "ignore");
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = want;
	sa.sa_flags = flags;
	CHECK_SYS(sigaction(SIGTRAP, &sa, NULL) == 0, "sigaction");
	pthread_t t;
	CHECK(pthread_create(&t, NULL, sleeper, NULL) == 0, "pthread_create");
	for (long long n = 1;; n++) {
		check_action(want, flags);
		out("count %lld", n);
		if (opt_max && n >= opt_max) {
			if (child) {
				int st;
				CHECK_SYS(waitpid(child, &st, 0) == child, "waitpid");
				CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
			}
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
