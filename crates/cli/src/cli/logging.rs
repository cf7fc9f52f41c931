//! Where `mpx` logs: warnings on stderr (`-v`/`-q`, or `MPX_LOG`), and, for a process that
//! runs a controller, every event at info level in `$MPX_HOME/cluster-ID.log` (no colours),
//! whether it runs in the foreground or as the daemon of `--daemonize`.

use std::{io::IsTerminal, path::PathBuf};

use clap_verbosity_flag::VerbosityFilter;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use super::{cluster, controller, daemon, Cli, Command};

/// The controller log this process writes: the cluster id, and whether this is the daemon
/// child of `--daemonize` (whose stderr already goes to the same file).
struct ControllerLog {
    cluster_id: String,
    daemon_child: bool,
}

impl Cli {
    /// The controller log this process writes, if it runs a controller.
    fn controller_log(&self) -> Option<ControllerLog> {
        let (cluster_id, daemonize) = match &self.command {
            Command::Cluster(cluster::ClusterCommand::Start(args)) => args.log_identity(),
            Command::Controller(controller::ControllerCommand::Start(args)) => args.log_identity(),
            _ => return None,
        };
        let daemon_child = daemon::is_daemon_child();
        // The parent of a daemon only reports what its child says; the child writes the log.
        (!daemonize || daemon_child)
            .then(|| ControllerLog { cluster_id: cluster_id.to_string(), daemon_child })
    }
}

/// The stderr filter for the verbosity flags: warnings (and what is done with a batch
/// system) by default.
fn stderr_filter(level: VerbosityFilter) -> String {
    match level {
        VerbosityFilter::Warn => "warn,mpx::batch=info".into(),
        other => other.to_string(),
    }
}

/// Sets up logging for `cli` (see the module doc). `MPX_LOG`, when set, is the filter of
/// every destination.
pub fn init_logging(cli: &Cli) {
    let from_env = std::env::var("MPX_LOG").ok().filter(|s| !s.trim().is_empty());
    let filter = |default: String| {
        EnvFilter::try_new(from_env.as_deref().unwrap_or(&default))
            .unwrap_or_else(|_| EnvFilter::new(default))
    };
    let level = cli.verbosity.filter();
    let log = cli.controller_log();
    let to_stderr = !log.as_ref().is_some_and(|l| l.daemon_child);
    let stderr_layer = to_stderr.then(|| {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter(stderr_filter(level)))
    });
    let file_layer = log.and_then(|log| {
        let home = mpx_controller::files::mpx_home();
        let path = mpx_controller::files::log_file(&home, &log.cluster_id);
        if !log.daemon_child {
            // A foreground start begins a new log (the daemon's parent has already done so).
            if let Err(e) = create_dir_and_truncate(&path) {
                eprintln!("mpx: cannot write the log {}: {e}", path.display());
                return None;
            }
        }
        let name = path.file_name()?.to_owned();
        let appender = tracing_appender::rolling::never(path.parent()?, name);
        let at_least_info = match level {
            VerbosityFilter::Debug | VerbosityFilter::Trace => level,
            _ => VerbosityFilter::Info,
        };
        Some(
            fmt::layer()
                .with_writer(appender)
                .with_ansi(false)
                .with_filter(filter(at_least_info.to_string())),
        )
    });
    tracing_subscriber::registry().with(stderr_layer).with(file_layer).init();
}

fn create_dir_and_truncate(path: &PathBuf) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::File::create(path).map(drop)
}
