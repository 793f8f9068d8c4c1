//! MQTT 5 problem reporting and the properties a client asks the broker for: Reason Strings
//! (and Request Problem Information), the Payload Format Indicator's UTF-8 check, and Response
//! Information.

mod harness;

use harness::*;
use midge_core::broker::{Config, ConnId};
use midge_core::codec::{
    ConnectReason, DisconnectReason, Packet, PayloadFormat, PubAckReason, QoS, SubAckReason,
};
use std::num::{NonZeroU16, NonZeroU32};

fn refusing() -> Config {
    Config {
        message_size_limit: 4,
        max_topic_alias: 1,
        ..Config::default()
    }
}

fn client_with(w: &mut World, id: &str, problem_info: Option<bool>, max: Option<u32>) -> ConnId {
    let mut c = connect(V5, id);
    c.properties.request_problem_information = problem_info;
    c.properties.maximum_packet_size = max.and_then(NonZeroU32::new);
    w.connect(c).0
}

fn utf8_publish(payload: &'static [u8], qos: QoS, id: u16) -> Packet {
    let mut p = publish("t", payload, qos, id);
    if let Packet::Publish(p) = &mut p {
        p.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    }
    p
}

#[test]
fn a_refused_publish_says_why_unless_the_client_asked_not_to_be_told() {
    // [MQTT-3.1.2-29] (5.0): with Request Problem Information 0, no Reason String on PUBACK.
    let mut w = World::new(refusing());
    let told = client_with(&mut w, "told", None, None);
    let quiet = client_with(&mut w, "quiet", Some(false), None);
    for (conn, want) in [(told, true), (quiet, false)] {
        w.send(conn, &publish("t", b"too large", QoS::AtLeastOnce, 1));
        match w.recv(conn).as_slice() {
            [Packet::PubAck(a)] => {
                assert_eq!(a.reason, PubAckReason::ImplementationSpecificError);
                assert_eq!(a.properties.reason_string.is_some(), want, "{a:?}");
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
}

#[test]
fn a_refused_subscription_says_why_unless_the_client_asked_not_to_be_told() {
    // [MQTT-3.1.2-29] (5.0) on SUBACK.
    let mut w = World::new(Config {
        max_subscriptions_per_session: 0,
        ..Config::default()
    });
    let told = client_with(&mut w, "told", Some(true), None);
    let quiet = client_with(&mut w, "quiet", Some(false), None);
    for (conn, want) in [(told, true), (quiet, false)] {
        w.send(conn, &subscribe(1, "t", QoS::AtMostOnce));
        match w.recv(conn).as_slice() {
            [Packet::SubAck(s)] => {
                assert_eq!(s.reasons, [SubAckReason::QuotaExceeded]);
                assert_eq!(s.properties.reason_string.is_some(), want, "{s:?}");
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

#[test]
fn a_disconnect_from_the_broker_says_why_even_to_a_quiet_client() {
    // (5.0, 3.1.2.11.7): Reason Strings are allowed on DISCONNECT whatever the client asked.
    let mut w = World::new(refusing());
    let quiet = client_with(&mut w, "quiet", Some(false), None);
    let mut p = publish("t", b"x", QoS::AtMostOnce, 0);
    if let Packet::Publish(p) = &mut p {
        p.properties.topic_alias = NonZeroU16::new(2);
    }
    w.send(quiet, &p);
    match w.recv(quiet).as_slice() {
        [Packet::Disconnect(d)] => {
            assert_eq!(d.reason, DisconnectReason::TopicAliasInvalid);
            assert!(d.properties.reason_string.is_some());
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

#[test]
fn a_reason_string_is_left_out_rather_than_exceed_the_maximum_packet_size() {
    // [MQTT-3.4.2-2] (5.0): a PUBACK with its Reason String would be larger than 10 bytes.
    let mut w = World::new(refusing());
    let small = client_with(&mut w, "small", Some(true), Some(10));
    w.send(small, &publish("t", b"too large", QoS::AtLeastOnce, 1));
    match w.recv(small).as_slice() {
        [Packet::PubAck(a)] => {
            assert_eq!(a.reason, PubAckReason::ImplementationSpecificError);
            assert_eq!(a.properties.reason_string, None);
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[test]
fn a_payload_that_is_not_the_utf8_it_claims_is_refused() {
    // (5.0, 3.3.2.3.2): PUBACK/PUBREC 0x99 (Payload format invalid), nothing forwarded.
    let mut w = World::default();
    let sub = w.client(V5, "sub");
    w.subscribe(sub, "t", QoS::ExactlyOnce);
    let publ = w.client(V5, "pub");
    w.send(publ, &utf8_publish(b"\xff\xfe", QoS::AtLeastOnce, 1));
    w.send(publ, &utf8_publish(b"\xc3", QoS::ExactlyOnce, 2));
    w.send(publ, &utf8_publish(b"\x80", QoS::AtMostOnce, 0));
    match without_reason_strings(w.recv(publ)).as_slice() {
        [Packet::PubAck(a), Packet::PubRec(r)] => {
            assert_eq!(a.reason, PubAckReason::PayloadFormatInvalid);
            assert_eq!(r.reason, PubAckReason::PayloadFormatInvalid);
        }
        other => panic!("expected PUBACK and PUBREC, got {other:?}"),
    }
    w.recv_none(sub);
    assert_eq!(w.broker.stats().publish_invalid_payload, 3);
}

#[test]
fn a_valid_utf8_payload_is_forwarded_with_its_indicator_unaltered() {
    // [MQTT-3.3.2-4] (5.0)
    let mut w = World::default();
    let sub = w.client(V5, "sub");
    w.subscribe(sub, "t", QoS::AtLeastOnce);
    let publ = w.client(V5, "pub");
    w.send(publ, &utf8_publish("héllo".as_bytes(), QoS::AtLeastOnce, 1));
    let got = w.recv(sub);
    let p = publishes(&got);
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].properties.payload_format_indicator,
        Some(PayloadFormat::Utf8)
    );
}

#[test]
fn a_will_that_is_not_the_utf8_it_claims_is_refused_at_connect() {
    // (5.0, 3.1.3.2.3): CONNACK 0x99.
    let mut w = World::default();
    let mut c = connect(V5, "w");
    let mut lw = will("will", b"\xff", QoS::AtMostOnce, false);
    lw.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    c.will = Some(lw);
    let (conn, ack) = w.try_connect(c);
    assert_eq!(ack.reason, ConnectReason::PayloadFormatInvalid);
    assert!(w.is_closed(conn));
}

#[test]
fn response_information_is_given_when_asked_for() {
    // (5.0, 3.1.2.11.6, 3.2.2.3.15)
    let mut w = World::default();
    let mut c = connect(V5, "asker");
    c.properties.request_response_information = Some(true);
    let (_, ack) = w.connect(c);
    assert_eq!(
        ack.properties.response_information.as_deref(),
        Some("response/asker")
    );
    let (_, ack) = w.connect(connect(V5, "other"));
    assert_eq!(ack.properties.response_information, None);

    let mut w = World::new(Config {
        response_topic_prefix: None,
        ..Config::default()
    });
    let mut c = connect(V5, "asker");
    c.properties.request_response_information = Some(true);
    let (_, ack) = w.connect(c);
    assert_eq!(ack.properties.response_information, None);
}
