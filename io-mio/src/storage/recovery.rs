//! Reading the persistence directory back at startup.
//!
//! The newest snapshot is loaded and verified, then the records of every segment above its LSN
//! are replayed in order, a batch at a time: the broker ends each batch (the records of one of
//! its steps) with a `Commit`, and a batch is applied whole or not at all. What a crash can
//! leave behind is repaired: a write torn off the end of the newest segment (a frame cut short
//! or garbled with nothing intact after it, or whole frames without their batch's commit) is
//! truncated at the start of its batch (and logged), an unfinished snapshot (`.snap.tmp`) is
//! removed, segments and snapshots a finished compaction no longer needed are removed. Anything
//! else is damage a crash does not explain (a corrupt frame in an earlier segment or before the
//! tail, a damaged snapshot, a gap or reordering of LSNs, a record that does not fit the state)
//! and recovery refuses, naming the file and byte offset, rather than start without
//! acknowledged state.
//!
//! With `salvage`, recovery keeps every record that reads and fits, logs each thing it skipped,
//! writes a snapshot of what it recovered and moves the damaged files aside (`.damaged`), so
//! the next start is clean.

use super::format::{self, DAMAGED, decode_owned, intact_frame_after};
use super::fs::OsFs;
use bytes::Bytes;
use midge_core::persist::{Damage, Lsn, Record, State, scan};
use std::collections::BTreeSet;
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

struct Replay {
    salvage: bool,
    report: Report,
    /// Files with damage (salvage only).
    damaged: BTreeSet<PathBuf>,
}

impl Replay {
    /// Damage: an error, or with salvage a logged skip.
    fn damage(&mut self, path: &Path, offset: u64, reason: String) -> Result<(), RecoveryError> {
        if !self.salvage {
            return Err(RecoveryError {
                path: path.to_path_buf(),
                offset: Some(offset),
                reason,
            });
        }
        let line = format!("{} at byte offset {offset}: {reason}", path.display());
        tracing::error!("salvage: skipped {line}");
        self.report.skipped.push(line);
        self.damaged.insert(path.to_path_buf());
        Ok(())
    }
}

