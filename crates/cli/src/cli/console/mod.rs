//! `mpx console`: an interactive session. `%px CODE` runs on the engines, `%autopx` sends every
//! cell to the engines until toggled off, and plain lines run in a local interpreter.
//!
//! Tab completes magics, file paths (`%run`, `%push`, ...) and the names known to the engines
//! (for Python, asked of the target engines and kept until the next cell runs). A cell
//! ends where its language says ([`input`]). History is kept in `$MPX_HOME/console_history`.
//! When the cluster is restarted (its connection file changes) or the connection is lost, the
//! next cell connects again.

mod help;
mod helper;
mod input;

use std::{
    cell::RefCell,
    collections::{BTreeSet, HashMap},
    path::Path,
    rc::Rc,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use anyhow::Result;
use clap::Args;
use mpx_cells::{local::LocalWorld, Interpreter, Registry};
use mpx_client::{display, npy, AsyncResult, Client, ClientError, Targets};
use mpx_controller::files;
use mpx_messages::ConnectionInfo;
use rustyline::{error::ReadlineError, history::FileHistory, CompletionType, Config, Editor};

use self::{
    helper::{ConsoleHelper, Names},
    input::Lang,
};
use super::{
    exec::{render_states, show_request, wait_interruptible, Code, OnTimeout, Show, StillRunning},
    targets::{describe, parse_targets, SYNTAX},
};

#[derive(Args)]
pub struct ConsoleArgs {
    /// Cluster id or connection file [default: the only running cluster].
    #[arg(long, default_value = "", hide_default_value = true)]
    cluster_id: String,
    /// Default seconds to wait for a cell's result.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// On a Python cluster, run lines without `%` in the local rhai interpreter instead of on
    /// the engines (`%autopx` toggles it).
    #[arg(long)]
    no_autopx: bool,
}

/// How many cells the history keeps.
const HISTORY_SIZE: usize = 2000;

/// Python: the names of the engine's namespace, one per line.
const PY_NAMES: &str = "print('\\n'.join(sorted(k for k in globals() if not k.startswith('_'))))";

/// The console session: the connection, the targets and the local interpreter.
pub struct Console {
    /// `--cluster-id` as given (connecting again after a restart finds the cluster anew).
    cluster_arg: String,
    client: Client,
    /// The connection file's contents when connected (a restart changes them).
    connected_as: Option<ConnectionInfo>,
    /// The connection failed: connect again before the next cell.
    broken: bool,
    kernel: Lang,
    targets: Targets,
    timeout: Duration,
    autopx: bool,
    local: Interpreter,
    /// Names on the engines (Python), until the next cell runs.
    names: Option<Vec<String>>,
    /// Attributes of objects on the engines (Python), until the next cell runs.
    attributes: HashMap<String, Vec<String>>,
    /// Names the cells typed here defined (rhai: `let x`, `const x`, `fn f`).
    defined: BTreeSet<String>,
    /// Cells whose wait ran out, by request id, for `%result` (the last one last).
    unfinished: Vec<(mpx_messages::Ticket, AsyncResult, Targets)>,
}

/// Which kernel the engines run: the cell `true` is a value in rhai and a NameError in Python.
/// It runs on every engine, so that their cell numbers stay the same.
fn probe_kernel(client: &Client) -> Lang {
    match client.view(Targets::All).execute_internal("true").and_then(|p| p.get(Duration::from_secs(10))) {
        Ok(results) if !results.is_empty() && results.iter().all(|r| r.outcome.error.is_none()) => Lang::Rhai,
        _ => Lang::Python,
    }
}

/// Names that `let`, `const` and `fn` define in rhai code.
fn rhai_definitions(code: &str) -> impl Iterator<Item = String> + '_ {
    let words: Vec<&str> =
        code.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
    words
        .windows(2)
        .filter(|w| matches!(w[0], "let" | "const" | "fn"))
        .map(|w| w[1].to_string())
        .collect::<Vec<_>>()
        .into_iter()
}

/// Whether `name` is a dotted Python name (safe to evaluate for completion).
fn dotted_name(name: &str) -> bool {
    name.split('.').all(|p| {
        p.starts_with(|c: char| c.is_alphabetic() || c == '_')
            && p.chars().all(|c| c.is_alphanumeric() || c == '_')
    })
}

impl Console {
    fn connect(cluster_arg: &str) -> Result<(Client, Option<ConnectionInfo>)> {
        let client = Client::connect(cluster_arg)?;
        let info = files::read_connection_file(client.connection_file()).ok();
        Ok((client, info))
    }

