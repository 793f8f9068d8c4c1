//! Storage without a broker: recovery of logs written here frame by frame (clean, torn, bit
//! flipped, out of order), and the writer and compactor through a file layer that can fail.

use super::format::{segment_name, snapshot_name};
use super::fs::{Fs, LogFile, OsFs};
use super::*;
use bytes::BytesMut;
use midge_core::codec::{ByteString, PacketId, PublishProperties, QoS};
use midge_core::persist::snapshot::FOOTER_LEN;
use midge_core::persist::{Record, State, StoredMessage, StoredSubscription};
use std::path::Path;

// ------------------------------------------------------------------------------------------
// Records and logs
// ------------------------------------------------------------------------------------------

fn message(id: u64, payload: &str) -> StoredMessage {
    StoredMessage {
        id,
        topic: ByteString::from("t"),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: PublishProperties::default(),
        expires_at: None,
    }
}

fn session_start(client_id: &ByteString) -> [Record; 3] {
    [
        Record::SessionOpen {
            client_id: client_id.clone(),
            expiry_secs: u32::MAX,
        },
        Record::Subscribe {
            client_id: client_id.clone(),
            filter: ByteString::from("t"),
            options: StoredSubscription {
                qos: QoS::AtLeastOnce,
                no_local: false,
                retain_as_published: false,
                subscription_id: None,
            },
        },
        Record::Commit,
    ]
}

/// A consistent history in batches, each ended by its commit: a persistent session
/// subscribes, then `n` messages are queued for it, every third sent and every sixth
/// acknowledged.
fn history(n: u64) -> Vec<Record> {
    let client_id = ByteString::from("sub");
    let mut records = session_start(&client_id).to_vec();
    for i in 1..=n {
        records.push(Record::Message(message(i, &format!("message {i}"))));
        records.push(Record::Enqueue {
            client_id: client_id.clone(),
            delivery_id: i,
            message_id: i,
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
        });
        let packet_id = PacketId::new(i as u16).unwrap();
        if i % 3 == 0 {
            records.push(Record::Sent {
                client_id: client_id.clone(),
                delivery_id: i,
                packet_id,
            });
        }
        records.push(Record::Commit);
        if i % 6 == 0 {
            records.push(Record::Acked {
                client_id: client_id.clone(),
                packet_id,
            });
            records.push(Record::Commit);
        }
    }
    records
}

/// Messages that come and go: each is queued, sent and acknowledged. The live state stays one
/// session while the log grows.
fn churn(n: u64) -> Vec<Record> {
    let client_id = ByteString::from("sub");
    let mut records = session_start(&client_id).to_vec();
    for i in 1..=n {
        let packet_id = PacketId::new((i % 60_000 + 1) as u16).unwrap();
        records.extend([
            Record::Message(message(i, &format!("message {i}"))),
            Record::Enqueue {
                client_id: client_id.clone(),
                delivery_id: i,
                message_id: i,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Vec::new(),
            },
            Record::Sent {
                client_id: client_id.clone(),
                delivery_id: i,
                packet_id,
            },
            Record::Commit,
            Record::Acked {
                client_id: client_id.clone(),
                packet_id,
            },
            Record::Commit,
        ]);
    }
    records
}

/// Indexes where batches start (after each commit), and the end.
fn batch_bounds(records: &[Record]) -> Vec<usize> {
    let mut bounds = vec![0];
    bounds.extend(
        records
            .iter()
            .enumerate()
            .filter(|(_, r)| **r == Record::Commit)
            .map(|(i, _)| i + 1),
    );
    bounds
}

/// The state `records` add up to, numbered from LSN 1.
fn state_of(records: &[Record]) -> State {
    let mut state = State::default();
    for (i, r) in records.iter().enumerate() {
        state.apply(i as u64 + 1, r).unwrap();
    }
    state
}

