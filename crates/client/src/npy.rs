//! `.npy` files in and out (numpy's format, through ndarray-npy), for the CLI's data commands.

use std::{fs::File, io::BufWriter, path::Path};

use mpx_cells::ArrayValue;
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt, WriteNpyExt};

use crate::ClientError;

/// Reads an `.npy` file of f64, f32, i64, i32, u8 or bool.
///
/// # Errors
/// [`ClientError::NotFound`] for a missing/unreadable file, or one of another dtype (named).
pub fn read(path: &Path) -> Result<ArrayValue, ClientError> {
    let open = || File::open(path).map_err(|e| ClientError::NotFound(format!("{}: {e}", path.display())));
    macro_rules! attempt {
        ($t:ty) => {
            match ArrayD::<$t>::read_npy(open()?) {
                Ok(a) => return Ok(ArrayValue::from(a)),
                Err(ReadNpyError::WrongDescriptor(_)) => {}
                Err(e) => return Err(ClientError::NotFound(format!("{}: {e}", path.display()))),
            }
        };
    }
    attempt!(f64);
    attempt!(f32);
    attempt!(i64);
    attempt!(i32);
    attempt!(u8);
    attempt!(bool);
    let descr = match ArrayD::<f64>::read_npy(open()?) {
        Err(ReadNpyError::WrongDescriptor(d)) => format!("{d:?}"),
        _ => "unknown".into(),
    };
    Err(ClientError::NotFound(format!(
        "{}: dtype {descr} is not supported (mpx arrays are f64, f32, i64, i32, u8 or bool)",
        path.display()
    )))
}

/// Writes an array as an `.npy` file.
///
/// # Errors
/// [`ClientError::NotFound`] if the file cannot be written.
pub fn write(path: &Path, a: &ArrayValue) -> Result<(), ClientError> {
    let bad = |e: String| ClientError::NotFound(format!("{}: {e}", path.display()));
    let file = BufWriter::new(File::create(path).map_err(|e| bad(e.to_string()))?);
    let r = match a {
        ArrayValue::F64(x) => x.write_npy(file),
        ArrayValue::F32(x) => x.write_npy(file),
        ArrayValue::I64(x) => x.write_npy(file),
        ArrayValue::I32(x) => x.write_npy(file),
        ArrayValue::U8(x) => x.write_npy(file),
        ArrayValue::Bool(x) => x.write_npy(file),
    };
    r.map_err(|e| bad(e.to_string()))
}

/// Where the array of engine `id` goes when several engines answer: `STEM.<id>.npy` next to `out`.
pub fn per_engine_path(out: &Path, id: u32) -> std::path::PathBuf {
    let stem = out.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    out.with_file_name(format!("{stem}.{id}.npy"))
}
