//! PBS (OpenPBS, PBS Pro, Torque): `qsub` submits and prints the job id, `qstat -f` polls (the
//! job is gone once qstat fails for it or omits it), `qdel` cancels.

use std::path::Path;

use super::{
    batch::{BatchLauncher, BatchSystem, JobState},
    command::{CmdOutput, CommandError},
};

/// The built-in job script (OpenPBS/PBS Pro resource syntax; Torque sites use
/// `--launcher-template` with `-l nodes=...`). Variables: `{n}`, `{queue}`, `{walltime}`,
/// `{connection_file}`, `{engine}`, `{job_name}`, `{mpirun}`, `{kernel}`.
pub const DEFAULT_TEMPLATE: &str = "#!/bin/sh
#PBS -N {job_name}
#PBS -V
#PBS -l select={n}:ncpus=1:mpiprocs=1
#PBS -q {queue}
#PBS -l walltime={walltime}
cd \"${PBS_O_WORKDIR:-.}\"
exec {mpirun} -n {n} {engine} --kernel {kernel} --connect {connection_file}
";

/// The exit code of `qstat` for a job it does not know.
const UNKNOWN_JOB_EXIT: i32 = 153;

/// Engines as a PBS batch job.
pub type PbsLauncher = BatchLauncher<Pbs>;

/// The PBS commands (names or paths).
#[derive(Debug, Clone)]
pub struct Pbs {
    /// `qsub`.
    pub qsub: String,
    /// `qstat`.
    pub qstat: String,
    /// `qdel`.
    pub qdel: String,
}

impl Default for Pbs {
    fn default() -> Self {
        Pbs { qsub: "qsub".into(), qstat: "qstat".into(), qdel: "qdel".into() }
    }
}

/// `key = value` from `qstat -f` output (key compared without case: Torque and PBS Pro differ).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// How a job listed as complete (`C` in Torque, `F` in PBS Pro) ended.
fn describe(text: &str) -> String {
    match field(text, "exit_status") {
        Some(code) => format!("finished with exit status {code}"),
        None => "finished".into(),
    }
}

impl BatchSystem for Pbs {
    fn name(&self) -> &'static str {
        "pbs"
    }

    fn default_template(&self) -> &'static str {
        DEFAULT_TEMPLATE
    }

    fn submit(&self, script: &Path, output: &Path, _workdir: &Path) -> Vec<String> {
        // qsub runs in `workdir`: the job script `cd`s to `$PBS_O_WORKDIR`, qsub's directory.
        let output = output.to_string_lossy().into_owned();
        vec![
            self.qsub.clone(),
            "-j".into(),
            "oe".into(),
            "-o".into(),
            output,
            script.to_string_lossy().into(),
        ]
    }

    fn job_id(&self, stdout: &str) -> Option<String> {
        // `123.server` (PBS Pro, Torque); take the last non-empty line, as some sites print a banner.
        let id = stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
        (!id.contains(char::is_whitespace) && id.chars().next()?.is_ascii_digit()).then(|| id.to_string())
    }

    fn status(&self, id: &str) -> Vec<String> {
        vec![self.qstat.clone(), "-f".into(), id.into()]
    }

    fn parse_status(&self, out: &CmdOutput) -> Result<JobState, CommandError> {
        if !out.success {
            let text = out.text();
            // 153 is PBS's "unknown job id" (PBSE_UNKJOBID as an exit code); Slurm's qstat
            // wrapper exits with it without a word once Slurm has forgotten the job.
            let gone = out.code == Some(UNKNOWN_JOB_EXIT)
                || ["Unknown Job", "has finished", "does not exist"].iter().any(|s| text.contains(s));
            return if gone { Ok(JobState::Ended(None)) } else { Err(CommandError::Failed(text)) };
        }
        match field(&out.stdout, "job_state") {
            None => Ok(JobState::Ended(None)),
            Some(s) if s == "C" || s == "F" => Ok(JobState::Ended(Some(describe(&out.stdout)))),
            Some(s) => Ok(JobState::Active(s.to_string())),
        }
    }

    fn details(&self, id: &str) -> Vec<Vec<String>> {
        // PBS Pro keeps finished jobs for `qstat -x`; Torque lists them as C for a while.
        vec![vec![self.qstat.clone(), "-x".into(), "-f".into(), id.into()]]
    }

    fn parse_details(&self, out: &CmdOutput) -> Option<String> {
        (out.success && field(&out.stdout, "exit_status").is_some()).then(|| describe(&out.stdout))
    }

    fn cancel(&self, id: &str) -> Vec<String> {
        vec![self.qdel.clone(), id.into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(success: bool, stdout: &str, stderr: &str) -> CmdOutput {
        CmdOutput {
            success,
            code: Some(if success { 0 } else { 1 }),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn job_ids() {
        let p = Pbs::default();
        assert_eq!(p.job_id("1234.pbs-server\n").as_deref(), Some("1234.pbs-server"));
        assert_eq!(p.job_id("qsub: error\n"), None);
        assert_eq!(p.job_id(""), None);
    }

    #[test]
    fn queue_states() {
        let p = Pbs::default();
        let running = "Job Id: 7.srv\n    Job_Name = mpx\n    job_state = R\n";
        assert_eq!(p.parse_status(&out(true, running, "")), Ok(JobState::Active("R".into())));
        let done = "Job Id: 7.srv\n    job_state = C\n    exit_status = 271\n";
        assert_eq!(
            p.parse_status(&out(true, done, "")),
            Ok(JobState::Ended(Some("finished with exit status 271".into())))
        );
        assert_eq!(
            p.parse_status(&out(false, "", "qstat: Unknown Job Id 7.srv\n")),
            Ok(JobState::Ended(None))
        );
        assert!(p.parse_status(&out(false, "", "cannot connect to server")).is_err());
        // Slurm's qstat wrapper: exit 153, nothing printed, once the job is forgotten.
        let forgotten = CmdOutput { code: Some(153), ..out(false, "", "") };
        assert_eq!(p.parse_status(&forgotten), Ok(JobState::Ended(None)));
        // Its `qstat -f` of a finished job: state C, no exit status.
        let slurm_done = "Job Id:\t3\n\tJob_Name = mpx-x\n\tjob_state = C\n\tqueue = debug\n";
        assert_eq!(p.parse_status(&out(true, slurm_done, "")), Ok(JobState::Ended(Some("finished".into()))));
        let finished = "Job Id: 7.srv\n    job_state = F\n    Exit_status = 0\n";
        assert_eq!(p.parse_details(&out(true, finished, "")).as_deref(), Some("finished with exit status 0"));
    }
}
