//! The module tree of a crate (which file holds which module) and the module paths each file
//! names, resolved in that tree: see the [parent module](super) for the rules.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use super::lex::{Tok, Token};

/// One module of the tree: the file it lives in and its child modules.
#[derive(Debug)]
pub struct Module {
    /// Relative to `src`.
    pub file: String,
    /// The names of its child modules.
    pub children: BTreeSet<String>,
}

/// Module path (from the root, no `crate`) → module.
pub type Tree = BTreeMap<Vec<String>, Module>;

/// Adds the module kept in `file` at `path`, its inline modules and (recursively) the files of
/// its `mod name;` declarations.
pub fn build_tree(
    src: &Path,
    sources: &BTreeMap<String, Vec<Token>>,
    file: &str,
    path: Vec<String>,
    tree: &mut Tree,
    missing: &mut Vec<String>,
) {
    if tree.contains_key(&path) {
        return;
    }
    let Some(tokens) = sources.get(file) else {
        missing.push(format!("{file} (module {})", path.join("::")));
        return;
    };
    tree.insert(path.clone(), Module { file: file.to_string(), children: BTreeSet::new() });
    // Where `mod name;` looks: the file's directory, or `dir/stem/` for a non-mod-rs file.
    let file_path = Path::new(file);
    let dir = file_path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = file_path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let is_root = path.is_empty();
    let mod_rs = name == "mod.rs" || is_root;
    let child_dir = if mod_rs { dir.clone() } else { dir.join(file_path.file_stem().unwrap_or_default()) };
    let mut inline: Vec<Option<String>> = Vec::new(); // one per open brace
    let mut pending_inline: Option<String> = None;
    let mut path_attr: Option<String> = None;
    let mut i = 0;
    while i < tokens.len() {
        let here: Vec<String> = path.iter().cloned().chain(inline.iter().flatten().cloned()).collect();
        match &tokens[i].tok {
            Tok::Punct('#') if is_path_attr(&tokens[i..]) => {
                if let Tok::Str(s) = &tokens[i + 4].tok {
                    path_attr = Some(s.clone());
                }
                i += 6;
                continue;
            }
            Tok::Ident(k) if k == "mod" => {
                if let (Some(Tok::Ident(child)), Some(next)) =
                    (tokens.get(i + 1).map(|t| &t.tok), tokens.get(i + 2).map(|t| &t.tok))
                {
                    let mut child_path = here.clone();
                    child_path.push(child.clone());
                    if let Some(m) = tree.get_mut(&here) {
                        m.children.insert(child.clone());
                    }
                    if *next == Tok::Punct('{') {
                        tree.insert(child_path, Module { file: file.to_string(), children: BTreeSet::new() });
                        pending_inline = Some(child.clone());
                    } else if *next == Tok::Punct(';') {
                        let inline_dirs: PathBuf = inline.iter().flatten().collect();
                        let candidates = match path_attr.take() {
                            Some(p) if inline.iter().all(Option::is_none) => vec![dir.join(p)],
                            Some(p) => vec![child_dir.join(&inline_dirs).join(p)],
                            None => {
                                let d = child_dir.join(&inline_dirs);
                                vec![d.join(format!("{child}.rs")), d.join(child).join("mod.rs")]
                            }
                        };
                        let found = candidates.iter().find(|c| src.join(c).is_file());
                        match found {
                            Some(c) => {
                                let c = normalize(c);
                                build_tree(src, sources, &c, child_path, tree, missing);
                            }
                            None => {
                                missing.push(format!("{file}: mod {child}; ({})", candidates[0].display()))
                            }
                        }
                    }
                    i += 2;
                    continue;
                }
            }
            Tok::Punct('{') => inline.push(pending_inline.take()),
            Tok::Punct('}') => {
                inline.pop();
                path_attr = None;
            }
            Tok::Punct(';') => path_attr = None,
            _ => {}
        }
        i += 1;
    }
}

/// `# [ path = "…" ]`
fn is_path_attr(t: &[Token]) -> bool {
    t.len() >= 6
        && t[1].tok == Tok::Punct('[')
        && t[2].tok == Tok::Ident("path".into())
        && t[3].tok == Tok::Punct('=')
        && matches!(t[4].tok, Tok::Str(_))
        && t[5].tok == Tok::Punct(']')
}

/// Resolves `..` and `.` in a relative path.
fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c.as_os_str().to_str().unwrap_or("") {
            "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s.to_string()),
        }
    }
    parts.join("/")
}

