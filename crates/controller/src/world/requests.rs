//! Requests: a client's request planned over its targets (one task per engine, the array bytes
//! to the root of a collective), the engines' replies routed back to the client that asked (or
//! kept when it went away, until a client adopts the request), and interrupts.

use std::collections::BTreeMap;

use mpx_messages::{
    ControllerToClient, ControllerToEngine, EngineId, EngineOutput, EngineReply, Fds, Frame, MpxError,
    Payload, RequestId, SubmitReply, SubmitRequest, Targets, TaskOutput, TaskReply, TaskRequest, Ticket,
};
use tracing::{info, warn};

use super::{ClientId, Command, Pending, UpstreamPlan, World};
use crate::{
    forward::streamed_total,
    plan::{plan, Place},
};

impl World {
    /// Plans a client's request: one task per engine, then the acceptance (or the refusal alone).
    pub(super) fn submit(&mut self, client: ClientId, req: SubmitRequest, buffers: Vec<Payload>, fds: Fds) {
        let req_id = req.req_id;
        let streamed = streamed_total(&req.request, &buffers);
        let item = (!req.internal).then(|| super::history::item_of(&req.request, req.source.clone()));
        let targets = req.targets.clone();
        if self.restarting {
            // The world comes back in about the time of a start: the request waits for it (one
            // whose array streams after it cannot: its chunks have nowhere to go meanwhile).
            let error = MpxError::refused(
                "the MPI world is restarting: send the array again once it is ready (`mpx restart` waits for it)",
            );
            let error = match streamed {
                None if self.defer(client, req, buffers, fds) => return,
                None => MpxError::refused("the MPI world is restarting and too many requests wait for it"),
                Some(_) => error,
            };
            let reply = SubmitReply { req_id, engines: vec![], error: Some(error), id: None };
            self.reply(client, ControllerToClient::SubmitReply(reply));
            return;
        }
        let planned = self.resolve(&req.targets).and_then(|ids| {
            let places: Vec<Place> = ids
                .iter()
                .map(|id| {
                    let info = &self.engines[id].info;
                    Place { engine: *id, set: info.set, rank: info.rank, local: info.local }
                })
                .collect();
            Ok((plan(req.request, &places, buffers, fds)?, ids))
        });
        let (assignments, engines) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                let reply = SubmitReply { req_id, engines: vec![], error: Some(error), id: None };
                self.reply(client, ControllerToClient::SubmitReply(reply));
                return;
            }
        };
        let id = self.next_request;
        self.next_request = id.next();
        if let Some(item) = item {
            self.record_history(id, item, engines.clone(), &targets);
        }
        let mut root = true;
        for a in assignments {
            let task_id = self.next_task;
            self.next_task = task_id.next();
            self.pending.insert(task_id, Pending { client: Some(client), req_id, engine: a.engine, id });
            *self.tasks_left.entry(id).or_default() += 1;
            let mut sent = a.buffers.iter().map(|b| b.len() as u64).sum::<u64>();
            let request = ControllerToEngine::TaskRequest(TaskRequest { task_id, task: a.task });
            self.emit(Command::ToEngine {
                engine: a.engine,
                frame: Frame::with_payloads(request, a.buffers).with_fds(a.fds),
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
        // The acceptance goes after the tasks: the engines start first (the client learns of
        // it before any engine's reply all the same, both being on its one connection).
        let accepted = SubmitReply { req_id, engines, error: None, id: Some(id) };
        self.reply(client, ControllerToClient::SubmitReply(accepted));
    }

    /// Routes an engine's answer to the client that asked (a load-balanced task's to
    /// `balanced.rs`; its descriptors, if any, are dropped).
    pub(super) fn engine_reply(
        &mut self,
        engine: EngineId,
        reply: TaskReply,
        buffers: Vec<Payload>,
        fds: Fds,
    ) {
        match self.pending.remove(&reply.task_id) {
            Some(p) if p.engine == engine => {
                self.task_done(p.id);
                self.engine_unblocked(engine, reply.task_id);
                self.left_request(p.id, engine, &reply.outcome);
                let result = EngineReply { req_id: p.req_id, engine_id: engine, outcome: reply.outcome };
                self.answer(&p, result, buffers, fds);
            }
            Some(p) => {
                warn!(%engine, task = %reply.task_id, "reply from the wrong engine dropped");
                self.pending.insert(reply.task_id, p);
            }
            None if self.balanced.knows(reply.task_id) => self.balanced_reply(engine, reply, buffers),
            None => warn!(%engine, task = %reply.task_id, "reply to an unknown task dropped"),
        }
    }

    /// Sends an engine's answer to the client waiting for it, or keeps it with its request
    /// when that client went away.
    pub(super) fn answer(&mut self, p: &Pending, result: EngineReply, buffers: Vec<Payload>, fds: Fds) {
        let (engine, outcome) = (result.engine_id, result.outcome.clone());
        self.answer_client(p, result, buffers, fds);
        self.history_answer(p.id, engine, &outcome);
    }

    fn answer_client(&mut self, p: &Pending, result: EngineReply, buffers: Vec<Payload>, fds: Fds) {
        match p.client {
            Some(client) => {
                let frame =
                    Frame::with_payloads(ControllerToClient::EngineReply(result), buffers).with_fds(fds);
                self.emit(Command::ToClient { client, frame });
            }
            // A kept reply keeps no descriptor (a client adopting it later is told the array's
            // memfd is gone: pull again).
            None => self.retained.reply(p.id, result, buffers, self.now),
        }
    }

    /// Output of a task whose route is gone: kept with its request when the client went away
    /// (and sent to the client otherwise, which happens only when a route was lost in a race).
    pub(super) fn engine_output(&mut self, engine: EngineId, output: TaskOutput) {
        let Some(p) = self.pending.get(&output.task_id).filter(|p| p.engine == engine) else { return };
        match p.client {
            Some(client) => {
                let piece = EngineOutput {
                    req_id: p.req_id,
                    engine_id: engine,
                    stream: output.stream,
                    text: output.text,
                };
                self.emit(Command::ToClient { client, frame: Frame::new(ControllerToClient::Output(piece)) });
            }
            None => {
                let id = p.id;
                self.retained.output(id, engine, output.stream, &output.text, self.now);
            }
        }
    }

    /// A client went away: its pending requests are kept (bounded, see [`super::retained`]).
    pub(super) fn client_left(&mut self, client: ClientId) {
        let mut orphans: BTreeMap<Ticket, Vec<EngineId>> = BTreeMap::new();
        for p in self.pending.values_mut().filter(|p| p.client == Some(client)) {
            p.client = None;
            orphans.entry(p.id).or_default().push(p.engine);
        }
        for (id, mut engines) in orphans {
            engines.sort_unstable();
            info!(request = %id, engines = engines.len(), "kept a request whose client went away");
            self.retained.keep(id, engines, self.now);
        }
    }

    /// A client takes over kept request `id` as its `req_id`: the acceptance, what was kept,
    /// and from now on the rest as it comes.
    pub(super) fn adopt(&mut self, client: ClientId, req_id: RequestId, id: Ticket) {
        let Some(kept) = self.retained.take(id) else {
            let error = MpxError::refused(format!(
                "request {id} is not kept: it is unknown, still waited for by its client, already \
                 fetched, or dropped (the results of requests nobody waits for are kept for {} \
                 minutes, at most {} of them and {} MiB)",
                super::retained::KEEP_FOR as u64 / 60,
                super::retained::KEEP_REQUESTS,
                super::retained::KEEP_BYTES >> 20
            ));
            let reply = SubmitReply { req_id, engines: vec![], error: Some(error), id: Some(id) };
            return self.reply(client, ControllerToClient::SubmitReply(reply));
        };
        let accepted = SubmitReply { req_id, engines: kept.engines.clone(), error: None, id: Some(id) };
        self.reply(client, ControllerToClient::SubmitReply(accepted));
        for ((engine_id, stream), (mut text, dropped)) in kept.output {
            if dropped > 0 {
                text.push_str(&format!("\n[mpx: {dropped} more bytes of {stream} were not kept]\n"));
            }
            for piece in mpx_messages::output::pieces(&text, mpx_messages::OUTPUT_CHUNK) {
                let piece = EngineOutput { req_id, engine_id, stream, text: piece.to_string() };
                self.reply(client, ControllerToClient::Output(piece));
            }
        }
        for (mut result, buffers) in kept.replies {
            result.req_id = req_id;
            let frame = Frame::with_payloads(ControllerToClient::EngineReply(result), buffers);
            self.emit(Command::ToClient { client, frame });
        }
        for p in self.pending.values_mut().filter(|p| p.id == id) {
            p.client = Some(client);
            p.req_id = req_id;
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
