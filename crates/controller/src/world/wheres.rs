//! `where` polls: every attached engine is asked for its state; the client gets the answer as
//! soon as all have answered, or at the deadline with `None` for the silent ones.

use mpx_messages::{ControllerToClient, ControllerToEngine, EngineId, EngineState, Frame, PollId};

use super::{ClientId, Command, Poll, Timer, World, WHERE_WAIT};

impl World {
    /// Starts a poll of every attached engine.
    pub(super) fn start_poll(&mut self, client: ClientId) {
        let poll = self.next_poll;
        self.next_poll = poll.next();
        let asked: Vec<EngineId> =
            self.engines.iter().filter(|(_, e)| e.conn.is_some()).map(|(id, _)| *id).collect();
        for &engine in &asked {
            let frame = Frame::new(ControllerToEngine::StatusRequest { req: poll });
            self.emit(Command::ToEngine { engine, frame });
        }
        let states = asked.into_iter().map(|id| (id, None)).collect();
        self.polls.insert(poll, Poll { client, states });
        if self.polls[&poll].states.is_empty() {
            self.answer_poll(poll);
        } else {
            self.emit(Command::Wake { after: WHERE_WAIT, timer: Timer::Where(poll) });
        }
    }

    /// Records an engine's answer; answers the client once every engine has.
    pub(super) fn engine_status(&mut self, engine: EngineId, poll: PollId, state: EngineState) {
        let Some(p) = self.polls.get_mut(&poll) else { return };
        if let Some(slot) = p.states.get_mut(&engine) {
            *slot = Some(state);
        }
        if p.states.values().all(Option::is_some) {
            self.answer_poll(poll);
        }
    }

    /// Answers a poll with what is known (its deadline, or every engine answered).
    pub(super) fn answer_poll(&mut self, poll: PollId) {
        if let Some(p) = self.polls.remove(&poll) {
            let states = p.states.into_iter().collect();
            self.reply(p.client, ControllerToClient::WhereReply { states });
        }
    }
}
