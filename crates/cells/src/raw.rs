//! Arrays as raw little-endian bytes (C order), the form they travel in: one memcpy on
//! little-endian hosts, and no copy at all when sending a contiguous array ([`to_bytes`]).

use std::sync::Arc;

use bytes::Bytes;
use ndarray::{ArrayD, IxDyn};

use mpx_messages::RawArray;

use crate::{array::unsupported, ArrayValue, CellError, DType};

/// Plain element types whose in-memory form on a little-endian host is their wire form.
trait Pod: crate::array::Elem + Send + Sync {}
impl Pod for f64 {}
impl Pod for f32 {}
impl Pod for i64 {}
impl Pod for i32 {}
impl Pod for u8 {}
// bool is one byte holding 0 or 1, which is also its wire form (reading checks the values).
impl Pod for bool {}

/// Owns a contiguous array so that [`Bytes`] can point into it without copying.
struct Owner<T: Pod>(Arc<ArrayD<T>>);

impl<T: Pod> AsRef<[u8]> for Owner<T> {
    fn as_ref(&self) -> &[u8] {
        let s = self.0.as_slice().expect("Owner holds only standard-layout arrays");
        // SAFETY: T is a plain type without padding; the slice covers exactly the elements.
        unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
    }
}

fn bytes_of<T: Pod>(a: &Arc<ArrayD<T>>) -> Bytes {
    if cfg!(target_endian = "little") && a.is_standard_layout() {
        return Bytes::from_owner(Owner(a.clone()));
    }
    let owned: Arc<ArrayD<T>> = Arc::new(a.as_standard_layout().into_owned());
    if cfg!(target_endian = "little") {
        return Bytes::from_owner(Owner(owned));
    }
    // Big-endian hosts: element by element.
    let mut out = Vec::with_capacity(owned.len() * std::mem::size_of::<T>());
    owned.iter().for_each(|&v| v.write_le(&mut out));
    Bytes::from(out)
}

/// The array's elements as little-endian bytes in C order. No copy when the array is
/// contiguous (the bytes keep the array alive); one copy otherwise.
pub fn to_bytes(a: &ArrayValue) -> Bytes {
    match a {
        ArrayValue::F64(x) => bytes_of(x),
        ArrayValue::F32(x) => bytes_of(x),
        ArrayValue::I64(x) => bytes_of(x),
        ArrayValue::I32(x) => bytes_of(x),
        ArrayValue::U8(x) => bytes_of(x),
        ArrayValue::Bool(x) => bytes_of(x),
    }
}

/// The elements of a standard-layout (C-contiguous) array as little-endian bytes, in place;
/// `None` for other layouts.
pub fn le_bytes(a: &ArrayValue) -> Option<&[u8]> {
    fn view<T: Pod>(x: &ArrayD<T>) -> Option<&[u8]> {
        let s = x.as_slice()?;
        // SAFETY: T is a plain type without padding; the slice covers exactly the elements.
        Some(unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s)) })
    }
    if cfg!(target_endian = "big") {
        return None;
    }
    crate::array::with_array!(a, x => view(x))
}

/// The elements as writable little-endian bytes: the array is made standard-layout and
/// unshared first (copy-on-write), so writing never touches another holder's data.
///
/// # Safety of use
/// For bool arrays, write only 0 and 1.
pub fn le_bytes_mut(a: &mut ArrayValue) -> &mut [u8] {
    fn view<T: Pod + Clone>(x: &mut Arc<ArrayD<T>>) -> &mut [u8] {
        if !x.is_standard_layout() {
            *x = Arc::new(x.as_standard_layout().into_owned());
        }
        let s = Arc::make_mut(x).as_slice_mut().expect("standard layout");
        // SAFETY: T is a plain type without padding; callers write only valid bit patterns
        // (0/1 for bool, checked where the bytes come from the wire).
        unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
    }
    crate::array::with_array!(a, x => view(x))
}

fn elems_from<T: Pod>(n: usize, raw: &[u8]) -> Vec<T> {
    if cfg!(target_endian = "little") {
        let mut v: Vec<T> = Vec::with_capacity(n);
        // SAFETY: the capacity is n elements, raw holds exactly n * size_of::<T>() bytes (checked
        // by the caller), every bit pattern is a valid T for the numeric types, and bool is
        // validated by the caller before this is called.
        unsafe {
            std::ptr::copy_nonoverlapping(raw.as_ptr(), v.as_mut_ptr().cast::<u8>(), raw.len());
            v.set_len(n);
        }
        v
    } else {
        raw.chunks_exact(std::mem::size_of::<T>()).map(T::read_le).collect()
    }
}