    /// The client, connected again first if the cluster was restarted or the connection lost.
    fn client(&mut self) -> Result<&Client> {
        let now = files::read_connection_file(self.client.connection_file()).ok();
        if self.broken || now.is_none() || now != self.connected_as {
            let (client, info) = Self::connect(&self.cluster_arg)?;
            let n = client.ids()?.len();
            println!("(connected again: cluster {} with {n} engines)", client.cluster_id());
            self.client = client;
            self.connected_as = info;
            self.broken = false;
            self.names = None;
            self.attributes.clear();
        }
        Ok(&self.client)
    }

    /// Reports an error; a lost connection is made again before the next cell.
    fn report(&mut self, e: &anyhow::Error) {
        if let Some(ClientError::Closed(_) | ClientError::Connect { .. }) = e.downcast_ref::<ClientError>() {
            self.broken = true;
        }
        eprintln!("error: {e:#}");
    }

    fn remote(&mut self, code: Code<'_>) {
        self.names = None;
        self.attributes.clear();
        if let Code::Cell(text) = code {
            self.defined.extend(rhai_definitions(text));
        }
        let (targets, timeout) = (self.targets.clone(), self.timeout);
        let pending = match self.client().and_then(|client| Ok(code.submit(&client.view(targets.clone()))?)) {
            Ok(pending) => pending,
            Err(e) => return self.report(&e),
        };
        self.show(pending, targets, timeout);
    }

    /// Shows a request's output as it arrives and its results; one whose wait runs out is kept
    /// for `%result`.
    fn show(&mut self, pending: AsyncResult, targets: Targets, timeout: Duration) {
        let shown = self.client().and_then(|client| {
            show_request(client, &targets, &pending, timeout, OnTimeout::Wait, Show::default(), "%result")
        });
        match shown {
            Ok(_) => {}
            Err(e) => {
                if let Some(StillRunning { id: Some(id), .. }) = e.downcast_ref::<StillRunning>() {
                    self.unfinished.push((*id, pending, targets));
                }
                self.report(&e)
            }
        }
    }

    /// `%result [ID]`: waits again for a cell whose wait ran out (the last one, or request ID,
    /// also one of another client that went away, kept by the controller).
    fn result(&mut self, rest: &str) {
        let id = match rest {
            "" => match self.unfinished.last() {
                Some((id, ..)) => *id,
                None => return eprintln!("error: no cell is waiting for its result"),
            },
            text => match text.parse::<mpx_messages::Ticket>() {
                Ok(id) => id,
                Err(_) => return eprintln!("error: %result takes a request id"),
            },
        };
        let timeout = self.timeout;
        if let Some(i) = self.unfinished.iter().position(|(known, ..)| *known == id) {
            let (_, pending, targets) = self.unfinished.remove(i);
            return self.show(pending, targets, timeout);
        }
        let adopted = self.client().and_then(|client| {
            let pending = client.adopt(id)?;
            let engines = pending.engines(Duration::from_secs(10))?;
            Ok((pending, Targets::List(engines)))
        });
        match adopted {
            Ok((pending, targets)) => self.show(pending, targets, timeout),
            Err(e) => self.report(&e),
        }
    }

    /// `%push/%pull/%scatter/%gather NAME FILE`, `%push --shared NAME FILE`.
    fn data(&mut self, magic: &str, rest: &str) {
        let shared = magic == "push" && rest.trim_start().starts_with("--shared ");
        let rest = if shared { rest.trim_start().trim_start_matches("--shared").trim_start() } else { rest };
        let Some((name, file)) = rest.split_once(char::is_whitespace) else {
            return eprintln!("error: %{magic} takes NAME FILE");
        };
        let (name, file) = (name.trim(), Path::new(file.trim()));
        let (targets, timeout) = (self.targets.clone(), self.timeout);
        let results = self.client().and_then(|client| {
            let view = client.view(targets.clone());
            let sent = match magic {
                "push" | "scatter" => npy::read(file).and_then(|a| {
                    let source = match mpx_client::replay::file_source(file) {
                        Ok(source) => source,
                        Err(e) => {
                            return Err(mpx_client::ClientError::NotFound(format!("{}: {e}", file.display())))
                        }
                    };
                    match magic {
                        "push" if shared => view.push_shared_from(name, &a, source),
                        "push" => view.push_from(name, &a, source),
                        _ => view.scatter_from(name, &a, source),
                    }
                }),
                "pull" => view.pull(name),
                _ => view.gather(name),
            };
            Ok(wait_interruptible(client, &targets, &sent?, timeout)?)
        });
        let results = match results {
            Ok(r) => r,
            Err(e) => return self.report(&e),
        };
        print!("{}", display::render(&results));
        let arrays: Vec<_> = results.iter().filter_map(|r| Some((r.engine_id, r.array.as_ref()?))).collect();
        for (id, a) in &arrays {
            let path = if arrays.len() == 1 { file.to_path_buf() } else { npy::per_engine_path(file, *id) };
            match npy::write(&path, a) {
                Ok(()) => println!("[{id}] {} {:?} -> {}", a.dtype(), a.shape(), path.display()),
                Err(e) => eprintln!("error: {e}"),
            }
        }
    }

