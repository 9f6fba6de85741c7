//! Unix sockets across a checkpoint and restore, checked by what they do
//! afterwards (`tests/workloads/unixsock.py`): a listener, bound to a
//! filesystem path or an abstract name, accepts the connection that was
//! pending at the checkpoint (its client in the tree) and then a new one;
//! datagrams queued on a bound datagram socket keep their boundaries, a
//! seqpacket pair its packets, options their values. A socket connected
//! outside the tree is refused by name, and restored disconnected with
//! `ckpt --external-unix=close`. A real program nobody here wrote:
//! python3's `socketserver.ThreadingUnixStreamServer` with a client in
//! the tree, which keeps counting, and a new client served after the
//! restore.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

use common::*;

fn connect(name: &str) -> UnixStream {
    let s = if let Some(a) = name.strip_prefix('@') {
        UnixStream::connect_addr(&SocketAddr::from_abstract_name(a).unwrap())
    } else {
        UnixStream::connect(name)
    };
    s.unwrap_or_else(|e| panic!("connect to {name}: {e}"))
}

/// Restores `orig` (`ckpt --kill ARGS`) and waits until the restored
/// process counts on, then sends it SIGUSR1.
fn restore_then_usr1(orig: &mut Workload, args: &[&str], before: impl FnOnce()) -> Restore {
    orig.expect_count(None, 2);
    let mut all = vec!["--kill"];
    all.extend(args);
    let mut r = checkpoint_restore(orig, &all, &[], &[]);
    orig.wait_eof(TIMEOUT);
    let last = orig.last_count(None).unwrap_or(0);
    r.restored.expect_count(None, last + 2);
    r.expect_pipeline_ok();
    before();
    let pid = orig.pid();
    assert!(signal(pid, libc::SIGUSR1), "cannot signal {pid}");
    r
}

fn echo(name: &str, line: &str) -> String {
    let mut s = connect(name);
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut got = String::new();
    BufReader::new(&s).read_line(&mut got).unwrap();
    got.trim_end().to_string()
}

fn listener_round_trip(name: &str) {
    let py = script("unixsock.py");
    let mut orig = Workload::spawn("python3", &[py.to_str().unwrap(), "listen", name]);
    orig.expect_line(|l| l == "ready", "ready");
    orig.expect_line(|l| l == "child connected", "child connected");
    let mut s = None;
    let mut r = restore_then_usr1(&mut orig, &[], || {
        // A new connection, queued behind the one pending at the checkpoint.
        let mut c = connect(name);
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c.write_all(b"hello after restore\n").unwrap();
        s = Some(c);
    });
    let s = s.unwrap();
    for want in [
        "options rcvbuf 100000 passcred 1 rcvtimeo 2.500000",
        "datagrams one|two two|three three three",
        "packets first packet|2nd",
        "child done",
        "pending said reply to welcome",
        "new said hello after restore",
        "done",
    ] {
        r.restored.expect_line(|l| l == want, want);
    }
    let mut got = String::new();
    BufReader::new(&s).read_line(&mut got).unwrap();
    assert_eq!(got, "hello after restore\n");
    r.restored.assert_no_fail();
    r.restored.kill();
}

/// A listener on a filesystem path (its socket file left behind by the
/// killed original is replaced).
#[test]
fn listener_on_a_path_accepts_pending_and_new_connections() {
    let dir = tempdir();
    let path = dir.path().join("srv.sock");
    listener_round_trip(path.to_str().unwrap());
}

/// The same with abstract names.
#[test]
fn listener_on_an_abstract_name_accepts_pending_and_new_connections() {
    listener_round_trip(&format!("@crtools-test-{}", std::process::id()));
}

/// A client connected to a listener outside the tree: refused in one line
/// naming the process and descriptor (the process goes on); with
/// `--external-unix=close`, restored disconnected: it reads what was
/// queued, then end of file, and a write fails.
#[test]
fn socket_to_an_outside_peer_is_refused_or_restored_disconnected() {
    let dir = tempdir();
    let path = dir.path().join("outside.sock");
    let lst = UnixListener::bind(&path).unwrap();
    let py = script("unixsock.py");
    let mut orig = Workload::spawn(
        "python3",
        &[py.to_str().unwrap(), "outside", path.to_str().unwrap()],
    );
    orig.expect_line(|l| l == "connected", "connected");
    let (mut peer, _) = lst.accept().unwrap();
    peer.write_all(b"queued before").unwrap();
    let pid = orig.pid();
    let f = ckpt(&[&pid.to_string()]);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    assert!(
        f.stderr
            .contains(&format!("cannot checkpoint pid {pid}: descriptor "))
            && f.stderr.contains("connected to a process outside the tree")
            && f.stderr.contains("--external-unix=close"),
        "{}",
        f.stderr
    );
    assert_eq!(proc_state(pid).map(|s| s != 'T'), Some(true));
    let mut r = restore_then_usr1(&mut orig, &["--external-unix=close"], || ());
    r.restored.expect_line(
        |l| l == "read [queued before] then end of file",
        "read [queued before] then end of file",
    );
    r.restored
        .expect_line(|l| l == "write: broken pipe", "write: broken pipe");
    drop(peer);
    r.restored.kill();
}

