//! The files of a log directory: what they are called, what each one is, and the order in
//! which a snapshot is written and replaces them. Drivers own the directory (the daemon a real
//! one, the simulator one in memory) and take the same steps in the same order.
//!
//! - `midge-<first lsn>.log`, a segment: frames (the record encoding) appended in LSN order, the
//!   first with the LSN the name says. Only the newest segment is ever written to.
//! - `midge-<lsn>.snap`, a snapshot: the durable state as of `lsn` (see `snapshot`). It is
//!   written as `midge-<lsn>.snap.tmp`, fsynced, renamed, and the directory fsynced, so a
//!   `.snap` file that exists is complete.
//! - `<name>.damaged`: a file salvage moved aside; never read again.
//!
//! LSNs in names have 20 digits, so names sort in LSN order.

use super::record::Lsn;

const PREFIX: &str = "midge-";
const SEGMENT: &str = ".log";
const SNAPSHOT: &str = ".snap";
const TEMP: &str = ".snap.tmp";
/// Suffix given to files salvage moved aside.
pub const DAMAGED: &str = ".damaged";

/// The name of the segment whose first record has LSN `first`.
pub fn segment_name(first: Lsn) -> String {
    format!("{PREFIX}{first:020}{SEGMENT}")
}

/// The name of the snapshot at `lsn`.
pub fn snapshot_name(lsn: Lsn) -> String {
    format!("{PREFIX}{lsn:020}{SNAPSHOT}")
}

/// The name the snapshot at `lsn` has while it is being written.
pub fn temp_name(lsn: Lsn) -> String {
    format!("{PREFIX}{lsn:020}{TEMP}")
}

/// What a file in the directory is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Segment(Lsn),
    Snapshot(Lsn),
    /// An unfinished snapshot.
    Temp,
}

/// What the file called `name` is, or `None` for a file that is not part of the log.
pub fn classify(name: &str) -> Option<FileKind> {
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

/// The log files among a directory's names, each list in LSN order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub segments: Vec<(Lsn, String)>,
    pub snapshots: Vec<(Lsn, String)>,
    pub temps: Vec<String>,
}

impl Listing {
    /// Sorts `names` into segments, snapshots and unfinished snapshots; other names are left
    /// out.
    pub fn new<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Listing {
        let mut listing = Listing::default();
        for name in names {
            let name = name.as_ref();
            match classify(name) {
                Some(FileKind::Segment(lsn)) => listing.segments.push((lsn, name.to_owned())),
                Some(FileKind::Snapshot(lsn)) => listing.snapshots.push((lsn, name.to_owned())),
                Some(FileKind::Temp) => listing.temps.push(name.to_owned()),
                None => {}
            }
        }
        listing.segments.sort();
        listing.snapshots.sort();
        listing.temps.sort();
        listing
    }

    /// The files a complete snapshot at `lsn` replaces, taken after the newest segment was
    /// started at `lsn + 1`: every segment starting at or below `lsn` and every older
    /// snapshot.
    pub fn replaced_by(&self, lsn: Lsn) -> Vec<String> {
        let segments = self.segments.iter().filter(|(first, _)| *first <= lsn);
        let snapshots = self.snapshots.iter().filter(|(at, _)| *at < lsn);
        segments.chain(snapshots).map(|(_, n)| n.clone()).collect()
    }
}

/// One step of writing a snapshot and retiring what it replaces. The writer first fsyncs the
/// newest segment and starts (creates, then fsyncs the directory) a new one at the snapshot's
/// LSN + 1, so every earlier segment is complete on disk before the snapshot is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStep {
    /// Create `temp_name(lsn)`, empty.
    CreateTemp,
    /// Write the snapshot's bytes into it.
    Write,
    /// Make its data durable (`fdatasync`).
    SyncTemp,
    /// Rename it to `snapshot_name(lsn)`.
    Rename,
    /// fsync the directory: from here on the snapshot exists after any crash.
    SyncDir,
    /// Remove what the snapshot replaces ([`Listing::replaced_by`]). Nothing fsyncs the
    /// directory for it: files a crash brings back are removed again by recovery.
    RemoveReplaced,
}

/// The order of the steps. Removing a segment is safe only once the snapshot that replaces
/// it is complete and its name durable, which is why `RemoveReplaced` comes last.
pub const SNAPSHOT_STEPS: [SnapshotStep; 6] = [
    SnapshotStep::CreateTemp,
    SnapshotStep::Write,
    SnapshotStep::SyncTemp,
    SnapshotStep::Rename,
    SnapshotStep::SyncDir,
    SnapshotStep::RemoveReplaced,
];

/// The steps as a driver with `bug` planted takes them: the simulator's way to prove that a
/// wrong order is caught. The daemon uses [`SNAPSHOT_STEPS`].
#[cfg(feature = "sim-bugs")]
pub fn planted_snapshot_steps(bug: Option<crate::bugs::Bug>) -> [SnapshotStep; 6] {
    use SnapshotStep::*;
    match bug {
        Some(crate::bugs::Bug::RemoveBeforeSnapshot) => {
            [CreateTemp, Write, SyncTemp, RemoveReplaced, Rename, SyncDir]
        }
        _ => SNAPSHOT_STEPS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(segment_name(1), "midge-00000000000000000001.log");
        assert_eq!(snapshot_name(42), "midge-00000000000000000042.snap");
        assert_eq!(temp_name(42), "midge-00000000000000000042.snap.tmp");
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

    #[test]
    fn a_snapshot_replaces_the_segments_it_covers_and_older_snapshots() {
        let listing = Listing::new([
            segment_name(21),
            "mosquitto.db".to_owned(),
            segment_name(1),
            snapshot_name(20),
            segment_name(11),
            temp_name(30),
            snapshot_name(10),
        ]);
        assert_eq!(listing.temps, [temp_name(30)]);
        assert_eq!(
            listing.segments.iter().map(|s| s.0).collect::<Vec<_>>(),
            [1, 11, 21]
        );
        assert_eq!(
            listing.replaced_by(20),
            [segment_name(1), segment_name(11), snapshot_name(10)]
        );
        assert!(listing.replaced_by(0).is_empty());
    }

    #[test]
    fn segments_are_removed_only_after_the_snapshot_is_durable() {
        let at = |step| SNAPSHOT_STEPS.iter().position(|s| *s == step).unwrap();
        assert!(at(SnapshotStep::SyncTemp) < at(SnapshotStep::Rename));
        assert!(at(SnapshotStep::Rename) < at(SnapshotStep::SyncDir));
        assert!(at(SnapshotStep::SyncDir) < at(SnapshotStep::RemoveReplaced));
    }
}
