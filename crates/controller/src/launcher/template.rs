//! Batch-script templates: `{name}` variables replaced by values, the rest left as written.
//!
//! Only the known variable names are replaced, so shell syntax such as `${SLURM_JOB_ID}` or
//! `{a,b}` passes through untouched. A directive line (one starting with `#`) that uses a
//! variable without a value is left out, so `#SBATCH --partition={queue}` disappears when no
//! queue was given.

use crate::error::ClusterError;

/// The variables a template may use, with their values (empty = not set).
#[derive(Debug, Clone, Default)]
pub struct TemplateVars {
    /// `{n}`: number of engines.
    pub n: u32,
    /// `{queue}`: queue or partition.
    pub queue: String,
    /// `{walltime}`: time limit, `HH:MM:SS`.
    pub walltime: String,
    /// `{connection_file}`: the controller's connection file.
    pub connection_file: String,
    /// `{engine}`: the engine's command, already quoted for the shell
    /// ([`EngineProgram::shell_words`](super::program::EngineProgram::shell_words)).
    pub engine: String,
    /// `{job_name}`: the job's name.
    pub job_name: String,
    /// `{mpirun}`: the mpirun command with its extra arguments.
    pub mpirun: String,
    /// `{kernel}`: the engines' cell language (`python`, `rhai`), for `mpx-engine --kernel`.
    pub kernel: String,
}

impl TemplateVars {
    /// `(name, value)` pairs; paths and commands are quoted for the shell where needed.
    fn pairs(&self) -> [(&'static str, String); 8] {
        [
            ("n", self.n.to_string()),
            ("queue", self.queue.clone()),
            ("walltime", self.walltime.clone()),
            ("connection_file", shell_quote(&self.connection_file)),
            ("engine", self.engine.clone()),
            ("job_name", self.job_name.clone()),
            ("mpirun", self.mpirun.clone()),
            ("kernel", self.kernel.clone()),
        ]
    }
}

/// Renders `template` with `vars`.
///
/// # Errors
/// [`ClusterError::BadTemplate`] if the template never uses `{connection_file}` (the engines
/// could not find the controller).
pub fn render(template: &str, vars: &TemplateVars) -> Result<String, ClusterError> {
    if !template.contains("{connection_file}") {
        return Err(ClusterError::BadTemplate(
            "it must pass {connection_file} to the engines (e.g. `mpx-engine --connect {connection_file}`)"
                .into(),
        ));
    }
    let pairs = vars.pairs();
    let mut out = String::with_capacity(template.len() + 256);
    for line in template.lines() {
        let directive = line.trim_start().starts_with('#') && !line.starts_with("#!");
        let uses_empty =
            pairs.iter().any(|(name, value)| value.is_empty() && line.contains(&format!("{{{name}}}")));
        if directive && uses_empty {
            continue;
        }
        let mut line = line.to_string();
        for (name, value) in &pairs {
            line = line.replace(&format!("{{{name}}}"), value);
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Quotes `s` for a POSIX shell (with `shlex`), unless it is made only of harmless characters.
pub fn shell_quote(s: &str) -> String {
    // shlex quotes every string (it refuses only NUL bytes, which no argument can hold).
    shlex::try_quote(s).map_or_else(|_| format!("'{}'", s.replace('\'', r"'\''")), |q| q.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> TemplateVars {
        TemplateVars {
            n: 4,
            queue: String::new(),
            walltime: "01:00:00".into(),
            connection_file: "/home/a b/cluster-x.json".into(),
            engine: "/bin/mpx-engine".into(),
            job_name: "mpx-x".into(),
            mpirun: "mpirun".into(),
            kernel: "rhai".into(),
        }
    }

    #[test]
    fn replaces_known_variables_and_keeps_shell_syntax() {
        let t = "#!/bin/sh\n#SBATCH --ntasks={n}\n#SBATCH --partition={queue}\n#SBATCH --time={walltime}\n\
                 echo ${SLURM_JOB_ID} {other}\n{mpirun} -n {n} {engine} --kernel {kernel} --connect {connection_file}\n";
        let s = render(t, &vars()).unwrap();
        assert_eq!(
            s,
            "#!/bin/sh\n#SBATCH --ntasks=4\n#SBATCH --time=01:00:00\necho ${SLURM_JOB_ID} {other}\n\
             mpirun -n 4 /bin/mpx-engine --kernel rhai --connect '/home/a b/cluster-x.json'\n"
        );
    }

    #[test]
    fn a_template_without_the_connection_file_is_refused() {
        assert!(matches!(render("mpirun {engine}\n", &vars()), Err(ClusterError::BadTemplate(_))));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a/b-c_d.json"), "/a/b-c_d.json");
        for s in ["it's", "", "a b", "$HOME", "x\"y", "*"] {
            assert_ne!(shell_quote(s), s);
            assert_eq!(shlex::split(&shell_quote(s)), Some(vec![s.to_string()]), "{s:?}");
        }
    }
}
