//! A launcher for batch systems: write a job script from a template, submit it, poll the queue
//! until the job ends, cancel it on stop. What differs between Slurm and PBS is a
//! [`BatchSystem`]; the rest is [`BatchLauncher`].

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use futures::{future::LocalBoxFuture, FutureExt};
use mpx_messages::Kernel;
use tracing::{info, warn};

use super::{
    command::{self, CmdOutput, CommandError, COMMAND_TIMEOUT},
    job::Launcher,
    output::OUTPUT_LINES,
    program::EngineProgram,
    template::{self, TemplateVars},
};
use crate::error::ClusterError;

/// How long `stop` waits for the queue to forget a cancelled job.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the queue is asked about the job while stopping.
const STOP_POLL: Duration = Duration::from_millis(200);

/// Consecutive failed queue queries after which `wait` gives the job up as lost.
const MAX_QUERY_FAILURES: u32 = 30;

/// What the queue says about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Queued, running, or ending: still listed (the batch system's state name).
    Active(String),
    /// No longer listed, or listed in a final state; with what is known about how it ended.
    Ended(Option<String>),
}

/// The commands and answers of one batch system.
pub trait BatchSystem {
    /// Its name for messages and file names (`slurm`, `pbs`).
    fn name(&self) -> &'static str;
    /// The built-in job script template.
    fn default_template(&self) -> &'static str;
    /// The command that submits `script`, with the job's stdout and stderr going to `output`,
    /// for a job that runs in `workdir` (the submit command itself also runs there).
    fn submit(&self, script: &Path, output: &Path, workdir: &Path) -> Vec<String>;
    /// The job id in the submit command's stdout.
    fn job_id(&self, stdout: &str) -> Option<String>;
    /// The command that asks the queue about job `id`.
    fn status(&self, id: &str) -> Vec<String>;
    /// Reads the answer of [`BatchSystem::status`].
    ///
    /// # Errors
    /// [`CommandError::Failed`] when the answer says nothing about the job (the query itself
    /// failed).
    fn parse_status(&self, out: &CmdOutput) -> Result<JobState, CommandError>;
    /// Commands that tell how an ended job ended, tried in order.
    fn details(&self, id: &str) -> Vec<Vec<String>>;
    /// Reads the answer of one of [`BatchSystem::details`].
    fn parse_details(&self, out: &CmdOutput) -> Option<String>;
    /// The command that cancels job `id`.
    fn cancel(&self, id: &str) -> Vec<String>;
}

/// Settings shared by the batch launchers.
#[derive(Debug, Clone, Default)]
pub struct BatchOptions {
    /// Queue (PBS) or partition (Slurm); empty for the system's default.
    pub queue: String,
    /// Time limit `HH:MM:SS`; empty for the system's default.
    pub walltime: String,
    /// The job script template; `None` for the built-in one.
    pub template: Option<String>,
    /// The program of each rank.
    pub engine: EngineProgram,
    /// The mpirun command (with extra arguments) used in the job.
    pub mpirun: String,
    /// The job's name.
    pub job_name: String,
    /// The cell language of the engines (the template's `{kernel}`).
    pub kernel: Kernel,
    /// Where the job runs (and the submit command is run); `None`: the current directory.
    pub workdir: Option<PathBuf>,
    /// How often the queue is polled while the cluster runs.
    pub poll: Duration,
}

/// Runs the engines as one batch job of `S`.
#[derive(Debug)]
pub struct BatchLauncher<S> {
    system: S,
    opts: BatchOptions,
    job_id: Option<String>,
    output_path: Option<PathBuf>,
    last_state: Option<JobState>,
}

impl<S: BatchSystem> BatchLauncher<S> {
    /// A launcher submitting to `system`.
    pub fn new(system: S, opts: BatchOptions) -> Self {
        BatchLauncher { system, opts, job_id: None, output_path: None, last_state: None }
    }

    /// The id of the submitted job.
    pub fn job_id(&self) -> Option<&str> {
        self.job_id.as_deref()
    }

    /// The job script for `n` engines.
    ///
    /// # Errors
    /// [`ClusterError::BadTemplate`] if the template cannot work.
    pub fn script(&self, n: u32, connection_file: &Path) -> Result<String, ClusterError> {
        let vars = TemplateVars {
            n,
            queue: self.opts.queue.clone(),
            walltime: self.opts.walltime.clone(),
            connection_file: connection_file.to_string_lossy().into_owned(),
            engine: self.opts.engine.shell_words(),
            job_name: self.opts.job_name.clone(),
            mpirun: self.opts.mpirun.clone(),
            kernel: self.opts.kernel.name().to_string(),
        };
        template::render(self.opts.template.as_deref().unwrap_or(self.system.default_template()), &vars)
    }

