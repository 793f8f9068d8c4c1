//! Property test of persistence: a broker with `Config::persistence` and small random limits,
//! driven by random operations of several clients, crashed at random points and recovered from
//! what its log kept, must lose nothing it acknowledged.
//!
//! Three to five clients speak MQTT 3.1.1 or 5.0. Most have a persistent session (3.1.1 without
//! clean session, MQTT 5 with a Session Expiry Interval of 0xFFFFFFFF); some have a clean one
//! (never on the log), and some MQTT 5 clients a session that expires two seconds after its
//! connection. The operations: connect (taking over a connection still open; a persistent client
//! sometimes starts afresh with clean start), subscribe and unsubscribe among filters with
//! wildcards, publish at every QoS with a payload naming the message and its publisher,
//! acknowledge at once, later or never, disconnect, drop the connection, let time pass, report
//! the log durable (all of it, or up to some record between the last reported and the last
//! written), and crash. A crash keeps the records up to the last one reported durable, sometimes
//! some more after it and the start of the next frame (a torn write, which recovery must cut
//! off); the driver truncates the torn tail, a broker is recovered from the rest with
//! `World::recovered`, every connection is gone, and what the broker had sent but the clients
//! had not read yet is sometimes lost with it.
//!
//! Clients behave as correct clients with their own session state, which they keep across
//! connections until the broker says the session is gone (CONNACK session present 0): they
//! acknowledge what they receive (PUBACK; PUBREC, then PUBCOMP after PUBREL), accept a QoS 2
//! PUBLISH only once per packet id until its PUBREL, and when their session resumes resend every
//! QoS 1 and 2 PUBLISH not yet acknowledged, with DUP and its packet id, and PUBREL for those
//! PUBREC acknowledged. A client that asks for a clean start discards its session state at
//! once; should the broker then report a session present (a crash lost the clean start), the
//! client closes the connection and starts afresh [MQTT-3.2.2-4] (5.0). At the end the log is
//! made durable, every client with a persistent session reconnects, and everyone acknowledges
//! everything until nothing moves.
//!
//! Properties:
//!
//! - Nothing acknowledged is lost. Every QoS 1 or 2 message whose PUBACK or PUBREC its publisher
//!   received reaches every client with a persistent session that had a matching QoS 1 or 2
//!   subscription acknowledged (SUBACK received) before the message was first sent, neither
//!   replaced nor unsubscribed before the message was last sent, in the same session as at the
//!   end, unless the broker counted a drop while taking the message in (counted across crashes).
//!   A QoS 2 delivery is accepted at most once per client (unless its publisher resent it into
//!   a session that may not be the one it first sent it in: an expired session replaced by a
//!   CONNECT whose CONNACK was lost, which MQTT gives a client no way to tell); QoS 1 at least
//!   once. A client whose CONNACK said its persistent session was there always finds it there
//!   again (session present), and PUBCOMP answers a first PUBREL with success.
//! - Nothing the broker sends reveals state that is not durable. At every crash, the recovered
//!   state holds every acknowledged session, every acknowledged subscription with its QoS, the
//!   packet id of every QoS 2 message a client holds unreleased (so it is never sent again as a
//!   new message), and the packet id of every QoS 2 message a publisher saw PUBREC for and has
//!   not released. No client receives a message it did not subscribe to, above the QoS it asked
//!   for, or a packet id still in use without DUP.
//! - Recovery is deterministic and exact: the state scanned from the log equals the state the
//!   records add up to when applied as they were written, a snapshot of it rebuilds it, a crash
//!   never looks like corruption, and the same operations produce the same actions byte for byte.

mod harness;

use bytes::{Bytes, BytesMut};
use harness::World;
use midge_core::broker::{Action, Config, ConnId, Input, Stats};
use midge_core::codec::{
    ByteString, Connect, ConnectProperties, ConnectReason, Disconnect, DisconnectReason, Packet,
    ProtocolVersion, PubRelReason, PubResponse, Publish, PublishProperties, QoS, QosPid,
    SubAckReason, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions, Unsubscribe,
    UnsubscribeProperties,
};
use midge_core::persist::{self, Damage, Lsn, Record, State};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::num::NonZeroU16;

use ProtocolVersion::{V3_1_1, V5};

const FILTERS: [&str; 6] = ["a/b", "a/+", "a/#", "#", "+/c", "+/+"];
const TOPICS: [&str; 4] = ["a/b", "a/c", "b/c", "a/b/c"];
const ADVANCE_MS: [u64; 3] = [300, 1_000, 2_500];
/// The Session Expiry Interval of [`Kind::Expiring`] clients, in seconds.
const EXPIRING_SECS: u32 = 2;

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A session that outlives every connection: 3.1.1 without clean session, MQTT 5 with a
    /// Session Expiry Interval of 0xFFFFFFFF.
    Persistent,
    /// MQTT 5 with a Session Expiry Interval of [`EXPIRING_SECS`]: on the log, but it may end.
    Expiring,
    /// Clean session (MQTT 5: clean start, no expiry): never on the log.
    Clean,
}

#[derive(Debug, Clone)]
struct Setup {
    clients: Vec<(ProtocolVersion, Kind)>,
    max_inflight: u16,
    max_queued: usize,
    max_queued_bytes: usize,
}

impl Setup {
    fn config(&self) -> Config {
        Config {
            persistence: true,
            max_inflight_messages: self.max_inflight,
            max_queued_messages: self.max_queued,
            max_queued_bytes: self.max_queued_bytes,
            ..Config::default()
        }
    }
}

