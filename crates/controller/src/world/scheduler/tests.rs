//! The scheduler driven by event sequences; each test asserts the decisions exactly.

use std::collections::{BTreeMap, HashMap};

use super::{Decision, Pool, Scheduler, TaskError, TaskId};
use mpx_messages::EngineId;

fn e(id: u32) -> EngineId {
    EngineId(id)
}

fn t(id: u64) -> TaskId {
    TaskId(id)
}

fn run(task: u64, engine: u32, attempt: u32) -> Decision {
    Decision::Run { task: t(task), engine: e(engine), attempt }
}

fn reply(task: u64, engine: u32) -> Decision {
    Decision::Reply { task: t(task), engine: e(engine) }
}

fn died(task: u64, engine: u32, cause: &str) -> Decision {
    Decision::Fail { task: t(task), error: TaskError::EngineDied { engine: e(engine), cause: cause.into() } }
}

/// A scheduler of `depth` with engines `0..n` registered.
fn with_engines(depth: usize, n: u32) -> Scheduler {
    let mut s = Scheduler::new(depth);
    for id in 0..n {
        assert_eq!(s.engine_up(e(id)), vec![]);
    }
    s
}

#[test]
fn least_loaded_engine_first_and_waiting_beyond_depth() {
    let mut s = with_engines(2, 2);
    assert_eq!(s.submit(t(1), Pool::Any, 0), vec![run(1, 0, 1)]);
    assert_eq!(s.submit(t(2), Pool::Any, 0), vec![run(2, 1, 1)]);
    assert_eq!(s.submit(t(3), Pool::Any, 0), vec![run(3, 0, 1)]);
    assert_eq!(s.submit(t(4), Pool::Any, 0), vec![run(4, 1, 1)]);
    // Both engines hold `depth` tasks: the fifth waits.
    assert_eq!(s.submit(t(5), Pool::Any, 0), vec![]);
    assert_eq!(s.waiting(), 1);
    // Engine 1 finishes first: it is now the least loaded and takes the waiting task.
    assert_eq!(s.done(t(2), e(1)), vec![reply(2, 1), run(5, 1, 1)]);
    assert_eq!(s.done(t(1), e(0)), vec![reply(1, 0)]);
    assert_eq!(s.load_of(e(0)), 1);
    assert_eq!(s.load_of(e(1)), 2);
    // The next goes to engine 0, the least loaded.
    assert_eq!(s.submit(t(6), Pool::Any, 0), vec![run(6, 0, 1)]);
}

#[test]
fn an_engine_holds_depth_tasks_at_once() {
    let mut s = with_engines(4, 1);
    let decisions: Vec<Decision> = (1..=6).flat_map(|n| s.submit(t(n), Pool::Any, 0)).collect();
    assert_eq!(decisions, vec![run(1, 0, 1), run(2, 0, 1), run(3, 0, 1), run(4, 0, 1)]);
    assert_eq!(s.done(t(1), e(0)), vec![reply(1, 0), run(5, 0, 1)]);
    assert_eq!(s.done(t(2), e(0)), vec![reply(2, 0), run(6, 0, 1)]);
    assert_eq!(s.len(), 4);
}

#[test]
fn tasks_go_only_to_targeted_engines() {
    let mut s = with_engines(1, 4);
    let pool = Pool::only(vec![e(3), e(2)]);
    assert_eq!(s.submit(t(1), pool.clone(), 0), vec![run(1, 2, 1)]);
    assert_eq!(s.submit(t(2), pool.clone(), 0), vec![run(2, 3, 1)]);
    // Engines 0 and 1 are idle, but not targeted: the third task waits.
    assert_eq!(s.submit(t(3), pool.clone(), 0), vec![]);
    // An untargeted task is not held up by it.
    assert_eq!(s.submit(t(4), Pool::Any, 0), vec![run(4, 0, 1)]);
    assert_eq!(s.done(t(2), e(3)), vec![reply(2, 3), run(3, 3, 1)]);
}

