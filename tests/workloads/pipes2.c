/*
 * pipes2: one process owning both ends of a pipe, with data in flight.
 *
 *   pipes2 [-d MS] [-n N] [-e CODE] [-k K]
 *
 * Each iteration writes a 100-byte record derived from N into the pipe and
 * reads back the record of count N-K (default K 4), so K records always sit in
 * the pipe (also while checkpointed). The read end is O_NONBLOCK; FIONREAD
 * must show exactly K records before each read. Prints "count N inflight=K".
 */
#include "common.h"
#include <sys/ioctl.h>

#define REC 100

static void record(unsigned char *r, long long n)
{
	for (int i = 0; i < REC; i++)
		r[i] = (unsigned char)(mix64((uint64_t)n * 131 + (uint64_t)i) & 0xff);
}

int main(int argc, char **argv)
{
	long k = 4;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "k:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		if (c == 'k')
			k = (long)parse_num(optarg, "records in flight");
		else
			usage("pipes2 [-k K]");
	}
	if (k < 1 || k > 40)
		k = 4;
	int p[2];
	CHECK_SYS(pipe2(p, O_NONBLOCK) == 0, "pipe");
	CHECK_SYS(fcntl(p[1], F_SETFL, 0) == 0, "fcntl");
	unsigned char want[REC], got[REC];
	for (long long i = 1 - k; i <= 0; i++) {
		record(want, i);
		CHECK_SYS(write_all(p[1], want, REC) == 0, "write");
	}
	for (long long n = 1;; n++) {
		int avail = -1;
		CHECK_SYS(ioctl(p[0], FIONREAD, &avail) == 0, "FIONREAD");
		CHECK(avail == k * REC, "%d bytes in the pipe, expected %ld", avail, k * REC);
		CHECK((fcntl(p[0], F_GETFL) & O_NONBLOCK) && !(fcntl(p[1], F_GETFL) & O_NONBLOCK),
		      "pipe O_NONBLOCK flags changed");
		record(want, n);
		CHECK_SYS(write_all(p[1], want, REC) == 0, "write");
		ssize_t r = read(p[0], got, REC);
		CHECK_SYS(r == REC, "read");
		record(want, n - k);
		CHECK(!memcmp(got, want, REC), "record %lld read back wrong", n - k);
		out("count %lld inflight=%ld", n, k);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
