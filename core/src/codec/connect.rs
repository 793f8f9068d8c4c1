//! CONNECT (3.1) and CONNACK (3.2).

use super::error::{DecodeError, EncodeError};
use super::properties::{self, ConnAckProperties, ConnectProperties, WillProperties};
use super::reader::Reader;
use super::reason::ConnectReason;
use super::topic;
use super::writer::{Sink, put_binary, put_str};
use super::{ProtocolVersion, QoS};
use bytes::Bytes;
use bytestring::ByteString;

/// The high bit of the protocol level marks a bridge. Mosquitto's bridges set it (its
/// `try_private` option, on by default), so a broker must accept it to be bridged to.
const BRIDGE_BIT: u8 = 0x80;

/// CONNECT: the first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Decides the protocol name and level written, and how the rest is encoded.
    pub protocol_version: ProtocolVersion,
    /// The client announced itself as a bridge (protocol level with its high bit set).
    pub bridge: bool,
    /// Clean Session (3.1.x) or Clean Start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns the keep alive mechanism off.
    pub keep_alive: u16,
    /// MQTT 5 properties; not encoded before MQTT 5.
    pub properties: ConnectProperties,
    /// May be empty; whether an empty id is allowed is the broker's decision.
    pub client_id: ByteString,
    pub will: Option<LastWill>,
    pub username: Option<ByteString>,
    pub password: Option<Bytes>,
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 properties; not encoded before MQTT 5.
    pub properties: WillProperties,
}

mod flag {
    pub const RESERVED: u8 = 0x01;
    pub const CLEAN_START: u8 = 0x02;
    pub const WILL: u8 = 0x04;
    pub const WILL_QOS_SHIFT: u8 = 3;
    pub const WILL_RETAIN: u8 = 0x20;
    pub const PASSWORD: u8 = 0x40;
    pub const USERNAME: u8 = 0x80;
}

impl Connect {
    pub(crate) fn read(r: &mut Reader) -> Result<Connect, DecodeError> {
        let name = r.binary()?;
        let level_byte = r.u8()?;
        let bridge = level_byte & BRIDGE_BIT != 0;
        let version = match (&name[..], level_byte & !BRIDGE_BIT) {
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQTT" | b"MQIsdp", _) => {
                return Err(DecodeError::UnsupportedProtocolVersion(level_byte));
            }
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let flags = r.u8()?;
        if flags & flag::RESERVED != 0 {
            return Err(DecodeError::ReservedConnectFlag);
        }
        let has_will = flags & flag::WILL != 0;
        let will_qos_bits = (flags >> flag::WILL_QOS_SHIFT) & 0b11;
        let will_retain = flags & flag::WILL_RETAIN != 0;
        if !has_will && (will_qos_bits != 0 || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        let will_qos = QoS::from_bits(will_qos_bits).ok_or(DecodeError::InvalidQoS)?;
        let has_password = flags & flag::PASSWORD != 0;
        let has_username = flags & flag::USERNAME != 0;
        if has_password && !has_username && !version.is_v5() {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let properties = if version.is_v5() {
            properties::read(r)?
        } else {
            ConnectProperties::default()
        };
        let client_id = r.string()?;
        let will = if has_will {
            let properties = if version.is_v5() {
                properties::read(r)?
            } else {
                WillProperties::default()
            };
            let topic = r.string()?;
            if !topic::is_valid_name(&topic) {
                return Err(DecodeError::InvalidTopicName);
            }
            let payload = r.binary()?;
            Some(LastWill {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = has_username.then(|| r.string()).transpose()?;
        let password = has_password.then(|| r.binary()).transpose()?;
        Ok(Connect {
            protocol_version: version,
            bridge,
            clean_start: flags & flag::CLEAN_START != 0,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    pub(crate) fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError> {
        let v = self.protocol_version;
        put_str(out, v.protocol_name())?;
        out.put_u8(v.level() | if self.bridge { BRIDGE_BIT } else { 0 });
        let mut flags = 0;
        if self.clean_start {
            flags |= flag::CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= flag::WILL | (will.qos as u8) << flag::WILL_QOS_SHIFT;
            if will.retain {
                flags |= flag::WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= flag::USERNAME;
        }
        if self.password.is_some() {
            flags |= flag::PASSWORD;
        }
        out.put_u8(flags);
        out.put_u16(self.keep_alive);
        if v.is_v5() {
            properties::write(out, &self.properties)?;
        }
        put_str(out, &self.client_id)?;
        if let Some(will) = &self.will {
            if v.is_v5() {
                properties::write(out, &will.properties)?;
            }
            put_str(out, &will.topic)?;
            put_binary(out, &will.payload)?;
        }
        if let Some(username) = &self.username {
            put_str(out, username)?;
        }
        if let Some(password) = &self.password {
            put_binary(out, password)?;
        }
        Ok(())
    }
}

/// CONNACK: the server's answer to CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// The server resumed a stored session. Always false on a refusal [MQTT-3.2.2-4] (3.1.1)
    /// [MQTT-3.2.2-6] (5.0); MQTT 3.1 has no such flag and encodes it as 0.
    pub session_present: bool,
    /// Before MQTT 5 this is written as the nearest 3.1.x return code.
    pub reason: ConnectReason,
    /// MQTT 5 properties; not encoded before MQTT 5.
    pub properties: ConnAckProperties,
}

impl ConnAck {
    pub(crate) fn read(r: &mut Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let flags = r.u8()?;
        // MQTT 3.1 called this byte reserved and did not use it.
        let session_present = match version {
            ProtocolVersion::V3_1 => false,
            _ if flags & !1 != 0 => return Err(DecodeError::ReservedConnAckFlags(flags)),
            _ => flags & 1 != 0,
        };
        let code = r.u8()?;
        let reason = if version.is_v5() {
            ConnectReason::from_code(code)
        } else {
            ConnectReason::from_v3_return_code(code)
        }
        .ok_or(DecodeError::InvalidReasonCode {
            packet_type: super::PacketType::ConnAck,
            code,
        })?;
        let properties = if version.is_v5() {
            properties::read(r)?
        } else {
            ConnAckProperties::default()
        };
        Ok(ConnAck {
            session_present,
            reason,
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(
        &self,
        out: &mut S,
        v: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        out.put_u8(u8::from(self.session_present && v != ProtocolVersion::V3_1));
        if v.is_v5() {
            out.put_u8(self.reason.code());
            properties::write(out, &self.properties)
        } else {
            out.put_u8(self.reason.v3_return_code());
            Ok(())
        }
    }
}

/// The protocol version a CONNECT at the start of `buf` asks for, read without decoding the
/// rest. A broker uses it to answer a CONNECT that fails to decode in a form the client
/// understands.
pub fn peek_connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    if buf.first()? >> 4 != super::PacketType::Connect as u8 {
        return None;
    }
    let super::varint::VarInt::Value(_, n) = super::varint::read(&buf[1..]).ok()? else {
        return None;
    };
    let rest = buf.get(1 + n..)?;
    let name_len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    let name = rest.get(2..2 + name_len)?;
    let level = *rest.get(2 + name_len)? & !BRIDGE_BIT;
    match (name, level) {
        (b"MQIsdp", 3) => Some(ProtocolVersion::V3_1),
        (b"MQTT", 4) => Some(ProtocolVersion::V3_1_1),
        (b"MQTT", 5) => Some(ProtocolVersion::V5),
        _ => None,
    }
}
