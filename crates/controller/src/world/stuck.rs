//! Stuck ranks and world restarts: the path of a cell that one rank left while others wait.
//!
//! 1. A rank that finishes its part of a request while others of the same request still run
//!    is recorded as having left it (`World::left_request`), with its error's class.
//! 2. An engine whose cell has sat in one MPI call for a second reports it
//!    ([`Event::EngineBlocked`](super::Event::EngineBlocked)): the call, the communicator's
//!    `COMM_WORLD` ranks and the peer of a point-to-point call; it takes the report back when the
//!    call returns ([`Event::EngineUnblocked`](super::Event::EngineUnblocked)).
//! 3. A blocked rank is stuck when a rank it waits for (its peer, else any member of its
//!    communicator) has left the request, or when another blocked rank of the request sits in a
//!    different call on the same communicator. Reports of several ranks come within a few
//!    milliseconds of each other, so the client is told [`STUCK_GATHER`] after the first one,
//!    once for all of them ([`mpx_messages::Stuck`]), and again only when more ranks are stuck.
//! 4. Ctrl-C interrupts the request's engines (`World::interrupt`). A rank inside an MPI call
//!    that cannot be cancelled reports it abandoned
//!    ([`Event::EngineAbandoned`](super::Event::EngineAbandoned)): its world restarts (the
//!    cluster's own world; one started by hand is torn down, as mpx cannot start it again).
//! 5. A restart (`mpx restart`, an abandoned call, an abort) tears the world down with
//!    `restart`; requests that arrive meanwhile wait for the new world (`World::submit`
//!    defers them), and the clients that asked for the restart are answered once every rank of
//!    the new world is ready (its registration answer queued, so work may follow).

use std::time::Duration;

use mpx_messages::{
    Abandoned, Blocked, BlockedRank, ControllerToClient, EngineId, Fds, LeftRank, MpxError, Outcome, Payload,
    Stuck, SubmitRequest, TaskId, Ticket,
};
use tracing::{info, warn};

use super::{ClientId, Command, Launched, Timer, World};

/// How long the core gathers blocked reports before it tells the client.
pub const STUCK_GATHER: Duration = Duration::from_millis(200);

/// Requests kept waiting for a restarting world, at most.
pub const DEFERRED_MAX: usize = 1024;

impl World {
    /// `engine` finished its part of request `id` while others may still run.
    pub(super) fn left_request(&mut self, id: Ticket, engine: EngineId, outcome: &Outcome) {
        if !self.tasks_left.contains_key(&id) {
            self.forget_request(id);
            return;
        }
        let error = outcome.error.as_ref().map(|e| e.ename().to_string());
        self.left.entry(id).or_default().insert(engine, error);
        // Blocked reports are rare: the request's tasks are looked through only when there are.
        if !self.blocked.is_empty()
            && self.pending.values().any(|p| p.id == id && self.blocked.contains_key(&p.engine))
        {
            self.gather_stuck(id);
        }
    }

