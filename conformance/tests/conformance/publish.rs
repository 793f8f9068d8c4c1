//! PUBLISH (3.3), the QoS flows (4.3), retained messages and message ordering (4.6).

use crate::connect;
use midge_conformance::client::{RawClient, V5, V311, encode, pid, publish_packet};
use midge_conformance::names::Names;
use midge_core::codec::{
    DisconnectReason, Packet, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, QoS, QosPid,
};

/// Connected publisher and subscriber (subscribed to `topic` at `qos`).
fn pair(version: ProtocolVersion, names: &Names, topic: &str, qos: QoS) -> (RawClient, RawClient) {
    let mut sub = connect(version, &names.client_id("sub"));
    sub.sub(topic, qos);
    let publisher = connect(version, &names.client_id("pub"));
    (publisher, sub)
}

/// QoS 0 goes out with QoS 0, DUP 0 and no packet id.
fn qos0_delivery(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let (mut publisher, mut sub) = pair(version, &names, &topic, QoS::AtMostOnce);
    publisher.publish(&topic, b"zero", QoS::AtMostOnce, false);
    let p = sub.expect_publish();
    assert_eq!(p.qos_pid, QosPid::AtMostOnce);
    assert!(!p.dup, "DUP set on QoS 0");
    assert_eq!(&p.payload[..], b"zero");
}

/// Covers [MQTT-3.3.1-2] (3.1.1) [MQTT-2.3.1-5] (3.1.1) [MQTT-4.5.0-1] (3.1.1).
#[test]
fn mqtt_4_3_1_1_v311_qos0_sent_with_qos0_and_dup0() {
    qos0_delivery(V311);
}

/// Covers [MQTT-3.3.1-2] (5.0) [MQTT-2.2.1-2] (5.0).
#[test]
fn mqtt_4_3_1_1_v5_qos0_sent_with_qos0_and_dup0() {
    qos0_delivery(V5);
}

/// The broker as QoS 1 receiver: PUBACK with the PUBLISH's packet id.
fn qos1_receiver(version: ProtocolVersion) {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    let topic = names.topic("t");
    for id in [1, 77, 65535] {
        c.send(&Packet::Publish(publish_packet(
            &topic,
            b"x",
            QoS::AtLeastOnce,
            false,
            pid(id),
        )));
        let ack = c.expect_puback(pid(id));
        assert!(!ack.reason.is_error(), "{ack:?}");
    }
}

/// Covers [MQTT-2.3.1-6] (3.1.1) [MQTT-3.3.4-1] (3.1.1).
#[test]
fn mqtt_4_3_2_2_v311_qos1_publish_gets_puback_with_its_id() {
    qos1_receiver(V311);
}

/// Covers [MQTT-2.2.1-5] (5.0) [MQTT-3.3.4-1] (5.0) [MQTT-3.4.2-1] (5.0).
#[test]
fn mqtt_4_3_2_4_v5_qos1_publish_gets_puback_with_its_id() {
    qos1_receiver(V5);
}

/// The broker as QoS 2 receiver: PUBREC, a repeat before PUBREL is acknowledged again but
/// delivered once, PUBREL gets PUBCOMP.
fn qos2_receiver(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let (mut publisher, mut sub) = pair(version, &names, &topic, QoS::ExactlyOnce);
    let id = pid(9);
    let mut p = publish_packet(&topic, b"once", QoS::ExactlyOnce, false, id);
    publisher.send(&Packet::Publish(p.clone()));
    assert!(!publisher.expect_pubrec(id).reason.is_error());
    p.dup = true;
    publisher.send(&Packet::Publish(p));
    assert!(!publisher.expect_pubrec(id).reason.is_error());
    publisher.send(&Packet::PubRel(PubRel::success(id)));
    let comp = publisher.expect_pubcomp(id);
    assert!(!comp.reason.is_error(), "{comp:?}");
    assert_eq!(&sub.recv_publish().payload[..], b"once");
    publisher.ping();
    sub.expect_nothing();
}

/// Covers [MQTT-2.3.1-6] (3.1.1).
#[test]
fn mqtt_4_3_3_2_v311_qos2_receiver_flow_delivers_once() {
    qos2_receiver(V311);
}

