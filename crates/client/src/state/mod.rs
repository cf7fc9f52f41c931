//! The state the connection's reader thread and the callers share ([`Shared`]): what arrived for
//! each request, task and control call, and whether the connection ended. It sits below every
//! module that uses it (the client, its results, views, the output stream, the reader): it
//! refers only to the records it holds ([`crate::reply`]) and to the errors.
//!
//! # Layout
//! - this file: [`Shared`], [`State`], [`RequestState`] and [`Closed`].
//! - [`slots`]: [`Slots`], the results of load-balanced tasks until they are taken.
//! - [`printed`]: [`RequestOutput`], what engines printed for a request until its results or
//!   its output stream take it.

mod printed;
mod slots;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Condvar, Mutex},
    time::{Duration, Instant},
};

use mpx_messages::{ClusterInfo, ControllerToClient, EngineId, MpxError, RequestId, Stuck, Ticket};

pub(crate) use printed::RequestOutput;
pub use printed::{KEEP, QUEUE_LIMIT};
pub(crate) use slots::Slots;

use crate::{error::ClientError, reply::EngineResult};

/// Why the connection ended, kept to build the error for every later call.
#[derive(Debug, Clone)]
pub(crate) enum Closed {
    /// The controller refused this client's key.
    Rejected,
    /// Any other end (the cause, for the user).
    Other(String),
}

impl Closed {
    /// The error every call returns once the connection ended so.
    pub(crate) fn to_error(&self) -> ClientError {
        match self {
            Closed::Rejected => ClientError::Rejected,
            Closed::Other(why) => ClientError::Closed(why.clone()),
        }
    }
}

/// State of one request, shared with the reader thread.
#[derive(Debug, Default)]
pub(crate) struct RequestState {
    /// Engines that will answer, once the controller accepted.
    pub engines: Option<Vec<EngineId>>,
    /// Refusal.
    pub error: Option<MpxError>,
    /// Results so far.
    pub results: BTreeMap<EngineId, EngineResult>,
    /// The request's controller-wide id, once accepted.
    pub id: Option<Ticket>,
    /// What the controller said of ranks stuck in MPI calls, in order.
    pub stuck: Vec<Stuck>,
}

impl RequestState {
    /// Whether every engine has answered, or the request was refused.
    pub(crate) fn done(&self) -> bool {
        self.error.is_some() || self.engines.as_ref().is_some_and(|e| e.len() == self.results.len())
    }
}

/// Everything the reader thread files for the callers.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Direct requests in flight, by the connection's request id.
    pub requests: HashMap<RequestId, RequestState>,
    /// The last cluster information, and how many came (a caller waits for the next).
    pub info: Option<ClusterInfo>,
    pub info_seq: u64,
    /// The controller acknowledged a shutdown.
    pub shutdown_acked: bool,
    /// Why the connection ended, once it did.
    pub closed: Option<Closed>,
    /// Answers to control requests (interrupt, where, abort), oldest first.
    pub control: Vec<ControllerToClient>,
    /// Results of load-balanced tasks.
    pub balanced: Slots,
    /// What engines printed for each request, until its results take it.
    pub output: HashMap<RequestId, RequestOutput>,
    /// Callers waiting for a request's acceptance ([`crate::AsyncResult::engines`]): an
    /// acceptance that completes nothing wakes the waiters only when there are some.
    pub accept_waiters: usize,
}

/// What the reader thread and the callers share.
#[derive(Debug)]
pub struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) cond: Condvar,
    /// The memfds this connection lends to engines of its host.
    pub(crate) lender: crate::lend::Lender,
}

impl Shared {
    /// Empty state, for a new connection.
    pub(crate) fn new() -> Shared {
        Shared {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            lender: crate::lend::Lender::new(),
        }
    }

    /// Waits up to `timeout` until `ready` finds what it looks for in the state (checked at
    /// each change); a closed connection ends the wait with its error.
    pub(crate) fn wait_for<T>(
        &self,
        timeout: Duration,
        mut ready: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().expect("client state");
        loop {
            if let Some(found) = ready(&mut state) {
                return Ok(found);
            }
            if let Some(c) = &state.closed {
                return Err(c.to_error());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(timeout));
            }
            state = self.cond.wait_timeout(state, left).expect("client state").0;
        }
    }
}
