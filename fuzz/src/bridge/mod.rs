//! Target `bridge`: a broker with one bridge, whose remote broker is played by the input: it
//! answers dials, sends CONNACK with any properties, PUBLISH on bridged and other topics,
//! acknowledgements, wrong packets and raw bytes, while local clients publish and subscribe on
//! the bridged topics and time passes through keep alive, connect timeouts and redial waits.
//!
//! The run plays the driver's part and checks, after each operation and everything the broker
//! asked for in response:
//! - on the link, every byte decodes as packets of the bridge's protocol version within the
//!   remote's Maximum Packet Size; CONNECT comes first and says what the configuration says,
//!   nothing else comes before the remote's CONNACK, and nothing after the bridge's DISCONNECT;
//!   PUBLISH stays within the remote's Maximum QoS, Retain Available, Topic Alias Maximum and
//!   Receive Maximum, uses packet ids not in use, goes only on topics an `out` line carries, and
//!   never sends back the remote's own messages live; the SUBSCRIBE is the `in` lines'; acks
//!   answer only what the remote sent (see [`remote`]);
//! - the link closes when the remote sends what ends it, when CONNACK does not come within the
//!   connect timeout, and when the remote falls silent for one and a half keep alive periods;
//!   the bridge writes something at least every keep alive period;
//! - one dial at a time, never after shutdown, and never sooner than the backoff after the
//!   previous one; a connection for a dial nobody asked for is closed at once;
//! - a local client cannot take the bridge's local client id; local clients get valid packets
//!   (the `broker` target's [`Peer`] checks);
//! - what the `broker` target checks of persistence, `poll_timeout` and the counters.

mod ops;
mod remote;

use crate::broker::{Disk, Peer};
use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use midge_core::broker::bridge::{Backoff, BridgeConfig, BridgeId};
use midge_core::broker::{Action, Broker, Config, ConnId, Input, ListenerId, Open, Time};
use midge_core::codec::{
    self, Auth, AuthReason, ByteString, ConnAck, ConnAckProperties, Connect, ConnectProperties,
    ConnectReason, Disconnect, DisconnectReason, LastWill, Packet, PayloadFormat, PubAck,
    PubAckReason, PubComp, PubRec, PubRel, Publish, PublishProperties, QoS, QosPid, SubAck,
    SubAckReason, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions, UnsubAck,
    Unsubscribe, UnsubscribeProperties, WillProperties,
};
use ops::{LOCAL_SLOTS, LocalOp, Op, RemoteOp, Run};
use remote::{Owed, Remote};
use std::collections::{BTreeMap, BTreeSet};
use std::num::{NonZeroU16, NonZeroU32};

/// Most operations in one run, most ticks one advance of the clock may take, and most ticks in
/// a whole run (as the `broker` target).
const MAX_OPS: usize = 64;
const MAX_TICKS: usize = 1_000;
const MAX_RUN_TICKS: usize = 4_000;

/// The shortest wait before a redial (the core's `backoff::MIN_WAIT_MS`): no configuration may
/// make the broker dial in a loop in which no time passes.
const MIN_WAIT_MS: u64 = 100;

const BRIDGE: BridgeId = BridgeId(0);

/// Runs the operations the input describes.
pub fn run(data: &[u8]) {
    let Ok(run) = Run::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut world = World::new(run.config.config(), run.config.auto_durable);
    for op in run.ops.iter().take(MAX_OPS) {
        world.step(op);
    }
}

/// The configuration and operations an input stands for, one per line.
pub fn describe(data: &[u8]) -> String {
    match Run::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(run) => {
            let mut out = format!("{:?}\n", run.config.config());
            for op in run.ops.iter().take(MAX_OPS) {
                out += &format!("{op:?}\n");
            }
            out
        }
        Err(e) => format!("not a run: {e}"),
    }
}

/// A packet in the form the remote or a local client sends it.
#[allow(clippy::useless_conversion)] // `into` whether or not `Packet` boxes the variant
fn connack(ack: ConnAck) -> Packet {
    Packet::ConnAck(ack.into())
}

#[allow(clippy::useless_conversion)] // as `connack`
fn connect(c: Connect) -> Packet {
    Packet::Connect(c.into())
}

