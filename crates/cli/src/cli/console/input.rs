//! When a console cell is complete, decided by the cell language's own rules:
//!
//! - **Python**: as the Python REPL (`codeop`) decides: a cell goes on while a bracket, a
//!   triple-quoted string or a backslash continuation is open, and a compound statement (a
//!   line ending in `:`, or a decorator) runs until an empty line. Strings and `#` comments are
//!   skipped, so `x = 1  # {` is complete.
//! - **rhai**: rhai's own parser: the cell goes on while the parse error is at its end (an
//!   unclosed block, call or string), and is complete when it parses or fails elsewhere.

/// The language of a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    /// Python (the engines' default kernel).
    Python,
    /// rhai (the other kernel, and the console's local interpreter).
    Rhai,
}

/// Whether `text` (the lines typed so far, each ending in `\n`) needs more lines.
pub fn incomplete(lang: Lang, text: &str) -> bool {
    if text.trim().is_empty() {
        return false;
    }
    match lang {
        Lang::Python => python_incomplete(text),
        Lang::Rhai => rhai_incomplete(text),
    }
}

/// rhai: the parse error (if any) is at the end of the text, i.e. it moves when more text is
/// appended.
fn rhai_incomplete(text: &str) -> bool {
    use mpx_cells::rhai::{LexError, ParseErrorType};
    let engine = mpx_cells::rhai::Engine::new_raw();
    let at = |code: &str| engine.compile(code).err();
    let Some(err) = at(text) else { return false };
    let pos = err.position();
    if let ParseErrorType::BadInput(LexError::UnterminatedString) = err.err_type() {
        // A back-tick string spans lines; a quoted one does not.
        let line = pos.line().and_then(|l| text.lines().nth(l - 1)).unwrap_or("");
        let start = pos.position().unwrap_or(1).saturating_sub(1);
        return line.chars().nth(start) == Some('`')
            || line[..].rfind('`').is_some_and(|i| !line[i + 1..].contains('`'));
    }
    at(&format!("{text}\n\n;")).map(|e| e.position()) != Some(pos)
}

/// Python, as in the module doc.
fn python_incomplete(text: &str) -> bool {
    let mut depth = 0i32;
    // The open string: its quote and whether it is triple-quoted.
    let mut string: Option<(char, bool)> = None;
    let mut continued = false;
    let mut opens_block = false;
    for line in text.lines() {
        let chars: Vec<char> = line.chars().collect();
        let starts_logical_line = depth <= 0 && string.is_none() && !continued;
        if starts_logical_line && line.trim_start().starts_with('@') {
            opens_block = true;
        }
        continued = false;
        let mut code_end = String::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if let Some((q, triple)) = string {
                if c == '\\' {
                    i += 2;
                    continue;
                }
                if c == q && (!triple || chars.get(i + 1..i + 3) == Some(&[q, q][..])) {
                    string = None;
                    i += if triple { 3 } else { 1 };
                    continue;
                }
                i += 1;
                continue;
            }
            match c {
                '#' => break,
                '"' | '\'' => {
                    let triple = chars.get(i + 1..i + 3) == Some(&[c, c][..]);
                    string = Some((c, triple));
                    i += if triple { 3 } else { 1 };
                    code_end.push('s');
                    continue;
                }
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                '\\' if i + 1 == chars.len() => continued = true,
                _ => {}
            }
            code_end.push(c);
            i += 1;
        }
        match string {
            // A plain string does not continue past its line (a syntax error, for Python to
            // report), unless the line ends in a backslash.
            Some((_, false)) if !line.ends_with('\\') => string = None,
            Some((_, false)) => continued = true,
            _ => {}
        }
        if depth <= 0 && string.is_none() && code_end.trim_end().ends_with(':') {
            opens_block = true;
        }
    }
    let open = depth > 0 || string.is_some() || continued;
    let last_line_blank = text.ends_with("\n\n") || text.lines().last().is_some_and(|l| l.trim().is_empty());
    open || (opens_block && !last_line_blank)
}

#[cfg(test)]
mod tests {
    use super::{incomplete, Lang};

    #[test]
    fn python_cells_continue_as_in_the_python_repl() {
        let py = |t: &str| incomplete(Lang::Python, t);
        assert!(py("def f(x):\n"));
        assert!(py("def f(x):\n    return x\n"));
        assert!(!py("def f(x):\n    return x\n\n"));
        assert!(py("@decorator\n"));
        assert!(py("x = [1,\n"));
        assert!(!py("x = [1,\n 2]\n"));
        assert!(!py("x = {'a': 1}\n"));
        assert!(!py("print('a:')\n"));
        assert!(py("s = '''a\n"));
        assert!(!py("s = '''a\nb'''\n"));
        assert!(py("x = 1 + \\\n"));
        assert!(!py("x = 1 + \\\n 2\n"));
        assert!(!py("print(')')\n"));
        assert!(!py("s = 'it''s'\n"));
        assert!(!py("s = \"a\\\"b\"\n"));
        // A comment is not code: neither its brackets nor its colon continue the cell.
        assert!(!py("x = 1  # note {\n"));
        assert!(!py("x = 1  # note:\n"));
        // An unclosed plain string is Python's error to report, not a continuation.
        assert!(!py("s = 'abc\n"));
        assert!(py("for i in range(3):  # loop\n"));
        assert!(py("x = {'a':\n"));
    }

    #[test]
    fn rhai_cells_continue_while_its_parser_waits_for_more() {
        let rhai = |t: &str| incomplete(Lang::Rhai, t);
        assert!(rhai("fn f(a) {\n"));
        assert!(!rhai("fn f(a) { a }\n"));
        assert!(!rhai("print(\"{\")\n"));
        assert!(rhai("let x = [1,\n"));
        assert!(rhai("let s = `multi\n"));
        assert!(!rhai("let m = #{a: 1};\n"));
        assert!(!rhai("let x = 1; // note {\n"));
        // An error before the end is complete: rhai reports it.
        assert!(!rhai("let = 3;\nlet y = 1;\n"));
        assert!(!rhai("\n"));
    }
}
