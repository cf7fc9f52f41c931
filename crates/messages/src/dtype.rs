//! [`Dtype`]: the element type of an array, on the wire and in the kernels (numpy's numeric
//! dtypes, little-endian, numpy's memory layout).

use serde::{Deserialize, Serialize};

/// Element type of an array: on the wire (header of an array buffer) and in the kernels.
///
/// Every element is stored little-endian; a complex number is two floats (real, imaginary),
/// as numpy lays them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 64-bit float (numpy `float64`).
    F64,
    /// 32-bit float (numpy `float32`).
    F32,
    /// 64-bit signed integer (numpy `int64`).
    I64,
    /// 32-bit signed integer (numpy `int32`).
    I32,
    /// Unsigned byte (numpy `uint8`).
    U8,
    /// Boolean, one byte (0 or 1).
    Bool,
    /// 8-bit signed integer (numpy `int8`).
    I8,
    /// 16-bit signed integer (numpy `int16`).
    I16,
    /// 16-bit unsigned integer (numpy `uint16`).
    U16,
    /// 32-bit unsigned integer (numpy `uint32`).
    U32,
    /// 64-bit unsigned integer (numpy `uint64`).
    U64,
    /// Complex of two 32-bit floats (numpy `complex64`).
    C64,
    /// Complex of two 64-bit floats (numpy `complex128`).
    C128,
}

impl Dtype {
    /// Every dtype, in the order of their one-byte codes (a dtype's code is its index here;
    /// the first six codes predate the others and never change).
    pub const ALL: [Dtype; 13] = [
        Dtype::F64,
        Dtype::F32,
        Dtype::I64,
        Dtype::I32,
        Dtype::U8,
        Dtype::Bool,
        Dtype::I8,
        Dtype::I16,
        Dtype::U16,
        Dtype::U32,
        Dtype::U64,
        Dtype::C64,
        Dtype::C128,
    ];

