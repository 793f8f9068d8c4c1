//! The durable state: what the records of a log add up to.
//!
//! Recovery replays a snapshot and the log tail into a [`State`] and builds a broker from it; a
//! driver can keep a `State` up to date beside the broker (applying each record it makes durable)
//! to write snapshots without ever pausing the broker. Messages are kept once and counted by
//! the deliveries and retained entries that refer to them; one nobody refers to is dropped.

use super::record::{Lsn, Record, StoredMessage, StoredSubscription, StoredWill};
use crate::codec::{ByteString, PacketId, QoS};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A delivery of a message to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryState {
    pub message_id: u64,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// Set once sent: the packet id it must be resent with.
    pub packet_id: Option<PacketId>,
    /// PUBREC arrived: only PUBREL remains.
    pub released: bool,
}

/// A persistent session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    /// Seconds the session outlives its connection; `u32::MAX` for ever.
    pub expiry_secs: u32,
    pub subscriptions: BTreeMap<ByteString, StoredSubscription>,
    /// Queued and in-flight deliveries, in delivery order.
    pub deliveries: BTreeMap<u64, DeliveryState>,
    /// Deliveries in flight by packet id.
    pub in_flight: BTreeMap<PacketId, u64>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub inbound_qos2: BTreeSet<PacketId>,
    pub will: Option<StoredWill>,
}

/// A stored message and how many deliveries and retained entries refer to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEntry {
    pub message: StoredMessage,
    pub refs: u32,
}

/// A record that does not fit the state it is applied to: the log is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inconsistent {
    pub lsn: Lsn,
    pub reason: String,
}

impl fmt::Display for Inconsistent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}: {}", self.lsn, self.reason)
    }
}

impl std::error::Error for Inconsistent {}

/// Everything durable, as of `last_lsn`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub sessions: BTreeMap<ByteString, SessionState>,
    pub messages: BTreeMap<u64, MessageEntry>,
    pub retained: BTreeMap<ByteString, u64>,
    last_lsn: Lsn,
}

impl State {
    /// The LSN of the last record applied (0 for an empty state).
    pub fn last_lsn(&self) -> Lsn {
        self.last_lsn
    }

    /// Applies one record. Records at or below `last_lsn` were applied already (a log tail
    /// overlapping a snapshot) and are skipped.
    pub fn apply(&mut self, lsn: Lsn, record: &Record) -> Result<(), Inconsistent> {
        if lsn <= self.last_lsn {
            return Ok(());
        }
        self.apply_record(record).map_err(|reason| Inconsistent {
            lsn,
            reason: reason.to_owned(),
        })?;
        self.last_lsn = lsn;
        Ok(())
    }

