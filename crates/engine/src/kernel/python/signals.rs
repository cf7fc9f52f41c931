//! Interrupting a Python cell from the control thread: `pthread_kill(main, SIGINT)`, which
//! Python's `default_int_handler` turns into `KeyboardInterrupt` at the next bytecode (under
//! 1 ms for loops and `time.sleep`; a long C or MPI call finishes first). Plain
//! `PyErr_SetInterrupt` from another thread never fires on Python 3.11.
//!
//! A signal must never reach a cell it was not meant for: it is sent only while a cell is
//! marked running (under a mutex the MPI thread also takes to mark the cell done), and a
//! signal sent for a cell that then ended is waited for and discarded before the next one.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use pyo3::{ffi, PyErr, Python};

use crate::kernel::Interrupt;

#[derive(Default)]
struct State {
    running: bool,
    fired: bool,
}

/// Interrupts the Python cell running on the thread that created it.
pub struct PyInterrupt {
    main: libc::pthread_t,
    state: Mutex<State>,
}

impl PyInterrupt {
    /// For cells run on the calling thread.
    pub fn for_this_thread() -> Self {
        // SAFETY: pthread_self has no preconditions.
        PyInterrupt { main: unsafe { libc::pthread_self() }, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a cell is running.
    pub fn is_running(&self) -> bool {
        self.state().running
    }

    /// A cell starts (on the main thread).
    pub fn start(&self) {
        let mut s = self.state();
        s.running = true;
        s.fired = false;
    }

    /// The cell ended (on the main thread, holding the GIL): no more signals for it, and one
    /// already sent is taken out of Python's queue so the next cell never sees it.
    pub fn finish(&self, py: Python<'_>) {
        let fired = {
            let mut s = self.state();
            s.running = false;
            std::mem::take(&mut s.fired)
        };
        if fired {
            // The signal was sent; it reaches this thread at its next return from the kernel.
            let deadline = Instant::now() + Duration::from_millis(200);
            loop {
                // SAFETY: called with the GIL held, on the main thread.
                if unsafe { ffi::PyErr_CheckSignals() } != 0 {
                    drop(PyErr::take(py));
                    break;
                }
                if Instant::now() >= deadline {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

impl Interrupt for PyInterrupt {
    fn interrupt(&self) {
        let mut s = self.state();
        if s.running {
            s.fired = true;
            // SAFETY: `main` is the live main thread (it outlives the control thread); Python's
            // SIGINT handler is installed by the kernel's setup before any cell runs.
            unsafe {
                libc::pthread_kill(self.main, libc::SIGINT);
            }
        }
    }
}
