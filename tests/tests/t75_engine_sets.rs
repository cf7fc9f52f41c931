//! Two engine sets (two MPI worlds) in one cluster: ids stay unique, each set has its own
//! COMM_WORLD, psum runs within each set independently, and collectives never mix sets.

use std::time::Duration;

use mpx_cells::ArrayValue;
use mpx_client::{RawArray, Targets};
use mpx_tests::{repo_root, stderr, stdout, Cluster, Kernel};

const T: Duration = Duration::from_secs(60);

fn value(r: &mpx_client::EngineResult) -> f64 {
    r.outcome.value.as_deref().unwrap_or_else(|| panic!("no value: {r:?}")).parse().unwrap()
}

#[test]
fn t75_two_engine_sets_run_psum_independently() {
    let mut c = Cluster::start(Kernel::Rhai, "sets", 2, &[]);
    let out = c.mpx(&["cluster", "engines", "--kernel", "rhai", "-n", "2"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("engine set 1"), "{}", stdout(&out));
    // The set's mpirun output is named after the set (not a pid), its engines log as the others.
    let logs = c.home.join("cluster-default");
    assert!(stdout(&out).contains("set-1.log") && logs.join("set-1.log").is_file(), "{}", stdout(&out));
    assert!(logs.join("engine-3.log").is_file());
    let text = stdout(&c.mpx(&["logs", "--engine", "3"]));
    assert!(text.contains("registered engine=3 set=1 rank=1"), "{text}");
    c.pids = c.read_pids();
    let client = c.client();
    let info = client.info(T).unwrap();
    let placed: Vec<(u32, u32, u32)> =
        info.engines.iter().map(|e| (e.id.get(), e.set.get(), e.rank.get())).collect();
    assert_eq!(placed, vec![(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)]);

    let all = client.view(Targets::All);
    all.execute_sync("let a = rand(100);", T).unwrap();
    let psum = std::fs::read_to_string(repo_root().join("examples/psum.rhai")).unwrap();
    all.execute_sync(&psum, T).unwrap();
    let locals: Vec<f64> = all.execute_sync("sum(a)", T).unwrap().iter().map(value).collect();
    let totals: Vec<f64> = all.execute_sync("psum(a)", T).unwrap().iter().map(value).collect();
    let (set0, set1) = (locals[0] + locals[1], locals[2] + locals[3]);
    assert!((totals[0] - set0).abs() < 1e-9 && (totals[1] - set0).abs() < 1e-9, "{totals:?} vs {set0}");
    assert!((totals[2] - set1).abs() < 1e-9 && (totals[3] - set1).abs() < 1e-9, "{totals:?} vs {set1}");
    assert_ne!(totals[0], totals[2], "the two sets reduced together");

    // Output labels engines by set:rank.
    let text = stdout(&c.mpx(&["px", "size"]));
    let line = text.lines().find(|l| l.starts_with("Out[") && l.ends_with("]: 2")).unwrap_or_default();
    assert!(line.contains("1:1") && line.contains("0:0"), "{text}");

    // Data moves within a set; a collective across sets is refused clearly.
    let a = RawArray::from(&ArrayValue::from_vec_f64((0..10).map(f64::from).collect()));
    let set1 = client.view(Targets::ids([2, 3]));
    set1.scatter_sync("x", &a, T).unwrap();
    let parts: Vec<usize> = set1.pull_sync("x", T).unwrap().iter().map(|p| p.len()).collect();
    assert_eq!(parts, vec![5, 5]);
    let err = all.scatter_sync("x", &a, T).unwrap_err().to_string();
    assert!(err.contains("engine sets"), "{err}");
    c.stop();
}
