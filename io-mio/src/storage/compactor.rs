//! The compactor thread: keeps a `State` up to date with every batch the writer wrote, and
//! when the writer asks (having started a new segment), writes it as a snapshot and removes the
//! segments and snapshots it replaces (`format::write_snapshot`, in the order of
//! `midge_core::persist::files::SNAPSHOT_STEPS`).
//!
//! It owns the state outright, so a snapshot needs no copy of it and stops nothing: batches
//! written meanwhile wait in the channel and are applied afterwards. The writer asks for a
//! snapshot right after the batch that ends at its LSN, so the state is exactly at that LSN.

use super::Shared;
use super::format::{self, SnapshotError, decode_owned};
use super::fs::Fs;
use bytes::Bytes;
use midge_core::persist::{Lsn, State};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Instant;

#[derive(Debug)]
pub(crate) enum CompactorMsg {
    /// A batch the writer wrote, in LSN order.
    Apply(Bytes),
    /// Write the state (now at this LSN) as a snapshot; the newest segment starts after it.
    Snapshot(Lsn),
}

pub(crate) struct Compactor {
    pub state: State,
    pub fs: Arc<dyn Fs>,
    pub dir: PathBuf,
    pub shared: Arc<Shared>,
}

impl Compactor {
    pub fn run(mut self, rx: Receiver<CompactorMsg>) {
        let mut broken = false;
        // Ends when the writer drops its sender.
        while let Ok(msg) = rx.recv() {
            if self.shared.stop.load(Ordering::Relaxed) {
                break;
            }
            match msg {
                CompactorMsg::Apply(_) if broken => {}
                CompactorMsg::Apply(batch) => {
                    if let Err(reason) = apply_batch(&mut self.state, &batch) {
                        broken = true;
                        self.disable(&reason);
                    }
                }
                CompactorMsg::Snapshot(_) if broken => {
                    self.shared.snapshot_running.store(false, Ordering::Release);
                }
                CompactorMsg::Snapshot(lsn) if lsn != self.state.last_lsn() => {
                    broken = true;
                    self.disable(&format!(
                        "asked for a snapshot at LSN {lsn}, the state is at {}",
                        self.state.last_lsn()
                    ));
                }
                CompactorMsg::Snapshot(lsn) => self.snapshot(lsn),
            }
        }
    }

    fn disable(&mut self, reason: &str) {
        tracing::error!(
            "persistence compaction stopped: {reason}. The log is intact but is no longer \
             compacted and grows until restart"
        );
        self.state = State::default();
        self.shared
            .compaction_disabled
            .store(true, Ordering::Release);
        self.shared.snapshot_running.store(false, Ordering::Release);
    }

    fn snapshot(&mut self, lsn: Lsn) {
        let started = Instant::now();
        let written =
            format::write_snapshot(&*self.fs, &self.dir, &self.state, &self.shared.stop, true);
        match written {
            Ok((size, removed)) => {
                self.shared.snapshot_size.store(size, Ordering::Relaxed);
                self.shared.snapshots.fetch_add(1, Ordering::Relaxed);
                let (messages, _) = self.state.message_totals();
                tracing::info!(
                    "snapshot at LSN {lsn}: {size} bytes, {} sessions, {messages} messages, in \
                     {} ms; {removed} old files removed",
                    self.state.sessions.len(),
                    started.elapsed().as_millis()
                );
            }
            Err(SnapshotError::Stopped) => {}
            Err(SnapshotError::Io(e)) => {
                tracing::warn!(
                    "cannot write a snapshot in {}: {e}; the log is kept, compaction is retried",
                    self.dir.display()
                );
                self.shared.snapshot_failed.store(true, Ordering::Release);
            }
        }
        self.shared.snapshot_running.store(false, Ordering::Release);
    }
}

/// Applies the records of a batch the writer wrote.
fn apply_batch(state: &mut State, batch: &[u8]) -> Result<(), String> {
    let mut offset = 0;
    while offset < batch.len() {
        let (lsn, record, used) =
            decode_owned(batch, offset).map_err(|e| format!("unreadable record: {e}"))?;
        state.apply(lsn, &record).map_err(|e| e.to_string())?;
        offset += used;
    }
    Ok(())
}
