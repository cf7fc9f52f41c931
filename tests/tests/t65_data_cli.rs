//! `mpx push/pull/scatter/gather` with `.npy` files, and dtypes mpx cannot carry or the
//! kernel cannot hold.

use std::sync::Arc;

use mpx_cells::ArrayValue;
use mpx_client::{npy, RawArray};
use mpx_tests::{out_values, stderr, stdout, Cluster, Kernel};
use ndarray::{ArrayD, IxDyn};

/// A version 1.0 `.npy` file with this header dict and data.
fn npy_file(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut bad = b"\x93NUMPY\x01\x00".to_vec();
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    bad.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bad.extend_from_slice(header.as_bytes());
    bad.extend_from_slice(data);
    bad
}

#[test]
fn t65_npy_files_through_the_cli() {
    let c = Cluster::start(Kernel::Rhai, "datacli", 4, &[]);
    let dir = c.home.join("npy");
    std::fs::create_dir_all(&dir).unwrap();
    let a =
        ArrayValue::I32(Arc::new(ArrayD::from_shape_fn(IxDyn(&[10, 3]), |i| (i[0] * 3 + i[1]) as i32 - 7)));
    let a = RawArray::from(&a);
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
    assert_eq!(npy::read(&gathered).unwrap(), a);

    ok(&["push", "--targets", "1,2", "b", src.to_str().unwrap()]);
    let pulled = dir.join("p.npy");
    let text = ok(&["pull", "--targets", "1,2", "b", "--out", pulled.to_str().unwrap()]);
    assert!(text.contains("p.1.npy") && text.contains("p.2.npy"), "{text}");
    for id in [1, 2] {
        let back = npy::read(&npy::per_engine_path(&pulled, mpx_client::EngineId(id))).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.shape(), &[10, 3]);
    }
    // Scattered rows are visible to cells: 10 rows over 4 engines -> 3,3,2,2.
    let text = ok(&["px", "shape(a)[0]"]);
    let rows: Vec<(u32, String)> =
        [(0, "3"), (1, "3"), (2, "2"), (3, "2")].map(|(i, v)| (i, v.to_string())).into();
    assert_eq!(out_values(&text), rows, "{text}");

    // A float16 .npy: a dtype mpx does not carry, refused clearly before anything is sent.
    let badf = dir.join("f16.npy");
    std::fs::write(&badf, npy_file("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", &[0; 4]))
        .unwrap();
    let out = c.mpx(&["push", "x", badf.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("'<f2' is not supported") && stderr(&out).contains("f16.npy"),
        "{}",
        stderr(&out)
    );
    // An int16 .npy travels; a kernel that holds int16 (Python) binds it and it comes back
    // bit-exactly, the rhai kernel refuses it with a TypeError saying what to do.
    let i16f = dir.join("i16.npy");
    std::fs::write(
        &i16f,
        npy_file("{'descr': '<i2', 'fortran_order': False, 'shape': (2,), }", &[1, 0, 2, 0]),
    )
    .unwrap();
    let out = c.mpx(&["push", "--targets", "0", "s", i16f.to_str().unwrap()]);
    if out.status.success() {
        let back = dir.join("s.npy");
        ok(&["pull", "--targets", "0", "s", "--out", back.to_str().unwrap()]);
        assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&i16f).unwrap());
    } else {
        let text = stdout(&out);
        assert!(
            text.contains("TypeError") && text.contains("int16") && text.contains("--kernel python"),
            "{text}"
        );
    }
    // Pulling a missing variable names the engine and the variable.
    let out = c.mpx(&["pull", "--targets", "3", "nope", "--out", dir.join("n.npy").to_str().unwrap()]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(text.contains("[3:error]") && text.contains("engine 3") && text.contains("nope"), "{text}");
    c.stop();
}
