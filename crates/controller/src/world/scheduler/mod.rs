//! The load-balanced task scheduler: pure state, events in, decisions out (no actors, no IO).
//! The world core feeds it (`balanced.rs`: submissions, replies, engines ready, dying, gone,
//! clients gone) and turns its decisions into [`Command`](super::Command)s.
//!
//! ```text
//!   submit / done / engine up / engine gone / cancel --->  Scheduler  ---> Decision::Run / Reply / Fail
//! ```
//!
//! Each task runs on one engine among those its caller targeted. The scheduler picks the least
//! loaded engine (fewest tasks in flight), and lets an engine hold up to `depth` tasks at once:
//! the engine queues them and starts the next as soon as one ends, without waiting a round trip
//! for it (pipelining). Tasks wait in the controller, oldest first, while every targeted engine
//! is full.
//!
//! A task on an engine that goes away is run again on another targeted engine, up to its
//! `retries` times; after that it fails with [`TaskError::EngineDied`]. A waiting task whose
//! targeted engines are all gone fails too, unless engines are expected back (a world being
//! restarted, see [`Scheduler::expect_engines`]).
//!
//! A task holds no MPI collective: it runs on one engine of a world while the others run other
//! tasks. Collectives belong to `%px` (every engine of a world runs the same cell).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use mpx_messages::{EngineId, TaskId};

#[cfg(test)]
mod tests;

/// Tasks an engine holds at once by default: enough for a no-op task to start as soon as the
/// previous one ends (measured on 2 cores with 4 engines: depth 2 gives 13,000 no-op tasks/s,
/// 4 gives 20,000, 8 gives 29,000 from one client), few enough that long tasks still spread
/// over idle engines (a task may wait behind at most 7 others on its engine).
pub const DEFAULT_DEPTH: usize = 8;

/// Which engines a task may run on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pool {
    /// Any registered engine, now or later.
    Any,
    /// Only these engines (sorted, no duplicates).
    Only(Vec<EngineId>),
}

impl Pool {
    /// A pool of these engines (sorted and deduplicated).
    pub fn only(mut ids: Vec<EngineId>) -> Pool {
        ids.sort_unstable();
        ids.dedup();
        Pool::Only(ids)
    }
}

/// Why a task failed without an engine's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    /// The engine running the task went away and the task had no retries left.
    EngineDied {
        /// The engine.
        engine: EngineId,
        /// What is known about why.
        cause: String,
    },
    /// None of the targeted engines is registered (and none is expected).
    NoEngines(String),
}

/// What the scheduler asks its runner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send the task to the engine (`attempt` counts from 1; above 1 it is a retry).
    Run {
        /// The task.
        task: TaskId,
        /// The engine.
        engine: EngineId,
        /// Which attempt this is.
        attempt: u32,
    },
    /// Pass the engine's answer to the task's client: the task is over.
    Reply {
        /// The task.
        task: TaskId,
        /// The engine that answered.
        engine: EngineId,
    },
    /// Tell the task's client that it failed: the task is over.
    Fail {
        /// The task.
        task: TaskId,
        /// Why.
        error: TaskError,
    },
}

/// One task the scheduler knows of (waiting or running).
#[derive(Debug)]
struct Entry {
    pool: Pool,
    /// Retries left.
    retries: u32,
    /// Attempts so far.
    attempts: u32,
    /// The engine running it, if it runs.
    engine: Option<EngineId>,
    /// The last engine it was on that died, and why.
    died: Option<(EngineId, String)>,
    /// Submission order (waiting tasks run oldest first).
    seq: u64,
    /// Its client gave it up while it ran: the answer is dropped, no retry.
    cancelled: bool,
}

/// The scheduler's state: engines and their loads, waiting and running tasks.
#[derive(Debug)]
pub struct Scheduler {
    depth: usize,
    /// Tasks in flight on each registered engine.
    load: BTreeMap<EngineId, BTreeSet<TaskId>>,
    /// Engines with room, by (load, id): the least loaded first.
    free: BTreeSet<(usize, EngineId)>,
    tasks: HashMap<TaskId, Entry>,
    /// Waiting tasks by pool, each queue oldest first.
    waiting: BTreeMap<Pool, VecDeque<(u64, TaskId)>>,
    next_seq: u64,
    /// Engines are expected (a world is starting): waiting tasks with no engine wait on.
    expecting: bool,
    /// Registered engines that take no more tasks (their world is going down).
    stopping: BTreeSet<EngineId>,
}

impl Scheduler {
    /// A scheduler letting each engine hold up to `depth` tasks (at least 1).
    pub fn new(depth: usize) -> Scheduler {
        Scheduler {
            depth: depth.max(1),
            load: BTreeMap::new(),
            free: BTreeSet::new(),
            tasks: HashMap::new(),
            waiting: BTreeMap::new(),
            next_seq: 0,
            expecting: false,
            stopping: BTreeSet::new(),
        }
    }

    /// Tasks an engine holds at most.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Tasks known (waiting or running).
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task is waiting or running.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Tasks waiting for an engine.
    pub fn waiting(&self) -> usize {
        self.waiting.values().map(VecDeque::len).sum()
    }

