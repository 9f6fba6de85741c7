/*
 * files: open files of several kinds, checked every iteration.
 *
 *   files [-d MS] [-n N] [-e CODE] -D DIR
 *
 * In DIR (which must exist) it creates and opens:
 *   fd 3..  append.log  O_WRONLY|O_APPEND|O_CLOEXEC; one line per iteration;
 *                       the offset before each write is where the last one
 *                       left it
 *           offset.dat  O_RDWR, positioned at 1000 in a 4096-byte file of a
 *                       known pattern; an 8-byte record (the count) is written
 *                       per iteration at the current offset; dup'ed to fd 100,
 *                       which shares the offset
 *           ro.dat      O_RDONLY, 64 KiB of a known pattern, read 16 bytes per
 *                       iteration (wrapping at the end)
 *           DIR         O_RDONLY|O_DIRECTORY; must stay the same directory and
 *                       openat(dirfd, "ro.dat") must work
 *           /dev/null   O_RDWR|O_NONBLOCK at fd 57
 *           deleted.tmp O_RDWR, 64 KiB of a known pattern, unlinked after
 *                       writing; pread at a varying offset must match
 * Each fd's F_GETFD and F_GETFL flags must stay as they were. Also the cwd
 * (chdir'ed to DIR) and umask (027) are checked. Prints "count N ok".
 */
#include "common.h"
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define RO_SIZE (64 * 1024)
#define DEL_SIZE (64 * 1024)
#define OFF_BASE 1000
#define OFF_FILE 4096

static unsigned char pat(uint64_t seed, size_t i)
{
	return (unsigned char)(mix64(seed ^ (i / 8)) >> (8 * (i % 8)));
}

static void make_file(const char *path, uint64_t seed, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK_SYS(fd >= 0, "create");
	unsigned char *buf = malloc(size);
	CHECK_SYS(buf != NULL, "malloc");
	for (size_t i = 0; i < size; i++)
		buf[i] = pat(seed, i);
	CHECK_SYS(write_all(fd, buf, size) == 0, "write");
	free(buf);
	close(fd);
}

struct tracked {
	const char *name;
	int fd, fd_flags, fl_flags;
};

static struct tracked tracked[6];
static size_t ntracked;

