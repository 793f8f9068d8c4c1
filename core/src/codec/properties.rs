//! MQTT 5 properties (5.0, 2.2.2). Each packet (and a CONNECT's will) has its own property type
//! holding exactly the properties the specification allows there, so a property in the wrong
//! packet cannot be represented, and decoding one is [`DecodeError::PropertyNotAllowed`].
//!
//! Absent and present-with-default-value are distinct on the wire and kept distinct here
//! (`Option`), so decoding and re-encoding reproduces the packet.

use super::QoS;
use super::error::{DecodeError, EncodeError};
use super::reader::Reader;
use super::varint::MAX_VARINT;
use super::writer::{Sink, measure, put_binary, put_str, put_varint};
use bytes::Bytes;
use bytestring::ByteString;
use std::num::{NonZeroU16, NonZeroU32};

/// User properties: name and value pairs, in order, names may repeat (5.0, 3.1.2.11.8).
pub type UserProperties = Vec<(ByteString, ByteString)>;

/// Property identifiers (5.0, 2.2.2.2, Table 2-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PropertyId {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQoS = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

impl PropertyId {
    /// Every property identifier, in numeric order.
    pub const ALL: [PropertyId; 27] = {
        use PropertyId::*;
        [
            PayloadFormatIndicator,
            MessageExpiryInterval,
            ContentType,
            ResponseTopic,
            CorrelationData,
            SubscriptionIdentifier,
            SessionExpiryInterval,
            AssignedClientIdentifier,
            ServerKeepAlive,
            AuthenticationMethod,
            AuthenticationData,
            RequestProblemInformation,
            WillDelayInterval,
            RequestResponseInformation,
            ResponseInformation,
            ServerReference,
            ReasonString,
            ReceiveMaximum,
            TopicAliasMaximum,
            TopicAlias,
            MaximumQoS,
            RetainAvailable,
            UserProperty,
            MaximumPacketSize,
            WildcardSubscriptionAvailable,
            SubscriptionIdentifierAvailable,
            SharedSubscriptionAvailable,
        ]
    };

    /// The identifier for a number, if MQTT 5 defines one.
    pub fn from_id(id: u32) -> Option<PropertyId> {
        PropertyId::ALL.into_iter().find(|p| *p as u32 == id)
    }
}

/// The Payload Format Indicator (5.0, 3.3.2.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PayloadFormat {
    /// Unspecified bytes.
    Unspecified = 0,
    /// UTF-8 encoded character data.
    Utf8 = 1,
}

