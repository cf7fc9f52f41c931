//! The names of engines: [`EngineId`] (controller-wide) and [`Rank`] (within one MPI world),
//! never mixed, and [`Targets`], the engines a request is for.
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

macro_rules! number {
    ($t:ident) => {
        impl $t {
            /// The number.
            pub fn get(self) -> u32 {
                self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<u32> for $t {
            fn from(n: u32) -> Self {
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

number!(EngineId);
number!(Rank);

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
