//! The daemon's storage (io-mio's `storage`: its log writer and compactor threads, and recovery
//! at startup), played against the simulated disk with the same files in the same order, so
//! that crashes test that protocol and not a simpler one.
//!
//! - Writing: each `Persist` batch is appended to the newest segment `midge-<first lsn>.log`;
//!   fsyncs are grouped (one covers every append before it starts) and only a completed fsync
//!   reports `Durable`, for the last LSN it covers.
//! - Rolling: after a turn that left nothing unsynced, once the log since the last snapshot
//!   reaches `snapshot_log_bytes` (drawn small per run, so it happens often) and twice the last
//!   snapshot's size, the writer creates the next segment at `written + 1` and fsyncs the
//!   directory; batches handed over meanwhile wait, as they wait in the daemon's channel.
//! - Compacting: the state as of the roll is then written as a snapshot, one event per step of
//!   `persist::files::SNAPSHOT_STEPS` (the order the daemon takes), while appends go on; the
//!   last step removes what the snapshot replaced.
//! - Recovering: `persist::recovery::plan` reads the directory as a crash left it, and its file
//!   operations are carried out here as the daemon carries them out (removals without a
//!   directory fsync, truncation fsynced).
//!
//! A crash falls between any two events, and a seeded share of rolls also plan a crash right
//! after one chosen step of the roll or compaction.

use crate::disk::Disk;
use crate::trace::Ev;
use crate::world::{Event, Phase, World};
use crate::{MS, SEC};
use bytes::Bytes;
use midge_core::broker::{ConnId, Input};
use midge_core::bugs::Bug;
use midge_core::persist::files::{
    Listing, SnapshotStep, planted_snapshot_steps, segment_name, snapshot_name, temp_name,
};
use midge_core::persist::recovery::{self, FileOp, Recovery, RecoveryError};
use midge_core::persist::snapshot::snapshot_chunks;
use midge_core::persist::{Lsn, State};
use std::collections::VecDeque;

/// The writer's and the compactor's state.
#[derive(Debug, Default)]
pub struct Log {
    /// The segment appended to.
    pub segment: String,
    /// Appends not yet covered by an fsync: (segment length after it, its last LSN).
    appended: VecDeque<(usize, Lsn)>,
    /// The fsync running: (generation, segment, length it covers, LSN it makes durable).
    fsync: Option<(u64, String, usize, Lsn)>,
    fsync_scheduled: bool,
    fsync_generation: u64,
    /// The last LSN appended to the disk.
    written: Lsn,
    /// Batches handed over during a roll, waiting for the new segment.
    unwritten: VecDeque<(Lsn, Bytes)>,
    roll: Option<Roll>,
    compaction: Option<Compaction>,
    /// Log bytes written since the last snapshot was asked for; size of the last snapshot.
    log_since_snapshot: u64,
    snapshot_size: u64,
    /// Steps of rolls and compactions taken; a crash is planned after this one.
    steps: u64,
    crash_after: Option<u64>,
    /// Names the next storage event, so those of an earlier incarnation are ignored.
    step_seq: u64,
    pub snapshots: u64,
}

/// The writer starting a new segment, at `lsn + 1`.
#[derive(Debug)]
struct Roll {
    lsn: Lsn,
    /// The state as of `lsn`, as the compactor will write it.
    snapshot: Bytes,
    /// The new segment was created; its directory fsync is what remains.
    created: bool,
}

/// A snapshot at `lsn` being written.
#[derive(Debug)]
struct Compaction {
    lsn: Lsn,
    bytes: Bytes,
    steps: [SnapshotStep; 6],
    next: usize,
    /// Files still to remove, once `RemoveReplaced` started.
    removing: Option<Vec<String>>,
}

/// Why a file was read back wrong.
fn read(disk: &Disk, name: &str) -> Result<Bytes, String> {
    disk.read(name)
        .ok_or_else(|| "listed but not found".to_owned())
}

