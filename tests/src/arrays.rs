//! Sample arrays for the data tests.

use bytes::Bytes;
use mpx_messages::{Dtype, RawArray};

/// A deterministic array of `dtype` and `shape` whose elements have distinct bit patterns
/// (for f64, every fifth element a NaN with a payload).
pub fn sample(dtype: Dtype, shape: &[usize], seed: u64) -> RawArray {
    let n: usize = shape.iter().product();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let item = dtype.item_size();
    let mut data = Vec::with_capacity(n * item);
    for i in 0..n {
        match dtype {
            Dtype::Bool => data.push(u8::from(next() % 3 == 0)),
            Dtype::F64 if i % 5 == 4 => {
                data.extend_from_slice(&(0x7FF8_0000_0000_1234 + i as u64).to_le_bytes())
            }
            _ => {
                let bits = [next().to_le_bytes(), next().to_le_bytes()].concat();
                data.extend_from_slice(&bits[..item]);
            }
        }
    }
    RawArray::new(dtype, shape.to_vec(), Bytes::from(data)).unwrap()
}

/// Rows `[from, to)` of an array, as its own array.
pub fn rows(a: &RawArray, from: usize, to: usize) -> RawArray {
    let row = a.shape()[1..].iter().product::<usize>() * a.dtype().item_size();
    let mut shape = a.shape().to_vec();
    shape[0] = to - from;
    RawArray::new(a.dtype(), shape, a.data().slice(from * row..to * row)).unwrap()
}

/// What an array is, for assertion messages.
pub fn describe(a: &RawArray) -> String {
    format!("{} {:?} ({} bytes)", a.dtype(), a.shape(), a.data().len())
}
