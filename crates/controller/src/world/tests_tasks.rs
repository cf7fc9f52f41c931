//! The core's load-balanced tasks driven by event sequences (see `balanced.rs`); each test
//! asserts the exact commands emitted. The test world lets an engine hold 2 tasks at once.

use mpx_messages::{
    Arg, ArrayMeta, BalancedRequest, BalancedResult, BalancedTask, ControllerToClient as ToClient,
    ControllerToEngine as ToEngine, Dtype, EngineReply, Fds, Frame, MpxError, Outcome, Payload, Rank,
    Request, SubmitReply, Targets, Task, TaskReply, TaskRequest,
};

use super::tests::{ids, info, register, to_client, to_engine, world, CLIENT};
use super::*;

/// Another client.
const OTHER: ClientId = ClientId(8);

/// Submits load-balanced `Execute` tasks `(client's id, code)`.
fn submit(
    w: &mut World,
    client: ClientId,
    targets: Targets,
    retries: u32,
    tasks: &[(u64, &str)],
) -> Vec<Command> {
    let tasks = tasks
        .iter()
        .map(|&(id, code)| BalancedTask { id: TaskId(id), task: Request::Execute { code: code.into() } })
        .collect();
    let req = BalancedRequest { targets, retries, tasks };
    w.handle(Event::SubmitBalanced { client, req, buffers: vec![] })
}

/// The engines' registration answers are queued, in this order; returns what it led to.
fn ready(w: &mut World, engines: &[u32]) -> Vec<Command> {
    engines.iter().flat_map(|&e| w.handle(Event::EngineReady { engine: EngineId(e) })).collect()
}

/// Engine `engine` answers task `task_id` with `value`.
fn answer(w: &mut World, engine: u32, task_id: u64, value: &str) -> Vec<Command> {
    let outcome = Outcome { value: Some(value.into()), ..Default::default() };
    let reply = TaskReply { task_id: TaskId(task_id), outcome };
    w.handle(Event::EngineReply { engine: EngineId(engine), reply, buffers: vec![], fds: Fds::default() })
}

/// Task `task_id` (code `code`) goes to engine `engine`.
fn run(engine: u32, task_id: u64, code: &str) -> Command {
    to_engine(
        engine,
        ToEngine::TaskRequest(TaskRequest {
            task_id: TaskId(task_id),
            task: Task::Execute { code: code.into() },
        }),
    )
}

fn to(client: ClientId, result: BalancedResult) -> Command {
    Command::ToClient { client, frame: Frame::new(ToClient::BalancedResults(vec![result])) }
}

/// The client's task `id` answered `value` on `engine` at its `attempts`th attempt.
fn result(client: ClientId, id: u64, engine: u32, value: &str, attempts: u32) -> Command {
    let outcome = Outcome { value: Some(value.into()), ..Default::default() };
    to(client, BalancedResult { id: TaskId(id), engine_id: Some(EngineId(engine)), outcome, attempts })
}

