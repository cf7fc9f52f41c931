//! The seed's IPython + mpi4py session with the Python kernel: `import numpy as np`,
//! `a = np.random.rand(100)`, `from psum import psum` (psum.py in the directory the cluster was
//! started from), `s = psum(a)`, `print(s)`; through the CLI and typed into the console.

use std::{
    io::Write,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use mpx_tests::{mpx_cmd, rank_list, repo_root, stderr, stdout, stdout_lines, Cluster, Kernel, TempDir};

/// `[stdout:R] number` lines as floats, by engine.
fn printed_floats(text: &str) -> Vec<(u32, f64)> {
    stdout_lines(text)
        .into_iter()
        .map(|(id, v)| (id, v.trim().parse().unwrap_or_else(|_| panic!("not a number: {v:?} in\n{text}"))))
        .collect()
}

/// Checks `totals` (what `print(s)` printed) against `locals` (each engine's `np.sum(a)`): every
/// engine of 0..4 printed the same total, the sum of the local sums (to 1e-9 relative).
fn check_totals(locals: &[(u32, f64)], totals: &[(u32, f64)]) {
    let ids: Vec<u32> = (0..4).collect();
    assert_eq!(locals.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids, "{locals:?}");
    assert_eq!(totals.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids, "{totals:?}");
    let expected: f64 = locals.iter().map(|(_, v)| v).sum();
    // 100 numbers in [0, 1) per engine: the total is far from 0 and the local sums differ.
    assert!(expected > 50.0, "{locals:?}");
    assert!(locals.iter().any(|(_, v)| *v != locals[0].1), "every engine drew the same array: {locals:?}");
    for (id, total) in totals {
        assert!((total - expected).abs() <= 1e-9 * expected.abs(), "engine {id}: {total} != {expected}");
    }
}

/// A temp directory holding a copy of examples/psum.py.
fn dir_with_psum(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    std::fs::copy(repo_root().join("examples/psum.py"), dir.0.join("psum.py")).unwrap();
    dir
}

#[test]
fn t90_seed_session_through_the_cli_imports_psum_from_the_start_directory() {
    let dir = dir_with_psum("pysession-dir");
    let c = Cluster::start_in(Kernel::Python, "pysession", 4, &[], &dir.0);
    c.px("import numpy as np");
    c.px("a = np.random.rand(100)");
    c.px("from psum import psum");
    c.px("s = psum(a)");
    let totals = printed_floats(&c.px("print(s)"));
    let locals = printed_floats(&c.px("print(repr(float(np.sum(a))))"));
    check_totals(&locals, &totals);
    // The engines run in the start directory (its real path: the temp dir may be a symlink).
    let cwd = stdout_lines(&c.px("import os; print(os.getcwd())"));
    let real = dir.0.canonicalize().unwrap();
    assert_eq!(cwd.len(), 4, "{cwd:?}");
    assert!(cwd.iter().all(|(_, d)| Path::new(d).canonicalize().unwrap() == real), "{cwd:?} vs {real:?}");
    c.stop();
}

#[test]
fn t90_the_default_kernel_is_python() {
    let dir = dir_with_psum("pydefault-dir");
    // No --kernel: `Cluster::start_in` always passes one, so start by hand.
    let guard = mpx_tests::serial();
    let home = mpx_tests::temp_home("pydefault");
    let mut cmd = mpx_cmd(&home);
    cmd.args(["cluster", "start", "-n", "4", "--daemonize", "--timeout", "60"]).current_dir(&dir.0);
    let out = mpx_tests::run_with_timeout(cmd, Duration::from_secs(90));
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let c = Cluster::adopt(home, "default", 4, guard);
    let text = c.px("import sys; from psum import psum; print(sys.version_info[0])");
    assert_eq!(stdout_lines(&text), (0..4).map(|r| (r, "3".to_string())).collect::<Vec<_>>(), "{text}");
    c.stop();
}

#[test]
fn t90_a_bad_kernel_name_is_refused_by_the_cli() {
    let home = TempDir::new("badkernel");
    let mut cmd = mpx_cmd(&home.0);
    cmd.args(["cluster", "start", "-n", "2", "--kernel", "julia"]);
    let out = mpx_tests::run_with_timeout(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2), "clap's usage error: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("julia") && err.contains("python") && err.contains("rhai"), "{err}");
    assert!(!mpx_controller::files::connection_file(&home.0, "default").exists());
}

#[test]
fn t90_seed_session_typed_into_the_console() {
    let examples = repo_root().join("examples");
    let c = Cluster::start_in(Kernel::Python, "pyconsole", 4, &[], &examples);
    let session = "%px import numpy as np\n%px a = np.random.rand(100)\n%px from psum import psum\n\
                   %px s = psum(a)\n%px print(s)\n%px print(repr(float(np.sum(a))))\n%quit\n";
    let mut cmd = mpx_cmd(&c.home);
    cmd.arg("console").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(session.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the console did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(!text.contains(":error]"), "{text}");
    // The lines in the order they came (a prompt may precede one): the first cell's 4 values
    // (totals, collapsed when equal), then the second's, each ordered by engine here.
    let mut printed: Vec<(u32, f64)> = Vec::new();
    for line in text.lines().map(|l| l.trim_start_matches("mpx> ").trim_start_matches("[px]> ")) {
        let Some((ids, value)) = line.strip_prefix("[stdout:").and_then(|rest| rest.split_once("] ")) else {
            continue;
        };
        let value: f64 =
            value.trim().parse().unwrap_or_else(|_| panic!("not a number: {value:?} in\n{text}"));
        let ids = rank_list(ids).unwrap_or_else(|| panic!("not engine ids: {ids:?} in\n{text}"));
        printed.extend(ids.into_iter().map(|id| (id, value)));
    }
    assert_eq!(printed.len(), 8, "4 totals then 4 local sums:\n{text}");
    let (mut totals, mut locals) = (printed[..4].to_vec(), printed[4..].to_vec());
    totals.sort_by_key(|(id, _)| *id);
    locals.sort_by_key(|(id, _)| *id);
    check_totals(&locals, &totals);
    c.stop();
}
