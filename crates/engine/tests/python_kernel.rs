//! The Python kernel without MPI or a controller: cell semantics, errors, arrays in place,
//! interrupts and the probe. One test function, because Python's main thread (the one that
//! handles SIGINT) is the thread that initialised it.

use std::{sync::Arc, thread, time::Duration};

use mpx_engine::{
    kernel::{python::PythonKernel, Kernel},
    output::OutputBuffer,
};
use mpx_messages::{Dtype, StreamName};

/// What the running task wrote to `stream`, taken from the buffer.
fn written(output: &OutputBuffer, stream: StreamName) -> String {
    output.drain().into_iter().filter(|p| p.stream == stream).map(|p| p.text).collect()
}

#[test]
fn python_kernel() {
    // mpi4py is imported by the kernel's setup; keep it from initialising MPI in this process.
    std::env::set_var("MPI4PY_RC_INITIALIZE", "false");
    let output = Arc::new(OutputBuffer::default());
    let mut k = PythonKernel::new(0, 1, &[], output.clone()).expect("python starts");
    output.begin(mpx_messages::TaskId(1));

    // Statements run, a trailing expression is the value, `_` holds it, print goes to the
    // output buffer as it is written (the cell's result carries none).
    let out = k.execute("x = 10\nprint('hello', x)\nx * 2", None);
    assert_eq!(out.stdout, "");
    assert_eq!(written(&output, StreamName::Stdout), "hello 10\n");
    assert_eq!(out.value.as_deref(), Some("20"));
    assert!(out.error.is_none());
    assert_eq!(k.execute("_ + 1", None).value.as_deref(), Some("21"));
    // A trailing `;` or an assignment gives no value; stderr is separate.
    assert_eq!(k.execute("x;", None).value, None);
    let out = k.execute("import sys\nsys.stderr.write('oops\\n')\ny = 1", None);
    assert_eq!(out.value, None);
    let pieces = output.drain();
    assert_eq!(pieces.len(), 1);
    assert_eq!((pieces[0].stream, pieces[0].text.as_str()), (StreamName::Stderr, "oops\n"));
    // A big print becomes bounded pieces; a writer waits while the buffer is full, and goes on
    // once the control thread (here: another thread) drains it.
    let drainer = {
        let output = output.clone();
        thread::spawn(move || {
            let mut got = 0;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while got < (6 << 20) + 1 && std::time::Instant::now() < deadline {
                got += output.drain().iter().map(|p| p.text.len()).sum::<usize>();
                thread::sleep(Duration::from_millis(5));
            }
            got
        })
    };
    assert!(k.execute("print('x' * (6 << 20))", None).error.is_none());
    assert_eq!(drainer.join().expect("drainer"), (6 << 20) + 1);

    // Functions, classes and imports persist.
    k.execute("import math\nclass P:\n    def __init__(s, v): s.v = v\ndef f(a):\n    return 1 / a", None);
    assert_eq!(k.execute("P(3).v + math.floor(2.5)", None).value.as_deref(), Some("5"));

    // An exception: type, message, the cell's line and a traceback naming the cell.
    let count = k.execution_count() + 1;
    let e = k.execute("y = 2\nf(0)", None).error.expect("ZeroDivisionError");
    assert_eq!(e.ename, "ZeroDivisionError");
    assert_eq!(e.line, Some(2), "the line of this cell (f was defined in an earlier one)");
    assert!(e.traceback.contains(&format!("File \"<cell-{count}>\", line 2")), "{}", e.traceback);
    assert!(!e.traceback.contains("mpx_cell"), "the helper's frames are hidden: {}", e.traceback);
    // The namespace survived.
    assert_eq!(k.execute("x + 1", None).value.as_deref(), Some("11"));

    // Syntax errors, SystemExit, a run file's name in its traceback.
    let e = k.execute("x = = 1", None).error.expect("SyntaxError");
    assert_eq!((e.ename.as_str(), e.line), ("SyntaxError", Some(1)));
    let e = k.execute("raise SystemExit(3)", None).error.expect("SystemExit");
    assert_eq!((e.ename.as_str(), e.evalue.as_str()), ("SystemExit", "3"));
    let e = k.execute("def g():\n    raise KeyError('k')\ng()", Some("lib.py")).error.expect("KeyError");
    assert!(e.traceback.contains("File \"lib.py\", line 2, in g"), "{}", e.traceback);
    // No stdin: input() fails at once.
    assert_eq!(k.execute("input('name? ')", None).error.map(|e| e.ename), Some("EOFError".into()));
    // MPI.Finalize is guarded.
    let e = k.execute("from mpi4py import MPI\nMPI.Finalize()", None).error.expect("guarded");
    assert_eq!(e.ename, "RuntimeError");
    assert!(e.evalue.contains("MPI.Finalize() is not allowed"), "{}", e.evalue);

    // Arrays: a new array is bound without a copy; a cell's in-place change is read in place.
    let mut a = k.new_array(Dtype::F64, &[2, 3]).expect("array");
    a.bytes_mut().copy_from_slice(&[1f64, 2., 3., 4., 5., 6.].map(f64::to_le_bytes).concat());
    k.bind("arr", a).expect("bind");
    assert_eq!(
        k.execute("arr.sum(), arr.dtype.str, arr.shape", None).value.as_deref(),
        Some("(21.0, '<f8', (2, 3))")
    );
    k.execute("arr *= 2", None);
    let back = k.array("arr").expect("read");
    assert_eq!((back.dtype(), back.shape()), (Dtype::F64, &[2usize, 3][..]));
    assert_eq!(&back.bytes()[..8], &2f64.to_le_bytes());
    let p1 = k.execute("arr.__array_interface__['data'][0]", None).value;
    drop(back);
    let again = k.array("arr").expect("read again");
    assert_eq!(Some(again.bytes().as_ptr() as usize).map(|p| p.to_string()), p1, "read in place");
    // Non-arrays become arrays; object arrays are refused; a missing name is a NameError.
    let b = k.execute("flags = [True, False]", None);
    assert!(b.error.is_none());
    assert_eq!(k.array("flags").expect("bool list").dtype(), Dtype::Bool);
    assert_eq!(k.array("nope").err().map(|e| e.ename), Some("NameError".into()));
    k.execute("objs = [object()]", None);
    assert_eq!(k.array("objs").err().map(|e| e.ename), Some("TypeError".into()));

    // A call returning `mpx_engine.Returned` gives its payload and arrays out of band, not a
    // value: an array nothing else refers to is sent from its own memory; one bound to a name,
    // or a view of one, is copied (a later cell may change it); a big-endian or non-contiguous
    // one becomes a standard copy.
    let code = "import numpy as np\nfrom mpx_engine import Returned\nkept = np.arange(3.0)\nat = {}\n\
                def give():\n    fresh = np.arange(4, dtype='<i4')\n    at['fresh'] = fresh.__array_interface__['data'][0]\n    \
                return Returned(b'pickle', [fresh, kept, kept[1:], np.arange(6, dtype='>i2')[::2]])";
    assert!(k.execute(code, None).error.is_none());
    let out = k.call("give", vec![]);
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.value, None);
    let ret = out.returned.expect("returned out of band");
    assert_eq!(&ret.payload[..], b"pickle");
    let address = |i: usize| Some((ret.arrays[i].data().as_ptr() as usize).to_string());
    assert_eq!(address(0), k.execute("at['fresh']", None).value, "sent from its own memory");
    assert_ne!(address(1), k.execute("kept.__array_interface__['data'][0]", None).value, "copied");
    assert_ne!(address(2), k.execute("kept[1:].__array_interface__['data'][0]", None).value, "copied");
    let shapes: Vec<_> = ret.arrays.iter().map(|a| (a.dtype(), a.shape().to_vec())).collect();
    assert_eq!(
        shapes,
        [(Dtype::I32, vec![4]), (Dtype::F64, vec![3]), (Dtype::F64, vec![2]), (Dtype::I16, vec![3])]
    );
    assert_eq!(&ret.arrays[0].data()[..], &[0i32, 1, 2, 3].map(i32::to_le_bytes).concat());
    assert_eq!(&ret.arrays[2].data()[..], &[1f64, 2.].map(f64::to_le_bytes).concat());
    assert_eq!(&ret.arrays[3].data()[..], &[0i16, 2, 4].map(i16::to_le_bytes).concat());
    // A function's ordinary value is still displayed; a bad marker is the call's error.
    k.execute(
        "def plain():\n    return 'p'\ndef bad():\n    return Returned(b'', [np.array([object()])])",
        None,
    );
    assert_eq!(k.call("plain", vec![]).value.as_deref(), Some("'p'"));
    let bad = k.call("bad", vec![]);
    assert!(bad.returned.is_none());
    assert_eq!(bad.error.map(|e| e.ename), Some("TypeError".into()));

    // Interrupt: a sleeping cell stops at once, and an interrupt fired after a cell ended
    // never reaches the next one.
    let stop = k.interrupter();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        stop.interrupt();
    });
    let started = std::time::Instant::now();
    let e = k.execute("import time\ntime.sleep(30)", None).error.expect("interrupted");
    assert_eq!(e.ename, "KeyboardInterrupt");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    t.join().expect("thread");
    k.interrupter().interrupt(); // no cell runs: ignored
    let out = k.execute("sum(range(100000))", None);
    assert!(out.error.is_none(), "{:?}", out.error);

    // The probe sees the running cell's line from another thread.
    let probe = k.prober().expect("python has a probe");
    let seen = thread::spawn(move || {
        thread::sleep(Duration::from_millis(300));
        probe.probe()
    });
    k.execute("import time\ndef nap():\n    time.sleep(1)\nnap()", None);
    let at = seen.join().expect("probe thread").expect("a cell was running");
    assert!(at.starts_with("<cell-") && at.ends_with("line 3 in nap()"), "{at}");
}
