//! Real samples of the `/proc` files the parsers read (Linux 6.x), with a
//! few hostile touches (names with spaces, escapes, ` (deleted)`): the
//! parsers' unit tests start from them, and so does the fuzz target
//! `fuzz/fuzz_targets/proc_parsers.rs`.

/// `/proc/PID/stat` of `cat`.
pub const STAT: &[u8] = b"6922 (cat) R 6917 6917 3289 0 -1 4194304 97 0 0 0 0 0 0 0 20 0 1 0 52381 3133440 381 18446744073709551615 94647558574080 94647558593961 140722284526240 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94647558609968 94647558611584 94648127827968 140722284530388 140722284530408 140722284530408 140722284531691 0\n";

/// `/proc/PID/status` of `cat`.
pub const STATUS: &[u8] = b"Name:\tcat\nUmask:\t0022\nState:\tR (running)\nTgid:\t5338\nNgid:\t0\nPid:\t5338\nPPid:\t5327\nTracerPid:\t0\nUid:\t0\t1\t2\t3\nGid:\t4\t5\t6\t7\nFDSize:\t256\nGroups:\t \nNStgid:\t5338\t1\nNSpid:\t5338\t1\nNSpgid:\t5327\t0\nNSsid:\t3289\t0\nKthread:\t0\nVmPeak:\t    3060 kB\nThreads:\t1\nSigQ:\t0/96364\nSigPnd:\t0000000000000000\nShdPnd:\t0000000000000100\nSigBlk:\t0000000000010000\nSigIgn:\t0000000000001000\nSigCgt:\t0000000180000000\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\nSpeculation_Store_Bypass:\tthread vulnerable\nCpus_allowed_list:\t0-1\nvoluntary_ctxt_switches:\t0\n";

/// `/proc/PID/maps` with every kind of mapping.
pub const MAPS: &[u8] = b"\
55571e099000-55571e09b000 r--p 00000000 fe:00 247282                     /usr/bin/head
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n\
7f0000100000-7f0000200000 rw-s 00000000 00:01 1034                       /dev/zero (deleted)
7f0000200000-7f0000201000 rw-s 00000000 00:01 1035                       /memfd:my buf (deleted)
7f0000201000-7f0000202000 rw-s 00000000 00:01 98307                      /SYSV0000abcd (deleted)
7f0000202000-7f0000203000 r-xp 00001000 103:1f 12                        /tmp/with space/and\\012newline
7f0000203000-7f0000204000 ---p 00000000 00:00 0                          [anon:guard page]
7f0000204000-7f0000205000 r--s 00000000 00:0f 7                          anon_inode:[io_uring]
7fffdd1a4000-7fffdd1c5000 rw-p 00000000 00:00 0                          [stack]
7fffdd1fb000-7fffdd1ff000 r--p 00000000 00:00 0                          [vvar]
7fffdd1ff000-7fffdd201000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

/// `/proc/PID/smaps`, two mappings.
pub const SMAPS: &[u8] = b"\
55571e099000-55571e09b000 r--p 00000000 fe:00 247282                     /usr/bin/head
Size:                  8 kB
KernelPageSize:        4 kB
Rss:                   8 kB
Anonymous:             0 kB
AnonHugePages:         0 kB
Swap:                  0 kB
THPeligible:           0
VmFlags: rd mr mw me 
7f0000000000-7f0000400000 rw-p 00000000 00:00 0 
Size:               4096 kB
Rss:                2052 kB
Anonymous:          2052 kB
AnonHugePages:      2048 kB
Swap:                 12 kB
VmFlags: rd wr mr mw me ac sd hg dd
";

/// `/proc/PID/fdinfo/FD` of an epoll descriptor.
pub const FDINFO: &[u8] = b"pos:\t0\nflags:\t02\nmnt_id:\t1\nino:\t5\ntfd: 5 events: 19\n";
/// `/proc/PID/timers`, one timer of each kind of notification.
pub const TIMERS: &[u8] = b"ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.1234\nClockID: 1\nID: 7\nsignal: 34/00007ffd1234abcd\nnotify: signal/tid.1240\nClockID: -6\nID: 8\nsignal: 0/0000000000000000\nnotify: none/pid.1234\nClockID: 0\nID: 9\nsignal: 12/0000000000000001\nnotify: thread/pid.1234\nClockID: 7\n";
