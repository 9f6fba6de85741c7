//! TCP and UDP sockets across a checkpoint and restore, checked by what
//! they do afterwards (see `tests/workloads/inet.c`): listeners (IPv4 and
//! IPv6) accept, a bound UDP socket answers, options read back with
//! `getsockopt` in the restored process are the ones set; an established
//! connection with data in flight both ways survives `ckpt --kill
//! --tcp-established | cr-restart --tcp-established` (this test process is
//! the peer: no reset, every byte in order); without the option it is
//! refused by name and keeps working; `--tcp-close` drops it. Real
//! programs: redis-server, node's http server, a python3 asyncio server.
//!
//! Every server listens on loopback only; clients make a bounded number of
//! requests.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};

use common::*;

fn port(w: &Workload, tag: &str) -> u16 {
    let l = w.expect_line(|l| l.starts_with(&format!("{tag} ")), tag);
    l[tag.len() + 1..].parse().expect("a port")
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Waits until the restored workload counts on from the original.
fn running(orig: &Workload, r: &Restore) {
    orig.wait_eof(TIMEOUT);
    let last = orig.last_count(None).unwrap_or(0);
    r.restored.expect_count(None, last + 2);
}

/// Sends a line and expects its echo.
fn ping(s: &mut TcpStream, what: &str) {
    s.write_all(format!("{what}\n").as_bytes()).unwrap();
    let mut want = format!("echo:{what}\n").into_bytes();
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("no echo of {what}: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    want.clear();
}

/// Listeners, a bound UDP socket and an unbound socket, restored: both
/// listeners accept, the UDP socket answers on its port, and the options
/// read back in the restored process are the ones the original set.
#[test]
fn listeners_and_udp_work_with_their_options() {
    let mut orig = Workload::spawn(workload("inet"), &[]);
    let (tcp, tcp6, udp) = (port(&orig, "tcp"), port(&orig, "tcp6"), port(&orig, "udp"));
    orig.expect_line(|l| l == "ready", "ready");
    let mut r = migrate(&mut orig, &[]);
    running(&orig, &r);
    r.expect_pipeline_ok();
    let mut c = connect(tcp);
    ping(&mut c, "after restore");
    let mut c6 = TcpStream::connect(("::1", tcp6)).expect("connect [::1]");
    c6.set_read_timeout(Some(TIMEOUT)).unwrap();
    ping(&mut c6, "six");
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(TIMEOUT)).unwrap();
    u.send_to(b"hello", ("127.0.0.1", udp)).unwrap();
    let mut b = [0u8; 64];
    let (n, from) = u.recv_from(&mut b).expect("a UDP answer");
    assert_eq!(&b[..n], b"udp:hello");
    assert_eq!(from.port(), udp);
    assert!(signal(orig.pid(), libc::SIGUSR1));
    for want in [
        "opt listen reuseaddr=1 nodelay=1 keepalive=1 idle=77 intvl=11 cnt=5 rcvbuf=131072 backlog=17"
            .to_string(),
        "opt listen6 v6only=1 reuseport=1".to_string(),
        format!("opt udp port={udp}"),
        "opt unbound state=7 port=0".to_string(),
        // Accepted after the restore: inherited from the restored listener.
        "opt conn nodelay=1 keepalive=1 idle=77".to_string(),
    ] {
        r.restored.expect_line(|l| l == want, &want);
    }
    r.restored.assert_no_fail();
}

/// A connection to the workload, with data in flight both ways: the
/// workload has queued `held` bytes this side has not read (its send
/// queue full) and this side has sent lines it has not read.
struct InFlight {
    conn: TcpStream,
    held: usize,
    lines: usize,
}

fn in_flight(w: &Workload, tcp: u16) -> InFlight {
    let mut conn = connect(tcp);
    ping(&mut conn, "before");
    let held = 8 << 20;
    conn.write_all(format!("hold {held}\n").as_bytes()).unwrap();
    w.expect_line(|l| l == "full", "full");
    let lines = 2000;
    let mut batch = Vec::new();
    for i in 0..lines {
        batch.extend_from_slice(format!("after-{i}\n").as_bytes());
    }
    conn.write_all(&batch).unwrap();
    InFlight { conn, held, lines }
}

impl InFlight {
    /// Lets the workload read again and checks every byte, in order.
    fn check(mut self, pid: i32) {
        assert!(signal(pid, libc::SIGUSR2));
        let mut got = vec![0u8; self.held];
        self.conn
            .read_exact(&mut got)
            .expect("the held data after the restore");
        if let Some(i) = (0..self.held).find(|&i| got[i] != (i % 251) as u8) {
            panic!("held data differs at byte {i} of {}", self.held);
        }
        let mut rd = BufReader::new(self.conn.try_clone().unwrap());
        for i in 0..self.lines {
            let mut l = String::new();
            rd.read_line(&mut l).expect("an echoed line");
            assert_eq!(l, format!("echo:after-{i}\n"));
        }
        ping(&mut self.conn, "still here");
    }
}

/// An established connection with 8 MiB queued towards this process and
/// 2000 lines queued towards the workload survives `ckpt --kill
/// --tcp-established | cr-restart --tcp-established`: no reset, every
/// byte in order both ways, and a new connection works too. Twice, with
/// CPU burners beside it.
#[test]
fn established_connection_survives_with_data_in_flight() {
    let _burners = Burners::start(2);
    for round in 0..2 {
        let mut orig = Workload::spawn(workload("inet"), &[]);
        let tcp = port(&orig, "tcp");
        orig.expect_line(|l| l == "ready", "ready");
        let flight = in_flight(&orig, tcp);
        let mut r = checkpoint_restore(
            &mut orig,
            &["--kill", "--tcp-established"],
            &[],
            &["--tcp-established"],
        );
        running(&orig, &r);
        r.expect_pipeline_ok();
        flight.check(orig.pid());
        let mut c = connect(tcp);
        ping(&mut c, &format!("new {round}"));
        r.restored.assert_no_fail();
        assert!(
            !r.restored
                .lines()
                .iter()
                .any(|l| l.starts_with("conn error")),
            "a connection failed:\n{}",
            r.restored.report()
        );
    }
}

/// Without --tcp-established an established connection fails the
/// checkpoint in one line naming the pid, the descriptor and the
/// addresses, and the connection keeps working. A checkpoint with the
/// option that fails (its reader goes away) and one that lets the tree
/// run on leave it working too (repair mode turned off), and an image
/// holding connections is refused by cr-restart without the option.
#[test]
fn established_connection_refused_without_the_option() {
    let orig = Workload::spawn(workload("inet"), &[]);
    let tcp = port(&orig, "tcp");
    orig.expect_line(|l| l == "ready", "ready");
    let mut c = connect(tcp);
    ping(&mut c, "one");
    orig.expect_line(|l| l == "accepted", "accepted");
    let pid = orig.pid().to_string();
    let f = ckpt(&["--kill", &pid]);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    assert_eq!(f.stderr.lines().count(), 1, "{}", f.stderr);
    let conn = format!("127.0.0.1:{tcp} -> {}", c.local_addr().unwrap());
    for want in [
        format!("cannot checkpoint pid {pid}: descriptor 7 (socket:["),
        format!("an established TCP connection {conn}"),
        "--tcp-established".to_string(),
    ] {
        assert!(f.stderr.contains(&want), "{}\nwanted: {want}", f.stderr);
    }
    ping(&mut c, "two");

    // A checkpoint whose reader goes away: ckpt fails, the connection works.
    let mut failing = std::process::Command::new(bin("ckpt"))
        .args(["--tcp-established", &pid])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(failing.stdout.take());
    let st = failing.wait().unwrap();
    assert!(!st.success(), "ckpt with no reader succeeded");
    ping(&mut c, "three");

    // One that succeeds and lets the tree run on.
    let dir = tempdir();
    let img = dir.path().join("img");
    let f = ckpt(&["-v", "--tcp-established", "-o", img.to_str().unwrap(), &pid]);
    f.assert_success();
    assert!(
        f.stderr
            .contains("ckpt: kept 1 established TCP connection with TCP_REPAIR"),
        "{}",
        f.stderr
    );
    ping(&mut c, "four");
    let info = run("cr-info", &[img.to_str().unwrap()], None);
    let info = String::from_utf8_lossy(&info.assert_success().stdout).into_owned();
    for want in [
        format!("TCP listening on 127.0.0.1:{tcp}, backlog 17"),
        format!("TCP {conn}, kept, "),
        "UDP bound to 127.0.0.1:".to_string(),
        "TCP unbound".to_string(),
    ] {
        assert!(info.contains(&want), "cr-info lacks {want}:\n{info}");
    }
    // The reply to "three" has been read by the client, but on loopback
    // its ACK may be delayed (up to ~40 ms): the send queue holds either
    // nothing or exactly that unacknowledged reply, never anything to read.
    let acked = format!("TCP {conn}, kept, 0 bytes to send, 0 to read");
    let unacked = format!("TCP {conn}, kept, 11 bytes to send, 0 to read");
    assert!(
        info.contains(&acked) || info.contains(&unacked),
        "cr-info shows neither {acked} nor {unacked}:\n{info}"
    );
    assert!(signal(orig.pid(), libc::SIGUSR1));
    orig.expect_line(
        |l| l.starts_with("opt listen reuseaddr=1 "),
        "SO_REUSEADDR kept",
    );

    let f = run("cr-restart", &[img.to_str().unwrap()], None);
    assert_eq!(f.code(), Some(1), "{}", f.stderr);
    let want = format!(
        "1 established TCP connection(s) (TCP {conn}); restore them with --tcp-established"
    );
    assert!(f.stderr.contains(&want), "{}\nwanted: {want}", f.stderr);
    ping(&mut c, "five");
    orig.assert_no_fail();
}

/// `--tcp-close` drops established connections: the restored program sees
/// an error on its socket; the listener accepts new connections.
#[test]
fn tcp_close_drops_connections() {
    let mut orig = Workload::spawn(workload("inet"), &[]);
    let tcp = port(&orig, "tcp");
    orig.expect_line(|l| l == "ready", "ready");
    let mut c = connect(tcp);
    ping(&mut c, "one");
    let mut r = checkpoint_restore(&mut orig, &["--kill", "--tcp-close"], &[], &[]);
    running(&orig, &r);
    r.expect_pipeline_ok();
    r.restored
        .expect_line(|l| l.starts_with("conn "), "conn error");
    let mut b = [0u8; 16];
    assert!(
        matches!(c.read(&mut b), Ok(0) | Err(_)),
        "the dropped connection still reads"
    );
    let mut c2 = connect(tcp);
    ping(&mut c2, "new");
    r.restored.assert_no_fail();
}

/// CPU burners (one per core) for as long as the guard lives.
struct Burners(Vec<std::process::Child>);

impl Burners {
    fn start(n: usize) -> Burners {
        Burners(
            (0..n)
                .map(|_| {
                    std::process::Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("sh")
                })
                .collect(),
        )
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A port nobody listens on now, for a server started by a test.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Connects once the restored server listens again (connections are
/// refused until then), or panics after [`TIMEOUT`].
fn connect_when_up(port: u16) -> TcpStream {
    let end = std::time::Instant::now() + TIMEOUT;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(TIMEOUT)).unwrap();
                return s;
            }
            Err(e) if std::time::Instant::now() < end => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("nothing listens on port {port}: {e}"),
        }
    }
}

