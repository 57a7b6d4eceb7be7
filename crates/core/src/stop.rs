//! A clean stop on SIGINT (Ctrl-C) or SIGTERM.
//!
//! Killing a run mid-write is safe (every file is written atomically and resumes), but a
//! signal can do better: finish the file at hand, save a checkpoint and exit. The
//! front end calls [`install_handler`]; long loops (dataset writing, GAN and encoder
//! training) check [`requested`] between items and, when it is set, save what they
//! have and return [`crate::Error::Stopped`]. A second signal stops at once.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

/// Whether a stop was requested.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Requests a stop (what the signal handler does; also for tests and embedders).
pub fn request() {
    STOP.store(true, Ordering::SeqCst);
}

/// Clears a request (for embedders that run several jobs in one process).
pub fn clear() {
    STOP.store(false, Ordering::SeqCst);
}

/// Installs the SIGINT/SIGTERM handler: the first signal requests a stop (the run
/// finishes its current file and exits 130), a second exits at once (130).
pub fn install_handler() -> crate::Result<()> {
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nstopping now");
            std::process::exit(130);
        }
        eprintln!("\nstopping after the current file (again to stop at once); rerun the same command to resume");
    })
    .map_err(|e| crate::Error::invalid(format!("cannot install the signal handler: {e}")))
}

/// [`crate::Error::Stopped`] when a stop was requested, naming what was saved.
pub fn check(saved: &str) -> crate::Result<()> {
    if requested() {
        Err(crate::Error::Stopped(saved.to_string()))
    } else {
        Ok(())
    }
}
