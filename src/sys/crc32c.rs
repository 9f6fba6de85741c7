//! CRC32C (Castagnoli) at the speed of the cache: what `ckpt` computes over
//! every page it dumps (cr-image(5): each record head holds the CRC32C of
//! its payload).
//!
//! The `crc32c` crate runs the `crc32` instruction on three streams: at most
//! 8 bytes a cycle, about 12-15 GB/s here, 85 ms of CPU per GiB of pages.
//! [`append`] also keeps the vector unit busy: each [`BLOCK`] of 10 KiB is
//! split into a first part of 4 KiB folded by `VPCLMULQDQ` (8 streams of
//! 128 bits, 256-bit registers) and three streams of 2 KiB for `crc32`,
//! all in one loop, so the two run side by side (25 GB/s here); the four
//! CRCs are then joined by shifting each by the bytes after it (one
//! carry-less multiply and one `crc32` each). Without AVX2 and
//! `VPCLMULQDQ`, and for the last bytes, the crate does the work.
//!
//! The constants are powers of x modulo the polynomial; the unit tests
//! compute them again and compare every path with the crate.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64 as arch;

/// Bytes the wide path takes at a time: [`VEC`] then 3 x [`STREAM`].
pub const BLOCK: usize = VEC + 3 * STREAM;
/// The part of a block folded with `VPCLMULQDQ`.
const VEC: usize = 4096;
/// Each of the three `crc32` streams of a block.
const STREAM: usize = 2048;

// Reflected constants of the polynomial 0x1_1EDC_6F41, `k(n)` =
// reflect32(x^n mod P) (shifted left once where the fold wants 33 bits):
/// Fold by 1024 bits (8 streams of 128): `k(1024+32) << 1`, `k(1024-32) << 1`.
const K_1024: (i64, i64) = (0x6992_cea2, 0x0d3b_6092);
/// Fold by 128 bits: `k(128+32) << 1`, `k(128-32) << 1`.
const K_128: (i64, i64) = (0xf20c_0dfe, 0x1_4cd0_0bd6);
/// 96 to 64 bits: `k(64) << 1`.
const K_64: i64 = 0xdd45_aab8;
/// Barrett reduction: the polynomial and `floor(x^64 / P)`, reflected in 33 bits.
const P_X: i64 = 0x1_05ec_76f1;
const U_PRIME: i64 = 0xdea7_13f1;
/// Shifting a CRC by `n` bytes: `k(8n - 33)` (see [`shift`]).
const SHIFT_1S: u64 = 0xa51b_6135;
const SHIFT_2S: u64 = 0x82f8_9c77;
const SHIFT_3S: u64 = 0xb9d6_8d49;

/// `crc32c::crc32c_append(crc, data)`, faster on long buffers.
pub fn append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= BLOCK && wide() {
        let mut blocks = data.chunks_exact(BLOCK);
        let mut raw = !crc;
        for b in &mut blocks {
            // SAFETY: `wide()` found every feature `block` is compiled for.
            raw = unsafe { block(raw, b.try_into().expect("chunks_exact")) };
        }
        return crc32c::crc32c_append(!raw, blocks.remainder());
    }
    crc32c::crc32c_append(crc, data)
}

/// Whether this CPU has what [`block`] uses (checked once, cached by std).
#[cfg(target_arch = "x86_64")]
fn wide() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("vpclmulqdq")
        && is_x86_feature_detected!("pclmulqdq")
        && is_x86_feature_detected!("sse4.2")
}

