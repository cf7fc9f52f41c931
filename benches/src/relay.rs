//! A diagnostic floor: the least a move through the controller costs under mpx's design rules,
//! without mpx. A sender MACs each chunk (keyed BLAKE3, [`Key::payload_mac`]) and writes it
//! over loopback TCP to a relay, which forwards it to the receiver without hashing it (as the
//! controller does); the receiver reads every chunk straight into a fresh buffer of the whole
//! array (as a client's pull result is) and verifies its MAC there. Three threads, two TCP hops,
//! two MAC passes and one fresh buffer per transfer: what the data rows pay at least, where the
//! issue's TCP floor has one hop into a reused 1 MB buffer and no MAC.

use std::{
    io::{Read, Write},
    net::TcpStream,
    thread::JoinHandle,
    time::Instant,
};

use anyhow::{anyhow, ensure, Result};
use mpx_messages::{Binding, Key};

use crate::floors::loopback_pair;

/// The chunk size, as mpx streams arrays (`mpx_messages::array::chunk_bytes`'s default).
fn chunk() -> usize {
    mpx_messages::array::chunk_bytes()
}

/// Each chunk travels as `len: u64 LE | MAC: 32 bytes | bytes`; a length of 0 ends the run.
fn header(len: usize, mac: &[u8; 32]) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[..8].copy_from_slice(&(len as u64).to_le_bytes());
    h[8..].copy_from_slice(mac);
    h
}

/// The relay: forwards chunks from `from` to `to` through one reused buffer, never hashing.
fn relay(mut from: TcpStream, mut to: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; chunk()];
    loop {
        let mut h = [0u8; 40];
        from.read_exact(&mut h)?;
        let len = u64::from_le_bytes(h[..8].try_into().expect("8 bytes")) as usize;
        to.write_all(&h)?;
        if len == 0 {
            return Ok(());
        }
        buf.resize(len.max(buf.len()), 0);
        from.read_exact(&mut buf[..len])?;
        to.write_all(&buf[..len])?;
    }
}

/// The receiver: each transfer of `total` bytes into a fresh buffer, every chunk verified in
/// place; then a 1-byte acknowledgement to the sender.
fn receive(mut from: TcpStream, mut ack: TcpStream, key: Key, total: usize) -> Result<()> {
    loop {
        // Fresh zero pages from the system (no memset), faulted in as the chunks land.
        let mut whole = vec![0u8; total];
        let (mut at, mut index) = (0, 0u64);
        while at < total {
            let mut h = [0u8; 40];
            from.read_exact(&mut h)?;
            let len = u64::from_le_bytes(h[..8].try_into().expect("8 bytes")) as usize;
            if len == 0 {
                return Ok(());
            }
            ensure!(at + len <= total, "a chunk past the end");
            from.read_exact(&mut whole[at..at + len])?;
            let mac: [u8; 32] = h[8..].try_into().expect("32 bytes");
            let binding = Binding { origin: 1, index };
            ensure!(key.payload_matches(binding, &whole[at..at + len], &mac), "chunk {index} refused");
            at += len;
            index += 1;
        }
        std::hint::black_box(&whole);
        ack.write_all(&[1])?;
    }
}

/// A relay floor ready to time moves of one size, one at a time ([`Relay::once`]), so that a
/// row can time it alternately with its own samples (the TCP data rows, see
/// [`crate::data`]): the sender in the calling thread, the relay and the receiver in threads
/// of their own.
pub struct Relay {
    key: Key,
    data: Vec<u8>,
    to_relay: TcpStream,
    ack_in: TcpStream,
    relay: JoinHandle<std::io::Result<()>>,
    receiver: JoinHandle<Result<()>>,
}

impl Relay {
    /// Starts the relay and receiver threads for moves of `bytes`.
    ///
    /// # Errors
    /// The loopback connections cannot be made.
    pub fn start(bytes: usize) -> Result<Relay> {
        let key = Key::new(b"mpx relay floor".to_vec());
        let (to_relay, relay_in) = loopback_pair()?;
        let (relay_out, from_relay) = loopback_pair()?;
        let (ack_in, ack_out) = loopback_pair()?;
        let relay = std::thread::spawn(move || relay(relay_in, relay_out));
        let receiver_key = key.clone();
        let receiver = std::thread::spawn(move || receive(from_relay, ack_out, receiver_key, bytes));
        // f64 data, as a push would carry.
        let data: Vec<u8> = (0..bytes / 8).flat_map(|i| (i as f64).to_le_bytes()).collect();
        Ok(Relay { key, data, to_relay, ack_in, relay, receiver })
    }

    /// Times one move, until the receiver's acknowledgement is back (seconds).
    ///
    /// # Errors
    /// A socket error (the receiver refusing a chunk closes its side).
    pub fn once(&mut self) -> Result<f64> {
        let t0 = Instant::now();
        for (index, piece) in self.data.chunks(chunk()).enumerate() {
            let mac = self.key.payload_mac(Binding { origin: 1, index: index as u64 }, piece);
            self.to_relay.write_all(&header(piece.len(), &mac))?;
            self.to_relay.write_all(piece)?;
        }
        let mut ack = [0u8; 1];
        self.ack_in.read_exact(&mut ack)?;
        Ok(t0.elapsed().as_secs_f64())
    }

    /// Ends the threads.
    ///
    /// # Errors
    /// A thread failed (a chunk refused, a socket error).
    pub fn finish(mut self) -> Result<()> {
        self.to_relay.write_all(&header(0, &[0; 32]))?;
        self.relay.join().map_err(|_| anyhow!("relay thread panicked"))??;
        self.receiver.join().map_err(|_| anyhow!("receiver thread panicked"))??;
        Ok(())
    }
}

/// Times `samples` moves of `bytes` (after `warmup`) from sender to receiver through the relay,
/// each until the receiver's acknowledgement is back.
///
/// # Errors
/// A socket error, or a chunk the receiver refuses.
pub fn relay_transfer(warmup: usize, samples: usize, bytes: usize) -> Result<Vec<f64>> {
    let mut relay = Relay::start(bytes)?;
    let mut out = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let secs = relay.once()?;
        if i >= warmup {
            out.push(secs);
        }
    }
    relay.finish()?;
    Ok(out)
}
