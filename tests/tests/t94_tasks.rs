//! Load-balanced tasks on real 4-engine clusters (python kernel): `map` with ordered and
//! unordered results and chunks, back-pressure of `imap` (the engines' own clocks show at most
//! `bound` tasks running at once), a task error among good ones, and a killed engine: with
//! `retries=1` its tasks run again (on the other engine set, which stays up, or on the restarted
//! world) and the map completes; with `retries=0` they fail with a clear `EngineDied`.

use std::time::{Duration, Instant};

use mpx_client::{ClientError, EngineId, MapItem, MapOptions, MpxError, Targets, TaskResult, Work};
use mpx_tests::{Cluster, Kernel};

const T: Duration = Duration::from_secs(60);

fn value(r: &TaskResult) -> String {
    assert!(r.outcome.error.is_none(), "task failed: {r:?}");
    r.outcome.value.clone().unwrap_or_else(|| panic!("no value: {r:?}"))
}

fn opts(ordered: bool, bound: Option<usize>) -> MapOptions {
    MapOptions { ordered, bound, timeout: T, ..Default::default() }
}

/// The most tasks that ran at the same moment, from the engines' start and end times.
fn max_overlap(items: &[MapItem]) -> usize {
    let mut edges: Vec<(f64, i32)> = items
        .iter()
        .flat_map(|i| [(i.result.outcome.started, 1), (i.result.outcome.completed, -1)])
        .collect();
    // Ends sort before starts at the same instant.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut now = 0;
    let mut max = 0;
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    max as usize
}

/// Waits (bounded) until `n` engines are registered.
fn wait_for_engines(client: &mpx_client::Client, n: usize) {
    let deadline = Instant::now() + T;
    while client.ids().map(|ids| ids.len()).unwrap_or(0) < n {
        assert!(Instant::now() < deadline, "the engines did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn t94_map_in_order_as_completed_and_in_chunks() {
    let c = Cluster::start(Kernel::Python, "tasks-map", 4, &[]);
    let client = c.client();
    let lb = client.load_balanced_view(Targets::All);
    // One task: it runs on one engine.
    let r = lb.execute("6 * 7").unwrap().get(T).unwrap();
    assert_eq!(value(&r), "42");
    assert!(r.engine_id.is_some_and(|e| e.get() < 4) && r.attempts == 1, "{r:?}");

    // Later items sleep less: as completed, they overtake the first ones.
    let items: Vec<u32> = (0..12).collect();
    let sleepy = |chunk: &[u32]| {
        let i = chunk[0];
        Work::Code(format!("import time\ntime.sleep({})\n{i} * {i}", f64::from(12 - i) * 0.03))
    };
    let ordered = lb.map(items.clone(), opts(true, None), sleepy).unwrap();
    let got: Vec<(usize, String)> = ordered.iter().map(|m| (m.index, value(&m.result))).collect();
    let want: Vec<(usize, String)> = (0..12).map(|i| (i, (i * i).to_string())).collect();
    assert_eq!(got, want);
    let engines: std::collections::BTreeSet<_> = ordered.iter().filter_map(|m| m.result.engine_id).collect();
    assert_eq!(engines.len(), 4, "the tasks did not spread over the 4 engines: {engines:?}");

    let unordered = lb.map(items.clone(), opts(false, None), sleepy).unwrap();
    let order: Vec<usize> = unordered.iter().map(|m| m.index).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..12).collect::<Vec<_>>(), "every item exactly once");
    assert_ne!(order, sorted, "as completed, short late tasks come first: {order:?}");
    // As completed means by the time each result came.
    assert!(unordered.windows(2).all(|w| w[0].result.received <= w[1].result.received));
    for m in &unordered {
        assert_eq!(value(&m.result), (m.index * m.index).to_string());
    }

    // Chunks: 10 items by 3 are 4 tasks, each summing its items.
    let chunked = MapOptions { chunksize: 3, ..opts(true, None) };
    let sums = lb
        .map((1..=10).collect::<Vec<u32>>(), chunked, |chunk| Work::Code(format!("sum({chunk:?})")))
        .unwrap();
    let got: Vec<(std::ops::Range<usize>, String)> =
        sums.iter().map(|m| (m.items.clone(), value(&m.result))).collect();
    assert_eq!(got, vec![(0..3, "6".into()), (3..6, "15".into()), (6..9, "24".into()), (9..10, "10".into())]);

    // Only targeted engines run tasks.
    let two = client.load_balanced_view(Targets::ids([1, 3]));
    let ran = two.map((0..8).collect::<Vec<u32>>(), opts(true, None), |_| Work::Code("1".into())).unwrap();
    assert!(ran.iter().all(|m| matches!(m.result.engine_id, Some(EngineId(1) | EngineId(3)))), "{ran:?}");
    c.stop();
}

