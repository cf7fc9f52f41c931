//! The core's stuck-rank and restart paths driven by event sequences (see [`super::stuck`]);
//! each test asserts the exact commands emitted.

use mpx_messages::{
    Abandoned, Blocked, BlockedRank, ControllerToClient as ToClient, ControllerToEngine as ToEngine, Fds,
    Frame, LeftRank, MpxError, Outcome, RemoteError, Stuck, SubmitReply, Targets, TaskReply, TaskRequest,
};

use super::stuck::STUCK_GATHER;
use super::tests::{down, execute, failed, ids, register, to_client, to_engine, world, CLIENT};
use super::*;

/// A launched world of 4 ranks with request 1 (tasks 1..=4) running on all of them.
fn running() -> World {
    let mut w = world(false);
    w.handle(Event::Launching);
    register(&mut w, 4, 0);
    for e in 0..4 {
        w.handle(Event::EngineReady { engine: EngineId(e) });
    }
    execute(&mut w, 1, Targets::All, "cell");
    w
}

fn blocked(task_id: u64, call: &str, peer: Option<u32>) -> Blocked {
    Blocked {
        task_id: TaskId(task_id),
        call: call.into(),
        comm: "COMM_WORLD".into(),
        detail: Some("<cell-1> line 4".into()),
        members: (0..4).map(Rank).collect(),
        peer: peer.map(Rank),
    }
}

fn reply(task_id: u64, error: Option<&str>) -> TaskReply {
    let error = error.map(|e| MpxError::Cell(RemoteError::new(e, "boom")));
    TaskReply { task_id: TaskId(task_id), outcome: Outcome { error, ..Default::default() } }
}

fn blocked_rank(engine: u32, call: &str) -> BlockedRank {
    BlockedRank {
        engine_id: EngineId(engine),
        rank: Rank(engine),
        call: call.into(),
        comm: "COMM_WORLD".into(),
        detail: Some("<cell-1> line 4".into()),
    }
}

#[test]
fn ranks_waiting_for_a_rank_that_failed_are_told_once_after_the_gather() {
    let mut w = running();
    // Rank 0 fails: its reply goes to the client; nobody is blocked yet.
    let out = w.handle(Event::EngineReply {
        engine: EngineId(0),
        reply: reply(1, Some("ZeroDivisionError")),
        buffers: vec![],
        fds: Fds::default(),
    });
    assert_eq!(out.len(), 1);
    // Ranks 1-3 report their Barrier; one timer gathers them.
    let out = w.handle(Event::EngineBlocked { engine: EngineId(1), report: blocked(2, "Barrier", None) });
    assert_eq!(out, vec![Command::Wake { after: STUCK_GATHER, timer: Timer::Stuck(Ticket(1)) }]);
    for (engine, task) in [(2, 3), (3, 4)] {
        let out = w.handle(Event::EngineBlocked {
            engine: EngineId(engine),
            report: blocked(task, "Barrier", None),
        });
        assert_eq!(out, vec![]);
    }
    let stuck = Stuck {
        req_id: RequestId(1),
        set: SetId(0),
        blocked: vec![blocked_rank(1, "Barrier"), blocked_rank(2, "Barrier"), blocked_rank(3, "Barrier")],
        left: vec![LeftRank {
            engine_id: EngineId(0),
            rank: Rank(0),
            error: Some("ZeroDivisionError".into()),
        }],
    };
    assert_eq!(w.handle(Event::Timer(Timer::Stuck(Ticket(1)))), vec![to_client(ToClient::Stuck(stuck))]);
    // Told once: a report again (or the timer again) says nothing new.
    w.handle(Event::EngineBlocked { engine: EngineId(3), report: blocked(4, "Barrier", None) });
    assert_eq!(w.handle(Event::Timer(Timer::Stuck(Ticket(1)))), vec![]);
}