static void track(const char *name, int fd)
{
	tracked[ntracked].name = name;
	tracked[ntracked].fd = fd;
	tracked[ntracked].fd_flags = fcntl(fd, F_GETFD);
	tracked[ntracked].fl_flags = fcntl(fd, F_GETFL);
	ntracked++;
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
			usage("files -D DIR");
	}
	if (!dir)
		usage("files -D DIR");
	CHECK_SYS(chdir(dir) == 0, "chdir");
	char cwd[4096];
	CHECK_SYS(getcwd(cwd, sizeof(cwd)) != NULL, "getcwd");
	umask(027);

	make_file("ro.dat", 0x1111, RO_SIZE);
	make_file("offset.dat", 0x2222, OFF_FILE);
	make_file("deleted.tmp", 0x3333, DEL_SIZE);
	unlink("append.log");

	int logfd = open("append.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	CHECK_SYS(logfd >= 0, "open append.log");
	int offfd = open("offset.dat", O_RDWR);
	CHECK_SYS(offfd >= 0, "open offset.dat");
	CHECK_SYS(lseek(offfd, OFF_BASE, SEEK_SET) == OFF_BASE, "lseek");
	CHECK_SYS(dup2(offfd, 100) == 100, "dup2");
	int rofd = open("ro.dat", O_RDONLY);
	CHECK_SYS(rofd >= 0, "open ro.dat");
	int dirfd = open(".", O_RDONLY | O_DIRECTORY);
	CHECK_SYS(dirfd >= 0, "open dir");
	int nullfd = open("/dev/null", O_RDWR | O_NONBLOCK);
	CHECK_SYS(nullfd >= 0 && dup2(nullfd, 57) == 57, "open /dev/null");
	close(nullfd);
	nullfd = 57;
	int delfd = open("deleted.tmp", O_RDWR);
	CHECK_SYS(delfd >= 0, "open deleted.tmp");
	CHECK_SYS(unlink("deleted.tmp") == 0, "unlink");

	struct stat dirst;
	CHECK_SYS(fstat(dirfd, &dirst) == 0, "fstat");
	track("append.log", logfd);
	track("offset.dat", offfd);
	track("ro.dat", rofd);
	track("dir", dirfd);
	track("/dev/null", nullfd);
	track("deleted.tmp", delfd);

	off_t logpos = 0, ropos = 0;
	for (long long n = 1;; n++) {
		/* Flags. */
		for (size_t i = 0; i < ntracked; i++) {
			int fdf = fcntl(tracked[i].fd, F_GETFD), flf = fcntl(tracked[i].fd, F_GETFL);
			CHECK(fdf == tracked[i].fd_flags, "%s: fd flags %#x, expected %#x", tracked[i].name, fdf,
			      tracked[i].fd_flags);
			CHECK(flf == tracked[i].fl_flags, "%s: file flags %#x, expected %#x", tracked[i].name, flf,
			      tracked[i].fl_flags);
		}
		CHECK(fcntl(100, F_GETFD) == 0, "fd 100 is not open without FD_CLOEXEC");

		/* Process state. */
		char now[4096];
		CHECK_SYS(getcwd(now, sizeof(now)) != NULL, "getcwd");
		CHECK(!strcmp(now, cwd), "cwd is %s, expected %s", now, cwd);
		mode_t um = umask(027);
		CHECK(um == 027, "umask %#o, expected 027", um);

		/* Append log. */
		char line[128];
		size_t len = format_line(line, sizeof(line), "count %lld", n);
		off_t pos = lseek(logfd, 0, SEEK_CUR);
		CHECK(pos == logpos, "append.log offset %lld, expected %lld", (long long)pos, (long long)logpos);
		CHECK_SYS(write_all(logfd, line, len) == 0, "write append.log");
		logpos = lseek(logfd, 0, SEEK_CUR);
		CHECK(logpos >= pos + (off_t)len, "append.log offset did not advance");

		/* Offset file, shared with fd 100. */
		off_t want = OFF_BASE + (off_t)(n - 1) * 8;
		pos = lseek(offfd, 0, SEEK_CUR);
		CHECK(pos == want, "offset.dat offset %lld, expected %lld", (long long)pos, (long long)want);
		CHECK(lseek(100, 0, SEEK_CUR) == want, "fd 100 does not share offset.dat's offset");
		if (n > 1) {
			long long prev = 0;
			CHECK_SYS(pread(offfd, &prev, 8, want - 8) == 8, "pread offset.dat");
			CHECK(prev == n - 1, "offset.dat record %lld holds %lld", n - 1, prev);
		}
		unsigned char b;
		CHECK_SYS(pread(offfd, &b, 1, 10) == 1, "pread offset.dat");
		CHECK(b == pat(0x2222, 10), "offset.dat byte 10 changed");
		long long rec = n;
		CHECK_SYS(write_all(n % 2 ? offfd : 100, &rec, 8) == 0, "write offset.dat");

		/* Read-only file. */
		unsigned char buf[16];
		pos = lseek(rofd, 0, SEEK_CUR);
		CHECK(pos == ropos, "ro.dat offset %lld, expected %lld", (long long)pos, (long long)ropos);
		ssize_t r = read(rofd, buf, 16);
		CHECK_SYS(r == 16, "read ro.dat");
		for (size_t i = 0; i < 16; i++)
			CHECK(buf[i] == pat(0x1111, (size_t)ropos + i), "ro.dat byte %lld wrong", (long long)ropos + (long long)i);
		ropos += 16;
		if (ropos == RO_SIZE) {
			CHECK_SYS(lseek(rofd, 0, SEEK_SET) == 0, "lseek");
			ropos = 0;
		}

		/* Directory. */
		struct stat st;
		CHECK_SYS(fstat(dirfd, &st) == 0, "fstat dir");
		CHECK(S_ISDIR(st.st_mode) && st.st_ino == dirst.st_ino && st.st_dev == dirst.st_dev,
		      "directory fd changed identity");
		int t = openat(dirfd, "ro.dat", O_RDONLY);
		CHECK_SYS(t >= 0, "openat(dirfd, ro.dat)");
		close(t);

		/* /dev/null. */
		CHECK_SYS(fstat(nullfd, &st) == 0, "fstat /dev/null");
		CHECK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), "fd 57 is not /dev/null");
		CHECK(write(nullfd, line, len) == (ssize_t)len, "write /dev/null");
		CHECK(read(nullfd, buf, 16) == 0, "read /dev/null did not return EOF");

		/* Deleted file. */
		CHECK_SYS(fstat(delfd, &st) == 0, "fstat deleted.tmp");
		CHECK(st.st_nlink == 0 && st.st_size == DEL_SIZE, "deleted.tmp: nlink %lu size %lld",
		      (unsigned long)st.st_nlink, (long long)st.st_size);
		size_t off = (size_t)(mix64((uint64_t)n) % (DEL_SIZE - 64));
		unsigned char dbuf[64];
		CHECK_SYS(pread(delfd, dbuf, 64, (off_t)off) == 64, "pread deleted.tmp");
		for (size_t i = 0; i < 64; i++)
			CHECK(dbuf[i] == pat(0x3333, off + i), "deleted.tmp byte %zu wrong", off + i);
		CHECK(lseek(delfd, 0, SEEK_CUR) == 0, "deleted.tmp offset moved");

		out("count %lld ok", n);
		maybe_done(n);
		sleep_ms(opt_delay_ms);
	}
}
