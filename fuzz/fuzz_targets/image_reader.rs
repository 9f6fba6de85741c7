//! Arbitrary bytes through the image reader: every record decoded, every
//! metadata payload decoded as its type. Invariants: no panic, no huge
//! allocation; a stream that reads completely also summarises, and a record
//! that decodes re-encodes to a payload that decodes to the same value.
#![no_main]

use crtools::image::{self, Kind, Reader, wire};
use libfuzzer_sys::fuzz_target;

fn roundtrip<T: wire::Wire + PartialEq + std::fmt::Debug>(payload: &[u8]) {
    if let Ok(v) = wire::decode::<T>(payload) {
        let again: T = wire::decode(&wire::encode(&v)).expect("re-encoded value decodes");
        assert_eq!(again, v);
    }
}

fuzz_target!(|data: &[u8]| {
    // Payload codec on its own.
    roundtrip::<image::Process>(data);
    roundtrip::<image::Thread>(data);
    roundtrip::<image::Mm>(data);
    roundtrip::<image::FdTable>(data);
    roundtrip::<image::File>(data);
    roundtrip::<image::StreamHeader>(data);
    roundtrip::<image::EndRecord>(data);

    let Ok(mut r) = Reader::new(data) else { return };
    let mut complete = true;
    loop {
        match r.next_record() {
            Ok(Some(rec)) => match rec.kind {
                Kind::PROCESS => drop(rec.decode::<image::Process>()),
                Kind::THREAD => drop(rec.decode::<image::Thread>()),
                Kind::MM => drop(rec.decode::<image::Mm>()),
                Kind::FDTABLE => drop(rec.decode::<image::FdTable>()),
                Kind::FILE => drop(rec.decode::<image::File>()),
                _ => {}
            },
            Ok(None) => break,
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    if let Ok(info) = crtools::filters::info::info(data) {
        assert!(complete, "cr-info accepted a stream the reader refuses");
        assert_eq!(info.stored_bytes, data.len() as u64);
    }
});
