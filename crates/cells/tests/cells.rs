//! Single-rank behaviour of the interpreter: persistence, values, errors, arrays, interrupts.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use common::{interp, ok, value};
use mpx_cells::{local::LocalWorld, rhai::Dynamic, ArrayValue, Interpreter, Registry};

#[test]
fn variables_and_functions_persist_across_cells() {
    let mut i = interp();
    ok(&mut i, "let x = 5;\nfn add(a, b) { a + b }");
    assert_eq!(value(&mut i, "add(x, 2)"), "7");
    // A later function calls an earlier one and a built-in.
    ok(&mut i, "fn f3(a) { add(a, 1) * 3 }\nfn avg(a) { mean(a) + add(0, 0) }");
    assert_eq!(value(&mut i, "f3(1)"), "6");
    assert_eq!(value(&mut i, "avg(linspace(0, 2, 3))"), "1.0");
    // Redefinition replaces the old function.
    ok(&mut i, "fn add(a, b) { a * b }");
    assert_eq!(value(&mut i, "f3(2)"), "6");
    assert_eq!(i.execution_count(), 7);
}

#[test]
fn out_value_present_only_for_non_unit_results() {
    let mut i = interp();
    assert_eq!(ok(&mut i, "let a = 1;").value, None);
    assert_eq!(ok(&mut i, "print(1)").value, None);
    assert_eq!(value(&mut i, "a + 2"), "3");
    assert_eq!(value(&mut i, "\"s\""), "\"s\"");
    assert_eq!(value(&mut i, "[1, 2.5, zeros(2)]"), "[1, 2.5, [0.0, 0.0]]");
}

#[test]
fn print_and_debug_are_captured_one_line_each() {
    let mut i = interp();
    let out = ok(&mut i, "print(\"a\"); print(1); debug(2); print(zeros(3));");
    assert_eq!(out.stdout, "a\n1\n2\n[0.0, 0.0, 0.0]\n");
    // The next cell starts with empty output.
    assert_eq!(ok(&mut i, "1").stdout, "");
}

#[test]
fn errors_report_kind_and_line_and_the_interpreter_stays_usable() {
    let mut i = interp();
    let out = i.execute("let a = 1;\nlet b = 2;\nlet c = nope + 1;");
    let e = out.error.expect("error");
    assert_eq!((e.ename.as_str(), e.line), ("VariableNotFound", Some(3)));
    assert!(e.evalue.contains("nope"), "{e}");

    let out = i.execute("print(\"before\");\nlet x = zeros(3);\n\nx[5]");
    let e = out.error.expect("error");
    assert_eq!((e.ename.as_str(), e.line), ("IndexError", Some(4)));
    assert_eq!(out.stdout, "before\n");

    let e = i.execute("let = ;").error.expect("error");
    assert_eq!((e.ename.as_str(), e.line), ("ParseError", Some(1)));

    let e = i.execute("1;\nfoo(1)").error.expect("error");
    assert_eq!((e.ename.as_str(), e.line), ("FunctionNotFound", Some(2)));

    let e = i.execute("sum(\"text\")").error.expect("error");
    assert_eq!(e.ename, "FunctionNotFound");

    for code in ["zeros(3, \"complex128\")", "astype(ones(2), \"u16\")", "ndarray([1, 2], \"<c8\")"] {
        let e = i.execute(code).error.expect("error");
        assert_eq!(e.ename, "TypeError", "{code}: {e:?}");
        assert!(e.evalue.contains("--kernel python"), "{code}: {e:?}");
    }
    assert_eq!(value(&mut i, "astype(ones(2), \"i32\")"), "[1, 1]");

    let e = i.execute("\n\nthrow \"boom\"").error.expect("error");
    assert_eq!((e.ename.as_str(), e.evalue.as_str(), e.line), ("RuntimeError", "boom", Some(3)));

    // An error inside a function defined in an earlier cell: the line is the call site.
    ok(&mut i, "fn bad(v) {\n  v[10]\n}");
    let e = i.execute("let y = 1;\nbad(zeros(2))").error.expect("error");
    assert_eq!((e.ename.as_str(), e.line), ("IndexError", Some(2)));
    assert!(e.evalue.contains("bad"), "{e}");

    let e = i.execute("ones(3) + ones(4)").error.expect("error");
    assert_eq!(e.ename, "ValueError");

    // Everything defined before the errors is intact.
    assert_eq!(value(&mut i, "a + b + x.len()"), "6");
    assert_eq!(value(&mut i, "y"), "1");
}

