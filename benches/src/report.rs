//! What a run produced: one [`RowResult`] per row, the printed table, the JSON file, and the
//! machine it ran on.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, process::Command};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::{
    floors::Floors,
    rows::{Goal, Measured, Row},
    stats::{fmt_secs, Stats},
};

/// One row's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    /// Row name.
    pub name: String,
    /// The mpx operation.
    pub operation: String,
    /// The floor's definition.
    pub floor_definition: String,
    /// `measured`, `pending`, `n/a` or `error`.
    pub status: String,
    /// Why it is pending / n/a / failed.
    pub message: Option<String>,
    /// The mpx samples (seconds).
    pub mpx: Option<Stats>,
    /// The floor (seconds).
    pub floor: Option<Stats>,
    /// mpx median / floor median.
    pub ratio: Option<f64>,
    /// The goal.
    pub goal: Option<String>,
    /// Whether the goal is met.
    pub goal_met: Option<bool>,
    /// Processes left behind (stop row).
    pub leftovers: Option<usize>,
    /// Bytes moved (data rows).
    pub bytes: Option<usize>,
    /// mpx throughput, GB/s (data rows).
    pub mpx_gb_per_s: Option<f64>,
    /// Floor throughput, GB/s (data rows).
    pub floor_gb_per_s: Option<f64>,
    /// Where a round trip's time goes (medians, seconds; see `ctx::breakdown`).
    pub breakdown: Option<BTreeMap<String, f64>>,
    /// Memory rows: idle RSS, peak and one-second-after RSS above idle (bytes), and the
    /// operation's time (seconds).
    pub memory: Option<MemoryFigures>,
    /// Rate rows: operations per second (median, min, max over the samples).
    pub per_second: Option<Stats>,
    /// Rate rows: operations in each sample.
    pub per_sample: Option<usize>,
    /// The figures it is compared with besides its floor ([`Row::references`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<ReferenceResult>,
}

/// A row against one of its [`crate::rows::Reference`]s.
#[derive(Debug, Clone, Serialize)]
pub struct ReferenceResult {
    /// What the reference is.
    pub name: String,
    /// Its time (seconds); `None`: not measured in this run.
    pub secs: Option<f64>,
    /// Reference time / the row's median: how many times faster the row is.
    pub faster_by: Option<f64>,
    /// The goal against it (`≥ 5x faster (≤ 31.6 ms)`), if any.
    pub goal: Option<String>,
    /// Whether the goal is met.
    pub goal_met: Option<bool>,
}

/// A memory row's figures.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MemoryFigures {
    /// Resident set size before (bytes).
    pub idle: u64,
    /// Peak above idle during the operation (bytes).
    pub peak_above_idle: u64,
    /// Above idle one second after the operation (bytes).
    pub after_above_idle: u64,
    /// The operation's time (seconds).
    pub secs: f64,
}

impl RowResult {
    /// The floor of `row`: the mpx summary of its [`Row::floor_row`] among `earlier` (`None` if
    /// that row was not measured), else its [`Row::floor`] of the run's `floors`.
    pub fn floor_of(row: &Row, floors: &Floors, earlier: &[RowResult]) -> Option<Stats> {
        match &row.floor_row {
            Some(name) => earlier.iter().find(|r| &r.name == name).and_then(|r| r.mpx),
            None => (row.floor)(floors),
        }
    }

    /// Adds the row's comparisons with its [`Row::references`] (their times from `floors` or
    /// fixed) to this result of it.
    pub fn with_references(mut self, row: &Row, floors: &Floors) -> RowResult {
        let median = self.mpx.map(|s| s.median);
        self.references = row
            .references
            .iter()
            .map(|reference| {
                let secs = (reference.secs)(floors);
                let goal_secs = |k: f64| secs.map(|s| s / k);
                ReferenceResult {
                    name: reference.name.clone(),
                    secs,
                    faster_by: secs.zip(median).map(|(s, m)| s / m),
                    goal: reference.faster_by.map(|k| match goal_secs(k) {
                        Some(g) => format!("≥ {k}x faster (≤ {})", fmt_secs(g)),
                        None => format!("≥ {k}x faster"),
                    }),
                    goal_met: reference.faster_by.and_then(|k| Some(median? <= goal_secs(k)?)),
                }
            })
            .collect();
        self
    }