/// One RESP reply line (`+OK`, `:10000`, `$7`) without its CRLF.
fn resp_line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("a redis reply");
    l.trim_end().to_string()
}

/// `GET key` on a redis connection: the value.
fn redis_get(w: &mut TcpStream, r: &mut BufReader<TcpStream>, key: &str) -> String {
    w.write_all(format!("GET {key}\r\n").as_bytes()).unwrap();
    let head = resp_line(r);
    assert!(head.starts_with('$'), "GET {key}: {head}");
    resp_line(r)
}

/// redis-server (Debian's) loaded with 10,000 keys, a client connection
/// open: `ckpt --kill --tcp-established | cr-restart --tcp-established`;
/// the old connection and a new one (redis-cli) both read the same data.
#[test]
fn redis_server_keeps_its_data_and_its_client() {
    let port = free_port();
    let p = port.to_string();
    let dir = tempdir();
    let mut orig = Workload::spawn(
        "redis-server",
        &[
            "--port",
            &p,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
    );
    let mut w = connect_when_up(port);
    let mut r = BufReader::new(w.try_clone().unwrap());
    let keys = 10_000;
    let mut batch = Vec::new();
    for i in 0..keys {
        batch.extend_from_slice(format!("SET key:{i} value-{i}\r\n").as_bytes());
    }
    w.write_all(&batch).unwrap();
    for i in 0..keys {
        assert_eq!(resp_line(&mut r), "+OK", "SET key:{i}");
    }
    let mut rs = checkpoint_restore(
        &mut orig,
        &["--kill", "--tcp-established"],
        &[],
        &["--tcp-established"],
    );
    let mut fresh = connect_when_up(port);
    rs.expect_pipeline_ok();
    // The old connection.
    w.write_all(b"DBSIZE\r\n").unwrap();
    assert_eq!(resp_line(&mut r), format!(":{keys}"));
    for i in [0, 1234, keys - 1] {
        assert_eq!(
            redis_get(&mut w, &mut r, &format!("key:{i}")),
            format!("value-{i}")
        );
    }
    // A new one, ours and redis-cli's.
    let mut fr = BufReader::new(fresh.try_clone().unwrap());
    assert_eq!(redis_get(&mut fresh, &mut fr, "key:4321"), "value-4321");
    for (args, want) in [
        (vec!["DBSIZE"], keys.to_string()),
        (vec!["GET", "key:9876"], "value-9876".to_string()),
    ] {
        let mut c = std::process::Command::new("redis-cli");
        c.args(["-h", "127.0.0.1", "-p", &p]).args(&args);
        let out = run_cmd(c, None);
        let out = String::from_utf8_lossy(&out.assert_success().stdout).into_owned();
        assert_eq!(out.trim(), want, "redis-cli {args:?}");
    }
    // Writes through the old connection are seen by the new one.
    w.write_all(b"SET after restore\r\n").unwrap();
    assert_eq!(resp_line(&mut r), "+OK");
    assert_eq!(redis_get(&mut fresh, &mut fr, "after"), "restore");
}

/// One HTTP/1.1 keep-alive request: the body of the answer.
fn http_get(s: &mut TcpStream, path: &str) -> String {
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut len = None;
    let mut status = String::new();
    r.read_line(&mut status).expect("a status line");
    assert!(status.starts_with("HTTP/1.1 200"), "GET {path}: {status}");
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("a header");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = Some(v.trim().parse::<usize>().unwrap());
        }
    }
    let mut body = vec![0u8; len.expect("Content-Length")];
    r.read_exact(&mut body).expect("the body");
    String::from_utf8(body).unwrap()
}

