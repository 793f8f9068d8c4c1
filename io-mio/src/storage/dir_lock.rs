//! One daemon per persistence directory. Two writers appending to one log and compacting it
//! under each other would lose acknowledged state, so the directory is locked before recovery
//! reads it and stays locked until the storage closes.
//!
//! The lock is the standard library's exclusive file lock (`flock` on Unix, `LockFileEx` on
//! Windows) on `midge.lock` in the directory. The operating system releases it when the process
//! ends however it ends (`kill -9`, a crash, power loss), so a stale lock never blocks a
//! restart; for the same reason the file is never removed (removing it would let a second
//! daemon lock a new file of the same name while the first still holds the old one).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The lock file's name; recovery and compaction ignore it, as any name that is not a log
/// file's.
pub(crate) const LOCK_NAME: &str = "midge.lock";

/// The held lock on a persistence directory, released when dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// Why the directory could not be locked.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another process (or another storage in this one) holds it.
    Held(PathBuf),
    Io(PathBuf, std::io::Error),
}

impl DirLock {
    /// Locks `dir` (which must exist), or says who stands in the way.
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let path = dir.join(LOCK_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| LockError::Io(path.clone(), e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held(path)),
            Err(TryLockError::Error(e)) => Err(LockError::Io(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock excludes a second holder, even in the same process (each open file is its
    /// own holder), and is free again once dropped.
    #[test]
    fn a_second_lock_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).expect("first lock");
        match DirLock::acquire(dir.path()) {
            Err(LockError::Held(path)) => assert_eq!(path, dir.path().join(LOCK_NAME)),
            other => panic!("second lock: {other:?}"),
        }
        drop(first);
        DirLock::acquire(dir.path()).expect("lock after release");
        assert!(dir.path().join(LOCK_NAME).exists(), "the lock file stays");
    }
}