    /// One of request `id`'s tasks is no longer pending.
    pub(super) fn task_done(&mut self, id: Ticket) {
        if let Some(n) = self.tasks_left.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.tasks_left.remove(&id);
            }
        }
    }

    /// Forgets what was recorded of request `id` once none of its tasks is pending.
    pub(super) fn forget_request_if_done(&mut self, id: Ticket) {
        if !self.tasks_left.contains_key(&id) {
            self.forget_request(id);
        }
    }

    /// Forgets what was recorded of a request that has ended.
    fn forget_request(&mut self, id: Ticket) {
        self.left.remove(&id);
        self.stuck_told.remove(&id);
    }

    /// An engine's cell is blocked in an MPI call.
    pub(super) fn engine_blocked(&mut self, engine: EngineId, report: Blocked) {
        let Some(id) = self.pending.get(&report.task_id).filter(|p| p.engine == engine).map(|p| p.id) else {
            return; // its task already ended
        };
        self.blocked.insert(engine, report);
        self.gather_stuck(id);
    }

    /// An engine's cell got out of the call it was reported blocked in.
    pub(super) fn engine_unblocked(&mut self, engine: EngineId, task_id: TaskId) {
        if self.blocked.get(&engine).is_some_and(|b| b.task_id == task_id) {
            self.blocked.remove(&engine);
        }
    }

    fn gather_stuck(&mut self, id: Ticket) {
        if self.stuck_timers.insert(id) {
            self.emit(Command::Wake { after: STUCK_GATHER, timer: Timer::Stuck(id) });
        }
    }

    /// Tells the client of request `id` which of its ranks are stuck, if any more are.
    pub(super) fn tell_stuck(&mut self, id: Ticket) {
        self.stuck_timers.remove(&id);
        let Some((client, stuck)) = self.stuck_of(id) else { return };
        let told = self.stuck_told.entry(id).or_default();
        let before = told.len();
        told.extend(stuck.blocked.iter().map(|b| b.engine_id));
        if told.len() > before {
            info!(request = %id, "{}", stuck.message());
            self.reply(client, ControllerToClient::Stuck(stuck));
        }
    }

    /// The stuck ranks of request `id` (of the first engine set that has any), and its client.
    fn stuck_of(&self, id: Ticket) -> Option<(ClientId, Stuck)> {
        let mut running: Vec<_> = self.pending.values().filter(|p| p.id == id).collect();
        running.sort_unstable_by_key(|p| p.engine);
        let first = running.first()?;
        let (client, req_id) = (first.client?, first.req_id);
        let empty = Default::default();
        let left = self.left.get(&id).unwrap_or(&empty);
        let blocked: Vec<(EngineId, &Blocked)> =
            running.iter().filter_map(|p| self.blocked.get(&p.engine).map(|b| (p.engine, b))).collect();
        let mut stuck: Option<Stuck> = None;
        let mut waited: Vec<EngineId> = Vec::new();
        for &(engine, b) in &blocked {
            let info = &self.engines.get(&engine)?.info;
            let set = self.sets.get(&info.set)?;
            let candidates = b.peer.map_or_else(|| b.members.clone(), |p| vec![p]);
            let gone: Vec<EngineId> =
                candidates.iter().filter_map(|&r| set.engine(r)).filter(|e| left.contains_key(e)).collect();
            let mismatch = blocked.iter().any(|(other, o)| {
                *other != engine
                    && self.engines.get(other).is_some_and(|e| e.info.set == info.set)
                    && o.comm == b.comm
                    && o.members == b.members
                    && o.call != b.call
            });
            if gone.is_empty() && !mismatch {
                continue;
            }
            let s =
                stuck.get_or_insert_with(|| Stuck { req_id, set: info.set, blocked: vec![], left: vec![] });
            if s.set != info.set {
                continue;
            }
            waited.extend(gone);
            s.blocked.push(BlockedRank {
                engine_id: engine,
                rank: info.rank,
                call: b.call.clone(),
                comm: b.comm.clone(),
                detail: b.detail.clone(),
            });
        }
        let mut stuck = stuck?;
        waited.sort_unstable();
        waited.dedup();
        let set = self.sets.get(&stuck.set)?;
        stuck.left = waited
            .into_iter()
            .filter_map(|e| {
                Some(LeftRank { engine_id: e, rank: set.rank(e)?, error: left.get(&e).cloned().flatten() })
            })
            .collect();
        Some((client, stuck))
    }

    /// An engine left an MPI call half way: its world restarts (or, when mpx did not start it,
    /// goes down).
    pub(super) fn engine_abandoned(&mut self, engine: EngineId, report: Abandoned) {
        let Some(info) = self.engines.get(&engine).map(|e| e.info.clone()) else { return };
        let cause = format!(
            "rank {} was interrupted inside {} on {}, which MPI cannot cancel half way, so the ranks' \
             communicators can no longer be trusted to match",
            info.rank, report.call, report.comm
        );
        warn!(%engine, "{cause}");
        if self.launched == Launched::Set(info.set) && self.config.runner {
            self.tear_down_as(info.set, None, &cause, true);
        } else {
            let cause = format!("{cause}; its engines were not started by this cluster: start them again");
            self.tear_down_as(info.set, None, &cause, false);
        }
    }

    /// A client asks to restart the cluster's own world.
    pub(super) fn restart(&mut self, client: ClientId, reason: String) {
        if self.restarting {
            self.restart_waiters.push(client);
            return;
        }
        match self.launched {
            Launched::Set(set) if self.config.runner => {
                warn!(%reason, "a client asked to restart the MPI world");
                self.restart_waiters.push(client);
                self.tear_down_as(set, None, &reason, true);
            }
            _ => {
                let error = MpxError::refused(
                    "this controller did not start its engines (they were started by hand, or the cluster \
                     has no world yet): restart them yourself",
                );
                self.reply(client, ControllerToClient::RestartReply { engines: vec![], error: Some(error) });
            }
        }
    }

    /// After an engine is ready: when the restarting world has all its ranks ready, answers the
    /// clients that asked for the restart and submits the requests that waited for it.
    pub(super) fn restart_done_if_complete(&mut self) {
        let Launched::Set(set) = self.launched else { return };
        if !self.restarting {
            return;
        }
        let Some(world) = self.sets.get(&set) else { return };
        let engines: Vec<EngineId> = world.engines().collect();
        if !engines.iter().all(|e| self.ready.contains(e)) {
            return;
        }
        info!(%set, engines = engines.len(), "the restarted MPI world is ready");
        self.restarting = false;
        for client in std::mem::take(&mut self.restart_waiters) {
            let engines = engines.clone();
            self.reply(client, ControllerToClient::RestartReply { engines, error: None });
        }
        for (client, req, buffers, fds) in std::mem::take(&mut self.deferred) {
            self.submit(client, req, buffers, fds);
        }
    }

    /// Keeps a request for the restarting world; false when it cannot wait (too many waiting).
    pub(super) fn defer(
        &mut self,
        client: ClientId,
        req: SubmitRequest,
        buffers: Vec<Payload>,
        fds: Fds,
    ) -> bool {
        if self.deferred.len() >= DEFERRED_MAX {
            return false;
        }
        info!(request = %req.req_id, "a request waits for the restarting MPI world");
        self.deferred.push((client, req, buffers, fds));
        true
    }
}
