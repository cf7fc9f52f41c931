//! Rendering of results as ipyparallel shows them.

use std::{collections::HashMap, fmt::Write};

use mpx_messages::EngineId;

use crate::reply::EngineResult;

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

/// Error blocks shown in full when engines fail differently; the other engines' errors are
/// summed up in one line.
pub const ERROR_BLOCKS: usize = 3;

/// Engines failing after which a count line ends the errors (`7 of 16 engines failed`).
pub const COUNT_AFTER: usize = 3;

/// Renders results, collapsed unless `collapse` is false (then as [`render_with`]): identical
/// stdout, stderr, values and errors of several engines are shown once, labelled with their
/// engines (`[stdout:0-3] 193.87`, `Out[0,2]: 1`, `[0-3:error] ZeroDivisionError: ...`). Errors
/// are the same when they differ only in their cell numbers. At most [`ERROR_BLOCKS`] different
/// errors are shown in full, the rest in one line; when more than [`COUNT_AFTER`] engines fail,
/// a last line counts them.
pub fn render_opts(results: &[EngineResult], labels: &HashMap<EngineId, String>, collapse: bool) -> String {
    use crate::collapse::{group, who, write_lines};
    use mpx_messages::StreamName;
    if !collapse {
        return render_with(results, labels);
    }
    let mut out = String::new();
    let texts = |f: fn(&EngineResult) -> &str| {
        group(results.iter().filter(|r| !f(r).is_empty()).map(|r| (r.engine_id, f(r).to_string())))
    };
    for (ids, text) in texts(|r| &r.outcome.stdout) {
        write_lines(&mut out, StreamName::Stdout, &who(&ids, labels), &text);
    }
    for (ids, text) in texts(|r| &r.outcome.stderr) {
        write_lines(&mut out, StreamName::Stderr, &who(&ids, labels), &text);
    }
    let values = results.iter().filter_map(|r| Some((r.engine_id, r.outcome.value.clone()?)));
    for (ids, value) in group(values) {
        let _ = writeln!(out, "Out[{}]: {value}", who(&ids, labels));
    }
    let errors: Vec<(EngineId, &mpx_messages::MpxError)> =
        results.iter().filter_map(|r| Some((r.engine_id, r.outcome.error.as_ref()?))).collect();
    let same = |e: &mpx_messages::MpxError| {
        let tb = e.traceback();
        // Engines number their cells separately: `<cell-7>` on one is `<cell-9>` on another.
        let tb = tb.split("<cell-").enumerate().fold(String::new(), |mut acc, (i, part)| {
            if i > 0 {
                acc.push_str("<cell");
                acc.push_str(part.trim_start_matches(|c: char| c.is_ascii_digit()));
            } else {
                acc.push_str(part);
            }
            acc
        });
        (e.ename().to_string(), e.evalue().to_string(), e.line(), tb)
    };
    let groups = group(errors.iter().map(|(id, e)| (*id, same(e))));
    for (ids, (ename, evalue, line, _)) in groups.iter().take(ERROR_BLOCKS) {
        let first = errors.iter().find(|(id, _)| *id == ids[0]).map(|(_, e)| *e).expect("grouped");
        let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
        let sep = if evalue.is_empty() { "" } else { ": " };
        let _ = writeln!(out, "[{}:error] {ename}{sep}{evalue}{at}", who(ids, labels));
        for tb_line in first.traceback().lines() {
            let _ = writeln!(out, "    {tb_line}");
        }
    }
    if groups.len() > ERROR_BLOCKS {
        let rest = &groups[ERROR_BLOCKS..];
        let ids: Vec<EngineId> = rest.iter().flat_map(|(ids, _)| ids.iter().copied()).collect();
        let mut kinds: Vec<(String, usize)> = Vec::new();
        for (ids, (ename, ..)) in rest {
            match kinds.iter_mut().find(|(k, _)| k == ename) {
                Some((_, n)) => *n += ids.len(),
                None => kinds.push((ename.clone(), ids.len())),
            }
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        let _ = writeln!(out, "[{}:error] and other errors: {}", who(&ids, labels), kinds.join(", "));
    }
    if errors.len() > COUNT_AFTER {
        let _ = writeln!(out, "{} of {} engines failed", errors.len(), results.len());
    }
    out
}
#[cfg(test)]
mod tests {
    use mpx_messages::{MpxError, Outcome, RemoteError};

    use super::*;

    fn result(id: u32, stdout: &str, value: Option<&str>, error: Option<(&str, &str)>) -> EngineResult {
        let error = error.map(|(ename, evalue)| {
            let mut e = RemoteError::new(ename, evalue);
            e.traceback = format!("File \"<cell-{}>\", line 1", 3 + id);
            MpxError::Cell(e)
        });
        let outcome =
            Outcome { stdout: stdout.into(), value: value.map(str::to_string), error, ..Default::default() };
        EngineResult { engine_id: EngineId(id), outcome, array: None, returned: None, received: 0.0 }
    }

    #[test]
    fn equal_results_are_shown_once_with_their_engines() {
        let results: Vec<_> = (0..4).map(|i| result(i, "193.87\n", Some("1"), None)).collect();
        let none = HashMap::new();
        assert_eq!(render_opts(&results, &none, true), "[stdout:0-3] 193.87\nOut[0-3]: 1\n");
        assert_eq!(render_opts(&results, &none, false), render_with(&results, &none));
        let mixed: Vec<_> = (0..4).map(|i| result(i, &format!("r {}\n", i % 2), None, None)).collect();
        assert_eq!(render_opts(&mixed, &none, true), "[stdout:0,2] r 0\n[stdout:1,3] r 1\n");
    }

    #[test]
    fn errors_differing_only_in_cell_numbers_collapse_and_many_failures_are_counted() {
        let none = HashMap::new();
        let same: Vec<_> =
            (0..4).map(|i| result(i, "", None, Some(("ZeroDivisionError", "division by zero")))).collect();
        let text = render_opts(&same, &none, true);
        assert_eq!(
            text,
            "[0-3:error] ZeroDivisionError: division by zero\n    File \"<cell-3>\", line 1\n4 of 4 engines failed\n"
        );
        let names = ["A", "B", "C", "D", "D", "E"];
        let many: Vec<_> =
            names.iter().enumerate().map(|(i, n)| result(i as u32, "", None, Some((n, "x")))).collect();
        let text = render_opts(&many, &none, true);
        assert_eq!(text.matches(":error] ").count(), 4, "{text}");
        assert!(text.contains("[3-5:error] and other errors: D (2), E (1)\n"), "{text}");
        assert!(text.ends_with("6 of 6 engines failed\n"), "{text}");
        let two: Vec<_> = (0..2).map(|i| result(i, "", None, Some(("KeyError", "'k'")))).collect();
        assert!(!render_opts(&two, &none, true).contains("engines failed"));
    }
}
