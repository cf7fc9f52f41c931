//! What the hostile-peer tests share: an in-process controller whose WARN log is captured, and
//! raw connections that open (or fail) the handshake and lay frames out themselves.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    sync::{mpsc, Arc, Mutex, OnceLock},
    thread,
    time::{Duration, Instant},
};

use mpx_client::Client;
use mpx_messages::{
    codec::{blocking, encode_head, Opener, Sealer, MAC_LEN},
    ClientToController, ControllerToClient, Frame, Key, Request, Session, SubmitRequest, Targets, Verify,
};
use tracing_subscriber::fmt::MakeWriter;

/// The controller's frame size limit in these tests.
pub const LIMIT: usize = 1 << 20;

/// How long a bad connection may stay open (the stalled one waits out the controller's 10 s
/// handshake timeout).
pub const CLOSE_WITHIN: Duration = Duration::from_secs(20);

/// Bytes of a frame's buffer descriptor: length, origin, index, MAC.
pub const DESCRIPTOR: usize = 24 + MAC_LEN;

/// Everything the controller logs at WARN and above, for the whole test binary.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Log {
    type Writer = Log;

    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

impl Log {
    /// The global log, installed on first use.
    pub fn get() -> &'static Log {
        static LOG: OnceLock<Log> = OnceLock::new();
        LOG.get_or_init(|| {
            let log = Log::default();
            tracing_subscriber::fmt()
                .with_writer(log.clone())
                .with_ansi(false)
                .with_max_level(tracing::Level::WARN)
                .init();
            log
        })
    }

    /// The WARN lines that name `peer` (as the controller saw it).
    pub fn warnings_about(&self, peer: SocketAddr) -> Vec<String> {
        let token = format!("peer={peer}");
        let text = String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
        text.lines()
            .filter(|l| l.contains("WARN") && l.split_whitespace().any(|w| w == token))
            .map(str::to_string)
            .collect()
    }

    /// Waits briefly for a WARN line naming `peer` and containing `reason`.
    pub fn expect_warning(&self, peer: SocketAddr, reason: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.warnings_about(peer);
            if lines.iter().any(|l| l.contains(reason)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no warning naming {peer} with {reason:?}; warnings about it: {lines:#?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A controller serving on its own thread until dropped.
pub struct Controller {
    pub address: SocketAddr,
    system: actix::System,
    thread: Option<thread::JoinHandle<()>>,
}

impl Controller {
    pub fn start(key: Key) -> Controller {
        Log::get();
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let system = actix::System::new();
            let ctl = system
                .block_on(mpx_controller::start_controller(
                    "127.0.0.1:0",
                    None,
                    key,
                    "t50",
                    LIMIT,
                    Duration::ZERO,
                ))
                .expect("controller binds");
            tx.send((ctl.address, actix::System::current())).expect("test thread waits");
            system.run().expect("controller system");
            drop(ctl);
        });
        let (address, system) = rx.recv_timeout(Duration::from_secs(10)).expect("controller started");
        Controller { address, system, thread: Some(thread) }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn key() -> Key {
    Key::new(b"t50 cluster key".to_vec())
}

pub fn good_client(ctl: &Controller) -> Client {
    Client::connect_with(&ctl.address.to_string(), key(), "t50", PathBuf::from("t50-in-process"))
        .expect("good client connects")
}

/// The good client still gets answers.
pub fn assert_serving(client: &Client, after: &str) {
    let info = client.info(Duration::from_secs(5)).unwrap_or_else(|e| panic!("after {after}: {e}"));
    assert_eq!(info.cluster_id, "t50", "after {after}");
}

/// A raw connection; returns it with the address the controller sees for it.
pub fn raw(address: SocketAddr) -> (TcpStream, SocketAddr) {
    let s = TcpStream::connect(address).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let peer = s.local_addr().expect("local addr");
    (s, peer)
}

/// A raw connection that opened a session with `key`.
pub struct Conn {
    pub s: TcpStream,
    pub peer: SocketAddr,
    pub sealer: Sealer,
    pub opener: Opener,
}

impl Conn {
    /// Connects and opens a session with the cluster key.
    pub fn open(address: SocketAddr) -> Conn {
        let (mut s, peer) = raw(address);
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let Session { sealer, opener } = blocking::connect(&mut s, &key()).expect("handshake");
        s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        Conn { s, peer, sealer, opener }
    }

    /// The bytes of this session's next frame.
    pub fn framed(&mut self, frame: &Frame<impl serde::Serialize>) -> Vec<u8> {
        framed(&mut self.sealer, frame)
    }

    /// Signs an arbitrary body-after-signature (from its sequence number on) with this session's
    /// key, over the head as its own fields declare it, and length-prefixes it.
    pub fn signed_raw(&mut self, rest: &[u8]) -> Vec<u8> {
        let word =
            |at: usize| rest.get(at..at + 4).map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")));
        let head = word(8)
            .and_then(|h| Some((12 + h as usize, word(12 + h as usize)?)))
            .map_or(rest.len(), |(n_at, n)| (n_at + 4).saturating_add(n as usize * DESCRIPTOR))
            .min(rest.len());
        let mut body = self.sealer.mac(&rest[..head]).to_vec();
        body.extend_from_slice(rest);
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    /// Decodes the controller's frames to a client in `bytes`.
    pub fn replies(&mut self, bytes: &[u8]) -> Vec<ControllerToClient> {
        let mut r = bytes;
        let mut out = Vec::new();
        while let Ok(Some(frame)) =
            blocking::read_frame::<ControllerToClient>(&mut r, &mut self.opener, usize::MAX)
        {
            out.push(frame.header);
        }
        out
    }
}

/// The bytes of `sealer`'s next frame.
pub fn framed(sealer: &mut Sealer, frame: &Frame<impl serde::Serialize>) -> Vec<u8> {
    let mut out = encode_head(sealer, frame, u32::MAX as usize, Verify::All).expect("encode");
    frame.buffers.iter().for_each(|b| out.extend_from_slice(b.bytes()));
    out
}

pub fn info_request() -> Frame<ClientToController> {
    Frame::new(ClientToController::InfoRequest)
}

pub fn submit_request(code: &str) -> Frame<ClientToController> {
    let req = SubmitRequest {
        source: None,
        internal: false,
        req_id: mpx_messages::RequestId(1),
        targets: Targets::All,
        request: Request::Execute { code: code.into() },
    };
    Frame::new(ClientToController::SubmitRequest(req))
}

/// Reads until the controller closes the connection (EOF, or a reset when it closed with our
/// bytes unread); returns what it sent. Panics if it is still open after `within`.
pub fn read_until_closed(s: &mut TcpStream, within: Duration, what: &str) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                assert!(Instant::now() < deadline, "{what}: the controller kept the connection open");
            }
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => return out,
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Writes, ignoring errors: the controller may close before everything is written.
pub fn send(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes);
    let _ = s.flush();
}

/// Splits a byte stream into length-prefixed bodies (the last may be incomplete).
pub fn bodies(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let n = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        let end = (4 + n).min(bytes.len());
        out.push(&bytes[4..end]);
        bytes = &bytes[end..];
    }
    out
}
