//! MQTT 5 properties: what the broker forwards unaltered (3.3.2.3), Request Problem
//! Information and Request Response Information (3.1.2.11), Maximum Packet Size both for
//! publications and for the optional properties of acknowledgements (3.1.2.11.4, 3.4.2.2 and
//! the like), Topic Aliases both ways (3.3.2.3.4) and Receive Maximum (3.3.4, 4.9).

use crate::{addr, connect};
use bytes::Bytes;
use midge_conformance::client::{QUIET, RawClient, V5, connect_packet, encode, publish_packet};
use midge_conformance::names::Names;
use midge_core::codec::{
    ByteString, Connect, DisconnectReason, Packet, PayloadFormat, PublishProperties, QoS, QosPid,
};
use std::collections::BTreeMap;
use std::num::{NonZeroU16, NonZeroU32};

fn connect_with(connect: Connect) -> RawClient {
    RawClient::connect_with(addr(), connect).0
}

// ---------------------------------------------------------------------------------------------
// Properties forwarded unaltered
// ---------------------------------------------------------------------------------------------

/// Payload Format Indicator, Content Type, Response Topic, Correlation Data and User
/// Properties (with a repeated name, in an order that is not sorted) reach the subscriber
/// exactly as published.
/// Covers [MQTT-3.3.2-15] (5.0) [MQTT-3.3.2-16] (5.0) [MQTT-3.3.2-17] (5.0)
/// Covers [MQTT-3.3.2-18] (5.0) [MQTT-3.3.2-20] (5.0)
#[test]
fn mqtt_3_3_2_4_v5_publication_properties_are_forwarded_unaltered() {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = connect(V5, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtLeastOnce);
    let mut publisher = connect(V5, &names.client_id("pub"));
    let properties = PublishProperties {
        payload_format_indicator: Some(PayloadFormat::Utf8),
        content_type: Some("text/plain; charset=utf-8 \u{FEFF}é".into()),
        response_topic: Some(names.topic("reply/é").as_str().into()),
        correlation_data: Some(Bytes::from_static(&[0, 0xFF, 1, 0xFE])),
        user_properties: vec![
            ("z".into(), "1".into()),
            ("a".into(), "2".into()),
            ("z".into(), "0".into()),
            ("m".into(), "".into()),
        ],
        ..PublishProperties::default()
    };
    for (qos, format) in [
        (QoS::AtLeastOnce, PayloadFormat::Utf8),
        (QoS::AtMostOnce, PayloadFormat::Unspecified),
    ] {
        let mut p = publish_packet(
            &topic,
            "héllo".as_bytes(),
            qos,
            false,
            publisher.packet_id(),
        );
        p.properties = PublishProperties {
            payload_format_indicator: Some(format),
            ..properties.clone()
        };
        publisher.send(&Packet::Publish(p.clone()));
        let got = sub.recv_publish();
        assert_eq!(got.properties, p.properties, "properties forwarded");
        assert_eq!(got.payload, p.payload);
    }
}

/// A Response Topic with a wildcard is a Protocol Error (or a malformed packet).
#[test]
fn mqtt_3_3_2_14_v5_response_topic_with_wildcard_closes() {
    let names = Names::new();
    let mut c = connect(V5, &names.client_id("a"));
    let mut p = publish_packet(
        &names.topic("t"),
        b"x",
        QoS::AtMostOnce,
        false,
        c.packet_id(),
    );
    p.properties.response_topic = Some(names.topic("+").as_str().into());
    c.send(&Packet::Publish(p));
    c.expect_disconnect(&[
        DisconnectReason::ProtocolError,
        DisconnectReason::MalformedPacket,
        DisconnectReason::TopicNameInvalid,
    ]);
}

// ---------------------------------------------------------------------------------------------
// Request Problem Information, Request Response Information, Authentication Method
// ---------------------------------------------------------------------------------------------

/// A QoS 1 PUBLISH saying its payload is UTF-8 when it is not: PUBACK 0x99. Returns the PUBACK.
fn invalid_utf8_publish(c: &mut RawClient, topic: &str, qos: QoS) -> Packet {
    let id = c.packet_id();
    let mut p = publish_packet(topic, &[0xC3, 0x28], qos, false, id);
    p.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    c.send(&Packet::Publish(p));
    c.recv_matching(
        "PUBACK or PUBREC",
        |p| matches!(p, Packet::PubAck(a) | Packet::PubRec(a) if a.packet_id == id),
    )
}