    /// The dtype's short name: `f64`, `f32`, `i64`, `i32`, `u8`, `bool`, `i8`, `i16`, `u16`,
    /// `u32`, `u64`, `c64` or `c128` (also its serde name).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "f64",
            Dtype::F32 => "f32",
            Dtype::I64 => "i64",
            Dtype::I32 => "i32",
            Dtype::U8 => "u8",
            Dtype::Bool => "bool",
            Dtype::I8 => "i8",
            Dtype::I16 => "i16",
            Dtype::U16 => "u16",
            Dtype::U32 => "u32",
            Dtype::U64 => "u64",
            Dtype::C64 => "c64",
            Dtype::C128 => "c128",
        }
    }

    /// The dtype's numpy name: `float64`, `int32`, `complex128`, ...
    pub fn numpy_name(self) -> &'static str {
        match self {
            Dtype::F64 => "float64",
            Dtype::F32 => "float32",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
            Dtype::C64 => "complex64",
            Dtype::C128 => "complex128",
        }
    }

    /// numpy's array-protocol type string (little-endian): `<f8`, `<f4`, `<i8`, `<i4`, `|u1`,
    /// `|b1`, `|i1`, `<i2`, `<u2`, `<u4`, `<u8`, `<c8` or `<c16` (the `descr` of a `.npy` file).
    pub fn numpy_str(self) -> &'static str {
        match self {
            Dtype::F64 => "<f8",
            Dtype::F32 => "<f4",
            Dtype::I64 => "<i8",
            Dtype::I32 => "<i4",
            Dtype::U8 => "|u1",
            Dtype::Bool => "|b1",
            Dtype::I8 => "|i1",
            Dtype::I16 => "<i2",
            Dtype::U16 => "<u2",
            Dtype::U32 => "<u4",
            Dtype::U64 => "<u8",
            Dtype::C64 => "<c8",
            Dtype::C128 => "<c16",
        }
    }

    /// Parses a dtype name, case-insensitively: the short names (`f64`, `c128`, ...), numpy's
    /// names (`float64`, `uint16`, `complex64`, ... and `float`, `int`, `double`, `byte`,
    /// `complex`), and numpy's little-endian or byte-order-free array-protocol strings (`<f8`,
    /// `|b1`, `<c16`, `|i1`, `=i4`, `f8`, ...). Big-endian strings (`>f8`) are not parsed.
    ///
    /// The short names win over byte-order-free protocol strings: `u8` is [`Dtype::U8`] and
    /// `i8` is [`Dtype::I8`] (numpy reads those as 8-byte types; write `<u8` or `uint64`).
    pub fn parse(name: &str) -> Option<Dtype> {
        let lower = name.to_ascii_lowercase();
        if let Some(d) = Dtype::ALL.iter().find(|d| d.numpy_str() == name) {
            return Some(*d);
        }
        Some(match lower.as_str() {
            "f64" | "float64" | "float" | "double" => Dtype::F64,
            "f32" | "float32" | "single" => Dtype::F32,
            "i64" | "int64" | "int" => Dtype::I64,
            "i32" | "int32" => Dtype::I32,
            "u8" | "uint8" | "byte" | "ubyte" => Dtype::U8,
            "bool" | "bool_" => Dtype::Bool,
            "i8" | "int8" => Dtype::I8,
            "i16" | "int16" | "short" => Dtype::I16,
            "u16" | "uint16" | "ushort" => Dtype::U16,
            "u32" | "uint32" => Dtype::U32,
            "u64" | "uint64" => Dtype::U64,
            "c64" | "complex64" | "csingle" => Dtype::C64,
            "c128" | "complex128" | "complex" | "cdouble" => Dtype::C128,
            _ => return Dtype::parse_protocol(name),
        })
    }

    /// An array-protocol string without the `<`/`|` of [`numpy_str`](Self::numpy_str):
    /// `=` (native, little-endian here) or no byte-order character at all, then kind and size.
    fn parse_protocol(s: &str) -> Option<Dtype> {
        let body = s.strip_prefix('=').or_else(|| s.strip_prefix('<')).or_else(|| s.strip_prefix('|'));
        let body = body.unwrap_or(s);
        Dtype::ALL.iter().copied().find(|d| &d.numpy_str()[1..] == body)
    }

    /// Bytes per element (bool is one byte, a complex is two floats).
    pub fn item_size(self) -> usize {
        match self {
            Dtype::U8 | Dtype::Bool | Dtype::I8 => 1,
            Dtype::I16 | Dtype::U16 => 2,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 | Dtype::C64 => 8,
            Dtype::C128 => 16,
        }
    }

    /// True for the integer and bool dtypes (not the float or complex ones).
    pub fn is_integral(self) -> bool {
        !matches!(self, Dtype::F64 | Dtype::F32 | Dtype::C64 | Dtype::C128)
    }

    /// True for the complex dtypes.
    pub fn is_complex(self) -> bool {
        matches!(self, Dtype::C64 | Dtype::C128)
    }

    /// The dtype's one-byte code (its index in [`ALL`](Self::ALL)).
    pub fn code(self) -> u8 {
        Dtype::ALL.iter().position(|&d| d == self).unwrap_or(0) as u8
    }

    /// The dtype of a one-byte code, if any.
    pub fn from_code(code: u8) -> Option<Dtype> {
        Dtype::ALL.get(usize::from(code)).copied()
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_six_codes_are_unchanged() {
        let old = [Dtype::F64, Dtype::F32, Dtype::I64, Dtype::I32, Dtype::U8, Dtype::Bool];
        assert_eq!(&Dtype::ALL[..6], &old);
        for (i, d) in Dtype::ALL.iter().enumerate() {
            assert_eq!(usize::from(d.code()), i);
            assert_eq!(Dtype::from_code(d.code()), Some(*d));
        }
        assert_eq!(Dtype::from_code(13), None);
    }

    #[test]
    fn names_and_numpy_strings_parse_back() {
        for d in Dtype::ALL {
            assert_eq!(Dtype::parse(d.name()), Some(d), "{d}");
            assert_eq!(Dtype::parse(d.numpy_name()), Some(d), "{d}");
            assert_eq!(Dtype::parse(d.numpy_str()), Some(d), "{d}");
            assert_eq!(Dtype::parse(&d.name().to_uppercase()), Some(d), "{d}");
            // The size in the protocol string is the item size.
            let size: usize = d.numpy_str()[2..].parse().unwrap();
            assert_eq!(size, d.item_size(), "{d}");
            // serde uses the short name.
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{}\"", d.name()));
            assert_eq!(serde_json::from_str::<Dtype>(&format!("\"{}\"", d.name())).unwrap(), d);
        }
        assert_eq!(Dtype::parse("<c16"), Some(Dtype::C128));
        assert_eq!(Dtype::parse("|b1"), Some(Dtype::Bool));
        assert_eq!(Dtype::parse("|i1"), Some(Dtype::I8));
        assert_eq!(Dtype::parse("=i4"), Some(Dtype::I32));
        assert_eq!(Dtype::parse("f8"), Some(Dtype::F64));
        assert_eq!(Dtype::parse(">f8"), None);
        assert_eq!(Dtype::parse("<f2"), None);
        assert_eq!(Dtype::parse("float16"), None);
    }

    #[test]
    fn sizes_and_kinds() {
        let sizes: Vec<usize> = Dtype::ALL.iter().map(|d| d.item_size()).collect();
        assert_eq!(sizes, [8, 4, 8, 4, 1, 1, 1, 2, 2, 4, 8, 8, 16]);
        // Every dtype but the floating and complex ones is integral.
        let other: Vec<Dtype> = Dtype::ALL.into_iter().filter(|d| !d.is_integral()).collect();
        assert_eq!(other, [Dtype::F64, Dtype::F32, Dtype::C64, Dtype::C128]);
        assert!(Dtype::C64.is_complex() && !Dtype::F64.is_complex());
    }
}
