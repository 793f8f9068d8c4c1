//! The operations a bridge run is made of, generated with `arbitrary` from the fuzzer's bytes:
//! the bridge's configuration, what the remote broker sends on the link (structured packets, so
//! that runs get past CONNACK, and raw bytes), what the driver answers to dials, local clients
//! on the bridged topics, and time. Topics and filters are built from small sets of prefixes and
//! tails so that the remote's topics, the local clients' and the bridge's lines meet.

use arbitrary::Arbitrary;
use bytes::Bytes;
use midge_core::broker::Config;
use midge_core::broker::bridge::{
    Backoff, BridgeAddress, BridgeConfig, BridgeDirection, BridgeTopic,
};
use midge_core::codec::{ProtocolVersion, QoS};

/// Local client connections a run addresses, by slot.
pub const LOCAL_SLOTS: u8 = 2;

/// The client ids the bridge uses.
pub const REMOTE_CLIENT_ID: &str = "midge-bridge";
pub const LOCAL_CLIENT_ID: &str = "local.midge-bridge";

const PATTERNS: &[&str] = &["#", "a/#", "a/+", "a", "", "+/x", "$SYS/#", "b/#"];
const LOCAL_PREFIXES: &[&str] = &["", "l/", "here/", "l"];
const REMOTE_PREFIXES: &[&str] = &["", "r/", "there/", "r"];
/// Tails of topic names: prefixed by a local or remote prefix they make topics that some lines
/// match and others do not ("" with an empty prefix is no topic at all).
const TAILS: &[&str] = &["a", "a/x", "a/y", "b/c", "q/x", "x", "", "$SYS/x"];
const FILTER_TAILS: &[&str] = &["#", "a/#", "+", "a/+", "q/x"];
const LOCAL_CLIENT_IDS: &[&str] = &["c1", "c2", LOCAL_CLIENT_ID];

/// A whole run: the configuration, then the operations.
#[derive(Debug, Arbitrary)]
pub struct Run {
    pub config: ConfigChoice,
    pub ops: Vec<Op>,
}

/// One `topic` line of the bridge.
#[derive(Debug, Arbitrary)]
pub struct LineChoice {
    pattern: u8,
    direction: u8,
    qos: u8,
    local_prefix: u8,
    remote_prefix: u8,
}

/// The bridge's configuration and the broker's, with small limits so that they are reached.
#[derive(Debug, Arbitrary)]
pub struct ConfigChoice {
    protocol: u8,
    lines: Vec<LineChoice>,
    addresses: u8,
    round_robin: bool,
    clean_session: bool,
    local_clean_session: bool,
    try_private: bool,
    keepalive: u8,
    restart: RestartChoice,
    notifications: bool,
    notifications_local_only: bool,
    notification_topic: u8,
    credentials: u8,
    persistence: bool,
    /// Report each batch durable as soon as it is written.
    pub auto_durable: bool,
    max_packet_size: Option<u16>,
    message_size_limit: u8,
    max_inflight_messages: u8,
    max_queued_messages: u8,
    max_queued_bytes: u16,
    queue_qos0_messages: bool,
    retain_unavailable: bool,
    max_topic_alias_broker: u8,
    receive_maximum: u8,
    max_retained_messages: u8,
    max_sessions: u8,
    small_connection_buffer: bool,
    long_connect_timeout: bool,
}

#[derive(Debug, Arbitrary)]
pub enum RestartChoice {
    Constant(u8),
    Jitter(u8, u8),
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

pub fn qos(n: u8) -> QoS {
    QoS::from_bits(n % 3).unwrap_or(QoS::AtMostOnce)
}

impl ConfigChoice {
    pub fn bridge(&self) -> BridgeConfig {
        let protocol = match self.protocol % 3 {
            0 => ProtocolVersion::V3_1,
            1 => ProtocolVersion::V3_1_1,
            _ => ProtocolVersion::V5,
        };
        let topics = self
            .lines
            .iter()
            .take(4)
            .map(|l| BridgeTopic {
                pattern: pick(PATTERNS, l.pattern).to_owned(),
                direction: match l.direction % 3 {
                    0 => BridgeDirection::In,
                    1 => BridgeDirection::Out,
                    _ => BridgeDirection::Both,
                },
                qos: qos(l.qos),
                local_prefix: pick(LOCAL_PREFIXES, l.local_prefix).to_owned(),
                remote_prefix: pick(REMOTE_PREFIXES, l.remote_prefix).to_owned(),
            })
            .collect();
        BridgeConfig {
            name: "fuzz".to_owned(),
            addresses: (0..=self.addresses % 3)
                .map(|i| BridgeAddress {
                    host: format!("h{i}"),
                    port: 1883,
                })
                .collect(),
            round_robin: self.round_robin,
            topics,
            remote_clientid: REMOTE_CLIENT_ID.to_owned(),
            local_clientid: LOCAL_CLIENT_ID.to_owned(),
            remote_username: (self.credentials % 3 >= 1).then(|| "user".to_owned()),
            remote_password: (self.credentials % 3 == 2).then(|| b"secret".to_vec()),
            clean_session: self.clean_session,
            local_clean_session: self.local_clean_session,
            protocol,
            try_private: self.try_private,
            keepalive_secs: [0, 2, 10, 60][usize::from(self.keepalive % 4)],
            restart: match self.restart {
                RestartChoice::Constant(s) => Backoff::Constant {
                    secs: u32::from(s % 6),
                },
                RestartChoice::Jitter(base, cap) => Backoff::Jitter {
                    base_secs: u32::from(base % 4),
                    cap_secs: u32::from(cap % 40),
                },
            },
            notifications: self.notifications,
            notifications_local_only: self.notifications_local_only,
            notification_topic: match self.notification_topic % 3 {
                0 => format!("$SYS/broker/connection/{REMOTE_CLIENT_ID}/state"),
                1 => "a/state".to_owned(),
                // Not a topic name: notifications are then left out.
                _ => "bad/#".to_owned(),
            },
        }
    }

