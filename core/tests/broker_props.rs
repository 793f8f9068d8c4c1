//! Property tests of the broker as a whole: random sequences of client operations against a real
//! `Broker` with small random limits, driven in memory with a virtual clock, and checked against a
//! model of what every session must receive.
//!
//! Two to four clients speak MQTT 3.1.1 or 5.0. Each connects and subscribes once, then the
//! operations run: connect with or without a clean session (MQTT 5 clients with a Session Expiry
//! Interval of 0, 3 s or forever, and sometimes a small Receive Maximum or Maximum Packet Size),
//! taking over a connection still open; subscribe and unsubscribe among a few filters with
//! wildcards; publish at every QoS to a few topics, in one piece or cut in two, a QoS 2 message
//! sometimes twice (3.1.1 only); acknowledge at once, later or never; disconnect; drop the
//! connection; send garbage; stop and resume reading; let time pass. Clients act as correct
//! clients: they acknowledge in order (PUBACK; PUBREC, then PUBCOMP after PUBREL; PUBREL after
//! PUBREC), filter QoS 2 duplicates by packet id, and when their session resumes resend PUBREL and
//! the QoS 2 PUBLISH packets the broker has not answered. They give up on a QoS 1 message whose
//! PUBACK was lost. Every payload starts with a sequence number that names the message.
//!
//! Properties:
//!
//! - Nothing panics. Every byte the broker sends decodes in the receiving client's version within
//!   the Maximum Packet Size that client announced, and no packet is cut short by a close. Nothing
//!   is sent after `Close`, after the peer closed, or to a blocked connection unless it is then
//!   closed. The broker closes a connection exactly when the client gave it cause (garbage, a
//!   packet above `max_packet_size`, DISCONNECT, a takeover). CONNACK says session present exactly
//!   when the model has a session to resume (clean sessions and expired ones are gone, also on a
//!   takeover); SUBACK, UNSUBACK and the acknowledgements of the client's own messages carry the
//!   expected reason codes; no more QoS 1 and 2 messages received on a connection are
//!   unacknowledged than its window (`max_inflight_messages`, Receive Maximum). The broker's
//!   counts of sessions, clients and connections match the model after every operation.
//! - Accounting. A message the broker took in, routed to a session with a matching subscription,
//!   is a (message, session) pair. No message reaches a session it was not routed to, or at
//!   another QoS than the highest granted one allows. Each pair is sent without DUP at most once
//!   and reaches the application at most once: QoS 2 exactly once unless dropped, QoS 1 at least
//!   once. At the end every client with a session still kept reconnects without clean start, and
//!   every client acknowledges everything until nothing moves. Then every pair must have reached
//!   the application, unless the broker counted it as dropped (`dropped_queue_full`,
//!   `dropped_too_large`, and for QoS 0 `dropped_qos0_offline`, `dropped_qos0_backlog`), or its
//!   session ended (clean session, expiry, clean start), or it was a QoS 0 message written to a
//!   connection the peer closed before reading it. Counts are matched one to one: a drop counted
//!   during an operation stands for a distinct pair that operation routed or whose client sent
//!   something in it, and that is undelivered (or was unacknowledged when its session resumed, as
//!   the resend may be too large for the new connection); every undelivered pair that must have
//!   arrived stands for a distinct counted drop.
//! - Determinism: the same operations from scratch produce the same actions, byte for byte, and
//!   the same counters.

use bytes::{Bytes, BytesMut};
use midge_core::broker::{Action, Broker, Config, ConnId, Input, ListenerId, Open, Stats, Time};
use midge_core::codec::{
    self, ByteString, Connect, ConnectProperties, ConnectReason, Disconnect, DisconnectReason,
    MAX_PACKET_SIZE, Packet, PacketId, ProtocolVersion, PubAckReason, PubRelReason, PubResponse,
    Publish, PublishProperties, QoS, QosPid, SubAckReason, Subscribe, SubscribeProperties,
    Subscription, SubscriptionOptions, UnsubAckReason, Unsubscribe, UnsubscribeProperties,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};

use ProtocolVersion::{V3_1_1, V5};

const FILTERS: [&str; 7] = ["a/b", "a/+", "a/#", "#", "+/c", "b/c", "+/+"];
const TOPICS: [&str; 5] = ["a/b", "a/c", "b/c", "a/b/c", "x"];
/// Session Expiry Intervals MQTT 5 clients ask for, in seconds.
const EXPIRY_SECS: [u32; 3] = [0, 3, u32::MAX];
const ADVANCE_MS: [u64; 4] = [200, 1_000, 2_000, 3_500];
/// Starts of byte sequences no client may send: each is malformed from its first bytes on
/// (reserved packet type, QoS 3, wrong fixed header flags, a remaining length over four bytes).
const GARBAGE: [&[u8]; 8] = [
    &[0x00],
    &[0x0F, 0x00],
    &[0x36],
    &[0x37, 0x02],
    &[0x80, 0x05],
    &[0x61, 0x02],
    &[0xC1, 0x00],
    &[0x30, 0xFF, 0xFF, 0xFF, 0xFF],
];

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// The broker's limits and the clients' protocol versions.
#[derive(Debug, Clone)]
struct Setup {
    versions: Vec<ProtocolVersion>,
    max_inflight: u16,
    max_queued: usize,
    max_queued_bytes: usize,
    max_packet_size: u32,
    max_connection_buffer: usize,
}

impl Setup {
    fn config(&self) -> Config {
        Config {
            max_inflight_messages: self.max_inflight,
            max_queued_messages: self.max_queued,
            max_queued_bytes: self.max_queued_bytes,
            max_packet_size: self.max_packet_size,
            max_connection_buffer: self.max_connection_buffer,
            ..Config::default()
        }
    }
}

