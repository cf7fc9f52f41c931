//! The core driven by event sequences; each test asserts the exact commands emitted.

use std::time::Duration;

use mpx_messages::{
    ControllerToClient as ToClient, ControllerToEngine as ToEngine, EngineInfo, EngineReply, EngineState,
    Fds, Frame, MpxError, Outcome, Rank, RankInfo, RegisterReply, RegisterRequest, Request, SubmitReply,
    SubmitRequest, Targets, Task, TaskReply, TaskRequest,
};

use super::*;

pub(super) const CLIENT: ClientId = ClientId(7);

pub(super) fn world(restart: bool) -> World {
    World::new(Config {
        cluster_id: "c".into(),
        heartbeat: Duration::from_millis(500),
        restart,
        runner: true,
        task_depth: 2,
        controller_pid: 4242,
    })
}

/// Registers a world of `size` ranks (connections `conn0..`): rank 0 with every rank's
/// details, then the others with the set rank 0 was given. Returns the engine ids.
pub(super) fn register(w: &mut World, size: u32, conn0: u64) -> Vec<u32> {
    let detail =
        |rank: u32| RankInfo { rank: Rank(rank), pid: 1000 + conn0 as u32 + rank, hostname: "h".into() };
    let req = |rank: u32, set: Option<SetId>| RegisterRequest {
        rank: Rank(rank),
        size,
        pid: detail(rank).pid,
        hostname: "h".into(),
        world: if set.is_none() { (0..size).map(detail).collect() } else { vec![] },
        set,
    };
    let mut set = None;
    let mut ids = Vec::new();
    for rank in 0..size {
        let conn = ConnId(conn0 + rank as u64);
        let out = w.handle(Event::Register { conn, req: req(rank, set), local: false });
        let [Command::Registered { reply, .. }] = &out[..] else { panic!("{out:?}") };
        set = reply.set;
        ids.push(reply.engine_id.expect("registered").get());
    }
    ids
}

pub(super) fn execute(w: &mut World, req_id: u64, targets: Targets, code: &str) -> Vec<Command> {
    let req = SubmitRequest {
        source: None,
        internal: false,
        req_id: RequestId(req_id),
        targets,
        request: Request::Execute { code: code.into() },
    };
    w.handle(Event::Submit { client: CLIENT, req, buffers: vec![], fds: Fds::default() })
}

pub(super) fn to_client(msg: ToClient) -> Command {
    Command::ToClient { client: CLIENT, frame: Frame::new(msg) }
}

pub(super) fn to_engine(engine: u32, msg: ToEngine) -> Command {
    Command::ToEngine { engine: EngineId(engine), frame: Frame::new(msg) }
}

pub(super) fn failed(req_id: u64, engine: u32, error: MpxError) -> Command {
    let outcome = Outcome { error: Some(error), ..Default::default() };
    let req_id = RequestId(req_id);
    to_client(ToClient::EngineReply(EngineReply { req_id, engine_id: EngineId(engine), outcome }))
}

fn died(engine: u32, rank: u32, cause: &str) -> MpxError {
    MpxError::EngineDied { engine: EngineId(engine), rank: Rank(rank), cause: cause.into() }
}

pub(super) fn down(reason: impl Into<String>) -> MpxError {
    MpxError::WorldDown { reason: reason.into() }
}

pub(super) fn ids(ids: &[u32]) -> Vec<EngineId> {
    ids.iter().copied().map(EngineId).collect()
}

pub(super) fn info(w: &World, engine: u32) -> EngineInfo {
    w.info().engines.into_iter().find(|e| e.id == EngineId(engine)).unwrap()
}

