//! `ArrayValue`: the typed n-d array of the cell language, shared copy-on-write.

use std::{fmt, sync::Arc};

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

use crate::error::CellError;

/// Element type of an [`ArrayValue`]: the wire's dtype, one definition for both.
pub use mpx_messages::Dtype as DType;

/// The dtypes an [`ArrayValue`] can hold, in the order of [`DType::ALL`]. The others (i8,
/// i16, u16, u32, u64, c64, c128) travel on the wire but only the Python kernel holds them.
pub const DTYPES: [DType; 6] = [DType::F64, DType::F32, DType::I64, DType::I32, DType::U8, DType::Bool];

/// Whether an [`ArrayValue`] can hold elements of `dtype`.
pub fn holds(dtype: DType) -> bool {
    DTYPES.contains(&dtype)
}

/// The `TypeError` for a dtype an [`ArrayValue`] cannot hold.
pub fn unsupported(dtype: DType) -> CellError {
    CellError::new(
        "TypeError",
        format!(
            "the rhai kernel cannot hold {} arrays (it has f64, f32, i64, i32, u8 and bool); \
             start the cluster with --kernel python",
            dtype.numpy_name()
        ),
    )
}

/// A typed n-d array shared copy-on-write (`Arc::make_mut` on write); cloning never copies data.
#[derive(Clone, Debug)]
pub enum ArrayValue {
    /// 64-bit floats.
    F64(Arc<ArrayD<f64>>),
    /// 32-bit floats.
    F32(Arc<ArrayD<f32>>),
    /// 64-bit integers.
    I64(Arc<ArrayD<i64>>),
    /// 32-bit integers.
    I32(Arc<ArrayD<i32>>),
    /// Bytes.
    U8(Arc<ArrayD<u8>>),
    /// Booleans.
    Bool(Arc<ArrayD<bool>>),
}

/// Runs `$body` with `$a` bound to the inner `Arc<ArrayD<_>>` whatever the dtype.
macro_rules! with_array {
    ($v:expr, $a:ident => $body:expr) => {
        match $v {
            ArrayValue::F64($a) => $body,
            ArrayValue::F32($a) => $body,
            ArrayValue::I64($a) => $body,
            ArrayValue::I32($a) => $body,
            ArrayValue::U8($a) => $body,
            ArrayValue::Bool($a) => $body,
        }
    };
}
pub(crate) use with_array;

/// An element type an [`ArrayValue`] can hold.
pub trait Elem: Copy + PartialEq + fmt::Debug + 'static {
    /// The dtype tag of this element type.
    const DTYPE: DType;
    /// Wraps an array of this element type.
    fn wrap(a: ArrayD<Self>) -> ArrayValue;
    /// Lossy conversion to f64 (bool: 0 or 1).
    fn to_f64(self) -> f64;
    /// Conversion to i64 (floats truncate, bool: 0 or 1).
    fn to_i64(self) -> i64;
    /// Appends the little-endian bytes of `self`.
    fn write_le(self, out: &mut Vec<u8>);
    /// Reads one element from exactly [`DType::item_size`] little-endian bytes.
    fn read_le(bytes: &[u8]) -> Self;
    /// Formats one element for display.
    fn fmt_elem(self) -> String;
}

macro_rules! impl_elem {
    ($t:ty, $dt:ident, $n:expr, $fmt:expr) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$dt;
            fn wrap(a: ArrayD<Self>) -> ArrayValue {
                ArrayValue::$dt(Arc::new(a))
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn to_i64(self) -> i64 {
                self as i64
            }
            fn write_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_le(bytes: &[u8]) -> Self {
                let mut b = [0u8; $n];
                b.copy_from_slice(&bytes[..$n]);
                <$t>::from_le_bytes(b)
            }
            fn fmt_elem(self) -> String {
                let f: fn($t) -> String = $fmt;
                f(self)
            }
        }
    };
}

impl_elem!(f64, F64, 8, fmt_float);
impl_elem!(f32, F32, 4, |x| fmt_float(x as f64));
impl_elem!(i64, I64, 8, |x| x.to_string());
impl_elem!(i32, I32, 4, |x| x.to_string());
impl_elem!(u8, U8, 1, |x| x.to_string());

