//! Rendering of results as ipyparallel shows them.

use std::fmt::Write;

use crate::EngineResult;

/// Renders results in engine order: `[stdout:R] line` per printed line, `Out[R]: value` for a
/// cell value, `[R:error] Name: message (line L)` for an error.
pub fn render(results: &[EngineResult]) -> String {
    let mut out = String::new();
    for r in results {
        let id = r.engine_id;
        for line in r.outcome.stdout.lines() {
            let _ = writeln!(out, "[stdout:{id}] {line}");
        }
        for line in r.outcome.stderr.lines() {
            let _ = writeln!(out, "[stderr:{id}] {line}");
        }
        if let Some(value) = &r.outcome.value {
            let _ = writeln!(out, "Out[{id}]: {value}");
        }
        if let Some(e) = &r.outcome.error {
            let at = e.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            let _ = writeln!(out, "[{id}:error] {}: {}{at}", e.ename, e.evalue);
        }
    }
    out
}

/// Whether any engine reported an error.
pub fn any_error(results: &[EngineResult]) -> bool {
    results.iter().any(|r| r.outcome.error.is_some())
}
