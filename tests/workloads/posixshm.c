/*
 * posixshm: POSIX shared memory and a named semaphore, shared between a
 * parent and its child, checked on every iteration.
 *
 *   posixshm [-d MS] [-n N] -s NAME
 *
 * Objects (NAME is given by the test, which removes them afterwards):
 *   S  shm_open("/NAME"), mode 0640, 3 pages: page 0 a pattern, page 1
 *      the pong, page 2 the ping. The parent maps it shared and keeps its
 *      descriptor (offset 5); the child opens it again by name, maps it
 *      and keeps its own descriptor (read-only, offset 9).
 *   M  sem_open("/NAME-sem") (a file /dev/shm/sem.NAME-sem mapped by both).
 * Parent: for n = 1, 2, ...: pwrite n into page 2, sem_post(M), wait
 * until the child echoes n into page 1 (through its mapping), check the
 * pattern, mode, size, name and offset, print "parent count n".
 * Child: sem_wait(M), read the ping through its mapping, check it, write
 * the pong, print "child count n".
 * Prints "ready" once both are set up.
 */
#include "common.h"
#include <semaphore.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PAGE 4096

static void check_pattern(const unsigned char *p)
{
	for (int i = 0; i < PAGE; i++)
		CHECK(p[i] == (unsigned char)(i * 5 + 1), "page 0 byte %d is %u", i, p[i]);
}

static void check_fd(int fd, const char *name, off_t pos, int acc)
{
	char path[64], link[256] = { 0 }, want[256];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	CHECK_SYS(readlink(path, link, sizeof link - 1) > 0, "readlink");
	snprintf(want, sizeof want, "/dev/shm/%s", name);
	CHECK(!strcmp(link, want), "descriptor %d is [%s], not [%s]", fd, link, want);
	struct stat st;
	CHECK_SYS(fstat(fd, &st) == 0, "fstat");
	CHECK(st.st_size == 3 * PAGE, "size %lld", (long long)st.st_size);
	CHECK((st.st_mode & 07777) == 0640, "mode %o", st.st_mode & 07777);
	CHECK(lseek(fd, 0, SEEK_CUR) == pos, "offset %lld", (long long)lseek(fd, 0, SEEK_CUR));
	int fl = fcntl(fd, F_GETFL);
	CHECK((fl & O_ACCMODE) == acc, "access mode %#x", fl & O_ACCMODE);
}

int main(int argc, char **argv)
{
	const char *name = NULL;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "s:")) != -1) {
		if (c == 's')
			name = optarg;
		else if (!common_opt(c, optarg))
			usage("posixshm [-d MS] [-n N] -s NAME");
	}
	if (!name)
		usage("posixshm [-d MS] [-n N] -s NAME");
	char shm[128], semname[128];
	snprintf(shm, sizeof shm, "/%s", name);
	snprintf(semname, sizeof semname, "/%s-sem", name);
	umask(022);
	int s = shm_open(shm, O_RDWR | O_CREAT | O_EXCL, 0640);
	CHECK_SYS(s >= 0, "shm_open");
	CHECK_SYS(ftruncate(s, 3 * PAGE) == 0, "ftruncate");
	unsigned char page[PAGE];
	for (int i = 0; i < PAGE; i++)
		page[i] = (unsigned char)(i * 5 + 1);
	CHECK_SYS(pwrite(s, page, PAGE, 0) == PAGE, "pwrite");
	CHECK_SYS(lseek(s, 5, SEEK_SET) == 5, "lseek");
	unsigned char *mm = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0);
	CHECK_SYS(mm != MAP_FAILED, "mmap");
	sem_t *sem = sem_open(semname, O_CREAT | O_EXCL, 0600, 0);
	CHECK_SYS(sem != SEM_FAILED, "sem_open");
	volatile uint64_t *pong = (volatile uint64_t *)(mm + PAGE);

	pid_t child = fork();
	CHECK_SYS(child >= 0, "fork");
	if (child == 0) {
		set_tag("child");
		munmap(mm, 3 * PAGE);
		close(s);
		int t = shm_open(shm, O_RDONLY, 0);
		CHECK_SYS(t >= 0, "shm_open in the child");
		CHECK_SYS(lseek(t, 9, SEEK_SET) == 9, "lseek");
		int w = shm_open(shm, O_RDWR, 0);
		CHECK_SYS(w >= 0, "shm_open in the child");
		unsigned char *cm = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, w, 0);
		CHECK_SYS(cm != MAP_FAILED, "mmap in the child");
		close(w);
		volatile uint64_t *ping = (volatile uint64_t *)(cm + 2 * PAGE);
		volatile uint64_t *cpong = (volatile uint64_t *)(cm + PAGE);
		out("ready");
		for (uint64_t seen = 0;;) {
			while (sem_wait(sem) != 0)
				CHECK_SYS(errno == EINTR, "sem_wait");
			uint64_t v = __atomic_load_n(ping, __ATOMIC_ACQUIRE);
			CHECK(v == seen + 1, "ping %llu after %llu", (unsigned long long)v, (unsigned long long)seen);
			check_pattern(cm);
			check_fd(t, name, 9, O_RDONLY);
			seen = v;
			__atomic_store_n(cpong, v, __ATOMIC_RELEASE);
			out("count %llu", (unsigned long long)v);
		}
	}
	set_tag("parent");
	for (uint64_t n = 1;; n++) {
		CHECK_SYS(pwrite(s, &n, 8, 2 * PAGE) == 8, "pwrite ping");
		CHECK_SYS(sem_post(sem) == 0, "sem_post");
		while (__atomic_load_n(pong, __ATOMIC_ACQUIRE) != n)
			sleep_ms(1);
		check_pattern(mm);
		check_fd(s, name, 5, O_RDWR);
		out("count %llu", (unsigned long long)n);
		if (opt_max > 0 && (long long)n >= opt_max) {
			kill(child, SIGKILL);
			waitpid(child, NULL, 0);
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
