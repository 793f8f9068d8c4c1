//! What the broker hands to its driver. Encoded packets accumulate in each connection's output
//! buffer; a connection with new bytes is remembered once, in the order its first byte arrived,
//! and its whole buffer goes out as one `Send` when the driver next polls. A `Close` always comes
//! after the last bytes of its connection.
//!
//! With persistence on, output produced after a record was written is held until the driver
//! reports that record durable: an acknowledgement, a delivery, a SUBACK must never reveal state a
//! crash could still lose. Held output keeps its place in the connection's byte stream; group
//! commit makes the wait one fsync.

use super::conn_table::ConnTable;
use super::connection::{Connection, Held};
use super::stats::Stats;
use super::{Action, ConnId};
use crate::codec::{EncodeError, Packet, ProtocolVersion, Publish};
use crate::persist::Lsn;
use bytes::BytesMut;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What a connection's output buffer starts with, at the first packet after it was handed to
/// the driver. A turn usually writes several packets to a busy connection: grown from the size
/// of the first by doubling, the buffer was reallocated and copied several times a turn. Up to
/// 1,032 bytes glibc serves from its per-thread cache, the cheapest allocation there is; the
/// buffer lives only until the driver has written it.
const FIRST_OUTPUT_CAPACITY: usize = 1024;

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Connections whose buffer went from empty to not empty since the last flush.
    dirty: Vec<ConnId>,
    actions: VecDeque<Action>,
    /// The last record written, and the last commit the driver reported durable.
    written: Lsn,
    durable: Lsn,
    /// LSNs of the commits written and not yet durable, oldest first.
    commits: VecDeque<Lsn>,
    /// Connections with output held for durability.
    holding: BTreeSet<ConnId>,
    /// Connections closed while output was held: their last bytes, then their close, wait.
    closing: BTreeMap<ConnId, Held>,
    /// Bytes of closed connections' released output, added to `Stats::bytes_sent` at the
    /// next poll (release happens where the counters are not at hand).
    released_uncounted: u64,
    /// The time of the input being handled, to stamp `Connection::last_sent`.
    pub(crate) now: super::Time,
}

impl Outbox {
    /// Encodes `packet` onto the connection's output, counts it, and returns its size.
    pub(crate) fn write(
        &mut self,
        id: ConnId,
        conn: &mut Connection,
        version: ProtocolVersion,
        packet: &Packet,
        stats: &mut Stats,
    ) -> Result<usize, EncodeError> {
        self.write_with(id, conn, stats, |buf| packet.encode(version, buf))
    }

    /// [`Outbox::write`] for a PUBLISH, which need not be moved into a `Packet` first.
    pub(crate) fn write_publish(
        &mut self,
        id: ConnId,
        conn: &mut Connection,
        version: ProtocolVersion,
        publish: &Publish,
        stats: &mut Stats,
    ) -> Result<usize, EncodeError> {
        self.write_with(id, conn, stats, |buf| publish.encode(version, buf))
    }

    fn write_with(
        &mut self,
        id: ConnId,
        conn: &mut Connection,
        stats: &mut Stats,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
    ) -> Result<usize, EncodeError> {
        if let Some(link) = conn.bridge.as_mut() {
            link.last_sent = self.now;
        }
        if self.written > self.durable || !conn.held.is_empty() {
            let n = conn.held.push(self.written, encode)?;
            stats.messages_sent += 1;
            self.holding.insert(id);
            return Ok(n);
        }
        let start = conn.out.len();
        if conn.out.capacity() == 0 {
            conn.out.reserve(FIRST_OUTPUT_CAPACITY);
        }
        encode(&mut conn.out)?;
        stats.messages_sent += 1;
        if start == 0 && !conn.blocked {
            self.dirty.push(id);
        }
        Ok(conn.out.len() - start)
    }

    /// The driver can write to a connection again.
    pub(crate) fn writable(&mut self, id: ConnId, conn: &mut Connection) {
        if conn.blocked {
            conn.blocked = false;
            if !conn.out.is_empty() {
                self.dirty.push(id);
            }
        }
    }

