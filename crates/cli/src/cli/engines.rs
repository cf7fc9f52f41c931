//! `mpx cluster engines -n N`: another MPI world (engine set) for a running controller. Its
//! engines get ids after the existing ones and their own COMM_WORLD; `mpx cluster stop` stops
//! them with the rest (they finalize and their mpirun ends). They run in the current directory.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Args;
use mpx_client::{client::find_connection_file, Client};
use mpx_controller::launcher::mpirun_command;

use super::{cluster::engine_program, EngineCommand};

#[derive(Args)]
pub struct EnginesArgs {
    /// Number of engines (MPI ranks) in the new set.
    #[arg(short = 'n', long = "engines", visible_alias = "n", value_name = "N")]
    n: u32,
    /// Cluster id or connection file [default: the only running cluster].
    #[arg(long, default_value = "", hide_default_value = true)]
    cluster_id: String,
    /// How the engines are started.
    #[command(flatten)]
    engines: EngineCommand,
    /// Seconds the engines may take to register.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Extra arguments for mpirun.
    #[arg(last = true)]
    mpirun_args: Vec<String>,
}

pub fn run(args: EnginesArgs) -> Result<i32> {
    if args.n == 0 {
        bail!("-n must be at least 1");
    }
    let t0 = Instant::now();
    let path = find_connection_file(&args.cluster_id)?;
    let client = Client::connect(&path.to_string_lossy())?;
    let before = client.info(Duration::from_secs(10))?.engines.len();
    // mpirun's output goes to the cluster's log directory; the file is named after the engine
    // set once the set is known.
    let log_dir = mpx_messages::connection::log_dir(&path);
    std::fs::create_dir_all(&log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
    let mut log_path = log_dir.join(format!("set-starting-{}.log", std::process::id()));
    let log =
        std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let engine = engine_program(&args.engines);
    let mut cmd = mpirun_command(
        &args.engines.mpirun,
        args.n,
        before,
        &args.mpirun_args,
        &engine,
        args.engines.kernel,
        &path,
    );
    cmd.stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log));
    // The set outlives this command, detached from its terminal, until the cluster stops it.
    super::new_session(&mut cmd);
    let mut child = cmd.spawn().with_context(|| format!("cannot run {}", args.engines.mpirun))?;
    let deadline = t0 + Duration::from_secs_f64(args.timeout.max(0.0));
    loop {
        let info = client.info(Duration::from_secs(10))?;
        if info.engines.len() >= before + args.n as usize {
            let set = info.engines.iter().map(|e| e.set).max().unwrap_or_default();
            let ids: Vec<String> =
                info.engines.iter().filter(|e| e.set == set).map(|e| e.id.to_string()).collect();
            let named = log_dir.join(format!("set-{set}.log"));
            if std::fs::rename(&log_path, &named).is_ok() {
                log_path = named;
            }
            println!(
                "engine set {set}: {} engines ready in {:.2} s (ids {}; mpirun pid {}; log {})",
                args.n,
                t0.elapsed().as_secs_f64(),
                ids.join(","),
                child.id(),
                log_path.display()
            );
            return Ok(0);
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("mpirun ended ({status}) before the engines registered; its output:\n{log}");
        }
        if Instant::now() > deadline {
            // The process group of the mpirun this command started (setsid above).
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::SIGKILL);
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "the {} engines did not register within {:.0} s; mpirun's output:\n{log}",
                args.n,
                args.timeout
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
