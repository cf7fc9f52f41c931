//! The core's paths not covered elsewhere, driven by event sequences: interrupts, a client's
//! stop request, the end of the launcher's job, a streamed array's route, the runner's
//! attachment; each test asserts the exact commands emitted.

use mpx_messages::{
    ArrayMeta, ControllerToClient as ToClient, ControllerToEngine as ToEngine, Dtype, Fds, MpxError, Rank,
    Request, SubmitReply, SubmitRequest, Targets, Task, TaskRequest,
};

use super::tests::{down, execute, failed, ids, info, register, to_client, to_engine, world, CLIENT};
use super::*;

fn interrupt(w: &mut World, targets: Targets) -> Vec<Command> {
    w.handle(Event::Interrupt { client: CLIENT, targets })
}

fn interrupted(engines: &[u32], error: Option<MpxError>) -> Command {
    to_client(ToClient::InterruptReply { engines: ids(engines), error })
}

#[test]
fn an_interrupt_goes_to_the_targeted_engines_of_worlds_that_are_up() {
    let mut w = world(false);
    let none = MpxError::NoEngines { reason: "no engines are registered".into() };
    assert_eq!(interrupt(&mut w, Targets::All), vec![interrupted(&[], Some(none))]);
    w.handle(Event::Launching);
    register(&mut w, 2, 0);
    register(&mut w, 1, 10);
    assert_eq!(
        interrupt(&mut w, Targets::All),
        vec![
            to_engine(0, ToEngine::Interrupt),
            to_engine(1, ToEngine::Interrupt),
            to_engine(2, ToEngine::Interrupt),
            interrupted(&[0, 1, 2], None),
        ]
    );
    assert_eq!(
        interrupt(&mut w, Targets::List(ids(&[2, 1, 2]))),
        vec![
            to_engine(1, ToEngine::Interrupt),
            to_engine(2, ToEngine::Interrupt),
            interrupted(&[1, 2], None)
        ]
    );
    let unknown = MpxError::NoSuchEngine { engine: EngineId(5), registered: ids(&[0, 1, 2]) };
    assert_eq!(interrupt(&mut w, Targets::List(ids(&[0, 5]))), vec![interrupted(&[], Some(unknown))]);
    // The cluster's world is dying: its engines are not interrupted, the other set's are.
    w.handle(Event::EngineGone { engine: EngineId(0), conn: ConnId(0), cause: "connection closed".into() });
    let down = MpxError::refused("engine 1 is down: its world is being torn down");
    assert_eq!(interrupt(&mut w, Targets::List(ids(&[1]))), vec![interrupted(&[], Some(down))]);
    assert_eq!(
        interrupt(&mut w, Targets::All),
        vec![to_engine(2, ToEngine::Interrupt), interrupted(&[2], None)]
    );
}

#[test]
fn a_clients_stop_request_is_answered_then_goes_to_the_runner() {
    let mut w = world(false);
    register(&mut w, 1, 0);
    assert_eq!(
        w.handle(Event::Shutdown { client: CLIENT }),
        vec![to_client(ToClient::ShutdownReply), Command::Runner(RunnerCall::StopCluster)]
    );
}

#[test]
fn the_end_of_the_launchers_job_takes_its_world_down() {
    let mut w = world(false);
    // No world of the launcher's yet: nothing to take down.
    assert_eq!(w.handle(Event::JobEnded { status: "exit code 0".into() }), vec![]);
    w.handle(Event::Launching);
    w.handle(Event::Launched { mpirun_pid: Some(42) });
    register(&mut w, 2, 0);
    assert_eq!(w.info().mpirun_pid, Some(42));
    let engines = w.info().engines;
    execute(&mut w, 3, Targets::All, "x");
    let why = "the engines' job ended (exit code 1)";
    let torn = format!("{why}; the MPI world was torn down and the cluster stops");
    assert_eq!(
        w.handle(Event::JobEnded { status: "exit code 1".into() }),
        vec![
            failed(3, 0, down(&torn)),
            failed(3, 1, down(&torn)),
            Command::SaveHistory,
            to_engine(0, ToEngine::Shutdown),
            Command::Forget { engine: EngineId(0) },
            to_engine(1, ToEngine::Shutdown),
            Command::Forget { engine: EngineId(1) },
            Command::Runner(RunnerCall::EndWorld { engines, restart: false, why: why.into() }),
        ]
    );
    assert_eq!(w.info().mpirun_pid, None);
    // While a death is being explained, the job's end changes nothing: the explanation (or its
    // deadline) takes the world down.
    w.handle(Event::Launching);
    register(&mut w, 2, 10);
    let dying = w.handle(Event::EngineGone { engine: EngineId(1), conn: ConnId(11), cause: "closed".into() });
    assert_eq!(dying.len(), 2, "{dying:?}");
    assert_eq!(w.handle(Event::JobEnded { status: "exit code 1".into() }), vec![]);
}

