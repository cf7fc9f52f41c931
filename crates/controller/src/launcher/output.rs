//! A job's output as the launchers keep it ([`OutputTail`], the last [`OUTPUT_LINES`] lines)
//! and how a process ended ([`describe_status`]). A leaf: it imports nothing from
//! `launcher/mod.rs`.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing::info;

/// How many lines of a job's output are kept for error messages.
pub const OUTPUT_LINES: usize = 40;

/// The tail of a job's output, filled by reader tasks.
#[derive(Clone, Default, Debug)]
pub struct OutputTail(Arc<Mutex<VecDeque<String>>>);

impl OutputTail {
    /// Reads `pipe` line by line into the tail (and the log) until it closes.
    pub fn collect(&self, pipe: impl AsyncRead + Unpin + 'static, source: &'static str) {
        let tail = self.clone();
        actix::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                info!(target: "mpx::job", source, "{line}");
                tail.push(line);
            }
        });
    }

    /// Adds a line.
    pub fn push(&self, line: String) {
        let mut buf = self.0.lock().expect("output lock");
        if buf.len() == OUTPUT_LINES {
            buf.pop_front();
        }
        buf.push_back(line);
    }

    /// The kept lines.
    pub fn text(&self) -> String {
        self.0.lock().expect("output lock").iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Describes how a process ended.
pub fn describe_status(what: &str, status: Option<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("{what} exited with code {code}"),
            (_, Some(sig)) => format!("{what} was killed by signal {sig}"),
            _ => format!("{what} ended"),
        },
        None => format!("{what} ended (status unknown)"),
    }
}