    /// Combines a row, its measurement (or error) and its floor: [`Row::floor`] of the
    /// run's floors, or the mpx side of its [`Row::floor_row`] (see [`RowResult::floor_of`]).
    pub fn new(row: &Row, measured: Result<Measured>, floor: Option<Stats>) -> RowResult {
        let gbps = |s: &Stats| row.bytes.map(|b| b as f64 / s.median / 1e9);
        let mut r = RowResult {
            name: row.name.clone(),
            operation: row.operation.clone(),
            floor_definition: row.floor_definition.clone(),
            status: "measured".into(),
            message: None,
            mpx: None,
            floor,
            ratio: None,
            goal: row.goal.text(),
            goal_met: None,
            leftovers: None,
            bytes: row.bytes,
            mpx_gb_per_s: None,
            floor_gb_per_s: floor.as_ref().and_then(gbps),
            breakdown: None,
            memory: None,
            per_second: None,
            per_sample: None,
            references: Vec::new(),
        };
        match measured {
            Ok(Measured::Done { stats, leftovers, breakdown, .. }) => {
                r.breakdown = breakdown;
                r.mpx = Some(stats);
                r.ratio = floor.map(|f| stats.median / f.median);
                r.goal_met = row.goal.met(&stats, floor.as_ref(), leftovers);
                r.leftovers = leftovers;
                r.mpx_gb_per_s = gbps(&stats);
            }
            Ok(Measured::Memory { idle, peak_above_idle, after_above_idle, secs }) => {
                if let Goal::MemoryAtMost(limit) = row.goal {
                    r.goal_met = Some(peak_above_idle <= limit);
                }
                r.memory = Some(MemoryFigures { idle, peak_above_idle, after_above_idle, secs });
            }
            Ok(Measured::Rate { per_second, per_sample }) => {
                if let Goal::RateAtLeast(goal) = row.goal {
                    r.goal_met = Some(per_second.median >= goal);
                }
                (r.per_second, r.per_sample) = (Some(per_second), Some(per_sample));
            }
            Ok(Measured::Pending(why)) => (r.status, r.message) = ("pending".into(), Some(why.into())),
            Ok(Measured::NotImplemented(why)) => (r.status, r.message) = ("n/a".into(), Some(why.into())),
            Err(e) => (r.status, r.message) = ("error".into(), Some(format!("{e:#}"))),
        }
        if let (Some(name), None, "measured") = (&row.floor_row, &r.floor, r.status.as_str()) {
            r.message = Some(format!("no floor: row `{name}` was not measured in this run"));
        }
        r
    }
}

/// The machine a run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs available to the run.
    pub nproc: usize,
    /// MemTotal from /proc/meminfo.
    pub memory: String,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    /// First line of `mpirun --version`.
    pub mpi: String,
    /// PRETTY_NAME from /etc/os-release.
    pub os: String,
    /// Kernel release.
    pub kernel: String,
    /// /proc/loadavg when the run began (the machine may be shared).
    pub loadavg_at_start: String,
}

fn field(text: &str, key: &str, sep: char) -> Option<String> {
    text.lines()
        .find(|l| l.split(sep).next().map(str::trim) == Some(key))
        .and_then(|l| l.split_once(sep))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

impl Machine {
    /// Reads the description from /proc, /etc/os-release and `mpirun --version`.
    pub fn describe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let unknown = || "unknown".to_string();
        let mpi = Command::new("mpirun")
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_string))
            .unwrap_or_else(unknown);
        Machine {
            nproc: std::thread::available_parallelism().map(usize::from).unwrap_or(0),
            memory: field(&read("/proc/meminfo"), "MemTotal", ':').unwrap_or_else(unknown),
            cpu: field(&read("/proc/cpuinfo"), "model name", ':').unwrap_or_else(unknown),
            mpi,
            os: field(&read("/etc/os-release"), "PRETTY_NAME", '=').unwrap_or_else(unknown),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            loadavg_at_start: read("/proc/loadavg").trim().to_string(),
        }
    }
}

/// The whole run, as written to `target/mpx-bench.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the run began (UTC, ISO 8601).
    pub date: String,
    /// The commit benchmarked.
    pub commit: String,
    /// Quick mode (fewer samples).
    pub quick: bool,
    /// Samples per kind of row.
    pub samples: BTreeMap<String, usize>,
    /// The machine.
    pub machine: Machine,
    /// The interpreter the `.interp` rows' engines ran in (`--python PATH`), if any.
    pub python: Option<String>,
    /// Every floor on its own (seconds).
    pub floors: BTreeMap<String, Stats>,
    /// The rows.
    pub rows: Vec<RowResult>,
    /// Wall time of the whole run (seconds).
    pub total_secs: f64,
}

