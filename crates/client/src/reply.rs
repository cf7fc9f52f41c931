//! What engines send back, as the client keeps it: [`EngineResult`] (one engine's part of a
//! request) and [`TaskResult`] (a load-balanced task). The reader thread makes them; the
//! shared state holds them until a caller takes them.

use mpx_messages::{EngineId, MpxError, Outcome, RawArray};

use crate::{error::ClientError, returned::ReturnedData};

/// One engine's result, with when the client received it.
#[derive(Debug, Clone)]
pub struct EngineResult {
    /// The engine.
    pub engine_id: EngineId,
    /// What it did.
    pub outcome: Outcome,
    /// The array it sent back (pull, gather), checked against its dtype and shape.
    pub array: Option<RawArray>,
    /// What its apply's function returned out of band (the Python client's helper).
    pub returned: Option<ReturnedData>,
    /// When the client had it (seconds since the Unix epoch).
    pub received: f64,
}

/// The result of one load-balanced task.
#[derive(Debug, Clone)]
pub struct TaskResult {
    /// The engine that ran it (`None`: it never ran).
    pub engine_id: Option<EngineId>,
    /// What happened. `outcome.error` is the engine's error or the controller's
    /// ([`MpxError::EngineDied`]: its engine died with no retry left; [`MpxError::NoEngines`]:
    /// no engine to run it; [`MpxError::Refused`]: not a kind of task that runs on one engine).
    pub outcome: Outcome,
    /// The array it sent back (none yet: a task is code on one engine).
    pub array: Option<RawArray>,
    /// What its apply's function returned out of band (the Python client's helper).
    pub returned: Option<ReturnedData>,
    /// How many times it was started (above 1: retried after its engine died).
    pub attempts: u32,
    /// When the client had it (seconds since the Unix epoch).
    pub received: f64,
}

impl TaskResult {
    /// The result, or its error: [`ClientError::EngineDied`] for a dead engine,
    /// [`ClientError::Remote`] for any other error of the engine that ran it,
    /// [`ClientError::NotRun`] when no engine ran it.
    ///
    /// # Errors
    /// As described.
    pub fn ok(self) -> Result<TaskResult, ClientError> {
        let Some(e) = &self.outcome.error else { return Ok(self) };
        if let MpxError::EngineDied { engine, rank, cause } = e {
            return Err(ClientError::EngineDied { engine: *engine, rank: *rank, cause: cause.clone() });
        }
        match self.engine_id {
            Some(engine) => Err(ClientError::Remote(vec![(engine, e.clone())])),
            None => Err(ClientError::NotRun(e.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(engine_id: Option<EngineId>, error: MpxError) -> TaskResult {
        let outcome = Outcome { error: Some(error), ..Default::default() };
        TaskResult { engine_id, outcome, array: None, returned: None, attempts: 1, received: 0.0 }
    }

    #[test]
    fn a_failed_task_names_its_engine_or_says_it_ran_on_none() {
        let none = MpxError::NoEngines { reason: "no engines are registered".into() };
        let got = failed(None, none.clone()).ok().unwrap_err();
        assert!(matches!(&got, ClientError::NotRun(e) if *e == none), "{got:?}");
        assert_eq!(got.to_string(), "the task ran on no engine: no engines are registered");
        let raised = MpxError::Cell(mpx_messages::RemoteError::new("ValueError", "bad"));
        let got = failed(Some(EngineId(2)), raised.clone()).ok().unwrap_err();
        assert!(matches!(&got, ClientError::Remote(v) if v == &[(EngineId(2), raised)]), "{got:?}");
    }
}
