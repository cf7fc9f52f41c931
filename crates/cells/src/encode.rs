//! A small explicit binary encoding of cell values, used by `bcast`/`allgather`/`send`/`recv`.
//!
//! Every value starts with a tag byte; all numbers are little-endian:
//!
//! | tag | value | body |
//! |-----|-------|------|
//! | 0 | unit | — |
//! | 1 | bool | 1 byte (0 or 1) |
//! | 2 | int | i64 |
//! | 3 | float | f64 |
//! | 4 | string | u64 byte length, UTF-8 bytes |
//! | 5 | char | u32 code point |
//! | 6 | ndarray | dtype code (u8, order of [`DType::ALL`]), ndim (u32), ndim × u64 dims, raw elements in row-major order |
//! | 7 | array | u64 count, values |
//! | 8 | map | u64 count, (u64 key length, UTF-8 key, value) × count |
//!
//! Decoding never panics on malformed input: it checks lengths before allocating and caps nesting.

use rhai::{Array, Dynamic, ImmutableString, Map};

use crate::{
    array::{with_array, ArrayValue, DType, Elem},
    error::CellError,
    ops::{from_shape_vec, shape_len},
};

const UNIT: u8 = 0;
const BOOL: u8 = 1;
const INT: u8 = 2;
const FLOAT: u8 = 3;
const STRING: u8 = 4;
const CHAR: u8 = 5;
const NDARRAY: u8 = 6;
const LIST: u8 = 7;
const MAP: u8 = 8;

/// Deepest nesting of arrays/maps accepted by [`decode`] (and produced by [`encode`]).
pub const MAX_DEPTH: usize = 64;

fn enc_err(msg: impl Into<String>) -> CellError {
    CellError::new("EncodeError", msg)
}

fn dec_err(msg: impl Into<String>) -> CellError {
    CellError::new("DecodeError", msg)
}

/// Encodes a value: unit, bool, int, float, string, char, ndarray, or arrays/maps of those.
pub fn encode(value: &Dynamic) -> Result<Vec<u8>, CellError> {
    let mut out = Vec::new();
    encode_into(value, &mut out, 0)?;
    Ok(out)
}

fn put_u64(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Appends the tagged encoding of an array.
pub fn encode_array(a: &ArrayValue, out: &mut Vec<u8>) {
    let dtype = a.dtype();
    out.push(NDARRAY);
    out.push(DType::ALL.iter().position(|&d| d == dtype).unwrap_or(0) as u8);
    out.extend_from_slice(&(a.ndim() as u32).to_le_bytes());
    for &d in a.shape() {
        put_u64(out, d);
    }
    out.reserve(a.len() * dtype.item_size());
    with_array!(a, x => x.iter().for_each(|v| v.write_le(out)));
}

fn encode_into(v: &Dynamic, out: &mut Vec<u8>, depth: usize) -> Result<(), CellError> {
    if depth > MAX_DEPTH {
        return Err(enc_err("value is nested too deeply"));
    }
    if v.is_unit() {
        out.push(UNIT);
    } else if let Ok(b) = v.as_bool() {
        out.extend_from_slice(&[BOOL, u8::from(b)]);
    } else if let Ok(n) = v.as_int() {
        out.push(INT);
        out.extend_from_slice(&n.to_le_bytes());
    } else if let Ok(x) = v.as_float() {
        out.push(FLOAT);
        out.extend_from_slice(&x.to_le_bytes());
    } else if let Ok(c) = v.as_char() {
        out.push(CHAR);
        out.extend_from_slice(&u32::from(c).to_le_bytes());
    } else if let Some(s) = v.read_lock::<ImmutableString>() {
        out.push(STRING);
        put_str(out, &s);
    } else if let Some(a) = v.read_lock::<ArrayValue>() {
        encode_array(&a, out);
    } else if let Some(list) = v.read_lock::<Array>() {
        out.push(LIST);
        put_u64(out, list.len());
        for item in list.iter() {
            encode_into(item, out, depth + 1)?;
        }
    } else if let Some(map) = v.read_lock::<Map>() {
        out.push(MAP);
        put_u64(out, map.len());
        for (k, item) in map.iter() {
            put_str(out, k);
            encode_into(item, out, depth + 1)?;
        }
    } else {
        return Err(enc_err(format!("cannot send a value of type {}", v.type_name())));
    }
    Ok(())
}

/// Decodes bytes produced by [`encode`]; trailing bytes are an error.
pub fn decode(bytes: &[u8]) -> Result<Dynamic, CellError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let v = r.value(0)?;
    if r.pos != bytes.len() {
        return Err(dec_err(format!("{} trailing bytes", bytes.len() - r.pos)));
    }
    Ok(v)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CellError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| dec_err("truncated message"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, CellError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, CellError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, CellError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    /// A length or count, checked against the bytes left (each item needs at least `min` bytes).
    fn count(&mut self, min: usize) -> Result<usize, CellError> {
        let n = usize::try_from(self.u64()?).map_err(|_| dec_err("length overflows"))?;
        let left = self.buf.len() - self.pos;
        match n.checked_mul(min) {
            Some(need) if need <= left => Ok(n),
            _ => Err(dec_err("length exceeds message")),
        }
    }

    fn string(&mut self) -> Result<String, CellError> {
        let n = self.count(1)?;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| dec_err("invalid UTF-8"))
    }

    fn value(&mut self, depth: usize) -> Result<Dynamic, CellError> {
        if depth > MAX_DEPTH {
            return Err(dec_err("value is nested too deeply"));
        }
        Ok(match self.u8()? {
            UNIT => Dynamic::UNIT,
            BOOL => Dynamic::from_bool(self.u8()? != 0),
            INT => Dynamic::from_int(self.u64()? as i64),
            FLOAT => Dynamic::from_float(f64::from_bits(self.u64()?)),
            CHAR => {
                let c = char::from_u32(self.u32()?).ok_or_else(|| dec_err("invalid char"))?;
                Dynamic::from_char(c)
            }
            STRING => Dynamic::from(self.string()?),
            NDARRAY => Dynamic::from(self.ndarray()?),
            LIST => {
                let n = self.count(1)?;
                let mut list = Array::with_capacity(n);
                for _ in 0..n {
                    list.push(self.value(depth + 1)?);
                }
                Dynamic::from_array(list)
            }
            MAP => {
                let n = self.count(9)?;
                let mut map = Map::new();
                for _ in 0..n {
                    let k = self.string()?;
                    map.insert(k.into(), self.value(depth + 1)?);
                }
                Dynamic::from_map(map)
            }
            t => return Err(dec_err(format!("unknown tag {t}"))),
        })
    }

    fn ndarray(&mut self) -> Result<ArrayValue, CellError> {
        let code = usize::from(self.u8()?);
        let dtype = *DType::ALL.get(code).ok_or_else(|| dec_err(format!("unknown dtype code {code}")))?;
        let ndim = self.u32()? as usize;
        if ndim > 64 {
            return Err(dec_err("too many dimensions"));
        }
        let mut shape = Vec::with_capacity(ndim);
        for _ in 0..ndim {
            shape.push(usize::try_from(self.u64()?).map_err(|_| dec_err("dim overflows"))?);
        }
        let n = shape_len(&shape).map_err(|e| dec_err(e.evalue))?;
        let bytes_len = n.checked_mul(dtype.item_size()).ok_or_else(|| dec_err("array too large"))?;
        let raw = self.take(bytes_len)?;
        match dtype {
            DType::F64 => read_elems::<f64>(&shape, raw),
            DType::F32 => read_elems::<f32>(&shape, raw),
            DType::I64 => read_elems::<i64>(&shape, raw),
            DType::I32 => read_elems::<i32>(&shape, raw),
            DType::U8 => read_elems::<u8>(&shape, raw),
            DType::Bool => read_elems::<bool>(&shape, raw),
            DType::I8 | DType::I16 | DType::U16 | DType::U32 | DType::U64 | DType::C64 | DType::C128 => {
                return Err(crate::array::unsupported(dtype));
            }
        }
        .map_err(|e| dec_err(e.evalue))
    }
}

