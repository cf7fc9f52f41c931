//! A process's resident memory, for the tests of the controller's memory.

use std::time::{Duration, Instant};

/// The resident memory of process `pid` in bytes (VmRSS of /proc/PID/status).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS line");
    kb * 1024
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
