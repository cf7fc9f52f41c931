//! How engines are started: one trait, one implementation per system.
//!
//! A launcher starts a job of N engines that connect back with the connection file, reports
//! when that job ends by itself, and stops it (with a grace period, then by force).
//!
//! - [`local`]: mpirun on this machine, in its own process group.
//! - [`slurm`] and [`pbs`]: one batch job (script from a [`template`]), through [`batch`].
//! - [`external`]: nothing; engines are started by hand (`mpx controller start`).
//!
//! This file only declares the launchers' files and re-exports their items: none of them
//! imports it (they import each other: `job.rs` and `output.rs` hold what they share).

pub mod batch;
pub mod command;
pub mod external;
mod job;
pub mod local;
mod output;
pub mod pbs;
pub mod program;
pub mod slurm;
pub mod template;

pub use batch::{BatchLauncher, BatchOptions};
pub use external::ExternalEngines;
pub use job::{explain_death, Launcher};
pub use local::{mpirun_command, LocalLauncher};
pub use output::{describe_status, OutputTail, OUTPUT_LINES};
pub use pbs::PbsLauncher;
pub use program::EngineProgram;
pub use slurm::SlurmLauncher;

pub use mpx_messages::Kernel;
