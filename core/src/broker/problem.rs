//! Reason Strings: the human-readable words MQTT 5 lets a server add to a failure (5.0,
//! 3.1.2.11.7). They go on CONNACK and DISCONNECT always, and on other acknowledgements only to
//! a client that did not set Request Problem Information to 0 [MQTT-3.1.2-29] (5.0). They are
//! for people reading logs and debuggers; clients act on the reason code.

use crate::codec::{
    ByteString, ConnectReason, DisconnectReason, Packet, ProtocolVersion, PubAckReason,
    SubAckReason,
};

/// Why a CONNECT was refused.
pub(crate) fn connect(reason: ConnectReason) -> Option<ByteString> {
    use ConnectReason::*;
    let text = match reason {
        ClientIdentifierNotValid => "client identifier not accepted",
        BadUserNameOrPassword => "bad user name or password",
        NotAuthorized => "not authorized to connect",
        ServerBusy => "too many sessions",
        BadAuthenticationMethod => "authentication method not supported",
        RetainNotSupported => "retained messages are not available, so a retained will is not",
        PayloadFormatInvalid => "the will payload is not UTF-8 although its format says it is",
        QoSNotSupported => "the will QoS is above the maximum QoS",
        _ => return None,
    };
    Some(ByteString::from(text))
}

/// Why the broker closes a connection.
pub(crate) fn disconnect(reason: DisconnectReason) -> Option<ByteString> {
    use DisconnectReason::*;
    let text = match reason {
        MalformedPacket => "malformed packet",
        ProtocolError => "protocol error",
        KeepAliveTimeout => "nothing received within the keep alive",
        SessionTakenOver => "another connection took the session over",
        PacketTooLarge => "packet larger than the maximum packet size",
        ReceiveMaximumExceeded => "more QoS 2 messages in flight than the receive maximum",
        TopicAliasInvalid => "topic alias above the topic alias maximum",
        TopicNameInvalid => "invalid topic name",
        RetainNotSupported => "retained messages are not available",
        QoSNotSupported => "PUBLISH QoS above the maximum QoS",
        ServerShuttingDown => "the server is shutting down",
        NotAuthorized => "not authorized",
        _ => return None,
    };
    Some(ByteString::from(text))
}

/// Why a PUBLISH was not accepted.
pub(crate) fn publish(reason: PubAckReason) -> Option<ByteString> {
    use PubAckReason::*;
    let text = match reason {
        NotAuthorized => "not authorized to publish to this topic",
        ImplementationSpecificError => "payload larger than the message size limit",
        PayloadFormatInvalid => "payload is not UTF-8 although its format indicator says it is",
        _ => return None,
    };
    Some(ByteString::from(text))
}

/// Why subscriptions were refused, for a SUBACK with these reason codes.
pub(crate) fn subscribe(reasons: &[SubAckReason]) -> Option<ByteString> {
    use SubAckReason::*;
    let mut texts: Vec<&str> = Vec::new();
    for r in reasons {
        let text = match r {
            NotAuthorized => "not authorized to subscribe to a filter",
            TopicFilterInvalid => "invalid shared subscription filter",
            QuotaExceeded => "too many subscriptions in the session",
            _ => continue,
        };
        if !texts.contains(&text) {
            texts.push(text);
        }
    }
    (!texts.is_empty()).then(|| ByteString::from(texts.join("; ")))
}

/// Leaves out the Reason String and User Properties of a packet to a client when they would
/// make it larger than the client's Maximum Packet Size [MQTT-3.2.2-19] [MQTT-3.2.2-20]
/// [MQTT-3.4.2-2] [MQTT-3.4.2-3] [MQTT-3.5.2-2] [MQTT-3.5.2-3] [MQTT-3.6.2-2] [MQTT-3.6.2-3]
/// [MQTT-3.7.2-2] [MQTT-3.7.2-3] [MQTT-3.9.2-1] [MQTT-3.9.2-2] [MQTT-3.11.2-1] [MQTT-3.11.2-2]
/// [MQTT-3.14.2-3] [MQTT-3.14.2-4] [MQTT-3.15.2-2] (5.0). Returns whether the
/// packet then fits: one that does not cannot be sent at all [MQTT-3.1.2-27] (5.0) (an Assigned
/// Client Identifier can make even a CONNACK too large for a client with a tiny maximum).
pub(crate) fn fit(packet: &mut Packet, version: ProtocolVersion, max_packet_size: u32) -> bool {
    if fits(packet, version, max_packet_size) {
        return true;
    }
    if !version.is_v5() {
        return false;
    }
    let (reason_string, user_properties) = match packet {
        Packet::PubAck(p) | Packet::PubRec(p) => (
            &mut p.properties.reason_string,
            &mut p.properties.user_properties,
        ),
        Packet::PubRel(p) | Packet::PubComp(p) => (
            &mut p.properties.reason_string,
            &mut p.properties.user_properties,
        ),
        Packet::SubAck(p) => (
            &mut p.properties.reason_string,
            &mut p.properties.user_properties,
        ),
        Packet::UnsubAck(p) => (
            &mut p.properties.reason_string,
            &mut p.properties.user_properties,
        ),
        Packet::Disconnect(p) => (
            &mut p.properties.reason_string,
            &mut p.properties.user_properties,
        ),
        Packet::ConnAck(p) => (
            &mut p.properties.reason_string,
            &mut p.properties.user_properties,
        ),
        Packet::Auth(p) => (
            &mut p.properties.reason_string,
            &mut p.properties.user_properties,
        ),
        _ => return false,
    };
    if reason_string.is_none() && user_properties.is_empty() {
        return false;
    }
    *reason_string = None;
    user_properties.clear();
    fits(packet, version, max_packet_size)
}

/// Whether `packet` fits the client's Maximum Packet Size.
pub(crate) fn fits(packet: &Packet, version: ProtocolVersion, max_packet_size: u32) -> bool {
    packet
        .encoded_len(version)
        .is_ok_and(|len| len <= max_packet_size as usize)
}
