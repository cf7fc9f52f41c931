//! Rendering of results as ipyparallel shows them.

use std::{collections::HashMap, fmt::Write};

use crate::{EngineId, EngineResult};

/// Renders results in engine order: `[stdout:R] line` per printed line, `Out[R]: value` for a
/// cell value, `[R:error] Name: message (line L)` for an error, followed by its traceback
/// (indented), if the kernel sent one.
pub fn render(results: &[EngineResult]) -> String {
    render_with(results, &HashMap::new())
}

/// Like [`render`], showing engines by `labels` (e.g. `1:3` for set 1 rank 3) where given.
pub fn render_with(results: &[EngineResult], labels: &HashMap<EngineId, String>) -> String {
    let mut out = String::new();
    for r in results {
        let id = labels.get(&r.engine_id).cloned().unwrap_or_else(|| r.engine_id.to_string());
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
            let at = e.line().map(|l| format!(" (line {l})")).unwrap_or_default();
            // As Python prints it: `KeyboardInterrupt`, not `KeyboardInterrupt: `, without a message.
            let evalue = e.evalue();
            let sep = if evalue.is_empty() { "" } else { ": " };
            let _ = writeln!(out, "[{id}:error] {}{sep}{evalue}{at}", e.ename());
            for line in e.traceback().lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    out
}

/// Whether any engine reported an error.
pub fn any_error(results: &[EngineResult]) -> bool {
    results.iter().any(|r| r.outcome.error.is_some())
}