#[test]
fn a_world_registers_and_its_ranks_attach() {
    let mut w = world(false);
    let first = RegisterRequest {
        rank: Rank(0),
        size: 2,
        pid: 10,
        hostname: "h".into(),
        world: vec![
            RankInfo { rank: Rank(0), pid: 10, hostname: "h".into() },
            RankInfo { rank: Rank(1), pid: 11, hostname: "h".into() },
        ],
        set: None,
    };
    let reply = |engine_id, set: u32| RegisterReply {
        engine_id: Some(EngineId(engine_id)),
        cluster_id: "c".into(),
        error: None,
        heartbeat_ms: 500,
        set: Some(SetId(set)),
    };
    assert_eq!(
        w.handle(Event::Register { conn: ConnId(1), req: first.clone(), local: false }),
        vec![Command::Registered { conn: ConnId(1), reply: reply(0, 0) }]
    );
    // Rank 1 must match its world's registration.
    let mut other =
        RegisterRequest { rank: Rank(1), pid: 99, world: vec![], set: Some(SetId(0)), ..first.clone() };
    let refused = |conn: u64, why: registry::RegisterRefused| Command::Registered {
        conn: ConnId(conn),
        reply: RegisterReply {
            engine_id: None,
            cluster_id: "c".into(),
            error: Some(MpxError::refused(why.to_string())),
            heartbeat_ms: 0,
            set: None,
        },
    };
    assert_eq!(
        w.handle(Event::Register { conn: ConnId(2), req: other.clone(), local: false }),
        vec![refused(2, registry::RegisterRefused::Mismatch { set: SetId(0), rank: Rank(1) })]
    );
    let outside = RegisterRequest { rank: Rank(7), ..other.clone() };
    assert_eq!(
        w.handle(Event::Register { conn: ConnId(2), req: outside, local: false }),
        vec![refused(2, registry::RegisterRefused::OutsideSet { rank: Rank(7), set: SetId(0), size: 2 })]
    );
    let no_set = RegisterRequest { set: Some(SetId(5)), ..other.clone() };
    assert_eq!(
        w.handle(Event::Register { conn: ConnId(2), req: no_set, local: false }),
        vec![refused(2, registry::RegisterRefused::NoSuchSet(SetId(5)))]
    );
    other.pid = 11;
    assert_eq!(
        w.handle(Event::Register { conn: ConnId(3), req: other.clone(), local: false }),
        vec![Command::Registered { conn: ConnId(3), reply: reply(1, 0) }]
    );
    // Twice is refused; a second world gets the next set and ids.
    assert_eq!(
        w.handle(Event::Register { conn: ConnId(4), req: other, local: false }),
        vec![refused(4, registry::RegisterRefused::AlreadyRegistered { set: SetId(0), rank: Rank(1) })]
    );
    assert_eq!(register(&mut w, 3, 10), vec![2, 3, 4]);
    assert_eq!(info(&w, 3).set, SetId(1));
    assert_eq!(info(&w, 3).rank, Rank(1));
}

#[test]
fn a_request_across_sets_runs_on_every_engine_and_results_go_back() {
    let mut w = world(false);
    w.handle(Event::Launching);
    register(&mut w, 2, 0);
    register(&mut w, 2, 10);
    let out = execute(&mut w, 5, Targets::All, "rank");
    let task = |task_id| {
        ToEngine::TaskRequest(TaskRequest {
            task_id: TaskId(task_id),
            task: Task::Execute { code: "rank".into() },
        })
    };
    assert_eq!(
        out,
        vec![
            to_engine(0, task(1)),
            to_engine(1, task(2)),
            to_engine(2, task(3)),
            to_engine(3, task(4)),
            to_client(ToClient::SubmitReply(SubmitReply {
                req_id: RequestId(5),
                engines: ids(&[0, 1, 2, 3]),
                error: None,
                id: Some(Ticket(1)),
            })),
        ]
    );
    assert_eq!(w.route_of(EngineId(2), TaskId(3)), Some((CLIENT, RequestId(5))));
    assert_eq!(w.route_of(EngineId(1), TaskId(3)), None, "a task is routed for its own engine only");
    let outcome = Outcome { value: Some("0".into()), ..Default::default() };
    let out = w.handle(Event::EngineReply {
        engine: EngineId(2),
        reply: TaskReply { task_id: TaskId(3), outcome: outcome.clone() },
        buffers: vec![],
        fds: Fds::default(),
    });
    assert_eq!(
        out,
        vec![to_client(ToClient::EngineReply(EngineReply {
            req_id: RequestId(5),
            engine_id: EngineId(2),
            outcome
        }))]
    );
    // A collective never spans sets.
    let req = SubmitRequest {
        source: None,
        internal: false,
        req_id: RequestId(6),
        targets: Targets::All,
        request: Request::Gather { name: "a".into(), shm: false, returned: Vec::new() },
    };
    let out = w.handle(Event::Submit { client: CLIENT, req, buffers: vec![], fds: Fds::default() });
    assert!(matches!(&out[..], [Command::ToClient { frame, .. }]
        if matches!(&frame.header, ToClient::SubmitReply(r) if r.error.as_ref().unwrap().to_string().contains("engine sets"))));
}

