//! `/proc/PID/stat` and `/proc/PID/task/TID/stat`.

use super::*;

/// `/proc/PID/stat` (or `/proc/PID/task/TID/stat`), field by field, as
/// documented in proc_pid_stat(5). Addresses are 0 when the reader may not
/// see them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stat {
    /// (1) Process or thread id.
    pub pid: i32,
    /// (2) Command name, raw (without the parentheses).
    pub comm: Vec<u8>,
    /// (3) State: `R`, `S`, `D`, `T`, `t`, `Z`, `X`, `I`, ...
    pub state: u8,
    /// (4) Parent pid.
    pub ppid: i32,
    /// (5) Process group id.
    pub pgrp: i32,
    /// (6) Session id.
    pub session: i32,
    /// (7) Controlling terminal (device number), 0 if none.
    pub tty_nr: i32,
    /// (8) Foreground process group of the controlling terminal, -1 if none.
    pub tpgid: i32,
    /// (9) Kernel flags (`PF_*`).
    pub flags: u32,
    /// (10) Minor faults.
    pub minflt: u64,
    /// (11) Minor faults of waited-for children.
    pub cminflt: u64,
    /// (12) Major faults.
    pub majflt: u64,
    /// (13) Major faults of waited-for children.
    pub cmajflt: u64,
    /// (14) User time, clock ticks.
    pub utime: u64,
    /// (15) System time, clock ticks.
    pub stime: u64,
    /// (16) User time of waited-for children.
    pub cutime: i64,
    /// (17) System time of waited-for children.
    pub cstime: i64,
    /// (18) Scheduling priority as the kernel shows it.
    pub priority: i64,
    /// (19) Nice value.
    pub nice: i64,
    /// (20) Number of threads.
    pub num_threads: i64,
    /// (21) Obsolete, always 0.
    pub itrealvalue: i64,
    /// (22) Start time after boot, clock ticks.
    pub start_time: u64,
    /// (23) Virtual memory size, bytes.
    pub vsize: u64,
    /// (24) Resident set size, pages.
    pub rss: i64,
    /// (25) RLIMIT_RSS soft limit, bytes.
    pub rsslim: u64,
    /// (26) Start of the text segment.
    pub start_code: u64,
    /// (27) End of the text segment.
    pub end_code: u64,
    /// (28) Start (bottom) of the stack.
    pub start_stack: u64,
    /// (29) Stack pointer (only shown while dumping core).
    pub kstkesp: u64,
    /// (30) Instruction pointer (only shown while dumping core).
    pub kstkeip: u64,
    /// (31) Obsolete pending signals (decimal, first 32 signals).
    pub signal: u64,
    /// (32) Obsolete blocked signals.
    pub blocked: u64,
    /// (33) Obsolete ignored signals.
    pub sigignore: u64,
    /// (34) Obsolete caught signals.
    pub sigcatch: u64,
    /// (35) Wait channel (0 or 1 these days).
    pub wchan: u64,
    /// (36) Not maintained.
    pub nswap: u64,
    /// (37) Not maintained.
    pub cnswap: u64,
    /// (38) Signal sent to the parent on exit.
    pub exit_signal: i32,
    /// (39) CPU last run on.
    pub processor: i32,
    /// (40) Real-time priority.
    pub rt_priority: u32,
    /// (41) Scheduling policy (`SCHED_*`).
    pub policy: u32,
    /// (42) Aggregated block I/O delays, clock ticks.
    pub delayacct_blkio_ticks: u64,
    /// (43) Guest time, clock ticks.
    pub guest_time: u64,
    /// (44) Guest time of waited-for children.
    pub cguest_time: i64,
    /// (45) Start of the data segment.
    pub start_data: u64,
    /// (46) End of the data segment.
    pub end_data: u64,
    /// (47) Start of the heap (`brk` base).
    pub start_brk: u64,
    /// (48) Start of the argument strings.
    pub arg_start: u64,
    /// (49) End of the argument strings.
    pub arg_end: u64,
    /// (50) Start of the environment strings.
    pub env_start: u64,
    /// (51) End of the environment strings.
    pub env_end: u64,
    /// (52) Exit status, as `waitpid` reports it.
    pub exit_code: i32,
}

