//! The names of engines: [`EngineId`] (controller-wide) and [`Rank`] (within one MPI world),
//! never mixed, and [`Targets`], the engines a request is for; the numbers of engine sets
//! ([`SetId`]), of requests ([`RequestId`], a client's; [`Ticket`], the controller's), of
//! tasks ([`TaskId`]) and of `where` polls ([`PollId`]). Each is a plain number on the wire
//! (`#[serde(transparent)]`).
//!
//! An engine set is one MPI world; its engines get the ids `base..base + size`, so in a
//! cluster of one set the engine id equals the rank, but with several sets it does not
//! (engine 3 is rank 1 of set 1 in a cluster of two worlds of two). Collectives name ranks
//! (`group`); everything a client sees names engine ids.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An engine's controller-wide id (a plain number on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct EngineId(pub u32);

/// A rank in one MPI world (`COMM_WORLD` of an engine set; a plain number on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Rank(pub u32);

/// An engine set's number: one MPI world registered with a controller (a plain number on the
/// wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct SetId(pub u32);

/// A client's id for one of its requests, unique on its connection and echoed in every reply
/// about it (`req_id`; a plain number on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct RequestId(pub u64);

/// A task's id (a plain number on the wire): the controller's for the tasks it sends engines
/// (`task_id`: one per engine of a request, or one load-balanced task), a client's for the
/// load-balanced tasks it submits ([`BalancedTask::id`](crate::BalancedTask::id)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct TaskId(pub u64);

/// An accepted request's controller-wide id (a plain number on the wire, from 1): what
/// `mpx wait ID` adopts once the request's client went away. A client's own id for the same
/// request is its [`RequestId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Ticket(pub u64);

/// A `where` poll's id: the controller asks every engine for its state under it, and each
/// answers under it (a plain number on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct PollId(pub u64);

macro_rules! number {
    ($t:ident, $n:ty) => {
        impl $t {
            /// The number.
            pub fn get(self) -> $n {
                self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$n> for $t {
            fn from(n: $n) -> Self {
                $t(n)
            }
        }

        impl std::str::FromStr for $t {
            type Err = std::num::ParseIntError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($t)
            }
        }
    };
}

number!(EngineId, u32);
number!(Rank, u32);
number!(SetId, u32);
number!(RequestId, u64);
number!(TaskId, u64);
number!(Ticket, u64);
number!(PollId, u64);

impl PollId {
    /// The one after this one (polls are numbered in order).
    pub fn next(self) -> PollId {
        PollId(self.0 + 1)
    }
}

impl Ticket {
    /// The one after this one (tickets are handed out in order).
    pub fn next(self) -> Ticket {
        Ticket(self.0 + 1)
    }
}

impl TaskId {
    /// The one after this one (task ids are handed out in order).
    pub fn next(self) -> TaskId {
        TaskId(self.0 + 1)
    }
}

/// Serde for an `Option<Ticket>` written as the number it always was: `0` for none (a refused
/// request has no ticket), so the wire keeps its plain number.
pub mod ticket_or_zero {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Ticket;

    /// `None` as `0`.
    pub fn serialize<S: Serializer>(ticket: &Option<Ticket>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(ticket.map_or(0, Ticket::get))
    }

    /// `0` as `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ticket>, D::Error> {
        let n = u64::deserialize(d)?;
        Ok((n != 0).then_some(Ticket(n)))
    }
}

/// Which engines a request is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Targets {
    /// Every registered engine.
    #[default]
    All,
    /// These engines.
    List(Vec<EngineId>),
}

impl Targets {
    /// These engine ids, e.g. `Targets::ids([1, 3])`.
    pub fn ids(ids: impl IntoIterator<Item = u32>) -> Targets {
        Targets::List(ids.into_iter().map(EngineId).collect())
    }

    /// The engines with ids in `range`, e.g. `Targets::range(1..3)` for engines 1 and 2.
    pub fn range(range: std::ops::Range<u32>) -> Targets {
        Targets::ids(range)
    }

    /// Whether engine `id` is one of them (any engine is, for [`Targets::All`]).
    pub fn contains(&self, id: EngineId) -> bool {
        match self {
            Targets::All => true,
            Targets::List(ids) => ids.contains(&id),
        }
    }
}

impl From<std::ops::Range<u32>> for Targets {
    fn from(range: std::ops::Range<u32>) -> Targets {
        Targets::range(range)
    }
}

impl From<Vec<EngineId>> for Targets {
    fn from(ids: Vec<EngineId>) -> Targets {
        Targets::List(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientToController, SubmitReply};

    #[test]
    fn ids_are_plain_numbers_on_the_wire() {
        assert_eq!(serde_json::to_string(&RequestId(7)).unwrap(), "7");
        assert_eq!(serde_json::to_string(&TaskId(u64::MAX)).unwrap(), u64::MAX.to_string());
        assert_eq!(serde_json::to_string(&SetId(2)).unwrap(), "2");
        assert_eq!(serde_json::to_string(&Ticket(9)).unwrap(), "9");
        assert_eq!(serde_json::to_string(&PollId(4)).unwrap(), "4");
        assert_eq!(serde_json::from_str::<RequestId>("7").unwrap(), RequestId(7));
        assert_eq!(serde_json::from_str::<TaskId>("3").unwrap(), TaskId(3));
        assert_eq!(serde_json::from_str::<SetId>("2").unwrap(), SetId(2));
        assert!(serde_json::from_str::<SetId>("\"2\"").is_err());
        let adopt = ClientToController::Adopt { req_id: RequestId(5), id: Ticket(17) };
        let json = serde_json::to_string(&adopt).unwrap();
        assert_eq!(json, r#"{"msg_type":"Adopt","content":{"req_id":5,"id":17}}"#);
    }

    #[test]
    fn a_refused_request_has_no_ticket_and_zero_on_the_wire() {
        let refused = SubmitReply { req_id: RequestId(4), engines: vec![], error: None, id: None };
        let json = serde_json::to_string(&refused).unwrap();
        assert_eq!(json, r#"{"req_id":4,"engines":[],"error":null,"id":0}"#);
        assert_eq!(serde_json::from_str::<SubmitReply>(&json).unwrap(), refused);
        let accepted = SubmitReply { id: Some(Ticket(3)), ..refused };
        let json = serde_json::to_string(&accepted).unwrap();
        assert!(json.ends_with(r#""id":3}"#), "{json}");
        assert_eq!(serde_json::from_str::<SubmitReply>(&json).unwrap(), accepted);
        // An older controller's reply without the field: no ticket.
        let old: SubmitReply = serde_json::from_str(r#"{"req_id":4,"engines":[],"error":null}"#).unwrap();
        assert_eq!(old.id, None);
    }
}
