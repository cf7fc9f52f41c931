//! A client with the wrong key is refused clearly, and the cluster keeps serving others; a
//! client's recorded bytes sent again, on a new connection or on its own, are refused and logged
//! with the peer's address, and the cell does not run again.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpx_client::{Client, Targets};
use mpx_messages::codec::{ClientHandshake, AUTH_REJECTED};
use mpx_messages::Key;
use mpx_tests::{out_values, stderr, Cluster, Kernel};

const T: Duration = Duration::from_secs(60);

#[test]
fn t20_wrong_key_is_refused_with_a_clear_message() {
    let c = Cluster::start(Kernel::Rhai, "key", 4, &[]);
    let text = std::fs::read_to_string(c.connection_file()).unwrap();
    let mut info: serde_json::Value = serde_json::from_str(&text).unwrap();
    info["key"] = serde_json::Value::String("ab".repeat(32));
    let bad = c.home.join("bad-key.json");
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&bad).unwrap();
    f.write_all(info.to_string().as_bytes()).unwrap();
    drop(f);

    let out = c.mpx(&["px", "--cluster-id", bad.to_str().unwrap(), "rank"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("authentication failed"), "{}", stderr(&out));

    // The connection file was created 0600; a readable key file is refused.
    let mode = std::fs::metadata(c.connection_file()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = c.mpx(&["px", "--cluster-id", bad.to_str().unwrap(), "rank"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("must be 0600"), "{}", stderr(&out));

    // The controller still serves the right key.
    assert_eq!(out_values(&c.px("rank")).len(), 4);
    c.stop();
}

#[test]
fn t21_an_engine_refuses_a_connection_file_others_can_read() {
    let c = Cluster::start(Kernel::Rhai, "engkey", 2, &[]);
    let open = c.home.join("open.json");
    std::fs::copy(c.connection_file(), &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = std::process::Command::new("mpirun");
    cmd.args(["-n", "1"])
        .arg(mpx_tests::bin("mpx-engine"))
        .args(["--kernel", "rhai"])
        .args(["--connect", open.to_str().unwrap(), "--wait", "1"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none");
    let out = mpx_tests::run_with_timeout(cmd, std::time::Duration::from_secs(60));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("must be 0600"), "{}", stderr(&out));
    // It did not join.
    assert_eq!(c.client().ids().unwrap(), vec![mpx_client::EngineId(0), mpx_client::EngineId(1)]);
    c.stop();
}

/// A TCP proxy between one client and the controller that records what the client sends and
/// lets the test write more bytes upstream, on the client's own connection.
struct Recorder {
    address: SocketAddr,
    /// Everything the client sent, in order.
    sent: Arc<Mutex<Vec<u8>>>,
    /// Set once the client connected: a handle on the upstream socket, and the address the
    /// controller sees for it.
    upstream: Arc<Mutex<Option<(TcpStream, SocketAddr)>>>,
}

impl Recorder {
    fn start(controller: &str) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let (sent, upstream) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(None)));
        let (sent2, upstream2, controller) = (sent.clone(), upstream.clone(), controller.to_string());
        std::thread::spawn(move || {
            let Ok((client, _)) = listener.accept() else { return };
            let server = TcpStream::connect(&controller).expect("connect upstream");
            let seen_as = server.local_addr().expect("local address");
            *upstream2.lock().unwrap() = Some((server.try_clone().expect("clone"), seen_as));
            let (mut from_client, mut to_server) =
                (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
            let (mut from_server, mut to_client) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from_server, &mut to_client);
                let _ = to_client.shutdown(Shutdown::Both);
            });
            let mut buf = [0u8; 65536];
            while let Ok(n) = from_client.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sent2.lock().unwrap().extend_from_slice(&buf[..n]);
                if to_server.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to_server.shutdown(Shutdown::Write);
        });
        Recorder { address, sent, upstream }
    }

    /// The recorded bytes: the hello, the proof, and the frames, each with its length prefix.
    fn messages(&self) -> Vec<Vec<u8>> {
        let bytes = self.sent.lock().unwrap().clone();
        let mut out = Vec::new();
        let mut rest = bytes.as_slice();
        while rest.len() >= 4 {
            let n = 4 + u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            out.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        out
    }
}

