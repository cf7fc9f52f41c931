//! The handshake that opens every connection (see the [module docs](super)), as plain state
//! machines over fixed-size messages: the socket code (blocking in [`blocking::connect`], async
//! in `codec::connect`/`codec::accept`) only moves their bytes.
//!
//! [`blocking::connect`]: super::blocking::connect

use std::{
    collections::{HashSet, VecDeque},
    sync::Mutex,
};

use super::{
    random_bytes, CodecError, Key, Mac, Nonces, Session, AUTH_REJECTED, MAC_LEN, UNVERIFIED_RESERVE,
};

/// Magic of the client's hello.
const HELLO_MAGIC: &[u8; 8] = b"MPXHELO1";
/// Magic of the server's challenge.
const CHALLENGE_MAGIC: &[u8; 8] = b"MPXCHAL1";
/// Magic of the client's proof.
const PROOF_MAGIC: &[u8; 8] = b"MPXPROF1";

/// Body bytes of a hello: magic, client nonce.
pub const HELLO_LEN: usize = 8 + 32;
/// Body bytes of a challenge: magic, server nonce, server MAC.
pub const CHALLENGE_LEN: usize = 8 + 32 + MAC_LEN;
/// Body bytes of a proof: magic, client MAC.
pub const PROOF_LEN: usize = 8 + MAC_LEN;

/// Client nonces a server remembers (most recent first out last): a hello repeating one is a
/// replay. Older ones are forgotten; a hello replayed after that still fails, at the proof (the
/// server's nonce is new), only less explicitly.
pub const HISTORY: usize = 16 << 10;

/// A message with its 4-byte big-endian length prefix.
fn prefixed<const N: usize>(body: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out[..4].copy_from_slice(&(body.len() as u32).to_be_bytes());
    out[4..].copy_from_slice(body);
    out
}

/// Checks the length prefix of a handshake message expected to have `want` body bytes. A
/// prefix the size of [`AUTH_REJECTED`] is let through (the caller reads and recognises it).
///
/// # Errors
/// [`CodecError::TooLarge`] over [`UNVERIFIED_RESERVE`], else [`CodecError::NotHandshake`].
pub fn check_prefix(prefix: [u8; 4], want: usize, what: &str) -> Result<usize, CodecError> {
    let size = u32::from_be_bytes(prefix) as usize;
    if size > UNVERIFIED_RESERVE {
        return Err(CodecError::TooLarge { size, limit: UNVERIFIED_RESERVE });
    }
    if size != want && size != AUTH_REJECTED.len() {
        return Err(CodecError::NotHandshake(format!(
            "a message of {size} bytes where a {what} was expected"
        )));
    }
    Ok(size)
}

/// Checks a handshake body's magic; [`AUTH_REJECTED`] is [`CodecError::Rejected`].
fn check_magic(body: &[u8], magic: &[u8; 8], what: &str) -> Result<(), CodecError> {
    if body == AUTH_REJECTED {
        return Err(CodecError::Rejected);
    }
    if body.len() < 8 || &body[..8] != magic {
        return Err(CodecError::NotHandshake(format!("no {what} magic")));
    }
    Ok(())
}

/// The connecting side of a handshake, between its hello and the server's challenge.
pub struct ClientHandshake {
    key: Key,
    nonce: [u8; 32],
}

/// What the client does with the server's challenge.
pub struct ClientAnswer {
    /// The proof to send (sent even when the server failed to prove itself, so that the server
    /// logs the wrong key too).
    pub proof: [u8; 4 + PROOF_LEN],
    /// The session, or [`CodecError::Unproven`] when the server's MAC does not match.
    pub session: Result<Session, CodecError>,
}

impl ClientHandshake {
    /// Starts a handshake: the hello to send, with a fresh nonce.
    ///
    /// # Errors
    /// [`CodecError::Random`] if the system's random source fails.
    pub fn start(key: &Key) -> Result<(ClientHandshake, [u8; 4 + HELLO_LEN]), CodecError> {
        let nonce = random_bytes::<32>()?;
        let mut body = HELLO_MAGIC.to_vec();
        body.extend_from_slice(&nonce);
        Ok((ClientHandshake { key: key.clone(), nonce }, prefixed(&body)))
    }

