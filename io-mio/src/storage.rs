//! The daemon's durable storage: a write-ahead log of the broker's records with group commit,
//! snapshots that compact it, and recovery at startup.
//!
//! # Files (in `persistence_location`)
//!
//! - `midge-<first lsn>.log`: segments, frames appended in LSN order;
//! - `midge-<lsn>.snap`: snapshots of the durable state as of `lsn`, complete if they exist;
//! - `midge-<lsn>.snap.tmp`: a snapshot being written (removed at startup if a crash left it);
//! - `midge.lock`: locked while a daemon uses the directory, so that a second one refuses to
//!   start (see `dir_lock`).
//!
//! The names, the order of a snapshot's steps and the decisions of recovery are midge-core's
//! (`persist::files`, `persist::recovery`), shared with the simulator, which plays this
//! storage against a simulated disk that crashes. See `format` for writing snapshots and
//! `recovery` for how the plan is carried out.
//!
//! # Threads
//!
//! - The event loop hands every `Action::Persist` batch to [`Storage::append`] (a channel
//!   send, never a wait) and, when woken, reads [`Storage::durable`] and tells the broker.
//! - The writer thread appends everything waiting, fsyncs once and reports the highest
//!   durable LSN (an atomic and a wake-up of the event loop). See `writer`.
//! - The compactor thread keeps the durable state up to date from the batches written, writes
//!   snapshots when the writer asks, and removes what they replace. See `compactor`.
//!
//! Nothing here blocks the event loop: a slow disk only delays acknowledgements, which the
//! broker holds until their records are durable.

mod compactor;
mod dir_lock;
mod format;
pub mod fs;
mod recovery;
mod writer;

pub use recovery::{Recovered, RecoveryError, Report, recover};

use bytes::Bytes;
use compactor::Compactor;
use dir_lock::DirLock;
use format::segment_name;
use fs::{Fs, OsFs};
use midge_core::persist::Lsn;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use writer::{Msg, Writer};

/// When records count as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// After `fdatasync` (the default): nothing acknowledged is lost, even on power loss.
    Always,
    /// After `write`, with an fsync at this interval: safe from a crash of the process, but a
    /// power loss or kernel crash can lose what was acknowledged in the last interval.
    Periodic(Duration),
}

/// How storage behaves.
#[derive(Clone)]
pub struct Options {
    /// The directory of segments and snapshots.
    pub dir: PathBuf,
    pub sync: SyncMode,
    /// A snapshot is written once the log since the last one exceeds this and twice the size
    /// of the last snapshot.
    pub snapshot_log_bytes: u64,
    /// A snapshot is also written after this long, when anything was logged since the last.
    pub autosave: Option<Duration>,
    /// How often a failed write is retried.
    pub retry_interval: Duration,
    /// How long closing waits for a failing disk before giving up.
    pub close_timeout: Duration,
    /// The file operations of the writer and compactor.
    pub fs: Arc<dyn Fs>,
}

impl Options {
    pub fn new(dir: impl Into<PathBuf>) -> Options {
        Options {
            dir: dir.into(),
            sync: SyncMode::Always,
            snapshot_log_bytes: 64 << 20,
            autosave: None,
            retry_interval: Duration::from_secs(1),
            close_timeout: Duration::from_secs(5),
            fs: Arc::new(OsFs),
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("dir", &self.dir)
            .field("sync", &self.sync)
            .field("snapshot_log_bytes", &self.snapshot_log_bytes)
            .field("autosave", &self.autosave)
            .finish_non_exhaustive()
    }
}

/// What the writer and compactor share with the event loop.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The highest LSN reported durable.
    durable: AtomicU64,
    fsyncs: AtomicU64,
    batches: AtomicU64,
    bytes: AtomicU64,
    /// Failure episodes (each logged once).
    failures: AtomicU64,
    snapshots: AtomicU64,
    /// Size of the last snapshot written.
    snapshot_size: AtomicU64,
    snapshot_running: AtomicBool,
    snapshot_failed: AtomicBool,
    compaction_disabled: AtomicBool,
    /// Abort a snapshot in progress (closing).
    stop: AtomicBool,
}

