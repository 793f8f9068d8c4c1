//! An in-memory world for broker tests: fake clients exchange encoded packets with a real
//! `Broker`, with no sockets and a virtual clock. Everything the broker sends is decoded in the
//! receiving client's protocol version, so tests assert on packets, not bytes.
#![allow(dead_code, unused_imports)] // Each test file uses a different part of the harness.

use bytes::{Bytes, BytesMut};
use midge_core::broker::bridge::BridgeId;
use midge_core::broker::{Action, Broker, Config, ConnId, Input, ListenerId, Open, Time};
use midge_core::codec::{
    self, ByteString, ConnAck, Connect, ConnectProperties, ConnectReason, Disconnect,
    DisconnectReason, LastWill, Packet, PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel,
    Publish, PublishProperties, QoS, QosPid, SubAck, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, Unsubscribe, UnsubscribeProperties, WillProperties,
};
use std::collections::{BTreeMap, BTreeSet};

pub use midge_core::codec::ProtocolVersion::{V3_1, V3_1_1, V5};

/// The broker and what each connection has received.
pub struct World {
    pub broker: Broker,
    pub now: Time,
    next_conn: u64,
    /// Bytes received per connection and not yet decoded.
    inbox: BTreeMap<ConnId, BytesMut>,
    /// Version each connection's bytes are decoded in.
    versions: BTreeMap<ConnId, ProtocolVersion>,
    closed: BTreeSet<ConnId>,
    /// Connections the broker asked not to be read.
    paused: BTreeSet<ConnId>,
    /// Every action in order, for determinism checks.
    pub log: Vec<Action>,
    /// Records the broker asked to persist, in order.
    pub disk: BytesMut,
    /// The last LSN written to `disk`, and the last reported durable.
    pub written: u64,
    pub durable: u64,
    /// Report records durable as soon as they are written (a disk with instant fsync).
    pub auto_durable: bool,
    /// The length of `disk` that was reported durable: what a crash keeps.
    pub durable_len: usize,
    /// `Action::Dial`s not yet answered, in order.
    pub dials: Vec<(BridgeId, usize)>,
}

impl World {
    pub fn new(config: Config) -> World {
        World {
            broker: Broker::new(config),
            now: Time::ZERO,
            next_conn: 1,
            inbox: BTreeMap::new(),
            versions: BTreeMap::new(),
            closed: BTreeSet::new(),
            paused: BTreeSet::new(),
            log: Vec::new(),
            disk: BytesMut::new(),
            written: 0,
            durable: 0,
            auto_durable: true,
            durable_len: 0,
            dials: Vec::new(),
        }
    }

    /// A world around a broker recovered from `disk` (everything on it is durable).
    pub fn recovered(config: Config, disk: &BytesMut, now: Time) -> World {
        let data = bytes::Bytes::copy_from_slice(disk);
        let scan = midge_core::persist::scan(&data);
        assert!(scan.damage.is_none(), "damaged log: {:?}", scan.damage);
        let mut state = midge_core::persist::State::default();
        for (lsn, record) in &scan.records {
            state.apply(*lsn, record).expect("consistent log");
        }
        let mut w = World::new(config.clone());
        w.broker = Broker::recover(config, &state, now);
        w.now = now;
        w.disk = disk.clone();
        w.written = state.last_lsn();
        w.durable = state.last_lsn();
        w.durable_len = w.disk.len();
        w
    }

    /// Reports everything written so far as durable.
    pub fn make_durable(&mut self) {
        if self.durable < self.written {
            self.durable = self.written;
            self.durable_len = self.disk.len();
            let lsn = self.durable;
            self.broker.handle(self.now, Input::Durable { lsn });
            self.drain_once();
        }
    }

    pub fn default() -> World {
        World::new(Config::default())
    }

    pub fn input(&mut self, input: Input<'_>) {
        self.broker.handle(self.now, input);
        self.drain();
    }

    /// Collects every action the broker has for its drivers, reporting records durable at once
    /// when `auto_durable` is set.
    pub fn drain(&mut self) {
        self.drain_once();
        if self.auto_durable {
            self.make_durable();
        }
    }

