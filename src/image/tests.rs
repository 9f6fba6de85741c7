//! Unit tests of the image format: round trips and every error path.

use std::io::{self, Read};

use super::stream::{DIGEST_LEN, HEAD_LEN, PREAMBLE, record_digest};
use super::synth::{self, Spec};
use super::*;

/// A tiny but complete image: every kind of record the generator makes.
fn tiny_spec(seed: u64) -> Spec {
    Spec {
        processes: 1,
        threads: 1,
        mappings: 1,
        files: 1,
        data: 4096,
        extras: false,
        ..Spec::small(seed, 0)
    }
}

fn small() -> Vec<u8> {
    synth::generate(&tiny_spec(7))
}

fn summed(spec: &Spec) -> Vec<u8> {
    synth::write(Vec::new(), spec, WriteOptions { digest: true }).unwrap()
}

/// Reads a whole stream, decoding every record.
fn read_all(buf: &[u8]) -> Result<Vec<Record>> {
    let mut r = Reader::new(buf)?;
    let mut out = vec![r.header_raw().decode()?];
    while let Some(rec) = r.next_record()? {
        out.push(rec);
    }
    assert!(r.end().is_some());
    Ok(out)
}

/// Offsets of every frame in a stream (header first, end last).
fn frames(buf: &[u8]) -> Vec<usize> {
    let mut at = PREAMBLE.len();
    let mut v = Vec::new();
    while at < buf.len() {
        v.push(at);
        let stored = u32::from_le_bytes(buf[at + 8..at + 12].try_into().unwrap()) as usize;
        let flags = u16::from_le_bytes(buf[at + 2..at + 4].try_into().unwrap());
        at += HEAD_LEN + stored + if flags & F_DIGEST != 0 { DIGEST_LEN } else { 0 };
    }
    v
}

/// Recomputes the CRC of the frame at `at`, after a deliberate edit.
fn fix_crc(buf: &mut [u8], at: usize) {
    let stored = u32::from_le_bytes(buf[at + 8..at + 12].try_into().unwrap()) as usize;
    let flags = u16::from_le_bytes(buf[at + 2..at + 4].try_into().unwrap());
    let len = HEAD_LEN + stored + if flags & F_DIGEST != 0 { DIGEST_LEN } else { 0 };
    buf[at + 20..at + 24].fill(0);
    let crc = crc32c::crc32c(&buf[at..at + len]);
    buf[at + 20..at + 24].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn round_trip_plain_and_summed() {
    let spec = Spec::small(3, 200_000);
    for buf in [synth::generate(&spec), summed(&spec)] {
        let recs = read_all(&buf).unwrap();
        assert_eq!(recs[0].kind, Kind::HEADER);
        let header: StreamHeader = recs[0].decode().unwrap();
        assert_eq!(header.format_major, FORMAT_MAJOR);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.seq as usize, i);
        }
        let pages: usize = recs
            .iter()
            .filter(|r| r.kind == Kind::PAGES)
            .map(|r| DataPrefix::parse(&r.payload).unwrap().1.len())
            .sum();
        assert_eq!(pages, 200_000usize.div_ceil(4096) * 4096);
        let procs: Vec<Process> = recs
            .iter()
            .filter(|r| r.kind == Kind::PROCESS)
            .map(|r| r.decode().unwrap())
            .collect();
        assert_eq!(procs.len(), 2);
        assert!(recs.iter().any(|r| r.kind.is_optional()));
    }
}

#[test]
fn summed_stream_has_verified_stream_digest() {
    let buf = summed(&Spec::small(4, 50_000));
    let mut r = Reader::new(&buf[..]).unwrap();
    assert!(r.header_has_digest());
    while r.next_record().unwrap().is_some() {}
    assert!(r.end().unwrap().stream_digest.is_some());
    assert!(r.end_has_digest());
}

#[test]
fn writer_output_is_deterministic() {
    let spec = Spec::small(9, 100_000);
    assert_eq!(synth::generate(&spec), synth::generate(&spec));
    assert_ne!(
        synth::generate(&spec),
        synth::generate(&Spec::small(10, 100_000))
    );
}

#[test]
fn every_truncation_is_an_error() {
    for buf in [small(), summed(&tiny_spec(5))] {
        for n in 0..buf.len() {
            let err = read_all(&buf[..n]).expect_err("a prefix must not read as a stream");
            if n == 0 {
                assert!(matches!(err, ImageError::Empty));
            } else if n >= PREAMBLE.len() {
                assert!(
                    matches!(err, ImageError::Truncated { .. }),
                    "prefix {n}: {err}"
                );
            }
        }
    }
}

