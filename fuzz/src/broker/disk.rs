//! The log as a driver's disk holds it: every `Persist` batch is checked as it arrives and added
//! to the state the records describe, and a crash keeps what a real disk could keep.

use bytes::{Bytes, BytesMut};
use midge_core::persist::{self, Damage, Lsn, Record, State, snapshot};

#[derive(Debug, Default)]
pub struct Disk {
    /// Every record written, in order.
    bytes: BytesMut,
    /// The LSN of the last record written, and of the last reported durable.
    pub written: Lsn,
    pub durable: Lsn,
    /// Bytes of the log that are durable.
    durable_len: usize,
    /// The end (LSN and byte offset) of each batch written but not yet durable.
    pending: Vec<(Lsn, usize)>,
    /// The state the written records add up to.
    pub state: State,
}

impl Disk {
    /// A disk holding a recovered log, all of it durable.
    fn recovered(bytes: &[u8], state: State) -> Disk {
        let lsn = state.last_lsn();
        Disk {
            bytes: BytesMut::from(bytes),
            written: lsn,
            durable: lsn,
            durable_len: bytes.len(),
            pending: Vec::new(),
            state,
        }
    }

    /// Appends a batch after checking it: whole frames, consecutive LSNs from the last written,
    /// ending with a `Commit` at `lsn`, each record consistent with the state before it.
    pub fn persist(&mut self, lsn: Lsn, bytes: &Bytes) {
        let scan = persist::scan(bytes);
        assert_eq!(scan.damage, None, "a Persist batch does not scan cleanly");
        assert_eq!(scan.valid_len, bytes.len());
        assert_eq!(
            scan.records.last().map(|(l, r)| (*l, r)),
            Some((lsn, &Record::Commit)),
            "a Persist batch does not end with its Commit at LSN {lsn}"
        );
        for (i, (record_lsn, record)) in scan.records.iter().enumerate() {
            assert_eq!(
                *record_lsn,
                self.written + 1 + i as Lsn,
                "LSNs do not follow on from {}",
                self.written
            );
            self.state
                .apply(*record_lsn, record)
                .unwrap_or_else(|e| panic!("the broker wrote an inconsistent record: {e}"));
        }
        self.written = lsn;
        self.bytes.extend_from_slice(bytes);
        self.pending.push((lsn, self.bytes.len()));
    }

    /// The LSN to report durable: everything written, or the end of the `upto`th pending batch.
    pub fn make_durable(&mut self, upto: Option<u8>) -> Option<Lsn> {
        if self.pending.is_empty() {
            return None;
        }
        let n = upto.map_or(self.pending.len(), |u| {
            usize::from(u) % self.pending.len() + 1
        });
        let (lsn, len) = self.pending[n - 1];
        self.pending.drain(..n);
        self.durable = lsn;
        self.durable_len = len;
        Some(lsn)
    }

    /// What survives a crash that keeps `extra` bytes written after the durable ones (a crash
    /// keeps any prefix of what was written, and never less than what is durable), read back as
    /// a restart does. Returns the recovered state and the disk it leaves.
    pub fn crash(&self, extra: u16) -> (State, Disk) {
        let kept = (self.durable_len + usize::from(extra)).min(self.bytes.len());
        let data = Bytes::copy_from_slice(&self.bytes[..kept]);
        let scan = persist::scan(&data);
        match &scan.damage {
            None => assert_eq!(scan.valid_len, kept),
            Some(Damage::TornTail { offset, .. }) => assert_eq!(*offset, scan.valid_len),
            Some(Damage::Corrupt { offset, error }) => {
                panic!("a log cut by a crash reads as corrupt at {offset}: {error}")
            }
        }
        assert!(
            scan.valid_len >= self.durable_len,
            "a crash lost durable records: {} bytes kept of {} durable",
            scan.valid_len,
            self.durable_len
        );
        let mut state = State::default();
        for (lsn, record) in &scan.records {
            state
                .apply(*lsn, record)
                .unwrap_or_else(|e| panic!("recovery finds an inconsistent record: {e}"));
        }
        if scan.valid_len == self.bytes.len() {
            assert_eq!(
                state, self.state,
                "the log read back differs from the log written"
            );
        }
        check_snapshot(&state);
        let disk = Disk::recovered(&data[..scan.valid_len], state.clone());
        (state, disk)
    }
}

/// A snapshot of `state` reads back as the same state, with no damage.
pub fn check_snapshot(state: &State) {
    let bytes: Vec<u8> = snapshot::snapshot_chunks(state, 256).flatten().collect();
    let loaded = snapshot::decode_snapshot(&Bytes::from(bytes), state.last_lsn(), false);
    assert_eq!(loaded.damage, [], "a fresh snapshot reads back damaged");
    assert_eq!(
        &loaded.state, state,
        "a snapshot does not read back as its state"
    );
}