impl Elem for bool {
    const DTYPE: DType = DType::Bool;
    fn wrap(a: ArrayD<Self>) -> ArrayValue {
        ArrayValue::Bool(Arc::new(a))
    }
    fn to_f64(self) -> f64 {
        if self {
            1.0
        } else {
            0.0
        }
    }
    fn to_i64(self) -> i64 {
        i64::from(self)
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    fn read_le(bytes: &[u8]) -> Self {
        bytes.first().is_some_and(|&b| b != 0)
    }
    fn fmt_elem(self) -> String {
        self.to_string()
    }
}

/// Formats a float like numpy: at most 8 decimals, trailing zeros trimmed, `1.0` for integers.
pub fn fmt_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let ax = x.abs();
    if x == x.trunc() && ax < 1e16 {
        return format!("{x:.1}");
    }
    if (1e-4..1e16).contains(&ax) {
        let s = format!("{x:.8}");
        let s = s.trim_end_matches('0');
        return if s.ends_with('.') { format!("{s}0") } else { s.into() };
    }
    let s = format!("{x:.8e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let m = m.trim_end_matches('0').trim_end_matches('.');
            format!("{m}e{e}")
        }
        None => s,
    }
}

impl ArrayValue {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            ArrayValue::F64(_) => DType::F64,
            ArrayValue::F32(_) => DType::F32,
            ArrayValue::I64(_) => DType::I64,
            ArrayValue::I32(_) => DType::I32,
            ArrayValue::U8(_) => DType::U8,
            ArrayValue::Bool(_) => DType::Bool,
        }
    }

    /// The element type's name: "f64", "f32", "i64", "i32", "u8" or "bool".
    pub fn dtype_name(&self) -> &'static str {
        self.dtype().name()
    }

    /// The shape (one length per axis).
    pub fn shape(&self) -> &[usize] {
        with_array!(self, a => a.shape())
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// Total number of elements.
    pub fn len(&self) -> usize {
        with_array!(self, a => a.len())
    }

    /// True when the array has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The array as f64 (no copy when already `F64`).
    pub fn to_f64(&self) -> Arc<ArrayD<f64>> {
        match self {
            ArrayValue::F64(a) => Arc::clone(a),
            other => with_array!(other, a => Arc::new(a.mapv(Elem::to_f64))),
        }
    }

    /// The array as i64 (no copy when already `I64`; floats truncate).
    pub fn to_i64(&self) -> Arc<ArrayD<i64>> {
        match self {
            ArrayValue::I64(a) => Arc::clone(a),
            other => with_array!(other, a => Arc::new(a.mapv(Elem::to_i64))),
        }
    }

    /// Converts to another dtype (no copy when it already has it).
    ///
    /// # Errors
    /// A `TypeError` for a dtype an `ArrayValue` cannot hold (see [`holds`]).
    pub fn astype(&self, dtype: DType) -> Result<ArrayValue, CellError> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        Ok(match dtype {
            DType::F64 => ArrayValue::F64(self.to_f64()),
            DType::I64 => ArrayValue::I64(self.to_i64()),
            DType::F32 => with_array!(self, a => f32::wrap(a.mapv(|x| x.to_f64() as f32))),
            DType::I32 => with_array!(self, a => i32::wrap(a.mapv(|x| x.to_i64() as i32))),
            DType::U8 => with_array!(self, a => u8::wrap(a.mapv(|x| x.to_i64() as u8))),
            DType::Bool => with_array!(self, a => bool::wrap(a.mapv(|x| x.to_f64() != 0.0))),
            DType::I8 | DType::I16 | DType::U16 | DType::U32 | DType::U64 | DType::C64 | DType::C128 => {
                return Err(unsupported(dtype))
            }
        })
    }

    /// A 1-d f64 array.
    pub fn from_vec_f64(v: Vec<f64>) -> ArrayValue {
        f64::wrap(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).unwrap_or_default())
    }

    /// The elements in logical (row-major) order as f64.
    pub fn to_vec_f64(&self) -> Vec<f64> {
        with_array!(self, a => a.iter().map(|x| x.to_f64()).collect())
    }

    /// Resolves a possibly negative index along the first axis.
    fn resolve(&self, index: i64) -> Result<usize, CellError> {
        let n = self.shape().first().copied().unwrap_or(0);
        let i = if index < 0 { i64::try_from(n).unwrap_or(i64::MAX).saturating_add(index) } else { index };
        match usize::try_from(i) {
            Ok(i) if i < n && self.ndim() > 0 => Ok(i),
            _ if self.ndim() == 0 => Err(CellError::new("IndexError", "a 0-d array cannot be indexed")),
            _ => Err(CellError::new(
                "IndexError",
                format!("index {index} is out of bounds for axis 0 with size {n}"),
            )),
        }
    }

    /// `a[index]`: an element of a 1-d array, or a sub-array (row) of an n-d one.
    pub fn get(&self, index: i64) -> Result<Element, CellError> {
        let i = self.resolve(index)?;
        if self.ndim() == 1 {
            return Ok(with_array!(self, a => Element::from_f(a[[i]])));
        }
        Ok(Element::Array(with_array!(self, a => Elem::wrap(a.index_axis(Axis(0), i).to_owned()))))
    }

    /// `a[index] = value` on a 1-d array (copy-on-write), casting `value` to the dtype.
    pub fn set(&mut self, index: i64, value: Scalar) -> Result<(), CellError> {
        let i = self.resolve(index)?;
        if self.ndim() != 1 {
            return Err(CellError::new(
                "IndexError",
                format!("element assignment needs a 1-d array, not {}-d", self.ndim()),
            ));
        }
        let (f, n, b) = (value.as_f64(), value.as_i64(), value.as_f64() != 0.0);
        match self {
            ArrayValue::F64(a) => Arc::make_mut(a)[[i]] = f,
            ArrayValue::F32(a) => Arc::make_mut(a)[[i]] = f as f32,
            ArrayValue::I64(a) => Arc::make_mut(a)[[i]] = n,
            ArrayValue::I32(a) => {
                Arc::make_mut(a)[[i]] = i32::try_from(n).map_err(|_| out_of_range(n, "i32"))?
            }
            ArrayValue::U8(a) => {
                Arc::make_mut(a)[[i]] = u8::try_from(n).map_err(|_| out_of_range(n, "u8"))?
            }
            ArrayValue::Bool(a) => Arc::make_mut(a)[[i]] = b,
        }
        Ok(())
    }

    /// The same data with another shape (copies only if not contiguous).
    pub fn reshape(&self, shape: &[usize]) -> Result<ArrayValue, CellError> {
        let n: Option<usize> = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if n != Some(self.len()) {
            return Err(CellError::new(
                "ValueError",
                format!("cannot reshape {} elements into {shape:?}", self.len()),
            ));
        }
        with_array!(self, a => {
            let v: Vec<_> = a.iter().copied().collect();
            ArrayD::from_shape_vec(IxDyn(shape), v)
                .map(Elem::wrap)
                .map_err(|e| CellError::new("ValueError", e.to_string()))
        })
    }
}

