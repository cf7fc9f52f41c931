//! [`AsyncResult`]: the per-engine results of one request, filled in by the reader thread.

use std::{sync::Arc, time::Duration};

use mpx_messages::{EngineId, MpxError};

pub use crate::reply::EngineResult;
use crate::{
    error::ClientError,
    output::OutputStream,
    state::{RequestState, Shared, State},
};

/// The first engine death among results, as [`ClientError::EngineDied`].
pub fn died(results: &[EngineResult]) -> Option<ClientError> {
    results.iter().find_map(|r| match &r.outcome.error {
        Some(MpxError::EngineDied { engine, rank, cause }) => {
            Some(ClientError::EngineDied { engine: *engine, rank: *rank, cause: cause.clone() })
        }
        _ => None,
    })
}

/// A request in flight: wait for it, poll it, get its per-engine results in engine order.
#[derive(Debug, Clone)]
pub struct AsyncResult {
    pub(crate) req_id: mpx_messages::RequestId,
    pub(crate) shared: Arc<Shared>,
    /// When the request was sent (seconds since the Unix epoch).
    pub submitted: f64,
}

impl AsyncResult {
    /// Whether every engine has answered (or the request was refused).
    pub fn ready(&self) -> bool {
        let state = self.shared.state.lock().expect("client state");
        state.requests.get(&self.req_id).is_some_and(RequestState::done) || state.closed.is_some()
    }

    /// Waits up to `timeout` for all results; `Ok(true)` when ready, `Ok(false)` on timeout.
    ///
    /// # Errors
    /// [`ClientError::Closed`] if the connection ended first.
    pub fn wait(&self, timeout: Duration) -> Result<bool, ClientError> {
        let done = |state: &mut State| {
            state.requests.get(&self.req_id).is_some_and(RequestState::done).then_some(())
        };
        match self.shared.wait_for(timeout, done) {
            Ok(()) => Ok(true),
            Err(ClientError::Timeout(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The engines this request runs on (waits for the controller's acceptance).
    ///
    /// # Errors
    /// Timeout, refusal or a lost connection.
    pub fn engines(&self, timeout: Duration) -> Result<Vec<EngineId>, ClientError> {
        let accepted = |state: &mut State| {
            let req = state.requests.get(&self.req_id)?;
            match &req.error {
                Some(e) => Some(Err(ClientError::Refused(e.clone()))),
                None => req.engines.clone().map(Ok),
            }
        };
        self.shared.state.lock().expect("client state").accept_waiters += 1;
        let found = self.shared.wait_for(timeout, accepted);
        self.shared.state.lock().expect("client state").accept_waiters -= 1;
        found?
    }

    /// The results received so far, in engine order (for progress or partial output).
    pub fn partial(&self) -> Vec<EngineResult> {
        let state = self.shared.state.lock().expect("client state");
        state.requests.get(&self.req_id).map(|r| r.results.values().cloned().collect()).unwrap_or_default()
    }

    /// Waits up to `timeout` and returns every engine's result in engine order, errors included.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] (the request goes on: call again), a refusal, or a lost connection.
    pub fn get(&self, timeout: Duration) -> Result<Vec<EngineResult>, ClientError> {
        if !self.wait(timeout)? {
            return Err(ClientError::Timeout(timeout));
        }
        let state = self.shared.state.lock().expect("client state");
        let req = state.requests.get(&self.req_id).expect("request state exists once done");
        if let Some(e) = &req.error {
            return Err(ClientError::Refused(e.clone()));
        }
        Ok(req.results.values().cloned().collect())
    }

    /// Like [`get`](Self::get), but a dead engine becomes [`ClientError::EngineDied`] and any
    /// other engine error [`ClientError::Remote`].
    ///
    /// # Errors
    /// As `get`, plus the engines' errors.
    pub fn get_ok(&self, timeout: Duration) -> Result<Vec<EngineResult>, ClientError> {
        only_ok(self.get(timeout)?)
    }

    /// Like [`get`](Self::get), but the request is forgotten after it (whatever the outcome, a
    /// timeout included: its late results are dropped) and its results are moved out, not
    /// cloned: what the `_sync` helpers of [`View`](crate::view::View) use, so that a loop of
    /// them keeps no array alive.
    ///
    /// # Errors
    /// As `get`.
    pub fn take(self, timeout: Duration) -> Result<Vec<EngineResult>, ClientError> {
        let waited = self.wait(timeout);
        let req = {
            let mut state = self.shared.state.lock().expect("client state");
            state.output.remove(&self.req_id);
            state.requests.remove(&self.req_id)
        };
        if !waited? {
            return Err(ClientError::Timeout(timeout));
        }
        let req = req.expect("request state exists once done");
        match req.error {
            Some(e) => Err(ClientError::Refused(e)),
            None => Ok(req.results.into_values().collect()),
        }
    }

    /// [`take`](Self::take) with the errors of [`get_ok`](Self::get_ok).
    ///
    /// # Errors
    /// As `get_ok`.
    pub fn take_ok(self, timeout: Duration) -> Result<Vec<EngineResult>, ClientError> {
        only_ok(self.take(timeout)?)
    }

    /// Forgets this request's results (they are kept until then so a timed-out wait can resume).
    pub fn forget(self) {
        let mut state = self.shared.state.lock().expect("client state");
        state.requests.remove(&self.req_id);
        state.output.remove(&self.req_id);
    }

    /// The request's controller-wide id, once the controller accepted it: what `mpx wait ID`
    /// and [`Client::adopt`](crate::Client::adopt) take.
    pub fn id(&self) -> Option<mpx_messages::Ticket> {
        let state = self.shared.state.lock().expect("client state");
        state.requests.get(&self.req_id).and_then(|r| r.id)
    }

    /// What the controller said so far of this request's ranks stuck in MPI calls (each
    /// [`Stuck::message`](mpx_messages::Stuck::message) is for the user), oldest first.
    pub fn stuck(&self) -> Vec<mpx_messages::Stuck> {
        let state = self.shared.state.lock().expect("client state");
        state.requests.get(&self.req_id).map(|r| r.stuck.clone()).unwrap_or_default()
    }

    /// How many engines have answered so far.
    pub fn answered(&self) -> usize {
        let state = self.shared.state.lock().expect("client state");
        state.requests.get(&self.req_id).map_or(0, |r| r.results.len())
    }

    /// The engines' output as it arrives (see [`crate::output`]): while the stream exists, the
    /// results carry no stdout or stderr.
    pub fn output(&self) -> OutputStream {
        OutputStream::start(self.req_id, self.shared.clone())
    }
}

/// `results` when every engine succeeded; else a dead engine as [`ClientError::EngineDied`],
/// any other engine error as [`ClientError::Remote`].
fn only_ok(results: Vec<EngineResult>) -> Result<Vec<EngineResult>, ClientError> {
    if let Some(dead) = died(&results) {
        return Err(dead);
    }
    let errors: Vec<_> =
        results.iter().filter_map(|r| r.outcome.error.clone().map(|e| (r.engine_id, e))).collect();
    if errors.is_empty() {
        Ok(results)
    } else {
        Err(ClientError::Remote(errors))
    }
}
