//! [`BalancedView`]: load-balanced tasks (ipyparallel's `LoadBalancedView`). Each task runs on
//! one engine of the view's targets, chosen by the controller (the least loaded); results come
//! back as they end.
//!
//! A task is code for one engine ([`Work`]); it must not call an MPI collective, which would
//! wait for engines busy with other tasks: collectives belong to a direct [`View`](crate::view::View)
//! (`%px`), which runs a cell on every engine of a world.

use std::{collections::BTreeMap, ops::Range, sync::Arc, time::Duration};

use bytes::Bytes;
use mpx_messages::{BalancedRequest, BalancedTask, ClientToController, Frame, Request, Targets, TaskId};

pub use crate::reply::TaskResult;
use crate::{client::Client, error::ClientError, state::Shared, view::ApplyArg};

/// Tasks sent in one frame at most.
const BATCH: usize = 512;

/// The code one task runs.
#[derive(Debug, Clone)]
pub enum Work {
    /// A cell of code.
    Code(String),
    /// A call of a function (native, or defined by an earlier cell) with arguments.
    Call {
        /// The function's name.
        function: String,
        /// Its arguments.
        args: Vec<ApplyArg>,
    },
}

impl Work {
    /// The wire task, its array arguments' bytes appended to `buffers`.
    fn into_task(self, buffers: &mut Vec<Bytes>) -> Request {
        match self {
            Work::Code(code) => Request::Execute { code },
            Work::Call { function, args } => {
                Request::Apply { function, args: args.into_iter().map(|a| a.into_arg(buffers)).collect() }
            }
        }
    }
}

/// One load-balanced task in flight.
#[derive(Debug, Clone)]
pub struct TaskHandle {
    id: TaskId,
    shared: Arc<Shared>,
    /// When it was sent (seconds since the Unix epoch).
    pub submitted: f64,
}

impl TaskHandle {
    /// Waits up to `timeout` for the result (taking it: a second `get` waits again).
    ///
    /// # Errors
    /// Timeout (the task goes on: call again) or a lost connection.
    pub fn get(&self, timeout: Duration) -> Result<TaskResult, ClientError> {
        self.shared.wait_for(timeout, |state| state.balanced.take(self.id))
    }
}

/// Waits up to `timeout` for the first of `handles` (tasks of one client) to end; its index
/// and result (taken), or `None` when none ended in time.
///
/// # Errors
/// A lost connection.
pub fn wait_any(
    handles: &[&TaskHandle],
    timeout: Duration,
) -> Result<Option<(usize, TaskResult)>, ClientError> {
    let Some(first) = handles.first() else { return Ok(None) };
    let found = first.shared.wait_for(timeout, |state| {
        handles.iter().enumerate().find_map(|(i, h)| state.balanced.take(h.id).map(|r| (i, r)))
    });
    match found {
        Ok(found) => Ok(Some(found)),
        Err(ClientError::Timeout(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How [`BalancedView::imap`] and [`BalancedView::map`] run.
#[derive(Debug, Clone)]
pub struct MapOptions {
    /// Items per task (at least 1).
    pub chunksize: usize,
    /// Results in item order (`true`), or as they complete.
    pub ordered: bool,
    /// Tasks outstanding at most (sent and not yet returned by the iterator); `None`: all at once.
    pub bound: Option<usize>,
    /// How long to wait for each next result.
    pub timeout: Duration,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions { chunksize: 1, ordered: true, bound: None, timeout: Duration::from_secs(3600) }
    }
}

/// One task's result in a map: which chunk of items it ran.
#[derive(Debug, Clone)]
pub struct MapItem {
    /// The chunk's index (0 for items `0..chunksize`, ...).
    pub index: usize,
    /// The items it ran.
    pub items: Range<usize>,
    /// Its result.
    pub result: TaskResult,
}

impl Client {
    /// A view for load-balanced tasks on some engines: each task runs on one of them.
    pub fn load_balanced_view(&self, targets: impl Into<Targets>) -> BalancedView<'_> {
        BalancedView::new(self, targets.into())
    }
}

/// A set of target engines for load-balanced tasks.
#[derive(Debug, Clone)]
pub struct BalancedView<'a> {
    client: &'a Client,
    targets: Targets,
    retries: u32,
}

impl<'a> BalancedView<'a> {
    /// Tasks on `targets` of `client`, with no retries.
    pub fn new(client: &'a Client, targets: Targets) -> Self {
        BalancedView { client, targets, retries: 0 }
    }

    /// How many times a task whose engine dies runs again on another engine (default 0: the
    /// task fails with `EngineDied`).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sends tasks in one frame per [`BATCH`]; their results go to `group`.
    fn send(&self, group: Option<u64>, work: Vec<Work>) -> Result<Vec<TaskHandle>, ClientError> {
        let mut handles = Vec::with_capacity(work.len());
        let mut work = work.into_iter().peekable();
        while work.peek().is_some() {
            let mut buffers = Vec::new();
            let mut tasks = Vec::new();
            for w in work.by_ref().take(BATCH) {
                let id = TaskId(self.client.next_id());
                tasks.push(BalancedTask { id, task: w.into_task(&mut buffers) });
            }
            {
                let mut state = self.client.shared.state.lock().expect("client state");
                for t in &tasks {
                    state.balanced.expect(t.id, group.unwrap_or(t.id.get()));
                }
            }
            let submitted = mpx_messages::unix_time();
            handles.extend(tasks.iter().map(|t| TaskHandle {
                id: t.id,
                shared: self.client.shared.clone(),
                submitted,
            }));
            let req = BalancedRequest { targets: self.targets.clone(), retries: self.retries, tasks };
            self.client
                .send_frame(&Frame::with_buffers(ClientToController::BalancedRequest(req), buffers))?;
        }
        Ok(handles)
    }

    /// Runs tasks, each on one engine; their handles in order.
    ///
    /// # Errors
    /// A lost connection.
    pub fn submit(&self, work: Vec<Work>) -> Result<Vec<TaskHandle>, ClientError> {
        self.send(None, work)
    }

    /// Runs a cell on one engine.
    ///
    /// # Errors
    /// A lost connection.
    pub fn execute(&self, code: &str) -> Result<TaskHandle, ClientError> {
        Ok(self.send(None, vec![Work::Code(code.into())])?.remove(0))
    }

    /// Calls a function on one engine.
    ///
    /// # Errors
    /// A lost connection.
    pub fn apply(&self, function: &str, args: Vec<ApplyArg>) -> Result<TaskHandle, ClientError> {
        Ok(self.send(None, vec![Work::Call { function: function.into(), args }])?.remove(0))
    }

    /// Runs `make(chunk)` for each chunk of `items` as one task, and yields the results in
    /// item order or as they complete, with at most `opts.bound` tasks outstanding (more are
    /// sent as results are taken: back-pressure).
    pub fn imap<T, F>(&self, items: Vec<T>, opts: MapOptions, make: F) -> MapIter<'a, T, F>
    where
        F: FnMut(&[T]) -> Work,
    {
        let group = self.client.next_id();
        MapIter {
            view: self.clone(),
            items,
            next_item: 0,
            next_index: 0,
            make,
            opts,
            group,
            outstanding: BTreeMap::new(),
            by_index: BTreeMap::new(),
            next_yield: 0,
            failed: false,
        }
    }

    /// [`imap`](Self::imap), collected: every chunk's result (task errors included) in the
    /// order of `opts.ordered`.
    ///
    /// # Errors
    /// Timeout or a lost connection.
    pub fn map<T, F>(&self, items: Vec<T>, opts: MapOptions, make: F) -> Result<Vec<MapItem>, ClientError>
    where
        F: FnMut(&[T]) -> Work,
    {
        self.imap(items, opts, make).collect()
    }
}

/// The results of [`BalancedView::imap`], one per chunk.
pub struct MapIter<'a, T, F> {
    view: BalancedView<'a>,
    items: Vec<T>,
    next_item: usize,
    next_index: usize,
    make: F,
    opts: MapOptions,
    group: u64,
    /// Tasks sent and not yet yielded: id → (chunk index, items).
    outstanding: BTreeMap<TaskId, (usize, Range<usize>)>,
    /// Results that came ahead of their turn (ordered maps).
    by_index: BTreeMap<usize, MapItem>,
    next_yield: usize,
    failed: bool,
}