/// The CRC register (no inversions) after `raw` took in one block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,vpclmulqdq,pclmulqdq,sse4.2")]
fn block(raw: u32, d: &[u8; BLOCK]) -> u32 {
    // Macros, not closures: a closure would not get the target features.
    macro_rules! quarters {
        ($r:expr) => {{
            let r: &[u8; 128] = $r.try_into().expect("128 bytes");
            let q = |i: usize| -> [u8; 32] { r[32 * i..32 * i + 32].try_into().expect("32") };
            // SAFETY: any 32 bytes are a valid `__m256i`. (Not `loadu`: with
            // debug assertions its pointer copy is checked at every call.)
            unsafe { [0, 1, 2, 3].map(|i| std::mem::transmute::<[u8; 32], arch::__m256i>(q(i))) }
        }};
    }
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let (mut c0, mut c1, mut c2) = (0u64, 0u64, 0u64);
    macro_rules! words {
        ($a:expr, $b:expr, $c:expr) => {
            for (x, (y, z)) in $a
                .chunks_exact(8)
                .zip($b.chunks_exact(8).zip($c.chunks_exact(8)))
            {
                c0 = arch::_mm_crc32_u64(c0, word(x));
                c1 = arch::_mm_crc32_u64(c1, word(y));
                c2 = arch::_mm_crc32_u64(c2, word(z));
            }
        };
    }
    let (vec, streams) = d.split_at(VEC);
    let (s0, rest) = streams.split_at(STREAM);
    let (s1, s2) = rest.split_at(STREAM);
    // 32 rounds: 128 bytes of `vec` (the first only loaded) beside 64
    // bytes of every stream. Iterators, not indices: no overflow checks.
    let mut rounds = vec.chunks_exact(128).zip(
        s0.chunks_exact(64)
            .zip(s1.chunks_exact(64).zip(s2.chunks_exact(64))),
    );
    let (first, (a, (b, c))) = rounds.next().expect("32 rounds");
    let [mut v0, mut v1, mut v2, mut v3] = quarters!(first);
    v0 = arch::_mm256_xor_si256(
        v0,
        arch::_mm256_castsi128_si256(arch::_mm_cvtsi32_si128(raw as i32)),
    );
    let k = arch::_mm256_set_epi64x(K_1024.1, K_1024.0, K_1024.1, K_1024.0);
    words!(a, b, c);
    for (r, (a, (b, c))) in rounds {
        let [w0, w1, w2, w3] = quarters!(r);
        v0 = fold256(v0, w0, k);
        v1 = fold256(v1, w1, k);
        v2 = fold256(v2, w2, k);
        v3 = fold256(v3, w3, k);
        words!(a, b, c);
    }
    // The 8 lanes, in order, folded into one, then reduced to 32 bits.
    let k128 = arch::_mm_set_epi64x(K_128.1, K_128.0);
    let mut x = arch::_mm256_castsi256_si128(v0);
    for lane in [
        arch::_mm256_extracti128_si256::<1>(v0),
        arch::_mm256_castsi256_si128(v1),
        arch::_mm256_extracti128_si256::<1>(v1),
        arch::_mm256_castsi256_si128(v2),
        arch::_mm256_extracti128_si256::<1>(v2),
        arch::_mm256_castsi256_si128(v3),
        arch::_mm256_extracti128_si256::<1>(v3),
    ] {
        x = fold128(x, lane, k128);
    }
    let a = reduce128(x);
    shift(a, SHIFT_3S) ^ shift(c0 as u32, SHIFT_2S) ^ shift(c1 as u32, SHIFT_1S) ^ c2 as u32
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,vpclmulqdq")]
fn fold256(a: arch::__m256i, b: arch::__m256i, k: arch::__m256i) -> arch::__m256i {
    let lo = arch::_mm256_clmulepi64_epi128::<0x00>(a, k);
    let hi = arch::_mm256_clmulepi64_epi128::<0x11>(a, k);
    arch::_mm256_xor_si256(arch::_mm256_xor_si256(b, lo), hi)
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "pclmulqdq,sse4.2")]
fn fold128(a: arch::__m128i, b: arch::__m128i, k: arch::__m128i) -> arch::__m128i {
    let lo = arch::_mm_clmulepi64_si128::<0x00>(a, k);
    let hi = arch::_mm_clmulepi64_si128::<0x11>(a, k);
    arch::_mm_xor_si128(arch::_mm_xor_si128(b, lo), hi)
}