#[test]
fn every_flipped_byte_is_caught() {
    for buf in [small(), summed(&tiny_spec(6))] {
        for i in 0..buf.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = buf.clone();
                bad[i] ^= bit;
                assert!(read_all(&bad).is_err(), "flip {bit:#x} at {i} not caught");
            }
        }
    }
}

#[test]
fn flipped_payload_bit_is_a_crc_error() {
    let mut buf = small();
    let f = frames(&buf);
    let at = f[1] + HEAD_LEN + 3;
    buf[at] ^= 4;
    assert!(matches!(
        read_all(&buf).unwrap_err(),
        ImageError::Crc { seq: 1, .. }
    ));
}

#[test]
fn wrong_sequence_number_is_refused() {
    let mut buf = small();
    let f = frames(&buf);
    buf[f[2] + 4..f[2] + 8].copy_from_slice(&7u32.to_le_bytes());
    fix_crc(&mut buf, f[2]);
    let err = read_all(&buf).unwrap_err().to_string();
    assert!(err.contains("sequence number 7 where 2"), "{err}");
}

#[test]
fn hostile_lengths_are_refused_before_reading() {
    /// Counts what the reader consumes.
    struct Counted<'a>(&'a [u8], usize);
    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 += n;
            Ok(n)
        }
    }
    for field in [8usize, 12] {
        for len in [MAX_PAYLOAD as u32 + 1, u32::MAX] {
            let mut buf = small();
            let f = frames(&buf);
            // (The CRC is not fixed: lengths are checked before it.)
            buf[f[1] + field..f[1] + field + 4].copy_from_slice(&len.to_le_bytes());
            let mut src = Counted(&buf, 0);
            let mut r = Reader::new(&mut src).unwrap();
            let err = r.next_raw().unwrap_err();
            assert!(err.to_string().contains("exceeds"), "{err}");
            drop(r);
            // Nothing past the record head was read (or allocated for).
            assert_eq!(src.1, f[1] + HEAD_LEN);
        }
    }
}

#[test]
fn hostile_counts_in_metadata_fail_to_decode() {
    let mut payload = Vec::new();
    // An Mm struct whose length covers the rest, with a huge VMA count.
    let mut body = Vec::new();
    body.extend_from_slice(&7u32.to_le_bytes()); // pid
    for _ in 0..11 {
        body.extend_from_slice(&0u64.to_le_bytes());
    }
    body.extend_from_slice(&0u32.to_le_bytes()); // auxv
    body.extend_from_slice(&u32::MAX.to_le_bytes()); // vmas count
    payload.extend_from_slice(&(body.len() as u32).to_le_bytes());
    payload.extend_from_slice(&body);
    assert!(wire::decode::<Mm>(&payload).is_err());
}

#[test]
fn bad_preamble_version_and_structure() {
    assert!(matches!(read_all(b"").unwrap_err(), ImageError::Empty));
    assert!(matches!(
        read_all(b"GIF89a...").unwrap_err(),
        ImageError::BadMagic
    ));
    // Another major version.
    let h = StreamHeader {
        format_major: FORMAT_MAJOR + 1,
        ..StreamHeader::default()
    };
    let w = Writer::new(Vec::new(), &h, WriteOptions::default()).unwrap();
    let buf = w.finish().unwrap();
    assert!(matches!(
        read_all(&buf).unwrap_err(),
        ImageError::Version(2, 0)
    ));
    // Data after the end record.
    let mut buf = small();
    buf.push(0);
    assert!(
        read_all(&buf)
            .unwrap_err()
            .to_string()
            .contains("after the end")
    );
    // Two streams back to back.
    let mut two = small();
    two.extend_from_slice(&small());
    assert!(read_all(&two).is_err());
}

fn header() -> StreamHeader {
    StreamHeader {
        format_major: FORMAT_MAJOR,
        arch: "x86_64".into(),
        page_size: 4096,
        ..StreamHeader::default()
    }
}

#[test]
fn second_header_and_kind_zero_are_refused() {
    let mut w = Writer::new(Vec::new(), &header(), WriteOptions::default()).unwrap();
    w.write(Kind::HEADER, &header()).unwrap();
    let buf = w.finish().unwrap();
    assert!(
        read_all(&buf)
            .unwrap_err()
            .to_string()
            .contains("second header")
    );

    let mut w = Writer::new(Vec::new(), &header(), WriteOptions::default()).unwrap();
    assert!(w.write_record(Kind(0), b"x").is_err());
    let mut buf = small();
    let f = frames(&buf);
    buf[f[1]..f[1] + 2].fill(0);
    fix_crc(&mut buf, f[1]);
    assert!(read_all(&buf).unwrap_err().to_string().contains("kind 0"));
}