fn ack_of(p: &Packet) -> &midge_core::codec::PubAck {
    match p {
        Packet::PubAck(a) | Packet::PubRec(a) => a,
        other => panic!("expected PUBACK or PUBREC, got {other:?}"),
    }
}

/// With Request Problem Information 0 a PUBACK or PUBREC carries no Reason String and no User
/// Properties, whatever its reason code; the PUBLISH asks for a refusal (a payload that is not
/// UTF-8 although its format says it is: 0x99 from a broker that checks, as midge does), which
/// would otherwise carry a Reason String.
#[test]
fn mqtt_3_1_2_32_v5_request_problem_information_0_removes_reason_strings() {
    let names = Names::new();
    let topic = names.topic("t");
    for (tag, request) in [("quiet", Some(false)), ("told", None)] {
        let mut c = connect_packet(V5, &names.client_id(tag));
        c.properties.request_problem_information = request;
        let mut c = connect_with(c);
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let answer = invalid_utf8_publish(&mut c, &topic, qos);
            let ack = ack_of(&answer);
            if request == Some(false) {
                assert_eq!(ack.properties.reason_string, None, "{answer:?}");
                assert!(ack.properties.user_properties.is_empty(), "{answer:?}");
            }
        }
    }
}

/// Response Information only on request: never with Request Response Information 0 (or
/// absent).
#[test]
fn mqtt_3_1_2_31_v5_no_response_information_unless_requested() {
    let names = Names::new();
    for (tag, request) in [("no", Some(false)), ("absent", None)] {
        let mut c = connect_packet(V5, &names.client_id(tag));
        c.properties.request_response_information = request;
        let (c, ack) = RawClient::connect_with(addr(), c);
        assert_eq!(ack.properties.response_information, None, "{ack:?}");
        c.disconnect();
    }
}

/// Without an Authentication Method in CONNECT, the CONNACK carries none (and no AUTH comes).
#[test]
fn mqtt_4_12_0_6_v5_no_authentication_method_without_one_in_connect() {
    let names = Names::new();
    let (mut c, ack) = RawClient::connect_with(addr(), connect_packet(V5, &names.client_id("a")));
    assert_eq!(ack.properties.authentication_method, None, "{ack:?}");
    assert_eq!(ack.properties.authentication_data, None, "{ack:?}");
    c.ping();
}

// ---------------------------------------------------------------------------------------------
// Maximum Packet Size
// ---------------------------------------------------------------------------------------------

fn max_size_client(id: &str, max: u32) -> RawClient {
    let mut c = connect_packet(V5, id);
    c.properties.maximum_packet_size = NonZeroU32::new(max);
    connect_with(c)
}

fn encoded_len(p: &Packet) -> usize {
    encode(p, V5).len()
}

/// A subscriber with Maximum Packet Size 128: a larger publication is not sent (at any QoS),
/// and is dropped rather than held back, so the smaller one after it arrives.
/// Covers [MQTT-3.1.2-28] (5.0).
#[test]
fn mqtt_3_1_2_27_v5_packets_above_the_maximum_packet_size_are_not_sent() {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = max_size_client(&names.client_id("sub"), 128);
    sub.sub(&topic, QoS::ExactlyOnce);
    let mut publisher = connect(V5, &names.client_id("pub"));
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        publisher.publish(&topic, &[b'x'; 200], qos, false);
        publisher.publish(&topic, b"small", qos, false);
        let p = sub.recv_publish();
        assert_eq!(&p.payload[..], b"small", "at {qos:?}");
        assert!(encoded_len(&Packet::Publish(p)) <= 128);
    }
    sub.expect_nothing();
}