#[test]
fn t94_imap_keeps_at_most_bound_tasks_outstanding() {
    let c = Cluster::start(Kernel::Python, "tasks-bound", 4, &[]);
    let client = c.client();
    let lb = client.load_balanced_view(Targets::All);
    let nap = |_: &[u32]| Work::Code("import time\ntime.sleep(0.1)".into());
    // Without a bound all 4 engines are busy at once: the measure can see concurrency.
    let free = lb.map((0..8).collect(), opts(false, None), nap).unwrap();
    assert!(max_overlap(&free) >= 3, "unbounded tasks did not overlap: {}", max_overlap(&free));

    let mut it = lb.imap((0..10).collect(), opts(false, Some(2)), nap);
    let mut results = Vec::new();
    while let Some(item) = it.next() {
        assert!(it.outstanding() <= 2, "{} outstanding", it.outstanding());
        results.push(item.unwrap());
    }
    assert_eq!(results.len(), 10);
    // The engines' clocks: never more than 2 tasks ran at the same moment.
    assert!(max_overlap(&results) <= 2, "{} tasks ran at once with bound 2", max_overlap(&results));
    c.stop();
}

#[test]
fn t94_a_task_error_is_reported_and_the_others_complete() {
    let c = Cluster::start(Kernel::Python, "tasks-error", 4, &[]);
    let client = c.client();
    let lb = client.load_balanced_view(Targets::All);
    let items: Vec<i32> = (0..8).collect();
    let results = lb
        .map(items, opts(true, None), |chunk| {
            let i = chunk[0];
            Work::Code(format!("if {i} == 3:\n    raise ValueError('item {i} is bad')\n{i} + 100"))
        })
        .unwrap();
    assert_eq!(results.len(), 8);
    for m in &results {
        if m.index == 3 {
            let e = m.result.outcome.error.as_ref().unwrap_or_else(|| panic!("no error: {m:?}"));
            assert_eq!(e.ename(), "ValueError");
            assert!(e.evalue().contains("item 3 is bad"), "{e:?}");
            assert!(matches!(m.result.clone().ok(), Err(ClientError::Remote(_))));
        } else {
            assert_eq!(value(&m.result), (m.index + 100).to_string());
        }
    }
    // A call of a function the engines do not have fails clearly too.
    let r = lb.apply("no_such_function", vec![]).unwrap().get(T).unwrap();
    assert!(r.outcome.error.is_some(), "{r:?}");
    c.stop();
}

/// Starts a map of 8 half-second tasks with `retries`, kills engine 2's process once every
/// engine has a task, and returns the results.
fn map_with_a_killed_engine(c: &Cluster, retries: u32) -> Vec<MapItem> {
    let client = c.client();
    let lb = client.load_balanced_view(Targets::All).retries(retries);
    let slow = |chunk: &[u32]| Work::Code(format!("import time\ntime.sleep(0.5)\n{}", chunk[0]));
    let mut it = lb.imap((0..8).collect(), opts(true, None), slow);
    // The first result comes after every engine started a task (4 engines, 8 tasks, 2 per engine).
    let first = it.next().expect("a first result").expect("the first task");
    // SAFETY: an engine process of the cluster this test started.
    unsafe { libc::kill(c.pids.engines[2] as libc::pid_t, libc::SIGKILL) };
    let mut results = vec![first];
    results.extend(it.map(|r| r.expect("map results")));
    results
}

