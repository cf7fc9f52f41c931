//! A client's calls about the session as a whole: restart the world, read the history.

use std::time::Duration;

use mpx_messages::{ClientToController, ControllerToClient, EngineId};

use crate::{client::Client, error::ClientError};

impl Client {
    /// Restarts the cluster's own MPI world: its engines end and a new world takes their ids
    /// (variables are lost; the controller, this connection and the connection file stay);
    /// returns the new world's engines once every one is ready. Requests sent meanwhile wait
    /// for the new world.
    ///
    /// # Errors
    /// Refused (engines started by hand), timeout or a lost connection.
    pub fn restart(&self, reason: &str, timeout: Duration) -> Result<Vec<EngineId>, ClientError> {
        let reply = self.control(
            ClientToController::RestartRequest { reason: reason.into() },
            timeout,
            |r| match r {
                ControllerToClient::RestartReply { engines, error } => Some((engines.clone(), error.clone())),
                _ => None,
            },
        )?;
        match reply {
            (engines, None) => Ok(engines),
            (_, Some(e)) => Err(ClientError::Refused(e)),
        }
    }

    /// The session's history, oldest first (see `mpx_messages::history`).
    ///
    /// # Errors
    /// Timeout or a lost connection.
    pub fn history(&self, timeout: Duration) -> Result<mpx_messages::SessionHistory, ClientError> {
        self.control(ClientToController::HistoryRequest, timeout, |r| match r {
            ControllerToClient::HistoryReply(history) => Some(history.clone()),
            _ => None,
        })
    }
}
