//! What the files in the persistence directory are called and what is in them.
//!
//! - `midge-<first lsn>.log`, a segment: frames (midge-core's record encoding) appended in LSN
//!   order, the first with the LSN the name says. Only the newest segment is ever written to.
//! - `midge-<lsn>.snap`, a snapshot: the durable state as of `lsn` in midge-core's snapshot
//!   encoding (`midge_core::persist::snapshot`, shared with the simulator). It is written as
//!   `midge-<lsn>.snap.tmp`, fsynced, renamed, and the directory fsynced, so a `.snap` file that
//!   exists is complete.
//!
//! LSNs in names have 20 digits, so names sort in LSN order.

use super::fs::Fs;
use bytes::Bytes;
pub(crate) use midge_core::persist::intact_frame_after;
pub(crate) use midge_core::persist::snapshot::{LoadedSnapshot, decode_owned};
use midge_core::persist::snapshot::{decode_snapshot, snapshot_chunks};
use midge_core::persist::{Lsn, State};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

const PREFIX: &str = "midge-";
const SEGMENT: &str = ".log";
const SNAPSHOT: &str = ".snap";
const TEMP: &str = ".snap.tmp";
/// Suffix given to files `--salvage` moved aside.
pub(crate) const DAMAGED: &str = ".damaged";

/// Bytes of snapshot frames gathered before one write.
const WRITE_CHUNK: usize = 1 << 20;

pub(crate) fn segment_name(first: Lsn) -> String {
    format!("{PREFIX}{first:020}{SEGMENT}")
}

pub(crate) fn snapshot_name(lsn: Lsn) -> String {
    format!("{PREFIX}{lsn:020}{SNAPSHOT}")
}

/// What a file in the directory is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Segment(Lsn),
    Snapshot(Lsn),
    /// An unfinished snapshot.
    Temp,
}

pub(crate) fn classify(name: &str) -> Option<FileKind> {
    let rest = name.strip_prefix(PREFIX)?;
    if rest.len() < 20 || !rest.as_bytes()[..20].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let lsn: Lsn = rest[..20].parse().ok()?;
    match &rest[20..] {
        SEGMENT => Some(FileKind::Segment(lsn)),
        SNAPSHOT => Some(FileKind::Snapshot(lsn)),
        TEMP => Some(FileKind::Temp),
        _ => None,
    }
}

/// The log files of a directory, each list in LSN order.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub segments: Vec<(Lsn, PathBuf)>,
    pub snapshots: Vec<(Lsn, PathBuf)>,
    pub temps: Vec<PathBuf>,
}

pub(crate) fn list(dir: &Path) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        match classify(&name) {
            Some(FileKind::Segment(lsn)) => listing.segments.push((lsn, entry.path())),
            Some(FileKind::Snapshot(lsn)) => listing.snapshots.push((lsn, entry.path())),
            Some(FileKind::Temp) => listing.temps.push(entry.path()),
            None => {}
        }
    }
    listing.segments.sort();
    listing.snapshots.sort();
    Ok(listing)
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

/// Writes `state` as the snapshot `midge-<lsn>.snap` of `dir`: to a temporary file, fsynced,
/// renamed, and the directory fsynced. Returns the snapshot's size. `stop` aborts it.
pub(crate) fn write_snapshot(
    fs: &dyn Fs,
    dir: &Path,
    state: &State,
    stop: &AtomicBool,
) -> Result<u64, SnapshotError> {
    let lsn = state.last_lsn();
    let path = dir.join(snapshot_name(lsn));
    let tmp = dir.join(format!("{}.tmp", snapshot_name(lsn)));
    let result = write_snapshot_file(fs, &tmp, state, stop).and_then(|size| {
        fs.rename(&tmp, &path)?;
        fs.sync_dir(dir)?;
        Ok(size)
    });
    if result.is_err() {
        let _ = fs.remove(&tmp);
    }
    result
}

fn write_snapshot_file(
    fs: &dyn Fs,
    tmp: &Path,
    state: &State,
    stop: &AtomicBool,
) -> Result<u64, SnapshotError> {
    let mut file = fs.open(tmp, true)?;
    let mut offset = 0u64;
    for chunk in snapshot_chunks(state, WRITE_CHUNK) {
        if stop.load(Ordering::Relaxed) {
            return Err(SnapshotError::Stopped);
        }
        file.write_all_at(offset, &chunk)?;
        offset += chunk.len() as u64;
    }
    file.sync_data()?;
    Ok(offset)
}

/// Reads and verifies the snapshot file at `path`, which its name says is at `lsn` (see
/// `midge_core::persist::snapshot::decode_snapshot`).
pub(crate) fn load_snapshot(path: &Path, lsn: Lsn, salvage: bool) -> io::Result<LoadedSnapshot> {
    let data = Bytes::from(std::fs::read(path)?);
    Ok(decode_snapshot(&data, lsn, salvage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(segment_name(1), "midge-00000000000000000001.log");
        assert_eq!(snapshot_name(42), "midge-00000000000000000042.snap");
        assert_eq!(
            classify("midge-00000000000000000042.snap"),
            Some(FileKind::Snapshot(42))
        );
        assert_eq!(
            classify("midge-18446744073709551615.log"),
            Some(FileKind::Segment(u64::MAX))
        );
        assert_eq!(
            classify("midge-00000000000000000042.snap.tmp"),
            Some(FileKind::Temp)
        );
        for other in [
            "midge-42.log",
            "midge-0000000000000000004x.log",
            "midge-00000000000000000042.log.damaged",
            "mosquitto.db",
            "midge-99999999999999999999.log",
        ] {
            assert_eq!(classify(other), None, "{other}");
        }
        assert!(segment_name(9) < segment_name(10));
    }
}
