//! The header of an `.npy` file: a Python dict literal such as
//! `{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }`, parsed and written here.

use mpx_messages::Dtype;

use crate::error::NpyError;

/// The magic string that starts every `.npy` file.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// What an `.npy` header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Element type.
    pub dtype: Dtype,
    /// Whether the data is in column-major (Fortran) order.
    pub fortran_order: bool,
    /// Shape.
    pub shape: Vec<usize>,
}

/// The dtype of a `descr` string, or why it is not one mpx carries.
fn dtype_of(descr: &str) -> Result<Dtype, NpyError> {
    let unsupported = || NpyError::Unsupported { descr: descr.to_string() };
    let (order, body) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let dtype = Dtype::ALL.iter().copied().find(|d| &d.numpy_str()[1..] == body).ok_or_else(unsupported)?;
    if order == '>' && dtype.item_size() > 1 {
        return Err(NpyError::BigEndian { descr: descr.to_string() });
    }
    Ok(dtype)
}

/// A value of the header dict.
#[derive(Debug)]
enum Value {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

impl Value {
    /// The value as the header writes it (Python syntax).
    fn python(&self) -> String {
        match self {
            Value::Str(s) => format!("'{s}'"),
            Value::Bool(b) => if *b { "True" } else { "False" }.into(),
            Value::Tuple(dims) => match dims.as_slice() {
                [d] => format!("({d},)"),
                _ => format!("({})", dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
            },
        }
    }
}

/// A cursor over the header text.
struct Parser<'a> {
    s: &'a str,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        self.s = self.s.trim_start();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        match self.s.strip_prefix(c) {
            Some(rest) => {
                self.s = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), NpyError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(bad(format!("expected {c:?} at {:?}", self.s.chars().take(20).collect::<String>())))
        }
    }

    fn string(&mut self) -> Result<String, NpyError> {
        self.skip_ws();
        let quote = self.s.chars().next().filter(|c| *c == '\'' || *c == '"');
        let quote = quote.ok_or_else(|| bad(format!("expected a string at {:?}", self.s)))?;
        let rest = &self.s[1..];
        let end = rest.find(quote).ok_or_else(|| bad("unterminated string".into()))?;
        self.s = &rest[end + 1..];
        Ok(rest[..end].to_string())
    }

    fn value(&mut self) -> Result<Value, NpyError> {
        self.skip_ws();
        if self.s.starts_with(['\'', '"']) {
            return self.string().map(Value::Str);
        }
        for (word, b) in [("True", true), ("False", false)] {
            if let Some(rest) = self.s.strip_prefix(word) {
                self.s = rest;
                return Ok(Value::Bool(b));
            }
        }
        if self.eat('(') {
            let mut dims = Vec::new();
            while !self.eat(')') {
                self.skip_ws();
                let digits = self.s.find(|c: char| !c.is_ascii_digit()).unwrap_or(self.s.len());
                let (num, rest) = self.s.split_at(digits);
                // Python 2 numpy wrote longs as `3L`.
                self.s = rest.strip_prefix('L').unwrap_or(rest);
                let dim =
                    num.parse::<usize>().map_err(|_| bad(format!("bad dimension at {:?}", num_ctx(rest))))?;
                dims.push(dim);
                if !self.eat(',') {
                    self.expect(')')?;
                    break;
                }
            }
            return Ok(Value::Tuple(dims));
        }
        if self.s.starts_with('[') {
            return Err(NpyError::Unsupported { descr: "a structured dtype (a list of fields)".into() });
        }
        Err(bad(format!("unexpected value at {:?}", num_ctx(self.s))))
    }
}

fn num_ctx(s: &str) -> String {
    s.chars().take(20).collect()
}

fn bad(why: String) -> NpyError {
    NpyError::Header(why)
}