/// node's own `http` module serving a keep-alive client: after `ckpt
/// --kill --tcp-established | cr-restart --tcp-established` the same
/// connection gets the next answer, and a new connection one after it.
#[test]
fn node_http_server_keeps_its_keep_alive_client() {
    let script = "
const http = require('http');
let served = 0, n = 0;
const srv = http.createServer((req, res) => { res.end('hello ' + ++served + ' ' + req.url); });
srv.keepAliveTimeout = 600000;
srv.listen(0, '127.0.0.1', () => console.log('port ' + srv.address().port));
setInterval(() => console.log('count ' + ++n), 50);
";
    let mut orig = Workload::spawn("node", &["-e", script]);
    let port = port(&orig, "port");
    let mut c = connect(port);
    assert_eq!(http_get(&mut c, "/one"), "hello 1 /one");
    let mut r = checkpoint_restore(
        &mut orig,
        &["--kill", "--tcp-established"],
        &[],
        &["--tcp-established"],
    );
    running(&orig, &r);
    r.expect_pipeline_ok();
    assert_eq!(http_get(&mut c, "/two"), "hello 2 /two");
    let mut fresh = connect(port);
    assert_eq!(http_get(&mut fresh, "/three"), "hello 3 /three");
    assert_eq!(http_get(&mut c, "/four"), "hello 4 /four");
    r.restored.assert_no_fail();
}

/// A python3 asyncio TCP echo server with a connected client: the client
/// goes on after the restore, and a new client is served.
#[test]
fn python3_asyncio_echo_server_keeps_its_client() {
    let script = "
import asyncio
async def handle(r, w):
    while True:
        line = await r.readline()
        if not line:
            break
        w.write(b'echo:' + line)
        await w.drain()
async def main():
    srv = await asyncio.start_server(handle, '127.0.0.1', 0)
    print('port', srv.sockets[0].getsockname()[1], flush=True)
    n = 0
    while True:
        n += 1
        print(f'count {n}', flush=True)
        await asyncio.sleep(0.05)
asyncio.run(main())
";
    let mut orig = Workload::spawn("python3", &["-c", script]);
    let port = port(&orig, "port");
    let mut c = connect(port);
    ping(&mut c, "before");
    let mut r = checkpoint_restore(
        &mut orig,
        &["--kill", "--tcp-established"],
        &[],
        &["--tcp-established"],
    );
    running(&orig, &r);
    r.expect_pipeline_ok();
    ping(&mut c, "after");
    let mut fresh = connect(port);
    ping(&mut fresh, "new client");
    ping(&mut c, "old client again");
    r.restored.assert_no_fail();
}
