/*
 * mqueue: POSIX message queues shared by a parent and its child, checked
 * on every iteration.
 *
 *   mqueue [-d MS] [-n N] -q NAME [-N]
 *
 * Queues (NAME is given by the test, which unlinks them afterwards):
 *   Q  "/NAME", maxmsg 4, msgsize 32, mode 0640: the ping. The parent
 *      holds it write-only and non-blocking, the child read-only and
 *      blocking: the child waits in mq_receive.
 *   S  "/NAME-s", maxmsg 8, msgsize 64: three messages that stay, of
 *      priorities 1, 7, 1 ("low-a", "high", "low-b").
 *   D  unlinked at once, maxmsg 3, msgsize 16: two messages, priorities 2
 *      and 0 ("two", "zero").
 * Parent: for n = 1, 2, ...: sends n on Q with priority n % 5; takes
 * every message of S and D, checks them (order, priorities, bytes) and
 * sends them back; checks the attributes and flags of its descriptors;
 * prints "parent count n" once the child answered on a pipe.
 * Child: receives n on Q (with its priority), checks it, answers on the
 * pipe, prints "child count n".
 * With -N the parent also makes "/NAME-n" and registers a notification
 * on it (mq_notify, SIGUSR2): crtools refuses to checkpoint that.
 * Prints "ready" once everything is set up.
 */
#include "common.h"
#include <mqueue.h>
#include <sys/stat.h>
#include <sys/wait.h>

struct msg {
	unsigned prio;
	const char *text;
};

static const struct msg s_msgs[] = { { 7, "high" }, { 1, "low-a" }, { 1, "low-b" } };
static const struct msg d_msgs[] = { { 2, "two" }, { 0, "zero" } };

static void check_attr(mqd_t q, long maxmsg, long msgsize, long flags, const char *what)
{
	struct mq_attr a;
	CHECK_SYS(mq_getattr(q, &a) == 0, "mq_getattr");
	CHECK(a.mq_maxmsg == maxmsg && a.mq_msgsize == msgsize, "%s: maxmsg %ld msgsize %ld", what,
	      a.mq_maxmsg, a.mq_msgsize);
	CHECK(a.mq_flags == flags, "%s: flags %#lx", what, a.mq_flags);
}

/* Takes every message of q, checks them against want, sends them back. */
static void cycle(mqd_t q, const struct msg *want, int n, long msgsize, const char *what)
{
	struct mq_attr a;
	CHECK_SYS(mq_getattr(q, &a) == 0, "mq_getattr");
	CHECK(a.mq_curmsgs == n, "%s holds %ld messages, not %d", what, a.mq_curmsgs, n);
	char buf[128];
	for (int i = 0; i < n; i++) {
		unsigned prio;
		ssize_t len = mq_receive(q, buf, msgsize, &prio);
		CHECK_SYS(len >= 0, "mq_receive");
		CHECK(prio == want[i].prio && (size_t)len == strlen(want[i].text) &&
			      !memcmp(buf, want[i].text, len),
		      "%s message %d: priority %u [%.*s]", what, i, prio, (int)len, buf);
	}
	for (int i = 0; i < n; i++)
		CHECK_SYS(mq_send(q, want[i].text, strlen(want[i].text), want[i].prio) == 0, "mq_send");
}