/// Acknowledgements refusing a message (0x99 from a broker that checks payload formats) would
/// carry a Reason String; with a Maximum Packet Size too small for it they come without it,
/// never above the limit.
/// Covers [MQTT-3.4.2-3] (5.0) [MQTT-3.5.2-2] (5.0) [MQTT-3.5.2-3] (5.0)
#[test]
fn mqtt_3_4_2_2_v5_ack_properties_dropped_to_fit_the_maximum_packet_size() {
    let names = Names::new();
    let topic = names.topic("t");
    let mut c = max_size_client(&names.client_id("a"), 16);
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let answer = invalid_utf8_publish(&mut c, &topic, qos);
        assert!(encoded_len(&answer) <= 16, "{answer:?}");
    }
}

/// A SUBACK refusing a filter, and a DISCONNECT, within a Maximum Packet Size too small for a
/// Reason String.
/// Covers [MQTT-3.9.2-2] (5.0) [MQTT-3.14.2-3] (5.0) [MQTT-3.14.2-4] (5.0)
#[test]
fn mqtt_3_9_2_1_v5_suback_and_disconnect_fit_the_maximum_packet_size() {
    let names = Names::new();
    let mut c = max_size_client(&names.client_id("a"), 12);
    c.send(&crate::subscribe::subscribe_packet(
        "$share/g+/x",
        QoS::AtMostOnce,
    ));
    let answer = c.recv();
    assert!(
        matches!(answer, Packet::SubAck(_)) || matches!(answer, Packet::Disconnect(_)),
        "{answer:?}"
    );
    assert!(encoded_len(&answer) <= 12, "{answer:?}");
    if matches!(answer, Packet::SubAck(_)) {
        // A protocol error: a second CONNECT.
        c.send(&Packet::from(connect_packet(V5, &names.client_id("a"))));
        for p in c.expect_closed() {
            assert!(encoded_len(&p) <= 12, "{p:?}");
        }
    }
}

/// With Maximum Packet Size 16 every answer stays within it: PUBREL and PUBCOMP for unknown
/// packet ids (0x92), UNSUBACK for a filter with no subscription (0x11), and a CONNACK
/// refusing an unknown authentication method, all of which may carry a Reason String.
/// Covers [MQTT-3.6.2-3] (5.0) [MQTT-3.7.2-2] (5.0) [MQTT-3.7.2-3] (5.0) [MQTT-3.11.2-1] (5.0)
/// Covers [MQTT-3.11.2-2] (5.0) [MQTT-3.2.2-19] (5.0) [MQTT-3.2.2-20] (5.0)
#[test]
fn mqtt_3_6_2_2_v5_acknowledgements_fit_the_maximum_packet_size() {
    const MAX: u32 = 16;
    let names = Names::new();
    let mut c = max_size_client(&names.client_id("a"), MAX);
    let unknown = midge_conformance::client::pid(999);
    c.send(&Packet::PubRec(midge_core::codec::PubRec::success(unknown)));
    let rel = c.expect_pubrel(unknown);
    assert!(
        encoded_len(&Packet::PubRel(rel.clone())) <= MAX as usize,
        "{rel:?}"
    );
    c.send(&Packet::PubRel(midge_core::codec::PubRel::success(unknown)));
    let comp = c.expect_pubcomp(unknown);
    assert!(
        encoded_len(&Packet::PubComp(comp.clone())) <= MAX as usize,
        "{comp:?}"
    );
    let unsuback = c.unsubscribe(&[&names.topic("never")]);
    assert!(
        encoded_len(&Packet::UnsubAck(unsuback.clone())) <= MAX as usize,
        "{unsuback:?}"
    );

    let mut refused = connect_packet(V5, &names.client_id("b"));
    refused.properties.maximum_packet_size = NonZeroU32::new(MAX);
    refused.properties.authentication_method = Some("NO-SUCH-METHOD".into());
    let mut c = RawClient::open(addr(), V5);
    c.send(&Packet::from(refused));
    for p in c.expect_closed() {
        assert!(encoded_len(&p) <= MAX as usize, "{p:?}");
    }
}

