//! The engine's side of the same-host path (issue 24) without MPI or a controller: a pushed
//! memfd is checked before it is mapped, bound without a copy (Python: a numpy array over the
//! mapping, writable copy-on-write, unmapped with the last array) or copied (rhai); a pull
//! gives a sealed memfd. One Python test function, because Python's main thread (the one that
//! handles SIGINT) is the thread that initialised it.

use std::{
    os::fd::{FromRawFd, OwnedFd},
    sync::Arc,
};

use mpx_engine::{
    kernel::{python::PythonKernel, rhai::RhaiKernel, Kernel},
    output::OutputBuffer,
    shm::{
        self,
        Mapped::{CopyOnWrite, Shared},
        ShmError,
    },
};
use mpx_messages::{
    memfd::{
        lent::{self, Lent},
        MemfdError, MemfdWriter, SealedMemfd,
    },
    ArrayMeta, Dtype, EngineId, Fds, Rank,
};

/// Deterministic bytes for a `dtype` array of `n` bytes (0/1 for bool; any bits otherwise,
/// NaN payloads included: the path must keep them exactly).
fn pattern(dtype: Dtype, n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if dtype == Dtype::Bool {
                (x & 1) as u8
            } else {
                (x >> 24) as u8
            }
        })
        .collect()
}

/// A sealed memfd holding `bytes`, and the frame's descriptors that carry it.
fn memfd(name: &str, bytes: &[u8]) -> (SealedMemfd, Fds) {
    let sealed = SealedMemfd::copy_of(name, bytes).expect("memfd");
    let fd = sealed.fd().try_clone_to_owned().expect("dup");
    (sealed, Fds(vec![Arc::new(fd)]))
}

fn meta(dtype: Dtype, shape: &[usize]) -> ArrayMeta {
    ArrayMeta { dtype, shape: shape.to_vec(), buffer: 0, fd: Some(0), lent: None }
}

/// A memfd with no seals at all (what a careless or hostile peer could send).
fn unsealed_memfd(name: &std::ffi::CStr, len: usize) -> OwnedFd {
    // SAFETY: memfd_create with a valid C string; the returned descriptor is checked and then
    // owned by the `OwnedFd`.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    std::fs::File::from(fd.try_clone().expect("dup")).set_len(len as u64).expect("size");
    fd
}

/// The mappings of this process whose file is the memfd `mpx-<name>`.
fn mappings_of(name: &str) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    let needle = format!("/memfd:mpx-{name} ");
    maps.lines().filter(|l| l.contains(&needle) || l.ends_with(&format!("/memfd:mpx-{name}"))).count()
}

#[test]
fn a_pushed_descriptor_is_checked_before_it_is_mapped() {
    let shape = [2usize, 4];
    // 8 f64 = 64 bytes.
    let (_sealed, fds) = memfd("ok", &[0; 64]);
    assert!(shm::map_pushed(&meta(Dtype::F64, &shape), &[Rank(3)], &fds, CopyOnWrite).is_ok());
    // Wrong size: the header says 8 i32 (32 bytes), the memfd holds 64.
    let e = shm::map_pushed(&meta(Dtype::I32, &shape), &[Rank(3)], &fds, CopyOnWrite).unwrap_err();
    assert!(
        matches!(
            e,
            ShmError::Refused { index: 0, source: MemfdError::WrongSize { expected: 32, actual: 64 } }
        ),
        "{e:?}"
    );
    // No descriptor at the header's index, none named at all, a group of several engines.
    let e = shm::map_pushed(
        &ArrayMeta { fd: Some(1), ..meta(Dtype::F64, &shape) },
        &[Rank(0)],
        &fds,
        CopyOnWrite,
    );
    assert!(matches!(e, Err(ShmError::MissingDescriptor { index: 1, count: 1 })), "{e:?}");
    let e =
        shm::map_pushed(&ArrayMeta { fd: None, ..meta(Dtype::F64, &shape) }, &[Rank(0)], &fds, CopyOnWrite);
    assert!(matches!(e, Err(ShmError::NoDescriptor)), "{e:?}");
    let e = shm::map_pushed(&meta(Dtype::F64, &shape), &[Rank(0), Rank(1)], &fds, CopyOnWrite);
    assert!(matches!(e, Err(ShmError::NotOneEngine(2))), "{e:?}");
    // Not a memfd: a regular file, a pipe.
    let file = Fds(vec![Arc::new(OwnedFd::from(std::fs::File::open("/proc/self/status").expect("open")))]);
    let e = shm::map_pushed(&meta(Dtype::U8, &[1]), &[Rank(0)], &file, CopyOnWrite);
    assert!(matches!(e, Err(ShmError::Refused { source: MemfdError::NotMemfd, .. })), "{e:?}");
    let (reader, _writer) = std::io::pipe().expect("pipe");
    let pipe = Fds(vec![Arc::new(OwnedFd::from(reader))]);
    let e = shm::map_pushed(&meta(Dtype::U8, &[1]), &[Rank(0)], &pipe, CopyOnWrite);
    assert!(matches!(e, Err(ShmError::Refused { source: MemfdError::NotMemfd, .. })), "{e:?}");
    // An unsealed memfd of the right size is refused, and never mapped.
    let unsealed = Fds(vec![Arc::new(unsealed_memfd(c"mpx-unsealed-check", 64))]);
    let e = shm::map_pushed(&meta(Dtype::F64, &shape), &[Rank(0)], &unsealed, CopyOnWrite);
    assert!(matches!(e, Err(ShmError::Refused { source: MemfdError::Unsealed(_), .. })), "{e:?}");
    assert_eq!(mappings_of("unsealed-check"), 0);
    // The errors say what is wrong.
    let text = |e: ShmError| e.to_string();
    assert_eq!(
        text(ShmError::Refused { index: 0, source: MemfdError::NotMemfd }),
        "descriptor 0 refused: the descriptor is not a memfd"
    );
}

