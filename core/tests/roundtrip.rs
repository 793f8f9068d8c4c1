//! Property tests of the wire codec: arbitrary valid packets of every type, in every protocol
//! version, decode to exactly what was encoded, however the bytes are cut up on their way to the
//! receiver; oversized packets are refused from the fixed header alone; and decoding borrows from
//! the input instead of copying it.
//!
//! The strategies build only packets a version can express: before MQTT 5 the fields that exist
//! only in MQTT 5 (properties, most reason codes, subscription options) stay at their defaults.

use bytes::{Bytes, BytesMut};
use midge_core::codec::{
    AckProperties, Auth, AuthProperties, AuthReason, ByteString, ConnAck, ConnAckProperties,
    Connect, ConnectProperties, ConnectReason, DecodeError, Disconnect, DisconnectProperties,
    DisconnectReason, LastWill, MAX_PACKET_SIZE, MAX_VARINT, Packet, PacketId, PayloadFormat,
    ProtocolVersion, PubAckReason, PubRelReason, PubResponse, Publish, PublishProperties, QoS,
    QosPid, RetainHandling, SubAck, SubAckReason, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, UnsubAck, UnsubAckReason, Unsubscribe, UnsubscribeProperties,
    UserProperties, WillProperties, decode, decode_from, topic,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::strategy::Union;
use std::fmt::Debug;
use std::num::{NonZeroU16, NonZeroU32};
use std::ops::Range;

use ProtocolVersion::{V3_1, V3_1_1, V5};

const VERSIONS: [ProtocolVersion; 3] = [V3_1, V3_1_1, V5];

// ---------------------------------------------------------------------------------------------
// Strings, topics and binary data
// ---------------------------------------------------------------------------------------------

/// Multi-byte characters, U+FEFF among them: a receiver must keep it as the character it is
/// [MQTT-1.5.3-3] (3.1.1) [MQTT-1.5.4-3] (5.0).
const MULTI_BYTE: [char; 6] = ['é', 'ß', '€', '中', '😀', '\u{FEFF}'];

/// A character that may appear inside one level of a topic name or filter: anything but U+0000
/// [MQTT-4.7.3-2], the level separator and the wildcards [MQTT-4.7.0-1] (5.0).
fn level_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('a', 'z'),
        1 => select(&[' ', '$', '-', '.', 'A', '0'][..]),
        2 => select(&MULTI_BYTE[..]),
        1 => any::<char>().prop_filter("no U+0000, '/' or wildcard", |c| {
            !matches!(c, '\0' | '/' | '+' | '#')
        }),
    ]
}

/// A character of an MQTT string: anything but U+0000 [MQTT-1.5.3-2] (3.1.1) [MQTT-1.5.4-2] (5.0).
fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        9 => level_char(),
        1 => select(&['/', '+', '#'][..]),
    ]
}

fn string_of(
    chars: impl Strategy<Value = char>,
    max_chars: usize,
) -> impl Strategy<Value = String> {
    vec(chars, 0..=max_chars).prop_map(String::from_iter)
}

/// Any MQTT string, the empty one included.
fn text() -> impl Strategy<Value = ByteString> {
    string_of(text_char(), 12).prop_map(ByteString::from)
}

