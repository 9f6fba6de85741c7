//! cr-info: never panics on arbitrary bytes; on a valid stream built from
//! the input it succeeds, counts every record, and its JSON renders; any
//! truncation of that stream is refused.
#![no_main]

use crtools::filters::info::info;
use crtools::image::synth;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(i) = info(data) {
        let _ = i.to_json().to_string();
        let _ = i.to_string();
    }
    let x = synth::from_recipe(data);
    let i = info(&x[..]).expect("info on a valid stream");
    assert_eq!(i.stored_bytes, x.len() as u64);
    assert_eq!(i.kinds.values().map(|k| k.records).sum::<u64>(), i.records);
    assert!(i.raw_bytes >= i.stored_bytes || i.compressed_records > 0);
    let _ = i.to_json().to_string();
    let cut = data.first().map_or(0, |&b| b as usize * 7) % x.len();
    assert!(info(&x[..cut]).is_err());
});
