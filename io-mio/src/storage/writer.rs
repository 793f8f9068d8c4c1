//! The writer thread: appends record batches to the newest segment, one fsync for everything
//! gathered (group commit), and reports the highest durable LSN back to the event loop.
//!
//! Each turn takes every batch waiting in the channel, writes them all, then calls
//! `sync_data` once: the fsync rate is bounded by the disk, the message rate grows with the
//! number of records each fsync covers. With `SyncMode::Periodic`, records are reported durable
//! once written (in the page cache, safe from a process crash but not from power loss) and the
//! file is fsynced on a timer.
//!
//! A failed write or fsync (a full disk, an I/O error) starts a failure episode: it is logged
//! once, nothing more is reported durable, and the turn is retried every `retry` interval. A
//! retry first rewrites everything written since the last successful fsync at its place (the
//! kernel may have dropped those pages when writeback failed; rewriting dirties them again) and
//! cuts off whatever a failed write left beyond it. Records are never reported durable before
//! they are stored.

use super::compactor::CompactorMsg;
use super::format::segment_name;
use super::fs::{Fs, LogFile};
use super::{Shared, SyncMode};
use bytes::Bytes;
use midge_core::persist::Lsn;
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// Work for the writer.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Encoded records, LSNs up to the given one, following the previous batch.
    Batch(Lsn, Bytes),
    /// Write and fsync everything, then stop.
    Close,
}

/// How long a failed compaction waits before it is tried again.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(10);

pub(crate) struct Writer {
    pub fs: Arc<dyn Fs>,
    pub dir: PathBuf,
    pub sync: SyncMode,
    pub snapshot_log_bytes: u64,
    pub autosave: Option<Duration>,
    pub retry: Duration,
    pub close_timeout: Duration,
    pub file: Box<dyn LogFile>,
    /// Bytes in the segment, and how many of them the last fsync covered.
    pub file_len: u64,
    pub synced_len: u64,
    /// Batches not written yet, and written since the last fsync (at `synced_len` on).
    pub unwritten: VecDeque<(Lsn, Bytes)>,
    pub unsynced: Vec<(Lsn, Bytes)>,
    /// The last LSN written, fsynced, and reported durable.
    pub written: Lsn,
    pub synced: Lsn,
    pub reported: Lsn,
    /// A write or fsync failed: rewrite the unsynced part before anything else.
    pub repair: bool,
    pub failing_since: Option<Instant>,
    pub retry_at: Option<Instant>,
    /// When the unsynced data must be fsynced (periodic mode).
    pub sync_at: Option<Instant>,
    /// Log bytes written since the last snapshot was asked for, and when that was.
    pub log_since_snapshot: u64,
    pub last_snapshot: Instant,
    pub snapshot_retry_at: Option<Instant>,
    pub shared: Arc<Shared>,
    pub notify: Box<dyn Fn() + Send>,
    pub compactor: Sender<CompactorMsg>,
}

impl Writer {
    pub fn run(mut self, rx: Receiver<Msg>) {
        // A long log replayed at startup is compacted right away.
        self.maybe_snapshot(Instant::now());
        let mut closing = false;
        loop {
            let now = Instant::now();
            let ready = !self.unwritten.is_empty() && self.retry_at.is_none();
            if !ready {
                let msg = match self.deadline(now) {
                    Some(at) => match rx.recv_timeout(at.saturating_duration_since(now)) {
                        Ok(msg) => Some(msg),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => Some(Msg::Close),
                    },
                    None => Some(rx.recv().unwrap_or(Msg::Close)),
                };
                if let Some(msg) = msg {
                    closing |= self.take(msg);
                }
            }
            while let Ok(msg) = rx.try_recv() {
                closing |= self.take(msg);
            }
            if closing {
                self.finish();
                return;
            }
            let now = Instant::now();
            if self.retry_at.is_some_and(|at| at > now) {
                continue;
            }
            self.turn(now);
            self.maybe_snapshot(now);
        }
    }