    /// Tasks in flight on `engine`.
    pub fn load_of(&self, engine: EngineId) -> usize {
        self.load.get(&engine).map_or(0, BTreeSet::len)
    }

    /// The engine running `task`, if it runs.
    pub fn engine_of(&self, task: TaskId) -> Option<EngineId> {
        self.tasks.get(&task).and_then(|t| t.engine)
    }

    /// Event: an engine registered; waiting tasks may go to it.
    pub fn engine_up(&mut self, engine: EngineId) -> Vec<Decision> {
        if !self.load.contains_key(&engine) && !self.stopping.contains(&engine) {
            self.load.insert(engine, BTreeSet::new());
            self.free.insert((0, engine));
        }
        self.dispatch()
    }

    /// Whether engines are expected to register (a world is starting or restarting): while
    /// they are, a waiting task whose engines are all gone keeps waiting; when they no longer
    /// are, such tasks fail.
    pub fn expect_engines(&mut self, expecting: bool) -> Vec<Decision> {
        self.expecting = expecting;
        let mut out = Vec::new();
        if !expecting {
            self.fail_stranded(&mut out);
        }
        out.extend(self.dispatch());
        out
    }

    /// Event: a client submitted a task for `pool`, to be retried up to `retries` times if its
    /// engine goes away. `task` must be new.
    pub fn submit(&mut self, task: TaskId, pool: Pool, retries: u32) -> Vec<Decision> {
        debug_assert!(!self.tasks.contains_key(&task), "task {task} submitted twice");
        if let Err(error) = self.check_pool(&pool) {
            return vec![Decision::Fail { task, error }];
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.tasks.insert(
            task,
            Entry {
                pool: pool.clone(),
                retries,
                attempts: 0,
                engine: None,
                died: None,
                seq,
                cancelled: false,
            },
        );
        self.waiting.entry(pool).or_default().push_back((seq, task));
        self.dispatch()
    }

    /// Event: `engine` answered `task`. A reply from another engine than the one running the
    /// task, or to a task no longer known, is ignored (no decision).
    pub fn done(&mut self, task: TaskId, engine: EngineId) -> Vec<Decision> {
        if self.tasks.get(&task).and_then(|t| t.engine) != Some(engine) {
            return Vec::new();
        }
        let entry = self.tasks.remove(&task).expect("checked above");
        self.unload(engine, task);
        let mut out = Vec::new();
        if !entry.cancelled {
            out.push(Decision::Reply { task, engine });
        }
        out.extend(self.dispatch());
        out
    }

    /// Event: `engine` went away (`cause`: what is known). Its tasks run again elsewhere while
    /// they have retries, else fail with [`TaskError::EngineDied`].
    pub fn engine_gone(&mut self, engine: EngineId, cause: &str) -> Vec<Decision> {
        self.engines_gone([(engine, cause)])
    }

    /// Event: several engines went away at once (a world torn down): none of them gets a retry
    /// of another's task.
    pub fn engines_gone<'a>(&mut self, gone: impl IntoIterator<Item = (EngineId, &'a str)>) -> Vec<Decision> {
        let mut orphans = Vec::new();
        for (engine, cause) in gone {
            self.stopping.remove(&engine);
            let Some(running) = self.load.remove(&engine) else { continue };
            self.free.retain(|&(_, e)| e != engine);
            orphans.extend(running.into_iter().map(|task| (task, engine, cause)));
        }
        let mut out = Vec::new();
        for (task, engine, cause) in orphans {
            let entry = self.tasks.get_mut(&task).expect("running tasks are known");
            entry.engine = None;
            entry.died = Some((engine, cause.to_string()));
            if entry.cancelled {
                self.tasks.remove(&task);
            } else if entry.retries == 0 {
                self.tasks.remove(&task);
                let error = TaskError::EngineDied { engine, cause: cause.to_string() };
                out.push(Decision::Fail { task, error });
            } else {
                entry.retries -= 1;
                let queue = self.waiting.entry(entry.pool.clone()).or_default();
                // Back among the waiting in submission order: it is older than most of them.
                let at = queue.partition_point(|&(seq, _)| seq < entry.seq);
                queue.insert(at, (entry.seq, task));
            }
        }
        if !self.expecting {
            self.fail_stranded(&mut out);
        }
        out.extend(self.dispatch());
        out
    }

    /// Event: `engine` is about to go (its world is being torn down): it gets no more tasks,
    /// and those it holds may still answer until [`engine_gone`](Self::engine_gone).
    pub fn engine_stopping(&mut self, engine: EngineId) -> Vec<Decision> {
        if !self.load.contains_key(&engine) || !self.stopping.insert(engine) {
            return Vec::new();
        }
        self.free.retain(|&(_, e)| e != engine);
        let mut out = Vec::new();
        if !self.expecting {
            self.fail_stranded(&mut out);
        }
        out
    }

    /// Event: the client of these tasks went away or gave them up. Waiting ones are dropped;
    /// running ones stay on their engine until it answers (the answer is then dropped: no
    /// decision names a cancelled task again).
    pub fn cancel(&mut self, tasks: &[TaskId]) -> Vec<Decision> {
        for task in tasks {
            let Some(entry) = self.tasks.get_mut(task) else { continue };
            if entry.engine.is_some() {
                // The slot stays taken until the engine is done with it.
                entry.cancelled = true;
                continue;
            }
            let entry = self.tasks.remove(task).expect("found above");
            if let Some(queue) = self.waiting.get_mut(&entry.pool) {
                queue.retain(|&(_, t)| t != *task);
                if queue.is_empty() {
                    self.waiting.remove(&entry.pool);
                }
            }
        }
        self.dispatch()
    }

    /// Checks that a pool names only registered engines (or any, when engines are expected).
    fn check_pool(&self, pool: &Pool) -> Result<(), TaskError> {
        match pool {
            Pool::Any if self.load.is_empty() && !self.expecting => {
                Err(TaskError::NoEngines("no engines are registered".into()))
            }
            Pool::Only(ids) if ids.is_empty() => Err(TaskError::NoEngines("no engines were targeted".into())),
            Pool::Only(ids) => match ids.iter().find(|id| !self.load.contains_key(id)) {
                Some(bad) if !self.expecting => Err(TaskError::NoEngines(format!(
                    "no engine {bad} (registered: {:?})",
                    self.load.keys().collect::<Vec<_>>()
                ))),
                _ => Ok(()),
            },
            Pool::Any => Ok(()),
        }?;
        if !self.expecting && !self.pool_alive(pool) {
            return Err(TaskError::NoEngines("every targeted engine is stopping".into()));
        }
        Ok(())
    }

    /// Whether some engine of `pool` is registered and takes tasks.
    fn pool_alive(&self, pool: &Pool) -> bool {
        let usable = |id: &EngineId| self.load.contains_key(id) && !self.stopping.contains(id);
        match pool {
            Pool::Any => self.load.keys().any(usable),
            Pool::Only(ids) => ids.iter().any(usable),
        }
    }

    /// Fails the waiting tasks none of whose engines is registered.
    fn fail_stranded(&mut self, out: &mut Vec<Decision>) {
        let dead: Vec<Pool> = self.waiting.keys().filter(|p| !self.pool_alive(p)).cloned().collect();
        for pool in dead {
            for (_, task) in self.waiting.remove(&pool).unwrap_or_default() {
                let entry = self.tasks.remove(&task).expect("waiting tasks are known");
                let error = match entry.died {
                    Some((engine, cause)) => TaskError::EngineDied { engine, cause },
                    None => TaskError::NoEngines("every targeted engine is gone".into()),
                };
                out.push(Decision::Fail { task, error });
            }
        }
    }

    /// The least loaded engine of `pool` with room, lowest id first among equals.
    fn pick(&self, pool: &Pool) -> Option<EngineId> {
        match pool {
            Pool::Any => self.free.first().map(|&(_, e)| e),
            Pool::Only(ids) => ids
                .iter()
                .filter(|id| !self.stopping.contains(id))
                .filter_map(|id| self.load.get(id).map(|l| (l.len(), *id)))
                .filter(|&(load, _)| load < self.depth)
                .min()
                .map(|(_, e)| e),
        }
    }

    /// Sends waiting tasks to engines with room, oldest first, until none can go.
    fn dispatch(&mut self) -> Vec<Decision> {
        let mut out = Vec::new();
        while !self.free.is_empty() {
            // The oldest head among the pools that have an engine with room.
            let next = self
                .waiting
                .iter()
                .filter_map(|(pool, q)| {
                    let &(seq, task) = q.front()?;
                    self.pick(pool).map(|engine| (seq, task, engine, pool.clone()))
                })
                .min_by_key(|&(seq, ..)| seq);
            let Some((_, task, engine, pool)) = next else { break };
            let queue = self.waiting.get_mut(&pool).expect("picked from it");
            queue.pop_front();
            if queue.is_empty() {
                self.waiting.remove(&pool);
            }
            let entry = self.tasks.get_mut(&task).expect("waiting tasks are known");
            entry.engine = Some(engine);
            entry.attempts += 1;
            let attempt = entry.attempts;
            self.place(engine, task);
            out.push(Decision::Run { task, engine, attempt });
        }
        out
    }

    /// Counts `task` on `engine`.
    fn place(&mut self, engine: EngineId, task: TaskId) {
        let running = self.load.get_mut(&engine).expect("placed on a registered engine");
        let before = running.len();
        running.insert(task);
        self.free.remove(&(before, engine));
        if before + 1 < self.depth {
            self.free.insert((before + 1, engine));
        }
    }

    /// Stops counting `task` on `engine`.
    fn unload(&mut self, engine: EngineId, task: TaskId) {
        let Some(running) = self.load.get_mut(&engine) else { return };
        let before = running.len();
        if !running.remove(&task) {
            return;
        }
        self.free.remove(&(before, engine));
        if !self.stopping.contains(&engine) {
            self.free.insert((before - 1, engine));
        }
    }
}
