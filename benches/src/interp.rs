//! The `.interp` rows: rows of the embedding engine (the `mpx-engine` binary, which embeds the
//! libpython it was built against) measured again with the engines in the user's interpreter
//! (`mpx cluster start --python PATH`: `PATH -m mpx.engine`, the same Rust engine in the `mpx`
//! package's extension module). Each one's floor is its embedding row of the same run, and its
//! goal is to be within 10 % of it (issue 23: "the in-interpreter engine within 10 % of the
//! embedding one").
//!
//! `push80M.interp` and `pull80M.interp` are the TCP-path rows again (a client over TCP, see
//! [`crate::data::Path`]): the path `push80M` and `pull80M` took when the `.interp` rows were
//! introduced (before the same-host path), so their figures stay comparable with those of
//! then. The same-host `.shm` rows have no `.interp` twins.
//!
//! Only one cluster runs at a time, so the two modes cannot be measured at once; the VM is
//! noisy over seconds to minutes. Each group of rows is therefore followed at once by its
//! `.interp` rows ([`with_interp`]): `rtt1`, `rttN`, `psum`, then `rtt1.interp`, `psum.interp`;
//! `push80M`, `pull80M`, then `push80M.interp`, `pull80M.interp`; `start`, then `start.interp`.
//! A pair is a few seconds apart, both sides run on a cluster started for them in the same
//! way (after the same warm-up), and a group costs one switch of clusters each way instead of
//! one per row (a switch is a stop and a start: about a second). Even so, one pass of each
//! side can land in a quiet minute for one and a busy one for the other (`push80M.interp`
//! measured 0.87x and 1.17x of `push80M` in two runs ten minutes apart): when the run has an
//! interpreter, the pairs are measured in alternating rounds (`--paired-rounds`, default 3; see
//! [`crate::rounds`]) and each side reported over its rounds.

use crate::{
    cluster::EngineMode,
    rows::{Goal, Row},
};

/// The embedding rows that have a `.interp` row.
pub const PAIRED: [&str; 5] = ["rtt1", "psum", "push80M", "pull80M", "start"];

/// Whether `name` is a row of an engine-mode pair: one of [`PAIRED`] or its `.interp` row
/// (`mpx-bench --paired-rounds` measures these in alternating rounds, see [`crate::rounds`]).
pub fn is_paired(name: &str) -> bool {
    PAIRED.contains(&name.strip_suffix(".interp").unwrap_or(name))
}

/// The goal of every `.interp` row: its median at most 1.1 times its embedding row's.
pub const GOAL: Goal = Goal::RatioAtMost(1.1);

/// `base` (an embedding row) measured with the engines in the user's interpreter: named
/// `NAME.interp`, its floor the row `NAME` of the same run, pending when the run has no
/// interpreter (see [`crate::ctx::Ctx::in_interpreter`]).
pub fn interp_row(base: Row) -> Row {
    let mpx = base.mpx;
    Row {
        name: EngineMode::Interpreter.row_name(&base.name),
        operation: format!(
            "{}; engines in the user's interpreter (`mpx cluster start --python PATH`: `PATH -m mpx.engine`)",
            base.operation
        ),
        floor_definition: format!("row `{}` of this run (the embedding engine, `mpx-engine`)", base.name),
        mpx: Box::new(move |ctx| ctx.in_interpreter(|ctx| mpx(ctx))),
        floor: Box::new(|_| None),
        floor_row: Some(base.name),
        goal: GOAL,
        bytes: base.bytes,
        references: Vec::new(),
        floor_with_relay: None,
    }
}

/// The rows `make` builds, with the `.interp` rows of those in [`PAIRED`] right after the last
/// of them (`make` is called twice: a row's measuring function cannot be copied).
pub fn with_interp(make: impl Fn() -> Vec<Row>) -> Vec<Row> {
    let paired = |r: &Row| PAIRED.contains(&r.name.as_str());
    let mut rows = make();
    let copies: Vec<Row> = make().into_iter().filter(paired).map(interp_row).collect();
    let at = rows.iter().rposition(paired).map_or(rows.len(), |i| i + 1);
    rows.splice(at..at, copies);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::rows;

    #[test]
    fn the_pairs_are_the_paired_rows_and_their_interp_rows() {
        assert!(is_paired("push80M") && is_paired("push80M.interp") && is_paired("start.interp"));
        assert!(!is_paired("push80M.shm") && !is_paired("rtt1.rhai") && !is_paired("rttN"));
    }

    #[test]
    fn every_paired_row_has_its_interp_row_after_it() {
        let rows = rows();
        let at = |name: &str| rows.iter().position(|r| r.name == name);
        for name in PAIRED {
            let base = at(name).unwrap_or_else(|| panic!("no row {name}"));
            let interp = at(&format!("{name}.interp")).unwrap_or_else(|| panic!("no row {name}.interp"));
            assert!(base < interp, "{name}.interp runs before {name}");
            let row = &rows[interp];
            assert_eq!(row.floor_row.as_deref(), Some(name));
            assert!(matches!(row.goal, Goal::RatioAtMost(k) if k == 1.1), "{name}.interp");
            assert_eq!(row.bytes, rows[base].bytes, "{name}.interp");
        }
        assert_eq!(rows.iter().filter(|r| r.name.ends_with(".interp")).count(), PAIRED.len());
    }

    #[test]
    fn interp_rows_follow_their_group() {
        let names: Vec<String> = rows().into_iter().map(|r| r.name).collect();
        let next = |name: &str| {
            let i = names.iter().position(|n| n == name).expect("row");
            names[i + 1].clone()
        };
        assert_eq!(next("psum"), "rtt1.interp");
        assert_eq!(next("rtt1.interp"), "psum.interp");
        assert_eq!(next("pull80M"), "push80M.interp");
        assert_eq!(next("push80M.interp"), "pull80M.interp");
        assert_eq!(next("start"), "start.interp");
    }
}