/// Recovers the durable state kept in `dir` (created if missing).
pub fn recover(dir: &Path, salvage: bool) -> Result<Recovered, RecoveryError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let listing = format::list(dir).map_err(|e| io_error(dir, e))?;
    let mut r = Replay {
        salvage,
        report: Report::default(),
        damaged: BTreeSet::new(),
    };
    for tmp in &listing.temps {
        tracing::info!("removing unfinished snapshot {}", tmp.display());
        std::fs::remove_file(tmp).map_err(|e| io_error(tmp, e))?;
        r.report.removed.push(tmp.clone());
    }

    let (mut state, snap_lsn, snapshot_size) = match listing.snapshots.last() {
        None => (State::default(), 0, 0),
        Some((lsn, path)) => {
            let size = std::fs::metadata(path)
                .map_err(|e| io_error(path, e))?
                .len();
            let loaded =
                format::load_snapshot(path, *lsn, salvage).map_err(|e| io_error(path, e))?;
            for d in loaded.damage {
                r.damage(path, d.offset, format!("damaged snapshot: {}", d.reason))?;
            }
            r.report.snapshot = Some(path.clone());
            (loaded.state, *lsn, size)
        }
    };

    // A segment whose successor starts at or below the snapshot's next LSN holds nothing the
    // snapshot does not: a crash stopped compaction before it was removed.
    let segments = &listing.segments;
    let live_from = (0..segments.len())
        .find(|&i| segments.get(i + 1).is_none_or(|next| next.0 > snap_lsn + 1))
        .unwrap_or(segments.len());
    let (obsolete, live) = segments.split_at(live_from);

    let mut cursor = Cursor {
        snap_lsn,
        prev: None,
        committed: 0,
        skipped: false,
    };
    let mut log_bytes = 0u64;
    let mut append_to = None;
    for (i, (first, path)) in live.iter().enumerate() {
        let is_last = i + 1 == live.len();
        let data = Bytes::from(std::fs::read(path).map_err(|e| io_error(path, e))?);
        let valid_end = replay_segment(
            &mut r,
            &mut state,
            &mut cursor,
            *first,
            path,
            &data,
            is_last,
        )?;
        if valid_end < data.len() {
            let cut = (data.len() - valid_end) as u64;
            truncate(path, valid_end as u64).map_err(|e| io_error(path, e))?;
            tracing::warn!(
                "{}: cut off {cut} bytes of a write torn by a crash, at byte offset {valid_end}",
                path.display()
            );
            r.report.truncated = Some((path.clone(), valid_end as u64, cut));
        }
        log_bytes += valid_end as u64;
        r.report.segments += 1;
        if is_last {
            append_to = Some((*first, path.clone(), valid_end as u64));
        }
    }

    let last = if r.damaged.is_empty() {
        cursor.committed.max(snap_lsn)
    } else {
        // Records skipped (salvage): the log still continues after them.
        cursor.prev.unwrap_or(0).max(snap_lsn)
    };
    if state.last_lsn() < last {
        state.set_last_lsn(last);
    }
    if let Some((first, path, len)) = &append_to
        && *len == 0
        && *first != last + 1
    {
        if *first > last + 1 {
            r.damage(
                path,
                0,
                format!("the segment is named for LSN {first} but the log ends at LSN {last}"),
            )?;
        }
        append_to = None;
    }

    let leftovers = obsolete
        .iter()
        .map(|(_, p)| p)
        .chain(listing.snapshots.iter().rev().skip(1).map(|(_, p)| p));
    if r.damaged.is_empty() {
        for path in leftovers {
            if std::fs::remove_file(path).is_ok() {
                tracing::info!("removed {} (compacted before the restart)", path.display());
                r.report.removed.push(path.clone());
            }
        }
        if append_to.is_none()
            && let Some((_, path)) = live.last()
            && std::fs::remove_file(path).is_ok()
        {
            r.report.removed.push(path.clone());
        }
    } else {
        let others: Vec<PathBuf> = leftovers
            .chain(live.iter().map(|(_, p)| p))
            .chain(listing.snapshots.last().map(|(_, p)| p))
            .cloned()
            .collect();
        restart_after_salvage(dir, &state, &r.damaged, &others)?;
        append_to = None;
        log_bytes = 0;
    }

    Ok(Recovered {
        state,
        report: r.report,
        segment: append_to,
        snapshot_size,
        log_bytes,
    })
}

/// Where replay is in the log.
struct Cursor {
    snap_lsn: Lsn,
    /// The last record read, and the last commit applied.
    prev: Option<Lsn>,
    committed: Lsn,
    /// A damaged frame was just skipped (salvage): the LSN after it is not known.
    skipped: bool,
}

