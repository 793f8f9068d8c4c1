//! PUBLISH (3.3) and its acknowledgements PUBACK, PUBREC, PUBREL and PUBCOMP (3.4 to 3.7).

use super::error::{DecodeError, EncodeError};
use super::packet::{Body, PacketType, encode_frame, frame_len};
use super::properties::{self, AckProperties, PublishProperties};
use super::reader::Reader;
use super::reason::{PubAckReason, PubRelReason, Reason};
use super::topic;
use super::writer::{Sink, put_str};
use super::{PacketId, ProtocolVersion, QoS, QosPid};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

/// PUBLISH: an application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// A redelivery of an earlier attempt. Only meaningful at QoS 1 and 2; never encoded at QoS 0
    /// [MQTT-3.3.1-2].
    pub dup: bool,
    pub qos_pid: QosPid,
    pub retain: bool,
    /// Empty only in MQTT 5 with a topic alias.
    pub topic: ByteString,
    /// MQTT 5 properties; not encoded before MQTT 5.
    pub properties: PublishProperties,
    pub payload: Bytes,
}

impl Publish {
    pub(crate) fn header_flags(&self) -> u8 {
        let qos = self.qos_pid.qos();
        let dup = self.dup && qos != QoS::AtMostOnce;
        u8::from(dup) << 3 | (qos as u8) << 1 | u8::from(self.retain)
    }

    /// Appends the PUBLISH packet's encoding in `version` to `out`: the same bytes as
    /// [`Packet::encode`](super::Packet::encode) of `Packet::Publish`, without first moving the
    /// PUBLISH into a `Packet` (the broker encodes one per delivery).
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        let first = (PacketType::Publish as u8) << 4 | self.header_flags();
        encode_frame(self, first, version, out)
    }

    /// The number of bytes [`Publish::encode`] appends.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        frame_len(self, version)
    }

    /// `flags` were checked with the fixed header: QoS is not 3 and DUP is not set at QoS 0.
    pub(crate) fn read(
        r: &mut Reader,
        flags: u8,
        version: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        let qos = QoS::from_bits((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
        let topic = r.string()?;
        let qos_pid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            _ => QosPid::new(qos, read_packet_id(r)?),
        };
        let properties: PublishProperties = if version.is_v5() {
            properties::read(r)?
        } else {
            PublishProperties::default()
        };
        if topic.is_empty() {
            // MQTT 5 lets a topic alias stand in for the name (5.0, 3.3.2.3.4); 3.1.x never does.
            if properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicName);
            }
        } else if !topic::is_valid_name(&topic) {
            return Err(DecodeError::InvalidTopicName);
        }
        Ok(Publish {
            dup: flags & 0b1000 != 0,
            qos_pid,
            retain: flags & 1 != 0,
            topic,
            properties,
            payload: r.rest(),
        })
    }

    pub(crate) fn write<S: Sink>(
        &self,
        out: &mut S,
        v: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        put_str(out, &self.topic)?;
        if let Some(id) = self.qos_pid.packet_id() {
            out.put_u16(id.get());
        }
        if v.is_v5() {
            properties::write(out, &self.properties)?;
        }
        out.put_slice(&self.payload);
        Ok(())
    }
}

impl Body for Publish {
    fn write_body<S: Sink>(&self, out: &mut S, v: ProtocolVersion) -> Result<(), EncodeError> {
        self.write(out, v)
    }
}

/// A packet identifier, which may not be zero [MQTT-2.3.1-1] (3.1.1) [MQTT-2.2.1-3] (5.0).
pub(crate) fn read_packet_id(r: &mut Reader) -> Result<PacketId, DecodeError> {
    PacketId::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)
}

/// The shared layout of PUBACK, PUBREC, PUBREL and PUBCOMP: a packet identifier and, in MQTT 5, a
/// reason code and properties, both of which may be left out when they say nothing
/// (5.0, 3.4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResponse<R> {
    pub packet_id: PacketId,
    /// Not encoded before MQTT 5.
    pub reason: R,
    /// Not encoded before MQTT 5.
    pub properties: AckProperties,
}

/// PUBACK: acknowledges a QoS 1 PUBLISH.
pub type PubAck = PubResponse<PubAckReason>;
/// PUBREC: first acknowledgement of a QoS 2 PUBLISH.
pub type PubRec = PubResponse<PubAckReason>;
/// PUBREL: releases a QoS 2 message after PUBREC.
pub type PubRel = PubResponse<PubRelReason>;
/// PUBCOMP: completes a QoS 2 exchange.
pub type PubComp = PubResponse<PubRelReason>;

impl<R: Reason> PubResponse<R> {
    /// A successful acknowledgement without properties.
    pub fn success(packet_id: PacketId) -> PubResponse<R> {
        PubResponse {
            packet_id,
            reason: R::SUCCESS,
            properties: AckProperties::default(),
        }
    }

    pub(crate) fn read(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let mut reason = R::SUCCESS;
        let mut properties = AckProperties::default();
        if version.is_v5() && !r.is_empty() {
            reason = read_reason(r)?;
            if !r.is_empty() {
                properties = properties::read(r)?;
            }
        }
        Ok(PubResponse {
            packet_id,
            reason,
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(
        &self,
        out: &mut S,
        v: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        out.put_u16(self.packet_id.get());
        write_reason_and_properties(out, v, self.reason, &self.properties)
    }
}

/// Reads a reason code this packet type defines.
pub(crate) fn read_reason<R: Reason>(r: &mut Reader) -> Result<R, DecodeError> {
    let code = r.u8()?;
    R::from_code(code).ok_or(DecodeError::InvalidReasonCode {
        packet_type: r.packet_type(),
        code,
    })
}

/// Writes the optional tail of acknowledgement-like MQTT 5 packets: nothing when the reason is
/// success without properties, the reason alone when there are no properties, else both.
pub(crate) fn write_reason_and_properties<S: Sink, R: Reason, P: properties::PropertySet>(
    out: &mut S,
    v: ProtocolVersion,
    reason: R,
    props: &P,
) -> Result<(), EncodeError> {
    if !v.is_v5() {
        return Ok(());
    }
    let props_empty = P::default() == *props;
    if reason == R::SUCCESS && props_empty {
        return Ok(());
    }
    out.put_u8(reason.code());
    if props_empty {
        return Ok(());
    }
    properties::write(out, props)
}
