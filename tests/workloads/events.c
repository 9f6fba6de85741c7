/*
 * events: event descriptors whose state a restore must keep.
 *
 *   events [-d MS] -w DIR
 *
 * Sets up, then prints "ready" and counts ("count N") while waiting in
 * poll(2) on a signalfd (SIGUSR1, blocked) and an inotify watch of DIR
 * (IN_CREATE):
 *   - eventfd A with counter 5; eventfd B, EFD_SEMAPHORE, counter 3;
 *   - epoll E: A (data 1111), A again through a dup at another number
 *     (5555), pipe P readable, edge-triggered (2222), pipe Q empty (3333),
 *     pipe R readable registered through a dup that was then closed (4444);
 *   - epoll N holding E (6666);
 *   - epoll X: pipe S readable, EPOLLONESHOT, fired once already (8888),
 *     and B with EPOLLEXCLUSIVE (9999);
 *   - timerfd T1 periodic (20 ms), timerfd T2 one-shot that expired before
 *     the checkpoint (1 unread expiration), timerfd T3 one hour away.
 * When SIGUSR1 arrives through the signalfd it prints "signal 10", then
 * what each object shows (each line below, or FAIL):
 *   "epoll 1111 2222 4444 5555", "nested 6666", "oneshot 9999",
 *   "mod ok" (EPOLL_CTL_MOD by the registered number works),
 *   "eventfd 5", "semaphore 3", "expired 1", "periodic fired",
 *   "long pending"; and for each file created in DIR: "created NAME".
 */
#include "common.h"
#include <poll.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The data of every ready event of epoll ep, sorted, as "a b c". */
static void ready_list(int ep, char *buf, size_t size)
{
	struct epoll_event ev[16];
	int n = epoll_wait(ep, ev, 16, 0);
	CHECK_SYS(n >= 0, "epoll_wait");
	uint64_t d[16];
	for (int i = 0; i < n; i++)
		d[i] = ev[i].data.u64;
	qsort(d, (size_t)n, sizeof d[0], cmp_u64);
	buf[0] = 0;
	for (int i = 0; i < n; i++) {
		size_t l = strlen(buf);
		snprintf(buf + l, size - l, "%s%llx", i ? " " : "", (unsigned long long)d[i]);
	}
}

static void add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = { .events = events, .data.u64 = data };
	CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0, "epoll_ctl");
}

