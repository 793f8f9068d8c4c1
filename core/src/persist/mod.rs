//! Durability: the records the broker emits, their encoding with checksums, the durable state
//! they add up to, the files of a log directory (`files`), snapshots (`snapshot`), and reading
//! a directory back after a crash (`recovery`). Shared by the daemon's log files and the
//! simulator's disk, so both write the same files in the same order and recover through the
//! same code.
//!
//! The protocol (see the broker's `Action::Persist` and `Input::Durable`): the broker emits
//! records with increasing log sequence numbers, in batches that each end with a `Commit`; the
//! driver appends them and reports the highest LSN made durable; the broker holds back every
//! output produced after a record until the commit of its batch is durable, so nothing it
//! acknowledges or delivers depends on state a crash could lose. A crash may leave any prefix of
//! what was written on disk; recovery takes whole batches only, so it never starts from a state
//! the broker was in only halfway through one of its steps.

pub mod files;
mod record;
pub mod recovery;
pub mod snapshot;
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
    /// The last batch is incomplete: its last record is cut short or garbled, or its `Commit` is
    /// missing (`RecordError::Uncommitted`), a write torn by a crash. Every batch before it is
    /// intact; the log should be truncated at `offset`, where the torn batch starts.
    TornTail { offset: usize, error: RecordError },
    /// A damaged record with intact records after it: not what a crash does. Recovery must not
    /// silently skip it.
    Corrupt { offset: usize, error: RecordError },
}

/// The records found in a log, and where they end.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// The records of every complete batch, each batch ending with its `Commit`.
    pub records: Vec<(Lsn, Record)>,
    /// Bytes of complete batches from the start.
    pub valid_len: usize,
    pub damage: Option<Damage>,
}

/// Reads every complete batch of intact records from the start of `data`, stopping at the
/// first damaged record. Records after the last `Commit` are left out: a crash cut their batch
/// short, and a part of a batch is not a state the broker was ever in.
pub fn scan(data: &Bytes) -> Scan {
    let mut scan = Scan::default();
    let mut offset = 0;
    // Records and bytes up to the end of the last complete batch.
    let mut committed = (0, 0);
    while offset < data.len() {
        let rest = data.slice(offset..);
        match Record::decode(&rest) {
            Ok((lsn, record, used)) => {
                let commit = record == Record::Commit;
                scan.records.push((lsn, record));
                offset += used;
                if commit {
                    committed = (scan.records.len(), offset);
                }
            }
            Err(error) => {
                let after = scan.records.last().map_or(0, |(lsn, _)| *lsn);
                scan.damage = Some(if intact_frame_after(data, offset, after).is_some() {
                    Damage::Corrupt { offset, error }
                } else {
                    Damage::TornTail { offset, error }
                });
                break;
            }
        }
    }
    let (count, len) = committed;
    if len < offset && scan.damage.is_none() {
        scan.damage = Some(Damage::TornTail {
            offset: len,
            error: RecordError::Uncommitted,
        });
    }
    if let Some(Damage::TornTail { offset, .. }) = &mut scan.damage {
        *offset = len;
    }
    scan.records.truncate(count);
    scan.valid_len = len;
    scan
}

