//! The array built-ins of the cell language, registered on a rhai `Engine`.
//!
//! Functions that only read an array take the `ArrayValue` by value: that clones an `Arc`, never
//! the data. Every function that takes a number has an `i64` overload (rhai does not convert).

use std::{sync::OnceLock, time::Instant};

use rand::RngExt;
use rhai::{Array, Dynamic, Engine};

use crate::{
    array::{ArrayValue, DType, Element, Scalar},
    error::{rhai_ok, CellError, RhaiResult},
    ops::{self, BinOp, Reduced},
};

/// Registers the `ndarray` type and every array built-in on `engine`.
pub fn register(engine: &mut Engine) {
    engine.register_type_with_name::<ArrayValue>("ndarray");
    engine.register_fn("to_string", |a: &mut ArrayValue| a.to_string());
    engine.register_fn("to_debug", |a: &mut ArrayValue| a.to_string());
    engine.register_fn("wtime", wtime);
    register_constructors(engine);
    register_queries(engine);
    register_arithmetic(engine);
    engine.register_indexer_get(|a: &mut ArrayValue, i: i64| -> RhaiResult<Dynamic> {
        Ok(element_to_dynamic(rhai_ok(a.get(i))?))
    });
    engine.register_indexer_set(|a: &mut ArrayValue, i: i64, v: f64| -> RhaiResult<()> {
        rhai_ok(a.set(i, Scalar::F(v)))
    });
    engine.register_indexer_set(|a: &mut ArrayValue, i: i64, v: i64| -> RhaiResult<()> {
        rhai_ok(a.set(i, Scalar::I(v)))
    });
    engine.register_indexer_set(|a: &mut ArrayValue, i: i64, v: bool| -> RhaiResult<()> {
        rhai_ok(a.set(i, Scalar::I(i64::from(v))))
    });
}

/// `wtime()`: seconds since a fixed point in this process's past, from the monotonic clock
/// (like `MPI_Wtime`): only differences are meaningful, and never go backwards.
pub fn wtime() -> f64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_secs_f64()
}

fn element_to_dynamic(e: Element) -> Dynamic {
    match e {
        Element::Float(x) => Dynamic::from_float(x),
        Element::Int(n) => Dynamic::from_int(n),
        Element::Bool(b) => Dynamic::from_bool(b),
        Element::Array(a) => Dynamic::from(a),
    }
}

fn reduced(r: Reduced) -> Dynamic {
    match r {
        Reduced::F(x) => Dynamic::from_float(x),
        Reduced::I(n) => Dynamic::from_int(n),
    }
}

/// A non-negative length from a cell integer.
pub fn dim(n: i64) -> Result<usize, CellError> {
    usize::try_from(n).map_err(|_| CellError::new("ValueError", format!("negative dimension {n}")))
}

/// A shape from a rhai array of non-negative integers.
pub fn shape_of(arr: &Array) -> Result<Vec<usize>, CellError> {
    arr.iter()
        .map(|d| d.as_int().map_err(|_| CellError::new("TypeError", "a shape holds integers")).and_then(dim))
        .collect()
}

/// A number (int or float) from a dynamic value.
pub fn number(d: &Dynamic) -> Result<Scalar, CellError> {
    if let Ok(n) = d.as_int() {
        Ok(Scalar::I(n))
    } else if let Ok(x) = d.as_float() {
        Ok(Scalar::F(x))
    } else {
        Err(CellError::new("TypeError", format!("expected a number, got {}", d.type_name())))
    }
}

fn dtype_arg(name: &str) -> Result<DType, CellError> {
    let dtype =
        DType::parse(name).ok_or_else(|| CellError::new("TypeError", format!("unknown dtype '{name}'")))?;
    if !crate::array::holds(dtype) {
        return Err(crate::array::unsupported(dtype));
    }
    Ok(dtype)
}

fn random(shape: &[usize]) -> Result<ArrayValue, CellError> {
    let n = ops::shape_len(shape)?;
    let mut rng = rand::rng();
    let v: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
    ops::from_shape_vec(shape, v)
}

fn filled(shape: &[usize], value: f64, dtype: Option<&str>) -> Result<ArrayValue, CellError> {
    let a = ops::full(shape, value)?;
    Ok(match dtype {
        Some(d) => a.astype(dtype_arg(d)?)?,
        None => a,
    })
}

fn linspace(start: &Dynamic, stop: &Dynamic, n: i64) -> Result<ArrayValue, CellError> {
    let (a, b, n) = (number(start)?.as_f64(), number(stop)?.as_f64(), dim(n)?);
    ops::shape_len(&[n])?;
    let step = if n > 1 { (b - a) / (n - 1) as f64 } else { 0.0 };
    Ok(ArrayValue::from_vec_f64((0..n).map(|i| a + step * i as f64).collect()))
}

