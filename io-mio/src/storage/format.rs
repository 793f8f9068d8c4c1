//! The persistence directory's files, as midge-core's `persist::files` names them
//! (`midge-<first lsn>.log` segments, `midge-<lsn>.snap` snapshots, `midge-<lsn>.snap.tmp`
//! while one is written), and writing a snapshot in the order `persist::files::SNAPSHOT_STEPS`
//! gives (the simulator takes the same steps against its simulated disk).

use super::fs::Fs;
use midge_core::persist::files::{Listing, SNAPSHOT_STEPS, SnapshotStep, temp_name};
pub(crate) use midge_core::persist::files::{segment_name, snapshot_name};
pub(crate) use midge_core::persist::snapshot::decode_owned;
use midge_core::persist::snapshot::snapshot_chunks;
use midge_core::persist::{Lsn, State};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Bytes of snapshot frames gathered before one write.
const WRITE_CHUNK: usize = 1 << 20;

/// The names of the files in `dir` (names that are not UTF-8 are no log file of ours).
pub(crate) fn names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Ok(name) = entry?.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// The log files of a directory, each list in LSN order.
fn list(dir: &Path) -> io::Result<Listing> {
    Ok(Listing::new(names(dir)?))
}

// ------------------------------------------------------------------------------------------
// Snapshots
// ------------------------------------------------------------------------------------------

/// Why a snapshot was not written.
#[derive(Debug)]
pub(crate) enum SnapshotError {
    Io(io::Error),
    /// Asked to stop (the daemon is shutting down).
    Stopped,
}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> SnapshotError {
        SnapshotError::Io(e)
    }
}

/// Writes `state` as the snapshot `midge-<lsn>.snap` of `dir`, taking the steps of
/// `SNAPSHOT_STEPS` in their order: a temporary file, written, fsynced, renamed, and the
/// directory fsynced; then, with `retire`, the files the snapshot replaces are removed.
/// Returns the snapshot's size and how many files were removed. `stop` aborts it.
pub(crate) fn write_snapshot(
    fs: &dyn Fs,
    dir: &Path,
    state: &State,
    stop: &AtomicBool,
    retire: bool,
) -> Result<(u64, usize), SnapshotError> {
    let lsn = state.last_lsn();
    let path = dir.join(snapshot_name(lsn));
    let tmp = dir.join(temp_name(lsn));
    let mut file = None;
    let mut size = 0;
    let mut removed = 0;
    for step in SNAPSHOT_STEPS {
        let done = match step {
            SnapshotStep::CreateTemp => fs.open(&tmp, true).map(|f| file = Some(f)),
            SnapshotStep::Write => match file.as_mut() {
                Some(f) => match write_chunks(&mut **f, state, stop) {
                    Ok(n) => {
                        size = n;
                        Ok(())
                    }
                    Err(e) => {
                        let _ = fs.remove(&tmp);
                        return Err(e);
                    }
                },
                None => Ok(()),
            },
            SnapshotStep::SyncTemp => file.as_mut().map_or(Ok(()), |f| f.sync_data()),
            SnapshotStep::Rename => fs.rename(&tmp, &path),
            SnapshotStep::SyncDir => fs.sync_dir(dir),
            SnapshotStep::RemoveReplaced if retire => {
                removed = remove_replaced(fs, dir, lsn);
                Ok(())
            }
            SnapshotStep::RemoveReplaced => Ok(()),
        };
        if let Err(e) = done {
            let _ = fs.remove(&tmp);
            return Err(e.into());
        }
    }
    Ok((size, removed))
}

fn write_chunks(
    file: &mut dyn super::fs::LogFile,
    state: &State,
    stop: &AtomicBool,
) -> Result<u64, SnapshotError> {
    let mut offset = 0u64;
    for chunk in snapshot_chunks(state, WRITE_CHUNK) {
        if stop.load(Ordering::Relaxed) {
            return Err(SnapshotError::Stopped);
        }
        file.write_all_at(offset, &chunk)?;
        offset += chunk.len() as u64;
    }
    Ok(offset)
}

/// Removes the segments a snapshot at `lsn` replaces (the newest segment starts after it) and
/// older snapshots. Returns how many files went.
fn remove_replaced(fs: &dyn Fs, dir: &Path, lsn: Lsn) -> usize {
    let listing = match list(dir) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("cannot list {}: {e}", dir.display());
            return 0;
        }
    };
    let mut removed = 0;
    for name in listing.replaced_by(lsn) {
        let path = dir.join(&name);
        match fs.remove(&path) {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
        }
    }
    removed
}
