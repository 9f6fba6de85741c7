//! A second thread of the calling process that runs jobs for it and waits
//! for nothing else: [`Worker::run`] runs one there and waits for it,
//! [`Worker::join`] runs one there and another on the calling thread at
//! the same time, and returns when both are done.
//!
//! What it is for: ptrace requests are answered only for the tracer
//! *thread* (the one that seized the tracee), so a restorer that wants a
//! second CPU busy with a second half of its tree needs a thread that
//! stays the same from the seizure to the release. The jobs may borrow
//! the caller's data: both calls return only once the job has run (or
//! panicked; the panic is resumed in the caller), like `std::thread::scope`.
//!
//! A tracer thread that exits detaches its tracees: whoever holds a
//! [`Worker`] whose jobs seized processes keeps it until those processes
//! are released or killed.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The worker thread is gone: it could not take the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the worker thread is gone")
    }
}

/// A thread running jobs one at a time, in the order given.
pub struct Worker {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread.
    pub fn spawn(name: &str) -> std::io::Result<Worker> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })?;
        Ok(Worker {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// The thread's id (a `Tid`), for affinity and ptrace checks.
    pub fn tid(&self) -> Result<super::ids::Tid, Gone> {
        // SAFETY: gettid has no arguments and no memory effects.
        self.run(|| super::ids::Tid::from_raw(unsafe { libc::gettid() }))
    }

    /// Hands `job` to the thread; whether it took it. A job it did not
    /// take is dropped here before this returns.
    fn send<'a>(&self, job: Box<dyn FnOnce() + Send + 'a>) -> bool {
        // SAFETY: only the lifetime is changed. Every caller ([`run`],
        // [`join`]) waits until the job has run to its end, or was dropped
        // untaken, before it returns: the job's own completion channel is
        // sent on (or dropped) only then, and the job touches nothing it
        // borrowed after that send. So nothing the job borrows for `'a`
        // is used after `'a` ends, as with `std::thread::scope`.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + 'a>, Job>(job) };
        match &self.tx {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        }
    }

    /// Runs `f` on the worker thread and waits for it; a panic in `f` is
    /// resumed here.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, Gone> {
        self.join(f, || ()).0
    }

    /// Runs `a` on the worker thread and `b` on this one, at the same
    /// time; returns when both are done. A panic in either is resumed
    /// here, after both are done.
    pub fn join<A, B, RA, RB>(&self, a: A, b: B) -> (Result<RA, Gone>, RB)
    where
        A: FnOnce() -> RA + Send,
        RA: Send,
        B: FnOnce() -> RB,
    {
        let (done_tx, done_rx) = mpsc::sync_channel::<std::thread::Result<RA>>(1);
        let job = move || {
            let r = catch_unwind(AssertUnwindSafe(a));
            let _ = done_tx.send(r);
        };
        let sent = self.send(Box::new(job));
        let rb = catch_unwind(AssertUnwindSafe(b));
        // Waited for whatever happened to `b`: the job may borrow what
        // `b`'s unwinding would free.
        let ra = if sent {
            done_rx.recv().map_err(|_| Gone)
        } else {
            Err(Gone)
        };
        let rb = match rb {
            Ok(v) => v,
            Err(p) => resume_unwind(p),
        };
        let ra = match ra {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(p)) => resume_unwind(p),
            Err(g) => Err(g),
        };
        (ra, rb)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_one_other_thread_and_borrow() {
        let w = Worker::spawn("test-worker").unwrap();
        let here = std::thread::current().id();
        let mut v = vec![1, 2, 3];
        let there = w.run(|| std::thread::current().id()).unwrap();
        assert_ne!(there, here);
        let (a, b) = {
            let (x, y) = v.split_at_mut(1);
            w.join(
                || {
                    y[0] += 10;
                    std::thread::current().id()
                },
                || {
                    x[0] += 100;
                    std::thread::current().id()
                },
            )
        };
        assert_eq!(a.unwrap(), there);
        assert_eq!(b, here);
        assert_eq!(v, [101, 12, 3]);
        assert_ne!(w.tid().unwrap().as_raw(), 0);
    }

    #[test]
    fn a_panic_in_a_job_reaches_the_caller_and_the_worker_goes_on() {
        let w = Worker::spawn("test-worker").unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| w.run(|| panic!("boom"))));
        assert!(r.is_err());
        assert_eq!(w.run(|| 7).unwrap(), 7);
    }
}