/// The offset of the first intact frame with an LSN above `after` anywhere after the damaged
/// frame at `from`, if any: a crash leaves nothing intact behind the point where writing
/// stopped, so such a frame means corruption, not a torn tail. The damaged frame's length cannot
/// say where the next one starts (the damage may be in the length), so every offset is tried;
/// the length and LSN are checked before the checksum, which keeps it cheap. Requiring a later
/// LSN keeps stale frames of a reused file from counting.
pub fn intact_frame_after(data: &Bytes, from: usize, after: Lsn) -> Option<usize> {
    (from + 1..data.len().saturating_sub(FRAME_HEADER - 1)).find(|&pos| {
        let field = |at: usize, n: usize| data[pos + at..pos + at + n].iter();
        let len = field(0, 4).fold(0usize, |v, b| v << 8 | usize::from(*b));
        let lsn = field(8, 8).fold(0u64, |v, b| v << 8 | u64::from(*b));
        (FRAME_HEADER - 8..=MAX_FRAME).contains(&len)
            && pos + 8 + len <= data.len()
            && lsn > after
            && Record::decode(&data.slice(pos..pos + 8 + len)).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::record::tests::record;
    use super::*;
    use bytes::BytesMut;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// A log of batches, each ending with a `Commit`, with LSNs from 1; and each frame's LSN,
    /// record, start and end.
    fn log(batches: &[Vec<Record>]) -> (Bytes, Vec<(Lsn, Record, usize, usize)>) {
        let mut out = BytesMut::new();
        let mut frames = Vec::new();
        for batch in batches {
            for r in batch.iter().chain(std::iter::once(&Record::Commit)) {
                let lsn = frames.len() as Lsn + 1;
                let start = out.len();
                r.encode(lsn, &mut out);
                frames.push((lsn, r.clone(), start, out.len()));
            }
        }
        (out.freeze(), frames)
    }

    fn batches() -> impl Strategy<Value = Vec<Vec<Record>>> {
        vec(
            vec(
                record().prop_filter("commits end batches", |r| *r != Record::Commit),
                0..4,
            ),
            1..4,
        )
    }

    /// The records of the batches complete within the first `len` bytes, and where they end.
    fn complete_before(
        frames: &[(Lsn, Record, usize, usize)],
        len: usize,
    ) -> (Vec<(Lsn, Record)>, usize) {
        let count = frames
            .iter()
            .rposition(|(_, r, _, end)| *r == Record::Commit && *end <= len)
            .map_or(0, |i| i + 1);
        let records = frames[..count]
            .iter()
            .map(|(lsn, r, _, _)| (*lsn, r.clone()))
            .collect();
        (records, frames[..count].last().map_or(0, |f| f.3))
    }

    #[test]
    fn an_empty_log_is_intact() {
        let scan = scan(&Bytes::new());
        assert!(scan.records.is_empty());
        assert_eq!((scan.valid_len, scan.damage), (0, None));
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// A crash cuts the log anywhere: what survives is every batch complete before the cut,
        /// and the rest is a torn tail, never corruption.
        #[test]
        fn a_log_cut_anywhere_keeps_the_batches_before_the_cut(batches in batches()) {
            let (data, frames) = log(&batches);
            let all: Vec<(Lsn, Record)> = frames.iter().map(|f| (f.0, f.1.clone())).collect();
            let whole = scan(&data);
            prop_assert_eq!(&whole.records, &all);
            prop_assert_eq!((whole.valid_len, &whole.damage), (data.len(), &None));
            for cut in 0..=data.len() {
                let s = scan(&data.slice(..cut));
                let (records, valid_len) = complete_before(&frames, cut);
                prop_assert_eq!(&s.records, &records, "cut at {}", cut);
                prop_assert_eq!(s.valid_len, valid_len);
                let inside_frame = frames.iter().any(|f| f.2 < cut && cut < f.3);
                match s.damage {
                    None => prop_assert_eq!(cut, valid_len),
                    Some(Damage::TornTail { offset, error }) => {
                        prop_assert_eq!(offset, valid_len);
                        prop_assert!(cut > valid_len);
                        let expected = if inside_frame {
                            RecordError::Truncated
                        } else {
                            RecordError::Uncommitted
                        };
                        prop_assert_eq!(error, expected, "cut at {}", cut);
                    }
                    Some(Damage::Corrupt { .. }) => {
                        prop_assert!(false, "a cut at {} looks like corruption", cut)
                    }
                }
            }
        }

        /// A bit flipped in the last frame is a torn write: the last batch goes.
        #[test]
        fn a_damaged_last_frame_is_a_torn_tail(batches in batches()) {
            let (data, frames) = log(&batches);
            let last = frames.last().expect("a commit at least");
            let (records, valid_len) = complete_before(&frames, last.2);
            for bit in last.2 * 8..last.3 * 8 {
                let mut bad = BytesMut::from(&data[..]);
                bad[bit / 8] ^= 1 << (bit % 8);
                let s = scan(&bad.freeze());
                prop_assert_eq!(&s.records, &records, "bit {}", bit);
                prop_assert_eq!(s.valid_len, valid_len);
                prop_assert!(
                    matches!(s.damage, Some(Damage::TornTail { offset, .. }) if offset == valid_len),
                    "bit {}: {:?}", bit, s.damage
                );
            }
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 16,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// A bit flipped in a frame with intact frames after it is not what a crash does: the
        /// log is corrupt there, whichever field the bit is in.
        #[test]
        fn a_damaged_frame_before_intact_ones_is_corruption(batches in batches()) {
            let (data, frames) = log(&batches);
            for (_, _, start, end) in &frames[..frames.len() - 1] {
                for bit in start * 8..end * 8 {
                    let mut bad = BytesMut::from(&data[..]);
                    bad[bit / 8] ^= 1 << (bit % 8);
                    let s = scan(&bad.freeze());
                    prop_assert!(
                        matches!(s.damage, Some(Damage::Corrupt { offset, .. }) if offset == *start),
                        "bit {} of the frame at {}: {:?}", bit, start, s.damage
                    );
                    // Nothing after the corruption is taken.
                    prop_assert!(s.valid_len <= *start);
                }
            }
        }
    }
}