impl Report {
    /// Writes the JSON file (creating its directory).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// The table, as printed and as pasted into BENCHMARKS.md (Markdown).
    pub fn table(&self) -> String {
        let mut t = String::new();
        t.push_str("| row | mpx median [min, max] (n) | floor median [min, max] | ratio | goal | met |\n");
        t.push_str("|---|---|---|---|---|---|\n");
        let range = |s: &Stats| format!("{} [{}, {}]", fmt_secs(s.median), fmt_secs(s.min), fmt_secs(s.max));
        for r in &self.rows {
            let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
            let mut mpx = match (&r.mpx, &r.message, &r.memory) {
                _ if r.per_second.is_some() => {
                    let s = r.per_second.expect("checked");
                    format!(
                        "{:.0}/s [{:.0}, {:.0}] ({} × {} tasks)",
                        s.median,
                        s.min,
                        s.max,
                        s.n,
                        r.per_sample.unwrap_or(0)
                    )
                }
                (_, _, Some(m)) => format!(
                    "peak {} above idle ({} idle; {} above idle 1 s after; push took {})",
                    mb(m.peak_above_idle),
                    mb(m.idle),
                    mb(m.after_above_idle),
                    fmt_secs(m.secs)
                ),
                (Some(s), _, _) => format!("{} ({})", range(s), s.n),
                (None, Some(m), _) if r.status == "error" => format!("error: {m}"),
                (None, Some(m), _) => m.clone(),
                (None, None, _) => "–".into(),
            };
            let mut floor = r.floor.as_ref().map(range).unwrap_or_else(|| "–".into());
            if let Some(g) = r.mpx_gb_per_s {
                let _ = write!(mpx, " = {g:.2} GB/s");
            }
            if let Some(g) = r.floor_gb_per_s {
                let _ = write!(floor, " = {g:.2} GB/s");
            }
            if let Some(n) = r.leftovers {
                let _ = write!(mpx, ", {n} leftovers");
            }
            let ratio = r.ratio.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
            let goal = r.goal.clone().unwrap_or_else(|| "–".into());
            let met = match r.goal_met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            };
            let _ = writeln!(t, "| {} | {mpx} | {floor} | {ratio} | {goal} | {met} |", r.name);
        }
        t
    }

    /// The rows against their references, one line per row that has any (`push80M.shm 21.3 ms:
    /// 0.61x memcpy_80mb (13.0 ms); 7.4x faster than ipyparallel ... (158 ms), goal ≥ 5x
    /// faster (≤ 31.6 ms): yes`).
    pub fn references(&self) -> String {
        let mut t = String::new();
        for r in self.rows.iter().filter(|r| !r.references.is_empty()) {
            let median = r.mpx.map_or_else(|| r.status.clone(), |s| fmt_secs(s.median));
            let parts: Vec<String> = r
                .references
                .iter()
                .map(|x| {
                    let secs = x.secs.map_or_else(|| "not measured".into(), fmt_secs);
                    let mut part = match x.faster_by {
                        Some(k) if k >= 1.0 => format!("{k:.2}x faster than {} ({secs})", x.name),
                        Some(k) => format!("{:.2}x the time of {} ({secs})", 1.0 / k, x.name),
                        None => format!("{} ({secs})", x.name),
                    };
                    if let Some(goal) = &x.goal {
                        let met = match x.goal_met {
                            Some(true) => "yes",
                            Some(false) => "**no**",
                            None => "–",
                        };
                        let _ = write!(part, ", goal {goal}: {met}");
                    }
                    part
                })
                .collect();
            let _ = writeln!(t, "  {} {median}: {}", r.name, parts.join("; "));
        }
        t
    }

    /// Where the round trips' time goes, one line per row that has a breakdown.
    pub fn breakdowns(&self) -> String {
        let mut t = String::new();
        for r in &self.rows {
            if let Some(b) = &r.breakdown {
                let parts: Vec<String> = b.iter().map(|(k, v)| format!("{k} {}", fmt_secs(*v))).collect();
                let _ = writeln!(t, "  {}: {}", r.name, parts.join(", "));
            }
        }
        t
    }
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_proc_files() {
        assert_eq!(field("MemTotal:       24576 kB\nX: 1", "MemTotal", ':').as_deref(), Some("24576 kB"));
        assert_eq!(field("PRETTY_NAME=\"Debian 12\"", "PRETTY_NAME", '=').as_deref(), Some("Debian 12"));
        assert_eq!(field("a: 1", "b", ':'), None);
    }

    #[test]
    fn date_format() {
        let d = utc_now();
        assert_eq!(d.len(), 20, "{d}");
        assert!(d.starts_with("20") && d.ends_with('Z'), "{d}");
    }
}