    /// Hands over what remains for a connection that is being closed, then the close; held
    /// output and the close wait for durability.
    pub(crate) fn close(&mut self, id: ConnId, conn: &mut Connection, stats: &mut Stats) {
        if !conn.out.is_empty() {
            let bytes = conn.out.split().freeze();
            stats.bytes_sent += bytes.len() as u64;
            self.actions.push_back(Action::Send { conn: id, bytes });
        }
        self.holding.remove(&id);
        if conn.held.is_empty() {
            self.actions.push_back(Action::Close { conn: id });
        } else {
            self.closing.insert(id, std::mem::take(&mut conn.held));
        }
    }

    /// The peer is gone: held output for it can never be sent.
    pub(crate) fn forget(&mut self, id: ConnId) {
        self.holding.remove(&id);
        self.closing.remove(&id);
    }

    /// A record was written at `lsn`: output from now on waits for it.
    pub(crate) fn written(&mut self, lsn: Lsn) {
        self.written = lsn;
    }

    /// A batch of records ends with the commit at `lsn`.
    pub(crate) fn committed(&mut self, lsn: Lsn) {
        self.commits.push_back(lsn);
    }

    /// The driver made the log durable up to `lsn`: release what waited for it. Only whole
    /// batches count: records after the last commit up to `lsn` are lost with a crash before
    /// their own commit is durable.
    pub(crate) fn durable(&mut self, lsn: Lsn, conns: &mut ConnTable) {
        while let Some(&commit) = self.commits.front()
            && commit <= lsn
        {
            self.commits.pop_front();
            self.durable = self.durable.max(commit);
        }
        let durable = self.durable;
        let holding: Vec<ConnId> = self.holding.iter().copied().collect();
        for id in holding {
            let Some(conn) = conns.get_mut(&id) else {
                self.holding.remove(&id);
                continue;
            };
            let was_empty = conn.out.is_empty();
            conn.held.release(durable, &mut conn.out);
            if conn.held.is_empty() {
                self.holding.remove(&id);
            }
            if was_empty && !conn.out.is_empty() && !conn.blocked {
                self.dirty.push(id);
            }
        }
        let closing: Vec<ConnId> = self.closing.keys().copied().collect();
        for id in closing {
            let Some(held) = self.closing.get_mut(&id) else {
                continue;
            };
            let mut out = BytesMut::new();
            held.release(durable, &mut out);
            if !out.is_empty() {
                self.released_uncounted += out.len() as u64;
                self.actions.push_back(Action::Send {
                    conn: id,
                    bytes: out.freeze(),
                });
            }
            if held.is_empty() {
                self.closing.remove(&id);
                self.actions.push_back(Action::Close { conn: id });
            }
        }
    }

    /// Queues an action that does not carry output.
    pub(crate) fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    /// Closes a connection the broker never accepted.
    pub(crate) fn refuse(&mut self, id: ConnId) {
        self.actions.push_back(Action::Close { conn: id });
    }

    /// The next action, turning pending output into `Send`s when nothing else is waiting.
    pub(crate) fn poll(&mut self, conns: &mut ConnTable, stats: &mut Stats) -> Option<Action> {
        stats.bytes_sent += std::mem::take(&mut self.released_uncounted);
        if self.actions.is_empty() {
            for id in self.dirty.drain(..) {
                let Some(conn) = conns.get_mut(&id) else {
                    continue;
                };
                // A blocked connection is picked up again by `writable`.
                if conn.blocked || conn.out.is_empty() {
                    continue;
                }
                // The whole buffer goes: a connection that falls idle holds no output buffer
                // (split() would leave it the rest of the allocation, kept alive for as long as
                // the connection lasts).
                let bytes = std::mem::take(&mut conn.out).freeze();
                stats.bytes_sent += bytes.len() as u64;
                self.actions.push_back(Action::Send { conn: id, bytes });
            }
        }
        self.actions.pop_front()
    }
}
