//! The console's line editor helper: tab completion (magics, file paths, names known to the
//! engines) and the end of a cell (see [`super::input`]).

use std::{cell::RefCell, rc::Rc};

use rustyline::{
    completion::{Completer, FilenameCompleter, Pair},
    validate::{ValidationContext, ValidationResult, Validator},
    Context, Helper, Highlighter, Hinter,
};

use super::{
    input::{incomplete, Lang},
    Console,
};

/// The console's magics, as completed.
pub const MAGICS: &[&str] = &[
    "%autopx", "%exit", "%gather", "%help", "%pull", "%push", "%px", "%quit", "%result", "%run", "%scatter",
    "%targets", "%timeout", "%where",
];

/// Magics whose last argument is a file: `%run FILE`, `%push NAME FILE`, ...
const FILE_MAGICS: &[(&str, usize)] =
    &[("%run", 1), ("%push", 2), ("%pull", 2), ("%scatter", 2), ("%gather", 2)];

/// What the console asks of the session for completion: the names in a cell language, and the
/// attributes of an object (Python).
pub trait Names {
    /// The language lines run in now (`%px` lines: the engines' kernel).
    fn lang_of(&self, line: &str) -> Lang;
    /// Names known where `line` runs (engines or the local interpreter), sorted.
    fn names(&mut self, line: &str) -> Vec<String>;
    /// Attributes of `object` (a dotted name) on the engines, sorted.
    fn attributes(&mut self, object: &str) -> Vec<String>;
}

/// The editor helper: completion and validation over a shared console.
#[derive(Helper, Highlighter, Hinter)]
pub struct ConsoleHelper<N: Names = Console> {
    /// The console session the names come from.
    pub session: Rc<RefCell<N>>,
    files: FilenameCompleter,
}

impl<N: Names> ConsoleHelper<N> {
    /// A helper over `session`.
    pub fn new(session: Rc<RefCell<N>>) -> Self {
        ConsoleHelper { session, files: FilenameCompleter::new() }
    }
}

/// The identifier (with dots) that ends at the end of `text`: its start.
fn word_start(text: &str) -> usize {
    text.char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_' || *c == '.')
        .last()
        .map_or(text.len(), |(i, _)| i)
}

/// Candidates from `words` that start with `prefix`.
fn matching(words: impl IntoIterator<Item = String>, prefix: &str) -> Vec<Pair> {
    let mut out: Vec<Pair> = words
        .into_iter()
        .filter(|w| w.starts_with(prefix))
        .map(|w| Pair { display: w.clone(), replacement: w })
        .collect();
    out.dedup_by(|a, b| a.replacement == b.replacement);
    out
}

impl<N: Names> Completer for ConsoleHelper<N> {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        // The cell may span lines: complete within the current one.
        let line_start = line[..pos].rfind('\n').map_or(0, |i| i + 1);
        let before = &line[line_start..pos];
        let indent = before.len() - before.trim_start().len();
        let trimmed = before.trim_start();
        if line_start == 0 && trimmed.starts_with('%') {
            let words: Vec<&str> = trimmed.split_whitespace().collect();
            let ends_in_space = trimmed.ends_with(char::is_whitespace);
            // The magic itself.
            if words.len() == 1 && !ends_in_space {
                let magics = MAGICS.iter().map(|m| m.to_string());
                return Ok((indent, matching(magics, trimmed)));
            }
            // A file argument.
            let arg = words.len() - 1 + usize::from(ends_in_space);
            if let Some((_, at)) = FILE_MAGICS.iter().find(|(m, _)| *m == words[0]) {
                if arg == *at {
                    return self.files.complete(line, pos, ctx);
                }
                return Ok((pos, Vec::new()));
            }
            if words[0] != "%px" {
                return Ok((pos, Vec::new()));
            }
        }
        let start = word_start(before);
        let word = &before[start..];
        if word.is_empty() || word.starts_with(|c: char| c.is_ascii_digit()) {
            return Ok((pos, Vec::new()));
        }
        let mut session = self.session.borrow_mut();
        let code_line = &line[..pos];
        if let Some((object, _)) = word.rsplit_once('.') {
            if session.lang_of(code_line) != Lang::Python || object.is_empty() {
                return Ok((pos, Vec::new()));
            }
            let attrs = session.attributes(object);
            let found = matching(attrs.into_iter().map(|a| format!("{object}.{a}")), word);
            return Ok((line_start + start, found));
        }
        Ok((line_start + start, matching(session.names(code_line), word)))
    }
}