/// Frames of `records` numbered from `first`, and where each starts.
fn frames(records: &[Record], first: Lsn) -> (Vec<u8>, Vec<usize>) {
    let mut out = BytesMut::new();
    let mut starts = Vec::new();
    for (i, r) in records.iter().enumerate() {
        starts.push(out.len());
        r.encode(first + i as u64, &mut out);
    }
    (out.to_vec(), starts)
}

/// Writes `records` as segments split at the given record indexes; returns the paths.
fn write_segments(dir: &Path, records: &[Record], splits: &[usize]) -> Vec<PathBuf> {
    let mut bounds = vec![0];
    bounds.extend_from_slice(splits);
    bounds.push(records.len());
    bounds
        .windows(2)
        .map(|w| {
            let first = w[0] as u64 + 1;
            let path = dir.join(segment_name(first));
            std::fs::write(&path, frames(&records[w[0]..w[1]], first).0).unwrap();
            path
        })
        .collect()
}

/// The names in `dir` but the lock file's, which recovery leaves behind.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != super::dir_lock::LOCK_NAME)
        .collect();
    names.sort();
    names
}

fn flip(path: &Path, byte: usize, mask: u8) {
    let mut data = std::fs::read(path).unwrap();
    data[byte] ^= mask;
    std::fs::write(path, data).unwrap();
}

fn refused(dir: &Path) -> RecoveryError {
    match recover(dir, false) {
        Ok(r) => panic!("recovered a damaged log: {:?}", r.report),
        Err(e) => e,
    }
}

// ------------------------------------------------------------------------------------------
// Recovery
// ------------------------------------------------------------------------------------------

#[test]
fn an_empty_directory_recovers_an_empty_state() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("created");
    let r = recover(&sub, false).unwrap();
    assert_eq!(r.state, State::default());
    assert!(sub.is_dir());
    assert!(r.segment.is_none());
}

#[test]
fn a_clean_log_recovers_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let records = history(30);
    let bounds = batch_bounds(&records);
    let splits = [bounds[5], bounds[20]];
    write_segments(dir.path(), &records, &splits);
    let r = recover(dir.path(), false).unwrap();
    assert_eq!(r.state, state_of(&records));
    assert_eq!(r.report.segments, 3);
    assert_eq!(r.report.records, records.len() as u64);
    assert!(r.report.truncated.is_none());
    let (first, _, _) = r.segment.unwrap();
    assert_eq!(
        first,
        splits[1] as u64 + 1,
        "appends continue in the newest segment"
    );
}

/// A log whose last batch (a message queued: three records) is to be damaged, the state
/// before that batch, and where the batch starts.
fn last_batch_log() -> (Vec<u8>, Vec<usize>, State, usize) {
    let records = history(5);
    let bounds = batch_bounds(&records);
    let last_batch = bounds[bounds.len() - 2];
    let (data, starts) = frames(&records, 1);
    let before = state_of(&records[..last_batch]);
    let at = starts[last_batch];
    (data, starts, before, at)
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_of_the_last_batch() {
    let (data, _, before, batch_start) = last_batch_log();
    for cut in batch_start..data.len() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment_name(1));
        std::fs::write(&path, &data[..cut]).unwrap();
        let r = recover(dir.path(), false).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(r.state, before, "cut at {cut}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), batch_start as u64);
        if cut > batch_start {
            let (file, offset, bytes) = r.report.truncated.unwrap();
            let expected = (path, batch_start as u64, (cut - batch_start) as u64);
            assert_eq!((file, offset, bytes), expected);
        }
        assert_eq!(r.segment.unwrap().2, batch_start as u64);
    }
}

#[test]
fn a_bit_flip_in_the_last_frame_is_a_torn_tail() {
    let (data, starts, before, batch_start) = last_batch_log();
    let last = *starts.last().unwrap();
    for byte in last..data.len() {
        for bit in 0..8 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(segment_name(1));
            let mut damaged = data.clone();
            damaged[byte] ^= 1 << bit;
            std::fs::write(&path, &damaged).unwrap();
            let r = recover(dir.path(), false)
                .unwrap_or_else(|e| panic!("flip at byte {byte} bit {bit}: {e}"));
            assert_eq!(r.state, before, "flip at byte {byte} bit {bit}");
            assert_eq!(r.report.truncated.unwrap().1, batch_start as u64);
        }
    }
}