#[test]
fn a_death_mid_request_is_explained_then_the_world_goes_down() {
    let mut w = world(false);
    w.handle(Event::Launching);
    w.handle(Event::Launched { mpirun_pid: Some(42) });
    register(&mut w, 4, 0);
    let engines = w.info().engines;
    execute(&mut w, 9, Targets::All, "barrier()");
    let out = w.handle(Event::EngineGone {
        engine: EngineId(2),
        conn: ConnId(2),
        cause: "connection closed".into(),
    });
    assert_eq!(
        out,
        vec![
            Command::Runner(RunnerCall::ExplainDeath { engine: EngineId(2), rank: Rank(2) }),
            Command::Wake { after: DEATH_REPORT_FALLBACK, timer: Timer::DeathReport(EngineId(2)) },
        ]
    );
    // mpirun ends the other ranks: expected now, and nothing can be submitted to the world.
    assert_eq!(
        w.handle(Event::EngineGone {
            engine: EngineId(1),
            conn: ConnId(1),
            cause: "connection closed".into()
        }),
        vec![]
    );
    let out = execute(&mut w, 10, Targets::All, "1");
    assert!(
        matches!(&out[..], [Command::ToClient { frame, .. }]
        if matches!(&frame.header, ToClient::SubmitReply(r) if r.error.is_some())),
        "{out:?}"
    );
    let out = w.handle(Event::DeathExplained {
        engine: EngineId(2),
        cause: Some("killed by signal 9 (Killed)".into()),
    });
    let note = "; the MPI world was torn down and the cluster stops";
    let others = format!("engine 2 died (killed by signal 9 (Killed)){note}");
    assert_eq!(
        out,
        vec![
            failed(9, 0, down(&others)),
            failed(9, 1, down(&others)),
            failed(9, 2, died(2, 2, &format!("killed by signal 9 (Killed){note}"))),
            failed(9, 3, down(&others)),
            Command::SaveHistory,
            to_engine(0, ToEngine::Shutdown),
            Command::Forget { engine: EngineId(0) },
            Command::Forget { engine: EngineId(1) },
            Command::Forget { engine: EngineId(2) },
            to_engine(3, ToEngine::Shutdown),
            Command::Forget { engine: EngineId(3) },
            Command::Runner(RunnerCall::EndWorld {
                engines,
                restart: false,
                why: "engine 2 died: killed by signal 9 (Killed)".into()
            }),
        ]
    );
    // The fallback deadline finds nothing left to do.
    assert_eq!(w.handle(Event::Timer(Timer::DeathReport(EngineId(2)))), vec![]);
    assert!(w.info().engines.is_empty());
}

#[test]
fn a_death_in_engine_set_1_takes_down_that_set_only() {
    let mut w = world(false);
    w.handle(Event::Launching);
    register(&mut w, 2, 0);
    register(&mut w, 2, 10);
    let set1 = vec![info(&w, 2), info(&w, 3)];
    execute(&mut w, 1, Targets::All, "x");
    // No launcher to ask: set 1 goes down at once, with what the connection knew.
    let out = w.handle(Event::EngineGone {
        engine: EngineId(3),
        conn: ConnId(11),
        cause: "connection closed".into(),
    });
    let note = "; engine set 1 was torn down (other sets go on)";
    assert_eq!(
        out,
        vec![
            failed(1, 2, down(format!("engine 3 died (connection closed){note}"))),
            failed(1, 3, died(3, 1, &format!("connection closed{note}"))),
            to_engine(2, ToEngine::Shutdown),
            Command::Forget { engine: EngineId(2) },
            Command::Forget { engine: EngineId(3) },
            Command::Reap { engines: set1 },
        ]
    );
    // Set 0 goes on: its pending tasks still answer, new requests run there.
    let reply = TaskReply { task_id: TaskId(1), outcome: Outcome::default() };
    let out =
        w.handle(Event::EngineReply { engine: EngineId(0), reply, buffers: vec![], fds: Fds::default() });
    assert_eq!(out.len(), 1);
    let out = execute(&mut w, 2, Targets::All, "y");
    assert!(
        matches!(out.last(), Some(Command::ToClient { frame, .. })
        if matches!(&frame.header, ToClient::SubmitReply(r) if r.engines == ids(&[0, 1]))),
        "{out:?}"
    );
    assert_eq!(w.launched_engines(), 2);
    // A new world takes the freed set and ids.
    assert_eq!(register(&mut w, 2, 20), vec![2, 3]);
    assert_eq!(info(&w, 2).set, SetId(1));
}

