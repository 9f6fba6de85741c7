//! `/proc/PID/timers`: POSIX timers.

use super::*;

/// How a POSIX timer notifies (`sigev_notify` without `SIGEV_THREAD_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerNotify {
    /// `SIGEV_SIGNAL`.
    Signal,
    /// `SIGEV_THREAD` (the kernel treats it like a signal; libc runs the
    /// thread).
    Thread,
    /// `SIGEV_NONE`.
    None,
}

/// One POSIX timer from `/proc/PID/timers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixTimerInfo {
    /// `ID:` the timer id (`timer_t`).
    pub id: i32,
    /// Signal number.
    pub signal: i32,
    /// `sigev_value` (the pointer or integer).
    pub sigval: u64,
    /// How it notifies.
    pub notify: TimerNotify,
    /// `SIGEV_THREAD_ID`: the signal goes to thread `notify_tid` (shown as
    /// `tid.N`; otherwise `pid.N`, the process).
    pub notify_thread_id: bool,
    /// The pid or tid notified, in the reader's pid namespace.
    pub notify_tid: i32,
    /// `ClockID:` the clock (`CLOCK_*`, or a negative CPU-time clock id).
    pub clock: i32,
}

/// Parse a `timers` file: four lines per timer (`ID:`, `signal:`,
/// `notify:`, `ClockID:`).
pub fn parse_timers(buf: &[u8]) -> ParseResult<Vec<PosixTimerInfo>> {
    let all: Vec<&[u8]> = lines(buf).filter(|l| !l.trim_ascii().is_empty()).collect();
    if !all.len().is_multiple_of(4) {
        return bad(format!("{} lines, not a multiple of 4", all.len()));
    }
    let mut out = Vec::with_capacity(all.len() / 4);
    for chunk in all.chunks_exact(4) {
        let field = |i: usize, want: &[u8]| -> ParseResult<&[u8]> {
            match key_value(chunk[i]) {
                Some((k, v)) if k == want => Ok(v),
                _ => bad(format!(
                    "expected a {} line, found {:?}",
                    show(want),
                    show(chunk[i])
                )),
            }
        };
        let id_v = field(0, b"ID")?;
        let sig_v = field(1, b"signal")?;
        let notify_v = field(2, b"notify")?;
        let clock_v = field(3, b"ClockID")?;
        let err = |what: &str, v: &[u8]| ParseError(format!("bad {what} line: {:?}", show(v)));

        let id = dec_i32(id_v).ok_or_else(|| err("ID", id_v))?;
        let (signo, val) = sig_v
            .split_once_byte(b'/')
            .ok_or_else(|| err("signal", sig_v))?;
        let signal = dec_i32(signo).ok_or_else(|| err("signal", sig_v))?;
        let sigval = hex_u64(val).ok_or_else(|| err("signal", sig_v))?;

        let (how, target) = notify_v
            .split_once_byte(b'/')
            .ok_or_else(|| err("notify", notify_v))?;
        let notify = match how {
            b"signal" => TimerNotify::Signal,
            b"thread" => TimerNotify::Thread,
            b"none" => TimerNotify::None,
            _ => return Err(err("notify", notify_v)),
        };
        let (kind, who) = target
            .split_once_byte(b'.')
            .ok_or_else(|| err("notify", notify_v))?;
        let notify_thread_id = match kind {
            b"tid" => true,
            b"pid" => false,
            _ => return Err(err("notify", notify_v)),
        };
        let notify_tid = dec_i32(who).ok_or_else(|| err("notify", notify_v))?;
        let clock = dec_i32(clock_v).ok_or_else(|| err("ClockID", clock_v))?;
        out.push(PosixTimerInfo {
            id,
            signal,
            sigval,
            notify,
            notify_thread_id,
            notify_tid,
            clock,
        });
    }
    Ok(out)
}

/// `/proc/PID/timers`: the process's POSIX timers (not their current value:
/// that needs `timer_gettime` from inside the process).
pub fn timers(pid: impl Into<Pid>) -> Result<Vec<PosixTimerInfo>> {
    let pid = pid.into();
    read_parse(proc_path(pid, "timers"), parse_timers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_samples() {
        let t = parse_timers(b"ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.1234\nClockID: 1\nID: 7\nsignal: 34/00007ffd1234abcd\nnotify: signal/tid.1240\nClockID: -6\nID: 8\nsignal: 0/0000000000000000\nnotify: none/pid.1234\nClockID: 0\nID: 9\nsignal: 12/0000000000000001\nnotify: thread/pid.1234\nClockID: 7\n").unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(
            t[0],
            PosixTimerInfo {
                id: 0,
                signal: 14,
                sigval: 0,
                notify: TimerNotify::Signal,
                notify_thread_id: false,
                notify_tid: 1234,
                clock: 1
            }
        );
        assert_eq!((t[1].id, t[1].signal, t[1].sigval), (7, 34, 0x7ffd1234abcd));
        assert!(t[1].notify_thread_id);
        assert_eq!((t[1].notify_tid, t[1].clock), (1240, -6));
        assert_eq!(t[2].notify, TimerNotify::None);
        assert_eq!(t[3].notify, TimerNotify::Thread);
        assert!(parse_timers(b"").unwrap().is_empty());
    }

    #[test]
    fn timers_bad_input_is_an_error() {
        let good = "ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.1234\nClockID: 1\n";
        assert!(parse_timers(b"ID: 0\n").is_err());
        for (from, to) in [
            ("ID: 0", "ID: x"),
            ("ID: 0", "Id: 0"),
            ("14/", "14"),
            ("signal/pid", "sig/pid"),
            ("pid.", "pgid."),
            ("pid.1234", "pid1234"),
            ("ClockID: 1", "ClockID:"),
        ] {
            let s = good.replace(from, to);
            assert!(parse_timers(s.as_bytes()).is_err(), "{s:?}");
        }
    }
}
