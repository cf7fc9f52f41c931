//! Pure planning of a client's [`Request`] over its target engines: which [`Task`] each engine
//! gets, with which buffers. Collective kinds send the array bytes once, to the root (the
//! lowest target), and the engines move them among themselves with MPI.

use mpx_messages::{ArrayMeta, EngineId, Fds, MpxError, Payload, Rank, Request, SetId, Task};

/// One engine's share of a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The engine.
    pub engine: EngineId,
    /// What it does.
    pub task: Task,
    /// The buffers its frame carries, with their original MACs.
    pub buffers: Vec<Payload>,
    /// The descriptors its frame passes (a pushed array's memfd, same host only).
    pub fds: Fds,
}

/// Where an engine is: its id, engine set (MPI world) and rank in that world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// Engine id.
    pub engine: EngineId,
    /// Engine set.
    pub set: SetId,
    /// Rank in the set's world.
    pub rank: Rank,
    /// Connected through the controller's Unix socket (on the controller's host).
    pub local: bool,
}

/// Rows of an axis-0 split of `rows` over `n` engines: as even as possible, the first engines
/// getting one more (as ipyparallel's scatter).
pub fn split_rows(rows: usize, n: usize) -> Vec<usize> {
    let n = n.max(1);
    (0..n).map(|i| rows / n + usize::from(i < rows % n)).collect()
}

/// Plans `request` over `places` (sorted by id, non-empty) with the client's `buffers`. The
/// groups of collective tasks are ranks of one world: a collective never spans engine sets.
///
/// # Errors
/// [`MpxError::Refused`] when the request does not fit (missing buffer, 0-d scatter, targets
/// in several engine sets, ...).
///
/// An array pushed in a memfd (`array.fd`, from a client on the controller's host) goes to
/// every target on this host, each binding it alone (no MPI), and by MPI from one of them to
/// targets elsewhere (see `plan_memfd_push`); a scattered one only to targets here. A
/// `shared` push (one read-only copy for the host) must come that way: it is refused
/// otherwise, never turned into a copy per engine.
pub fn plan(
    request: Request,
    places: &[Place],
    buffers: Vec<Payload>,
    fds: Fds,
) -> Result<Vec<Assignment>, MpxError> {
    if let Request::Scatter { name, array } = &request {
        if let Some(fd) = array.fd {
            return plan_memfd_scatter(name, array, fd, places, &fds);
        }
    }
    if let Request::Push { name, array, shared } = &request {
        match array.fd {
            Some(fd) => return plan_memfd_push(name, array, *shared, fd, places, &fds),
            None if *shared => {
                return Err(MpxError::refused(format!(
                    "a shared push of {name:?} needs its array in a memfd, from a client on the \
                     controller's host"
                )))
            }
            None => {}
        }
    }
    if !fds.is_empty() {
        return Err(MpxError::refused("descriptors passed with a request that takes none"));
    }
    let engines: Vec<EngineId> = places.iter().map(|p| p.engine).collect();
    let engines = &engines[..];
    if request.is_collective() && places.iter().any(|p| p.set != places[0].set) && engines.len() > 1 {
        return Err(MpxError::refused(
            "the targets span several engine sets; data moves with MPI within one set at a time",
        ));
    }
    let check_buffer = |index: usize, expected: usize| -> Result<(), MpxError> {
        match buffers.get(index) {
            Some(b) if b.len() == expected => Ok(()),
            Some(b) => Err(MpxError::refused(format!(
                "array bytes: {} given, {expected} expected from dtype and shape",
                b.len()
            ))),
            // No buffer at all: the array streams in chunks after the request.
            None if buffers.is_empty() => Ok(()),
            None => Err(MpxError::refused(format!("array buffer {index} is missing"))),
        }
    };
    let group: Vec<Rank> = places.iter().map(|p| p.rank).collect();
    let root_only = |task: Task, buffers: Vec<Payload>| {
        engines
            .iter()
            .enumerate()
            .map(|(i, &engine)| Assignment {
                engine,
                task: task.clone(),
                buffers: if i == 0 { buffers.clone() } else { Vec::new() },
                fds: Fds::default(),
            })
            .collect()
    };
    let each = |task: Task, buffers: Vec<Payload>| -> Vec<Assignment> {
        engines
            .iter()
            .map(|&engine| Assignment {
                engine,
                task: task.clone(),
                buffers: buffers.clone(),
                fds: Fds::default(),
            })
            .collect()
    };
    match request {
        Request::Push { name, array, .. } => {
            check_buffer(array.buffer, byte_len(&array)?)?;
            Ok(root_only(Task::Push { name, array, group, shared: false }, buffers))
        }
        Request::Scatter { name, array } => {
            let Some(&rows) = array.shape.first() else {
                return Err(MpxError::refused(format!("cannot scatter {name:?}: a 0-d array has no axis 0")));
            };
            check_buffer(array.buffer, byte_len(&array)?)?;
            let rows = split_rows(rows, engines.len());
            Ok(root_only(Task::Scatter { name, array, group, rows, first_row: 0 }, buffers))
        }
        // A memfd reply only from a root on this host, to a client on this host.
        Request::Gather { name, shm, returned } => {
            Ok(root_only(Task::Gather { name, group, shm: shm && places[0].local, returned }, Vec::new()))
        }
        Request::Execute { code } => Ok(each(Task::Execute { code }, buffers)),
        Request::Run { code, filename } => Ok(each(Task::Run { code, filename }, buffers)),
        // Engines on this host answer a pull of a client on this host with a memfd.
        Request::Pull { name, shm, lender, returned } => Ok(places
            .iter()
            .map(|p| Assignment {
                engine: p.engine,
                task: Task::Pull {
                    name: name.clone(),
                    shm: shm && p.local,
                    lender,
                    returned: returned.clone(),
                },
                buffers: buffers.clone(),
                fds: Fds::default(),
            })
            .collect()),
        Request::Apply { function, args } => Ok(each(Task::Apply { function, args }, buffers)),
    }
}

