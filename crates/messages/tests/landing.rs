//! Reading a frame's head first (`codec::blocking::read_frame_landing`): a frame with one
//! payload lands in the place its reader gives, and every other outcome is `read_frame`'s.
#![cfg(feature = "tokio")] // `cargo test --workspace` enables it, as for the other codec tests

use bytes::Bytes;
use mpx_messages::codec::{blocking, Nonces, AUTH_REJECTED};
use mpx_messages::*;

const NONCES: Nonces = Nonces { client: [3; 32], server: [4; 32] };

fn key() -> Key {
    Key::new(b"landing test key".to_vec())
}

/// The sending side of a session and, below, its receiving side.
fn client() -> Session {
    Session::client(&key(), &NONCES)
}

fn server() -> Session {
    Session::server(&key(), &NONCES)
}

/// A frame of three payloads (one empty): never landed.
fn sample() -> Frame<ClientToController> {
    let payloads = vec![Bytes::from_static(b"three"), Bytes::new(), Bytes::from(vec![7u8; 300])];
    Frame::with_buffers(ClientToController::InfoRequest, payloads)
}

/// A landing that gives every frame with one payload a place in `buf` (when `open`).
struct Place {
    buf: Vec<u8>,
    open: bool,
}

impl blocking::Landing<ClientToController> for Place {
    fn place(&mut self, _: &ClientToController, len: usize) -> Option<&mut [u8]> {
        self.buf.resize(len.max(self.buf.len()), 0);
        self.open.then_some(&mut self.buf[..])
    }
}

fn one_payload() -> Frame<ClientToController> {
    Frame::with_buffers(
        ClientToController::InfoRequest,
        vec![Bytes::from((0..5000u32).map(|i| i as u8).collect::<Vec<_>>())],
    )
}

#[test]
fn a_frame_with_one_payload_lands_in_place_and_others_are_read_whole() {
    let mut wire = Vec::new();
    let mut sealer = client().sealer;
    for f in [one_payload(), sample(), Frame::new(ClientToController::InfoRequest)] {
        blocking::write_frame(&mut wire, &mut sealer, &f).unwrap();
    }
    let (mut r, mut opener) = (wire.as_slice(), server().opener);
    let mut place = Place { buf: Vec::new(), open: true };
    let mut next = || blocking::read_frame_landing(&mut r, &mut opener, DEFAULT_MAX_FRAME, None, &mut place);
    let Some(blocking::Landed::InPlace { header, len, refused, .. }) = next().unwrap() else {
        panic!("in place")
    };
    assert_eq!((header, len, refused), (ClientToController::InfoRequest, 5000, None));
    assert!(matches!(next().unwrap(), Some(blocking::Landed::Frame(f)) if f == sample()));
    let third = next().unwrap();
    assert!(
        matches!(third, Some(blocking::Landed::Frame(f)) if f == Frame::new(ClientToController::InfoRequest))
    );
    assert!(next().unwrap().is_none());
    assert_eq!(place.buf[..5000], one_payload().buffers[0].bytes()[..]);
}

#[test]
fn a_payload_altered_on_the_way_lands_but_is_refused() {
    let mut wire = Vec::new();
    blocking::write_frame(&mut wire, &mut client().sealer, &one_payload()).unwrap();
    let last = wire.len() - 1;
    wire[last] ^= 1;
    let mut place = Place { buf: Vec::new(), open: true };
    let got = blocking::read_frame_landing(
        &mut wire.as_slice(),
        &mut server().opener,
        DEFAULT_MAX_FRAME,
        None,
        &mut place,
    );
    assert!(
        matches!(got, Ok(Some(blocking::Landed::InPlace { refused: Some(Refused { index: 0 }), .. }))),
        "{got:?}"
    );
}

#[test]
fn reading_the_head_first_fails_as_reading_the_whole_frame_does() {
    let mut wire = Vec::new();
    let mut sealer = client().sealer;
    for f in [one_payload(), sample()] {
        blocking::write_frame(&mut wire, &mut sealer, &f).unwrap();
    }
    // Every cut of the stream, and every flipped byte of the first frame: the same outcome
    // as `read_frame`'s, in place or not.
    let whole = |bytes: &[u8]| {
        let (mut r, mut opener) = (bytes, server().opener);
        (0..2)
            .map(|_| {
                format!(
                    "{:?}",
                    blocking::read_frame::<ClientToController>(&mut r, &mut opener, DEFAULT_MAX_FRAME)
                )
            })
            .collect::<Vec<_>>()
    };
    let landing = |bytes: &[u8], open: bool| {
        let (mut r, mut opener) = (bytes, server().opener);
        let mut place = Place { buf: Vec::new(), open };
        (0..2)
            .map(|_| {
                let got =
                    blocking::read_frame_landing(&mut r, &mut opener, DEFAULT_MAX_FRAME, None, &mut place);
                format!(
                    "{:?}",
                    got.map(|o| o.map(|l| match l {
                        blocking::Landed::Frame(f) => f,
                        blocking::Landed::InPlace { header, len, binding, refused: None, .. } => {
                            let bytes = Bytes::copy_from_slice(&place.buf[..len]);
                            Frame::with_payloads(header, vec![Payload::with_mac(bytes, binding, [0; 32])])
                        }
                        blocking::Landed::InPlace { header, refused, .. } => {
                            Frame { header, buffers: vec![], refused, fds: Fds::default() }
                        }
                    }))
                )
            })
            .collect::<Vec<_>>()
    };
    let strip = |v: Vec<String>| {
        v.into_iter().map(|s| s.split("mac:").next().unwrap().to_string()).collect::<Vec<_>>()
    };
    for cut in 0..wire.len() {
        assert_eq!(strip(landing(&wire[..cut], false)), strip(whole(&wire[..cut])), "cut at {cut}");
        assert_eq!(strip(landing(&wire[..cut], true)), strip(whole(&wire[..cut])), "cut at {cut}");
    }
    let first = wire.len() - sample().buffers.iter().map(|b| b.len()).sum::<usize>();
    for at in (0..first.min(400)).chain((first - 200)..first) {
        let mut bad = wire.clone();
        bad[at] ^= 0x40;
        // Refused both ways (a bad length prefix may be told as trailing bytes rather than a
        // frame cut short: the head is read before the rest of the body).
        let (l, w) = (strip(landing(&bad, true)), strip(whole(&bad)));
        assert!(
            l[0] == w[0] || (l[0].starts_with("Err") && w[0].starts_with("Err")),
            "flipped byte {at}: {l:?} {w:?}"
        );
    }
    let mut rejected = (AUTH_REJECTED.len() as u32).to_be_bytes().to_vec();
    rejected.extend_from_slice(AUTH_REJECTED);
    assert_eq!(landing(&rejected, true)[0], whole(&rejected)[0]);
    assert!(whole(&rejected)[0].contains("Rejected"));
}