int main(int argc, char **argv)
{
	const char *name = NULL;
	int notify = 0, c;
	while ((c = getopt(argc, argv, COMMON_OPTS "q:N")) != -1) {
		if (c == 'q')
			name = optarg;
		else if (c == 'N')
			notify = 1;
		else if (!common_opt(c, optarg))
			usage("mqueue [-d MS] [-n N] -q NAME [-N]");
	}
	if (!name)
		usage("mqueue [-d MS] [-n N] -q NAME [-N]");
	char qn[128], sn[128], dn[128];
	snprintf(qn, sizeof qn, "/%s", name);
	snprintf(sn, sizeof sn, "/%s-s", name);
	snprintf(dn, sizeof dn, "/%s-d", name);
	umask(022);
	struct mq_attr qa = { .mq_maxmsg = 4, .mq_msgsize = 32 };
	mqd_t q = mq_open(qn, O_WRONLY | O_NONBLOCK | O_CREAT | O_EXCL, 0640, &qa);
	CHECK_SYS(q != (mqd_t)-1, "mq_open Q");
	struct mq_attr sa = { .mq_maxmsg = 8, .mq_msgsize = 64 };
	mqd_t s = mq_open(sn, O_RDWR | O_CREAT | O_EXCL, 0600, &sa);
	CHECK_SYS(s != (mqd_t)-1, "mq_open S");
	struct mq_attr da = { .mq_maxmsg = 3, .mq_msgsize = 16 };
	mqd_t d = mq_open(dn, O_RDWR | O_CREAT | O_EXCL, 0600, &da);
	CHECK_SYS(d != (mqd_t)-1, "mq_open D");
	CHECK_SYS(mq_unlink(dn) == 0, "mq_unlink D");
	/* Sent out of order: the queue orders them. */
	CHECK_SYS(mq_send(s, "low-a", 5, 1) == 0 && mq_send(s, "high", 4, 7) == 0 &&
			  mq_send(s, "low-b", 5, 1) == 0,
		  "mq_send S");
	CHECK_SYS(mq_send(d, "zero", 4, 0) == 0 && mq_send(d, "two", 3, 2) == 0, "mq_send D");
	if (notify) {
		/* N: "/NAME-n", empty, with a notification nobody triggers. */
		char nn[128];
		snprintf(nn, sizeof nn, "/%s-n", name);
		mqd_t m = mq_open(nn, O_RDWR | O_CREAT | O_EXCL, 0600, NULL);
		CHECK_SYS(m != (mqd_t)-1, "mq_open N");
		struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2 };
		signal(SIGUSR2, SIG_IGN);
		CHECK_SYS(mq_notify(m, &ev) == 0, "mq_notify");
	}
	int answer[2];
	CHECK_SYS(pipe(answer) == 0, "pipe");

	pid_t child = fork();
	CHECK_SYS(child >= 0, "fork");
	if (child == 0) {
		set_tag("child");
		close(answer[0]);
		mq_close(q);
		mqd_t r = mq_open(qn, O_RDONLY);
		CHECK_SYS(r != (mqd_t)-1, "mq_open Q in the child");
		out("ready");
		for (uint64_t seen = 0;;) {
			char buf[32];
			unsigned prio;
			ssize_t len = mq_receive(r, buf, sizeof buf, &prio);
			if (len < 0 && errno == EINTR)
				continue;
			CHECK_SYS(len == 8, "mq_receive Q");
			uint64_t v;
			memcpy(&v, buf, 8);
			CHECK(v == seen + 1 && prio == v % 5, "ping %llu (priority %u) after %llu",
			      (unsigned long long)v, prio, (unsigned long long)seen);
			check_attr(r, 4, 32, 0, "Q in the child");
			seen = v;
			CHECK_SYS(write(answer[1], &v, 8) == 8, "write");
			out("count %llu", (unsigned long long)v);
		}
	}
	set_tag("parent");
	close(answer[1]);
	for (uint64_t n = 1;; n++) {
		CHECK_SYS(mq_send(q, (const char *)&n, 8, n % 5) == 0, "mq_send Q");
		cycle(s, s_msgs, 3, 64, "S");
		cycle(d, d_msgs, 2, 16, "D");
		check_attr(q, 4, 32, O_NONBLOCK, "Q");
		check_attr(s, 8, 64, 0, "S");
		check_attr(d, 3, 16, 0, "D");
		uint64_t v;
		ssize_t r;
		while ((r = read(answer[0], &v, 8)) < 0 && errno == EINTR)
			;
		CHECK_SYS(r == 8 && v == n, "answer");
		out("count %llu", (unsigned long long)n);
		if (opt_max > 0 && (long long)n >= opt_max) {
			kill(child, SIGKILL);
			waitpid(child, NULL, 0);
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
