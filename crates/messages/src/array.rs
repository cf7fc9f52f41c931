//! [`RawArray`]: an array of any [`Dtype`] as its little-endian bytes in C order, the form
//! arrays travel in. Building one checks the bytes against dtype and shape once; nothing
//! is done per element except the 0/1 check of bool arrays.

use bytes::Bytes;
use thiserror::Error;

use crate::{ArrayMeta, Dtype, ReturnedArray};

/// Why bytes do not make a [`RawArray`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ArrayError {
    /// The number of elements or bytes of the shape does not fit in `usize`.
    #[error("shape {shape:?} of {dtype} is too large (its byte count overflows)")]
    TooLarge {
        /// The element type.
        dtype: Dtype,
        /// The shape asked for.
        shape: Vec<usize>,
    },
    /// The byte count is not what dtype and shape imply.
    #[error("{got} bytes do not hold a {dtype} array of shape {shape:?} ({expected} bytes)")]
    WrongLength {
        /// The element type.
        dtype: Dtype,
        /// The shape.
        shape: Vec<usize>,
        /// Bytes that dtype and shape need.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// The frame has no buffer at the index an [`ArrayMeta`] names.
    #[error("array buffer {index} is missing from the frame ({count} buffers)")]
    MissingBuffer {
        /// The index named.
        index: usize,
        /// Buffers in the frame.
        count: usize,
    },
    /// A byte of a bool array is neither 0 nor 1.
    #[error("byte {value} at element {index} is not a bool (0 or 1)")]
    BadBool {
        /// Element index (row-major).
        index: usize,
        /// The byte found.
        value: u8,
    },
}

/// Default size (bytes) of the chunks an array larger than one chunk streams in.
pub const DEFAULT_CHUNK: usize = 4 << 20;

/// Environment variable overriding the chunk size (bytes) of streamed arrays, read once by
/// clients and engines alike (tests use small chunks).
pub const CHUNK_ENV: &str = "MPX_CHUNK_BYTES";

/// The chunk size of this process: `$MPX_CHUNK_BYTES`, or [`DEFAULT_CHUNK`].
pub fn chunk_bytes() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        std::env::var(CHUNK_ENV).ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(DEFAULT_CHUNK)
    })
}

/// The number of bytes an array of `dtype` and `shape` takes, or `None` on overflow (an
/// array with a zero-length axis takes 0 bytes whatever its other axes).
pub fn byte_len(dtype: Dtype, shape: &[usize]) -> Option<usize> {
    if shape.contains(&0) {
        return Some(0);
    }
    shape.iter().try_fold(dtype.item_size(), |acc, &d| acc.checked_mul(d))
}

/// An n-d array of any dtype as raw little-endian bytes in row-major (C) order, checked
/// against its dtype and shape. Cloning shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawArray {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Bytes,
}

impl RawArray {
    /// An array from its bytes, with no copy.
    ///
    /// # Errors
    /// [`ArrayError::TooLarge`] when the shape's byte count overflows,
    /// [`ArrayError::WrongLength`] when `data` is not exactly `product(shape) * item_size`
    /// bytes, and [`ArrayError::BadBool`] for a bool byte other than 0 or 1.
    pub fn new(dtype: Dtype, shape: Vec<usize>, data: Bytes) -> Result<RawArray, ArrayError> {
        let Some(expected) = byte_len(dtype, &shape) else {
            return Err(ArrayError::TooLarge { dtype, shape });
        };
        if data.len() != expected {
            return Err(ArrayError::WrongLength { dtype, shape, expected, got: data.len() });
        }
        if dtype == Dtype::Bool {
            if let Some(index) = data.iter().position(|&b| b > 1) {
                return Err(ArrayError::BadBool { index, value: data[index] });
            }
        }
        Ok(RawArray { dtype, shape, data })
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The shape (one length per axis; empty for a 0-d array).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The elements' bytes: little-endian, row-major.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Number of elements (1 for a 0-d array).
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.item_size()
    }

    /// True when the array has no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Dtype, shape and bytes.
    pub fn into_parts(self) -> (Dtype, Vec<usize>, Bytes) {
        (self.dtype, self.shape, self.data)
    }

    /// The wire description of this array, its bytes travelling in buffer `buffer`.
    pub fn meta(&self, buffer: usize) -> ArrayMeta {
        ArrayMeta { dtype: self.dtype, shape: self.shape.clone(), buffer, fd: None, lent: None }
    }

    /// The array an [`ArrayMeta`] describes, its bytes taken from `buffers` (no copy).
    ///
    /// # Errors
    /// [`ArrayError::MissingBuffer`], or as [`new`](Self::new).
    pub fn from_meta(meta: &ArrayMeta, buffers: &[Bytes]) -> Result<RawArray, ArrayError> {
        let missing = || ArrayError::MissingBuffer { index: meta.buffer, count: buffers.len() };
        let data = buffers.get(meta.buffer).ok_or_else(missing)?.clone();
        RawArray::new(meta.dtype, meta.shape.clone(), data)
    }

