//! The operations a broker run is made of, generated with `arbitrary` from the fuzzer's bytes,
//! and the packets they stand for. Client ids, topics and filters come from small sets so that
//! clients meet: take over each other's sessions, match each other's subscriptions.

use arbitrary::Arbitrary;
use bytes::Bytes;
use midge_core::broker::Config;
use midge_core::codec::{
    ByteString, Connect, ConnectProperties, Disconnect, DisconnectReason, LastWill, Packet,
    PacketId, PayloadFormat, ProtocolVersion, PubAck, PubAckReason, PubComp, PubRec, PubRel,
    Publish, PublishProperties, QoS, QosPid, RetainHandling, Subscribe, SubscribeProperties,
    Subscription, SubscriptionOptions, Unsubscribe, UnsubscribeProperties, WillProperties,
};
use std::num::{NonZeroU16, NonZeroU32};

/// Connections a run addresses, by slot.
pub const SLOTS: u8 = 4;

const CLIENT_IDS: &[&str] = &["a", "b", "c", "", "a/+"];
const TOPICS: &[&str] = &["a", "a/b", "a/b/c", "b", "$SYS/x", "", "a/+", "#", "/"];
const FILTERS: &[&str] = &[
    "a",
    "a/+",
    "#",
    "+/b/#",
    "a/b/c",
    "$share/g/a/#",
    "$share/g/#",
    "$SYS/#",
    "+",
    "a/#/b",
    "$share/g",
    "",
];

/// A whole run: the broker's configuration, then the operations.
#[derive(Debug, Arbitrary)]
pub struct Run {
    pub config: ConfigChoice,
    pub ops: Vec<Op>,
}

/// The configuration, with small limits so that they are reached.
#[derive(Debug, Arbitrary)]
pub struct ConfigChoice {
    persistence: bool,
    /// Report each batch durable as soon as it is written.
    pub auto_durable: bool,
    max_connections: Option<u8>,
    max_packet_size: Option<u16>,
    message_size_limit: u8,
    max_inflight_messages: u8,
    max_queued_messages: u8,
    max_queued_bytes: u16,
    queue_qos0_messages: bool,
    max_keepalive: Option<u8>,
    retain_unavailable: bool,
    refuse_zero_length_clientid: bool,
    max_topic_alias: u8,
    max_topic_alias_broker: u8,
    no_response_topic: bool,
    receive_maximum: u8,
    max_subscriptions_per_session: u8,
    max_sessions: u8,
    max_retained_messages: u8,
    small_connection_buffer: bool,
    sys: bool,
}

impl ConfigChoice {
    pub fn config(&self) -> Config {
        let defaults = Config::default();
        let small = |v: u8, low: usize| usize::from(v % 8) + low;
        Config {
            max_connections: self.max_connections.map(|m| usize::from(m % 6)),
            max_packet_size: self
                .max_packet_size
                .map_or(defaults.max_packet_size, |m| u32::from(m.max(2))),
            message_size_limit: u32::from(self.message_size_limit % 64),
            max_inflight_messages: u16::from(self.max_inflight_messages % 5),
            max_queued_messages: small(self.max_queued_messages, 0),
            max_queued_bytes: usize::from(self.max_queued_bytes % 512),
            queue_qos0_messages: self.queue_qos0_messages,
            max_keepalive: self.max_keepalive.map(u16::from),
            retain_available: !self.retain_unavailable,
            allow_zero_length_clientid: !self.refuse_zero_length_clientid,
            max_topic_alias: u16::from(self.max_topic_alias % 4),
            max_topic_alias_broker: u16::from(self.max_topic_alias_broker % 4),
            response_topic_prefix: (!self.no_response_topic).then(|| "r/".to_owned()),
            connect_timeout_ms: 5_000,
            receive_maximum: u16::from(self.receive_maximum % 5).max(1),
            max_subscriptions_per_session: small(self.max_subscriptions_per_session, 1),
            max_sessions: small(self.max_sessions, 1),
            max_retained_messages: small(self.max_retained_messages, 0),
            max_connection_buffer: if self.small_connection_buffer {
                64
            } else {
                defaults.max_connection_buffer
            },
            persistence: self.persistence,
            sys_interval: if self.sys { 10 } else { 0 },
            ..defaults
        }
    }
}

/// One step of a run.
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// A new connection in the slot (the slot's previous connection is closed by its peer).
    Open {
        slot: u8,
    },
    /// The client of the slot sends a packet, in one piece or split in two.
    Send {
        slot: u8,
        packet: PacketOp,
        split: Option<u8>,
    },
    /// The client sends a response it owes (PUBACK, PUBREC, PUBREL, PUBCOMP).
    Respond {
        slot: u8,
        which: u8,
        fail: bool,
    },
    /// The client sends arbitrary bytes.
    Raw {
        slot: u8,
        bytes: Vec<u8>,
    },
    /// The peer closes the connection.
    Close {
        slot: u8,
    },
    Blocked {
        slot: u8,
    },
    Writable {
        slot: u8,
    },
    /// Time passes, by milliseconds or by seconds.
    AdvanceMs {
        ms: u16,
    },
    AdvanceSecs {
        secs: u16,
    },
    /// The disk reports durable everything written, or up to the `upto`th pending batch.
    Durable {
        upto: Option<u8>,
    },
    /// The broker stops without warning and restarts from what the disk kept: everything
    /// durable and `extra` bytes of what was written after it.
    Crash {
        extra: u16,
    },
    Shutdown,
}

