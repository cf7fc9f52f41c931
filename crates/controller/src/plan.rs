//! Pure planning of a client's task over its target engines: who gets which task and which
//! buffers. Collective kinds send the array bytes once, to the root (the lowest target), and
//! the engines move them among themselves with MPI.

use bytes::Bytes;
use mpx_messages::{EngineId, Task};

/// One engine's share of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The engine.
    pub engine: EngineId,
    /// What it does.
    pub task: Task,
    /// The buffers its frame carries.
    pub buffers: Vec<Bytes>,
}

/// Rows of an axis-0 split of `rows` over `n` engines: as even as possible, the first engines
/// getting one more (as ipyparallel's scatter).
pub fn split_rows(rows: usize, n: usize) -> Vec<usize> {
    let n = n.max(1);
    (0..n).map(|i| rows / n + usize::from(i < rows % n)).collect()
}

/// Plans `task` over `engines` (sorted, non-empty) with the client's `buffers`.
///
/// # Errors
/// A message for the client when the task does not fit (missing buffer, 0-d scatter, ...).
pub fn plan(task: Task, engines: &[EngineId], buffers: Vec<Bytes>) -> Result<Vec<Assignment>, String> {
    let check_buffer = |index: usize, expected: usize| -> Result<(), String> {
        match buffers.get(index) {
            Some(b) if b.len() == expected => Ok(()),
            Some(b) => {
                Err(format!("array bytes: {} given, {expected} expected from dtype and shape", b.len()))
            }
            None => Err(format!("array buffer {index} is missing")),
        }
    };
    let group = engines.to_vec();
    let root_only = |task: Task, buffers: Vec<Bytes>| {
        engines
            .iter()
            .enumerate()
            .map(|(i, &engine)| Assignment {
                engine,
                task: task.clone(),
                buffers: if i == 0 { buffers.clone() } else { Vec::new() },
            })
            .collect()
    };
    match task {
        Task::Push { name, array, .. } => {
            check_buffer(array.buffer, byte_len(&array.shape, array.dtype.size())?)?;
            Ok(root_only(Task::Push { name, array, group }, buffers))
        }
        Task::Scatter { name, array, .. } => {
            let Some(&rows) = array.shape.first() else {
                return Err(format!("cannot scatter {name:?}: a 0-d array has no axis 0"));
            };
            check_buffer(array.buffer, byte_len(&array.shape, array.dtype.size())?)?;
            let rows = split_rows(rows, engines.len());
            Ok(root_only(Task::Scatter { name, array, group, rows }, buffers))
        }
        Task::Gather { name, .. } => Ok(root_only(Task::Gather { name, group }, Vec::new())),
        other @ (Task::Execute { .. } | Task::Pull { .. } | Task::Apply { .. }) => Ok(engines
            .iter()
            .map(|&engine| Assignment { engine, task: other.clone(), buffers: buffers.clone() })
            .collect()),
    }
}

fn byte_len(shape: &[usize], item: usize) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(item, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} is too large"))
}

#[cfg(test)]
mod tests {
    use mpx_messages::{ArrayMeta, Dtype};

    use super::*;

    fn meta(shape: &[usize]) -> ArrayMeta {
        ArrayMeta { dtype: Dtype::F64, shape: shape.to_vec(), buffer: 0 }
    }

    #[test]
    fn rows_split_like_ipyparallel() {
        assert_eq!(split_rows(10, 4), vec![3, 3, 2, 2]);
        assert_eq!(split_rows(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(split_rows(0, 3), vec![0, 0, 0]);
        assert_eq!(split_rows(8, 4), vec![2, 2, 2, 2]);
    }

    #[test]
    fn push_sends_the_bytes_once_to_the_root() {
        let bytes = Bytes::from(vec![0u8; 80]);
        let task = Task::Push { name: "a".into(), array: meta(&[10]), group: vec![] };
        let p = plan(task, &[1, 2, 3], vec![bytes]).unwrap();
        assert_eq!(p.iter().map(|a| a.buffers.len()).collect::<Vec<_>>(), vec![1, 0, 0]);
        assert!(p.iter().all(|a| matches!(&a.task, Task::Push { group, .. } if group == &vec![1, 2, 3])));
    }

    #[test]
    fn scatter_plans_rows_and_refuses_0d() {
        let task = Task::Scatter { name: "a".into(), array: meta(&[10, 2]), group: vec![], rows: vec![] };
        let p = plan(task, &[0, 1, 2, 3], vec![Bytes::from(vec![0u8; 160])]).unwrap();
        assert!(matches!(&p[0].task, Task::Scatter { rows, .. } if rows == &vec![3, 3, 2, 2]));
        let task = Task::Scatter { name: "a".into(), array: meta(&[]), group: vec![], rows: vec![] };
        assert!(plan(task, &[0], vec![Bytes::from(vec![0u8; 8])]).unwrap_err().contains("0-d"));
    }

    #[test]
    fn a_missing_or_short_buffer_is_refused() {
        let task = Task::Push { name: "a".into(), array: meta(&[10]), group: vec![] };
        assert!(plan(task.clone(), &[0], vec![]).is_err());
        assert!(plan(task, &[0], vec![Bytes::from(vec![0u8; 79])]).is_err());
    }
}
