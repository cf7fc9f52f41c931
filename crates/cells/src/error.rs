//! `CellError` and its mapping from rhai's parse and evaluation errors.

use rhai::{Dynamic, EvalAltResult, ParseError, Position};

/// An error raised by a cell, shaped like ipyparallel's `{ename, evalue}` plus the cell line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ename}: {evalue}")]
pub struct CellError {
    /// Error class, e.g. "ParseError", "RuntimeError", "VariableNotFound", "IndexError".
    pub ename: String,
    /// Human-readable message.
    pub evalue: String,
    /// 1-based line in the cell where rhai reported the error, when known.
    pub line: Option<usize>,
}

impl CellError {
    /// A new error without a line.
    pub fn new(ename: impl Into<String>, evalue: impl Into<String>) -> Self {
        CellError { ename: ename.into(), evalue: evalue.into(), line: None }
    }

    /// Wraps this error so a native function can return it to rhai; [`from_eval`] unwraps it.
    pub fn into_rhai(self) -> Box<EvalAltResult> {
        Box::new(EvalAltResult::ErrorRuntime(Dynamic::from(self), Position::NONE))
    }
}

impl From<CellError> for Box<EvalAltResult> {
    fn from(e: CellError) -> Self {
        e.into_rhai()
    }
}

/// Shorthand for native functions: `Result<T, Box<EvalAltResult>>`.
pub type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Converts a `CellError` result into the form rhai native functions return.
pub fn rhai_ok<T>(r: Result<T, CellError>) -> RhaiResult<T> {
    r.map_err(CellError::into_rhai)
}

/// Maps a compile error.
pub fn from_parse(err: &ParseError) -> CellError {
    CellError { ename: "ParseError".into(), evalue: err.0.to_string(), line: err.1.line() }
}

/// Maps an evaluation error. Errors inside functions report the innermost error's class and
/// message, and the line of the outermost call site (which is in the running cell).
pub fn from_eval(err: EvalAltResult) -> CellError {
    use EvalAltResult as E;
    let line = err.position().line();
    let (ename, evalue): (&str, String) = match err {
        E::ErrorInFunctionCall(fname, _, inner, _) => {
            let mut e = from_eval(*inner);
            if !fname.starts_with("__mpx") {
                e.evalue = format!("{} (in function '{fname}')", e.evalue);
            }
            e.line = line.or(e.line);
            return e;
        }
        E::ErrorRuntime(d, _) if d.is::<CellError>() => {
            let mut e = d.cast::<CellError>();
            e.line = line;
            return e;
        }
        E::ErrorRuntime(d, _) => ("RuntimeError", d.to_string()),
        E::ErrorTerminated(..) => ("KeyboardInterrupt", "cell interrupted".into()),
        E::ErrorVariableNotFound(name, _) => {
            ("VariableNotFound", format!("variable '{name}' is not defined"))
        }
        E::ErrorFunctionNotFound(sig, _) => ("FunctionNotFound", format!("no function matches {sig}")),
        E::ErrorArrayBounds(len, idx, _) => {
            ("IndexError", format!("index {idx} is out of bounds for length {len}"))
        }
        E::ErrorStringBounds(len, idx, _) => {
            ("IndexError", format!("string index {idx} is out of bounds for length {len}"))
        }
        E::ErrorIndexNotFound(idx, _) => ("IndexError", format!("index {idx} not found")),
        E::ErrorParsing(p, _) => ("ParseError", p.to_string()),
        E::ErrorArithmetic(msg, _) => ("ArithmeticError", msg),
        E::ErrorStackOverflow(_) => ("RecursionError", "maximum call depth exceeded".into()),
        mut other => {
            let ename = match &other {
                E::ErrorMismatchDataType(..)
                | E::ErrorMismatchOutputType(..)
                | E::ErrorIndexingType(..)
                | E::ErrorFor(..) => "TypeError",
                E::ErrorDotExpr(..) | E::ErrorPropertyNotFound(..) => "AttributeError",
                E::ErrorAssignmentToConstant(..) | E::ErrorNonPureMethodCallOnConstant(..) => "ConstantError",
                E::ErrorTooManyOperations(..) | E::ErrorTooManyVariables(..) | E::ErrorDataTooLarge(..) => {
                    "LimitError"
                }
                _ => "RuntimeError",
            };
            let _ = other.take_position();
            (ename, other.to_string())
        }
    };
    CellError { ename: ename.into(), evalue, line }
}
