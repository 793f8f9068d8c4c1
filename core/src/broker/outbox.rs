//! What the broker hands to its driver. Encoded packets accumulate in each connection's output
//! buffer; a connection with new bytes is remembered once, in the order its first byte arrived,
//! and its whole buffer goes out as one `Send` when the driver next polls. A `Close` always comes
//! after the last bytes of its connection.

use super::connection::Connection;
use super::stats::Stats;
use super::{Action, ConnId};
use crate::codec::{EncodeError, Packet, ProtocolVersion};
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Connections whose buffer went from empty to not empty since the last flush.
    dirty: Vec<ConnId>,
    actions: VecDeque<Action>,
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
        let start = conn.out.len();
        packet.encode(version, &mut conn.out)?;
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

    /// Hands over what remains for a connection that is being closed, then the close.
    pub(crate) fn close(&mut self, id: ConnId, conn: &mut Connection, stats: &mut Stats) {
        if !conn.out.is_empty() {
            let bytes = conn.out.split().freeze();
            stats.bytes_sent += bytes.len() as u64;
            self.actions.push_back(Action::Send { conn: id, bytes });
        }
        self.actions.push_back(Action::Close { conn: id });
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
    pub(crate) fn poll(
        &mut self,
        conns: &mut BTreeMap<ConnId, Connection>,
        stats: &mut Stats,
    ) -> Option<Action> {
        if self.actions.is_empty() {
            for id in self.dirty.drain(..) {
                let Some(conn) = conns.get_mut(&id) else {
                    continue;
                };
                // A blocked connection is picked up again by `writable`.
                if conn.blocked || conn.out.is_empty() {
                    continue;
                }
                let bytes = conn.out.split().freeze();
                stats.bytes_sent += bytes.len() as u64;
                self.actions.push_back(Action::Send { conn: id, bytes });
            }
        }
        self.actions.pop_front()
    }
}