#[test]
fn an_abort_restarts_the_world_and_late_news_of_the_old_one_is_ignored() {
    let mut w = world(true);
    w.handle(Event::Launching);
    register(&mut w, 2, 0);
    let engines = w.info().engines;
    execute(&mut w, 3, Targets::All, "loop {}");
    let out = w.handle(Event::Abort { client: CLIENT, reason: "test".into() });
    let why = "test; the MPI world is being restarted (variables are lost)";
    assert_eq!(
        out,
        vec![
            failed(3, 0, down(why)),
            failed(3, 1, down(why)),
            Command::SaveHistory,
            to_engine(0, ToEngine::Shutdown),
            Command::Forget { engine: EngineId(0) },
            to_engine(1, ToEngine::Shutdown),
            Command::Forget { engine: EngineId(1) },
            Command::Runner(RunnerCall::EndWorld { engines, restart: true, why: "test".into() }),
            to_client(ToClient::AbortReply { error: None }),
        ]
    );
    // The runner restarts it: fresh engines get the same ids.
    w.handle(Event::Launching);
    assert_eq!(register(&mut w, 2, 10), vec![0, 1]);
    assert_eq!(w.launched_engines(), 2);
    // The old connections closing now is no death.
    assert_eq!(
        w.handle(Event::EngineGone { engine: EngineId(0), conn: ConnId(0), cause: "closed".into() }),
        vec![]
    );
    assert_eq!(w.handle(Event::HeartbeatMissed { engine: EngineId(1), conn: ConnId(1), missed: 3 }), vec![]);
    // A rank that stops answering heartbeats is a death of the new world.
    assert_eq!(w.handle(Event::HeartbeatMissed { engine: EngineId(1), conn: ConnId(11), missed: 2 }), vec![]);
    assert_eq!(
        w.handle(Event::HeartbeatMissed { engine: EngineId(1), conn: ConnId(11), missed: 3 }),
        vec![
            Command::CloseEngine { engine: EngineId(1) },
            Command::Runner(RunnerCall::ExplainDeath { engine: EngineId(1), rank: Rank(1) }),
            Command::Wake { after: DEATH_REPORT_FALLBACK, timer: Timer::DeathReport(EngineId(1)) },
        ]
    );
    // No explanation comes: the deadline takes the world down with the heartbeat's cause.
    let out = w.handle(Event::Timer(Timer::DeathReport(EngineId(1))));
    assert!(
        matches!(out.last(), Some(Command::Runner(RunnerCall::EndWorld { restart: true, why, .. }))
        if why == "engine 1 died: it missed 3 heartbeats (500 ms period)"),
        "{out:?}"
    );
}

