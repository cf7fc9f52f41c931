//! `mpx controller start`: a controller without engines; engines are started by hand with
//! `mpirun -n N mpx-engine --connect FILE`, before or after it. `mpx cluster stop` stops it.

use anyhow::Result;
use clap::{Args, Subcommand};
use mpx_controller::{ClusterOptions, ExternalEngines};

use super::daemon;

#[derive(Subcommand)]
pub enum ControllerCommand {
    /// Start a controller only and write its connection file.
    Start(StartArgs),
}

#[derive(Args)]
pub struct StartArgs {
    /// Cluster id (names the connection file).
    #[arg(long, default_value = "default")]
    cluster_id: String,
    /// Return once the controller listens and leave it running in the background.
    #[arg(long)]
    daemonize: bool,
    /// Address the controller binds and writes into the connection file (default 127.0.0.1;
    /// anything but loopback lets other hosts' engines in; 0.0.0.0 needs --interface).
    #[arg(long)]
    ip: Option<String>,
    /// Network interface whose address the controller binds (or, with --ip 0.0.0.0,
    /// advertises) so that engines on other hosts reach it.
    #[arg(long, value_name = "NAME")]
    interface: Option<String>,
    /// Port the controller binds (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

impl StartArgs {
    /// The cluster id and whether the command daemonizes (for the log file).
    pub(super) fn log_identity(&self) -> (&str, bool) {
        (&self.cluster_id, self.daemonize)
    }
}

pub fn run(cmd: ControllerCommand) -> Result<i32> {
    match cmd {
        ControllerCommand::Start(args) if args.daemonize && !daemon::is_daemon_child() => {
            daemon::daemonize(&args.cluster_id, 0)
        }
        ControllerCommand::Start(args) => {
            let mut opts = ClusterOptions::new(args.cluster_id, 0);
            let listen =
                mpx_controller::address::resolve(args.ip.as_deref(), args.interface.as_deref(), args.port)?;
            (opts.bind, opts.advertise) = (listen.bind, listen.advertise);
            daemon::run_foreground(opts, Box::new(ExternalEngines), |ready| {
                format!(
                    "controller {} listening on {} (connection file {}); start engines with: \
                     mpirun -n N mpx-engine --connect {}",
                    ready.cluster_id,
                    ready.address,
                    ready.connection_file.display(),
                    ready.connection_file.display()
                )
            })
        }
    }
}