fn out_of_range(n: i64, ty: &str) -> CellError {
    CellError::new("ValueError", format!("{n} does not fit in {ty}"))
}

/// A scalar operand: float or integer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    /// A float.
    F(f64),
    /// An integer.
    I(i64),
}

impl Scalar {
    /// The value as f64.
    pub fn as_f64(self) -> f64 {
        match self {
            Scalar::F(x) => x,
            Scalar::I(n) => n as f64,
        }
    }
    /// The value as i64 (floats truncate).
    pub fn as_i64(self) -> i64 {
        match self {
            Scalar::F(x) => x as i64,
            Scalar::I(n) => n,
        }
    }
}

/// What indexing an array yields.
#[derive(Debug, Clone)]
pub enum Element {
    /// A float element (f64 or f32 arrays).
    Float(f64),
    /// An integer element.
    Int(i64),
    /// A bool element.
    Bool(bool),
    /// A sub-array.
    Array(ArrayValue),
}

impl Element {
    fn from_f<T: Elem>(x: T) -> Element {
        match T::DTYPE {
            DType::F64 | DType::F32 => Element::Float(x.to_f64()),
            DType::Bool => Element::Bool(x.to_i64() != 0),
            _ => Element::Int(x.to_i64()),
        }
    }
}

/// Past this many elements along an axis, display shows the first and last 3 and `...`.
const THRESHOLD: usize = 10;
const EDGE: usize = 3;

fn fmt_view<T: Elem>(v: &ArrayViewD<T>, depth: usize, out: &mut String) {
    if v.ndim() == 0 {
        if let Some(x) = v.iter().next() {
            out.push_str(&x.fmt_elem());
        }
        return;
    }
    let n = v.shape()[0];
    let idx: Vec<Option<usize>> = if n > THRESHOLD {
        (0..EDGE).map(Some).chain(std::iter::once(None)).chain((n - EDGE..n).map(Some)).collect()
    } else {
        (0..n).map(Some).collect()
    };
    let sep = if v.ndim() == 1 { ", ".to_string() } else { format!(",\n{}", " ".repeat(depth + 1)) };
    out.push('[');
    for (k, i) in idx.iter().enumerate() {
        if k > 0 {
            out.push_str(&sep);
        }
        match i {
            Some(i) => fmt_view(&v.index_axis(Axis(0), *i), depth + 1, out),
            None => out.push_str("..."),
        }
    }
    out.push(']');
}

impl fmt::Display for ArrayValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        with_array!(self, a => fmt_view(&a.view(), 0, &mut s));
        f.write_str(&s)
    }
}

macro_rules! impl_from {
    ($t:ty) => {
        impl From<ArrayD<$t>> for ArrayValue {
            fn from(a: ArrayD<$t>) -> Self {
                <$t as Elem>::wrap(a)
            }
        }
    };
}
impl_from!(f64);
impl_from!(f32);
impl_from!(i64);
impl_from!(i32);
impl_from!(u8);
impl_from!(bool);