#[test]
fn a_bit_flip_in_an_earlier_segment_refuses_to_start() {
    let records = history(10);
    let split = batch_bounds(&records)[4];
    let (_, starts) = frames(&records[..split], 1);
    let last = split - 1;
    // Every byte of a frame in the middle of the first segment, and of its last frame.
    for byte in (starts[5]..starts[6]).chain(starts[last]..starts[last] + 17) {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_segments(dir.path(), &records, &[split]);
        let frame = if byte >= starts[last] { last } else { 5 };
        flip(&paths[0], byte, 0x04);
        let e = refused(dir.path());
        assert_eq!(e.path, paths[0], "flip at {byte}");
        assert_eq!(e.offset, Some(starts[frame] as u64), "flip at {byte}: {e}");
        let text = e.to_string();
        assert!(
            text.contains(&segment_name(1)) && text.contains("byte offset"),
            "{text}"
        );
    }
}

#[test]
fn salvage_starts_with_what_is_readable_and_leaves_a_clean_log() {
    let dir = tempfile::tempdir().unwrap();
    let records = history(10);
    let split = batch_bounds(&records)[6];
    let (_, starts) = frames(&records[..split], 1);
    let paths = write_segments(dir.path(), &records, &[split]);
    // Message 5 is damaged; the delivery that refers to it no longer fits either.
    let m5 = records
        .iter()
        .position(|r| matches!(r, Record::Message(m) if m.id == 5))
        .unwrap();
    flip(&paths[0], starts[m5] + 20, 0x01);
    let e = refused(dir.path());
    assert_eq!(e.offset, Some(starts[m5] as u64));

    let r = recover(dir.path(), true).unwrap();
    assert_eq!(r.report.skipped.len(), 2, "{:?}", r.report.skipped);
    assert!(r.report.skipped[0].contains("corrupt record"));
    assert!(r.report.skipped[1].contains("inconsistent record"));
    let mut expected = records.clone();
    expected.drain(m5..m5 + 2);
    let mut expected_state = state_of(&expected);
    expected_state.set_last_lsn(records.len() as u64);
    assert_eq!(r.state, expected_state);
    // The damaged segment is kept aside, a snapshot holds the rest.
    let listed = names(dir.path());
    assert!(
        listed.contains(&format!("{}.damaged", segment_name(1))),
        "{listed:?}"
    );
    assert!(
        listed.contains(&snapshot_name(records.len() as u64)),
        "{listed:?}"
    );
    assert!(r.segment.is_none());

    // The directory stays locked while the recovered state is held.
    drop(r);
    let again = recover(dir.path(), false).unwrap();
    assert_eq!(again.state, expected_state);
    assert!(again.report.skipped.is_empty());
}

#[test]
fn corruption_before_the_tail_of_the_newest_segment_refuses_to_start() {
    let records = history(5);
    let (data, starts) = frames(&records, 1);
    // A flipped payload byte (the checksum fails, the next frame reads) and a flipped length
    // (no frame starts where it says the next one does, yet intact frames follow).
    for (byte, mask) in [
        (starts[4] + 20, 0x01),
        (starts[4] + 3, 0x02),
        (starts[4], 0x80),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment_name(1));
        let mut damaged = data.clone();
        damaged[byte] ^= mask;
        std::fs::write(&path, &damaged).unwrap();
        let e = refused(dir.path());
        assert_eq!(
            (e.path.clone(), e.offset),
            (path, Some(starts[4] as u64)),
            "{e}"
        );
        assert_eq!(
            std::fs::read(dir.path().join(segment_name(1))).unwrap(),
            damaged
        );
    }
}

