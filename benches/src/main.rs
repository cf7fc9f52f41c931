//! `mpx-bench`: runs every row of the mpx benchmark and its floor in one run, prints the table
//! and writes `target/mpx-bench.json`. Use `scripts/bench.sh [--quick]`.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{Context, Result};
use clap::Parser;
use mpx_benches::{
    cleanup,
    ctx::{Ctx, NO_PYTHON},
    floors::Floors,
    interp,
    report::{utc_now, Machine, Report, RowResult},
    rounds::merge,
    rows::{rows, Measured, Row},
    stats::fmt_secs,
    Config,
};

/// Benchmarks mpx against its floors (TCP loopback, raw MPI, mpirun) on this machine.
#[derive(Parser)]
struct Args {
    /// A smoke run: 20 latency samples, 5 per 8 MB and 2 per 80 MB move, 3 start/stop cycles per
    /// kernel (figures are rough).
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/mpx-bench.json")]
    out: PathBuf,
    /// The commit being measured (recorded in the JSON).
    #[arg(long, default_value = "unknown")]
    commit: String,
    /// Only these rows (comma-separated names); the floors are always measured, and so are the
    /// rows that are the floors of those named (`rtt1` for `rtt1.interp`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The Python interpreter of the `.interp` rows' engines (`mpx cluster start --python
    /// PATH`; its environment must have the mpx package). Without it those rows are pending.
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Measure the selected rows this many times, in their order each time, and report each
    /// row over its rounds (median of the rounds' medians; see `benches/src/rounds.rs`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Rounds of the rows compared across engine modes (`rtt1` and `rtt1.interp`, ...: the
    /// `.interp` rows and their embedding rows), when they are more than `--rounds`: the two
    /// modes then alternate, so the machine's drift reaches both alike.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    paired_rounds: u32,
    /// Directory holding mpx, mpx-engine and mpx-bench-mpi (default: this binary's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Testing the cleanup: panic right after this row (its cluster still running).
    #[arg(long, hide = true)]
    panic_after: Option<String>,
}

fn main() -> Result<()> {
    cleanup::install().context("cannot install the cleanup handlers")?;
    // A private $MPX_HOME for this run's clusters.
    let home = std::env::temp_dir().join(format!("mpx-bench-{}", std::process::id()));
    let home_guard = cleanup::register(cleanup::Resource::Dir(home.clone()));
    let result = run(Args::parse(), &home);
    // On every path: end whatever is left, newest first, the home last (or wait for a
    // signal's cleanup to finish).
    cleanup::finish();
    drop(home_guard);
    result
}

