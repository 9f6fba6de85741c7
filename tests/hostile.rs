//! Hostile images fed to `cr-restart`: a real image re-written with absurd
//! values in its records (and valid CRCs, so the framing passes): impossible
//! addresses, ids and descriptors, overlapping or unaligned mappings,
//! missing references, wrong register sizes, records out of order, page
//! data outside the mappings. One test per case. Each must be refused with
//! exit status 1 and one line on stderr naming the fault, never a panic or
//! a hang, and nothing may be left behind; a fault the metadata validation
//! finds is also checked in-process to be the intended [`Fault`] variant,
//! so a case cannot pass for the wrong reason.

mod common;

use std::process::Command;
use std::sync::{Mutex, OnceLock};

use common::*;
use crtools::image::{
    self, DataPrefix, Fault, FdTable, File, Kind, MappingFault, Mm, Process, Reader, Record,
    SocketFault, Thread, WriteOptions, Writer, wire,
};
use crtools::restart::meta::{self, Meta};

/// A real image of one process, decoded, made once.
struct Base {
    header: image::StreamHeader,
    recs: Vec<Record>,
}

impl Base {
    fn find(&self, k: Kind) -> usize {
        self.recs.iter().position(|r| r.kind == k).unwrap()
    }
    fn plain(&self) -> Vec<(Kind, Vec<u8>)> {
        self.recs
            .iter()
            .map(|r| (r.kind, r.payload.to_vec()))
            .collect()
    }
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let orig = Workload::spawn(workload("onetask"), &["-d", "20"]);
        orig.expect_count(None, 2);
        let dir = tempdir();
        let path = dir.path().join("ok.img");
        ckpt_to_file(&[], orig.pid(), &path);
        orig.assert_no_fail();
        let img = std::fs::read(&path).unwrap();
        let mut r = Reader::new(&img[..]).expect("a valid image");
        let header = r.header().clone();
        let mut recs = Vec::new();
        while let Some(rec) = r.next_record().expect("a valid record") {
            recs.push(rec);
        }
        Base { header, recs }
    })
}

/// Writes records as a new, well-framed stream.
fn stream(header: &image::StreamHeader, recs: &[(Kind, Vec<u8>)]) -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), header, WriteOptions::default()).unwrap();
    for (k, p) in recs {
        w.write_record(*k, p).unwrap();
    }
    w.finish().unwrap()
}

/// Decodes record `i` as `T`, changes it, re-encodes it.
fn edit<T: wire::Wire>(v: &mut [(Kind, Vec<u8>)], i: usize, f: impl FnOnce(&mut T)) {
    let mut x: T = wire::decode(&v[i].1).unwrap();
    f(&mut x);
    v[i].1 = wire::encode(&x);
}

/// Replaces the prefix of the data record `i`.
fn edit_prefix(v: &mut [(Kind, Vec<u8>)], i: usize, f: impl FnOnce(&mut DataPrefix)) {
    let (mut pre, data) = DataPrefix::parse(&v[i].1)
        .map(|(p, d)| (p, d.to_vec()))
        .unwrap();
    f(&mut pre);
    v[i].1 = [pre.to_bytes().to_vec(), data].concat();
}

/// What the metadata validation says about an image.
fn validation(img: &[u8]) -> Result<(), crtools::Error> {
    let mut r = Reader::new(img)?;
    Meta::validate(meta::read(&mut r)?)?;
    Ok(())
}

/// Only one `cr-restart` at a time, so "nothing left behind" sees only its own.
static SERIAL: Mutex<()> = Mutex::new(());

