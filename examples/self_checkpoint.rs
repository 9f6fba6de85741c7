//! `self_checkpoint`: counts, and every N counts writes an image of itself
//! and goes on, like the classic demo. Each checkpoint prints
//! `checkpointed at count N pid P` in the original and, after a restart
//! from that image, `restored at count N pid P` in the restored copy.
//!
//! ```text
//! self_checkpoint [--every N] [--until M] [--delay MS] [--dir DIR | --stdout]
//! ```
//!
//! With `--dir`, image K goes to `DIR/self.K.img` (K the count); with
//! `--stdout` (the default when no `--dir` is given) every image is
//! appended to standard output (`self_checkpoint > out.img`;
//! `cr-restart < out.img` restores the first) and the messages go to
//! standard error. `--until 0` counts forever.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crtools::selfckpt::{Resumed, checkpoint_self};

fn usage() -> ! {
    eprintln!("usage: self_checkpoint [--every N] [--until M] [--delay MS] [--dir DIR | --stdout]");
    std::process::exit(2)
}

fn main() {
    let mut every = 5u64;
    let mut until = 0u64;
    let mut delay = 100u64;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "--every" | "-n" => every = num().max(1),
            "--until" => until = num(),
            "--delay" | "-d" => delay = num(),
            "--dir" => dir = Some(args.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            "--stdout" => dir = None,
            _ => usage(),
        }
    }
    // Messages go where the images do not.
    let say = |msg: String| {
        if dir.is_some() {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{msg}");
            let _ = o.flush();
        } else {
            eprintln!("{msg}");
        }
    };
    let mut i = 0u64;
    loop {
        i += 1;
        say(format!("count {i}"));
        if i.is_multiple_of(every) {
            let result = match &dir {
                Some(d) => {
                    let path = d.join(format!("self.{i}.img"));
                    match std::fs::File::create(&path) {
                        Ok(f) => checkpoint_self(&f),
                        Err(e) => {
                            say(format!("FAIL cannot create {}: {e}", path.display()));
                            std::process::exit(1);
                        }
                    }
                }
                None => checkpoint_self(std::io::stdout()),
            };
            let pid = std::process::id();
            match result {
                Ok(Resumed::Checkpointed) => say(format!("checkpointed at count {i} pid {pid}")),
                Ok(Resumed::Restored) => say(format!("restored at count {i} pid {pid}")),
                Err(e) => say(format!("checkpoint failed at count {i}: {e}")),
            }
        }
        if until != 0 && i >= until {
            return;
        }
        std::thread::sleep(Duration::from_millis(delay));
    }
}