#[test]
fn a_lent_memfd_is_checked_and_released_to_its_lender_when_its_mapping_goes() {
    let lender = 0x001e_4de4_u64;
    let lent = |token| ArrayMeta { lent: Some(Lent { lender, token }), ..meta(Dtype::F64, &[8]) };
    // Lent memfds need only the resizing seals; the lender keeps writing it until it lends it.
    let mut w = MemfdWriter::create_cold("lent-check", 64).expect("memfd");
    w.seal_size().expect("seals");
    w.bytes().copy_from_slice(&[7; 64]);
    let fds = Fds(vec![w.shared_fd().expect("dup")]);
    let map = shm::map_pushed(&lent(1), &[Rank(0)], &fds, CopyOnWrite).expect("a lent memfd maps");
    assert_eq!(map.as_slice(), &[7; 64]);
    assert!(lent::take_released(lender).is_empty(), "released while mapped");
    drop(map);
    assert_eq!(lent::take_released(lender), vec![1], "released once its mapping is gone");
    // Without the resizing seals (the lender could shrink it under the mapping): refused,
    // never mapped, and released at once.
    let unsealed = Fds(vec![Arc::new(unsealed_memfd(c"mpx-lent-unsealed", 64))]);
    let e = shm::map_pushed(&lent(2), &[Rank(0)], &unsealed, CopyOnWrite).unwrap_err();
    assert!(matches!(e, ShmError::Refused { source: MemfdError::Unsealed(_), .. }), "{e:?}");
    assert_eq!(mappings_of("lent-unsealed"), 0);
    // The wrong size, lent or not.
    let short = ArrayMeta { shape: vec![4], ..lent(3) };
    let e = shm::map_pushed(&short, &[Rank(0)], &fds, CopyOnWrite).unwrap_err();
    assert!(matches!(
        e,
        ShmError::Refused { source: MemfdError::WrongSize { expected: 32, actual: 64 }, .. }
    ));
    assert_eq!(lent::take_released(lender), vec![2, 3]);
}

#[test]
fn rhai_binds_a_pushed_memfd_by_copy() {
    let comm = mpx_cells::local::LocalWorld::new(1).pop().expect("one rank");
    let mut k = RhaiKernel::new(Box::new(comm), mpx_cells::Registry::new());
    for (i, dtype) in Dtype::ALL.into_iter().enumerate() {
        let shape = [3usize, 5];
        if k.new_array(dtype, &shape).is_err() {
            continue; // a dtype rhai does not hold: refused alike by both paths
        }
        let bytes = pattern(dtype, 15 * dtype.item_size(), i as u64 + 1);
        let (_sealed, fds) = memfd(&format!("rhai-{}", dtype.name()), &bytes);
        shm::push(&mut k, "a", &meta(dtype, &shape), &[Rank(0)], &fds, CopyOnWrite).expect("pushed");
        let back = k.array("a").expect("bound");
        assert_eq!((back.dtype(), back.shape()), (dtype, &shape[..]));
        assert_eq!(back.bytes(), &bytes[..], "{dtype}");
        // Shared: rhai's arrays own their memory, so it copies too.
        shm::push(&mut k, "s", &meta(dtype, &shape), &[Rank(0)], &fds, Shared).expect("pushed");
        assert_eq!(k.array("s").expect("bound").bytes(), &bytes[..], "{dtype}");
    }
}

