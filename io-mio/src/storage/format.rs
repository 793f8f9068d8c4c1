//! What the files in the persistence directory are called and what is in them.
//!
//! - `midge-<first lsn>.log`, a segment: frames (midge-core's record encoding) appended in LSN
//!   order, the first with the LSN the name says. Only the newest segment is ever written to.
//! - `midge-<lsn>.snap`, a snapshot: the durable state as of `lsn`, as the frames of
//!   `State::snapshot_records`, numbered 1, 2, 3... (their position in the snapshot, so a frame
//!   lost or moved is noticed), then a 32-byte footer: `midgesnp`, format version (u32),
//!   the snapshot's LSN (u64), the number of frames (u64), and a CRC32C of those 28 bytes (u32),
//!   big-endian. It is written as `midge-<lsn>.snap.tmp`, fsynced, renamed, and the directory
//!   fsynced, so a `.snap` file that exists is complete.
//!
//! LSNs in names have 20 digits, so names sort in LSN order.

use super::fs::{Fs, LogFile};
use bytes::{BufMut, Bytes, BytesMut};
use midge_core::persist::{Lsn, MAX_FRAME, Record, RecordError, State};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

const PREFIX: &str = "midge-";
const SEGMENT: &str = ".log";
const SNAPSHOT: &str = ".snap";
const TEMP: &str = ".snap.tmp";
/// Suffix given to files `--salvage` moved aside.
pub(crate) const DAMAGED: &str = ".damaged";

pub(crate) const FOOTER_LEN: usize = 32;
const FOOTER_MAGIC: &[u8; 8] = b"midgesnp";
const FORMAT_VERSION: u32 = 1;
/// Bytes of snapshot frames gathered before one write.
const WRITE_CHUNK: usize = 1 << 20;

pub(crate) fn segment_name(first: Lsn) -> String {
    format!("{PREFIX}{first:020}{SEGMENT}")
}

pub(crate) fn snapshot_name(lsn: Lsn) -> String {
    format!("{PREFIX}{lsn:020}{SNAPSHOT}")
}

/// What a file in the directory is, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Segment(Lsn),
    Snapshot(Lsn),
    /// An unfinished snapshot.
    Temp,
}

pub(crate) fn classify(name: &str) -> Option<FileKind> {
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

/// The log files of a directory, each list in LSN order.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub segments: Vec<(Lsn, PathBuf)>,
    pub snapshots: Vec<(Lsn, PathBuf)>,
    pub temps: Vec<PathBuf>,
}

pub(crate) fn list(dir: &Path) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        match classify(&name) {
            Some(FileKind::Segment(lsn)) => listing.segments.push((lsn, entry.path())),
            Some(FileKind::Snapshot(lsn)) => listing.snapshots.push((lsn, entry.path())),
            Some(FileKind::Temp) => listing.temps.push(entry.path()),
            None => {}
        }
    }
    listing.segments.sort();
    listing.snapshots.sort();
    Ok(listing)
}

