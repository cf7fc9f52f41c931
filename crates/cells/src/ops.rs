//! Element-wise arithmetic (with numpy broadcasting), unary maps and reductions on arrays.

use std::sync::Arc;

use ndarray::{ArrayD, IxDyn, Zip};

use crate::{
    array::{with_array, ArrayValue, DType, Elem, Scalar},
    error::CellError,
};

/// A binary arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/` (always a float result)
    Div,
}

impl BinOp {
    /// The rhai operator symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }

    fn f64(self) -> fn(f64, f64) -> f64 {
        match self {
            BinOp::Add => |a, b| a + b,
            BinOp::Sub => |a, b| a - b,
            BinOp::Mul => |a, b| a * b,
            BinOp::Div => |a, b| a / b,
        }
    }

    fn f32(self) -> fn(f32, f32) -> f32 {
        match self {
            BinOp::Add => |a, b| a + b,
            BinOp::Sub => |a, b| a - b,
            BinOp::Mul => |a, b| a * b,
            BinOp::Div => |a, b| a / b,
        }
    }

    /// Wrapping integer op; `Div` is never used on integers (it yields floats) but stays total.
    fn i64(self) -> fn(i64, i64) -> i64 {
        match self {
            BinOp::Add => i64::wrapping_add,
            BinOp::Sub => i64::wrapping_sub,
            BinOp::Mul => i64::wrapping_mul,
            BinOp::Div => |a, b| a.checked_div(b).unwrap_or(0),
        }
    }

    fn i32(self) -> fn(i32, i32) -> i32 {
        match self {
            BinOp::Add => i32::wrapping_add,
            BinOp::Sub => i32::wrapping_sub,
            BinOp::Mul => i32::wrapping_mul,
            BinOp::Div => |a, b| a.checked_div(b).unwrap_or(0),
        }
    }
}

/// The numpy broadcast shape of two shapes, or an error naming both.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, CellError> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (k, o) in out.iter_mut().enumerate() {
        let da = (k + a.len()).checked_sub(n).map_or(1, |i| a[i]);
        let db = (k + b.len()).checked_sub(n).map_or(1, |i| b[i]);
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(CellError::new(
                    "ValueError",
                    format!("operands could not be broadcast together with shapes {a:?} {b:?}"),
                ))
            }
        };
    }
    Ok(out)
}

fn zip_with<A: Copy, B: Copy, R>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> R,
) -> Result<ArrayD<R>, CellError> {
    if a.shape() == b.shape() {
        return Ok(Zip::from(a).and(b).map_collect(|&x, &y| f(x, y)));
    }
    let shape = IxDyn(&broadcast_shape(a.shape(), b.shape())?);
    let mismatch = || CellError::new("ValueError", "broadcast failed");
    let av = a.broadcast(shape.clone()).ok_or_else(mismatch)?;
    let bv = b.broadcast(shape).ok_or_else(mismatch)?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

fn wrap<T: Elem>(r: Result<ArrayD<T>, CellError>) -> Result<ArrayValue, CellError> {
    r.map(T::wrap)
}

/// `a op b` element-wise. Same float dtypes stay; same integer dtypes stay except for `/`;
/// integer mixes go to i64 and everything else to f64.
pub fn binop(a: &ArrayValue, b: &ArrayValue, op: BinOp) -> Result<ArrayValue, CellError> {
    use ArrayValue as V;
    match (a, b) {
        (V::F64(x), V::F64(y)) => wrap(zip_with(x, y, op.f64())),
        (V::F32(x), V::F32(y)) => wrap(zip_with(x, y, op.f32())),
        (V::I64(x), V::I64(y)) if op != BinOp::Div => wrap(zip_with(x, y, op.i64())),
        (V::I32(x), V::I32(y)) if op != BinOp::Div => wrap(zip_with(x, y, op.i32())),
        _ if op != BinOp::Div && a.dtype().is_integral() && b.dtype().is_integral() => {
            wrap(zip_with(&a.to_i64(), &b.to_i64(), op.i64()))
        }
        _ => wrap(zip_with(&a.to_f64(), &b.to_f64(), op.f64())),
    }
}

fn map_scalar<T: Elem>(a: &ArrayD<T>, s: T, f: fn(T, T) -> T, left: bool) -> ArrayValue {
    T::wrap(if left { a.mapv(|x| f(s, x)) } else { a.mapv(|x| f(x, s)) })
}

/// `a op s` (or `s op a` when `scalar_left`). f64/f32 arrays keep their dtype; integer arrays with
/// an integer scalar give i64 (except `/`); the rest gives f64.
pub fn scalar_op(a: &ArrayValue, s: Scalar, op: BinOp, scalar_left: bool) -> ArrayValue {
    use ArrayValue as V;
    match (a, s) {
        (V::F64(x), s) => map_scalar(x, s.as_f64(), op.f64(), scalar_left),
        (V::F32(x), s) => map_scalar(x, s.as_f64() as f32, op.f32(), scalar_left),
        (_, Scalar::I(n)) if op != BinOp::Div => map_scalar(&a.to_i64(), n, op.i64(), scalar_left),
        _ => map_scalar(&a.to_f64(), s.as_f64(), op.f64(), scalar_left),
    }
}

/// Unary minus (bool and u8 go to i64).
pub fn neg(a: &ArrayValue) -> ArrayValue {
    match a {
        ArrayValue::F64(x) => f64::wrap(x.mapv(|v| -v)),
        ArrayValue::F32(x) => f32::wrap(x.mapv(|v| -v)),
        ArrayValue::I32(x) => i32::wrap(x.mapv(i32::wrapping_neg)),
        other => i64::wrap(other.to_i64().mapv(i64::wrapping_neg)),
    }
}

/// Absolute value, keeping the dtype (bool and u8 unchanged).
pub fn abs(a: &ArrayValue) -> ArrayValue {
    match a {
        ArrayValue::F64(x) => f64::wrap(x.mapv(f64::abs)),
        ArrayValue::F32(x) => f32::wrap(x.mapv(f32::abs)),
        ArrayValue::I64(x) => i64::wrap(x.mapv(i64::wrapping_abs)),
        ArrayValue::I32(x) => i32::wrap(x.mapv(i32::wrapping_abs)),
        other => other.clone(),
    }
}

/// A float function applied element-wise (f32 stays f32, everything else becomes f64).
pub fn map_float(a: &ArrayValue, f: fn(f64) -> f64) -> ArrayValue {
    match a {
        ArrayValue::F32(x) => f32::wrap(x.mapv(|v| f(f64::from(v)) as f32)),
        other => f64::wrap(other.to_f64().mapv(f)),
    }
}

/// A reduction's result: a float for float arrays, an integer otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reduced {
    /// Float result.
    F(f64),
    /// Integer result.
    I(i64),
}

