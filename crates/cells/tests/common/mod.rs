//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::{
    sync::{atomic::AtomicBool, Arc},
    thread,
};

use mpx_cells::{local::LocalWorld, CellOutcome, Interpreter, Registry};

/// A single-rank interpreter.
pub fn interp() -> Interpreter {
    let comm = LocalWorld::new(1).pop().expect("one rank");
    Interpreter::new(Box::new(comm), Registry::new(), Arc::new(AtomicBool::new(false)))
}

/// Runs `code`, asserting it succeeded.
pub fn ok(i: &mut Interpreter, code: &str) -> CellOutcome {
    let out = i.execute(code);
    assert!(out.error.is_none(), "cell {code:?} failed: {:?}", out.error);
    out
}

/// The Out value of a cell that must succeed.
pub fn value(i: &mut Interpreter, code: &str) -> String {
    ok(i, code).value.unwrap_or_else(|| panic!("cell {code:?} has no value"))
}

/// Runs the same cells on every rank of an `n`-rank local world, one thread per rank, and
/// returns each rank's outcomes plus what `after` extracted from its interpreter.
pub fn run_world<T: Send + 'static>(
    n: usize,
    cells: &[&str],
    after: fn(&Interpreter) -> T,
) -> Vec<(Vec<CellOutcome>, T)> {
    let handles: Vec<_> = LocalWorld::new(n)
        .into_iter()
        .map(|comm| {
            let cells: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
            thread::spawn(move || {
                let mut i =
                    Interpreter::new(Box::new(comm), Registry::new(), Arc::new(AtomicBool::new(false)));
                let outs = cells.iter().map(|c| i.execute(c)).collect();
                let extra = after(&i);
                (outs, extra)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("rank thread panicked")).collect()
}