    /// The array of a call's out-of-band return that `returned` describes, its bytes a slice
    /// of `buffers` (no copy).
    ///
    /// # Errors
    /// [`ArrayError::MissingBuffer`]; [`ArrayError::WrongLength`] when the buffer has too few
    /// bytes from the offset on; or as [`new`](Self::new).
    pub fn from_returned(returned: &ReturnedArray, buffers: &[Bytes]) -> Result<RawArray, ArrayError> {
        let ReturnedArray { dtype, shape, buffer, offset } = returned;
        let missing = || ArrayError::MissingBuffer { index: *buffer, count: buffers.len() };
        let data = buffers.get(*buffer).ok_or_else(missing)?;
        let Some(n) = byte_len(*dtype, shape) else {
            return Err(ArrayError::TooLarge { dtype: *dtype, shape: shape.clone() });
        };
        let available = data.len().saturating_sub(*offset);
        if available < n {
            return Err(ArrayError::WrongLength {
                dtype: *dtype,
                shape: shape.clone(),
                expected: n,
                got: available,
            });
        }
        // An empty array may sit at any offset, even past the buffer's end.
        let start = (*offset).min(data.len());
        RawArray::new(*dtype, shape.clone(), data.slice(start..start + n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_with_the_right_length_is_accepted() {
        for dtype in Dtype::ALL {
            let data = Bytes::from(vec![1u8; 6 * dtype.item_size()]);
            let a = RawArray::new(dtype, vec![2, 3], data.clone()).unwrap();
            assert_eq!((a.dtype(), a.shape(), a.len(), a.ndim()), (dtype, &[2, 3][..], 6, 2));
            assert_eq!(a.data(), &data);
            assert_eq!(a.meta(4), ArrayMeta { dtype, shape: vec![2, 3], buffer: 4, fd: None, lent: None });
            let (d, s, b) = a.into_parts();
            assert_eq!((d, s, b), (dtype, vec![2, 3], data));
        }
    }

    #[test]
    fn returned_arrays_are_slices_of_their_buffer() {
        let buffers = vec![Bytes::from_static(b"p"), Bytes::from(vec![1u8, 0, 0, 0, 2, 0, 0, 0, 9])];
        let at = |offset, shape: &[usize]| ReturnedArray {
            dtype: Dtype::I32,
            shape: shape.to_vec(),
            buffer: 1,
            offset,
        };
        let a = RawArray::from_returned(&at(4, &[1]), &buffers).unwrap();
        assert_eq!(a.data().as_ptr(), buffers[1][4..].as_ptr(), "no copy");
        assert_eq!(&a.data()[..], &[2, 0, 0, 0]);
        assert_eq!(RawArray::from_returned(&at(0, &[2]), &buffers).unwrap().len(), 2);
        let short = RawArray::from_returned(&at(8, &[1]), &buffers).unwrap_err();
        assert_eq!(short, ArrayError::WrongLength { dtype: Dtype::I32, shape: vec![1], expected: 4, got: 1 });
        assert!(matches!(
            RawArray::from_returned(&at(99, &[0]), &buffers),
            Ok(a) if a.is_empty()
        ));
        let missing = ReturnedArray { buffer: 2, ..at(0, &[1]) };
        assert_eq!(
            RawArray::from_returned(&missing, &buffers).unwrap_err(),
            ArrayError::MissingBuffer { index: 2, count: 2 }
        );
    }

    #[test]
    fn zero_d_and_empty_arrays() {
        let scalar = RawArray::new(Dtype::C128, vec![], Bytes::from(vec![0u8; 16])).unwrap();
        assert_eq!((scalar.len(), scalar.ndim(), scalar.is_empty()), (1, 0, false));
        let empty = RawArray::new(Dtype::U16, vec![4, 0, 2], Bytes::new()).unwrap();
        assert_eq!((empty.len(), empty.is_empty()), (0, true));
    }

    #[test]
    fn wrong_lengths_are_refused_with_both_sizes() {
        let e = RawArray::new(Dtype::C64, vec![3], Bytes::from(vec![0u8; 23])).unwrap_err();
        assert_eq!(e, ArrayError::WrongLength { dtype: Dtype::C64, shape: vec![3], expected: 24, got: 23 });
        assert_eq!(e.to_string(), "23 bytes do not hold a c64 array of shape [3] (24 bytes)");
    }

    #[test]
    fn overflowing_shapes_are_refused_before_anything_else() {
        let e = RawArray::new(Dtype::U8, vec![usize::MAX, 2], Bytes::new()).unwrap_err();
        assert!(matches!(e, ArrayError::TooLarge { .. }), "{e}");
        // The element count fits but the byte count does not.
        let e = RawArray::new(Dtype::C128, vec![usize::MAX / 8], Bytes::new()).unwrap_err();
        assert!(e.to_string().contains("too large"), "{e}");
        assert_eq!(byte_len(Dtype::F64, &[usize::MAX / 4, 0]), Some(0));
    }

    #[test]
    fn bool_bytes_must_be_zero_or_one() {
        assert!(RawArray::new(Dtype::Bool, vec![3], Bytes::from_static(&[0, 1, 1])).is_ok());
        let e = RawArray::new(Dtype::Bool, vec![3], Bytes::from_static(&[0, 1, 2])).unwrap_err();
        assert_eq!(e, ArrayError::BadBool { index: 2, value: 2 });
        // The same bytes are fine as u8.
        assert!(RawArray::new(Dtype::U8, vec![3], Bytes::from_static(&[0, 1, 2])).is_ok());
    }

    #[test]
    fn from_meta_takes_the_named_buffer() {
        let buffers = [Bytes::from_static(&[9]), Bytes::from(vec![0u8; 8])];
        let meta = ArrayMeta { dtype: Dtype::I16, shape: vec![2, 2], buffer: 1, fd: None, lent: None };
        let a = RawArray::from_meta(&meta, &buffers).unwrap();
        assert_eq!(a.len(), 4);
        let e = RawArray::from_meta(&ArrayMeta { buffer: 2, ..meta.clone() }, &buffers).unwrap_err();
        assert_eq!(e, ArrayError::MissingBuffer { index: 2, count: 2 });
        let e = RawArray::from_meta(&ArrayMeta { buffer: 0, ..meta }, &buffers).unwrap_err();
        assert!(matches!(e, ArrayError::WrongLength { expected: 8, got: 1, .. }), "{e}");
    }
}