    pub fn config(&self) -> Config {
        let defaults = Config::default();
        let small = |v: u8, low: usize| usize::from(v % 8) + low;
        Config {
            max_packet_size: self
                .max_packet_size
                .map_or(defaults.max_packet_size, |m| u32::from(m.max(2))),
            message_size_limit: u32::from(self.message_size_limit % 64),
            max_inflight_messages: u16::from(self.max_inflight_messages % 5),
            max_queued_messages: small(self.max_queued_messages, 0),
            max_queued_bytes: usize::from(self.max_queued_bytes % 512),
            queue_qos0_messages: self.queue_qos0_messages,
            retain_available: !self.retain_unavailable,
            max_topic_alias_broker: u16::from(self.max_topic_alias_broker % 4),
            connect_timeout_ms: if self.long_connect_timeout {
                5_000
            } else {
                1_000
            },
            receive_maximum: u16::from(self.receive_maximum % 5).max(1),
            max_sessions: small(self.max_sessions, 1),
            max_retained_messages: small(self.max_retained_messages, 0),
            max_connection_buffer: if self.small_connection_buffer {
                64
            } else {
                defaults.max_connection_buffer
            },
            persistence: self.persistence,
            bridges: vec![self.bridge()],
            ..defaults
        }
    }
}

/// One step of a run.
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// The driver answers the bridge's pending dial: connected.
    Dialed,
    /// The driver answers the bridge's pending dial (if there is one) and the remote accepts
    /// or refuses the link at once: the short way to a link that is up.
    Connected(ConnAckOp),
    /// The driver answers the bridge's pending dial: failed.
    DialFailed,
    /// A `Dialed` no dial asked for, for bridge `bridge % 3` (only bridge 0 exists).
    StrayDialed {
        bridge: u8,
    },
    /// A `DialFailed` no dial asked for.
    StrayDialFailed {
        bridge: u8,
    },
    /// The remote broker sends something on the newest link, in one piece or split in two.
    Remote {
        packet: RemoteOp,
        split: Option<u8>,
    },
    /// The remote answers something it owes (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK,
    /// PINGRESP), or fails it where the packet has a reason code.
    Respond {
        which: u8,
        fail: bool,
    },
    /// The remote sends arbitrary bytes.
    RemoteRaw {
        bytes: Vec<u8>,
    },
    /// The remote, or the network, closes the newest link.
    RemoteClose,
    LinkBlocked,
    LinkWritable,
    /// A local client of this broker does something.
    Local {
        slot: u8,
        op: LocalOp,
    },
    /// Time passes, by milliseconds or by seconds.
    AdvanceMs {
        ms: u16,
    },
    AdvanceSecs {
        secs: u8,
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

/// A packet the remote broker sends on the link.
#[derive(Debug, Arbitrary)]
pub enum RemoteOp {
    ConnAck(ConnAckOp),
    Publish(RemotePublishOp),
    /// An acknowledgement with any packet id: `kind` picks PUBACK, PUBREC, PUBREL or PUBCOMP.
    Ack {
        kind: u8,
        id: u8,
        fail: bool,
    },
    /// A SUBACK for any packet id.
    SubAck {
        id: u8,
        reasons: u8,
    },
    Disconnect {
        reason: u8,
    },
    PingResp,
    /// A packet a server never sends a client (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ), or
    /// one the bridge never asked for (UNSUBACK, AUTH, a second CONNACK).
    Wrong(u8),
}

#[derive(Debug, Clone, Arbitrary)]
pub struct ConnAckOp {
    /// Accepted unless `refuse` names a reason (modulo the refusals).
    pub refuse: Option<u8>,
    pub session_present: bool,
    pub receive_maximum: Option<u8>,
    pub maximum_packet_size: Option<u16>,
    pub maximum_qos: Option<bool>,
    pub retain_available: Option<bool>,
    pub topic_alias_maximum: Option<u8>,
    pub server_keep_alive: Option<u8>,
}

#[derive(Debug, Arbitrary)]
pub struct RemotePublishOp {
    /// A topic one of the bridge's lines matches (the line, modulo), else one of the lists.
    pub on_line: Option<u8>,
    pub prefix: u8,
    pub tail: u8,
    pub qos: u8,
    pub packet_id: u8,
    pub dup: bool,
    pub retain: bool,
    pub payload: u8,
    pub expiry: Option<u8>,
    pub topic_alias: Option<u8>,
    pub subscription_id: Option<u8>,
}

/// What a local client does.
#[derive(Debug, Arbitrary)]
pub enum LocalOp {
    /// A new connection in the slot (its previous one is closed by the client), and CONNECT.
    Connect {
        version: u8,
        client: u8,
        clean_start: bool,
        session_expiry: Option<u8>,
    },
    Publish {
        on_line: Option<u8>,
        prefix: u8,
        tail: u8,
        qos: u8,
        packet_id: u8,
        retain: bool,
        payload: u8,
    },
    Subscribe {
        on_line: Option<u8>,
        prefix: u8,
        tail: u8,
        qos: u8,
        packet_id: u8,
    },
    /// An acknowledgement with any packet id (PUBACK, PUBREC, PUBREL, PUBCOMP).
    Ack {
        kind: u8,
        id: u8,
    },
    Close,
}

/// A topic name `pattern` matches: its `+` levels filled in, its `#` replaced by a level or
/// two (or none, where `#` also matches the parent).
fn concrete(pattern: &str, tail: u8) -> String {
    let fill = ["x", "y/z", ""][usize::from(tail % 3)];
    let levels: Vec<&str> = pattern
        .split('/')
        .map(|l| match l {
            "+" => "p",
            "#" => fill,
            other => other,
        })
        .collect();
    let topic = levels.join("/");
    match topic.strip_suffix('/') {
        Some(parent) if fill.is_empty() => parent.to_owned(),
        _ => topic,
    }
}

/// A topic of the bridge's line `line` (modulo the lines), under its local or remote prefix;
/// `None` when the bridge has no lines.
pub fn line_topic(cfg: &BridgeConfig, line: u8, tail: u8, remote: bool) -> Option<String> {
    let t = cfg
        .topics
        .get(usize::from(line) % cfg.topics.len().max(1))?;
    let prefix = if remote {
        &t.remote_prefix
    } else {
        &t.local_prefix
    };
    Some(format!("{prefix}{}", concrete(&t.pattern, tail)))
}

/// The local filter of the bridge's line `line` (modulo the lines).
pub fn line_filter(cfg: &BridgeConfig, line: u8) -> Option<String> {
    let t = cfg
        .topics
        .get(usize::from(line) % cfg.topics.len().max(1))?;
    Some(format!("{}{}", t.local_prefix, t.pattern))
}

pub fn remote_topic(prefix: u8, tail: u8) -> String {
    format!("{}{}", pick(REMOTE_PREFIXES, prefix), pick(TAILS, tail))
}

pub fn local_topic(prefix: u8, tail: u8) -> String {
    format!("{}{}", pick(LOCAL_PREFIXES, prefix), pick(TAILS, tail))
}

pub fn local_filter(prefix: u8, tail: u8) -> String {
    format!(
        "{}{}",
        pick(LOCAL_PREFIXES, prefix),
        pick(FILTER_TAILS, tail)
    )
}

pub fn local_client_id(n: u8) -> &'static str {
    pick(LOCAL_CLIENT_IDS, n)
}

/// Packet ids from a small range, so that they collide.
pub fn packet_id(n: u8) -> midge_core::codec::PacketId {
    std::num::NonZeroU16::new(u16::from(n % 8) + 1).unwrap_or(std::num::NonZeroU16::MIN)
}

/// A payload tagged with who published it (`R` the remote, `L` a local client), so that the
/// remote can tell its own messages coming back; 0 gives an empty payload (a retained message
/// removed).
pub fn payload(tag: u8, n: u8) -> Bytes {
    let len = usize::from(n % 40);
    if len == 0 {
        return Bytes::new();
    }
    let mut p = vec![b'x'; len];
    p[0] = tag;
    Bytes::from(p)
}