fn read_elems<T: Elem>(shape: &[usize], raw: &[u8]) -> Result<ArrayValue, CellError> {
    let v: Vec<T> = raw.chunks_exact(T::DTYPE.item_size()).map(T::read_le).collect();
    from_shape_vec(shape, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(v: Dynamic) -> Dynamic {
        decode(&encode(&v).expect("encode")).expect("decode")
    }

    #[test]
    fn scalars_roundtrip() {
        assert_eq!(roundtrip(Dynamic::from_int(-7)).as_int(), Ok(-7));
        assert_eq!(roundtrip(Dynamic::from_float(2.5)).as_float(), Ok(2.5));
        assert_eq!(roundtrip(Dynamic::from_bool(true)).as_bool(), Ok(true));
        assert_eq!(roundtrip(Dynamic::from_char('é')).as_char(), Ok('é'));
        assert!(roundtrip(Dynamic::UNIT).is_unit());
        let s = roundtrip(Dynamic::from("héllo".to_string()));
        assert_eq!(s.into_string().as_deref(), Ok("héllo"));
    }

    #[test]
    fn nested_roundtrip() {
        let a = ArrayValue::I32(std::sync::Arc::new(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2, 2]), vec![1, -2, 3, 4]).expect("shape"),
        ));
        let mut map = Map::new();
        map.insert("k".into(), Dynamic::from(a.clone()));
        let v = Dynamic::from_array(vec![Dynamic::from_int(1), Dynamic::from_map(map)]);
        let back = roundtrip(v).into_array().expect("array");
        assert_eq!(back[0].as_int(), Ok(1));
        let m = back[1].read_lock::<Map>().expect("map").clone();
        let b = m["k"].clone().cast::<ArrayValue>();
        assert_eq!(b.shape(), &[2, 2]);
        assert_eq!(b.to_vec_f64(), vec![1.0, -2.0, 3.0, 4.0]);
        assert_eq!(b.dtype(), DType::I32);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let good = encode(&Dynamic::from(ArrayValue::from_vec_f64(vec![1.0, 2.0]))).expect("enc");
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(decode(&extra).is_err());
        // A huge claimed length must not allocate.
        let mut huge = vec![LIST];
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
        let deep = [LIST, 1, 0, 0, 0, 0, 0, 0, 0].repeat(MAX_DEPTH + 5);
        assert!(decode(&deep).is_err());
        assert!(decode(&[99]).is_err());
    }

    #[test]
    fn wire_dtypes_the_kernel_cannot_hold_decode_to_a_type_error() {
        // An u8 array of 2 elements: tag, dtype code, ndim, dims, 2 bytes. As c64 (code 11)
        // the same header needs 16 bytes.
        let mut bytes = encode(&Dynamic::from(ArrayValue::from(
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2]), vec![1u8, 2]).expect("shape"),
        )))
        .expect("enc");
        bytes[1] = DType::C64.code();
        bytes.truncate(bytes.len() - 2);
        bytes.extend_from_slice(&[0; 16]);
        let e = decode(&bytes).unwrap_err();
        assert_eq!(e.ename, "TypeError", "{e}");
        assert!(e.evalue.contains("complex64"), "{e}");
        assert!(decode(&[bytes[0], 13]).is_err());
    }
}