/// Makes the base image hostile with `mutate`; checks that validation
/// refuses it with a fault `fault` accepts (`None`: a fault found later,
/// while the data streams in, or by the decoder: validation must then not
/// refuse it), and that `cr-restart` refuses it cleanly with one line
/// containing `message`.
fn refused(
    mutate: impl FnOnce(&mut Vec<(Kind, Vec<u8>)>),
    fault: Option<fn(&Fault) -> bool>,
    message: &str,
) {
    let b = base();
    let mut v = b.plain();
    mutate(&mut v);
    let img = stream(&b.header, &v);
    let checked = validation(&img);
    match (fault, &checked) {
        (Some(want), Err(crtools::Error::Invalid(f))) => {
            assert!(want(f), "refused for another reason: {f:?}")
        }
        (Some(_), other) => panic!("validation did not refuse it as a fault: {other:?}"),
        (None, Err(crtools::Error::Invalid(f))) => {
            panic!("refused by validation, not at the intended stage: {f:?}")
        }
        (None, _) => {}
    }

    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir();
    let bad = dir.path().join("bad.img");
    std::fs::write(&bad, &img).unwrap();
    let exe = workload("onetask");
    let running = || -> Vec<i32> {
        all_pids()
            .into_iter()
            .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe))
            .collect()
    };
    let me = std::process::id() as i32;
    let before = (children_of(me), running());
    let mut cmd = Command::new(bin("cr-restart"));
    cmd.args(["--no-pids", "-i", bad.to_str().unwrap()]);
    let f = run_cmd(cmd, None);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    assert!(!f.stderr.contains("panicked"), "{}", f.stderr);
    assert!(
        f.stderr.contains(message),
        "expected {message:?} in: {}",
        f.stderr
    );
    if let Err(crtools::Error::Invalid(fault)) = checked {
        assert!(f.stderr.contains(&fault.to_string()), "{}", f.stderr);
    }
    assert_eq!(
        (children_of(me), running()),
        before,
        "processes left behind"
    );
}

#[test]
fn mapping_beyond_the_address_space() {
    let im = base().find(Kind::MM);
    refused(
        |v| edit::<Mm>(v, im, |m| m.vmas[0].end = !0xfff),
        Some(|f| {
            matches!(
                f,
                Fault::Mapping {
                    why: MappingFault::OutsideUserSpace,
                    ..
                }
            )
        }),
        "lies outside the user address space",
    );
}

#[test]
fn unaligned_mapping() {
    let im = base().find(Kind::MM);
    refused(
        |v| edit::<Mm>(v, im, |m| m.vmas[0].start += 1),
        Some(|f| {
            matches!(
                f,
                Fault::Mapping {
                    why: MappingFault::Unaligned,
                    ..
                }
            )
        }),
        "is not a page-aligned range",
    );
}

#[test]
fn overlapping_mappings() {
    let im = base().find(Kind::MM);
    refused(
        |v| {
            edit::<Mm>(v, im, |m| {
                let first = m.vmas[0].clone();
                m.vmas.insert(1, first);
            })
        },
        Some(|f| {
            matches!(
                f,
                Fault::Mapping {
                    why: MappingFault::Overlaps,
                    ..
                }
            )
        }),
        "overlaps the one before it",
    );
}

#[test]
fn registers_of_the_wrong_size() {
    let it = base().find(Kind::THREAD);
    refused(
        |v| edit::<Thread>(v, it, |t| t.regs.truncate(8)),
        Some(|f| matches!(f, Fault::RegsSize { .. })),
        "have the wrong size",
    );
}

#[test]
fn impossible_thread_id() {
    let it = base().find(Kind::THREAD);
    // A second thread with an id beyond any pid.
    refused(
        |v| {
            let t = v[it].clone();
            v.insert(it + 1, t);
            edit::<Thread>(v, it + 1, |t| t.tid = 1 << 31);
        },
        Some(|f| matches!(f, Fault::Tid { tid } if *tid == 1 << 31)),
        "impossible thread id 2147483648",
    );
}

#[test]
fn no_main_thread() {
    let it = base().find(Kind::THREAD);
    refused(
        |v| edit::<Thread>(v, it, |t| t.tid += 1),
        Some(|f| matches!(f, Fault::NoMainThread { .. })),
        "has no main thread record",
    );
}

#[test]
fn absurd_descriptor_number() {
    let ifd = base().find(Kind::FDTABLE);
    refused(
        |v| edit::<FdTable>(v, ifd, |t| t.fds[0].fd = 1 << 30),
        Some(|f| matches!(f, Fault::Fd { fd, .. } if *fd == 1 << 30)),
        "impossible descriptor 1073741824",
    );
}

