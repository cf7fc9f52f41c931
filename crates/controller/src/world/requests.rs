//! Requests: a client's request planned over its targets (one task per engine, the array bytes
//! to the root of a collective), the engines' replies routed back to the client that asked,
//! and interrupts.

use mpx_messages::{
    ControllerToClient, ControllerToEngine, EngineId, EngineReply, Frame, MpxError, Payload, SubmitReply,
    SubmitRequest, Targets, TaskReply, TaskRequest,
};
use tracing::warn;

use super::{ClientId, Command, Pending, UpstreamPlan, World};
use crate::{
    forward::streamed_total,
    plan::{plan, Place},
};

impl World {
    /// Plans a client's request: the acceptance (or refusal) first, then one task per engine.
    pub(super) fn submit(&mut self, client: ClientId, req: SubmitRequest, buffers: Vec<Payload>) {
        let req_id = req.req_id;
        let streamed = streamed_total(&req.request, &buffers);
        let planned = self.resolve(&req.targets).and_then(|ids| {
            let places: Vec<Place> = ids
                .iter()
                .map(|id| {
                    let info = &self.engines[id].info;
                    Place { engine: *id, set: info.set, rank: info.rank }
                })
                .collect();
            Ok((plan(req.request, &places, buffers)?, ids))
        });
        let (assignments, engines) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                let reply = SubmitReply { req_id, engines: vec![], error: Some(error) };
                self.reply(client, ControllerToClient::SubmitReply(reply));
                return;
            }
        };
        self.reply(client, ControllerToClient::SubmitReply(SubmitReply { req_id, engines, error: None }));
        let mut root = true;
        for a in assignments {
            let task_id = self.next_task;
            self.next_task += 1;
            self.pending.insert(task_id, Pending { client, req_id, engine: a.engine });
            let mut sent = a.buffers.iter().map(|b| b.len() as u64).sum::<u64>();
            let request = ControllerToEngine::TaskRequest(TaskRequest { task_id, task: a.task });
            self.emit(Command::ToEngine {
                engine: a.engine,
                frame: Frame::with_payloads(request, a.buffers),
            });
            if let (Some(total), true) = (streamed, root) {
                // The root (first assignment) receives the chunks, after its task.
                sent += total;
                let plan = UpstreamPlan { req_id, engine: a.engine, task_id, total };
                self.emit(Command::OpenUpstream { client, plan });
            }
            root = false;
            let entry = self.engines.get_mut(&a.engine).expect("resolved engines are registered");
            entry.info.bytes_sent += sent;
        }
    }

    /// Routes an engine's answer to the client that asked.
    pub(super) fn engine_reply(&mut self, engine: EngineId, reply: TaskReply, buffers: Vec<Payload>) {
        match self.pending.remove(&reply.task_id) {
            Some(p) if p.engine == engine => {
                let result = EngineReply { req_id: p.req_id, engine_id: engine, outcome: reply.outcome };
                let frame = Frame::with_payloads(ControllerToClient::EngineReply(result), buffers);
                self.emit(Command::ToClient { client: p.client, frame });
            }
            Some(p) => {
                warn!(%engine, task = reply.task_id, "reply from the wrong engine dropped");
                self.pending.insert(reply.task_id, p);
            }
            None => warn!(%engine, task = reply.task_id, "reply to an unknown task dropped"),
        }
    }

    /// Interrupts the running cells of the targets; answers with the engines told.
    pub(super) fn interrupt(&mut self, client: ClientId, targets: &Targets) {
        let (engines, error) = match self.resolve(targets) {
            Ok(engines) => (engines, None),
            Err(e) => (vec![], Some(e)),
        };
        for &engine in &engines {
            self.emit(Command::ToEngine { engine, frame: Frame::new(ControllerToEngine::Interrupt) });
        }
        self.reply(client, ControllerToClient::InterruptReply { engines, error });
    }

    /// Writes a message to a client.
    pub(super) fn reply(&mut self, client: ClientId, msg: ControllerToClient) {
        self.emit(Command::ToClient { client, frame: Frame::new(msg) });
    }

    /// The engines of a request's targets, in id order: registered, in a world that is up.
    fn resolve(&self, targets: &Targets) -> Result<Vec<EngineId>, MpxError> {
        let up = |id: &EngineId| {
            self.engines
                .get(id)
                .is_some_and(|e| self.sets.get(&e.info.set).is_some_and(|s| s.dying.is_none()))
        };
        let ids: Vec<EngineId> = match targets {
            Targets::All => self.engines.keys().copied().filter(up).collect(),
            Targets::List(list) => {
                let mut ids = list.clone();
                ids.sort_unstable();
                ids.dedup();
                if let Some(&engine) = ids.iter().find(|id| !self.engines.contains_key(id)) {
                    let registered = self.engines.keys().copied().collect();
                    return Err(MpxError::NoSuchEngine { engine, registered });
                }
                if let Some(down) = ids.iter().find(|id| !up(id)) {
                    return Err(MpxError::refused(format!(
                        "engine {down} is down: its world is being torn down"
                    )));
                }
                ids
            }
        };
        if ids.is_empty() {
            return Err(MpxError::NoEngines { reason: "no engines are registered".into() });
        }
        Ok(ids)
    }
}
