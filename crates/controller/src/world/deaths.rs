//! Deaths, teardowns and restarts: the whole path of an engine's death reads here.
//!
//! 1. The engine's connection ends ([`Event::EngineGone`](super::Event::EngineGone)), or it
//!    misses [`HEARTBEAT_MISSES`] heartbeats and its connection is closed.
//! 2. If its set is the cluster's own world, the runner asks the launcher how the rank died
//!    ([`RunnerCall::ExplainDeath`]; mpirun reports the signal or exit code) and the world
//!    waits, at most [`DEATH_REPORT_FALLBACK`]. A world started otherwise has no launcher to
//!    ask: it goes down at once with what the connection knew.
//! 3. The world goes down ([`World::tear_down`]): its pending requests fail (the dead engine's
//!    with `EngineDied`, the other ranks' with `WorldDown`), its load-balanced tasks run again
//!    on other engines while they have retries (else fail with `EngineDied`; while the world
//!    restarts they wait for it), its other engines are told to shut down and forgotten. Other
//!    engine sets go on.
//! 4. The cluster's own world goes to the runner ([`RunnerCall::EndWorld`]), which ends its
//!    job and restarts it (`--restart`) or stops the cluster; any other world's processes are
//!    reaped ([`Command::Reap`]).
//!
//! A client's abort and the end of the launcher's job take the same teardown, without a dead
//! engine. While a world is dying (step 2), its engines take no more load-balanced tasks.
//!
//! When the cluster stops ([`Event::StopEngines`](super::Event::StopEngines)), every engine is
//! told to shut down and forgotten, and the runner is answered ([`Command::EnginesStopped`]).

use mpx_messages::{ControllerToClient, EngineId, EngineReply, Fds, MpxError, Outcome, SetId, TaskId};
use tracing::{info, warn};

use super::{
    ClientId, Command, ConnId, Dying, Launched, RunnerCall, Timer, World, DEATH_REPORT_FALLBACK,
    HEARTBEAT_MISSES,
};

impl World {
    /// An engine's connection ended: a death, unless its world is already going down.
    pub(super) fn engine_gone(&mut self, engine: EngineId, conn: ConnId, cause: String) {
        let Some(e) = self.engines.get_mut(&engine).filter(|e| e.conn == Some(conn)) else {
            return; // a connection already let go of
        };
        e.conn = None;
        let set = e.info.set;
        let rank = e.info.rank;
        let Some(world) = self.sets.get_mut(&set) else { return };
        if world.dying.is_some() {
            return; // its world is already going down
        }
        warn!(%engine, %set, %rank, %cause, "engine lost");
        if self.launched == Launched::Set(set) {
            world.dying = Some(Dying { engine, cause });
            let engines: Vec<EngineId> = world.engines().collect();
            self.balanced_world_dying(&engines);
            self.emit(Command::Runner(RunnerCall::ExplainDeath { engine, rank }));
            self.emit(Command::Wake { after: DEATH_REPORT_FALLBACK, timer: Timer::DeathReport(engine) });
        } else {
            self.tear_down(set, Some(engine), &cause);
        }
    }

    /// An engine has been silent: after [`HEARTBEAT_MISSES`] periods it is dead.
    pub(super) fn heartbeat_missed(&mut self, engine: EngineId, conn: ConnId, missed: u32) {
        let current = self.engines.get(&engine).is_some_and(|e| e.conn == Some(conn));
        if missed < HEARTBEAT_MISSES || !current {
            return;
        }
        warn!(%engine, missed, "engine missed its heartbeats");
        let period = self.config.heartbeat.as_millis();
        self.emit(Command::CloseEngine { engine });
        self.engine_gone(engine, conn, format!("it missed {missed} heartbeats ({period} ms period)"));
    }

    /// The launcher's explanation of a death came (or its deadline passed: `cause` is `None`).
    pub(super) fn death_explained(&mut self, engine: EngineId, cause: Option<String>) {
        let dying = self.sets.iter().find_map(|(&set, w)| {
            w.dying.as_ref().filter(|d| d.engine == engine).map(|d| (set, d.cause.clone()))
        });
        if let Some((set, fallback)) = dying {
            self.tear_down(set, Some(engine), &cause.unwrap_or(fallback));
        }
    }

    /// The cluster's own job ended by itself: its world goes down (unless a death is being
    /// explained already).
    pub(super) fn job_ended(&mut self, status: String) {
        match self.launched {
            Launched::Set(set) if self.sets.get(&set).is_some_and(|w| w.dying.is_none()) => {
                self.tear_down(set, None, &format!("the engines' job ended ({status})"));
            }
            _ => info!(%status, "the engines' job ended"),
        }
    }