/// Every module path named in a file whose own module is `base`: (line, target module, text).
pub fn file_imports(tokens: &[Token], base: &[String], tree: &Tree) -> Vec<(usize, Vec<String>, String)> {
    let mut out = Vec::new();
    let mut inline: Vec<Option<String>> = Vec::new();
    let mut pending_inline: Option<String> = None;
    let mut i = 0;
    while i < tokens.len() {
        let here: Vec<String> = base.iter().cloned().chain(inline.iter().flatten().cloned()).collect();
        let after_sep_or_dot = i > 0 && matches!(tokens[i - 1].tok, Tok::PathSep | Tok::Punct('.'));
        match &tokens[i].tok {
            Tok::Ident(k) if k == "mod" => {
                if let (Some(Tok::Ident(child)), Some(Tok::Punct('{'))) =
                    (tokens.get(i + 1).map(|t| &t.tok), tokens.get(i + 2).map(|t| &t.tok))
                {
                    pending_inline = Some(child.clone());
                }
            }
            Tok::Ident(k) if k == "use" && !after_sep_or_dot => {
                let line = tokens[i].line;
                let mut paths = Vec::new();
                i += 1;
                use_tree(tokens, &mut i, Vec::new(), &mut paths);
                for p in paths {
                    if let Some(target) = resolve(&here, &p, tree) {
                        out.push((line, target, p.join("::")));
                    }
                }
                continue;
            }
            Tok::Ident(first)
                if !after_sep_or_dot && tokens.get(i + 1).map(|t| &t.tok) == Some(&Tok::PathSep) =>
            {
                let starts_path = ["crate", "super", "self"].contains(&first.as_str())
                    || tree.get(&here).is_some_and(|m| m.children.contains(first));
                if starts_path {
                    let line = tokens[i].line;
                    let mut p = vec![first.clone()];
                    let mut j = i + 1;
                    while tokens.get(j).map(|t| &t.tok) == Some(&Tok::PathSep) {
                        match tokens.get(j + 1).map(|t| &t.tok) {
                            Some(Tok::Ident(s)) => p.push(s.clone()),
                            _ => break,
                        }
                        j += 2;
                    }
                    if let Some(target) = resolve(&here, &p, tree) {
                        out.push((line, target, p.join("::")));
                    }
                    i = j;
                    continue;
                }
            }
            Tok::Punct('{') => inline.push(pending_inline.take()),
            Tok::Punct('}') => {
                inline.pop();
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads one use tree from `tokens[*i]` on (up to and including its `;` at the top), pushing
/// each leaf path (`prefix` + its segments; a glob's is its prefix).
fn use_tree(tokens: &[Token], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        match tokens.get(*i).map(|t| &t.tok) {
            Some(Tok::PathSep) if path.is_empty() => {
                path.push("::".into()); // `::std::…`: another crate
                *i += 1;
            }
            Some(Tok::Ident(s)) if s == "as" => {
                *i += 2; // `as name`
            }
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                *i += 1;
                if tokens.get(*i).map(|t| &t.tok) == Some(&Tok::PathSep) {
                    *i += 1;
                }
            }
            Some(Tok::Punct('{')) => {
                *i += 1;
                loop {
                    match tokens.get(*i).map(|t| &t.tok) {
                        None => return,
                        Some(Tok::Punct('}')) => {
                            *i += 1;
                            break;
                        }
                        Some(Tok::Punct(',')) => *i += 1,
                        _ => use_tree(tokens, i, path.clone(), out),
                    }
                }
                if tokens.get(*i).map(|t| &t.tok) == Some(&Tok::Punct(';')) {
                    *i += 1;
                }
                return;
            }
            Some(Tok::Punct('*')) => {
                *i += 1;
            }
            Some(Tok::Punct(';')) => {
                *i += 1;
                out.push(path);
                return;
            }
            _ => {
                // `,` or `}` of the enclosing group (left for it), or the end.
                out.push(path);
                return;
            }
        }
    }
}

/// The module a path names (as far as its segments name modules), seen from module `here`;
/// `None` for a path into another crate.
fn resolve(here: &[String], path: &[String], tree: &Tree) -> Option<Vec<String>> {
    let mut at: Vec<String> = match path.first()?.as_str() {
        "crate" => Vec::new(),
        "self" | "super" => here.to_vec(),
        first if tree.get(here).is_some_and(|m| m.children.contains(first)) => here.to_vec(),
        _ => return None,
    };
    let skip_first = path[0] == "crate" || path[0] == "self";
    for seg in &path[usize::from(skip_first)..] {
        match seg.as_str() {
            "super" => {
                at.pop()?;
            }
            "self" => {}
            s if tree.get(&at).is_some_and(|m| m.children.contains(s)) => at.push(s.to_string()),
            _ => break,
        }
    }
    tree.contains_key(&at).then_some(at)
}
