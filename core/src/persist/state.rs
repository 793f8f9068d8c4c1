//! The durable state: what the records of a log add up to.
//!
//! Recovery replays a snapshot and the log tail into a [`State`] and builds a broker from it; a
//! driver can keep a `State` up to date beside the broker (applying each record it makes durable)
//! to write snapshots without ever pausing the broker. Messages are kept once and counted by
//! the deliveries and retained entries that refer to them; one nobody refers to at the end of a
//! batch (its `Commit`) is dropped. Within a batch a message may lose its last reference and
//! gain another: a message routed to several sessions can be discarded by the first (its queue
//! is full) before the next one's delivery refers to it.

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
    /// Messages that lost their last reference (or never had one) in the current batch, to be
    /// dropped at its commit unless referred to again. Empty between batches.
    unreferenced: BTreeSet<u64>,
    last_lsn: Lsn,
}

impl State {
    /// The LSN of the last record applied (0 for an empty state).
    pub fn last_lsn(&self) -> Lsn {
        self.last_lsn
    }

    /// Applies one record. Records at or below `last_lsn` were applied already (a log tail
    /// overlapping a snapshot) and are skipped. A record that does not fit the state is refused
    /// with its LSN and leaves the state as it was.
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
                if let std::collections::btree_map::Entry::Vacant(entry) = self.messages.entry(m.id)
                {
                    entry.insert(MessageEntry {
                        message: m.clone(),
                        refs: 0,
                    });
                    self.unreferenced.insert(m.id);
                }
            }
            Record::Enqueue {
                client_id,
                delivery_id,
                message_id,
                qos,
                retain,
                subscription_ids,
            } => {
                if !self.messages.contains_key(message_id) {
                    return Err("delivery of an unknown message");
                }
                let session = self.session(client_id)?;
                if session.deliveries.contains_key(delivery_id) {
                    return Err("delivery id used twice");
                }
                session.deliveries.insert(
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
                if let Some(entry) = self.messages.get_mut(message_id) {
                    entry.refs += 1;
                }
            }
            Record::Sent {
                client_id,
                delivery_id,
                packet_id,
            } => {
                let session = self.session(client_id)?;
                if session.in_flight.contains_key(packet_id) {
                    return Err("packet id in flight twice");
                }
                let d = session
                    .deliveries
                    .get_mut(delivery_id)
                    .ok_or("sent delivery is not queued")?;
                // A delivery is sent once and keeps its packet id until done; a second id
                // would leave the first in flight for a delivery that no longer has it.
                if d.packet_id.is_some() {
                    return Err("delivery sent twice");
                }
                d.packet_id = Some(*packet_id);
                session.in_flight.insert(*packet_id, *delivery_id);
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
                let session = self.session(client_id)?;
                // Only a delivery not yet sent is discarded; one in flight ends with `Acked`,
                // which frees its packet id too.
                if session
                    .deliveries
                    .get(delivery_id)
                    .ok_or("discarded delivery is not queued")?
                    .packet_id
                    .is_some()
                {
                    return Err("discarded delivery is in flight");
                }
                let d = session
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
            Record::Commit => {
                for id in std::mem::take(&mut self.unreferenced) {
                    if self.messages.get(&id).is_some_and(|e| e.refs == 0) {
                        self.messages.remove(&id);
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops one reference to a message; the message goes at the commit if that was its last.
    fn unref(&mut self, id: u64) {
        if let Some(entry) = self.messages.get_mut(&id) {
            entry.refs = entry.refs.saturating_sub(1);
            if entry.refs == 0 {
                self.unreferenced.insert(id);
            }
        }
    }

    /// Records that rebuild this state from nothing, messages before what refers to them, as
    /// one batch (ending with `Commit`). A message no record refers to is not included: a
    /// snapshot is also a compaction.
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
        messages
            .chain(sessions)
            .chain(retained)
            .chain(std::iter::once(Record::Commit))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{Action, Broker, Config, ConnId, Input, ListenerId, Open, Time};
    use crate::codec::{
        self, Connect, ConnectProperties, Disconnect, DisconnectReason, LastWill, Packet,
        ProtocolVersion, PubResponse, Publish, PublishProperties, QosPid, Subscribe,
        SubscribeProperties, Subscription, SubscriptionOptions, Unsubscribe, UnsubscribeProperties,
        WillProperties,
    };
    use crate::persist::scan;
    use bytes::{Bytes, BytesMut};
    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;
    use proptest::sample::select;

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).expect("not 0")
    }

    fn message(id: u64) -> StoredMessage {
        StoredMessage {
            id,
            topic: ByteString::from("t"),
            payload: Bytes::from_static(b"m"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: codec::PublishProperties::default(),
            expires_at: None,
        }
    }

    /// Applies records with LSNs from 1.
    fn applied(records: &[Record]) -> State {
        let mut state = State::default();
        for (i, r) in records.iter().enumerate() {
            state.apply(i as Lsn + 1, r).expect("consistent");
        }
        state
    }

    #[test]
    fn inconsistent_records_are_refused_with_their_lsn() {
        let c = ByteString::from("c");
        let other = ByteString::from("nobody");
        let base = applied(&[
            Record::SessionOpen {
                client_id: c.clone(),
                expiry_secs: u32::MAX,
            },
            Record::Message(message(1)),
            Record::Enqueue {
                client_id: c.clone(),
                delivery_id: 1,
                message_id: 1,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: vec![],
            },
            Record::Sent {
                client_id: c.clone(),
                delivery_id: 1,
                packet_id: pid(1),
            },
            Record::Enqueue {
                client_id: c.clone(),
                delivery_id: 2,
                message_id: 1,
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: vec![],
            },
            Record::Commit,
        ]);
        let enqueue = |client_id: &ByteString, delivery_id, message_id| Record::Enqueue {
            client_id: client_id.clone(),
            delivery_id,
            message_id,
            qos: QoS::ExactlyOnce,
            retain: false,
            subscription_ids: vec![],
        };
        let refused = [
            Record::Sent {
                client_id: c.clone(),
                delivery_id: 9,
                packet_id: pid(2),
            },
            Record::Sent {
                client_id: other.clone(),
                delivery_id: 1,
                packet_id: pid(2),
            },
            // Packet id 1 is in flight for delivery 1.
            Record::Sent {
                client_id: c.clone(),
                delivery_id: 2,
                packet_id: pid(1),
            },
            Record::Subscribe {
                client_id: other.clone(),
                filter: ByteString::from("#"),
                options: crate::persist::StoredSubscription {
                    qos: QoS::AtMostOnce,
                    no_local: false,
                    retain_as_published: false,
                    subscription_id: None,
                },
            },
            Record::Unsubscribe {
                client_id: other.clone(),
                filter: ByteString::from("#"),
            },
            enqueue(&c, 3, 42),
            enqueue(&other, 3, 1),
            enqueue(&c, 1, 1),
            Record::Released {
                client_id: c.clone(),
                packet_id: pid(9),
            },
            Record::Acked {
                client_id: c.clone(),
                packet_id: pid(9),
            },
            Record::Acked {
                client_id: other.clone(),
                packet_id: pid(1),
            },
            Record::Discarded {
                client_id: c.clone(),
                delivery_id: 9,
            },
            Record::InboundQos2 {
                client_id: other.clone(),
                packet_id: pid(1),
            },
            Record::InboundReleased {
                client_id: other.clone(),
                packet_id: pid(1),
            },
            Record::RetainSet {
                topic: ByteString::from("t"),
                message_id: 42,
            },
            Record::WillSet {
                client_id: other.clone(),
                will: crate::persist::StoredWill {
                    message: message(0),
                    delay_secs: 0,
                },
            },
            Record::WillClear {
                client_id: other.clone(),
            },
        ];
        for record in refused {
            let mut state = base.clone();
            let error = state
                .apply(100, &record)
                .expect_err(&format!("{record:?} accepted"));
            assert_eq!(error.lsn, 100, "{record:?}");
            assert!(error.to_string().starts_with("record 100: "), "{error}");
            assert_eq!(state, base, "{record:?} refused, yet the state changed");
            // At or below the last LSN applied, a record is skipped: it was applied before.
            assert_eq!(state.apply(base.last_lsn(), &record), Ok(()));
            assert_eq!(state, base);
        }
    }

    #[test]
    fn a_message_that_loses_its_last_reference_goes_at_the_commit() {
        let c = ByteString::from("c");
        let open = Record::SessionOpen {
            client_id: c.clone(),
            expiry_secs: 0,
        };
        let enqueue = |delivery_id| Record::Enqueue {
            client_id: c.clone(),
            delivery_id,
            message_id: 1,
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
        };
        let discard = Record::Discarded {
            client_id: c.clone(),
            delivery_id: 1,
        };
        // Discarded for one session, then queued for another, in one batch: kept.
        let state = applied(&[
            open.clone(),
            Record::Message(message(1)),
            enqueue(1),
            discard.clone(),
            enqueue(2),
            Record::Commit,
        ]);
        assert_eq!(state.messages[&1].refs, 1);
        // Discarded and never referred to again: gone with the commit, not before.
        let mut state = applied(&[open, Record::Message(message(1)), enqueue(1), discard]);
        assert!(state.messages.contains_key(&1));
        state.apply(5, &Record::Commit).expect("consistent");
        assert!(state.messages.is_empty());
        assert!(state.unreferenced.is_empty());
    }

    // --- States written by a real broker ------------------------------------------------------

    /// Clients: MQTT 3.1.1 with a persistent session, MQTT 5 with a session that never
    /// expires, MQTT 5 with one that expires after 3 s, MQTT 3.1.1 with a clean session.
    const CLIENTS: [(ProtocolVersion, Option<u32>); 4] = [
        (ProtocolVersion::V3_1_1, None),
        (ProtocolVersion::V5, Some(u32::MAX)),
        (ProtocolVersion::V5, Some(3)),
        (ProtocolVersion::V3_1_1, None),
    ];
    const FILTERS: [&str; 4] = ["a/b", "a/+", "#", "b/#"];
    const TOPICS: [&str; 3] = ["a/b", "a/c", "b/c"];

    #[derive(Debug, Clone)]
    enum Op {
        Connect {
            c: usize,
            clean: bool,
            will_delay: Option<u32>,
        },
        Subscribe {
            c: usize,
            filter: usize,
            qos: QoS,
            id: Option<u32>,
        },
        Unsubscribe {
            c: usize,
            filter: usize,
        },
        Publish {
            c: usize,
            topic: usize,
            qos: QoS,
            retain: bool,
            empty: bool,
        },
        /// The client answers everything it received.
        Respond {
            c: usize,
        },
        Disconnect {
            c: usize,
        },
        Drop {
            c: usize,
        },
        Advance {
            secs: u64,
        },
    }

    fn qos() -> impl Strategy<Value = QoS> {
        select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
    }

    fn op() -> impl Strategy<Value = Op> {
        let c = || 0..CLIENTS.len();
        prop_oneof![
            2 => (c(), prop::bool::weighted(0.2), option::weighted(0.3, 0..6u32))
                .prop_map(|(c, clean, will_delay)| Op::Connect { c, clean, will_delay }),
            2 => (c(), 0..FILTERS.len(), qos(), option::weighted(0.3, 1..100u32))
                .prop_map(|(c, filter, qos, id)| Op::Subscribe { c, filter, qos, id }),
            1 => (c(), 0..FILTERS.len()).prop_map(|(c, filter)| Op::Unsubscribe { c, filter }),
            6 => (c(), 0..TOPICS.len(), qos(), prop::bool::weighted(0.2), prop::bool::weighted(0.2))
                .prop_map(|(c, topic, qos, retain, empty)| Op::Publish { c, topic, qos, retain, empty }),
            4 => c().prop_map(|c| Op::Respond { c }),
            1 => c().prop_map(|c| Op::Disconnect { c }),
            1 => c().prop_map(|c| Op::Drop { c }),
            1 => (1..5u64).prop_map(|secs| Op::Advance { secs }),
        ]
    }

    /// A broker with persistence and small queues, its log, and its clients' connections.
    struct Driver {
        broker: Broker,
        now: Time,
        log: BytesMut,
        next_conn: u64,
        conns: [Option<ConnId>; 4],
        inbox: BTreeMap<ConnId, BytesMut>,
        next_pid: u16,
    }

    impl Driver {
        fn new() -> Driver {
            Driver {
                broker: Broker::new(Config {
                    persistence: true,
                    max_queued_messages: 2,
                    max_inflight_messages: 2,
                    ..Config::default()
                }),
                now: Time::ZERO,
                log: BytesMut::new(),
                next_conn: 1,
                conns: [None; 4],
                inbox: BTreeMap::new(),
                next_pid: 0,
            }
        }

        /// Hands an input to the broker, appends its records and reports them durable at once.
        fn input(&mut self, input: Input<'_>) {
            self.broker.handle(self.now, input);
            while let Some(action) = self.broker.poll_action() {
                match action {
                    Action::Persist { lsn, bytes } => {
                        self.log.extend_from_slice(&bytes);
                        self.broker.handle(self.now, Input::Durable { lsn });
                    }
                    Action::Send { conn, bytes } => self
                        .inbox
                        .entry(conn)
                        .or_default()
                        .extend_from_slice(&bytes),
                    Action::Close { conn } => {
                        for c in self.conns.iter_mut() {
                            if *c == Some(conn) {
                                *c = None;
                            }
                        }
                    }
                    Action::PauseRead { .. } | Action::ResumeRead { .. } => {}
                    Action::Dial { .. } => panic!("a bridge dialed with no bridge configured"),
                }
            }
        }

        fn send(&mut self, c: usize, packets: &[Packet]) {
            let Some(conn) = self.conns[c] else {
                return;
            };
            let mut bytes = BytesMut::new();
            for p in packets {
                p.encode(CLIENTS[c].0, &mut bytes).expect("encodes");
            }
            self.input(Input::Received {
                conn,
                bytes: &bytes,
            });
        }

        fn pid(&mut self) -> PacketId {
            self.next_pid = self.next_pid.wrapping_add(1).max(1);
            pid(self.next_pid)
        }

        fn run(&mut self, op: &Op) {
            match *op {
                Op::Connect {
                    c,
                    clean,
                    will_delay,
                } => {
                    let (version, expiry) = CLIENTS[c];
                    let conn = ConnId(self.next_conn);
                    self.next_conn += 1;
                    self.input(Input::Open(Open {
                        conn,
                        listener: ListenerId(0),
                        peer: None,
                        tls_identity: None,
                    }));
                    self.conns[c] = Some(conn);
                    let will = will_delay.map(|delay| LastWill {
                        topic: ByteString::from("a/will"),
                        payload: Bytes::from_static(b"gone"),
                        qos: QoS::AtLeastOnce,
                        retain: delay % 2 == 0,
                        properties: WillProperties {
                            will_delay_interval: version.is_v5().then_some(delay),
                            content_type: Some(ByteString::from("text/plain")),
                            ..WillProperties::default()
                        },
                    });
                    let connect = Packet::from(Connect {
                        protocol_version: version,
                        bridge: false,
                        clean_start: clean || c == 3,
                        keep_alive: 0,
                        properties: ConnectProperties {
                            session_expiry_interval: expiry,
                            ..ConnectProperties::default()
                        },
                        client_id: ByteString::from(format!("c{c}")),
                        will,
                        username: None,
                        password: None,
                    });
                    self.send(c, &[connect]);
                }
                Op::Subscribe { c, filter, qos, id } => {
                    let packet_id = self.pid();
                    let v5 = CLIENTS[c].0.is_v5();
                    let sub = Packet::Subscribe(Subscribe {
                        packet_id,
                        properties: SubscribeProperties {
                            subscription_identifier: id.filter(|_| v5),
                            ..SubscribeProperties::default()
                        },
                        subscriptions: vec![Subscription {
                            filter: ByteString::from(FILTERS[filter]),
                            options: SubscriptionOptions::new(qos),
                        }],
                    });
                    self.send(c, &[sub]);
                }
                Op::Unsubscribe { c, filter } => {
                    let packet_id = self.pid();
                    let unsub = Packet::Unsubscribe(Unsubscribe {
                        packet_id,
                        properties: UnsubscribeProperties::default(),
                        filters: vec![ByteString::from(FILTERS[filter])],
                    });
                    self.send(c, &[unsub]);
                }
                Op::Publish {
                    c,
                    topic,
                    qos,
                    retain,
                    empty,
                } => {
                    let packet_id = self.pid();
                    let properties = if CLIENTS[c].0.is_v5() {
                        PublishProperties {
                            message_expiry_interval: Some(600),
                            user_properties: vec![(
                                ByteString::from("from"),
                                ByteString::from(format!("c{c}")),
                            )],
                            correlation_data: Some(Bytes::from_static(&[0, 1, 2])),
                            ..PublishProperties::default()
                        }
                    } else {
                        PublishProperties::default()
                    };
                    let payload = if empty {
                        Bytes::new()
                    } else {
                        Bytes::from(format!("{c}:{}", self.next_pid))
                    };
                    let publish = Packet::Publish(Publish {
                        dup: false,
                        qos_pid: QosPid::new(qos, packet_id),
                        retain,
                        topic: ByteString::from(TOPICS[topic]),
                        properties,
                        payload,
                    });
                    self.send(c, &[publish]);
                }
                Op::Respond { c } => {
                    let Some(conn) = self.conns[c] else {
                        return;
                    };
                    let buf = self.inbox.entry(conn).or_default();
                    let mut answers = Vec::new();
                    while let Some(p) =
                        codec::decode_from(buf, CLIENTS[c].0, u32::MAX).expect("valid output")
                    {
                        match p {
                            Packet::Publish(p) => match p.qos_pid {
                                QosPid::AtMostOnce => {}
                                QosPid::AtLeastOnce(n) => {
                                    answers.push(Packet::PubAck(PubResponse::success(n)))
                                }
                                QosPid::ExactlyOnce(n) => {
                                    answers.push(Packet::PubRec(PubResponse::success(n)))
                                }
                            },
                            Packet::PubRec(r) => {
                                answers.push(Packet::PubRel(PubResponse::success(r.packet_id)))
                            }
                            Packet::PubRel(r) => {
                                answers.push(Packet::PubComp(PubResponse::success(r.packet_id)))
                            }
                            _ => {}
                        }
                    }
                    self.send(c, &answers);
                }
                Op::Disconnect { c } => {
                    let d =
                        Packet::Disconnect(Disconnect::new(DisconnectReason::NormalDisconnection));
                    self.send(c, &[d]);
                    self.conns[c] = None;
                }
                Op::Drop { c } => {
                    if let Some(conn) = self.conns[c].take() {
                        self.input(Input::Closed { conn });
                    }
                }
                Op::Advance { secs } => {
                    self.now = self.now.plus_secs(secs);
                    self.input(Input::Tick);
                }
            }
        }
    }

    /// The state rebuilt from a state's snapshot records.
    fn from_snapshot(state: &State) -> State {
        let mut rebuilt = State::default();
        for (i, r) in state.snapshot_records().enumerate() {
            rebuilt
                .apply(i as Lsn + 1, &r)
                .unwrap_or_else(|e| panic!("snapshot record {r:?}: {e}"));
        }
        rebuilt.set_last_lsn(state.last_lsn());
        rebuilt
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 64,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// After every record of a log a broker wrote, the state's snapshot rebuilds it (but for
        /// messages nothing refers to yet, in the middle of a batch); and a snapshot taken at any
        /// commit, followed by the whole log, rebuilds the final state.
        #[test]
        fn snapshots_rebuild_the_states_a_broker_wrote(ops in vec(op(), 1..60)) {
            let mut driver = Driver::new();
            for op in &ops {
                driver.run(op);
            }
            let log = driver.log.freeze();
            let scanned = scan(&log);
            prop_assert_eq!(&scanned.damage, &None);
            let mut state = State::default();
            let mut at_commits = Vec::new();
            for (lsn, record) in &scanned.records {
                state.apply(*lsn, record).unwrap_or_else(|e| panic!("{e}"));
                let mut expected = state.clone();
                expected.messages.retain(|_, e| e.refs > 0);
                expected.unreferenced.clear();
                prop_assert_eq!(&from_snapshot(&state), &expected, "after record {}", lsn);
                if *record == Record::Commit {
                    prop_assert!(state.unreferenced.is_empty());
                    at_commits.push(state.clone());
                }
            }
            for snapshot in &at_commits {
                let mut rebuilt = from_snapshot(snapshot);
                for (lsn, record) in &scanned.records {
                    rebuilt.apply(*lsn, record).unwrap_or_else(|e| panic!("{e}"));
                }
                prop_assert_eq!(&rebuilt, &state, "from the snapshot at {}", snapshot.last_lsn());
            }
        }
    }
}
