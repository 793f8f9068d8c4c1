//! Decoding and encoding errors. Each decoding error names the rule the packet broke and maps to
//! the reason code a broker answers with: in DISCONNECT for MQTT 5, in CONNACK while the connection
//! is still being established (for 3.1.x connections the broker closes instead, as the specs say).

use super::packet::PacketType;
use super::properties::PropertyId;
use super::reason::{ConnectReason, DisconnectReason};
use std::fmt;

/// Why bytes are not a valid MQTT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A variable byte integer is longer than four bytes or not minimally encoded [MQTT-1.5.5-1].
    MalformedVarInt,
    /// The fixed header declares a packet larger than the receiver accepts.
    PacketTooLarge {
        /// Total size of the packet, fixed header included.
        size: u64,
        /// The receiver's maximum.
        max: u32,
    },
    /// Packet type 0, or type 15 (AUTH) before MQTT 5.
    ReservedPacketType(u8),
    /// The low four bits of the fixed header are not the ones the packet type requires
    /// [MQTT-2.2.2-1] [MQTT-2.2.2-2] (3.1.1) [MQTT-2.1.3-1] (5.0) [MQTT-3.6.1-1] [MQTT-3.8.1-1]
    /// [MQTT-3.10.1-1] [MQTT-3.14.1-1] [MQTT-3.15.1-1].
    InvalidHeaderFlags {
        /// The packet type.
        packet_type: PacketType,
        /// The flags received.
        flags: u8,
    },
    /// The packet ended before a field it must contain.
    Truncated(PacketType),
    /// The packet has bytes after its last field.
    TrailingBytes(PacketType),
    /// A string is not well-formed UTF-8 (including encoded surrogates) [MQTT-1.5.3-1] (3.1.1)
    /// [MQTT-1.5.4-1] (5.0).
    InvalidUtf8,
    /// A string contains U+0000 [MQTT-1.5.3-2] (3.1.1) [MQTT-1.5.4-2] (5.0).
    NullCharacter,
    /// CONNECT names a protocol other than "MQTT" or "MQIsdp" [MQTT-3.1.2-1].
    InvalidProtocolName,
    /// CONNECT asks for a protocol level this codec does not speak [MQTT-3.1.2-2].
    UnsupportedProtocolVersion(u8),
    /// The reserved bit of the CONNECT flags is set [MQTT-3.1.2-3].
    ReservedConnectFlag,
    /// Reserved bits of the CONNACK acknowledge flags set [MQTT-3.2.2-1] (5.0).
    ReservedConnAckFlags(u8),
    /// Will QoS or Will Retain set without the Will Flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]
    /// [MQTT-3.1.2-15] (3.1.1) [MQTT-3.1.2-11] [MQTT-3.1.2-13] (5.0).
    WillFlagsWithoutWill,
    /// A QoS field holds 3 [MQTT-3.1.2-14] [MQTT-3.3.1-4].
    InvalidQoS,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    DupWithQoS0,
    /// Password flag without user name flag, which 3.1 and 3.1.1 forbid [MQTT-3.1.2-22] (3.1.1).
    PasswordWithoutUsername,
    /// A packet identifier of zero [MQTT-2.3.1-1] (3.1.1) [MQTT-2.2.1-3] (5.0).
    ZeroPacketId,
    /// A topic name contains a wildcard [MQTT-3.3.2-2] [MQTT-4.7.1-1] (3.1.1), or a will topic or
    /// response topic is empty or has one.
    InvalidTopicName,
    /// An empty topic name: never valid before MQTT 5 [MQTT-4.7.3-1], and in MQTT 5 only with a
    /// topic alias [MQTT-3.3.2-1].
    EmptyTopicName,
    /// A topic filter is empty or uses a wildcard other than as a whole level, '#' last
    /// [MQTT-4.7.1-2] [MQTT-4.7.1-3] (3.1.1) [MQTT-4.7.1-1] [MQTT-4.7.1-2] (5.0) [MQTT-4.7.3-1].
    InvalidTopicFilter,
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter [MQTT-3.8.3-3] [MQTT-3.10.3-2] (3.1.1)
    /// [MQTT-3.8.3-2] [MQTT-3.10.3-2] (5.0).
    NoTopicFilters(PacketType),
    /// Reserved bits of the subscription options set, or a requested QoS of 3 (3.1.1, 3.8.3.1)
    /// [MQTT-3.8.3-5] (5.0).
    InvalidSubscriptionOptions(u8),
    /// Retain Handling of 3 (5.0, 3.8.3.1).
    InvalidRetainHandling,
    /// No Local on a shared subscription [MQTT-3.8.3-4] (5.0).
    NoLocalOnSharedSubscription,
    /// A reason code that the packet type does not define.
    InvalidReasonCode {
        /// The packet type.
        packet_type: PacketType,
        /// The code received.
        code: u8,
    },
    /// A property identifier MQTT 5 does not define.
    UnknownProperty(u32),
    /// A property that this packet (or a will) may not carry.
    PropertyNotAllowed(PropertyId),
    /// A property that may appear once appears again.
    DuplicateProperty(PropertyId),
    /// A property value outside its range (a boolean other than 0 or 1, a zero Receive Maximum,
    /// Maximum Packet Size or Subscription Identifier, a Maximum QoS of 2, a zero Topic Alias
    /// [MQTT-3.3.2-8]).
    InvalidPropertyValue(PropertyId),
    /// Authentication Data without an Authentication Method (5.0, 3.1.2.11.10).
    AuthDataWithoutMethod,
}

