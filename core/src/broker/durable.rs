//! What the broker writes to its log when persistence is on, and when.
//!
//! Only state that must survive a crash is recorded: persistent sessions (those that outlive
//! their connection), their subscriptions, wills, queued and in-flight QoS 1/2 deliveries and
//! inbound QoS 2 packet ids, and retained messages. QoS 0 traffic and clean sessions never
//! touch the log. Records are encoded as they happen and handed to the driver in one batch per
//! poll; every output produced after a record waits for it to be durable (see `outbox`).

use super::Broker;
use super::connection::Will;
use super::message::{Delivery, Message};
use super::session::{Expiry, SessionKey};
use super::subscribe::SubEntry;
use crate::codec::{PacketId, QoS};
use crate::persist::{Record, StoredMessage, StoredSubscription, StoredWill};

impl Broker {
    /// Appends a record to the log batch, if persistence is on.
    pub(super) fn persist(&mut self, record: Record) {
        if !self.config.persistence {
            return;
        }
        self.last_lsn += 1;
        record.encode(self.last_lsn, &mut self.log);
        #[cfg(feature = "sim-bugs")]
        if crate::bugs::planted(&self.config, crate::bugs::Bug::AckBeforeDurable) {
            return;
        }
        self.outbox.written(self.last_lsn);
    }

    /// The records written since the last call, ended with a `Commit`, for the driver to
    /// append. Recovery applies a batch whole or not at all, and output waits for the commit of
    /// the batch its records are in, so a step of the broker is never seen half done.
    pub(super) fn take_batch(&mut self) -> Option<super::Action> {
        if self.log.is_empty() {
            return None;
        }
        self.persist(Record::Commit);
        self.outbox.committed(self.last_lsn);
        Some(super::Action::Persist {
            lsn: self.last_lsn,
            bytes: self.log.split().freeze(),
        })
    }

    /// Whether a session's state is on disk.
    pub(super) fn is_persisted(&self, key: SessionKey) -> bool {
        self.config.persistence && self.sessions[key].persisted
    }

    /// The id a stored message is known by, storing it first if it is not yet.
    pub(super) fn store_message(&mut self, msg: &Message) -> u64 {
        if let Some(id) = msg.stored_id.get() {
            return *id;
        }
        self.next_message_id += 1;
        let id = self.next_message_id;
        let _ = msg.stored_id.set(id);
        self.persist(Record::Message(stored_message(msg, id)));
        id
    }

    /// A persistent session exists with its current expiry, or a session stopped being
    /// persistent (its durable state goes).
    pub(super) fn record_session(&mut self, key: SessionKey) {
        if !self.config.persistence {
            return;
        }
        let session = &self.sessions[key];
        let client_id = session.client_id.clone();
        let expiry_secs = match session.expiry {
            Expiry::OnDisconnect => None,
            Expiry::After(s) => Some(s),
            Expiry::Never => Some(u32::MAX),
        };
        match (expiry_secs, session.persisted) {
            (Some(expiry_secs), _) => {
                self.sessions[key].persisted = true;
                self.persist(Record::SessionOpen {
                    client_id,
                    expiry_secs,
                });
            }
            (None, true) => {
                // Resumed with Session Expiry Interval 0 (5.0): the session keeps its messages
                // but not its place in the log, and a later record of their deliveries would
                // name a session the log no longer has. It never returns to the log: a session
                // that ends with its connection is never resumed again (see `connect`).
                let session = &mut self.sessions[key];
                session.persisted = false;
                session.outbound.unrecord();
                self.persist(Record::SessionEnd { client_id });
            }
            (None, false) => {}
        }
    }

    /// The session ended; its durable state goes with it.
    pub(super) fn record_session_end(
        &mut self,
        client_id: &crate::codec::ByteString,
        persisted: bool,
    ) {
        if persisted {
            self.persist(Record::SessionEnd {
                client_id: client_id.clone(),
            });
        }
    }

    pub(super) fn record_subscribe(&mut self, key: SessionKey, filter: &str, entry: &SubEntry) {
        if self.is_persisted(key) {
            let client_id = self.sessions[key].client_id.clone();
            self.persist(Record::Subscribe {
                client_id,
                filter: filter.into(),
                options: StoredSubscription {
                    qos: entry.qos,
                    no_local: entry.no_local,
                    retain_as_published: entry.retain_as_published,
                    subscription_id: entry.subscription_id,
                },
            });
        }
    }