/// Runs recovery on `disk` as the daemon does at startup: the plan, then its file operations
/// (with `bug` planted, maybe not all of them).
pub fn recover(disk: &mut Disk, bug: Option<Bug>) -> Result<Recovery, RecoveryError> {
    let names = disk.names();
    let plan = recovery::plan(&names, |name| read(disk, name), false)?;
    for op in &plan.ops {
        let done = match op {
            FileOp::Remove { name, why } => {
                disk.remove(name) || *why != recovery::Leftover::Unfinished
            }
            FileOp::Truncate { name, len } => disk.truncate(name, *len as usize),
            FileOp::Sync { .. } if bug == Some(Bug::SkipRecoverySync) => true,
            FileOp::Sync { name } => {
                let len = disk.len(name);
                disk.sync(name, len)
            }
            // Only with salvage, which the simulator never asks for.
            FileOp::MoveAside { name, .. } | FileOp::WriteSnapshot { name } => {
                return Err(RecoveryError {
                    file: name.clone(),
                    offset: None,
                    reason: "salvage operation planned without salvage".to_owned(),
                });
            }
        };
        if !done {
            return Err(RecoveryError {
                file: format!("{op:?}"),
                offset: None,
                reason: "the operation failed".to_owned(),
            });
        }
    }
    Ok(plan)
}

/// The bytes of a snapshot of `state`.
fn snapshot_bytes(state: &State) -> Bytes {
    let mut out = Vec::new();
    for chunk in snapshot_chunks(state, 64 * 1024) {
        out.extend_from_slice(&chunk);
    }
    Bytes::from(out)
}

impl World {
    fn file_event(&mut self, h: usize, what: &'static str, name: &str) {
        self.host_push(
            h,
            Ev::File {
                what,
                name: name.to_owned(),
            },
        );
    }

    /// Appends a batch to the newest segment (or keeps it for after a roll).
    pub(crate) fn write_batch(&mut self, h: usize, lsn: Lsn, bytes: Bytes) {
        if self.hosts[h].log.roll.is_some() {
            self.hosts[h].log.unwritten.push_back((lsn, bytes));
            return;
        }
        let error = self.hosts[h].fail_next_write;
        self.hosts[h].fail_next_write = false;
        let was_failed = self.hosts[h].disk.failed;
        let segment = self.hosts[h].log.segment.clone();
        let inject = error && !was_failed;
        let written = self.hosts[h].disk.append(
            &segment,
            &bytes,
            if inject {
                Some(&mut self.rng_disk)
            } else {
                None
            },
        );
        if inject {
            self.host_push(
                h,
                Ev::WriteError {
                    kept: written as u32,
                    of: bytes.len() as u32,
                },
            );
            // The driver stops reporting durability; its supervisor restarts the broker.
            let at = self.now + self.rng_fault.range(200 * MS, 3 * SEC);
            let incarnation = self.hosts[h].incarnation;
            self.schedule(
                at,
                Event::Crash {
                    host: h,
                    forced: Some(incarnation),
                },
            );
            return;
        }
        if self.hosts[h].disk.failed {
            return;
        }
        let host = &mut self.hosts[h];
        let log = &mut host.log;
        log.written = lsn;
        log.log_since_snapshot += bytes.len() as u64;
        let end = host.disk.len(&segment);
        log.appended.push_back((end, lsn));
        self.schedule_fsync(h);
    }

    fn schedule_fsync(&mut self, h: usize) {
        let log = &mut self.hosts[h].log;
        if log.fsync.is_some() || log.fsync_scheduled || log.appended.is_empty() {
            return;
        }
        log.fsync_scheduled = true;
        let max = self.params.disk.group_delay_max;
        let delay = if max == 0 || self.rng_disk.chance(0.3) {
            0
        } else {
            self.rng_disk.range(0, max)
        };
        self.schedule(self.now + delay, Event::FsyncStart(h));
    }