/// The broker and the driver's view of it.
struct World {
    config: Config,
    bridge: BridgeConfig,
    broker: Broker,
    now: Time,
    auto_durable: bool,
    next_conn: u64,
    /// Local clients: their slots, and their view of their connections.
    slots: [Option<ConnId>; LOCAL_SLOTS as usize],
    peers: BTreeMap<ConnId, Peer>,
    /// Local connections whose CONNECT named the bridge's local client id.
    impostors: BTreeSet<ConnId>,
    /// Bridge links open as far as the driver knows, with the remote's view.
    links: BTreeMap<ConnId, Remote>,
    closed: BTreeSet<ConnId>,
    /// The address of the dial awaiting an answer, and when the last dial was asked for.
    dialing: Option<usize>,
    last_dial: Option<Time>,
    /// What the bridge has learnt of the remote from CONNACKs, as the core keeps it (for the
    /// will of the next CONNECT): `None` once a CONNACK may have gone unread (reading paused).
    remote_takes: Option<(QoS, bool)>,
    shut_down: bool,
    /// `Open` inputs and accepted dials, and bytes sent, since the broker started.
    opens: u64,
    bytes_sent: u64,
    disk: Disk,
    /// Print every input and action (`MIDGE_FUZZ_TRACE=1`), for reading a crash.
    trace: bool,
    ticks_left: usize,
}

impl World {
    fn new(config: Config, auto_durable: bool) -> World {
        let mut w = World {
            bridge: config.bridges[0].clone(),
            broker: Broker::new(config.clone()),
            config,
            now: Time::ZERO,
            auto_durable,
            next_conn: 1,
            slots: [None; LOCAL_SLOTS as usize],
            peers: BTreeMap::new(),
            impostors: BTreeSet::new(),
            links: BTreeMap::new(),
            closed: BTreeSet::new(),
            dialing: None,
            last_dial: None,
            remote_takes: Some((QoS::ExactlyOnce, true)),
            shut_down: false,
            opens: 0,
            bytes_sent: 0,
            disk: Disk::default(),
            trace: std::env::var_os("MIDGE_FUZZ_TRACE").is_some(),
            ticks_left: MAX_RUN_TICKS,
        };
        // The broker asked for its first dial (and wrote its first records) as it started.
        w.drain();
        w.check();
        w
    }

    fn all_durable(&self) -> bool {
        self.disk.durable == self.disk.written
    }

    /// The newest link.
    fn link(&self) -> Option<ConnId> {
        self.links.keys().next_back().copied()
    }

    fn live(&self, slot: u8) -> Option<ConnId> {
        self.slots[usize::from(slot % LOCAL_SLOTS)].filter(|c| self.peers.contains_key(c))
    }

