//! Stuck ranks: an engine tells the controller that its cell has been inside one MPI call for a
//! while ([`Blocked`]), or that it left one half way ([`Abandoned`]); the controller tells the
//! client which ranks of its request wait for ranks that already left the cell, or sit in calls
//! that do not match ([`Stuck`]).
//!
//! Ranks here are ranks of the engines' `COMM_WORLD` (one engine set); the controller maps
//! them to engine ids.

use serde::{Deserialize, Serialize};

use crate::ids::{EngineId, Rank, RequestId, SetId, TaskId};

/// An engine's cell has been inside one MPI call for longer than [`BLOCKED_AFTER_MS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocked {
    /// The task whose cell it is.
    pub task_id: TaskId,
    /// The MPI call, e.g. `Barrier`.
    pub call: String,
    /// Its communicator's name, e.g. `COMM_WORLD`.
    pub comm: String,
    /// Where in the cell (`<cell-1> line 4`), when the kernel can tell.
    pub detail: Option<String>,
    /// The communicator's ranks, as `COMM_WORLD` ranks (empty: not known).
    pub members: Vec<Rank>,
    /// The one rank a point-to-point call waits for (the source of a receive, the destination of
    /// a send), when it names one.
    pub peer: Option<Rank>,
}

/// How long a cell sits in one MPI call before its engine reports it [`Blocked`].
pub const BLOCKED_AFTER_MS: u64 = 1000;

/// An engine left an MPI call of its cell half way (it was interrupted, and the call cannot be
/// cancelled): its communicators can no longer be trusted to match, so its world must restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abandoned {
    /// The task whose cell it was.
    pub task_id: TaskId,
    /// The MPI call left, e.g. `Barrier`.
    pub call: String,
    /// Its communicator.
    pub comm: String,
}

/// A rank of a request that is blocked in an MPI call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedRank {
    /// The engine.
    pub engine_id: EngineId,
    /// Its rank.
    pub rank: Rank,
    /// The call.
    pub call: String,
    /// The communicator.
    pub comm: String,
    /// Where in the cell.
    pub detail: Option<String>,
}

/// A rank of a request that already left the cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftRank {
    /// The engine.
    pub engine_id: EngineId,
    /// Its rank.
    pub rank: Rank,
    /// How it left: the error's class (`ZeroDivisionError`), or `None` when it finished.
    pub error: Option<String>,
}

/// Controller → client: ranks of a request that will not get out of their MPI calls by
/// themselves (sent at once, without waiting for the request's timeout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stuck {
    /// The client's request.
    pub req_id: RequestId,
    /// The engine set (MPI world) of the ranks.
    pub set: SetId,
    /// The ranks blocked.
    pub blocked: Vec<BlockedRank>,
    /// The ranks they wait for, which left the cell (empty: the blocked ranks sit in calls that
    /// do not match).
    pub left: Vec<LeftRank>,
}

impl Stuck {
    /// The message for the user, e.g. `ranks 1-3 are blocked in Barrier on COMM_WORLD (<cell-1>
    /// line 4) waiting for rank 0, which left the cell with ZeroDivisionError; Ctrl-C to free
    /// them`.
    pub fn message(&self) -> String {
        // Ranks in the same call, communicator and line, in order of their first rank.
        let mut groups: Vec<(&str, &str, Option<&str>, Vec<Rank>)> = Vec::new();
        let mut blocked: Vec<&BlockedRank> = self.blocked.iter().collect();
        blocked.sort_by_key(|b| b.rank);
        // Ranks number their cells on their own: `<cell-16> line 4` and `<cell-13> line 4` are
        // the same place when the cells were the same request.
        let place = |d: Option<&str>| d.map(|d| d.split_once("> ").map_or(d, |(_, rest)| rest).to_string());
        for b in blocked {
            let key = (b.call.as_str(), b.comm.as_str(), b.detail.as_deref());
            match groups.iter_mut().find(|g| (g.0, g.1) == (key.0, key.1) && place(g.2) == place(key.2)) {
                Some(g) => g.3.push(b.rank),
                None => groups.push((key.0, key.1, key.2, vec![b.rank])),
            }
        }
        let parts: Vec<String> = groups
            .iter()
            .map(|(call, comm, detail, ranks)| {
                let verb = if ranks.len() == 1 { "is" } else { "are" };
                let at = detail.map(|d| format!(" ({d})")).unwrap_or_default();
                format!("{} {verb} blocked in {call} on {comm}{at}", ranks_text(ranks))
            })
            .collect();
        let set = if self.set != SetId(0) { format!(" of engine set {}", self.set) } else { String::new() };
        let mut text = parts.join(" and ");
        if self.left.is_empty() {
            text.push_str(&format!("{set}: their calls do not match"));
        } else {
            let mut left: Vec<&LeftRank> = self.left.iter().collect();
            left.sort_by_key(|l| l.rank);
            let ranks: Vec<Rank> = left.iter().map(|l| l.rank).collect();
            let errors: Vec<Option<&str>> = left.iter().map(|l| l.error.as_deref()).collect();
            let how = if errors.iter().all(|e| *e == errors[0]) {
                match errors[0] {
                    Some(e) => format!("left the cell with {e}"),
                    None => "already finished the cell".to_string(),
                }
            } else {
                let each: Vec<String> = left
                    .iter()
                    .map(|l| match &l.error {
                        Some(e) => format!("rank {} with {e}", l.rank),
                        None => format!("rank {} finished", l.rank),
                    })
                    .collect();
                format!("left the cell ({})", each.join(", "))
            };
            text.push_str(&format!("{set} waiting for {}, which {how}", ranks_text(&ranks)));
        }
        text.push_str("; Ctrl-C to free them");
        text
    }
}

