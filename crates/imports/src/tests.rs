//! The checker on tiny synthetic crates written to a temporary directory.

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::import_graph;

/// A fresh directory holding `files` (path, text); removed on drop.
struct Crate(PathBuf);

impl Crate {
    fn new(name: &str, files: &[(&str, &str)]) -> Self {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("mpx-imports-{name}-{}-{nanos}", std::process::id()));
        for (path, text) in files {
            let p = dir.join(path);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, text).expect("write");
        }
        Crate(dir)
    }

    fn src(&self) -> &Path {
        &self.0
    }
}

impl Drop for Crate {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn imported(c: &Crate, from: &str) -> Vec<String> {
    let g = import_graph(c.src()).expect("graph");
    g.edges.get(from).map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn finds_a_circle_between_two_files() {
    let c = Crate::new(
        "two",
        &[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::B;\npub struct A(B);\n"),
            ("b.rs", "pub struct B;\npub fn f(_: crate::a::A) {}\n"),
        ],
    );
    let g = import_graph(c.src()).expect("graph");
    assert_eq!(g.cycles(), vec![vec!["a.rs".to_string(), "b.rs".to_string()]]);
    let text = g.describe(&g.cycles()[0]);
    assert!(text.contains("a.rs -> b.rs   (line 1: crate::b::B)"), "{text}");
    assert!(text.contains("b.rs -> a.rs   (line 2: crate::a::A)"), "{text}");
    let err = super::check_no_import_cycles(c.src()).expect_err("the check must fail on a circle");
    assert!(matches!(err, super::ImportError::Circle { .. }), "{err}");
    let err = err.to_string();
    assert!(err.contains("import in a circle") && err.contains("a.rs -> b.rs"), "{err}");
}

#[test]
fn finds_a_circle_through_a_parent_mod_rs_and_lib_rs() {
    let c = Crate::new(
        "parent",
        &[
            ("lib.rs", "pub mod w;\npub mod e;\npub use e::Error;\n"),
            ("w/mod.rs", "mod kid;\npub use kid::Kid;\npub struct W;\n"),
            ("w/kid.rs", "use super::{W, other::{self}};\npub struct Kid;\n"),
            ("e.rs", "pub struct Error;\nfn f() -> crate::Error { todo!() }\n"),
        ],
    );
    let g = import_graph(c.src()).expect("graph");
    let cycles = g.cycles();
    // w/mod.rs ↔ w/kid.rs; e.rs → lib.rs → e.rs (lib.rs re-exports `e`).
    assert_eq!(cycles.len(), 2, "{cycles:?}\n{}", g.render());
    assert!(cycles.contains(&vec!["e.rs".to_string(), "lib.rs".to_string()]), "{cycles:?}");
    assert!(cycles.contains(&vec!["w/kid.rs".to_string(), "w/mod.rs".to_string()]), "{cycles:?}");
}

#[test]
fn resolves_paths_to_the_files_that_hold_them() {
    let c = Crate::new(
        "paths",
        &[
            ("lib.rs", "pub mod w;\npub mod top;\n#[path = \"elsewhere/odd.rs\"]\nmod odd;\n"),
            ("w/mod.rs", "pub mod data;\npub mod imp;\npub mod ids;\npub use data::Data;\npub struct W(ids::Id);\n"),
            ("w/ids.rs", "pub type Id = u64;\n"),
            ("w/data.rs", "use super::ids::Id;\npub struct Data(Id);\n"),
            ("w/imp.rs", "use super::{data::Data, W};\nimpl W { fn d(&self) -> Data { super::data::Data(self::x()) } }\n"),
            ("top.rs", "pub mod inner;\nfn f() { let _ = crate::w::ids::Id::default(); inner::g(); }\n"),
            ("top/inner.rs", "pub fn g() { super::super::w::data::Data(1); }\n"),
            ("elsewhere/odd.rs", "use crate::top;\n"),
        ],
    );
    let g = import_graph(c.src()).expect("graph");
    assert!(g.unreached.is_empty() && g.missing.is_empty(), "{g:?}");
    assert!(g.cycles().is_empty(), "{:?}", g.cycles());
    assert_eq!(imported(&c, "w/mod.rs"), ["w/data.rs", "w/ids.rs"]);
    assert_eq!(imported(&c, "w/data.rs"), ["w/ids.rs"]);
    assert_eq!(imported(&c, "w/imp.rs"), ["w/data.rs", "w/mod.rs"]);
    assert_eq!(imported(&c, "top.rs"), ["top/inner.rs", "w/ids.rs"]);
    assert_eq!(imported(&c, "top/inner.rs"), ["w/data.rs"]);
    assert_eq!(imported(&c, "elsewhere/odd.rs"), ["top.rs"]);
    assert!(imported(&c, "lib.rs").is_empty(), "`mod x;` alone is no import");
    super::assert_no_import_cycles(c.src());
}

#[test]
fn ignores_comments_strings_own_tests_and_other_crates() {
    let c = Crate::new(
        "noise",
        &[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            (
                "a.rs",
                "//! See [`B`](crate::b::B).\n\
                 /* use crate::b; /* nested */ crate::b::B */\n\
                 const S: &str = \"crate::b::B\";\n\
                 const R: &str = r#\"use crate::b;\"#;\n\
                 const C: char = '\"';\n\
                 fn f<'a>(x: &'a str) -> &'a str { x }\n\
                 use std::collections::HashMap;\n\
                 use ::std::fmt;\n\
                 pub struct A;\n\
                 #[cfg(test)]\nmod tests {\n    use super::*;\n    use self::inner::X;\n    mod inner { pub struct X; }\n}\n",
            ),
            ("b.rs", "use crate::a::A;\npub struct B(A);\n"),
        ],
    );
    let g = import_graph(c.src()).expect("graph");
    assert!(imported(&c, "a.rs").is_empty(), "{}", g.render());
    assert_eq!(imported(&c, "b.rs"), ["a.rs"]);
    assert!(g.cycles().is_empty());
}

#[test]
fn reports_files_no_root_reaches() {
    let c = Crate::new("orphan", &[("lib.rs", "mod a;\n"), ("a.rs", ""), ("lost.rs", "use crate::a;\n")]);
    let g = import_graph(c.src()).expect("graph");
    assert_eq!(g.unreached.iter().collect::<Vec<_>>(), ["lost.rs"]);
    let err = super::check_no_import_cycles(c.src()).expect_err("an unreached file fails the check");
    assert!(matches!(err, super::ImportError::Unreached(_)), "{err}");
    let err = err.to_string();
    assert!(err.contains("lost.rs"), "{err}");
}