/// Binary data of at most `max` bytes.
fn binary(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

/// One level of a topic name; levels may be empty ("a//b", "/").
fn level() -> impl Strategy<Value = String> {
    string_of(level_char(), 6)
}

/// A topic name: at least one character [MQTT-4.7.3-1], no wildcards [MQTT-3.3.2-2].
fn topic_name() -> impl Strategy<Value = ByteString> {
    vec(level(), 1..=4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("topic names are not empty", |t| !t.is_empty())
        .prop_map(ByteString::from)
}

/// A topic filter: '+' fills a whole level and '#' is a whole level and the last one
/// [MQTT-4.7.1-2] [MQTT-4.7.1-3] (3.1.1) [MQTT-4.7.1-1] [MQTT-4.7.1-2] (5.0).
fn topic_filter() -> impl Strategy<Value = String> {
    let filter_level = prop_oneof![3 => level(), 1 => Just("+".to_owned())];
    (vec(filter_level, 0..=4), any::<bool>())
        .prop_map(|(mut levels, multi_level)| {
            if multi_level {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter("topic filters are not empty", |f| !f.is_empty())
}

/// A shared subscription's filter: "$share/", a non-empty share name without '/', '+' or '#',
/// '/' and a topic filter [MQTT-4.8.2-1] [MQTT-4.8.2-2] (5.0).
fn shared_filter() -> impl Strategy<Value = String> {
    (vec(level_char(), 1..=6), topic_filter())
        .prop_map(|(name, filter)| format!("$share/{}/{filter}", String::from_iter(name)))
}

/// A topic filter of SUBSCRIBE or UNSUBSCRIBE; shared subscriptions exist from MQTT 5 on.
fn filter(v: ProtocolVersion) -> impl Strategy<Value = ByteString> {
    let filter = if v.is_v5() {
        prop_oneof![4 => topic_filter(), 1 => shared_filter()].boxed()
    } else {
        topic_filter().boxed()
    };
    filter.prop_map(ByteString::from)
}

// ---------------------------------------------------------------------------------------------
// Small values
// ---------------------------------------------------------------------------------------------

/// A packet identifier, never zero [MQTT-2.3.1-1] (3.1.1) [MQTT-2.2.1-3] (5.0).
fn packet_id() -> impl Strategy<Value = PacketId> {
    nonzero_u16()
}

fn nonzero_u16() -> impl Strategy<Value = NonZeroU16> {
    (1..=u16::MAX).prop_map(|n| NonZeroU16::new(n).expect("range starts at 1"))
}

fn nonzero_u32() -> impl Strategy<Value = NonZeroU32> {
    (1..=u32::MAX).prop_map(|n| NonZeroU32::new(n).expect("range starts at 1"))
}

fn qos() -> impl Strategy<Value = QoS> {
    select(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][..])
}

/// QoS with the packet identifier it needs: none at QoS 0 [MQTT-2.3.1-5] (3.1.1)
/// [MQTT-2.2.1-2] (5.0).
fn qos_pid() -> impl Strategy<Value = QosPid> {
    prop_oneof![
        Just(QosPid::AtMostOnce),
        packet_id().prop_map(QosPid::AtLeastOnce),
        packet_id().prop_map(QosPid::ExactlyOnce),
    ]
}

/// A subscription identifier: 1 to 268,435,455 (5.0, 3.8.2.1.2).
fn subscription_identifier() -> impl Strategy<Value = u32> {
    1..=MAX_VARINT
}

/// `strategy` in MQTT 5; before it, the default, the only value older versions can express.
fn v5_only<T: Default + Clone + Debug + 'static>(
    v: ProtocolVersion,
    strategy: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    if v.is_v5() {
        strategy.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

/// Any reason code of a packet type in MQTT 5; before it, the one code the version implies.
fn reason<R: Copy + Debug + 'static>(
    v: ProtocolVersion,
    all: &'static [R],
    before_v5: R,
) -> BoxedStrategy<R> {
    if v.is_v5() {
        select(all).boxed()
    } else {
        Just(before_v5).boxed()
    }
}

// ---------------------------------------------------------------------------------------------
// MQTT 5 properties
// ---------------------------------------------------------------------------------------------

/// User properties: names drawn from a small pool half the time, so repeated names are common;
/// they are allowed and their order is kept (5.0, 3.1.2.11.8).
fn user_properties() -> impl Strategy<Value = UserProperties> {
    let name = prop_oneof![
        select(&["key", "", "\u{FEFF}k", "é"][..]).prop_map(ByteString::from),
        text(),
    ];
    vec((name, text()), 0..=4)
}

fn reason_string() -> impl Strategy<Value = Option<ByteString>> {
    option::of(text())
}

/// Authentication method and data; data only comes with a method (5.0, 3.1.2.11.10).
fn authentication() -> impl Strategy<Value = (Option<ByteString>, Option<Bytes>)> {
    option::of((text(), option::of(binary(32)))).prop_map(|auth| match auth {
        Some((method, data)) => (Some(method), data),
        None => (None, None),
    })
}

fn payload_format() -> impl Strategy<Value = PayloadFormat> {
    select(&[PayloadFormat::Unspecified, PayloadFormat::Utf8][..])
}

/// A message payload with its Payload Format Indicator, which is MQTT 5 only. The payload is
/// UTF-8 text when the indicator says so (5.0, 3.3.2.3.2), and up to a few hundred bytes.
fn formatted_payload(v: ProtocolVersion) -> impl Strategy<Value = (Option<PayloadFormat>, Bytes)> {
    v5_only(v, option::of(payload_format())).prop_flat_map(|format| {
        let payload = match format {
            Some(PayloadFormat::Utf8) => string_of(text_char(), 100).prop_map(Bytes::from).boxed(),
            _ => binary(300).boxed(),
        };
        (Just(format), payload)
    })
}

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(nonzero_u16()),
        option::of(nonzero_u32()),
        option::of(any::<u16>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        authentication(),
        user_properties(),
    )
        .prop_map(
            |(
                session_expiry_interval,
                receive_maximum,
                maximum_packet_size,
                topic_alias_maximum,
                request_response_information,
                request_problem_information,
                (authentication_method, authentication_data),
                user_properties,
            )| ConnectProperties {
                session_expiry_interval,
                receive_maximum,
                maximum_packet_size,
                topic_alias_maximum,
                request_response_information,
                request_problem_information,
                authentication_method,
                authentication_data,
                user_properties,
            },
        )
}

/// Will properties but the payload format, which [`last_will`] ties to the payload.
fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<u32>()),
        option::of(any::<u32>()),
        option::of(text()),
        // The response topic is a topic name [MQTT-3.3.2-14] (5.0).
        option::of(topic_name()),
        option::of(binary(32)),
        user_properties(),
    )
        .prop_map(
            |(
                will_delay_interval,
                message_expiry_interval,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
            )| WillProperties {
                will_delay_interval,
                payload_format_indicator: None,
                message_expiry_interval,
                content_type,
                response_topic,
                correlation_data,
                user_properties,
            },
        )
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    let limits = (
        option::of(any::<u32>()),
        option::of(nonzero_u16()),
        // Only QoS 0 or 1 may be announced (5.0, 3.2.2.3.4).
        option::of(select(&[QoS::AtMostOnce, QoS::AtLeastOnce][..])),
        option::of(any::<bool>()),
        option::of(nonzero_u32()),
        option::of(text()),
        option::of(any::<u16>()),
        reason_string(),
    );
    let features = (
        user_properties(),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<u16>()),
        option::of(text()),
        option::of(text()),
        authentication(),
    );
    (limits, features).prop_map(
        |(
            (
                session_expiry_interval,
                receive_maximum,
                maximum_qos,
                retain_available,
                maximum_packet_size,
                assigned_client_identifier,
                topic_alias_maximum,
                reason_string,
            ),
            (
                user_properties,
                wildcard_subscription_available,
                subscription_identifiers_available,
                shared_subscription_available,
                server_keep_alive,
                response_information,
                server_reference,
                (authentication_method, authentication_data),
            ),
        )| ConnAckProperties {
            session_expiry_interval,
            receive_maximum,
            maximum_qos,
            retain_available,
            maximum_packet_size,
            assigned_client_identifier,
            topic_alias_maximum,
            reason_string,
            user_properties,
            wildcard_subscription_available,
            subscription_identifiers_available,
            shared_subscription_available,
            server_keep_alive,
            response_information,
            server_reference,
            authentication_method,
            authentication_data,
        },
    )
}