/// Waits until the cluster's log has a WARN line naming `peer` that contains `reason`.
fn expect_logged(c: &Cluster, peer: SocketAddr, reason: &str) {
    let log = mpx_controller::files::log_file(&c.home, &c.id);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = strip_colours(&std::fs::read_to_string(&log).unwrap_or_default());
        let token = format!("peer={peer}");
        if text.lines().any(|l| l.contains("WARN") && l.contains(&token) && l.contains(reason)) {
            return;
        }
        assert!(Instant::now() < deadline, "no warning naming {peer} with {reason:?} in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `text` without its terminal colour codes (`ESC [ ... m`).
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(ch);
        }
    }
    out
}

/// Everything a connection gets back until the controller closes it.
fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Each engine's `counter`.
fn counters(client: &Client) -> Vec<String> {
    let results = client.view(Targets::All).execute_sync("counter", T).expect("counter");
    results.into_iter().map(|r| r.outcome.value.unwrap_or_default()).collect()
}

#[test]
fn t22_a_recorded_client_is_refused_on_a_new_connection_and_on_its_own_and_logged() {
    let c = Cluster::start(Kernel::Rhai, "replay", 2, &[]);
    c.client().view(Targets::All).execute_sync("let counter = 0;", T).expect("counter");
    let (address, key) = c.address_and_key();

    // A real client, through a recording proxy, runs the cell once.
    let recorder = Recorder::start(&address);
    let client =
        Client::connect_with(&recorder.address.to_string(), key.clone(), "replay", c.connection_file())
            .expect("client through the proxy");
    let results = client.view(Targets::All).execute_sync("counter += 1; counter", T).expect("the cell");
    assert!(results.iter().all(|r| r.outcome.value.as_deref() == Some("1")), "{results:?}");
    let recorded = recorder.messages();
    // hello, proof, the connect's info request, the cell's submission
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    let submission = recorded.last().expect("the cell's frame").clone();

    // (1) Everything the client sent, on a new connection: its hello's nonce was seen.
    let mut s = TcpStream::connect(&address).expect("connect");
    let seen_as = s.local_addr().expect("local address");
    s.write_all(&recorded.concat()).expect("replay");
    assert!(until_closed(&mut s).is_empty(), "a replayed connection got an answer");
    expect_logged(&c, seen_as, "replayed");

    // (2) A fresh hello (anyone can make one), then the recorded proof and frames: the proof
    // does not cover the controller's new nonce.
    let mut s = TcpStream::connect(&address).expect("connect");
    let seen_as = s.local_addr().expect("local address");
    let (_, hello) = ClientHandshake::start(&Key::new(b"not the key".to_vec())).expect("hello");
    s.write_all(&hello).expect("hello");
    let mut challenge = [0u8; 4 + 72];
    s.set_read_timeout(Some(T)).expect("timeout");
    s.read_exact(&mut challenge).expect("a challenge");
    s.write_all(&recorded[1..].concat()).expect("replay");
    let got = until_closed(&mut s);
    assert_eq!(&got[4..], AUTH_REJECTED, "{got:?}");
    expect_logged(&c, seen_as, "authentication failed");

    // (3) The cell's frame again, on the client's own connection: authentic, but not the next
    // frame of that session. The controller closes the connection.
    let (mut upstream, seen_as) = recorder.upstream.lock().unwrap().take().expect("upstream");
    upstream.write_all(&submission).expect("replay");
    expect_logged(&c, seen_as, "replayed frame");
    let closed = client.info(Duration::from_secs(10));
    assert!(closed.is_err(), "the replaying connection stayed open");

    // The cell ran once on every engine, whatever was replayed.
    assert_eq!(counters(&c.client()), vec!["1", "1"]);
    c.stop();
}
