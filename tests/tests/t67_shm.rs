//! Arrays through shared memory on one host (issue 24): a client on the controller's host
//! pushes to engines there through a sealed memfd that each maps copy-on-write, scatters
//! through one memfd of which each maps its rows, and pulls (or gathers) an engine's array as
//! a memfd it maps; the same moves from a TCP client take the TCP path.
//! Both are bit-exact for every dtype; a cell that writes to a pushed array changes only its
//! own copy; a descriptor that is not a sealed memfd of the right size is refused before
//! anything is mapped.

use std::{io::Write, os::unix::net::UnixStream, sync::Arc, time::Duration};

use mpx_client::{Client, Dtype, Targets};
use mpx_messages::{
    codec::{blocking, fds::FdInbox},
    memfd::SealedMemfd,
    ArrayMeta, ClientToController, ControllerToClient, Fds, Frame, Request, SubmitRequest,
};
use mpx_tests::{
    arrays::{rows, sample},
    Cluster, Kernel,
};

const T: Duration = Duration::from_secs(120);

/// Lines of this process's memory map that are memfds mpx made.
fn memfd_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps").unwrap().lines().filter(|l| l.contains("/memfd:mpx-")).count()
}

/// What each engine's cell evaluates to.
fn values(client: &Client, code: &str) -> Vec<String> {
    let out = client.view(Targets::All).execute_sync(code, T).expect("cell");
    out.into_iter().map(|r| r.outcome.value.unwrap_or_else(|| format!("{:?}", r.outcome.error))).collect()
}

#[test]
fn t67_every_dtype_moves_bit_exactly_through_memfds_and_over_tcp() {
    let c = Cluster::start(Kernel::Python, "shm", 4, &[]);
    let local = c.client();
    assert!(local.is_local());
    let (address, key) = c.address_and_key();
    let tcp = Client::connect_with(&address, key, "shm", c.connection_file()).expect("TCP client");
    assert!(!tcp.is_local());
    let dtypes = [
        Dtype::Bool,
        Dtype::I8,
        Dtype::I16,
        Dtype::I32,
        Dtype::I64,
        Dtype::U8,
        Dtype::U16,
        Dtype::U32,
        Dtype::U64,
        Dtype::F32,
        Dtype::F64,
        Dtype::C64,
        Dtype::C128,
    ];
    for (i, dtype) in dtypes.into_iter().enumerate() {
        // 100,000 elements: above the size under which arrays stay inline in their frames.
        let a = sample(dtype, &[250, 400], 67 + i as u64);
        for (client, shared) in [(&local, true), (&tcp, false)] {
            let all = client.view(Targets::All);
            all.push_sync("x", &a, T).unwrap();
            let mapped = values(client, "open('/proc/self/maps').read().count('/memfd:mpx-') > 0");
            assert_eq!(mapped, vec![shared.to_string().replace('t', "T").replace('f', "F"); 4], "{dtype}");
            let before = memfd_mappings();
            let back = all.pull_sync("x", T).unwrap();
            assert_eq!(back.len(), 4);
            for b in &back {
                assert!(b == &a, "{dtype} through {}", if shared { "memfds" } else { "TCP" });
            }
            // Pulled through memfds: the arrays are the mappings (one per engine).
            assert_eq!(memfd_mappings() - before, if shared { 4 } else { 0 }, "{dtype}");
            drop(back);
            values(client, "del x");
            // Scatter: each engine maps its own rows of one memfd; gather: the lowest engine
            // gathers into a memfd the client maps.
            all.scatter_sync("s", &a, T).unwrap();
            let mapped = values(client, "open('/proc/self/maps').read().count('/memfd:mpx-') > 0");
            assert_eq!(mapped, vec![shared.to_string().replace('t', "T").replace('f', "F"); 4], "{dtype}");
            let parts = all.pull_sync("s", T).unwrap();
            let mut from = 0;
            for (part, n) in parts.iter().zip([63, 63, 62, 62]) {
                assert!(part == &rows(&a, from, from + n), "{dtype}: rows {from}.. of a scatter");
                from += n;
            }
            drop(parts);
            let before = memfd_mappings();
            let whole = all.gather_sync("s", T).unwrap();
            assert!(whole == a, "{dtype}: gathered through {}", if shared { "a memfd" } else { "TCP" });
            assert_eq!(memfd_mappings() - before, usize::from(shared), "{dtype}");
            drop(whole);
            values(client, "del s");
        }
    }
    drop(tcp);
    drop(local);
    c.stop();
}

