//! The reference session and the basics of `mpx px` under a real mpirun with 4 ranks.

use mpx_tests::{error_lines, out_values, repo_root, stderr, stdout, stdout_lines, Cluster, Kernel};

fn floats(values: &[(u32, String)]) -> Vec<(u32, f64)> {
    values.iter().map(|(id, v)| (*id, v.parse().unwrap_or_else(|_| panic!("not a number: {v}")))).collect()
}

#[test]
fn t10_psum_reference_session() {
    let c = Cluster::start(Kernel::Rhai, "psum", 4, &[]);
    c.px("let a = rand(100);");
    let psum = repo_root().join("examples/psum.rhai");
    let out = c.mpx(&["run", psum.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    c.px("let s = psum(a);");

    // Each engine's local sum, then the printed totals.
    let locals = floats(&out_values(&c.px("sum(a)")));
    assert_eq!(locals.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    let printed = c.px("print(s)");
    let totals = floats(&stdout_lines(&printed));
    assert_eq!(totals.len(), 4, "{printed}");
    assert_eq!(totals.iter().map(|(id, _)| *id).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    let expected: f64 = locals.iter().map(|(_, v)| v).sum();
    for (id, total) in &totals {
        assert!((total - expected).abs() < 1e-9 * expected.abs(), "engine {id}: {total} != {expected}");
        assert_eq!(total.to_bits(), totals[0].1.to_bits(), "engines disagree: {totals:?}");
    }
    // rand(100) in [0,1): the local sums are plausible and differ between engines.
    assert!(locals.iter().all(|(_, v)| (0.0..100.0).contains(v)));
    assert!(locals.windows(2).any(|w| w[0].1 != w[1].1), "every engine drew the same numbers: {locals:?}");
    c.stop();
}

#[test]
fn t11_variables_and_functions_persist() {
    let c = Cluster::start(Kernel::Rhai, "persist", 4, &[]);
    c.px("let x = rank * 10; fn twice(v) { v * 2 }");
    c.px("let y = twice(x) + 1;");
    let vals = out_values(&c.px("y"));
    assert_eq!(vals, (0..4).map(|r| (r, (r * 20 + 1).to_string())).collect::<Vec<_>>());
    // Re-binding keeps only the new value.
    c.px("let x = 5;");
    let vals = out_values(&c.px("twice(x)"));
    assert!(vals.iter().all(|(_, v)| v == "10"), "{vals:?}");
    c.stop();
}

#[test]
fn t12_targets_run_on_the_subset_only() {
    let c = Cluster::start(Kernel::Rhai, "targets", 4, &[]);
    let out = c.mpx(&["px", "--targets", "1,3", "let only = rank; print(`here ${rank}`);"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout_lines(&stdout(&out));
    assert_eq!(lines, vec![(1, "here 1".to_string()), (3, "here 3".to_string())]);
    // The variable exists on 1 and 3 only.
    let out = c.mpx(&["px", "only"]);
    let text = stdout(&out);
    assert!(!out.status.success());
    assert_eq!(out_values(&text), vec![(1, "1".to_string()), (3, "3".to_string())], "{text}");
    let failed: Vec<u32> = error_lines(&text).iter().map(|(id, _)| *id).collect();
    assert_eq!(failed, vec![0, 2], "{text}");
    // A range and an unknown engine.
    let out = c.mpx(&["px", "--targets", "2-3", "rank"]);
    assert_eq!(out_values(&stdout(&out)), vec![(2, "2".to_string()), (3, "3".to_string())]);
    let out = c.mpx(&["px", "--targets", "7", "rank"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no engine 7"), "{}", stderr(&out));
    c.stop();
}

#[test]
fn t13_a_cell_error_on_one_engine_is_reported_and_the_engine_goes_on() {
    let c = Cluster::start(Kernel::Rhai, "errors", 4, &[]);
    c.px("let kept = rank + 100;");
    let out = c.mpx(&["px", "let z = 1;\nif rank == 2 {\n  throw \"boom on two\";\n}\nrank"]);
    let text = stdout(&out);
    assert!(!out.status.success(), "an engine error must give a non-zero exit");
    assert!(text.contains("[2:error]") && text.contains("boom on two") && text.contains("line 3"), "{text}");
    assert_eq!(out_values(&text), vec![(0, "0".into()), (1, "1".into()), (3, "3".into())], "{text}");
    // Engine 2 still works, and kept its variables.
    let vals = out_values(&c.px("kept"));
    assert_eq!(vals, (0..4).map(|r| (r, (r + 100).to_string())).collect::<Vec<_>>());
    // A syntax error and an unknown variable are errors too, on every engine.
    let out = c.mpx(&["px", "let = ;"]);
    assert!(!out.status.success());
    assert_eq!(error_lines(&stdout(&out)).len(), 4, "{}", stdout(&out));
    let out = c.mpx(&["px", "nope + 1"]);
    assert!(stdout(&out).contains("nope"), "{}", stdout(&out));
    c.px("barrier();");
    c.stop();
}
