//! Who imports whom among the files of a crate's `src`, and whether that graph has a circle
//! (issue 25). A dev-dependency of the crates whose tests keep their graph free of circles
//! (`tests/no_import_cycles.rs` in `mpx-controller` and `mpx-client`).
//!
//! # What counts as an import
//! An edge goes from file A to file B when A names a path that resolves to a module kept in B:
//! - in a `use` item (every leaf of its tree: `use super::{a::X, b::{self, Y}}`), anywhere in
//!   the file (function bodies too);
//! - in code: a path that starts with `crate::`, `$crate::`, `super::` or `self::`, or with the
//!   name of a child module of the current module (`history::History` in `world/mod.rs`).
//!
//! The declaration `mod child;` alone is not an import, nor are comments (doc links
//! included), string and char literals, or paths to other crates.
//!
//! # How a path resolves to a file
//! The module tree is read from the crate roots (`lib.rs`, `main.rs`, `bin/*.rs`) through
//! `mod name;` declarations (`dir/name.rs` or `dir/name/mod.rs`, `#[path]` honoured) and inline
//! `mod name { … }` blocks (which live in their file). A path starts at the current module
//! (`self`), its parent (`super`), the root (`crate`) or a child, then descends while its
//! segments name modules; the module where it stops is the target, and the target's file is
//! the file it is declared in (an inline module's file is its parent's). So `super::Command`
//! in `world/balanced.rs` is an import of `world/mod.rs` (even when `mod.rs` only re-exports
//! `Command`), and `super::command::Command` one of `world/command.rs`. An edge from a file to
//! itself (`use super::*` in a `mod tests { … }` block) is left out.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// Why a crate's import graph could not be read, or what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The directory has no crate root.
    #[error("{}: no lib.rs, main.rs or bin/*.rs", .0.display())]
    NoRoot(PathBuf),
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Files that no crate root reaches (they could not be checked).
    #[error("files no crate root reaches (not checked): {0:?}")]
    Unreached(BTreeSet<String>),
    /// Files that import each other in a circle.
    #[error("files of {} import in a circle:\n{cycles}", src.display())]
    Circle {
        /// The crate's `src`.
        src: PathBuf,
        /// Each circle, with the lines behind each step.
        cycles: String,
    },
}

mod lex;
#[cfg(test)]
mod tests;
mod tree;

use lex::lex;
use tree::{build_tree, file_imports, Tree};

/// The file-level import graph of one crate's `src` directory.
#[derive(Debug, Default)]
pub struct ImportGraph {
    /// Every `.rs` file under `src`, relative to it (`world/mod.rs`).
    pub files: BTreeSet<String>,
    /// By importing file, by imported file: where (`line 12: super::command::Command`).
    pub edges: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Files under `src` that no crate root reaches through `mod` declarations (not checked).
    pub unreached: BTreeSet<String>,
    /// `mod name;` declarations whose file does not exist (cfg'd-out modules, typically).
    pub missing: Vec<String>,
}

/// Reads every `.rs` file under `src` and builds its import graph.
///
/// # Errors
/// A file that cannot be read, or a `src` without a crate root.
pub fn import_graph(src: &Path) -> Result<ImportGraph, ImportError> {
    let mut graph = ImportGraph::default();
    let mut all = Vec::new();
    rs_files(src, &mut all)?;
    for f in &all {
        graph.files.insert(rel(src, f));
    }
    let roots = crate_roots(src);
    if roots.is_empty() {
        return Err(ImportError::NoRoot(src.to_path_buf()));
    }
    let mut sources = BTreeMap::new();
    for f in &all {
        let text = fs::read_to_string(f).map_err(|source| ImportError::Read { path: f.clone(), source })?;
        sources.insert(rel(src, f), lex(&text));
    }
    let mut reached = BTreeSet::new();
    for root in roots {
        let mut tree = Tree::new();
        let root = rel(src, &root);
        build_tree(src, &sources, &root, Vec::new(), &mut tree, &mut graph.missing);
        for (path, module) in &tree {
            // Each file once, starting from the module it is the file of.
            if reached.insert((root.clone(), module.file.clone())) {
                let base = path[..path.len() - file_depth(&tree, path)].to_vec();
                let tokens = &sources[&module.file];
                for (line, target, text) in file_imports(tokens, &base, &tree) {
                    let to = &tree[&target].file;
                    if *to != module.file {
                        let at = graph.edges.entry(module.file.clone()).or_default();
                        at.entry(to.clone()).or_default().push(format!("line {line}: {text}"));
                    }
                }
            }
        }
    }
    let reached: BTreeSet<&String> = reached.iter().map(|(_, f)| f).collect();
    graph.unreached = graph.files.iter().filter(|f| !reached.contains(f)).cloned().collect();
    Ok(graph)
}

/// How many trailing segments of `path` are inline modules of its file (0 for a file's module).
fn file_depth(tree: &Tree, path: &[String]) -> usize {
    let file = &tree[path].file;
    let mut n = 0;
    while n < path.len() && tree[&path[..path.len() - n - 1]].file == *file {
        n += 1;
    }
    n
}