/// Replays the complete batches of one segment into `state`. Returns how many of its bytes
/// they take: the rest is a write torn by a crash, which only the newest segment may end with.
fn replay_segment(
    r: &mut Replay,
    state: &mut State,
    cursor: &mut Cursor,
    first: Lsn,
    path: &Path,
    data: &Bytes,
    is_last: bool,
) -> Result<usize, RecoveryError> {
    // The records of the batch being read, with their offsets; applied at its commit.
    let mut batch: Vec<(Lsn, Record, u64)> = Vec::new();
    let mut batch_start = 0;
    let mut damaged = false;
    let mut offset = 0;
    while offset < data.len() {
        let (lsn, record, used) = match decode_owned(data, offset) {
            Ok(frame) => frame,
            Err(error) => {
                let damage = scan(&data.slice(offset..)).damage;
                let after = cursor.prev.unwrap_or(first.saturating_sub(1));
                let later = intact_frame_after(data, offset, after);
                let torn = matches!(damage, Some(Damage::TornTail { .. }));
                if torn && is_last && later.is_none() && !damaged {
                    // Cut by a crash: the batch the write belonged to goes with it.
                    return Ok(if batch.is_empty() {
                        offset
                    } else {
                        batch_start
                    });
                }
                let reason = match later {
                    Some(at) if torn => {
                        format!("damaged record ({error}) with an intact record at byte {at}")
                    }
                    _ if torn => {
                        format!("incomplete record ({error}) in a segment that is not the newest")
                    }
                    _ => format!("corrupt record ({error})"),
                };
                r.damage(path, offset as u64, reason)?;
                damaged = true;
                cursor.skipped = true;
                let declared = match damage {
                    Some(Damage::Corrupt { .. }) => {
                        let len = u32::from_be_bytes(
                            data[offset..offset + 4].try_into().unwrap_or_default(),
                        );
                        Some(offset + 8 + len as usize)
                    }
                    _ => None,
                };
                match later.or(declared) {
                    Some(next) => {
                        offset = next;
                        continue;
                    }
                    None => break,
                }
            }
        };
        let at = offset as u64;
        offset += used;
        if at == 0 && lsn != first {
            r.damage(
                path,
                at,
                format!("the segment is named for LSN {first} but starts with LSN {lsn}"),
            )?;
        }
        match cursor.prev {
            Some(p) if lsn <= p => {
                r.damage(path, at, format!("LSN {lsn} follows LSN {p}: out of order"))?;
                continue;
            }
            Some(p) if lsn > p + 1 && !cursor.skipped => {
                r.damage(
                    path,
                    at,
                    format!("LSN {lsn} follows LSN {p}: records missing"),
                )?;
            }
            None if lsn > cursor.snap_lsn + 1 => {
                let after = if cursor.snap_lsn == 0 {
                    "the start of the log".to_owned()
                } else {
                    format!("the snapshot at LSN {}", cursor.snap_lsn)
                };
                r.damage(
                    path,
                    at,
                    format!("the log resumes at LSN {lsn} after {after}: records missing"),
                )?;
            }
            _ => {}
        }
        cursor.prev = Some(lsn);
        cursor.skipped = false;
        if batch.is_empty() {
            batch_start = at as usize;
        }
        let commit = record == Record::Commit;
        batch.push((lsn, record, at));
        if commit {
            apply_batch(r, state, cursor, path, &mut batch)?;
        }
    }
    if !batch.is_empty() {
        if is_last && !damaged {
            // Whole records but no commit: the rest of the batch never reached the disk.
            return Ok(batch_start);
        }
        if !damaged {
            r.damage(
                path,
                batch_start as u64,
                "records of a batch without its commit, in a segment that is not the newest"
                    .to_owned(),
            )?;
        }
        apply_batch(r, state, cursor, path, &mut batch)?;
    }
    Ok(data.len())
}

/// Applies a batch's records (those above the snapshot).
fn apply_batch(
    r: &mut Replay,
    state: &mut State,
    cursor: &mut Cursor,
    path: &Path,
    batch: &mut Vec<(Lsn, Record, u64)>,
) -> Result<(), RecoveryError> {
    for (lsn, record, at) in batch.drain(..) {
        if lsn <= cursor.snap_lsn {
            continue;
        }
        match state.apply(lsn, &record) {
            Ok(()) => r.report.records += 1,
            Err(e) => r.damage(path, at, format!("inconsistent record: {e}"))?,
        }
        if record == Record::Commit {
            cursor.committed = lsn;
        }
    }
    Ok(())
}

/// After a salvage: damaged files are moved aside (kept for inspection), a snapshot of what
/// was recovered is written, and the other old files go, so the next start finds a clean log.
fn restart_after_salvage(
    dir: &Path,
    state: &State,
    damaged: &BTreeSet<PathBuf>,
    others: &[PathBuf],
) -> Result<(), RecoveryError> {
    for path in damaged {
        let mut aside = path.clone().into_os_string();
        aside.push(DAMAGED);
        std::fs::rename(path, &aside).map_err(|e| io_error(path, e))?;
        tracing::error!(
            "salvage: moved {} aside as {}; delete it once inspected",
            path.display(),
            PathBuf::from(&aside).display()
        );
    }
    format::write_snapshot(&OsFs, dir, state, &AtomicBool::new(false)).map_err(|e| {
        let reason = match e {
            format::SnapshotError::Io(e) => e.to_string(),
            format::SnapshotError::Stopped => "stopped".to_owned(),
        };
        RecoveryError {
            path: dir.join(format::snapshot_name(state.last_lsn())),
            offset: None,
            reason: format!("cannot write the salvaged state: {reason}"),
        }
    })?;
    let snapshot = dir.join(format::snapshot_name(state.last_lsn()));
    for path in others {
        if !damaged.contains(path) && *path != snapshot {
            let _ = std::fs::remove_file(path);
        }
    }
    tracing::warn!(
        "salvage: wrote {} with the recovered state (LSN {})",
        snapshot.display(),
        state.last_lsn()
    );
    Ok(())
}

fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()
}
