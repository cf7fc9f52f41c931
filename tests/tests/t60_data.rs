//! Data in and out: push/pull/scatter/gather of every dtype and awkward shapes, bit-exact,
//! through MPI collectives (the bytes cross the controller→engine links once).

use std::time::Duration;

use bytes::Bytes;
use mpx_client::{Dtype, RawArray, Targets};
use mpx_tests::{
    arrays::{describe, rows, sample},
    Cluster, Kernel,
};

const T: Duration = Duration::from_secs(120);

/// The dtypes the rhai kernel holds (the others are checked in `t60_wider_dtypes_...`).
const DTYPES: [Dtype; 6] = [Dtype::F64, Dtype::F32, Dtype::I64, Dtype::I32, Dtype::U8, Dtype::Bool];

#[test]
fn t60_every_dtype_and_shape_round_trips_bit_exactly() {
    let c = Cluster::start(Kernel::Rhai, "data", 4, &[]);
    let client = c.client();
    let all = client.view(Targets::All);
    let shapes: [&[usize]; 6] = [&[0], &[1], &[7], &[5, 3], &[4, 0, 2], &[]];
    for (i, dtype) in DTYPES.into_iter().enumerate() {
        for (j, shape) in shapes.iter().enumerate() {
            let a = sample(dtype, shape, (i * 10 + j) as u64);
            all.push_sync("x", &a, T).unwrap();
            let back = all.pull_sync("x", T).unwrap();
            assert_eq!(back.len(), 4);
            for b in &back {
                assert!(b == &a, "push/pull {dtype} {shape:?}: {} != {}", describe(&a), describe(b));
            }
            // The cells see the pushed array too.
            let out = all
                .execute_sync(&format!("dtype(x) == \"{dtype}\" && ndim(x) == {}", shape.len()), T)
                .unwrap();
            assert!(
                out.iter().all(|r| r.outcome.value.as_deref() == Some("true")),
                "{dtype} {shape:?}: {out:?}"
            );
            if shape.is_empty() {
                let err = all.scatter_sync("y", &a, T).unwrap_err().to_string();
                assert!(err.contains("0-d"), "{err}");
                continue;
            }
            all.scatter_sync("y", &a, T).unwrap();
            let parts = all.pull_sync("y", T).unwrap();
            let n = shape[0];
            let mut start = 0;
            for (r, part) in parts.iter().enumerate() {
                let count = n / 4 + usize::from(r < n % 4);
                assert!(part == &rows(&a, start, start + count), "scatter {dtype} {shape:?} to {r}");
                start += count;
            }
            let whole = all.gather_sync("y", T).unwrap();
            assert!(whole == a, "gather {dtype} {shape:?}: {} != {}", describe(&whole), describe(&a));
        }
    }
    wider_dtypes_round_trip_or_are_refused_clearly(&all);
    c.stop();
}

/// The dtypes beyond the rhai kernel's travel bit-exactly where the kernel holds them (the
/// Python kernel); the rhai kernel refuses them with a `TypeError` that says what to do, and
/// goes on working.
fn wider_dtypes_round_trip_or_are_refused_clearly(all: &mpx_client::View<'_>) {
    for (i, dtype) in Dtype::ALL.into_iter().filter(|d| !DTYPES.contains(d)).enumerate() {
        let a = sample(dtype, &[5, 3], 100 + i as u64);
        match all.push_sync("w", &a, T) {
            Ok(()) => {
                for b in all.pull_sync("w", T).unwrap() {
                    assert!(b == a, "push/pull {dtype}: {} != {}", describe(&a), describe(&b));
                }
                all.scatter_sync("ws", &a, T).unwrap();
                assert!(all.gather_sync("ws", T).unwrap() == a, "scatter/gather {dtype}");
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("TypeError") && e.contains(dtype.numpy_name()), "{dtype}: {e}");
                assert!(e.contains("--kernel python"), "{dtype}: {e}");
                let e = all.scatter_sync("ws", &a, T).unwrap_err().to_string();
                assert!(e.contains("TypeError") && e.contains("--kernel python"), "{dtype}: {e}");
            }
        }
    }
    let out = all.execute_sync("allreduce(1, SUM)", T).unwrap();
    assert!(out.iter().all(|r| r.outcome.value.as_deref() == Some("4")), "{out:?}");
}

