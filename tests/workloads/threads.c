/*
 * threads: several threads counting, blocked in different ways.
 *
 *   threads [-d MS] [-n N] [-e CODE] [-t T]
 *
 * T threads (default 4, the main thread is t0) each print "tK count N". Each
 * keeps its count in a local, in a __thread variable and in a heap block with
 * a pattern derived from (K, N), all checked every iteration, and checks its
 * signal mask (thread K blocks SIGRTMIN+K) and its name (prctl). Between
 * iterations thread K waits MS in a way chosen by K % 3: nanosleep,
 * pthread_cond_timedwait, or poll on an empty pipe. With -n each thread
 * stops at count N and the main thread joins them before exiting.
 */
#include "common.h"
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>

#define BLOCK 4096

static __thread long long tl_count;
static __thread int tl_index = -1;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int empty_pipe[2];

static void fill(uint64_t *b, int k, long long n)
{
	for (size_t i = 0; i < BLOCK / 8; i++)
		b[i] = mix64(((uint64_t)k << 48) ^ ((uint64_t)n << 16) ^ i);
}

static void wait_a_bit(int k)
{
	switch (k % 3) {
	case 0:
		sleep_ms(opt_delay_ms);
		break;
	case 1: {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (opt_delay_ms % 1000) * 1000000L;
		ts.tv_sec += opt_delay_ms / 1000 + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_mutex_lock(&mu);
		int r;
		do
			r = pthread_cond_timedwait(&cv, &mu, &ts);
		while (r == 0 || r == EINTR);
		pthread_mutex_unlock(&mu);
		CHECK(r == ETIMEDOUT, "pthread_cond_timedwait: %s", strerror(r));
		break;
	}
	default: {
		struct pollfd p = { .fd = empty_pipe[0], .events = POLLIN };
		int r;
		while ((r = poll(&p, 1, (int)opt_delay_ms)) < 0)
			CHECK_SYS(errno == EINTR, "poll");
		CHECK(r == 0, "poll on an empty pipe returned %d", r);
	}
	}
}

static void *run(void *arg)
{
	int k = (int)(long)arg;
	char tag[16], name[16], now[16];
	snprintf(tag, sizeof(tag), "t%d", k);
	snprintf(name, sizeof(name), "counter-%d", k);
	CHECK_SYS(prctl(PR_SET_NAME, name) == 0, "PR_SET_NAME");
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + k % 8);
	CHECK(pthread_sigmask(SIG_BLOCK, &set, NULL) == 0, "pthread_sigmask");
	tl_index = k;
	uint64_t *block = malloc(BLOCK);
	CHECK_SYS(block != NULL, "malloc");
	fill(block, k, 0);
	char prefix[24];
	snprintf(prefix, sizeof(prefix), "%s count", tag);
	for (long long n = 1;; n++) {
		CHECK(tl_count == n - 1 && tl_index == k, "%s: thread-local count %lld (index %d), expected %lld", tag,
		      tl_count, tl_index, n - 1);
		for (size_t i = 0; i < BLOCK / 8; i++)
			CHECK(block[i] == mix64(((uint64_t)k << 48) ^ ((uint64_t)(n - 1) << 16) ^ i),
			      "%s: heap word %zu wrong at count %lld", tag, i, n);
		sigset_t cur;
		pthread_sigmask(SIG_BLOCK, NULL, &cur);
		for (int s = SIGRTMIN; s < SIGRTMIN + 8; s++)
			CHECK(sigismember(&cur, s) == (s == SIGRTMIN + k % 8), "%s: signal mask changed", tag);
		CHECK_SYS(prctl(PR_GET_NAME, now) == 0, "PR_GET_NAME");
		CHECK(!strcmp(now, name), "%s: thread name '%s', expected '%s'", tag, now, name);
		tl_count = n;
		fill(block, k, n);
		out("%s %lld", prefix, n);
		if (opt_max > 0 && n >= opt_max)
			return NULL;
		wait_a_bit(k);
	}
}

int main(int argc, char **argv)
{
	long t = 4;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "t:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 't')
			t = (long)parse_num(optarg, "threads");
		else
			usage("threads [-t T]");
	}
	if (t < 1 || t > 64)
		t = 4;
	CHECK_SYS(pipe(empty_pipe) == 0, "pipe");
	pthread_t th[64];
	for (long k = 1; k < t; k++)
		CHECK(pthread_create(&th[k], NULL, run, (void *)k) == 0, "pthread_create");
	run((void *)0);
	for (long k = 1; k < t; k++)
		pthread_join(th[k], NULL);
	return opt_exit;
}