/// One decoded property with its value checked against the property's own rules.
// Variant names follow the specification's property names, "User Property" included.
#[allow(clippy::enum_variant_names)]
#[derive(Debug)]
pub(crate) enum Property {
    PayloadFormatIndicator(PayloadFormat),
    MessageExpiryInterval(u32),
    ContentType(ByteString),
    ResponseTopic(ByteString),
    CorrelationData(Bytes),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(ByteString),
    ServerKeepAlive(u16),
    AuthenticationMethod(ByteString),
    AuthenticationData(Bytes),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(ByteString),
    ServerReference(ByteString),
    ReasonString(ByteString),
    ReceiveMaximum(NonZeroU16),
    TopicAliasMaximum(u16),
    TopicAlias(NonZeroU16),
    MaximumQoS(QoS),
    RetainAvailable(bool),
    UserProperty(ByteString, ByteString),
    MaximumPacketSize(NonZeroU32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

impl Property {
    fn id(&self) -> PropertyId {
        use Property as P;
        use PropertyId as I;
        match self {
            P::PayloadFormatIndicator(_) => I::PayloadFormatIndicator,
            P::MessageExpiryInterval(_) => I::MessageExpiryInterval,
            P::ContentType(_) => I::ContentType,
            P::ResponseTopic(_) => I::ResponseTopic,
            P::CorrelationData(_) => I::CorrelationData,
            P::SubscriptionIdentifier(_) => I::SubscriptionIdentifier,
            P::SessionExpiryInterval(_) => I::SessionExpiryInterval,
            P::AssignedClientIdentifier(_) => I::AssignedClientIdentifier,
            P::ServerKeepAlive(_) => I::ServerKeepAlive,
            P::AuthenticationMethod(_) => I::AuthenticationMethod,
            P::AuthenticationData(_) => I::AuthenticationData,
            P::RequestProblemInformation(_) => I::RequestProblemInformation,
            P::WillDelayInterval(_) => I::WillDelayInterval,
            P::RequestResponseInformation(_) => I::RequestResponseInformation,
            P::ResponseInformation(_) => I::ResponseInformation,
            P::ServerReference(_) => I::ServerReference,
            P::ReasonString(_) => I::ReasonString,
            P::ReceiveMaximum(_) => I::ReceiveMaximum,
            P::TopicAliasMaximum(_) => I::TopicAliasMaximum,
            P::TopicAlias(_) => I::TopicAlias,
            P::MaximumQoS(_) => I::MaximumQoS,
            P::RetainAvailable(_) => I::RetainAvailable,
            P::UserProperty(..) => I::UserProperty,
            P::MaximumPacketSize(_) => I::MaximumPacketSize,
            P::WildcardSubscriptionAvailable(_) => I::WildcardSubscriptionAvailable,
            P::SubscriptionIdentifierAvailable(_) => I::SubscriptionIdentifierAvailable,
            P::SharedSubscriptionAvailable(_) => I::SharedSubscriptionAvailable,
        }
    }

    fn read(r: &mut Reader) -> Result<Property, DecodeError> {
        use Property as P;
        use PropertyId as I;
        let raw = r.varint()?;
        let id = PropertyId::from_id(raw).ok_or(DecodeError::UnknownProperty(raw))?;
        let invalid = DecodeError::InvalidPropertyValue(id);
        let flag = |v: u8| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(invalid.clone()),
        };
        Ok(match id {
            I::PayloadFormatIndicator => P::PayloadFormatIndicator(match r.u8()? {
                0 => PayloadFormat::Unspecified,
                1 => PayloadFormat::Utf8,
                _ => return Err(invalid),
            }),
            I::MessageExpiryInterval => P::MessageExpiryInterval(r.u32()?),
            I::ContentType => P::ContentType(r.string()?),
            I::ResponseTopic => P::ResponseTopic(r.string()?),
            I::CorrelationData => P::CorrelationData(r.binary()?),
            I::SubscriptionIdentifier => match r.varint()? {
                0 => return Err(invalid),
                v => P::SubscriptionIdentifier(v),
            },
            I::SessionExpiryInterval => P::SessionExpiryInterval(r.u32()?),
            I::AssignedClientIdentifier => P::AssignedClientIdentifier(r.string()?),
            I::ServerKeepAlive => P::ServerKeepAlive(r.u16()?),
            I::AuthenticationMethod => P::AuthenticationMethod(r.string()?),
            I::AuthenticationData => P::AuthenticationData(r.binary()?),
            I::RequestProblemInformation => P::RequestProblemInformation(flag(r.u8()?)?),
            I::WillDelayInterval => P::WillDelayInterval(r.u32()?),
            I::RequestResponseInformation => P::RequestResponseInformation(flag(r.u8()?)?),
            I::ResponseInformation => P::ResponseInformation(r.string()?),
            I::ServerReference => P::ServerReference(r.string()?),
            I::ReasonString => P::ReasonString(r.string()?),
            I::ReceiveMaximum => P::ReceiveMaximum(NonZeroU16::new(r.u16()?).ok_or(invalid)?),
            I::TopicAliasMaximum => P::TopicAliasMaximum(r.u16()?),
            I::TopicAlias => P::TopicAlias(NonZeroU16::new(r.u16()?).ok_or(invalid)?),
            I::MaximumQoS => P::MaximumQoS(match r.u8()? {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => return Err(invalid),
            }),
            I::RetainAvailable => P::RetainAvailable(flag(r.u8()?)?),
            I::UserProperty => P::UserProperty(r.string()?, r.string()?),
            I::MaximumPacketSize => P::MaximumPacketSize(NonZeroU32::new(r.u32()?).ok_or(invalid)?),
            I::WildcardSubscriptionAvailable => P::WildcardSubscriptionAvailable(flag(r.u8()?)?),
            I::SubscriptionIdentifierAvailable => {
                P::SubscriptionIdentifierAvailable(flag(r.u8()?)?)
            }
            I::SharedSubscriptionAvailable => P::SharedSubscriptionAvailable(flag(r.u8()?)?),
        })
    }
}

/// Stores a property that may appear at most once.
fn once<T>(slot: &mut Option<T>, value: T, id: PropertyId) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(value);
    Ok(())
}