#[test]
fn python_binds_a_pushed_memfd_in_place_and_pulls_into_one() {
    // Small arrays too (they stay inline in replies by default): before anything reads it.
    std::env::set_var("MPX_SHM_MIN_BYTES", "0");
    // mpi4py is imported by the kernel's setup; keep it from initialising MPI in this process.
    std::env::set_var("MPI4PY_RC_INITIALIZE", "false");
    let output = Arc::new(OutputBuffer::default());
    let mut k = PythonKernel::new(0, 1, &[], output.clone()).expect("python starts");
    output.begin(mpx_messages::TaskId(1));
    let value = |k: &mut PythonKernel, code: &str| {
        let out = k.execute(code, None);
        assert!(out.error.is_none(), "{code}: {:?}", out.error);
        out.value.unwrap_or_default()
    };
    k.execute(
        "import numpy as np\n\
         def mapped_file(a):\n    \
             p = a.__array_interface__['data'][0]\n    \
             for line in open('/proc/self/maps'):\n        \
                 lo, hi = (int(x, 16) for x in line.split()[0].split('-'))\n        \
                 if lo <= p < hi:\n            \
                     return line.split(None, 5)[5].strip() if len(line.split()) > 5 else ''\n\
         def perms(a):\n    \
             p = a.__array_interface__['data'][0]\n    \
             for line in open('/proc/self/maps'):\n        \
                 lo, hi = (int(x, 16) for x in line.split()[0].split('-'))\n        \
                 if lo <= p < hi:\n            \
                     return line.split()[1]\n",
        None,
    );

    // Every dtype, bit-exact, over the mapping itself (no copy), writable, C-contiguous.
    for (i, dtype) in Dtype::ALL.into_iter().enumerate() {
        let shape = [3usize, 5, 7];
        let bytes = pattern(dtype, 105 * dtype.item_size(), i as u64 + 1);
        let name = format!("py-{}", dtype.name());
        let (_sealed, fds) = memfd(&name, &bytes);
        shm::push(&mut k, "a", &meta(dtype, &shape), &[Rank(0)], &fds, CopyOnWrite).expect("pushed");
        let back = k.array("a").expect("bound");
        assert_eq!((back.dtype(), back.shape()), (dtype, &shape[..]));
        assert_eq!(back.bytes(), &bytes[..], "{dtype}");
        drop(back);
        assert_eq!(
            value(&mut k, "a.dtype.str, a.shape, a.flags.writeable, a.flags.c_contiguous, a.flags.aligned, a.flags.owndata, type(a.base).__name__"),
            format!("('{}', (3, 5, 7), True, True, True, False, 'MappedMemory')", dtype.numpy_str())
        );
        assert!(
            value(&mut k, "mapped_file(a)").contains(&format!("/memfd:mpx-{name}")),
            "{dtype}: not in place"
        );
        // Python's own view of the bytes agrees.
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(value(&mut k, "a.tobytes().hex()"), format!("'{hex}'"), "{dtype}");
    }
    k.execute("del a", None);

    // A cell's write changes the array, only in this process: the memfd keeps its bytes.
    let bytes: Vec<u8> = [1.5f64, 2.5, 3.5, 4.5].map(f64::to_le_bytes).concat();
    let (sealed, fds) = memfd("cow", &bytes);
    shm::push(&mut k, "w", &meta(Dtype::F64, &[4]), &[Rank(0)], &fds, CopyOnWrite).expect("pushed");
    drop(fds);
    assert_eq!(value(&mut k, "w[1] = -7.0\nw *= 2\nw.tolist()"), "[3.0, -14.0, 7.0, 9.0]");
    assert_eq!(&k.array("w").expect("bound").bytes()[8..16], &(-14f64).to_le_bytes());
    assert_eq!(sealed.map_shared().expect("another mapping").as_slice(), &bytes[..]);
    // A view keeps the mapping alive; the last array gone, it is unmapped.
    assert_eq!(mappings_of("cow"), 1);
    value(&mut k, "v = w[2:]\ndel w");
    assert_eq!(mappings_of("cow"), 1);
    assert_eq!(value(&mut k, "v.tolist()"), "[7.0, 9.0]");
    value(&mut k, "del v\nimport gc\ngc.collect()");
    assert_eq!(mappings_of("cow"), 0, "unmapped with the last array");

    // Shared (push --shared): a read-only MAP_SHARED mapping of the memfd, not writeable (a
    // cell's write is numpy's ValueError), and numpy will not turn the flag back on.
    let (_sealed, fds) = memfd("ro", &bytes);
    shm::push(&mut k, "s", &meta(Dtype::F64, &[4]), &[Rank(0)], &fds, Shared).expect("pushed");
    assert_eq!(value(&mut k, "s.flags.writeable, s.tolist()"), "(False, [1.5, 2.5, 3.5, 4.5])");
    assert_eq!(value(&mut k, "perms(s)"), "'r--s'");
    let refused = "try:\n    {}\n    why = 'written'\nexcept ValueError as e:\n    why = str(e)\nwhy";
    let write = value(&mut k, &refused.replace("{}", "s[0] = 1.0"));
    assert!(write.contains("read-only"), "{write}");
    let flag = value(&mut k, &refused.replace("{}", "s.setflags(write=True)"));
    assert!(flag.contains("cannot set WRITEABLE"), "{flag}");
    assert_eq!(value(&mut k, "s.tolist()"), "[1.5, 2.5, 3.5, 4.5]");
    let (_s, fds) = memfd("ro-empty", &[]);
    shm::push(&mut k, "se", &meta(Dtype::F64, &[0]), &[Rank(0)], &fds, Shared).expect("empty");
    assert_eq!(value(&mut k, "se.flags.writeable"), "False");
    value(&mut k, "del s, se, why");

    // Empty arrays and bad bools.
    let (_s, fds) = memfd("empty", &[]);
    shm::push(&mut k, "e", &meta(Dtype::I32, &[0, 3]), &[Rank(0)], &fds, CopyOnWrite).expect("empty");
    assert_eq!(value(&mut k, "e.shape, e.dtype.str"), "((0, 3), '<i4')");
    let (_s, fds) = memfd("bool", &[0, 1, 2]);
    let e = shm::push(&mut k, "b", &meta(Dtype::Bool, &[3]), &[Rank(0)], &fds, CopyOnWrite).unwrap_err();
    assert_eq!(e.ename, "ValueError");
    assert_eq!(k.array("b").err().map(|e| e.ename), Some("NameError".into()), "nothing bound");

    // Refused descriptors: a clear error, nothing bound, nothing mapped.
    let (_s, fds) = memfd("small", &[0; 24]);
    let e = shm::push(&mut k, "r", &meta(Dtype::F64, &[4]), &[Rank(0)], &fds, CopyOnWrite).unwrap_err();
    assert_eq!(e.ename, shm::ENAME);
    assert!(e.evalue.contains("holds 24 bytes, the header says 32"), "{}", e.evalue);
    let file = Fds(vec![Arc::new(OwnedFd::from(std::fs::File::open("/proc/self/status").expect("open")))]);
    let e = shm::push(&mut k, "r", &meta(Dtype::U8, &[1]), &[Rank(0)], &file, CopyOnWrite).unwrap_err();
    assert!(e.evalue.contains("not a memfd") && e.evalue.contains("\"r\""), "{}", e.evalue);
    let unsealed = Fds(vec![Arc::new(unsealed_memfd(c"mpx-unsealed-push", 32))]);
    let e = shm::push(&mut k, "r", &meta(Dtype::F64, &[4]), &[Rank(0)], &unsealed, CopyOnWrite).unwrap_err();
    assert!(e.evalue.contains("not sealed"), "{}", e.evalue);
    assert_eq!(mappings_of("unsealed-push"), 0);
    let e = shm::push(&mut k, "r", &meta(Dtype::F64, &[4]), &[Rank(0)], &Fds::default(), CopyOnWrite)
        .unwrap_err();
    assert!(e.evalue.contains("names descriptor 0, but its frame carries 0"), "{}", e.evalue);
    assert_eq!(k.array("r").err().map(|e| e.ename), Some("NameError".into()), "nothing bound");

    // Pull: a sealed memfd of exactly the array's bytes, descriptor 0 of the reply.
    value(&mut k, "p = np.arange(12, dtype='<i2').reshape(3, 4)[::-1]");
    let (m, fds) = shm::pull(&mut k, EngineId(2), "p", None).expect("pulled").expect("memfds exist here");
    assert_eq!(m, ArrayMeta { dtype: Dtype::I16, shape: vec![3, 4], buffer: 0, fd: Some(0), lent: None });
    assert_eq!(fds.len(), 1);
    let got = SealedMemfd::check(fds.0[0].try_clone().expect("dup"), 24).expect("sealed, 24 bytes");
    let want: Vec<u8> = [8i16, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3].map(i16::to_le_bytes).concat();
    assert_eq!(got.map_shared().expect("map").as_slice(), &want[..]);
    value(&mut k, "z = np.zeros((0, 3))");
    let (m, fds) = shm::pull(&mut k, EngineId(2), "z", None).expect("pulled").expect("memfds exist here");
    assert_eq!((m.shape, m.fd), (vec![0, 3], Some(0)));
    SealedMemfd::check(fds.0[0].try_clone().expect("dup"), 0).expect("sealed, empty");
    let e = shm::pull(&mut k, EngineId(2), "nope", None).unwrap_err();
    assert_eq!(e.ename, "NameError");
    assert!(e.evalue.contains("engine 2"), "{}", e.evalue);
}
