/*
 * memfd: memfds and a deleted file, shared between a parent and its child
 * through descriptors and mappings, checked on every iteration.
 *
 *   memfd [-d MS] [-n N]
 *
 * Objects:
 *   M  memfd "crtools-test", 3 pages (page 0 a pattern, page 1 zero, page
 *      2 the ping), sealed F_SEAL_SHRINK | F_SEAL_GROW, mapped shared by
 *      both processes; the parent writes through its descriptor;
 *   U  memfd "crtools-unmapped", "unmapped memfd data", F_SEAL_WRITE, never
 *      mapped, its offset left at 5;
 *   D  a file in /dev/shm mapped shared, then unlinked and closed (as
 *      POSIX semaphores are): the pong.
 * Parent: for n = 1, 2, ...: pwrite n into M's page 2, wait until the
 * child echoes n into D, check M's and U's seals, name, contents and U's
 * offset, print "parent count n". Child: wait until M's page 2 (through
 * its mapping) changes, check page 0 and 1, write it into D, print
 * "child count n".
 */
#include "common.h"
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PAGE 4096

static volatile uint64_t *pong;

static void check_pattern(const unsigned char *p)
{
	for (int i = 0; i < PAGE; i++)
		CHECK(p[i] == (unsigned char)(i * 7 + 3), "memfd page 0 byte %d is %u", i, p[i]);
	for (int i = PAGE; i < 2 * PAGE; i++)
		CHECK(p[i] == 0, "memfd page 1 byte %d is %u", i - PAGE, p[i]);
}

int main(int argc, char **argv)
{
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS)) != -1) {
		if (!common_opt(c, optarg))
			usage("memfd [-d MS] [-n N]");
	}
	int m = memfd_create("crtools-test", MFD_ALLOW_SEALING);
	CHECK_SYS(m >= 0, "memfd_create");
	CHECK_SYS(ftruncate(m, 3 * PAGE) == 0, "ftruncate");
	unsigned char page[PAGE];
	for (int i = 0; i < PAGE; i++)
		page[i] = (unsigned char)(i * 7 + 3);
	CHECK_SYS(pwrite(m, page, PAGE, 0) == PAGE, "pwrite");
	CHECK_SYS(fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0, "F_ADD_SEALS");
	unsigned char *mm = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
	CHECK_SYS(mm != MAP_FAILED, "mmap memfd");

	static const char udata[] = "unmapped memfd data";
	int u = memfd_create("crtools-unmapped", MFD_ALLOW_SEALING);
	CHECK_SYS(u >= 0, "memfd_create");
	CHECK_SYS(write(u, udata, sizeof udata) == sizeof udata, "write");
	CHECK_SYS(fcntl(u, F_ADD_SEALS, F_SEAL_WRITE) == 0, "F_ADD_SEALS");
	CHECK_SYS(lseek(u, 5, SEEK_SET) == 5, "lseek");

	char path[64];
	snprintf(path, sizeof path, "/dev/shm/crtools-memfd-%d", (int)getpid());
	int d = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK_SYS(d >= 0, "open /dev/shm");
	CHECK_SYS(ftruncate(d, PAGE) == 0, "ftruncate");
	pong = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, d, 0);
	CHECK_SYS(pong != MAP_FAILED, "mmap /dev/shm");
	close(d);
	unlink(path);

	volatile uint64_t *ping = (volatile uint64_t *)(mm + 2 * PAGE);
	pid_t child = fork();
	CHECK_SYS(child >= 0, "fork");
	if (child == 0) {
		set_tag("child");
		uint64_t seen = 0;
		for (;;) {
			uint64_t v;
			while ((v = __atomic_load_n(ping, __ATOMIC_ACQUIRE)) == seen)
				sleep_ms(1);
			CHECK(v == seen + 1, "ping %llu after %llu", (unsigned long long)v, (unsigned long long)seen);
			check_pattern(mm);
			seen = v;
			__atomic_store_n(pong, v, __ATOMIC_RELEASE);
			out("count %llu", (unsigned long long)v);
		}
	}
	set_tag("parent");
	for (uint64_t n = 1;; n++) {
		CHECK_SYS(pwrite(m, &n, 8, 2 * PAGE) == 8, "pwrite ping");
		while (__atomic_load_n(pong, __ATOMIC_ACQUIRE) != n)
			sleep_ms(1);
		int seals = fcntl(m, F_GET_SEALS);
		CHECK(seals == (F_SEAL_SHRINK | F_SEAL_GROW), "seals of M: %#x", seals);
		seals = fcntl(u, F_GET_SEALS);
		CHECK(seals == F_SEAL_WRITE, "seals of U: %#x", seals);
		CHECK(write(u, "x", 1) < 0 && errno == EPERM, "U is writable");
		CHECK(lseek(u, 0, SEEK_CUR) == 5, "U's offset moved");
		char buf[64] = { 0 };
		CHECK_SYS(pread(u, buf, sizeof udata, 0) == sizeof udata, "pread U");
		CHECK(!memcmp(buf, udata, sizeof udata), "U holds [%s]", buf);
		char link[128] = { 0 };
		snprintf(path, sizeof path, "/proc/self/fd/%d", m);
		CHECK_SYS(readlink(path, link, sizeof link - 1) > 0, "readlink");
		CHECK(!strncmp(link, "/memfd:crtools-test", 19), "M is [%s]", link);
		struct stat st;
		CHECK_SYS(fstat(m, &st) == 0 && st.st_size == 3 * PAGE, "fstat M");
		check_pattern(mm);
		out("count %llu", (unsigned long long)n);
		if (opt_max > 0 && (long long)n >= opt_max) {
			kill(child, SIGKILL);
			waitpid(child, NULL, 0);
			exit(opt_exit);
		}
		sleep_ms(opt_delay_ms);
	}
}