/// A packet a client sends.
#[derive(Debug, Arbitrary)]
pub enum PacketOp {
    Connect(ConnectOp),
    Publish(PublishOp),
    Subscribe {
        packet_id: u8,
        filters: Vec<(u8, u8, u8)>,
        subscription_id: Option<u8>,
    },
    Unsubscribe {
        packet_id: u8,
        filters: Vec<u8>,
    },
    PubAck(u8),
    PubRec(u8),
    PubRel(u8),
    PubComp(u8),
    PingReq,
    Disconnect {
        reason: u8,
        session_expiry: Option<u8>,
    },
}

#[derive(Debug, Arbitrary)]
pub struct ConnectOp {
    version: u8,
    client: u8,
    clean_start: bool,
    keep_alive: u8,
    session_expiry: Option<u8>,
    receive_maximum: Option<u8>,
    maximum_packet_size: Option<u16>,
    topic_alias_maximum: Option<u8>,
    request_response_information: Option<bool>,
    request_problem_information: Option<bool>,
    will: Option<WillOp>,
    username: Option<u8>,
}

#[derive(Debug, Arbitrary)]
pub struct WillOp {
    topic: u8,
    qos: u8,
    retain: bool,
    delay: Option<u8>,
    expiry: Option<u8>,
    payload: u8,
}