/// PUBLISH properties but the topic alias and payload format, which [`publish`] ties to the
/// topic and the payload. Several subscription identifiers may appear (5.0, 3.3.2.3.8).
fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(any::<u32>()),
        option::of(topic_name()),
        option::of(binary(32)),
        user_properties(),
        vec(subscription_identifier(), 0..=3),
        option::of(text()),
    )
        .prop_map(
            |(
                message_expiry_interval,
                response_topic,
                correlation_data,
                user_properties,
                subscription_identifiers,
                content_type,
            )| PublishProperties {
                payload_format_indicator: None,
                message_expiry_interval,
                topic_alias: None,
                response_topic,
                correlation_data,
                user_properties,
                subscription_identifiers,
                content_type,
            },
        )
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (reason_string(), user_properties()).prop_map(|(reason_string, user_properties)| {
        AckProperties {
            reason_string,
            user_properties,
        }
    })
}

fn subscribe_properties() -> impl Strategy<Value = SubscribeProperties> {
    (option::of(subscription_identifier()), user_properties()).prop_map(
        |(subscription_identifier, user_properties)| SubscribeProperties {
            subscription_identifier,
            user_properties,
        },
    )
}

fn unsubscribe_properties() -> impl Strategy<Value = UnsubscribeProperties> {
    user_properties().prop_map(|user_properties| UnsubscribeProperties { user_properties })
}

fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
    (
        option::of(any::<u32>()),
        reason_string(),
        user_properties(),
        option::of(text()),
    )
        .prop_map(
            |(session_expiry_interval, reason_string, user_properties, server_reference)| {
                DisconnectProperties {
                    session_expiry_interval,
                    reason_string,
                    user_properties,
                    server_reference,
                }
            },
        )
}