/// Sum of all elements (wrapping for integers).
pub fn sum(a: &ArrayValue) -> Reduced {
    match a.dtype() {
        DType::F64 | DType::F32 => Reduced::F(with_array!(a, x => x.iter().map(|v| v.to_f64()).sum())),
        _ => Reduced::I(with_array!(a, x => x.iter().fold(0i64, |s, v| s.wrapping_add(v.to_i64())))),
    }
}

/// Mean of all elements (NaN when empty).
pub fn mean(a: &ArrayValue) -> f64 {
    let s = match sum(a) {
        Reduced::F(x) => x,
        Reduced::I(n) => n as f64,
    };
    s / a.len() as f64
}

/// Minimum (`want_max == false`) or maximum of all elements; error when empty.
pub fn extremum(a: &ArrayValue, want_max: bool) -> Result<Reduced, CellError> {
    if a.is_empty() {
        let name = if want_max { "max" } else { "min" };
        return Err(CellError::new("ValueError", format!("{name}() of an empty array")));
    }
    let pick_f = |m: Option<f64>, v: f64| {
        Some(match m {
            None => v,
            Some(m) if m.is_nan() || v.is_nan() => f64::NAN,
            Some(m) if want_max => m.max(v),
            Some(m) => m.min(v),
        })
    };
    let pick_i = |m: Option<i64>, v: i64| {
        Some(match m {
            None => v,
            Some(m) if want_max => m.max(v),
            Some(m) => m.min(v),
        })
    };
    Ok(match a.dtype() {
        DType::F64 | DType::F32 => Reduced::F(
            with_array!(a, x => x.iter().map(|v| v.to_f64()).fold(None, pick_f)).unwrap_or(f64::NAN),
        ),
        _ => Reduced::I(with_array!(a, x => x.iter().map(|v| v.to_i64()).fold(None, pick_i)).unwrap_or(0)),
    })
}

/// Checked element count of a shape.
pub fn shape_len(shape: &[usize]) -> Result<usize, CellError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= (isize::MAX as usize) / 8)
        .ok_or_else(|| CellError::new("ValueError", format!("shape {shape:?} is too large")))
}

/// An array of `shape` filled with `value`.
pub fn full<T: Elem + Clone>(shape: &[usize], value: T) -> Result<ArrayValue, CellError> {
    shape_len(shape)?;
    Ok(T::wrap(ArrayD::from_elem(IxDyn(shape), value)))
}

/// Builds an `ArrayValue` from a shape and row-major data (length already checked).
pub fn from_shape_vec<T: Elem>(shape: &[usize], v: Vec<T>) -> Result<ArrayValue, CellError> {
    ArrayD::from_shape_vec(IxDyn(shape), v)
        .map(T::wrap)
        .map_err(|e| CellError::new("ValueError", e.to_string()))
}

/// Wraps an owned f64 array (convenience for tests and natives).
pub fn f64_array(a: ArrayD<f64>) -> ArrayValue {
    ArrayValue::F64(Arc::new(a))
}