    fn drain_once(&mut self) {
        while let Some(action) = self.broker.poll_action() {
            match &action {
                Action::Send { conn, bytes } => {
                    assert!(!self.closed.contains(conn), "bytes sent to closed {conn:?}");
                    self.inbox
                        .entry(*conn)
                        .or_default()
                        .extend_from_slice(bytes);
                }
                Action::Close { conn } => {
                    self.closed.insert(*conn);
                }
                Action::PauseRead { conn } => {
                    self.paused.insert(*conn);
                }
                Action::ResumeRead { conn } => {
                    self.paused.remove(conn);
                }
                Action::Persist { lsn, bytes } => {
                    self.disk.extend_from_slice(bytes);
                    self.written = *lsn;
                }
                // A test of bridges answers it.
                Action::Dial { bridge, address } => self.dials.push((*bridge, *address)),
            }
            self.log.push(action);
        }
    }

    /// A connection id no connection of this world uses.
    pub fn fresh_conn(&mut self) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        conn
    }

    /// Answers a bridge's dial with a new connection whose bytes are decoded in `version`
    /// (the test plays the remote broker on it).
    pub fn dialed(&mut self, bridge: BridgeId, version: ProtocolVersion) -> ConnId {
        let conn = self.fresh_conn();
        self.versions.insert(conn, version);
        self.input(Input::Dialed { bridge, conn });
        conn
    }

    /// Takes the bytes the broker sent on a connection and not yet read.
    pub fn take_bytes(&mut self, conn: ConnId) -> BytesMut {
        self.inbox.remove(&conn).unwrap_or_default()
    }

    /// Hands the broker `Input::Tick` at the current time.
    pub fn tick(&mut self) {
        self.input(Input::Tick);
    }

    /// Opens a connection without sending anything.
    pub fn open(&mut self, version: ProtocolVersion) -> ConnId {
        self.open_on(version, ListenerId(0))
    }

    /// Opens a connection on a given listener without sending anything.
    pub fn open_on(&mut self, version: ProtocolVersion, listener: ListenerId) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.versions.insert(conn, version);
        self.input(Input::Open(Open {
            conn,
            listener,
            peer: None,
            tls_identity: None,
        }));
        conn
    }

    pub fn send_raw(&mut self, conn: ConnId, bytes: &[u8]) {
        self.input(Input::Received { conn, bytes });
    }

    pub fn send(&mut self, conn: ConnId, packet: &Packet) {
        let version = self.versions[&conn];
        let mut buf = BytesMut::new();
        packet
            .encode(version, &mut buf)
            .expect("test packet encodes");
        self.send_raw(conn, &buf);
    }

    /// The peer closes its side.
    pub fn peer_close(&mut self, conn: ConnId) {
        self.input(Input::Closed { conn });
    }

    pub fn blocked(&mut self, conn: ConnId) {
        self.input(Input::Blocked { conn });
    }

    pub fn writable(&mut self, conn: ConnId) {
        self.input(Input::Writable { conn });
    }

    /// Moves the clock forward, ticking at every deadline the broker asks for on the way.
    pub fn advance_ms(&mut self, ms: u64) {
        let target = self.now.plus_millis(ms);
        while let Some(t) = self.broker.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.input(Input::Tick);
        }
        self.now = target;
        self.input(Input::Tick);
    }

    pub fn advance_secs(&mut self, s: u64) {
        self.advance_ms(s * 1000);
    }

    /// Every complete packet the connection has received since the last call.
    pub fn recv(&mut self, conn: ConnId) -> Vec<Packet> {
        let version = self.versions[&conn];
        let buf = self.inbox.entry(conn).or_default();
        let mut out = Vec::new();
        while let Some(p) =
            codec::decode_from(buf, version, u32::MAX).expect("broker sends valid packets")
        {
            out.push(p);
        }
        out
    }

    /// Exactly one packet received.
    pub fn recv_one(&mut self, conn: ConnId) -> Packet {
        let mut packets = self.recv(conn);
        assert_eq!(packets.len(), 1, "expected one packet, got {packets:?}");
        packets.remove(0)
    }

    /// Nothing received.
    pub fn recv_none(&mut self, conn: ConnId) {
        let packets = self.recv(conn);
        assert!(packets.is_empty(), "expected nothing, got {packets:?}");
    }

    /// The broker asked the driver to stop reading this connection.
    pub fn is_read_paused(&self, conn: ConnId) -> bool {
        self.paused.contains(&conn)
    }

    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.closed.contains(&conn)
    }

    /// Opens a connection and sends CONNECT; returns the connection and the CONNACK.
    pub fn try_connect(&mut self, connect: Connect) -> (ConnId, ConnAck) {
        let conn = self.open(connect.protocol_version);
        self.send(conn, &Packet::from(connect));
        match self.recv(conn).as_slice() {
            [Packet::ConnAck(ack)] => (conn, (**ack).clone()),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Connects a client that must be accepted.
    pub fn connect(&mut self, connect: Connect) -> (ConnId, ConnAck) {
        let (conn, ack) = self.try_connect(connect);
        assert_eq!(ack.reason, ConnectReason::Success, "CONNACK {ack:?}");
        (conn, ack)
    }

    /// Connects a client with default options.
    pub fn client(&mut self, version: ProtocolVersion, id: &str) -> ConnId {
        self.connect(connect(version, id)).0
    }

    /// Subscribes and checks the SUBACK grants the QoS asked for.
    pub fn subscribe(&mut self, conn: ConnId, filter: &str, qos: QoS) {
        self.send(conn, &subscribe(1, filter, qos));
        match self.recv(conn).first() {
            Some(Packet::SubAck(SubAck { reasons, .. })) => {
                assert_eq!(reasons, &[codec::SubAckReason::granted(qos)]);
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

pub fn connect(version: ProtocolVersion, id: &str) -> Connect {
    Connect {
        protocol_version: version,
        bridge: false,
        clean_start: true,
        keep_alive: 0,
        properties: ConnectProperties::default(),
        client_id: ByteString::from(id),
        will: None,
        username: None,
        password: None,
    }
}

pub fn will(topic: &str, payload: &'static [u8], qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: ByteString::from(topic),
        payload: Bytes::from_static(payload),
        qos,
        retain,
        properties: WillProperties::default(),
    }
}

pub fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

pub fn publish(topic: &str, payload: &'static [u8], qos: QoS, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos_pid: match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            q => QosPid::new(q, pid(packet_id)),
        },
        retain: false,
        topic: ByteString::from(topic),
        properties: PublishProperties::default(),
        payload: Bytes::from_static(payload),
    })
}

pub fn publish_retained(topic: &str, payload: &'static [u8], qos: QoS, packet_id: u16) -> Packet {
    match publish(topic, payload, qos, packet_id) {
        Packet::Publish(mut p) => {
            p.retain = true;
            Packet::Publish(p)
        }
        _ => unreachable!(),
    }
}

pub fn subscribe(packet_id: u16, filter: &str, qos: QoS) -> Packet {
    subscribe_with(packet_id, filter, SubscriptionOptions::new(qos))
}

pub fn subscribe_with(packet_id: u16, filter: &str, options: SubscriptionOptions) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(packet_id),
        properties: SubscribeProperties::default(),
        subscriptions: vec![Subscription {
            filter: ByteString::from(filter),
            options,
        }],
    })
}

