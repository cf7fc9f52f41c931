//! The messages of load-balanced tasks (ipyparallel's `LoadBalancedView`): a client submits
//! tasks for a set of engines, the controller runs each on one engine of that set (the least
//! loaded, several queued per engine), and sends each result back as it comes.
//!
//! ```text
//! client ── BalancedRequest { targets, retries, tasks: [id, task]… } ──> controller
//! controller ── TaskRequest (one per task, to the chosen engine) ──> engine
//! engine ── TaskReply ──> controller
//! controller ── BalancedResults [{ id, engine_id, outcome, attempts }…] ──> client
//! ```
//!
//! A task is code for one engine ([`Request::Execute`], [`Request::Run`] or [`Request::Apply`]); it never
//! holds an MPI collective, which would wait for engines busy with other tasks (collectives
//! belong to `%px`, which runs a cell on every engine of a world).

use serde::{Deserialize, Serialize};

use crate::wire::{EngineId, MpxError, Outcome, Request, Targets, TaskId};

/// One task of a [`BalancedRequest`].
///
/// The array arguments of an [`Request::Apply`] refer to the buffers of the request's frame by
/// index (`ArrayMeta::buffer`), as in a `SubmitRequest`; the tasks of one frame share its
/// buffers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalancedTask {
    /// Client-chosen id, unique on the client's connection; its result carries it.
    pub id: TaskId,
    /// The work.
    pub task: Request,
}

/// A client's load-balanced tasks: each runs once, on one engine of `targets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalancedRequest {
    /// The engines the tasks may run on (only these).
    pub targets: Targets,
    /// How many times a task whose engine dies runs again on another engine (0: it fails with
    /// the `EngineDied` error).
    pub retries: u32,
    /// The tasks, in submission order.
    pub tasks: Vec<BalancedTask>,
}

/// The result of one load-balanced task.
///
/// What its apply returned out of band (`outcome.returned`) is in the buffers of the frame,
/// which carries one result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalancedResult {
    /// The task's id, as the client gave it.
    pub id: TaskId,
    /// The engine that ran it (its last attempt), or `None` when it never ran (refused, no
    /// engine left).
    pub engine_id: Option<EngineId>,
    /// What happened; `outcome.error` is the engine's error, or the controller's:
    /// `EngineDied` (its engine died and no retry was left), `NoEngines` (no targeted engine
    /// registered), `Refused` (not a task kind that runs on one engine).
    pub outcome: Outcome,
    /// How many times it was started (above 1: it was retried after its engine died).
    pub attempts: u32,
}

impl BalancedResult {
    /// A result for a task that failed in the controller.
    pub fn failed(id: TaskId, engine_id: Option<EngineId>, error: MpxError, attempts: u32) -> Self {
        BalancedResult {
            id,
            engine_id,
            outcome: Outcome { error: Some(error), ..Default::default() },
            attempts,
        }
    }
}

/// Whether `task` may run as a load-balanced task (code on one engine, no collective).
pub fn runs_alone(task: &Request) -> bool {
    matches!(task, Request::Execute { .. } | Request::Run { .. } | Request::Apply { .. })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Arg, ClientToController, ControllerToClient};

    #[test]
    fn balanced_messages_round_trip_through_json() {
        let req = ClientToController::BalancedRequest(BalancedRequest {
            targets: Targets::ids([1, 2]),
            retries: 1,
            tasks: vec![
                BalancedTask { id: TaskId(7), task: Request::Execute { code: "1 + 1".into() } },
                BalancedTask {
                    id: TaskId(8),
                    task: Request::Apply { function: "f".into(), args: vec![Arg::Int(3)] },
                },
            ],
        });
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(serde_json::from_str::<ClientToController>(&text).unwrap(), req);
        let res = ControllerToClient::BalancedResults(vec![BalancedResult::failed(
            TaskId(7),
            Some(EngineId(2)),
            MpxError::EngineDied { engine: EngineId(2), rank: crate::Rank(2), cause: "killed".into() },
            2,
        )]);
        let text = serde_json::to_string(&res).unwrap();
        assert_eq!(serde_json::from_str::<ControllerToClient>(&text).unwrap(), res);
        assert!(runs_alone(&Request::Execute { code: String::new() }));
        assert!(!runs_alone(&Request::Pull {
            name: "x".into(),
            shm: false,
            lender: None,
            returned: Vec::new()
        }));
    }
}
