//! What the output tests of several modules build: a piece of output, an engine's result.

use mpx_messages::{EngineId, EngineOutput, Outcome, RequestId, StreamName};

use crate::reply::EngineResult;

/// Engine `engine`'s stdout `text` for request 1.
pub(crate) fn piece(engine: u32, text: &str) -> EngineOutput {
    EngineOutput {
        req_id: RequestId(1),
        engine_id: EngineId::from(engine),
        stream: StreamName::Stdout,
        text: text.into(),
    }
}

/// A result of engine `engine` that ran for `ran` seconds, with `value` if any.
pub(crate) fn result(engine: u32, ran: f64, value: Option<&str>) -> EngineResult {
    let outcome = Outcome {
        value: value.map(Into::into),
        started: 1000.0,
        completed: 1000.0 + ran,
        ..Default::default()
    };
    EngineResult { engine_id: EngineId::from(engine), outcome, array: None, returned: None, received: 0.0 }
}
