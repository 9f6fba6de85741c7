//! decode -> validate -> plan: never panics on any bytes, and every plan of
//! a validated image keeps the plan's rules (`plan::verify`): each process
//! forked exactly once, by its parent, after it; each zombie and ghost
//! once; joins to the right leader; close ranges that keep exactly the
//! placed descriptors; every mapping made once; every thread released once.
//!
//! The first byte chooses the input: the raw bytes as an image, or a tree
//! shape read from them and written by `synth::tree` (so most inputs reach
//! the planner), with or without the pid-namespace-init flag.
#![no_main]

use crtools::image::synth::{TreeProc, tree};
use crtools::image::{HDR_PIDNS_INIT, Reader};
use crtools::restart::meta::{self, Meta};
use crtools::restart::plan::{self, PlanOptions};
use libfuzzer_sys::fuzz_target;

/// A tree shape from 4 bytes per process.
fn shape(data: &[u8]) -> Vec<TreeProc> {
    let mut procs: Vec<TreeProc> = Vec::new();
    for (i, c) in data.chunks_exact(4).take(64).enumerate() {
        let pid = match c[1] {
            255 => 1 << 31,
            254 => 0,
            b => 100 + (b as u32 % 80) * 2 + i as u32 % 2,
        };
        let parent = (!procs.is_empty()).then(|| &procs[c[0] as usize % procs.len()]);
        let (ppid, ppgid, psid) = parent.map_or((0, pid, pid), |p| (p.pid, p.pgid, p.sid));
        let pgid = match (c[2] >> 3) & 3 {
            0 => procs.first().map_or(pid, |r| r.pgid),
            1 => pid,
            2 => ppgid,
            _ => 400 + c[3] as u32 % 8,
        };
        let sid = if c[3] & 1 == 1 { pid } else { psid };
        let zombie = c[2] & 1 == 1 && i > 0;
        let fds = (0..(c[3] >> 1) % 6)
            .map(|k| ((c[0] as u32 + k as u32 * 3) % 9, 1 + (c[1] as u64 + k as u64) % 4))
            .collect();
        procs.push(TreeProc {
            pid,
            ppid,
            pgid,
            sid,
            zombie,
            extra_threads: if zombie { 0 } else { (c[2] as u32 >> 1) & 3 },
            fds: if zombie { Vec::new() } else { fds },
            outside_tty: c[1] & 1 == 1,
        });
    }
    procs
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let img = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let flags = if mode & 2 != 0 { HDR_PIDNS_INIT } else { 0 };
        tree(&shape(rest), flags)
    };
    let Ok(mut reader) = Reader::new(&img[..]) else {
        return;
    };
    let Ok(raw) = meta::read(&mut reader) else {
        return;
    };
    let Ok(m) = Meta::validate(raw) else {
        return;
    };
    for bits in 0..16u8 {
        let opts = PlanOptions {
            original_pids: bits & 1 != 0,
            pidns: bits & 2 != 0,
            ns_init: bits & 4 != 0,
            terminal: bits & 8 != 0,
        };
        let p = plan::plan(&m, opts);
        if let Err(e) = plan::verify(&m, &p, opts) {
            panic!("{e}: {p:#?}");
        }
    }
});
