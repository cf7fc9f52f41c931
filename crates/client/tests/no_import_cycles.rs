//! No import circle among the files of `crates/client/src` (issue 25): see `mpx_imports` for
//! what counts as an import and how paths resolve to files.

#[test]
fn client_files_import_no_circle() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    mpx_imports::assert_no_import_cycles(&src);
}
