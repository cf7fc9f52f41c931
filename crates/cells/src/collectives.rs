//! The cell-facing MPI-style functions (`allreduce`, `bcast`, `send`, ...), over [`Collectives`].

use std::rc::Rc;

use rhai::{Array, Dynamic, Engine};

use crate::{
    array::{ArrayValue, Elem},
    comm::{Collectives, CommError, ReduceOp},
    encode::{decode, encode},
    error::{rhai_ok, CellError},
};

/// The reduction-operator constants put in every cell's scope: `SUM`, `PROD`, `MIN`, `MAX`.
pub const OP_CONSTANTS: [(&str, &str); 4] =
    [("SUM", "sum"), ("PROD", "prod"), ("MIN", "min"), ("MAX", "max")];

/// Parses "sum" | "prod" | "min" | "max" (case-insensitive).
pub fn parse_op(op: &str) -> Result<ReduceOp, CellError> {
    match op.to_ascii_lowercase().as_str() {
        "sum" => Ok(ReduceOp::Sum),
        "prod" => Ok(ReduceOp::Prod),
        "min" => Ok(ReduceOp::Min),
        "max" => Ok(ReduceOp::Max),
        _ => Err(CellError::new(
            "ValueError",
            format!("unknown reduction op '{op}' (use SUM, PROD, MIN or MAX)"),
        )),
    }
}

fn comm_err(e: CommError) -> CellError {
    CellError::new("CommError", e.0)
}

/// A rank argument checked against the communicator size.
fn rank_arg(comm: &dyn Collectives, r: i64, what: &str) -> Result<usize, CellError> {
    usize::try_from(r).ok().filter(|&r| r < comm.size()).ok_or_else(|| {
        CellError::new("ValueError", format!("{what} {r} is not a rank of a world of size {}", comm.size()))
    })
}

fn tag_arg(t: i64) -> Result<i32, CellError> {
    i32::try_from(t)
        .ok()
        .filter(|&t| t >= 0)
        .ok_or_else(|| CellError::new("ValueError", format!("tag {t} must be in 0..2^31")))
}

/// Where a reduction's result goes: everywhere (`allreduce`) or to one root (`reduce`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    All,
    Root(usize),
}

fn reduce_f64(c: &dyn Collectives, d: &mut [f64], op: ReduceOp, t: Target) -> Result<(), CommError> {
    match t {
        Target::All => c.allreduce_f64(d, op),
        Target::Root(r) => c.reduce_f64(d, op, r),
    }
}

fn reduce_i64(c: &dyn Collectives, d: &mut [i64], op: ReduceOp, t: Target) -> Result<(), CommError> {
    match t {
        Target::All => c.allreduce_i64(d, op),
        Target::Root(r) => c.reduce_i64(d, op, r),
    }
}

