//! cr-split: joining the parts of a valid stream gives it back byte for
//! byte, parts respect the size unless they hold a single unit, and a
//! missing, repeated or swapped part is refused. Arbitrary bytes given as
//! parts never join into anything the reader would refuse.
#![no_main]

use std::cell::RefCell;
use std::io::{self, Seek, SeekFrom, Write};
use std::rc::Rc;

use crtools::filters::split::{PART_HEAD_LEN, PartInput, join, split};
use crtools::image::{Reader, synth};
use libfuzzer_sys::fuzz_target;

/// A part in memory that split can write and seek in.
struct Part {
    buf: Rc<RefCell<Vec<u8>>>,
    pos: usize,
}

impl Write for Part {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut buf = self.buf.borrow_mut();
        let end = self.pos + data.len();
        if buf.len() < end {
            buf.resize(end, 0);
        }
        buf[self.pos..end].copy_from_slice(data);
        self.pos = end;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Part {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::Start(n) => self.pos = n as usize,
            _ => unreachable!("split seeks only to the start of a part"),
        }
        Ok(self.pos as u64)
    }
}

fn inputs<'a>(parts: &[&'a [u8]]) -> Vec<PartInput<&'a [u8]>> {
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| PartInput {
            name: format!("part.{i:03}"),
            input: *p,
            len: Some(p.len() as u64),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&s, rest)) = data.split_first() else {
        return;
    };
    // Arbitrary bytes as two parts: joining may fail, but what it accepts
    // is a complete stream.
    let (a, b) = rest.split_at(rest.len() / 2);
    if let Ok((out, _)) = join(inputs(&[a, b]), Vec::new()) {
        let mut r = Reader::new(&out[..]).expect("joined output reads");
        while r.next_raw().expect("joined output reads").is_some() {}
    }

    let x = synth::from_recipe(rest);
    let size = PART_HEAD_LEN as u64 + 1 + (s as u64) * 97;
    let bufs: RefCell<Vec<Rc<RefCell<Vec<u8>>>>> = RefCell::new(Vec::new());
    let report = split(&x[..], size, |i| {
        assert_eq!(i as usize, bufs.borrow().len());
        let buf = Rc::new(RefCell::new(Vec::new()));
        bufs.borrow_mut().push(buf.clone());
        Ok(Part { buf, pos: 0 })
    })
    .expect("split a valid stream");
    let parts: Vec<Vec<u8>> = bufs
        .into_inner()
        .iter()
        .map(|b| b.borrow().clone())
        .collect();
    assert_eq!(report.parts as usize, parts.len());
    assert_eq!(report.bytes, x.len() as u64);
    let all: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
    let (joined, n) = join(inputs(&all), Vec::new()).expect("join own parts");
    assert_eq!(joined, x);
    assert_eq!(n, x.len() as u64);
    if parts.len() > 1 {
        let mut missing = all.clone();
        missing.remove(s as usize % parts.len());
        assert!(join(inputs(&missing), Vec::new()).is_err());
        let mut swapped = all.clone();
        swapped.swap(0, parts.len() - 1);
        assert!(join(inputs(&swapped), Vec::new()).is_err());
    }
    let mut repeated = all.clone();
    repeated.push(all[0]);
    assert!(join(inputs(&repeated), Vec::new()).is_err());
    // A truncated last part.
    let mut cut = all.clone();
    let last = cut.len() - 1;
    cut[last] = &cut[last][..cut[last].len() - 1];
    assert!(join(inputs(&cut), Vec::new()).is_err());
});