/// Covers [MQTT-4.3.3-10] (5.0) [MQTT-4.3.3-11] (5.0) [MQTT-3.5.2-1] (5.0) [MQTT-3.7.2-1] (5.0).
#[test]
fn mqtt_4_3_3_8_v5_qos2_receiver_flow_delivers_once() {
    qos2_receiver(V5);
}

/// The broker as QoS 1 sender: a non-zero packet id, DUP 0; the broker as QoS 2 sender:
/// PUBLISH, PUBREC -> PUBREL with the same id, PUBCOMP.
fn sender_flows(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let (mut publisher, mut sub) = pair(version, &names, &topic, QoS::ExactlyOnce);
    publisher.publish(&topic, b"one", QoS::AtLeastOnce, false);
    let p = sub.expect_publish();
    let QosPid::AtLeastOnce(id1) = p.qos_pid else {
        panic!("expected QoS 1, got {:?}", p.qos_pid)
    };
    assert!(!p.dup);
    sub.send(&Packet::PubAck(PubAck::success(id1)));
    publisher.publish(&topic, b"two", QoS::ExactlyOnce, false);
    let p = sub.expect_publish();
    let QosPid::ExactlyOnce(id2) = p.qos_pid else {
        panic!("expected QoS 2, got {:?}", p.qos_pid)
    };
    assert!(!p.dup);
    sub.send(&Packet::PubRec(PubRec::success(id2)));
    let rel = sub.expect_pubrel(id2);
    assert!(!rel.reason.is_error());
    sub.send(&Packet::PubComp(PubComp::success(id2)));
    sub.ping();
}

/// Covers [MQTT-4.3.3-1] (3.1.1) [MQTT-2.3.1-1] (3.1.1).
#[test]
fn mqtt_4_3_2_1_v311_qos1_and_qos2_sender_flows() {
    sender_flows(V311);
}

/// Covers [MQTT-4.3.2-2] (5.0) [MQTT-4.3.3-2] (5.0) [MQTT-4.3.3-4] (5.0) [MQTT-3.6.2-1] (5.0).
#[test]
fn mqtt_4_3_2_1_v5_qos1_and_qos2_sender_flows() {
    sender_flows(V5);
}

/// QoS bits 11 are malformed.
fn qos3(version: ProtocolVersion) -> RawClient {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    let mut bytes = encode(
        &Packet::Publish(publish_packet(
            &names.topic("t"),
            b"x",
            QoS::AtLeastOnce,
            false,
            pid(1),
        )),
        version,
    );
    bytes[0] |= 0x06;
    let _ = c.send_raw(&bytes);
    c
}

#[test]
fn mqtt_3_3_1_4_v311_qos_3_closes() {
    qos3(V311).expect_closed_silently();
}

#[test]
fn mqtt_3_3_1_4_v5_qos_3_is_malformed() {
    qos3(V5).expect_disconnect(&[DisconnectReason::MalformedPacket]);
}

/// A topic name with a wildcard is refused by closing.
fn wildcard_topic(version: ProtocolVersion, wildcard: &str) -> RawClient {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    let topic = format!("{}/{wildcard}", names.root());
    let _ = c.send_raw(&encode(
        &Packet::Publish(publish_packet(&topic, b"x", QoS::AtMostOnce, false, pid(1))),
        version,
    ));
    c
}

/// Covers [MQTT-4.7.1-1] (3.1.1).
#[test]
fn mqtt_3_3_2_2_v311_topic_name_with_wildcards_closes() {
    wildcard_topic(V311, "+").expect_closed_silently();
    wildcard_topic(V311, "#").expect_closed_silently();
}

/// Covers [MQTT-4.7.0-1] (5.0).
#[test]
fn mqtt_3_3_2_2_v5_topic_name_with_wildcards_closes() {
    for w in ["+", "#"] {
        wildcard_topic(V5, w).expect_disconnect(&[
            DisconnectReason::TopicNameInvalid,
            DisconnectReason::MalformedPacket,
            DisconnectReason::ProtocolError,
        ]);
    }
}

/// A topic name with U+0000 is malformed.
fn null_in_topic(version: ProtocolVersion) -> RawClient {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    let topic = format!("{}/a\u{0}b", names.root());
    let _ = c.send_raw(&encode(
        &Packet::Publish(publish_packet(&topic, b"x", QoS::AtMostOnce, false, pid(1))),
        version,
    ));
    c
}

