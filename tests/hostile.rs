//! Hostile images fed to `cr-restart`: a real image re-written with absurd
//! values in its records (and valid CRCs, so the framing passes): impossible
//! addresses, overlapping or unaligned mappings, huge descriptors, missing
//! references, wrong register sizes, records out of order, page data outside
//! the mappings. Each must be refused with exit status 1 and one line on
//! stderr, never a panic or a hang, and nothing may be left behind.

mod common;

use common::*;
use crtools::image::{
    self, DataPrefix, FdTable, Kind, Mm, Process, Reader, Record, Thread, WriteOptions, Writer,
    wire,
};
use std::process::Command;

/// The records of an image, decoded.
fn records(img: &[u8]) -> (image::StreamHeader, Vec<Record>) {
    let mut r = Reader::new(img).expect("a valid image");
    let header = r.header().clone();
    let mut out = Vec::new();
    while let Some(rec) = r.next_record().expect("a valid record") {
        out.push(rec);
    }
    (header, out)
}

/// Writes records as a new, well-framed stream.
fn stream(header: &image::StreamHeader, recs: &[(Kind, Vec<u8>)]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), header, WriteOptions::default()).unwrap();
    for (k, p) in recs {
        w.write_record(*k, p).unwrap();
    }
    w.finish().unwrap()
}

fn edit<T: wire::Wire>(rec: &Record, f: impl FnOnce(&mut T)) -> Vec<u8> {
    let mut v: T = rec.decode().unwrap();
    f(&mut v);
    wire::encode(&v)
}

#[test]
fn hostile_records_are_refused_cleanly() {
    let orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
    orig.expect_count(None, 2);
    let dir = tempdir();
    let path = dir.path().join("ok.img");
    ckpt_to_file(&[], orig.pid(), &path);
    let img = std::fs::read(&path).unwrap();
    let (header, recs) = records(&img);
    let plain: Vec<(Kind, Vec<u8>)> = recs.iter().map(|r| (r.kind, r.payload.to_vec())).collect();
    let find = |k: Kind| recs.iter().position(|r| r.kind == k).unwrap();
    let (ip, it, im, ifd, ipg) = (
        find(Kind::PROCESS),
        find(Kind::THREAD),
        find(Kind::MM),
        find(Kind::FDTABLE),
        find(Kind::PAGES),
    );
    type Case = (&'static str, Box<dyn Fn(&mut Vec<(Kind, Vec<u8>)>)>);
    let r = |i: usize| recs[i].clone();
    let cases: Vec<Case> = vec![
        (
            "mapping beyond the address space",
            Box::new({
                let rec = r(im);
                move |v| v[im].1 = edit::<Mm>(&rec, |m| m.vmas[0].end = !0xfff)
            }),
        ),
        (
            "unaligned mapping",
            Box::new({
                let rec = r(im);
                move |v| v[im].1 = edit::<Mm>(&rec, |m| m.vmas[0].start += 1)
            }),
        ),
        (
            "overlapping mappings",
            Box::new({
                let rec = r(im);
                move |v| {
                    v[im].1 = edit::<Mm>(&rec, |m| {
                        let first = m.vmas[0].clone();
                        m.vmas.insert(1, first);
                    })
                }
            }),
        ),
        (
            "registers of the wrong size",
            Box::new({
                let rec = r(it);
                move |v| v[it].1 = edit::<Thread>(&rec, |t| t.regs.truncate(8))
            }),
        ),
        (
            "absurd descriptor number",
            Box::new({
                let rec = r(ifd);
                move |v| v[ifd].1 = edit::<FdTable>(&rec, |t| t.fds[0].fd = 1 << 30)
            }),
        ),
        (
            "descriptor of a missing file",
            Box::new({
                let rec = r(ifd);
                move |v| v[ifd].1 = edit::<FdTable>(&rec, |t| t.fds[0].file_id = 999_999)
            }),
        ),
        (
            "pid 0",
            Box::new({
                let rec = r(ip);
                move |v| v[ip].1 = edit::<Process>(&rec, |p| p.pid = 0)
            }),
        ),
        (
            "thread before its process",
            Box::new(move |v| v.swap(ip, it)),
        ),
        (
            "memory record missing",
            Box::new(move |v| {
                v.remove(im);
            }),
        ),
        (
            "metadata after page data",
            Box::new(move |v| {
                let m = v.remove(im);
                v.insert(ipg, m);
            }),
        ),
        (
            "pages outside the mappings",
            Box::new(move |v| {
                let (pre, data) = DataPrefix::parse(&v[ipg].1)
                    .map(|(p, d)| (p, d.to_vec()))
                    .unwrap();
                let bad = DataPrefix {
                    addr: 0x1000,
                    ..pre
                };
                v[ipg].1 = [bad.to_bytes().to_vec(), data].concat();
            }),
        ),
        (
            "pages for an unknown process",
            Box::new(move |v| {
                let (pre, data) = DataPrefix::parse(&v[ipg].1)
                    .map(|(p, d)| (p, d.to_vec()))
                    .unwrap();
                let bad = DataPrefix {
                    id: 4_000_000,
                    ..pre
                };
                v[ipg].1 = [bad.to_bytes().to_vec(), data].concat();
            }),
        ),
        (
            "unknown required record kind",
            Box::new(move |v| v.insert(1, (Kind(0x7abc), vec![1, 2, 3]))),
        ),
        (
            "garbage metadata payload",
            Box::new(move |v| v[ip].1 = vec![0xff; 64]),
        ),
    ];
    let exe = workload("onetask");
    let running = || -> Vec<i32> {
        all_pids()
            .into_iter()
            .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe))
            .collect()
    };
    let me = std::process::id() as i32;
    for (name, mutate) in cases {
        let mut v = plain.clone();
        mutate(&mut v);
        let bad = dir.path().join("bad.img");
        std::fs::write(&bad, stream(&header, &v)).unwrap();
        let before = (children_of(me), running());
        let mut cmd = Command::new(bin("cr-restart"));
        cmd.args(["--no-pids", "-i", bad.to_str().unwrap()]);
        let f = run_cmd(cmd, None);
        assert_eq!(f.code(), Some(1), "{name}: {}", f.stderr);
        assert_eq!(f.stderr.lines().count(), 1, "{name}: {}", f.stderr);
        assert!(!f.stderr.contains("panicked"), "{name}: {}", f.stderr);
        assert_eq!(
            (children_of(me), running()),
            before,
            "{name}: processes left behind"
        );
    }
    orig.assert_no_fail();
}