impl ImportGraph {
    /// Every circle: one per strongly connected group of files, each a list of files where each
    /// imports the next and the last the first.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for group in self.tangles() {
            // The shortest way from the group's first file back to it, inside the group.
            let start = group[0].clone();
            let mut prev: BTreeMap<String, String> = BTreeMap::new();
            let mut queue = std::collections::VecDeque::from([start.clone()]);
            'search: while let Some(f) = queue.pop_front() {
                for g in self.imports_of(&f) {
                    if !group.contains(&g) || prev.contains_key(&g) {
                        continue;
                    }
                    prev.insert(g.clone(), f.clone());
                    if g == start {
                        break 'search;
                    }
                    queue.push_back(g);
                }
            }
            let mut cycle = vec![start.clone()];
            let mut at = prev[&start].clone();
            while at != start {
                cycle.push(at.clone());
                at = prev[&at].clone();
            }
            cycle[1..].reverse();
            out.push(cycle);
        }
        out
    }

    /// The groups of files that import each other (through others, maybe): every file of a
    /// group reaches every other. Each sorted; only groups of two files or more.
    pub fn tangles(&self) -> Vec<Vec<String>> {
        let succ = |f: &String| self.imports_of(f);
        strongly_connected(&self.files, &succ).into_iter().filter(|g| g.len() > 1).collect()
    }

    /// The files `file` imports.
    pub fn imports_of(&self, file: &str) -> Vec<String> {
        self.edges.get(file).map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// A circle written out with the import behind each step.
    pub fn describe(&self, cycle: &[String]) -> String {
        let mut s = String::new();
        for (i, f) in cycle.iter().enumerate() {
            let next = &cycle[(i + 1) % cycle.len()];
            let why = &self.edges[f][next];
            s += &format!("  {f} -> {next}   ({})\n", why.join("; "));
        }
        s
    }

    /// Who imports whom: one line per file, `file -> a.rs, b.rs`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for f in &self.files {
            let to: Vec<&str> =
                self.edges.get(f).map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
            s += &format!("{f} -> {}\n", if to.is_empty() { "(nothing)".into() } else { to.join(", ") });
        }
        s
    }
}

/// `src`'s import graph if it has no circle (and every file under `src` is reached from a
/// crate root, as one that is not could not be checked).
///
/// # Errors
/// Every circle, each step with the imports behind it; unreached files; unreadable files.
pub fn check_no_import_cycles(src: &Path) -> Result<ImportGraph, ImportError> {
    let graph = import_graph(src)?;
    if !graph.unreached.is_empty() {
        return Err(ImportError::Unreached(graph.unreached.clone()));
    }
    let cycles = graph.cycles();
    if !cycles.is_empty() {
        let tangles = graph.tangles();
        let text: Vec<String> = cycles
            .iter()
            .zip(&tangles)
            .map(|(c, t)| {
                format!(
                    "{} files import each other: {}; one circle:\n{}",
                    t.len(),
                    t.join(", "),
                    graph.describe(c)
                )
            })
            .collect();
        return Err(ImportError::Circle { src: src.to_path_buf(), cycles: text.join("\n") });
    }
    Ok(graph)
}

/// Panics with [`check_no_import_cycles`]'s report if `src`'s files import in a circle; prints
/// who imports whom otherwise (`cargo test -- --nocapture` shows it).
pub fn assert_no_import_cycles(src: &Path) {
    match check_no_import_cycles(src) {
        Ok(graph) => println!("{}", graph.render()),
        Err(e) => panic!("{e}"),
    }
}

/// Tarjan's strongly connected components, each sorted.
fn strongly_connected(nodes: &BTreeSet<String>, succ: &dyn Fn(&String) -> Vec<String>) -> Vec<Vec<String>> {
    struct State {
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on_stack: BTreeSet<String>,
        out: Vec<Vec<String>>,
    }
    fn visit(v: &String, st: &mut State, succ: &dyn Fn(&String) -> Vec<String>) {
        let i = st.index.len();
        st.index.insert(v.clone(), i);
        st.low.insert(v.clone(), i);
        st.stack.push(v.clone());
        st.on_stack.insert(v.clone());
        for w in succ(v) {
            if !st.index.contains_key(&w) {
                visit(&w, st, succ);
                let low = st.low[v].min(st.low[&w]);
                st.low.insert(v.clone(), low);
            } else if st.on_stack.contains(&w) {
                let low = st.low[v].min(st.index[&w]);
                st.low.insert(v.clone(), low);
            }
        }
        if st.low[v] == st.index[v] {
            let mut group = Vec::new();
            loop {
                let w = st.stack.pop().expect("tarjan stack");
                st.on_stack.remove(&w);
                let done = w == *v;
                group.push(w);
                if done {
                    break;
                }
            }
            group.sort();
            st.out.push(group);
        }
    }
    let mut st = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !st.index.contains_key(v) {
            visit(v, &mut st, succ);
        }
    }
    st.out
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    let entries =
        fs::read_dir(dir).map_err(|source| ImportError::Read { path: dir.to_path_buf(), source })?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            rs_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

fn rel(src: &Path, file: &Path) -> String {
    file.strip_prefix(src).unwrap_or(file).to_string_lossy().replace('\\', "/")
}

fn crate_roots(src: &Path) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> =
        ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).filter(|p| p.is_file()).collect();
    if let Ok(entries) = fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .map(|p| if p.is_dir() { p.join("main.rs") } else { p })
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "rs"))
            .collect();
        bins.sort();
        roots.extend(bins);
    }
    roots
}
