//! Output while it happens: what a running cell writes to stdout and stderr travels as
//! [`TaskOutput`] messages (engine → controller) and [`EngineOutput`] messages (controller →
//! client), each at most [`OUTPUT_CHUNK`] bytes of text, before the task's reply. The reply's
//! `Outcome` then carries no stdout or stderr of its own: a client that wants the whole text
//! joins the pieces (the Rust client does, up to a cap; see `mpx_client`).

use serde::{Deserialize, Serialize};

use crate::EngineId;

/// The most text one output message carries (64 KiB): output of any size travels as many
/// small frames, never as one that could exceed a frame cap.
pub const OUTPUT_CHUNK: usize = 64 * 1024;

/// Which standard stream a piece of output was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamName {
    /// `sys.stdout`, `print`.
    Stdout,
    /// `sys.stderr`.
    Stderr,
}

impl StreamName {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamName::Stdout => "stdout",
            StreamName::Stderr => "stderr",
        }
    }
}

impl std::fmt::Display for StreamName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A piece of what a running task wrote (engine → controller), sent while it runs and always
/// before its reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutput {
    /// The task that wrote it.
    pub task_id: crate::ids::TaskId,
    /// The stream.
    pub stream: StreamName,
    /// The text (at most [`OUTPUT_CHUNK`] bytes).
    pub text: String,
}

/// A piece of what one engine wrote for a client's request (controller → client), sent while
/// the request runs and always before that engine's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineOutput {
    /// The client's request.
    pub req_id: crate::ids::RequestId,
    /// The engine that wrote it.
    pub engine_id: EngineId,
    /// The stream.
    pub stream: StreamName,
    /// The text (at most [`OUTPUT_CHUNK`] bytes).
    pub text: String,
}

/// The largest prefix of `text` of at most `max` bytes that ends on a character boundary (at
/// least one character, so that a split always moves on).
pub fn split_point(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    let mut at = max;
    while at > 0 && !text.is_char_boundary(at) {
        at -= 1;
    }
    if at == 0 {
        text.char_indices().nth(1).map_or(text.len(), |(i, _)| i)
    } else {
        at
    }
}

/// `text` in pieces of at most `max` bytes, split on character boundaries.
pub fn pieces(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (a, b) = rest.split_at(split_point(rest, max));
        rest = b;
        Some(a)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_split_on_character_boundaries() {
        let text = "aé€😀b".repeat(3);
        for max in 1..8 {
            let parts: Vec<&str> = pieces(&text, max).collect();
            assert_eq!(parts.concat(), text);
            // A piece is over `max` only when one character is.
            assert!(parts.iter().all(|p| p.len() <= max.max(4)), "{max}: {parts:?}");
        }
        assert_eq!(pieces("", 4).count(), 0);
    }

    #[test]
    fn stream_names_are_lowercase_on_the_wire() {
        let out = TaskOutput { task_id: crate::ids::TaskId(3), stream: StreamName::Stderr, text: "x".into() };
        let json = serde_json::to_string(&out).unwrap();
        assert_eq!(json, r#"{"task_id":3,"stream":"stderr","text":"x"}"#);
        assert_eq!(serde_json::from_str::<TaskOutput>(&json).unwrap(), out);
    }
}
