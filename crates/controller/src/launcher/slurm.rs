//! Slurm: `sbatch --parsable` submits, `squeue` polls, `scontrol show job` (or `sacct`) tells how
//! the job ended, `scancel` cancels. Inside the allocation the engines run under `mpirun`, which
//! takes its slots from Slurm (Debian's Open MPI works under `srun` only with `--mpi=pmix`).

use std::path::Path;

use super::{
    batch::{BatchLauncher, BatchSystem, JobState},
    command::{CmdOutput, CommandError},
};

/// The built-in job script. Variables: `{n}`, `{queue}`, `{walltime}`, `{connection_file}`,
/// `{engine}`, `{job_name}`, `{mpirun}`, `{kernel}`; directive lines with an unset variable are left out.
pub const DEFAULT_TEMPLATE: &str = "#!/bin/sh
#SBATCH --job-name={job_name}
#SBATCH --ntasks={n}
#SBATCH --partition={queue}
#SBATCH --time={walltime}
exec {mpirun} -n {n} {engine} --kernel {kernel} --connect {connection_file}
";

/// Slurm's states of a job that is over.
const FINAL_STATES: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "TIMEOUT",
    "CANCELLED",
    "NODE_FAIL",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
];

/// Engines as a Slurm batch job.
pub type SlurmLauncher = BatchLauncher<Slurm>;

/// The Slurm commands (names or paths).
#[derive(Debug, Clone)]
pub struct Slurm {
    /// `sbatch`.
    pub sbatch: String,
    /// `squeue`.
    pub squeue: String,
    /// `scontrol`.
    pub scontrol: String,
    /// `sacct`.
    pub sacct: String,
    /// `scancel`.
    pub scancel: String,
}

