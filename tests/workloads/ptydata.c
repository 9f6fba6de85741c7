/*
 * ptydata: data waiting in three ptys at checkpoint time, checked byte for
 * byte after a signal.
 *
 *   ptydata [-d MS] [-n N] [-e CODE]
 *
 * Pty A: raw slave, window 24x80; 300 bytes (every byte value) written to
 * the master wait for the slave, 300 others written to the slave wait for
 * the master. Pty B: canonical slave without echo, master in packet mode;
 * "first line\nsecond line\npartial" waits for the slave and "out1\nout2\n"
 * (as "out1\r\nout2\r\n") for the master. Pty C: a master whose slave was
 * never unlocked.
 *
 * Prints "ready pts=A,B,C", then "count N" every iteration. On SIGUSR1 it
 * checks (once) that everything is as it was: the slave of A reads the 300
 * bytes and the master the other 300; the slave of B reads "first line\n"
 * and "second line\n" in two reads, and "partial" only once a newline
 * follows; the master of B reads a packet-mode data byte then
 * "out1\r\nout2\r\n"; termios, window size, packet and lock states are
 * unchanged. Then prints "data ok". From then on each iteration also sends
 * "ping N" through B and back ("pong N").
 */
#include "common.h"
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>

#define LEN 300

static volatile sig_atomic_t got_usr1;
static void on_usr1(int sig)
{
	(void)sig;
	got_usr1 = 1;
}

static void pattern(unsigned char *p, int seed)
{
	for (int i = 0; i < LEN; i++)
		p[i] = (unsigned char)(i < 256 ? (i + seed) & 0xff : mix64((uint64_t)(i * 31 + seed)) & 0xff);
}

static int open_master(int *num, int unlock)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	CHECK_SYS(m >= 0, "posix_openpt");
	CHECK_SYS(grantpt(m) == 0, "grantpt");
	if (unlock)
		CHECK_SYS(unlockpt(m) == 0, "unlockpt");
	CHECK_SYS(ioctl(m, TIOCGPTN, num) == 0, "TIOCGPTN");
	return m;
}

/* Reads exactly len bytes, failing after 5 s. */
static void read_exact(int fd, unsigned char *buf, size_t len, const char *what)
{
	size_t have = 0;
	while (have < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 5000);
		if (r < 0 && errno == EINTR)
			continue;
		CHECK(r == 1, "%s: only %zu of %zu bytes arrived", what, have, len);
		ssize_t n = read(fd, buf + have, len - have);
		if (n < 0 && errno == EINTR)
			continue;
		CHECK_SYS(n > 0, what);
		have += (size_t)n;
	}
}

/* One read of at most len bytes (one canonical line); returns its length. */
static size_t read_once(int fd, char *buf, size_t len, const char *what)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 5000);
		if (r < 0 && errno == EINTR)
			continue;
		CHECK(r == 1, "%s: nothing to read", what);
		ssize_t n = read(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		CHECK_SYS(n >= 0, what);
		return (size_t)n;
	}
}

/* Termios equal in what the kernel keeps (glibc leaves the tail of c_cc alone). */
static int same(const struct termios *a, const struct termios *b)
{
	return a->c_iflag == b->c_iflag && a->c_oflag == b->c_oflag && a->c_cflag == b->c_cflag &&
	       a->c_lflag == b->c_lflag && !memcmp(a->c_cc, b->c_cc, 19);
}