#[test]
fn a_segment_before_the_newest_must_end_with_a_commit() {
    let records = history(5);
    let bounds = batch_bounds(&records);
    let dir = tempfile::tempdir().unwrap();
    // The first segment ends inside a batch: not something a crash leaves.
    let split = bounds[3] + 1;
    let paths = write_segments(dir.path(), &records, &[split]);
    let e = refused(dir.path());
    assert_eq!(e.path, paths[0]);
    assert!(e.reason.contains("without its commit"), "{e}");
}

#[test]
fn gaps_and_reordering_refuse_to_start() {
    let records = history(5);
    let bounds = batch_bounds(&records);
    // A missing segment.
    let dir = tempfile::tempdir().unwrap();
    let paths = write_segments(dir.path(), &records, &[bounds[2], bounds[4]]);
    std::fs::remove_file(&paths[1]).unwrap();
    let e = refused(dir.path());
    assert_eq!(e.path, paths[2]);
    assert!(e.reason.contains("records missing"), "{e}");

    // Two frames swapped.
    let dir = tempfile::tempdir().unwrap();
    let mut out = BytesMut::new();
    for (lsn, r) in [(1, &records[0]), (3, &records[2]), (2, &records[1])] {
        r.encode(lsn, &mut out);
    }
    std::fs::write(dir.path().join(segment_name(1)), &out).unwrap();
    let e = refused(dir.path());
    assert!(e.reason.contains("records missing"), "{e}");

    // The first segment is missing.
    let dir = tempfile::tempdir().unwrap();
    let paths = write_segments(dir.path(), &records, &[bounds[2]]);
    std::fs::remove_file(&paths[0]).unwrap();
    let e = refused(dir.path());
    assert!(e.reason.contains("start of the log"), "{e}");

    // A segment whose name does not match its first record.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(segment_name(1)), frames(&records, 2).0).unwrap();
    let e = refused(dir.path());
    assert!(e.reason.contains("named for LSN 1"), "{e}");
}

#[test]
fn an_inconsistent_record_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = history(3);
    // A delivery to a session nobody opened.
    records.extend([
        Record::Enqueue {
            client_id: ByteString::from("nobody"),
            delivery_id: 99,
            message_id: 1,
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
        },
        Record::Commit,
    ]);
    let (data, starts) = frames(&records, 1);
    std::fs::write(dir.path().join(segment_name(1)), data).unwrap();
    let e = refused(dir.path());
    assert_eq!(e.offset, Some(starts[records.len() - 2] as u64));
    assert!(e.reason.contains("inconsistent"), "{e}");
}

/// Writes `state` as a snapshot in `dir` with the real file system.
fn snapshot(dir: &Path, state: &State) -> PathBuf {
    format::write_snapshot(&OsFs, dir, state, &AtomicBool::new(false), false).unwrap();
    dir.join(snapshot_name(state.last_lsn()))
}

#[test]
fn a_snapshot_and_the_log_after_it_recover_together() {
    let dir = tempfile::tempdir().unwrap();
    let records = history(20);
    let bounds = batch_bounds(&records);
    let (a, b) = (bounds[6], bounds[12]);
    let paths = write_segments(dir.path(), &records, &[a, b]);
    // The snapshot covers the first two segments; a crash stopped their removal.
    snapshot(dir.path(), &state_of(&records[..b]));
    let older = snapshot(dir.path(), &state_of(&records[..a]));
    let tmp = format!("{}.tmp", snapshot_name(records.len() as u64));
    std::fs::write(dir.path().join(tmp), b"x").unwrap();
    let r = recover(dir.path(), false).unwrap();
    assert_eq!(r.state, state_of(&records));
    assert_eq!(r.report.records, (records.len() - b) as u64);
    assert_eq!(r.report.segments, 1);
    assert_eq!(
        names(dir.path()),
        [snapshot_name(b as u64), segment_name(b as u64 + 1)],
        "leftovers removed"
    );
    assert!(!older.exists() && !paths[0].exists() && !paths[1].exists());
}

