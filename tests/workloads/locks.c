/*
 * locks: holds advisory file locks on FILE and counts; SIGUSR1 releases them.
 *
 *     locks -m MODE -f FILE [-d MS]
 *
 * MODE:
 *   posix     POSIX write lock on bytes 100-199, read lock on 300 to EOF
 *   shared    POSIX read lock on the whole file in the parent ("[parent]")
 *             and in a forked child that opens FILE itself ("[child]")
 *   ofd       OFD write lock on bytes 0-9, OFD read lock on 500 to EOF, on
 *             one description shared with a forked child ("[child]")
 *   flock-sh  flock shared lock
 *   flock-ex  flock exclusive lock
 *
 * Prints "locked" once its locks are held (the parent after the child's),
 * then "count N"; on SIGUSR1 a process releases its own locks (for OFD and
 * flock: the locks of its description) and prints "released".
 *
 *     locks -p KIND -t r|w -s START -l LEN -f FILE
 *
 * Probe: tries to take a lock (KIND posix, ofd or flock; LEN 0 = to EOF)
 * without waiting; exits 0 if it got it, 3 if it was refused, 1 on error.
 */
#include "common.h"

#include <sys/file.h>
#include <sys/wait.h>

static volatile sig_atomic_t release_now;

static void on_usr1(int sig)
{
	(void)sig;
	release_now = 1;
}

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock l = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	return fcntl(fd, cmd, &l);
}

static int probe(const char *kind, const char *rw, off_t start, off_t len, const char *path)
{
	int fd = open(path, O_RDWR);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	short type = rw[0] == 'w' ? F_WRLCK : F_RDLCK;
	int r;
	if (strcmp(kind, "posix") == 0)
		r = setlk(fd, F_SETLK, type, start, len);
	else if (strcmp(kind, "ofd") == 0)
		r = setlk(fd, F_OFD_SETLK, type, start, len);
	else
		r = flock(fd, (type == F_WRLCK ? LOCK_EX : LOCK_SH) | LOCK_NB);
	if (r == 0)
		return 0;
	if (errno == EAGAIN || errno == EACCES || errno == EWOULDBLOCK)
		return 3;
	perror("lock");
	return 1;
}

/* Counts until SIGUSR1, then releases with `unlock` and counts on. */
static void run(int fd, void (*unlock)(int))
{
	signal(SIGUSR1, on_usr1);
	out("locked");
	for (long long n = 1;; n++) {
		if (release_now == 1) {
			release_now = 2;
			unlock(fd);
			out("released");
		}
		out("count %lld", n);
		struct timespec ts = {opt_delay_ms / 1000, (opt_delay_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
}

static void posix_unlock(int fd)
{
	if (setlk(fd, F_SETLK, F_UNLCK, 0, 0) != 0)
		fail("unlock: %s", strerror(errno));
}

static void ofd_unlock(int fd)
{
	if (setlk(fd, F_OFD_SETLK, F_UNLCK, 0, 0) != 0)
		fail("unlock: %s", strerror(errno));
}

static void flock_unlock(int fd)
{
	if (flock(fd, LOCK_UN) != 0)
		fail("unlock: %s", strerror(errno));
}

int main(int argc, char **argv)
{
	const char *mode = NULL, *path = NULL, *kind = NULL, *rw = "w";
	off_t start = 0, len = 0;
	int c;
	while ((c = getopt(argc, argv, "m:f:d:p:t:s:l:")) != -1) {
		switch (c) {
		case 'm': mode = optarg; break;
		case 'f': path = optarg; break;
		case 'd': opt_delay_ms = atol(optarg); break;
		case 'p': kind = optarg; break;
		case 't': rw = optarg; break;
		case 's': start = atoll(optarg); break;
		case 'l': len = atoll(optarg); break;
		default: return 2;
		}
	}
	if (!path)
		return 2;
	if (kind)
		return probe(kind, rw, start, len, path);
	if (!mode)
		return 2;
	int fd = open(path, O_RDWR);
	if (fd < 0)
		fail("open %s: %s", path, strerror(errno));
	if (strcmp(mode, "posix") == 0) {
		if (setlk(fd, F_SETLK, F_WRLCK, 100, 100) || setlk(fd, F_SETLK, F_RDLCK, 300, 0))
			fail("lock: %s", strerror(errno));
		run(fd, posix_unlock);
	} else if (strcmp(mode, "shared") == 0) {
		if (setlk(fd, F_SETLK, F_RDLCK, 0, 0))
			fail("lock: %s", strerror(errno));
		int pipefd[2];
		if (pipe(pipefd))
			fail("pipe: %s", strerror(errno));
		pid_t pid = fork();
		if (pid < 0)
			fail("fork: %s", strerror(errno));
		if (pid == 0) {
			/* Locks are not inherited: the child takes its own. */
			close(pipefd[0]);
			int cfd = open(path, O_RDONLY);
			if (cfd < 0 || setlk(cfd, F_SETLK, F_RDLCK, 0, 0))
				fail("child lock: %s", strerror(errno));
			close(pipefd[1]);
			set_tag("child");
			run(cfd, posix_unlock);
		}
		close(pipefd[1]);
		char b;
		if (read(pipefd[0], &b, 1) != 0)
			fail("child did not lock");
		close(pipefd[0]);
		set_tag("parent");
		run(fd, posix_unlock);
	} else if (strcmp(mode, "ofd") == 0) {
		if (setlk(fd, F_OFD_SETLK, F_WRLCK, 0, 10) || setlk(fd, F_OFD_SETLK, F_RDLCK, 500, 0))
			fail("lock: %s", strerror(errno));
		pid_t pid = fork();
		if (pid < 0)
			fail("fork: %s", strerror(errno));
		if (pid == 0) {
			/* The child shares the description and so its locks: it
			 * only counts. */
			set_tag("child");
			for (long long n = 1;; n++) {
				out("count %lld", n);
				struct timespec ts = {opt_delay_ms / 1000, (opt_delay_ms % 1000) * 1000000L};
				nanosleep(&ts, NULL);
			}
		}
		run(fd, ofd_unlock);
	} else if (strcmp(mode, "flock-sh") == 0 || strcmp(mode, "flock-ex") == 0) {
		if (flock(fd, (mode[6] == 'e' ? LOCK_EX : LOCK_SH) | LOCK_NB))
			fail("lock: %s", strerror(errno));
		run(fd, flock_unlock);
	}
	return 2;
}
