//! Durability: the records the broker emits, their encoding with checksums, the durable state
//! they add up to, and reading them back after a crash. Shared by the daemon's log files and the
//! simulator's disk, so both recover through the same code.
//!
//! The protocol (see the broker's `Action::Persist` and `Input::Durable`): the broker emits
//! records with increasing log sequence numbers; the driver appends them and reports the highest
//! LSN made durable; the broker holds back every output produced after a record until that
//! record is durable, so nothing it acknowledges or delivers depends on state a crash could lose.

mod record;
mod state;

pub use record::{
    FRAME_HEADER, Lsn, MAX_FRAME, Record, RecordError, StoredMessage, StoredSubscription,
    StoredWill,
};
pub use state::{DeliveryState, Inconsistent, MessageEntry, SessionState, State};

use bytes::Bytes;

/// What is wrong with a log, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The last record is incomplete or garbled: a write torn by a crash. Everything before it
    /// is intact; the log should be truncated at `offset`.
    TornTail { offset: usize, error: RecordError },
    /// A damaged record with intact records after it: not what a crash does. Recovery must not
    /// silently skip it.
    Corrupt { offset: usize, error: RecordError },
}

/// The records found in a log, and where they end.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub records: Vec<(Lsn, Record)>,
    /// Bytes of intact records from the start.
    pub valid_len: usize,
    pub damage: Option<Damage>,
}

/// Reads every intact record from the start of `data`, stopping at the first damaged one.
pub fn scan(data: &Bytes) -> Scan {
    let mut scan = Scan::default();
    let mut offset = 0;
    while offset < data.len() {
        let rest = data.slice(offset..);
        match Record::decode(&rest) {
            Ok((lsn, record, used)) => {
                scan.records.push((lsn, record));
                offset += used;
            }
            Err(error) => {
                scan.damage = Some(if intact_record_follows(&rest) {
                    Damage::Corrupt { offset, error }
                } else {
                    Damage::TornTail { offset, error }
                });
                break;
            }
        }
    }
    scan.valid_len = offset;
    scan
}

/// True when the frame at the start of `rest` is damaged yet an intact frame starts where its
/// length says it ends.
fn intact_record_follows(rest: &Bytes) -> bool {
    if rest.len() < 4 {
        return false;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let next = 8usize.saturating_add(len);
    next < rest.len() && Record::decode(&rest.slice(next..)).is_ok()
}
