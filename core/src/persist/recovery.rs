//! Reading a log directory back after a restart, without touching it: [`plan`] is given the
//! directory's file names and a way to read a file, and returns the recovered [`State`], a
//! report, where the log continues, and the file operations the driver must carry out (in
//! order) before it appends again. The daemon carries them out on its persistence directory,
//! the simulator on its simulated one: both recover through this code.
//!
//! The newest snapshot is loaded and verified, then the records of every segment above its LSN
//! are replayed in order, a batch at a time: the broker ends each batch (the records of one of
//! its steps) with a `Commit`, and a batch is applied whole or not at all. What a crash can
//! leave behind is repaired: a write torn off the end of the newest segment (a frame cut short
//! or garbled with nothing intact after it, or whole frames without their batch's commit) is
//! truncated at the start of its batch, an unfinished snapshot (`.snap.tmp`) is removed,
//! segments and snapshots a finished compaction no longer needed are removed. Anything else is
//! damage a crash does not explain (a corrupt frame in an earlier segment or before the tail, a
//! damaged snapshot, a gap or reordering of LSNs, a record that does not fit the state) and
//! recovery refuses, naming the file and byte offset, rather than start without acknowledged
//! state.
//!
//! With `salvage`, recovery keeps every record that reads and fits, reports each thing it
//! skipped, and plans to move the damaged files aside (`.damaged`), write a snapshot of what it
//! recovered and remove the rest, so the next start is clean.

use super::files::{DAMAGED, Listing, snapshot_name};
use super::snapshot::{decode_owned, decode_snapshot};
use super::{Damage, Lsn, Record, State, intact_frame_after, scan};
use bytes::Bytes;
use std::collections::BTreeSet;
use std::fmt;

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The snapshot loaded.
    pub snapshot: Option<String>,
    /// Segments replayed, and records applied from them.
    pub segments: usize,
    pub records: u64,
    /// A torn tail to cut off: the file, the offset it is cut at, the bytes removed.
    pub truncated: Option<(String, u64, u64)>,
    /// With salvage: what was skipped, one line each.
    pub skipped: Vec<String>,
}

/// The segment the log continues in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub first: Lsn,
    pub name: String,
    /// Its length once the planned operations are done.
    pub len: u64,
}

/// Why a file is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// An unfinished snapshot: removing it must succeed (a later snapshot at the same LSN is
    /// written under its name).
    Unfinished,
    /// A segment or snapshot a finished compaction replaced, or an empty newest segment named
    /// for an LSN the log does not continue at: removal may fail, the next start tries again.
    Replaced,
    /// Salvage: a file whose content the salvaged snapshot holds.
    Salvaged,
}

/// A change to the directory recovery needs, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    Remove {
        name: String,
        why: Leftover,
    },
    /// Cut a torn tail off: the file is `len` bytes long afterwards, durably (truncate, then
    /// fsync).
    Truncate {
        name: String,
        len: u64,
    },
    /// Make the file's content durable (fsync). The segment the log continues in may end
    /// with records a crash of the process left in the page cache only; they are replayed now,
    /// so they must be on disk before anything builds on them: the next segment (a power loss
    /// would otherwise tear a segment that is no longer the newest), a snapshot, an
    /// acknowledgement.
    Sync {
        name: String,
    },
    /// Salvage: keep a damaged file for inspection under another name.
    MoveAside {
        name: String,
        to: String,
    },
    /// Salvage: write the recovered state as this snapshot (temporary file, fsync, rename,
    /// directory fsync), so the next start finds a clean log.
    WriteSnapshot {
        name: String,
    },
}

/// The outcome of recovery: the state, and what to do before the log continues.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub state: State,
    pub report: Report,
    /// The segment to keep appending to; `None` starts a new one at the next LSN.
    pub append_to: Option<Segment>,
    /// Bytes of the snapshot loaded, and of the log replayed after it.
    pub snapshot_size: u64,
    pub log_bytes: u64,
    pub ops: Vec<FileOp>,
}