/// A push whose array is in the request's memfd `fd`: each target on this host gets the memfd
/// and binds the array alone (its group is itself), `shared` (read-only, one copy for the
/// host) or copy-on-write. Targets on other hosts (not for a shared push, and only in the same
/// engine set as one here) get it by MPI: the lowest target here (the bridge) maps the memfd
/// and is the root of a Bcast to them (its group: itself first, then their ranks); they get the
/// task without bytes and receive it.
fn plan_memfd_push(
    name: &str,
    array: &ArrayMeta,
    shared: bool,
    fd: usize,
    places: &[Place],
    fds: &Fds,
) -> Result<Vec<Assignment>, MpxError> {
    let (here, elsewhere): (Vec<Place>, Vec<Place>) = places.iter().partition(|p| p.local);
    let memfd = local_memfd(array, fd, if shared || here.is_empty() { places } else { &here }, fds)?;
    if elsewhere.iter().any(|p| p.set != here[0].set) {
        return Err(MpxError::refused(format!(
            "{name:?}: a memfd push reaches engines on other hosts by MPI from an engine on this \
             host of the same engine set; the targets span several sets"
        )));
    }
    let array = ArrayMeta { fd: Some(0), ..array.clone() };
    let task = |group| Task::Push { name: name.to_string(), array: array.clone(), group, shared };
    let bridge: Vec<Rank> = std::iter::once(here[0].rank).chain(elsewhere.iter().map(|p| p.rank)).collect();
    let mut out: Vec<Assignment> = here
        .iter()
        .enumerate()
        .map(|(i, p)| Assignment {
            engine: p.engine,
            task: task(if i == 0 && !elsewhere.is_empty() { bridge.clone() } else { vec![p.rank] }),
            buffers: Vec::new(),
            fds: Fds(vec![memfd.clone()]),
        })
        .collect();
    let received = ArrayMeta { fd: None, ..array.clone() };
    out.extend(elsewhere.iter().map(|p| Assignment {
        engine: p.engine,
        task: Task::Push { name: name.to_string(), array: received.clone(), group: bridge.clone(), shared },
        buffers: Vec::new(),
        fds: Fds::default(),
    }));
    Ok(out)
}