fn auth_properties() -> impl Strategy<Value = AuthProperties> {
    (authentication(), reason_string(), user_properties()).prop_map(
        |((authentication_method, authentication_data), reason_string, user_properties)| {
            AuthProperties {
                authentication_method,
                authentication_data,
                reason_string,
                user_properties,
            }
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

/// A client identifier. MQTT 3.1 wants 1 to 23 characters; from 3.1.1 on it may be empty (with
/// Clean Session in 3.1.1, which [`connect`] sees to).
fn client_id(v: ProtocolVersion) -> BoxedStrategy<ByteString> {
    match v {
        V3_1 => "[0-9a-zA-Z]{1,23}".prop_map(ByteString::from).boxed(),
        _ => text().boxed(),
    }
}

fn last_will(v: ProtocolVersion) -> impl Strategy<Value = LastWill> {
    (
        topic_name(),
        formatted_payload(v),
        qos(),
        any::<bool>(),
        v5_only(v, will_properties()),
    )
        .prop_map(|(topic, (format, payload), qos, retain, mut properties)| {
            properties.payload_format_indicator = format;
            LastWill {
                topic,
                payload,
                qos,
                retain,
                properties,
            }
        })
}

/// User name and password. Before MQTT 5 a password needs a user name [MQTT-3.1.2-22] (3.1.1).
fn credentials(v: ProtocolVersion) -> impl Strategy<Value = (Option<ByteString>, Option<Bytes>)> {
    (option::of(text()), option::of(binary(32))).prop_map(move |(username, password)| {
        let password = password.filter(|_| v.is_v5() || username.is_some());
        (username, password)
    })
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Connect> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        v5_only(v, connect_properties()),
        client_id(v),
        option::of(last_will(v)),
        credentials(v),
    )
        .prop_map(
            move |(bridge, clean_start, keep_alive, properties, client_id, will, credentials)| {
                let (username, password) = credentials;
                Connect {
                    protocol_version: v,
                    bridge,
                    // An empty client identifier needs Clean Session [MQTT-3.1.3-7] (3.1.1).
                    clean_start: clean_start || (client_id.is_empty() && !v.is_v5()),
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                }
            },
        )
}

/// A CONNACK reason; before MQTT 5 only those a 3.1.x return code (0 to 5) stands for.
fn connect_reason(v: ProtocolVersion) -> BoxedStrategy<ConnectReason> {
    if v.is_v5() {
        select(ConnectReason::ALL).boxed()
    } else {
        let v3: Vec<_> = (0..=5)
            .map(|code| ConnectReason::from_v3_return_code(code).expect("defined return code"))
            .collect();
        select(v3).boxed()
    }
}

fn connack(v: ProtocolVersion) -> impl Strategy<Value = ConnAck> {
    (
        any::<bool>(),
        connect_reason(v),
        v5_only(v, connack_properties()),
    )
        .prop_map(move |(session_present, reason, properties)| ConnAck {
            // Never on a refusal [MQTT-3.2.2-4] (3.1.1) [MQTT-3.2.2-6] (5.0); MQTT 3.1 has no
            // such flag.
            session_present: session_present && reason == ConnectReason::Success && v != V3_1,
            reason,
            properties,
        })
}

/// The topic of a PUBLISH and its topic alias. An empty topic is allowed only in MQTT 5 and
/// only with a topic alias (5.0, 3.3.2.3.4).
fn topic_and_alias(v: ProtocolVersion) -> impl Strategy<Value = (ByteString, Option<NonZeroU16>)> {
    if v.is_v5() {
        prop_oneof![
            3 => (topic_name(), option::of(nonzero_u16())),
            1 => nonzero_u16().prop_map(|alias| (ByteString::new(), Some(alias))),
        ]
        .boxed()
    } else {
        topic_name().prop_map(|topic| (topic, None)).boxed()
    }
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Publish> {
    (
        any::<bool>(),
        qos_pid(),
        any::<bool>(),
        topic_and_alias(v),
        formatted_payload(v),
        v5_only(v, publish_properties()),
    )
        .prop_map(
            |(dup, qos_pid, retain, (topic, alias), (format, payload), mut properties)| {
                properties.topic_alias = alias;
                properties.payload_format_indicator = format;
                Publish {
                    // DUP is 0 at QoS 0 [MQTT-3.3.1-2].
                    dup: dup && qos_pid != QosPid::AtMostOnce,
                    qos_pid,
                    retain,
                    topic,
                    properties,
                    payload,
                }
            },
        )
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP, depending on the reason codes given.
fn pub_response<R: Copy + Debug + 'static>(
    v: ProtocolVersion,
    all: &'static [R],
    success: R,
) -> impl Strategy<Value = PubResponse<R>> {
    (
        packet_id(),
        reason(v, all, success),
        v5_only(v, ack_properties()),
    )
        .prop_map(|(packet_id, reason, properties)| PubResponse {
            packet_id,
            reason,
            properties,
        })
}

/// One subscription. Before MQTT 5 only the QoS exists; in MQTT 5 every combination of options,
/// except No Local on a shared subscription [MQTT-3.8.3-4] (5.0).
fn subscription(v: ProtocolVersion) -> impl Strategy<Value = Subscription> {
    let retain_handling = select(
        &[
            RetainHandling::OnSubscribe,
            RetainHandling::OnNewSubscribe,
            RetainHandling::Never,
        ][..],
    );
    (
        filter(v),
        qos(),
        any::<bool>(),
        any::<bool>(),
        retain_handling,
    )
        .prop_map(
            move |(filter, qos, no_local, retain_as_published, retain_handling)| {
                let options = if v.is_v5() {
                    SubscriptionOptions {
                        qos,
                        no_local: no_local && !topic::is_shared(&filter),
                        retain_as_published,
                        retain_handling,
                    }
                } else {
                    SubscriptionOptions::new(qos)
                };
                Subscription { filter, options }
            },
        )
}

/// At least one subscription [MQTT-3.8.3-3] (3.1.1) [MQTT-3.8.3-2] (5.0).
fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    (
        packet_id(),
        v5_only(v, subscribe_properties()),
        vec(subscription(v), 1..=4),
    )
        .prop_map(|(packet_id, properties, subscriptions)| Subscribe {
            packet_id,
            properties,
            subscriptions,
        })
}

/// A SUBACK reason; before MQTT 5 a granted QoS or failure [MQTT-3.9.3-2] (3.1.1).
fn suback_reason(v: ProtocolVersion) -> BoxedStrategy<SubAckReason> {
    if v.is_v5() {
        select(SubAckReason::ALL).boxed()
    } else {
        select(
            &[
                SubAckReason::GrantedQoS0,
                SubAckReason::GrantedQoS1,
                SubAckReason::GrantedQoS2,
                SubAckReason::UnspecifiedError,
            ][..],
        )
        .boxed()
    }
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = SubAck> {
    (
        packet_id(),
        v5_only(v, ack_properties()),
        vec(suback_reason(v), 1..=4),
    )
        .prop_map(|(packet_id, properties, reasons)| SubAck {
            packet_id,
            properties,
            reasons,
        })
}

/// At least one topic filter [MQTT-3.10.3-2].
fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Unsubscribe> {
    (
        packet_id(),
        v5_only(v, unsubscribe_properties()),
        vec(filter(v), 1..=4),
    )
        .prop_map(|(packet_id, properties, filters)| Unsubscribe {
            packet_id,
            properties,
            filters,
        })
}

/// UNSUBACK; its reason codes exist only in MQTT 5.
fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = UnsubAck> {
    (
        packet_id(),
        v5_only(v, ack_properties()),
        v5_only(v, vec(select(UnsubAckReason::ALL), 1..=4)),
    )
        .prop_map(|(packet_id, properties, reasons)| UnsubAck {
            packet_id,
            properties,
            reasons,
        })
}

fn disconnect(v: ProtocolVersion) -> impl Strategy<Value = Disconnect> {
    (
        reason(
            v,
            DisconnectReason::ALL,
            DisconnectReason::NormalDisconnection,
        ),
        v5_only(v, disconnect_properties()),
    )
        .prop_map(|(reason, properties)| Disconnect { reason, properties })
}

/// AUTH, which exists only in MQTT 5.
fn auth() -> impl Strategy<Value = Auth> {
    (select(AuthReason::ALL), auth_properties())
        .prop_map(|(reason, properties)| Auth { reason, properties })
}

/// Any valid packet of `v`: each of the fifteen types (fourteen before MQTT 5) equally likely.
fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut types = vec![
        connect(v).prop_map(Packet::from).boxed(),
        connack(v).prop_map(Packet::from).boxed(),
        publish(v).prop_map(Packet::Publish).boxed(),
        pub_response(v, PubAckReason::ALL, PubAckReason::Success)
            .prop_map(Packet::PubAck)
            .boxed(),
        pub_response(v, PubAckReason::ALL, PubAckReason::Success)
            .prop_map(Packet::PubRec)
            .boxed(),
        pub_response(v, PubRelReason::ALL, PubRelReason::Success)
            .prop_map(Packet::PubRel)
            .boxed(),
        pub_response(v, PubRelReason::ALL, PubRelReason::Success)
            .prop_map(Packet::PubComp)
            .boxed(),
        subscribe(v).prop_map(Packet::Subscribe).boxed(),
        suback(v).prop_map(Packet::SubAck).boxed(),
        unsubscribe(v).prop_map(Packet::Unsubscribe).boxed(),
        unsuback(v).prop_map(Packet::UnsubAck).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(v).prop_map(Packet::Disconnect).boxed(),
    ];
    if v.is_v5() {
        types.push(auth().prop_map(Packet::Auth).boxed());
    }
    Union::new(types).boxed()
}

/// A few packets following each other on one connection.
fn packets(v: ProtocolVersion) -> impl Strategy<Value = Vec<Packet>> {
    vec(packet(v), 1..=4)
}

/// A protocol version with a value made for it by `make`.
fn versioned<S: Strategy + 'static>(
    make: impl Fn(ProtocolVersion) -> S + 'static,
) -> impl Strategy<Value = (ProtocolVersion, S::Value)> {
    select(&VERSIONS[..]).prop_flat_map(move |v| (Just(v), make(v)))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn encode(p: &Packet, v: ProtocolVersion) -> Bytes {
    let mut out = BytesMut::new();
    p.encode(v, &mut out).expect("a valid packet encodes");
    out.freeze()
}

fn encode_all(packets: &[Packet], v: ProtocolVersion) -> Bytes {
    let mut out = BytesMut::new();
    for p in packets {
        p.encode(v, &mut out).expect("a valid packet encodes");
    }
    out.freeze()
}

/// The length of the fixed header at the start of `wire`: the first byte and the remaining
/// length, whose last byte has the continuation bit clear.
fn fixed_header_len(wire: &[u8]) -> usize {
    let length_bytes = wire[1..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .expect("a complete remaining length")
        + 1;
    1 + length_bytes
}

/// A receiver: appends each chunk to its buffer and takes out every packet the buffer then
/// completes. Returns the packets and the number of bytes left over.
fn receive<'a>(
    v: ProtocolVersion,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Vec<Packet>, usize), DecodeError> {
    let mut buf = BytesMut::new();
    let mut received = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(p) = decode_from(&mut buf, v, u32::MAX)? {
            received.push(p);
        }
    }
    Ok((received, buf.len()))
}

/// `wire` cut into chunks of the given sizes, repeated as often as needed.
fn chunks<'a>(wire: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut rest = wire;
    let mut out = Vec::new();
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}