#[test]
fn t61_scatter_splits_like_ipyparallel_and_subsets_work() {
    let c = Cluster::start(Kernel::Rhai, "split", 4, &[]);
    let client = c.client();
    let all = client.view(Targets::All);
    let a = sample(Dtype::F64, &[10, 2], 1);
    all.scatter_sync("a", &a, T).unwrap();
    let lens: Vec<usize> = all.pull_sync("a", T).unwrap().iter().map(|p| p.shape()[0]).collect();
    assert_eq!(lens, vec![3, 3, 2, 2]);
    // Fewer rows than engines.
    let b = sample(Dtype::I32, &[2], 2);
    all.scatter_sync("b", &b, T).unwrap();
    let lens: Vec<usize> = all.pull_sync("b", T).unwrap().iter().map(|p| p.shape()[0]).collect();
    assert_eq!(lens, vec![1, 1, 0, 0]);
    assert_eq!(all.gather_sync("b", T).unwrap(), b);
    // A range of engines.
    let mid = client.view(1..3);
    mid.push_sync("r", &b, T).unwrap();
    assert_eq!(mid.pull_sync("r", T).unwrap().len(), 2);
    // On a subset: the communicator of exactly engines 1 and 3.
    let sub = client.view(Targets::ids([3, 1]));
    let s = sample(Dtype::U8, &[5, 2], 3);
    sub.scatter_sync("s", &s, T).unwrap();
    let parts = sub.pull_sync("s", T).unwrap();
    assert!(parts[0] == rows(&s, 0, 3) && parts[1] == rows(&s, 3, 5));
    assert_eq!(sub.gather_sync("s", T).unwrap(), s);
    sub.push_sync("p", &s, T).unwrap();
    let err = all.pull_sync("p", T).unwrap_err().to_string();
    assert!(err.contains("[0:") && err.contains("[2:") && err.contains("\"p\""), "{err}");
    // Collectives in cells still work after sub-communicators were made.
    let out = all.execute_sync("allreduce(1, SUM)", T).unwrap();
    assert!(out.iter().all(|r| r.outcome.value.as_deref() == Some("4")), "{out:?}");
    c.stop();
}

#[test]
fn t62_errors_name_the_engine_and_the_variable() {
    let c = Cluster::start(Kernel::Rhai, "dataerr", 4, &[]);
    let client = c.client();
    let all = client.view(Targets::All);
    all.execute_sync("if rank != 2 { let q = zeros(3); }", T).unwrap();
    let err = all.pull_sync("nothere", T).unwrap_err().to_string();
    assert!(err.contains("engine 0") && err.contains("nothere"), "{err}");
    // A gather where one engine lacks the variable fails on all of them, clearly, and no one hangs.
    all.execute_sync("let g = if rank == 2 { \"text\" } else { ones(2) };", T).unwrap();
    let err = all.gather_sync("g", T).unwrap_err().to_string();
    assert!(err.contains("engine 2") && err.contains("\"g\""), "{err}");
    // Mismatched trailing shapes.
    all.execute_sync("let h = zeros([2, rank + 1]);", T).unwrap();
    let err = all.gather_sync("h", T).unwrap_err().to_string();
    assert!(err.contains("shape"), "{err}");
    // The engines are fine afterwards.
    let out = all.execute_sync("allreduce(rank, SUM)", T).unwrap();
    assert!(out.iter().all(|r| r.outcome.value.as_deref() == Some("6")), "{out:?}");
    c.stop();
}

#[test]
fn t63_push_to_four_engines_crosses_the_links_once() {
    let c = Cluster::start(Kernel::Rhai, "links", 4, &[]);
    let a = sample(Dtype::F64, &[1_000_000], 7); // 8 MB
                                                 // On this host the array travels as a memfd: no payload byte crosses a link.
    let local = c.client();
    assert!(local.is_local());
    local.view(Targets::All).push_sync("big", &a, T).unwrap();
    let sent: Vec<u64> = local.info(T).unwrap().engines.iter().map(|e| e.bytes_sent).collect();
    assert_eq!(sent, vec![0, 0, 0, 0], "payload bytes per controller→engine link (memfd)");
    // The TCP path (a client elsewhere): the bytes cross to the root once.
    let (address, key) = c.address_and_key();
    let client = mpx_client::Client::connect_with(&address, key, "links", c.connection_file()).unwrap();
    client.view(Targets::All).push_sync("big", &a, T).unwrap();
    let info = client.info(T).unwrap();
    let sent: Vec<u64> = info.engines.iter().map(|e| e.bytes_sent).collect();
    assert_eq!(sent, vec![8_000_000, 0, 0, 0], "payload bytes per controller→engine link");
    // And every engine has it.
    let out = client.view(Targets::All).execute_sync("len(big)", T).unwrap();
    assert!(out.iter().all(|r| r.outcome.value.as_deref() == Some("1000000")), "{out:?}");
    // Scatter too: one transfer to the root.
    client.view(Targets::All).scatter_sync("part", &a, T).unwrap();
    let sent2: Vec<u64> = client.info(T).unwrap().engines.iter().map(|e| e.bytes_sent).collect();
    assert_eq!(sent2, vec![16_000_000, 0, 0, 0]);
    c.stop();
}

#[test]
fn t64_a_200_mb_array_round_trips() {
    let c = Cluster::start(Kernel::Rhai, "huge", 4, &[]);
    let client = c.client();
    let all = client.view(Targets::All);
    let n = 25_000_000; // 200 MB of f64
    let a: Vec<u8> = (0..n).flat_map(|i| (i as f64 * 0.5 - 3.0).to_le_bytes()).collect();
    let a = RawArray::new(Dtype::F64, vec![n], Bytes::from(a)).unwrap();
    all.push_sync("h", &a, T).unwrap();
    let one = client.view(Targets::ids([3])).pull_sync("h", T).unwrap();
    assert!(one[0] == a);
    all.scatter_sync("hs", &a, T).unwrap();
    assert!(all.gather_sync("hs", T).unwrap() == a);
    // Computing on it in cells works, without copies of the whole thing per call.
    let out = all.execute_sync("allreduce(len(hs), SUM)", T).unwrap();
    assert!(out.iter().all(|r| r.outcome.value.as_deref() == Some(&n.to_string()[..])), "{out:?}");
    c.stop();
}