    fn session(&mut self, client_id: &str) -> Result<&mut SessionState, &'static str> {
        self.sessions
            .get_mut(client_id)
            .ok_or("record for a session that does not exist")
    }

    fn apply_record(&mut self, record: &Record) -> Result<(), &'static str> {
        match record {
            Record::SessionOpen {
                client_id,
                expiry_secs,
            } => {
                self.sessions
                    .entry(client_id.clone())
                    .or_default()
                    .expiry_secs = *expiry_secs;
            }
            Record::SessionEnd { client_id } => {
                if let Some(session) = self.sessions.remove(client_id) {
                    for d in session.deliveries.values() {
                        self.unref(d.message_id);
                    }
                }
            }
            Record::Subscribe {
                client_id,
                filter,
                options,
            } => {
                self.session(client_id)?
                    .subscriptions
                    .insert(filter.clone(), *options);
            }
            Record::Unsubscribe { client_id, filter } => {
                self.session(client_id)?.subscriptions.remove(filter);
            }
            Record::Message(m) => {
                self.messages.entry(m.id).or_insert_with(|| MessageEntry {
                    message: m.clone(),
                    refs: 0,
                });
            }
            Record::Enqueue {
                client_id,
                delivery_id,
                message_id,
                qos,
                retain,
                subscription_ids,
            } => {
                let entry = self
                    .messages
                    .get_mut(message_id)
                    .ok_or("delivery of an unknown message")?;
                entry.refs += 1;
                let session = self
                    .sessions
                    .get_mut(client_id)
                    .ok_or("record for a session that does not exist")?;
                let previous = session.deliveries.insert(
                    *delivery_id,
                    DeliveryState {
                        message_id: *message_id,
                        qos: *qos,
                        retain: *retain,
                        subscription_ids: subscription_ids.clone(),
                        packet_id: None,
                        released: false,
                    },
                );
                if previous.is_some() {
                    return Err("delivery id used twice");
                }
            }
            Record::Sent {
                client_id,
                delivery_id,
                packet_id,
            } => {
                let session = self.session(client_id)?;
                let d = session
                    .deliveries
                    .get_mut(delivery_id)
                    .ok_or("sent delivery is not queued")?;
                d.packet_id = Some(*packet_id);
                if session.in_flight.insert(*packet_id, *delivery_id).is_some() {
                    return Err("packet id in flight twice");
                }
            }
            Record::Released {
                client_id,
                packet_id,
            } => {
                let session = self.session(client_id)?;
                let id = *session
                    .in_flight
                    .get(packet_id)
                    .ok_or("PUBREC for a packet id not in flight")?;
                if let Some(d) = session.deliveries.get_mut(&id) {
                    d.released = true;
                }
            }
            Record::Acked {
                client_id,
                packet_id,
            } => {
                let session = self.session(client_id)?;
                let id = session
                    .in_flight
                    .remove(packet_id)
                    .ok_or("acknowledgement for a packet id not in flight")?;
                let d = session
                    .deliveries
                    .remove(&id)
                    .ok_or("acknowledged delivery missing")?;
                self.unref(d.message_id);
            }
            Record::Discarded {
                client_id,
                delivery_id,
            } => {
                let d = self
                    .session(client_id)?
                    .deliveries
                    .remove(delivery_id)
                    .ok_or("discarded delivery is not queued")?;
                self.unref(d.message_id);
            }
            Record::InboundQos2 {
                client_id,
                packet_id,
            } => {
                self.session(client_id)?.inbound_qos2.insert(*packet_id);
            }
            Record::InboundReleased {
                client_id,
                packet_id,
            } => {
                self.session(client_id)?.inbound_qos2.remove(packet_id);
            }
            Record::RetainSet { topic, message_id } => {
                self.messages
                    .get_mut(message_id)
                    .ok_or("retained message unknown")?
                    .refs += 1;
                if let Some(old) = self.retained.insert(topic.clone(), *message_id) {
                    self.unref(old);
                }
            }
            Record::RetainClear { topic } => {
                if let Some(old) = self.retained.remove(topic) {
                    self.unref(old);
                }
            }
            Record::WillSet { client_id, will } => {
                self.session(client_id)?.will = Some(will.clone());
            }
            Record::WillClear { client_id } => {
                self.session(client_id)?.will = None;
            }
        }
        Ok(())
    }

    /// Drops one reference to a message, and the message with its last one.
    fn unref(&mut self, id: u64) {
        if let Some(entry) = self.messages.get_mut(&id) {
            entry.refs = entry.refs.saturating_sub(1);
            if entry.refs == 0 {
                self.messages.remove(&id);
            }
        }
    }

    /// Records that rebuild this state from nothing, messages before what refers to them. A
    /// message no record refers to (left by a crash between storing it and queueing it) is not
    /// included: a snapshot is also a compaction.
    pub fn snapshot_records(&self) -> impl Iterator<Item = Record> + '_ {
        let messages = self
            .messages
            .values()
            .filter(|e| e.refs > 0)
            .map(|e| Record::Message(e.message.clone()));
        let sessions = self
            .sessions
            .iter()
            .flat_map(|(id, s)| session_records(id, s));
        let retained = self.retained.iter().map(|(topic, id)| Record::RetainSet {
            topic: topic.clone(),
            message_id: *id,
        });
        messages.chain(sessions).chain(retained)
    }

    /// Marks a state rebuilt from a snapshot as being at `lsn`.
    pub fn set_last_lsn(&mut self, lsn: Lsn) {
        self.last_lsn = lsn;
    }

    /// Number of stored messages and their payload bytes.
    pub fn message_totals(&self) -> (usize, usize) {
        let bytes = self
            .messages
            .values()
            .map(|e| e.message.payload.len())
            .sum();
        (self.messages.len(), bytes)
    }
}

fn session_records<'a>(
    id: &'a ByteString,
    s: &'a SessionState,
) -> impl Iterator<Item = Record> + 'a {
    let open = std::iter::once(Record::SessionOpen {
        client_id: id.clone(),
        expiry_secs: s.expiry_secs,
    });
    let subs = s
        .subscriptions
        .iter()
        .map(|(filter, options)| Record::Subscribe {
            client_id: id.clone(),
            filter: filter.clone(),
            options: *options,
        });
    let deliveries = s.deliveries.iter().flat_map(move |(delivery_id, d)| {
        let enqueue = Record::Enqueue {
            client_id: id.clone(),
            delivery_id: *delivery_id,
            message_id: d.message_id,
            qos: d.qos,
            retain: d.retain,
            subscription_ids: d.subscription_ids.clone(),
        };
        let sent = d.packet_id.map(|packet_id| Record::Sent {
            client_id: id.clone(),
            delivery_id: *delivery_id,
            packet_id,
        });
        let released = d
            .packet_id
            .filter(|_| d.released)
            .map(|packet_id| Record::Released {
                client_id: id.clone(),
                packet_id,
            });
        std::iter::once(enqueue).chain(sent).chain(released)
    });
    let inbound = s.inbound_qos2.iter().map(|p| Record::InboundQos2 {
        client_id: id.clone(),
        packet_id: *p,
    });
    let will = s.will.iter().map(|w| Record::WillSet {
        client_id: id.clone(),
        will: w.clone(),
    });
    open.chain(subs)
        .chain(deliveries)
        .chain(inbound)
        .chain(will)
}