/// True when the bytes of `part` lie inside the address range `whole`.
fn lies_within(part: &[u8], whole: &Range<*const u8>) -> bool {
    let part = part.as_ptr_range();
    whole.start <= part.start && part.end <= whole.end
}

fn assert_round_trip(v: ProtocolVersion, p: &Packet) -> Result<(), TestCaseError> {
    let wire = encode(p, v);
    prop_assert_eq!(p.encoded_len(v), Ok(wire.len()));
    prop_assert_eq!(
        decode(&wire, v, u32::MAX),
        Ok(Some((p.clone(), wire.len())))
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// decode(encode(p)) == p, consuming exactly the encoded bytes, which `encoded_len` predicts.
    #[test]
    fn round_trip_v3_1(p in packet(V3_1)) {
        assert_round_trip(V3_1, &p)?;
    }

    #[test]
    fn round_trip_v3_1_1(p in packet(V3_1_1)) {
        assert_round_trip(V3_1_1, &p)?;
    }

    #[test]
    fn round_trip_v5(p in packet(V5)) {
        assert_round_trip(V5, &p)?;
    }

    /// The same packet always encodes to the same bytes, appended after whatever the buffer
    /// holds, and re-encoding what was decoded reproduces them.
    #[test]
    fn encoding_is_deterministic((v, p) in versioned(packet)) {
        let first = encode(&p, v);
        prop_assert_eq!(&encode(&p, v), &first);

        let mut appended = BytesMut::from(&b"earlier bytes"[..]);
        p.encode(v, &mut appended).expect("a valid packet encodes");
        prop_assert_eq!(&appended[b"earlier bytes".len()..], &first[..]);

        let (decoded, _) = decode(&first, v, u32::MAX)
            .expect("a valid packet decodes")
            .expect("the packet is complete");
        prop_assert_eq!(encode(&decoded, v), first);
    }

    /// `Publish::encode`, which the broker uses for every delivery, writes exactly what the
    /// PUBLISH as a `Packet` writes, and `Publish::encoded_len` predicts it.
    #[test]
    fn publish_encodes_as_its_packet((v, p) in versioned(publish)) {
        let mut direct = BytesMut::from(&b"earlier bytes"[..]);
        p.encode(v, &mut direct).expect("a valid PUBLISH encodes");
        let direct = &direct[b"earlier bytes".len()..];
        prop_assert_eq!(p.encoded_len(v), Ok(direct.len()));
        prop_assert_eq!(direct, &encode(&Packet::Publish(p), v)[..]);
    }

    /// Until the last byte of a packet arrives, the decoder asks for more and leaves the buffer
    /// as it was: never an error, never a packet.
    #[test]
    fn every_strict_prefix_needs_more_bytes((v, p) in versioned(packet)) {
        let wire = encode(&p, v);
        for end in 0..wire.len() {
            prop_assert_eq!(decode(&wire.slice(..end), v, u32::MAX), Ok(None), "prefix of {} bytes", end);
            let mut buf = BytesMut::from(&wire[..end]);
            prop_assert_eq!(decode_from(&mut buf, v, u32::MAX), Ok(None), "prefix of {} bytes", end);
            prop_assert_eq!(buf.len(), end);
        }
    }

    /// A stream cut into chunks of random sizes decodes to the packets that were sent.
    #[test]
    fn stream_in_random_chunks_decodes_to_the_packets_sent(
        (v, sent) in versioned(packets),
        sizes in vec(1..=64usize, 1..=16),
    ) {
        let wire = encode_all(&sent, v);
        prop_assert_eq!(receive(v, chunks(&wire, &sizes)), Ok((sent, 0)));
    }

    /// `decode` on a stream, advancing by the bytes each packet consumed, finds every packet.
    #[test]
    fn stream_decodes_packet_by_packet_from_bytes((v, sent) in versioned(packets)) {
        let wire = encode_all(&sent, v);
        let mut at = 0;
        let mut received = Vec::new();
        while let Some((p, consumed)) = decode(&wire.slice(at..), v, u32::MAX).expect("valid stream") {
            received.push(p);
            at += consumed;
        }
        prop_assert_eq!(at, wire.len());
        prop_assert_eq!(received, sent);
    }

    /// A packet larger than the receiver's maximum is refused as soon as its fixed header is
    /// complete, before any of the body arrives; one of exactly the maximum is accepted.
    #[test]
    fn packet_above_maximum_is_refused_from_its_fixed_header(
        (v, p) in versioned(packet),
        below in any::<Index>(),
    ) {
        let wire = encode(&p, v);
        let size = wire.len();
        let header = fixed_header_len(&wire);
        let max = u32::try_from(below.index(size)).expect("small packet");
        let too_large = DecodeError::PacketTooLarge { size: size as u64, max };
        for end in 0..header {
            prop_assert_eq!(decode(&wire.slice(..end), v, max), Ok(None));
        }
        for end in header..=size {
            prop_assert_eq!(decode(&wire.slice(..end), v, max), Err(too_large.clone()));
        }
        let mut buf = BytesMut::from(&wire[..header]);
        prop_assert_eq!(decode_from(&mut buf, v, max), Err(too_large));

        let exact = u32::try_from(size).expect("small packet");
        prop_assert_eq!(decode(&wire, v, exact), Ok(Some((p.clone(), size))));
        prop_assert_eq!(decode_from(&mut BytesMut::from(&wire[..]), v, exact), Ok(Some(p)));
    }

    /// Decoding a PUBLISH copies neither topic nor payload: both are slices of the input, for
    /// `decode` and for `decode_from` alike.
    #[test]
    fn decoded_publish_borrows_topic_and_payload_from_the_input((v, p) in versioned(publish)) {
        let wire = encode(&Packet::Publish(p), v);
        let input = wire.as_ptr_range();
        let Ok(Some((Packet::Publish(d), _))) = decode(&wire, v, u32::MAX) else {
            return Err(TestCaseError::fail("not decoded as a PUBLISH"));
        };
        // Empty slices need not point anywhere in particular.
        prop_assert!(d.topic.is_empty() || lies_within(d.topic.as_bytes(), &input));
        prop_assert!(d.payload.is_empty() || lies_within(&d.payload, &input));

        let mut buf = BytesMut::from(&wire[..]);
        let received = buf.as_ptr_range();
        let Ok(Some(Packet::Publish(d))) = decode_from(&mut buf, v, u32::MAX) else {
            return Err(TestCaseError::fail("not decoded as a PUBLISH"));
        };
        prop_assert!(d.topic.is_empty() || lies_within(d.topic.as_bytes(), &received));
        prop_assert!(d.payload.is_empty() || lies_within(&d.payload, &received));
    }
}

proptest! {
    // Every cut point decodes the whole stream again, so fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A stream split in two at any byte boundary decodes to the packets that were sent.
    #[test]
    fn stream_split_anywhere_decodes_to_the_packets_sent((v, sent) in versioned(packets)) {
        let wire = encode_all(&sent, v);
        for cut in 0..=wire.len() {
            let (first, second) = wire.split_at(cut);
            prop_assert_eq!(receive(v, [first, second]), Ok((sent.clone(), 0)), "cut at {}", cut);
        }
    }
}

/// A QoS 0 PUBLISH whose remaining length is exactly `remaining` bytes.
fn publish_with_remaining_length(v: ProtocolVersion, remaining: usize) -> Packet {
    let mut p = Publish {
        dup: false,
        qos_pid: QosPid::AtMostOnce,
        retain: false,
        topic: ByteString::from_static("t"),
        properties: PublishProperties::default(),
        payload: Bytes::new(),
    };
    let empty_body = Packet::Publish(p.clone()).encoded_len(v).expect("encodes") - 2;
    p.payload = Bytes::from(vec![0x5A; remaining - empty_body]);
    Packet::Publish(p)
}

/// The size limit at remaining lengths on both sides of each variable byte integer length, so
/// with fixed headers of 2, 3, 4 and 5 bytes: refused from the header alone one byte over the
/// maximum, accepted at exactly the maximum.
#[test]
fn size_limit_is_checked_on_fixed_headers_of_every_length() {
    let boundaries = [
        (127, 2),
        (128, 3),
        (16_383, 3),
        (16_384, 4),
        (2_097_151, 4),
        (2_097_152, 5),
    ];
    for v in VERSIONS {
        for (remaining, header) in boundaries {
            let p = publish_with_remaining_length(v, remaining);
            let wire = encode(&p, v);
            assert_eq!(wire.len(), header + remaining, "{v:?} {remaining}");
            assert_eq!(fixed_header_len(&wire), header);
            let size = u32::try_from(wire.len()).expect("fits");

            let too_large = DecodeError::PacketTooLarge {
                size: u64::from(size),
                max: size - 1,
            };
            assert_eq!(decode(&wire.slice(..header - 1), v, size - 1), Ok(None));
            assert_eq!(
                decode(&wire.slice(..header), v, size - 1),
                Err(too_large.clone())
            );
            let mut buf = BytesMut::from(&wire[..header]);
            assert_eq!(decode_from(&mut buf, v, size - 1), Err(too_large));

            assert_eq!(decode(&wire.slice(..header), v, size), Ok(None));
            assert_eq!(decode(&wire, v, size), Ok(Some((p.clone(), wire.len()))));
        }
    }
}

/// The largest packet MQTT can frame is judged from its five header bytes alone.
#[test]
fn largest_frameable_packet_is_judged_from_its_header() {
    let header = Bytes::from_static(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]);
    for v in VERSIONS {
        assert_eq!(decode(&header, v, MAX_PACKET_SIZE), Ok(None));
        assert_eq!(
            decode(&header, v, MAX_PACKET_SIZE - 1),
            Err(DecodeError::PacketTooLarge {
                size: u64::from(MAX_PACKET_SIZE),
                max: MAX_PACKET_SIZE - 1,
            })
        );
    }
}