#[test]
fn a_receive_waits_for_its_source_only_and_a_returned_call_is_taken_back() {
    let mut w = running();
    // Rank 1 waits for rank 2 (still running), rank 3 finished: nothing to tell.
    w.handle(Event::EngineReply {
        engine: EngineId(3),
        reply: reply(4, None),
        buffers: vec![],
        fds: Fds::default(),
    });
    let out = w.handle(Event::EngineBlocked { engine: EngineId(1), report: blocked(2, "Recv", Some(2)) });
    assert_eq!(out, vec![Command::Wake { after: STUCK_GATHER, timer: Timer::Stuck(Ticket(1)) }]);
    assert_eq!(w.handle(Event::Timer(Timer::Stuck(Ticket(1)))), vec![]);
    // Rank 1's receive completes, then rank 2 finishes: still nothing (the report was taken back).
    assert_eq!(w.handle(Event::EngineUnblocked { engine: EngineId(1), task_id: TaskId(2) }), vec![]);
    let out = w.handle(Event::EngineReply {
        engine: EngineId(2),
        reply: reply(3, None),
        buffers: vec![],
        fds: Fds::default(),
    });
    assert_eq!(out.len(), 1, "{out:?}");
    // Blocked again on rank 2, which has left: told, with rank 2 finished.
    w.handle(Event::EngineBlocked { engine: EngineId(1), report: blocked(2, "Recv", Some(2)) });
    let stuck = Stuck {
        req_id: RequestId(1),
        set: SetId(0),
        blocked: vec![blocked_rank(1, "Recv")],
        left: vec![LeftRank { engine_id: EngineId(2), rank: Rank(2), error: None }],
    };
    assert_eq!(w.handle(Event::Timer(Timer::Stuck(Ticket(1)))), vec![to_client(ToClient::Stuck(stuck))]);
}

#[test]
fn ranks_in_calls_that_do_not_match_are_told() {
    let mut w = running();
    w.handle(Event::EngineBlocked { engine: EngineId(0), report: blocked(1, "Allreduce", None) });
    for (engine, task) in [(1, 2), (2, 3), (3, 4)] {
        w.handle(Event::EngineBlocked { engine: EngineId(engine), report: blocked(task, "Barrier", None) });
    }
    let stuck = Stuck {
        req_id: RequestId(1),
        set: SetId(0),
        blocked: vec![
            blocked_rank(0, "Allreduce"),
            blocked_rank(1, "Barrier"),
            blocked_rank(2, "Barrier"),
            blocked_rank(3, "Barrier"),
        ],
        left: vec![],
    };
    assert_eq!(w.handle(Event::Timer(Timer::Stuck(Ticket(1)))), vec![to_client(ToClient::Stuck(stuck))]);
}

#[test]
fn an_abandoned_call_restarts_the_world_and_requests_meanwhile_wait_for_it() {
    let mut w = running();
    let engines = w.info().engines;
    let report = Abandoned { task_id: TaskId(2), call: "Barrier".into(), comm: "COMM_WORLD".into() };
    let out = w.handle(Event::EngineAbandoned { engine: EngineId(1), report });
    let cause =
        "rank 1 was interrupted inside Barrier on COMM_WORLD, which MPI cannot cancel half way, so the \
                 ranks' communicators can no longer be trusted to match";
    let why = format!("{cause}; the MPI world is being restarted (variables are lost)");
    let mut expected: Vec<Command> = (0..4).map(|e| failed(1, e, down(why.clone()))).collect();
    expected.push(Command::SaveHistory);
    for e in 0..4 {
        expected.push(to_engine(e, ToEngine::Shutdown));
        expected.push(Command::Forget { engine: EngineId(e) });
    }
    expected.push(Command::Runner(RunnerCall::EndWorld { engines, restart: true, why: cause.into() }));
    assert_eq!(out, expected);
    // A cell sent while it restarts waits; `mpx restart` from another client waits too.
    assert_eq!(execute(&mut w, 2, Targets::All, "x"), vec![]);
    assert_eq!(w.handle(Event::Restart { client: ClientId(9), reason: "r".into() }), vec![]);
    // The new world registers; once every rank is ready, the waiters are answered and the cell runs.
    w.handle(Event::Launching);
    register(&mut w, 4, 10);
    for e in 0..3 {
        assert_eq!(w.handle(Event::EngineReady { engine: EngineId(e) }), vec![]);
    }
    let out = w.handle(Event::EngineReady { engine: EngineId(3) });
    let mut expected = vec![Command::ToClient {
        client: ClientId(9),
        frame: Frame::new(ToClient::RestartReply { engines: ids(&[0, 1, 2, 3]), error: None }),
    }];
    for e in 0..4 {
        let task = mpx_messages::Task::Execute { code: "x".into() };
        expected.push(to_engine(
            e,
            ToEngine::TaskRequest(TaskRequest { task_id: TaskId(5 + u64::from(e)), task }),
        ));
    }
    expected.push(to_client(ToClient::SubmitReply(SubmitReply {
        req_id: RequestId(2),
        engines: ids(&[0, 1, 2, 3]),
        error: None,
        id: Some(Ticket(2)),
    })));
    assert_eq!(out, expected);
}