/// A packet's set of properties.
pub(crate) trait PropertySet: Default + PartialEq {
    /// Takes one decoded property, or refuses it as not allowed or repeated.
    fn accept(&mut self, p: Property) -> Result<(), DecodeError>;
    /// Checks rules that involve several properties, once all are read.
    fn validate(&self) -> Result<(), DecodeError> {
        Ok(())
    }
    /// Writes the properties (without the length prefix).
    fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError>;
}

/// Reads a property length and that many bytes of properties.
pub(crate) fn read<P: PropertySet>(r: &mut Reader) -> Result<P, DecodeError> {
    let len = r.varint()? as usize;
    let packet_type = r.packet_type();
    let mut section = Reader::new(r.take(len)?, packet_type);
    let mut set = P::default();
    while !section.is_empty() {
        set.accept(Property::read(&mut section)?)?;
    }
    set.validate()?;
    Ok(set)
}

/// Writes a property length and the properties.
pub(crate) fn write<S: Sink, P: PropertySet>(out: &mut S, set: &P) -> Result<(), EncodeError> {
    let len = measure(|c| set.write(c))?;
    put_varint(
        out,
        u32::try_from(len).map_err(|_| EncodeError::PacketTooLarge(len))?,
    )?;
    set.write(out)
}

// Writers for one property each; `None` writes nothing.

fn w_u8<S: Sink>(out: &mut S, id: PropertyId, v: Option<u8>) {
    if let Some(v) = v {
        out.put_u8(id as u8);
        out.put_u8(v);
    }
}

fn w_bool<S: Sink>(out: &mut S, id: PropertyId, v: Option<bool>) {
    w_u8(out, id, v.map(u8::from));
}

fn w_u16<S: Sink>(out: &mut S, id: PropertyId, v: Option<u16>) {
    if let Some(v) = v {
        out.put_u8(id as u8);
        out.put_u16(v);
    }
}

fn w_u32<S: Sink>(out: &mut S, id: PropertyId, v: Option<u32>) {
    if let Some(v) = v {
        out.put_u8(id as u8);
        out.put_u32(v);
    }
}

fn w_str<S: Sink>(out: &mut S, id: PropertyId, v: &Option<ByteString>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        out.put_u8(id as u8);
        put_str(out, v)?;
    }
    Ok(())
}

fn w_bin<S: Sink>(out: &mut S, id: PropertyId, v: &Option<Bytes>) -> Result<(), EncodeError> {
    if let Some(v) = v {
        out.put_u8(id as u8);
        put_binary(out, v)?;
    }
    Ok(())
}

fn w_sub_id<S: Sink>(out: &mut S, v: u32) -> Result<(), EncodeError> {
    if v == 0 {
        return Err(EncodeError::ZeroSubscriptionIdentifier);
    }
    if v > MAX_VARINT {
        return Err(EncodeError::VarIntTooLarge(v));
    }
    out.put_u8(PropertyId::SubscriptionIdentifier as u8);
    put_varint(out, v)
}

