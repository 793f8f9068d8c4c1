//! One connection as its client sees it: what the client sent (parsed as the broker parses it,
//! to learn the protocol version and the limits the client announced), and every packet the
//! broker sent, each checked against those limits.

use bytes::{Bytes, BytesMut};
use midge_core::codec::{self, Packet, PacketId, ProtocolVersion, QosPid};
use std::collections::BTreeSet;

/// A response the client owes the broker, named by its packet type.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    PubAck(PacketId),
    PubRec(PacketId),
    PubRel(PacketId),
    PubComp(PacketId),
}

/// A connection's two byte streams and what they say.
#[derive(Debug)]
pub struct Peer {
    /// Bytes the client sent that are not yet parsed.
    sent: BytesMut,
    /// The first packet (the CONNECT) has been read, or found malformed.
    connect_seen: bool,
    /// The version the connection speaks: that of its CONNECT, or the one the broker answers a
    /// malformed CONNECT in.
    pub version: Option<ProtocolVersion>,
    /// The client's Maximum Packet Size (MQTT 5), else no limit.
    max_packet_size: u32,
    /// The client's Receive Maximum (MQTT 5), else none.
    receive_maximum: Option<u16>,
    /// The client's Topic Alias Maximum (MQTT 5; 0 when absent).
    topic_alias_maximum: u16,
    /// The broker's maximum, which its decoder applies to what the client sends.
    broker_max_packet_size: u32,
    /// Bytes from the broker not yet decoded.
    received: BytesMut,
    /// Packets decoded from the broker.
    pub packets: usize,
    /// Outbound QoS 1 and 2 packet ids the client has not completed (MQTT 5's send quota).
    unacked: BTreeSet<PacketId>,
    /// Responses the client owes, oldest first.
    pub owed: Vec<Owed>,
    /// The broker told the connection it was accepted.
    pub accepted: bool,
}

impl Peer {
    pub fn new(broker_max_packet_size: u32) -> Peer {
        Peer {
            sent: BytesMut::new(),
            connect_seen: false,
            version: None,
            max_packet_size: u32::MAX,
            receive_maximum: None,
            topic_alias_maximum: 0,
            broker_max_packet_size,
            received: BytesMut::new(),
            packets: 0,
            unacked: BTreeSet::new(),
            owed: Vec::new(),
            accepted: false,
        }
    }

    /// The version packets are encoded in for this connection (MQTT 5 before CONNECT).
    pub fn encoding_version(&self) -> ProtocolVersion {
        self.version.unwrap_or(ProtocolVersion::V5)
    }

    /// Records bytes the client sends, parsing whole packets as the broker does.
    pub fn client_sent(&mut self, bytes: &[u8]) {
        self.sent.extend_from_slice(bytes);
        loop {
            let decoding = if self.connect_seen {
                self.version.unwrap_or(ProtocolVersion::V5)
            } else {
                let peeked = codec::peek_connect_version(&self.sent);
                if peeked.is_some() {
                    self.version = peeked;
                }
                peeked.unwrap_or(ProtocolVersion::V5)
            };
            match codec::decode_from(&mut self.sent, decoding, self.broker_max_packet_size) {
                Ok(Some(packet)) => self.client_packet(packet),
                Ok(None) => return,
                Err(_) => {
                    // The broker closes the connection here; nothing after counts.
                    self.connect_seen = true;
                    self.sent.clear();
                    return;
                }
            }
        }
    }

