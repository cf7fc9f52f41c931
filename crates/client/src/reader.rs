//! The client's reader thread: reads the controller's frames of the session, in sequence, and
//! files each reply under its request (arrays decoded, streamed ones assembled by [`Incoming`]),
//! waking the callers that wait for it.

use std::{io::BufReader, sync::Arc, time::Duration};

use mpx_messages::{
    codec::{
        blocking::{self, Landed},
        fds::{FdInbox, FdReader},
        Opener,
    },
    CodecError, ControllerToClient, EngineOutput, MpxError, StreamName, TaskId, DEFAULT_MAX_FRAME,
};

use crate::{
    incoming::{decode_array, decode_streamed, Incoming},
    reply::{EngineResult, TaskResult},
    returned::decode_returned,
    shm::adopt_reply_memfd,
    socket::Socket,
    state::{Closed, Shared},
};

/// The reader thread: files every frame under its request and wakes the waiters. On the Unix
/// connection, descriptors passed with frames are collected as they are read.
pub(crate) fn read_loop(stream: Socket, opener: Opener, shared: Arc<Shared>) {
    match stream {
        Socket::Unix(sock) => {
            let inbox = FdInbox::default();
            let reader = BufReader::with_capacity(1 << 16, FdReader::new(sock, inbox.clone()));
            read_frames(reader, Some(inbox), opener, shared);
        }
        tcp => read_frames(BufReader::with_capacity(1 << 16, tcp), None, opener, shared),
    }
}