/// Fields after the `)` of comm: fields 3 to 52.
const STAT_TAIL_FIELDS: usize = 50;

impl Stat {
    /// Whether it is a kernel thread (`PF_KTHREAD` in `flags`).
    pub fn is_kernel_thread(&self) -> bool {
        const PF_KTHREAD: u32 = 0x0020_0000;
        self.flags & PF_KTHREAD != 0
    }
}

/// Parse a `stat` file. The command name runs from the first `(` to the last
/// `)`, so names with spaces and parentheses parse correctly.
pub fn parse_stat(buf: &[u8]) -> ParseResult<Stat> {
    let Some(open) = buf.iter().position(|&c| c == b'(') else {
        return bad("unexpected format: no '('");
    };
    let Some(close) = buf.iter().rposition(|&c| c == b')') else {
        return bad("unexpected format: no ')'");
    };
    if close < open {
        return bad("unexpected format: ')' before '('");
    }
    let Some(pid) = dec_i32(buf[..open].trim_ascii()) else {
        return bad(format!(
            "unexpected format: bad pid {:?}",
            show(&buf[..open])
        ));
    };
    let comm = buf[open + 1..close].to_vec();
    let f: Vec<&[u8]> = words(buf[close + 1..].trim_ascii()).collect();
    if f.len() < STAT_TAIL_FIELDS {
        return bad(format!(
            "unexpected format: {} fields after the command name, expected {STAT_TAIL_FIELDS}",
            f.len()
        ));
    }
    // f[i] is field number i + 3 of proc_pid_stat(5).
    let field = |n: usize| f[n - 3];
    let err = |n: usize| {
        ParseError(format!(
            "unexpected format: field {n} is {:?}",
            show(field(n))
        ))
    };
    let u = |n: usize| dec_u64(field(n)).ok_or_else(|| err(n));
    let i = |n: usize| dec_i64(field(n)).ok_or_else(|| err(n));
    let i32f = |n: usize| dec_i32(field(n)).ok_or_else(|| err(n));
    let u32f = |n: usize| dec_u32(field(n)).ok_or_else(|| err(n));
    let state = match field(3) {
        [c] => *c,
        _ => return Err(err(3)),
    };
    Ok(Stat {
        pid,
        comm,
        state,
        ppid: i32f(4)?,
        pgrp: i32f(5)?,
        session: i32f(6)?,
        tty_nr: i32f(7)?,
        tpgid: i32f(8)?,
        flags: u32f(9)?,
        minflt: u(10)?,
        cminflt: u(11)?,
        majflt: u(12)?,
        cmajflt: u(13)?,
        utime: u(14)?,
        stime: u(15)?,
        cutime: i(16)?,
        cstime: i(17)?,
        priority: i(18)?,
        nice: i(19)?,
        num_threads: i(20)?,
        itrealvalue: i(21)?,
        start_time: u(22)?,
        vsize: u(23)?,
        rss: i(24)?,
        rsslim: u(25)?,
        start_code: u(26)?,
        end_code: u(27)?,
        start_stack: u(28)?,
        kstkesp: u(29)?,
        kstkeip: u(30)?,
        signal: u(31)?,
        blocked: u(32)?,
        sigignore: u(33)?,
        sigcatch: u(34)?,
        wchan: u(35)?,
        nswap: u(36)?,
        cnswap: u(37)?,
        exit_signal: i32f(38)?,
        processor: i32f(39)?,
        rt_priority: u32f(40)?,
        policy: u32f(41)?,
        delayacct_blkio_ticks: u(42)?,
        guest_time: u(43)?,
        cguest_time: i(44)?,
        start_data: u(45)?,
        end_data: u(46)?,
        start_brk: u(47)?,
        arg_start: u(48)?,
        arg_end: u(49)?,
        env_start: u(50)?,
        env_end: u(51)?,
        exit_code: i32f(52)?,
    })
}