/// Decodes the frame at `offset`, from a copy of its bytes: what a state keeps of a record (a
/// message's payload) then pins only that frame, not the whole file or batch it came from.
pub(crate) fn decode_owned(
    data: &[u8],
    offset: usize,
) -> Result<(Lsn, Record, usize), RecordError> {
    let rest = &data[offset..];
    if rest.len() < 8 {
        return Err(RecordError::Truncated);
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if len > MAX_FRAME {
        return Err(RecordError::TooLong(len));
    }
    let end = (8 + len).min(rest.len());
    Record::decode(&Bytes::copy_from_slice(&rest[..end]))
}

/// The offset of the first intact frame after `from` whose LSN is above `after`, if any. A
/// damaged frame with such a frame after it is not a torn write: a crash leaves nothing behind
/// the point where writing stopped. The LSN and length fields are checked before the checksum,
/// so the search is cheap.
pub(crate) fn intact_frame_after(data: &Bytes, from: usize, after: Lsn) -> Option<usize> {
    let header = 16;
    let mut pos = from + 1;
    while pos + header <= data.len() {
        let len = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let len = len as usize;
        let lsn = u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap_or([0; 8]));
        if len > 8
            && len <= MAX_FRAME
            && pos + 8 + len <= data.len()
            && lsn > after
            && lsn - after < 1 << 40
            && Record::decode(&data.slice(pos..pos + 8 + len)).is_ok()
        {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

// ------------------------------------------------------------------------------------------
// Snapshots
// ------------------------------------------------------------------------------------------

fn footer(lsn: Lsn, records: u64) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[..8].copy_from_slice(FOOTER_MAGIC);
    f[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    f[12..20].copy_from_slice(&lsn.to_be_bytes());
    f[20..28].copy_from_slice(&records.to_be_bytes());
    let crc = crc32c::crc32c(&f[..28]);
    f[28..].copy_from_slice(&crc.to_be_bytes());
    f
}

/// A snapshot footer's LSN and frame count, if it is one.
pub(crate) fn parse_footer(f: &[u8]) -> Result<(Lsn, u64), &'static str> {
    if f.len() != FOOTER_LEN || &f[..8] != FOOTER_MAGIC {
        return Err("no snapshot footer at the end of the file");
    }
    if crc32c::crc32c(&f[..28]).to_be_bytes() != f[28..] {
        return Err("snapshot footer checksum mismatch");
    }
    let version = u32::from_be_bytes(f[8..12].try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err("unknown snapshot format version");
    }
    let lsn = u64::from_be_bytes(f[12..20].try_into().unwrap_or_default());
    let records = u64::from_be_bytes(f[20..28].try_into().unwrap_or_default());
    Ok((lsn, records))
}

/// Why a snapshot was not written.
#[derive(Debug)]
pub(crate) enum SnapshotError {
    Io(io::Error),
    /// Asked to stop (the daemon is shutting down).
    Stopped,
}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> SnapshotError {
        SnapshotError::Io(e)
    }
}

/// Writes `state` as the snapshot `midge-<lsn>.snap` of `dir`: to a temporary file, fsynced,
/// renamed, and the directory fsynced. Returns the snapshot's size. `stop` aborts it.
pub(crate) fn write_snapshot(
    fs: &dyn Fs,
    dir: &Path,
    state: &State,
    stop: &AtomicBool,
) -> Result<u64, SnapshotError> {
    let lsn = state.last_lsn();
    let path = dir.join(snapshot_name(lsn));
    let tmp = dir.join(format!("{}.tmp", snapshot_name(lsn)));
    let result = write_snapshot_file(fs, &tmp, state, stop).and_then(|size| {
        fs.rename(&tmp, &path)?;
        fs.sync_dir(dir)?;
        Ok(size)
    });
    if result.is_err() {
        let _ = fs.remove(&tmp);
    }
    result
}

fn write_snapshot_file(
    fs: &dyn Fs,
    tmp: &Path,
    state: &State,
    stop: &AtomicBool,
) -> Result<u64, SnapshotError> {
    let mut file = fs.open(tmp, true)?;
    let mut buf = BytesMut::with_capacity(WRITE_CHUNK + 64 * 1024);
    let mut offset = 0u64;
    let mut count = 0u64;
    let flush = |file: &mut Box<dyn LogFile>, buf: &mut BytesMut, offset: &mut u64| {
        file.write_all_at(*offset, buf)?;
        *offset += buf.len() as u64;
        buf.clear();
        io::Result::Ok(())
    };
    for record in state.snapshot_records() {
        count += 1;
        record.encode(count, &mut buf);
        if buf.len() >= WRITE_CHUNK {
            if stop.load(Ordering::Relaxed) {
                return Err(SnapshotError::Stopped);
            }
            flush(&mut file, &mut buf, &mut offset)?;
        }
    }
    buf.put_slice(&footer(state.last_lsn(), count));
    flush(&mut file, &mut buf, &mut offset)?;
    file.sync_data()?;
    Ok(offset)
}

/// Where a snapshot is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotDamage {
    pub offset: u64,
    pub reason: String,
}