static int readable_pipe(int *wr)
{
	int p[2];
	CHECK_SYS(pipe(p) == 0, "pipe");
	CHECK_SYS(write(p[1], "x", 1) == 1, "write");
	if (wr)
		*wr = p[1];
	return p[0];
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "w:")) != -1) {
		if (c == 'w')
			dir = optarg;
		else if (!common_opt(c, optarg))
			usage("events [-d MS] -w DIR");
	}
	if (!dir)
		usage("events [-d MS] -w DIR");

	int a = eventfd(5, EFD_NONBLOCK);
	int b = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
	CHECK_SYS(a >= 0 && b >= 0, "eventfd");
	int ep = epoll_create1(0), nest = epoll_create1(0), x = epoll_create1(0);
	CHECK_SYS(ep >= 0 && nest >= 0 && x >= 0, "epoll_create1");
	add(ep, a, EPOLLIN, 0x1111);
	int a2 = dup(a);
	add(ep, a2, EPOLLIN, 0x5555);
	int p = readable_pipe(NULL);
	add(ep, p, EPOLLIN | EPOLLET, 0x2222);
	int q[2];
	CHECK_SYS(pipe(q) == 0, "pipe");
	add(ep, q[0], EPOLLIN, 0x3333);
	int r = readable_pipe(NULL);
	int rdup = dup(r);
	add(ep, rdup, EPOLLIN, 0x4444);
	close(rdup);
	add(nest, ep, EPOLLIN, 0x6666);
	int s = readable_pipe(NULL);
	add(x, s, EPOLLIN | EPOLLONESHOT, 0x8888);
	char buf[256];
	ready_list(x, buf, sizeof buf);
	CHECK(!strcmp(buf, "8888"), "oneshot before: [%s]", buf);
	add(x, b, EPOLLIN | EPOLLEXCLUSIVE, 0x9999);

	int t1 = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	int t2 = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	int t3 = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
	CHECK_SYS(t1 >= 0 && t2 >= 0 && t3 >= 0, "timerfd_create");
	struct itimerspec per = { { 0, 20000000 }, { 0, 20000000 } };
	struct itimerspec once = { { 0, 0 }, { 0, 1 } };
	struct itimerspec hour = { { 0, 0 }, { 3600, 0 } };
	CHECK_SYS(timerfd_settime(t1, 0, &per, NULL) == 0, "timerfd_settime");
	CHECK_SYS(timerfd_settime(t2, 0, &once, NULL) == 0, "timerfd_settime");
	CHECK_SYS(timerfd_settime(t3, 0, &hour, NULL) == 0, "timerfd_settime");
	struct pollfd w2 = { .fd = t2, .events = POLLIN };
	CHECK_SYS(poll(&w2, 1, -1) == 1, "poll t2");

	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &m, NULL) == 0, "sigprocmask");
	int sfd = signalfd(-1, &m, 0);
	CHECK_SYS(sfd >= 0, "signalfd");
	int in = inotify_init1(IN_NONBLOCK);
	CHECK_SYS(in >= 0, "inotify_init1");
	CHECK_SYS(inotify_add_watch(in, dir, IN_CREATE) == 1, "inotify_add_watch");

	out("ready");
	for (long long n = 1;; n++) {
		struct pollfd pf[2] = { { .fd = sfd, .events = POLLIN }, { .fd = in, .events = POLLIN } };
		int k = poll(pf, 2, (int)opt_delay_ms);
		CHECK_SYS(k >= 0 || errno == EINTR, "poll");
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;
			CHECK_SYS(read(sfd, &si, sizeof si) == sizeof si, "read signalfd");
			out("signal %u", si.ssi_signo);
			ready_list(ep, buf, sizeof buf);
			CHECK(!strcmp(buf, "1111 2222 4444 5555"), "epoll: [%s]", buf);
			out("epoll %s", buf);
			ready_list(nest, buf, sizeof buf);
			CHECK(!strcmp(buf, "6666"), "nested: [%s]", buf);
			out("nested %s", buf);
			ready_list(x, buf, sizeof buf);
			CHECK(!strcmp(buf, "9999"), "oneshot: [%s]", buf);
			out("oneshot %s", buf);
			struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x7777 };
			CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_MOD, a, &ev) == 0, "epoll_ctl MOD");
			CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_DEL, q[0], NULL) == 0, "epoll_ctl DEL");
			out("mod ok");
			uint64_t v;
			CHECK_SYS(read(a, &v, 8) == 8, "read eventfd");
			out("eventfd %llu", (unsigned long long)v);
			int reads = 0;
			while (read(b, &v, 8) == 8) {
				CHECK(v == 1, "semaphore read %llu", (unsigned long long)v);
				reads++;
			}
			out("semaphore %d", reads);
			CHECK_SYS(read(t2, &v, 8) == 8, "read expired timerfd");
			out("expired %llu", (unsigned long long)v);
			struct pollfd w1 = { .fd = t1, .events = POLLIN };
			CHECK_SYS(poll(&w1, 1, -1) == 1, "poll t1");
			CHECK_SYS(read(t1, &v, 8) == 8 && v >= 1, "read periodic timerfd");
			out("periodic fired");
			struct itimerspec left;
			CHECK_SYS(timerfd_gettime(t3, &left) == 0, "timerfd_gettime");
			CHECK(left.it_value.tv_sec > 0 && left.it_value.tv_sec < 3600, "long timer: %lld s left",
			      (long long)left.it_value.tv_sec);
			out("long pending");
		}
		if (pf[1].revents & POLLIN) {
			char ib[4096] __attribute__((aligned(8)));
			ssize_t len = read(in, ib, sizeof ib);
			CHECK_SYS(len > 0, "read inotify");
			for (char *e = ib; e < ib + len;) {
				struct inotify_event *ie = (struct inotify_event *)e;
				CHECK(ie->wd == 1 && (ie->mask & IN_CREATE), "inotify event wd %d mask %x", ie->wd, ie->mask);
				out("created %s", ie->len ? ie->name : "?");
				e += sizeof *ie + ie->len;
			}
		}
		out("count %lld", n);
		maybe_done(n);
	}
}
