//! `mpx console`: an interactive session. `%px CODE` runs on the engines, `%autopx` sends every
//! line to the engines until toggled off, and plain lines run in a local interpreter.

use std::{
    path::Path,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use anyhow::Result;
use clap::Args;
use mpx_cells::{local::LocalWorld, Interpreter, Registry};
use mpx_client::{display, npy, Client, Targets};
use rustyline::{error::ReadlineError, DefaultEditor};

use super::{
    exec::{render_states, wait_interruptible, Code},
    parse_targets,
};

#[derive(Args)]
pub struct ConsoleArgs {
    /// Cluster id or connection file (default: the only running cluster).
    #[arg(long, default_value = "")]
    cluster_id: String,
    /// Default seconds to wait for a cell's result.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

const HELP: &str = "\
%px CODE        run CODE on the target engines
%autopx         toggle: every line runs on the engines
%run FILE       run a file on the target engines
%push NAME F    send F.npy to the engines as NAME   %pull NAME F    fetch NAME into F.npy
%scatter NAME F split F.npy over the engines         %gather NAME F  concatenate NAME into F.npy
%targets T      set targets: all, 0,2 or 1-3
%timeout S      seconds to wait for results
%where          what every engine is doing (idle, running, inside an MPI call)
Ctrl-C          while waiting: interrupt the running cell on its engines
%help           this text
%quit           leave (also exit or Ctrl-D)
other lines     run locally (rank 0 of a world of 1)";

struct Console {
    client: Client,
    targets: Targets,
    timeout: Duration,
    autopx: bool,
    local: Interpreter,
}

impl Console {
    fn remote(&self, code: Code<'_>) {
        let result = code
            .submit(&self.client.view(self.targets.clone()))
            .and_then(|pending| wait_interruptible(&self.client, &self.targets, &pending, self.timeout));
        match result {
            Ok(results) => print!("{}", display::render(&results)),
            Err(e) => println!("error: {e}"),
        }
    }

    /// `%push/%pull/%scatter/%gather NAME FILE`.
    fn data(&self, magic: &str, rest: &str) {
        let Some((name, file)) = rest.split_once(char::is_whitespace) else {
            return println!("error: %{magic} takes NAME FILE");
        };
        let (name, file) = (name.trim(), Path::new(file.trim()));
        let view = self.client.view(self.targets.clone());
        let sent = match magic {
            "push" | "scatter" => npy::read(file).and_then(|a| match magic {
                "push" => view.push(name, &a),
                _ => view.scatter(name, &a),
            }),
            "pull" => view.pull(name),
            _ => view.gather(name),
        };
        let results =
            match sent.and_then(|p| wait_interruptible(&self.client, &self.targets, &p, self.timeout)) {
                Ok(r) => r,
                Err(e) => return println!("error: {e}"),
            };
        print!("{}", display::render(&results));
        let arrays: Vec<_> = results.iter().filter_map(|r| Some((r.engine_id, r.array.as_ref()?))).collect();
        for (id, a) in &arrays {
            let path = if arrays.len() == 1 { file.to_path_buf() } else { npy::per_engine_path(file, *id) };
            match npy::write(&path, a) {
                Ok(()) => println!("[{id}] {} {:?} -> {}", a.dtype(), a.shape(), path.display()),
                Err(e) => println!("error: {e}"),
            }
        }
    }

    fn local(&mut self, code: &str) {
        let out = self.local.execute(code);
        print!("{}", out.stdout);
        if let Some(v) = out.value {
            println!("{v}");
        }
        if let Some(e) = out.error {
            let at = e.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            println!("{}: {}{at}", e.ename, e.evalue);
        }
    }

    /// Handles one complete input; returns false to leave.
    fn line(&mut self, input: &str) -> bool {
        let trimmed = input.trim();
        let (magic, rest) = match trimmed.strip_prefix('%') {
            Some(m) => m.split_once(char::is_whitespace).map_or((m, ""), |(a, b)| (a, b.trim())),
            None => ("", trimmed),
        };
        match magic {
            "" if trimmed == "exit" || trimmed == "quit" => return false,
            "" if trimmed.is_empty() => {}
            "" if self.autopx => self.remote(Code::Cell(input)),
            "" => self.local(input),
            "px" => self.remote(Code::Cell(rest)),
            "autopx" => {
                self.autopx = !self.autopx;
                println!(
                    "%autopx {}",
                    if self.autopx { "enabled: lines run on the engines" } else { "disabled" }
                );
            }
            "run" => match std::fs::read_to_string(Path::new(rest)) {
                Ok(code) => self.remote(Code::File(&code, rest)),
                Err(e) => println!("error: cannot read {rest}: {e}"),
            },
            "push" | "pull" | "scatter" | "gather" => self.data(magic, rest),
            "targets" => match parse_targets(rest) {
                Ok(t) => {
                    println!("targets: {t:?}");
                    self.targets = t;
                }
                Err(e) => println!("error: {e}"),
            },
            "timeout" => match rest.parse::<f64>() {
                Ok(s) if s > 0.0 => self.timeout = Duration::from_secs_f64(s),
                _ => println!("error: %timeout takes a positive number of seconds"),
            },
            "where" => match self.client.engine_states(Duration::from_secs(10)) {
                Ok(states) => print!("{}", render_states(&states)),
                Err(e) => println!("error: {e}"),
            },
            "help" => println!("{HELP}"),
            "quit" | "exit" => return false,
            other => println!("error: unknown magic %{other} (%help lists them)"),
        }
        true
    }
}

/// Whether the input so far needs more lines: an open bracket or string (either kernel), or a
/// Python block (a line ending in `:`) not yet closed by an empty line, as in Python's REPL.
/// `#` comments are skipped (but not rhai's `#{` map literals).
fn incomplete(text: &str) -> bool {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut opens_block = false;
    for line in text.lines() {
        let mut code = String::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '#' if chars.peek() != Some(&'{') => break,
                '"' | '`' | '\'' => quote = Some(c),
                '{' | '(' | '[' => depth += 1,
                '}' | ')' | ']' => depth -= 1,
                _ => {}
            }
            code.push(c);
        }
        // A string does not continue past its line in Python, nor (unclosed) usefully in rhai.
        if matches!(quote, Some('"' | '\'')) {
            quote = None;
        }
        if depth <= 0 && code.trim_end().ends_with(':') {
            opens_block = true;
        }
    }
    let closed_by_blank_line = text.ends_with("\n\n") || text.trim().is_empty();
    depth > 0 || (opens_block && !closed_by_blank_line)
}