    fn fresh_conn(&mut self) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        conn
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Dialed => {
                if self.dialing.take().is_some() {
                    let conn = self.fresh_conn();
                    if self.shut_down {
                        self.stray_dialed(BRIDGE, conn);
                    } else {
                        let will = self.expected_will();
                        self.links.insert(
                            conn,
                            Remote::new(&self.bridge, self.config.max_packet_size, self.now, will),
                        );
                        self.opens += 1;
                        self.input(Input::Dialed {
                            bridge: BRIDGE,
                            conn,
                        });
                    }
                }
            }
            Op::Connected(connack) => {
                if self.dialing.is_some() {
                    self.step(&Op::Dialed);
                }
                if let Some(conn) = self.link()
                    && self.links[&conn].announced.is_none()
                {
                    let version = self.links[&conn].version();
                    let packet =
                        remote_packet(&RemoteOp::ConnAck(connack.clone()), version, &self.bridge);
                    self.remote_send(conn, &packet, None);
                }
            }
            Op::DialFailed => {
                if self.dialing.take().is_some() {
                    self.input(Input::DialFailed { bridge: BRIDGE });
                }
            }
            Op::StrayDialed { bridge } => {
                let bridge = BridgeId(u32::from(bridge % 3));
                if bridge != BRIDGE || self.dialing.is_none() {
                    let conn = self.fresh_conn();
                    self.stray_dialed(bridge, conn);
                }
            }
            Op::StrayDialFailed { bridge } => {
                let bridge = BridgeId(u32::from(bridge % 3));
                if bridge != BRIDGE || self.dialing.is_none() {
                    self.input(Input::DialFailed { bridge });
                }
            }
            Op::Remote { packet, split } => {
                if let Some(conn) = self.link() {
                    let version = self.links[&conn].version();
                    let packet = remote_packet(packet, version, &self.bridge);
                    self.remote_send(conn, &packet, *split);
                }
            }
            Op::Respond { which, fail } => {
                if let Some(conn) = self.link() {
                    let remote = self.links.get_mut(&conn).expect("open link");
                    if !remote.owed.is_empty() {
                        let owed = remote.owed.remove(usize::from(*which) % remote.owed.len());
                        self.remote_send(conn, &response(owed, *fail), None);
                    }
                }
            }
            Op::RemoteRaw { bytes } => {
                if let Some(conn) = self.link() {
                    self.remote_bytes(conn, &bytes[..bytes.len().min(256)], None);
                }
            }
            Op::RemoteClose => {
                if let Some(conn) = self.link() {
                    self.links.remove(&conn);
                    self.closed.insert(conn);
                    self.input(Input::Closed { conn });
                }
            }
            Op::LinkBlocked => {
                if let Some(conn) = self.link() {
                    self.links.get_mut(&conn).expect("open link").blocked = true;
                    self.input(Input::Blocked { conn });
                }
            }
            Op::LinkWritable => {
                if let Some(conn) = self.link() {
                    self.links.get_mut(&conn).expect("open link").blocked = false;
                    self.input(Input::Writable { conn });
                }
            }
            Op::Local { slot, op } => self.local(*slot, op),
            Op::AdvanceMs { ms } => self.advance(u64::from(*ms)),
            Op::AdvanceSecs { secs } => self.advance(u64::from(*secs) * 1000),
            Op::Durable { upto } => {
                if let Some(lsn) = self.disk.make_durable(*upto) {
                    self.input(Input::Durable { lsn });
                }
            }
            Op::Crash { extra } => self.crash(*extra),
            Op::Shutdown => {
                self.shut_down = true;
                self.input(Input::Shutdown);
            }
        }
        self.check_after_op();
    }

    /// The will the bridge's next CONNECT must carry: "0" on the notification topic, retained
    /// at QoS 1, within what the remote refused before; none without remote notifications.
    /// `None` when the driver cannot know what the bridge learnt.
    fn expected_will(&self) -> Option<Option<LastWill>> {
        let (max_qos, retain) = self.remote_takes?;
        let cfg = &self.bridge;
        let wanted = cfg.notifications
            && !cfg.notifications_local_only
            && codec::topic::is_valid_name(&cfg.notification_topic);
        Some(wanted.then(|| LastWill {
            topic: ByteString::from(cfg.notification_topic.as_str()),
            payload: bytes::Bytes::from_static(b"0"),
            qos: QoS::AtLeastOnce.min(max_qos),
            retain,
            properties: WillProperties::default(),
        }))
    }

    /// A connection for a dial nobody asked for (or asked for before shutdown) is closed at
    /// once and counts for nothing.
    fn stray_dialed(&mut self, bridge: BridgeId, conn: ConnId) {
        self.input(Input::Dialed { bridge, conn });
        assert!(
            self.closed.contains(&conn),
            "a connection for a dial nobody asked for was not closed"
        );
    }

    /// The remote sends a packet on the link.
    fn remote_send(&mut self, conn: ConnId, packet: &Packet, split: Option<u8>) {
        let version = self.links[&conn].version();
        let mut bytes = BytesMut::new();
        // A packet the encoder refuses is not sent: the codec's own target covers encoding.
        if packet.encode(version, &mut bytes).is_ok() {
            self.remote_bytes(conn, &bytes, split);
        }
    }

    /// The remote's bytes arrive, in one piece or two. What the remote sent is mirrored first,
    /// so that the bridge's answers are checked against it.
    fn remote_bytes(&mut self, conn: ConnId, bytes: &[u8], split: Option<u8>) {
        let now = self.now;
        let remote = self.links.get_mut(&conn).expect("open link");
        let answered = remote.announced.is_some() || remote.refusal.is_some();
        remote.remote_sent(bytes, now);
        let answer = Some((remote.announced, remote.refusal))
            .filter(|(a, r)| !answered && (a.is_some() || r.is_some()));
        let at = split.map_or(bytes.len(), |s| usize::from(s).min(bytes.len()));
        let (first, second) = bytes.split_at(at);
        self.input(Input::Received { conn, bytes: first });
        if !second.is_empty() && self.links.contains_key(&conn) {
            self.input(Input::Received {
                conn,
                bytes: second,
            });
        }
        if let Some(answer) = answer {
            self.learn(conn, answer);
        }
    }

    /// What the bridge learns of the remote from a CONNACK, mirrored for the will of its next
    /// CONNECT: an accepting one says what the remote takes; an MQTT 5 refusal of the will
    /// makes the bridge ask for less. Unknown once reading was paused: the CONNACK may not
    /// have been read.
    fn learn(&mut self, conn: ConnId, answer: (Option<remote::Announced>, Option<ConnectReason>)) {
        if self.links.get(&conn).is_some_and(|r| r.paused) {
            self.remote_takes = None;
            return;
        }
        let Some((qos, retain)) = &mut self.remote_takes else {
            return;
        };
        match answer {
            (Some(announced), _) => (*qos, *retain) = (announced.max_qos, announced.retain),
            (None, Some(ConnectReason::RetainNotSupported)) if self.bridge.protocol.is_v5() => {
                *retain = false;
            }
            (None, Some(ConnectReason::QoSNotSupported)) if self.bridge.protocol.is_v5() => {
                *qos = QoS::AtMostOnce;
            }
            _ => {}
        }
    }

    fn local(&mut self, slot: u8, op: &LocalOp) {
        match op {
            LocalOp::Connect {
                version,
                client,
                clean_start,
                session_expiry,
            } => {
                if let Some(old) = self.live(slot) {
                    self.peer_closed(old);
                }
                let conn = self.fresh_conn();
                self.slots[usize::from(slot % LOCAL_SLOTS)] = Some(conn);
                self.peers
                    .insert(conn, Peer::new(self.config.max_packet_size));
                self.opens += 1;
                self.input(Input::Open(Open {
                    conn,
                    listener: ListenerId(0),
                    peer: None,
                    tls_identity: None,
                }));
                let version = match version % 2 {
                    0 => codec::ProtocolVersion::V3_1_1,
                    _ => codec::ProtocolVersion::V5,
                };
                let client_id = ops::local_client_id(*client);
                if client_id == ops::LOCAL_CLIENT_ID {
                    self.impostors.insert(conn);
                }
                let packet = connect(Connect {
                    protocol_version: version,
                    bridge: false,
                    clean_start: *clean_start,
                    keep_alive: 0,
                    properties: if version.is_v5() {
                        ConnectProperties {
                            session_expiry_interval: session_expiry
                                .map(|e| [0, 5, u32::MAX][usize::from(e % 3)]),
                            ..ConnectProperties::default()
                        }
                    } else {
                        ConnectProperties::default()
                    },
                    client_id: ByteString::from(client_id),
                    will: None,
                    username: None,
                    password: None,
                });
                self.local_send(conn, &packet);
            }
            LocalOp::Publish {
                on_line,
                prefix,
                tail,
                qos,
                packet_id,
                retain,
                payload,
            } => {
                let Some(conn) = self.live_or_connect(slot) else {
                    return;
                };
                let topic = on_line
                    .and_then(|l| ops::line_topic(&self.bridge, l, *tail, false))
                    .unwrap_or_else(|| ops::local_topic(*prefix, *tail));
                let qos_pid = match ops::qos(*qos) {
                    QoS::AtMostOnce => QosPid::AtMostOnce,
                    q => QosPid::new(q, ops::packet_id(*packet_id)),
                };
                let packet = Packet::Publish(Publish {
                    dup: false,
                    qos_pid,
                    retain: *retain,
                    topic: ByteString::from(topic),
                    properties: PublishProperties::default(),
                    payload: ops::payload(b'L', *payload),
                });
                self.local_send(conn, &packet);
            }
            LocalOp::Subscribe {
                on_line,
                prefix,
                tail,
                qos,
                packet_id,
            } => {
                let Some(conn) = self.live_or_connect(slot) else {
                    return;
                };
                let filter = on_line
                    .and_then(|l| ops::line_filter(&self.bridge, l))
                    .unwrap_or_else(|| ops::local_filter(*prefix, *tail));
                let packet = Packet::Subscribe(Subscribe {
                    packet_id: ops::packet_id(*packet_id),
                    properties: SubscribeProperties::default(),
                    subscriptions: vec![Subscription {
                        filter: ByteString::from(filter),
                        options: SubscriptionOptions::new(ops::qos(*qos)),
                    }],
                });
                self.local_send(conn, &packet);
            }
            LocalOp::Ack { kind, id } => {
                let Some(conn) = self.live_or_connect(slot) else {
                    return;
                };
                self.local_send(conn, &ack(*kind, ops::packet_id(*id), false));
            }
            LocalOp::Close => {
                if let Some(conn) = self.live(slot) {
                    self.peer_closed(conn);
                }
            }
        }
    }

    /// The open connection in a slot; without one, a client connects there first (MQTT 5,
    /// clean start, the slot's client id), so that publishing takes one operation.
    fn live_or_connect(&mut self, slot: u8) -> Option<ConnId> {
        if self.live(slot).is_none() {
            self.local(
                slot,
                &LocalOp::Connect {
                    version: 1,
                    client: slot % LOCAL_SLOTS,
                    clean_start: true,
                    session_expiry: None,
                },
            );
        }
        self.live(slot)
    }

    /// A local client sends a packet, if its connection is still open (the broker may have
    /// refused it as it opened).
    fn local_send(&mut self, conn: ConnId, packet: &Packet) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let mut bytes = BytesMut::new();
        if packet.encode(peer.encoding_version(), &mut bytes).is_ok() {
            peer.client_sent(&bytes);
            self.input(Input::Received {
                conn,
                bytes: &bytes,
            });
        }
    }

    fn peer_closed(&mut self, conn: ConnId) {
        self.peers.remove(&conn);
        self.closed.insert(conn);
        self.input(Input::Closed { conn });
    }

    /// Moves the clock to `ms` later, ticking at every deadline the broker asks for on the way.
    fn advance(&mut self, ms: u64) {
        let target = self.now.plus_millis(ms);
        for _ in 0..MAX_TICKS.min(self.ticks_left) {
            match self.broker.poll_timeout() {
                Some(t) if t <= target => {
                    self.ticks_left -= 1;
                    self.now = self.now.max(t);
                    self.check_deadlines();
                    self.input(Input::Tick);
                }
                _ => break,
            }
        }
        let overdue = self.broker.poll_timeout().is_some_and(|t| t <= target);
        self.now = self.now.max(target);
        // With the tick budget spent, deadlines before the target are still to be handled.
        if !overdue {
            self.check_deadlines();
        }
        self.input(Input::Tick);
    }

    /// The broker stops without warning; the driver forgets every connection and the dial it
    /// was making, and restarts the broker from what its disk kept.
    fn crash(&mut self, extra: u16) {
        let (state, disk) = self.disk.crash(extra);
        self.closed.extend(self.peers.keys().copied());
        self.closed.extend(self.links.keys().copied());
        self.peers.clear();
        self.links.clear();
        self.dialing = None;
        self.last_dial = None;
        self.remote_takes = Some((QoS::ExactlyOnce, true));
        self.shut_down = false;
        self.opens = 0;
        self.bytes_sent = 0;
        self.disk = disk;
        self.broker = Broker::recover(self.config.clone(), &state, self.now);
        self.drain();
        self.check();
    }

    fn input(&mut self, input: Input<'_>) {
        if self.trace {
            println!("{:?} <- {input:?}", self.now);
        }
        self.broker.handle(self.now, input);
        self.drain();
        self.check();
    }

    /// Carries out every action, checking each; reports durability at once when the disk does.
    fn drain(&mut self) {
        loop {
            while let Some(action) = self.broker.poll_action() {
                self.action(action);
            }
            if !self.auto_durable {
                return;
            }
            let Some(lsn) = self.disk.make_durable(None) else {
                return;
            };
            self.broker.handle(self.now, Input::Durable { lsn });
        }
    }

    fn action(&mut self, action: Action) {
        if self.trace {
            println!("    -> {action:?}");
        }
        let conn = match &action {
            Action::Send { conn, .. }
            | Action::Close { conn }
            | Action::PauseRead { conn }
            | Action::ResumeRead { conn } => Some(*conn),
            Action::Persist { .. } | Action::Dial { .. } => None,
        };
        if let Some(conn) = conn {
            assert!(
                conn.0 < self.next_conn,
                "an action for a connection never opened: {action:?}"
            );
            // A stray dial's connection is closed by the broker once; anything else for a
            // closed connection is a mistake.
            assert!(
                !self.closed.contains(&conn),
                "an action for a closed connection: {action:?}"
            );
        }
        match action {
            Action::Send { conn, bytes } => {
                self.bytes_sent += bytes.len() as u64;
                if let Some(remote) = self.links.get_mut(&conn) {
                    remote.bridge_sent(&bytes, self.now);
                } else if let Some(peer) = self.peers.get_mut(&conn) {
                    peer.broker_sent(&bytes);
                } else {
                    panic!("bytes for connection {conn:?}, which is not open");
                }
            }
            Action::Close { conn } => {
                self.peers.remove(&conn);
                self.links.remove(&conn);
                self.closed.insert(conn);
            }
            Action::PauseRead { conn } => {
                if let Some(remote) = self.links.get_mut(&conn) {
                    remote.paused = true;
                }
            }
            Action::ResumeRead { .. } => {}
            Action::Dial { bridge, address } => self.dial(bridge, address),
            Action::Persist { lsn, bytes } => {
                assert!(self.config.persistence, "Persist without persistence");
                self.disk.persist(lsn, &bytes);
            }
        }
    }

    /// The broker asks for a dial: its only bridge, an address it has, one dial at a time,
    /// not after shutdown, and not sooner than the backoff after the previous dial.
    fn dial(&mut self, bridge: BridgeId, address: usize) {
        assert_eq!(bridge, BRIDGE, "a dial for a bridge not configured");
        assert!(
            address < self.bridge.addresses.len(),
            "a dial for address {address} of {}",
            self.bridge.addresses.len()
        );
        assert!(!self.shut_down, "a dial after shutdown");
        assert!(
            self.dialing.is_none(),
            "a second dial before the first was answered"
        );
        // A link the broker closed may still look open to the driver while its close waits for
        // the log; once all is durable it cannot.
        if self.all_durable() {
            assert!(
                self.links.is_empty(),
                "a dial while a link is open: {:?}",
                self.links.keys()
            );
        }
        if let Some(last) = self.last_dial {
            let wait = match self.bridge.restart {
                Backoff::Constant { secs } => u64::from(secs) * 1000,
                Backoff::Jitter { base_secs, .. } => u64::from(base_secs) * 1000,
            }
            .max(MIN_WAIT_MS);
            assert!(
                self.now >= last.plus_millis(wait),
                "a dial at {:?}, {wait} ms after the one at {last:?} not yet passed",
                self.now
            );
        }
        self.dialing = Some(address);
        self.last_dial = Some(self.now);
    }

    /// After every input.
    fn check(&self) {
        if let Some(t) = self.broker.poll_timeout() {
            assert!(
                t >= self.now,
                "poll_timeout {t:?} is before now {:?}",
                self.now
            );
        }
        let s = self.broker.stats();
        let open = (self.peers.len() + self.links.len()) as u64;
        if self.all_durable() {
            assert_eq!(s.connections_open, open, "connections open");
            assert_eq!(s.bytes_sent, self.bytes_sent, "bytes sent");
        } else {
            assert!(s.connections_open <= open, "{s:?}");
            assert!(s.bytes_sent >= self.bytes_sent, "{s:?}");
        }
        assert_eq!(s.connections_opened, self.opens, "connections opened");
        assert!(s.clients_connected <= s.connections_open, "{s:?}");
        assert!(s.clients_connected <= s.sessions, "{s:?}");
        assert!(s.clients_maximum >= s.clients_connected, "{s:?}");
        // The bridge's local session is configured, not asked for: it is not refused for
        // `max_sessions`, the clients' sessions are.
        assert!(s.sessions <= self.config.max_sessions as u64 + 1, "{s:?}");
        assert!(
            s.retained_messages <= self.config.max_retained_messages as u64,
            "{s:?}"
        );
        for (conn, peer) in &self.peers {
            if self.impostors.contains(conn) && peer.packets > 0 {
                assert!(!peer.accepted, "a client took the bridge's local client id");
            }
        }
    }

    /// After every operation: what the remote's packets must have led to. Output and closes
    /// held for the log, reading paused and output blocked can all delay it, so each check
    /// waits for none of them to apply.
    fn check_after_op(&self) {
        if !self.all_durable() {
            return;
        }
        if self.shut_down {
            assert!(
                self.links.is_empty() && self.peers.is_empty(),
                "connections still open after shutdown"
            );
        }
        for (conn, remote) in self.links.iter().filter(|(_, r)| !r.paused) {
            assert!(
                remote.ending.is_none(),
                "the remote sent what ends the link, and link {conn:?} is still open"
            );
            if let Some(announced) = remote.announced
                && !remote.blocked
            {
                let expected = remote.expected_subscriptions(announced.max_qos);
                assert_eq!(
                    remote.subscribes,
                    usize::from(!expected.is_empty()),
                    "SUBSCRIBEs after CONNACK, for {expected:?}"
                );
            }
        }
        self.check_deadlines();
    }

    /// What must have happened by now on each link. Called after every operation, and as
    /// time advances just before the broker is woken at its next deadline (nothing of the
    /// broker's is due before it, so whatever is overdue then is late).
    fn check_deadlines(&self) {
        if !self.all_durable() {
            return;
        }
        for (conn, remote) in self.links.iter().filter(|(_, r)| !r.paused) {
            let Some(announced) = remote.announced else {
                assert!(
                    self.now <= remote.dialed_at.plus_millis(self.config.connect_timeout_ms),
                    "no CONNACK within the connect timeout, and link {conn:?} is still open"
                );
                continue;
            };
            let keep_alive = u64::from(announced.keep_alive) * 1000;
            if keep_alive == 0 {
                continue;
            }
            // [MQTT-3.1.2-24]: the remote must be heard within 1.5 keep alive periods.
            assert!(
                self.now <= remote.last_from_remote.plus_millis(keep_alive * 3 / 2),
                "the remote was silent for 1.5 keep alive periods and link {conn:?} is still open"
            );
            // [MQTT-3.1.2-23] (3.1.1) [MQTT-3.1.2-22] (5.0): no more than a keep alive period
            // between two packets of the bridge; PINGREQ when it has nothing else to send.
            if !remote.blocked {
                assert!(
                    self.now <= remote.last_from_bridge.plus_millis(keep_alive),
                    "the bridge sent nothing for a keep alive period on link {conn:?}, since {:?}",
                    remote.last_from_bridge
                );
            }
        }
    }
}

