/*
 * pty: two Unix98 pseudo-terminals with data in flight, one slave closed.
 *
 *   pty [-d MS] [-n N] [-e CODE]
 *
 * Opens two ptys from /dev/ptmx. Pty 1's slave is in raw mode with a window
 * size of 40x100; each iteration writes a 32-byte record derived from N into
 * the master and reads back, from the slave, the record of N-2, and the same
 * in the other direction, so data always sits in both directions of the pty.
 * Checks the slave's termios and window size are unchanged and that its pts
 * number is the same. Pty 2's slave was closed after opening: reading its
 * master must fail with EIO every iteration. Prints "count N pts=A,B".
 */
#include "common.h"
#include <sys/ioctl.h>
#include <termios.h>

#define REC 32

static void record(unsigned char *r, long long n, int dir)
{
	for (int i = 0; i < REC; i++)
		r[i] = (unsigned char)(mix64((uint64_t)n * 7 + (uint64_t)dir * 1000003 + (uint64_t)i) & 0xff);
}

static void read_exact(int fd, unsigned char *buf, size_t len)
{
	size_t have = 0;
	while (have < len) {
		ssize_t r = read(fd, buf + have, len - have);
		if (r < 0 && errno == EINTR)
			continue;
		CHECK_SYS(r > 0, "read pty");
		have += (size_t)r;
	}
}

static int open_pty(int *slave, int *num)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	CHECK_SYS(m >= 0, "posix_openpt");
	CHECK_SYS(grantpt(m) == 0 && unlockpt(m) == 0, "unlockpt");
	CHECK_SYS(ioctl(m, TIOCGPTN, num) == 0, "TIOCGPTN");
	*slave = open(ptsname(m), O_RDWR | O_NOCTTY);
	CHECK_SYS(*slave >= 0, "open slave");
	return m;
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS)) != -1)
		if (!common_opt(c, optarg))
			usage("pty");
	int s1, s2, n1, n2;
	int m1 = open_pty(&s1, &n1);
	int m2 = open_pty(&s2, &n2);
	close(s2);

	struct termios t;
	CHECK_SYS(tcgetattr(s1, &t) == 0, "tcgetattr");
	cfmakeraw(&t);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	CHECK_SYS(tcsetattr(s1, TCSANOW, &t) == 0, "tcsetattr");
	struct termios saved;
	CHECK_SYS(tcgetattr(s1, &saved) == 0, "tcgetattr");
	struct winsize ws = { .ws_row = 40, .ws_col = 100 };
	CHECK_SYS(ioctl(m1, TIOCSWINSZ, &ws) == 0, "TIOCSWINSZ");

	unsigned char want[REC], got[REC];
	for (long long i = -1; i <= 0; i++) {
		record(want, i, 0);
		CHECK_SYS(write_all(m1, want, REC) == 0, "write master");
		record(want, i, 1);
		CHECK_SYS(write_all(s1, want, REC) == 0, "write slave");
	}
	for (long long n = 1;; n++) {
		struct termios now;
		CHECK_SYS(tcgetattr(s1, &now) == 0, "tcgetattr");
		CHECK(now.c_iflag == saved.c_iflag && now.c_oflag == saved.c_oflag && now.c_cflag == saved.c_cflag &&
			      now.c_lflag == saved.c_lflag && !memcmp(now.c_cc, saved.c_cc, sizeof(now.c_cc)),
		      "slave termios changed");
		struct winsize w;
		CHECK_SYS(ioctl(s1, TIOCGWINSZ, &w) == 0, "TIOCGWINSZ");
		CHECK(w.ws_row == 40 && w.ws_col == 100, "window size %ux%u", w.ws_row, w.ws_col);
		int num = -1;
		CHECK_SYS(ioctl(m1, TIOCGPTN, &num) == 0, "TIOCGPTN");
		CHECK(num == n1, "pts number %d, expected %d", num, n1);

		record(want, n, 0);
		CHECK_SYS(write_all(m1, want, REC) == 0, "write master");
		read_exact(s1, got, REC);
		record(want, n - 2, 0);
		CHECK(!memcmp(got, want, REC), "master->slave record %lld wrong", n - 2);

		record(want, n, 1);
		CHECK_SYS(write_all(s1, want, REC) == 0, "write slave");
		read_exact(m1, got, REC);
		record(want, n - 2, 1);
		CHECK(!memcmp(got, want, REC), "slave->master record %lld wrong", n - 2);

		CHECK(read(m2, got, 1) < 0 && errno == EIO, "read of a master whose slave is closed: %s",
		      strerror(errno));
		out("count %lld pts=%d,%d", n, n1, n2);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