    /// Asks the queue once.
    async fn query(&self, id: &str) -> Result<JobState, CommandError> {
        let out = command::run(&self.system.status(id), COMMAND_TIMEOUT, false).await?;
        self.system.parse_status(&out)
    }

    /// Asks how an ended job ended; `hint` is what the queue said last.
    async fn ending(&self, id: &str, hint: Option<String>) -> String {
        let mut how = None;
        for argv in self.system.details(id) {
            if let Ok(out) = command::run(&argv, COMMAND_TIMEOUT, false).await {
                how = self.system.parse_details(&out);
                if how.is_some() {
                    break;
                }
            }
        }
        let how = how.or(hint).unwrap_or_else(|| "no longer in the queue".into());
        format!("{} job {id} ended: {how}", self.system.name())
    }

    /// Polls every `every` until the job is gone or `limit` passes; true if gone.
    async fn wait_gone(&self, id: &str, every: Duration, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(JobState::Ended(_)) = self.query(id).await {
                return true;
            }
            if Instant::now() + every > deadline {
                return false;
            }
            tokio::time::sleep(every).await;
        }
    }
}

impl<S: BatchSystem> Launcher for BatchLauncher<S> {
    fn batch(&self) -> Option<mpx_messages::BatchSettings> {
        Some(mpx_messages::BatchSettings {
            queue: self.opts.queue.clone(),
            walltime: self.opts.walltime.clone(),
        })
    }

    fn start(&mut self, n: u32, connection_file: &Path) -> Result<(), ClusterError> {
        let name = self.system.name();
        let script_path = connection_file.with_extension(format!("{name}.sh"));
        let output_path = connection_file.with_extension(format!("{name}.out"));
        let script = self.script(n, connection_file)?;
        std::fs::write(&script_path, script)?;
        let _ = std::fs::remove_file(&output_path);
        let workdir = match &self.opts.workdir {
            Some(dir) => dir.clone(),
            None => std::env::current_dir()?,
        };
        let argv = self.system.submit(&script_path, &output_path, &workdir);
        let failed = |why: String| ClusterError::SubmitFailed { command: command::command_line(&argv), why };
        let out = command::run_blocking_in(&argv, Some(&workdir), COMMAND_TIMEOUT, true)
            .map_err(|e| failed(e.to_string()))?;
        if !out.success {
            return Err(failed(out.text()));
        }
        let id = self
            .system
            .job_id(&out.stdout)
            .ok_or_else(|| failed(format!("no job id in {:?}", out.stdout)))?;
        info!(target: "mpx::batch", system = name, job_id = %id, script = %script_path.display(), output = %output_path.display(), "job submitted");
        self.job_id = Some(id);
        self.output_path = Some(output_path);
        Ok(())
    }

    fn wait(&mut self) -> LocalBoxFuture<'_, String> {
        async move {
            let Some(id) = self.job_id.clone() else { return std::future::pending().await };
            let mut failures = 0;
            loop {
                tokio::time::sleep(self.opts.poll).await;
                match self.query(&id).await {
                    Ok(JobState::Ended(hint)) => return self.ending(&id, hint).await,
                    Ok(state) => {
                        failures = 0;
                        if self.last_state.as_ref() != Some(&state) {
                            info!(target: "mpx::batch", job_id = %id, ?state, "job state");
                            self.last_state = Some(state);
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        warn!(target: "mpx::batch", job_id = %id, failures, "cannot ask the queue about the job: {e}");
                        if failures >= MAX_QUERY_FAILURES {
                            return format!("lost track of {} job {id}: {e}", self.system.name());
                        }
                    }
                }
            }
        }
        .boxed_local()
    }

    fn stop(&mut self, grace: Duration) -> LocalBoxFuture<'_, ()> {
        async move {
            let Some(id) = self.job_id.take() else { return };
            // The engines were told to shut down: give the job a moment to end by itself, then
            // cancel it anyway (harmless if it is gone) and wait until the queue forgets it.
            self.wait_gone(&id, STOP_POLL, grace).await;
            let argv = self.system.cancel(&id);
            if let Err(e) = command::run(&argv, COMMAND_TIMEOUT, true).await {
                warn!(target: "mpx::batch", job_id = %id, "cancel failed: {e}");
            }
            if self.wait_gone(&id, STOP_POLL, CANCEL_TIMEOUT).await {
                info!(target: "mpx::batch", job_id = %id, "job gone");
            } else {
                warn!(target: "mpx::batch", job_id = %id, "the job is still in the queue {CANCEL_TIMEOUT:?} after cancelling it");
            }
        }
        .boxed_local()
    }

    fn output(&self) -> String {
        let Some(path) = &self.output_path else { return String::new() };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(OUTPUT_LINES)..].join("\n");
        format!("({})\n{tail}", path.display())
    }

    fn pid(&self) -> Option<u32> {
        None
    }
}
