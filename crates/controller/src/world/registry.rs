//! Registration: rank 0 registers its whole world at once (a new engine set, ids for every
//! rank), then every rank attaches its own connection to that set.

use mpx_messages::{EngineId, EngineInfo, MpxError, Rank, RegisterReply, RegisterRequest, SetId};
use thiserror::Error;
use tracing::{info, warn};

use super::{Command, ConnId, Engine, EngineSet, Launched, World};

/// Why a registration was refused (the engine is told, as [`MpxError::Refused`], and exits).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegisterRefused {
    /// A registration without an engine set that is not rank 0's with its whole world.
    #[error("only rank 0 registers a world, with every rank's details")]
    NotAWorld,
    /// The engine set named is not registered.
    #[error("no engine set {0}")]
    NoSuchSet(SetId),
    /// The engine set is going down.
    #[error("engine set {0} is being torn down")]
    SetDying(SetId),
    /// The rank is not in the set's world.
    #[error("rank {rank} is outside engine set {set} of {size} ranks")]
    OutsideSet {
        /// The rank given.
        rank: Rank,
        /// The engine set.
        set: SetId,
        /// Its world's size.
        size: u32,
    },
    /// The rank has a connection already.
    #[error("engine {set}:{rank} is already registered")]
    AlreadyRegistered {
        /// The engine set.
        set: SetId,
        /// The rank.
        rank: Rank,
    },
    /// Its pid or host is not what rank 0 registered for it.
    #[error("engine {set}:{rank} does not match its world's registration")]
    Mismatch {
        /// The engine set.
        set: SetId,
        /// The rank.
        rank: Rank,
    },
}

impl World {
    /// Handles a registration: answers with the engine id and set, or a refusal.
    pub(super) fn register(&mut self, conn: ConnId, req: RegisterRequest, local: bool) {
        let reply = match self.attach(conn, req, local) {
            Ok((engine, set)) => RegisterReply {
                engine_id: Some(engine),
                cluster_id: self.config.cluster_id.clone(),
                error: None,
                heartbeat_ms: self.config.heartbeat.as_millis() as u64,
                set: Some(set),
            },
            Err(error) => {
                warn!(%conn, %error, "engine registration refused");
                RegisterReply {
                    engine_id: None,
                    cluster_id: self.config.cluster_id.clone(),
                    error: Some(MpxError::refused(error.to_string())),
                    heartbeat_ms: 0,
                    set: None,
                }
            }
        };
        self.emit(Command::Registered { conn, reply });
    }

    fn attach(
        &mut self,
        conn: ConnId,
        req: RegisterRequest,
        local: bool,
    ) -> Result<(EngineId, SetId), RegisterRefused> {
        let set = match req.set {
            None if req.rank == Rank(0) && req.world.len() == req.size as usize => self.new_set(&req),
            None => return Err(RegisterRefused::NotAWorld),
            Some(set) => set,
        };
        let Some(world) = self.sets.get(&set) else {
            return Err(RegisterRefused::NoSuchSet(set));
        };
        if world.dying.is_some() {
            return Err(RegisterRefused::SetDying(set));
        }
        let Some(id) = world.engine(req.rank) else {
            return Err(RegisterRefused::OutsideSet { rank: req.rank, set, size: world.size });
        };
        if self.engines.contains_key(&id) {
            return Err(RegisterRefused::AlreadyRegistered { set, rank: req.rank });
        }
        let detail = world.ranks.get(&req.rank);
        if detail.is_some_and(|d| d.pid != req.pid || d.hostname != req.hostname) {
            return Err(RegisterRefused::Mismatch { set, rank: req.rank });
        }
        info!(engine = %id, %set, rank = %req.rank, pid = req.pid, "engine attached");
        let info = EngineInfo {
            id,
            world_size: req.size,
            pid: req.pid,
            hostname: req.hostname,
            bytes_sent: 0,
            set,
            rank: req.rank,
            local,
        };
        self.engines.insert(id, Engine { info, conn: Some(conn) });
        Ok((id, set))
    }

    /// Registers rank 0's world as a new set: the lowest free set number, and the lowest ids
    /// free for all its ranks (a restarted world gets the ids of the one it replaces).
    fn new_set(&mut self, req: &RegisterRequest) -> SetId {
        let set = (0..).map(SetId).find(|s| !self.sets.contains_key(s)).expect("a free set number");
        // The sets' id ranges in id order (set numbers need not be): the first gap that fits.
        let mut base = 0;
        let mut taken: Vec<(u32, u32)> = self.sets.values().map(EngineSet::id_range).collect();
        taken.sort_unstable();
        for (start, end) in taken {
            if base + req.size <= start {
                break;
            }
            base = base.max(end);
        }
        let ranks = req.world.iter().map(|r| (r.rank, r.clone())).collect();
        self.sets.insert(set, EngineSet { base: EngineId(base), size: req.size, ranks, dying: None });
        if self.launched == Launched::Expected {
            self.launched = Launched::Set(set);
        }
        info!(%set, base, size = req.size, "engine set registered");
        set
    }
}
