//! Just enough of a Rust lexer to find paths: identifiers, `::`, punctuation and string
//! literals (for `#[path = "…"]`), with comments, char literals, lifetimes and numbers dropped.

/// A token's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// An identifier or keyword (`r#name` as `name`).
    Ident(String),
    /// `::`
    PathSep,
    /// Any other punctuation character.
    Punct(char),
    /// A string literal's text (escapes left as written).
    Str(String),
}

/// A token and the line it starts on (from 1).
#[derive(Debug, Clone)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Its line.
    pub line: usize,
}

fn ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The tokens of a source file.
pub fn lex(text: &str) -> Vec<Token> {
    let c: Vec<char> = text.chars().collect();
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    // Skips to `end` (exclusive), counting lines.
    let advance = |i: &mut usize, end: usize, line: &mut usize| {
        let end = end.min(c.len());
        *line += c[*i..end].iter().filter(|&&ch| ch == '\n').count();
        *i = end;
    };
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            let end = i + 1;
            advance(&mut i, end, &mut line);
        } else if ch == '/' && at(i + 1) == '/' {
            let end = (i..c.len()).find(|&j| c[j] == '\n').unwrap_or(c.len());
            advance(&mut i, end, &mut line);
        } else if ch == '/' && at(i + 1) == '*' {
            let (mut j, mut depth) = (i + 2, 1);
            while j < c.len() && depth > 0 {
                if c[j] == '/' && at(j + 1) == '*' {
                    depth += 1;
                    j += 2;
                } else if c[j] == '*' && at(j + 1) == '/' {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            advance(&mut i, j, &mut line);
        } else if let Some((start, hashes)) = raw_string_start(&c, i) {
            // r"…", r#"…"#, br"…", cr"…"
            let close: Vec<char> = format!("\"{}", "#".repeat(hashes)).chars().collect();
            let mut j = start;
            while j < c.len() && !c[j..].starts_with(&close) {
                j += 1;
            }
            let s: String = c[start..j.min(c.len())].iter().collect();
            let l = line;
            advance(&mut i, j + close.len(), &mut line);
            out.push(Token { tok: Tok::Str(s), line: l });
        } else if ch == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                j += if c[j] == '\\' { 2 } else { 1 };
            }
            let s: String = c[i + 1..j.min(c.len())].iter().collect();
            let l = line;
            advance(&mut i, j + 1, &mut line);
            out.push(Token { tok: Tok::Str(s), line: l });
        } else if ch == '\'' {
            if at(i + 1) == '\\' {
                // '\n', '\'', '\u{…}'
                let mut j = i + 3;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                advance(&mut i, j + 1, &mut line);
            } else if at(i + 2) == '\'' {
                let end = i + 3; // 'a', '"', '{'
                advance(&mut i, end, &mut line);
            } else {
                // A lifetime or label: 'a, 'static.
                let mut j = i + 1;
                while j < c.len() && ident_char(c[j]) {
                    j += 1;
                }
                advance(&mut i, j, &mut line);
            }
        } else if ch.is_ascii_digit() {
            let mut j = i + 1;
            while j < c.len() && (ident_char(c[j]) || (c[j] == '.' && at(j + 1).is_ascii_digit())) {
                j += 1;
            }
            advance(&mut i, j, &mut line);
        } else if ident_start(ch) {
            let mut j = i;
            if ch == 'r' && at(i + 1) == '#' && ident_start(at(i + 2)) {
                j += 2; // r#name
            }
            let start = j;
            while j < c.len() && ident_char(c[j]) {
                j += 1;
            }
            out.push(Token { tok: Tok::Ident(c[start..j].iter().collect()), line });
            i = j;
        } else if ch == ':' && at(i + 1) == ':' {
            out.push(Token { tok: Tok::PathSep, line });
            i += 2;
        } else {
            out.push(Token { tok: Tok::Punct(ch), line });
            i += 1;
        }
    }
    out
}

/// Where a raw string's text starts and its number of `#`s, if one starts at `i`.
fn raw_string_start(c: &[char], i: usize) -> Option<(usize, usize)> {
    if i > 0 && ident_char(c[i - 1]) {
        return None;
    }
    let mut j = i;
    if matches!(c.get(j), Some('b') | Some('c')) {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while c.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (c.get(j) == Some(&'"')).then_some((j + 1, hashes))
}
