/*
 * fifo: a FIFO opened three ways, with data buffered in it.
 *
 *   fifo [-d MS] [-n N] [-e CODE] -D DIR
 *
 * Creates DIR/fifo and opens it O_RDWR, O_RDONLY|O_NONBLOCK and O_WRONLY.
 * Each iteration writes a 50-byte record derived from N (alternating the
 * O_WRONLY and O_RDWR fds) and reads back the record of N-3 (alternating the
 * O_RDONLY and O_RDWR fds), so 3 records are always buffered. Checks the
 * open flags and that the path is still a FIFO. Prints "count N".
 */
#include "common.h"
#include <sys/ioctl.h>
#include <sys/stat.h>

#define REC 50

static void record(unsigned char *r, long long n)
{
	for (int i = 0; i < REC; i++)
		r[i] = (unsigned char)(mix64((uint64_t)n * 313 + (uint64_t)i) & 0xff);
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "D:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'D')
			dir = optarg;
		else
			usage("fifo -D DIR");
	}
	if (!dir)
		usage("fifo -D DIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/fifo", dir);
	unlink(path);
	CHECK_SYS(mkfifo(path, 0600) == 0, "mkfifo");
	int rw = open(path, O_RDWR);
	CHECK_SYS(rw >= 0, "open O_RDWR");
	int ro = open(path, O_RDONLY | O_NONBLOCK);
	CHECK_SYS(ro >= 0, "open O_RDONLY");
	int wo = open(path, O_WRONLY);
	CHECK_SYS(wo >= 0, "open O_WRONLY");
	int fl_rw = fcntl(rw, F_GETFL), fl_ro = fcntl(ro, F_GETFL), fl_wo = fcntl(wo, F_GETFL);

	unsigned char want[REC], got[REC];
	for (long long i = -2; i <= 0; i++) {
		record(want, i);
		CHECK_SYS(write_all(wo, want, REC) == 0, "write");
	}
	for (long long n = 1;; n++) {
		CHECK(fcntl(rw, F_GETFL) == fl_rw && fcntl(ro, F_GETFL) == fl_ro && fcntl(wo, F_GETFL) == fl_wo,
		      "open flags changed");
		struct stat st;
		CHECK_SYS(stat(path, &st) == 0 && S_ISFIFO(st.st_mode), "the fifo is gone");
		int avail = -1;
		CHECK_SYS(ioctl(ro, FIONREAD, &avail) == 0, "FIONREAD");
		CHECK(avail == 3 * REC, "%d bytes buffered, expected %d", avail, 3 * REC);
		record(want, n);
		CHECK_SYS(write_all(n % 2 ? wo : rw, want, REC) == 0, "write");
		ssize_t r = read(n % 2 ? ro : rw, got, REC);
		CHECK_SYS(r == REC, "read");
		record(want, n - 3);
		CHECK(!memcmp(got, want, REC), "record %lld read back wrong", n - 3);
		out("count %lld", n);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