#[test]
fn a_damaged_snapshot_refuses_to_start() {
    let records = history(10);
    let state = state_of(&records);
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot(dir.path(), &state);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    assert_eq!(recover(dir.path(), false).unwrap().state, state);
    for byte in [0, 30, len - FOOTER_LEN - 1, len - FOOTER_LEN + 12, len - 1] {
        let dir = tempfile::tempdir().unwrap();
        let path = snapshot(dir.path(), &state);
        flip(&path, byte, 0x08);
        let e = refused(dir.path());
        assert_eq!(e.path, path, "flip at {byte}");
        assert!(e.reason.contains("snapshot"), "{e}");
        assert!(recover(dir.path(), true).is_ok(), "salvage starts");
    }
    // Cut at a frame boundary: the footer is gone.
    let dir = tempfile::tempdir().unwrap();
    let path = snapshot(dir.path(), &state);
    let data = std::fs::read(&path).unwrap();
    std::fs::write(&path, &data[..len - FOOTER_LEN]).unwrap();
    refused(dir.path());
    // Frames missing before an intact footer.
    let (_, starts) = frames(&state.snapshot_records().collect::<Vec<_>>(), 1);
    let mut short = data[..starts[3]].to_vec();
    short.extend_from_slice(&data[len - FOOTER_LEN..]);
    std::fs::write(&path, short).unwrap();
    let e = refused(dir.path());
    assert!(e.reason.contains("frames where the footer says"), "{e}");
}

// ------------------------------------------------------------------------------------------
// Writing: a file layer that fails on demand
// ------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Faults {
    /// Bytes that may still be written; a write beyond writes what fits and fails (ENOSPC).
    budget: AtomicU64,
    fail_sync: AtomicBool,
}

#[derive(Debug)]
struct FaultyFs(Arc<Faults>);

#[derive(Debug)]
struct FaultyFile {
    inner: Box<dyn LogFile>,
    faults: Arc<Faults>,
}

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

