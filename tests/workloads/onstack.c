/*
 * onstack: an SA_ONSTACK handler with and without an alternate stack.
 *
 *   onstack [-a] [-d MS] [-n N] [-e CODE]
 *
 * Installs a SIGUSR1 handler with SA_ONSTACK (as CPython and Go do). Without
 * -a there is no alternate stack: every iteration checks sigaltstack reports
 * SS_DISABLE and the handler runs on the normal stack. With -a a 64 KiB
 * alternate stack with SS_AUTODISARM is set: every iteration checks it reads
 * back exactly (address, size, SS_AUTODISARM) and the handler runs on it.
 * Then raises SIGUSR1 and checks the handler ran. Prints "count N ok".
 */
#include "common.h"

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif
#define ALTSZ (64 * 1024)

static char *altstack;
static volatile long long runs;
static volatile int where; /* 1: on the alternate stack, 2: not */

static void on_usr1(int sig)
{
	int local;
	(void)sig;
	where = (altstack && (char *)&local >= altstack && (char *)&local < altstack + ALTSZ) ? 1 : 2;
	runs++;
}

int main(int argc, char **argv)
{
	int alt = 0, c;
	while ((c = getopt(argc, argv, COMMON_OPTS "a")) != -1) {
		if (c == 'a')
			alt = 1;
		else if (!common_opt(c, optarg))
			usage("onstack [-a]");
	}
	if (alt) {
		altstack = malloc(ALTSZ);
		stack_t ss = { .ss_sp = altstack, .ss_flags = (int)SS_AUTODISARM, .ss_size = ALTSZ };
		if (!altstack || sigaltstack(&ss, NULL) != 0)
			fail("sigaltstack: %s", strerror(errno));
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK | SA_RESTART;
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		fail("sigaction: %s", strerror(errno));
	for (long long n = 1;; n++) {
		stack_t cur;
		if (sigaltstack(NULL, &cur) != 0)
			fail("sigaltstack read: %s", strerror(errno));
		if (!alt && !(cur.ss_flags & SS_DISABLE))
			fail("alternate stack enabled (%p, %zu bytes, flags %#x), none was set",
			     cur.ss_sp, cur.ss_size, (unsigned)cur.ss_flags);
		if (alt && (cur.ss_sp != altstack || cur.ss_size != ALTSZ ||
			    (unsigned)cur.ss_flags != SS_AUTODISARM))
			fail("alternate stack changed: %p, %zu bytes, flags %#x", cur.ss_sp,
			     cur.ss_size, (unsigned)cur.ss_flags);
		where = 0;
		long long before = runs;
		raise(SIGUSR1);
		if (runs != before + 1)
			fail("SIGUSR1 handler did not run");
		if (where != (alt ? 1 : 2))
			fail("SIGUSR1 handler ran %s the alternate stack", where == 1 ? "on" : "off");
		out("count %lld ok", n);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