/// An array from little-endian bytes in C order.
///
/// # Errors
/// A `TypeError` for a dtype the rhai kernel cannot hold (i8, i16, u16, u32, u64, c64, c128),
/// a `ValueError` when the byte count does not match the shape, or a bool byte is not 0 or 1.
pub fn from_bytes(dtype: DType, shape: &[usize], raw: &[u8]) -> Result<ArrayValue, CellError> {
    if !crate::array::holds(dtype) {
        return Err(unsupported(dtype));
    }
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| CellError::new("ValueError", format!("shape {shape:?} is too large")))?;
    let want = n.saturating_mul(dtype.item_size());
    if raw.len() != want {
        return Err(CellError::new(
            "ValueError",
            format!(
                "{} bytes do not hold a {} array of shape {shape:?} ({want} bytes)",
                raw.len(),
                dtype.name()
            ),
        ));
    }
    let shape = IxDyn(shape);
    let bad_shape = |e: ndarray::ShapeError| CellError::new("ValueError", e.to_string());
    Ok(match dtype {
        DType::F64 => {
            ArrayValue::from(ArrayD::from_shape_vec(shape, elems_from::<f64>(n, raw)).map_err(bad_shape)?)
        }
        DType::F32 => {
            ArrayValue::from(ArrayD::from_shape_vec(shape, elems_from::<f32>(n, raw)).map_err(bad_shape)?)
        }
        DType::I64 => {
            ArrayValue::from(ArrayD::from_shape_vec(shape, elems_from::<i64>(n, raw)).map_err(bad_shape)?)
        }
        DType::I32 => {
            ArrayValue::from(ArrayD::from_shape_vec(shape, elems_from::<i32>(n, raw)).map_err(bad_shape)?)
        }
        DType::U8 => {
            ArrayValue::from(ArrayD::from_shape_vec(shape, elems_from::<u8>(n, raw)).map_err(bad_shape)?)
        }
        DType::Bool => {
            if let Some(b) = raw.iter().find(|&&b| b > 1) {
                return Err(CellError::new("ValueError", format!("byte {b} is not a bool (0 or 1)")));
            }
            ArrayValue::from(ArrayD::from_shape_vec(shape, elems_from::<bool>(n, raw)).map_err(bad_shape)?)
        }
        DType::I8 | DType::I16 | DType::U16 | DType::U32 | DType::U64 | DType::C64 | DType::C128 => {
            return Err(unsupported(dtype))
        }
    })
}

/// An array from a [`RawArray`] (one copy of the bytes; their length and bools are already
/// checked).
///
/// # Errors
/// A `TypeError` for a dtype the rhai kernel cannot hold (i8, i16, u16, u32, u64, c64, c128).
pub fn from_raw(a: &RawArray) -> Result<ArrayValue, CellError> {
    from_bytes(a.dtype(), a.shape(), a.data())
}

/// The array as a [`RawArray`], with no copy when it is contiguous (see [`to_bytes`]).
pub fn to_raw(a: &ArrayValue) -> RawArray {
    RawArray::new(a.dtype(), a.shape().to_vec(), to_bytes(a))
        .expect("an ArrayValue's bytes always match its dtype and shape")
}

impl From<&ArrayValue> for RawArray {
    fn from(a: &ArrayValue) -> RawArray {
        to_raw(a)
    }
}

impl TryFrom<&RawArray> for ArrayValue {
    type Error = CellError;

    fn try_from(a: &RawArray) -> Result<ArrayValue, CellError> {
        from_raw(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_round_trips_bit_exactly() {
        let arrays = vec![
            ArrayValue::from(
                ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0.5, -0.0, f64::NAN, 1e300, -1.0, 3.0]).unwrap(),
            ),
            ArrayValue::from(ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.5f32, f32::INFINITY, -2.0]).unwrap()),
            ArrayValue::from(ArrayD::from_shape_vec(IxDyn(&[4, 0, 2]), Vec::<i64>::new()).unwrap()),
            ArrayValue::from(ArrayD::from_shape_vec(IxDyn(&[]), vec![i32::MIN]).unwrap()),
            ArrayValue::from(ArrayD::from_shape_vec(IxDyn(&[2]), vec![0u8, 255]).unwrap()),
            ArrayValue::from(ArrayD::from_shape_vec(IxDyn(&[3]), vec![true, false, true]).unwrap()),
        ];
        for a in arrays {
            let bytes = to_bytes(&a);
            assert_eq!(bytes.len(), a.len() * a.dtype().item_size());
            let back = from_bytes(a.dtype(), a.shape(), &bytes).unwrap();
            assert_eq!(to_bytes(&back), bytes);
            assert_eq!(back.shape(), a.shape());
        }
    }

    #[test]
    fn transposed_arrays_are_sent_in_c_order() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 3]), (0..6).map(f64::from).collect()).unwrap();
        let t = ArrayValue::from(a.t().to_owned());
        let swapped = ArrayValue::F64(Arc::new(a.reversed_axes()));
        assert_eq!(to_bytes(&t), to_bytes(&swapped));
    }

    #[test]
    fn raw_arrays_convert_both_ways_without_copying_contiguous_data() {
        let a = ArrayValue::from(ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1i32, -2, 3, -4]).unwrap());
        let r = RawArray::from(&a);
        assert_eq!((r.dtype(), r.shape(), r.len()), (DType::I32, &[2, 2][..], 4));
        let ArrayValue::I32(inner) = &a else { unreachable!() };
        assert_eq!(r.data().as_ptr(), inner.as_ptr().cast::<u8>(), "to_raw copied a contiguous array");
        let back = ArrayValue::try_from(&r).unwrap();
        assert_eq!(back.to_string(), "[[1, -2],\n [3, -4]]");
    }

    #[test]
    fn dtypes_the_rhai_kernel_cannot_hold_are_type_errors() {
        for dtype in DType::ALL.into_iter().filter(|d| !crate::array::holds(*d)) {
            let raw = RawArray::new(dtype, vec![2], Bytes::from(vec![0u8; 2 * dtype.item_size()])).unwrap();
            let e = from_raw(&raw).unwrap_err();
            assert_eq!(e.ename, "TypeError");
            assert!(e.evalue.contains(dtype.numpy_name()) && e.evalue.contains("--kernel python"), "{e}");
            assert_eq!(from_bytes(dtype, &[1], &[0; 16]).unwrap_err().ename, "TypeError");
        }
    }

    #[test]
    fn wrong_sizes_and_bad_bools_are_refused() {
        assert!(from_bytes(DType::F64, &[3], &[0u8; 23]).is_err());
        assert!(from_bytes(DType::Bool, &[2], &[0, 2]).is_err());
        assert!(from_bytes(DType::U8, &[usize::MAX, 2], &[]).is_err());
    }
}
