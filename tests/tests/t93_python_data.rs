//! Arrays with the Python kernel: every numeric numpy dtype through push/pull/scatter/gather
//! bit-exactly (numpy arrays on the engines), arrays made by cells, non-contiguous arrays,
//! and native Rust functions called from Python with numpy arrays.

use std::time::Duration;

use mpx_client::{Dtype, Targets};
use mpx_tests::{
    arrays::{describe, rows, sample},
    bin_dir, error_lines, out_values, Cluster, Kernel,
};

const T: Duration = Duration::from_secs(120);

#[test]
fn t93_every_numpy_dtype_round_trips_bit_exactly() {
    let c = Cluster::start(Kernel::Python, "pydata", 4, &[]);
    let client = c.client();
    let all = client.view(Targets::All);
    let shapes: [&[usize]; 6] = [&[0], &[1], &[7], &[5, 3], &[4, 0, 2], &[]];
    for (i, dtype) in Dtype::ALL.into_iter().enumerate() {
        for (j, shape) in shapes.iter().enumerate() {
            let a = sample(dtype, shape, (i * 10 + j) as u64);
            all.push_sync("x", &a, T).unwrap();
            for (e, b) in all.pull_sync("x", T).unwrap().iter().enumerate() {
                assert!(b == &a, "push/pull engine {e}: {} != {}", describe(b), describe(&a));
            }
            if shape.is_empty() {
                continue;
            }
            all.scatter_sync("s", &a, T).unwrap();
            let g = all.gather_sync("s", T).unwrap();
            assert!(g == a, "scatter/gather {}: got {}", describe(&a), describe(&g));
        }
        // On the engines it is a numpy array of the same dtype.
        let a = sample(dtype, &[5, 3], 1);
        all.push_sync("x", &a, T).unwrap();
        let vals = out_values(&c.px("(type(x).__name__, x.dtype.str, x.shape)"));
        let want = format!("('ndarray', '{}', (5, 3))", dtype.numpy_str());
        assert_eq!(vals, (0..4).map(|r| (r, want.clone())).collect::<Vec<_>>(), "{dtype}");
        // Scatter's rows per engine, as in ipyparallel (the first engines get one row more).
        all.scatter_sync("s", &a, T).unwrap();
        let parts = all.pull_sync("s", T).unwrap();
        let split = [(0, 2), (2, 3), (3, 4), (4, 5)];
        for (e, (part, (from, to))) in parts.iter().zip(split).enumerate() {
            assert!(part == &rows(&a, from, to), "engine {e} rows {from}..{to} of {dtype}");
        }
    }
    c.stop();
}

#[test]
fn t94_arrays_made_by_cells_come_back_in_c_order() {
    let c = Cluster::start(Kernel::Python, "pymade", 4, &[]);
    let client = c.client();
    let all = client.view(Targets::All);
    c.px("import numpy as np\nfrom mpi4py import MPI\nr = MPI.COMM_WORLD.rank\n\
          y = np.arange(r * 3, r * 3 + 3, dtype=np.int16)\n\
          z = np.arange(12, dtype=np.float64).reshape(3, 4).T\n\
          c = np.array([1 + 2j, r - 1j], dtype=np.complex64)\nflag = r % 2 == 0");
    let g = all.gather_sync("y", T).unwrap();
    assert_eq!((g.dtype(), g.shape()), (Dtype::I16, &[12usize][..]));
    let want: Vec<u8> = (0i16..12).flat_map(i16::to_le_bytes).collect();
    assert_eq!(g.data().as_ref(), &want[..]);
    // A transposed (Fortran-ordered) array is sent in C order.
    let z = &all.pull_sync("z", T).unwrap()[0];
    assert_eq!(z.shape(), &[4, 3]);
    let want: Vec<u8> =
        (0..4).flat_map(|i| (0..3).map(move |j| (j * 4 + i) as f64)).flat_map(f64::to_le_bytes).collect();
    assert_eq!(z.data().as_ref(), &want[..]);
    let cs = all.gather_sync("c", T).unwrap();
    assert_eq!((cs.dtype(), cs.shape()), (Dtype::C64, &[8usize][..]));
    let want: Vec<u8> =
        (0..4).flat_map(|r| [1.0f32, 2.0, r as f32, -1.0]).flat_map(f32::to_le_bytes).collect();
    assert_eq!(cs.data().as_ref(), &want[..]);
    // A Python bool is a 0-d bool array; a missing name and a list of objects are clear errors.
    let f = &all.pull_sync("flag", T).unwrap();
    assert_eq!(f.iter().map(|a| a.data()[0]).collect::<Vec<_>>(), vec![1, 0, 1, 0]);
    let e = all.pull_sync("nothing", T).unwrap_err().to_string();
    assert!(e.contains("NameError") && e.contains("nothing"), "{e}");
    c.px("objs = [object()]");
    let e = all.pull_sync("objs", T).unwrap_err().to_string();
    assert!(e.contains("TypeError") && e.contains("objs"), "{e}");
    c.stop();
}

#[test]
fn t95_native_rust_functions_from_python() {
    let engine = bin_dir().join("examples/mpx-engine-native");
    assert!(engine.is_file(), "build the examples first: cargo build --examples");
    let c = Cluster::start(Kernel::Python, "pynative", 4, &["--engine", engine.to_str().unwrap()]);
    c.px("import numpy as np, mpx_engine\nfrom mpi4py import MPI\nr = MPI.COMM_WORLD.rank");
    let vals = out_values(&c.px("mpx_engine.norm2(np.array([3.0, 4.0])) + r"));
    assert_eq!(vals, (0..4).map(|r| (r, format!("{:.1}", 5.0 + r as f64))).collect::<Vec<_>>());
    // Native results are numpy arrays that feed mpi4py collectives.
    let vals = out_values(
        &c.px("v = mpx_engine.axpy(2.0, np.ones(3), np.ones(3) * r)\nMPI.COMM_WORLD.allreduce(v.sum())"),
    );
    assert!(vals.iter().all(|(_, v)| v == "42.0"), "{vals:?}");
    // A native function's error is a Python exception in the cell, and the engine goes on.
    let text = c.px_err("mpx_engine.axpy(1.0, np.ones(2), np.ones(3))");
    assert!(
        error_lines(&text)
            .iter()
            .any(|(id, e)| *id == 0 && e.starts_with("ValueError: axpy: shapes [2] and [3] differ")),
        "{text}"
    );
    let text = c.px_err("mpx_engine.norm2(np.arange(3))");
    assert!(
        error_lines(&text).iter().any(|(id, e)| *id == 0 && e.starts_with("TypeError")),
        "int64 is not float64: {text}"
    );
    assert_eq!(out_values(&c.px("r")).len(), 4);
    c.stop();
}