impl DecodeError {
    /// The reason code of the DISCONNECT an MQTT 5 broker sends for this error.
    pub fn disconnect_reason(&self) -> DisconnectReason {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => DisconnectReason::PacketTooLarge,
            InvalidTopicName => DisconnectReason::TopicNameInvalid,
            InvalidPropertyValue(PropertyId::TopicAlias) => DisconnectReason::TopicAliasInvalid,
            ZeroPacketId
            | EmptyTopicName
            | NoTopicFilters(_)
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription
            | PropertyNotAllowed(_)
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | AuthDataWithoutMethod => DisconnectReason::ProtocolError,
            MalformedVarInt
            | ReservedPacketType(_)
            | InvalidHeaderFlags { .. }
            | Truncated(_)
            | TrailingBytes(_)
            | InvalidUtf8
            | NullCharacter
            | InvalidProtocolName
            | UnsupportedProtocolVersion(_)
            | ReservedConnectFlag
            | ReservedConnAckFlags(_)
            | WillFlagsWithoutWill
            | InvalidQoS
            | DupWithQoS0
            | PasswordWithoutUsername
            | InvalidTopicFilter
            | InvalidSubscriptionOptions(_)
            | InvalidReasonCode { .. }
            | UnknownProperty(_) => DisconnectReason::MalformedPacket,
        }
    }

    /// The reason code of the CONNACK an MQTT 5 broker may send when the CONNECT packet itself
    /// fails to decode [MQTT-3.1.4-1] [MQTT-3.1.2-2] (5.0).
    pub fn connect_reason(&self) -> ConnectReason {
        match self {
            DecodeError::UnsupportedProtocolVersion(_) => ConnectReason::UnsupportedProtocolVersion,
            DecodeError::PacketTooLarge { .. } => ConnectReason::PacketTooLarge,
            DecodeError::InvalidTopicName => ConnectReason::TopicNameInvalid,
            other => match other.disconnect_reason() {
                DisconnectReason::ProtocolError => ConnectReason::ProtocolError,
                _ => ConnectReason::MalformedPacket,
            },
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeError::*;
        match self {
            MalformedVarInt => write!(f, "malformed variable byte integer"),
            PacketTooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds the maximum of {max}")
            }
            ReservedPacketType(t) => write!(f, "reserved packet type {t}"),
            InvalidHeaderFlags { packet_type, flags } => {
                write!(
                    f,
                    "invalid fixed header flags {flags:#06b} for {packet_type:?}"
                )
            }
            Truncated(t) => write!(f, "{t:?} packet ends before its last field"),
            TrailingBytes(t) => write!(f, "{t:?} packet has bytes after its last field"),
            InvalidUtf8 => write!(f, "string is not well-formed UTF-8"),
            NullCharacter => write!(f, "string contains U+0000"),
            InvalidProtocolName => write!(f, "CONNECT has an unknown protocol name"),
            UnsupportedProtocolVersion(l) => write!(f, "unsupported protocol level {l}"),
            ReservedConnectFlag => write!(f, "reserved CONNECT flag is set"),
            ReservedConnAckFlags(b) => write!(f, "reserved CONNACK flags set in {b:#04x}"),
            WillFlagsWithoutWill => write!(f, "will QoS or will retain set without a will"),
            InvalidQoS => write!(f, "QoS 3 is not a QoS"),
            DupWithQoS0 => write!(f, "DUP set on a QoS 0 PUBLISH"),
            PasswordWithoutUsername => write!(f, "password without user name"),
            ZeroPacketId => write!(f, "packet identifier 0"),
            InvalidTopicName => write!(f, "invalid topic name"),
            EmptyTopicName => write!(f, "empty topic name"),
            InvalidTopicFilter => write!(f, "invalid topic filter"),
            NoTopicFilters(t) => write!(f, "{t:?} without topic filters"),
            InvalidSubscriptionOptions(o) => {
                write!(f, "invalid subscription options {o:#010b}")
            }
            InvalidRetainHandling => write!(f, "retain handling 3"),
            NoLocalOnSharedSubscription => write!(f, "no local on a shared subscription"),
            InvalidReasonCode { packet_type, code } => {
                write!(
                    f,
                    "reason code {code:#04x} is not defined for {packet_type:?}"
                )
            }
            UnknownProperty(id) => write!(f, "unknown property identifier {id:#04x}"),
            PropertyNotAllowed(p) => write!(f, "property {p:?} is not allowed here"),
            DuplicateProperty(p) => write!(f, "property {p:?} appears more than once"),
            InvalidPropertyValue(p) => write!(f, "invalid value for property {p:?}"),
            AuthDataWithoutMethod => write!(f, "authentication data without a method"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string or binary field longer than 65,535 bytes.
    FieldTooLong(usize),
    /// A variable byte integer (a Subscription Identifier) above 268,435,455.
    VarIntTooLarge(u32),
    /// The packet's remaining length would exceed 268,435,455 bytes.
    PacketTooLarge(usize),
    /// The packet type does not exist in the protocol version (AUTH before MQTT 5).
    NotInVersion(PacketType),
    /// A Subscription Identifier of zero, which MQTT 5 forbids (3.3.2.3.8).
    ZeroSubscriptionIdentifier,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FieldTooLong(n) => write!(f, "field of {n} bytes exceeds 65535"),
            EncodeError::VarIntTooLarge(v) => {
                write!(f, "{v} does not fit a variable byte integer")
            }
            EncodeError::PacketTooLarge(n) => {
                write!(f, "remaining length {n} exceeds 268435455")
            }
            EncodeError::NotInVersion(t) => write!(f, "{t:?} does not exist in this version"),
            EncodeError::ZeroSubscriptionIdentifier => write!(f, "subscription identifier 0"),
        }
    }
}

impl std::error::Error for EncodeError {}