#[test]
fn descriptor_of_a_missing_file() {
    let ifd = base().find(Kind::FDTABLE);
    refused(
        |v| edit::<FdTable>(v, ifd, |t| t.fds[0].file_id = 999_999),
        Some(|f| matches!(f, Fault::MissingFile { .. })),
        "refers to a missing file",
    );
}

#[test]
fn pid_0() {
    let ip = base().find(Kind::PROCESS);
    // Its thread, memory and descriptor records then name a process the
    // image lacks: the first of them is refused.
    refused(
        |v| edit::<Process>(v, ip, |p| p.pid = 0),
        Some(|f| matches!(f, Fault::NoProcessFor { .. })),
        "which has no process record before it",
    );
}

#[test]
fn pid_beyond_pid_max() {
    let b = base();
    let (ip, it, im, ifd) = (
        b.find(Kind::PROCESS),
        b.find(Kind::THREAD),
        b.find(Kind::MM),
        b.find(Kind::FDTABLE),
    );
    let big = 1u32 << 31;
    refused(
        |v| {
            edit::<Process>(v, ip, |p| p.pid = big);
            edit::<Thread>(v, it, |t| (t.pid, t.tid) = (big, big));
            edit::<Mm>(v, im, |m| m.pid = big);
            edit::<FdTable>(v, ifd, |t| t.pid = big);
        },
        Some(|f| matches!(f, Fault::Pid { pid } if *pid == 1 << 31)),
        "impossible pid 2147483648",
    );
}

#[test]
fn process_group_id_of_2_to_the_31() {
    let ip = base().find(Kind::PROCESS);
    refused(
        |v| edit::<Process>(v, ip, |p| p.pgid = 1 << 31),
        Some(|f| matches!(f, Fault::GroupId { field: "pgid", value, .. } if *value == 1 << 31)),
        "impossible pgid 2147483648",
    );
}

#[test]
fn session_id_of_2_to_the_32_minus_1() {
    let ip = base().find(Kind::PROCESS);
    refused(
        |v| edit::<Process>(v, ip, |p| p.sid = u32::MAX),
        Some(|f| matches!(f, Fault::GroupId { field: "sid", value, .. } if *value == u32::MAX)),
        "impossible sid 4294967295",
    );
}

#[test]
fn terminal_foreground_group_of_2_to_the_31() {
    let ip = base().find(Kind::PROCESS);
    refused(
        |v| edit::<Process>(v, ip, |p| p.tty_pgrp = 1 << 31),
        Some(|f| {
            matches!(
                f,
                Fault::GroupId {
                    field: "tty_pgrp",
                    ..
                }
            )
        }),
        "impossible tty_pgrp 2147483648",
    );
}

#[test]
fn impossible_exit_signal() {
    let ip = base().find(Kind::PROCESS);
    refused(
        |v| edit::<Process>(v, ip, |p| p.exit_signal = 1 << 31),
        Some(|f| matches!(f, Fault::ExitSignal { .. })),
        "impossible exit signal 2147483648",
    );
}

#[test]
fn process_twice() {
    let ip = base().find(Kind::PROCESS);
    refused(
        |v| {
            let p = v[ip].clone();
            v.insert(ip + 1, p);
        },
        Some(|f| matches!(f, Fault::DuplicateProcess { .. })),
        "appears twice",
    );
}

#[test]
fn root_with_a_parent() {
    let ip = base().find(Kind::PROCESS);
    refused(
        |v| edit::<Process>(v, ip, |p| p.ppid = 1),
        Some(|f| matches!(f, Fault::FirstNotRoot { .. })),
        "is not the root of the tree",
    );
}

#[test]
fn thread_before_its_process() {
    let (ip, it) = (base().find(Kind::PROCESS), base().find(Kind::THREAD));
    refused(
        move |v| v.swap(ip, it),
        Some(|f| {
            matches!(
                f,
                Fault::NoProcessFor {
                    kind: Kind::THREAD,
                    ..
                }
            )
        }),
        "which has no process record before it",
    );
}

#[test]
fn memory_record_missing() {
    let im = base().find(Kind::MM);
    refused(
        move |v| {
            v.remove(im);
        },
        Some(|f| matches!(f, Fault::NoMemory { .. })),
        "has no memory record",
    );
}