static int readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1;
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS)) != -1)
		if (!common_opt(c, optarg))
			usage("ptydata");
	signal(SIGUSR1, on_usr1);
	int na, nb, nc;
	int ma = open_master(&na, 1), mb = open_master(&nb, 1), mc = open_master(&nc, 0);
	int sa = open(ptsname(ma), O_RDWR | O_NOCTTY);
	CHECK_SYS(sa >= 0, "open slave A");
	int sb = open(ptsname(mb), O_RDWR | O_NOCTTY);
	CHECK_SYS(sb >= 0, "open slave B");

	struct termios ta, tb, now;
	CHECK_SYS(tcgetattr(sa, &ta) == 0, "tcgetattr");
	cfmakeraw(&ta);
	ta.c_cc[VMIN] = 1;
	ta.c_cc[VTIME] = 0;
	CHECK_SYS(tcsetattr(sa, TCSANOW, &ta) == 0, "tcsetattr A");
	CHECK_SYS(tcgetattr(sa, &ta) == 0, "tcgetattr");
	struct winsize ws = { .ws_row = 24, .ws_col = 80 }, w;
	CHECK_SYS(ioctl(ma, TIOCSWINSZ, &ws) == 0, "TIOCSWINSZ");
	CHECK_SYS(tcgetattr(sb, &tb) == 0, "tcgetattr");
	tb.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
	CHECK_SYS(tcsetattr(sb, TCSANOW, &tb) == 0, "tcsetattr B");
	CHECK_SYS(tcgetattr(sb, &tb) == 0, "tcgetattr");
	int one = 1;
	CHECK_SYS(ioctl(mb, TIOCPKT, &one) == 0, "TIOCPKT");

	unsigned char a_in[LEN], a_out[LEN], got[LEN];
	pattern(a_in, 0);
	pattern(a_out, 77);
	CHECK_SYS(write_all(ma, a_in, LEN) == 0, "write master A");
	CHECK_SYS(write_all(sa, a_out, LEN) == 0, "write slave A");
	const char *b_in = "first line\nsecond line\npartial";
	CHECK_SYS(write_all(mb, b_in, strlen(b_in)) == 0, "write master B");
	CHECK_SYS(write_all(sb, "out1\nout2\n", 10) == 0, "write slave B");
	out("ready pts=%d,%d,%d", na, nb, nc);

	int checked = 0;
	for (long long n = 1;; n++) {
		if (got_usr1 && !checked) {
			CHECK_SYS(tcgetattr(sa, &now) == 0, "tcgetattr A");
			CHECK(same(&now, &ta), "termios of A changed");
			CHECK_SYS(tcgetattr(sb, &now) == 0, "tcgetattr B");
			CHECK(same(&now, &tb), "termios of B changed");
			CHECK_SYS(ioctl(sa, TIOCGWINSZ, &w) == 0, "TIOCGWINSZ");
			CHECK(w.ws_row == 24 && w.ws_col == 80, "window size of A is %ux%u", w.ws_row, w.ws_col);
			int v = -1;
			CHECK_SYS(ioctl(mb, TIOCGPKT, &v) == 0 && v == 1, "packet mode of B");
			CHECK_SYS(ioctl(mc, TIOCGPTLCK, &v) == 0 && v == 1, "lock of C");
			CHECK_SYS(ioctl(ma, TIOCGPTLCK, &v) == 0 && v == 0, "lock of A");

			read_exact(sa, got, LEN, "slave A");
			CHECK(!memcmp(got, a_in, LEN), "slave A read other bytes");
			read_exact(ma, got, LEN, "master A");
			CHECK(!memcmp(got, a_out, LEN), "master A read other bytes");
			CHECK(!readable(sa) && !readable(ma), "more data in A");

			char line[64];
			size_t l = read_once(sb, line, sizeof(line), "slave B");
			CHECK(l == 11 && !memcmp(line, "first line\n", 11), "slave B line 1: %.*s", (int)l, line);
			l = read_once(sb, line, sizeof(line), "slave B");
			CHECK(l == 12 && !memcmp(line, "second line\n", 12), "slave B line 2: %.*s", (int)l, line);
			CHECK(!readable(sb), "the partial line of B is readable before its newline");
			CHECK_SYS(write_all(mb, "\n", 1) == 0, "write master B");
			l = read_once(sb, line, sizeof(line), "slave B");
			CHECK(l == 8 && !memcmp(line, "partial\n", 8), "slave B line 3: %.*s", (int)l, line);
			read_exact(mb, got, 13, "master B");
			CHECK(got[0] == TIOCPKT_DATA && !memcmp(got + 1, "out1\r\nout2\r\n", 12), "master B read other bytes");
			CHECK(!readable(mb), "more data in B");
			checked = 1;
			out("data ok");
		}
		if (checked) {
			char msg[32], line[64];
			int len = snprintf(msg, sizeof(msg), "ping %lld\n", n);
			CHECK_SYS(write_all(mb, msg, (size_t)len) == 0, "write master B");
			size_t l = read_once(sb, line, sizeof(line), "slave B");
			CHECK(l == (size_t)len && !memcmp(line, msg, l), "slave B read %.*s", (int)l, line);
			len = snprintf(msg, sizeof(msg), "pong %lld\n", n);
			CHECK_SYS(write_all(sb, msg, (size_t)len) == 0, "write slave B");
			read_exact(mb, got, (size_t)len + 2, "master B");
			CHECK(got[0] == TIOCPKT_DATA && !memcmp(got + 1, msg, (size_t)len - 1) && got[len] == '\r' &&
				      got[len + 1] == '\n',
			      "master B pong %lld", n);
		}
		out("count %lld", n);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
