//! Framing: the fixed header, and decoding one packet from the front of a byte stream.
//!
//! The fixed header is checked as soon as its bytes arrive: an unknown packet type, wrong flags or
//! a declared size above the receiver's maximum is reported before any of the body is buffered, so
//! a peer cannot make the receiver hold a packet it will refuse.

use super::connect::{ConnAck, Connect};
use super::disconnect::{Auth, Disconnect};
use super::error::DecodeError;
use super::packet::{Packet, PacketType};
use super::publish::{PubResponse, Publish};
use super::reader::Reader;
use super::subscribe::{SubAck, Subscribe, UnsubAck, Unsubscribe};
use super::varint::{self, VarInt};
use super::{ProtocolVersion, QoS};
use bytes::{Bytes, BytesMut};

/// A complete, checked fixed header.
#[derive(Debug, Clone, Copy)]
struct FixedHeader {
    packet_type: PacketType,
    flags: u8,
    /// Bytes of the fixed header itself: 2 to 5.
    header_len: usize,
    /// The remaining length: bytes of the body.
    body_len: usize,
}

impl FixedHeader {
    fn total_len(&self) -> usize {
        self.header_len + self.body_len
    }
}

/// Parses the fixed header at the start of `buf`; `None` if more bytes are needed to finish it.
fn parse_header(
    buf: &[u8],
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<FixedHeader>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let nibble = first >> 4;
    let packet_type = match PacketType::from_nibble(nibble) {
        Some(PacketType::Auth) if !version.is_v5() => None,
        other => other,
    }
    .ok_or(DecodeError::ReservedPacketType(nibble))?;
    let flags = first & 0x0F;
    check_flags(packet_type, flags, version)?;
    let VarInt::Value(body_len, len_bytes) = varint::read(&buf[1..])? else {
        return Ok(None);
    };
    let size = 1 + len_bytes as u64 + u64::from(body_len);
    if size > u64::from(max_packet_size) {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    Ok(Some(FixedHeader {
        packet_type,
        flags,
        header_len: 1 + len_bytes,
        body_len: body_len as usize,
    }))
}

/// Checks the fixed header flags [MQTT-2.2.2-1] [MQTT-2.2.2-2] (3.1.1) [MQTT-2.1.3-1] (5.0).
/// PUBLISH flags carry DUP, QoS and RETAIN: QoS 3 is malformed [MQTT-3.3.1-4] and DUP must be 0 at
/// QoS 0 [MQTT-3.3.1-2]. MQTT 3.1 defined DUP, QoS and RETAIN bits on every packet and did not
/// require receivers to check them outside PUBLISH, so 3.1 connections are not held to the later
/// rule (Mosquitto treats them the same way).
fn check_flags(
    packet_type: PacketType,
    flags: u8,
    version: ProtocolVersion,
) -> Result<(), DecodeError> {
    if packet_type == PacketType::Publish {
        let qos = QoS::from_bits((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
        if flags & 0b1000 != 0 && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQoS0);
        }
        return Ok(());
    }
    let lenient = version == ProtocolVersion::V3_1 && packet_type != PacketType::Connect;
    if flags == packet_type.required_flags() || lenient {
        Ok(())
    } else {
        Err(DecodeError::InvalidHeaderFlags { packet_type, flags })
    }
}

/// Decodes the first packet in `input`.
///
/// Returns `Ok(None)` while `input` holds only a prefix of a packet, and `Ok(Some((packet,
/// consumed)))` once it holds a whole one; the packet's strings and payload are slices of
/// `input`. `version` is the connection's protocol version (a CONNECT decodes by its own);
/// `max_packet_size` bounds the whole packet, fixed header included, and is checked from the
/// fixed header alone.
pub fn decode(
    input: &Bytes,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<(Packet, usize)>, DecodeError> {
    let Some(header) = parse_header(input, version, max_packet_size)? else {
        return Ok(None);
    };
    let total = header.total_len();
    if input.len() < total {
        return Ok(None);
    }
    let body = input.slice(header.header_len..total);
    Ok(Some((decode_body(header, body, version)?, total)))
}

/// Decodes the first packet in a receive buffer and removes its bytes from the buffer. Like
/// [`decode`], the packet shares memory with the buffer's bytes instead of copying them.
pub fn decode_from(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = parse_header(buf, version, max_packet_size)? else {
        return Ok(None);
    };
    if buf.len() < header.total_len() {
        return Ok(None);
    }
    let frame = buf.split_to(header.total_len()).freeze();
    let body = frame.slice(header.header_len..);
    decode_body(header, body, version).map(Some)
}

fn decode_body(
    header: FixedHeader,
    body: Bytes,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let mut r = Reader::new(body, header.packet_type);
    let packet = match header.packet_type {
        PacketType::Connect => Packet::from(Connect::read(&mut r)?),
        PacketType::ConnAck => Packet::from(ConnAck::read(&mut r, version)?),
        PacketType::Publish => Packet::Publish(Publish::read(&mut r, header.flags, version)?),
        PacketType::PubAck => Packet::PubAck(PubResponse::read(&mut r, version)?),
        PacketType::PubRec => Packet::PubRec(PubResponse::read(&mut r, version)?),
        PacketType::PubRel => Packet::PubRel(PubResponse::read(&mut r, version)?),
        PacketType::PubComp => Packet::PubComp(PubResponse::read(&mut r, version)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::read(&mut r, version)?),
        PacketType::SubAck => Packet::SubAck(SubAck::read(&mut r, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::read(&mut r, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::read(&mut r, version)?),
        PacketType::PingReq => Packet::PingReq,
        PacketType::PingResp => Packet::PingResp,
        PacketType::Disconnect => Packet::Disconnect(Disconnect::read(&mut r, version)?),
        PacketType::Auth => Packet::Auth(Auth::read(&mut r)?),
    };
    r.finish()?;
    Ok(packet)
}
