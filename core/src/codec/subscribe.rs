//! SUBSCRIBE (3.8), SUBACK (3.9), UNSUBSCRIBE (3.10) and UNSUBACK (3.11).

use super::error::{DecodeError, EncodeError};
use super::packet::PacketType;
use super::properties::{self, AckProperties, SubscribeProperties, UnsubscribeProperties};
use super::publish::{read_packet_id, read_reason};
use super::reader::Reader;
use super::reason::{SubAckReason, UnsubAckReason};
use super::topic;
use super::writer::{Sink, put_str};
use super::{PacketId, ProtocolVersion, QoS};
use bytestring::ByteString;

/// Whether retained messages are sent when a subscription is made (5.0, 3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe (the only behaviour before MQTT 5).
    #[default]
    OnSubscribe = 0,
    /// Send them only if the subscription did not already exist.
    OnNewSubscribe = 1,
    /// Do not send them.
    Never = 2,
}

/// The options byte of one subscription. Before MQTT 5 only the QoS exists; the other options
/// are not encoded and decode as their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// The maximum QoS the subscriber accepts.
    pub qos: QoS,
    /// Do not deliver the subscriber's own publications [MQTT-3.8.3-3] (5.0).
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages as published.
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with a QoS and every MQTT 5 option at its default.
    pub const fn new(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::OnSubscribe,
        }
    }

    fn read(b: u8, filter: &str, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() {
            0b1100_0000
        } else {
            0b1111_1100
        };
        if b & reserved != 0 {
            return Err(DecodeError::InvalidSubscriptionOptions(b));
        }
        let qos = QoS::from_bits(b & 0b11).ok_or(DecodeError::InvalidQoS)?;
        let retain_handling = match (b >> 4) & 0b11 {
            0 => RetainHandling::OnSubscribe,
            1 => RetainHandling::OnNewSubscribe,
            2 => RetainHandling::Never,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        let no_local = b & 0b0100 != 0;
        if no_local && topic::is_shared(filter) {
            return Err(DecodeError::NoLocalOnSharedSubscription);
        }
        Ok(SubscriptionOptions {
            qos,
            no_local,
            retain_as_published: b & 0b1000 != 0,
            retain_handling,
        })
    }

    fn byte(self, version: ProtocolVersion) -> u8 {
        let mut b = self.qos as u8;
        if version.is_v5() {
            b |= u8::from(self.no_local) << 2
                | u8::from(self.retain_as_published) << 3
                | (self.retain_handling as u8) << 4;
        }
        b
    }
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: ByteString,
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE: one or more subscription requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    /// MQTT 5 properties; not encoded before MQTT 5.
    pub properties: SubscribeProperties,
    /// At least one [MQTT-3.8.3-3] (3.1.1) [MQTT-3.8.3-2] (5.0).
    pub subscriptions: Vec<Subscription>,
}

/// Reads one topic filter of SUBSCRIBE or UNSUBSCRIBE [MQTT-3.8.3-1] (3.1.1).
fn read_filter(r: &mut Reader) -> Result<ByteString, DecodeError> {
    let filter = r.string()?;
    if !topic::is_valid_filter(&filter) {
        return Err(DecodeError::InvalidTopicFilter);
    }
    Ok(filter)
}

impl Subscribe {
    pub(crate) fn read(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if version.is_v5() {
            properties::read(r)?
        } else {
            SubscribeProperties::default()
        };
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            let filter = read_filter(r)?;
            let options = SubscriptionOptions::read(r.u8()?, &filter, version)?;
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(DecodeError::NoTopicFilters(PacketType::Subscribe));
        }
        Ok(Subscribe {
            packet_id,
            properties,
            subscriptions,
        })
    }

    pub(crate) fn write<S: Sink>(
        &self,
        out: &mut S,
        v: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        out.put_u16(self.packet_id.get());
        if v.is_v5() {
            properties::write(out, &self.properties)?;
        }
        for s in &self.subscriptions {
            put_str(out, &s.filter)?;
            out.put_u8(s.options.byte(v));
        }
        Ok(())
    }
}

/// SUBACK: one reason code per requested subscription, in order [MQTT-3.9.3-1].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    /// MQTT 5 properties; not encoded before MQTT 5.
    pub properties: AckProperties,
    /// Before MQTT 5 every failure is written as 0x80 [MQTT-3.9.3-2] (3.1.1).
    pub reasons: Vec<SubAckReason>,
}

impl SubAck {
    pub(crate) fn read(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if version.is_v5() {
            properties::read(r)?
        } else {
            AckProperties::default()
        };
        let mut reasons = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            reasons.push(if version.is_v5() {
                read_reason(r)?
            } else {
                match r.u8()? {
                    code @ (0x00..=0x02 | 0x80) => {
                        SubAckReason::from_code(code).unwrap_or(SubAckReason::UnspecifiedError)
                    }
                    code => {
                        return Err(DecodeError::InvalidReasonCode {
                            packet_type: PacketType::SubAck,
                            code,
                        });
                    }
                }
            });
        }
        Ok(SubAck {
            packet_id,
            properties,
            reasons,
        })
    }

    pub(crate) fn write<S: Sink>(
        &self,
        out: &mut S,
        v: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        out.put_u16(self.packet_id.get());
        if v.is_v5() {
            properties::write(out, &self.properties)?;
            for r in &self.reasons {
                out.put_u8(r.code());
            }
        } else {
            for r in &self.reasons {
                out.put_u8(r.v3_return_code());
            }
        }
        Ok(())
    }
}

/// UNSUBSCRIBE: one or more topic filters to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    /// MQTT 5 properties; not encoded before MQTT 5.
    pub properties: UnsubscribeProperties,
    /// At least one [MQTT-3.10.3-2].
    pub filters: Vec<ByteString>,
}

impl Unsubscribe {
    pub(crate) fn read(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let properties = if version.is_v5() {
            properties::read(r)?
        } else {
            UnsubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(read_filter(r)?);
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe));
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn write<S: Sink>(
        &self,
        out: &mut S,
        v: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        out.put_u16(self.packet_id.get());
        if v.is_v5() {
            properties::write(out, &self.properties)?;
        }
        for f in &self.filters {
            put_str(out, f)?;
        }
        Ok(())
    }
}

/// UNSUBACK. Before MQTT 5 it carries only the packet identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
    /// MQTT 5 properties; not encoded before MQTT 5.
    pub properties: AckProperties,
    /// One per filter in MQTT 5; not encoded before MQTT 5.
    pub reasons: Vec<UnsubAckReason>,
}

impl UnsubAck {
    pub(crate) fn read(r: &mut Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(r)?;
        let mut properties = AckProperties::default();
        let mut reasons = Vec::new();
        if version.is_v5() {
            properties = properties::read(r)?;
            reasons.reserve(r.remaining());
            while !r.is_empty() {
                reasons.push(read_reason(r)?);
            }
        }
        Ok(UnsubAck {
            packet_id,
            properties,
            reasons,
        })
    }

    pub(crate) fn write<S: Sink>(
        &self,
        out: &mut S,
        v: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        out.put_u16(self.packet_id.get());
        if v.is_v5() {
            properties::write(out, &self.properties)?;
            for r in &self.reasons {
                out.put_u8(r.code());
            }
        }
        Ok(())
    }
}