#[test]
fn unknown_process_state() {
    let ip = base().find(Kind::PROCESS);
    refused(
        |v| edit::<Process>(v, ip, |p| p.state = 7),
        Some(|f| {
            matches!(
                f,
                Fault::Unknown {
                    record: Kind::PROCESS,
                    value: 7,
                    ..
                }
            )
        }),
        "unknown state 7",
    );
}

#[test]
fn unknown_file_type() {
    let ifile = base().find(Kind::FILE);
    refused(
        |v| edit::<File>(v, ifile, |f| f.ftype = 99),
        Some(|f| {
            matches!(
                f,
                Fault::Unknown {
                    record: Kind::FILE,
                    value: 99,
                    ..
                }
            )
        }),
        "unknown file type 99",
    );
}

#[test]
fn unknown_mapping_backing() {
    let im = base().find(Kind::MM);
    refused(
        |v| edit::<Mm>(v, im, |m| m.vmas[0].backing = 42),
        Some(|f| {
            matches!(
                f,
                Fault::Unknown {
                    record: Kind::MM,
                    value: 42,
                    ..
                }
            )
        }),
        "unknown mapping backing 42",
    );
}

#[test]
fn metadata_after_page_data() {
    let (im, ipg) = (base().find(Kind::MM), base().find(Kind::PAGES));
    // A second copy of the memory record after the first page data: the
    // metadata is complete, the stream order is not.
    refused(
        move |v| {
            let m = v[im].clone();
            v.insert(ipg + 1, m);
        },
        None,
        "invalid image: a mm (0x0012) record after the page data began",
    );
}

#[test]
fn pages_outside_the_mappings() {
    let ipg = base().find(Kind::PAGES);
    refused(
        move |v| edit_prefix(v, ipg, |p| p.addr = 0x1000),
        None,
        "lie outside its mappings",
    );
}

#[test]
fn pages_for_an_unknown_process() {
    let ipg = base().find(Kind::PAGES);
    refused(
        move |v| edit_prefix(v, ipg, |p| p.id = 4_000_000),
        None,
        "invalid image: pages for unknown process 4000000",
    );
}

#[test]
fn unknown_required_record_kind() {
    refused(
        |v| v.insert(1, (Kind(0x7abc), vec![1, 2, 3])),
        None,
        "are not supported by this version",
    );
}

#[test]
fn garbage_metadata_payload() {
    let ip = base().find(Kind::PROCESS);
    refused(move |v| v[ip].1 = vec![0xff; 64], None, "cannot be decoded");
}

#[test]
fn inherited_range_without_a_parent() {
    let im = base().find(Kind::MM);
    // The root has no parent in the image: nothing of it can be inherited.
    refused(
        |v| {
            edit::<Mm>(v, im, |m| {
                let first = m.vmas.iter().next().map(|x| (x.start, x.end)).unwrap();
                m.inherited = vec![image::PageRange {
                    start: first.0,
                    end: first.1,
                }]
                .into();
            })
        },
        Some(|f| {
            matches!(
                f,
                Fault::Mapping {
                    why: MappingFault::Inherited,
                    ..
                }
            )
        }),
        "is said to be inherited",
    );
}

#[test]
fn fork_pages_after_other_page_data() {
    let ipg = base().find(Kind::PAGES);
    // A parent's pages for its children come before any other bulk record.
    refused(
        move |v| {
            let p = v[ipg].1.clone();
            v.insert(ipg + 1, (Kind::FORK_PAGES, p));
        },
        None,
        "fork pages come first",
    );
}

/// A `POSIX_SHM` record whose name leaves `/dev/shm`.
#[test]
fn posix_shm_name_with_a_slash() {
    let p = image::PosixShm {
        id: 77,
        name: b"../../etc/crtools-hostile".to_vec(),
        size: 4096,
        sha256: vec![0; 32],
        ..Default::default()
    };
    refused(
        |v| v.insert(1, (Kind::POSIX_SHM, wire::encode(&p))),
        Some(|f| matches!(f, Fault::PosixShm { id: 77, why } if why.contains("impossible name"))),
        "POSIX shared memory object 77 has an impossible name",
    );
}