#[test]
fn tasks_go_to_the_least_loaded_engine_and_each_result_goes_back_alone() {
    let mut w = world(false);
    register(&mut w, 2, 0);
    assert_eq!(ready(&mut w, &[0, 1]), vec![]);
    // Each engine holds two: the fifth waits.
    let tasks = [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")];
    assert_eq!(
        submit(&mut w, CLIENT, Targets::All, 0, &tasks),
        vec![run(0, 1, "a"), run(1, 2, "b"), run(0, 3, "c"), run(1, 4, "d")]
    );
    // A direct request takes the next task id: one counter, replies routed by it.
    let direct =
        ToEngine::TaskRequest(TaskRequest { task_id: TaskId(6), task: Task::Execute { code: "x".into() } });
    assert_eq!(
        super::tests::execute(&mut w, 9, Targets::List(ids(&[0])), "x"),
        vec![
            to_engine(0, direct),
            to_client(ToClient::SubmitReply(SubmitReply {
                req_id: RequestId(9),
                engines: ids(&[0]),
                error: None,
                id: Some(Ticket(1))
            })),
        ]
    );
    // Engine 1 is done first: the result goes back, the waiting task takes the freed slot.
    assert_eq!(answer(&mut w, 1, 2, "B"), vec![result(CLIENT, 2, 1, "B", 1), run(1, 5, "e")]);
    let outcome = Outcome { value: Some("X".into()), ..Default::default() };
    assert_eq!(
        answer(&mut w, 0, 6, "X"),
        vec![
            to_client(ToClient::EngineReply(EngineReply {
                req_id: RequestId(9),
                engine_id: EngineId(0),
                outcome
            })),
            Command::SaveHistory,
        ]
    );
    // An answer from another engine than the task's, or a second one, is dropped.
    assert_eq!(answer(&mut w, 0, 4, "D?"), vec![]);
    assert_eq!(answer(&mut w, 1, 2, "B again"), vec![]);
    // Tasks for a list of engines go there only: engine 0 is idle, but this one waits for 1.
    assert_eq!(submit(&mut w, OTHER, Targets::List(ids(&[1])), 0, &[(1, "f")]), vec![]);
    assert_eq!(answer(&mut w, 1, 4, "D"), vec![result(CLIENT, 4, 1, "D", 1), run(1, 7, "f")]);
}

#[test]
fn an_apply_task_carries_only_its_own_buffers() {
    let mut w = world(false);
    register(&mut w, 1, 0);
    ready(&mut w, &[0]);
    let array =
        |buffer| Arg::Array(ArrayMeta { dtype: Dtype::F64, shape: vec![1], buffer, fd: None, lent: None });
    let apply = |buffer| Request::Apply { function: "f".into(), args: vec![Arg::Int(1), array(buffer)] };
    let (b0, b1) = (Payload::new(vec![0u8; 8]), Payload::new(vec![1u8; 8]));
    let req = BalancedRequest {
        targets: Targets::All,
        retries: 0,
        tasks: vec![
            BalancedTask { id: TaskId(1), task: apply(1) },
            BalancedTask { id: TaskId(2), task: apply(2) },
        ],
    };
    let out = w.handle(Event::SubmitBalanced { client: CLIENT, req, buffers: vec![b0, b1.clone()] });
    let task = Task::Apply { function: "f".into(), args: vec![Arg::Int(1), array(0)] };
    let request = ToEngine::TaskRequest(TaskRequest { task_id: TaskId(1), task });
    let missing = MpxError::refused("array buffer 2 is missing");
    assert_eq!(
        out,
        vec![
            Command::ToEngine { engine: EngineId(0), frame: Frame::with_payloads(request, vec![b1]) },
            to(CLIENT, BalancedResult::failed(TaskId(2), None, missing, 0)),
        ]
    );
}

#[test]
fn collectives_and_tasks_without_engines_are_refused() {
    let mut w = world(false);
    let none = MpxError::NoEngines { reason: "no engines are registered".into() };
    assert_eq!(
        submit(&mut w, CLIENT, Targets::All, 0, &[(1, "a")]),
        vec![to(CLIENT, BalancedResult::failed(TaskId(1), None, none, 0))]
    );
    register(&mut w, 2, 0);
    ready(&mut w, &[0, 1]);
    let gather = BalancedTask {
        id: TaskId(2),
        task: Request::Gather { name: "a".into(), shm: false, returned: Vec::new() },
    };
    let req = BalancedRequest { targets: Targets::All, retries: 0, tasks: vec![gather] };
    let out = w.handle(Event::SubmitBalanced { client: CLIENT, req, buffers: vec![] });
    let refused = MpxError::refused(
        "a load-balanced task runs code on one engine (execute, run or apply); data moves and \
         collectives go to every engine of a world (a direct view)",
    );
    assert_eq!(out, vec![to(CLIENT, BalancedResult::failed(TaskId(2), None, refused, 0))]);
    let unknown = format!("no engine 5 (registered: {:?})", [&EngineId(0), &EngineId(1)]);
    let unknown = MpxError::NoEngines { reason: unknown };
    assert_eq!(
        submit(&mut w, CLIENT, Targets::List(ids(&[5])), 0, &[(3, "a")]),
        vec![to(CLIENT, BalancedResult::failed(TaskId(3), None, unknown, 0))]
    );
}

#[test]
fn a_task_is_retried_after_its_engine_set_died() {
    let mut w = world(false);
    w.handle(Event::Launching);
    register(&mut w, 2, 0);
    register(&mut w, 2, 10);
    assert_eq!(ready(&mut w, &[0, 1, 2, 3]), vec![]);
    let set1 = vec![info(&w, 2), info(&w, 3)];
    let tasks = [(1, "a"), (2, "b"), (3, "c"), (4, "d")];
    assert_eq!(
        submit(&mut w, CLIENT, Targets::All, 1, &tasks),
        vec![run(0, 1, "a"), run(1, 2, "b"), run(2, 3, "c"), run(3, 4, "d")]
    );
    // Without retries, on set 1 only.
    assert_eq!(submit(&mut w, CLIENT, Targets::List(ids(&[2, 3])), 0, &[(5, "e")]), vec![run(2, 5, "e")]);
    // Set 1 goes down: its tasks with a retry left run again on set 0, the other fails.
    let out = w.handle(Event::EngineGone {
        engine: EngineId(3),
        conn: ConnId(11),
        cause: "connection closed".into(),
    });
    let torn = "engine 3 died (connection closed); engine set 1 was torn down (other sets go on)";
    let died = MpxError::EngineDied { engine: EngineId(2), rank: Rank(0), cause: torn.into() };
    assert_eq!(
        out,
        vec![
            to(CLIENT, BalancedResult::failed(TaskId(5), Some(EngineId(2)), died, 1)),
            run(0, 3, "c"),
            run(1, 4, "d"),
            to_engine(2, ToEngine::Shutdown),
            Command::Forget { engine: EngineId(2) },
            Command::Forget { engine: EngineId(3) },
            Command::Reap { engines: set1 },
        ]
    );
    assert_eq!(answer(&mut w, 0, 3, "C"), vec![result(CLIENT, 3, 0, "C", 2)]);
    // A late answer of the dead engine is dropped.
    assert_eq!(answer(&mut w, 3, 4, "D"), vec![]);
    assert_eq!(answer(&mut w, 1, 4, "D"), vec![result(CLIENT, 4, 1, "D", 2)]);
}

#[test]
fn while_the_clusters_world_restarts_its_tasks_wait_for_it() {
    let mut w = world(true);
    w.handle(Event::Launching);
    register(&mut w, 2, 0);
    ready(&mut w, &[0, 1]);
    assert_eq!(submit(&mut w, CLIENT, Targets::All, 1, &[(1, "a")]), vec![run(0, 1, "a")]);
    assert_eq!(
        w.handle(Event::EngineGone {
            engine: EngineId(1),
            conn: ConnId(1),
            cause: "connection closed".into()
        }),
        vec![
            Command::Runner(RunnerCall::ExplainDeath { engine: EngineId(1), rank: Rank(1) }),
            Command::Wake { after: DEATH_REPORT_FALLBACK, timer: Timer::DeathReport(EngineId(1)) },
        ]
    );
    // The dying world takes no more tasks: a new one waits, as the world may come back.
    assert_eq!(submit(&mut w, CLIENT, Targets::All, 0, &[(2, "b")]), vec![]);
    let engines = w.info().engines;
    let out = w.handle(Event::DeathExplained { engine: EngineId(1), cause: Some("killed".into()) });
    assert_eq!(
        out,
        vec![
            to_engine(0, ToEngine::Shutdown),
            Command::Forget { engine: EngineId(0) },
            Command::Forget { engine: EngineId(1) },
            Command::Runner(RunnerCall::EndWorld {
                engines,
                restart: true,
                why: "engine 1 died: killed".into()
            }),
        ]
    );
    // The new world's engines take the waiting tasks as they become ready, oldest first.
    w.handle(Event::Launching);
    assert_eq!(register(&mut w, 2, 10), vec![0, 1]);
    assert_eq!(ready(&mut w, &[0]), vec![run(0, 1, "a"), run(0, 2, "b")]);
    assert_eq!(ready(&mut w, &[1]), vec![]);
    assert_eq!(answer(&mut w, 0, 1, "A"), vec![result(CLIENT, 1, 0, "A", 2)]);
}

#[test]
fn a_failed_restart_fails_the_waiting_tasks() {
    let mut w = world(true);
    w.handle(Event::Launching);
    register(&mut w, 1, 0);
    ready(&mut w, &[0]);
    assert_eq!(submit(&mut w, CLIENT, Targets::All, 0, &[(1, "a")]), vec![run(0, 1, "a")]);
    w.handle(Event::Abort { client: CLIENT, reason: "test".into() });
    // Meanwhile a task waits for the restarting world.
    assert_eq!(submit(&mut w, CLIENT, Targets::All, 0, &[(2, "b")]), vec![]);
    // The runner could not restart it: the cluster stops.
    let out = w.handle(Event::StopEngines);
    let none = MpxError::NoEngines { reason: "every targeted engine is gone".into() };
    assert_eq!(
        out,
        vec![
            to(CLIENT, BalancedResult::failed(TaskId(2), None, none, 0)),
            Command::EnginesStopped { engines: vec![] }
        ]
    );
}

#[test]
fn a_clients_tasks_end_when_it_leaves_but_their_slots_wait_for_the_answers() {
    let mut w = world(false);
    register(&mut w, 1, 0);
    ready(&mut w, &[0]);
    let tasks = [(1, "a"), (2, "b"), (3, "c")];
    assert_eq!(submit(&mut w, CLIENT, Targets::All, 0, &tasks), vec![run(0, 1, "a"), run(0, 2, "b")]);
    assert_eq!(w.handle(Event::ClientLeft { client: CLIENT, now: 1.0 }), vec![]);
    // The engine still holds the two: another client's task waits for a slot.
    assert_eq!(submit(&mut w, OTHER, Targets::All, 0, &[(1, "z")]), vec![]);
    assert_eq!(answer(&mut w, 0, 1, "A"), vec![run(0, 4, "z")]);
    assert_eq!(answer(&mut w, 0, 2, "B"), vec![]);
    assert_eq!(answer(&mut w, 0, 4, "Z"), vec![result(OTHER, 1, 0, "Z", 1)]);
}

#[test]
fn the_clusters_stop_fails_the_running_tasks_and_answers_the_runner() {
    let mut w = world(false);
    w.handle(Event::Launching);
    register(&mut w, 2, 0);
    ready(&mut w, &[0, 1]);
    let engines = w.info().engines;
    assert_eq!(submit(&mut w, CLIENT, Targets::List(ids(&[1])), 0, &[(1, "a")]), vec![run(1, 1, "a")]);
    let stopping = "the cluster is stopping";
    let died = MpxError::EngineDied { engine: EngineId(1), rank: Rank(1), cause: stopping.into() };
    assert_eq!(
        w.handle(Event::StopEngines),
        vec![
            to(CLIENT, BalancedResult::failed(TaskId(1), Some(EngineId(1)), died, 1)),
            to_engine(0, ToEngine::Shutdown),
            Command::Forget { engine: EngineId(0) },
            to_engine(1, ToEngine::Shutdown),
            Command::Forget { engine: EngineId(1) },
            Command::EnginesStopped { engines },
        ]
    );
    assert!(w.info().engines.is_empty());
    assert_eq!(w.launched_engines(), 0);
}