#[test]
fn the_oldest_waiting_task_goes_first_across_pools() {
    let mut s = with_engines(1, 2);
    assert_eq!(s.submit(t(1), Pool::Any, 0), vec![run(1, 0, 1)]);
    assert_eq!(s.submit(t(2), Pool::Any, 0), vec![run(2, 1, 1)]);
    assert_eq!(s.submit(t(3), Pool::only(vec![e(0), e(1)]), 0), vec![]);
    assert_eq!(s.submit(t(4), Pool::Any, 0), vec![]);
    // Task 3 is older than task 4: it gets the freed slot though their pools differ.
    assert_eq!(s.done(t(2), e(1)), vec![reply(2, 1), run(3, 1, 1)]);
    assert_eq!(s.done(t(1), e(0)), vec![reply(1, 0), run(4, 0, 1)]);
}

#[test]
fn unknown_targets_and_no_engines_are_refused() {
    let mut s = Scheduler::new(2);
    assert_eq!(
        s.submit(t(1), Pool::Any, 0),
        vec![Decision::Fail {
            task: TaskId(1),
            error: TaskError::NoEngines("no engines are registered".into())
        }]
    );
    s.engine_up(e(0));
    let refused = s.submit(t(2), Pool::only(vec![e(0), e(7)]), 0);
    assert!(
        matches!(&refused[..], [Decision::Fail { task: TaskId(2), error: TaskError::NoEngines(why) }] if why.contains("no engine 7")),
        "{refused:?}"
    );
    assert!(matches!(&s.submit(t(3), Pool::only(vec![]), 0)[..], [Decision::Fail { task: TaskId(3), .. }]));
    assert!(s.is_empty());
}

#[test]
fn a_dead_engines_task_without_retries_fails_with_engine_died() {
    let mut s = with_engines(2, 2);
    s.submit(t(1), Pool::Any, 0);
    s.submit(t(2), Pool::Any, 0);
    s.submit(t(3), Pool::Any, 0);
    assert_eq!(s.engine_of(t(3)), Some(e(0)));
    // Tasks 1 and 3 were on engine 0; task 2 on engine 1 goes on.
    assert_eq!(s.engine_gone(e(0), "SIGKILL"), vec![died(1, 0, "SIGKILL"), died(3, 0, "SIGKILL")]);
    assert_eq!(s.done(t(2), e(1)), vec![reply(2, 1)]);
    assert!(s.is_empty());
    // A second report of the same death changes nothing.
    assert_eq!(s.engine_gone(e(0), "SIGKILL"), vec![]);
}

#[test]
fn a_dead_engines_task_is_retried_elsewhere_then_fails_when_retries_run_out() {
    let mut s = with_engines(1, 3);
    assert_eq!(s.submit(t(1), Pool::Any, 1), vec![run(1, 0, 1)]);
    assert_eq!(s.submit(t(2), Pool::Any, 0), vec![run(2, 1, 1)]);
    assert_eq!(s.engine_gone(e(0), "exit 9"), vec![run(1, 2, 2)]);
    // Its one retry is used: a second death ends it.
    assert_eq!(s.engine_gone(e(2), "exit 9 again"), vec![died(1, 2, "exit 9 again")]);
    assert_eq!(s.done(t(2), e(1)), vec![reply(2, 1)]);
    assert!(s.is_empty());
}

#[test]
fn a_retried_task_goes_before_younger_waiting_tasks() {
    let mut s = with_engines(1, 2);
    s.submit(t(1), Pool::Any, 2);
    s.submit(t(2), Pool::Any, 0);
    s.submit(t(3), Pool::Any, 0);
    assert_eq!(s.engine_gone(e(0), "gone"), vec![]);
    // Engine 1 is full with task 2; task 1 (older) waits ahead of task 3.
    assert_eq!(s.done(t(2), e(1)), vec![reply(2, 1), run(1, 1, 2)]);
    assert_eq!(s.done(t(1), e(1)), vec![reply(1, 1), run(3, 1, 1)]);
}