/// A `POSIX_SHM` record naming a shared memory object the image lacks.
#[test]
fn posix_shm_without_its_object() {
    let p = image::PosixShm {
        id: 78,
        name: b"crtools-hostile".to_vec(),
        size: 4096,
        sha256: vec![0; 32],
        ..Default::default()
    };
    refused(
        |v| v.insert(1, (Kind::POSIX_SHM, wire::encode(&p))),
        Some(|f| matches!(f, Fault::PosixShm { id: 78, .. })),
        "POSIX shared memory object 78 has no shared memory object",
    );
}

/// A descriptor of a `/dev/shm` file whose object has no `POSIX_SHM` record.
#[test]
fn posix_shm_file_without_its_record() {
    let ifile = base().find(Kind::FILE);
    refused(
        |v| {
            edit::<File>(v, ifile, |f| {
                f.ftype = image::FT_POSIX_SHM;
                f.object_id = 79;
            })
        },
        Some(|f| matches!(f, Fault::PosixShmFile { .. })),
        "refers to an object the image lacks",
    );
}

/// A `MQUEUE` record holding a message longer than its `msgsize`.
#[test]
fn mqueue_message_longer_than_msgsize() {
    let q = image::PosixMqueue {
        id: 81,
        name: b"crtools-hostile".to_vec(),
        maxmsg: 4,
        msgsize: 8,
        messages: vec![image::MqMessage {
            prio: 1,
            data: vec![7; 9],
        }]
        .into(),
        ..Default::default()
    };
    refused(
        |v| v.insert(1, (Kind::MQUEUE, wire::encode(&q))),
        Some(|f| matches!(f, Fault::Mqueue { id: 81, .. })),
        "POSIX message queue 81 holds a message longer than its msgsize",
    );
}

/// A `MQUEUE` record whose name has a slash.
#[test]
fn mqueue_name_with_a_slash() {
    let q = image::PosixMqueue {
        id: 82,
        name: b"a/b".to_vec(),
        maxmsg: 4,
        msgsize: 8,
        ..Default::default()
    };
    refused(
        |v| v.insert(1, (Kind::MQUEUE, wire::encode(&q))),
        Some(|f| matches!(f, Fault::Mqueue { id: 82, .. })),
        "POSIX message queue 82 has an impossible name",
    );
}

/// A descriptor of a message queue the image lacks.
#[test]
fn mqueue_file_without_its_record() {
    let ifile = base().find(Kind::FILE);
    refused(
        |v| {
            edit::<File>(v, ifile, |f| {
                f.ftype = image::FT_MQUEUE;
                f.object_id = 83;
            })
        },
        Some(|f| matches!(f, Fault::MqueueFile { .. })),
        "refers to a queue the image lacks",
    );
}

/// A pidfd of a pid that is no process of the image.
#[test]
fn pidfd_of_a_process_not_in_the_image() {
    let ifile = base().find(Kind::FILE);
    refused(
        |v| {
            edit::<File>(v, ifile, |f| {
                f.ftype = image::FT_PIDFD;
                f.object_id = 4_000_000;
            })
        },
        Some(|f| matches!(f, Fault::PidfdTarget { pid: 4_000_000, .. })),
        "refers to pid 4000000, which is not a process of the image",
    );
}

/// The base image's first file turned into `ftype` referring to object
/// `object_id`, for which the image has no record.
fn file_without_object(ftype: u8, object_id: u64) -> impl FnOnce(&mut Vec<(Kind, Vec<u8>)>) {
    let ifile = base().find(Kind::FILE);
    move |v| {
        edit::<File>(v, ifile, |f| {
            f.ftype = ftype;
            f.object_id = object_id;
        })
    }
}

/// The base image's first file turned into `ftype` referring to object
/// `id`, and `rec` (that object's record, of kind `kind`) added.
fn file_with_object(
    ftype: u8,
    id: u64,
    kind: Kind,
    rec: Vec<u8>,
) -> impl FnOnce(&mut Vec<(Kind, Vec<u8>)>) {
    let ifile = base().find(Kind::FILE);
    move |v| {
        edit::<File>(v, ifile, |f| {
            f.ftype = ftype;
            f.object_id = id;
        });
        v.insert(1, (kind, rec));
    }
}

