//! Reading the persistence directory back at startup: midge-core's `persist::recovery::plan`
//! decides (the snapshot to load, the segments to replay, a torn tail to cut, leftovers of a
//! crash to remove, refusal on damage a crash does not explain, what salvage keeps), and this
//! module carries its plan out on the real directory and logs what it did. The simulator runs
//! the same plan against its simulated disk.
//!
//! With `salvage`, recovery keeps every record that reads and fits, logs each thing it skipped,
//! writes a snapshot of what it recovered and moves the damaged files aside (`.damaged`), so
//! the next start is clean.

use super::dir_lock::{DirLock, LockError};
use super::format::{self, SnapshotError};
use super::fs::OsFs;
use bytes::Bytes;
use midge_core::persist::recovery::{self, FileOp, Leftover};
use midge_core::persist::{Lsn, State};
use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// The durable state found at startup, and where the log continues.
#[derive(Debug)]
pub struct Recovered {
    pub state: State,
    pub report: Report,
    /// The segment to keep appending to (first LSN, path, length); `None` starts a new one.
    pub(crate) segment: Option<(Lsn, PathBuf, u64)>,
    /// Bytes of the snapshot loaded, and of the log replayed after it.
    pub(crate) snapshot_size: u64,
    pub(crate) log_bytes: u64,
    /// The directory's lock, taken before anything was read; the storage keeps it.
    pub(crate) lock: DirLock,
}

/// What recovery found and did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The snapshot loaded.
    pub snapshot: Option<PathBuf>,
    /// Segments replayed, and records applied from them.
    pub segments: usize,
    pub records: u64,
    /// A torn tail cut off: the file, the offset it was cut at, the bytes removed.
    pub truncated: Option<(PathBuf, u64, u64)>,
    /// With salvage: what was skipped, one line each.
    pub skipped: Vec<String>,
    /// Files removed as left over by a crash (unfinished snapshots, compacted segments).
    pub removed: Vec<PathBuf>,
}

/// Damage recovery will not start on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryError {
    pub path: PathBuf,
    pub offset: Option<u64>,
    pub reason: String,
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(
                f,
                "{} at byte offset {offset}: {}",
                self.path.display(),
                self.reason
            ),
            None => write!(f, "{}: {}", self.path.display(), self.reason),
        }
    }
}

impl std::error::Error for RecoveryError {}

fn io_error(path: &Path, e: std::io::Error) -> RecoveryError {
    RecoveryError {
        path: path.to_path_buf(),
        offset: None,
        reason: e.to_string(),
    }
}

/// Recovers the durable state kept in `dir` (created if missing). Fails if another daemon
/// (or another [`Recovered`] or storage in this process) uses the directory.
pub fn recover(dir: &Path, salvage: bool) -> Result<Recovered, RecoveryError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let lock = DirLock::acquire(dir).map_err(|e| match e {
        LockError::Held(path) => RecoveryError {
            path,
            offset: None,
            reason: format!(
                "locked: another midge uses {} (two brokers on one persistence directory \
                 would corrupt it); stop it or give this one another persistence_location",
                dir.display()
            ),
        },
        LockError::Io(path, e) => RecoveryError {
            reason: format!("cannot lock the directory: {e}"),
            ..io_error(&path, e)
        },
    })?;
    let names = format::names(dir).map_err(|e| io_error(dir, e))?;
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    };
    let plan = recovery::plan(&names, read, salvage).map_err(|e| RecoveryError {
        path: dir.join(&e.file),
        offset: e.offset,
        reason: e.reason,
    })?;
    for line in &plan.report.skipped {
        tracing::error!("salvage: skipped {line} (in {})", dir.display());
    }
    let r = &plan.report;
    let mut report = Report {
        snapshot: r.snapshot.as_ref().map(|n| dir.join(n)),
        segments: r.segments,
        records: r.records,
        truncated: r
            .truncated
            .as_ref()
            .map(|(n, at, cut)| (dir.join(n), *at, *cut)),
        skipped: r.skipped.clone(),
        removed: Vec::new(),
    };
    for op in &plan.ops {
        carry_out(dir, op, &plan.state, &mut report)?;
    }
    Ok(Recovered {
        segment: plan
            .append_to
            .map(|seg| (seg.first, dir.join(seg.name), seg.len)),
        state: plan.state,
        report,
        snapshot_size: plan.snapshot_size,
        log_bytes: plan.log_bytes,
        lock,
    })
}

/// Carries out one step of the recovery plan.
fn carry_out(
    dir: &Path,
    op: &FileOp,
    state: &State,
    report: &mut Report,
) -> Result<(), RecoveryError> {
    match op {
        FileOp::Remove { name, why } => {
            let path = dir.join(name);
            match why {
                Leftover::Unfinished => {
                    tracing::info!("removing unfinished snapshot {}", path.display());
                    std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                    report.removed.push(path);
                }
                Leftover::Replaced => {
                    if std::fs::remove_file(&path).is_ok() {
                        tracing::info!("removed {} (compacted before the restart)", path.display());
                        report.removed.push(path);
                    }
                }
                Leftover::Salvaged => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        FileOp::Truncate { name, len } => {
            let path = dir.join(name);
            truncate(&path, *len).map_err(|e| io_error(&path, e))?;
            if let Some((_, at, cut)) = &report.truncated {
                tracing::warn!(
                    "{}: cut off {cut} bytes of a write torn by a crash, at byte offset {at}",
                    path.display()
                );
            }
        }
        FileOp::Sync { name } => {
            let path = dir.join(name);
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.sync_data())
                .map_err(|e| io_error(&path, e))?;
        }
        FileOp::MoveAside { name, to } => {
            let (path, aside) = (dir.join(name), dir.join(to));
            std::fs::rename(&path, &aside).map_err(|e| io_error(&path, e))?;
            tracing::error!(
                "salvage: moved {} aside as {}; delete it once inspected",
                path.display(),
                aside.display()
            );
        }
        FileOp::WriteSnapshot { name } => {
            let path = dir.join(name);
            format::write_snapshot(&OsFs, dir, state, &AtomicBool::new(false), false).map_err(
                |e| {
                    let reason = match e {
                        SnapshotError::Io(e) => e.to_string(),
                        SnapshotError::Stopped => "stopped".to_owned(),
                    };
                    RecoveryError {
                        path: path.clone(),
                        offset: None,
                        reason: format!("cannot write the salvaged state: {reason}"),
                    }
                },
            )?;
            tracing::warn!(
                "salvage: wrote {} with the recovered state (LSN {})",
                path.display(),
                state.last_lsn()
            );
        }
    }
    Ok(())
}

fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}
