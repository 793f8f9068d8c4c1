//! Every content rule the codec enforces, one table row per rule, each labelled with the normative
//! statement it comes from. A row gives the bytes of a packet that breaks exactly one rule, the
//! error the codec must report, and the MQTT 5 reason code a broker would disconnect with.
//!
//! Each row is also checked on every prefix of its bytes: a prefix either needs more bytes or
//! already fails with the same error (errors visible in the fixed header fail early), so no rule
//! can be dodged by how the stream is chunked.

use bytes::{Bytes, BytesMut};
use midge_core::codec::{
    self, DecodeError, DisconnectReason, Packet, PacketType, PropertyId, ProtocolVersion,
};

use ProtocolVersion::{V3_1, V3_1_1, V5};

/// Builds packet bytes field by field.
#[derive(Default, Clone)]
struct B(Vec<u8>);

impl B {
    fn new() -> B {
        B::default()
    }
    fn u8(mut self, v: u8) -> B {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> B {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> B {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn raw(mut self, v: &[u8]) -> B {
        self.0.extend_from_slice(v);
        self
    }
    /// A two-byte length and raw bytes (strings and binary data alike).
    fn bin(self, v: &[u8]) -> B {
        self.u16(v.len() as u16).raw(v)
    }
    fn str(self, v: &str) -> B {
        self.bin(v.as_bytes())
    }
    fn varint(mut self, mut v: u32) -> B {
        loop {
            let mut byte = (v & 0x7F) as u8;
            v >>= 7;
            if v > 0 {
                byte |= 0x80;
            }
            self.0.push(byte);
            if v == 0 {
                return self;
            }
        }
    }
    /// A property section: length then the properties.
    fn props(self, p: B) -> B {
        self.varint(p.0.len() as u32).raw(&p.0)
    }
    /// A whole packet: first byte, remaining length, this body.
    fn frame(self, first: u8) -> Vec<u8> {
        B::new()
            .u8(first)
            .varint(self.0.len() as u32)
            .raw(&self.0)
            .0
    }
}

fn no_props() -> B {
    B::new()
}

/// A CONNECT body up to and including the client id, with the given flags.
fn connect(version: ProtocolVersion, flags: u8) -> B {
    let b = B::new()
        .str(version.protocol_name())
        .u8(version.level())
        .u8(flags)
        .u16(60);
    let b = if version.is_v5() {
        b.props(no_props())
    } else {
        b
    };
    b.str("client")
}

/// A v5 CONNECT with the given CONNECT properties.
fn connect_v5_props(props: B) -> Vec<u8> {
    B::new()
        .str("MQTT")
        .u8(5)
        .u8(0x02)
        .u16(60)
        .props(props)
        .str("client")
        .frame(0x10)
}

/// A v5 QoS 0 PUBLISH to "t" with the given properties.
fn publish_v5_props(props: B) -> Vec<u8> {
    B::new().str("t").props(props).raw(b"payload").frame(0x30)
}

/// A QoS 0 PUBLISH with a raw topic string.
fn publish_raw_topic(version: ProtocolVersion, topic: &[u8]) -> Vec<u8> {
    let b = B::new().bin(topic);
    let b = if version.is_v5() {
        b.props(no_props())
    } else {
        b
    };
    b.raw(b"x").frame(0x30)
}

/// A SUBSCRIBE with one filter and an options byte.
fn subscribe(version: ProtocolVersion, filter: &str, options: u8) -> Vec<u8> {
    let b = B::new().u16(1);
    let b = if version.is_v5() {
        b.props(no_props())
    } else {
        b
    };
    b.str(filter).u8(options).frame(0x82)
}

fn unsubscribe(version: ProtocolVersion, filter: &str) -> Vec<u8> {
    let b = B::new().u16(1);
    let b = if version.is_v5() {
        b.props(no_props())
    } else {
        b
    };
    b.str(filter).frame(0xA2)
}

struct Case {
    rule: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    error: DecodeError,
    reason: DisconnectReason,
}

fn case(
    rule: &'static str,
    version: ProtocolVersion,
    bytes: Vec<u8>,
    error: DecodeError,
    reason: DisconnectReason,
) -> Case {
    Case {
        rule,
        version,
        bytes,
        error,
        reason,
    }
}

fn check(cases: Vec<Case>) {
    for c in cases {
        let input = Bytes::from(c.bytes.clone());
        let got = codec::decode(&input, c.version, u32::MAX);
        assert_eq!(
            got,
            Err(c.error.clone()),
            "{} ({:?}): {:02x?}",
            c.rule,
            c.version,
            c.bytes
        );
        assert_eq!(
            c.error.disconnect_reason(),
            c.reason,
            "{}: reason code",
            c.rule
        );

        let mut buf = BytesMut::from(&c.bytes[..]);
        let got = codec::decode_from(&mut buf, c.version, u32::MAX);
        assert_eq!(got, Err(c.error.clone()), "{} via decode_from", c.rule);

        for cut in 0..c.bytes.len() {
            let prefix = Bytes::copy_from_slice(&c.bytes[..cut]);
            match codec::decode(&prefix, c.version, u32::MAX) {
                Ok(None) => {}
                Err(e) if e == c.error => {}
                other => panic!("{}: prefix of {cut} bytes gave {other:?}", c.rule),
            }
        }
    }
}

fn decodes(version: ProtocolVersion, bytes: &[u8]) -> Packet {
    let input = Bytes::copy_from_slice(bytes);
    match codec::decode(&input, version, u32::MAX) {
        Ok(Some((p, n))) if n == bytes.len() => p,
        other => panic!("expected one packet from {bytes:02x?}, got {other:?}"),
    }
}

use DisconnectReason::{MalformedPacket, PacketTooLarge, ProtocolError};

#[test]
fn fixed_header_rules() {
    use DecodeError::*;
    check(vec![
        case(
            "[MQTT-1.5.5-1] remaining length longer than four bytes",
            V5,
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F],
            MalformedVarInt,
            MalformedPacket,
        ),
        case(
            "[MQTT-1.5.5-1] remaining length not minimally encoded",
            V3_1_1,
            vec![0xC0, 0x80, 0x00],
            MalformedVarInt,
            MalformedPacket,
        ),
        case(
            "packet type 0 is reserved",
            V3_1_1,
            vec![0x00, 0x00],
            ReservedPacketType(0),
            MalformedPacket,
        ),
        case(
            "packet type 15 is reserved before MQTT 5",
            V3_1_1,
            vec![0xF0, 0x00],
            ReservedPacketType(15),
            MalformedPacket,
        ),
        case(
            "[MQTT-2.2.2-1] [MQTT-2.2.2-2] CONNECT flags must be 0",
            V3_1_1,
            B::new().frame(0x11),
            InvalidHeaderFlags {
                packet_type: PacketType::Connect,
                flags: 1,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-3.6.1-1] PUBREL flags must be 0010",
            V3_1_1,
            B::new().u16(1).frame(0x60),
            InvalidHeaderFlags {
                packet_type: PacketType::PubRel,
                flags: 0,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-3.6.1-1] PUBREL flags must be 0010 (5.0)",
            V5,
            B::new().u16(1).frame(0x63),
            InvalidHeaderFlags {
                packet_type: PacketType::PubRel,
                flags: 3,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-3.8.1-1] SUBSCRIBE flags must be 0010",
            V3_1_1,
            B::new().u16(1).str("a").u8(0).frame(0x80),
            InvalidHeaderFlags {
                packet_type: PacketType::Subscribe,
                flags: 0,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-3.10.1-1] UNSUBSCRIBE flags must be 0010",
            V5,
            B::new().u16(1).props(no_props()).str("a").frame(0xA0),
            InvalidHeaderFlags {
                packet_type: PacketType::Unsubscribe,
                flags: 0,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-2.1.3-1] PINGREQ flags must be 0",
            V5,
            vec![0xC8, 0x00],
            InvalidHeaderFlags {
                packet_type: PacketType::PingReq,
                flags: 8,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-3.14.1-1] DISCONNECT flags must be 0",
            V3_1_1,
            vec![0xE2, 0x00],
            InvalidHeaderFlags {
                packet_type: PacketType::Disconnect,
                flags: 2,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-3.15.1-1] AUTH flags must be 0",
            V5,
            vec![0xF1, 0x00],
            InvalidHeaderFlags {
                packet_type: PacketType::Auth,
                flags: 1,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-3.3.1-4] PUBLISH with QoS 3 (3.1.1)",
            V3_1_1,
            B::new().str("t").u16(1).frame(0x36),
            InvalidQoS,
            MalformedPacket,
        ),
        case(
            "[MQTT-3.3.1-4] PUBLISH with QoS 3 (5.0)",
            V5,
            B::new().str("t").u16(1).props(no_props()).frame(0x36),
            InvalidQoS,
            MalformedPacket,
        ),
        case(
            "[MQTT-3.3.1-2] DUP set on a QoS 0 PUBLISH",
            V3_1_1,
            B::new().str("t").frame(0x38),
            DupWithQoS0,
            MalformedPacket,
        ),
    ]);
}

#[test]
fn packet_larger_than_receiver_maximum_fails_before_its_body() {
    // A 1000-byte PUBLISH against a 100-byte maximum: the three header bytes are enough.
    let header = Bytes::from_static(&[0x30, 0xE5, 0x07]);
    assert_eq!(
        codec::decode(&header, V5, 100),
        Err(DecodeError::PacketTooLarge {
            size: 1000,
            max: 100
        })
    );
    assert_eq!(
        DecodeError::PacketTooLarge {
            size: 1000,
            max: 100
        }
        .disconnect_reason(),
        PacketTooLarge
    );
    // Exactly the maximum is accepted, in both versions.
    let exact_v5 = B::new()
        .str("t")
        .props(no_props())
        .raw(&[0; 94])
        .frame(0x30);
    let exact_v4 = B::new().str("t").raw(&[0; 95]).frame(0x30);
    for (version, bytes) in [(V5, exact_v5), (V3_1_1, exact_v4)] {
        assert_eq!(bytes.len(), 100);
        let (packet, used) = codec::decode(&Bytes::from(bytes), version, 100)
            .unwrap()
            .expect("a whole packet");
        assert_eq!(used, 100);
        assert!(matches!(packet, Packet::Publish(_)));
    }
}

#[test]
fn length_rules() {
    use DecodeError::*;
    check(vec![
        case(
            "PUBACK shorter than its packet identifier",
            V3_1_1,
            B::new().u8(0).frame(0x40),
            Truncated(PacketType::PubAck),
            MalformedPacket,
        ),
        case(
            "3.1.1 PUBACK longer than its packet identifier",
            V3_1_1,
            B::new().u16(1).u8(0).frame(0x40),
            TrailingBytes(PacketType::PubAck),
            MalformedPacket,
        ),
        case(
            "PINGREQ with a body",
            V5,
            B::new().u8(0).frame(0xC0),
            TrailingBytes(PacketType::PingReq),
            MalformedPacket,
        ),
        case(
            "3.1.1 DISCONNECT with a body",
            V3_1_1,
            B::new().u8(0).frame(0xE0),
            TrailingBytes(PacketType::Disconnect),
            MalformedPacket,
        ),
        case(
            "string length runs past the end of the packet",
            V3_1_1,
            B::new().u16(10).raw(b"abc").frame(0x30),
            Truncated(PacketType::Publish),
            MalformedPacket,
        ),
        case(
            "property length runs past the end of the packet",
            V5,
            B::new().str("t").varint(20).u8(0x01).u8(0).frame(0x30),
            Truncated(PacketType::Publish),
            MalformedPacket,
        ),
        case(
            "property value cut off by the property length",
            V5,
            B::new()
                .str("t")
                .varint(3)
                .u8(0x02)
                .u16(0)
                .u16(0)
                .frame(0x30),
            Truncated(PacketType::Publish),
            MalformedPacket,
        ),
        case(
            "CONNECT missing its client identifier",
            V3_1_1,
            B::new().str("MQTT").u8(4).u8(2).u16(60).frame(0x10),
            Truncated(PacketType::Connect),
            MalformedPacket,
        ),
        case(
            "CONNECT with bytes after its last field",
            V3_1_1,
            connect(V3_1_1, 0x02).u8(0).frame(0x10),
            TrailingBytes(PacketType::Connect),
            MalformedPacket,
        ),
    ]);
}

#[test]
fn string_rules() {
    use DecodeError::*;
    check(vec![
        case(
            "[MQTT-1.5.3-1] ill-formed UTF-8 in a topic name",
            V3_1_1,
            publish_raw_topic(V3_1_1, &[b'a', 0xC3, 0x28]),
            InvalidUtf8,
            MalformedPacket,
        ),
        case(
            "[MQTT-1.5.4-1] encoded surrogate U+D800 in a topic name",
            V5,
            publish_raw_topic(V5, &[0xED, 0xA0, 0x80]),
            InvalidUtf8,
            MalformedPacket,
        ),
        case(
            "[MQTT-1.5.4-1] overlong encoding of '/'",
            V5,
            publish_raw_topic(V5, &[b'a', 0xC0, 0xAF]),
            InvalidUtf8,
            MalformedPacket,
        ),
        case(
            "[MQTT-1.5.3-2] U+0000 in a topic name",
            V3_1_1,
            publish_raw_topic(V3_1_1, b"a\0b"),
            NullCharacter,
            MalformedPacket,
        ),
        case(
            "[MQTT-1.5.4-2] U+0000 in a client identifier",
            V5,
            B::new()
                .str("MQTT")
                .u8(5)
                .u8(2)
                .u16(60)
                .props(no_props())
                .bin(b"id\0")
                .frame(0x10),
            NullCharacter,
            MalformedPacket,
        ),
        case(
            "[MQTT-1.5.4-1] ill-formed UTF-8 in a user property",
            V5,
            publish_v5_props(B::new().u8(0x26).str("k").bin(&[0xFF])),
            InvalidUtf8,
            MalformedPacket,
        ),
        case(
            "[MQTT-1.5.3-1] ill-formed UTF-8 in a topic filter",
            V3_1_1,
            B::new().u16(1).bin(&[0xFE]).u8(0).frame(0x82),
            InvalidUtf8,
            MalformedPacket,
        ),
    ]);
}

#[test]
fn byte_order_mark_is_kept() {
    // [MQTT-1.5.3-3] [MQTT-1.5.4-3]: U+FEFF is a character, not something to strip.
    let bytes = publish_raw_topic(V3_1_1, "\u{FEFF}a/b".as_bytes());
    let Packet::Publish(p) = decodes(V3_1_1, &bytes) else {
        panic!("not a PUBLISH")
    };
    assert_eq!(&p.topic[..], "\u{FEFF}a/b");
}

#[test]
fn connect_rules() {
    use DecodeError::*;
    check(vec![
        case(
            "[MQTT-3.1.2-1] unknown protocol name",
            V3_1_1,
            B::new()
                .str("MQTX")
                .u8(4)
                .u8(2)
                .u16(60)
                .str("c")
                .frame(0x10),
            InvalidProtocolName,
            MalformedPacket,
        ),
        case(
            "[MQTT-3.1.2-2] unsupported protocol level (3.1.1)",
            V3_1_1,
            B::new()
                .str("MQTT")
                .u8(6)
                .u8(2)
                .u16(60)
                .str("c")
                .frame(0x10),
            UnsupportedProtocolVersion(6),
            MalformedPacket,
        ),
        case(
            "[MQTT-3.1.2-2] protocol name and level that do not belong together",
            V3_1_1,
            B::new()
                .str("MQIsdp")
                .u8(4)
                .u8(2)
                .u16(60)
                .str("c")
                .frame(0x10),
            UnsupportedProtocolVersion(4),
            MalformedPacket,
        ),
        case(
            "[MQTT-3.1.2-3] reserved CONNECT flag (3.1.1)",
            V3_1_1,
            connect(V3_1_1, 0x03).frame(0x10),
            ReservedConnectFlag,
            MalformedPacket,
        ),
        case(
            "[MQTT-3.1.2-3] reserved CONNECT flag (5.0)",
            V5,
            connect(V5, 0x01).frame(0x10),
            ReservedConnectFlag,
            MalformedPacket,
        ),
        case(
            "[MQTT-3.1.2-13] will QoS without the will flag (3.1.1)",
            V3_1_1,
            connect(V3_1_1, 0x0A).frame(0x10),
            WillFlagsWithoutWill,
            MalformedPacket,
        ),
        case(
            "[MQTT-3.1.2-15] will retain without the will flag (3.1.1)",
            V3_1_1,
            connect(V3_1_1, 0x22).frame(0x10),
            WillFlagsWithoutWill,
            MalformedPacket,
        ),
        case(
            "[MQTT-3.1.2-11] will QoS without the will flag (5.0)",
            V5,
            connect(V5, 0x12).frame(0x10),
            WillFlagsWithoutWill,
            MalformedPacket,
        ),
        case(
            "[MQTT-3.1.2-14] will QoS 3",
            V3_1_1,
            connect(V3_1_1, 0x1E).str("w").str("x").frame(0x10),
            InvalidQoS,
            MalformedPacket,
        ),
        case(
            "[MQTT-3.1.2-22] (3.1.1) password without user name",
            V3_1_1,
            connect(V3_1_1, 0x42).bin(b"pw").frame(0x10),
            PasswordWithoutUsername,
            MalformedPacket,
        ),
        case(
            "3.1 password without user name",
            V3_1,
            connect(V3_1, 0x42).bin(b"pw").frame(0x10),
            PasswordWithoutUsername,
            MalformedPacket,
        ),
        case(
            "will topic with a wildcard",
            V3_1_1,
            connect(V3_1_1, 0x06).str("a/#").bin(b"x").frame(0x10),
            InvalidTopicName,
            DisconnectReason::TopicNameInvalid,
        ),
        case(
            "empty will topic [MQTT-4.7.3-1]",
            V3_1_1,
            connect(V3_1_1, 0x06).str("").bin(b"x").frame(0x10),
            InvalidTopicName,
            DisconnectReason::TopicNameInvalid,
        ),
    ]);
}

#[test]
fn connect_errors_map_to_connack_reasons() {
    use codec::ConnectReason;
    // [MQTT-3.1.2-2] (5.0): an unsupported version is answered with 0x84, which 3.1.x clients see
    // as return code 0x01 [MQTT-3.1.2-2] (3.1.1).
    let e = DecodeError::UnsupportedProtocolVersion(6);
    assert_eq!(
        e.connect_reason(),
        ConnectReason::UnsupportedProtocolVersion
    );
    assert_eq!(e.connect_reason().v3_return_code(), 0x01);
    assert_eq!(
        DecodeError::ReservedConnectFlag.connect_reason(),
        ConnectReason::MalformedPacket
    );
    assert_eq!(
        DecodeError::DuplicateProperty(PropertyId::ReceiveMaximum).connect_reason(),
        ConnectReason::ProtocolError
    );
}

#[test]
fn connect_variants_that_are_valid() {
    // MQTT 5 allows a password without a user name (5.0, 3.1.2.9).
    let Packet::Connect(c) = decodes(V5, &connect(V5, 0x42).bin(b"pw").frame(0x10)) else {
        panic!("not a CONNECT")
    };
    assert!(c.username.is_none());
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));