impl Default for Slurm {
    fn default() -> Self {
        Slurm {
            sbatch: "sbatch".into(),
            squeue: "squeue".into(),
            scontrol: "scontrol".into(),
            sacct: "sacct".into(),
            scancel: "scancel".into(),
        }
    }
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Says what a final state means, with the exit code and reason when they add something.
fn describe(state: &str, exit_code: Option<&str>, reason: Option<&str>) -> String {
    let meaning = match state {
        "TIMEOUT" => " (walltime reached)",
        "NODE_FAIL" => " (node failure)",
        "OUT_OF_MEMORY" => " (out of memory)",
        "PREEMPTED" => " (preempted)",
        "BOOT_FAIL" => " (node boot failure)",
        "DEADLINE" => " (deadline reached)",
        "CANCELLED" => " (cancelled)",
        _ => "",
    };
    let mut text = format!("{state}{meaning}");
    if let Some(code) = exit_code.filter(|c| *c != "0:0") {
        text.push_str(&format!(", exit code {code}"));
    }
    if let Some(reason) = reason.filter(|r| !r.is_empty() && *r != "None") {
        text.push_str(&format!(", reason {reason}"));
    }
    text
}

/// `Key=Value` from `scontrol -o` output.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

impl BatchSystem for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn default_template(&self) -> &'static str {
        DEFAULT_TEMPLATE
    }

    fn submit(&self, script: &Path, output: &Path, workdir: &Path) -> Vec<String> {
        let output = output.to_string_lossy();
        let script = script.to_string_lossy();
        let workdir = workdir.to_string_lossy();
        argv(&[&self.sbatch, "--parsable", "--chdir", &workdir, "--output", &output, &script])
    }

    fn job_id(&self, stdout: &str) -> Option<String> {
        // `--parsable` prints `ID` or `ID;CLUSTER`.
        let id = stdout.lines().next()?.split(';').next()?.trim();
        (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_')).then(|| id.to_string())
    }

    fn status(&self, id: &str) -> Vec<String> {
        argv(&[&self.squeue, "-h", "-j", id, "-o", "%T"])
    }

    fn parse_status(&self, out: &CmdOutput) -> Result<JobState, CommandError> {
        if !out.success {
            // squeue forgets a job some time after it ends and then calls its id invalid.
            return if out.stderr.contains("Invalid job id") {
                Ok(JobState::Ended(None))
            } else {
                Err(CommandError::Failed(out.text()))
            };
        }
        match out.stdout.split_whitespace().next() {
            None => Ok(JobState::Ended(None)),
            Some(state) if FINAL_STATES.contains(&state) => {
                Ok(JobState::Ended(Some(describe(state, None, None))))
            }
            Some(state) => Ok(JobState::Active(state.to_string())),
        }
    }

    fn details(&self, id: &str) -> Vec<Vec<String>> {
        vec![
            argv(&[&self.scontrol, "-o", "show", "job", id]),
            argv(&[&self.sacct, "-n", "-X", "-P", "-j", id, "-o", "State,ExitCode,Reason"]),
        ]
    }

    fn parse_details(&self, out: &CmdOutput) -> Option<String> {
        if !out.success {
            return None;
        }
        let line = out.stdout.lines().next()?;
        if line.contains("JobState=") {
            let state = field(line, "JobState")?;
            return Some(describe(state, field(line, "ExitCode"), field(line, "Reason")));
        }
        // sacct -P: State|ExitCode|Reason, State may read "CANCELLED by 0".
        let mut parts = line.split('|');
        let state = parts.next()?.split_whitespace().next()?;
        Some(describe(state, parts.next(), parts.next()))
    }

    fn cancel(&self, id: &str) -> Vec<String> {
        argv(&[&self.scancel, id])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(stdout: &str) -> CmdOutput {
        CmdOutput { success: true, code: Some(0), stdout: stdout.into(), stderr: String::new() }
    }

    #[test]
    fn the_job_runs_in_the_submitting_directory() {
        let argv = Slurm::default().submit(Path::new("/h/j.sh"), Path::new("/h/j.out"), Path::new("/w d"));
        assert_eq!(argv, ["sbatch", "--parsable", "--chdir", "/w d", "--output", "/h/j.out", "/h/j.sh"]);
    }

    #[test]
    fn job_ids() {
        let s = Slurm::default();
        assert_eq!(s.job_id("42\n").as_deref(), Some("42"));
        assert_eq!(s.job_id("42;cluster\n").as_deref(), Some("42"));
        assert_eq!(s.job_id("Submitted batch job 42\n"), None);
    }

    #[test]
    fn queue_states() {
        let s = Slurm::default();
        assert_eq!(s.parse_status(&ok("RUNNING\n")), Ok(JobState::Active("RUNNING".into())));
        assert_eq!(s.parse_status(&ok("")), Ok(JobState::Ended(None)));
        assert_eq!(
            s.parse_status(&ok("TIMEOUT\n")),
            Ok(JobState::Ended(Some("TIMEOUT (walltime reached)".into())))
        );
        let gone = CmdOutput {
            success: false,
            code: Some(1),
            stdout: String::new(),
            stderr: "slurm_load_jobs error: Invalid job id specified\n".into(),
        };
        assert_eq!(s.parse_status(&gone), Ok(JobState::Ended(None)));
        let down = CmdOutput {
            success: false,
            code: Some(1),
            stdout: String::new(),
            stderr: "Unable to contact".into(),
        };
        assert!(s.parse_status(&down).is_err());
    }

    #[test]
    fn how_jobs_ended() {
        let s = Slurm::default();
        let scontrol = "JobId=4 JobName=f.sh UserId=root(0) JobState=FAILED Reason=NonZeroExitCode \
                        Dependency=(null) ExitCode=3:0 RunTime=00:00:00";
        assert_eq!(
            s.parse_details(&ok(scontrol)).as_deref(),
            Some("FAILED, exit code 3:0, reason NonZeroExitCode")
        );
        let timeout = "JobId=5 JobState=TIMEOUT Reason=TimeLimit ExitCode=0:0";
        assert_eq!(
            s.parse_details(&ok(timeout)).as_deref(),
            Some("TIMEOUT (walltime reached), reason TimeLimit")
        );
        assert_eq!(s.parse_details(&ok("NODE_FAIL|0:0|\n")).as_deref(), Some("NODE_FAIL (node failure)"));
        assert_eq!(
            s.parse_details(&ok("CANCELLED by 0|0:15|\n")).as_deref(),
            Some("CANCELLED (cancelled), exit code 0:15")
        );
    }
}