#[test]
fn waiting_tasks_fail_when_every_targeted_engine_is_gone() {
    let mut s = with_engines(1, 2);
    s.submit(t(1), Pool::only(vec![e(1)]), 1);
    s.submit(t(2), Pool::only(vec![e(1)]), 0);
    s.submit(t(3), Pool::Any, 0);
    assert_eq!(s.engine_of(t(3)), Some(e(0)));
    // Engine 1 dies: task 1 has a retry but no engine of its pool is left; task 2 never ran.
    let decisions = s.engine_gone(e(1), "killed");
    assert_eq!(
        decisions,
        vec![
            died(1, 1, "killed"),
            Decision::Fail {
                task: t(2),
                error: TaskError::NoEngines("every targeted engine is gone".into())
            },
        ]
    );
    assert_eq!(s.done(t(3), e(0)), vec![reply(3, 0)]);
}

#[test]
fn while_engines_are_expected_tasks_wait_for_them() {
    let mut s = with_engines(2, 2);
    s.submit(t(1), Pool::Any, 1);
    s.submit(t(2), Pool::Any, 0);
    // Rank 0 dies; its world is torn down and restarted: engine 1 takes no more tasks, then
    // every engine goes at once.
    assert_eq!(s.expect_engines(true), vec![]);
    assert_eq!(s.engine_stopping(e(1)), vec![]);
    assert_eq!(s.engine_gone(e(0), "rank 0 killed"), vec![]);
    assert_eq!(s.engines_gone([(e(1), "world torn down")]), vec![died(2, 1, "world torn down")]);
    // Submissions wait too, even for ids not yet registered.
    assert_eq!(s.submit(t(3), Pool::only(vec![e(1)]), 0), vec![]);
    assert_eq!(s.waiting(), 2);
    // The restarted world registers: the retry runs first.
    assert_eq!(s.engine_up(e(1)), vec![run(1, 1, 2), run(3, 1, 1)]);
    assert_eq!(s.expect_engines(false), vec![]);
    assert_eq!(s.done(t(1), e(1)), vec![reply(1, 1)]);
}

#[test]
fn a_stopping_engine_takes_no_more_tasks_but_its_answers_count() {
    let mut s = with_engines(1, 2);
    s.submit(t(1), Pool::Any, 1);
    s.submit(t(2), Pool::Any, 1);
    assert_eq!(s.engine_stopping(e(1)), vec![]);
    assert_eq!(s.submit(t(3), Pool::Any, 0), vec![]);
    // Engine 1's task still answers; its freed slot is not used.
    assert_eq!(s.done(t(2), e(1)), vec![reply(2, 1)]);
    assert_eq!(s.done(t(1), e(0)), vec![reply(1, 0), run(3, 0, 1)]);
    // A task for the stopping engine alone fails at once (no engines are expected).
    assert!(matches!(
        &s.submit(t(4), Pool::only(vec![e(1)]), 0)[..],
        [Decision::Fail { task: TaskId(4), error: TaskError::NoEngines(_) }]
    ));
    // Engines going together: none gets the other's task as a retry.
    let mut s = with_engines(1, 3);
    s.submit(t(1), Pool::Any, 1);
    s.submit(t(2), Pool::Any, 1);
    assert_eq!(s.engines_gone([(e(0), "a"), (e(1), "b")]), vec![run(1, 2, 2)]);
    assert_eq!(s.done(t(1), e(2)), vec![reply(1, 2), run(2, 2, 2)]);
}

#[test]
fn a_failed_restart_fails_the_waiting_tasks() {
    let mut s = with_engines(1, 1);
    s.submit(t(1), Pool::Any, 3);
    s.expect_engines(true);
    assert_eq!(s.engine_gone(e(0), "killed"), vec![]);
    assert_eq!(s.expect_engines(false), vec![died(1, 0, "killed")]);
    assert!(s.is_empty());
}