fn missing(f: &Fault, kind: Kind, id: u64) -> bool {
    matches!(f, Fault::MissingObject { object, object_id, .. } if *object == kind && *object_id == id)
}

/// A descriptor of a pipe the image has no `PIPE` record of.
#[test]
fn pipe_file_without_its_record() {
    refused(
        file_without_object(image::FT_PIPE, 91),
        Some(|f| missing(f, Kind::PIPE, 91)),
        "has no pipe record",
    );
}

/// A descriptor of a pty the image has no `PTY` record of.
#[test]
fn pty_file_without_its_record() {
    refused(
        file_without_object(image::FT_PTY_SLAVE, 92),
        Some(|f| missing(f, Kind::PTY, 92)),
        "has no pty record",
    );
}

/// A descriptor of a TCP socket the image has no `INET` record of.
#[test]
fn inet_file_without_its_record() {
    refused(
        file_without_object(image::FT_INET, 93),
        Some(|f| missing(f, Kind::INET, 93)),
        "has no inet record",
    );
}

/// A descriptor of a Unix socket the image has no `SOCKET` record of.
#[test]
fn unix_socket_file_without_its_record() {
    refused(
        file_without_object(image::FT_SOCKET, 94),
        Some(|f| missing(f, Kind::SOCKET, 94)),
        "has no socket record",
    );
}

/// An eventfd with no `EVENT` record.
#[test]
fn event_file_without_its_record() {
    refused(
        file_without_object(image::FT_EVENTFD, 0),
        Some(
            |f| matches!(f, Fault::Event { why, .. } if *why == "the event file has no event record"),
        ),
        "the event file has no event record",
    );
}

/// A memfd descriptor whose `SHMEM` object the image lacks.
#[test]
fn memfd_file_without_its_object() {
    refused(
        file_without_object(image::FT_MEMFD, 95),
        Some(|f| matches!(f, Fault::MemfdObject { .. })),
        "refers to a shared memory object the image lacks",
    );
}

/// An inotify watch whose path has a NUL byte.
#[test]
fn inotify_path_with_a_nul_byte() {
    let ifile = base().find(Kind::FILE);
    refused(
        move |v| {
            let mut id = 0;
            edit::<File>(v, ifile, |f| {
                f.ftype = image::FT_INOTIFY;
                id = f.id;
            });
            let e = image::EventFile {
                file_id: id,
                watches: vec![image::InotifyWatch {
                    wd: 1,
                    mask: 2,
                    path: b"/tmp/a\0b".to_vec(),
                    ..Default::default()
                }]
                .into(),
                ..Default::default()
            };
            v.insert(1, (Kind::EVENT, wire::encode(&e)));
        },
        Some(|f| matches!(f, Fault::Event { why, .. } if why.contains("NUL"))),
        "an inotify watch's path has a NUL byte",
    );
}

fn inet(id: u64) -> image::InetSocket {
    image::InetSocket {
        id,
        family: libc::AF_INET as u32,
        stype: libc::SOCK_STREAM as u32,
        local_addr: vec![127, 0, 0, 1],
        local_port: 1,
        ..Default::default()
    }
}

/// An `INET` record of a socket type that is neither TCP's nor UDP's.
#[test]
fn inet_socket_of_an_unknown_type() {
    let s = image::InetSocket {
        stype: libc::SOCK_RAW as u32,
        ..inet(96)
    };
    refused(
        file_with_object(image::FT_INET, 96, Kind::INET, wire::encode(&s)),
        Some(|f| {
            matches!(
                f,
                Fault::Unknown {
                    record: Kind::INET,
                    id: 96,
                    field: "socket type",
                    value: 3,
                }
            )
        }),
        "inet record 96: unknown socket type 3",
    );
}

