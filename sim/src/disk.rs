//! The disk: files of bytes where what was written is volatile until an fsync covers it. A crash
//! that is a power loss keeps the synced bytes and, when writes tear, a random prefix of the
//! rest, possibly with a bit flipped in its last frame; a process crash keeps everything written
//! (the page cache survives). A write error writes a prefix of its bytes and fails every later
//! write and fsync until the broker restarts.
//!
//! Recovery lives in [`recover`]: read the log, cut a torn tail, refuse corruption, apply the
//! records to a [`State`]. It is the one step the daemon's recovery (several files, snapshots)
//! will replace once that lives in core.

use crate::rng::Rng;
use bytes::Bytes;
use midge_core::persist::{self, Damage, State};
use std::collections::BTreeMap;

/// Whether recovery fsyncs the whole log it read. The daemon syncs only a truncation, so after
/// a process crash what the page cache kept is recovered yet still volatile until the next
/// fsync; the simulator does the same. (No promise rests on that: a resumed session writes a
/// record before its CONNACK, whose fsync covers the whole file, and what a clean session may
/// be sent before then was never acknowledged to anyone.)
pub const SYNC_ON_RECOVERY: bool = false;

/// The log's file name.
pub const LOG: &str = "log.0";

#[derive(Debug, Default, Clone)]
pub struct File {
    pub data: Vec<u8>,
    /// Bytes an fsync has made durable.
    pub synced: usize,
}

#[derive(Debug, Default)]
pub struct Disk {
    pub files: BTreeMap<String, File>,
    /// A write failed: later writes and fsyncs fail until the restart.
    pub failed: bool,
}

/// What a crash did to the disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrashReport {
    pub kept: u64,
    pub lost: u64,
    pub flipped: bool,
}

/// Why recovery cannot rebuild the state. Never expected in a correct run.
#[derive(Debug, Clone)]
pub enum RecoveryError {
    Corrupt { offset: usize, error: String },
    Inconsistent(String),
}

/// What recovery did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recovered {
    pub records: u64,
    pub truncated: u64,
}

impl Disk {
    pub fn file(&mut self, name: &str) -> &mut File {
        self.files.entry(name.to_owned()).or_default()
    }

    pub fn len(&self, name: &str) -> usize {
        self.files.get(name).map_or(0, |f| f.data.len())
    }

    /// Appends bytes, or on a write error a prefix of them (returned: bytes written).
    pub fn append(&mut self, name: &str, bytes: &[u8], error: Option<&mut Rng>) -> usize {
        if self.failed {
            return 0;
        }
        let n = match error {
            Some(rng) => {
                self.failed = true;
                rng.below(bytes.len() as u64 + 1) as usize
            }
            None => bytes.len(),
        };
        self.file(name).data.extend_from_slice(&bytes[..n]);
        n
    }

    /// An fsync that started when the file was `upto` bytes long completed.
    pub fn synced(&mut self, name: &str, upto: usize) -> bool {
        if self.failed {
            return false;
        }
        let f = self.file(name);
        f.synced = f.synced.max(upto.min(f.data.len()));
        true
    }

    /// The machine or the process goes down.
    pub fn crash(
        &mut self,
        rng: &mut Rng,
        power_loss: bool,
        tear: bool,
        bit_flip: f64,
    ) -> CrashReport {
        let mut report = CrashReport::default();
        let lose_everything_unsynced = power_loss || self.failed;
        for f in self.files.values_mut() {
            if lose_everything_unsynced {
                let unsynced = f.data.len() - f.synced;
                let keep = if tear && unsynced > 0 {
                    // Frame boundaries and the ends are likelier than any byte.
                    match rng.below(4) {
                        0 => 0,
                        1 => unsynced,
                        _ => rng.below(unsynced as u64 + 1) as usize,
                    }
                } else {
                    0
                };
                let end = f.synced + keep;
                report.lost += (f.data.len() - end) as u64;
                f.data.truncate(end);
                if keep > 0 && rng.chance(bit_flip) {
                    // Only in the last frame kept: a flip in an earlier unsynced frame with an
                    // intact frame after it would look like corruption, which a torn write at
                    // the end of the log never is.
                    let start = last_frame_start(&f.data, f.synced);
                    if start < end {
                        let at = start + rng.below((end - start) as u64) as usize;
                        f.data[at] ^= 1 << rng.below(8);
                        report.flipped = true;
                    }
                }
            }
            report.kept += f.data.len() as u64;
        }
        self.failed = false;
        report
    }
}

/// The offset of the last frame that starts at or after `from` (a frame boundary) in `data`.
fn last_frame_start(data: &[u8], from: usize) -> usize {
    let mut at = from;
    loop {
        if data.len() < at + 4 {
            return at;
        }
        let len = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let next = at.saturating_add(8).saturating_add(len);
        if next >= data.len() {
            return at;
        }
        at = next;
    }
}

/// Rebuilds the durable state from the disk after a crash: the log is scanned, a torn tail is
/// cut off (and the cut synced), corruption and inconsistency are errors.
pub fn recover(disk: &mut Disk) -> Result<(State, Recovered), RecoveryError> {
    let file = disk.file(LOG);
    let data = Bytes::copy_from_slice(&file.data);
    let scan = persist::scan(&data);
    let mut recovered = Recovered::default();
    match scan.damage {
        None => {}
        Some(Damage::TornTail { offset, .. }) => {
            recovered.truncated = (data.len() - offset) as u64;
            file.data.truncate(offset);
        }
        Some(Damage::Corrupt { offset, error }) => {
            return Err(RecoveryError::Corrupt {
                offset,
                error: error.to_string(),
            });
        }
    }
    if recovered.truncated > 0 || SYNC_ON_RECOVERY {
        file.synced = file.data.len();
    }
    let mut state = State::default();
    for (lsn, record) in &scan.records {
        state
            .apply(*lsn, record)
            .map_err(|e| RecoveryError::Inconsistent(e.to_string()))?;
    }
    recovered.records = scan.records.len() as u64;
    Ok((state, recovered))
}