#[test]
fn answers_from_the_wrong_engine_or_twice_are_ignored() {
    let mut s = with_engines(1, 2);
    s.submit(t(1), Pool::Any, 0);
    assert_eq!(s.done(t(1), e(1)), vec![]);
    assert_eq!(s.done(t(9), e(0)), vec![]);
    assert_eq!(s.done(t(1), e(0)), vec![reply(1, 0)]);
    assert_eq!(s.done(t(1), e(0)), vec![]);
}

#[test]
fn cancelled_tasks_never_run_or_answer_but_hold_their_slot_until_done() {
    let mut s = with_engines(1, 1);
    s.submit(t(1), Pool::Any, 0);
    s.submit(t(2), Pool::Any, 0);
    s.submit(t(3), Pool::Any, 0);
    assert_eq!(s.cancel(&[t(1), t(2)]), vec![]);
    assert_eq!(s.waiting(), 1);
    // Task 1 was running: its answer frees the slot silently; task 2 never runs.
    assert_eq!(s.done(t(1), e(0)), vec![run(3, 0, 1)]);
    s.cancel(&[t(3)]);
    assert_eq!(s.engine_gone(e(0), "x"), vec![]);
    assert!(s.is_empty());
}

/// A deterministic random walk of events: every task ends exactly once, never beyond the depth,
/// only on its pool's engines, and no task is lost.
#[test]
fn random_event_sequences_keep_the_invariants() {
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for _round in 0..50 {
        let depth = 1 + next(4) as usize;
        let mut s = with_engines(depth, 4);
        let mut alive: Vec<u32> = (0..4).collect();
        let mut next_engine = 4;
        let mut pools: HashMap<TaskId, Pool> = HashMap::new();
        let mut running: BTreeMap<TaskId, EngineId> = BTreeMap::new();
        let mut ended: HashMap<TaskId, u32> = HashMap::new();
        let mut task = 0;
        for _step in 0..300 {
            let decisions = match next(10) {
                0..=4 => {
                    task += 1;
                    let pool = if next(2) == 0 || alive.is_empty() {
                        Pool::Any
                    } else {
                        Pool::only(vec![e(alive[next(alive.len() as u64) as usize])])
                    };
                    pools.insert(t(task), pool.clone());
                    s.submit(t(task), pool, next(3) as u32)
                }
                5..=7 if !running.is_empty() => {
                    let k = *running.keys().nth(next(running.len() as u64) as usize).unwrap();
                    s.done(k, running[&k])
                }
                8 if !alive.is_empty() => {
                    let gone = alive.remove(next(alive.len() as u64) as usize);
                    running.retain(|_, eng| *eng != e(gone));
                    s.engine_gone(e(gone), "random")
                }
                _ => {
                    alive.push(next_engine);
                    next_engine += 1;
                    s.engine_up(e(next_engine - 1))
                }
            };
            for d in decisions {
                match d {
                    Decision::Run { task, engine, .. } => {
                        assert!(alive.contains(&engine.get()), "ran on a dead engine");
                        if let Pool::Only(ids) = &pools[&task] {
                            assert!(ids.contains(&engine), "task {task} ran outside its pool");
                        }
                        assert!(running.insert(task, engine).is_none(), "task {task} ran twice at once");
                    }
                    Decision::Reply { task, engine } => {
                        assert_eq!(running.remove(&task), Some(engine));
                        *ended.entry(task).or_default() += 1;
                    }
                    Decision::Fail { task, .. } => {
                        running.remove(&task);
                        *ended.entry(task).or_default() += 1;
                    }
                }
            }
            // Runs on dead engines are over for the test's bookkeeping once retried or failed.
            running.retain(|k, eng| s.engine_of(*k) == Some(*eng));
            for &id in &alive {
                assert!(s.load_of(e(id)) <= depth);
            }
            assert!(ended.values().all(|&n| n == 1), "a task ended twice");
        }
        // Everything not ended is still known to the scheduler.
        assert_eq!(s.len() as u64 + ended.len() as u64, task);
    }
}