/// One operation. Client numbers are taken modulo the number of clients; an operation that
/// needs a connection (with its CONNACK received) does nothing for a client without one.
#[derive(Debug, Clone)]
enum Op {
    Connect {
        c: usize,
        /// A persistent client starts a new session (clean start).
        fresh: bool,
        /// Receive Maximum (MQTT 5).
        receive_max: Option<u16>,
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
    Advance {
        ms: u64,
    },
    /// The driver reports the log durable: all of it, or up to a record after the last one
    /// reported and no later than the last one written.
    Durable {
        upto: Option<Index>,
    },
    /// The broker stops dead. The disk keeps the records reported durable and, with `extra`,
    /// some written after them, then with `torn` the start of the next frame. With `read_first`
    /// the clients read what the broker sent before it stopped; without, it is lost.
    Crash {
        extra: Option<Index>,
        torn: Option<Index>,
        read_first: bool,
    },
}

fn any_qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn qos_1_2() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn setup() -> impl Strategy<Value = Setup> {
    let kind = prop_oneof![
        4 => Just(Kind::Persistent),
        1 => Just(Kind::Expiring),
        1 => Just(Kind::Clean),
    ];
    (
        vec((select(vec![V3_1_1, V5]), kind), 3..=5),
        prop_oneof![1 => Just(0u16), 3 => 1..=4u16],
        prop_oneof![1 => Just(0usize), 2 => 2..=6usize],
        prop_oneof![3 => Just(0usize), 1 => 60..240usize],
    )
        .prop_map(
            |(clients, max_inflight, max_queued, max_queued_bytes)| Setup {
                clients: clients
                    .into_iter()
                    // Only MQTT 5 can ask for an expiry interval.
                    .map(|(v, k)| match (v, k) {
                        (V3_1_1, Kind::Expiring) => (v, Kind::Persistent),
                        other => other,
                    })
                    .collect(),
                max_inflight,
                max_queued,
                max_queued_bytes,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    let c = || 0..5usize;
    prop_oneof![
        2 => (c(), prop::bool::weighted(0.2), option::weighted(0.3, 1..=3u16))
            .prop_map(|(c, fresh, receive_max)| Op::Connect { c, fresh, receive_max }),
        2 => (c(), 0..FILTERS.len(), any_qos())
            .prop_map(|(c, filter, qos)| Op::Subscribe { c, filter, qos }),
        1 => (c(), 0..FILTERS.len()).prop_map(|(c, filter)| Op::Unsubscribe { c, filter }),
        10 => (c(), 0..TOPICS.len(), any_qos(), 0..40usize)
            .prop_map(|(c, topic, qos, pad)| Op::Publish { c, topic, qos, pad }),
        4 => (c(), 1..4usize).prop_map(|(c, n)| Op::Ack { c, n }),
        1 => (c(), any::<bool>()).prop_map(|(c, on)| Op::AutoAck { c, on }),
        1 => c().prop_map(|c| Op::Disconnect { c }),
        1 => c().prop_map(|c| Op::Drop { c }),
        1 => select(ADVANCE_MS.to_vec()).prop_map(|ms| Op::Advance { ms }),
        5 => option::weighted(0.6, any::<Index>()).prop_map(|upto| Op::Durable { upto }),
        2 => (
            option::weighted(0.3, any::<Index>()),
            option::weighted(0.3, any::<Index>()),
            any::<bool>(),
        )
            .prop_map(|(extra, torn, read_first)| Op::Crash { extra, torn, read_first }),
    ]
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

/// A message a client published.
#[derive(Debug)]
struct Msg {
    publisher: usize,
    topic: usize,
    qos: QoS,
    payload: Bytes,
    /// Model time of its first and last PUBLISH (resends included).
    first_send: u64,
    last_send: u64,
    /// The publisher received PUBACK or PUBREC for it.
    acked: bool,
    /// Resent at QoS 2 into a session that may not be the one it was first sent in (an expired
    /// session replaced by a CONNECT whose CONNACK never arrived): the new session may take it
    /// as a new message, and subscribers receive it twice. MQTT gives the client no way to know.
    may_repeat: bool,
}

/// A subscription the broker acknowledged.
#[derive(Debug)]
struct SubEntry {
    filter: usize,
    qos: QoS,
    /// The client's session it belongs to.
    epoch: u32,
    acked_at: u64,
    /// When the client sent another SUBSCRIBE or an UNSUBSCRIBE for the same filter.
    until: Option<u64>,
}

#[derive(Debug)]
struct PendingSub {
    filter: usize,
    qos: QoS,
    superseded: Option<u64>,
}

/// A QoS 2 message the client published and has not seen PUBCOMP for.
#[derive(Debug)]
struct OutQos2 {
    tag: u32,
    /// PUBREC received: PUBREL, not PUBLISH, is what to resend.
    rec: bool,
    rels_sent: u32,
    /// The session it was published in may have been replaced behind the client's back (a
    /// clean start or an expiry whose CONNACK never arrived): the broker may not know it.
    uncertain: bool,
}

/// What a client expects of the CONNACK to its latest CONNECT.
#[derive(Debug, Clone, Copy)]
struct Expect {
    present: Option<bool>,
    /// An earlier CONNECT that may have replaced the session got no CONNACK.
    uncertain_before: bool,
}

/// A client and the session state it keeps on its side.
#[derive(Debug)]
struct Client {
    version: ProtocolVersion,
    kind: Kind,
    id: ByteString,
    conn: Option<ConnId>,
    connacked: bool,
    expect: Option<Expect>,
    auto_ack: bool,
    next_pid: u16,
    next_seq: u32,
    /// Sessions the client has seen begin (CONNACK session present 0), or may have.
    epoch: u32,
    /// A CONNACK told the client the broker has its session, on the log.
    session_known: bool,
    /// The latest connection has a clean session although the client's kind is not clean: an
    /// MQTT 3.1.1 client starting afresh connects with clean session.
    clean_now: bool,
    /// A CONNECT that may have replaced the session is not yet answered.
    maybe_replaced: bool,
    /// The client discarded its session state with a clean start not yet answered.
    discarded: bool,
    /// A CONNACK said session present while the client had discarded its session: it closes
    /// the connection and starts afresh [MQTT-3.2.2-4] (5.0).
    restart: bool,
    /// QoS 2 packet ids received and not released by PUBREL.
    inbound_qos2: BTreeSet<u16>,
    /// Of those, the ids kept across a resume of a session that may not be theirs: the broker
    /// may never release them, and may use them again.
    inbound_uncertain: BTreeSet<u16>,
    /// QoS 1 messages published, awaiting PUBACK, by packet id.
    out_qos1: BTreeMap<u16, u32>,
    out_qos2: BTreeMap<u16, OutQos2>,
    pending_subs: BTreeMap<u16, PendingSub>,
    pending_unsubs: BTreeSet<u16>,
    subs: Vec<SubEntry>,
    /// Filters asked for in this session, with the highest QoS asked: what may be delivered.
    asked: BTreeMap<usize, QoS>,
    /// Responses owed on the current connection, oldest first.
    owed: VecDeque<Packet>,
    /// Packets to resend at once on a resumed session.
    resend: Vec<Packet>,
}

/// How a client received one message.
#[derive(Debug, Default)]
struct Received {
    /// Times it reached the application.
    accepted: u32,
    /// Of which at QoS 2.
    qos2: u32,
}

struct Sim {
    config: Config,
    w: World,
    clients: Vec<Client>,
    messages: Vec<Msg>,
    /// Model time: one tick per packet sent by a client and per packet received.
    clock: u64,
    received: BTreeMap<(u32, usize), Received>,
    /// Drops the broker counted while processing a PUBLISH of the message.
    drops_by_tag: BTreeMap<u32, u64>,
    /// Drops counted by broker instances gone in a crash, and by the current one when it began.
    drops_before: u64,
    /// Every action of every broker instance, in order.
    actions: Vec<Action>,
    /// Actions of the current world already looked at.
    seen: usize,
    /// The state the current broker instance was recovered from, and the records written since,
    /// applied as written.
    base: State,
    records: Vec<(Lsn, Record)>,
    shadow: State,
    crashes: u32,
}

fn tag_of(payload: &[u8]) -> u32 {
    let bytes: [u8; 4] = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .unwrap_or_else(|| panic!("payload without a tag: {payload:?}"));
    u32::from_be_bytes(bytes)
}

fn pid(n: u16) -> midge_core::codec::PacketId {
    midge_core::codec::PacketId::new(n).expect("non-zero packet id")
}

fn drop_count(s: &Stats) -> u64 {
    s.dropped_queue_full + s.dropped_too_large
}

/// The state the records of a log add up to.
fn state_of(disk: &[u8]) -> State {
    let data = Bytes::copy_from_slice(disk);
    let scan = persist::scan(&data);
    assert!(scan.damage.is_none(), "damaged log: {:?}", scan.damage);
    let mut state = State::default();
    for (lsn, record) in &scan.records {
        state
            .apply(*lsn, record)
            .unwrap_or_else(|e| panic!("inconsistent log: {e}"));
    }
    state
}

/// A state rebuilt from its snapshot records is the state, but for messages nothing refers to.
fn check_snapshot(state: &State) {
    let mut rebuilt = State::default();
    for (i, record) in state.snapshot_records().enumerate() {
        rebuilt
            .apply(i as Lsn + 1, &record)
            .unwrap_or_else(|e| panic!("snapshot does not apply: {e}"));
    }
    rebuilt.set_last_lsn(state.last_lsn());
    let mut expected = state.clone();
    expected.messages.retain(|_, e| e.refs > 0);
    assert_eq!(rebuilt, expected, "a snapshot rebuilds another state");
}

impl Sim {
    fn new(setup: &Setup) -> Sim {
        let config = setup.config();
        let mut w = World::new(config.clone());
        w.auto_durable = false;
        Sim {
            config,
            w,
            clients: setup
                .clients
                .iter()
                .enumerate()
                .map(|(i, &(version, kind))| Client {
                    version,
                    kind,
                    id: ByteString::from(format!("c{i}")),
                    conn: None,
                    connacked: false,
                    expect: None,
                    auto_ack: true,
                    next_pid: 0,
                    next_seq: 0,
                    epoch: 0,
                    session_known: false,
                    clean_now: false,
                    maybe_replaced: false,
                    discarded: false,
                    restart: false,
                    inbound_qos2: BTreeSet::new(),
                    inbound_uncertain: BTreeSet::new(),
                    out_qos1: BTreeMap::new(),
                    out_qos2: BTreeMap::new(),
                    pending_subs: BTreeMap::new(),
                    pending_unsubs: BTreeSet::new(),
                    subs: Vec::new(),
                    asked: BTreeMap::new(),
                    owed: VecDeque::new(),
                    resend: Vec::new(),
                })
                .collect(),
            messages: Vec::new(),
            clock: 0,
            received: BTreeMap::new(),
            drops_by_tag: BTreeMap::new(),
            drops_before: 0,
            actions: Vec::new(),
            seen: 0,
            base: State::default(),
            records: Vec::new(),
            shadow: State::default(),
            crashes: 0,
        }
    }

    // --- The driver ---------------------------------------------------------------------------

    /// Takes in the actions of the world: records are applied to the shadow state as written.
    fn sync(&mut self) {
        while self.seen < self.w.log.len() {
            let action = self.w.log[self.seen].clone();
            self.seen += 1;
            if let Action::Persist { lsn, bytes } = &action {
                let scan = persist::scan(bytes);
                assert!(scan.damage.is_none(), "a batch of records is damaged");
                assert_eq!(scan.valid_len, bytes.len());
                assert_eq!(scan.records.last().map(|(l, _)| *l), Some(*lsn));
                for (l, record) in scan.records {
                    assert_eq!(l, self.shadow.last_lsn() + 1, "LSNs follow each other");
                    self.shadow.apply(l, &record).unwrap_or_else(|e| {
                        let before: Vec<_> = self.records.iter().rev().take(8).rev().collect();
                        panic!("the broker wrote an inconsistent record: {e}, after {before:?}")
                    });
                    self.records.push((l, record));
                }
            }
            self.actions.push(action);
        }
    }

    /// Runs an input that must not drop a message.
    fn quiet(&mut self, what: &str, f: impl FnOnce(&mut World)) {
        let before = drop_count(self.w.broker.stats());
        f(&mut self.w);
        assert_eq!(
            drop_count(self.w.broker.stats()),
            before,
            "a message dropped on {what}"
        );
        self.sync();
    }

    /// A client sends one packet on its connection.
    fn send(&mut self, c: usize, packet: Packet) {
        let conn = self.clients[c].conn.expect("sending on a connection");
        self.clock += 1;
        let tag = match &packet {
            Packet::Publish(p) => Some(tag_of(&p.payload)),
            Packet::PubRel(r) => {
                if let Some(e) = self.clients[c].out_qos2.get_mut(&r.packet_id.get()) {
                    e.rels_sent += 1;
                }
                None
            }
            _ => None,
        };
        if let Some(tag) = tag {
            self.messages[tag as usize].last_send = self.clock;
        }
        let before = drop_count(self.w.broker.stats());
        self.w.send(conn, &packet);
        let dropped = drop_count(self.w.broker.stats()) - before;
        match tag {
            Some(tag) => *self.drops_by_tag.entry(tag).or_default() += dropped,
            None => assert_eq!(dropped, 0, "a message dropped on {packet:?}"),
        }
        self.sync();
    }

    fn next_pid(&mut self, c: usize) -> u16 {
        let client = &mut self.clients[c];
        loop {
            client.next_pid = client.next_pid.wrapping_add(1).max(1);
            let n = client.next_pid;
            if !client.out_qos1.contains_key(&n)
                && !client.out_qos2.contains_key(&n)
                && !client.pending_subs.contains_key(&n)
                && !client.pending_unsubs.contains(&n)
            {
                return n;
            }
        }
    }

    /// The client's connection, if its CONNACK arrived.
    fn ready(&self, c: usize) -> bool {
        self.clients[c].conn.is_some() && self.clients[c].connacked
    }

    /// Clients read everything that arrived and respond as they do, until nothing moves.
    /// Returns whether anything moved.
    fn settle(&mut self) -> bool {
        let mut any = false;
        loop {
            let mut progress = false;
            for c in 0..self.clients.len() {
                if let Some(conn) = self.clients[c].conn {
                    for packet in self.w.recv(conn) {
                        progress = true;
                        self.receive(c, packet);
                        if self.clients[c].restart {
                            // What follows on this connection is not read.
                            self.clients[c].restart = false;
                            self.leave(c);
                            self.quiet("a closed connection", |w| w.peer_close(conn));
                            self.connect(c, true, None);
                            break;
                        }
                    }
                }
                if self.ready(c) && !self.clients[c].resend.is_empty() {
                    progress = true;
                    for p in std::mem::take(&mut self.clients[c].resend) {
                        self.send(c, p);
                    }
                }
                if self.ready(c) && self.clients[c].auto_ack && !self.clients[c].owed.is_empty() {
                    progress = true;
                    let owed: Vec<Packet> = self.clients[c].owed.drain(..).collect();
                    for p in owed {
                        self.send(c, p);
                    }
                }
            }
            if !progress {
                break;
            }
            any = true;
        }
        for (c, client) in self.clients.iter().enumerate() {
            if let Some(conn) = client.conn {
                assert!(
                    !self.w.is_closed(conn),
                    "the broker closed client {c}'s connection without cause"
                );
            }
        }
        any
    }

    /// A packet from the broker, as the client handles it.
    fn receive(&mut self, c: usize, packet: Packet) {
        self.clock += 1;
        let now = self.clock;
        let client = &mut self.clients[c];
        let v5 = client.version.is_v5();
        if !client.connacked {
            let Packet::ConnAck(ack) = packet else {
                panic!("client {c}: first packet is not CONNACK: {packet:?}");
            };
            assert_eq!(ack.reason, ConnectReason::Success, "client {c}: {ack:?}");
            let expect = client.expect.take().expect("a CONNECT to answer");
            if let Some(present) = expect.present {
                assert_eq!(
                    ack.session_present, present,
                    "client {c} ({:?}): session present; a session it had a CONNACK for was lost",
                    client.kind
                );
            }
            client.maybe_replaced = false;
            if ack.session_present && client.discarded {
                // The broker kept a session the client asked to discard, never having said it
                // did not: the client holds no state for it and starts again.
                client.restart = true;
                return;
            }
            client.discarded = false;
            client.connacked = true;
            client.session_known = client.kind != Kind::Clean && !client.clean_now;
            if !ack.session_present {
                // A new session: the client's state of the old one is gone with it.
                client.epoch += 1;
                client.inbound_qos2.clear();
                client.inbound_uncertain.clear();
                client.out_qos1.clear();
                client.out_qos2.clear();
                client.asked.clear();
                return;
            }
            if expect.uncertain_before {
                // The session may be one the client never saw begin: its subscriptions are not
                // the client's to count on, nor its packet ids.
                client.epoch += 1;
                for e in client.out_qos2.values_mut() {
                    e.uncertain = true;
                }
                client.inbound_uncertain = client.inbound_qos2.clone();
                for e in client.out_qos2.values() {
                    if !e.rec {
                        self.messages[e.tag as usize].may_repeat = true;
                    }
                }
            }
            // Resend what the broker has not acknowledged [MQTT-4.4.0-1], in order.
            let mut resend: Vec<(u16, Packet)> = Vec::new();
            for (&n, &tag) in &client.out_qos1 {
                resend.push((
                    n,
                    republish(&self.messages[tag as usize], QosPid::AtLeastOnce(pid(n))),
                ));
            }
            for (&n, e) in &client.out_qos2 {
                let p = if e.rec {
                    Packet::PubRel(PubResponse::success(pid(n)))
                } else {
                    republish(&self.messages[e.tag as usize], QosPid::ExactlyOnce(pid(n)))
                };
                resend.push((n, p));
            }
            resend.sort_by_key(|(n, _)| *n);
            client.resend = resend.into_iter().map(|(_, p)| p).collect();
            return;
        }
        match packet {
            Packet::Publish(p) => {
                let tag = tag_of(&p.payload);
                let m = self
                    .messages
                    .get(tag as usize)
                    .unwrap_or_else(|| panic!("client {c}: unknown message {tag}"));
                assert_eq!(&*p.topic, TOPICS[m.topic], "message {tag}: topic");
                assert_eq!(p.payload, m.payload, "message {tag}: payload");
                assert!(!p.retain, "message {tag}: RETAIN set");
                let qos = p.qos_pid.qos();
                assert!(qos <= m.qos, "message {tag} upgraded to {qos:?}");
                let asked = client
                    .asked
                    .iter()
                    .filter(|(f, _)| matches(FILTERS[**f], TOPICS[m.topic]))
                    .map(|(_, q)| *q)
                    .max();
                assert!(
                    asked.is_some_and(|a| qos <= a),
                    "message {tag} reached client {c} at {qos:?}, which asked for {asked:?}"
                );
                let r = self.received.entry((tag, c)).or_default();
                match p.qos_pid {
                    QosPid::AtMostOnce => r.accepted += 1,
                    QosPid::AtLeastOnce(n) => {
                        r.accepted += 1;
                        client
                            .owed
                            .push_back(Packet::PubAck(PubResponse::success(n)));
                    }
                    QosPid::ExactlyOnce(n) if client.inbound_uncertain.remove(&n.get()) => {
                        // A resend of the message the client holds the id for, if the session
                        // is the one it knew; a new message if not: the client cannot tell,
                        // and takes it as possibly new.
                        r.accepted += 1;
                        if !p.dup {
                            r.qos2 += 1;
                            assert!(
                                r.qos2 <= 1 || m.may_repeat,
                                "QoS 2 message {tag} accepted twice by {c}"
                            );
                        }
                        client
                            .owed
                            .push_back(Packet::PubRec(PubResponse::success(n)));
                    }
                    QosPid::ExactlyOnce(n) => {
                        if client.inbound_qos2.insert(n.get()) {
                            r.accepted += 1;
                            r.qos2 += 1;
                            assert!(
                                r.qos2 <= 1 || m.may_repeat,
                                "QoS 2 message {tag} accepted twice by client {c} (crashes: {})",
                                self.crashes
                            );
                        } else {
                            assert!(p.dup, "client {c}: packet id {n} reused before PUBREL");
                        }
                        client
                            .owed
                            .push_back(Packet::PubRec(PubResponse::success(n)));
                    }
                }
            }
            Packet::PubRel(r) => {
                assert_eq!(r.reason, PubRelReason::Success, "client {c}: {r:?}");
                client.inbound_qos2.remove(&r.packet_id.get());
                client.inbound_uncertain.remove(&r.packet_id.get());
                client
                    .owed
                    .push_back(Packet::PubComp(PubResponse::success(r.packet_id)));
            }
            Packet::PubAck(a) => {
                let tag = client
                    .out_qos1
                    .remove(&a.packet_id.get())
                    .unwrap_or_else(|| panic!("client {c}: PUBACK for unknown {}", a.packet_id));
                assert!(!a.reason.is_error(), "client {c}: {a:?}");
                self.messages[tag as usize].acked = true;
            }
            Packet::PubRec(r) => {
                let e = client
                    .out_qos2
                    .get_mut(&r.packet_id.get())
                    .unwrap_or_else(|| panic!("client {c}: PUBREC for unknown {}", r.packet_id));
                assert!(!e.rec, "client {c}: second PUBREC for {}", r.packet_id);
                assert!(!r.reason.is_error(), "client {c}: {r:?}");
                e.rec = true;
                let tag = e.tag;
                client
                    .owed
                    .push_back(Packet::PubRel(PubResponse::success(r.packet_id)));
                self.messages[tag as usize].acked = true;
            }
            Packet::PubComp(x) => {
                let e = client
                    .out_qos2
                    .remove(&x.packet_id.get())
                    .unwrap_or_else(|| panic!("client {c}: PUBCOMP for unknown {}", x.packet_id));
                assert!(e.rels_sent > 0, "client {c}: PUBCOMP before PUBREL");
                if v5 && x.reason != PubRelReason::Success {
                    assert!(
                        e.rels_sent > 1 || e.uncertain,
                        "client {c}: PUBCOMP {:?} to the first PUBREL for {}: the broker lost \
                         the packet id it acknowledged with PUBREC",
                        x.reason,
                        x.packet_id
                    );
                }
            }
            Packet::SubAck(s) => {
                let p = client
                    .pending_subs
                    .remove(&s.packet_id.get())
                    .unwrap_or_else(|| panic!("client {c}: SUBACK for unknown {}", s.packet_id));
                assert_eq!(s.reasons, vec![SubAckReason::granted(p.qos)], "client {c}");
                client.subs.push(SubEntry {
                    filter: p.filter,
                    qos: p.qos,
                    epoch: client.epoch,
                    acked_at: now,
                    until: p.superseded,
                });
            }
            Packet::UnsubAck(u) => {
                assert!(
                    client.pending_unsubs.remove(&u.packet_id.get()),
                    "client {c}: UNSUBACK for unknown {}",
                    u.packet_id
                );
            }
            other => panic!("client {c}: unexpected {other:?}"),
        }
    }

    // --- Operations ---------------------------------------------------------------------------

    fn run_op(&mut self, op: &Op) {
        let n = self.clients.len();
        match *op {
            Op::Connect {
                c,
                fresh,
                receive_max,
            } => self.connect(c % n, fresh, receive_max),
            Op::Subscribe { c, filter, qos } => {
                let c = c % n;
                if self.ready(c) {
                    let packet_id = self.next_pid(c);
                    self.supersede(c, filter);
                    let client = &mut self.clients[c];
                    let asked = client.asked.entry(filter).or_insert(qos);
                    *asked = (*asked).max(qos);
                    client.pending_subs.insert(
                        packet_id,
                        PendingSub {
                            filter,
                            qos,
                            superseded: None,
                        },
                    );
                    let sub = Packet::Subscribe(Subscribe {
                        packet_id: pid(packet_id),
                        properties: SubscribeProperties::default(),
                        subscriptions: vec![Subscription {
                            filter: ByteString::from(FILTERS[filter]),
                            options: SubscriptionOptions::new(qos),
                        }],
                    });
                    self.send(c, sub);
                }
            }
            Op::Unsubscribe { c, filter } => {
                let c = c % n;
                if self.ready(c) {
                    let packet_id = self.next_pid(c);
                    self.supersede(c, filter);
                    self.clients[c].pending_unsubs.insert(packet_id);
                    let unsub = Packet::Unsubscribe(Unsubscribe {
                        packet_id: pid(packet_id),
                        properties: UnsubscribeProperties::default(),
                        filters: vec![ByteString::from(FILTERS[filter])],
                    });
                    self.send(c, unsub);
                }
            }
            Op::Publish { c, topic, qos, pad } => {
                let c = c % n;
                if self.ready(c) {
                    let tag = u32::try_from(self.messages.len()).unwrap();
                    let seq = self.clients[c].next_seq;
                    self.clients[c].next_seq += 1;
                    let mut payload = tag.to_be_bytes().to_vec();
                    payload.push(c as u8);
                    payload.extend_from_slice(&seq.to_be_bytes());
                    payload.resize(payload.len() + pad, b'.');
                    self.messages.push(Msg {
                        publisher: c,
                        topic,
                        qos,
                        payload: Bytes::from(payload),
                        first_send: self.clock + 1,
                        last_send: self.clock + 1,
                        acked: false,
                        may_repeat: false,
                    });
                    let qos_pid = match qos {
                        QoS::AtMostOnce => QosPid::AtMostOnce,
                        QoS::AtLeastOnce => {
                            let n = self.next_pid(c);
                            self.clients[c].out_qos1.insert(n, tag);
                            QosPid::AtLeastOnce(pid(n))
                        }
                        QoS::ExactlyOnce => {
                            let n = self.next_pid(c);
                            self.clients[c].out_qos2.insert(
                                n,
                                OutQos2 {
                                    tag,
                                    rec: false,
                                    rels_sent: 0,
                                    uncertain: false,
                                },
                            );
                            QosPid::ExactlyOnce(pid(n))
                        }
                    };
                    let mut p = match republish(&self.messages[tag as usize], qos_pid) {
                        Packet::Publish(p) => p,
                        _ => unreachable!(),
                    };
                    p.dup = false;
                    self.send(c, Packet::Publish(p));
                }
            }
            Op::Ack { c, n: count } => {
                let c = c % n;
                if self.ready(c) {
                    let client = &mut self.clients[c];
                    let count = count.min(client.owed.len());
                    let owed: Vec<Packet> = client.owed.drain(..count).collect();
                    for p in owed {
                        self.send(c, p);
                    }
                }
            }
            Op::AutoAck { c, on } => self.clients[c % n].auto_ack = on,
            Op::Disconnect { c } => {
                let c = c % n;
                if self.ready(c) {
                    let d =
                        Packet::Disconnect(Disconnect::new(DisconnectReason::NormalDisconnection));
                    self.send(c, d);
                    self.leave(c);
                }
            }
            Op::Drop { c } => {
                let c = c % n;
                if let Some(conn) = self.clients[c].conn {
                    self.leave(c);
                    self.quiet("a dropped connection", |w| w.peer_close(conn));
                }
            }
            Op::Advance { ms } => self.quiet("time passing", |w| w.advance_ms(ms)),
            Op::Durable { upto: None } => self.quiet("durability", |w| w.make_durable()),
            Op::Durable { upto: Some(i) } => {
                let (durable, written) = (self.w.durable, self.w.written);
                if written > durable {
                    let lsn = durable + 1 + i.index((written - durable) as usize) as Lsn;
                    self.quiet("durability", |w| {
                        w.durable = lsn;
                        let now = w.now;
                        w.broker.handle(now, Input::Durable { lsn });
                        w.drain();
                    });
                }
            }
            Op::Crash {
                extra,
                torn,
                read_first,
            } => self.crash(extra, torn, read_first),
        }
        self.settle();
    }

    /// The client forgets its connection: it is gone, whatever arrives on it later. A clean
    /// session the broker acknowledged ends with it.
    fn leave(&mut self, c: usize) {
        let client = &mut self.clients[c];
        if client.connacked && (client.kind == Kind::Clean || client.clean_now) {
            client.epoch += 1;
            client.clean_now = false;
            client.inbound_qos2.clear();
            client.inbound_uncertain.clear();
            client.out_qos1.clear();
            client.out_qos2.clear();
            client.asked.clear();
        }
        client.conn = None;
        client.connacked = false;
        client.owed.clear();
        client.resend.clear();
        client.pending_subs.clear();
        client.pending_unsubs.clear();
    }

    /// Another SUBSCRIBE or an UNSUBSCRIBE for `filter` is about to be sent.
    fn supersede(&mut self, c: usize, filter: usize) {
        let at = self.clock + 1;
        let client = &mut self.clients[c];
        for e in client.subs.iter_mut() {
            if e.filter == filter && e.until.is_none() {
                e.until = Some(at);
            }
        }
        for p in client.pending_subs.values_mut() {
            if p.filter == filter && p.superseded.is_none() {
                p.superseded = Some(at);
            }
        }
    }

    fn connect(&mut self, c: usize, fresh: bool, receive_max: Option<u16>) {
        // A connection still open is taken over: the client is done with it.
        self.leave(c);
        let client = &mut self.clients[c];
        let v5 = client.version.is_v5();
        let clean_start = client.kind == Kind::Clean || fresh;
        // MQTT 3.1.1 has no other way to start afresh than a clean session.
        client.clean_now = client.kind != Kind::Clean && fresh && !v5;
        let expiry = match (v5, client.kind) {
            (true, Kind::Persistent) => Some(u32::MAX),
            (true, Kind::Expiring) => Some(EXPIRING_SECS),
            _ => None,
        };
        let uncertain_before = client.maybe_replaced;
        let present = match client.kind {
            _ if clean_start => Some(false),
            Kind::Persistent if client.session_known && !uncertain_before => Some(true),
            _ => None,
        };
        if client.kind == Kind::Expiring || (client.kind == Kind::Persistent && clean_start) {
            client.maybe_replaced = true;
        }
        if clean_start {
            // The client discards its session as it asks for a new one [MQTT-3.1.2-6] (3.1.1)
            // [MQTT-3.1.2-4] (5.0), and has none until the CONNACK.
            client.epoch += 1;
            client.discarded = true;
            client.inbound_qos2.clear();
            client.inbound_uncertain.clear();
            client.out_qos1.clear();
            client.out_qos2.clear();
        }
        client.expect = Some(Expect {
            present,
            uncertain_before,
        });
        let version = client.version;
        let connect = Packet::from(Connect {
            protocol_version: version,
            bridge: false,
            clean_start,
            keep_alive: 0,
            properties: ConnectProperties {
                session_expiry_interval: expiry,
                receive_maximum: receive_max.filter(|_| v5).and_then(NonZeroU16::new),
                ..ConnectProperties::default()
            },
            client_id: client.id.clone(),
            will: None,
            username: None,
            password: None,
        });
        let mut conn = None;
        self.quiet("a connection", |w| {
            let id = w.open(version);
            w.send(id, &connect);
            conn = Some(id);
        });
        self.clients[c].conn = conn;
    }

    fn crash(&mut self, extra: Option<Index>, torn: Option<Index>, read_first: bool) {
        if read_first {
            self.settle();
        }
        self.sync();
        let data = Bytes::copy_from_slice(&self.w.disk);
        let (durable, written) = (self.w.durable, self.w.written);
        // Where each frame ends.
        let mut ends: Vec<(Lsn, usize)> = Vec::new();
        let mut offset = 0;
        while offset < data.len() {
            let (lsn, _, used) = Record::decode(&data.slice(offset..)).expect("an intact log");
            offset += used;
            ends.push((lsn, offset));
        }
        let keep = match extra {
            Some(i) => durable + i.index((written - durable) as usize + 1) as Lsn,
            None => durable,
        };
        let cut = ends
            .iter()
            .take_while(|(l, _)| *l <= keep)
            .last()
            .map_or(0, |(_, end)| *end);
        let mut kept = BytesMut::from(&data[..cut]);
        if let Some(t) = torn
            && let Some(&(_, next_end)) = ends.iter().find(|(_, end)| *end > cut)
        {
            // The start of the next frame, not all of it.
            let partial = 1 + t.index(next_end - cut - 1);
            kept.extend_from_slice(&data[cut..cut + partial]);
        }
        // What the driver does on restart: cut off a torn tail, refuse corruption.
        let scanned = persist::scan(&kept.clone().freeze());
        match scanned.damage {
            None => {}
            Some(Damage::TornTail { offset, .. }) => {
                assert_eq!(offset, scanned.valid_len);
                kept.truncate(offset);
            }
            Some(Damage::Corrupt { offset, error }) => {
                panic!("a crash looks like corruption at {offset}: {error}")
            }
        }
        let state = state_of(&kept);
        assert!(
            state.last_lsn() >= self.base.last_lsn(),
            "recovery lost records it recovered before"
        );
        // The state kept is what its records added up to as they were written.
        let mut expected = self.base.clone();
        for (lsn, record) in &self.records {
            if *lsn <= state.last_lsn() {
                expected.apply(*lsn, record).expect("applied before");
            }
        }
        assert_eq!(
            state, expected,
            "the log does not rebuild the state written"
        );
        check_snapshot(&state);
        self.check_durable(&state);

        self.drops_before += drop_count(self.w.broker.stats());
        let now = self.w.now;
        self.w = World::recovered(self.config.clone(), &kept, now);
        self.w.auto_durable = false;
        self.seen = 0;
        self.base = state.clone();
        self.shadow = state;
        self.records.clear();
        self.crashes += 1;
        for c in 0..self.clients.len() {
            self.leave(c);
            self.clients[c].expect = None;
        }
    }

    /// What clients were told must be in the recovered state.
    fn check_durable(&self, state: &State) {
        for (c, client) in self.clients.iter().enumerate() {
            if client.kind != Kind::Persistent
                || !client.session_known
                || client.maybe_replaced
                || client.clean_now
            {
                continue;
            }
            let session = state.sessions.get(&client.id).unwrap_or_else(|| {
                panic!("client {c}: the session its CONNACK acknowledged is not on the log")
            });
            for e in &client.subs {
                if e.epoch == client.epoch && e.until.is_none() {
                    let stored = session.subscriptions.get(FILTERS[e.filter]);
                    assert_eq!(
                        stored.map(|s| s.qos),
                        Some(e.qos),
                        "client {c}: subscription to {} acknowledged but not on the log",
                        FILTERS[e.filter]
                    );
                }
            }
            for n in client.inbound_qos2.difference(&client.inbound_uncertain) {
                assert!(
                    session.in_flight.contains_key(&pid(*n)),
                    "client {c} holds QoS 2 packet id {n} the log does not have in flight"
                );
            }
            for (n, e) in &client.out_qos2 {
                if e.rec && e.rels_sent == 0 && !e.uncertain {
                    assert!(
                        session.inbound_qos2.contains(&pid(*n)),
                        "client {c} got PUBREC for {n}, which the log does not hold"
                    );
                }
            }
        }
    }

    /// The log is made durable, every client with a kept session comes back, and everyone
    /// acknowledges everything until nothing moves.
    fn finish(&mut self) {
        self.quiet("durability", |w| w.make_durable());
        self.settle();
        for c in 0..self.clients.len() {
            self.clients[c].auto_ack = true;
            let client = &self.clients[c];
            if client.kind != Kind::Clean && (client.conn.is_none() || client.clean_now) {
                self.connect(c, false, None);
            }
        }
        for round in 0.. {
            assert!(round < 1000, "no quiet end");
            let durable_before = self.w.durable;
            self.quiet("durability", |w| w.make_durable());
            let moved = self.settle();
            if !moved && self.w.durable == durable_before && self.w.written == self.w.durable {
                break;
            }
        }
    }

    // --- Final checks -------------------------------------------------------------------------

    fn check(&self) {
        // The log rebuilds the state its records were applied to one by one.
        let from_disk = state_of(&self.w.disk);
        assert_eq!(from_disk, self.shadow, "the log rebuilds another state");
        check_snapshot(&from_disk);

        for (c, client) in self.clients.iter().enumerate() {
            if client.conn.is_none() {
                continue;
            }
            assert!(client.connacked, "client {c}: no CONNACK");
            assert!(client.owed.is_empty() && client.resend.is_empty());
            assert!(
                client.out_qos1.is_empty() && client.out_qos2.is_empty(),
                "client {c}: messages never acknowledged: {:?} {:?}",
                client.out_qos1,
                client.out_qos2
            );
            assert!(
                client.inbound_qos2.is_subset(&client.inbound_uncertain),
                "client {c}: PUBREL missing for {:?}",
                client.inbound_qos2
            );
            match client.kind {
                _ if client.clean_now => assert!(!from_disk.sessions.contains_key(&client.id)),
                Kind::Clean => assert!(!from_disk.sessions.contains_key(&client.id)),
                _ => {
                    let s = from_disk
                        .sessions
                        .get(&client.id)
                        .unwrap_or_else(|| panic!("client {c}: session not on the log"));
                    assert!(
                        s.deliveries.is_empty() && s.in_flight.is_empty(),
                        "client {c}: acknowledged deliveries still on the log: {s:?}"
                    );
                    assert!(s.inbound_qos2.is_empty(), "client {c}: {s:?}");
                }
            }
        }

        let dropped: u64 = self.drops_by_tag.values().sum();
        assert_eq!(
            dropped,
            self.drops_before + drop_count(self.w.broker.stats()),
            "drops counted outside PUBLISH"
        );

        // Nothing acknowledged is lost.
        for (tag, m) in self.messages.iter().enumerate() {
            let tag = tag as u32;
            if !m.acked || m.qos == QoS::AtMostOnce {
                continue;
            }
            let mut missing = Vec::new();
            for (s, sub) in self.clients.iter().enumerate() {
                if sub.kind != Kind::Persistent || sub.conn.is_none() || sub.clean_now {
                    continue;
                }
                let must = sub.subs.iter().any(|e| {
                    e.epoch == sub.epoch
                        && e.qos != QoS::AtMostOnce
                        && matches(FILTERS[e.filter], TOPICS[m.topic])
                        && e.acked_at < m.first_send
                        && e.until.is_none_or(|u| u > m.last_send)
                });
                let accepted = self.received.get(&(tag, s)).map_or(0, |r| r.accepted);
                if must && accepted == 0 {
                    missing.push(s);
                }
            }
            let dropped = self.drops_by_tag.get(&tag).copied().unwrap_or(0);
            assert!(
                missing.len() as u64 <= dropped,
                "message {tag} ({:?} from client {} to {}), acknowledged, never reached clients \
                 {missing:?}; drops counted for it: {dropped}; crashes: {}",
                m.qos,
                m.publisher,
                TOPICS[m.topic],
                self.crashes
            );
        }
    }
}

/// The PUBLISH of a message again, with DUP.
fn republish(m: &Msg, qos_pid: QosPid) -> Packet {
    Packet::Publish(Publish {
        dup: true,
        qos_pid,
        retain: false,
        topic: ByteString::from(TOPICS[m.topic]),
        properties: PublishProperties::default(),
        payload: m.payload.clone(),
    })
}

/// Every client connects and subscribes once before the random operations.
fn prelude(n: usize, subs: &[(usize, QoS)]) -> Vec<Op> {
    let mut ops = Vec::new();
    for c in 0..n {
        ops.push(Op::Connect {
            c,
            fresh: false,
            receive_max: None,
        });
        ops.push(Op::Durable { upto: None });
        let (filter, qos) = subs[c % subs.len()];
        ops.push(Op::Subscribe { c, filter, qos });
    }
    ops.push(Op::Durable { upto: None });
    ops
}

/// Runs a scenario with every check; returns the actions and the final counters.
fn run(setup: &Setup, ops: &[Op]) -> (Vec<Action>, Stats, u32) {
    let mut sim = Sim::new(setup);
    for op in ops {
        sim.run_op(op);
    }
    sim.finish();
    sim.check();
    (sim.actions, sim.w.broker.stats().clone(), sim.crashes)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn broker_loses_nothing_it_acknowledged(
        setup in setup(),
        subs in vec((0..FILTERS.len(), qos_1_2()), 5),
        ops in vec(op(), 1..70),
    ) {
        let ops: Vec<Op> = prelude(setup.clients.len(), &subs).into_iter().chain(ops).collect();
        let (log, stats, _) = run(&setup, &ops);
        let (again, stats_again, _) = run(&setup, &ops);
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
    assert!(!matches("+/c", "a/b"));
}