#[test]
fn t94_a_dead_engines_tasks_are_retried_on_the_restarted_world() {
    let mut c = Cluster::start(Kernel::Python, "tasks-retry", 4, &["--restart"]);
    let results = map_with_a_killed_engine(&c, 1);
    let got: Vec<(usize, String)> = results.iter().map(|m| (m.index, value(&m.result))).collect();
    assert_eq!(got, (0..8).map(|i| (i, i.to_string())).collect::<Vec<_>>());
    assert!(results.iter().any(|m| m.result.attempts == 2), "no task was retried: {results:?}");
    let client = c.client();
    wait_for_engines(&client, 4);
    c.pids = c.read_pids();

    // retries = 0: the tasks of the dead engine fail with EngineDied, naming it and the signal.
    let results = map_with_a_killed_engine(&c, 0);
    let died: Vec<&MapItem> = results
        .iter()
        .filter(|m| m.result.outcome.error.as_ref().is_some_and(|e| matches!(e, MpxError::EngineDied { .. })))
        .collect();
    assert!(!died.is_empty(), "no EngineDied: {results:?}");
    let killed =
        died.iter().find(|m| m.result.engine_id == Some(EngineId(2))).unwrap_or_else(|| panic!("{died:?}"));
    match killed.result.clone().ok() {
        Err(ClientError::EngineDied { engine: EngineId(2), cause, .. }) => {
            assert!(cause.contains("signal 9"), "{cause}")
        }
        other => panic!("not EngineDied of engine 2: {other:?}"),
    }
    assert!(results.iter().all(|m| m.result.attempts == 1));
    wait_for_engines(&client, 4);
    c.pids = c.read_pids();
    c.stop();
}

#[test]
fn t94_a_dead_engines_tasks_run_again_on_the_other_engine_set() {
    // Two MPI worlds: a death in set 1 takes down set 1 only, and its tasks run again on set 0.
    let mut c = Cluster::start(Kernel::Python, "tasks-sets", 2, &[]);
    let out = c.mpx(&["cluster", "engines", "--kernel", "python", "-n", "2"]);
    assert!(out.status.success(), "{}{}", mpx_tests::stdout(&out), mpx_tests::stderr(&out));
    c.pids = c.read_pids();
    let set1 = c.pids.engines[2..].to_vec();
    let client = c.client();
    wait_for_engines(&client, 4);
    let lb = client.load_balanced_view(Targets::All).retries(1);
    let slow = |chunk: &[u32]| Work::Code(format!("import time\ntime.sleep(0.5)\n{}", chunk[0]));
    let mut it = lb.imap((0..8).collect(), opts(true, None), slow);
    let first = it.next().expect("a first result").expect("the first task");
    // SAFETY: engine 3 (set 1, rank 1) of the cluster this test started.
    unsafe { libc::kill(set1[1] as libc::pid_t, libc::SIGKILL) };
    let mut results = vec![first];
    results.extend(it.map(|r| r.expect("map results")));
    let got: Vec<(usize, String)> = results.iter().map(|m| (m.index, value(&m.result))).collect();
    assert_eq!(got, (0..8).map(|i| (i, i.to_string())).collect::<Vec<_>>());
    let retried: Vec<&MapItem> = results.iter().filter(|m| m.result.attempts == 2).collect();
    assert!(!retried.is_empty(), "no task was retried: {results:?}");
    assert!(
        retried.iter().all(|m| matches!(m.result.engine_id, Some(EngineId(0)) | Some(EngineId(1)))),
        "a retry ran outside set 0: {retried:?}"
    );
    // Set 0 stayed up all along and serves the next map.
    let ids: Vec<u32> = client.info(T).unwrap().engines.iter().map(|e| e.id.get()).collect();
    assert_eq!(ids, vec![0, 1]);
    let again = lb.map((0..4).collect(), opts(true, None), |c: &[u32]| Work::Code(c[0].to_string())).unwrap();
    assert_eq!(again.iter().map(|m| value(&m.result)).collect::<Vec<_>>(), vec!["0", "1", "2", "3"]);
    c.pids = c.read_pids();
    c.stop();
}