fn w_user<S: Sink>(out: &mut S, user: &UserProperties) -> Result<(), EncodeError> {
    for (k, v) in user {
        out.put_u8(PropertyId::UserProperty as u8);
        put_str(out, k)?;
        put_str(out, v)?;
    }
    Ok(())
}

/// Properties of CONNECT (5.0, 3.1.2.11).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
    pub user_properties: UserProperties,
}

impl PropertySet for ConnectProperties {
    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        let id = p.id();
        match p {
            Property::SessionExpiryInterval(v) => once(&mut self.session_expiry_interval, v, id),
            Property::ReceiveMaximum(v) => once(&mut self.receive_maximum, v, id),
            Property::MaximumPacketSize(v) => once(&mut self.maximum_packet_size, v, id),
            Property::TopicAliasMaximum(v) => once(&mut self.topic_alias_maximum, v, id),
            Property::RequestResponseInformation(v) => {
                once(&mut self.request_response_information, v, id)
            }
            Property::RequestProblemInformation(v) => {
                once(&mut self.request_problem_information, v, id)
            }
            Property::AuthenticationMethod(v) => once(&mut self.authentication_method, v, id),
            Property::AuthenticationData(v) => once(&mut self.authentication_data, v, id),
            Property::UserProperty(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            _ => Err(DecodeError::PropertyNotAllowed(id)),
        }
    }

    fn validate(&self) -> Result<(), DecodeError> {
        auth_data_needs_method(&self.authentication_method, &self.authentication_data)
    }

    fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError> {
        use PropertyId as I;
        w_u32(out, I::SessionExpiryInterval, self.session_expiry_interval);
        w_u16(
            out,
            I::ReceiveMaximum,
            self.receive_maximum.map(NonZeroU16::get),
        );
        w_u32(
            out,
            I::MaximumPacketSize,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        w_u16(out, I::TopicAliasMaximum, self.topic_alias_maximum);
        w_bool(
            out,
            I::RequestResponseInformation,
            self.request_response_information,
        );
        w_bool(
            out,
            I::RequestProblemInformation,
            self.request_problem_information,
        );
        w_str(out, I::AuthenticationMethod, &self.authentication_method)?;
        w_bin(out, I::AuthenticationData, &self.authentication_data)?;
        w_user(out, &self.user_properties)
    }
}

/// Authentication Data is only meaningful with a method (5.0, 3.1.2.11.10, 3.15.2.2.3).
fn auth_data_needs_method(
    method: &Option<ByteString>,
    data: &Option<Bytes>,
) -> Result<(), DecodeError> {
    if data.is_some() && method.is_none() {
        return Err(DecodeError::AuthDataWithoutMethod);
    }
    Ok(())
}

/// Properties of a will (5.0, 3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WillProperties {
    pub will_delay_interval: Option<u32>,
    pub payload_format_indicator: Option<PayloadFormat>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<ByteString>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
}

impl PropertySet for WillProperties {
    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        let id = p.id();
        match p {
            Property::WillDelayInterval(v) => once(&mut self.will_delay_interval, v, id),
            Property::PayloadFormatIndicator(v) => once(&mut self.payload_format_indicator, v, id),
            Property::MessageExpiryInterval(v) => once(&mut self.message_expiry_interval, v, id),
            Property::ContentType(v) => once(&mut self.content_type, v, id),
            Property::ResponseTopic(v) => once(&mut self.response_topic, v, id),
            Property::CorrelationData(v) => once(&mut self.correlation_data, v, id),
            Property::UserProperty(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            _ => Err(DecodeError::PropertyNotAllowed(id)),
        }
    }

    fn validate(&self) -> Result<(), DecodeError> {
        response_topic_is_a_topic_name(&self.response_topic)
    }

    fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError> {
        use PropertyId as I;
        w_u32(out, I::WillDelayInterval, self.will_delay_interval);
        w_u8(
            out,
            I::PayloadFormatIndicator,
            self.payload_format_indicator.map(|f| f as u8),
        );
        w_u32(out, I::MessageExpiryInterval, self.message_expiry_interval);
        w_str(out, I::ContentType, &self.content_type)?;
        w_str(out, I::ResponseTopic, &self.response_topic)?;
        w_bin(out, I::CorrelationData, &self.correlation_data)?;
        w_user(out, &self.user_properties)
    }
}

/// The Response Topic is a topic name, so it may not hold wildcards [MQTT-3.3.2-14] (5.0).
fn response_topic_is_a_topic_name(topic: &Option<ByteString>) -> Result<(), DecodeError> {
    match topic {
        Some(t) if !super::topic::is_valid_name(t) => Err(DecodeError::InvalidTopicName),
        _ => Ok(()),
    }
}

/// Properties of CONNACK (5.0, 3.2.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAckProperties {
    pub session_expiry_interval: Option<u32>,
    pub receive_maximum: Option<NonZeroU16>,
    /// Only QoS 0 or 1 may be sent; absence means QoS 2 is supported.
    pub maximum_qos: Option<QoS>,
    pub retain_available: Option<bool>,
    pub maximum_packet_size: Option<NonZeroU32>,
    pub assigned_client_identifier: Option<ByteString>,
    pub topic_alias_maximum: Option<u16>,
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
    pub wildcard_subscription_available: Option<bool>,
    pub subscription_identifiers_available: Option<bool>,
    pub shared_subscription_available: Option<bool>,
    pub server_keep_alive: Option<u16>,
    pub response_information: Option<ByteString>,
    pub server_reference: Option<ByteString>,
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
}

impl PropertySet for ConnAckProperties {
    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        let id = p.id();
        match p {
            Property::SessionExpiryInterval(v) => once(&mut self.session_expiry_interval, v, id),
            Property::ReceiveMaximum(v) => once(&mut self.receive_maximum, v, id),
            Property::MaximumQoS(v) => once(&mut self.maximum_qos, v, id),
            Property::RetainAvailable(v) => once(&mut self.retain_available, v, id),
            Property::MaximumPacketSize(v) => once(&mut self.maximum_packet_size, v, id),
            Property::AssignedClientIdentifier(v) => {
                once(&mut self.assigned_client_identifier, v, id)
            }
            Property::TopicAliasMaximum(v) => once(&mut self.topic_alias_maximum, v, id),
            Property::ReasonString(v) => once(&mut self.reason_string, v, id),
            Property::UserProperty(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            Property::WildcardSubscriptionAvailable(v) => {
                once(&mut self.wildcard_subscription_available, v, id)
            }
            Property::SubscriptionIdentifierAvailable(v) => {
                once(&mut self.subscription_identifiers_available, v, id)
            }
            Property::SharedSubscriptionAvailable(v) => {
                once(&mut self.shared_subscription_available, v, id)
            }
            Property::ServerKeepAlive(v) => once(&mut self.server_keep_alive, v, id),
            Property::ResponseInformation(v) => once(&mut self.response_information, v, id),
            Property::ServerReference(v) => once(&mut self.server_reference, v, id),
            Property::AuthenticationMethod(v) => once(&mut self.authentication_method, v, id),
            Property::AuthenticationData(v) => once(&mut self.authentication_data, v, id),
            _ => Err(DecodeError::PropertyNotAllowed(id)),
        }
    }

    fn validate(&self) -> Result<(), DecodeError> {
        auth_data_needs_method(&self.authentication_method, &self.authentication_data)
    }

    fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError> {
        use PropertyId as I;
        w_u32(out, I::SessionExpiryInterval, self.session_expiry_interval);
        w_u16(
            out,
            I::ReceiveMaximum,
            self.receive_maximum.map(NonZeroU16::get),
        );
        w_u8(out, I::MaximumQoS, self.maximum_qos.map(|q| q as u8));
        w_bool(out, I::RetainAvailable, self.retain_available);
        w_u32(
            out,
            I::MaximumPacketSize,
            self.maximum_packet_size.map(NonZeroU32::get),
        );
        w_str(
            out,
            I::AssignedClientIdentifier,
            &self.assigned_client_identifier,
        )?;
        w_u16(out, I::TopicAliasMaximum, self.topic_alias_maximum);
        w_str(out, I::ReasonString, &self.reason_string)?;
        w_user(out, &self.user_properties)?;
        w_bool(
            out,
            I::WildcardSubscriptionAvailable,
            self.wildcard_subscription_available,
        );
        w_bool(
            out,
            I::SubscriptionIdentifierAvailable,
            self.subscription_identifiers_available,
        );
        w_bool(
            out,
            I::SharedSubscriptionAvailable,
            self.shared_subscription_available,
        );
        w_u16(out, I::ServerKeepAlive, self.server_keep_alive);
        w_str(out, I::ResponseInformation, &self.response_information)?;
        w_str(out, I::ServerReference, &self.server_reference)?;
        w_str(out, I::AuthenticationMethod, &self.authentication_method)?;
        w_bin(out, I::AuthenticationData, &self.authentication_data)
    }
}

/// Properties of PUBLISH (5.0, 3.3.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishProperties {
    pub payload_format_indicator: Option<PayloadFormat>,
    pub message_expiry_interval: Option<u32>,
    pub topic_alias: Option<NonZeroU16>,
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
    /// Subscription identifiers of the matching subscriptions, each from 1 to 268,435,455. Only
    /// a server sends them [MQTT-3.3.4-6]; several may appear.
    pub subscription_identifiers: Vec<u32>,
    pub content_type: Option<ByteString>,
}

impl PublishProperties {
    /// True when no property is set (the common case, worth a fast path).
    pub fn is_empty(&self) -> bool {
        *self == PublishProperties::default()
    }
}

impl PropertySet for PublishProperties {
    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        let id = p.id();
        match p {
            Property::PayloadFormatIndicator(v) => once(&mut self.payload_format_indicator, v, id),
            Property::MessageExpiryInterval(v) => once(&mut self.message_expiry_interval, v, id),
            Property::TopicAlias(v) => once(&mut self.topic_alias, v, id),
            Property::ResponseTopic(v) => once(&mut self.response_topic, v, id),
            Property::CorrelationData(v) => once(&mut self.correlation_data, v, id),
            Property::UserProperty(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            Property::SubscriptionIdentifier(v) => {
                self.subscription_identifiers.push(v);
                Ok(())
            }
            Property::ContentType(v) => once(&mut self.content_type, v, id),
            _ => Err(DecodeError::PropertyNotAllowed(id)),
        }
    }

    fn validate(&self) -> Result<(), DecodeError> {
        response_topic_is_a_topic_name(&self.response_topic)
    }

    fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError> {
        use PropertyId as I;
        w_u8(
            out,
            I::PayloadFormatIndicator,
            self.payload_format_indicator.map(|f| f as u8),
        );
        w_u32(out, I::MessageExpiryInterval, self.message_expiry_interval);
        w_u16(out, I::TopicAlias, self.topic_alias.map(NonZeroU16::get));
        w_str(out, I::ResponseTopic, &self.response_topic)?;
        w_bin(out, I::CorrelationData, &self.correlation_data)?;
        w_user(out, &self.user_properties)?;
        for &id in &self.subscription_identifiers {
            w_sub_id(out, id)?;
        }
        w_str(out, I::ContentType, &self.content_type)
    }
}

/// Properties of the acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK,
/// which all allow exactly a reason string and user properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AckProperties {
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
}

impl AckProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }
}

