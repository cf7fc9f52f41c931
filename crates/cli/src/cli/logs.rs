//! `mpx logs [--cluster-id ID] [--engine ID] [-f]`: a cluster's controller log
//! (`$MPX_HOME/cluster-ID.log`) or one engine's (`$MPX_HOME/cluster-ID/engine-ID.log`).

use std::{
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::Args;
use mpx_controller::files;
use mpx_messages::connection::{engine_log, log_dir};

#[derive(Args)]
pub struct LogsArgs {
    /// Cluster id or connection file [default: the only running cluster, else the only log].
    #[arg(long, default_value = "", hide_default_value = true)]
    cluster_id: String,
    /// Show this engine's log instead of the controller's.
    #[arg(long, value_name = "ID")]
    engine: Option<u32>,
    /// Keep printing what is added to the log until the cluster stops (or Ctrl-C).
    #[arg(short = 'f', long)]
    follow: bool,
}

/// How often `-f` looks for more.
const POLL: Duration = Duration::from_millis(200);

/// The connection file (present or not) of the cluster `--cluster-id` names.
fn connection_file_of(home: &Path, given: &str) -> Result<PathBuf> {
    if given.ends_with(".json") || given.contains('/') {
        return Ok(PathBuf::from(given));
    }
    if !given.is_empty() {
        return Ok(files::connection_file(home, given));
    }
    let running: Vec<(String, PathBuf)> = files::list_connection_files(home)
        .into_iter()
        .filter(|(_, p)| files::read_connection_file(p).is_ok_and(|i| files::controller_running(&i)))
        .collect();
    if let [(_, path)] = running.as_slice() {
        return Ok(path.clone());
    }
    let logged: Vec<String> = std::fs::read_dir(home)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some(name.strip_prefix("cluster-")?.strip_suffix(".log")?.to_string())
        })
        .collect();
    match (running.len(), logged.as_slice()) {
        (0, [id]) => Ok(files::connection_file(home, id)),
        (0, []) => bail!("no cluster logs in {}", home.display()),
        (0, _) => bail!(
            "several cluster logs in {}: pick one with --cluster-id ({})",
            home.display(),
            logged.join(", ")
        ),
        _ => {
            let ids: Vec<&str> = running.iter().map(|(id, _)| id.as_str()).collect();
            bail!("several clusters are running: pick one with --cluster-id ({})", ids.join(", "))
        }
    }
}

/// The engine ids that have a log in `dir`, sorted.
fn engine_logs(dir: &Path) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("engine-")?.strip_suffix(".log")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// Whether the cluster of `connection_file` is still running.
fn running(connection_file: &Path) -> bool {
    files::read_connection_file(connection_file).is_ok_and(|i| files::controller_running(&i))
}

/// The controller `-f` follows: the one running when it started (the connection file is
/// removed while the controller stops, before its last lines are logged, so the file alone
/// would end the follow too early).
fn followed(connection_file: &Path) -> Option<mpx_messages::ConnectionInfo> {
    files::read_connection_file(connection_file).ok().filter(files::controller_running)
}

pub fn run(args: LogsArgs) -> Result<i32> {
    let home = files::mpx_home();
    let conn = connection_file_of(&home, &args.cluster_id)?;
    let path = match args.engine {
        None => conn.with_extension("log"),
        Some(id) => engine_log(&conn, id),
    };
    if !path.is_file() {
        let id = conn.file_stem().and_then(|s| s.to_str()).unwrap_or("?").trim_start_matches("cluster-");
        match args.engine {
            Some(engine) => {
                let have = engine_logs(&log_dir(&conn));
                let have = if have.is_empty() {
                    "none".into()
                } else {
                    super::targets::compact(&have.into_iter().map(mpx_client::EngineId).collect::<Vec<_>>())
                };
                bail!("no log of engine {engine} in cluster {id} (engine logs: {have})")
            }
            None => bail!("no log of cluster {id} ({} does not exist)", path.display()),
        }
    }
    let controller = if args.follow { followed(&conn) } else { None };
    let mut file = std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut file, &mut out)?;
    out.flush()?;
    if !args.follow {
        return Ok(0);
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Alive until the followed controller has exited (after its last line), or while a
        // controller of this cluster runs.
        let alive = controller.as_ref().is_some_and(files::controller_running) || running(&conn);
        // A log truncated by a new start of the cluster is read again from its beginning.
        let pos = file.stream_position()?;
        if std::fs::metadata(&path).map(|m| m.len() < pos).unwrap_or(false) {
            file.seek(SeekFrom::Start(0))?;
        }
        let n = file.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            out.flush()?;
            continue;
        }
        if !alive {
            return Ok(0);
        }
        std::thread::sleep(POLL);
    }
}