    pub(super) fn record_unsubscribe(&mut self, key: SessionKey, filter: &str) {
        if self.is_persisted(key) {
            let client_id = self.sessions[key].client_id.clone();
            self.persist(Record::Unsubscribe {
                client_id,
                filter: filter.into(),
            });
        }
    }

    /// Gives a QoS 1/2 delivery to a persistent session its delivery id and records it. QoS 0
    /// deliveries are never recorded.
    pub(super) fn record_enqueue(&mut self, key: SessionKey, d: &mut Delivery) {
        if d.recorded || d.qos == QoS::AtMostOnce || !self.is_persisted(key) {
            return;
        }
        let message_id = self.store_message(&d.msg);
        self.next_delivery_id += 1;
        d.id = self.next_delivery_id;
        d.recorded = true;
        let client_id = self.sessions[key].client_id.clone();
        self.persist(Record::Enqueue {
            client_id,
            delivery_id: d.id,
            message_id,
            qos: d.qos,
            retain: d.retain,
            subscription_ids: d.subscription_ids.clone(),
        });
    }

    pub(super) fn record_sent(&mut self, key: SessionKey, d: &Delivery, packet_id: PacketId) {
        if d.recorded {
            let client_id = self.sessions[key].client_id.clone();
            self.persist(Record::Sent {
                client_id,
                delivery_id: d.id,
                packet_id,
            });
        }
    }

    pub(super) fn record_discarded(&mut self, key: SessionKey, d: &Delivery) {
        if d.recorded {
            let client_id = self.sessions[key].client_id.clone();
            self.persist(Record::Discarded {
                client_id,
                delivery_id: d.id,
            });
        }
    }

    /// An outbound message in flight moved on (`released`: PUBREC) or is done.
    pub(super) fn record_outbound(&mut self, key: SessionKey, packet_id: PacketId, released: bool) {
        if self.is_persisted(key) {
            let client_id = self.sessions[key].client_id.clone();
            self.persist(if released {
                Record::Released {
                    client_id,
                    packet_id,
                }
            } else {
                Record::Acked {
                    client_id,
                    packet_id,
                }
            });
        }
    }

    /// An inbound QoS 2 packet id was stored (`stored`) or released by PUBREL.
    pub(super) fn record_inbound(&mut self, key: SessionKey, packet_id: PacketId, stored: bool) {
        if self.is_persisted(key) {
            let client_id = self.sessions[key].client_id.clone();
            self.persist(if stored {
                Record::InboundQos2 {
                    client_id,
                    packet_id,
                }
            } else {
                Record::InboundReleased {
                    client_id,
                    packet_id,
                }
            });
        }
    }

    pub(super) fn record_retain_set(&mut self, msg: &Message) {
        if self.config.persistence {
            let message_id = self.store_message(msg);
            self.persist(Record::RetainSet {
                topic: msg.topic.clone(),
                message_id,
            });
        }
    }

    pub(super) fn record_retain_clear(&mut self, topic: &str) {
        self.persist(Record::RetainClear {
            topic: topic.into(),
        });
    }

    /// The will a persistent session's client left, or that it has none any more.
    pub(super) fn record_will(&mut self, key: SessionKey, will: Option<&Will>) {
        if !self.is_persisted(key) {
            return;
        }
        let session = &mut self.sessions[key];
        let client_id = session.client_id.clone();
        match will {
            Some(w) => {
                session.will_recorded = true;
                let message = stored_message(&w.msg, 0);
                self.persist(Record::WillSet {
                    client_id,
                    will: StoredWill {
                        message,
                        delay_secs: w.delay_secs,
                    },
                });
            }
            None if session.will_recorded => {
                session.will_recorded = false;
                self.persist(Record::WillClear { client_id });
            }
            None => {}
        }
    }
}

fn stored_message(msg: &Message, id: u64) -> StoredMessage {
    StoredMessage {
        id,
        topic: msg.topic.clone(),
        payload: msg.payload.clone(),
        qos: msg.qos,
        retain: msg.retain,
        properties: msg.properties.clone(),
        expires_at: msg.expires_at.map(|t| t.as_millis()),
    }
}
