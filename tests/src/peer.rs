//! A peer that speaks the protocol itself, as a hostile client holding the key would: the
//! handshake, then frames of its session, and its raw bytes when a test wants to replay them.

use std::{
    io::Write,
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use mpx_messages::{
    codec::{blocking, encode_head, CodecError},
    Frame, Key, Session, Verify,
};
use serde::{de::DeserializeOwned, Serialize};

/// One authenticated connection to a controller, driven frame by frame.
pub struct Peer {
    /// The socket.
    pub stream: TcpStream,
    /// The session the handshake opened.
    pub session: Session,
    /// The cluster key.
    pub key: Key,
}

impl Peer {
    /// Connects to `address` and opens a session with `key`; reads wait up to `timeout`.
    pub fn connect(address: &str, key: &Key, timeout: Duration) -> Peer {
        let mut stream = TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(timeout)).expect("timeout");
        let session = blocking::connect(&mut stream, key).expect("handshake");
        Peer { stream, session, key: key.clone() }
    }

    /// The address the controller sees for this peer.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    /// The bytes of this session's next frame (counted as sent), without sending them.
    pub fn encode<H: Serialize>(&mut self, frame: &Frame<H>) -> Vec<u8> {
        let mut out =
            encode_head(&mut self.session.sealer, frame, u32::MAX as usize, Verify::All).expect("encode");
        frame.buffers.iter().for_each(|b| out.extend_from_slice(b.bytes()));
        out
    }

    /// Sends raw bytes (ignoring errors: the controller may already have closed).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    /// Sends the session's next frame.
    pub fn send<H: Serialize>(&mut self, frame: &Frame<H>) {
        let bytes = self.encode(frame);
        self.stream.write_all(&bytes).expect("send");
        self.stream.flush().expect("flush");
    }

    /// Reads the session's next frame (`None` at a clean end of stream).
    ///
    /// # Errors
    /// Whatever the codec refuses.
    pub fn recv<H: DeserializeOwned>(&mut self) -> Result<Option<Frame<H>>, CodecError> {
        blocking::read_frame(&mut self.stream, &mut self.session.opener, usize::MAX)
    }
}
