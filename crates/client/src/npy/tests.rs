//! `.npy` files written by numpy, read here; and files written here, loaded by numpy.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use mpx_messages::Dtype;

use super::*;

const PYTHON: &str = "/usr/bin/python3";

/// A fresh directory for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpx-npy-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a Python script with numpy in `dir`; `None` (with a note) when python3 or numpy is missing.
fn python(dir: &Path, script: &str) -> Option<String> {
    let out = match Command::new(PYTHON).arg("-c").arg(script).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) => {
            println!("note: skipping the numpy part of this test: cannot run {PYTHON}: {e}");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'numpy'") {
        println!("note: skipping the numpy part of this test: python3 has no numpy");
        return None;
    }
    assert!(out.status.success(), "python failed: {stderr}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Saves, for every dtype and shape, `<dtype>_<k>.npy` and its C-order bytes `<dtype>_<k>.bin`.
const MAKE: &str = r#"
import numpy as np
shapes = [(), (0,), (5,), (2, 3), (2, 0, 3), (3, 2, 2)]
for name in ['f8', 'f4', 'i8', 'i4', 'u1', 'b1', 'i1', 'i2', 'u2', 'u4', 'u8', 'c8', 'c16']:
    for k, shape in enumerate(shapes):
        n = int(np.prod(shape))
        x = np.arange(n, dtype=np.int64) * 37 - 50
        if name == 'b1':
            a = (x % 3 == 0)
        elif name[0] == 'f':
            a = x.astype(name) / 7
            a[::4] = [np.nan, -0.0, np.inf, -1e30][: len(a[::4])] if n > 4 else a[::4]
        elif name[0] == 'c':
            a = (x / 7 + 1j * (x[::-1] / 3)).astype(name)
        else:
            a = x.astype(name)
        a = a.reshape(shape)
        np.save(f'{name}_{k}.npy', a)
        open(f'{name}_{k}.bin', 'wb').write(a.tobytes(order='C'))
        print(f'{name}_{k}', a.dtype.str, a.shape)
"#;

#[test]
fn numpy_files_of_every_dtype_and_shape_read_bit_exactly_and_round_trip() {
    let dir = scratch("every");
    let Some(listing) = python(&dir, MAKE) else { return };
    let mut seen = std::collections::HashSet::new();
    for line in listing.lines() {
        let (stem, rest) = line.split_once(' ').unwrap();
        let (descr, _) = rest.split_once(' ').unwrap();
        let a = read(&dir.join(format!("{stem}.npy"))).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let expected = std::fs::read(dir.join(format!("{stem}.bin"))).unwrap();
        assert_eq!(a.dtype(), Dtype::parse(descr).unwrap(), "{stem}");
        assert_eq!(a.dtype().numpy_str(), descr, "{stem}");
        assert_eq!(&a.data()[..], &expected[..], "{stem}");
        assert_eq!(a.len() * a.dtype().item_size(), expected.len(), "{stem}");
        seen.insert(a.dtype());
        // Same result from memory, without copying the data.
        let file = Bytes::from(std::fs::read(dir.join(format!("{stem}.npy"))).unwrap());
        let b = from_bytes(file.clone()).unwrap();
        assert_eq!(b, a);
        assert_eq!(b.data().as_ptr(), file[file.len() - b.data().len()..].as_ptr());
        // Write it back for numpy to compare.
        write(&dir.join(format!("{stem}.out.npy")), &a).unwrap();
        assert_eq!(std::fs::read(dir.join(format!("{stem}.out.npy"))).unwrap(), to_bytes(&a));
    }
    assert_eq!(seen.len(), Dtype::ALL.len(), "not every dtype was tried");
    let shapes = ["()", "(0,)", "(5,)", "(2, 3)", "(2, 0, 3)", "(3, 2, 2)"];
    assert!(shapes.iter().all(|s| listing.contains(&format!(" {s}\n"))), "{listing}");
    let check = r#"
import glob, numpy as np
n = 0
for f in sorted(glob.glob('*.out.npy')):
    a, b = np.load(f), np.load(f.replace('.out', ''))
    assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), f
    assert a.flags['C_CONTIGUOUS'], f
    n += 1
print(n)
"#;
    let n: usize = python(&dir, check).unwrap().trim().parse().unwrap();
    assert_eq!(n, listing.lines().count());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fortran_order_files_are_reordered_to_c_order() {
    let dir = scratch("fortran");
    let script = r#"
import numpy as np
a = np.asfortranarray((np.arange(24) * 1.5 + 1j * np.arange(24)).reshape(2, 3, 4))
np.save('f.npy', a)
np.save('t.npy', np.arange(6, dtype=np.int16).reshape(2, 3).T)
open('f.bin', 'wb').write(a.tobytes(order='C'))
open('t.bin', 'wb').write(np.arange(6, dtype=np.int16).reshape(2, 3).T.tobytes(order='C'))
"#;
    let Some(_) = python(&dir, script) else { return };
    for (name, dtype, shape) in [("f", Dtype::C128, vec![2, 3, 4]), ("t", Dtype::I16, vec![3, 2])] {
        let text = std::fs::read(dir.join(format!("{name}.npy"))).unwrap();
        assert!(String::from_utf8_lossy(&text).contains("'fortran_order': True"));
        let a = read(&dir.join(format!("{name}.npy"))).unwrap();
        assert_eq!((a.dtype(), a.shape()), (dtype, &shape[..]));
        assert_eq!(&a.data()[..], &std::fs::read(dir.join(format!("{name}.bin"))).unwrap()[..]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A version 1.0 file with this header dict and data.
fn npy_file(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn a_header_claiming_a_huge_array_is_refused_before_allocating() {
    let dir = scratch("huge");
    let path = dir.join("huge.npy");
    // 10^12 float64 elements: 8 TB, in a 96-byte file.
    std::fs::write(
        &path,
        npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }", &[0; 16]),
    )
    .unwrap();
    let e = read(&path).unwrap_err().to_string();
    assert!(e.contains("8000000000000 bytes") && e.contains("16 data bytes"), "{e}");
    assert!(e.contains("huge.npy"), "{e}");
    // A shape whose byte count overflows usize.
    std::fs::write(
        &path,
        npy_file("{'descr': '<c16', 'fortran_order': False, 'shape': (4611686018427387904, 8), }", &[]),
    )
    .unwrap();
    let e = read(&path).unwrap_err().to_string();
    assert!(e.contains("too large"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_files_give_clear_errors() {
    let cases: [(Vec<u8>, &str); 7] = [
        (npy_file("{'descr': '>f8', 'fortran_order': False, 'shape': (1,), }", &[0; 8]), "big-endian"),
        (
            npy_file("{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }", &[0; 2]),
            "'<f2' is not supported",
        ),
        (
            npy_file("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", &[0; 8]),
            "'|O' is not supported",
        ),
        (npy_file("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", &[0; 11]), "12 bytes"),
        (npy_file("{'descr': '|b1', 'fortran_order': False, 'shape': (2,), }", &[1, 7]), "not a bool"),
        (b"PK\x03\x04 not npy at all".to_vec(), "not an .npy file"),
        (b"\x93NUMPY\x01\x00\xff\xff{'descr'".to_vec(), "header length 65535"),
    ];
    for (bytes, expected) in cases {
        let e = from_bytes(Bytes::from(bytes)).unwrap_err().to_string();
        assert!(e.contains(expected), "{e:?} does not contain {expected:?}");
    }
    let mut v4 = npy_file("{'descr': '<i4', 'fortran_order': False, 'shape': (0,), }", &[]);
    v4[6] = 4;
    assert!(from_bytes(Bytes::from(v4)).unwrap_err().to_string().contains("version 4.0"));
    let missing = read(Path::new("/nonexistent/dir/x.npy")).unwrap_err();
    assert!(matches!(missing, ClientError::NotFound(_)), "{missing}");
}

#[test]
fn written_files_read_back_without_numpy() {
    for dtype in Dtype::ALL {
        for shape in [vec![], vec![0], vec![3], vec![2, 2, 1]] {
            let n: usize = shape.iter().product();
            let data: Vec<u8> = (0..n * dtype.item_size())
                .map(|i| if dtype == Dtype::Bool { (i % 2) as u8 } else { i as u8 })
                .collect();
            let a = RawArray::new(dtype, shape.clone(), Bytes::from(data)).unwrap();
            assert_eq!(from_bytes(Bytes::from(to_bytes(&a))).unwrap(), a, "{dtype} {shape:?}");
        }
    }
}