fn arange(start: &Dynamic, stop: &Dynamic, step: &Dynamic) -> Result<ArrayValue, CellError> {
    let (a, b, s) = (number(start)?, number(stop)?, number(step)?);
    if s.as_f64() == 0.0 {
        return Err(CellError::new("ValueError", "arange step must not be zero"));
    }
    let count = ((b.as_f64() - a.as_f64()) / s.as_f64()).ceil().max(0.0);
    if !count.is_finite() || count > 1e12 {
        return Err(CellError::new("ValueError", "arange range is too large"));
    }
    let n = count as usize;
    ops::shape_len(&[n])?;
    match (a, s) {
        (Scalar::I(a), Scalar::I(s)) if matches!(b, Scalar::I(_)) => {
            ops::from_shape_vec(&[n], (0..n as i64).map(|i| a.wrapping_add(i.wrapping_mul(s))).collect())
        }
        _ => Ok(ArrayValue::from_vec_f64((0..n).map(|i| a.as_f64() + s.as_f64() * i as f64).collect())),
    }
}

enum Leaf {
    F(f64),
    I(i64),
    B(bool),
}

fn ragged() -> CellError {
    CellError::new("ValueError", "nested arrays must be rectangular")
}

fn flatten_list(
    list: &Array,
    depth: usize,
    shape: &mut Vec<usize>,
    leaf_depth: &mut Option<usize>,
    out: &mut Vec<Leaf>,
) -> Result<(), CellError> {
    if leaf_depth.is_some_and(|l| depth >= l) || depth > 32 {
        return Err(ragged());
    }
    if shape.len() == depth {
        shape.push(list.len());
    } else if shape.get(depth) != Some(&list.len()) {
        return Err(ragged());
    }
    for d in list.iter() {
        if let Some(inner) = d.read_lock::<Array>() {
            flatten_list(&inner, depth + 1, shape, leaf_depth, out)?;
            continue;
        }
        if leaf_depth.is_some_and(|l| l != depth + 1) || shape.len() != depth + 1 {
            return Err(ragged());
        }
        *leaf_depth = Some(depth + 1);
        out.push(if let Ok(b) = d.as_bool() {
            Leaf::B(b)
        } else {
            match number(d)? {
                Scalar::I(n) => Leaf::I(n),
                Scalar::F(x) => Leaf::F(x),
            }
        });
    }
    Ok(())
}

/// Builds an array from a (possibly nested, rectangular) rhai array of numbers or bools.
/// The dtype is inferred (any float → f64, all bools → bool, else i64) unless given.
pub fn from_rhai(arr: &Array, dtype: Option<DType>) -> Result<ArrayValue, CellError> {
    let (mut shape, mut leaves, mut leaf_depth) = (Vec::new(), Vec::new(), None);
    flatten_list(arr, 0, &mut shape, &mut leaf_depth, &mut leaves)?;
    let any_float = leaves.iter().any(|l| matches!(l, Leaf::F(_)));
    let all_bool = !leaves.is_empty() && leaves.iter().all(|l| matches!(l, Leaf::B(_)));
    let a = if any_float || leaves.is_empty() {
        let v = leaves.iter().map(|l| match *l {
            Leaf::F(x) => x,
            Leaf::I(n) => n as f64,
            Leaf::B(b) => f64::from(u8::from(b)),
        });
        ops::from_shape_vec(&shape, v.collect())?
    } else if all_bool {
        let v = leaves.iter().map(|l| matches!(l, Leaf::B(true)));
        ops::from_shape_vec(&shape, v.collect())?
    } else {
        let v = leaves.iter().map(|l| match *l {
            Leaf::F(x) => x as i64,
            Leaf::I(n) => n,
            Leaf::B(b) => i64::from(b),
        });
        ops::from_shape_vec(&shape, v.collect())?
    };
    match dtype {
        Some(d) => a.astype(d),
        None => Ok(a),
    }
}

fn register_constructors(engine: &mut Engine) {
    engine.register_fn("rand", || rand::rng().random::<f64>());
    engine.register_fn("rand", |n: i64| rhai_ok(random(&[dim(n)?])));
    engine.register_fn("rand", |s: Array| rhai_ok(random(&shape_of(&s)?)));
    for (name, value) in [("zeros", 0.0), ("ones", 1.0)] {
        engine.register_fn(name, move |n: i64| rhai_ok(filled(&[dim(n)?], value, None)));
        engine.register_fn(name, move |s: Array| rhai_ok(filled(&shape_of(&s)?, value, None)));
        engine.register_fn(name, move |n: i64, t: &str| rhai_ok(filled(&[dim(n)?], value, Some(t))));
        engine.register_fn(name, move |s: Array, t: &str| rhai_ok(filled(&shape_of(&s)?, value, Some(t))));
    }
    engine.register_fn("linspace", |a: Dynamic, b: Dynamic, n: i64| rhai_ok(linspace(&a, &b, n)));
    engine.register_fn("arange", |n: i64| rhai_ok(arange(&0.into(), &n.into(), &1.into())));
    engine.register_fn("arange", |a: Dynamic, b: Dynamic| rhai_ok(arange(&a, &b, &1.into())));
    engine.register_fn("arange", |a: Dynamic, b: Dynamic, s: Dynamic| rhai_ok(arange(&a, &b, &s)));
    engine.register_fn("ndarray", |a: Array| rhai_ok(from_rhai(&a, None)));
    engine.register_fn("ndarray", |a: Array, t: &str| rhai_ok(from_rhai(&a, Some(dtype_arg(t)?))));
    engine.register_fn("ndarray", |a: ArrayValue| a);
    engine.register_fn("ndarray", |a: ArrayValue, t: &str| rhai_ok(dtype_arg(t).and_then(|d| a.astype(d))));
    engine.register_fn("astype", |a: ArrayValue, t: &str| rhai_ok(dtype_arg(t).and_then(|d| a.astype(d))));
    engine.register_fn("reshape", |a: ArrayValue, s: Array| rhai_ok(a.reshape(&shape_of(&s)?)));
    engine.register_fn("to_array", |a: ArrayValue| -> Array {
        a.to_vec_f64().into_iter().map(Dynamic::from_float).collect()
    });
}