/// Damage recovery will not start on (or a file that could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryError {
    pub file: String,
    pub offset: Option<u64>,
    pub reason: String,
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(offset) => write!(f, "{} at byte offset {offset}: {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

impl std::error::Error for RecoveryError {}

struct Replay {
    salvage: bool,
    report: Report,
    /// Files with damage (salvage only).
    damaged: BTreeSet<String>,
}

impl Replay {
    /// Damage: an error, or with salvage a reported skip.
    fn damage(&mut self, file: &str, offset: u64, reason: String) -> Result<(), RecoveryError> {
        if !self.salvage {
            return Err(RecoveryError {
                file: file.to_owned(),
                offset: Some(offset),
                reason,
            });
        }
        self.report
            .skipped
            .push(format!("{file} at byte offset {offset}: {reason}"));
        self.damaged.insert(file.to_owned());
        Ok(())
    }
}

/// Recovers the durable state of a directory holding `names`; `read` returns a file's bytes
/// (an error is reported against that file). Nothing is changed: the driver carries out
/// `Recovery::ops`.
pub fn plan<S: AsRef<str>>(
    names: impl IntoIterator<Item = S>,
    mut read: impl FnMut(&str) -> Result<Bytes, String>,
    salvage: bool,
) -> Result<Recovery, RecoveryError> {
    let listing = Listing::new(names);
    let mut read = |name: &str| {
        read(name).map_err(|reason| RecoveryError {
            file: name.to_owned(),
            offset: None,
            reason,
        })
    };
    let mut r = Replay {
        salvage,
        report: Report::default(),
        damaged: BTreeSet::new(),
    };
    let mut ops: Vec<FileOp> = listing
        .temps
        .iter()
        .map(|name| FileOp::Remove {
            name: name.clone(),
            why: Leftover::Unfinished,
        })
        .collect();

    let (mut state, snap_lsn, snapshot_size) = match listing.snapshots.last() {
        None => (State::default(), 0, 0),
        Some((lsn, name)) => {
            let data = read(name)?;
            let loaded = decode_snapshot(&data, *lsn, salvage);
            for d in loaded.damage {
                r.damage(name, d.offset, format!("damaged snapshot: {}", d.reason))?;
            }
            r.report.snapshot = Some(name.clone());
            (loaded.state, *lsn, data.len() as u64)
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
    for (i, (first, name)) in live.iter().enumerate() {
        let is_last = i + 1 == live.len();
        let data = read(name)?;
        let seg = SegmentRef {
            first: *first,
            name,
            is_last,
        };
        let valid_end = replay_segment(&mut r, &mut state, &mut cursor, &seg, &data)?;
        if valid_end < data.len() {
            let cut = (data.len() - valid_end) as u64;
            ops.push(FileOp::Truncate {
                name: name.clone(),
                len: valid_end as u64,
            });
            r.report.truncated = Some((name.clone(), valid_end as u64, cut));
        } else if is_last && valid_end > 0 {
            ops.push(FileOp::Sync { name: name.clone() });
        }
        log_bytes += valid_end as u64;
        r.report.segments += 1;
        if is_last {
            append_to = Some(Segment {
                first: *first,
                name: name.clone(),
                len: valid_end as u64,
            });
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
    if let Some(seg) = &append_to
        && seg.len == 0
        && seg.first != last + 1
    {
        if seg.first > last + 1 {
            r.damage(
                &seg.name,
                0,
                format!(
                    "the segment is named for LSN {} but the log ends at LSN {last}",
                    seg.first
                ),
            )?;
        }
        append_to = None;
    }

    let leftovers = obsolete
        .iter()
        .map(|(_, n)| n)
        .chain(listing.snapshots.iter().rev().skip(1).map(|(_, n)| n));
    if r.damaged.is_empty() {
        let empty_newest = live.last().filter(|_| append_to.is_none());
        for name in leftovers.chain(empty_newest.map(|(_, n)| n)) {
            ops.push(FileOp::Remove {
                name: name.clone(),
                why: Leftover::Replaced,
            });
        }
    } else {
        // Damaged files are moved aside (kept for inspection), a snapshot of what was
        // recovered is written, and the other old files go.
        let snapshot = snapshot_name(state.last_lsn());
        let others: Vec<String> = leftovers
            .chain(live.iter().map(|(_, n)| n))
            .chain(listing.snapshots.last().map(|(_, n)| n))
            .filter(|n| !r.damaged.contains(*n) && **n != snapshot)
            .cloned()
            .collect();
        for name in &r.damaged {
            ops.push(FileOp::MoveAside {
                name: name.clone(),
                to: format!("{name}{DAMAGED}"),
            });
        }
        ops.push(FileOp::WriteSnapshot { name: snapshot });
        ops.extend(others.into_iter().map(|name| FileOp::Remove {
            name,
            why: Leftover::Salvaged,
        }));
        append_to = None;
        log_bytes = 0;
    }

    Ok(Recovery {
        state,
        report: r.report,
        append_to,
        snapshot_size,
        log_bytes,
        ops,
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

/// The segment being replayed.
struct SegmentRef<'a> {
    first: Lsn,
    name: &'a str,
    /// The newest segment: the only one a crash may have torn.
    is_last: bool,
}

/// Replays the complete batches of one segment into `state`. Returns how many of its bytes
/// they take: the rest is a write torn by a crash, which only the newest segment may end with.
fn replay_segment(
    r: &mut Replay,
    state: &mut State,
    cursor: &mut Cursor,
    seg: &SegmentRef<'_>,
    data: &Bytes,
) -> Result<usize, RecoveryError> {
    let (first, name, is_last) = (seg.first, seg.name, seg.is_last);
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
                r.damage(name, offset as u64, reason)?;
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
                name,
                at,
                format!("the segment is named for LSN {first} but starts with LSN {lsn}"),
            )?;
        }
        match cursor.prev {
            Some(p) if lsn <= p => {
                r.damage(name, at, format!("LSN {lsn} follows LSN {p}: out of order"))?;
                continue;
            }
            Some(p) if lsn > p + 1 && !cursor.skipped => {
                r.damage(
                    name,
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
                    name,
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
            apply_batch(r, state, cursor, name, &mut batch)?;
        }
    }
    if !batch.is_empty() {
        if is_last && !damaged {
            // Whole records but no commit: the rest of the batch never reached the disk.
            return Ok(batch_start);
        }
        if !damaged {
            r.damage(
                name,
                batch_start as u64,
                "records of a batch without its commit, in a segment that is not the newest"
                    .to_owned(),
            )?;
        }
        apply_batch(r, state, cursor, name, &mut batch)?;
    }
    Ok(data.len())
}

/// Applies a batch's records (those above the snapshot).
fn apply_batch(
    r: &mut Replay,
    state: &mut State,
    cursor: &mut Cursor,
    name: &str,
    batch: &mut Vec<(Lsn, Record, u64)>,
) -> Result<(), RecoveryError> {
    for (lsn, record, at) in batch.drain(..) {
        if lsn <= cursor.snap_lsn {
            continue;
        }
        match state.apply(lsn, &record) {
            Ok(()) => r.report.records += 1,
            Err(e) => r.damage(name, at, format!("inconsistent record: {e}"))?,
        }
        if record == Record::Commit {
            cursor.committed = lsn;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::files::{segment_name, temp_name};
    use crate::persist::snapshot::snapshot_chunks;
    use bytes::BytesMut;
    use std::collections::BTreeMap;

    /// A directory in memory.
    type Dir = BTreeMap<String, Bytes>;

    fn plan_of(dir: &Dir) -> Result<Recovery, RecoveryError> {
        plan(
            dir.keys(),
            |name| dir.get(name).cloned().ok_or_else(|| "gone".to_owned()),
            false,
        )
    }

    /// `batches` batches of a lone `Commit`, LSNs `first..`, as one segment's bytes.
    fn segment(first: Lsn, batches: u64) -> Bytes {
        let mut out = BytesMut::new();
        for lsn in first..first + batches {
            Record::Commit.encode(lsn, &mut out);
        }
        out.freeze()
    }

    #[test]
    fn an_intact_newest_segment_is_made_durable_before_the_log_continues() {
        let mut dir = Dir::new();
        dir.insert(segment_name(1), segment(1, 3));
        dir.insert(segment_name(4), segment(4, 2));
        let r = plan_of(&dir).unwrap();
        assert_eq!(r.state.last_lsn(), 5);
        assert_eq!(r.report.segments, 2);
        assert_eq!(
            r.append_to,
            Some(Segment {
                first: 4,
                name: segment_name(4),
                len: dir[&segment_name(4)].len() as u64
            })
        );
        assert_eq!(
            r.ops,
            [FileOp::Sync {
                name: segment_name(4)
            }]
        );
    }

    #[test]
    fn a_torn_tail_is_cut_and_leftovers_removed_without_touching_anything() {
        let mut dir = Dir::new();
        let mut state = State::default();
        for lsn in 1..=3 {
            state.apply(lsn, &Record::Commit).unwrap();
        }
        let snapshot: Vec<u8> = snapshot_chunks(&state, 1024).flatten().collect();
        dir.insert(snapshot_name(3), Bytes::from(snapshot));
        dir.insert(temp_name(5), Bytes::from_static(b"unfinished"));
        // Replaced by the snapshot: a crash stopped its removal.
        dir.insert(segment_name(1), segment(1, 3));
        let whole = segment(4, 2);
        let torn = whole.slice(..whole.len() - 3);
        dir.insert(segment_name(4), torn.clone());
        let before = dir.clone();
        let r = plan_of(&dir).unwrap();
        assert_eq!(dir, before, "planning changes nothing");
        assert_eq!(r.state.last_lsn(), 4, "the torn batch is left out");
        assert_eq!(r.report.snapshot, Some(snapshot_name(3)));
        let cut_at = segment(4, 1).len() as u64;
        assert_eq!(
            r.report.truncated,
            Some((segment_name(4), cut_at, torn.len() as u64 - cut_at))
        );
        assert_eq!(
            r.ops,
            [
                FileOp::Remove {
                    name: temp_name(5),
                    why: Leftover::Unfinished
                },
                FileOp::Truncate {
                    name: segment_name(4),
                    len: cut_at
                },
                FileOp::Remove {
                    name: segment_name(1),
                    why: Leftover::Replaced
                },
            ]
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named_in_the_error() {
        let e = plan(
            [segment_name(1)],
            |_| Err("permission denied".to_owned()),
            false,
        )
        .unwrap_err();
        assert_eq!(e.file, segment_name(1));
        assert_eq!(e.offset, None);
        assert!(e.to_string().contains("permission denied"), "{e}");
    }
}