#[test]
fn unknown_flags_and_length_mismatch_are_refused() {
    let mut buf = small();
    let f = frames(&buf);
    buf[f[1] + 2] |= 0x80;
    fix_crc(&mut buf, f[1]);
    assert!(read_all(&buf).unwrap_err().to_string().contains("flags"));

    let mut buf = small();
    buf[f[1] + 12] ^= 1; // raw_len of a plain record
    fix_crc(&mut buf, f[1]);
    assert!(
        read_all(&buf)
            .unwrap_err()
            .to_string()
            .contains("lengths differ")
    );
}

#[test]
fn end_record_must_match_the_stream() {
    // Drop a record and renumber: the end record's counts no longer match.
    let mut w = Writer::new(Vec::new(), &header(), WriteOptions::default()).unwrap();
    w.write_record(Kind::BLOB, &[0u8; 30]).unwrap();
    let good = w.finish().unwrap();
    let mut w = Writer::new(Vec::new(), &header(), WriteOptions::default()).unwrap();
    w.write_record(Kind::BLOB, &[0u8; 29]).unwrap();
    let other = w.finish().unwrap();
    let (fg, fo) = (frames(&good), frames(&other));
    let mut spliced = other[..fo[2]].to_vec();
    spliced.extend_from_slice(&good[fg[2]..]);
    let err = read_all(&spliced).unwrap_err().to_string();
    assert!(err.contains("end record counts"), "{err}");
    // No end record at all.
    assert!(matches!(
        read_all(&good[..fg[2]]).unwrap_err(),
        ImageError::Truncated { what: "stream" }
    ));
}

#[test]
fn digests_are_checked() {
    let buf = summed(&Spec::small(8, 8192));
    let f = frames(&buf);
    // A record digest that does not match its payload (CRC recomputed).
    let mut bad = buf.clone();
    let stored = u32::from_le_bytes(bad[f[1] + 8..f[1] + 12].try_into().unwrap()) as usize;
    bad[f[1] + HEAD_LEN + stored] ^= 1;
    fix_crc(&mut bad, f[1]);
    assert!(matches!(
        read_all(&bad).unwrap_err(),
        ImageError::Digest { seq: 1, .. }
    ));
    // A stream digest that does not match (end record's own digest and CRC fixed).
    let mut bad = buf.clone();
    let end = *f.last().unwrap();
    let stored = u32::from_le_bytes(bad[end + 8..end + 12].try_into().unwrap()) as usize;
    let payload = end + HEAD_LEN;
    bad[payload + stored - 1] ^= 1; // last byte of the stream digest
    let seq = u32::from_le_bytes(bad[end + 4..end + 8].try_into().unwrap());
    let d = record_digest(Kind::END, seq, &bad[payload..payload + stored]);
    bad[payload + stored..payload + stored + DIGEST_LEN].copy_from_slice(&d);
    fix_crc(&mut bad, end);
    assert!(matches!(
        read_all(&bad).unwrap_err(),
        ImageError::StreamDigest
    ));
}

#[test]
fn compressed_records_decode_and_lying_sizes_fail() {
    let raw = vec![7u8; 10_000];
    let z = zstd::bulk::compress(&raw, 3).unwrap();
    let mut w = Writer::new(Vec::new(), &header(), WriteOptions::default()).unwrap();
    let d = record_digest(Kind::BLOB, 1, &raw);
    w.write_stored(Kind::BLOB, F_ZSTD, raw.len(), &z, Some(d))
        .unwrap();
    let buf = w.finish().unwrap();
    let recs = read_all(&buf).unwrap();
    assert_eq!(&recs[1].payload[..], &raw[..]);
    // Say the frame inflates to one byte less than it does.
    let f = frames(&buf);
    let mut bad = buf.clone();
    bad[f[1] + 12..f[1] + 16].copy_from_slice(&(raw.len() as u32 - 1).to_le_bytes());
    fix_crc(&mut bad, f[1]);
    assert!(matches!(
        read_all(&bad).unwrap_err(),
        ImageError::Corrupt { seq: 1, .. }
    ));
    // Garbage that claims to be zstd.
    let mut w = Writer::new(Vec::new(), &header(), WriteOptions::default()).unwrap();
    w.write_stored(Kind::BLOB, F_ZSTD, 100, b"not zstd at all", None)
        .unwrap();
    let buf = w.finish().unwrap();
    assert!(read_all(&buf).is_err());
}

#[test]
fn too_large_records_are_not_written() {
    let mut w = Writer::new(Vec::new(), &header(), WriteOptions::default()).unwrap();
    let big = vec![0u8; MAX_PAYLOAD + 1];
    assert!(matches!(
        w.write_record(Kind::BLOB, &big),
        Err(ImageError::TooLarge(_))
    ));
}