/// A snapshot as read: the state it holds (as of its LSN), and what was wrong with it. Without
/// `salvage` reading stops at the first damage; with it, every readable record is kept.
#[derive(Debug)]
pub(crate) struct LoadedSnapshot {
    pub state: State,
    pub damage: Vec<SnapshotDamage>,
}

/// Reads and verifies the snapshot at `path`, which its name says is at `lsn`: every frame
/// intact and numbered in order, as many as the footer says, each fitting the state it is
/// applied to.
pub(crate) fn load_snapshot(path: &Path, lsn: Lsn, salvage: bool) -> io::Result<LoadedSnapshot> {
    let data = Bytes::from(std::fs::read(path)?);
    let mut damage = Vec::new();
    let mut state = State::default();
    let (body_len, expected) = if data.len() < FOOTER_LEN {
        damage.push(SnapshotDamage {
            offset: 0,
            reason: format!("{} bytes is too short for a snapshot", data.len()),
        });
        (data.len(), None)
    } else {
        let at = data.len() - FOOTER_LEN;
        match parse_footer(&data[at..]) {
            Ok((footer_lsn, records)) if footer_lsn == lsn => (at, Some(records)),
            Ok((footer_lsn, _)) => {
                damage.push(SnapshotDamage {
                    offset: at as u64,
                    reason: format!("the footer says LSN {footer_lsn}, the file name {lsn}"),
                });
                (at, None)
            }
            Err(reason) => {
                damage.push(SnapshotDamage {
                    offset: at as u64,
                    reason: reason.to_owned(),
                });
                // Without a footer there is no telling where frames end.
                (data.len(), None)
            }
        }
    };
    if !damage.is_empty() && !salvage {
        return Ok(LoadedSnapshot { state, damage });
    }
    let body = data.slice(..body_len);
    let mut offset = 0;
    let mut count = 0u64;
    while offset < body.len() {
        match decode_owned(&body, offset) {
            Ok((n, record, used)) => {
                count += 1;
                if n != count {
                    damage.push(SnapshotDamage {
                        offset: offset as u64,
                        reason: format!("frame {n} where frame {count} belongs"),
                    });
                    if !salvage {
                        break;
                    }
                    count = n;
                }
                if let Err(e) = state.apply(state.last_lsn() + 1, &record) {
                    damage.push(SnapshotDamage {
                        offset: offset as u64,
                        reason: format!("inconsistent record: {}", e.reason),
                    });
                    if !salvage {
                        break;
                    }
                    state.set_last_lsn(state.last_lsn() + 1);
                }
                offset += used;
            }
            Err(error) => {
                damage.push(SnapshotDamage {
                    offset: offset as u64,
                    reason: error.to_string(),
                });
                if !salvage {
                    break;
                }
                // Skip to the next frame that reads, if any.
                match intact_frame_after(&body, offset, count) {
                    Some(next) => offset = next,
                    None => break,
                }
            }
        }
    }
    if damage.is_empty()
        && let Some(records) = expected
        && records != count
    {
        damage.push(SnapshotDamage {
            offset: body_len as u64,
            reason: format!("{count} frames where the footer says {records}"),
        });
    }
    state.set_last_lsn(lsn);
    Ok(LoadedSnapshot { state, damage })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_parse() {
        assert_eq!(segment_name(1), "midge-00000000000000000001.log");
        assert_eq!(snapshot_name(42), "midge-00000000000000000042.snap");
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
    fn footer_round_trips_and_detects_damage() {
        let f = footer(7, 3);
        assert_eq!(parse_footer(&f), Ok((7, 3)));
        for byte in 0..FOOTER_LEN {
            let mut g = f;
            g[byte] ^= 0x10;
            assert!(parse_footer(&g).is_err(), "flip in byte {byte}");
        }
    }
}