impl<T, F: FnMut(&[T]) -> Work> MapIter<'_, T, F> {
    /// Tasks sent and not yet yielded.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len() + self.by_index.len()
    }

    /// Sends chunks while the bound allows.
    fn fill(&mut self) -> Result<(), ClientError> {
        let bound = self.opts.bound.unwrap_or(usize::MAX).max(1);
        let chunk = self.opts.chunksize.max(1);
        let mut work = Vec::new();
        let mut ranges = Vec::new();
        while self.next_item < self.items.len() && self.outstanding() + work.len() < bound {
            let end = (self.next_item + chunk).min(self.items.len());
            work.push((self.make)(&self.items[self.next_item..end]));
            ranges.push((self.next_index, self.next_item..end));
            self.next_item = end;
            self.next_index += 1;
        }
        if work.is_empty() {
            return Ok(());
        }
        let handles = self.view.send(Some(self.group), work)?;
        for (h, r) in handles.into_iter().zip(ranges) {
            self.outstanding.insert(h.id, r);
        }
        Ok(())
    }

    fn next_result(&mut self) -> Result<Option<MapItem>, ClientError> {
        self.fill()?;
        loop {
            if self.opts.ordered {
                if let Some(item) = self.by_index.remove(&self.next_yield) {
                    self.next_yield += 1;
                    return Ok(Some(item));
                }
            }
            if self.outstanding.is_empty() {
                return Ok(None);
            }
            let group = self.group;
            let (id, result) = self
                .view
                .client
                .shared
                .wait_for(self.opts.timeout, |state| state.balanced.take_any(group))?;
            let Some((index, items)) = self.outstanding.remove(&id) else { continue };
            let item = MapItem { index, items, result };
            if !self.opts.ordered {
                return Ok(Some(item));
            }
            self.by_index.insert(index, item);
        }
    }
}

impl<T, F: FnMut(&[T]) -> Work> Iterator for MapIter<'_, T, F> {
    type Item = Result<MapItem, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_result();
        // Refill as soon as a result is taken: the engines stay busy while the caller works.
        let next = next.and_then(|item| self.fill().map(|()| item));
        match next {
            Ok(item) => item.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl<T, F> Drop for MapIter<'_, T, F> {
    fn drop(&mut self) {
        if let Ok(mut state) = self.view.client.shared.state.lock() {
            state.balanced.forget_group(self.group, self.outstanding.keys().copied());
        }
    }
}
