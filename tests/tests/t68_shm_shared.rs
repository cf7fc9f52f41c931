//! `push --shared` (issue 24): one read-only copy of an array for all the engines of the host.
//! Every rank maps the same sealed memfd read-only and shared: each sees the same bytes, its
//! numpy array is not writeable (a write is numpy's `ValueError`), and the engines' memory
//! (the sum of their proportional set sizes) grows by about one copy of the array, where an
//! ordinary push that every rank writes to grows by one per rank. Where the same-host path is
//! closed (a TCP client, an engine that is not there) a shared push fails, typed, instead of
//! becoming a copy per engine; `mpx push --shared` does the same from the command line.

use std::time::Duration;

use bytes::Bytes;
use mpx_client::{Client, ClientError, Dtype, EngineId, RawArray, SharedPushError, Targets};
use mpx_tests::{
    memory::{mb, pss},
    stderr, stdout, Cluster, Kernel,
};

const T: Duration = Duration::from_secs(120);

/// What each engine's cell evaluates to.
fn values(client: &Client, code: &str) -> Vec<String> {
    let out = client.view(Targets::All).execute_sync(code, T).expect("cell");
    out.into_iter().map(|r| r.outcome.value.unwrap_or_else(|| format!("{:?}", r.outcome.error))).collect()
}

fn engines_pss(c: &Cluster) -> u64 {
    c.pids.engines.iter().map(|&p| pss(p)).sum()
}

/// `n` float64s 0, 1, 2, ... (their sum is exact in float64 below 2^53).
fn arange(n: usize) -> RawArray {
    let mut data = Vec::with_capacity(n * 8);
    for i in 0..n {
        data.extend_from_slice(&(i as f64).to_le_bytes());
    }
    RawArray::new(Dtype::F64, vec![n], Bytes::from(data)).expect("array")
}

#[test]
fn t68_a_shared_push_is_one_read_only_copy_for_all_ranks() {
    let c = Cluster::start(Kernel::Python, "shm-shared", 4, &[]);
    let client = c.client();
    let all = client.view(Targets::All);
    // 400 MB of float64.
    let n = 50_000_000usize;
    let a = arange(n);
    let size = a.data().len() as u64;
    values(&client, "import hashlib, gc\nimport numpy as np");

    let before = engines_pss(&c);
    all.push_shared_sync("x", &a, T).expect("shared push");
    drop(a);
    // Every rank reads every page (the sum), and sees the same bytes.
    let sum = (n as u64 * (n as u64 - 1) / 2).to_string();
    assert_eq!(values(&client, "int(x.sum())"), vec![sum; 4]);
    let after = engines_pss(&c);
    let grown = after.saturating_sub(before);
    eprintln!("shared push of {:.0} MB to 4 ranks: engines' Pss +{:.0} MB", mb(size), mb(grown));
    assert!(
        grown < size * 3 / 2 && grown > size / 2,
        "4 ranks reading a shared {:.0} MB array grew the engines by {:.0} MB (about one copy expected)",
        mb(size),
        mb(grown)
    );
    let digests = values(&client, "hashlib.blake2b(x.data, digest_size=16).hexdigest()");
    assert!(digests.iter().all(|d| d == &digests[0]), "{digests:?}");
    assert_eq!(
        values(&client, "x.dtype.str, x.shape, x[12345678]"),
        vec![format!("('<f8', ({n},), 12345678.0)"); 4]
    );

    // Read-only: not writeable, a write is numpy's ValueError, the flag cannot be set back, and
    // the mapping is the memfd's, shared and read-only ('r--s').
    assert_eq!(
        values(&client, "x.flags.writeable, type(x.base).__name__"),
        vec!["(False, 'MappedMemory')"; 4]
    );
    let refused = "try:\n    {}\n    why = 'written'\nexcept ValueError as e:\n    why = str(e)\nwhy";
    let writes = values(&client, &refused.replace("{}", "x[0] = 1.0"));
    assert!(writes.iter().all(|w| w.contains("read-only")), "{writes:?}");
    let flags = values(&client, &refused.replace("{}", "x.setflags(write=True)"));
    assert!(flags.iter().all(|w| w.contains("WRITEABLE")), "{flags:?}");
    let perms = "p = x.__array_interface__['data'][0]\n\
                 [l.split()[1] for l in open('/proc/self/maps') \
                 if int(l.split('-')[0], 16) <= p < int(l.split()[0].split('-')[1], 16) and '/memfd:mpx-' in l]";
    assert_eq!(values(&client, perms), vec!["['r--s']"; 4]);
    // A private copy is the user's to write.
    assert_eq!(values(&client, "y = x[:3].copy()\ny[0] = 5\ny.tolist()"), vec!["[5.0, 1.0, 2.0]"; 4]);
    values(&client, "del x, y\ngc.collect()");

    // The contrast: an ordinary push that every rank writes to costs a copy per rank.
    let a = arange(n);
    let before = engines_pss(&c);
    all.push_sync("z", &a, T).expect("push");
    drop(a);
    values(&client, "z += 1.0\nNone");
    let grown = engines_pss(&c).saturating_sub(before);
    eprintln!("ordinary push of {:.0} MB, written by 4 ranks: engines' Pss +{:.0} MB", mb(size), mb(grown));
    assert!(
        grown > size * 3,
        "4 ranks writing a pushed {:.0} MB array grew the engines by only {:.0} MB",
        mb(size),
        mb(grown)
    );
    values(&client, "del z\ngc.collect()");
    c.stop();
}

#[test]
fn t68_a_shared_push_where_the_path_is_closed_fails_and_never_copies() {
    let c = Cluster::start(Kernel::Python, "shm-shared-no", 2, &[]);
    let a = arange(1000);
    // A client over TCP: refused before anything is sent.
    let (address, key) = c.address_and_key();
    let tcp = Client::connect_with(&address, key, "shm-shared-no", c.connection_file()).expect("TCP client");
    let e = tcp.view(Targets::All).push_shared("x", &a).unwrap_err();
    assert!(matches!(e, ClientError::NotShared(SharedPushError::NotLocal)), "{e}");
    assert!(e.to_string().contains("not on the controller's host"), "{e}");
    // A target the client does not know to be on this host.
    let local = c.client();
    let e = local.view(Targets::ids(vec![0, 7])).push_shared("x", &a).unwrap_err();
    assert!(
        matches!(&e, ClientError::NotShared(SharedPushError::EnginesElsewhere(ids)) if ids == &[EngineId(7)]),
        "{e}"
    );
    assert_eq!(values(&local, "'x' in globals()"), vec!["False"; 2]);
    // A small array still goes shared (through a memfd, whatever its size).
    local.view(Targets::All).push_shared_sync("x", &a, T).expect("shared push");
    assert_eq!(values(&local, "x.flags.writeable, float(x[999])"), vec!["(False, 999.0)"; 2]);

    // From the command line.
    let file = c.home.join("s.npy");
    mpx_client::npy::write(&file, &arange(100_000)).expect("npy");
    let out = c.mpx(&["push", "--shared", "s", file.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(values(&local, "s.flags.writeable, float(s[-1])"), vec!["(False, 99999.0)"; 2]);
    let out = c.mpx(&["history"]);
    assert!(stdout(&out).contains("%push --shared s"), "{}", stdout(&out));
    c.stop();
}
