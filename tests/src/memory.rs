//! A process's memory (resident, proportional), for the tests of memory use.

use std::time::{Duration, Instant};

/// The `field` line of a `/proc` file that counts kilobytes (`VmRSS:     1234 kB`), in bytes.
fn kilobytes(path: &str, field: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} line in {path}"));
    kb * 1024
}

/// The resident memory of process `pid` in bytes (VmRSS of /proc/PID/status).
pub fn rss(pid: u32) -> u64 {
    kilobytes(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// The proportional set size of `pid` in bytes (`Pss` of /proc/PID/smaps_rollup): pages shared
/// by k processes count 1/k in each, so the sum over processes counts each page once.
pub fn pss(pid: u32) -> u64 {
    kilobytes(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// Waits up to `within` for the RSS of `pid` to be at most `bound`; returns the last figure.
pub fn rss_settles(pid: u32, bound: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let now = rss(pid);
        if now <= bound || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bytes in (decimal) megabytes, for messages.
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The entries of `/dev/shm`, sorted: a test takes them before its cluster starts and compares
/// after it stopped (nothing of mpx's, or of the MPI jobs it ran, may be left there).
pub fn dev_shm() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}
