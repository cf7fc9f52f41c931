//! [`Slots`]: the results of a client's load-balanced tasks, filed by the reader thread until
//! their handles (or a map's iterator) take them.

use std::collections::{HashMap, VecDeque};

use mpx_messages::TaskId;

use crate::reply::TaskResult;

/// Where the results of a client's load-balanced tasks wait to be taken.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    /// By task id: its group and, once there, its result.
    tasks: HashMap<TaskId, (u64, Option<TaskResult>)>,
    /// Ids of the tasks of each group in the order their results came.
    done: HashMap<u64, VecDeque<TaskId>>,
}

impl Slots {
    /// A result arrived (dropped if nobody waits for it).
    pub(crate) fn arrived(&mut self, id: TaskId, result: TaskResult) {
        if let Some((group, slot)) = self.tasks.get_mut(&id) {
            *slot = Some(result);
            self.done.entry(*group).or_default().push_back(id);
        }
    }

    /// Makes a slot for task `id` of `group`.
    pub(crate) fn expect(&mut self, id: TaskId, group: u64) {
        self.tasks.insert(id, (group, None));
    }

    /// Takes task `id`'s result, once there.
    pub(crate) fn take(&mut self, id: TaskId) -> Option<TaskResult> {
        match self.tasks.get(&id) {
            Some((_, Some(_))) => self.tasks.remove(&id).and_then(|(_, r)| r),
            _ => None,
        }
    }

    /// Takes the first result of `group` that came and was not taken yet.
    pub(crate) fn take_any(&mut self, group: u64) -> Option<(TaskId, TaskResult)> {
        let id = self.done.get_mut(&group)?.pop_front()?;
        self.take(id).map(|r| (id, r))
    }

    /// Forgets a group and the slots of its tasks `ids` (nobody waits for them now).
    pub(crate) fn forget_group(&mut self, group: u64, ids: impl IntoIterator<Item = TaskId>) {
        self.done.remove(&group);
        for id in ids {
            self.tasks.remove(&id);
        }
    }
}
