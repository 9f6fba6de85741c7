/*
 * ptyecho: a terminal session with a child program on the slave side.
 *
 *   ptyecho [-d MS] [-n N] [-e CODE]
 *
 * Opens a pty (canonical, echo on) and forks a child that starts a session,
 * takes the slave as its controlling terminal (stdin, stdout, stderr) and
 * runs cat(1). Each iteration writes "line N\n" to the master and reads
 * back the echo and cat's copy, both "line N\r\n". Prints
 * "count N pts=P cat=PID".
 */
#include "common.h"
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS)) != -1)
		if (!common_opt(c, optarg))
			usage("ptyecho");
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	CHECK_SYS(m >= 0, "posix_openpt");
	CHECK_SYS(grantpt(m) == 0 && unlockpt(m) == 0, "unlockpt");
	int num;
	CHECK_SYS(ioctl(m, TIOCGPTN, &num) == 0, "TIOCGPTN");
	char path[64];
	snprintf(path, sizeof(path), "/dev/pts/%d", num);
	pid_t child = fork();
	CHECK_SYS(child >= 0, "fork");
	if (child == 0) {
		close(m);
		CHECK_SYS(setsid() >= 0, "setsid");
		int s = open(path, O_RDWR);
		CHECK_SYS(s >= 0, "open slave");
		CHECK_SYS(ioctl(s, TIOCSCTTY, 0) == 0, "TIOCSCTTY");
		dup2(s, 0);
		dup2(s, 1);
		dup2(s, 2);
		if (s > 2)
			close(s);
		execlp("cat", "cat", (char *)NULL);
		_exit(127);
	}
	for (long long n = 1;; n++) {
		char want[128], got[128];
		int len = snprintf(want, sizeof(want), "line %lld\r\nline %lld\r\n", n, n);
		char msg[64];
		int ml = snprintf(msg, sizeof(msg), "line %lld\n", n);
		CHECK_SYS(write_all(m, msg, (size_t)ml) == 0, "write master");
		int have = 0;
		while (have < len) {
			struct pollfd p = { .fd = m, .events = POLLIN };
			int r = poll(&p, 1, 5000);
			if (r < 0 && errno == EINTR)
				continue;
			CHECK(r == 1, "no echo after line %lld (got %d bytes: %.*s)", n, have, have, got);
			ssize_t k = read(m, got + have, (size_t)(len - have));
			if (k < 0 && errno == EINTR)
				continue;
			CHECK_SYS(k > 0, "read master");
			have += (int)k;
		}
		CHECK(!memcmp(got, want, (size_t)len), "echo of line %lld: %.*s", n, have, got);
		out("count %lld pts=%d cat=%d", n, num, (int)child);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
