/*
 * inet: a small TCP/UDP server on loopback for tests/inet.rs.
 *
 * Makes, and prints the ports of:
 *     tcp PORT     a TCP listener on 127.0.0.1 (SO_REUSEADDR, TCP_NODELAY,
 *                  keepalive 77/11/5, SO_RCVBUF 65536, backlog 17)
 *     tcp6 PORT    a TCP listener on [::1] (IPV6_V6ONLY, SO_REUSEPORT)
 *     udp PORT     a UDP socket bound on 127.0.0.1
 * and an unbound TCP socket; then "ready".
 *
 * Each accepted connection is a line echo: "LINE\n" -> "echo:LINE\n".
 * "hold N\n" queues N bytes of the pattern (byte i = i % 251) and stops
 * reading that connection until SIGUSR2; once a write would block it
 * prints "full". A datagram "X" is answered "udp:X". SIGUSR1 prints each
 * socket's options as read back with getsockopt:
 *     opt listen reuseaddr=1 nodelay=1 keepalive=1 idle=77 intvl=11 cnt=5 rcvbuf=131072 backlog=17
 *     opt listen6 v6only=1 reuseport=1
 *     opt udp port=P
 *     opt unbound state=7 port=0
 *     opt conn nodelay=1 keepalive=1 idle=77
 * A connection that fails prints "conn error E" or "conn eof". Every -d
 * milliseconds (default 50) it prints "count N", so a test knows when the
 * restored process runs.
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#define MAXC 16

struct conn {
	int fd;
	int hold;
	char *out;
	size_t out_len, out_off, out_cap;
	char in[4096];
	size_t in_len;
	int full_said;
};

static volatile sig_atomic_t want_opts, want_resume;
static void on_usr1(int s) { (void)s; want_opts = 1; }
static void on_usr2(int s) { (void)s; want_resume = 1; }

static int geti(int fd, int level, int opt)
{
	int v = -1;
	socklen_t l = sizeof v;
	if (getsockopt(fd, level, opt, &v, &l) < 0)
		return -1;
	return v;
}

static void seti(int fd, int level, int opt, int v)
{
	if (setsockopt(fd, level, opt, &v, sizeof v) < 0) {
		fail("setsockopt %d/%d: %s", level, opt, strerror(errno));
		exit(1);
	}
}

static int port_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t l = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &l) < 0)
		return -1;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void push(struct conn *c, const char *p, size_t n)
{
	if (c->out_len + n > c->out_cap) {
		c->out_cap = (c->out_len + n) * 2;
		c->out = realloc(c->out, c->out_cap);
		if (!c->out) {
			fail("out of memory");
			exit(1);
		}
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

static void drop_conn(struct conn *c, const char *why, int err)
{
	if (err)
		out("conn error %s", strerror(err));
	else
		out("conn %s", why);
	close(c->fd);
	free(c->out);
	memset(c, 0, sizeof *c);
	c->fd = -1;
}

int main(int argc, char **argv)
{
	int opt;
	while ((opt = getopt(argc, argv, COMMON_OPTS)) != -1) {
		if (!common_opt(opt, optarg))
			usage("inet");
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {0};
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);

	int l4 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	seti(l4, SOL_SOCKET, SO_REUSEADDR, 1);
	seti(l4, IPPROTO_TCP, TCP_NODELAY, 1);
	seti(l4, SOL_SOCKET, SO_KEEPALIVE, 1);
	seti(l4, IPPROTO_TCP, TCP_KEEPIDLE, 77);
	seti(l4, IPPROTO_TCP, TCP_KEEPINTVL, 11);
	seti(l4, IPPROTO_TCP, TCP_KEEPCNT, 5);
	seti(l4, SOL_SOCKET, SO_RCVBUF, 65536);
	struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (bind(l4, (struct sockaddr *)&a4, sizeof a4) < 0 || listen(l4, 17) < 0) {
		fail("tcp listener: %s", strerror(errno));
		return 1;
	}
	int l6 = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
	seti(l6, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	seti(l6, SOL_SOCKET, SO_REUSEPORT, 1);
	struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	if (bind(l6, (struct sockaddr *)&a6, sizeof a6) < 0 || listen(l6, 5) < 0) {
		fail("tcp6 listener: %s", strerror(errno));
		return 1;
	}
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (bind(u, (struct sockaddr *)&a4, sizeof a4) < 0) {
		fail("udp: %s", strerror(errno));
		return 1;
	}
	int unbound = socket(AF_INET, SOCK_STREAM, 0);
	out("tcp %d", port_of(l4));
	out("tcp6 %d", port_of(l6));
	out("udp %d", port_of(u));
	out("ready");

	struct conn cs[MAXC];
	for (int i = 0; i < MAXC; i++) {
		memset(&cs[i], 0, sizeof cs[i]);
		cs[i].fd = -1;
	}
	long long count = 0;
	struct timespec last;
	clock_gettime(CLOCK_MONOTONIC, &last);
	for (;;) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000 >= opt_delay_ms) {
			last = now;
			out("count %lld", ++count);
		}
		if (want_opts) {
			want_opts = 0;
			struct tcp_info ti;
			socklen_t tl = sizeof ti;
			int backlog = -1;
			if (getsockopt(l4, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0)
				backlog = (int)ti.tcpi_sacked;
			out("opt listen reuseaddr=%d nodelay=%d keepalive=%d idle=%d intvl=%d cnt=%d rcvbuf=%d backlog=%d",
			    geti(l4, SOL_SOCKET, SO_REUSEADDR), geti(l4, IPPROTO_TCP, TCP_NODELAY),
			    geti(l4, SOL_SOCKET, SO_KEEPALIVE), geti(l4, IPPROTO_TCP, TCP_KEEPIDLE),
			    geti(l4, IPPROTO_TCP, TCP_KEEPINTVL), geti(l4, IPPROTO_TCP, TCP_KEEPCNT),
			    geti(l4, SOL_SOCKET, SO_RCVBUF), backlog);
			out("opt listen6 v6only=%d reuseport=%d", geti(l6, IPPROTO_IPV6, IPV6_V6ONLY),
			    geti(l6, SOL_SOCKET, SO_REUSEPORT));
			out("opt udp port=%d", port_of(u));
			tl = sizeof ti;
			int st = getsockopt(unbound, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 ? ti.tcpi_state : -1;
			out("opt unbound state=%d port=%d", st, port_of(unbound));
			for (int i = 0; i < MAXC; i++)
				if (cs[i].fd >= 0)
					out("opt conn nodelay=%d keepalive=%d idle=%d", geti(cs[i].fd, IPPROTO_TCP, TCP_NODELAY),
					    geti(cs[i].fd, SOL_SOCKET, SO_KEEPALIVE), geti(cs[i].fd, IPPROTO_TCP, TCP_KEEPIDLE));
		}
		if (want_resume) {
			want_resume = 0;
			for (int i = 0; i < MAXC; i++)
				cs[i].hold = 0;
			out("resumed");
		}
		struct pollfd p[3 + MAXC];
		p[0] = (struct pollfd){.fd = l4, .events = POLLIN};
		p[1] = (struct pollfd){.fd = l6, .events = POLLIN};
		p[2] = (struct pollfd){.fd = u, .events = POLLIN};
		for (int i = 0; i < MAXC; i++) {
			short ev = 0;
			if (cs[i].fd >= 0) {
				if (!cs[i].hold)
					ev |= POLLIN;
				if (cs[i].out_off < cs[i].out_len)
					ev |= POLLOUT;
			}
			p[3 + i] = (struct pollfd){.fd = ev ? cs[i].fd : -1, .events = ev};
		}
		int n = poll(p, 3 + MAXC, (int)opt_delay_ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fail("poll: %s", strerror(errno));
			return 1;
		}
		for (int k = 0; k < 2; k++) {
			if (!(p[k].revents & POLLIN))
				continue;
			int c = accept4(p[k].fd, NULL, NULL, SOCK_NONBLOCK);
			if (c < 0)
				continue;
			int i = 0;
			while (i < MAXC && cs[i].fd >= 0)
				i++;
			if (i == MAXC) {
				close(c);
				continue;
			}
			cs[i].fd = c;
			out("accepted");
		}
		if (p[2].revents & POLLIN) {
			char b[512];
			struct sockaddr_storage from;
			socklen_t fl = sizeof from;
			ssize_t r = recvfrom(u, b + 4, sizeof b - 4, 0, (struct sockaddr *)&from, &fl);
			if (r >= 0) {
				memcpy(b, "udp:", 4);
				sendto(u, b, (size_t)r + 4, 0, (struct sockaddr *)&from, fl);
			}
		}
		for (int i = 0; i < MAXC; i++) {
			struct conn *c = &cs[i];
			short re = p[3 + i].revents;
			if (c->fd < 0 || !re)
				continue;
			if (re & POLLOUT) {
				while (c->out_off < c->out_len) {
					ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
					if (w < 0) {
						if (errno == EAGAIN) {
							if (!c->full_said) {
								c->full_said = 1;
								out("full");
							}
							break;
						}
						if (errno == EINTR)
							continue;
						drop_conn(c, "", errno);
						break;
					}
					c->out_off += (size_t)w;
				}
				if (c->fd < 0)
					continue;
				if (c->out_off == c->out_len)
					c->out_off = c->out_len = 0;
			}
			if (!(re & (POLLIN | POLLHUP | POLLERR)) || c->hold)
				continue;
			ssize_t r = read(c->fd, c->in + c->in_len, sizeof c->in - c->in_len);
			if (r < 0) {
				if (errno != EAGAIN && errno != EINTR)
					drop_conn(c, "", errno);
				continue;
			}
			if (r == 0) {
				drop_conn(c, "eof", 0);
				continue;
			}
			c->in_len += (size_t)r;
			char *nl;
			while (!c->hold && (nl = memchr(c->in, '\n', c->in_len))) {
				size_t len = (size_t)(nl - c->in) + 1;
				long hold;
				if (sscanf(c->in, "hold %ld", &hold) == 1) {
					char *pat = malloc((size_t)hold);
					for (long j = 0; j < hold; j++)
						pat[j] = (char)(j % 251);
					push(c, pat, (size_t)hold);
					free(pat);
					c->hold = 1;
					c->full_said = 0;
				} else {
					push(c, "echo:", 5);
					push(c, c->in, len);
				}
				memmove(c->in, c->in + len, c->in_len - len);
				c->in_len -= len;
			}
		}
	}
}
