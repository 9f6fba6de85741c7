//! The record pipeline shared by the filters: a reader thread, N workers,
//! and the caller's thread writing results in stream order.
//!
//! Memory stays bounded: the work queue holds `N` records and at most
//! `2N + 2` results wait for the writer, with `N` at most [`MAX_THREADS`]. Each record gets its own one-shot
//! reply channel, queued in stream order, so output order (and therefore
//! the output bytes) does not depend on the number of threads.

use std::io::{self, Read, Write};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use super::{FilterError, Result, Stats};
use crate::image::{Key, RawRecord, Reader, WriteOptions, Writer};

/// The most worker threads a pipeline runs; more are not faster on any
/// machine this is for, and each may hold a few records in memory.
pub const MAX_THREADS: usize = 256;

enum Slot<T> {
    Pending(Receiver<Result<T>>),
    Failed(FilterError),
}

/// Reads every record after the header from `reader`, applies a worker
/// made by `make` to each (in `threads` threads, or inline when `threads <=
/// 1`), and hands the results to `sink` in stream order. Stops at the first
/// error in stream order.
pub fn for_each<R, T, M, F, S>(
    reader: &mut Reader<R>,
    threads: usize,
    make: M,
    mut sink: S,
) -> Result<()>
where
    R: Read + Send,
    T: Send,
    M: Fn() -> F + Sync,
    F: FnMut(RawRecord) -> Result<T>,
    S: FnMut(T) -> Result<()>,
{
    let threads = threads.min(MAX_THREADS);
    if threads <= 1 {
        let mut work = make();
        while let Some(raw) = reader.next_raw()? {
            sink(work(raw)?)?;
        }
        return Ok(());
    }
    type Job<T> = (RawRecord, SyncSender<Result<T>>);
    let (work_tx, work_rx) = sync_channel::<Job<T>>(threads);
    let work_rx = Mutex::new(work_rx);
    let (order_tx, order_rx) = sync_channel::<Slot<T>>(threads * 2 + 2);
    std::thread::scope(|s| {
        s.spawn(move || {
            loop {
                match reader.next_raw() {
                    Ok(Some(raw)) => {
                        let (tx, rx) = sync_channel(1);
                        // A send fails only when the writer has stopped.
                        if order_tx.send(Slot::Pending(rx)).is_err()
                            || work_tx.send((raw, tx)).is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let _ = order_tx.send(Slot::Failed(e.into()));
                        return;
                    }
                }
            }
        });
        for _ in 0..threads {
            let (work_rx, make) = (&work_rx, &make);
            s.spawn(move || {
                let mut work = make();
                loop {
                    let job = work_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((raw, reply)) = job else { return };
                    let _ = reply.send(work(raw));
                }
            });
        }
        // Returning early drops `order_rx`, which stops the reader, which
        // closes the work queue, which stops the workers.
        for slot in order_rx {
            match slot {
                Slot::Pending(rx) => {
                    let v = rx.recv().map_err(|_| {
                        FilterError::Image(io::Error::other("a worker thread failed").into())
                    })??;
                    sink(v)?;
                }
                Slot::Failed(e) => return Err(e),
            }
        }
        Ok(())
    })
}

/// Counts the bytes written through it.
pub struct Counting<W> {
    inner: W,
    pub count: u64,
}

impl<W> Counting<W> {
    pub fn new(inner: W) -> Self {
        Counting { inner, count: 0 }
    }
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What digests a [`transform`]'s output carries on its header and end
/// record (the worker decides those of the records between).
#[derive(Debug, Clone)]
pub enum Signing {
    /// Those of the input: none, plain, or keyed (passed on unchanged,
    /// so a filter without the key keeps a keyed stream valid).
    Keep,
    /// Plain SHA-256 digests. Refused on a keyed input, which would lose
    /// its keys.
    Plain,
    /// Keyed digests with this key; a keyed input must be keyed with it.
    Keyed(Key),
}

/// Copies a stream record by record through a per-record transform: the
/// header passes unchanged, each record becomes what the worker returns
/// (its head's `kind` and `seq` must stay), and a new end record closes the
/// output, with digests as `signing` says.
pub fn transform<R, W, M, F>(
    input: R,
    output: W,
    threads: usize,
    signing: Signing,
    make: M,
    mut progress: Option<super::ProgressFn<'_>>,
) -> Result<(W, Stats)>
where
    R: Read + Send,
    W: Write,
    M: Fn() -> F + Sync,
    F: FnMut(RawRecord) -> Result<(u64, RawRecord)>,
{
    let mut reader = Reader::new(input)?;
    let header_raw = reader.header_raw().clone();
    let header = header_raw.decode()?;
    let out = Counting::new(output);
    let keyed_in = header_raw.head.keyed();
    let mut writer = match signing {
        Signing::Keyed(key) => {
            if keyed_in {
                header_raw.verify_keyed(&key)?;
            }
            Writer::keyed(out, &header.payload, key)?
        }
        Signing::Plain if keyed_in => {
            return Err(FilterError::Usage(
                "the image carries keyed digests: give their key (--key) to keep them".into(),
            ));
        }
        Signing::Keep if keyed_in => {
            Writer::with_header_raw(out, &header_raw, WriteOptions { digest: true })?
        }
        signing => {
            let opts = WriteOptions {
                digest: matches!(signing, Signing::Plain) || reader.header_has_digest(),
            };
            Writer::with_header_payload(out, &header.payload, opts)?
        }
    };
    let mut stats = Stats {
        records: 0,
        bytes_in: reader.bytes_read(),
        bytes_out: writer.bytes_written(),
    };
    for_each(
        &mut reader,
        threads,
        make,
        |(in_len, rec): (u64, RawRecord)| {
            debug_assert_eq!(rec.head.seq, writer.next_seq());
            writer.write_stored(
                rec.head.kind,
                rec.head.flags,
                rec.head.raw_len as usize,
                &rec.stored,
                rec.digest,
            )?;
            stats.records += 1;
            stats.bytes_in += in_len;
            stats.bytes_out = writer.bytes_written();
            if let Some(p) = progress.as_mut() {
                p(&stats);
            }
            Ok(())
        },
    )?;
    if keyed_in
        && let Some(d) = reader
            .end_raw()
            .filter(|e| e.head.keyed())
            .and_then(|e| e.digest)
    {
        // Only used when the writer has no key of its own (`Keep`).
        writer.keep_keyed_end(d);
    }
    let out = writer.finish()?;
    stats.bytes_in = reader.bytes_read();
    stats.bytes_out = out.count;
    Ok((out.into_inner(), stats))
}
