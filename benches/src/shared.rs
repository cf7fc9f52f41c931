//! The host's memory during a shared push (`push --shared`, issue 24): one read-only copy for
//! all the ranks of the host, so 1 GB pushed to 4 ranks should cost the host about 1 GB, not 4.
//!
//! Measured as the summed proportional set size (`Pss` in `/proc/PID/smaps_rollup`) of the
//! client (this process) and every process of the cluster, before the push and after every rank
//! has read the whole array (`x.sum()`): a page that several processes map counts once in the
//! sum, split among them, and other processes of the machine do not count at all.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mpx_client::Targets;

use crate::{
    cluster::Kernel,
    ctx::{run_cell, Ctx, CELL_TIMEOUT},
    data::{client_on, f64_array, Path, SHM_OFF},
    rows::Measured,
};

/// The summed `Pss` of `pids` (bytes); a process that is gone counts nothing.
fn pss_sum(pids: &[u32]) -> Result<u64> {
    let mut sum = 0;
    for pid in pids {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else { continue };
        let kb = text
            .lines()
            .find_map(|l| l.strip_prefix("Pss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .context("no Pss line in smaps_rollup")?;
        sum += kb * 1024;
    }
    Ok(sum)
}

/// One shared push of `bytes` of f64 to every engine, which then all read it: the summed Pss
/// of client and cluster before (`idle`), once every rank has read it (`peak_above_idle`), and
/// one second after the engines dropped it (`after_above_idle`).
///
/// # Errors
/// The push or a cell fails, or `/proc` cannot be read.
pub fn shared_push_memory(ctx: &mut Ctx, bytes: usize) -> Result<Measured> {
    let mut pids = ctx.cluster_pids(Kernel::Python)?;
    pids.push(std::process::id());
    let data = f64_array(bytes);
    let Some(client) = client_on(ctx, Path::SameHost)? else { return Ok(Measured::Pending(SHM_OFF)) };
    let view = client.view(Targets::All);
    let idle = pss_sum(&pids)?;
    let t0 = Instant::now();
    view.push_shared_sync("x", &data, CELL_TIMEOUT)?;
    run_cell(&view, "float(x.sum())")?;
    let secs = t0.elapsed().as_secs_f64();
    let peak = pss_sum(&pids)?;
    run_cell(&view, "x = None")?;
    std::thread::sleep(Duration::from_secs(1));
    let after = pss_sum(&pids)?;
    Ok(Measured::Memory {
        idle,
        peak_above_idle: peak.saturating_sub(idle),
        after_above_idle: after.saturating_sub(idle),
        secs,
    })
}
