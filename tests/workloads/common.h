/*
 * Shared helpers for the test workloads.
 *
 * Every workload follows the same protocol on stdout, one line per write(2)
 * (so lines from several processes sharing a pipe never interleave):
 *
 *     [TAG ]count N [details]     progress, N = 1, 2, 3, ... without gap
 *     FAIL [TAG: ]reason          an invariant broke; the process exits 1
 *
 * Common options, accepted by every workload:
 *     -d MS    delay between iterations in milliseconds (default 50)
 *     -n N     exit after printing count N (default: run until killed)
 *     -e CODE  exit status to use after -n N (default 0)
 */
#ifndef CR_WORKLOADS_COMMON_H
#define CR_WORKLOADS_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long opt_delay_ms = 50;
static long long opt_max = 0;
static int opt_exit = 0;
static char out_tag[32] = "";

/* Write a whole buffer, retrying on EINTR and short writes. */
static __attribute__((unused)) int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t r = write(fd, p, len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += r;
		len -= (size_t)r;
	}
	return 0;
}

static __attribute__((unused)) void vformat_line(char *buf, size_t size, const char *prefix, const char *fmt, va_list ap)
{
	int n = snprintf(buf, size, "%s", prefix);
	if (n < 0 || (size_t)n >= size)
		n = 0;
	int m = vsnprintf(buf + n, size - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	size_t len = (size_t)n + (size_t)m;
	if (len > size - 2)
		len = size - 2;
	buf[len] = '\n';
	buf[len + 1] = '\0';
}

/* Print one progress line (prefixed with the tag, if any) in one write. */
__attribute__((format(printf, 1, 2), unused)) static void out(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vformat_line(buf, sizeof(buf), out_tag, fmt, ap);
	va_end(ap);
	if (write_all(1, buf, strlen(buf)) < 0)
		_exit(2);
}

/* Format a line like out() into buf, for a log file. */
__attribute__((format(printf, 3, 4), unused)) static size_t format_line(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vformat_line(buf, size, out_tag, fmt, ap);
	va_end(ap);
	return strlen(buf);
}

/* Report a broken invariant and exit 1. Safe to call from any process. */
__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
	char buf[512], prefix[48];
	va_list ap;
	size_t tl = strlen(out_tag);
	if (tl > 0)
		snprintf(prefix, sizeof(prefix), "FAIL %.*s: ", (int)(tl - 1), out_tag);
	else
		snprintf(prefix, sizeof(prefix), "FAIL ");
	va_start(ap, fmt);
	vformat_line(buf, sizeof(buf), prefix, fmt, ap);
	va_end(ap);
	write_all(1, buf, strlen(buf));
	write_all(2, buf, strlen(buf));
	_exit(1);
}

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail(__VA_ARGS__);                                                         \
	} while (0)

#define CHECK_SYS(cond, what) CHECK(cond, "%s: %s (line %d)", what, strerror(errno), __LINE__)

/* Set the prefix of every output line of this process ("" for none). */
static __attribute__((unused)) void set_tag(const char *tag)
{
	if (tag[0])
		snprintf(out_tag, sizeof(out_tag), "%s ", tag);
	else
		out_tag[0] = '\0';
}

/* Sleep ms milliseconds; EINTR resumes the sleep with the time left. */
static __attribute__((unused)) void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L }, rem;
	while (nanosleep(&ts, &rem) < 0) {
		if (errno != EINTR)
			fail("nanosleep: %s", strerror(errno));
		ts = rem;
	}
}

/* splitmix64: the source of every deterministic pattern. */
static inline __attribute__((unused)) uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static __attribute__((unused)) long long parse_num(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 0);
	if (errno || end == s || *end) {
		fprintf(stderr, "invalid %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

/* getopt letters every workload accepts; append to its own optstring. */
#define COMMON_OPTS "d:n:e:"

/* Handle a common option; returns 1 if c was one. */
static __attribute__((unused)) int common_opt(int c, const char *arg)
{
	switch (c) {
	case 'd':
		opt_delay_ms = (long)parse_num(arg, "delay");
		return 1;
	case 'n':
		opt_max = parse_num(arg, "count");
		return 1;
	case 'e':
		opt_exit = (int)parse_num(arg, "exit code");
		return 1;
	}
	return 0;
}

__attribute__((noreturn, unused)) static void usage(const char *synopsis)
{
	fprintf(stderr, "usage: %s\n  common: -d MS (delay, default 50)  -n N (exit after count N)  -e CODE (exit status after -n)\n", synopsis);
	exit(2);
}

/* After printing count n: exit when -n was reached. */
static __attribute__((unused)) void maybe_done(long long n)
{
	if (opt_max > 0 && n >= opt_max)
		exit(opt_exit);
}

/* Exact double derived from the count, recomputed from scratch: sum of 1/k. */
static __attribute__((unused)) double harmonic(long long n)
{
	double s = 0.0;
	for (long long k = 1; k <= n; k++)
		s += 1.0 / (double)k;
	return s;
}

#endif