fn register_queries(engine: &mut Engine) {
    engine.register_fn("sum", |a: ArrayValue| reduced(ops::sum(&a)));
    engine.register_fn("mean", |a: ArrayValue| ops::mean(&a));
    engine.register_fn("min", |a: ArrayValue| rhai_ok(ops::extremum(&a, false).map(reduced)));
    engine.register_fn("max", |a: ArrayValue| rhai_ok(ops::extremum(&a, true).map(reduced)));
    engine.register_fn("sum", |a: Array| rhai_ok(from_rhai(&a, None).map(|a| reduced(ops::sum(&a)))));
    engine.register_fn("mean", |a: Array| rhai_ok(from_rhai(&a, None).map(|a| ops::mean(&a))));
    engine.register_fn("min", |a: Array| {
        rhai_ok(from_rhai(&a, None).and_then(|a| ops::extremum(&a, false)).map(reduced))
    });
    engine.register_fn("max", |a: Array| {
        rhai_ok(from_rhai(&a, None).and_then(|a| ops::extremum(&a, true)).map(reduced))
    });
    engine.register_fn("dot", |a: ArrayValue, b: ArrayValue| {
        rhai_ok(ops::binop(&a, &b, BinOp::Mul).map(|p| reduced(ops::sum(&p))))
    });
    let shape =
        |a: &mut ArrayValue| -> Array { a.shape().iter().map(|&d| Dynamic::from_int(d as i64)).collect() };
    let len = |a: &mut ArrayValue| a.len() as i64;
    let dtype = |a: &mut ArrayValue| a.dtype_name().to_string();
    let ndim = |a: &mut ArrayValue| a.ndim() as i64;
    engine
        .register_fn("shape", shape)
        .register_get("shape", shape)
        .register_fn("len", len)
        .register_get("len", len)
        .register_fn("dtype", dtype)
        .register_get("dtype", dtype)
        .register_fn("ndim", ndim)
        .register_get("ndim", ndim);
}

type FloatFn = fn(f64) -> f64;

fn register_arithmetic(engine: &mut Engine) {
    for op in [BinOp::Add, BinOp::Sub, BinOp::Mul, BinOp::Div] {
        let s = op.symbol();
        engine.register_fn(s, move |a: ArrayValue, b: ArrayValue| rhai_ok(ops::binop(&a, &b, op)));
        engine.register_fn(s, move |a: ArrayValue, b: f64| ops::scalar_op(&a, Scalar::F(b), op, false));
        engine.register_fn(s, move |a: ArrayValue, b: i64| ops::scalar_op(&a, Scalar::I(b), op, false));
        engine.register_fn(s, move |a: f64, b: ArrayValue| ops::scalar_op(&b, Scalar::F(a), op, true));
        engine.register_fn(s, move |a: i64, b: ArrayValue| ops::scalar_op(&b, Scalar::I(a), op, true));
    }
    engine.register_fn("-", |a: ArrayValue| ops::neg(&a));
    engine.register_fn("abs", |a: ArrayValue| ops::abs(&a));
    let maps: [(&str, FloatFn); 8] = [
        ("sqrt", f64::sqrt),
        ("exp", f64::exp),
        ("ln", f64::ln),
        ("log", f64::log10),
        ("sin", f64::sin),
        ("cos", f64::cos),
        ("tan", f64::tan),
        ("floor", f64::floor),
    ];
    for (name, f) in maps {
        engine.register_fn(name, move |a: ArrayValue| ops::map_float(&a, f));
        // rhai only defines these for floats: make `sqrt(2)` work too.
        engine.register_fn(name, move |n: i64| f(n as f64));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn wtime_is_monotonic_seconds() {
        let mut engine = Engine::new();
        register(&mut engine);
        let t0: f64 = engine.eval("wtime()").expect("wtime");
        std::thread::sleep(Duration::from_millis(20));
        let dt: f64 = engine.eval("let a = wtime(); let b = wtime(); b - a").expect("wtime");
        let t1: f64 = engine.eval("wtime()").expect("wtime");
        assert!(t0 >= 0.0 && (0.0..0.01).contains(&dt), "t0 {t0}, dt {dt}");
        assert!(t1 - t0 >= 0.02 && t1 - t0 < 5.0, "20 ms sleep measured as {} s", t1 - t0);
    }
}
