//! Python cells: state persists across cells, IPython's `Out` and `_`, `mpx run FILE` (also on
//! some targets, and from stdin), and numpy arrays pushed, changed in place and pulled back.

use std::{io::Write, process::Stdio, sync::Arc};

use mpx_cells::raw::to_bytes;
use mpx_cells::ArrayValue;
use mpx_client::{npy, RawArray};
use mpx_tests::{error_lines, mpx_cmd, out_values, stderr, stdout, stdout_lines, Cluster, Kernel, TempDir};
use ndarray::{ArrayD, IxDyn};

/// `(rank, value)` for ranks 0..4.
fn all4(values: &[&str]) -> Vec<(u32, String)> {
    values.iter().enumerate().map(|(r, v)| (r as u32, v.to_string())).collect()
}

#[test]
fn t91_variables_functions_classes_and_imports_persist_and_out_is_the_trailing_expression() {
    let c = Cluster::start(Kernel::Python, "pycells", 4, &[]);
    // An assignment has no value; a trailing expression is Out[R] and `_`.
    assert_eq!(out_values(&c.px("x = 10")), vec![], "an assignment gives no Out");
    assert_eq!(out_values(&c.px("x*2")), all4(&["20"; 4]));
    assert_eq!(out_values(&c.px("_ + 1")), all4(&["21"; 4]));
    c.px("def f(y):\n    return y + x\n");
    c.px("class P:\n    def __init__(self, v):\n        self.v = v\n    def twice(self):\n        return 2 * self.v\n");
    c.px("import math\nfrom mpi4py import MPI\nrank = MPI.COMM_WORLD.rank");
    assert_eq!(out_values(&c.px("f(1), P(3).twice(), math.sqrt(16)")), all4(&["(11, 6, 4.0)"; 4]));
    assert_eq!(out_values(&c.px("rank * 10")), all4(&["0", "10", "20", "30"]));
    // A value is the repr; print goes to stdout and the cell then has no value.
    assert_eq!(out_values(&c.px("'a' + str(rank)")), all4(&["'a0'", "'a1'", "'a2'", "'a3'"]));
    let text = c.px("print('r', rank)");
    assert_eq!(stdout_lines(&text), all4(&["r 0", "r 1", "r 2", "r 3"]), "{text}");
    assert!(out_values(&text).is_empty(), "{text}");
    // Something only engine 2 defines stays there.
    assert!(c.mpx(&["px", "--targets", "2", "only_two = 'here'"]).status.success());
    assert_eq!(out_values(&c.px("'only_two' in globals()")), all4(&["False", "False", "True", "False"]));
    c.stop();
}

#[test]
fn t91_run_a_python_file_then_call_what_it_defined_on_some_targets() {
    let dir = TempDir::new("pyrun-files");
    let lib = dir.0.join("some.py");
    std::fs::write(
        &lib,
        "from mpi4py import MPI\n\n\ndef hello(n):\n    \"\"\"rank * n\"\"\"\n    return MPI.COMM_WORLD.rank * n\n\n\
         defined_by = 'some.py'\n",
    )
    .unwrap();
    let boom = dir.0.join("boom.py");
    std::fs::write(&boom, "def boom():\n    return 1 / 0\n\n\nboom()\n").unwrap();
    let c = Cluster::start(Kernel::Python, "pyrun", 4, &[]);
    let out = c.mpx(&["run", "--targets", "0,2", lib.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let out = c.mpx(&["px", "--targets", "0,2", "hello(3), defined_by"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_eq!(out_values(&stdout(&out)), vec![(0, "(0, 'some.py')".into()), (2, "(6, 'some.py')".into())]);
    // Engines 1 and 3 did not run it.
    let out = c.mpx(&["px", "--targets", "1,3", "hello(3)"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    let failed: Vec<(u32, bool)> =
        error_lines(&text).into_iter().map(|(id, e)| (id, e.starts_with("NameError"))).collect();
    assert_eq!(failed, vec![(1, true), (3, true)], "{text}");
    // An error in a file names the file and the line in its traceback.
    let out = c.mpx(&["run", "--targets", "1", boom.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("[1:error] ZeroDivisionError"), "{text}");
    assert!(text.contains("boom.py") && text.contains("line 2"), "the traceback names the file:\n{text}");
    // `mpx run -` and `mpx px -` read the code from stdin.
    for (args, code) in [(["run", "-"], "from_stdin = 5\n"), (["px", "-"], "from_stdin * 2\n")] {
        let mut cmd = mpx_cmd(&c.home);
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(code.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}{}", stdout(&out), stderr(&out));
        if args[0] == "px" {
            assert_eq!(out_values(&stdout(&out)), all4(&["10"; 4]));
        }
    }
    c.stop();
}

#[test]
fn t91_an_array_pushed_changed_in_place_and_pulled_back() {
    let c = Cluster::start(Kernel::Python, "pyarrays", 4, &[]);
    let dir = c.home.join("npy");
    std::fs::create_dir_all(&dir).unwrap();
    let a =
        ArrayValue::F64(Arc::new(ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| (i[0] * 3 + i[1]) as f64 - 1.5)));
    let src = dir.join("x.npy");
    npy::write(&src, &RawArray::from(&a)).unwrap();
    let out = c.mpx(&["push", "x", src.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = c.px("print(type(x).__name__, x.dtype, x.shape)");
    assert_eq!(stdout_lines(&text), all4(&["ndarray float64 (2, 3)"; 4]), "{text}");
    c.px("from mpi4py import MPI\nx *= 2\nx[0, 0] += MPI.COMM_WORLD.rank");
    let pulled = dir.join("back.npy");
    let out = c.mpx(&["pull", "x", "--out", pulled.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for rank in 0..4u32 {
        let back = npy::read(&npy::per_engine_path(&pulled, mpx_client::EngineId(rank))).unwrap();
        let expected = ArrayValue::F64(Arc::new(ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| {
            2.0 * ((i[0] * 3 + i[1]) as f64 - 1.5) + if i[0] == 0 && i[1] == 0 { rank as f64 } else { 0.0 }
        })));
        assert_eq!(back.shape(), &[2, 3]);
        assert_eq!(back.data(), &to_bytes(&expected), "engine {rank}");
    }
    c.stop();
}

#[test]
fn t91_output_into_a_closed_pipe_ends_quietly() {
    use std::io::{BufRead, BufReader};
    let c = Cluster::start(Kernel::Python, "pypipe", 4, &[]);
    // `mpx px ... | head -1`: the reader goes away after one line of many.
    let mut cmd = mpx_cmd(&c.home);
    cmd.args(["px", "for i in range(5000): print(i)"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    // Engine 0's first line, alone or collapsed with the others' identical one.
    assert!(first.starts_with("[stdout:0") && first.trim().ends_with("] 0"), "{first}");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert!(out.status.success() || out.status.signal() == Some(libc::SIGPIPE), "{:?}", out.status);
    // The cluster is unaffected.
    assert_eq!(out_values(&c.px("1 + 1")).len(), 4);
    // An empty target list is an error, not "all".
    let out = c.mpx(&["px", "--targets", "", "1"]);
    assert!(!out.status.success() && stderr(&out).contains("empty target list"), "{}", stderr(&out));
    c.stop();
}