/// Covers [MQTT-4.7.3-2] (3.1.1).
#[test]
fn mqtt_1_5_3_2_v311_null_character_in_a_string_closes() {
    null_in_topic(V311).expect_closed_silently();
}

/// Covers [MQTT-4.7.3-2] (5.0).
#[test]
fn mqtt_1_5_4_2_v5_null_character_in_a_string_closes() {
    null_in_topic(V5).expect_disconnect(&[
        DisconnectReason::MalformedPacket,
        DisconnectReason::TopicNameInvalid,
    ]);
}

/// A topic name that is not UTF-8 (a lone continuation byte, and an encoded surrogate).
fn invalid_utf8_topic(version: ProtocolVersion, bad: &[u8]) -> RawClient {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    // PUBLISH QoS 0: topic "t" + bad, payload "x".
    let mut topic = b"t".to_vec();
    topic.extend_from_slice(bad);
    let mut body = vec![0, topic.len() as u8];
    body.extend(&topic);
    if version.is_v5() {
        body.push(0);
    }
    body.push(b'x');
    let mut bytes = vec![0x30, body.len() as u8];
    bytes.extend(body);
    let _ = c.send_raw(&bytes);
    c
}

/// Covers [MQTT-3.3.2-1] (3.1.1).
#[test]
fn mqtt_1_5_3_1_v311_ill_formed_utf8_closes() {
    invalid_utf8_topic(V311, &[0x80]).expect_closed_silently();
    invalid_utf8_topic(V311, &[0xED, 0xA0, 0x80]).expect_closed_silently();
}

/// Covers [MQTT-3.3.2-1] (5.0).
#[test]
fn mqtt_1_5_4_1_v5_ill_formed_utf8_closes() {
    let reasons = [
        DisconnectReason::MalformedPacket,
        DisconnectReason::TopicNameInvalid,
    ];
    invalid_utf8_topic(V5, &[0x80]).expect_disconnect(&reasons);
    invalid_utf8_topic(V5, &[0xED, 0xA0, 0x80]).expect_disconnect(&reasons);
}

/// DUP of an incoming PUBLISH is not passed on.
fn dup_not_propagated(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let (mut publisher, mut sub) = pair(version, &names, &topic, QoS::AtLeastOnce);
    let mut p = publish_packet(&topic, b"x", QoS::AtLeastOnce, false, pid(3));
    p.dup = true;
    publisher.send(&Packet::Publish(p));
    publisher.expect_puback(pid(3));
    let got = sub.recv_publish();
    assert!(!got.dup, "DUP passed on to a first delivery");
}

#[test]
fn mqtt_3_3_1_3_v311_dup_is_not_propagated() {
    dup_not_propagated(V311);
}

#[test]
fn mqtt_3_3_1_3_v5_dup_is_not_propagated() {
    dup_not_propagated(V5);
}

/// Overlapping subscriptions: the message goes at the highest granted QoS (a server may send
/// one copy or one per subscription; the highest QoS must be among them), never above the
/// published QoS.
fn overlapping(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = connect(version, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtMostOnce);
    sub.sub(&format!("{}/+", names.root()), QoS::ExactlyOnce);
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&topic, b"x", QoS::AtLeastOnce, false);
    publisher.ping();
    let first = sub.recv_publish();
    let mut qos = vec![first.qos_pid.qos()];
    while let Ok(Packet::Publish(p)) = sub.try_recv(midge_conformance::client::QUIET) {
        sub.acknowledge(&p);
        qos.push(p.qos_pid.qos());
    }
    assert!(qos.contains(&QoS::AtLeastOnce), "delivered at {qos:?}");
    assert!(
        qos.iter().all(|q| *q <= QoS::AtLeastOnce),
        "above the published QoS: {qos:?}"
    );
}

/// Covers [MQTT-3.8.4-6] (3.1.1).
#[test]
fn mqtt_3_3_5_1_v311_overlapping_subscriptions_get_the_maximum_qos() {
    overlapping(V311);
}

/// Covers [MQTT-3.8.4-8] (5.0).
#[test]
fn mqtt_3_3_4_2_v5_overlapping_subscriptions_get_the_maximum_qos() {
    overlapping(V5);
}