/// Counters, for logs, tests and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub durable: Lsn,
    pub fsyncs: u64,
    /// Batches and bytes written.
    pub batches: u64,
    pub bytes: u64,
    /// Write failure episodes.
    pub failures: u64,
    pub snapshots: u64,
}

/// The running storage: the writer and compactor threads.
#[derive(Debug)]
pub struct Storage {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    compactor: Option<JoinHandle<()>>,
    /// The writer is gone (it can only be by a bug): said once.
    lost: AtomicBool,
    /// Held until the threads above have stopped writing (fields drop after `Drop::drop`).
    _lock: DirLock,
}

impl Storage {
    /// Starts writing after what `recovered` found. `notify` is called (from the writer
    /// thread) whenever [`Storage::durable`] advances.
    pub fn start(
        recovered: Recovered,
        options: &Options,
        notify: Box<dyn Fn() + Send>,
    ) -> io::Result<Storage> {
        let fs = Arc::clone(&options.fs);
        let last = recovered.state.last_lsn();
        let (file, file_len) = match &recovered.segment {
            Some((_, path, len)) => (fs.open(path, false)?, *len),
            None => {
                let path = options.dir.join(segment_name(last + 1));
                let file = fs.open(&path, true)?;
                fs.sync_dir(&options.dir)?;
                (file, 0)
            }
        };
        let shared = Arc::new(Shared::default());
        shared.durable.store(last, Ordering::Relaxed);
        shared
            .snapshot_size
            .store(recovered.snapshot_size, Ordering::Relaxed);

        let (compactor_tx, compactor_rx) = mpsc::channel();
        let compactor = Compactor {
            state: recovered.state,
            fs: Arc::clone(&fs),
            dir: options.dir.clone(),
            shared: Arc::clone(&shared),
        };
        let compactor = std::thread::Builder::new()
            .name("midge-compactor".into())
            .spawn(move || compactor.run(compactor_rx))?;

        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            fs,
            dir: options.dir.clone(),
            sync: options.sync,
            snapshot_log_bytes: options.snapshot_log_bytes,
            autosave: options.autosave.filter(|a| !a.is_zero()),
            retry: options.retry_interval,
            close_timeout: options.close_timeout,
            file,
            file_len,
            synced_len: file_len,
            unwritten: VecDeque::new(),
            unsynced: Vec::new(),
            written: last,
            synced: last,
            reported: last,
            repair: false,
            failing_since: None,
            retry_at: None,
            sync_at: None,
            log_since_snapshot: recovered.log_bytes,
            last_snapshot: Instant::now(),
            snapshot_retry_at: None,
            shared: Arc::clone(&shared),
            notify,
            compactor: compactor_tx,
        };
        let writer = std::thread::Builder::new()
            .name("midge-log-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Storage {
            tx,
            shared,
            writer: Some(writer),
            compactor: Some(compactor),
            lost: AtomicBool::new(false),
            _lock: recovered.lock,
        })
    }

    /// Queues a batch of encoded records (LSNs up to `lsn`, following the previous batch).
    pub fn append(&self, lsn: Lsn, bytes: Bytes) {
        if self.tx.send(Msg::Batch(lsn, bytes)).is_err() && !self.lost.swap(true, Ordering::Relaxed)
        {
            tracing::error!("the persistence log writer stopped; nothing more is acknowledged");
        }
    }

    /// The highest LSN durable (as the sync mode defines it).
    pub fn durable(&self) -> Lsn {
        self.shared.durable.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            durable: self.durable(),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            failures: s.failures.load(Ordering::Relaxed),
            snapshots: s.snapshots.load(Ordering::Relaxed),
        }
    }

    /// Writes and fsyncs everything queued, stops the threads (abandoning a snapshot in
    /// progress), and returns the final counters.
    pub fn close(mut self) -> Stats {
        self.shut_down();
        self.stats()
    }

    fn shut_down(&mut self) {
        let _ = self.tx.send(Msg::Close);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(compactor) = self.compactor.take() {
            let _ = compactor.join();
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.shut_down();
    }
}

#[cfg(test)]
mod tests;