/// `rank 0`, `ranks 1-3`, `ranks 0, 2, 5-7`.
pub fn ranks_text(ranks: &[Rank]) -> String {
    let mut sorted: Vec<u32> = ranks.iter().map(|r| r.0).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        runs.push(if j > i { format!("{}-{}", sorted[i], sorted[j]) } else { sorted[i].to_string() });
        i = j + 1;
    }
    let noun = if sorted.len() == 1 { "rank" } else { "ranks" };
    format!("{noun} {}", runs.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(rank: u32, call: &str) -> BlockedRank {
        BlockedRank {
            engine_id: EngineId(rank),
            rank: Rank(rank),
            call: call.into(),
            comm: "COMM_WORLD".into(),
            detail: Some("<cell-1> line 4".into()),
        }
    }

    #[test]
    fn names_the_blocked_and_the_ranks_they_wait_for() {
        let stuck = Stuck {
            req_id: RequestId(1),
            set: SetId(0),
            blocked: vec![blocked(3, "Barrier"), blocked(1, "Barrier"), blocked(2, "Barrier")],
            left: vec![LeftRank {
                engine_id: EngineId(0),
                rank: Rank(0),
                error: Some("ZeroDivisionError".into()),
            }],
        };
        assert_eq!(
            stuck.message(),
            "ranks 1-3 are blocked in Barrier on COMM_WORLD (<cell-1> line 4) waiting for rank 0, which \
             left the cell with ZeroDivisionError; Ctrl-C to free them"
        );
    }

    #[test]
    fn calls_that_do_not_match() {
        let stuck = Stuck {
            req_id: RequestId(1),
            set: SetId(1),
            blocked: vec![blocked(0, "Allreduce"), blocked(1, "Barrier"), blocked(2, "Barrier")],
            left: vec![],
        };
        assert_eq!(
            stuck.message(),
            "rank 0 is blocked in Allreduce on COMM_WORLD (<cell-1> line 4) and ranks 1-2 are blocked in \
             Barrier on COMM_WORLD (<cell-1> line 4) of engine set 1: their calls do not match; Ctrl-C to \
             free them"
        );
    }

    #[test]
    fn several_ranks_left_differently() {
        let stuck = Stuck {
            req_id: RequestId(1),
            set: SetId(0),
            blocked: vec![blocked(1, "Recv")],
            left: vec![
                LeftRank { engine_id: EngineId(0), rank: Rank(0), error: None },
                LeftRank { engine_id: EngineId(2), rank: Rank(2), error: Some("ValueError".into()) },
            ],
        };
        assert_eq!(
            stuck.message(),
            "rank 1 is blocked in Recv on COMM_WORLD (<cell-1> line 4) waiting for ranks 0, 2, which left \
             the cell (rank 0 finished, rank 2 with ValueError); Ctrl-C to free them"
        );
        assert_eq!(ranks_text(&[Rank(5), Rank(0), Rank(2), Rank(6), Rank(7)]), "ranks 0, 2, 5-7");
    }
}
