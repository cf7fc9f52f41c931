//! Arrays as raw little-endian bytes (C order), the form they travel in: one memcpy on
//! little-endian hosts, and no copy at all when sending a contiguous array ([`to_bytes`]).

use std::sync::Arc;

use bytes::Bytes;
use ndarray::{ArrayD, IxDyn};

use crate::{ArrayValue, CellError, DType};

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
/// A `ValueError` when the byte count does not match the shape, or a bool byte is not 0 or 1.
pub fn from_bytes(dtype: DType, shape: &[usize], raw: &[u8]) -> Result<ArrayValue, CellError> {
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
    })
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
    fn wrong_sizes_and_bad_bools_are_refused() {
        assert!(from_bytes(DType::F64, &[3], &[0u8; 23]).is_err());
        assert!(from_bytes(DType::Bool, &[2], &[0, 2]).is_err());
        assert!(from_bytes(DType::U8, &[usize::MAX, 2], &[]).is_err());
    }
}
