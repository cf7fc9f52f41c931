//! Thousands of random and mutated inputs against a live, in-process controller: random bytes,
//! mutated handshakes, and sessions opened properly that then send mutated frames. A good client
//! connected alongside is checked all the while, and everything the controller sends back is
//! well-formed: a challenge, replies of the session, or the rejection marker.

#[allow(dead_code)] // each test file uses part of it
mod bad_peers;

use std::{
    net::{Shutdown, TcpStream},
    thread,
    time::{Duration, Instant},
};

use bad_peers::*;
use mpx_messages::{
    codec::{decode_body, ClientHandshake, AUTH_REJECTED},
    ControllerToClient,
};

/// Random and mutated inputs sent by the soak.
const SOAK_INPUTS: usize = 5_000;

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A few random edits of `v`.
    fn mutate(&mut self, v: &mut Vec<u8>) {
        for _ in 0..1 + self.below(3) {
            if v.is_empty() {
                break;
            }
            let at = self.below(v.len());
            match self.below(5) {
                0 => v[at] ^= 1 << self.below(8),
                1 => v.insert(at, self.next() as u8),
                2 => {
                    v.remove(at);
                }
                3 => v.truncate(at),
                _ => v[at] = self.next() as u8,
            }
        }
    }
}

/// What one hostile connection got back.
#[derive(Default)]
struct Tally {
    answered: usize,
    rejected: usize,
}

/// One hostile connection: random bytes, a mutated hello, or a proper session that sends
/// frames with a few random edits. Checks that what comes back is well-formed.
fn hostile(rng: &mut Rng, address: std::net::SocketAddr, what: &str, tally: &mut Tally) {
    match rng.below(4) {
        0 | 1 => {
            let mut input: Vec<u8> = if rng.below(2) == 0 {
                (0..rng.below(300)).map(|_| rng.next() as u8).collect()
            } else {
                ClientHandshake::start(&key()).expect("hello").1.to_vec()
            };
            rng.mutate(&mut input);
            let mut s = TcpStream::connect(address).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
            send(&mut s, &input);
            let _ = s.shutdown(Shutdown::Write);
            let got = read_until_closed(&mut s, CLOSE_WITHIN, what);
            // At most a challenge to an intact hello (72 bytes), never anything else.
            for body in bodies(&got) {
                assert!(
                    body.starts_with(b"MPXCHAL1") && body.len() == 72,
                    "{what}: unexpected bytes back: {got:?}"
                );
            }
        }
        _ => {
            let mut c = Conn::open(address);
            let mut input = if rng.below(2) == 0 {
                c.framed(&info_request())
            } else {
                c.framed(&submit_request("1 + 1"))
            };
            if rng.below(3) == 0 {
                let more = c.framed(&info_request());
                input.extend(more);
            }
            rng.mutate(&mut input);
            send(&mut c.s, &input);
            let _ = c.s.shutdown(Shutdown::Write);
            let got = read_until_closed(&mut c.s, CLOSE_WITHIN, what);
            // Replies of this session, in order, or the rejection marker.
            for body in bodies(&got) {
                if body == AUTH_REJECTED {
                    tally.rejected += 1;
                } else {
                    let reply =
                        decode_body::<ControllerToClient>(&mut c.opener, bytes::Bytes::copy_from_slice(body));
                    assert!(reply.is_ok(), "{what}: unexpected bytes back: {got:?}");
                    tally.answered += 1;
                }
            }
        }
    }
}

#[test]
fn t51_thousands_of_random_and_mutated_inputs_leave_the_controller_serving() {
    let ctl = Controller::start(key());
    let client = good_client(&ctl);
    let started = Instant::now();
    let workers: Vec<_> = (0..2u64)
        .map(|w| {
            let address = ctl.address;
            thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1));
                let mut tally = Tally::default();
                for i in 0..SOAK_INPUTS / 2 {
                    hostile(&mut rng, address, &format!("worker {w} input {i}"), &mut tally);
                }
                tally
            })
        })
        .collect();
    // Check the good client while the soak runs.
    let mut checks = 0;
    while workers.iter().any(|w| !w.is_finished()) {
        assert_serving(&client, &format!("{} s of hostile inputs", started.elapsed().as_secs()));
        checks += 1;
        thread::sleep(Duration::from_millis(10));
    }
    let (mut answered, mut rejected) = (0, 0);
    for w in workers {
        let t = w.join().expect("soak worker");
        answered += t.answered;
        rejected += t.rejected;
    }
    // The inputs reach both the parser (some frames survive their edits and are answered) and
    // the signature check.
    assert!(answered > 0 && rejected > 0, "answered {answered}, rejected {rejected}");
    assert_serving(&client, "the soak");
    assert!(checks > 0);
    eprintln!(
        "{SOAK_INPUTS} hostile inputs in {:.1} s ({answered} replies, {rejected} AUTH_REJECTED), \
         good client checked {checks} times",
        started.elapsed().as_secs_f64()
    );
}