    pub fn fsync_start(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        let log = &mut host.log;
        log.fsync_scheduled = false;
        if host.broker.is_none() || host.disk.failed || log.fsync.is_some() {
            return;
        }
        let Some(&(end, lsn)) = log.appended.back() else {
            return;
        };
        log.fsync_generation += 1;
        let generation = log.fsync_generation;
        log.fsync = Some((generation, log.segment.clone(), end, lsn));
        self.host_push(h, Ev::FsyncStart { lsn });
        let at = self.now + self.fsync_latency();
        self.schedule(at, Event::FsyncDone(h, generation));
    }

    fn fsync_latency(&mut self) -> u64 {
        let (lo, hi) = (self.params.disk.fsync_min, self.params.disk.fsync_max);
        self.rng_disk.range(lo, hi)
    }

    pub fn fsync_done(&mut self, h: usize, generation: u64) {
        let host = &mut self.hosts[h];
        let log = &mut host.log;
        let Some((g, segment, end, lsn)) = log.fsync.take() else {
            return;
        };
        if g != generation {
            log.fsync = Some((g, segment, end, lsn));
            return;
        }
        if !host.disk.sync(&segment, end) {
            // fsync failed: nothing is reported durable any more.
            return;
        }
        while log.appended.front().is_some_and(|(e, _)| *e <= end) {
            log.appended.pop_front();
        }
        host.durable_lsn = lsn;
        self.host_push(h, Ev::Durable { lsn });
        self.broker_input(h, "durable", ConnId(0), Input::Durable { lsn });
        self.watch_subscriptions(h);
        self.schedule_fsync(h);
        self.maybe_roll(h);
    }

    /// After a turn of the writer: starts a new segment and a snapshot when the log since the
    /// last one outgrew the limit (the daemon's `Writer::maybe_snapshot`).
    pub(crate) fn maybe_roll(&mut self, h: usize) {
        let log = &self.hosts[h].log;
        if self.hosts[h].broker.is_none()
            || self.hosts[h].disk.failed
            || log.log_since_snapshot == 0
            || log.roll.is_some()
            || log.compaction.is_some()
            // Batches waiting (here: written but not yet fsynced) go first.
            || !log.appended.is_empty()
            || log.fsync.is_some()
        {
            return;
        }
        let limit = self
            .params
            .disk
            .snapshot_log_bytes
            .max(2 * log.snapshot_size);
        if log.log_since_snapshot < limit {
            return;
        }
        let lsn = log.written;
        if self.hosts[h].shadow.last_lsn() != lsn {
            let shadow = self.hosts[h].shadow.last_lsn();
            return self.fail(
                "simulator consistency",
                format!("the log is written to LSN {lsn}, the state is at {shadow}"),
            );
        }
        if self.phase == Phase::Workload && self.rng_fault.chance(self.params.disk.compaction_crash)
        {
            // Past the roll's two steps, the snapshot's six and a removal or two.
            let k = self.rng_fault.below(10);
            self.hosts[h].log.crash_after = Some(self.hosts[h].log.steps + k + 1);
        }
        let snapshot = snapshot_bytes(&self.hosts[h].shadow);
        let segment = self.hosts[h].log.segment.clone();
        if self.hosts[h].disk.len(&segment) == 0 {
            // The newest segment already starts after the snapshot.
            return self.start_compaction(h, lsn, snapshot);
        }
        self.hosts[h].log.roll = Some(Roll {
            lsn,
            snapshot,
            created: false,
        });
        self.next_storage_step(h, 0);
    }

    /// Schedules the next step of a roll or compaction after `delay`.
    fn next_storage_step(&mut self, h: usize, delay: u64) {
        self.hosts[h].log.step_seq += 1;
        let seq = self.hosts[h].log.step_seq;
        let at = self.now + delay;
        self.schedule(at, Event::StorageStep(h, seq));
    }