#[test]
fn t67_a_cell_writing_a_pushed_array_changes_only_its_own_copy() {
    let c = Cluster::start(Kernel::Python, "shm-cow", 4, &[]);
    let client = c.client();
    let all = client.view(Targets::All);
    let a = sample(Dtype::F64, &[100_000], 7);
    all.push_sync("x", &a, T).unwrap();
    values(&client, "from mpi4py import MPI\nx[:3] = MPI.COMM_WORLD.rank");
    let back = all.pull_sync("x", T).unwrap();
    for (rank, b) in back.iter().enumerate() {
        let first = f64::from_le_bytes(b.data()[..8].try_into().unwrap());
        assert_eq!(first, rank as f64, "rank {rank} sees its own write only");
        assert_eq!(&b.data()[24..], &a.data()[24..], "the rest is the pushed array");
    }
    // The array is writable numpy memory over the mapping (not a copy).
    assert_eq!(values(&client, "type(x.base).__name__"), vec!["'MappedMemory'"; 4]);
    c.stop();
}

#[test]
fn t67_arrays_over_tcp_land_in_warm_memfds_that_an_engine_reuses_only_once_freed() {
    let c = Cluster::start(Kernel::Python, "tcp-warm", 4, &[]);
    let (address, key) = c.address_and_key();
    let tcp = Client::connect_with(&address, key, "tcp-warm", c.connection_file()).expect("TCP client");
    assert!(!tcp.is_local());
    let all = tcp.view(Targets::All);
    // Which memfd (inode) holds an array's bytes in the engine, if one does.
    values(
        &tcp,
        "def inode(a):\n    at = a.ctypes.data\n    for l in open('/proc/self/maps'):\n        \
         f = l.split()\n        lo, hi = (int(v, 16) for v in f[0].split('-'))\n        \
         if lo <= at < hi:\n            return f[4] if 'memfd:' in l else None",
    );
    let push = |v: f64| {
        let bytes: Vec<u8> = std::iter::repeat_n(v.to_le_bytes(), 1 << 20).flatten().collect();
        let a = mpx_client::RawArray::new(Dtype::F64, vec![1 << 20], bytes.into()).unwrap();
        all.push_sync("x", &a, T).unwrap();
        values(&tcp, "inode(x)")
    };
    let first = push(1.0);
    assert!(first.iter().all(|i| i != "None"), "8 MB over TCP lands in a memfd: {first:?}");
    values(&tcp, "y = x");
    let second = push(2.0);
    let third = push(3.0);
    let fourth = push(4.0);
    for e in 0..4 {
        let seen = [&first[e], &second[e], &third[e]];
        assert!(seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2], "engine {e}: {seen:?}");
    }
    assert_eq!(fourth, second, "the memfd of the array every engine freed is reused");
    let sums = values(&tcp, "(float(y.min()), float(y.max()), float(x.min()), float(x.max()))");
    assert_eq!(sums, vec!["(1.0, 1.0, 4.0, 4.0)"; 4], "the array kept as y kept its bytes");
    // Pulled over TCP (streamed in chunks), an array lands in this process's warm memfd too:
    // the same memory again once the first array is dropped, other memory while it lives.
    let e0 = tcp.view(Targets::ids([0]));
    let first = e0.pull_sync("x", T).unwrap().remove(0);
    let at = first.data().as_ptr() as usize;
    let second = e0.pull_sync("y", T).unwrap().remove(0);
    let second_at = second.data().as_ptr() as usize;
    assert_ne!(second_at, at);
    assert!(first.data().chunks_exact(8).all(|v| v == 4.0f64.to_le_bytes()));
    assert!(second.data().chunks_exact(8).all(|v| v == 1.0f64.to_le_bytes()));
    drop((first, second));
    let again = e0.pull_sync("x", T).unwrap().remove(0);
    // The newest idle memfd (the second array's) stays mapped, so only a reuse has its address.
    assert_eq!(again.data().as_ptr() as usize, second_at, "the idle warm memfd was not reused");
    assert!(again.data().chunks_exact(8).all(|v| v == 4.0f64.to_le_bytes()));
    assert!(memfd_mappings() >= 1, "the pulled array is a memfd mapping");
    drop(tcp);
    c.stop();
}