#[test]
fn integers_work_wherever_numbers_are_expected() {
    let mut i = interp();
    assert_eq!(value(&mut i, "rand(100).len()"), "100");
    assert_eq!(value(&mut i, "linspace(0, 1, 5)"), "[0.0, 0.25, 0.5, 0.75, 1.0]");
    assert_eq!(value(&mut i, "linspace(0.0, 1, 3)"), "[0.0, 0.5, 1.0]");
    assert_eq!(value(&mut i, "zeros(3) + 1"), "[1.0, 1.0, 1.0]");
    assert_eq!(value(&mut i, "2 * ones(2)"), "[2.0, 2.0]");
    assert_eq!(value(&mut i, "1 - ones(2) * 0.5"), "[0.5, 0.5]");
    assert_eq!(value(&mut i, "arange(5)"), "[0, 1, 2, 3, 4]");
    assert_eq!(value(&mut i, "arange(5).dtype"), "\"i64\"");
    assert_eq!(value(&mut i, "arange(4) / 2"), "[0.0, 0.5, 1.0, 1.5]");
    assert_eq!(value(&mut i, "arange(3) * 2"), "[0, 2, 4]");
    assert_eq!(value(&mut i, "-arange(3)"), "[0, -1, -2]");
    assert_eq!(value(&mut i, "sqrt(4)"), "2.0");
    assert_eq!(value(&mut i, "sqrt(ndarray([4, 9]))"), "[2.0, 3.0]");
    assert_eq!(value(&mut i, "abs(ndarray([-1, 2]))"), "[1, 2]");
    assert_eq!(value(&mut i, "exp(zeros(1))"), "[1.0]");
    assert_eq!(value(&mut i, "zeros([5, 3]).shape()"), "[5, 3]");
    assert_eq!(value(&mut i, "shape(ones([2, 4]))"), "[2, 4]");
    assert_eq!(value(&mut i, "ones([2, 2]).sum()"), "4.0");
    assert_eq!(value(&mut i, "sum(arange(5))"), "10");
    assert_eq!(value(&mut i, "mean(arange(5))"), "2.0");
    assert_eq!(value(&mut i, "min(ndarray([3, -1, 2]))"), "-1");
    assert_eq!(value(&mut i, "ndarray([3.5, -1.0]).max()"), "3.5");
    assert_eq!(value(&mut i, "dtype(ndarray([true, false]))"), "\"bool\"");
    assert_eq!(value(&mut i, "to_array(arange(3))"), "[0.0, 1.0, 2.0]");
    assert_eq!(value(&mut i, "arange(1, 2, 0.5)"), "[1.0, 1.5]");
    assert_eq!(value(&mut i, "let a = zeros(2); a += 3; a"), "[3.0, 3.0]");
}

#[test]
fn broadcasting_and_display() {
    let mut i = interp();
    assert_eq!(value(&mut i, "sum(ones([2, 3]) + ndarray([1, 2, 3]))"), "18.0");
    assert_eq!(
        value(&mut i, "ndarray([[1, 2], [3, 4]]) * ndarray([[10], [100]])"),
        "[[10, 20],\n [300, 400]]"
    );
    assert_eq!(value(&mut i, "arange(20)"), "[0, 1, 2, ..., 17, 18, 19]");
    assert_eq!(value(&mut i, "ndarray([0.1, 1e-7, 2.0])"), "[0.1, 1e-7, 2.0]");
    assert_eq!(value(&mut i, "reshape(arange(6), [3, 2])[2]"), "[4, 5]");
}

#[test]
fn indexing_get_set_negative_and_out_of_range() {
    let mut i = interp();
    ok(&mut i, "let a = arange(5);");
    assert_eq!(value(&mut i, "a[-1]"), "4");
    assert_eq!(value(&mut i, "a[0]"), "0");
    assert_eq!(value(&mut i, "a[1] = 10; a[-2] = 7.9; a"), "[0, 10, 2, 7, 4]");
    for bad in ["a[5]", "a[-6]", "a[100] = 1", "a[-99] = 1.0"] {
        let e = i.execute(bad).error.expect("error");
        assert_eq!(e.ename, "IndexError", "{bad}: {e}");
    }
    // Copy-on-write: writing through one binding leaves the other alone.
    assert_eq!(value(&mut i, "let b = a; b[0] = 99; [a[0], b[0]]"), "[0, 99]");
    assert_eq!(value(&mut i, "let f = zeros(2); f[1] = 2; f"), "[0.0, 2.0]");
    let e = i.execute("let u = ndarray([1], \"u8\"); u[0] = 300;").error.expect("error");
    assert_eq!(e.ename, "ValueError");
}

