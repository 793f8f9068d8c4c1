//! Snapshots: the durable state as of one LSN, as bytes.
//!
//! A snapshot is the frames of [`State::snapshot_records`], numbered 1, 2, 3... (their position,
//! so a frame lost or moved is noticed), then a 32-byte footer: `midgesnp`, format version
//! (u32), the snapshot's LSN (u64), the number of frames (u64) and a CRC32C of those 28 bytes
//! (u32), big-endian. Drivers decide where the bytes live; the daemon writes them to a
//! temporary file, fsyncs and renames it, so a snapshot file that exists is complete.

use super::intact_frame_after;
use super::record::{Lsn, MAX_FRAME, Record, RecordError};
use super::state::State;
use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the footer.
pub const FOOTER_LEN: usize = 32;
const FOOTER_MAGIC: &[u8; 8] = b"midgesnp";
const FORMAT_VERSION: u32 = 1;

/// The footer of a snapshot at `lsn` holding `records` frames.
pub fn footer(lsn: Lsn, records: u64) -> [u8; FOOTER_LEN] {
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
pub fn parse_footer(f: &[u8]) -> Result<(Lsn, u64), &'static str> {
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

/// The bytes of a snapshot of `state`, in chunks of about `chunk` bytes (the last one ends with
/// the footer), so a driver can write it piece by piece and stop between pieces.
pub fn snapshot_chunks(state: &State, chunk: usize) -> impl Iterator<Item = BytesMut> + '_ {
    let mut records = state.snapshot_records();
    let mut count = 0u64;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = BytesMut::with_capacity(chunk + 64 * 1024);
        while buf.len() < chunk {
            match records.next() {
                Some(record) => {
                    count += 1;
                    record.encode(count, &mut buf);
                }
                None => {
                    buf.put_slice(&footer(state.last_lsn(), count));
                    done = true;
                    break;
                }
            }
        }
        Some(buf)
    })
}

/// Decodes the frame at `offset`, from a copy of its bytes: what a state keeps of a record (a
/// message's payload) then pins only that frame, not the whole file or batch it came from.
pub fn decode_owned(data: &[u8], offset: usize) -> Result<(Lsn, Record, usize), RecordError> {
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

/// Where a snapshot is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDamage {
    pub offset: u64,
    pub reason: String,
}

/// A snapshot as read: the state it holds (as of its LSN), and what was wrong with it. Without
/// `salvage` reading stops at the first damage; with it, every readable record is kept.
#[derive(Debug)]
pub struct LoadedSnapshot {
    pub state: State,
    pub damage: Vec<SnapshotDamage>,
}

/// Reads and verifies the snapshot in `data`, which is expected to be at `lsn`: every frame
/// intact and numbered in order, as many as the footer says, each fitting the state it is
/// applied to.
pub fn decode_snapshot(data: &Bytes, lsn: Lsn, salvage: bool) -> LoadedSnapshot {
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
        return LoadedSnapshot { state, damage };
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
    LoadedSnapshot { state, damage }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_empty_state_snapshots_to_a_commit_and_a_footer_and_reads_back() {
        let mut state = State::default();
        state.set_last_lsn(9);
        let bytes: Vec<u8> = snapshot_chunks(&state, 1024).flatten().collect();
        // The batch's Commit record, then the footer.
        assert_eq!(parse_footer(&bytes[bytes.len() - FOOTER_LEN..]), Ok((9, 1)));
        let loaded = decode_snapshot(&Bytes::from(bytes), 9, false);
        assert!(loaded.damage.is_empty(), "{:?}", loaded.damage);
        assert_eq!(loaded.state, state);
    }
}
