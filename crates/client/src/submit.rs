//! Submitting requests on a [`Client`]: each gets its request state, then its frame goes out
//! (a large array streaming in chunks after it, or a memfd on the same-host path).

use bytes::Bytes;
use mpx_messages::{
    Binding, Chunk, ClientToController, CodecError, Frame, Payload, Request, RequestId, SubmitRequest,
    Targets, Ticket,
};

use crate::{client::Client, error::ClientError, result::AsyncResult, state::RequestState};

impl Client {
    /// Submits a request to `targets`; results arrive in the returned [`AsyncResult`].
    ///
    /// # Errors
    /// A lost connection.
    pub fn submit(&self, targets: Targets, request: Request) -> Result<AsyncResult, ClientError> {
        self.submit_with(targets, request, Vec::new())
    }

    /// Takes over request `id` (the id [`AsyncResult::id`] gives), whose client went away
    /// before it ended (`mpx px --timeout` gave up): the controller keeps such requests for a
    /// while and gives each once. The result holds the engines that had not answered when that
    /// client left.
    ///
    /// # Errors
    /// A lost connection; the refusal (not kept) comes from [`AsyncResult::get`].
    pub fn adopt(&self, id: Ticket) -> Result<AsyncResult, ClientError> {
        let req_id = RequestId(self.next_id());
        self.shared.state.lock().expect("client state").requests.insert(req_id, RequestState::default());
        let submitted = mpx_messages::unix_time();
        self.send_frame(&Frame::new(ClientToController::Adopt { req_id, id }))?;
        Ok(AsyncResult { req_id, shared: self.shared.clone(), submitted })
    }

    /// Submits a request whose array bytes travel in `buffers`.
    ///
    /// # Errors
    /// A lost connection.
    pub fn submit_with(
        &self,
        targets: Targets,
        request: Request,
        buffers: Vec<Bytes>,
    ) -> Result<AsyncResult, ClientError> {
        self.submit_from(targets, request, buffers, None)
    }

    /// Submits a request of the tool's own (completions, helpers): it runs as any other, but is
    /// not part of the session's history.
    ///
    /// # Errors
    /// A lost connection.
    pub fn submit_internal(&self, targets: Targets, request: Request) -> Result<AsyncResult, ClientError> {
        self.submit_full(targets, request, Vec::new(), None, true)
    }

    /// Like [`submit_with`](Self::submit_with), telling the controller where a push's or
    /// scatter's array came from (for the session's history: a `.npy` file can be replayed).
    ///
    /// # Errors
    /// A lost connection.
    pub fn submit_from(
        &self,
        targets: Targets,
        request: Request,
        buffers: Vec<Bytes>,
        source: Option<mpx_messages::DataSource>,
    ) -> Result<AsyncResult, ClientError> {
        self.submit_full(targets, request, buffers, source, false)
    }

    fn submit_full(
        &self,
        targets: Targets,
        request: Request,
        buffers: Vec<Bytes>,
        source: Option<mpx_messages::DataSource>,
        internal: bool,
    ) -> Result<AsyncResult, ClientError> {
        let (mut request, mut buffers) = (request, buffers);
        let req_id = RequestId(self.next_id());
        let fds = self.same_host_path(&targets, req_id, &mut request, &mut buffers)?;
        self.shared.state.lock().expect("client state").requests.insert(req_id, RequestState::default());
        let submitted = mpx_messages::unix_time();
        if !fds.is_empty() {
            let request = ClientToController::SubmitRequest(SubmitRequest {
                source,
                internal,
                req_id,
                targets,
                request,
            });
            self.send_frame(&Frame::new(request).with_fds(fds))?;
            return Ok(AsyncResult { req_id, shared: self.shared.clone(), submitted });
        }
        // A push's or scatter's array larger than a chunk streams after the request.
        let chunk = self.chunk_bytes();
        let streamed = matches!(request, Request::Push { .. } | Request::Scatter { .. })
            && buffers.len() == 1
            && buffers[0].len() > chunk;
        let request =
            ClientToController::SubmitRequest(SubmitRequest { source, internal, req_id, targets, request });
        if !streamed {
            self.send_frame(&Frame::with_buffers(request, buffers))?;
            return Ok(AsyncResult { req_id, shared: self.shared.clone(), submitted });
        }
        let array = &buffers[0];
        let mut w = self.writer.lock().expect("client writer");
        let total = array.len();
        let mut send = |frame: &Frame<ClientToController>| {
            w.write(frame).map_err(|e| match e {
                CodecError::Io(io) => self.closed_error().unwrap_or(ClientError::Closed(io.to_string())),
                other => ClientError::Codec(other),
            })
        };
        send(&Frame::new(request))?;
        // Every chunk is bound to the stream's fresh origin and its number: the engine takes
        // them only in their place.
        let origin = Binding::fresh_origin()?;
        for (index, offset) in (0..total).step_by(chunk).enumerate() {
            let piece = Payload::bound(
                array.slice(offset..total.min(offset + chunk)),
                Binding { origin, index: index as u64 },
            );
            let chunk = Chunk { stream: req_id.get(), offset: offset as u64, total: total as u64 };
            send(&Frame::with_payloads(ClientToController::Chunk(chunk), vec![piece]))?;
        }
        Ok(AsyncResult { req_id, shared: self.shared.clone(), submitted })
    }
}