    fn local(&mut self, code: &str) {
        self.defined.extend(rhai_definitions(code));
        let out = self.local.execute(code);
        print!("{}", out.stdout);
        if let Some(v) = out.value {
            println!("{v}");
        }
        if let Some(e) = out.error {
            let at = e.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            eprintln!("{}: {}{at}", e.ename, e.evalue);
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
                    if self.autopx { "enabled: cells run on the engines" } else { "disabled" }
                );
            }
            "run" => match std::fs::read_to_string(Path::new(rest)) {
                Ok(code) => self.remote(Code::File(&code, rest)),
                Err(e) => eprintln!("error: cannot read {rest}: {e}"),
            },
            "push" | "pull" | "scatter" | "gather" => self.data(magic, rest),
            "targets" if rest.is_empty() => println!("targets: {}", describe(&self.targets)),
            "targets" => {
                let chosen = parse_targets(rest)
                    .map_err(anyhow::Error::from)
                    .and_then(|spec| spec.resolve(self.client()?));
                match chosen {
                    Ok(t) => {
                        println!("targets: {}", describe(&t));
                        self.targets = t;
                    }
                    Err(e) => eprintln!("error: {e:#} (targets are {SYNTAX})"),
                }
            }
            "timeout" if rest.is_empty() => println!("timeout: {} s", self.timeout.as_secs_f64()),
            "timeout" => match rest.parse::<f64>() {
                Ok(s) if s > 0.0 && s.is_finite() => {
                    self.timeout = Duration::from_secs_f64(s);
                    println!("timeout: {s} s");
                }
                _ => eprintln!("error: %timeout takes a positive number of seconds"),
            },
            "result" => self.result(rest),
            "restart" => {
                self.restart();
                if rest == "--replay" {
                    self.replay();
                }
            }
            "replay" => self.replay(),
            "history" => match self.client().and_then(|c| Ok(c.history(Duration::from_secs(10))?)) {
                Ok(history) => {
                    let n = rest.strip_prefix("-n").and_then(|n| n.trim().parse().ok());
                    let errors = rest.contains("--errors");
                    let entries = crate::cli::session::select(history.entries, n, errors);
                    print!("{}", crate::cli::session::render_history(&entries));
                }
                Err(e) => self.report(&e),
            },
            "interrupt" => {
                let targets = self.targets.clone();
                match self.client().and_then(|c| Ok(c.interrupt(targets, Duration::from_secs(10))?)) {
                    Ok(engines) => println!("interrupted the running cells of {} engines", engines.len()),
                    Err(e) => self.report(&e),
                }
            }
            "where" => match self.client().and_then(|c| Ok(c.engine_states(Duration::from_secs(10))?)) {
                Ok(states) => print!("{}", render_states(&states)),
                Err(e) => self.report(&e),
            },
            "help" => println!("{}", help::HELP),
            "quit" | "exit" => return false,
            other => eprintln!("error: unknown magic %{other} (%help lists them)"),
        }
        true
    }

    /// `%replay`: the session before the last restart, run again.
    fn replay(&mut self) {
        match self.client().and_then(crate::cli::session::replay_previous) {
            Ok(_) => self.names = None,
            Err(e) => self.report(&e),
        }
    }

    /// `%restart`: a new MPI world, ready when this returns.
    fn restart(&mut self) {
        println!("restarting the MPI world (its variables are lost)...");
        let t0 = std::time::Instant::now();
        match self
            .client()
            .and_then(|c| Ok(c.restart("restarted from the console", Duration::from_secs(120))?))
        {
            Ok(engines) => {
                self.names = None;
                self.attributes.clear();
                println!(
                    "the MPI world is ready: {} engines in {:.2} s",
                    engines.len(),
                    t0.elapsed().as_secs_f64()
                );
            }
            Err(e) => self.report(&e),
        }
    }

    /// Runs a completion cell on the target engines (all of them, so that their cell numbers
    /// stay the same); the stdout lines of the first that answers without an error.
    fn ask_engine(&mut self, code: &str) -> Vec<String> {
        let targets = self.targets.clone();
        let Ok(client) = self.client() else { return Vec::new() };
        match client.view(targets).execute_internal(code).and_then(|p| p.get(Duration::from_secs(2))) {
            Ok(results) => results
                .iter()
                .find(|r| r.outcome.error.is_none())
                .map(|r| r.outcome.stdout.lines().map(str::to_string).collect())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }
}