/// The CRC register of a 128-bit fold remainder: down to 64 bits, then a
/// Barrett reduction (the bit-reflected variant of Intel's "Fast CRC
/// Computation for Generic Polynomials Using PCLMULQDQ", as in the
/// crc32fast crate and Linux).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq,sse4.2")]
fn reduce128(x: arch::__m128i) -> u32 {
    let k128 = arch::_mm_set_epi64x(K_128.1, K_128.0);
    let low32 = arch::_mm_set_epi32(0, 0, 0, !0);
    let x = arch::_mm_xor_si128(
        arch::_mm_clmulepi64_si128::<0x10>(x, k128),
        arch::_mm_srli_si128::<8>(x),
    );
    let x = arch::_mm_xor_si128(
        arch::_mm_clmulepi64_si128::<0x00>(
            arch::_mm_and_si128(x, low32),
            arch::_mm_set_epi64x(0, K_64),
        ),
        arch::_mm_srli_si128::<4>(x),
    );
    let pu = arch::_mm_set_epi64x(U_PRIME, P_X);
    let t1 = arch::_mm_clmulepi64_si128::<0x10>(arch::_mm_and_si128(x, low32), pu);
    let t2 = arch::_mm_clmulepi64_si128::<0x00>(arch::_mm_and_si128(t1, low32), pu);
    arch::_mm_extract_epi32::<1>(arch::_mm_xor_si128(x, t2)) as u32
}

/// The CRC register `c` followed by `n` zero bytes, given `k = k(8n - 33)`:
/// the carry-less product of two reflected 32-bit values is `c k x`, and
/// `crc32` of it multiplies by `x^32` modulo P.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "pclmulqdq,sse4.2")]
fn shift(c: u32, k: u64) -> u32 {
    let p = arch::_mm_clmulepi64_si128::<0x00>(
        arch::_mm_cvtsi32_si128(c as i32),
        arch::_mm_cvtsi64_si128(k as i64),
    );
    arch::_mm_crc32_u64(0, arch::_mm_cvtsi128_si64(p) as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// reflect32(x^n mod P), P = x^32 + 0x1EDC6F41.
    fn k(n: u32) -> u64 {
        let mut r: u64 = 1;
        for _ in 0..n {
            r <<= 1;
            if r >> 32 & 1 == 1 {
                r ^= 0x1_1edc_6f41;
            }
        }
        (r as u32).reverse_bits() as u64
    }

    #[test]
    fn constants_are_powers_of_x() {
        assert_eq!(K_1024, ((k(1056) << 1) as i64, (k(992) << 1) as i64));
        assert_eq!(K_128, ((k(160) << 1) as i64, (k(96) << 1) as i64));
        assert_eq!(K_64, (k(64) << 1) as i64);
        assert_eq!(P_X, ((0x1_1edc_6f41u64.reverse_bits() >> 31) as i64));
        let s = 8 * STREAM as u32;
        assert_eq!(
            (SHIFT_1S, SHIFT_2S, SHIFT_3S),
            (k(s - 33), k(2 * s - 33), k(3 * s - 33))
        );
    }

    #[test]
    fn matches_the_crate() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let data: Vec<u8> = (0..4 * BLOCK + 300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut lens = vec![0, 1, 7, 4096, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 77];
        lens.push(4 * BLOCK);
        for len in lens {
            for off in [0, 1, 8, 13] {
                for init in [0, 0xdead_beef, u32::MAX] {
                    let d = &data[off..off + len];
                    assert_eq!(
                        append(init, d),
                        crc32c::crc32c_append(init, d),
                        "len {len} offset {off} init {init:#x}"
                    );
                }
            }
        }
        // All zeros and all ones: the fold's carries at their extremes.
        for b in [0u8, 0xff] {
            let d = vec![b; 3 * BLOCK];
            assert_eq!(append(0, &d), crc32c::crc32c(&d));
        }
    }
}