/// python3's socketserver with a client in the tree: the client's count
/// goes on without gap over the restored connection, and a new client is
/// served.
#[test]
fn python3_socketserver_with_a_client_in_the_tree() {
    let dir = tempdir();
    let path = dir.path().join("echo.sock");
    let name = path.to_str().unwrap();
    let py = script("unixsock.py");
    let mut orig = Workload::spawn("python3", &[py.to_str().unwrap(), "server", name]);
    orig.expect_line(|l| l == "serving", "serving");
    let r = migrate_and_continue(&mut orig, &[Some("client")], &[], 5, 5);
    assert_eq!(echo(name, "new client"), "new client");
    let last = r.restored.last_count(Some("client")).unwrap_or(0);
    r.restored.expect_count(Some("client"), last + 3);
    r.restored.assert_no_fail();
}

/// Hostile socket records (a real image of the `listen` workload, one
/// record changed, valid CRCs): each refused by `cr-restart` with exit 1
/// and one line naming the socket and the fault; nothing is left running.
#[test]
fn bad_socket_records_are_refused_in_one_line() {
    use crtools::image::{self, Kind, Reader, WriteOptions, Writer, wire};
    let dir = tempdir();
    let name = format!("@crtools-hostile-{}", std::process::id());
    let py = script("unixsock.py");
    let mut orig = Workload::spawn("python3", &[py.to_str().unwrap(), "listen", &name]);
    orig.expect_line(|l| l == "child connected", "child connected");
    let img = dir.path().join("ok.img");
    // Killed: the restores below must not find the name in use.
    ckpt_to_file(&["--kill"], orig.pid(), &img);
    orig.wait_exit(TIMEOUT);
    let bytes = std::fs::read(&img).unwrap();
    let mut r = Reader::new(&bytes[..]).unwrap();
    let header = r.header().clone();
    let mut recs = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        recs.push((rec.kind, rec.payload.to_vec()));
    }
    let socket = |recs: &[(Kind, Vec<u8>)], pred: &dyn Fn(&image::Socket) -> bool| {
        recs.iter()
            .position(|(k, p)| {
                *k == Kind::SOCKET && pred(&wire::decode::<image::Socket>(p).unwrap())
            })
            .expect("such a socket record")
    };
    type Pick = &'static dyn Fn(&image::Socket) -> bool;
    type Mutation = Box<dyn Fn(&mut image::Socket)>;
    let cases: Vec<(&str, Pick, Mutation, &str)> = vec![
        (
            "a listener of an unknown type",
            &|s| s.state == 10,
            Box::new(|s| s.stype = 77),
            "unknown socket type 77",
        ),
        (
            "a listener whose pending connection has no record",
            &|s| s.state == 10,
            Box::new(|s| s.pending.push(4242)),
            "pending connection 4242 has no record",
        ),
        (
            "a relative name",
            &|s| s.state == 10,
            Box::new(|s| s.path = b"relative/name".to_vec()),
            "relative/name is not a name a socket can have",
        ),
        (
            "a pending connection held at a descriptor",
            &|s| s.state == 10,
            Box::new(|s| {
                s.listener = s.id;
            }),
            "a connection not yet accepted is held at a descriptor",
        ),
        (
            "a family that is not AF_UNIX",
            &|s| s.stype == libc::SOCK_SEQPACKET as u32,
            Box::new(|s| s.family = 2),
            "family 2 is not AF_UNIX",
        ),
    ];
    for (what, pick, change, message) in cases {
        let mut v = recs.clone();
        let i = socket(&v, pick);
        let mut s: image::Socket = wire::decode(&v[i].1).unwrap();
        change(&mut s);
        v[i].1 = wire::encode(&s);
        let mut w = Writer::new(Vec::new(), &header, WriteOptions::default()).unwrap();
        for (k, p) in &v {
            w.write_record(*k, p).unwrap();
        }
        let bad = dir.path().join("bad.img");
        std::fs::write(&bad, w.finish().unwrap()).unwrap();
        let f = run(
            "cr-restart",
            &["--no-pids", "-i", bad.to_str().unwrap()],
            None,
        );
        assert_eq!(f.code(), Some(1), "{what}: {}", f.stderr);
        assert_eq!(f.stderr.lines().count(), 1, "{what}: {}", f.stderr);
        assert!(
            f.stderr.contains("invalid image: socket") && f.stderr.contains(message),
            "{what}: expected {message:?} in: {}",
            f.stderr
        );
    }
}