    // A Mosquitto bridge sets the high bit of the protocol level.
    let bridge = B::new()
        .str("MQTT")
        .u8(0x84)
        .u8(2)
        .u16(60)
        .str("b")
        .frame(0x10);
    let Packet::Connect(c) = decodes(V5, &bridge) else {
        panic!("not a CONNECT")
    };
    assert!(c.bridge);
    assert_eq!(c.protocol_version, V3_1_1);

    // MQTT 3.1 ("MQIsdp", level 3).
    let Packet::Connect(c) = decodes(V5, &connect(V3_1, 0x02).frame(0x10)) else {
        panic!("not a CONNECT")
    };
    assert_eq!(c.protocol_version, V3_1);
    assert!(c.clean_start);

    // An empty client id is decoded; whether it is allowed is the broker's decision.
    let empty_id = B::new().str("MQTT").u8(4).u8(2).u16(0).str("").frame(0x10);
    assert!(matches!(decodes(V3_1_1, &empty_id), Packet::Connect(c) if c.client_id.is_empty()));
}

#[test]
fn publish_rules() {
    use DecodeError::*;
    check(vec![
        case(
            "[MQTT-2.3.1-1] QoS 1 PUBLISH with packet identifier 0",
            V3_1_1,
            B::new().str("t").u16(0).frame(0x32),
            ZeroPacketId,
            ProtocolError,
        ),
        case(
            "[MQTT-2.2.1-3] QoS 2 PUBLISH with packet identifier 0",
            V5,
            B::new().str("t").u16(0).props(no_props()).frame(0x34),
            ZeroPacketId,
            ProtocolError,
        ),
        case(
            "[MQTT-3.3.2-2] '+' in a topic name",
            V3_1_1,
            publish_raw_topic(V3_1_1, b"a/+/c"),
            InvalidTopicName,
            DisconnectReason::TopicNameInvalid,
        ),
        case(
            "[MQTT-3.3.2-2] '#' in a topic name",
            V5,
            publish_raw_topic(V5, b"a/#"),
            InvalidTopicName,
            DisconnectReason::TopicNameInvalid,
        ),
        case(
            "[MQTT-4.7.3-1] empty topic name (3.1.1)",
            V3_1_1,
            publish_raw_topic(V3_1_1, b""),
            EmptyTopicName,
            ProtocolError,
        ),
        case(
            "empty topic name without a topic alias (5.0, 3.3.2.1)",
            V5,
            publish_raw_topic(V5, b""),
            EmptyTopicName,
            ProtocolError,
        ),
        case(
            "[MQTT-3.3.2-8] topic alias 0",
            V5,
            publish_v5_props(B::new().u8(0x23).u16(0)),
            InvalidPropertyValue(PropertyId::TopicAlias),
            DisconnectReason::TopicAliasInvalid,
        ),
        case(
            "[MQTT-3.3.2-14] response topic with a wildcard",
            V5,
            publish_v5_props(B::new().u8(0x08).str("reply/+")),
            InvalidTopicName,
            DisconnectReason::TopicNameInvalid,
        ),
        case(
            "payload format indicator other than 0 or 1",
            V5,
            publish_v5_props(B::new().u8(0x01).u8(2)),
            InvalidPropertyValue(PropertyId::PayloadFormatIndicator),
            ProtocolError,
        ),
        case(
            "PUBACK with packet identifier 0",
            V3_1_1,
            B::new().u16(0).frame(0x40),
            ZeroPacketId,
            ProtocolError,
        ),
    ]);
}

