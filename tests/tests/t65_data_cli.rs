//! `mpx push/pull/scatter/gather` with `.npy` files, and a dtype mpx cannot hold.

use std::sync::Arc;

use mpx_cells::raw::to_bytes;
use mpx_client::{npy, ArrayValue};
use mpx_tests::{stderr, stdout, Cluster, Kernel};
use ndarray::{ArrayD, IxDyn};

#[test]
fn t65_npy_files_through_the_cli() {
    let c = Cluster::start(Kernel::Rhai, "datacli", 4, &[]);
    let dir = c.home.join("npy");
    std::fs::create_dir_all(&dir).unwrap();
    let a =
        ArrayValue::I32(Arc::new(ArrayD::from_shape_fn(IxDyn(&[10, 3]), |i| (i[0] * 3 + i[1]) as i32 - 7)));
    let src = dir.join("a.npy");
    npy::write(&src, &a).unwrap();

    let ok = |args: &[&str]| {
        let out = c.mpx(args);
        assert!(out.status.success(), "{args:?}: {}{}", stdout(&out), stderr(&out));
        stdout(&out)
    };
    ok(&["scatter", "a", src.to_str().unwrap()]);
    let gathered = dir.join("g.npy");
    ok(&["gather", "a", "--out", gathered.to_str().unwrap()]);
    assert_eq!(to_bytes(&npy::read(&gathered).unwrap()), to_bytes(&a));

    ok(&["push", "--targets", "1,2", "b", src.to_str().unwrap()]);
    let pulled = dir.join("p.npy");
    let text = ok(&["pull", "--targets", "1,2", "b", "--out", pulled.to_str().unwrap()]);
    assert!(text.contains("p.1.npy") && text.contains("p.2.npy"), "{text}");
    for id in [1, 2] {
        let back = npy::read(&npy::per_engine_path(&pulled, id)).unwrap();
        assert_eq!(to_bytes(&back), to_bytes(&a));
        assert_eq!(back.shape(), &[10, 3]);
    }
    // Scattered rows are visible to cells: 10 rows over 4 engines -> 3,3,2,2.
    let text = ok(&["px", "shape(a)[0]"]);
    assert!(text.contains("Out[0]: 3") && text.contains("Out[3]: 2"), "{text}");

    // An int16 .npy: a dtype mpx cannot hold, refused clearly before anything is sent.
    let mut bad = b"\x93NUMPY\x01\x00".to_vec();
    let mut header = "{'descr': '<i2', 'fortran_order': False, 'shape': (2,), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    bad.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bad.extend_from_slice(header.as_bytes());
    bad.extend_from_slice(&[1, 0, 2, 0]);
    let badf = dir.join("i16.npy");
    std::fs::write(&badf, bad).unwrap();
    let out = c.mpx(&["push", "x", badf.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not supported"), "{}", stderr(&out));
    // Pulling a missing variable names the engine and the variable.
    let out = c.mpx(&["pull", "--targets", "3", "nope", "--out", dir.join("n.npy").to_str().unwrap()]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(text.contains("[3:error]") && text.contains("engine 3") && text.contains("nope"), "{text}");
    c.stop();
}
