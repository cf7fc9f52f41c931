//! Arrays larger than one chunk stream through the controller: many-chunk round trips of every
//! kind (push, pull, scatter, gather) with lengths that are not multiples of the chunk size, a
//! 1.5 GB array, a chunk altered after signing (refused by the engine, nothing bound), and a
//! client that goes away mid-push (the controller keeps serving, its memory comes back).

use std::{
    ffi::OsStr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use mpx_client::{Dtype, RawArray, Targets};
use mpx_messages::{
    Binding, Chunk, ClientToController, ControllerToClient, EngineReply, Frame, Payload, Request,
    SubmitRequest,
};
use mpx_tests::{
    arrays::{describe, rows, sample},
    memory::{mb, rss, rss_settles},
    Cluster, Kernel,
};

const T: Duration = Duration::from_secs(300);

/// The chunk size of the many-chunk tests (engines and client).
const SMALL_CHUNK: usize = 1000;

fn small_chunks(kernel: Kernel, tag: &str, n: u32) -> Cluster {
    Cluster::start_env(kernel, tag, n, &[], &[("MPX_CHUNK_BYTES", OsStr::new("1000"))])
}

fn round_trips(c: &Cluster, dtypes: &[Dtype]) {
    let client = c.client();
    client.set_chunk_bytes(SMALL_CHUNK);
    let views = [Targets::All, Targets::ids([1, 3]), Targets::ids([2])];
    for (i, &dtype) in dtypes.iter().enumerate() {
        // 1237 × 11 elements: tens of chunks, and no chunk boundary on a row or element edge.
        let a = sample(dtype, &[1237, 11], i as u64 + 1);
        assert!(a.data().len() > 10 * SMALL_CHUNK && !a.data().len().is_multiple_of(SMALL_CHUNK));
        for targets in &views {
            let view = client.view(targets.clone());
            view.push_sync("x", &a, T).unwrap();
            for (k, b) in view.pull_sync("x", T).unwrap().iter().enumerate() {
                assert!(b == &a, "push/pull {dtype} to {targets:?}, #{k}: {}", describe(b));
            }
            view.scatter_sync("y", &a, T).unwrap();
            let parts = view.pull_sync("y", T).unwrap();
            let n = parts.len();
            let mut start = 0;
            for (r, part) in parts.iter().enumerate() {
                let count = 1237 / n + usize::from(r < 1237 % n);
                assert!(part == &rows(&a, start, start + count), "scatter {dtype} to {targets:?}, #{r}");
                start += count;
            }
            let whole = view.gather_sync("y", T).unwrap();
            assert!(whole == a, "gather {dtype} from {targets:?}: {}", describe(&whole));
        }
    }
}

#[test]
fn t66_arrays_of_many_chunks_round_trip_bit_exactly_rhai() {
    let c = small_chunks(Kernel::Rhai, "chunks-rhai", 4);
    round_trips(&c, &[Dtype::F64, Dtype::F32, Dtype::I64, Dtype::I32, Dtype::U8, Dtype::Bool]);
    c.stop();
}

#[test]
fn t66_arrays_of_many_chunks_round_trip_bit_exactly_python() {
    let c = small_chunks(Kernel::Python, "chunks-py", 4);
    round_trips(&c, &[Dtype::F64, Dtype::C128, Dtype::U16, Dtype::Bool]);
    // The numpy arrays the kernel received are whole.
    let out = c.client().view(Targets::All).execute_sync("int(x.shape[0] * 10 + x.ndim)", T).unwrap();
    assert!(out.iter().all(|r| r.outcome.value.as_deref() == Some("12372")), "{out:?}");
    c.stop();
}

#[test]
fn t66_a_pulled_array_is_sent_whole_before_the_next_cell_writes_to_it() {
    // The pull streams from the array's own memory (no copy): the next cell, queued behind
    // it, runs only once every chunk is written, so it cannot change what the client gets.
    let c = small_chunks(Kernel::Python, "lend", 2);
    let client = c.client();
    client.set_chunk_bytes(SMALL_CHUNK);
    let view = client.view(Targets::ids([1]));
    let a = sample(Dtype::F64, &[2000, 100], 11);
    view.push_sync("x", &a, T).unwrap();
    let pulled = view.pull("x").unwrap();
    let zeroed = view.execute("x[:] = 0\nfloat(abs(x).sum())").unwrap();
    let got = pulled.get(T).unwrap();
    let got = got[0].array.as_ref().unwrap_or_else(|| panic!("no array: {got:?}"));
    assert!(got == &a, "the pull saw the next cell's writes: {}", describe(got));
    let after = zeroed.get(T).unwrap();
    assert_eq!(after[0].outcome.value.as_deref(), Some("0.0"), "{after:?}");
    c.stop();
}

/// Chunk `k` of the stream `origin`, as a sender binds it (its origin and place in the stream).
fn bound(bytes: Bytes, origin: u64, k: usize) -> Payload {
    Payload::bound(bytes, Binding { origin, index: k as u64 })
}

/// A peer holding the key that speaks the protocol itself.
struct Peer(mpx_tests::peer::Peer);

impl Peer {
    fn connect(c: &Cluster) -> Peer {
        let (address, key) = c.address_and_key();
        Peer(mpx_tests::peer::Peer::connect(&address, &key, T))
    }

    fn send(&mut self, frame: &Frame<ClientToController>) {
        self.0.send(frame);
    }

    /// A streamed push of `array`'s bytes as `name` (the request; chunks follow).
    fn push_request(&mut self, req_id: u64, name: &str, a: &RawArray) {
        let request = Request::Push { name: name.into(), array: a.meta(0), shared: false };
        let req = SubmitRequest {
            source: None,
            internal: false,
            req_id: mpx_messages::RequestId(req_id),
            targets: Targets::All,
            request,
        };
        self.send(&Frame::new(ClientToController::SubmitRequest(req)));
    }

    /// A streamed push of `a` as `name` in chunks of `step` bytes, the seventh chunk's bytes
    /// changed after their MAC was made.
    fn push_altered(&mut self, req_id: u64, name: &str, a: &RawArray, step: usize) {
        self.push_request(req_id, name, a);
        let total = a.data().len();
        for (k, offset) in (0..total).step_by(step).enumerate() {
            let bytes = a.data().slice(offset..total.min(offset + step));
            let payload = if k == 6 {
                let mut altered = bytes.to_vec();
                altered[100] ^= 0x01;
                let binding = Binding { origin: req_id, index: k as u64 };
                Payload::with_mac(Bytes::from(altered), binding, self.0.key.payload_mac(binding, &bytes))
            } else {
                bound(bytes, req_id, k)
            };
            self.chunk(req_id, offset, total, payload);
        }
    }

    fn chunk(&mut self, req_id: u64, offset: usize, total: usize, payload: Payload) {
        let chunk = Chunk { stream: req_id, offset: offset as u64, total: total as u64 };
        self.send(&Frame::with_payloads(ClientToController::Chunk(chunk), vec![payload]));
    }

    /// The results of request `req_id` from `n` engines, by engine id.
    fn results(&mut self, req_id: u64, n: usize) -> Vec<EngineReply> {
        let mut results = Vec::new();
        while results.len() < n {
            let frame =
                self.0.recv::<ControllerToClient>().expect("a reply").expect("the connection stays open");
            match frame.header {
                ControllerToClient::SubmitReply(r) => assert_eq!(r.error, None, "{r:?}"),
                ControllerToClient::EngineReply(r) if r.req_id == mpx_messages::RequestId(req_id) => {
                    results.push(r)
                }
                _ => {}
            }
        }
        results.sort_by_key(|r| r.engine_id);
        results
    }
}

#[test]
fn t66_a_chunk_altered_after_signing_is_refused_by_the_engine_and_nothing_is_bound() {
    let c = Cluster::start(Kernel::Rhai, "chunk-mac", 4, &[]);
    let client = c.client();
    let all = client.view(Targets::All);
    let good = sample(Dtype::F64, &[3000], 3);
    all.push_sync("x", &good, T).unwrap();

    // Ten chunks; the seventh's bytes change after their MAC was made.
    let mut peer = Peer::connect(&c);
    let other = sample(Dtype::F64, &[3000], 9);
    let (total, step) = (other.data().len(), 2400);
    peer.push_altered(7, "x", &other, step);
    let results = peer.results(7, 4);
    let root = results[0].outcome.error.as_ref().expect("the root refuses the push");
    assert_eq!(root.ename(), "AuthenticationError", "{root:?}");
    assert!(root.evalue().contains(&format!("chunk at byte {}", 6 * step)), "{root:?}");
    assert!(root.evalue().contains("nothing was bound"), "{root:?}");
    for r in &results[1..] {
        assert!(r.outcome.error.is_some(), "engine {} bound the refused array: {r:?}", r.engine_id);
    }
    // Nothing was bound, and the same connection and cluster keep working.
    for (engine, a) in all.pull_sync("x", T).unwrap().iter().enumerate() {
        assert!(a == &good, "engine {engine} holds something else than the last good push");
    }
    peer.push_request(8, "z", &other);
    for offset in (0..total).step_by(step) {
        peer.chunk(
            8,
            offset,
            total,
            bound(other.data().slice(offset..total.min(offset + step)), 8, offset / step),
        );
    }
    assert!(peer.results(8, 4).iter().all(|r| r.outcome.error.is_none()));
    assert!(client.view(Targets::ids([3])).pull_sync("z", T).unwrap()[0] == other);
    c.stop();
}

#[test]
fn t66_a_client_gone_mid_push_leaves_the_controller_serving_and_its_memory_back() {
    let c = Cluster::start(Kernel::Rhai, "gone", 4, &[]);
    let pid = c.pids.controller;
    let client = c.client();
    let all = client.view(Targets::All);
    let good = sample(Dtype::U8, &[1000], 5);
    all.push_sync("x", &good, T).unwrap();
    let idle = rss(pid);

    // 200 MB announced, 40 MB sent, then the connection closes.
    let step = 4 << 20;
    let total = 50 * step;
    let big = RawArray::new(Dtype::U8, vec![total], Bytes::from(vec![7u8; total])).unwrap();
    let mut peer = Peer::connect(&c);
    peer.push_request(1, "x", &big);
    for offset in (0..10 * step).step_by(step) {
        peer.chunk(1, offset, total, bound(big.data().slice(offset..offset + step), 1, offset / step));
    }
    drop(peer);

    // The root gives up on the array; nothing is bound, every engine still answers.
    for (engine, a) in all.pull_sync("x", T).unwrap().iter().enumerate() {
        assert!(a == &good, "engine {engine} bound part of an array whose client went away");
    }
    all.push_sync("y", &good, T).unwrap();
    let after = rss_settles(pid, idle + (32 << 20), Duration::from_secs(5));
    eprintln!("controller RSS: idle {:.1} MB, after the broken push {:.1} MB", mb(idle), mb(after));
    assert!(after <= idle + (32 << 20), "controller RSS {:.1} MB after a broken push", mb(after));
    c.stop();
}

/// The most the controller's memory may grow during a move of any size (issue 24: idle + 64 MB
/// during 1 GB moves, on both paths).
const CONTROLLER_GROWTH: u64 = 64 << 20;

#[test]
fn t66_a_1_5_gb_array_pushed_to_2_engines_comes_back_bit_exactly() {
    let c = Cluster::start(Kernel::Rhai, "huge", 2, &[]);
    let n = 1_500_000_000usize;
    let data: Vec<u8> = (0..n).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    let a = RawArray::new(Dtype::U8, vec![n], Bytes::from(data)).unwrap();
    // Over TCP the bytes stream through the controller; from the client `Cluster::client`
    // makes (on the controller's host) they pass as one memfd.
    let (address, key) = c.address_and_key();
    let tcp =
        mpx_client::Client::connect_with(&address, key, "huge", c.connection_file()).expect("TCP client");
    assert!(!tcp.is_local());
    huge_push(&c, &tcp, &a, "TCP");
    drop(tcp);
    let local = c.client();
    assert!(local.is_local());
    huge_push(&c, &local, &a, "memfd");
    c.stop();
}

/// Pushes `a` to both engines through `client`, watching the controller's memory, and pulls
/// it back from each.
fn huge_push(c: &Cluster, client: &mpx_client::Client, a: &RawArray, path: &str) {
    let pid = c.pids.controller;
    client.view(Targets::All).execute_sync("1", T).unwrap();
    let idle = rss(pid);

    // The controller's memory while the array streams through it.
    let (done, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(idle)));
    let watch = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    client.view(Targets::All).push_sync("big", a, T).unwrap();
    done.store(true, Ordering::Relaxed);
    watch.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!(
        "controller RSS ({path}): idle {:.1} MB, peak during a 1.5 GB push {:.1} MB",
        mb(idle),
        mb(peak)
    );
    assert!(peak <= idle + CONTROLLER_GROWTH, "{path}: the controller held {:.1} MB more", mb(peak - idle));
    for engine in 0..2 {
        let back = client.view(Targets::ids([engine])).pull_sync("big", T).unwrap();
        assert!(&back[0] == a, "{path}: engine {engine}: {}", describe(&back[0]));
    }
    client.view(Targets::All).execute_sync("big = 0", T).unwrap();
}