#[test]
fn empty_topic_with_alias_is_valid_in_v5() {
    let bytes = B::new()
        .str("")
        .props(B::new().u8(0x23).u16(7))
        .raw(b"x")
        .frame(0x30);
    let Packet::Publish(p) = decodes(V5, &bytes) else {
        panic!("not a PUBLISH")
    };
    assert!(p.topic.is_empty());
    assert_eq!(p.properties.topic_alias.map(|a| a.get()), Some(7));
}

#[test]
fn subscribe_rules() {
    use DecodeError::*;
    check(vec![
        case(
            "[MQTT-3.8.3-3] (3.1.1) SUBSCRIBE without a topic filter",
            V3_1_1,
            B::new().u16(1).frame(0x82),
            NoTopicFilters(PacketType::Subscribe),
            ProtocolError,
        ),
        case(
            "[MQTT-3.8.3-2] (5.0) SUBSCRIBE without a topic filter",
            V5,
            B::new().u16(1).props(no_props()).frame(0x82),
            NoTopicFilters(PacketType::Subscribe),
            ProtocolError,
        ),
        case(
            "[MQTT-3.10.3-2] UNSUBSCRIBE without a topic filter",
            V3_1_1,
            B::new().u16(1).frame(0xA2),
            NoTopicFilters(PacketType::Unsubscribe),
            ProtocolError,
        ),
        case(
            "[MQTT-3.10.3-2] UNSUBSCRIBE without a topic filter (5.0)",
            V5,
            B::new().u16(1).props(no_props()).frame(0xA2),
            NoTopicFilters(PacketType::Unsubscribe),
            ProtocolError,
        ),
        case(
            "[MQTT-2.3.1-1] SUBSCRIBE with packet identifier 0",
            V3_1_1,
            B::new().u16(0).str("a").u8(0).frame(0x82),
            ZeroPacketId,
            ProtocolError,
        ),
        case(
            "[MQTT-2.3.1-1] UNSUBSCRIBE with packet identifier 0",
            V3_1_1,
            B::new().u16(0).str("a").frame(0xA2),
            ZeroPacketId,
            ProtocolError,
        ),
        case(
            "[MQTT-4.7.1-2] (3.1.1) '#' not last",
            V3_1_1,
            subscribe(V3_1_1, "a/#/b", 0),
            InvalidTopicFilter,
            MalformedPacket,
        ),
        case(
            "[MQTT-4.7.1-1] (5.0) '#' not a whole level",
            V5,
            subscribe(V5, "a/b#", 0),
            InvalidTopicFilter,
            MalformedPacket,
        ),
        case(
            "[MQTT-4.7.1-3] (3.1.1) '+' not a whole level",
            V3_1_1,
            subscribe(V3_1_1, "a+/b", 0),
            InvalidTopicFilter,
            MalformedPacket,
        ),
        case(
            "[MQTT-4.7.1-2] (5.0) '+' not a whole level",
            V5,
            unsubscribe(V5, "a/+b"),
            InvalidTopicFilter,
            MalformedPacket,
        ),
        case(
            "[MQTT-4.7.3-1] empty topic filter",
            V3_1_1,
            subscribe(V3_1_1, "", 0),
            InvalidTopicFilter,
            MalformedPacket,
        ),
        case(
            "[MQTT-4.7.3-1] empty topic filter in UNSUBSCRIBE",
            V3_1_1,
            unsubscribe(V3_1_1, ""),
            InvalidTopicFilter,
            MalformedPacket,
        ),
        case(
            "3.1.1 (3.8.3.1) reserved bits of the requested QoS byte",
            V3_1_1,
            subscribe(V3_1_1, "a", 0x04),
            InvalidSubscriptionOptions(0x04),
            MalformedPacket,
        ),
        case(
            "3.1.1 (3.8.3.1) requested QoS 3",
            V3_1_1,
            subscribe(V3_1_1, "a", 0x03),
            InvalidQoS,
            MalformedPacket,
        ),
        case(
            "[MQTT-3.8.3-5] reserved bits of the subscription options",
            V5,
            subscribe(V5, "a", 0x40),
            InvalidSubscriptionOptions(0x40),
            MalformedPacket,
        ),
        case(
            "5.0 (3.8.3.1) subscription options with QoS 3",
            V5,
            subscribe(V5, "a", 0x03),
            InvalidQoS,
            MalformedPacket,
        ),
        case(
            "5.0 (3.8.3.1) retain handling 3",
            V5,
            subscribe(V5, "a", 0x30),
            InvalidRetainHandling,
            ProtocolError,
        ),
        case(
            "[MQTT-3.8.3-4] no local on a shared subscription",
            V5,
            subscribe(V5, "$share/g/a/b", 0x04),
            NoLocalOnSharedSubscription,
            ProtocolError,
        ),
        case(
            "[MQTT-3.8.3-1] (3.1.1) topic filter must be UTF-8",
            V3_1_1,
            B::new().u16(1).bin(&[0xED, 0xBF, 0xBF]).u8(0).frame(0x82),
            InvalidUtf8,
            MalformedPacket,
        ),
    ]);
}

