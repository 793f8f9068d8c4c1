//! The control packet: one enum over the fifteen packet types, and its encoding.

use super::ProtocolVersion;
use super::connect::{ConnAck, Connect};
use super::disconnect::{Auth, Disconnect};
use super::error::EncodeError;
use super::publish::{PubAck, PubComp, PubRec, PubRel, Publish};
use super::subscribe::{SubAck, Subscribe, UnsubAck, Unsubscribe};
use super::varint::{self, MAX_REMAINING_LENGTH};
use super::writer::{Sink, measure};
use bytes::BytesMut;

/// The control packet types (3.1.1 and 5.0, section 2.1.2). AUTH exists only in MQTT 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// The type in the high nibble of a fixed header's first byte; None for the reserved 0.
    pub const fn from_nibble(nibble: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match nibble {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }

    /// The flags every packet type but PUBLISH must carry in the fixed header
    /// (3.1.1, 2.2.2, Table 2.2; 5.0, 2.1.3, Table 2-2).
    pub const fn required_flags(self) -> u8 {
        match self {
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        }
    }
}

/// An MQTT control packet of any version.
///
/// CONNECT and CONNACK are boxed: they are the largest packets by far (over 400 and 250 bytes)
/// and the rarest, one each per connection, while every received packet is moved out of the
/// decoder and into its handler by value. Unboxed they would make every PUBLISH and
/// acknowledgement pay for moving their size. Build them with `Packet::from(connect)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(Box<ConnAck>),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5 only.
    Auth(Auth),
}

impl From<Connect> for Packet {
    fn from(connect: Connect) -> Packet {
        Packet::Connect(Box::new(connect))
    }
}

impl From<ConnAck> for Packet {
    fn from(connack: ConnAck) -> Packet {
        Packet::ConnAck(Box::new(connack))
    }
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    fn flags(&self) -> u8 {
        match self {
            Packet::Publish(p) => p.header_flags(),
            other => other.packet_type().required_flags(),
        }
    }

    /// Appends the packet's encoding in `version` to `out`. A CONNECT is always encoded in its
    /// own `protocol_version`. What a version cannot express is left out: properties and reason
    /// codes before MQTT 5, with CONNACK and SUBACK codes translated to their 3.1.x return codes.
    /// AUTH has no encoding before MQTT 5.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let version = match self {
            Packet::Connect(c) => c.protocol_version,
            Packet::Auth(_) if !version.is_v5() => {
                return Err(EncodeError::NotInVersion(PacketType::Auth));
            }
            _ => version,
        };
        encode_frame(
            self,
            (self.packet_type() as u8) << 4 | self.flags(),
            version,
            out,
        )
    }

    /// The number of bytes [`Packet::encode`] appends.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let version = match self {
            Packet::Connect(c) => c.protocol_version,
            _ => version,
        };
        frame_len(self, version)
    }
}

/// The part of a packet after its fixed header, written by one generic function into a byte
/// counter and into the output alike.
pub(crate) trait Body {
    fn write_body<S: Sink>(&self, out: &mut S, v: ProtocolVersion) -> Result<(), EncodeError>;
}

/// Appends a fixed header (first byte `first`: type and flags) and `body` encoded in `version`.
pub(crate) fn encode_frame<B: Body>(
    body: &B,
    first: u8,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let len = measure(|c| body.write_body(c, version))?;
    let remaining = u32::try_from(len)
        .ok()
        .filter(|l| *l <= MAX_REMAINING_LENGTH)
        .ok_or(EncodeError::PacketTooLarge(len))?;
    out.reserve(1 + varint::len(remaining) + len);
    out.put_u8(first);
    varint::write(out, remaining)?;
    body.write_body(out, version)
}

/// The number of bytes [`encode_frame`] appends for `body`.
pub(crate) fn frame_len<B: Body>(body: &B, version: ProtocolVersion) -> Result<usize, EncodeError> {
    let mut out = super::writer::Counter::default();
    body.write_body(&mut out, version)?;
    let remaining = u32::try_from(out.0).map_err(|_| EncodeError::PacketTooLarge(out.0))?;
    Ok(1 + varint::len(remaining) + out.0)
}

impl Body for Packet {
    fn write_body<S: Sink>(&self, out: &mut S, v: ProtocolVersion) -> Result<(), EncodeError> {
        match self {
            Packet::Connect(p) => p.write(out),
            Packet::ConnAck(p) => p.write(out, v),
            Packet::Publish(p) => p.write(out, v),
            Packet::PubAck(p) | Packet::PubRec(p) => p.write(out, v),
            Packet::PubRel(p) | Packet::PubComp(p) => p.write(out, v),
            Packet::Subscribe(p) => p.write(out, v),
            Packet::SubAck(p) => p.write(out, v),
            Packet::Unsubscribe(p) => p.write(out, v),
            Packet::UnsubAck(p) => p.write(out, v),
            Packet::PingReq | Packet::PingResp => Ok(()),
            Packet::Disconnect(p) => p.write(out, v),
            Packet::Auth(p) => p.write(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every packet received is moved by value from the decoder to its handler: the enum's size
    /// is copied several times per message. It should be that of its largest common variant,
    /// PUBLISH; a new large variant belongs in a box like CONNECT and CONNACK (432 bytes on
    /// 64-bit targets with CONNECT inline, 232 without).
    #[test]
    fn a_packet_is_the_size_of_a_publish() {
        let publish = std::mem::size_of::<Publish>();
        let packet = std::mem::size_of::<Packet>();
        assert!(
            packet <= publish + 8,
            "Packet is {packet} bytes, Publish {publish}"
        );
        #[cfg(target_pointer_width = "64")]
        assert!(packet <= 232, "Packet is {packet} bytes");
    }
}