/// A scatter whose array is in the request's memfd `fd`: each target gets the memfd and maps
/// its own rows (its group is itself; `first_row` says where its rows start).
fn plan_memfd_scatter(
    name: &str,
    array: &ArrayMeta,
    fd: usize,
    places: &[Place],
    fds: &Fds,
) -> Result<Vec<Assignment>, MpxError> {
    let Some(&rows) = array.shape.first() else {
        return Err(MpxError::refused(format!("cannot scatter {name:?}: a 0-d array has no axis 0")));
    };
    let memfd = local_memfd(array, fd, places, fds)?;
    let array = ArrayMeta { fd: Some(0), ..array.clone() };
    let mut first_row = 0;
    Ok(places
        .iter()
        .zip(split_rows(rows, places.len()))
        .map(|(p, rows)| {
            let task = Task::Scatter {
                name: name.to_string(),
                array: array.clone(),
                group: vec![p.rank],
                rows: vec![rows],
                first_row,
            };
            first_row += rows;
            Assignment { engine: p.engine, task, buffers: Vec::new(), fds: Fds(vec![memfd.clone()]) }
        })
        .collect())
}

/// The memfd at `fd` of the request's descriptors, for an array whose targets must all be on
/// this host.
fn local_memfd(
    array: &ArrayMeta,
    fd: usize,
    places: &[Place],
    fds: &Fds,
) -> Result<std::sync::Arc<std::os::fd::OwnedFd>, MpxError> {
    byte_len(array)?;
    let memfd = fds.0.get(fd).cloned().ok_or_else(|| {
        MpxError::refused(format!("the array is in descriptor {fd}, and {} came with the request", fds.len()))
    })?;
    if let Some(p) = places.iter().find(|p| !p.local) {
        return Err(MpxError::refused(format!(
            "engine {} is not on the controller's host: an array in a memfd reaches only engines there",
            p.engine
        )));
    }
    Ok(memfd)
}