#[test]
fn mqtt_3_1_tolerates_header_flags_outside_publish() {
    // MQTT 3.1 set DUP and QoS bits on SUBSCRIBE retransmissions; Mosquitto accepts them.
    let sub = B::new().u16(1).str("a/+").u8(1).frame(0x8A);
    assert!(matches!(decodes(V3_1, &sub), Packet::Subscribe(_)));
    // The same bytes from a 3.1.1 client are malformed [MQTT-3.8.1-1].
    assert!(codec::decode(&Bytes::from(sub), V3_1_1, u32::MAX).is_err());
}

#[test]
fn property_rules() {
    use DecodeError::*;
    use PropertyId as P;
    check(vec![
        case(
            "unknown property identifier",
            V5,
            publish_v5_props(B::new().u8(0x05).u8(0)),
            UnknownProperty(0x05),
            MalformedPacket,
        ),
        case(
            "Session Expiry Interval is not a PUBLISH property",
            V5,
            publish_v5_props(B::new().u8(0x11).u32(10)),
            PropertyNotAllowed(P::SessionExpiryInterval),
            ProtocolError,
        ),
        case(
            "Will Delay Interval belongs to the will, not to CONNECT",
            V5,
            connect_v5_props(B::new().u8(0x18).u32(10)),
            PropertyNotAllowed(P::WillDelayInterval),
            ProtocolError,
        ),
        case(
            "Topic Alias is not a will property",
            V5,
            B::new()
                .str("MQTT")
                .u8(5)
                .u8(0x06)
                .u16(60)
                .props(no_props())
                .str("c")
                .props(B::new().u8(0x23).u16(1))
                .str("w")
                .bin(b"x")
                .frame(0x10),
            PropertyNotAllowed(P::TopicAlias),
            ProtocolError,
        ),
        case(
            "Reason String is not a SUBSCRIBE property",
            V5,
            B::new()
                .u16(1)
                .props(B::new().u8(0x1F).str("r"))
                .str("a")
                .u8(0)
                .frame(0x82),
            PropertyNotAllowed(P::ReasonString),
            ProtocolError,
        ),
        case(
            "Subscription Identifier is not an UNSUBSCRIBE property",
            V5,
            B::new()
                .u16(1)
                .props(B::new().u8(0x0B).varint(5))
                .str("a")
                .frame(0xA2),
            PropertyNotAllowed(P::SubscriptionIdentifier),
            ProtocolError,
        ),
        case(
            "Message Expiry Interval twice (5.0, 3.3.2.3.3)",
            V5,
            publish_v5_props(B::new().u8(0x02).u32(1).u8(0x02).u32(2)),
            DuplicateProperty(P::MessageExpiryInterval),
            ProtocolError,
        ),
        case(
            "Receive Maximum twice (5.0, 3.1.2.11.3)",
            V5,
            connect_v5_props(B::new().u8(0x21).u16(1).u8(0x21).u16(1)),
            DuplicateProperty(P::ReceiveMaximum),
            ProtocolError,
        ),
        case(
            "Receive Maximum of 0 (5.0, 3.1.2.11.3)",
            V5,
            connect_v5_props(B::new().u8(0x21).u16(0)),
            InvalidPropertyValue(P::ReceiveMaximum),
            ProtocolError,
        ),
        case(
            "Maximum Packet Size of 0 (5.0, 3.1.2.11.4)",
            V5,
            connect_v5_props(B::new().u8(0x27).u32(0)),
            InvalidPropertyValue(P::MaximumPacketSize),
            ProtocolError,
        ),
        case(
            "Request Problem Information other than 0 or 1 (5.0, 3.1.2.11.7)",
            V5,
            connect_v5_props(B::new().u8(0x17).u8(2)),
            InvalidPropertyValue(P::RequestProblemInformation),
            ProtocolError,
        ),
        case(
            "Request Response Information other than 0 or 1 (5.0, 3.1.2.11.6)",
            V5,
            connect_v5_props(B::new().u8(0x19).u8(7)),
            InvalidPropertyValue(P::RequestResponseInformation),
            ProtocolError,
        ),
        case(
            "Authentication Data without Authentication Method (5.0, 3.1.2.11.10)",
            V5,
            connect_v5_props(B::new().u8(0x16).bin(b"data")),
            AuthDataWithoutMethod,
            ProtocolError,
        ),
        case(
            "Subscription Identifier of 0 (5.0, 3.8.2.1.2)",
            V5,
            B::new()
                .u16(1)
                .props(B::new().u8(0x0B).varint(0))
                .str("a")
                .u8(0)
                .frame(0x82),
            InvalidPropertyValue(P::SubscriptionIdentifier),
            ProtocolError,
        ),
        case(
            "Subscription Identifier twice in SUBSCRIBE",
            V5,
            B::new()
                .u16(1)
                .props(B::new().u8(0x0B).varint(1).u8(0x0B).varint(2))
                .str("a")
                .u8(0)
                .frame(0x82),
            DuplicateProperty(P::SubscriptionIdentifier),
            ProtocolError,
        ),
        case(
            "Maximum QoS of 2 (5.0, 3.2.2.3.4)",
            V5,
            B::new()
                .u8(0)
                .u8(0)
                .props(B::new().u8(0x24).u8(2))
                .frame(0x20),
            InvalidPropertyValue(P::MaximumQoS),
            ProtocolError,
        ),
        case(
            "Retain Available other than 0 or 1 (5.0, 3.2.2.3.5)",
            V5,
            B::new()
                .u8(0)
                .u8(0)
                .props(B::new().u8(0x25).u8(2))
                .frame(0x20),
            InvalidPropertyValue(P::RetainAvailable),
            ProtocolError,
        ),
        case(
            "a property identifier that is a malformed variable byte integer",
            V5,
            publish_v5_props(B::new().raw(&[0x80, 0x00])),
            MalformedVarInt,
            MalformedPacket,
        ),
    ]);
}