/// Sends a push whose array is said to be in descriptor 0, passing `fd`, through a raw session
/// on the Unix socket; returns the engines' errors.
fn push_with(c: &Cluster, fd: Arc<std::os::fd::OwnedFd>, bytes: usize) -> Vec<String> {
    let info = mpx_messages::connection::read_connection_file(&c.connection_file()).unwrap();
    let (_, key) = c.address_and_key();
    let mut sock = UnixStream::connect(info.unix.unwrap()).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let session = blocking::connect(&mut sock, &key).unwrap();
    let (mut sealer, mut opener) = (session.sealer, session.opener);
    let array = ArrayMeta { dtype: Dtype::U8, shape: vec![bytes], buffer: 0, fd: Some(0), lent: None };
    let request = Request::Push { name: "bad".into(), array, shared: false };
    let submit = SubmitRequest {
        req_id: mpx_messages::RequestId(1),
        targets: Targets::All,
        request,
        source: None,
        internal: false,
    };
    let frame = Frame::new(ClientToController::SubmitRequest(submit)).with_fds(Fds(vec![fd]));
    blocking::write_frame_unix(&sock, &mut sealer, &frame).unwrap();
    sock.flush().unwrap();
    let inbox = FdInbox::default();
    let mut reader = mpx_messages::codec::fds::FdReader::new(sock.try_clone().unwrap(), inbox.clone());
    let mut errors = Vec::new();
    while errors.len() < 4 {
        let frame =
            blocking::read_frame_fds::<ControllerToClient>(&mut reader, &mut opener, 1 << 20, Some(&inbox))
                .unwrap()
                .expect("a reply");
        match frame.header {
            ControllerToClient::EngineReply(r) => {
                errors.push(r.outcome.error.map(|e| e.to_string()).unwrap_or_else(|| "no error".into()))
            }
            ControllerToClient::SubmitReply(r) if r.error.is_some() => {
                return vec![r.error.unwrap().to_string()];
            }
            _ => {}
        }
    }
    errors
}

#[test]
fn t67_a_descriptor_that_is_not_a_sealed_memfd_of_the_right_size_is_refused() {
    let c = Cluster::start(Kernel::Python, "shm-bad", 4, &[]);
    // A regular file: not a memfd.
    let file: std::os::fd::OwnedFd = std::fs::File::open("/proc/self/status").unwrap().into();
    let errors = push_with(&c, Arc::new(file), 16);
    assert!(errors.iter().all(|e| e.contains("not a memfd")), "{errors:?}");
    // A sealed memfd of 10 bytes for an array of 16.
    let small = SealedMemfd::copy_of("t", &[1; 10]).unwrap();
    let errors = push_with(&c, small.shared_fd(), 16);
    assert!(errors.iter().all(|e| e.contains("10 bytes") && e.contains("16")), "{errors:?}");
    // Nothing was bound, and the engines go on.
    let client = c.client();
    assert_eq!(values(&client, "'bad' in globals()"), vec!["False"; 4]);
    c.stop();
}