/// Without a Maximum QoS in CONNACK the broker supports QoS 2: a QoS 2 PUBLISH completes and
/// a QoS 2 subscription is granted as asked.
#[test]
fn mqtt_3_2_2_9_v5_no_maximum_qos_means_qos_2_is_supported() {
    let names = Names::new();
    let (mut c, ack) = RawClient::connect_with(addr(), connect_packet(V5, &names.client_id("a")));
    if ack
        .properties
        .maximum_qos
        .is_some_and(|q| q != QoS::ExactlyOnce)
    {
        // A broker announcing a lower maximum: nothing to check here.
        return;
    }
    let topic = names.topic("t");
    c.sub(&topic, QoS::ExactlyOnce);
    let reason = c.publish(&topic, b"x", QoS::ExactlyOnce, false);
    assert!(!reason.is_error(), "{reason:?}");
    let p = c.recv_publish();
    assert!(matches!(p.qos_pid, QosPid::ExactlyOnce(_)), "{p:?}");
}

// ---------------------------------------------------------------------------------------------
// Topic aliases
// ---------------------------------------------------------------------------------------------

fn alias(n: u16) -> Option<NonZeroU16> {
    NonZeroU16::new(n)
}

/// The client sets alias 1 with a topic, then publishes with the alias and an empty topic: the
/// subscriber gets the topic. The broker accepts every alias up to the maximum it announced.
#[test]
fn mqtt_3_3_2_12_v5_client_topic_aliases_up_to_the_maximum_are_accepted() {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = connect(V5, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtMostOnce);
    let (mut publisher, ack) =
        RawClient::connect_with(addr(), connect_packet(V5, &names.client_id("pub")));
    let max = ack.properties.topic_alias_maximum.unwrap_or(0);
    if max == 0 {
        // A broker may accept no aliases at all; then there is nothing to check.
        return;
    }
    for a in [1, max] {
        let mut p = publish_packet(
            &topic,
            b"set",
            QoS::AtMostOnce,
            false,
            publisher.packet_id(),
        );
        p.properties.topic_alias = alias(a);
        publisher.send(&Packet::Publish(p.clone()));
        p.topic = ByteString::from("");
        p.payload = Bytes::from_static(b"used");
        publisher.send(&Packet::Publish(p));
        for want in [&b"set"[..], b"used"] {
            let got = sub.expect_publish();
            assert_eq!(got.topic, topic.as_str());
            assert_eq!(&got.payload[..], want, "alias {a}");
        }
    }
}

/// An alias set on one connection means nothing on the next: using it is a Protocol Error.
#[test]
fn mqtt_3_3_2_7_v5_topic_aliases_do_not_carry_over_connections() {
    let names = Names::new();
    let topic = names.topic("t");
    let id = names.client_id("pub");
    let (mut c, _) = crate::connect_persistent(V5, &id);
    let mut p = publish_packet(&topic, b"set", QoS::AtMostOnce, false, c.packet_id());
    p.properties.topic_alias = alias(1);
    c.send(&Packet::Publish(p.clone()));
    c.ping();
    c.drop_connection();
    let (mut c, _) = crate::connect_persistent(V5, &id);
    p.topic = ByteString::from("");
    c.send(&Packet::Publish(p));
    c.expect_disconnect(&[
        DisconnectReason::ProtocolError,
        DisconnectReason::TopicAliasInvalid,
    ]);
    crate::end_session(V5, &id);
}

/// Topic Alias 0 is an error (Topic Alias Invalid, or a malformed property): the broker closes
/// the connection.
#[test]
fn mqtt_3_3_2_8_v5_topic_alias_0_closes() {
    let names = Names::new();
    let mut c = connect(V5, &names.client_id("a"));
    let mut p = publish_packet(
        &names.topic("t"),
        b"x",
        QoS::AtMostOnce,
        false,
        c.packet_id(),
    );
    p.properties.topic_alias = alias(1);
    let mut bytes = encode(&Packet::Publish(p), V5);
    let at = bytes
        .windows(3)
        .position(|w| w == [0x23, 0x00, 0x01])
        .expect("Topic Alias property");
    bytes[at + 2] = 0;
    let _ = c.send_raw(&bytes);
    c.expect_disconnect(&[
        DisconnectReason::TopicAliasInvalid,
        DisconnectReason::ProtocolError,
        DisconnectReason::MalformedPacket,
    ]);
}