#[test]
fn a_restart_of_engines_started_by_hand_is_refused_and_their_abandoned_call_tears_them_down() {
    let mut w = world(false);
    register(&mut w, 2, 0);
    let out = w.handle(Event::Restart { client: CLIENT, reason: "r".into() });
    let [Command::ToClient { frame, .. }] = &out[..] else { panic!("{out:?}") };
    assert!(
        matches!(&frame.header, ToClient::RestartReply { error: Some(MpxError::Refused { .. }), .. }),
        "{out:?}"
    );
    let report = Abandoned { task_id: TaskId(1), call: "Barrier".into(), comm: "COMM_WORLD".into() };
    let out = w.handle(Event::EngineAbandoned { engine: EngineId(0), report });
    assert!(out.iter().any(|c| matches!(c, Command::Reap { .. })), "{out:?}");
    assert!(w.info().engines.is_empty());
    // Nothing restarts: a new request is refused at once.
    let out = execute(&mut w, 5, Targets::All, "x");
    let [Command::ToClient { frame, .. }] = &out[..] else { panic!("{out:?}") };
    assert!(matches!(&frame.header, ToClient::SubmitReply(r) if r.error.is_some()), "{out:?}");
}

#[test]
fn the_history_records_targets_outcomes_and_the_epoch_of_each_request() {
    let mut w = running();
    w.handle(Event::EngineReply {
        engine: EngineId(0),
        reply: reply(1, Some("ZeroDivisionError")),
        buffers: vec![],
        fds: Fds::default(),
    });
    for (engine, task) in [(1, 2), (2, 3)] {
        w.handle(Event::EngineReply {
            engine: EngineId(engine),
            reply: reply(task, None),
            buffers: vec![],
            fds: Fds::default(),
        });
    }
    let entry = &w.history()[0];
    assert_eq!((entry.n, entry.epoch, entry.all, entry.done()), (1, 0, true, false));
    let out = w.handle(Event::EngineReply {
        engine: EngineId(3),
        reply: reply(4, None),
        buffers: vec![],
        fds: Fds::default(),
    });
    assert_eq!(out.last(), Some(&Command::SaveHistory), "saved once complete: {out:?}");
    let entry = &w.history()[0];
    assert_eq!(
        entry.outcomes,
        vec![
            (EngineId(0), mpx_messages::EngineOutcome::Error("ZeroDivisionError".into())),
            (EngineId(1), mpx_messages::EngineOutcome::Ok),
            (EngineId(2), mpx_messages::EngineOutcome::Ok),
            (EngineId(3), mpx_messages::EngineOutcome::Ok),
        ]
    );
    assert!(!entry.succeeded());
    // A restart begins the next epoch; a targeted cell is recorded with its engines.
    w.handle(Event::Restart { client: CLIENT, reason: "r".into() });
    w.handle(Event::Launching);
    register(&mut w, 4, 10);
    for e in 0..4 {
        w.handle(Event::EngineReady { engine: EngineId(e) });
    }
    execute(&mut w, 2, Targets::List(ids(&[1, 3])), "x = 1");
    let entry = w.history().last().cloned().unwrap();
    assert_eq!((entry.n, entry.epoch, entry.all, entry.engines.clone()), (2, 1, false, ids(&[1, 3])));
    assert!(matches!(entry.item, mpx_messages::HistoryItem::Cell { ref code } if code == "x = 1"));
}

#[test]
fn a_batch_clusters_queue_and_time_limit_reach_its_clients() {
    let mut w = world(false);
    assert_eq!(w.info().batch, None);
    let batch = mpx_messages::BatchSettings { queue: "debug".into(), walltime: "00:10:00".into() };
    assert_eq!(w.handle(Event::RunnerAttached { restart: false, batch: Some(batch.clone()) }), vec![]);
    assert_eq!(w.info().batch, Some(batch));
}