fn byte_len(array: &ArrayMeta) -> Result<usize, MpxError> {
    mpx_messages::array::byte_len(array.dtype, &array.shape)
        .ok_or_else(|| MpxError::refused(format!("shape {:?} of {} is too large", array.shape, array.dtype)))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use mpx_messages::{ArrayMeta, Dtype};

    use super::*;

    fn at(ids: &[u32]) -> Vec<Place> {
        ids.iter()
            .map(|&id| Place { engine: EngineId(id), set: SetId(0), rank: Rank(id), local: false })
            .collect()
    }

    /// Places on the controller's host.
    fn local(ids: &[u32]) -> Vec<Place> {
        at(ids).into_iter().map(|p| Place { local: true, ..p }).collect()
    }

    fn ranks(ids: &[u32]) -> Vec<Rank> {
        ids.iter().copied().map(Rank).collect()
    }

    fn meta(shape: &[usize]) -> ArrayMeta {
        ArrayMeta { dtype: Dtype::F64, shape: shape.to_vec(), buffer: 0, fd: None, lent: None }
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
        let request = Request::Push { name: "a".into(), array: meta(&[10]), shared: false };
        let p = plan(request, &at(&[1, 2, 3]), vec![Payload::new(bytes)], Fds::default()).unwrap();
        assert_eq!(p.iter().map(|a| a.buffers.len()).collect::<Vec<_>>(), vec![1, 0, 0]);
        assert!(p.iter().all(|a| matches!(&a.task, Task::Push { group, .. } if group == &ranks(&[1, 2, 3]))));
    }

    #[test]
    fn scatter_plans_rows_and_refuses_0d() {
        let request = Request::Scatter { name: "a".into(), array: meta(&[10, 2]) };
        let p = plan(
            request,
            &at(&[0, 1, 2, 3]),
            vec![Payload::new(Bytes::from(vec![0u8; 160]))],
            Fds::default(),
        )
        .unwrap();
        assert!(matches!(&p[0].task, Task::Scatter { rows, .. } if rows == &vec![3, 3, 2, 2]));
        let request = Request::Scatter { name: "a".into(), array: meta(&[]) };
        assert!(plan(request, &at(&[0]), vec![Payload::new(Bytes::from(vec![0u8; 8]))], Fds::default())
            .unwrap_err()
            .to_string()
            .contains("0-d"));
    }

    #[test]
    fn a_missing_or_short_buffer_is_refused() {
        let task = Request::Push { name: "a".into(), array: meta(&[10]), shared: false };
        // No buffers at all: a streamed array (its chunks follow the request).
        assert!(plan(task.clone(), &at(&[0]), vec![], Fds::default()).is_ok());
        let two = vec![Payload::new(Bytes::from(vec![0u8; 80])); 2];
        let wrong =
            Request::Push { name: "a".into(), array: ArrayMeta { buffer: 2, ..meta(&[10]) }, shared: false };
        assert!(plan(wrong, &at(&[0]), two, Fds::default()).is_err());
        assert!(
            plan(task, &at(&[0]), vec![Payload::new(Bytes::from(vec![0u8; 79]))], Fds::default()).is_err()
        );
    }

    #[test]
    fn a_shared_push_maps_the_memfd_everywhere_or_is_refused() {
        let devnull = std::fs::File::open("/dev/null").unwrap();
        let fds = Fds(vec![std::sync::Arc::new(std::os::fd::OwnedFd::from(devnull))]);
        let shared =
            |fd| Request::Push { name: "a".into(), array: ArrayMeta { fd, ..meta(&[10]) }, shared: true };
        let p = plan(shared(Some(0)), &local(&[0, 1]), vec![], fds.clone()).unwrap();
        assert!(p.iter().all(|a| a.fds.len() == 1
            && matches!(&a.task, Task::Push { shared: true, group, .. } if group.len() == 1)));
        // Without a memfd, or to an engine elsewhere: refused, never a copy per engine.
        let bytes = vec![Payload::new(Bytes::from(vec![0u8; 80]))];
        let why = plan(shared(None), &local(&[0, 1]), bytes, Fds::default()).unwrap_err().to_string();
        assert!(why.contains("shared push"), "{why}");
        assert!(plan(shared(Some(0)), &at(&[0]), vec![], fds).unwrap_err().to_string().contains("host"));
    }

    #[test]
    fn a_memfd_push_reaches_engines_elsewhere_by_a_bcast_from_the_lowest_engine_here() {
        let fds = Fds(vec![std::sync::Arc::new(std::os::fd::OwnedFd::from(
            std::fs::File::open("/dev/null").unwrap(),
        ))]);
        let push = |shared| Request::Push {
            name: "a".into(),
            array: ArrayMeta { fd: Some(0), ..meta(&[10]) },
            shared,
        };
        // Engines 0 and 1 elsewhere, 2 and 3 here: 2 maps the memfd and broadcasts to 0 and 1
        // (its group lists it first), 3 maps it alone; 0 and 1 get no memfd and receive.
        let mut places = at(&[0, 1]);
        places.extend(local(&[2, 3]));
        let p = plan(push(false), &places, vec![], fds.clone()).unwrap();
        let by = |id: u32| p.iter().find(|a| a.engine == EngineId(id)).unwrap();
        let group_of = |a: &Assignment| match &a.task {
            Task::Push { group, array, .. } => (group.clone(), array.fd),
            other => panic!("{other:?}"),
        };
        assert_eq!(group_of(by(2)), (ranks(&[2, 0, 1]), Some(0)));
        assert_eq!(by(2).fds.len(), 1);
        assert_eq!(group_of(by(3)), (ranks(&[3]), Some(0)));
        for id in [0, 1] {
            assert_eq!(group_of(by(id)), (ranks(&[2, 0, 1]), None), "engine {id}");
            assert!(by(id).fds.is_empty() && by(id).buffers.is_empty());
        }
        // Not for a shared push (one copy per host), nor across engine sets.
        assert!(plan(push(true), &places, vec![], fds.clone()).unwrap_err().to_string().contains("host"));
        places[0].set = SetId(1);
        assert!(plan(push(false), &places, vec![], fds).unwrap_err().to_string().contains("several sets"));
    }

    #[test]
    fn a_memfd_scatter_maps_each_targets_rows_and_a_gather_asks_a_local_root_for_a_memfd() {
        let memfd = || {
            Fds(vec![std::sync::Arc::new(std::os::fd::OwnedFd::from(
                std::fs::File::open("/dev/null").unwrap(),
            ))])
        };
        let array = ArrayMeta { fd: Some(0), ..meta(&[10, 2]) };
        let request = Request::Scatter { name: "a".into(), array: array.clone() };
        let p = plan(request.clone(), &local(&[0, 1, 2, 3]), Vec::new(), memfd()).unwrap();
        let parts: Vec<(Vec<Rank>, Vec<usize>, usize, usize)> = p
            .iter()
            .map(|a| match &a.task {
                Task::Scatter { group, rows, first_row, array, .. } => {
                    assert_eq!(array.fd, Some(0));
                    (group.clone(), rows.clone(), *first_row, a.fds.len())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            parts,
            vec![
                (ranks(&[0]), vec![3], 0, 1),
                (ranks(&[1]), vec![3], 3, 1),
                (ranks(&[2]), vec![2], 6, 1),
                (ranks(&[3]), vec![2], 8, 1)
            ]
        );
        assert!(p.iter().all(|a| a.buffers.is_empty()));
        // An engine elsewhere, no descriptor, or a 0-d array: refused.
        let mut away = local(&[0, 1]);
        away[1].local = false;
        assert!(plan(request.clone(), &away, Vec::new(), memfd()).is_err());
        assert!(plan(request, &local(&[0, 1]), Vec::new(), Fds::default()).is_err());
        let flat = Request::Scatter { name: "a".into(), array: ArrayMeta { fd: Some(0), ..meta(&[]) } };
        assert!(plan(flat, &local(&[0, 1]), Vec::new(), memfd()).is_err());
        // A gather: the root replies with a memfd when the client asked and the root is here.
        let gather = Request::Gather { name: "a".into(), shm: true, returned: Vec::new() };
        let p = plan(gather.clone(), &local(&[0, 1]), Vec::new(), Fds::default()).unwrap();
        assert!(p.iter().all(|a| matches!(&a.task, Task::Gather { shm: true, .. })));
        let mut away = local(&[0, 1]);
        away[0].local = false;
        let p = plan(gather, &away, Vec::new(), Fds::default()).unwrap();
        assert!(p.iter().all(|a| matches!(&a.task, Task::Gather { shm: false, .. })));
    }
}

#[cfg(test)]
mod set_tests {
    use mpx_messages::{ArrayMeta, Dtype};

    use super::*;

    #[test]
    fn collectives_stay_within_one_engine_set_and_use_its_ranks() {
        let place = |engine, set, rank| Place {
            engine: EngineId(engine),
            set: SetId(set),
            rank: Rank(rank),
            local: false,
        };
        let places = [place(2, 1, 0), place(3, 1, 1)];
        let request = Request::Gather { name: "a".into(), shm: false, returned: Vec::new() };
        let p = plan(request.clone(), &places, vec![], Fds::default()).unwrap();
        assert!(matches!(&p[0].task, Task::Gather { group, .. } if group == &vec![Rank(0), Rank(1)]));
        let mixed = [place(1, 0, 1), place(2, 1, 0)];
        assert!(plan(request, &mixed, vec![], Fds::default())
            .unwrap_err()
            .to_string()
            .contains("engine sets"));
        // Cells may run across sets: each set has its own COMM_WORLD.
        let exec = Request::Execute { code: "1".into() };
        assert_eq!(plan(exec, &mixed, vec![], Fds::default()).unwrap().len(), 2);
        let _ = ArrayMeta { dtype: Dtype::F64, shape: vec![], buffer: 0, fd: None, lent: None };
    }
}
