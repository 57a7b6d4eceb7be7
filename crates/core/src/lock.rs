//! [`RunLock`]: one run at a time per output folder.
//!
//! Two runs writing one folder interleave their files (a dataset manifest with
//! duplicated indices that no resume can repair). The lock is an operating-system file
//! lock on `DIR/.labelgan.lock`: the system releases it when the process ends, however
//! it ends (SIGKILL included), so a killed run never leaves a stale lock behind. The
//! file holds the holder's process id, for the message a second run gets.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The lock file's name inside a locked folder.
pub const LOCK_FILE: &str = ".labelgan.lock";

/// Holds a folder for one run; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    _file: File,
}

impl RunLock {
    /// Locks `dir` (created if missing), or fails naming the process that holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    pid => format!("process {pid}"),
                };
                return Err(Error::invalid(format!(
                    "{} is in use by another labelgan run ({holder}); wait for it to finish or stop it",
                    dir.display()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            write!(f, "{}", std::process::id())?;
            f.flush()
        };
        write(&mut file).map_err(|e| Error::io(&path, e))?;
        Ok(Self { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = std::env::temp_dir().join(format!("labelgan-lock-{}", std::process::id()));
        let first = RunLock::acquire(&dir).unwrap();
        let e = RunLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            e.contains("in use by another labelgan run") && e.contains(&format!("process {}", std::process::id())),
            "{e}"
        );
        drop(first);
        let again = RunLock::acquire(&dir).unwrap();
        assert!(again.path().ends_with(LOCK_FILE));
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
