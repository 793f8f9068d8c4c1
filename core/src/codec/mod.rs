//! The MQTT wire codec: every control packet of MQTT 3.1 ("MQIsdp", level 3), 3.1.1 (level 4) and
//! 5.0 (level 5), decoded incrementally from a byte stream and encoded back.
//!
//! Decoding is zero-copy: strings and payloads of a decoded packet are slices of the input
//! [`Bytes`]. Every rule the specifications state about the contents of a packet is checked while
//! decoding; a violation is a [`DecodeError`] that names the rule and maps to the reason code a
//! broker sends ([`DecodeError::disconnect_reason`], [`DecodeError::connect_reason`]). Rules that
//! need session state (packet ids in use, topic alias mappings, what a client may send) belong to
//! the broker, not here.
//!
//! The codec is direction-agnostic: it decodes packets sent by clients and by servers alike, so the
//! simulator and the conformance suite use the same code as the broker.

mod connect;
mod disconnect;
mod error;
mod frame;
mod packet;
mod properties;
mod publish;
mod reader;
mod reason;
mod subscribe;
pub mod topic;
mod varint;
mod writer;

pub use bytestring::ByteString;
pub use connect::{ConnAck, Connect, LastWill, peek_connect_version};
pub use disconnect::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError};
pub use frame::{decode, decode_from};
pub use packet::{Packet, PacketType};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PayloadFormat, PropertyId, PublishProperties, SubscribeProperties, UnsubscribeProperties,
    UserProperties, WillProperties,
};
pub use publish::{PubAck, PubComp, PubRec, PubRel, PubResponse, Publish};
pub use reason::{
    AuthReason, ConnectReason, DisconnectReason, PubAckReason, PubRelReason, SubAckReason,
    UnsubAckReason,
};
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
};
pub use varint::{MAX_REMAINING_LENGTH, MAX_VARINT};

use std::num::NonZeroU16;

/// A packet identifier. Zero is not a valid packet identifier in any MQTT version
/// [MQTT-2.3.1-1] (3.1.1) [MQTT-2.2.1-3] (5.0), so the type cannot hold it.
pub type PacketId = NonZeroU16;

/// The largest packet MQTT can frame: a four-byte remaining length of 268,435,455 bytes plus the
/// five bytes of the fixed header.
pub const MAX_PACKET_SIZE: u32 = MAX_REMAINING_LENGTH + 5;

/// The protocol version a connection speaks, fixed by its CONNECT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub const fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name string of CONNECT.
    pub const fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// True for MQTT 5.0, the only version with properties, reason codes and AUTH.
    pub const fn is_v5(self) -> bool {
        matches!(self, ProtocolVersion::V5)
    }
}

/// Quality of service of a message or subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: delivered at most once, never acknowledged.
    AtMostOnce = 0,
    /// QoS 1: delivered at least once, acknowledged by PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: delivered exactly once, through PUBREC, PUBREL and PUBCOMP.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for a two-bit value; 3 is not a QoS.
    pub const fn from_bits(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// The QoS of a PUBLISH together with its packet identifier, which exists exactly when QoS > 0
/// [MQTT-2.3.1-5] (3.1.1) [MQTT-2.2.1-2] (5.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosPid {
    /// QoS 0, which carries no packet identifier.
    AtMostOnce,
    /// QoS 1 with its packet identifier.
    AtLeastOnce(PacketId),
    /// QoS 2 with its packet identifier.
    ExactlyOnce(PacketId),
}

impl QosPid {
    /// Combines a QoS with the packet identifier it needs (ignored for QoS 0).
    pub const fn new(qos: QoS, packet_id: PacketId) -> QosPid {
        match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce => QosPid::AtLeastOnce(packet_id),
            QoS::ExactlyOnce => QosPid::ExactlyOnce(packet_id),
        }
    }

    /// The QoS alone.
    pub const fn qos(self) -> QoS {
        match self {
            QosPid::AtMostOnce => QoS::AtMostOnce,
            QosPid::AtLeastOnce(_) => QoS::AtLeastOnce,
            QosPid::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    /// The packet identifier, for QoS 1 and 2.
    pub const fn packet_id(self) -> Option<PacketId> {
        match self {
            QosPid::AtMostOnce => None,
            QosPid::AtLeastOnce(id) | QosPid::ExactlyOnce(id) => Some(id),
        }
    }
}