/// Messages from one publisher on one topic arrive in order.
fn ordered(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let (mut publisher, mut sub) = pair(version, &names, &topic, QoS::AtLeastOnce);
    for i in 0..20u8 {
        publisher.publish(&topic, &[i], QoS::AtLeastOnce, false);
    }
    for i in 0..20u8 {
        assert_eq!(&sub.recv_publish().payload[..], &[i]);
    }
}

/// Covers [MQTT-4.6.0-6] (3.1.1).
#[test]
fn mqtt_4_6_0_5_v311_topics_are_ordered() {
    ordered(V311);
}

/// Covers [MQTT-4.6.0-6] (5.0).
#[test]
fn mqtt_4_6_0_5_v5_topics_are_ordered() {
    ordered(V5);
}

// ---------------------------------------------------------------------------------------------
// Retained messages
// ---------------------------------------------------------------------------------------------

/// A new subscriber gets the retained message with RETAIN 1; an existing one gets live
/// messages with RETAIN 0.
fn retained(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let mut live = connect(version, &names.client_id("live"));
    live.sub(&topic, QoS::AtLeastOnce);
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&topic, b"kept", QoS::AtLeastOnce, true);
    let p = live.recv_publish();
    assert!(
        !p.retain,
        "RETAIN 1 on a message for an established subscription"
    );
    let mut late = connect(version, &names.client_id("late"));
    late.sub(&topic, QoS::AtLeastOnce);
    let p = late.recv_publish();
    assert!(
        p.retain,
        "RETAIN 0 on a retained message sent for a new subscription"
    );
    assert_eq!(&p.payload[..], b"kept");
    assert_eq!(p.qos_pid.qos(), QoS::AtLeastOnce, "retained at its QoS");
    publisher.publish(&topic, b"", QoS::AtLeastOnce, true);
}

/// Covers [MQTT-3.3.1-6] (3.1.1) [MQTT-3.3.1-8] (3.1.1) [MQTT-3.3.1-9] (3.1.1).
#[test]
fn mqtt_3_3_1_5_v311_retained_message_goes_to_new_subscribers() {
    retained(V311);
}

/// Retain As Published 0 (the default) clears RETAIN on live messages; Retain Handling 0 sends
/// retained messages on subscribe.
/// Covers [MQTT-3.3.1-9] (5.0) [MQTT-3.3.1-12] (5.0).
#[test]
fn mqtt_3_3_1_5_v5_retained_message_goes_to_new_subscribers() {
    retained(V5);
}

/// An empty retained PUBLISH is delivered like any other and removes the retained message
/// (and is not retained itself).
fn empty_retained_clears(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&topic, b"kept", QoS::AtLeastOnce, true);
    let mut live = connect(version, &names.client_id("live"));
    live.sub(&topic, QoS::AtLeastOnce);
    assert_eq!(&live.recv_publish().payload[..], b"kept");
    publisher.publish(&topic, b"", QoS::AtLeastOnce, true);
    assert_eq!(
        &live.recv_publish().payload[..],
        b"",
        "the empty message is delivered"
    );
    let mut late = connect(version, &names.client_id("late"));
    late.sub(&topic, QoS::AtLeastOnce);
    late.expect_nothing();
}

/// Covers [MQTT-3.3.1-11] (3.1.1).
#[test]
fn mqtt_3_3_1_10_v311_empty_retained_message_clears() {
    empty_retained_clears(V311);
}

/// Covers [MQTT-3.3.1-7] (5.0).
#[test]
fn mqtt_3_3_1_6_v5_empty_retained_message_clears() {
    empty_retained_clears(V5);
}

/// RETAIN 0 neither stores nor replaces a retained message; a retained QoS 0 replaces one.
fn retain_0_leaves_retained(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&topic, b"kept", QoS::AtLeastOnce, true);
    publisher.publish(&topic, b"not kept", QoS::AtLeastOnce, false);
    let mut late = connect(version, &names.client_id("late"));
    late.sub(&topic, QoS::AtLeastOnce);
    assert_eq!(&late.recv_publish().payload[..], b"kept");
    late.expect_nothing();
    publisher.publish(&topic, b"", QoS::AtLeastOnce, true);
}

#[test]
fn mqtt_3_3_1_12_v311_retain_0_does_not_touch_the_retained_message() {
    retain_0_leaves_retained(V311);
}

#[test]
fn mqtt_3_3_1_8_v5_retain_0_does_not_touch_the_retained_message() {
    retain_0_leaves_retained(V5);
}
