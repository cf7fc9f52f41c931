//! One task on the MPI thread: [`run_task`] runs it with its [`TaskIo`] (the request's buffers,
//! descriptors and streamed chunks) and gives its [`TaskDone`] (outcome, reply buffers and
//! reply descriptors).

use bytes::Bytes;
use mpx_messages::{ArrayMeta, EngineId, Fds, MpxError, Outcome, Task};

use crate::{
    data::{self, Groups},
    kernel::{call_args, returned, CellOutput, Kernel},
    shm,
    stream::{ChunkIn, Sink, Source},
};

/// What a task's bytes come in and go out by.
pub struct TaskIo {
    /// The request's buffers.
    pub buffers: Vec<Bytes>,
    /// The descriptors the request's frame carried (same-host path: sealed memfds, referred to
    /// by [`mpx_messages::ArrayMeta::fd`]).
    pub fds: Fds,
    /// Why the request's payload was refused (it failed authentication: an
    /// [`MpxError::Authentication`]).
    pub refused: Option<MpxError>,
    /// The chunks of the request's array, when it streams.
    pub stream: Option<std::sync::mpsc::Receiver<ChunkIn>>,
    /// Where the chunks of a streamed reply go.
    pub sink: Sink,
}

/// What a task gives back: the outcome, and what its reply frame carries besides.
pub struct TaskDone {
    /// The outcome.
    pub outcome: Outcome,
    /// The reply's buffers (array bytes, a call's returned payload).
    pub buffers: Vec<Bytes>,
    /// The reply's descriptors (a pulled array's memfd on the same-host path).
    pub fds: Fds,
}

impl TaskIo {
    /// Where the root's bytes of the array in buffer `index` come from.
    fn source(&mut self, index: usize) -> Source {
        match self.stream.take() {
            Some(rx) => Source::Stream(rx),
            None => Source::Inline(self.buffers.get(index).cloned()),
        }
    }
}