    /// The delay before a step completes: an fsync takes a disk's fsync time.
    fn step_delay(&mut self, sync: bool) -> u64 {
        if sync {
            self.fsync_latency()
        } else {
            self.rng_disk.below(200)
        }
    }

    pub fn storage_step(&mut self, h: usize, seq: u64) {
        if seq != self.hosts[h].log.step_seq || self.hosts[h].broker.is_none() {
            return;
        }
        if self.hosts[h].log.roll.is_some() {
            self.roll_step(h);
        } else if self.hosts[h].log.compaction.is_some() {
            self.compaction_step(h);
        } else {
            return;
        }
        let host = &mut self.hosts[h];
        let log = &mut host.log;
        log.steps += 1;
        if log.crash_after == Some(log.steps) && host.broker.is_some() {
            log.crash_after = None;
            self.host_push(h, Ev::Phase("crash planned inside a compaction"));
            self.crash(h);
        }
    }

    fn roll_step(&mut self, h: usize) {
        let Some(roll) = self.hosts[h].log.roll.as_mut() else {
            return;
        };
        let name = segment_name(roll.lsn + 1);
        if !roll.created {
            roll.created = true;
            if !self.hosts[h].disk.create(&name) {
                return self.abort_roll(h);
            }
            self.file_event(h, "create segment", &name);
            let delay = self.step_delay(true);
            return self.next_storage_step(h, delay);
        }
        if !self.hosts[h].disk.sync_dir() {
            return self.abort_roll(h);
        }
        self.file_event(h, "fsync directory (new segment)", &name);
        let roll = self.hosts[h].log.roll.take().expect("roll");
        self.hosts[h].log.segment = name;
        self.start_compaction(h, roll.lsn, roll.snapshot);
        self.write_unwritten(h);
    }

    /// The disk failed during a roll: the writer keeps its segment (and the broker, which
    /// hears of no more durability, is restarted by its supervisor).
    fn abort_roll(&mut self, h: usize) {
        self.hosts[h].log.roll = None;
        self.write_unwritten(h);
    }

    fn write_unwritten(&mut self, h: usize) {
        while let Some((lsn, bytes)) = self.hosts[h].log.unwritten.pop_front() {
            self.write_batch(h, lsn, bytes);
        }
    }

    fn start_compaction(&mut self, h: usize, lsn: Lsn, bytes: Bytes) {
        self.host_push(
            h,
            Ev::File {
                what: "snapshot asked for at lsn",
                name: lsn.to_string(),
            },
        );
        let host = &mut self.hosts[h];
        let log = &mut host.log;
        log.log_since_snapshot = 0;
        log.compaction = Some(Compaction {
            lsn,
            bytes,
            steps: planted_snapshot_steps(host.config.bug),
            next: 0,
            removing: None,
        });
        let delay = self.step_delay(false);
        self.next_storage_step(h, delay);
    }