pub fn unsubscribe(packet_id: u16, filter: &str) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(packet_id),
        properties: UnsubscribeProperties::default(),
        filters: vec![ByteString::from(filter)],
    })
}

pub fn puback(packet_id: PacketId) -> Packet {
    Packet::PubAck(PubAck::success(packet_id))
}

pub fn pubrec(packet_id: PacketId) -> Packet {
    Packet::PubRec(PubRec::success(packet_id))
}

pub fn pubrel(packet_id: PacketId) -> Packet {
    Packet::PubRel(PubRel::success(packet_id))
}

pub fn pubcomp(packet_id: PacketId) -> Packet {
    Packet::PubComp(PubComp::success(packet_id))
}

pub fn disconnect() -> Packet {
    Packet::Disconnect(Disconnect::new(DisconnectReason::NormalDisconnection))
}

/// The PUBLISH packets among `packets`.
pub fn publishes(packets: &[Packet]) -> Vec<&Publish> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Unwraps a single PUBLISH.
pub fn as_publish(packet: &Packet) -> &Publish {
    match packet {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// The packets with their Reason Strings taken out, for comparing reason codes exactly where
/// the words do not matter.
pub fn without_reason_strings(packets: Vec<Packet>) -> Vec<Packet> {
    packets
        .into_iter()
        .map(|mut p| {
            match &mut p {
                Packet::PubAck(a) | Packet::PubRec(a) => a.properties.reason_string = None,
                Packet::SubAck(a) => a.properties.reason_string = None,
                Packet::UnsubAck(a) => a.properties.reason_string = None,
                Packet::Disconnect(d) => d.properties.reason_string = None,
                Packet::ConnAck(c) => c.properties.reason_string = None,
                _ => {}
            }
            p
        })
        .collect()
}