/// Runs one task, or refuses it with `io.refused` (its payload failed authentication); returns
/// its outcome and what the reply carries.
pub fn run_task(
    kernel: &mut dyn Kernel,
    groups: &mut Groups,
    engine: EngineId,
    task: Task,
    mut io: TaskIo,
) -> TaskDone {
    let started = mpx_messages::unix_time();
    let mut out = Outcome { started, ..Default::default() };
    let mut reply = Vec::new();
    let mut fds = Fds::default();
    // The client that lent the request's memfd, or may get one back: the reply carries the
    // memfds released to it (`mpx_messages::memfd::lent`).
    // Named in a lent memfd's push but sent no memfd (a rank elsewhere, which gets the array by
    // MPI): nothing to hold, released at once.
    if let Task::Push { array: ArrayMeta { fd: None, lent: Some(lent), .. }, .. } = &task {
        drop(mpx_messages::memfd::lent::Receipt::queued(*lent));
    }
    let lender = match &task {
        Task::Push { array, .. } | Task::Scatter { array, .. } => array.lent.map(|l| l.lender),
        Task::Pull { lender, .. } => *lender,
        _ => None,
    };
    let take_cell = |out: &mut Outcome, cell: CellOutput| {
        out.stdout = cell.stdout;
        out.stderr = cell.stderr;
        out.value = cell.value;
        out.error = cell.error.map(MpxError::Cell);
    };
    let result: Result<(), MpxError> = match task {
        // The request's payload failed authentication: nothing is bound. A push or scatter still
        // takes part in its collective, without the bytes, so that the other engines of the group
        // fail too instead of waiting for this one.
        task if io.refused.is_some() => {
            // (A same-host push to this host alone has no collective: nothing to take part in.)
            let collective = match &task {
                // (A memfd push's bridge broadcasts to ranks elsewhere: it takes part too.)
                Task::Push { array, shared, group, .. } => (array.fd.is_none() || group.len() > 1) && !shared,
                Task::Scatter { array, .. } => array.fd.is_none(),
                _ => false,
            };
            if collective {
                let bare = TaskIo {
                    buffers: Vec::new(),
                    fds: Fds::default(),
                    refused: None,
                    stream: None,
                    sink: io.sink,
                };
                let _ = run_task(kernel, groups, engine, task, bare);
            }
            Err(io.refused.clone().expect("checked by the guard"))
        }
        Task::Execute { code } => {
            take_cell(&mut out, kernel.execute(&code, None));
            Ok(())
        }
        Task::Run { code, filename } => {
            take_cell(&mut out, kernel.execute(&code, Some(&filename)));
            Ok(())
        }
        Task::Apply { function, args } => {
            call_args(kernel, args, &io.buffers).map_err(MpxError::Cell).and_then(|args| {
                let mut cell = kernel.call(&function, args);
                let ret = cell.returned.take();
                take_cell(&mut out, cell);
                // Returned out of band: the payload and arrays become the reply's buffers.
                let (wire, bytes) = ret.map(returned::lay_out).transpose()?.unzip();
                out.returned = wire;
                reply.extend(bytes.into_iter().flatten());
                Ok(())
            })
        }
        // Same host: the array is the frame's memfd, mapped (no MPI: each engine of the host
        // gets its own task); a shared push always comes this way (without a memfd it fails).
        // Same host, and ranks elsewhere: this engine maps the memfd and broadcasts it to them.
        Task::Push { name, array, group, shared: false } if array.fd.is_some() && group.len() > 1 => {
            shm::bridge_push(groups, kernel, &name, &array, &group, &io.fds)
        }
        Task::Push { name, array, group, shared } if array.fd.is_some() || shared => {
            let how = if shared { shm::Mapped::Shared } else { shm::Mapped::CopyOnWrite };
            shm::push(kernel, &name, &array, &group, &io.fds, how).map_err(MpxError::Cell)
        }
        Task::Push { name, array, group, .. } => {
            let mut source = io.source(array.buffer);
            data::push(groups, kernel, &name, &array, &group, (&mut source, None))
        }
        // Same host: the array in a new sealed memfd, unless this system has none.
        Task::Pull { name, shm: true, lender, returned } => {
            crate::lend::returned(&returned);
            shm::pull(kernel, engine, &name, lender).map_err(MpxError::Cell).and_then(|made| match made {
                Some((meta, memfd)) => {
                    out.array = Some(meta);
                    fds = memfd;
                    Ok(())
                }
                None => data::pull(kernel, engine, &name, &io.sink).map(|(meta, bytes)| {
                    out.array = Some(meta);
                    reply.extend(bytes);
                }),
            })
        }
        Task::Pull { name, shm: false, .. } => {
            data::pull(kernel, engine, &name, &io.sink).map(|(meta, bytes)| {
                out.array = Some(meta);
                reply.extend(bytes);
            })
        }
        // Same host: this engine's rows of the frame's memfd, mapped (no MPI).
        Task::Scatter { name, array, group, rows, first_row } if array.fd.is_some() => {
            shm::scatter(kernel, &name, &array, (&group, &rows, first_row), &io.fds).map_err(MpxError::Cell)
        }
        Task::Scatter { name, array, group, rows, .. } => {
            let mut source = io.source(array.buffer);
            data::scatter(groups, kernel, &name, &array, &group, &rows, &mut source)
        }
        Task::Gather { name, group, shm, returned } => {
            crate::lend::returned(&returned);
            data::gather(groups, kernel, engine, &name, &group, shm, &io.sink).map(|whole| match whole {
                Some(data::Gathered::Bytes(meta, bytes)) => {
                    out.array = Some(meta);
                    reply.extend(bytes);
                }
                Some(data::Gathered::Memfd(meta, memfd)) => {
                    out.array = Some(meta);
                    fds = memfd;
                }
                None => {}
            })
        }
    };
    if let Err(e) = result {
        out.error = Some(e);
    }
    if let Some(lender) = lender {
        out.released = mpx_messages::memfd::lent::take_released(lender);
    }
    out.execution_count = kernel.execution_count();
    out.completed = mpx_messages::unix_time();
    TaskDone { outcome: out, buffers: reply, fds }
}