#[test]
fn scope_compaction_frees_the_old_array() {
    let mut i = interp();
    ok(&mut i, "let a = rand(1000000);");
    let len = i.scope_len();
    let weak = match i.get_array("a").expect("a") {
        ArrayValue::F64(arc) => Arc::downgrade(&arc),
        other => panic!("unexpected dtype {}", other.dtype_name()),
    };
    assert!(weak.upgrade().is_some());
    ok(&mut i, "let a = rand(1000000);");
    assert!(weak.upgrade().is_none(), "the shadowed array is still alive");
    assert_eq!(i.scope_len(), len);
    // rank/size survive compaction, also inside functions.
    assert_eq!(
        value(&mut i, "fn who() { [rank, size, SUM] }\n[rank, size, who()]"),
        "[0, 1, [0, 1, \"sum\"]]"
    );
    // set_array replaces the binding and frees the old value too.
    let weak2 = match i.get_array("a").expect("a") {
        ArrayValue::F64(arc) => Arc::downgrade(&arc),
        _ => unreachable!(),
    };
    i.set_array("a", ArrayValue::from_vec_f64(vec![1.0]));
    assert!(weak2.upgrade().is_none());
    assert_eq!(value(&mut i, "a"), "[1.0]");
}

#[test]
fn interrupt_stops_an_infinite_loop() {
    let comm = LocalWorld::new(1).pop().expect("rank");
    let flag = Arc::new(AtomicBool::new(false));
    let mut i = Interpreter::new(Box::new(comm), Registry::new(), Arc::clone(&flag));
    ok(&mut i, "let kept = 41;");
    // A stale interrupt does not kill the next cell.
    flag.store(true, Ordering::SeqCst);
    assert_eq!(value(&mut i, "kept + 1"), "42");

    let f = Arc::clone(&flag);
    let setter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        f.store(true, Ordering::SeqCst);
        Instant::now()
    });
    let out = i.execute("let n = 0;\nloop { n += 1; }");
    let stopped = Instant::now();
    let set_at = setter.join().expect("setter");
    let e = out.error.expect("interrupted");
    assert_eq!(e.ename, "KeyboardInterrupt");
    assert!(stopped.duration_since(set_at) < Duration::from_millis(500));
    assert!(!flag.load(Ordering::SeqCst), "flag reset after handling");
    assert_eq!(value(&mut i, "kept"), "41");
    assert_eq!(value(&mut i, "n > 0"), "true");
}

#[test]
fn registered_native_function_is_callable() {
    let comm = LocalWorld::new(1).pop().expect("rank");
    let mut reg = Registry::new();
    reg.add(|e| {
        e.register_fn("norm2", |a: ArrayValue| -> f64 { a.to_f64().iter().map(|x| x * x).sum() });
    });
    let mut i = Interpreter::new(Box::new(comm), reg, Arc::new(AtomicBool::new(false)));
    assert_eq!(value(&mut i, "norm2(ndarray([3, 4]))"), "25.0");
    ok(&mut i, "fn n2(a) { norm2(a) * 2 }");
    assert_eq!(value(&mut i, "n2(ones(2))"), "4.0");
}

#[test]
fn get_set_and_call_from_rust() {
    let mut i = interp();
    let a = ArrayValue::I32(Arc::new(
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[3]), vec![1, 2, 3]).expect("shape"),
    ));
    i.set_array("p", a);
    assert_eq!(value(&mut i, "[p.dtype, sum(p)]"), "[\"i32\", 6]");
    ok(&mut i, "let s = 2.5; let t = \"x\"; fn sq(x) { x * x }");
    let s = i.get_array("s").expect("number as array");
    assert_eq!((s.shape(), s.to_vec_f64()), (&[][..], vec![2.5]));
    assert_eq!(i.get_array("missing").expect_err("missing").ename, "VariableNotFound");
    assert_eq!(i.get_array("t").expect_err("string").ename, "TypeError");

    assert_eq!(i.call("sq", vec![Dynamic::from_int(3)]).value.as_deref(), Some("9"));
    let out = i.call("sum", vec![Dynamic::from(ArrayValue::from_vec_f64(vec![1.0, 2.0]))]);
    assert_eq!(out.value.as_deref(), Some("3.0"));
    assert_eq!(i.call("nope", vec![]).error.expect("err").ename, "FunctionNotFound");
    assert_eq!(i.call("x; 1", vec![]).error.expect("err").ename, "NameError");
    assert_eq!(i.execution_count(), 2);
}

#[test]
fn deep_recursion_is_an_error_not_a_crash() {
    let mut i = interp();
    ok(&mut i, "fn fib(n) { if n < 2 { n } else { fib(n - 1) + fib(n - 2) } }");
    assert_eq!(value(&mut i, "fib(15)"), "610");
    ok(&mut i, "fn deep(n) { if n == 0 { 0 } else { deep(n - 1) + 1 } }");
    let e = i.execute("deep(100000)").error.expect("too deep");
    assert_eq!(e.ename, "RecursionError");
    assert_eq!(value(&mut i, "deep(25)"), "25");
}