/// PINGREQ is the smallest packet: two bytes, refused under a maximum of one.
#[test]
fn smallest_packet_against_the_size_limit() {
    let wire = encode(&Packet::PingReq, V3_1_1);
    assert_eq!(wire.len(), 2);
    for v in VERSIONS {
        assert_eq!(decode(&wire.slice(..1), v, 1), Ok(None));
        assert_eq!(
            decode(&wire, v, 1),
            Err(DecodeError::PacketTooLarge { size: 2, max: 1 })
        );
        assert_eq!(decode(&wire, v, 2), Ok(Some((Packet::PingReq, 2))));
    }
}

/// U+FEFF is an ordinary character wherever it appears: a receiver neither skips nor strips it
/// [MQTT-1.5.3-3] (3.1.1) [MQTT-1.5.4-3] (5.0).
#[test]
fn byte_order_mark_is_kept_in_strings() {
    let topic = "\u{FEFF}a/\u{FEFF}/b\u{FEFF}";
    for v in VERSIONS {
        let p = Packet::Publish(Publish {
            dup: false,
            qos_pid: QosPid::AtMostOnce,
            retain: false,
            topic: ByteString::from_static(topic),
            properties: PublishProperties::default(),
            payload: Bytes::new(),
        });
        let wire = encode(&p, v);
        assert_eq!(
            &wire[2..4],
            &u16::try_from(topic.len()).expect("short").to_be_bytes()
        );
        assert_eq!(&wire[4..7], &[0xEF, 0xBB, 0xBF]);
        let Ok(Some((Packet::Publish(d), _))) = decode(&wire, v, u32::MAX) else {
            panic!("not decoded as a PUBLISH");
        };
        assert_eq!(&*d.topic, topic);
    }
}