fn run(args: Args, home: &Path) -> Result<()> {
    let t0 = Instant::now();
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?.parent().context("binary directory")?.to_path_buf(),
    };
    for bin in ["mpx", "mpx-engine", "mpx-bench-mpi"] {
        anyhow::ensure!(bin_dir.join(bin).is_file(), "{bin} is not built in {}", bin_dir.display());
    }
    if let Some(python) = &args.python {
        check_python(python, &bin_dir.join("mpx-engine"))?;
    }
    let all_rows = rows();
    let selected = selected(&all_rows, &args.only)?;
    std::fs::create_dir_all(home)?;
    let mut cfg = Config::new(args.quick, bin_dir, home.to_path_buf());
    cfg.python = args.python.clone();
    let machine = Machine::describe();
    let date = utc_now();
    eprintln!(
        "mpx-bench{}: {} latency samples ({} warm-up), {} per 8 MB move ({} warm-up), {} per 80 MB \
         move, {} start/stop cycles per kernel; {} CPUs, {}, load {}",
        if cfg.quick { " --quick (rough figures)" } else { "" },
        cfg.latency_samples,
        cfg.latency_warmup,
        cfg.medium_samples,
        cfg.medium_warmup,
        cfg.big_samples,
        cfg.lifecycle_samples,
        machine.nproc,
        machine.cpu,
        machine.loadavg_at_start
    );
    match &cfg.python {
        Some(p) => eprintln!("  .interp rows: engines in {} (-m mpx.engine)", p.display()),
        None => eprintln!("  .interp rows {NO_PYTHON}"),
    }

    let step = |what: &str| {
        eprint!("  {what} ...");
        let _ = std::io::stderr().flush();
        Instant::now()
    };
    let done = |t: Instant| eprintln!(" {:.1} s", t.elapsed().as_secs_f64());

    let t = step("floors (TCP echo, 8 and 80 MB, memcpy, mpx-bench-mpi under mpirun, mpirun true)");
    let floors = Floors::measure(&cfg)?;
    done(t);

    let mut ctx = Ctx::new(cfg.clone());
    let rows: Vec<Row> = all_rows.into_iter().filter(|r| selected.contains(&r.name)).collect();
    let mut rounds: Vec<Vec<Result<Measured>>> = rows.iter().map(|_| Vec::new()).collect();
    // A row's rounds: `--rounds`, or `--paired-rounds` for the rows of the engine-mode pairs
    // when the run measures the `.interp` rows.
    let paired_rounds = if cfg.python.is_some() { args.rounds.max(args.paired_rounds) } else { args.rounds };
    let rounds_of = |r: &Row| if interp::is_paired(&r.name) { paired_rounds } else { args.rounds };
    let last_round = rows.iter().map(rounds_of).max().unwrap_or(1);
    for round in 1..=last_round {
        if last_round > 1 {
            eprintln!("  round {round} of {last_round}");
            ctx.new_round();
        }
        for (row, measured) in rows.iter().zip(&mut rounds) {
            if round > rounds_of(row) {
                continue;
            }
            let t = step(&row.name);
            if std::env::var_os("MPX_BENCH_WINDOWS").is_some() {
                eprintln!("row {}", row.name);
            }
            let m = (row.mpx)(&mut ctx);
            done(t);
            if rounds_of(row) > 1 {
                if let Ok(Measured::Done { stats, .. }) = &m {
                    eprintln!("    {} round {round}: median {}", row.name, fmt_secs(stats.median));
                }
            }
            measured.push(m);
            if args.panic_after.as_deref() == Some(row.name.as_str()) {
                panic!("--panic-after {}: checking that the cleanup ends every process", row.name);
            }
        }
    }
    let mut results = Vec::new();
    for (row, measured) in rows.iter().zip(rounds) {
        let measured = merge(measured);
        // A TCP data row's design floor uses the relay timed alongside its samples.
        let floor = match (&measured, &row.floor_with_relay) {
            (Ok(Measured::Done { relay: Some(relay), .. }), Some(floor)) => floor(&floors, *relay),
            _ => RowResult::floor_of(row, &floors, &results),
        };
        results.push(RowResult::new(row, measured, floor).with_references(row, &floors));
    }
    let ended = ctx.end_session();

    let mut samples = BTreeMap::new();
    samples.insert("latency".into(), cfg.latency_samples);
    samples.insert("latency_warmup".into(), cfg.latency_warmup);
    samples.insert("medium_move".into(), cfg.medium_samples);
    samples.insert("medium_move_warmup".into(), cfg.medium_warmup);
    samples.insert("big_move".into(), cfg.big_samples);
    samples.insert("start_stop_cycles".into(), cfg.lifecycle_samples);
    samples.insert("rounds".into(), args.rounds as usize);
    samples.insert("paired_rounds".into(), paired_rounds as usize);
    let report = Report {
        date,
        commit: args.commit,
        quick: cfg.quick,
        samples,
        machine,
        python: cfg.python.as_ref().map(|p| p.display().to_string()),
        floors: floors.named().into_iter().collect(),
        rows: results,
        total_secs: t0.elapsed().as_secs_f64(),
    };
    println!();
    if cfg.quick {
        println!(
            "QUICK RUN ({} latency samples, {} per 8 MB move, {} per 80 MB move): rough figures",
            cfg.latency_samples, cfg.medium_samples, cfg.big_samples
        );
    }
    print!("{}", report.table());
    let references = report.references();
    if !references.is_empty() {
        println!("\nagainst references (one memcpy of the bytes in this process; one bare TCP hop; ipyparallel's figures from issue 24):");
        print!("{references}");
    }
    println!("\nwhere the round trips' time goes (medians, wall clocks of client and engines):");
    print!("{}", report.breakdowns());
    println!("\nfloors and diagnostics (medians):");
    for (name, s) in &report.floors {
        println!("  {name}: {} [{}, {}] ({})", fmt_secs(s.median), fmt_secs(s.min), fmt_secs(s.max), s.n);
    }
    report.write(&args.out)?;
    println!("wrote {} ({:.0} s in all)", args.out.display(), report.total_secs);
    ended?;
    let errors: Vec<_> =
        report.rows.iter().filter(|r| r.status == "error").map(|r| r.name.as_str()).collect();
    anyhow::ensure!(errors.is_empty(), "rows failed: {}", errors.join(", "));
    Ok(())
}

/// The names of the rows to run: every row, or those `only` names and the rows that are their
/// floors ([`Row::floor_row`]: `rtt1` for `rtt1.interp`).
///
/// # Errors
/// `only` names a row that does not exist.
fn selected(rows: &[Row], only: &[String]) -> Result<BTreeSet<String>> {
    if only.is_empty() {
        return Ok(rows.iter().map(|r| r.name.clone()).collect());
    }
    let mut names = BTreeSet::new();
    for name in only {
        let row = rows.iter().find(|r| &r.name == name);
        let row = row.with_context(|| {
            let all: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
            format!("--only: no row {name:?} (the rows: {})", all.join(", "))
        })?;
        names.insert(row.name.clone());
        names.extend(row.floor_row.clone());
    }
    Ok(names)
}

/// Checks that `python` has the mpx package, and warns when its extension module (the
/// interpreter mode's engine) is older than `engine` (the embedding mode's): the two modes would
/// then run different builds of the engine.
///
/// # Errors
/// `python` cannot run or cannot import the package.
fn check_python(python: &Path, engine: &Path) -> Result<()> {
    let out = std::process::Command::new(python)
        .args(["-c", "import mpx._mpx as m; print(m.__file__)"])
        .output()
        .with_context(|| format!("cannot run --python {}", python.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "--python {}: `import mpx` fails there (pip install ./python into it):\n{}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let extension = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(ext), Some(bin)) = (modified(&extension), modified(engine)) {
        if ext < bin {
            eprintln!(
                "note: {} is older than {}: the .interp rows may run an older engine (rerun \
                 scripts/plain-venv.sh or scripts/python-env.sh)",
                extension.display(),
                engine.display()
            );
        }
    }
    Ok(())
}