/// One client operation. Client numbers are taken modulo the number of clients; an operation
/// that needs a connection does nothing for a client without one.
#[derive(Debug, Clone)]
enum Op {
    Connect {
        c: usize,
        clean: bool,
        /// Index into [`EXPIRY_SECS`] (MQTT 5).
        expiry: usize,
        /// Receive Maximum (MQTT 5).
        receive_max: Option<u16>,
        /// Maximum Packet Size (MQTT 5).
        max_packet: Option<u32>,
        auto_ack: bool,
    },
    Subscribe {
        c: usize,
        filter: usize,
        qos: QoS,
    },
    Unsubscribe {
        c: usize,
        filter: usize,
    },
    Publish {
        c: usize,
        topic: usize,
        qos: QoS,
        pad: usize,
        /// Deliver the packet's bytes in two pieces, cut here.
        split: Option<Index>,
        /// An MQTT 3.1.1 client sends a QoS 2 message twice, the second time with DUP, as a
        /// client may redeliver [MQTT-4.4.0-1] (3.1.1).
        dup: bool,
    },
    /// Send the oldest `n` responses the client owes.
    Ack {
        c: usize,
        n: usize,
    },
    /// Respond to everything at once from now on, or only on `Ack`.
    AutoAck {
        c: usize,
        on: bool,
    },
    Disconnect {
        c: usize,
    },
    /// The client closes the connection without DISCONNECT.
    Drop {
        c: usize,
    },
    Garbage {
        c: usize,
        start: usize,
        tail: Vec<u8>,
    },
    Advance {
        ms: u64,
    },
    Block {
        c: usize,
    },
    Unblock {
        c: usize,
    },
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

/// Clients are numbered modulo the number of clients (2 to 4).
fn client() -> impl Strategy<Value = usize> {
    0..4usize
}

fn connect(c: impl Strategy<Value = usize>) -> impl Strategy<Value = Op> {
    (
        c,
        // Mostly sessions that outlive their connection, so that messages wait for them.
        prop::bool::weighted(0.3),
        prop_oneof![1 => Just(0usize), 1 => Just(1usize), 2 => Just(2usize)],
        option::weighted(0.3, 1..=3u16),
        option::weighted(0.3, 24..=120u32),
        prop::bool::weighted(0.4),
    )
        .prop_map(
            |(c, clean, expiry, receive_max, max_packet, auto_ack)| Op::Connect {
                c,
                clean,
                expiry,
                receive_max,
                max_packet,
                auto_ack,
            },
        )
}

/// Every client connects and subscribes once before the random operations.
fn prelude() -> impl Strategy<Value = Vec<Op>> {
    let each = (0..4usize).map(|c| {
        (connect(Just(c)), 0..FILTERS.len(), qos())
            .prop_map(move |(connect, filter, qos)| vec![connect, Op::Subscribe { c, filter, qos }])
    });
    each.collect::<Vec<_>>()
        .prop_map(|ops| ops.into_iter().flatten().collect())
}

fn op() -> impl Strategy<Value = Op> {
    let c = client;
    prop_oneof![
        3 => connect(c()),
        3 => (c(), 0..FILTERS.len(), qos()).prop_map(|(c, filter, qos)| Op::Subscribe { c, filter, qos }),
        1 => (c(), 0..FILTERS.len()).prop_map(|(c, filter)| Op::Unsubscribe { c, filter }),
        10 => (
            c(),
            0..TOPICS.len(),
            qos(),
            0..90usize,
            option::weighted(0.2, any::<Index>()),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(c, topic, qos, pad, split, dup)| Op::Publish { c, topic, qos, pad, split, dup }),
        5 => (c(), 1..4usize).prop_map(|(c, n)| Op::Ack { c, n }),
        1 => (c(), any::<bool>()).prop_map(|(c, on)| Op::AutoAck { c, on }),
        1 => c().prop_map(|c| Op::Disconnect { c }),
        1 => c().prop_map(|c| Op::Drop { c }),
        1 => (c(), 0..GARBAGE.len(), vec(any::<u8>(), 0..6))
            .prop_map(|(c, start, tail)| Op::Garbage { c, start, tail }),
        1 => select(ADVANCE_MS.to_vec()).prop_map(|ms| Op::Advance { ms }),
        1 => c().prop_map(|c| Op::Block { c }),
        1 => c().prop_map(|c| Op::Unblock { c }),
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        vec(select(vec![V3_1_1, V5]), 2..=4),
        1..=4u16,
        prop_oneof![2 => 1..=3usize, 1 => 4..=8usize],
        prop_oneof![3 => Just(0usize), 1 => 60..400usize],
        prop_oneof![3 => Just(MAX_PACKET_SIZE), 1 => 48..=160u32],
        prop_oneof![1 => Just(1usize << 20), 1 => 16..200usize],
    )
        .prop_map(
            |(
                versions,
                max_inflight,
                max_queued,
                max_queued_bytes,
                max_packet_size,
                max_connection_buffer,
            )| Setup {
                versions,
                max_inflight,
                max_queued,
                max_queued_bytes,
                max_packet_size,
                max_connection_buffer,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// Whether an MQTT topic filter matches a topic name (no '$' topics here).
fn matches(filter: &str, topic: &str) -> bool {
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    OnDisconnect,
    AfterMs(u64),
    Never,
}

/// A session as the broker must keep it. A session that ends is never revived: a later session
/// of the same client is another instance.
#[derive(Debug)]
struct Session {
    client: usize,
    alive: bool,
    expiry: Expiry,
    /// When a detached session with `Expiry::AfterMs` ends.
    expires_at: Option<u64>,
    /// The connection it is attached to.
    conn: Option<ConnId>,
    /// Granted QoS by filter index.
    subs: BTreeMap<usize, QoS>,
    /// Packet ids of QoS 2 messages from this client the broker has taken in and not released.
    inbound_qos2: BTreeSet<u16>,
}

/// A published message.
#[derive(Debug)]
struct Message {
    topic: usize,
    qos: QoS,
    payload: Bytes,
}

/// One message routed to one session.
#[derive(Debug)]
struct Pair {
    /// The QoS the session must receive it with.
    qos: QoS,
    /// The operation that routed it.
    op: usize,
    /// PUBLISH packets of it received, and among them those with DUP clear.
    receipts: u32,
    first_sends: u32,
    /// Times it reached the application (QoS 2 duplicates filtered by packet id).
    deliveries: u32,
    /// A QoS 0 pair routed while the session's connection was blocked: it may sit in the
    /// connection's output when the peer closes.
    qos0_blocked_on: Option<ConnId>,
    /// It may be missing without a counted drop: its session ended, or it was a QoS 0 message
    /// lost with an unread connection.
    excused: bool,
    /// Received but unacknowledged when its session resumed: the broker may have had to drop
    /// the resend (too large for the new connection), counted though the client has it.
    resendable: bool,
}

/// A QoS 2 message the client published and has not seen PUBCOMP for.
#[derive(Debug)]
struct OutQos2 {
    tag: u32,
    /// PUBREC received, so PUBREL (not PUBLISH) is what to resend.
    rec: bool,
    rel_sent: bool,
    /// The reasons of the PUBRECs to come, one per PUBLISH the broker processed.
    rec_reasons: VecDeque<PubAckReason>,
    comp_reason: PubRelReason,
}

/// A client and the session state it keeps on its side.
#[derive(Debug)]
struct Client {
    version: ProtocolVersion,
    conn: Option<ConnId>,
    auto_ack: bool,
    next_packet_id: u16,
    /// QoS 2 packet ids received and not yet released by PUBREL.
    inbound_qos2: BTreeSet<u16>,
    /// QoS 1 and 2 packet ids received whose final acknowledgement (PUBACK, PUBCOMP) the client
    /// has not sent, with their messages: the broker counts them in flight.
    unacknowledged: BTreeMap<u16, u32>,
    /// QoS 1 messages published, awaiting PUBACK with this reason.
    out_qos1: BTreeMap<u16, PubAckReason>,
    out_qos2: BTreeMap<u16, OutQos2>,
    subacks: BTreeMap<u16, SubAckReason>,
    unsubacks: BTreeMap<u16, UnsubAckReason>,
    /// Responses owed on the current connection, oldest first.
    owed: VecDeque<Packet>,
}

/// A network connection as the driver and its client see it.
#[derive(Debug)]
struct Conn {
    client: usize,
    session: usize,
    version: ProtocolVersion,
    /// The client's Maximum Packet Size.
    max_size: u32,
    /// QoS 1 and 2 messages the client accepts unacknowledged.
    window: usize,
    /// Packet ids of QoS 1 and 2 messages received on this connection whose final
    /// acknowledgement the client has not sent. The broker counts at least these in flight.
    unacknowledged: BTreeSet<u16>,
    inbox: BytesMut,
    blocked: bool,
    /// The broker sent `Close`.
    closed: bool,
    peer_closed: bool,
    connacked: bool,
    expect_session_present: bool,
}

/// A counted drop and the operation it was counted in.
#[derive(Debug)]
struct DropUnit {
    op: usize,
    /// `dropped_qos0_offline` and `dropped_qos0_backlog` count only QoS 0 deliveries.
    qos0_only: bool,
}

/// What an operation touched: the pairs it routed and the sessions whose clients sent bytes.
#[derive(Debug, Default)]
struct Touched {
    routed: Vec<(u32, usize)>,
    sessions: BTreeSet<usize>,
}

struct Sim {
    setup: Setup,
    config: Config,
    broker: Broker,
    now: u64,
    log: Vec<Action>,
    next_conn: u64,
    conns: BTreeMap<ConnId, Conn>,
    clients: Vec<Client>,
    sessions: Vec<Session>,
    /// The live session of each client.
    session_of: Vec<Option<usize>>,
    messages: Vec<Message>,
    pairs: BTreeMap<(u32, usize), Pair>,
    /// Index of the operation running.
    op: usize,
    touched: Vec<Touched>,
    drops: Vec<DropUnit>,
    /// Connections the broker must close during this operation.
    expect_close: BTreeSet<ConnId>,
    closed_now: Vec<ConnId>,
    /// PUBLISH packets the broker processed.
    publishes_processed: u64,
}

fn tag_of(payload: &[u8]) -> u32 {
    let bytes: [u8; 4] = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .unwrap_or_else(|| panic!("payload without a tag: {payload:?}"));
    u32::from_be_bytes(bytes)
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

fn drop_counters(s: &Stats) -> (u64, u64) {
    (
        s.dropped_queue_full + s.dropped_too_large,
        s.dropped_qos0_offline + s.dropped_qos0_backlog,
    )
}

impl Sim {
    fn new(setup: &Setup) -> Sim {
        let config = setup.config();
        Sim {
            setup: setup.clone(),
            broker: Broker::new(config.clone()),
            config,
            now: 0,
            log: Vec::new(),
            next_conn: 1,
            conns: BTreeMap::new(),
            clients: setup
                .versions
                .iter()
                .map(|&version| Client {
                    version,
                    conn: None,
                    auto_ack: true,
                    next_packet_id: 0,
                    inbound_qos2: BTreeSet::new(),
                    unacknowledged: BTreeMap::new(),
                    out_qos1: BTreeMap::new(),
                    out_qos2: BTreeMap::new(),
                    subacks: BTreeMap::new(),
                    unsubacks: BTreeMap::new(),
                    owed: VecDeque::new(),
                })
                .collect(),
            sessions: Vec::new(),
            session_of: vec![None; setup.versions.len()],
            messages: Vec::new(),
            pairs: BTreeMap::new(),
            op: 0,
            touched: Vec::new(),
            drops: Vec::new(),
            expect_close: BTreeSet::new(),
            closed_now: Vec::new(),
            publishes_processed: 0,
        }
    }

    // --- The driver ---------------------------------------------------------------------------

    /// Hands an input to the broker and carries out every action it returns.
    fn input(&mut self, input: Input<'_>) {
        self.broker.handle(Time::from_millis(self.now), input);
        let mut sent_while_blocked = BTreeSet::new();
        while let Some(action) = self.broker.poll_action() {
            match &action {
                Action::Send { conn, bytes } => {
                    let c = self
                        .conns
                        .get_mut(conn)
                        .unwrap_or_else(|| panic!("bytes sent to unknown {conn:?}"));
                    assert!(!c.closed, "bytes sent to {conn:?} after Close");
                    assert!(
                        !c.peer_closed,
                        "bytes sent to {conn:?} after the peer closed"
                    );
                    if c.blocked {
                        sent_while_blocked.insert(*conn);
                    }
                    c.inbox.extend_from_slice(bytes);
                }
                Action::Close { conn } => {
                    let c = self
                        .conns
                        .get_mut(conn)
                        .unwrap_or_else(|| panic!("Close of unknown {conn:?}"));
                    assert!(!c.closed, "{conn:?} closed twice");
                    assert!(!c.peer_closed, "Close of {conn:?} after the peer closed");
                    c.closed = true;
                    self.closed_now.push(*conn);
                }
                // Clients never write to a blocked connection once its output could reach the
                // limit, so the broker has no reason to stop reading.
                Action::PauseRead { conn } | Action::ResumeRead { conn } => {
                    panic!("{action:?} for {conn:?}, whose client reads everything")
                }
                // Persistence is off in these runs.
                Action::Persist { .. } => panic!("records written with persistence off"),
                Action::Dial { .. } => panic!("a bridge dialed with no bridge configured"),
            }
            self.log.push(action);
        }
        for conn in sent_while_blocked {
            assert!(
                self.conns[&conn].closed,
                "bytes sent to blocked {conn:?}, which stays open"
            );
        }
    }

    fn touch(&mut self, session: usize) {
        self.touched[self.op].sessions.insert(session);
    }

    /// The connection a client may write to now. A client does not write to a blocked
    /// connection when its output limit is small: the broker would stop reading it, and which
    /// packets it had read before would be invisible to the model.
    fn writable_conn(&self, c: usize) -> Option<ConnId> {
        let id = self.clients[c].conn?;
        let may_write = !self.conns[&id].blocked || self.setup.max_connection_buffer >= 1 << 20;
        may_write.then_some(id)
    }

    /// Sends packets from a client on its connection, in one piece or cut in two, updating the
    /// model as the broker will process them. A packet the broker must refuse ends the batch.
    fn client_send(&mut self, c: usize, packets: Vec<Packet>, split: Option<Index>) {
        let Some(id) = self.writable_conn(c) else {
            return;
        };
        let (version, session) = (self.conns[&id].version, self.conns[&id].session);
        self.touch(session);
        let mut bytes = BytesMut::new();
        for p in packets {
            let start = bytes.len();
            p.encode(version, &mut bytes)
                .expect("client packet encodes");
            let len = bytes.len() - start;
            if len > self.config.max_packet_size as usize {
                // Refused from its fixed header: not processed, and the connection closes.
                self.expect_close.insert(id);
                self.conn_gone(id, false);
                break;
            }
            self.sent(c, session, &p);
            if let Packet::Disconnect(_) = p {
                self.expect_close.insert(id);
                self.conn_gone(id, false);
                break;
            }
        }
        match split {
            Some(at) if bytes.len() > 1 => {
                let at = 1 + at.index(bytes.len() - 1);
                self.input(Input::Received {
                    conn: id,
                    bytes: &bytes[..at],
                });
                self.input(Input::Received {
                    conn: id,
                    bytes: &bytes[at..],
                });
            }
            _ => self.input(Input::Received {
                conn: id,
                bytes: &bytes,
            }),
        }
    }

    /// What a packet the broker processes changes, on the client's side and the broker's.
    fn sent(&mut self, c: usize, session: usize, p: &Packet) {
        let v5 = self.clients[c].version.is_v5();
        match p {
            Packet::Publish(p) => {
                self.publishes_processed += 1;
                let tag = tag_of(&p.payload);
                match p.qos_pid {
                    QosPid::AtMostOnce => {
                        self.route(tag);
                    }
                    QosPid::AtLeastOnce(id) => {
                        let matched = self.route(tag);
                        let reason = if v5 && matched == 0 {
                            PubAckReason::NoMatchingSubscribers
                        } else {
                            PubAckReason::Success
                        };
                        self.clients[c].out_qos1.insert(id.get(), reason);
                    }
                    QosPid::ExactlyOnce(id) => {
                        let fresh = self.sessions[session].inbound_qos2.insert(id.get());
                        // A repeat before PUBREL is acknowledged again, not routed again.
                        let matched = if fresh { self.route(tag) } else { 1 };
                        let rec_reason = if v5 && matched == 0 {
                            PubAckReason::NoMatchingSubscribers
                        } else {
                            PubAckReason::Success
                        };
                        let entry = self.clients[c].out_qos2.entry(id.get()).or_insert(OutQos2 {
                            tag,
                            rec: false,
                            rel_sent: false,
                            rec_reasons: VecDeque::new(),
                            comp_reason: PubRelReason::Success,
                        });
                        assert_eq!(entry.tag, tag);
                        entry.rec_reasons.push_back(rec_reason);
                    }
                }
            }
            Packet::PubAck(PubResponse { packet_id, .. })
            | Packet::PubComp(PubResponse { packet_id, .. }) => {
                self.clients[c].unacknowledged.remove(&packet_id.get());
                let id = self.clients[c].conn.expect("sending on a connection");
                let conn = self.conns.get_mut(&id).unwrap();
                conn.unacknowledged.remove(&packet_id.get());
            }
            Packet::PubRec(_) => {}
            Packet::PubRel(r) => {
                let id = r.packet_id.get();
                let known = self.sessions[session].inbound_qos2.remove(&id);
                let entry = self.clients[c]
                    .out_qos2
                    .get_mut(&id)
                    .expect("PUBREL only for a message published");
                entry.rel_sent = true;
                entry.comp_reason = if known {
                    PubRelReason::Success
                } else {
                    PubRelReason::PacketIdentifierNotFound
                };
            }
            Packet::Subscribe(s) => {
                for sub in &s.subscriptions {
                    let filter = FILTERS.iter().position(|f| *f == &*sub.filter).unwrap();
                    self.sessions[session].subs.insert(filter, sub.options.qos);
                    self.clients[c]
                        .subacks
                        .insert(s.packet_id.get(), SubAckReason::granted(sub.options.qos));
                }
            }
            Packet::Unsubscribe(u) => {
                for f in &u.filters {
                    let filter = FILTERS.iter().position(|x| *x == &**f).unwrap();
                    let existed = self.sessions[session].subs.remove(&filter).is_some();
                    let reason = if existed {
                        UnsubAckReason::Success
                    } else {
                        UnsubAckReason::NoSubscriptionExisted
                    };
                    self.clients[c].unsubacks.insert(u.packet_id.get(), reason);
                }
            }
            Packet::Disconnect(_) => {}
            other => panic!("the test client does not send {other:?}"),
        }
    }

    /// Routes a message the broker took in to every live session with a matching subscription,
    /// at the highest QoS granted; returns the number of sessions.
    fn route(&mut self, tag: u32) -> usize {
        let msg = &self.messages[tag as usize];
        let topic = TOPICS[msg.topic];
        let mut routed = Vec::new();
        for (key, s) in self.sessions.iter().enumerate() {
            if !s.alive {
                continue;
            }
            let best = s
                .subs
                .iter()
                .filter(|(f, _)| matches(FILTERS[**f], topic))
                .map(|(_, q)| *q)
                .max();
            if let Some(granted) = best {
                let qos = granted.min(msg.qos);
                let qos0_blocked_on = s
                    .conn
                    .filter(|id| qos == QoS::AtMostOnce && self.conns[id].blocked);
                routed.push((key, qos, qos0_blocked_on));
            }
        }
        for &(key, qos, qos0_blocked_on) in &routed {
            let old = self.pairs.insert(
                (tag, key),
                Pair {
                    qos,
                    op: self.op,
                    receipts: 0,
                    first_sends: 0,
                    deliveries: 0,
                    qos0_blocked_on,
                    excused: false,
                    resendable: false,
                },
            );
            assert!(old.is_none(), "the model routed message {tag} twice");
            self.touched[self.op].routed.push((tag, key));
        }
        routed.len()
    }

    /// A session ends: what it has not received may be lost.
    fn end_session(&mut self, key: usize) {
        let s = &mut self.sessions[key];
        s.alive = false;
        s.conn = None;
        if self.session_of[s.client] == Some(key) {
            self.session_of[s.client] = None;
        }
        for ((_, k), pair) in self.pairs.iter_mut() {
            if *k == key && pair.deliveries == 0 {
                pair.excused = true;
            }
        }
    }

    /// A connection ends, closed by either side or taken over.
    fn conn_gone(&mut self, id: ConnId, by_peer: bool) {
        let conn = &self.conns[&id];
        let (client, key, blocked) = (conn.client, conn.session, conn.blocked);
        if self.clients[client].conn == Some(id) {
            self.clients[client].conn = None;
            self.clients[client].owed.clear();
        }
        if by_peer && blocked {
            for pair in self.pairs.values_mut() {
                if pair.qos0_blocked_on == Some(id) {
                    pair.excused = true;
                }
            }
        }
        let s = &mut self.sessions[key];
        if s.alive && s.conn == Some(id) {
            s.conn = None;
            match s.expiry {
                Expiry::OnDisconnect => self.end_session(key),
                Expiry::AfterMs(ms) => s.expires_at = Some(self.now + ms),
                Expiry::Never => {}
            }
        }
    }

    fn owe(&mut self, id: ConnId, packet: Packet) {
        let client = self.conns[&id].client;
        if self.clients[client].conn == Some(id) {
            self.clients[client].owed.push_back(packet);
        }
    }

    /// A packet from the broker, as the client handles it.
    fn receive(&mut self, id: ConnId, packet: Packet) {
        let conn = &self.conns[&id];
        let (c, key, version, window) = (conn.client, conn.session, conn.version, conn.window);
        let v5 = version.is_v5();
        if !conn.connacked {
            let Packet::ConnAck(ack) = packet else {
                panic!("first packet on {id:?} is not CONNACK: {packet:?}");
            };
            assert_eq!(ack.reason, ConnectReason::Success, "{id:?}: {ack:?}");
            assert_eq!(
                ack.session_present, conn.expect_session_present,
                "{id:?} (client {c}): session present"
            );
            self.conns.get_mut(&id).unwrap().connacked = true;
            let client = &mut self.clients[c];
            if !ack.session_present {
                client.inbound_qos2.clear();
                client.unacknowledged.clear();
                client.out_qos1.clear();
                client.out_qos2.clear();
            } else if client.conn == Some(id) {
                // Acknowledgements still to come on the old connection are lost with it.
                for entry in client.out_qos2.values_mut() {
                    entry.rec_reasons.clear();
                }
                for &tag in client.unacknowledged.values() {
                    if let Some(pair) = self.pairs.get_mut(&(tag, key)) {
                        pair.resendable = true;
                    }
                }
                // Resend what the broker has not acknowledged [MQTT-4.4.0-1]: PUBREL after
                // PUBREC, the PUBLISH with DUP before it.
                let resend: Vec<Packet> = client
                    .out_qos2
                    .iter()
                    .map(|(&n, e)| {
                        if e.rec {
                            Packet::PubRel(PubResponse::success(pid(n)))
                        } else {
                            let m = &self.messages[e.tag as usize];
                            Packet::Publish(Publish {
                                dup: true,
                                qos_pid: QosPid::ExactlyOnce(pid(n)),
                                retain: false,
                                topic: ByteString::from(TOPICS[m.topic]),
                                properties: PublishProperties::default(),
                                payload: m.payload.clone(),
                            })
                        }
                    })
                    .collect();
                client.owed.extend(resend);
            }
            return;
        }
        match packet {
            Packet::Publish(p) => {
                let tag = tag_of(&p.payload);
                let msg = self
                    .messages
                    .get(tag as usize)
                    .unwrap_or_else(|| panic!("{id:?}: unknown message {tag}"));
                assert_eq!(&*p.topic, TOPICS[msg.topic], "message {tag}: topic");
                assert_eq!(p.payload, msg.payload, "message {tag}: payload");
                assert!(!p.retain, "message {tag}: RETAIN set");
                assert_eq!(p.properties, PublishProperties::default());
                let pair = self.pairs.get_mut(&(tag, key)).unwrap_or_else(|| {
                    panic!("message {tag} reached session {key} (client {c}), not routed there")
                });
                assert_eq!(
                    p.qos_pid.qos(),
                    pair.qos,
                    "message {tag} to session {key}: QoS"
                );
                pair.receipts += 1;
                if !p.dup {
                    pair.first_sends += 1;
                    assert!(
                        pair.first_sends <= 1,
                        "message {tag} sent to session {key} twice without DUP"
                    );
                }
                let client = &mut self.clients[c];
                match p.qos_pid {
                    QosPid::AtMostOnce => {
                        assert!(!p.dup, "QoS 0 with DUP");
                        pair.deliveries += 1;
                    }
                    QosPid::AtLeastOnce(n) => {
                        pair.deliveries += 1;
                        client.unacknowledged.insert(n.get(), tag);
                        self.received_in_window(id, n, window);
                        self.owe(id, Packet::PubAck(PubResponse::success(n)));
                    }
                    QosPid::ExactlyOnce(n) => {
                        if client.inbound_qos2.insert(n.get()) {
                            pair.deliveries += 1;
                            assert!(
                                pair.deliveries <= 1,
                                "QoS 2 message {tag} delivered twice to session {key}"
                            );
                        } else {
                            assert!(p.dup, "{id:?}: packet id {n} reused before PUBREL");
                        }
                        client.unacknowledged.insert(n.get(), tag);
                        self.received_in_window(id, n, window);
                        self.owe(id, Packet::PubRec(PubResponse::success(n)));
                    }
                }
            }
            Packet::PubRel(r) => {
                let client = &mut self.clients[c];
                assert_eq!(r.reason, PubRelReason::Success);
                assert!(
                    client.unacknowledged.contains_key(&r.packet_id.get()),
                    "{id:?}: PUBREL for {} never received",
                    r.packet_id
                );
                client.inbound_qos2.remove(&r.packet_id.get());
                self.owe(id, Packet::PubComp(PubResponse::success(r.packet_id)));
            }
            Packet::PubAck(a) => {
                let reason = self.clients[c]
                    .out_qos1
                    .remove(&a.packet_id.get())
                    .unwrap_or_else(|| panic!("{id:?}: PUBACK for unknown {}", a.packet_id));
                if v5 {
                    assert_eq!(a.reason, reason, "{id:?}: PUBACK reason");
                }
            }
            Packet::PubRec(r) => {
                let entry = self.clients[c]
                    .out_qos2
                    .get_mut(&r.packet_id.get())
                    .unwrap_or_else(|| panic!("{id:?}: PUBREC for unknown {}", r.packet_id));
                let reason = entry.rec_reasons.pop_front().unwrap_or_else(|| {
                    panic!("{id:?}: PUBREC for {} not answering a PUBLISH", r.packet_id)
                });
                if v5 {
                    assert_eq!(r.reason, reason, "{id:?}: PUBREC reason");
                }
                if !entry.rec {
                    entry.rec = true;
                    self.owe(id, Packet::PubRel(PubResponse::success(r.packet_id)));
                }
            }
            Packet::PubComp(x) => {
                let entry = self.clients[c]
                    .out_qos2
                    .remove(&x.packet_id.get())
                    .unwrap_or_else(|| panic!("{id:?}: PUBCOMP for unknown {}", x.packet_id));
                assert!(entry.rel_sent, "{id:?}: PUBCOMP before PUBREL");
                if v5 {
                    assert_eq!(x.reason, entry.comp_reason, "{id:?}: PUBCOMP reason");
                }
            }
            Packet::SubAck(s) => {
                let reason = self.clients[c]
                    .subacks
                    .remove(&s.packet_id.get())
                    .unwrap_or_else(|| panic!("{id:?}: SUBACK for unknown {}", s.packet_id));
                assert_eq!(s.reasons, vec![reason], "{id:?}: SUBACK");
            }
            Packet::UnsubAck(u) => {
                let reason = self.clients[c]
                    .unsubacks
                    .remove(&u.packet_id.get())
                    .unwrap_or_else(|| panic!("{id:?}: UNSUBACK for unknown {}", u.packet_id));
                if v5 {
                    assert_eq!(u.reasons, vec![reason], "{id:?}: UNSUBACK");
                }
            }
            Packet::Disconnect(d) => {
                assert!(v5, "{id:?}: DISCONNECT to an MQTT 3.1.1 client");
                assert!(
                    self.conns[&id].closed,
                    "{id:?}: DISCONNECT {d:?} without Close"
                );
            }
            other => panic!("{id:?}: unexpected {other:?}"),
        }
    }

    /// A QoS 1 or 2 PUBLISH arrived: the broker may not have more unacknowledged than the
    /// client's window [MQTT-3.3.4-9] (5.0).
    fn received_in_window(&mut self, id: ConnId, packet_id: PacketId, window: usize) {
        let conn = self.conns.get_mut(&id).unwrap();
        conn.unacknowledged.insert(packet_id.get());
        assert!(
            conn.unacknowledged.len() <= window,
            "{id:?}: more than {window} messages unacknowledged: {:?}",
            conn.unacknowledged
        );
    }

    /// Clients read everything that arrived and respond as they do, until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut progress = false;
            let ids: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(_, c)| !c.inbox.is_empty())
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                loop {
                    let conn = self.conns.get_mut(&id).unwrap();
                    let decoded = codec::decode_from(&mut conn.inbox, conn.version, conn.max_size)
                        .unwrap_or_else(|e| {
                            panic!(
                                "{id:?}: the broker sent bytes that do not decode in {:?} within \
                                 {} bytes: {e}",
                                conn.version, conn.max_size
                            )
                        });
                    let Some(packet) = decoded else {
                        break;
                    };
                    progress = true;
                    self.receive(id, packet);
                }
                let conn = &self.conns[&id];
                assert!(
                    !conn.closed || conn.inbox.is_empty(),
                    "{id:?} closed in the middle of a packet"
                );
            }
            for c in 0..self.clients.len() {
                let ready = self.writable_conn(c).is_some();
                let client = &mut self.clients[c];
                if client.auto_ack && ready && !client.owed.is_empty() {
                    let owed: Vec<Packet> = client.owed.drain(..).collect();
                    self.client_send(c, owed, None);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
    }

    // --- Operations ---------------------------------------------------------------------------

    fn next_packet_id(&mut self, c: usize) -> PacketId {
        let client = &mut self.clients[c];
        client.next_packet_id += 1;
        pid(client.next_packet_id)
    }

    fn run_op(&mut self, op: &Op) {
        let before = drop_counters(self.broker.stats());
        self.touched.push(Touched::default());
        let n = self.clients.len();
        match *op {
            Op::Connect {
                c,
                clean,
                expiry,
                receive_max,
                max_packet,
                auto_ack,
            } => self.connect(c % n, clean, expiry, receive_max, max_packet, auto_ack),
            Op::Subscribe { c, filter, qos } => {
                let c = c % n;
                if self.writable_conn(c).is_some() {
                    let packet_id = self.next_packet_id(c);
                    let sub = Packet::Subscribe(Subscribe {
                        packet_id,
                        properties: SubscribeProperties::default(),
                        subscriptions: vec![Subscription {
                            filter: ByteString::from(FILTERS[filter]),
                            options: SubscriptionOptions::new(qos),
                        }],
                    });
                    self.client_send(c, vec![sub], None);
                }
            }
            Op::Unsubscribe { c, filter } => {
                let c = c % n;
                if self.writable_conn(c).is_some() {
                    let packet_id = self.next_packet_id(c);
                    let unsub = Packet::Unsubscribe(Unsubscribe {
                        packet_id,
                        properties: UnsubscribeProperties::default(),
                        filters: vec![ByteString::from(FILTERS[filter])],
                    });
                    self.client_send(c, vec![unsub], None);
                }
            }
            Op::Publish {
                c,
                topic,
                qos,
                pad,
                split,
                dup,
            } => {
                let c = c % n;
                if self.writable_conn(c).is_some() {
                    let tag = u32::try_from(self.messages.len()).unwrap();
                    let mut payload = tag.to_be_bytes().to_vec();
                    payload.resize(4 + pad, b'.');
                    let payload = Bytes::from(payload);
                    self.messages.push(Message {
                        topic,
                        qos,
                        payload: payload.clone(),
                    });
                    let packet_id = self.next_packet_id(c);
                    let publish = Publish {
                        dup: false,
                        qos_pid: QosPid::new(qos, packet_id),
                        retain: false,
                        topic: ByteString::from(TOPICS[topic]),
                        properties: PublishProperties::default(),
                        payload,
                    };
                    let mut packets = vec![Packet::Publish(publish.clone())];
                    if dup && qos == QoS::ExactlyOnce && !self.clients[c].version.is_v5() {
                        packets.push(Packet::Publish(Publish {
                            dup: true,
                            ..publish
                        }));
                    }
                    self.client_send(c, packets, split);
                }
            }
            Op::Ack { c, n: count } => {
                let c = c % n;
                if self.writable_conn(c).is_none() {
                    return self.finish_op(before);
                }
                let client = &mut self.clients[c];
                let count = count.min(client.owed.len());
                let owed: Vec<Packet> = client.owed.drain(..count).collect();
                if !owed.is_empty() {
                    self.client_send(c, owed, None);
                }
            }
            Op::AutoAck { c, on } => self.clients[c % n].auto_ack = on,
            Op::Disconnect { c } => {
                let c = c % n;
                let disconnect =
                    Packet::Disconnect(Disconnect::new(DisconnectReason::NormalDisconnection));
                self.client_send(c, vec![disconnect], None);
            }
            Op::Drop { c } => {
                if let Some(id) = self.clients[c % n].conn {
                    self.conns.get_mut(&id).unwrap().peer_closed = true;
                    self.conn_gone(id, true);
                    self.input(Input::Closed { conn: id });
                }
            }
            Op::Garbage { c, start, ref tail } => {
                if let Some(id) = self.writable_conn(c % n) {
                    let mut bytes = GARBAGE[start].to_vec();
                    bytes.extend_from_slice(tail);
                    self.touch(self.conns[&id].session);
                    self.expect_close.insert(id);
                    self.conn_gone(id, false);
                    self.input(Input::Received {
                        conn: id,
                        bytes: &bytes,
                    });
                }
            }
            Op::Advance { ms } => self.advance(ms),
            Op::Block { c } => {
                if let Some(id) = self.clients[c % n].conn
                    && !self.conns[&id].blocked
                {
                    self.conns.get_mut(&id).unwrap().blocked = true;
                    self.input(Input::Blocked { conn: id });
                }
            }
            Op::Unblock { c } => {
                if let Some(id) = self.clients[c % n].conn
                    && self.conns[&id].blocked
                {
                    self.unblock(id);
                }
            }
        }
        self.finish_op(before);
    }

    /// Lets clients respond, checks the closes the operation caused and notes the drops the
    /// broker counted during it.
    fn finish_op(&mut self, before: (u64, u64)) {
        self.settle();
        for id in std::mem::take(&mut self.closed_now) {
            assert!(
                self.expect_close.remove(&id),
                "the broker closed {id:?} without cause"
            );
        }
        assert!(
            self.expect_close.is_empty(),
            "the broker did not close {:?}",
            self.expect_close
        );
        self.check_counts();
        let after = drop_counters(self.broker.stats());
        for _ in before.0..after.0 {
            self.drops.push(DropUnit {
                op: self.op,
                qos0_only: false,
            });
        }
        for _ in before.1..after.1 {
            self.drops.push(DropUnit {
                op: self.op,
                qos0_only: true,
            });
        }
        self.op += 1;
    }

    fn unblock(&mut self, id: ConnId) {
        self.conns.get_mut(&id).unwrap().blocked = false;
        // What was written while blocked goes out now.
        for pair in self.pairs.values_mut() {
            if pair.qos0_blocked_on == Some(id) {
                pair.qos0_blocked_on = None;
            }
        }
        self.input(Input::Writable { conn: id });
    }

    fn connect(
        &mut self,
        c: usize,
        clean: bool,
        expiry: usize,
        receive_max: Option<u16>,
        max_packet: Option<u32>,
        auto_ack: bool,
    ) {
        let version = self.clients[c].version;
        let v5 = version.is_v5();
        // A connection already open is taken over [MQTT-3.1.4-2] (3.1.1) [MQTT-3.1.4-3] (5.0).
        // Its session ends if it was to end with its connection (5.0, 3.1.4).
        if let Some(old) = self.clients[c].conn {
            self.expect_close.insert(old);
            self.conn_gone(old, false);
        }
        let (key, present) = match self.session_of[c] {
            Some(key) if !clean => (key, true),
            existing => {
                if let Some(key) = existing {
                    self.end_session(key);
                }
                self.sessions.push(Session {
                    client: c,
                    alive: true,
                    expiry: Expiry::Never,
                    expires_at: None,
                    conn: None,
                    subs: BTreeMap::new(),
                    inbound_qos2: BTreeSet::new(),
                });
                let key = self.sessions.len() - 1;
                self.session_of[c] = Some(key);
                (key, false)
            }
        };
        let expiry_secs = EXPIRY_SECS[expiry];
        let session_expiry = if v5 {
            match expiry_secs {
                0 => Expiry::OnDisconnect,
                u32::MAX => Expiry::Never,
                s => Expiry::AfterMs(u64::from(s) * 1000),
            }
        } else if clean {
            Expiry::OnDisconnect
        } else {
            Expiry::Never
        };
        let (receive_max, max_packet) = if v5 {
            (receive_max, max_packet)
        } else {
            (None, None)
        };
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let configured = match self.setup.max_inflight {
            0 => usize::MAX,
            n => usize::from(n),
        };
        self.conns.insert(
            id,
            Conn {
                client: c,
                session: key,
                version,
                max_size: max_packet.unwrap_or(u32::MAX),
                window: configured.min(receive_max.map_or(usize::MAX, usize::from)),
                unacknowledged: BTreeSet::new(),
                inbox: BytesMut::new(),
                blocked: false,
                closed: false,
                peer_closed: false,
                connacked: false,
                expect_session_present: present,
            },
        );
        let s = &mut self.sessions[key];
        s.conn = Some(id);
        s.expiry = session_expiry;
        s.expires_at = None;
        let client = &mut self.clients[c];
        client.conn = Some(id);
        client.auto_ack = auto_ack;
        client.owed.clear();
        self.touch(key);
        self.input(Input::Open(Open {
            conn: id,
            listener: ListenerId(0),
            peer: None,
            tls_identity: None,
        }));
        let connect = Packet::from(Connect {
            protocol_version: version,
            bridge: false,
            clean_start: clean,
            keep_alive: 0,
            properties: ConnectProperties {
                session_expiry_interval: (v5 && expiry_secs != 0).then_some(expiry_secs),
                receive_maximum: receive_max.and_then(NonZeroU16::new),
                maximum_packet_size: max_packet.and_then(NonZeroU32::new),
                ..ConnectProperties::default()
            },
            client_id: ByteString::from(format!("c{c}")),
            will: None,
            username: None,
            password: None,
        });
        let mut bytes = BytesMut::new();
        connect.encode(version, &mut bytes).unwrap();
        assert!(bytes.len() <= self.config.max_packet_size as usize);
        self.input(Input::Received {
            conn: id,
            bytes: &bytes,
        });
    }

    /// Moves the clock forward, ticking at every deadline the broker asks for on the way.
    fn advance(&mut self, ms: u64) {
        let target = self.now + ms;
        while let Some(t) = self.broker.poll_timeout() {
            let t = t.as_millis();
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.input(Input::Tick);
        }
        self.now = target;
        self.input(Input::Tick);
        for key in 0..self.sessions.len() {
            let s = &self.sessions[key];
            if s.alive && s.conn.is_none() && s.expires_at.is_some_and(|at| at <= self.now) {
                self.end_session(key);
            }
        }
    }

    /// Every client with a session reads, resumes its session and acknowledges everything.
    fn finish(&mut self) {
        for c in 0..self.clients.len() {
            match self.clients[c].conn {
                Some(id) => {
                    if self.conns[&id].blocked {
                        self.run_op(&Op::Unblock { c });
                    }
                    self.run_op(&Op::AutoAck { c, on: true });
                }
                None if self.session_of[c].is_some() => self.run_op(&Op::Connect {
                    c,
                    clean: false,
                    expiry: 2,
                    receive_max: None,
                    max_packet: None,
                    auto_ack: true,
                }),
                None => {}
            }
        }
    }

    // --- Final checks -------------------------------------------------------------------------

    /// Sessions and connections the broker keeps are the model's, after every operation.
    fn check_counts(&self) {
        let stats = self.broker.stats();
        let live = self.sessions.iter().filter(|s| s.alive).count() as u64;
        let open = self.clients.iter().filter(|c| c.conn.is_some()).count() as u64;
        assert_eq!(stats.sessions, live, "sessions kept");
        assert_eq!(stats.clients_connected, open, "clients connected");
        assert_eq!(stats.connections_open, open, "connections open");
        assert_eq!(stats.publish_received, self.publishes_processed);
        assert_eq!(stats.retained_messages, 0);
    }

    fn check(&self) {
        self.check_counts();
        for s in self.sessions.iter().filter(|s| s.alive) {
            assert!(s.conn.is_some(), "a live session left detached");
        }
        for (id, conn) in &self.conns {
            assert!(conn.inbox.is_empty(), "{id:?}: undecoded bytes left");
        }
        for client in &self.clients {
            assert!(client.owed.is_empty() || client.conn.is_none());
        }
        self.check_accounting();
    }

    /// Pairs counted drops with the pairs they may stand for: undelivered pairs, and delivered
    /// ones whose resend may have been dropped. Every drop needs a distinct pair the operation
    /// could have dropped, and every undelivered pair that must have arrived needs a distinct
    /// drop. When both matchings exist, one matching does both (Mendelsohn-Dulmage).
    fn check_accounting(&self) {
        let droppable: Vec<(&(u32, usize), &Pair)> = self
            .pairs
            .iter()
            .filter(|(_, p)| p.deliveries == 0 || p.resendable)
            .collect();
        let index: BTreeMap<(u32, usize), usize> = droppable
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (**k, i))
            .collect();
        // The pairs each drop could stand for.
        let edges: Vec<Vec<usize>> = self
            .drops
            .iter()
            .map(|d| {
                let touched = &self.touched[d.op];
                let mut candidates: BTreeSet<usize> = touched
                    .routed
                    .iter()
                    .filter_map(|k| index.get(k).copied())
                    .collect();
                for (i, ((_, key), pair)) in droppable.iter().enumerate() {
                    if touched.sessions.contains(key) && pair.op <= d.op {
                        candidates.insert(i);
                    }
                }
                candidates
                    .into_iter()
                    .filter(|&i| !d.qos0_only || droppable[i].1.qos == QoS::AtMostOnce)
                    .collect()
            })
            .collect();

        // Every drop stands for some pair.
        let mut owner: Vec<Option<usize>> = vec![None; droppable.len()];
        for d in 0..self.drops.len() {
            let mut seen = vec![false; droppable.len()];
            assert!(
                augment(d, &edges, &mut owner, &mut seen),
                "drop {d} counted in operation {} matches no message it could have dropped: drops \
                 {:?}, candidates {:?}",
                self.drops[d].op,
                self.drops,
                droppable
            );
        }

        // Every undelivered pair that must have arrived is a counted drop.
        let mut reverse: Vec<Vec<usize>> = vec![Vec::new(); droppable.len()];
        for (d, targets) in edges.iter().enumerate() {
            for &i in targets {
                reverse[i].push(d);
            }
        }
        let mut owner: Vec<Option<usize>> = vec![None; self.drops.len()];
        for (i, (key, pair)) in droppable.iter().enumerate() {
            if pair.excused || pair.deliveries > 0 {
                continue;
            }
            let mut seen = vec![false; self.drops.len()];
            assert!(
                augment(i, &reverse, &mut owner, &mut seen),
                "message {} to session {} (QoS {:?}) neither delivered nor counted as dropped: \
                 drops {:?}, candidates {:?}",
                key.0,
                key.1,
                pair.qos,
                self.drops,
                droppable
            );
        }
    }
}

/// One step of Kuhn's bipartite matching: finds a partner for `from` among `edges[from]`,
/// moving earlier matches along if needed.
fn augment(
    from: usize,
    edges: &[Vec<usize>],
    owner: &mut [Option<usize>],
    seen: &mut [bool],
) -> bool {
    for &to in &edges[from] {
        if seen[to] {
            continue;
        }
        seen[to] = true;
        if owner[to].is_none_or(|other| augment(other, edges, owner, seen)) {
            owner[to] = Some(from);
            return true;
        }
    }
    false
}

/// Runs a scenario with every check; returns the actions and the final counters.
fn run(setup: &Setup, ops: &[Op]) -> (Vec<Action>, Stats) {
    let mut sim = Sim::new(setup);
    for op in ops {
        sim.run_op(op);
    }
    sim.finish();
    sim.check();
    (sim.log, sim.broker.stats().clone())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn broker_delivers_what_it_accepts(
        setup in setup(),
        prelude in prelude(),
        ops in vec(op(), 1..60),
    ) {
        let ops: Vec<Op> = prelude.into_iter().chain(ops).collect();
        let (log, stats) = run(&setup, &ops);
        let (again, stats_again) = run(&setup, &ops);
        if let Some(i) = (0..log.len().min(again.len())).find(|&i| log[i] != again[i]) {
            panic!("runs differ at action {i}: {:?} then {:?}", log[i], again[i]);
        }
        prop_assert_eq!(log.len(), again.len());
        prop_assert_eq!(stats, stats_again);
    }
}

#[test]
fn topic_matching_of_the_model() {
    assert!(matches("a/#", "a"));
    assert!(matches("a/#", "a/b/c"));
    assert!(matches("+/+", "a/b"));
    assert!(!matches("+/+", "a/b/c"));
    assert!(!matches("a/b", "a/b/c"));
    assert!(matches("#", "x"));
    assert!(!matches("+/c", "x"));
}