#[derive(Debug, Arbitrary)]
pub struct PublishOp {
    topic: u8,
    qos: u8,
    packet_id: u8,
    retain: bool,
    dup: bool,
    payload: u8,
    expiry: Option<u8>,
    topic_alias: Option<u8>,
    /// With an alias, leave the topic out (use the alias alone).
    alias_only: bool,
    utf8: Option<bool>,
    bad_utf8_payload: bool,
    response_topic: bool,
    subscription_id: Option<u8>,
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

fn packet_id(n: u8) -> PacketId {
    NonZeroU16::new(u16::from(n % 8) + 1).unwrap_or(NonZeroU16::MIN)
}

fn qos(n: u8) -> QoS {
    QoS::from_bits(n % 3).unwrap_or(QoS::AtMostOnce)
}

/// Session expiry intervals worth trying: none, short, and never.
fn expiry(n: u8) -> u32 {
    match n % 4 {
        0 => 0,
        1 => 2,
        2 => 100,
        _ => u32::MAX,
    }
}

fn payload(n: u8) -> Bytes {
    Bytes::from(vec![b'x'; usize::from(n % 80)])
}

impl PacketOp {
    /// The packet, in the form a client of `version` sends it.
    pub fn packet(&self, version: ProtocolVersion) -> Packet {
        match self {
            PacketOp::Connect(c) => Packet::from(c.connect()),
            PacketOp::Publish(p) => Packet::Publish(p.publish()),
            PacketOp::Subscribe {
                packet_id: id,
                filters,
                subscription_id,
            } => Packet::Subscribe(Subscribe {
                packet_id: packet_id(*id),
                properties: SubscribeProperties {
                    subscription_identifier: subscription_id.map(|s| u32::from(s % 4)),
                    user_properties: Vec::new(),
                },
                subscriptions: filters
                    .iter()
                    .take(4)
                    .map(|(filter, q, options)| Subscription {
                        filter: ByteString::from(pick(FILTERS, *filter)),
                        options: SubscriptionOptions {
                            qos: qos(*q),
                            no_local: version == ProtocolVersion::V5 && options & 1 != 0,
                            retain_as_published: version == ProtocolVersion::V5 && options & 2 != 0,
                            retain_handling: if version == ProtocolVersion::V5 {
                                match (options >> 2) % 3 {
                                    0 => RetainHandling::OnSubscribe,
                                    1 => RetainHandling::OnNewSubscribe,
                                    _ => RetainHandling::Never,
                                }
                            } else {
                                RetainHandling::OnSubscribe
                            },
                        },
                    })
                    .collect(),
            }),
            PacketOp::Unsubscribe {
                packet_id: id,
                filters,
            } => Packet::Unsubscribe(Unsubscribe {
                packet_id: packet_id(*id),
                properties: UnsubscribeProperties::default(),
                filters: filters
                    .iter()
                    .take(4)
                    .map(|f| ByteString::from(pick(FILTERS, *f)))
                    .collect(),
            }),
            PacketOp::PubAck(id) => Packet::PubAck(PubAck::success(packet_id(*id))),
            PacketOp::PubRec(id) => Packet::PubRec(PubRec::success(packet_id(*id))),
            PacketOp::PubRel(id) => Packet::PubRel(PubRel::success(packet_id(*id))),
            PacketOp::PubComp(id) => Packet::PubComp(PubComp::success(packet_id(*id))),
            PacketOp::PingReq => Packet::PingReq,
            PacketOp::Disconnect {
                reason,
                session_expiry,
            } => {
                let reason = match reason % 3 {
                    0 => DisconnectReason::NormalDisconnection,
                    1 => DisconnectReason::DisconnectWithWillMessage,
                    _ => DisconnectReason::UnspecifiedError,
                };
                let mut d = Disconnect::new(reason);
                if version == ProtocolVersion::V5 {
                    d.properties.session_expiry_interval = session_expiry.map(expiry);
                }
                Packet::Disconnect(d)
            }
        }
    }
}

impl ConnectOp {
    fn connect(&self) -> Connect {
        let version = match self.version % 3 {
            0 => ProtocolVersion::V3_1,
            1 => ProtocolVersion::V3_1_1,
            _ => ProtocolVersion::V5,
        };
        let v5 = version == ProtocolVersion::V5;
        let properties = if v5 {
            ConnectProperties {
                session_expiry_interval: self.session_expiry.map(expiry),
                receive_maximum: self
                    .receive_maximum
                    .and_then(|r| NonZeroU16::new(u16::from(r % 4))),
                maximum_packet_size: self
                    .maximum_packet_size
                    .and_then(|m| NonZeroU32::new(u32::from(m % 200))),
                topic_alias_maximum: self.topic_alias_maximum.map(|t| u16::from(t % 4)),
                request_response_information: self.request_response_information,
                request_problem_information: self.request_problem_information,
                ..ConnectProperties::default()
            }
        } else {
            ConnectProperties::default()
        };
        Connect {
            protocol_version: version,
            bridge: false,
            clean_start: self.clean_start,
            keep_alive: u16::from(self.keep_alive % 4) * 5,
            properties,
            client_id: ByteString::from(pick(CLIENT_IDS, self.client)),
            will: self.will.as_ref().map(|w| LastWill {
                topic: ByteString::from(pick(TOPICS, w.topic)),
                payload: payload(w.payload),
                qos: qos(w.qos),
                retain: w.retain,
                properties: if v5 {
                    WillProperties {
                        will_delay_interval: w.delay.map(|d| u32::from(d % 4) * 3),
                        message_expiry_interval: w.expiry.map(|e| u32::from(e % 4) * 5),
                        ..WillProperties::default()
                    }
                } else {
                    WillProperties::default()
                },
            }),
            username: self
                .username
                .map(|u| ByteString::from(pick(&["u", "v"], u))),
            password: None,
        }
    }
}

impl PublishOp {
    fn publish(&self) -> Publish {
        let alias = self
            .topic_alias
            .and_then(|a| NonZeroU16::new(u16::from(a % 5)));
        let topic = if alias.is_some() && self.alias_only {
            ""
        } else {
            pick(TOPICS, self.topic)
        };
        let qos_pid = match qos(self.qos) {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            q => QosPid::new(q, packet_id(self.packet_id)),
        };
        let mut payload = payload(self.payload).to_vec();
        if self.bad_utf8_payload {
            payload.push(0xff);
        }
        Publish {
            dup: self.dup && qos_pid != QosPid::AtMostOnce,
            qos_pid,
            retain: self.retain,
            topic: ByteString::from(topic),
            properties: PublishProperties {
                payload_format_indicator: self.utf8.map(|u| {
                    if u {
                        PayloadFormat::Utf8
                    } else {
                        PayloadFormat::Unspecified
                    }
                }),
                message_expiry_interval: self.expiry.map(|e| u32::from(e % 4) * 2),
                topic_alias: alias,
                response_topic: self.response_topic.then(|| ByteString::from("resp")),
                subscription_identifiers: self
                    .subscription_id
                    .map(|s| vec![u32::from(s % 3) + 1])
                    .unwrap_or_default(),
                ..PublishProperties::default()
            },
            payload: Bytes::from(payload),
        }
    }
}

/// A response the client owes, as a packet; `fail` answers with an error reason code where the
/// packet has one.
pub fn response(owed: super::peer::Owed, fail: bool) -> Packet {
    use super::peer::Owed;
    let reason = if fail {
        PubAckReason::UnspecifiedError
    } else {
        PubAckReason::Success
    };
    match owed {
        Owed::PubAck(id) => {
            let mut a = PubAck::success(id);
            a.reason = reason;
            Packet::PubAck(a)
        }
        Owed::PubRec(id) => {
            let mut r = PubRec::success(id);
            r.reason = reason;
            Packet::PubRec(r)
        }
        Owed::PubRel(id) => Packet::PubRel(PubRel::success(id)),
        Owed::PubComp(id) => Packet::PubComp(PubComp::success(id)),
    }
}