/// Where each engine's array `name` lives: `('INODE', True)` in a held memfd of the root's
/// (`mpx_messages::memfd::held`), `('INODE', False)` in another memfd, `None` elsewhere.
fn where_held(all: &mpx_client::View, name: &str) -> Vec<String> {
    let code = format!(
        "def _where(a):\n    at = a.ctypes.data\n    for l in open('/proc/self/maps'):\n        \
         f = l.split()\n        lo, hi = (int(v, 16) for v in f[0].split('-'))\n        \
         if lo <= at < hi:\n            return (f[4], 'mpx-held' in l) if 'memfd:' in l else None\n\
         _where({name})"
    );
    let out = all.execute_sync(&code, T).unwrap();
    out.into_iter().map(|r| r.outcome.value.unwrap_or_else(|| format!("{:?}", r.outcome.error))).collect()
}

#[test]
fn t66_a_push_or_gather_over_tcp_is_one_copy_on_the_host_and_a_refused_chunk_binds_nothing() {
    let c = Cluster::start(Kernel::Python, "held", 4, &[]);
    let (address, key) = c.address_and_key();
    let tcp =
        mpx_client::Client::connect_with(&address, key, "held", c.connection_file()).expect("TCP client");
    assert!(!tcp.is_local());
    let all = tcp.view(Targets::All);

    // 8 MB to four engines of one host: the root copies the chunks into one memfd, which every
    // rank maps copy-on-write (the same inode everywhere), instead of an MPI Bcast into four.
    let a = sample(Dtype::F64, &[1 << 20], 66);
    all.push_sync("x", &a, T).unwrap();
    let places = where_held(&all, "x");
    assert!(places[0].ends_with("True)"), "the array lives in a held memfd: {places:?}");
    assert!(places.iter().all(|p| p == &places[0]), "one memfd for every rank: {places:?}");
    for (engine, back) in all.pull_sync("x", T).unwrap().iter().enumerate() {
        assert!(back == &a, "engine {engine}: {}", describe(back));
    }
    // Bools are checked as they stream in, and come back bit-exactly.
    let b = sample(Dtype::Bool, &[5 << 20], 67);
    all.push_sync("b", &b, T).unwrap();
    assert!(all.pull_sync("b", T).unwrap().iter().all(|back| back == &b));

    // A chunk altered after signing: the root refuses the stream, nothing is bound anywhere.
    let mut peer = Peer::connect(&c);
    let other = sample(Dtype::F64, &[1 << 20], 68);
    let step = 1 << 20;
    peer.push_altered(7, "x", &other, step);
    let results = peer.results(7, 4);
    let root = results[0].outcome.error.as_ref().expect("the root refuses the push");
    assert_eq!(root.ename(), "AuthenticationError", "{root:?}");
    assert!(root.evalue().contains("nothing was bound"), "{root:?}");
    for r in &results[1..] {
        let e = r.outcome.error.as_ref().unwrap_or_else(|| panic!("engine {} bound it: {r:?}", r.engine_id));
        assert!(e.evalue().contains("nothing was bound"), "{e:?}");
    }
    assert_eq!(where_held(&all, "x"), places, "x is still the first push's array");

    // A cell writing to the array changes only its own rank's copy.
    all.execute_sync("from mpi4py import MPI\nx[:3] = MPI.COMM_WORLD.rank", T).unwrap();
    for (rank, back) in all.pull_sync("x", T).unwrap().iter().enumerate() {
        let first = f64::from_le_bytes(back.data()[..8].try_into().unwrap());
        assert_eq!(first, rank as f64, "rank {rank} sees its own write only");
        assert_eq!(&back.data()[24..], &a.data()[24..], "rank {rank}: the rest is the pushed array");
    }
    // Once every rank has let an array go, its memfd takes the next push of its size; while one
    // rank holds it (x), it does not.
    all.push_sync("y", &other, T).unwrap();
    let y = where_held(&all, "y");
    all.execute_sync("del y", T).unwrap();
    all.push_sync("y", &a, T).unwrap();
    assert_eq!(where_held(&all, "y"), y, "the idle memfd is taken again");
    assert_ne!(y, places);
    assert!(all.pull_sync("y", T).unwrap().iter().all(|back| back == &a));

    // A scatter over TCP to the ranks of one host: each maps its own rows of one held memfd
    // (no MPI Scatterv); a write stays in its rank. A gather: each rank writes its rows into a
    // held memfd of the root's (no MPI Gatherv), which the root streams back and then keeps.
    let s = sample(Dtype::I32, &[750_000, 2], 69);
    all.scatter_sync("s", &s, T).unwrap();
    let places = where_held(&all, "s");
    let inode = |p: &String| p.split(',').next().map(str::to_owned);
    assert!(places.iter().all(|p| p.ends_with("True)") && inode(p) == inode(&places[0])), "{places:?}");
    for (r, part) in all.pull_sync("s", T).unwrap().iter().enumerate() {
        let n = 750_000 / 4;
        assert!(part == &rows(&s, r * n, (r + 1) * n), "scatter to engine {r}");
    }
    let whole = all.gather_sync("s", T).unwrap();
    assert!(whole == s, "gathered: {} != {}", describe(&whole), describe(&s));
    let size = (6_000_000usize.div_ceil(4096) + 1) * 4096;
    let kept = tcp
        .view(Targets::ids([0]))
        .execute_sync(
            &format!(
                "any('mpx-held' in l and (lambda r: int(r[1], 16) - int(r[0], 16))(l.split()[0].split('-')) \
                 == {size} for l in open('/proc/self/maps'))"
            ),
            T,
        )
        .unwrap();
    assert_eq!(kept[0].outcome.value.as_deref(), Some("True"), "{kept:?}");
    drop(tcp);
    c.stop();
}