    /// Answers the server's challenge (its body, after the length prefix).
    ///
    /// # Errors
    /// [`CodecError::Rejected`] or [`CodecError::NotHandshake`] when the body is not a
    /// challenge.
    pub fn answer(self, challenge: &[u8]) -> Result<ClientAnswer, CodecError> {
        check_magic(challenge, CHALLENGE_MAGIC, "challenge")?;
        if challenge.len() != CHALLENGE_LEN {
            return Err(CodecError::NotHandshake("a challenge of the wrong size".into()));
        }
        let server: [u8; 32] = challenge[8..40].try_into().expect("32 bytes");
        let nonces = Nonces { client: self.nonce, server };
        let mut body = PROOF_MAGIC.to_vec();
        body.extend_from_slice(&self.key.proof(false, &nonces));
        let server_mac: Mac = challenge[40..].try_into().expect("32 bytes");
        let expected = blake3::Hash::from_bytes(self.key.proof(true, &nonces));
        let session = if expected == blake3::Hash::from_bytes(server_mac) {
            Ok(Session::client(&self.key, &nonces))
        } else {
            Err(CodecError::Unproven)
        };
        Ok(ClientAnswer { proof: prefixed(&body), session })
    }
}

/// The accepting side of a handshake, between its challenge and the client's proof.
pub struct ServerHandshake {
    key: Key,
    nonces: Nonces,
}

impl ServerHandshake {
    /// Reads a client's hello (its body): the challenge to answer it with. A nonce `history`
    /// has seen before is a replay.
    ///
    /// # Errors
    /// [`CodecError::NotHandshake`] for anything but a hello, [`CodecError::Replayed`] for a
    /// nonce seen before, [`CodecError::Random`] if the random source fails.
    pub fn accept(
        key: &Key,
        hello: &[u8],
        history: &NonceHistory,
    ) -> Result<(ServerHandshake, [u8; 4 + CHALLENGE_LEN]), CodecError> {
        check_magic(hello, HELLO_MAGIC, "hello")?;
        if hello.len() != HELLO_LEN {
            return Err(CodecError::NotHandshake("a hello of the wrong size".into()));
        }
        let client: [u8; 32] = hello[8..].try_into().expect("32 bytes");
        if !history.insert(client) {
            return Err(CodecError::Replayed(
                "a hello whose nonce was seen before (a recorded connection sent again)".into(),
            ));
        }
        let nonces = Nonces { client, server: random_bytes::<32>()? };
        let mut body = CHALLENGE_MAGIC.to_vec();
        body.extend_from_slice(&nonces.server);
        body.extend_from_slice(&key.proof(true, &nonces));
        Ok((ServerHandshake { key: key.clone(), nonces }, prefixed(&body)))
    }

    /// Checks the client's proof (its body): the session.
    ///
    /// # Errors
    /// [`CodecError::BadProof`] when the proof does not match (wrong key, or a replayed
    /// handshake), [`CodecError::NotHandshake`] for anything but a proof.
    pub fn finish(self, proof: &[u8]) -> Result<Session, CodecError> {
        check_magic(proof, PROOF_MAGIC, "proof")?;
        let mac = proof.get(8..).and_then(|m| <[u8; 32]>::try_from(m).ok());
        let expected = blake3::Hash::from_bytes(self.key.proof(false, &self.nonces));
        match mac {
            Some(mac) if expected == blake3::Hash::from_bytes(mac) => {
                Ok(Session::server(&self.key, &self.nonces))
            }
            _ => Err(CodecError::BadProof),
        }
    }
}

/// The client nonces a server has seen, the last [`HISTORY`] of them.
#[derive(Debug, Default)]
pub struct NonceHistory {
    seen: Mutex<Seen>,
}

/// The nonces of a [`NonceHistory`]: to look up, and in the order they came (to forget).
#[derive(Debug, Default)]
struct Seen {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl NonceHistory {
    /// Records a nonce; `false` if it was seen already.
    pub fn insert(&self, nonce: [u8; 32]) -> bool {
        let mut guard = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Seen { set, order } = &mut *guard;
        if !set.insert(nonce) {
            return false;
        }
        order.push_back(nonce);
        if order.len() > HISTORY {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }
}