pub fn run(args: ConsoleArgs) -> Result<i32> {
    let client = Client::connect(&args.cluster_id)?;
    let n = client.ids()?.len();
    println!("mpx console: cluster {} with {n} engines. %help for help.", client.cluster_id());
    let comm = LocalWorld::new(1).pop().expect("a world of one");
    let local = Interpreter::new(Box::new(comm), Registry::new(), Arc::new(AtomicBool::new(false)));
    let mut console = Console {
        client,
        targets: Targets::All,
        timeout: Duration::from_secs_f64(args.timeout.max(0.001)),
        autopx: false,
        local,
    };
    let mut editor = DefaultEditor::new()?;
    let mut buffer = String::new();
    loop {
        let prompt = match (buffer.is_empty(), console.autopx) {
            (false, _) => "...: ",
            (true, true) => "[px]> ",
            (true, false) => "mpx> ",
        };
        match editor.readline(prompt) {
            Ok(line) => {
                buffer.push_str(&line);
                buffer.push('\n');
                if incomplete(&buffer) {
                    continue;
                }
                let input = std::mem::take(&mut buffer);
                let _ = editor.add_history_entry(input.trim_end());
                if !console.line(&input) {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::incomplete;

    #[test]
    fn open_brackets_continue_the_cell() {
        assert!(incomplete("fn f(a) {\n"));
        assert!(!incomplete("fn f(a) { a }\n"));
        assert!(!incomplete("print(\"{\")\n"));
        assert!(incomplete("let x = [1,\n"));
        // Python blocks run until an empty line; comments do not open brackets.
        assert!(incomplete("%px def f(x):\n"));
        assert!(incomplete("%px def f(x):\n    return x\n"));
        assert!(!incomplete("%px def f(x):\n    return x\n\n"));
        assert!(!incomplete("%px x = {'a': 1}\n"));
        assert!(!incomplete("%px x = 1  # note {\n"));
        assert!(!incomplete("let m = #{a: 1};\n"));
        assert!(!incomplete("%px print('a:')\n"));
    }
}
