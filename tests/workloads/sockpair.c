/*
 * sockpair: a ping-pong over a Unix stream socket pair between a parent and
 * its child, plus a datagram socket pair that always holds queued messages.
 *
 *   sockpair [-d MS] [-n N] [-e CODE]
 *
 * The parent sends "ping N", the child answers "pong N"; both check the
 * sequence. The parent keeps two datagrams queued on a datagram pair
 * (sent one iteration ahead of being received) and checks each one's bytes.
 * Lines: "parent count N" and "child count N".
 */
#include "common.h"
#include <sys/socket.h>
#include <sys/wait.h>

static void recv_line(int fd, char *buf, size_t size)
{
	size_t have = 0;
	while (have + 1 < size) {
		ssize_t r = read(fd, buf + have, 1);
		if (r < 0 && errno == EINTR)
			continue;
		CHECK_SYS(r > 0, "read");
		if (buf[have] == '\n')
			break;
		have++;
	}
	buf[have] = 0;
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS)) != -1) {
		if (!common_opt(c, optarg))
			usage("sockpair");
	}
	int s[2], d[2];
	CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0, "socketpair");
	CHECK_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, d) == 0, "socketpair dgram");
	pid_t child = fork();
	CHECK_SYS(child >= 0, "fork");
	char buf[128], want[128];
	if (child == 0) {
		set_tag("child");
		close(s[0]);
		for (long long n = 1;; n++) {
			recv_line(s[1], buf, sizeof buf);
			snprintf(want, sizeof want, "ping %lld", n);
			CHECK(!strcmp(buf, want), "got [%s], expected [%s]", buf, want);
			snprintf(buf, sizeof buf, "pong %lld\n", n);
			CHECK_SYS(write_all(s[1], buf, strlen(buf)) == 0, "write");
			out("count %lld", n);
		}
	}
	close(s[1]);
	set_tag("parent");
	/* Two datagrams always queued: send n+2 before receiving n. */
	for (long long n = 1; n <= 2; n++) {
		snprintf(buf, sizeof buf, "datagram %lld", n);
		CHECK_SYS(send(d[0], buf, strlen(buf), 0) == (ssize_t)strlen(buf), "send");
	}
	for (long long n = 1;; n++) {
		snprintf(buf, sizeof buf, "datagram %lld", n + 2);
		CHECK_SYS(send(d[0], buf, strlen(buf), 0) == (ssize_t)strlen(buf), "send");
		snprintf(buf, sizeof buf, "ping %lld\n", n);
		CHECK_SYS(write_all(s[0], buf, strlen(buf)) == 0, "write");
		recv_line(s[0], buf, sizeof buf);
		snprintf(want, sizeof want, "pong %lld", n);
		CHECK(!strcmp(buf, want), "got [%s], expected [%s]", buf, want);
		ssize_t r = recv(d[1], buf, sizeof buf - 1, 0);
		CHECK_SYS(r > 0, "recv");
		buf[r] = 0;
		snprintf(want, sizeof want, "datagram %lld", n);
		CHECK(!strcmp(buf, want), "datagram [%s], expected [%s]", buf, want);
		out("count %lld", n);
		if (opt_max > 0 && n >= opt_max) {
			kill(child, SIGKILL);
			waitpid(child, NULL, 0);
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