/// `/proc/PID/stat`.
pub fn stat(pid: impl Into<Pid>) -> Result<Stat> {
    let pid = pid.into();
    read_parse(proc_path(pid, "stat"), parse_stat)
}

/// `/proc/PID/task/TID/stat`.
pub fn task_stat(pid: impl Into<Pid>, tid: impl Into<Tid>) -> Result<Stat> {
    let pid = pid.into();
    let tid = tid.into();
    read_parse(task_path(pid, tid, "stat"), parse_stat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::proc::samples::STAT;

    #[test]
    fn stat_sample() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.pid, 6922);
        assert_eq!(s.comm, b"cat");
        assert_eq!(s.state, b'R');
        assert_eq!(
            (s.ppid, s.pgrp, s.session, s.tty_nr, s.tpgid),
            (6917, 6917, 3289, 0, -1)
        );
        assert_eq!(s.flags, 4194304);
        assert_eq!(s.minflt, 97);
        assert_eq!((s.priority, s.nice, s.num_threads), (20, 0, 1));
        assert_eq!(s.start_time, 52381);
        assert_eq!(s.vsize, 3133440);
        assert_eq!(s.rss, 381);
        assert_eq!(s.rsslim, u64::MAX);
        assert_eq!(s.start_code, 94647558574080);
        assert_eq!(s.end_code, 94647558593961);
        assert_eq!(s.start_stack, 140722284526240);
        assert_eq!(s.exit_signal, 17);
        assert_eq!(s.start_data, 94647558609968);
        assert_eq!(s.end_data, 94647558611584);
        assert_eq!(s.start_brk, 94648127827968);
        assert_eq!(s.arg_start, 140722284530388);
        assert_eq!(s.arg_end, 140722284530408);
        assert_eq!(s.env_start, 140722284530408);
        assert_eq!(s.env_end, 140722284531691);
        assert_eq!(s.exit_code, 0);
    }

    fn with_comm(comm: &[u8]) -> Vec<u8> {
        let open = STAT.iter().position(|&c| c == b'(').unwrap();
        let close = STAT.iter().position(|&c| c == b')').unwrap();
        [&STAT[..=open], comm, &STAT[close..]].concat()
    }

    #[test]
    fn stat_hostile_comm() {
        for comm in [
            &b"a) (b c) R 1 2"[..],
            b")",
            b"((",
            b"",
            b" ",
            b"x\ny",
            b"\xff\xfe)",
        ] {
            let s = parse_stat(&with_comm(comm)).unwrap();
            assert_eq!(s.comm, comm, "comm {comm:?}");
            assert_eq!(s.ppid, 6917);
            assert_eq!(s.exit_code, 0);
        }
    }

    #[test]
    fn stat_bad_input_is_an_error() {
        let cut = STAT.len() - 10;
        for bad in [
            &b""[..],
            b"\n",
            b"1 (x",
            b"1 x) R",
            b") 1 (x",
            b"x (cat) R 1",
            &STAT[..cut],
            b"1 (cat) R",
        ] {
            let e = parse_stat(bad).unwrap_err();
            assert!(e.0.starts_with("unexpected format"), "{bad:?}: {e}");
        }
        // A non-numeric field.
        let s = String::from_utf8(STAT.to_vec())
            .unwrap()
            .replace(" 52381 ", " 5x381 ");
        assert!(parse_stat(s.as_bytes()).unwrap_err().0.contains("field 22"));
        // A state of two letters.
        let s = String::from_utf8(STAT.to_vec())
            .unwrap()
            .replace(") R ", ") RR ");
        assert!(parse_stat(s.as_bytes()).is_err());
    }
}
