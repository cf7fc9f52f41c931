//! `.npy` files in and out (numpy's format, versions 1.0 to 3.0), for every dtype mpx
//! carries. An array's bytes are the file's data bytes as they are: reading checks the
//! header against the file's size before allocating anything, then reads the data once.

mod header;
#[cfg(test)]
mod tests;

use std::{
    fs::File,
    io::{Read, Write},
    path::Path,
};

use bytes::Bytes;
use mpx_messages::{array::byte_len, RawArray};

pub use crate::error::NpyError;
pub use header::{Header, MAGIC};

use crate::error::ClientError;

/// Longest header accepted (numpy's own limit for untrusted files is 10000 bytes).
const MAX_HEADER: usize = 1 << 20;

/// Reads the preamble (magic, version, header) from `r`; returns the header and the
/// preamble's length in bytes.
fn read_preamble(r: &mut impl Read, available: u64) -> Result<(Header, u64), NpyError> {
    let mut fixed = [0u8; 8];
    r.read_exact(&mut fixed).map_err(|_| NpyError::NotNpy)?;
    if &fixed[..6] != MAGIC {
        return Err(NpyError::NotNpy);
    }
    let len_bytes = match (fixed[6], fixed[7]) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        (major, minor) => return Err(NpyError::Version(major, minor)),
    };
    let mut len = [0u8; 4];
    r.read_exact(&mut len[..len_bytes]).map_err(|_| NpyError::Header("truncated header length".into()))?;
    let header_len = u32::from_le_bytes(len) as usize;
    let preamble = (8 + len_bytes + header_len) as u64;
    if header_len > MAX_HEADER || preamble > available {
        return Err(NpyError::Header(format!("header length {header_len} exceeds the file or {MAX_HEADER}")));
    }
    let mut text = vec![0u8; header_len];
    r.read_exact(&mut text)?;
    let text = std::str::from_utf8(&text).map_err(|_| NpyError::Header("the header is not text".into()))?;
    Ok((header::parse(text)?, preamble))
}

/// The number of data bytes `header` implies, checked against the `got` bytes present.
fn check_size(h: &Header, got: u64) -> Result<usize, NpyError> {
    let too_large = || NpyError::TooLarge { dtype: h.dtype, shape: h.shape.clone() };
    let expected = byte_len(h.dtype, &h.shape).ok_or_else(too_large)?;
    if expected as u64 != got {
        return Err(NpyError::WrongSize { dtype: h.dtype, shape: h.shape.clone(), expected, got });
    }
    Ok(expected)
}

/// The array of a header and its data bytes (Fortran-order data is reordered to C order).
fn assemble(h: Header, data: Bytes) -> Result<RawArray, NpyError> {
    let data = if h.fortran_order { fortran_to_c(&data, &h.shape, h.dtype.item_size()) } else { data };
    Ok(RawArray::new(h.dtype, h.shape, data)?)
}

/// Reorders column-major `data` of `shape` into row-major order.
fn fortran_to_c(data: &Bytes, shape: &[usize], item: usize) -> Bytes {
    // With at most one axis longer than 1 both orders are the same.
    if shape.iter().filter(|&&d| d > 1).count() <= 1 {
        return data.clone();
    }
    // Column-major strides, in elements.
    let mut strides = Vec::with_capacity(shape.len());
    let mut s = 1usize;
    for &d in shape {
        strides.push(s);
        s *= d;
    }
    let mut out = Vec::with_capacity(data.len());
    let mut index = vec![0usize; shape.len()];
    for _ in 0..data.len() / item {
        let at = index.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>() * item;
        out.extend_from_slice(&data[at..at + item]);
        // Advance the row-major index: last axis fastest.
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Bytes::from(out)
}

/// An array from the bytes of a whole `.npy` file (the data is not copied unless it is in
/// Fortran order).
///
/// # Errors
/// Any [`NpyError`] but `Io`.
pub fn from_bytes(file: Bytes) -> Result<RawArray, NpyError> {
    let mut reader = &file[..];
    let (h, preamble) = read_preamble(&mut reader, file.len() as u64)?;
    check_size(&h, file.len() as u64 - preamble)?;
    let data = file.slice(preamble as usize..);
    assemble(h, data)
}

/// The bytes of an `.npy` file holding `a` (version 1.0 header, C order).
pub fn to_bytes(a: &RawArray) -> Vec<u8> {
    let mut out = header::format(a.dtype(), a.shape());
    out.extend_from_slice(a.data());
    out
}

/// Reads an `.npy` file of any dtype mpx carries (see [`Dtype`](mpx_messages::Dtype)).
///
/// The header is checked against the file's size before the data is allocated: a header
/// claiming more elements than the file holds is an error, not an allocation.
///
/// # Errors
/// [`ClientError::NotFound`] for a missing or unreadable file; [`ClientError::Npy`] for a
/// malformed file or one of a dtype mpx does not carry (named).
pub fn read(path: &Path) -> Result<RawArray, ClientError> {
    let wrap = |cause: NpyError| ClientError::Npy { path: path.display().to_string(), cause };
    let mut file = File::open(path).map_err(|e| ClientError::NotFound(format!("{}: {e}", path.display())))?;
    let size = file.metadata().map_err(|e| wrap(e.into()))?.len();
    let (h, preamble) = read_preamble(&mut file, size).map_err(wrap)?;
    let len = check_size(&h, size - preamble).map_err(wrap)?;
    let mut data = vec![0u8; len];
    file.read_exact(&mut data).map_err(|e| wrap(e.into()))?;
    assemble(h, Bytes::from(data)).map_err(wrap)
}

/// Writes an array as an `.npy` file (version 1.0, C order), readable by `numpy.load`.
///
/// # Errors
/// [`ClientError::Npy`] if the file cannot be written.
pub fn write(path: &Path, a: &RawArray) -> Result<(), ClientError> {
    let wrap = |e: std::io::Error| ClientError::Npy { path: path.display().to_string(), cause: e.into() };
    let mut file = File::create(path).map_err(wrap)?;
    file.write_all(&header::format(a.dtype(), a.shape())).map_err(wrap)?;
    file.write_all(a.data()).map_err(wrap)?;
    file.flush().map_err(wrap)
}

/// Where the array of engine `id` goes when several engines answer: `STEM.<id>.npy` next to `out`.
pub fn per_engine_path(out: &Path, id: mpx_messages::EngineId) -> std::path::PathBuf {
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    out.with_file_name(format!("{stem}.{id}.npy"))
}