/// A packet the remote sends.
fn remote_packet(op: &RemoteOp, version: codec::ProtocolVersion, cfg: &BridgeConfig) -> Packet {
    let v5 = version.is_v5();
    match op {
        RemoteOp::ConnAck(c) => {
            let refusals = &ConnectReason::ALL[1..];
            let reason = c.refuse.map_or(ConnectReason::Success, |r| {
                refusals[usize::from(r) % refusals.len()]
            });
            let success = reason == ConnectReason::Success;
            connack(ConnAck {
                session_present: c.session_present && success,
                reason,
                properties: if v5 {
                    ConnAckProperties {
                        receive_maximum: c
                            .receive_maximum
                            .and_then(|r| NonZeroU16::new(u16::from(r % 4))),
                        maximum_packet_size: c
                            .maximum_packet_size
                            .and_then(|m| NonZeroU32::new(u32::from(m % 300))),
                        maximum_qos: c.maximum_qos.map(|one| {
                            if one {
                                QoS::AtLeastOnce
                            } else {
                                QoS::AtMostOnce
                            }
                        }),
                        retain_available: c.retain_available,
                        topic_alias_maximum: c.topic_alias_maximum.map(|t| u16::from(t % 4)),
                        server_keep_alive: c.server_keep_alive.map(|k| u16::from(k % 4) * 2),
                        ..ConnAckProperties::default()
                    }
                } else {
                    ConnAckProperties::default()
                },
            })
        }
        RemoteOp::Publish(p) => {
            let qos_pid = match ops::qos(p.qos) {
                QoS::AtMostOnce => QosPid::AtMostOnce,
                q => QosPid::new(q, ops::packet_id(p.packet_id)),
            };
            Packet::Publish(Publish {
                dup: p.dup && qos_pid != QosPid::AtMostOnce,
                qos_pid,
                retain: p.retain,
                topic: ByteString::from(
                    p.on_line
                        .and_then(|l| ops::line_topic(cfg, l, p.tail, true))
                        .unwrap_or_else(|| ops::remote_topic(p.prefix, p.tail)),
                ),
                properties: if v5 {
                    PublishProperties {
                        payload_format_indicator: p.expiry.map(|_| PayloadFormat::Utf8),
                        message_expiry_interval: p.expiry.map(|e| u32::from(e % 4) * 2),
                        topic_alias: p
                            .topic_alias
                            .and_then(|a| NonZeroU16::new(u16::from(a % 3))),
                        subscription_identifiers: p
                            .subscription_id
                            .map(|s| vec![u32::from(s % 3) + 1])
                            .unwrap_or_default(),
                        ..PublishProperties::default()
                    }
                } else {
                    PublishProperties::default()
                },
                payload: ops::payload(b'R', p.payload),
            })
        }
        RemoteOp::Ack { kind, id, fail } => ack(*kind, ops::packet_id(*id), *fail),
        RemoteOp::SubAck { id, reasons } => Packet::SubAck(SubAck {
            packet_id: ops::packet_id(*id),
            properties: Default::default(),
            reasons: (0..=reasons % 3)
                .map(|i| {
                    SubAckReason::ALL
                        [usize::from(reasons.wrapping_add(i)) % SubAckReason::ALL.len()]
                })
                .collect(),
        }),
        RemoteOp::Disconnect { reason } => {
            let all = DisconnectReason::ALL;
            Packet::Disconnect(Disconnect::new(all[usize::from(*reason) % all.len()]))
        }
        RemoteOp::PingResp => Packet::PingResp,
        RemoteOp::Wrong(n) => match n % 7 {
            0 => connect(Connect {
                protocol_version: version,
                bridge: false,
                clean_start: true,
                keep_alive: 0,
                properties: ConnectProperties::default(),
                client_id: ByteString::from("x"),
                will: None,
                username: None,
                password: None,
            }),
            1 => Packet::Subscribe(Subscribe {
                packet_id: ops::packet_id(*n),
                properties: SubscribeProperties::default(),
                subscriptions: vec![Subscription {
                    filter: ByteString::from("#"),
                    options: SubscriptionOptions::new(QoS::AtMostOnce),
                }],
            }),
            2 => Packet::Unsubscribe(Unsubscribe {
                packet_id: ops::packet_id(*n),
                properties: UnsubscribeProperties::default(),
                filters: vec![ByteString::from("#")],
            }),
            3 => Packet::PingReq,
            4 => Packet::UnsubAck(UnsubAck {
                packet_id: ops::packet_id(*n),
                properties: Default::default(),
                reasons: Vec::new(),
            }),
            5 => Packet::Auth(Auth {
                reason: AuthReason::ReAuthenticate,
                properties: Default::default(),
            }),
            _ => connack(ConnAck {
                session_present: false,
                reason: ConnectReason::Success,
                properties: ConnAckProperties::default(),
            }),
        },
    }
}

