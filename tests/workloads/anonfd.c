/*
 * anonfd: holds an event object crtools refuses, and counts.
 *
 *   anonfd [-d MS] -k uring|uffd|mq
 *
 * Makes an io_uring instance (io_uring_setup), a userfaultfd or a POSIX
 * message queue (unlinked at once, so nothing is left behind), prints
 * "fd N" with its descriptor number, then "count N" lines.
 */
#include "common.h"
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	const char *kind = NULL;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "k:")) != -1) {
		if (c == 'k')
			kind = optarg;
		else if (!common_opt(c, optarg))
			usage("anonfd [-d MS] -k uring|uffd|mq");
	}
	if (!kind)
		usage("anonfd [-d MS] -k uring|uffd|mq");
	long fd;
	if (!strcmp(kind, "uring")) {
		/* struct io_uring_params: 120 bytes, zeroed. */
		unsigned char params[120] = { 0 };
		fd = syscall(SYS_io_uring_setup, 4, params);
	} else if (!strcmp(kind, "mq")) {
		char name[64];
		snprintf(name, sizeof name, "crtools-anonfd-%d", (int)getpid());
		fd = syscall(SYS_mq_open, name, O_CREAT | O_RDWR, 0600, NULL);
		if (fd >= 0)
			syscall(SYS_mq_unlink, name);
	} else {
		fd = syscall(SYS_userfaultfd, O_CLOEXEC);
	}
	CHECK_SYS(fd >= 0, kind);
	out("fd %ld", fd);
	for (long long n = 1;; n++) {
		out("count %lld", n);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