fn read_frames(
    mut reader: impl std::io::Read,
    inbox: Option<FdInbox>,
    mut opener: Opener,
    shared: Arc<Shared>,
) {
    let mut incoming = Incoming::default();
    let why = loop {
        let read = blocking::read_frame_landing::<ControllerToClient>(
            &mut reader,
            &mut opener,
            DEFAULT_MAX_FRAME,
            inbox.as_ref(),
            &mut incoming,
        );
        let mut frame = match read {
            Ok(Some(Landed::Frame(frame))) => frame,
            Ok(Some(Landed::InPlace { header, len, binding, refused, .. })) => {
                // Only a chunk is given a place (`Incoming::room`).
                if let ControllerToClient::Chunk { chunk, engine_id } = header {
                    incoming.landed(&chunk, engine_id, len, binding, refused);
                }
                continue;
            }
            Ok(None) => break Closed::Other("the controller closed the connection".into()),
            Err(CodecError::Rejected) => break Closed::Rejected,
            Err(e) => break Closed::Other(e.to_string()),
        };
        // Decode array replies before taking the lock: other threads keep waiting meanwhile.
        // `read_frame` verified every payload MAC; a refused payload is the result's error.
        let binding = frame.buffers.first().and_then(|b| b.binding());
        let fds = std::mem::take(&mut frame.fds);
        let (mut header, mut buffers, refused) = match frame.into_parts() {
            Ok((header, buffers)) => (header, buffers, None),
            Err((header, refused)) => (header, Vec::new(), Some(refused)),
        };
        if let ControllerToClient::Chunk { chunk, engine_id } = header {
            incoming.add(chunk, engine_id, (buffers, binding), refused);
            continue;
        }
        if let ControllerToClient::Output(piece) = header {
            add_output(&shared, piece);
            continue;
        }
        if let ControllerToClient::BalancedResults(results) = header {
            let received = mpx_messages::unix_time();
            let results: Vec<(TaskId, TaskResult)> = results
                .into_iter()
                .map(|mut r| {
                    let (array, returned) = match &refused {
                        None => (
                            decode_array(&mut r.outcome, &buffers),
                            decode_returned(&mut r.outcome, &buffers),
                        ),
                        Some(why) => {
                            r.outcome.error =
                                Some(MpxError::authentication(format!("refused the reply: {why}")));
                            (None, None)
                        }
                    };
                    let result = TaskResult {
                        engine_id: r.engine_id,
                        outcome: r.outcome,
                        array,
                        returned,
                        attempts: r.attempts,
                        received,
                    };
                    (r.id, result)
                })
                .collect();
            drop(buffers);
            let mut state = shared.state.lock().expect("client state");
            for (id, result) in results {
                state.balanced.arrived(id, result);
            }
            drop(state);
            shared.cond.notify_all();
            continue;
        }
        // The lent memfds the controller placed and the engines released.
        match &header {
            ControllerToClient::SubmitReply(reply) => {
                shared.lender.submitted(reply.req_id, reply.error.is_none().then_some(&reply.engines[..]));
            }
            ControllerToClient::EngineReply(res) => {
                shared.lender.released(res.engine_id, &res.outcome.released)
            }
            _ => {}
        }
        // A result ends its stream, whatever became of it.
        let streamed = match &header {
            ControllerToClient::EngineReply(res) => incoming.take(res.req_id, res.engine_id),
            _ => None,
        };
        let (array, returned) = match (&mut header, refused) {
            (ControllerToClient::EngineReply(res), None) if buffers.is_empty() && streamed.is_some() => {
                (decode_streamed(&mut res.outcome, streamed.expect("checked")), None)
            }
            (ControllerToClient::EngineReply(res), None) => {
                adopt_reply_memfd(&shared.lender, res.engine_id, &mut res.outcome, &fds, &mut buffers);
                (decode_array(&mut res.outcome, &buffers), decode_returned(&mut res.outcome, &buffers))
            }
            (ControllerToClient::EngineReply(res), Some(refused)) => {
                res.outcome.error = Some(MpxError::authentication(format!("refused the reply: {refused}")));
                (None, None)
            }
            _ => (None, None),
        };
        // The arrays hold what they need of the frame: let go of the rest before the result
        // is visible, so that memory a caller drops with its result is freed then, not when
        // this thread gets round to it.
        drop(buffers);
        drop(fds);
        let mut state = shared.state.lock().expect("client state");
        let mut wake = true;
        match header {
            ControllerToClient::InfoReply(info) => {
                state.info = Some(info);
                state.info_seq += 1;
            }
            ControllerToClient::SubmitReply(reply) => {
                if let Some(req) = state.requests.get_mut(&reply.req_id) {
                    req.id = reply.id;
                    match reply.error {
                        Some(e) => req.error = Some(e),
                        None => req.engines = Some(reply.engines),
                    }
                    // The engines' replies come after this on the connection: an acceptance
                    // completes only a request with no engines, and otherwise matters only
                    // to those waiting for it (a wake-up for nothing costs the waiting caller
                    // a CPU's wake on every request).
                    wake = req.done();
                }
                wake |= state.accept_waiters > 0;
            }
            ControllerToClient::EngineReply(mut res) => {
                // The engine's output came before its reply: it joins the result (unless it
                // was streamed).
                if let Some(out) = state.output.get_mut(&res.req_id) {
                    let stdout = out.take(res.engine_id, StreamName::Stdout);
                    let stderr = out.take(res.engine_id, StreamName::Stderr);
                    res.outcome.stdout.insert_str(0, &stdout);
                    res.outcome.stderr.insert_str(0, &stderr);
                }
                if let Some(req) = state.requests.get_mut(&res.req_id) {
                    let result = EngineResult {
                        engine_id: res.engine_id,
                        outcome: res.outcome,
                        array,
                        returned,
                        received: mpx_messages::unix_time(),
                    };
                    req.results.insert(res.engine_id, result);
                }
            }
            ControllerToClient::ShutdownReply => state.shutdown_acked = true,
            ControllerToClient::Stuck(stuck) => {
                if let Some(req) = state.requests.get_mut(&stuck.req_id) {
                    req.stuck.push(stuck);
                }
            }
            ControllerToClient::Chunk { .. }
            | ControllerToClient::Output(_)
            | ControllerToClient::BalancedResults(_) => {}
            reply @ (ControllerToClient::InterruptReply { .. }
            | ControllerToClient::WhereReply { .. }
            | ControllerToClient::AbortReply { .. }
            | ControllerToClient::RestartReply { .. }
            | ControllerToClient::HistoryReply(_)) => state.control.push(reply),
        }
        drop(state);
        if wake {
            shared.cond.notify_all();
        }
    };
    shared.state.lock().expect("client state").closed = Some(why);
    shared.cond.notify_all();
}

/// Files a piece of output under its request: into the request's [`OutputStream`] queue, waiting
/// (in steps of 100 ms) while that queue is full, which holds back the reading of this
/// connection and so the controller's sends; or into what its results keep.
///
/// [`OutputStream`]: crate::output::OutputStream
fn add_output(shared: &Shared, piece: EngineOutput) {
    let mut state = shared.state.lock().expect("client state");
    if !state.requests.contains_key(&piece.req_id) {
        return;
    }
    while !state.output.get(&piece.req_id).is_none_or(|o| o.has_room()) {
        state = shared.cond.wait_timeout(state, Duration::from_millis(100)).expect("client state").0;
    }
    state.output.entry(piece.req_id).or_default().add(piece);
    drop(state);
    shared.cond.notify_all();
}