impl PropertySet for AckProperties {
    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        let id = p.id();
        match p {
            Property::ReasonString(v) => once(&mut self.reason_string, v, id),
            Property::UserProperty(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            _ => Err(DecodeError::PropertyNotAllowed(id)),
        }
    }

    fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError> {
        w_str(out, PropertyId::ReasonString, &self.reason_string)?;
        w_user(out, &self.user_properties)
    }
}

/// Properties of SUBSCRIBE (5.0, 3.8.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeProperties {
    /// From 1 to 268,435,455.
    pub subscription_identifier: Option<u32>,
    pub user_properties: UserProperties,
}

impl PropertySet for SubscribeProperties {
    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        let id = p.id();
        match p {
            Property::SubscriptionIdentifier(v) => once(&mut self.subscription_identifier, v, id),
            Property::UserProperty(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            _ => Err(DecodeError::PropertyNotAllowed(id)),
        }
    }

    fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError> {
        if let Some(id) = self.subscription_identifier {
            w_sub_id(out, id)?;
        }
        w_user(out, &self.user_properties)
    }
}

/// Properties of UNSUBSCRIBE (5.0, 3.10.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubscribeProperties {
    pub user_properties: UserProperties,
}

impl PropertySet for UnsubscribeProperties {
    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        match p {
            Property::UserProperty(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            p => Err(DecodeError::PropertyNotAllowed(p.id())),
        }
    }

    fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError> {
        w_user(out, &self.user_properties)
    }
}

/// Properties of DISCONNECT (5.0, 3.14.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisconnectProperties {
    pub session_expiry_interval: Option<u32>,
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
    pub server_reference: Option<ByteString>,
}

impl DisconnectProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        *self == DisconnectProperties::default()
    }
}

impl PropertySet for DisconnectProperties {
    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        let id = p.id();
        match p {
            Property::SessionExpiryInterval(v) => once(&mut self.session_expiry_interval, v, id),
            Property::ReasonString(v) => once(&mut self.reason_string, v, id),
            Property::UserProperty(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            Property::ServerReference(v) => once(&mut self.server_reference, v, id),
            _ => Err(DecodeError::PropertyNotAllowed(id)),
        }
    }

    fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError> {
        use PropertyId as I;
        w_u32(out, I::SessionExpiryInterval, self.session_expiry_interval);
        w_str(out, I::ReasonString, &self.reason_string)?;
        w_user(out, &self.user_properties)?;
        w_str(out, I::ServerReference, &self.server_reference)
    }
}

/// Properties of AUTH (5.0, 3.15.2.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthProperties {
    pub authentication_method: Option<ByteString>,
    pub authentication_data: Option<Bytes>,
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
}

impl AuthProperties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        *self == AuthProperties::default()
    }
}

impl PropertySet for AuthProperties {
    fn accept(&mut self, p: Property) -> Result<(), DecodeError> {
        let id = p.id();
        match p {
            Property::AuthenticationMethod(v) => once(&mut self.authentication_method, v, id),
            Property::AuthenticationData(v) => once(&mut self.authentication_data, v, id),
            Property::ReasonString(v) => once(&mut self.reason_string, v, id),
            Property::UserProperty(k, v) => {
                self.user_properties.push((k, v));
                Ok(())
            }
            _ => Err(DecodeError::PropertyNotAllowed(id)),
        }
    }

    fn validate(&self) -> Result<(), DecodeError> {
        auth_data_needs_method(&self.authentication_method, &self.authentication_data)
    }

    fn write<S: Sink>(&self, out: &mut S) -> Result<(), EncodeError> {
        use PropertyId as I;
        w_str(out, I::AuthenticationMethod, &self.authentication_method)?;
        w_bin(out, I::AuthenticationData, &self.authentication_data)?;
        w_str(out, I::ReasonString, &self.reason_string)?;
        w_user(out, &self.user_properties)
    }
}