    fn compaction_step(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        let Some(c) = host.log.compaction.as_mut() else {
            return;
        };
        let (lsn, step) = (c.lsn, c.steps[c.next]);
        let (tmp, snap) = (temp_name(lsn), snapshot_name(lsn));
        let disk = &mut host.disk;
        let done = match step {
            SnapshotStep::CreateTemp => disk.create(&tmp),
            SnapshotStep::Write => {
                disk.append(&tmp, &c.bytes, None);
                !disk.failed
            }
            SnapshotStep::SyncTemp => disk.sync(&tmp, c.bytes.len()),
            SnapshotStep::Rename => disk.rename(&tmp, &snap),
            SnapshotStep::SyncDir => disk.sync_dir(),
            SnapshotStep::RemoveReplaced => {
                // One file per event, in the daemon's order (segments, then snapshots).
                let removing = c
                    .removing
                    .get_or_insert_with(|| Listing::new(disk.names()).replaced_by(lsn));
                if !removing.is_empty() {
                    let name = removing.remove(0);
                    // A removal that fails is logged by the daemon and left to recovery.
                    disk.remove(&name);
                    self.file_event(h, "remove (compacted)", &name);
                    let delay = self.step_delay(false);
                    return self.next_storage_step(h, delay);
                }
                true
            }
        };
        let what = match step {
            SnapshotStep::CreateTemp => "create snapshot file",
            SnapshotStep::Write => "write snapshot",
            SnapshotStep::SyncTemp => "fsync snapshot",
            SnapshotStep::Rename => "rename snapshot to",
            SnapshotStep::SyncDir => "fsync directory (snapshot)",
            SnapshotStep::RemoveReplaced => "compaction done at lsn",
        };
        let shown = match step {
            SnapshotStep::Rename => snap,
            SnapshotStep::RemoveReplaced => lsn.to_string(),
            _ => tmp.clone(),
        };
        self.file_event(h, what, &shown);
        if !done {
            // As the daemon: the unfinished snapshot goes, compaction is tried again later.
            self.hosts[h].disk.remove(&tmp);
            self.hosts[h].log.compaction = None;
            return;
        }
        let c = self.hosts[h].log.compaction.as_mut().expect("compaction");
        c.next += 1;
        if c.next < c.steps.len() {
            let sync = matches!(
                c.steps[c.next],
                SnapshotStep::SyncTemp | SnapshotStep::SyncDir
            );
            let delay = self.step_delay(sync);
            return self.next_storage_step(h, delay);
        }
        let c = self.hosts[h].log.compaction.take().expect("compaction");
        self.hosts[h].log.snapshot_size = c.bytes.len() as u64;
        self.hosts[h].log.snapshots += 1;
        self.maybe_roll(h);
    }

    /// A graceful stop (the daemon's `Storage::close`): a roll in progress completes, what
    /// waits is written and everything is fsynced; a snapshot in progress is abandoned.
    pub(crate) fn storage_close(&mut self, h: usize) {
        if let Some(roll) = self.hosts[h].log.roll.take() {
            let name = segment_name(roll.lsn + 1);
            let created = roll.created || self.hosts[h].disk.create(&name);
            if created && self.hosts[h].disk.sync_dir() {
                self.hosts[h].log.segment = name;
            }
        }
        self.write_unwritten(h);
        let segment = self.hosts[h].log.segment.clone();
        let end = self.hosts[h].disk.len(&segment);
        if self.hosts[h].disk.sync(&segment, end)
            && self.hosts[h].written_lsn > self.hosts[h].durable_lsn
        {
            let lsn = self.hosts[h].written_lsn;
            self.hosts[h].log.appended.clear();
            self.hosts[h].durable_lsn = lsn;
            self.host_push(h, Ev::Durable { lsn });
            self.broker_input(h, "durable", ConnId(0), Input::Durable { lsn });
            self.watch_subscriptions(h);
        }
    }

    /// The process is gone: so are the writer's and compactor's threads.
    pub(crate) fn storage_die(&mut self, h: usize) {
        let log = &mut self.hosts[h].log;
        log.fsync = None;
        log.appended.clear();
        log.unwritten.clear();
        log.roll = None;
        log.compaction = None;
        log.crash_after = None;
        log.step_seq += 1;
    }

    /// Recovery at startup, then the writer starts (the daemon's `Storage::start`): in the
    /// segment recovery chose, or in a new one at the next LSN.
    pub(crate) fn storage_start(&mut self, h: usize, plan: &Recovery) {
        let last = plan.state.last_lsn();
        let log = &mut self.hosts[h].log;
        log.written = last;
        log.log_since_snapshot = plan.log_bytes;
        log.snapshot_size = plan.snapshot_size;
        match &plan.append_to {
            Some(seg) => log.segment = seg.name.clone(),
            None => {
                let name = segment_name(last + 1);
                self.hosts[h].disk.create(&name);
                self.hosts[h].disk.sync_dir();
                self.hosts[h].log.segment = name;
            }
        }
    }
}