#[test]
fn reason_code_rules() {
    use DecodeError::*;
    check(vec![
        case(
            "PUBACK with a reason code PUBACK does not define",
            V5,
            B::new().u16(1).u8(0x8E).frame(0x40),
            InvalidReasonCode {
                packet_type: PacketType::PubAck,
                code: 0x8E,
            },
            MalformedPacket,
        ),
        case(
            "PUBREL with a reason code PUBREL does not define",
            V5,
            B::new().u16(1).u8(0x80).frame(0x62),
            InvalidReasonCode {
                packet_type: PacketType::PubRel,
                code: 0x80,
            },
            MalformedPacket,
        ),
        case(
            "DISCONNECT with reason code 0x01",
            V5,
            B::new().u8(0x01).frame(0xE0),
            InvalidReasonCode {
                packet_type: PacketType::Disconnect,
                code: 0x01,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-3.15.2-1] AUTH with a reason code AUTH does not define",
            V5,
            B::new().u8(0x87).frame(0xF0),
            InvalidReasonCode {
                packet_type: PacketType::Auth,
                code: 0x87,
            },
            MalformedPacket,
        ),
        case(
            "3.1.1 CONNACK return code 6",
            V3_1_1,
            B::new().u8(0).u8(6).frame(0x20),
            InvalidReasonCode {
                packet_type: PacketType::ConnAck,
                code: 6,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-3.9.3-2] (3.1.1) SUBACK return code 0x87",
            V3_1_1,
            B::new().u16(1).u8(0x87).frame(0x90),
            InvalidReasonCode {
                packet_type: PacketType::SubAck,
                code: 0x87,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-3.9.3-2] (5.0) SUBACK reason code 0x03",
            V5,
            B::new().u16(1).props(no_props()).u8(0x03).frame(0x90),
            InvalidReasonCode {
                packet_type: PacketType::SubAck,
                code: 0x03,
            },
            MalformedPacket,
        ),
        case(
            "[MQTT-3.2.2-1] (5.0) reserved CONNACK flags",
            V5,
            B::new().u8(0x02).u8(0).props(no_props()).frame(0x20),
            ReservedConnAckFlags(0x02),
            MalformedPacket,
        ),
    ]);
}

#[test]
fn acknowledgements_may_leave_out_reason_and_properties() {
    // 5.0, 3.4.2.1: a PUBACK of remaining length 2 means success without properties.
    let short = decodes(V5, &B::new().u16(9).frame(0x40));
    let Packet::PubAck(ack) = short else {
        panic!("not a PUBACK")
    };
    assert_eq!(ack.reason, codec::PubAckReason::Success);
    // 5.0, 3.14.2.1: a DISCONNECT of remaining length 0 means normal disconnection.
    let Packet::Disconnect(d) = decodes(V5, &[0xE0, 0x00]) else {
        panic!("not a DISCONNECT")
    };
    assert_eq!(d.reason, DisconnectReason::NormalDisconnection);
    // 5.0, 3.14.2.2.1: a reason without a property length means no properties.
    let Packet::Disconnect(d) = decodes(V5, &[0xE0, 0x01, 0x04]) else {
        panic!("not a DISCONNECT")
    };
    assert_eq!(d.reason, DisconnectReason::DisconnectWithWillMessage);
}