impl<N: Names> Validator for ConsoleHelper<N> {
    fn validate(&self, ctx: &mut ValidationContext<'_>) -> rustyline::Result<ValidationResult> {
        Ok(if self.needs_more(ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl<N: Names> ConsoleHelper<N> {
    /// Whether `input` (the cell typed so far, without the Enter just pressed) goes on.
    pub fn needs_more(&self, input: &str) -> bool {
        let trimmed = input.trim_start();
        let (lang, code) = match trimmed.strip_prefix("%px") {
            Some(code) if code.is_empty() || code.starts_with(char::is_whitespace) => {
                (self.session.borrow().lang_of(input), code)
            }
            // Other magics are one line.
            _ if trimmed.starts_with('%') => return false,
            _ => (self.session.borrow().lang_of(input), input),
        };
        incomplete(lang, &format!("{code}\n"))
    }
}

#[cfg(test)]
mod tests {
    use rustyline::history::DefaultHistory;

    use super::*;

    /// A session with fixed names, counting the requests.
    #[derive(Default)]
    struct Fixed {
        asked: usize,
    }

    impl Names for Fixed {
        fn lang_of(&self, line: &str) -> Lang {
            if line.trim_start().starts_with("%px") {
                Lang::Python
            } else {
                Lang::Rhai
            }
        }
        fn names(&mut self, _line: &str) -> Vec<String> {
            self.asked += 1;
            vec!["alpha".into(), "alpine".into(), "beta".into()]
        }
        fn attributes(&mut self, object: &str) -> Vec<String> {
            assert_eq!(object, "np");
            vec!["arange".into(), "array".into(), "zeros".into()]
        }
    }

    fn complete(line: &str) -> (usize, Vec<String>) {
        let helper = ConsoleHelper::new(Rc::new(RefCell::new(Fixed::default())));
        let history = DefaultHistory::new();
        let (start, found) = helper.complete(line, line.len(), &Context::new(&history)).unwrap();
        (start, found.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn magics_names_attributes_and_files_complete() {
        assert_eq!(complete("%ti"), (0, vec!["%timeout".to_string()]));
        assert_eq!(complete("%p").1, vec!["%pull", "%push", "%px"]);
        assert_eq!(complete("%px x = alp"), (8, vec!["alpha".to_string(), "alpine".to_string()]));
        assert_eq!(complete("%px y = np.ar"), (8, vec!["np.arange".to_string(), "np.array".to_string()]));
        assert_eq!(complete("let z = be"), (8, vec!["beta".to_string()]));
        assert_eq!(complete("%px f(x,\n  alp").1, vec!["alpha", "alpine"]);
        assert!(complete("%timeout 2").1.is_empty());
        assert!(complete("%px x = 12").1.is_empty());

        let dir = std::env::temp_dir().join(format!("mpx-console-complete-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("data_one.npy"), b"").unwrap();
        let line = format!("%push a {}/data_o", dir.display());
        let (_, found) = complete(&line);
        assert_eq!(found, vec![format!("{}/data_one.npy", dir.display())]);
        assert!(complete(&format!("%run {}/da", dir.display())).1[0].ends_with("data_one.npy"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cells_end_as_their_language_says() {
        let helper = ConsoleHelper::new(Rc::new(RefCell::new(Fixed::default())));
        assert!(helper.needs_more("%px def f(x):"));
        assert!(!helper.needs_more("%px def f(x):\n    return x\n"));
        assert!(!helper.needs_more("%px x = 1  # a comment {"));
        assert!(helper.needs_more("fn f(a) {"));
        assert!(!helper.needs_more("%timeout 2"));
        assert!(!helper.needs_more("%targets ::2"));
    }
}
