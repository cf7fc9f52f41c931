//! No launcher: the controller runs alone and engines are started by hand
//! (`mpirun -n 4 mpx-engine --connect FILE`), before or after it. Nothing is started, the "job"
//! never ends by itself, and stopping leaves the engines to the controller's shutdown request.

use std::{path::Path, time::Duration};

use futures::{future::LocalBoxFuture, FutureExt};

use super::job::Launcher;
use crate::error::ClusterError;

/// Starts nothing; engines join by themselves.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExternalEngines;

impl Launcher for ExternalEngines {
    fn start(&mut self, _n: u32, _connection_file: &Path) -> Result<(), ClusterError> {
        Ok(())
    }

    fn wait(&mut self) -> LocalBoxFuture<'_, String> {
        std::future::pending().boxed_local()
    }

    fn stop(&mut self, _grace: Duration) -> LocalBoxFuture<'_, ()> {
        async {}.boxed_local()
    }

    fn output(&self) -> String {
        String::new()
    }

    fn pid(&self) -> Option<u32> {
        None
    }
}