    fn client_packet(&mut self, packet: Packet) {
        if !self.connect_seen {
            self.connect_seen = true;
            if let Packet::Connect(c) = &packet {
                self.version = Some(c.protocol_version);
                if c.protocol_version == ProtocolVersion::V5 {
                    let p = &c.properties;
                    self.max_packet_size = p.maximum_packet_size.map_or(u32::MAX, |m| m.get());
                    self.receive_maximum = Some(p.receive_maximum.map_or(u16::MAX, |m| m.get()));
                    self.topic_alias_maximum = p.topic_alias_maximum.unwrap_or(0);
                }
            }
            return;
        }
        match packet {
            Packet::PubAck(a) => {
                self.unacked.remove(&a.packet_id);
            }
            Packet::PubComp(c) => {
                self.unacked.remove(&c.packet_id);
            }
            Packet::PubRec(r) if r.reason.is_error() => {
                self.unacked.remove(&r.packet_id);
            }
            _ => {}
        }
    }

    /// Decodes what the broker sent and checks each packet.
    pub fn broker_sent(&mut self, bytes: &Bytes) {
        assert!(!bytes.is_empty(), "an empty Send");
        self.received.extend_from_slice(bytes);
        let version = self.encoding_version();
        loop {
            // [MQTT-3.1.2-27] (5.0): nothing larger than the client's Maximum Packet Size.
            let packet = match codec::decode_from(&mut self.received, version, self.max_packet_size)
            {
                Ok(Some(packet)) => packet,
                Ok(None) => return,
                Err(e) => panic!(
                    "the broker sent bytes that do not decode in {version:?} within the client's \
                     maximum packet size {}: {e:?}",
                    self.max_packet_size
                ),
            };
            self.broker_packet(packet, version);
        }
    }

    fn broker_packet(&mut self, packet: Packet, version: ProtocolVersion) {
        self.packets += 1;
        if self.packets == 1 {
            // [MQTT-3.2.0-1] (3.1.1), [MQTT-3.2.0-1] (5.0): CONNACK comes first.
            assert!(
                matches!(packet, Packet::ConnAck(_)),
                "the first packet sent is not CONNACK: {packet:?}"
            );
        }
        match &packet {
            Packet::ConnAck(ack) => {
                assert_eq!(self.packets, 1, "a second CONNACK: {ack:?}");
                self.accepted = ack.reason == codec::ConnectReason::Success;
            }
            Packet::Publish(p) => {
                assert!(self.accepted, "PUBLISH before a successful CONNACK: {p:?}");
                if let Some(alias) = p.properties.topic_alias {
                    // [MQTT-3.3.2-11] (5.0)
                    assert!(
                        version == ProtocolVersion::V5 && alias.get() <= self.topic_alias_maximum,
                        "topic alias {alias} sent to a client whose maximum is {}",
                        self.topic_alias_maximum
                    );
                }
                assert!(
                    !p.topic.is_empty() || p.properties.topic_alias.is_some(),
                    "PUBLISH with neither topic nor alias: {p:?}"
                );
                match p.qos_pid {
                    QosPid::AtMostOnce => {}
                    QosPid::AtLeastOnce(id) => {
                        self.unacked.insert(id);
                        self.owe(Owed::PubAck(id));
                    }
                    QosPid::ExactlyOnce(id) => {
                        self.unacked.insert(id);
                        self.owe(Owed::PubRec(id));
                    }
                }
                if let Some(max) = self.receive_maximum {
                    // [MQTT-3.3.4-9] (5.0)
                    assert!(
                        self.unacked.len() <= usize::from(max),
                        "{} QoS 1/2 messages unacknowledged, Receive Maximum {max}",
                        self.unacked.len()
                    );
                }
            }
            Packet::PubRec(r) if !r.reason.is_error() => self.owe(Owed::PubRel(r.packet_id)),
            Packet::PubRel(r) => self.owe(Owed::PubComp(r.packet_id)),
            Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubComp(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp
            | Packet::Disconnect(_) => {}
            Packet::Auth(_) => assert_eq!(version, ProtocolVersion::V5, "AUTH before MQTT 5"),
            Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq => panic!("the broker sent a client's packet: {packet:?}"),
        }
    }

    fn owe(&mut self, owed: Owed) {
        if !self.owed.contains(&owed) {
            self.owed.push(owed);
        }
    }
}