/// Without a Topic Alias Maximum in CONNECT the broker sends no topic aliases.
/// Covers [MQTT-3.1.2-30] (5.0).
#[test]
fn mqtt_3_1_2_30_v5_no_topic_aliases_to_a_client_without_a_maximum() {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = connect(V5, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtMostOnce);
    let mut publisher = connect(V5, &names.client_id("pub"));
    for _ in 0..3 {
        publisher.publish(&topic, b"x", QoS::AtMostOnce, false);
        let p = sub.expect_publish();
        assert_eq!(p.properties.topic_alias, None, "{p:?}");
        assert_eq!(p.topic, topic.as_str());
    }
}

/// A subscriber announcing Topic Alias Maximum 2 gets messages on four topics, twice over: any
/// alias the broker uses is 1 or 2, an empty topic only comes with an alias the broker set
/// before, and every message resolves to the topic it was published on.
/// Covers [MQTT-3.3.2-11] (5.0).
#[test]
fn mqtt_3_1_2_29_v5_broker_topic_aliases_stay_within_the_client_maximum() {
    let names = Names::new();
    let mut c = connect_packet(V5, &names.client_id("sub"));
    c.properties.topic_alias_maximum = Some(2);
    let mut sub = connect_with(c);
    sub.sub(&format!("{}/#", names.root()), QoS::AtMostOnce);
    let mut publisher = connect(V5, &names.client_id("pub"));
    let topics: Vec<String> = (0..4).map(|i| names.topic(&format!("t{i}"))).collect();
    let mut aliases: BTreeMap<u16, String> = BTreeMap::new();
    for round in 0..2 {
        for t in &topics {
            publisher.publish(t, format!("{round}").as_bytes(), QoS::AtMostOnce, false);
            let p = sub.expect_publish();
            let resolved = match p.properties.topic_alias {
                Some(a) => {
                    assert!(a.get() <= 2, "alias {a} above the client's maximum 2");
                    if !p.topic.is_empty() {
                        aliases.insert(a.get(), p.topic.to_string());
                    }
                    aliases
                        .get(&a.get())
                        .unwrap_or_else(|| panic!("alias {a} used before it was set"))
                        .clone()
                }
                None => p.topic.to_string(),
            };
            assert_eq!(&resolved, t, "round {round}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Receive Maximum
// ---------------------------------------------------------------------------------------------

/// A subscriber with Receive Maximum 2 gets two of five QoS 1 (then QoS 2) messages and no
/// more until it acknowledges one; meanwhile the broker still answers PINGREQ and SUBSCRIBE.
/// Covers [MQTT-3.3.4-10] (5.0) [MQTT-4.9.0-1] (5.0) [MQTT-4.9.0-2] (5.0) [MQTT-4.9.0-3] (5.0)
#[test]
fn mqtt_3_3_4_9_v5_no_more_unacknowledged_publishes_than_receive_maximum() {
    let names = Names::new();
    for (n, qos) in [(1, QoS::AtLeastOnce), (2, QoS::ExactlyOnce)] {
        let topic = names.topic(&format!("t{n}"));
        let mut c = connect_packet(V5, &names.client_id(&format!("sub{n}")));
        c.properties.receive_maximum = NonZeroU16::new(2);
        let mut sub = connect_with(c);
        sub.sub(&topic, qos);
        let mut publisher = connect(V5, &names.client_id(&format!("pub{n}")));
        for i in 0..5u8 {
            publisher.publish(&topic, &[i], qos, false);
        }
        let mut held = vec![sub.expect_publish(), sub.expect_publish()];
        sub.expect_nothing();
        sub.ping();
        sub.sub(&names.topic(&format!("other{n}")), QoS::AtMostOnce);
        let mut got: Vec<u8> = held.iter().map(|p| p.payload[0]).collect();
        while got.len() < 5 {
            let p = held.remove(0);
            // One acknowledgement (PUBACK; for QoS 2 the flow to PUBCOMP) frees one place.
            assert_ne!(p.qos_pid, QosPid::AtMostOnce, "QoS 0 delivery at {qos:?}");
            sub.acknowledge(&p);
            let next = sub.expect_publish();
            got.push(next.payload[0]);
            held.push(next);
            if got.len() < 5 {
                match sub.try_recv(QUIET) {
                    Err(_) => {}
                    Ok(p) => panic!("more than Receive Maximum in flight: {p:?}"),
                }
            }
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
        for p in held {
            sub.acknowledge(&p);
        }
    }
}