impl Names for Console {
    fn lang_of(&self, line: &str) -> Lang {
        if self.autopx || line.trim_start().starts_with("%px") {
            self.kernel
        } else {
            Lang::Rhai
        }
    }

    fn names(&mut self, line: &str) -> Vec<String> {
        let mut names: Vec<String> = self.defined.iter().cloned().collect();
        let remote = self.autopx || line.trim_start().starts_with("%px");
        if remote && self.kernel == Lang::Python {
            if self.names.is_none() {
                self.names = Some(self.ask_engine(PY_NAMES));
            }
            names.extend(self.names.clone().unwrap_or_default());
        }
        names.sort();
        names.dedup();
        names
    }

    fn attributes(&mut self, object: &str) -> Vec<String> {
        if !dotted_name(object) {
            return Vec::new();
        }
        if let Some(found) = self.attributes.get(object) {
            return found.clone();
        }
        let found = self.ask_engine(&format!("print('\\n'.join(dir({object})))"));
        self.attributes.insert(object.to_string(), found.clone());
        found
    }
}

pub fn run(args: ConsoleArgs) -> Result<i32> {
    let (client, connected_as) = Console::connect(&args.cluster_id)?;
    let n = client.ids()?.len();
    let kernel = probe_kernel(&client);
    let autopx = kernel == Lang::Python && !args.no_autopx;
    let lines = match (kernel, autopx) {
        (Lang::Python, true) => {
            "Python kernel: lines run on the engines (%autopx: in a local rhai interpreter)"
        }
        (Lang::Python, false) => "Python kernel: lines run in a local rhai interpreter, %px on the engines",
        (Lang::Rhai, _) => "rhai kernel: lines run in a local rhai interpreter, %px on the engines",
    };
    println!("mpx console: cluster {} with {n} engines; {lines}. %help for help.", client.cluster_id());
    let comm = LocalWorld::new(1).pop().expect("a world of one");
    let local = Interpreter::new(Box::new(comm), Registry::new(), Arc::new(AtomicBool::new(false)));
    let console = Rc::new(RefCell::new(Console {
        cluster_arg: args.cluster_id,
        client,
        connected_as,
        broken: false,
        kernel,
        targets: Targets::All,
        timeout: Duration::from_secs_f64(args.timeout.max(0.001)),
        autopx,
        local,
        names: None,
        attributes: HashMap::new(),
        unfinished: Vec::new(),
        defined: BTreeSet::new(),
    }));
    // Tab completes the common prefix; a second Tab lists the candidates (as bash does).
    let config = Config::builder()
        .max_history_size(HISTORY_SIZE)?
        .auto_add_history(false)
        .completion_type(CompletionType::List)
        .build();
    let mut editor: Editor<ConsoleHelper, FileHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(ConsoleHelper::new(console.clone())));
    let history = files::mpx_home().join("console_history");
    if history.is_file() {
        if let Err(e) = editor.load_history(&history) {
            tracing::warn!("cannot read the history {}: {e}", history.display());
        }
    }
    // On a terminal the editor joins the lines of a cell (its validator); from a pipe the
    // lines come one by one and are joined here by the same rule.
    let mut buffer = String::new();
    loop {
        let prompt = match (buffer.is_empty(), console.borrow().autopx) {
            (false, _) => "...: ",
            (true, true) => "[px]> ",
            (true, false) => "mpx> ",
        };
        match editor.readline(prompt) {
            Ok(line) => {
                buffer.push_str(&line);
                let needs_more = editor.helper().is_some_and(|h| h.needs_more(&buffer));
                buffer.push('\n');
                if needs_more {
                    continue;
                }
                let input = std::mem::take(&mut buffer);
                if !input.trim().is_empty() {
                    let _ = editor.add_history_entry(input.trim_end());
                    if let Err(e) = std::fs::create_dir_all(files::mpx_home())
                        .map_err(ReadlineError::from)
                        .and_then(|()| editor.append_history(&history))
                    {
                        tracing::warn!("cannot save the history {}: {e}", history.display());
                    }
                }
                if !console.borrow_mut().line(&input) {
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
