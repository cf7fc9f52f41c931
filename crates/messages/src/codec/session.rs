//! A connection's session: the header keys of its two directions, derived from the cluster key
//! and both handshake nonces, and their sequence numbers.

use super::{CodecError, Key, Mac};

/// `blake3::derive_key` context of the header key of frames from client to server.
const CLIENT_TO_SERVER: &str = "mpx 2026-12 session header client-to-server";
/// `blake3::derive_key` context of the header key of frames from server to client.
const SERVER_TO_CLIENT: &str = "mpx 2026-12 session header server-to-client";

/// The nonces a handshake exchanged: fresh random bytes from each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nonces {
    /// The connecting side's (client or engine).
    pub client: [u8; 32],
    /// The accepting side's (controller).
    pub server: [u8; 32],
}

impl Nonces {
    /// The header key of one direction of the session these nonces opened.
    fn header_key(&self, key: &Key, from_client: bool) -> [u8; 32] {
        let mut material = Vec::with_capacity(key.raw().len() + 64);
        material.extend_from_slice(key.raw());
        material.extend_from_slice(&self.client);
        material.extend_from_slice(&self.server);
        blake3::derive_key(if from_client { CLIENT_TO_SERVER } else { SERVER_TO_CLIENT }, &material)
    }
}

/// The sending half of a session: signs frame heads with this direction's key and numbers them
/// 0, 1, 2, ...
#[derive(Clone)]
pub struct Sealer {
    key: Key,
    header: [u8; 32],
    next: u64,
}

/// The receiving half of a session: checks frame heads with this direction's key and accepts
/// only the next sequence number.
#[derive(Clone)]
pub struct Opener {
    key: Key,
    header: [u8; 32],
    next: u64,
}

/// Both halves of one side of a connection.
#[derive(Clone)]
pub struct Session {
    /// What this side sends with.
    pub sealer: Sealer,
    /// What this side receives with.
    pub opener: Opener,
}

impl Session {
    /// The connecting side's session once the handshake exchanged `nonces`.
    pub fn client(key: &Key, nonces: &Nonces) -> Session {
        Session::new(key, nonces, true)
    }

    /// The accepting side's session once the handshake exchanged `nonces`.
    pub fn server(key: &Key, nonces: &Nonces) -> Session {
        Session::new(key, nonces, false)
    }

    fn new(key: &Key, nonces: &Nonces, client: bool) -> Session {
        let out = nonces.header_key(key, client);
        let inn = nonces.header_key(key, !client);
        Session {
            sealer: Sealer { key: key.clone(), header: out, next: 0 },
            opener: Opener { key: key.clone(), header: inn, next: 0 },
        }
    }
}

impl Sealer {
    /// The cluster key (payload MACs are made with it).
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The sequence number of the next frame sent.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The MAC of a frame head (from its sequence number through its buffer descriptors), for
    /// code that lays a frame out itself (tests of the decoder); [`encode_head`] uses it.
    ///
    /// [`encode_head`]: super::encode_head
    pub fn mac(&self, head: &[u8]) -> Mac {
        *blake3::keyed_hash(&self.header, head).as_bytes()
    }

    /// The origin of the payloads made here for frame `seq`: unique in the session, and
    /// unpredictable without the key.
    pub(crate) fn origin(&self, seq: u64) -> u64 {
        let mut h = blake3::Hasher::new_keyed(&self.header);
        h.update(b"payload origin");
        h.update(&seq.to_le_bytes());
        u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
    }

    /// Counts a frame as sent.
    pub(crate) fn advance(&mut self) {
        self.next += 1;
    }
}

impl Opener {
    /// The cluster key (payload MACs are checked with it).
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The sequence number the next frame must carry.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Checks a frame head's MAC, then its sequence number, and counts it as received.
    ///
    /// # Errors
    /// [`CodecError::BadSignature`] when the MAC does not match (another key or session, or
    /// altered bytes); [`CodecError::Replayed`] when an authentic frame is not the next one.
    pub(crate) fn check(&mut self, seq: u64, head: &[u8], mac: &[u8]) -> Result<(), CodecError> {
        let ok = blake3::Hash::from_slice(mac).is_ok_and(|mac| blake3::keyed_hash(&self.header, head) == mac);
        if !ok {
            return Err(CodecError::BadSignature);
        }
        if seq != self.next {
            return Err(CodecError::Replayed(format!(
                "frame {seq} of this session arrived where frame {} was expected (recorded and sent again, \
                 or reordered)",
                self.next
            )));
        }
        self.next += 1;
        Ok(())
    }
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer(next {})", self.next)
    }
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opener(next {})", self.next)
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("sealer", &self.sealer).field("opener", &self.opener).finish()
    }
}
