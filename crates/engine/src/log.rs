//! The engine's log: its own file, `$MPX_HOME/cluster-<id>/engine-<engine id>.log` beside the
//! connection file (`mpx logs --engine ID`), instead of lines passing through mpirun.
//!
//! The engine id is known only once the engine has registered: until then lines are kept in
//! memory (and warnings and errors also go to stderr, so that an engine that fails before
//! registering still says why in mpirun's output); [`attach`] writes them to the file and
//! every later line goes there.
//!
//! The filter is `MPX_LOG`, or `info`.

use std::{
    fs::File,
    io::{self, Write},
    path::Path,
    sync::{Mutex, OnceLock},
};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// At most this many bytes are kept before the engine registers (older lines are dropped).
const PENDING_MAX: usize = 1 << 20;

/// Where lines go.
#[derive(Debug)]
enum Sink {
    /// Before registration: kept here.
    Pending(Vec<u8>),
    /// After: the engine's log file.
    File(File),
}

static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();

fn sink() -> &'static Mutex<Sink> {
    SINK.get_or_init(|| Mutex::new(Sink::Pending(Vec::new())))
}

/// Installs the engine's log as the global tracing subscriber (for `mpx-engine` and custom
/// engine binaries; [`crate::main_with`] attaches it to the file once registered).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MPX_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(EngineLog).init();
}

/// Sends the log to engine `engine`'s file of the cluster of `connection_file` (with the lines
/// logged so far). Does nothing for an engine whose log was not set up by [`init`], and keeps
/// logging to stderr if the file cannot be made.
pub fn attach(connection_file: &Path, engine: u32) {
    let Some(sink) = SINK.get() else { return };
    let path = mpx_messages::connection::engine_log(connection_file, engine);
    let file = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| File::create(&path));
    let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
    match file {
        Ok(mut file) => {
            if let Sink::Pending(lines) = &*sink {
                let _ = file.write_all(lines);
            }
            *sink = Sink::File(file);
        }
        Err(e) => {
            eprintln!("mpx-engine: cannot write the log {}: {e}; logging to stderr", path.display());
            let _ = io::stderr().write_all(match &*sink {
                Sink::Pending(lines) => lines,
                Sink::File(_) => &[],
            });
            *sink = Sink::Pending(Vec::new());
        }
    }
}

/// The [`MakeWriter`] of the engine's log.
#[derive(Clone, Copy, Debug)]
pub struct EngineLog;

/// One line's writer: to the file, or kept (and on stderr when `loud`).
#[derive(Debug)]
pub struct LineWriter {
    loud: bool,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut sink = sink().lock().unwrap_or_else(|e| e.into_inner());
        match &mut *sink {
            Sink::File(file) => file.write_all(buf)?,
            Sink::Pending(lines) => {
                if self.loud {
                    let _ = io::stderr().write_all(buf);
                }
                if lines.len() + buf.len() > PENDING_MAX {
                    lines.clear();
                }
                lines.extend_from_slice(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for EngineLog {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { loud: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter { loud: *meta.level() <= Level::WARN }
    }
}