#[test]
fn where_answers_at_the_deadline_with_a_silent_rank_as_none() {
    let mut w = world(false);
    register(&mut w, 3, 0);
    let out = w.handle(Event::Where { client: CLIENT });
    assert_eq!(
        out,
        vec![
            to_engine(0, ToEngine::StatusRequest { req: PollId(1) }),
            to_engine(1, ToEngine::StatusRequest { req: PollId(1) }),
            to_engine(2, ToEngine::StatusRequest { req: PollId(1) }),
            Command::Wake { after: WHERE_WAIT, timer: Timer::Where(PollId(1)) },
        ]
    );
    let state = EngineState {
        activity: "mpi".into(),
        cell: Some(2),
        call: Some("barrier".into()),
        comm: Some("COMM_WORLD".into()),
        seconds: 1.0,
        detail: None,
    };
    assert_eq!(
        w.handle(Event::EngineStatus { engine: EngineId(0), poll: PollId(1), state: state.clone() }),
        vec![]
    );
    assert_eq!(
        w.handle(Event::EngineStatus { engine: EngineId(2), poll: PollId(1), state: state.clone() }),
        vec![]
    );
    let states =
        vec![(EngineId(0), Some(state.clone())), (EngineId(1), None), (EngineId(2), Some(state.clone()))];
    assert_eq!(
        w.handle(Event::Timer(Timer::Where(PollId(1)))),
        vec![to_client(ToClient::WhereReply { states })]
    );
    // A late answer or deadline of a finished poll is dropped; a poll all answer ends at once.
    assert_eq!(
        w.handle(Event::EngineStatus { engine: EngineId(1), poll: PollId(1), state: state.clone() }),
        vec![]
    );
    assert_eq!(w.handle(Event::Timer(Timer::Where(PollId(1)))), vec![]);
    w.handle(Event::Where { client: CLIENT });
    w.handle(Event::EngineStatus { engine: EngineId(0), poll: PollId(2), state: state.clone() });
    w.handle(Event::EngineStatus { engine: EngineId(1), poll: PollId(2), state: state.clone() });
    let out = w.handle(Event::EngineStatus { engine: EngineId(2), poll: PollId(2), state: state.clone() });
    assert!(
        matches!(&out[..], [Command::ToClient { frame, .. }] if matches!(frame.header, ToClient::WhereReply { .. }))
    );
}

#[test]
fn a_request_whose_client_left_is_kept_and_adopted_by_another_client() {
    let mut w = world(false);
    register(&mut w, 2, 0);
    execute(&mut w, 5, Targets::All, "work()");
    // Engine 0 answers while its client waits; then the client goes.
    let reply = |task_id, text: &str| TaskReply {
        task_id: TaskId(task_id),
        outcome: Outcome { value: Some(text.into()), ..Default::default() },
    };
    let out = w.handle(Event::EngineReply {
        engine: EngineId(0),
        reply: reply(1, "a"),
        buffers: vec![],
        fds: Fds::default(),
    });
    assert_eq!(out.len(), 1);
    assert!(w.handle(Event::ClientLeft { client: CLIENT, now: 10.0 }).is_empty());
    assert_eq!(w.route_of(EngineId(1), TaskId(2)), None, "nobody waits: the output goes to the core");
    let piece = mpx_messages::TaskOutput {
        task_id: TaskId(2),
        stream: mpx_messages::StreamName::Stdout,
        text: "late\n".into(),
    };
    assert!(w.handle(Event::EngineOutput { engine: EngineId(1), output: piece, now: 11.0 }).is_empty());
    // The request is complete: only its history is saved (its reply is kept).
    assert_eq!(
        w.handle(Event::EngineReply {
            engine: EngineId(1),
            reply: reply(2, "b"),
            buffers: vec![],
            fds: Fds::default()
        }),
        vec![Command::SaveHistory]
    );
    // Another client adopts request 1 as its request 3: acceptance, output, reply.
    let other = ClientId(8);
    let out = w.handle(Event::Adopt { client: other, req_id: RequestId(3), id: Ticket(1), now: 12.0 });
    let to = |msg| Command::ToClient { client: other, frame: Frame::new(msg) };
    let output = mpx_messages::EngineOutput {
        req_id: RequestId(3),
        engine_id: EngineId(1),
        stream: mpx_messages::StreamName::Stdout,
        text: "late\n".into(),
    };
    let outcome = Outcome { value: Some("b".into()), ..Default::default() };
    assert_eq!(
        out,
        vec![
            to(ToClient::SubmitReply(SubmitReply {
                req_id: RequestId(3),
                engines: ids(&[1]),
                error: None,
                id: Some(Ticket(1))
            })),
            to(ToClient::Output(output)),
            to(ToClient::EngineReply(EngineReply { req_id: RequestId(3), engine_id: EngineId(1), outcome })),
        ]
    );
    // Given once.
    let out = w.handle(Event::Adopt { client: other, req_id: RequestId(4), id: Ticket(1), now: 13.0 });
    let [Command::ToClient { frame, .. }] = &out[..] else { panic!("{out:?}") };
    let ToClient::SubmitReply(SubmitReply { error: Some(MpxError::Refused { reason }), .. }) = &frame.header
    else {
        panic!("{out:?}")
    };
    assert!(reason.starts_with("request 1 is not kept"), "{reason}");
}