    /// Queues a message's batch; returns whether it asks to close.
    fn take(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Batch(lsn, bytes) => {
                self.unwritten.push_back((lsn, bytes));
                false
            }
            Msg::Close => true,
        }
    }

    /// When the writer must act without new input: a retry, a periodic fsync, a snapshot.
    fn deadline(&self, now: Instant) -> Option<Instant> {
        let mut at = self.retry_at;
        let mut earliest = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.min(t)));
            }
        };
        if !self.unsynced.is_empty() {
            earliest(self.sync_at);
        }
        if self.log_since_snapshot > 0 {
            if self.shared.snapshot_running.load(Ordering::Acquire) {
                // Look again soon: the next snapshot may already be due.
                earliest(Some(now + Duration::from_millis(200)));
            } else {
                earliest(self.snapshot_retry_at);
                earliest(self.autosave.map(|a| self.last_snapshot + a));
            }
        }
        at
    }

    /// Writes what waits and fsyncs as the mode says; then reports.
    fn turn(&mut self, now: Instant) {
        let result = self.write_pending().and_then(|()| {
            let due = match self.sync {
                SyncMode::Always => true,
                SyncMode::Periodic(_) if self.unsynced.is_empty() => false,
                SyncMode::Periodic(every) => *self.sync_at.get_or_insert(now + every) <= now,
            };
            if due { self.sync_now() } else { Ok(()) }
        });
        self.settle(result, now);
        self.report();
    }

    /// Ends or starts a failure episode after a turn.
    fn settle(&mut self, result: io::Result<()>, now: Instant) {
        match result {
            Ok(()) => {
                if let Some(since) = self.failing_since.take() {
                    tracing::warn!(
                        "log writes succeed again after {:.1} s; records are being acknowledged again",
                        since.elapsed().as_secs_f64()
                    );
                }
                self.retry_at = None;
            }
            Err(e) => {
                self.repair = true;
                self.retry_at = Some(now + self.retry);
                if self.failing_since.is_none() {
                    self.failing_since = Some(now);
                    self.shared.failures.fetch_add(1, Ordering::Relaxed);
                    let lost = match self.sync {
                        SyncMode::Periodic(_) if self.written > self.synced => format!(
                            "; records {}..={} were acknowledged but are not fsynced: a power \
                             loss now would lose them",
                            self.synced + 1,
                            self.written
                        ),
                        _ => String::new(),
                    };
                    tracing::error!(
                        "cannot write the persistence log in {}: {e}. Nothing more is \
                         acknowledged until writing succeeds again (retrying every {} ms){lost}",
                        self.dir.display(),
                        self.retry.as_millis()
                    );
                } else {
                    tracing::debug!("persistence log still failing: {e}");
                }
            }
        }
    }

    fn write_pending(&mut self) -> io::Result<()> {
        if self.repair {
            let mut at = self.synced_len;
            for (_, bytes) in &self.unsynced {
                self.file.write_all_at(at, bytes)?;
                at += bytes.len() as u64;
            }
            self.file.set_len(at)?;
            self.file_len = at;
            self.repair = false;
        }
        while let Some((lsn, bytes)) = self.unwritten.front() {
            self.file.write_all_at(self.file_len, bytes)?;
            let (lsn, len) = (*lsn, bytes.len() as u64);
            self.file_len += len;
            self.log_since_snapshot += len;
            self.written = lsn;
            self.shared.bytes.fetch_add(len, Ordering::Relaxed);
            self.shared.batches.fetch_add(1, Ordering::Relaxed);
            if let Some(batch) = self.unwritten.pop_front() {
                // The compactor may be gone (it gave up); the log itself does not need it.
                let _ = self.compactor.send(CompactorMsg::Apply(batch.1.clone()));
                self.unsynced.push(batch);
            }
        }
        Ok(())
    }

    fn sync_now(&mut self) -> io::Result<()> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        self.file.sync_data()?;
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.synced_len = self.file_len;
        self.synced = self.written;
        self.unsynced.clear();
        self.sync_at = None;
        Ok(())
    }

    /// Tells the event loop about newly durable records.
    fn report(&mut self) {
        let lsn = match self.sync {
            SyncMode::Periodic(_) if self.failing_since.is_none() => self.written,
            _ => self.synced,
        };
        if lsn > self.reported {
            self.reported = lsn;
            self.shared.durable.store(lsn, Ordering::Release);
            (self.notify)();
        }
    }

    /// Starts a snapshot when the log since the last one outgrew the limit (at least
    /// `snapshot_log_bytes`, and twice the last snapshot, so disk use stays proportional to the
    /// live state) or the autosave interval passed: a new segment starts at the next LSN, and
    /// the compactor writes the state as of the last one, then removes what it replaces.
    fn maybe_snapshot(&mut self, now: Instant) {
        if self.log_since_snapshot == 0
            || self.failing_since.is_some()
            || !self.unwritten.is_empty()
            || self.shared.compaction_disabled.load(Ordering::Acquire)
            || self.shared.snapshot_running.load(Ordering::Acquire)
        {
            return;
        }
        if self.shared.snapshot_failed.swap(false, Ordering::AcqRel) {
            self.snapshot_retry_at = Some(now + SNAPSHOT_RETRY);
            return;
        }
        let limit = self
            .snapshot_log_bytes
            .max(2 * self.shared.snapshot_size.load(Ordering::Relaxed));
        let due = match self.snapshot_retry_at {
            Some(at) => at <= now,
            None => {
                self.log_since_snapshot >= limit
                    || self.autosave.is_some_and(|a| now >= self.last_snapshot + a)
            }
        };
        if !due {
            return;
        }
        // Only the newest segment may end in an unsynced (possibly torn) write.
        if let Err(e) = self.sync_now() {
            self.settle(Err(e), now);
            return;
        }
        if self.file_len > 0 {
            let first = self.written + 1;
            let path = self.dir.join(segment_name(first));
            let opened = self.fs.open(&path, true).and_then(|file| {
                self.fs.sync_dir(&self.dir)?;
                Ok(file)
            });
            match opened {
                Ok(file) => {
                    self.file = file;
                    self.file_len = 0;
                    self.synced_len = 0;
                }
                Err(e) => {
                    tracing::warn!(
                        "cannot start log segment {}: {e}; compaction retried in {} s",
                        path.display(),
                        SNAPSHOT_RETRY.as_secs()
                    );
                    self.snapshot_retry_at = Some(now + SNAPSHOT_RETRY);
                    return;
                }
            }
        }
        self.snapshot_retry_at = None;
        self.shared.snapshot_running.store(true, Ordering::Release);
        if self
            .compactor
            .send(CompactorMsg::Snapshot(self.written))
            .is_err()
        {
            self.shared.snapshot_running.store(false, Ordering::Release);
            self.shared
                .compaction_disabled
                .store(true, Ordering::Release);
            return;
        }
        self.log_since_snapshot = 0;
        self.last_snapshot = now;
    }

    /// Writes and fsyncs everything (whatever the sync mode), retrying a failure for at most
    /// `close_timeout`.
    fn finish(&mut self) {
        let deadline = Instant::now() + self.close_timeout;
        loop {
            let now = Instant::now();
            let result = self.write_pending().and_then(|()| self.sync_now());
            let failed = result.is_err();
            self.settle(result, now);
            if !failed {
                break;
            }
            if now >= deadline {
                tracing::error!(
                    "persistence log: records after LSN {} could not be stored before exit{}",
                    self.synced,
                    match self.sync {
                        SyncMode::Always => " (they were never acknowledged)",
                        SyncMode::Periodic(_) => "",
                    }
                );
                break;
            }
            std::thread::sleep(self.retry.min(Duration::from_millis(100)));
        }
        // Durable now even in periodic mode.
        if self.synced > self.reported {
            self.reported = self.synced;
            self.shared.durable.store(self.synced, Ordering::Release);
            (self.notify)();
        }
    }
}
