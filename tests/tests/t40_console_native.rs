//! The console (`%px`, `%run`, `%autopx`, local lines) and native functions in a custom engine.

use std::{io::Write, process::Stdio, time::Duration};

use mpx_tests::{bin_dir, mpx_cmd, out_values, repo_root, stdout_lines, Cluster, Kernel};

#[test]
fn t40_reference_session_typed_into_the_console() {
    let c = Cluster::start(Kernel::Rhai, "console", 4, &[]);
    let psum = repo_root().join("examples/psum.rhai");
    let session = format!(
        "%px let a = rand(100);\n%run {}\n%px let s = psum(a);\n%px print(s)\n\
         let here = 40 + 2;\nhere\n%autopx\nrank * 3\n%autopx\n%targets 2\n%px rank\n%quit\n",
        psum.display()
    );
    let mut cmd = mpx_cmd(&c.home);
    cmd.arg("console").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(session.as_bytes()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "console did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    // Four [stdout:R] lines with one and the same total.
    let totals = stdout_lines(&text);
    assert_eq!(totals.iter().map(|(r, _)| *r).collect::<Vec<_>>(), vec![0, 1, 2, 3], "{text}");
    assert!(totals.iter().all(|(_, v)| v == &totals[0].1 && v.parse::<f64>().is_ok()), "{text}");
    // The local line ran locally, autopx ran on all engines, %targets narrowed to engine 2.
    assert!(text.lines().any(|l| l.trim_start_matches("mpx> ") == "42"), "{text}");
    let outs = out_values(&text);
    assert_eq!(
        outs,
        vec![(0, "0".into()), (1, "3".into()), (2, "6".into()), (3, "9".into()), (2, "2".into())],
        "{text}"
    );
    c.stop();
}

#[test]
fn t41_native_rust_functions_are_callable_from_cells() {
    let engine = bin_dir().join("examples/mpx-engine-native");
    assert!(engine.is_file(), "build the examples first: cargo build --examples");
    let c = Cluster::start(Kernel::Rhai, "native", 4, &["--engine", engine.to_str().unwrap()]);
    let vals = out_values(&c.px("norm2(ndarray([3.0, 4.0])) + rank"));
    let nums: Vec<(u32, f64)> = vals.iter().map(|(r, v)| (*r, v.parse().unwrap())).collect();
    assert_eq!(nums, (0..4).map(|r| (r, 5.0 + r as f64)).collect::<Vec<_>>());
    // Native results feed MPI collectives.
    let vals = out_values(&c.px("let v = axpy(2, ones(3), ones(3) * rank); allreduce(sum(v), SUM)"));
    // sum over ranks of 3*(2 + r) = 3*(8 + 6) = 42
    assert!(vals.iter().all(|(_, v)| v.parse::<f64>().unwrap() == 42.0), "{vals:?}");
    // A native function's error is a cell error, and the engine goes on.
    let out = c.mpx(&["px", "axpy(1.0, ones(2), ones(3))"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("shapes"), "{out:?}");
    assert_eq!(out_values(&c.px("rank")).len(), 4);
    c.stop();
}