/// An `INET` record of an address family that is neither IPv4 nor IPv6.
#[test]
fn inet_socket_of_an_unknown_family() {
    let s = image::InetSocket {
        family: libc::AF_UNIX as u32,
        ..inet(97)
    };
    refused(
        file_with_object(image::FT_INET, 97, Kind::INET, wire::encode(&s)),
        Some(|f| {
            matches!(
                f,
                Fault::Unknown {
                    record: Kind::INET,
                    field: "address family",
                    value: 1,
                    ..
                }
            )
        }),
        "inet record 97: unknown address family 1",
    );
}

/// An established TCP connection without its peer's address.
#[test]
fn established_connection_without_its_peer() {
    let s = image::InetSocket {
        repair: true,
        state: 1,
        ..inet(98)
    };
    refused(
        file_with_object(image::FT_INET, 98, Kind::INET, wire::encode(&s)),
        Some(|f| matches!(f, Fault::Inet { id: 98, .. })),
        "an established connection without its addresses",
    );
}

/// A `PTY` record whose termios is cut short.
#[test]
fn pty_with_short_termios() {
    let p = image::Pty {
        id: 99,
        index: 41,
        termios: vec![0; 4],
        winsize: vec![0; 8],
        ..Default::default()
    };
    refused(
        file_with_object(image::FT_PTY_MASTER, 99, Kind::PTY, wire::encode(&p)),
        Some(|f| {
            matches!(
                f,
                Fault::Pty {
                    id: 99,
                    index: 41,
                    ..
                }
            )
        }),
        "pty 41 has short termios",
    );
}

fn unix(id: u64) -> image::Socket {
    image::Socket {
        id,
        family: libc::AF_UNIX as u32,
        stype: libc::SOCK_STREAM as u32,
        state: 7,
        ..Default::default()
    }
}

/// A `SOCKET` record of another family than `AF_UNIX`.
#[test]
fn unix_socket_of_another_family() {
    let s = image::Socket {
        family: libc::AF_INET as u32,
        ..unix(100)
    };
    refused(
        file_with_object(image::FT_SOCKET, 100, Kind::SOCKET, wire::encode(&s)),
        Some(|f| {
            matches!(
                f,
                Fault::Socket {
                    id: 100,
                    why: SocketFault::NotUnix { family: 2 }
                }
            )
        }),
        "socket 100: family 2 is not AF_UNIX",
    );
}

/// A connection not yet accepted, held at a descriptor.
#[test]
fn pending_unix_connection_at_a_descriptor() {
    let s = image::Socket {
        listener: 5,
        ..unix(101)
    };
    refused(
        file_with_object(image::FT_SOCKET, 101, Kind::SOCKET, wire::encode(&s)),
        Some(|f| {
            matches!(
                f,
                Fault::Socket {
                    id: 101,
                    why: SocketFault::HeldWhilePending
                }
            )
        }),
        "a connection not yet accepted is held at a descriptor",
    );
}

/// A listener whose pending connection has no record.
#[test]
fn unix_listener_with_a_missing_pending_connection() {
    let s = image::Socket {
        state: 10,
        path: b"\0crtools-hostile".to_vec(),
        backlog: 4,
        pending: vec![7777].into(),
        ..unix(102)
    };
    refused(
        file_with_object(image::FT_SOCKET, 102, Kind::SOCKET, wire::encode(&s)),
        Some(|f| {
            matches!(
                f,
                Fault::Socket {
                    id: 102,
                    why: SocketFault::PendingMissing { pending: 7777 }
                }
            )
        }),
        "socket 102: pending connection 7777 has no record",
    );
}

/// A shared pending signal that is not a whole `siginfo_t`.
#[test]
fn malformed_pending_signal() {
    let ip = base().find(Kind::PROCESS);
    refused(
        |v| edit::<Process>(v, ip, |p| p.shared_pending.push(vec![9; 12])),
        Some(|f| matches!(f, Fault::SignalMalformed { .. })),
        "is malformed",
    );
}

/// A thread's pending signal with an impossible number.
#[test]
fn pending_signal_number_99() {
    let it = base().find(Kind::THREAD);
    let mut info = vec![0; 128];
    info[0] = 99;
    refused(
        move |v| edit::<Thread>(v, it, |t| t.pending.push(info)),
        Some(|f| matches!(f, Fault::PendingSignal { signal: 99, .. })),
        "pending signal 99 of pid",
    );
}
