//! cr-sum: a summed valid stream passes --check, summing commutes with
//! compression, and any flipped byte of a summed stream fails --check.
#![no_main]

use crtools::filters::sum::{SumOptions, check, sum};
use crtools::filters::zstd::{ZstdOptions, compress};
use crtools::image::synth;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Arbitrary input: whatever happens, no panic; a pass means the
    // input really was a summed stream.
    if check(data, 1, None, None).is_ok() {
        assert!(crtools::filters::info::info(data).is_ok());
    }
    let x = synth::from_recipe(data);
    let opts = SumOptions::default();
    let (s, _) = sum(&x[..], Vec::new(), &opts, None).expect("sum a valid stream");
    check(&s[..], 1, None, None).expect("a summed stream checks");
    let z = ZstdOptions {
        level: 1,
        threads: 1,
    };
    let (zs, _) = compress(&s[..], Vec::new(), &z, None).expect("compress");
    let (zx, _) = compress(&x[..], Vec::new(), &z, None).expect("compress");
    let (sz, _) = sum(&zx[..], Vec::new(), &opts, None).expect("sum");
    assert_eq!(zs, sz);
    check(&zs[..], 1, None, None).expect("compressed summed stream checks");
    if let Some(&b) = data.last() {
        let mut bad = zs.clone();
        let i = (u32::from_le_bytes(data.iter().rev().take(4).fold([0u8; 4], |mut a, &v| {
            a.rotate_left(1);
            a[0] = v;
            a
        })) as usize)
            % bad.len();
        bad[i] ^= b | 1;
        assert!(check(&bad[..], 1, None, None).is_err(), "flip at {i} not caught");
    }
});