/// An acknowledgement: `kind` picks PUBACK, PUBREC, PUBREL or PUBCOMP; `fail` an error reason
/// where the packet has one.
fn ack(kind: u8, id: codec::PacketId, fail: bool) -> Packet {
    let reason = if fail {
        PubAckReason::UnspecifiedError
    } else {
        PubAckReason::Success
    };
    match kind % 4 {
        0 => {
            let mut a = PubAck::success(id);
            a.reason = reason;
            Packet::PubAck(a)
        }
        1 => {
            let mut r = PubRec::success(id);
            r.reason = reason;
            Packet::PubRec(r)
        }
        2 => Packet::PubRel(PubRel::success(id)),
        _ => Packet::PubComp(PubComp::success(id)),
    }
}

/// What the remote owes, as a packet; `fail` answers with an error reason where there is one.
fn response(owed: Owed, fail: bool) -> Packet {
    match owed {
        Owed::PubAck(id) => ack(0, id, fail),
        Owed::PubRec(id) => ack(1, id, fail),
        Owed::PubRel(id) => ack(2, id, fail),
        Owed::PubComp(id) => ack(3, id, fail),
        Owed::SubAck(id, n) => Packet::SubAck(SubAck {
            packet_id: id,
            properties: Default::default(),
            reasons: vec![
                if fail {
                    SubAckReason::UnspecifiedError
                } else {
                    SubAckReason::GrantedQoS1
                };
                n
            ],
        }),
        Owed::PingResp => Packet::PingResp,
    }
}