    /// A client asks to tear every world down: the cluster's own restarts, any other is torn
    /// down.
    pub(super) fn abort(&mut self, client: ClientId, reason: String) {
        let error = if self.config.runner {
            warn!(%reason, "a client asked to tear the MPI worlds down");
            let sets: Vec<SetId> = self.sets.keys().copied().collect();
            for set in sets {
                self.tear_down_as(set, None, &reason, true);
            }
            None
        } else {
            Some(MpxError::refused(
                "this controller did not start its engines (they were started by hand); stop them yourself",
            ))
        };
        self.reply(client, ControllerToClient::AbortReply { error });
    }

    /// A client asks the cluster to stop.
    pub(super) fn shutdown(&mut self, client: ClientId) {
        info!("a client asked the cluster to stop");
        self.reply(client, ControllerToClient::ShutdownReply);
        self.emit(Command::Runner(RunnerCall::StopCluster));
    }

    /// The cluster stops: every engine is told to shut down and forgotten, with its set, and
    /// the load-balanced tasks fail; the runner is told which engines were told.
    pub(super) fn stop_engines(&mut self) {
        let gone: Vec<(EngineId, String)> =
            self.engines.keys().map(|&e| (e, "the cluster is stopping".to_string())).collect();
        self.balanced_engines_gone(&gone, false);
        let mut told = Vec::new();
        for (id, e) in std::mem::take(&mut self.engines) {
            self.shut_down(id, e.conn.is_some());
            told.push(e.info);
        }
        self.sets.clear();
        self.launched = Launched::None;
        self.emit(Command::EnginesStopped { engines: told });
    }

    /// Takes one world down: its pending requests fail, its engines are told to stop and
    /// forgotten; the cluster's own world goes to the runner, any other is reaped.
    pub(super) fn tear_down(&mut self, set: SetId, first: Option<EngineId>, cause: &str) {
        self.tear_down_as(set, first, cause, self.config.restart);
    }

    /// [`World::tear_down`], restarting the cluster's own world if `restart`.
    pub(super) fn tear_down_as(&mut self, set: SetId, first: Option<EngineId>, cause: &str, restart: bool) {
        let Some(world) = self.sets.remove(&set) else { return };
        let own = self.launched == Launched::Set(set);
        let restart = own && restart;
        if restart {
            self.restarting = true;
            self.history.epoch += 1;
        }
        let note = match (own, restart) {
            (true, true) => "; the MPI world is being restarted (variables are lost)".to_string(),
            (true, false) => "; the MPI world was torn down and the cluster stops".to_string(),
            (false, _) => format!("; engine set {set} was torn down (other sets go on)"),
        };
        warn!(%set, engine = ?first, %cause, own, restart, "the MPI world goes down");
        let ids: Vec<EngineId> = world.engines().collect();
        let torn = match first {
            Some(f) => format!("engine {f} died ({cause}){note}"),
            None => format!("{cause}{note}"),
        };
        let mut lost: Vec<(TaskId, super::Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| ids.contains(&p.engine))
            .map(|(t, p)| (*t, p.clone()))
            .collect();
        lost.sort_unstable_by_key(|(task, _)| *task);
        for (task, p) in lost {
            self.pending.remove(&task);
            self.task_done(p.id);
            self.forget_request_if_done(p.id);
            let error = match first {
                Some(f) if f == p.engine => MpxError::EngineDied {
                    engine: f,
                    rank: world.rank(f).unwrap_or_default(),
                    cause: format!("{cause}{note}"),
                },
                _ => MpxError::WorldDown { reason: torn.clone() },
            };
            let outcome = Outcome { error: Some(error), ..Default::default() };
            let result = EngineReply { req_id: p.req_id, engine_id: p.engine, outcome };
            self.answer(&p, result, Vec::new(), Fds::default());
        }
        let mut engines = Vec::new();
        let gone: Vec<(EngineId, String)> = ids
            .iter()
            .map(|&id| (id, if Some(id) == first { cause.to_string() } else { torn.clone() }))
            .collect();
        self.balanced_engines_gone(&gone, restart);
        for id in ids {
            self.blocked.remove(&id);
            if let Some(e) = self.engines.remove(&id) {
                self.shut_down(id, e.conn.is_some());
                engines.push(e.info);
            }
        }
        let why = match first {
            Some(f) => format!("engine {f} died: {cause}"),
            None => cause.to_string(),
        };
        if own {
            self.launched = Launched::None;
            self.mpirun_pid = None;
            self.emit(Command::Runner(RunnerCall::EndWorld { engines, restart, why }));
        } else if self.config.runner {
            self.emit(Command::Reap { engines });
        }
    }
}