/// Parses the header dict.
///
/// # Errors
/// [`NpyError::Header`] for a malformed dict or missing key, [`NpyError::Unsupported`] or
/// [`NpyError::BigEndian`] for a dtype mpx does not carry.
pub fn parse(text: &str) -> Result<Header, NpyError> {
    let mut p = Parser { s: text };
    p.expect('{')?;
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    while !p.eat('}') {
        let key = p.string()?;
        p.expect(':')?;
        let value = p.value()?;
        match (key.as_str(), value) {
            ("descr", Value::Str(s)) => descr = Some(s),
            ("fortran_order", Value::Bool(b)) => fortran_order = Some(b),
            ("shape", Value::Tuple(t)) => shape = Some(t),
            ("descr" | "fortran_order" | "shape", v) => {
                return Err(bad(format!("bad value {} for '{key}'", v.python())))
            }
            _ => {}
        }
        if !p.eat(',') {
            p.expect('}')?;
            break;
        }
    }
    if !p.s.trim().is_empty() {
        return Err(bad(format!("text after the dict: {:?}", num_ctx(p.s.trim()))));
    }
    let missing = |k: &str| bad(format!("no {k:?} key"));
    Ok(Header {
        dtype: dtype_of(&descr.ok_or_else(|| missing("descr"))?)?,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
    })
}

/// The complete preamble of a C-order `.npy` file (magic, version, header length, header
/// padded with spaces and a newline so that the data starts at a multiple of 64), as numpy
/// writes it: version 1.0, or 2.0 when the header does not fit in 65535 bytes.
pub fn format(dtype: Dtype, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {dims}, }}", dtype.numpy_str());
    for (version, len_bytes) in [(1u8, 2usize), (2, 4)] {
        let prefix = MAGIC.len() + 2 + len_bytes;
        let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
        let header_len = total - prefix;
        if version == 1 && header_len > usize::from(u16::MAX) {
            continue;
        }
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(header_len as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(header_len as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out.resize(total - 1, b' ');
        out.push(b'\n');
        return out;
    }
    unreachable!("a version 2.0 header holds 4 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_headers_parse() {
        let h = parse("{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }   \n").unwrap();
        assert_eq!(h, Header { dtype: Dtype::C128, fortran_order: false, shape: vec![3] });
        let h = parse("{\"shape\": (2, 0, 4L), \"fortran_order\": True, \"descr\": \"|b1\"}").unwrap();
        assert_eq!(h, Header { dtype: Dtype::Bool, fortran_order: true, shape: vec![2, 0, 4] });
        let h = parse("{'descr': '|u1', 'fortran_order': False, 'shape': (), }").unwrap();
        assert_eq!(h.shape, Vec::<usize>::new());
        assert_eq!(parse("{'descr': '>u1', 'fortran_order': False, 'shape': ()}").unwrap().dtype, Dtype::U8);
    }

    #[test]
    fn bad_headers_name_the_problem() {
        let e = parse("{'descr': '>f8', 'fortran_order': False, 'shape': (3,), }").unwrap_err();
        assert!(matches!(&e, NpyError::BigEndian { descr } if descr == ">f8"), "{e}");
        let e = parse("{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }").unwrap_err();
        assert!(e.to_string().contains("'<f2'"), "{e}");
        let e = parse("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (3,), }").unwrap_err();
        assert!(e.to_string().contains("structured"), "{e}");
        assert!(parse("{'descr': '<f8', 'shape': (3,), }")
            .unwrap_err()
            .to_string()
            .contains("fortran_order"));
        assert!(parse("{'descr': '<f8', 'fortran_order': False, 'shape': (-3,), }").is_err());
        assert!(
            parse("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999,)}").is_err()
        );
        assert!(parse("{'descr': '<f8', 'fortran_order': False, 'shape': (3,)").is_err());
        assert!(parse("").is_err());
        // The wrong value is shown as the header has it, not as Rust's Debug.
        let e = parse("{'descr': '<c16', 'fortran_order': False, 'shape': '<c16', }").unwrap_err();
        assert!(e.to_string().contains("bad value '<c16' for 'shape'"), "{e}");
    }

    #[test]
    fn formatted_headers_are_aligned_and_parse_back() {
        for shape in [vec![], vec![3], vec![2, 0, 5]] {
            let pre = format(Dtype::I16, &shape);
            assert_eq!(pre.len() % 64, 0);
            assert_eq!(&pre[..8], b"\x93NUMPY\x01\x00");
            assert_eq!(usize::from(u16::from_le_bytes([pre[8], pre[9]])), pre.len() - 10);
            assert_eq!(pre.last(), Some(&b'\n'));
            let h = parse(std::str::from_utf8(&pre[10..]).unwrap()).unwrap();
            assert_eq!(h, Header { dtype: Dtype::I16, fortran_order: false, shape });
        }
        let text = String::from_utf8_lossy(&format(Dtype::C128, &[3])).into_owned();
        assert!(text.contains("{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }"), "{text}");
    }
}