impl LogFile for FaultyFile {
    fn write_all_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let budget = self.faults.budget.load(Ordering::SeqCst);
        let fits = budget.min(buf.len() as u64) as usize;
        self.faults
            .budget
            .store(budget - fits as u64, Ordering::SeqCst);
        self.inner.write_all_at(offset, &buf[..fits])?;
        if fits < buf.len() {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl Fs for FaultyFs {
    fn open(&self, path: &Path, truncate: bool) -> io::Result<Box<dyn LogFile>> {
        Ok(Box::new(FaultyFile {
            inner: OsFs.open(path, truncate)?,
            faults: Arc::clone(&self.0),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsFs.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        OsFs.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsFs.sync_dir(dir)
    }
}

fn faulty() -> (Arc<Faults>, Arc<dyn Fs>) {
    let faults = Arc::new(Faults {
        budget: AtomicU64::new(u64::MAX),
        fail_sync: AtomicBool::new(false),
    });
    (Arc::clone(&faults), Arc::new(FaultyFs(faults)))
}

fn start(dir: &Path, configure: impl FnOnce(&mut Options)) -> Storage {
    let mut options = Options::new(dir);
    options.retry_interval = Duration::from_millis(20);
    configure(&mut options);
    let recovered = recover(dir, false).unwrap();
    Storage::start(recovered, &options, Box::new(|| {})).unwrap()
}

/// Appends `records` (numbered from `first`, whole batches) as the broker would, `per_append`
/// batches at a time.
fn append_all(storage: &Storage, records: &[Record], first: Lsn, per_append: usize) {
    let bounds = batch_bounds(records);
    assert_eq!(*bounds.last().unwrap(), records.len(), "whole batches");
    let mut i = 0;
    while i + 1 < bounds.len() {
        let j = (i + per_append).min(bounds.len() - 1);
        let (from, to) = (bounds[i], bounds[j]);
        let (data, _) = frames(&records[from..to], first + from as u64);
        storage.append(first + to as u64 - 1, Bytes::from(data));
        i = j;
    }
}

/// The batch boundary nearest to the middle of `records`.
fn middle(records: &[Record]) -> usize {
    let bounds = batch_bounds(records);
    bounds[bounds.len() / 2]
}

fn wait_durable(storage: &Storage, lsn: Lsn) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while storage.durable() < lsn {
        assert!(
            Instant::now() < deadline,
            "durable {} never reached {lsn}",
            storage.durable()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Copies the log files of `from` into a new directory: what a crash right now would leave.
fn crash_copy(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for name in names(from) {
        std::fs::copy(from.join(&name), to.path().join(&name)).unwrap();
    }
    to
}

#[test]
fn written_records_recover_and_group_commit_shares_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let records = history(200);
    let storage = start(dir.path(), |_| {});
    append_all(&storage, &records, 1, 1);
    wait_durable(&storage, records.len() as u64);
    let stats = storage.close();
    assert_eq!(stats.batches, batch_bounds(&records).len() as u64 - 1);
    assert!(stats.fsyncs >= 1 && stats.fsyncs <= stats.batches);
    let r = recover(dir.path(), false).unwrap();
    assert_eq!(r.state, state_of(&records));
    drop(r);

    // A restart continues the same log.
    let more = history(300);
    let storage = start(dir.path(), |_| {});
    append_all(
        &storage,
        &more[records.len()..],
        records.len() as u64 + 1,
        7,
    );
    wait_durable(&storage, more.len() as u64);
    storage.close();
    assert_eq!(recover(dir.path(), false).unwrap().state, state_of(&more));
    assert_eq!(names(dir.path()), [segment_name(1)]);
}

/// Two storages on one directory would append to the same log: recovery refuses to read a
/// directory that a running storage (or a recovery not yet started) holds, and says so.
#[test]
fn a_directory_in_use_is_refused_until_its_storage_closes() {
    let dir = tempfile::tempdir().unwrap();
    let storage = start(dir.path(), |_| {});
    let e = refused(dir.path());
    assert_eq!(e.path, dir.path().join("midge.lock"));
    assert!(e.reason.contains("another midge uses"), "{e}");
    storage.close();

    let held = recover(dir.path(), false).unwrap();
    assert!(refused(dir.path()).reason.contains("locked"));
    drop(held);
    recover(dir.path(), false).expect("recovery after the lock is released");
}

#[test]
fn snapshots_compact_the_log_and_recover_with_its_tail() {
    let dir = tempfile::tempdir().unwrap();
    let records = churn(2_000);
    let storage = start(dir.path(), |o| o.snapshot_log_bytes = 16 * 1024);
    let bounds = batch_bounds(&records);
    for i in (0..bounds.len() - 1).step_by(100) {
        let (from, to) = (bounds[i], bounds[(i + 100).min(bounds.len() - 1)]);
        append_all(&storage, &records[from..to], from as u64 + 1, 10);
        wait_durable(&storage, to as u64);
        // Let the compactor keep up, as it would between bursts.
        std::thread::sleep(Duration::from_millis(1));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while storage.stats().snapshots < 3 {
        assert!(Instant::now() < deadline, "{:?}", storage.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = storage.close();
    let listed = names(dir.path());
    let snaps = listed.iter().filter(|n| n.ends_with(".snap")).count();
    let segments = listed.iter().filter(|n| n.ends_with(".log")).count();
    assert_eq!(snaps, 1, "older snapshots removed: {listed:?}");
    assert!(
        segments <= 3,
        "compacted segments removed: {listed:?} {stats:?}"
    );
    let total: u64 = listed
        .iter()
        .map(|n| std::fs::metadata(dir.path().join(n)).unwrap().len())
        .sum();
    assert!(
        total < stats.bytes / 4,
        "disk use {total} follows the live state, not the {} bytes logged",
        stats.bytes
    );
    let r = recover(dir.path(), false).unwrap();
    assert!(r.report.snapshot.is_some());
    assert_eq!(r.state, state_of(&records));
}

#[test]
fn autosave_interval_writes_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let records = history(20);
    let storage = start(dir.path(), |o| o.autosave = Some(Duration::from_millis(50)));
    append_all(&storage, &records, 1, 5);
    wait_durable(&storage, records.len() as u64);
    let deadline = Instant::now() + Duration::from_secs(10);
    while storage.stats().snapshots == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    storage.close();
    let r = recover(dir.path(), false).unwrap();
    assert_eq!(
        r.report.snapshot,
        Some(dir.path().join(snapshot_name(records.len() as u64)))
    );
    assert_eq!(r.state, state_of(&records));
}

#[test]
fn a_full_disk_stops_acknowledgements_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, fs) = faulty();
    let storage = start(dir.path(), |o| o.fs = fs);
    let records = history(100);
    let half = middle(&records);
    append_all(&storage, &records[..half], 1, 4);
    wait_durable(&storage, half as u64);

    // Room for a few more frames only: the write of a batch fails part way.
    faults.budget.store(300, Ordering::SeqCst);
    append_all(&storage, &records[half..], half as u64 + 1, 4);
    std::thread::sleep(Duration::from_millis(200));
    let stalled = storage.durable();
    assert!(
        stalled < records.len() as u64,
        "nothing past the full disk is durable"
    );
    assert_eq!(
        storage.stats().failures,
        1,
        "one episode, logged once, many retries"
    );

    // Everything reported durable is on disk: a crash now recovers at least that much (the
    // partial write is a torn tail).
    let copy = crash_copy(dir.path());
    let r = recover(copy.path(), false).unwrap();
    assert!(r.state.last_lsn() >= stalled);
    assert_eq!(r.state, state_of(&records[..r.state.last_lsn() as usize]));

    faults.budget.store(u64::MAX, Ordering::SeqCst);
    wait_durable(&storage, records.len() as u64);
    let stats = storage.close();
    assert_eq!(stats.failures, 1);
    let r = recover(dir.path(), false).unwrap();
    assert!(
        r.report.truncated.is_none(),
        "the failed write was repaired"
    );
    assert_eq!(r.state, state_of(&records));
}

#[test]
fn a_failing_fsync_stops_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, fs) = faulty();
    let storage = start(dir.path(), |o| o.fs = fs);
    let records = history(30);
    let half = middle(&records);
    append_all(&storage, &records[..half], 1, 5);
    wait_durable(&storage, half as u64);
    faults.fail_sync.store(true, Ordering::SeqCst);
    append_all(&storage, &records[half..], half as u64 + 1, 5);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(storage.durable(), half as u64);
    assert_eq!(storage.stats().failures, 1);
    faults.fail_sync.store(false, Ordering::SeqCst);
    wait_durable(&storage, records.len() as u64);
    storage.close();
    assert_eq!(
        recover(dir.path(), false).unwrap().state,
        state_of(&records)
    );
}

#[test]
fn periodic_sync_reports_after_write_and_fsyncs_on_a_timer() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, fs) = faulty();
    // fsync fails throughout: periodic mode reports durable anyway (after write) until the
    // first failed fsync starts an episode.
    faults.fail_sync.store(true, Ordering::SeqCst);
    let storage = start(dir.path(), |o| {
        o.fs = fs;
        o.sync = SyncMode::Periodic(Duration::from_secs(3600));
    });
    let records = history(30);
    append_all(&storage, &records, 1, 1);
    wait_durable(&storage, records.len() as u64);
    assert_eq!(storage.stats().fsyncs, 0);
    faults.fail_sync.store(false, Ordering::SeqCst);
    // Closing fsyncs whatever the mode.
    let stats = storage.close();
    assert_eq!(stats.fsyncs, 1);
    assert_eq!(
        recover(dir.path(), false).unwrap().state,
        state_of(&records)
    );
}

#[test]
fn a_write_error_at_close_gives_up_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, fs) = faulty();
    let storage = start(dir.path(), |o| {
        o.fs = fs;
        o.close_timeout = Duration::from_millis(100);
    });
    faults.budget.store(0, Ordering::SeqCst);
    let records = history(3);
    append_all(&storage, &records, 1, 1);
    let started = Instant::now();
    let stats = storage.close();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(stats.durable, 0);
    assert_eq!(recover(dir.path(), false).unwrap().state, State::default());
}