/// Reduces a number or an array; ints stay ints, i32 arrays stay i32, other arrays become f64.
fn reduce_value(comm: &dyn Collectives, x: &Dynamic, op: &str, target: Target) -> Result<Dynamic, CellError> {
    let op = parse_op(op)?;
    let keep = match target {
        Target::All => true,
        Target::Root(r) => r == comm.rank(),
    };
    let result = if let Ok(n) = x.as_int() {
        let mut d = [n];
        reduce_i64(comm, &mut d, op, target).map_err(comm_err)?;
        Dynamic::from_int(d[0])
    } else if let Ok(f) = x.as_float() {
        let mut d = [f];
        reduce_f64(comm, &mut d, op, target).map_err(comm_err)?;
        Dynamic::from_float(d[0])
    } else if let Some(a) = x.read_lock::<ArrayValue>() {
        let shape = a.shape().to_vec();
        match &*a {
            ArrayValue::I64(_) | ArrayValue::I32(_) => {
                let mut d: Vec<i64> = a.to_i64().iter().copied().collect();
                reduce_i64(comm, &mut d, op, target).map_err(comm_err)?;
                let r = crate::ops::from_shape_vec(&shape, d)?;
                if matches!(&*a, ArrayValue::I32(_)) {
                    Dynamic::from(r.astype(<i32 as Elem>::DTYPE)?)
                } else {
                    Dynamic::from(r)
                }
            }
            _ if target == Target::All => {
                // Reduce straight from the shared array into a new one: no copy of the input.
                let send = a.to_f64();
                let send = send.as_standard_layout();
                let mut d = vec![0.0; send.len()];
                comm.allreduce_f64_into(send.as_slice().expect("standard layout"), &mut d, op)
                    .map_err(comm_err)?;
                Dynamic::from(crate::ops::from_shape_vec(&shape, d)?)
            }
            _ => {
                let mut d: Vec<f64> = a.to_f64().iter().copied().collect();
                reduce_f64(comm, &mut d, op, target).map_err(comm_err)?;
                Dynamic::from(crate::ops::from_shape_vec(&shape, d)?)
            }
        }
    } else {
        return Err(CellError::new("TypeError", format!("cannot reduce a value of type {}", x.type_name())));
    };
    Ok(if keep { result } else { Dynamic::UNIT })
}

/// Registers `rank()`, `size()`, `barrier()`, `allreduce`, `reduce`, `bcast`, `allgather`,
/// `send` and `recv` on `engine`, all going through `comm`.
pub fn register(engine: &mut Engine, comm: Rc<dyn Collectives>) {
    let c = comm.clone();
    engine.register_fn("rank", move || c.rank() as i64);
    let c = comm.clone();
    engine.register_fn("size", move || c.size() as i64);
    let c = comm.clone();
    engine.register_fn("barrier", move || rhai_ok(c.barrier().map_err(comm_err)));

    let c = comm.clone();
    engine.register_fn("allreduce", move |x: Dynamic, op: &str| {
        rhai_ok(reduce_value(&*c, &x, op, Target::All))
    });
    let c = comm.clone();
    engine.register_fn("reduce", move |x: Dynamic, op: &str, root: i64| {
        let root = rank_arg(&*c, root, "root");
        rhai_ok(root.and_then(|r| reduce_value(&*c, &x, op, Target::Root(r))))
    });

    let c = comm.clone();
    engine.register_fn("bcast", move |x: Dynamic, root: i64| {
        rhai_ok((|| {
            let root = rank_arg(&*c, root, "root")?;
            if root == c.rank() {
                let mut buf = encode(&x)?;
                c.bcast_bytes(&mut buf, root).map_err(comm_err)?;
                Ok(x)
            } else {
                let mut buf = Vec::new();
                c.bcast_bytes(&mut buf, root).map_err(comm_err)?;
                decode(&buf)
            }
        })())
    });

    let c = comm.clone();
    engine.register_fn("allgather", move |x: Dynamic| {
        rhai_ok((|| {
            let all = c.allgather_bytes(&encode(&x)?).map_err(comm_err)?;
            let me = c.rank();
            let mut out = Array::with_capacity(all.len());
            for (r, bytes) in all.iter().enumerate() {
                out.push(if r == me { x.clone() } else { decode(bytes)? });
            }
            Ok(out)
        })())
    });

    let c = comm.clone();
    engine.register_fn("send", move |x: Dynamic, dest: i64, tag: i64| {
        rhai_ok((|| {
            let dest = rank_arg(&*c, dest, "dest")?;
            c.send_bytes(&encode(&x)?, dest, tag_arg(tag)?).map_err(comm_err)
        })())
    });

    let c = comm;
    engine.register_fn("recv", move |source: i64, tag: i64| {
        rhai_ok((|| {
            let source = rank_arg(&*c, source, "source")?;
            let bytes = c.recv_bytes(source, tag_arg(tag)?).map_err(comm_err)?;
            decode(&bytes)
        })())
    });
}