#[test]
fn a_streamed_push_opens_the_route_of_its_chunks_to_the_root() {
    let mut w = world(false);
    register(&mut w, 2, 0);
    let array = ArrayMeta { dtype: Dtype::F64, shape: vec![10], buffer: 0, fd: None, lent: None };
    let request = Request::Push { name: "a".into(), array: array.clone(), shared: false };
    let req =
        SubmitRequest { source: None, internal: false, req_id: RequestId(4), targets: Targets::All, request };
    // No buffer: the array's 80 bytes follow in chunks, to the root (the first engine).
    let out = w.handle(Event::Submit { client: CLIENT, req, buffers: vec![], fds: Fds::default() });
    let task = Task::Push { name: "a".into(), array, group: vec![Rank(0), Rank(1)], shared: false };
    let request =
        |task_id| ToEngine::TaskRequest(TaskRequest { task_id: TaskId(task_id), task: task.clone() });
    let plan = UpstreamPlan { req_id: RequestId(4), engine: EngineId(0), task_id: TaskId(1), total: 80 };
    assert_eq!(
        out,
        vec![
            to_engine(0, request(1)),
            Command::OpenUpstream { client: CLIENT, plan },
            to_engine(1, request(2)),
            to_client(ToClient::SubmitReply(SubmitReply {
                req_id: RequestId(4),
                engines: ids(&[0, 1]),
                error: None,
                id: Some(Ticket(1))
            })),
        ]
    );
    assert_eq!((info(&w, 0).bytes_sent, info(&w, 1).bytes_sent), (80, 0));
    assert_eq!(w.route_of(EngineId(0), TaskId(1)), Some((CLIENT, RequestId(4))));
}

#[test]
fn a_runner_attached_lets_clients_abort() {
    let mut w = World::new(Config { runner: false, ..world(false).config });
    let by_hand = MpxError::refused(
        "this controller did not start its engines (they were started by hand); stop them yourself",
    );
    assert_eq!(
        w.handle(Event::Abort { client: CLIENT, reason: "r".into() }),
        vec![to_client(ToClient::AbortReply { error: Some(by_hand) })]
    );
    assert_eq!(w.handle(Event::RunnerAttached { restart: true, batch: None }), vec![]);
    assert_eq!(
        w.handle(Event::Abort { client: CLIENT, reason: "r".into() }),
        vec![to_client(ToClient::AbortReply { error: None })]
    );
    // The controller's pid comes from its settings, not from the core's process.
    assert_eq!(w.info().controller_pid, 4242);
}

#[test]
fn an_engine_sets_ids_and_ranks_map_both_ways_and_nowhere_outside_it() {
    let set = EngineSet { base: EngineId(4), size: 2, ranks: Default::default(), dying: None };
    assert_eq!(set.engine(Rank(0)), Some(EngineId(4)));
    assert_eq!(set.engine(Rank(1)), Some(EngineId(5)));
    assert_eq!(set.engine(Rank(2)), None);
    assert_eq!(set.rank(EngineId(5)), Some(Rank(1)));
    assert_eq!(set.rank(EngineId(3)), None);
    assert_eq!(set.rank(EngineId(6)), None);
    assert_eq!(set.engines().collect::<Vec<_>>(), ids(&[4, 5]));
    assert_eq!(set.id_range(), (4, 6));
}
