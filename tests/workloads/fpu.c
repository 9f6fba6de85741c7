/*
 * fpu: values that live in vector registers across a long stretch of time.
 *
 *   fpu [-d MS] [-n N] [-e CODE] [-w SPIN] [-i sse|avx|avx512|auto]
 *
 * Every iteration loads all vector registers of the chosen ISA (xmm0-15 for
 * sse, ymm0-15 for avx, zmm0-31 and k1-k7 for avx512; auto picks the widest
 * the CPU and kernel support) with values derived from the count, then inside
 * one asm block: spins SPIN loop iterations (default 2000000, about a
 * millisecond, so a checkpoint can catch it in user mode), sleeps MS in a raw
 * nanosleep syscall (so it can be caught inside a syscall), spins again, and
 * stores the registers. They must hold the values loaded. MXCSR (round toward
 * zero, FTZ, DAZ) and the x87 control word (53-bit precision) are set to
 * non-default values at start and checked every iteration, and a double
 * accumulator is checked against a recomputation.
 *
 * Prints "count N ok isa=ISA mxcsr=0xffc0 f=F".
 */
#include "common.h"

static void run_sse(const uint64_t *in, uint64_t *out, const uint16_t *kin, uint16_t *kout, long spin, const struct timespec *ts)
{
	(void)kin;
	(void)kout;
	__asm__ volatile(
		"movdqu 0(%[in]), %%xmm0\n\t"
		"movdqu 16(%[in]), %%xmm1\n\t"
		"movdqu 32(%[in]), %%xmm2\n\t"
		"movdqu 48(%[in]), %%xmm3\n\t"
		"movdqu 64(%[in]), %%xmm4\n\t"
		"movdqu 80(%[in]), %%xmm5\n\t"
		"movdqu 96(%[in]), %%xmm6\n\t"
		"movdqu 112(%[in]), %%xmm7\n\t"
		"movdqu 128(%[in]), %%xmm8\n\t"
		"movdqu 144(%[in]), %%xmm9\n\t"
		"movdqu 160(%[in]), %%xmm10\n\t"
		"movdqu 176(%[in]), %%xmm11\n\t"
		"movdqu 192(%[in]), %%xmm12\n\t"
		"movdqu 208(%[in]), %%xmm13\n\t"
		"movdqu 224(%[in]), %%xmm14\n\t"
		"movdqu 240(%[in]), %%xmm15\n\t"
		"mov %[spin], %%rcx\n\t"
		"1: dec %%rcx\n\t"
		"jnz 1b\n\t"
		"mov $35, %%eax\n\t"           /* nanosleep(ts, NULL) */
		"mov %[ts], %%rdi\n\t"
		"xor %%esi, %%esi\n\t"
		"syscall\n\t"
		"mov %[spin], %%rcx\n\t"
		"2: dec %%rcx\n\t"
		"jnz 2b\n\t"
		"movdqu %%xmm0, 0(%[out])\n\t"
		"movdqu %%xmm1, 16(%[out])\n\t"
		"movdqu %%xmm2, 32(%[out])\n\t"
		"movdqu %%xmm3, 48(%[out])\n\t"
		"movdqu %%xmm4, 64(%[out])\n\t"
		"movdqu %%xmm5, 80(%[out])\n\t"
		"movdqu %%xmm6, 96(%[out])\n\t"
		"movdqu %%xmm7, 112(%[out])\n\t"
		"movdqu %%xmm8, 128(%[out])\n\t"
		"movdqu %%xmm9, 144(%[out])\n\t"
		"movdqu %%xmm10, 160(%[out])\n\t"
		"movdqu %%xmm11, 176(%[out])\n\t"
		"movdqu %%xmm12, 192(%[out])\n\t"
		"movdqu %%xmm13, 208(%[out])\n\t"
		"movdqu %%xmm14, 224(%[out])\n\t"
		"movdqu %%xmm15, 240(%[out])\n\t"
		:
		: [in] "r"(in), [out] "r"(out), [kin] "r"(kin), [kout] "r"(kout), [spin] "r"(spin), [ts] "r"(ts)
		: "rax", "rcx", "rdi", "rsi", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

__attribute__((target("avx"))) static void run_avx(const uint64_t *in, uint64_t *out, const uint16_t *kin, uint16_t *kout, long spin, const struct timespec *ts)
{
	(void)kin;
	(void)kout;
	__asm__ volatile(
		"vmovdqu 0(%[in]), %%ymm0\n\t"
		"vmovdqu 32(%[in]), %%ymm1\n\t"
		"vmovdqu 64(%[in]), %%ymm2\n\t"
		"vmovdqu 96(%[in]), %%ymm3\n\t"
		"vmovdqu 128(%[in]), %%ymm4\n\t"
		"vmovdqu 160(%[in]), %%ymm5\n\t"
		"vmovdqu 192(%[in]), %%ymm6\n\t"
		"vmovdqu 224(%[in]), %%ymm7\n\t"
		"vmovdqu 256(%[in]), %%ymm8\n\t"
		"vmovdqu 288(%[in]), %%ymm9\n\t"
		"vmovdqu 320(%[in]), %%ymm10\n\t"
		"vmovdqu 352(%[in]), %%ymm11\n\t"
		"vmovdqu 384(%[in]), %%ymm12\n\t"
		"vmovdqu 416(%[in]), %%ymm13\n\t"
		"vmovdqu 448(%[in]), %%ymm14\n\t"
		"vmovdqu 480(%[in]), %%ymm15\n\t"
		"mov %[spin], %%rcx\n\t"
		"1: dec %%rcx\n\t"
		"jnz 1b\n\t"
		"mov $35, %%eax\n\t"           /* nanosleep(ts, NULL) */
		"mov %[ts], %%rdi\n\t"
		"xor %%esi, %%esi\n\t"
		"syscall\n\t"
		"mov %[spin], %%rcx\n\t"
		"2: dec %%rcx\n\t"
		"jnz 2b\n\t"
		"vmovdqu %%ymm0, 0(%[out])\n\t"
		"vmovdqu %%ymm1, 32(%[out])\n\t"
		"vmovdqu %%ymm2, 64(%[out])\n\t"
		"vmovdqu %%ymm3, 96(%[out])\n\t"
		"vmovdqu %%ymm4, 128(%[out])\n\t"
		"vmovdqu %%ymm5, 160(%[out])\n\t"
		"vmovdqu %%ymm6, 192(%[out])\n\t"
		"vmovdqu %%ymm7, 224(%[out])\n\t"
		"vmovdqu %%ymm8, 256(%[out])\n\t"
		"vmovdqu %%ymm9, 288(%[out])\n\t"
		"vmovdqu %%ymm10, 320(%[out])\n\t"
		"vmovdqu %%ymm11, 352(%[out])\n\t"
		"vmovdqu %%ymm12, 384(%[out])\n\t"
		"vmovdqu %%ymm13, 416(%[out])\n\t"
		"vmovdqu %%ymm14, 448(%[out])\n\t"
		"vmovdqu %%ymm15, 480(%[out])\n\t"
		:
		: [in] "r"(in), [out] "r"(out), [kin] "r"(kin), [kout] "r"(kout), [spin] "r"(spin), [ts] "r"(ts)
		: "rax", "rcx", "rdi", "rsi", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}

__attribute__((target("avx512f"))) static void run_avx512(const uint64_t *in, uint64_t *out, const uint16_t *kin, uint16_t *kout, long spin, const struct timespec *ts)
{
	(void)kin;
	(void)kout;
	__asm__ volatile(
		"vmovdqu64 0(%[in]), %%zmm0\n\t"
		"vmovdqu64 64(%[in]), %%zmm1\n\t"
		"vmovdqu64 128(%[in]), %%zmm2\n\t"
		"vmovdqu64 192(%[in]), %%zmm3\n\t"
		"vmovdqu64 256(%[in]), %%zmm4\n\t"
		"vmovdqu64 320(%[in]), %%zmm5\n\t"
		"vmovdqu64 384(%[in]), %%zmm6\n\t"
		"vmovdqu64 448(%[in]), %%zmm7\n\t"
		"vmovdqu64 512(%[in]), %%zmm8\n\t"
		"vmovdqu64 576(%[in]), %%zmm9\n\t"
		"vmovdqu64 640(%[in]), %%zmm10\n\t"
		"vmovdqu64 704(%[in]), %%zmm11\n\t"
		"vmovdqu64 768(%[in]), %%zmm12\n\t"
		"vmovdqu64 832(%[in]), %%zmm13\n\t"
		"vmovdqu64 896(%[in]), %%zmm14\n\t"
		"vmovdqu64 960(%[in]), %%zmm15\n\t"
		"vmovdqu64 1024(%[in]), %%zmm16\n\t"
		"vmovdqu64 1088(%[in]), %%zmm17\n\t"
		"vmovdqu64 1152(%[in]), %%zmm18\n\t"
		"vmovdqu64 1216(%[in]), %%zmm19\n\t"
		"vmovdqu64 1280(%[in]), %%zmm20\n\t"
		"vmovdqu64 1344(%[in]), %%zmm21\n\t"
		"vmovdqu64 1408(%[in]), %%zmm22\n\t"
		"vmovdqu64 1472(%[in]), %%zmm23\n\t"
		"vmovdqu64 1536(%[in]), %%zmm24\n\t"
		"vmovdqu64 1600(%[in]), %%zmm25\n\t"
		"vmovdqu64 1664(%[in]), %%zmm26\n\t"
		"vmovdqu64 1728(%[in]), %%zmm27\n\t"
		"vmovdqu64 1792(%[in]), %%zmm28\n\t"
		"vmovdqu64 1856(%[in]), %%zmm29\n\t"
		"vmovdqu64 1920(%[in]), %%zmm30\n\t"
		"vmovdqu64 1984(%[in]), %%zmm31\n\t"
		"kmovw 0(%[kin]), %%k1\n\t"
		"kmovw 2(%[kin]), %%k2\n\t"
		"kmovw 4(%[kin]), %%k3\n\t"
		"kmovw 6(%[kin]), %%k4\n\t"
		"kmovw 8(%[kin]), %%k5\n\t"
		"kmovw 10(%[kin]), %%k6\n\t"
		"kmovw 12(%[kin]), %%k7\n\t"
		"mov %[spin], %%rcx\n\t"
		"1: dec %%rcx\n\t"
		"jnz 1b\n\t"
		"mov $35, %%eax\n\t"           /* nanosleep(ts, NULL) */
		"mov %[ts], %%rdi\n\t"
		"xor %%esi, %%esi\n\t"
		"syscall\n\t"
		"mov %[spin], %%rcx\n\t"
		"2: dec %%rcx\n\t"
		"jnz 2b\n\t"
		"vmovdqu64 %%zmm0, 0(%[out])\n\t"
		"vmovdqu64 %%zmm1, 64(%[out])\n\t"
		"vmovdqu64 %%zmm2, 128(%[out])\n\t"
		"vmovdqu64 %%zmm3, 192(%[out])\n\t"
		"vmovdqu64 %%zmm4, 256(%[out])\n\t"
		"vmovdqu64 %%zmm5, 320(%[out])\n\t"
		"vmovdqu64 %%zmm6, 384(%[out])\n\t"
		"vmovdqu64 %%zmm7, 448(%[out])\n\t"
		"vmovdqu64 %%zmm8, 512(%[out])\n\t"
		"vmovdqu64 %%zmm9, 576(%[out])\n\t"
		"vmovdqu64 %%zmm10, 640(%[out])\n\t"
		"vmovdqu64 %%zmm11, 704(%[out])\n\t"
		"vmovdqu64 %%zmm12, 768(%[out])\n\t"
		"vmovdqu64 %%zmm13, 832(%[out])\n\t"
		"vmovdqu64 %%zmm14, 896(%[out])\n\t"
		"vmovdqu64 %%zmm15, 960(%[out])\n\t"
		"vmovdqu64 %%zmm16, 1024(%[out])\n\t"
		"vmovdqu64 %%zmm17, 1088(%[out])\n\t"
		"vmovdqu64 %%zmm18, 1152(%[out])\n\t"
		"vmovdqu64 %%zmm19, 1216(%[out])\n\t"
		"vmovdqu64 %%zmm20, 1280(%[out])\n\t"
		"vmovdqu64 %%zmm21, 1344(%[out])\n\t"
		"vmovdqu64 %%zmm22, 1408(%[out])\n\t"
		"vmovdqu64 %%zmm23, 1472(%[out])\n\t"
		"vmovdqu64 %%zmm24, 1536(%[out])\n\t"
		"vmovdqu64 %%zmm25, 1600(%[out])\n\t"
		"vmovdqu64 %%zmm26, 1664(%[out])\n\t"
		"vmovdqu64 %%zmm27, 1728(%[out])\n\t"
		"vmovdqu64 %%zmm28, 1792(%[out])\n\t"
		"vmovdqu64 %%zmm29, 1856(%[out])\n\t"
		"vmovdqu64 %%zmm30, 1920(%[out])\n\t"
		"vmovdqu64 %%zmm31, 1984(%[out])\n\t"
		"kmovw %%k1, 0(%[kout])\n\t"
		"kmovw %%k2, 2(%[kout])\n\t"
		"kmovw %%k3, 4(%[kout])\n\t"
		"kmovw %%k4, 6(%[kout])\n\t"
		"kmovw %%k5, 8(%[kout])\n\t"
		"kmovw %%k6, 10(%[kout])\n\t"
		"kmovw %%k7, 12(%[kout])\n\t"
		:
		: [in] "r"(in), [out] "r"(out), [kin] "r"(kin), [kout] "r"(kout), [spin] "r"(spin), [ts] "r"(ts)
		: "rax", "rcx", "rdi", "rsi", "r11", "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31", "k1", "k2", "k3", "k4", "k5", "k6", "k7");
}

#define MXCSR_WANT 0xffc0u /* all exceptions masked, RC = toward zero, FTZ, DAZ */
#define MXCSR_FLAGS 0x3fu  /* sticky exception flags, may change */
#define FPUCW_WANT 0x027f  /* x87: all masked, 53-bit precision, round to nearest */

static uint32_t get_mxcsr(void)
{
	uint32_t v;
	__asm__ volatile("stmxcsr %0" : "=m"(v));
	return v;
}

static uint16_t get_fpucw(void)
{
	uint16_t v;
	__asm__ volatile("fnstcw %0" : "=m"(v));
	return v;
}

int main(int argc, char **argv)
{
	const char *isa = "auto";
	long spin = 2000000;
	int c;
	while ((c = getopt(argc, argv, COMMON_OPTS "w:i:")) != -1) {
		if (common_opt(c, optarg))
			continue;
		switch (c) {
		case 'w':
			spin = (long)parse_num(optarg, "spin count");
			break;
		case 'i':
			isa = optarg;
			break;
		default:
			usage("fpu [-w SPIN] [-i sse|avx|avx512|auto]");
		}
	}
	if (spin < 1)
		spin = 1;

	__builtin_cpu_init();
	int has_avx = __builtin_cpu_supports("avx"), has_avx512 = __builtin_cpu_supports("avx512f");
	if (!strcmp(isa, "auto"))
		isa = has_avx512 ? "avx512" : has_avx ? "avx" : "sse";
	void (*run)(const uint64_t *, uint64_t *, const uint16_t *, uint16_t *, long, const struct timespec *);
	size_t words, nk = 0;
	if (!strcmp(isa, "sse")) {
		run = run_sse;
		words = 16 * 2;
	} else if (!strcmp(isa, "avx")) {
		CHECK(has_avx, "this CPU has no AVX");
		run = run_avx;
		words = 16 * 4;
	} else if (!strcmp(isa, "avx512")) {
		CHECK(has_avx512, "this CPU has no AVX-512");
		run = run_avx512;
		words = 32 * 8;
		nk = 7;
	} else {
		usage("fpu [-w SPIN] [-i sse|avx|avx512|auto]");
	}

	uint32_t mxcsr = MXCSR_WANT;
	__asm__ volatile("ldmxcsr %0" : : "m"(mxcsr));
	uint16_t cw = FPUCW_WANT;
	__asm__ volatile("fldcw %0" : : "m"(cw));

	static uint64_t in[32 * 8], outv[32 * 8];
	static uint16_t kin[8], kout[8];
	struct timespec ts = { opt_delay_ms / 1000, (opt_delay_ms % 1000) * 1000000L };
	double f = 0.0;

	for (long long n = 1;; n++) {
		for (size_t i = 0; i < words; i++) {
			in[i] = mix64(((uint64_t)n << 16) ^ i);
			outv[i] = 0;
		}
		for (size_t i = 0; i < nk; i++) {
			kin[i] = (uint16_t)mix64(((uint64_t)n << 16) ^ (0x8000 + i));
			kout[i] = 0;
		}
		run(in, outv, kin, kout, spin, &ts);
		for (size_t i = 0; i < words; i++)
			CHECK(outv[i] == in[i], "%s register %zu word %zu: %016llx, expected %016llx at count %lld", isa,
			      i / (words / (nk ? 32 : 16)), i % (words / (nk ? 32 : 16)), (unsigned long long)outv[i],
			      (unsigned long long)in[i], n);
		for (size_t i = 0; i < nk; i++)
			CHECK(kout[i] == kin[i], "k%zu: %04x, expected %04x at count %lld", i + 1, kout[i], kin[i], n);
		uint32_t m = get_mxcsr() & ~MXCSR_FLAGS;
		CHECK(m == MXCSR_WANT, "mxcsr %#x, expected %#x", m, MXCSR_WANT);
		uint16_t w = get_fpucw();
		CHECK(w == FPUCW_WANT, "x87 control word %#x, expected %#x", w, FPUCW_WANT);
		f += 1.0 / (double)n;
		double want = harmonic(n);
		CHECK(f == want, "float sequence broken at count %lld: %.17g != %.17g", n, f, want);

		out("count %lld ok isa=%s mxcsr=%#x f=%.17g", n, isa, m, f);
		maybe_done(n);
	}
}
