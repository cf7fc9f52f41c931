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

/// Times `samples` moves of `bytes` (after `warmup`) from sender to receiver through the relay,
/// each until the receiver's acknowledgement is back.
///
/// # Errors
/// A socket error, or a chunk the receiver refuses.
pub fn relay_transfer(warmup: usize, samples: usize, bytes: usize) -> Result<Vec<f64>> {
    let key = Key::new(b"mpx relay floor".to_vec());
    let (mut to_relay, relay_in) = loopback_pair()?;
    let (relay_out, from_relay) = loopback_pair()?;
    let (mut ack_in, ack_out) = loopback_pair()?;
    let relay: JoinHandle<std::io::Result<()>> = std::thread::spawn(move || relay(relay_in, relay_out));
    let receiver_key = key.clone();
    let receiver = std::thread::spawn(move || receive(from_relay, ack_out, receiver_key, bytes));
    // f64 data, as a push would carry.
    let data: Vec<u8> = (0..bytes / 8).flat_map(|i| (i as f64).to_le_bytes()).collect();
    let mut out = Vec::with_capacity(samples);
    let mut ack = [0u8; 1];
    for i in 0..warmup + samples {
        let t0 = Instant::now();
        for (index, piece) in data.chunks(chunk()).enumerate() {
            let mac = key.payload_mac(Binding { origin: 1, index: index as u64 }, piece);
            to_relay.write_all(&header(piece.len(), &mac))?;
            to_relay.write_all(piece)?;
        }
        ack_in.read_exact(&mut ack)?;
        if i >= warmup {
            out.push(t0.elapsed().as_secs_f64());
        }
    }
    to_relay.write_all(&header(0, &[0; 32]))?;
    relay.join().map_err(|_| anyhow!("relay thread panicked"))??;
    receiver.join().map_err(|_| anyhow!("receiver thread panicked"))??;
    Ok(out)
}
