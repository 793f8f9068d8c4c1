//! SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK (3.8 to 3.11) and topic names and filters (4.7).

use crate::connect;
use midge_conformance::client::{RawClient, V5, V311, pid};
use midge_conformance::names::Names;
use midge_core::codec::{
    ByteString, DisconnectReason, Packet, ProtocolVersion, QoS, SubAckReason, Subscribe,
    SubscribeProperties, Subscription, SubscriptionOptions, UnsubAckReason, Unsubscribe,
    UnsubscribeProperties,
};

pub fn subscribe_packet(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(7),
        properties: SubscribeProperties::default(),
        subscriptions: vec![Subscription {
            filter: ByteString::from(filter),
            options: SubscriptionOptions::new(qos),
        }],
    })
}

pub fn unsubscribe_packet(filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(8),
        properties: UnsubscribeProperties::default(),
        filters: filters.iter().map(|f| ByteString::from(*f)).collect(),
    })
}

/// SUBACK carries the SUBSCRIBE's packet id (checked by `subscribe_many`), one granted QoS
/// per filter, in order.
fn suback_per_filter_in_order(version: ProtocolVersion) {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    let (a, b, d) = (names.topic("a"), names.topic("b"), names.topic("d"));
    let ack = c.subscribe_many(&[
        (&a, SubscriptionOptions::new(QoS::ExactlyOnce)),
        (&b, SubscriptionOptions::new(QoS::AtMostOnce)),
        (&d, SubscriptionOptions::new(QoS::AtLeastOnce)),
    ]);
    assert_eq!(ack.reasons.len(), 3, "one return code per filter");
    // A server may grant less than asked, never more; and the order is the filters' order,
    // which granting each its own QoS shows.
    let asked = [QoS::ExactlyOnce, QoS::AtMostOnce, QoS::AtLeastOnce];
    for (reason, qos) in ack.reasons.iter().zip(asked) {
        assert!(!reason.is_error(), "{reason:?}");
        assert!(reason.code() <= qos as u8, "granted {reason:?} for {qos:?}");
    }
    assert_eq!(ack.reasons[1], SubAckReason::GrantedQoS0);
}

/// Covers [MQTT-3.8.4-1] (3.1.1) [MQTT-3.8.4-2] (3.1.1) [MQTT-3.8.4-4] (3.1.1)
/// Covers [MQTT-3.8.4-5] (3.1.1) [MQTT-2.3.1-7] (3.1.1) [MQTT-3.9.3-2] (3.1.1).
#[test]
fn mqtt_3_9_3_1_v311_suback_codes_follow_the_filters_order() {
    suback_per_filter_in_order(V311);
}

/// Covers [MQTT-3.8.4-1] (5.0) [MQTT-3.8.4-2] (5.0) [MQTT-3.8.4-5] (5.0) [MQTT-3.8.4-6] (5.0)
/// Covers [MQTT-3.8.4-7] (5.0) [MQTT-2.2.1-6] (5.0) [MQTT-3.9.3-2] (5.0).
#[test]
fn mqtt_3_9_3_1_v5_suback_codes_follow_the_filters_order() {
    suback_per_filter_in_order(V5);
}

fn empty_subscribe(version: ProtocolVersion) -> RawClient {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    // SUBSCRIBE with a packet id (and in 5.0 an empty property list) and no topic filter.
    if version.is_v5() {
        let _ = c.send_raw(&[0x82, 0x03, 0x00, 0x01, 0x00]);
    } else {
        let _ = c.send_raw(&[0x82, 0x02, 0x00, 0x01]);
    }
    c
}

#[test]
fn mqtt_3_8_3_3_v311_subscribe_without_filters_closes() {
    empty_subscribe(V311).expect_closed_silently();
}

#[test]
fn mqtt_3_8_3_2_v5_subscribe_without_filters_is_malformed() {
    empty_subscribe(V5).expect_disconnect(&[
        DisconnectReason::MalformedPacket,
        DisconnectReason::ProtocolError,
    ]);
}

fn empty_unsubscribe(version: ProtocolVersion) -> RawClient {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    if version.is_v5() {
        let _ = c.send_raw(&[0xA2, 0x03, 0x00, 0x01, 0x00]);
    } else {
        let _ = c.send_raw(&[0xA2, 0x02, 0x00, 0x01]);
    }
    c
}

#[test]
fn mqtt_3_10_3_2_v311_unsubscribe_without_filters_closes() {
    empty_unsubscribe(V311).expect_closed_silently();
}

#[test]
fn mqtt_3_10_3_2_v5_unsubscribe_without_filters_is_malformed() {
    empty_unsubscribe(V5).expect_disconnect(&[
        DisconnectReason::MalformedPacket,
        DisconnectReason::ProtocolError,
    ]);
}

/// Subscribing again to the same filter replaces the subscription (one copy per message, at
/// the new QoS).
fn resubscribe_replaces(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = connect(version, &names.client_id("sub"));
    sub.sub(&topic, QoS::ExactlyOnce);
    sub.sub(&topic, QoS::AtLeastOnce);
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&topic, b"once", QoS::ExactlyOnce, false);
    let p = sub.recv_publish();
    assert_eq!(
        p.qos_pid.qos(),
        QoS::AtLeastOnce,
        "delivered at the old QoS"
    );
    publisher.ping();
    sub.expect_nothing();
}

#[test]
fn mqtt_3_8_4_3_v311_identical_filter_replaces_the_subscription() {
    resubscribe_replaces(V311);
}

#[test]
fn mqtt_3_8_4_3_v5_identical_filter_replaces_the_subscription() {
    resubscribe_replaces(V5);
}

/// UNSUBACK with the packet id, even for a filter with no subscription; filters are compared
/// character by character; an unsubscribed filter delivers nothing more.
fn unsubscribe(version: ProtocolVersion) {
    let names = Names::new();
    let (a, b) = (names.topic("a"), names.topic("b"));
    let plus = format!("{}/+", names.root());
    let mut sub = connect(version, &names.client_id("sub"));
    sub.sub(&a, QoS::AtLeastOnce);
    sub.sub(&b, QoS::AtLeastOnce);
    // "root/+" is not "root/a": nothing is removed by it.
    let ack = sub.unsubscribe(&[&plus]);
    if version.is_v5() {
        assert_eq!(ack.reasons, [UnsubAckReason::NoSubscriptionExisted]);
    }
    let ack = sub.unsubscribe(&[&a, &b]);
    if version.is_v5() {
        assert_eq!(
            ack.reasons,
            [UnsubAckReason::Success, UnsubAckReason::Success]
        );
    }
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&a, b"x", QoS::AtLeastOnce, false);
    publisher.publish(&b, b"x", QoS::AtLeastOnce, false);
    publisher.ping();
    sub.expect_nothing();
}

/// Covers [MQTT-3.10.4-2] (3.1.1) [MQTT-3.10.4-4] (3.1.1) [MQTT-3.10.4-5] (3.1.1)
/// Covers [MQTT-3.10.4-6] (3.1.1) [MQTT-2.3.1-7] (3.1.1).
#[test]
fn mqtt_3_10_4_1_v311_unsubscribe_compares_filters_character_by_character() {
    unsubscribe(V311);
}

/// Covers [MQTT-3.10.4-2] (5.0) [MQTT-3.10.4-4] (5.0) [MQTT-3.10.4-5] (5.0)
/// Covers [MQTT-3.10.4-6] (5.0) [MQTT-3.11.3-1] (5.0) [MQTT-3.11.3-2] (5.0).
#[test]
fn mqtt_3_10_4_1_v5_unsubscribe_compares_filters_character_by_character() {
    unsubscribe(V5);
}

/// A malformed filter is refused: 3.1.1 closes or answers 0x80; 5.0 answers 0x8F (or
/// closes with a DISCONNECT naming the problem).
fn bad_filter(version: ProtocolVersion, filter: &str) {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    c.send(&subscribe_packet(filter, QoS::AtMostOnce));
    match c.try_recv(midge_conformance::client::WAIT) {
        Ok(Packet::SubAck(ack)) => {
            assert_eq!(ack.reasons.len(), 1);
            if version.is_v5() {
                assert_eq!(ack.reasons[0], SubAckReason::TopicFilterInvalid, "{filter}");
            } else {
                assert!(ack.reasons[0].is_error(), "{filter} granted");
            }
        }
        Ok(Packet::Disconnect(d)) if version.is_v5() => {
            assert!(
                matches!(
                    d.reason,
                    DisconnectReason::TopicFilterInvalid
                        | DisconnectReason::MalformedPacket
                        | DisconnectReason::ProtocolError
                ),
                "{d:?}"
            );
            let _ = c.expect_closed();
        }
        Err(midge_conformance::client::RecvError::Closed) => {}
        other => panic!("{filter}: expected a refusal, got {other:?}"),
    }
}

fn multi_level_wildcard_rules(version: ProtocolVersion) {
    let names = Names::new();
    bad_filter(version, &format!("{}/#/x", names.root()));
    bad_filter(version, &format!("{}/x#", names.root()));
}

fn single_level_wildcard_rules(version: ProtocolVersion) {
    let names = Names::new();
    bad_filter(version, &format!("{}/x+", names.root()));
    bad_filter(version, &format!("{}/+x/y", names.root()));
}

#[test]
fn mqtt_4_7_1_2_v311_multi_level_wildcard_must_be_last_and_alone() {
    multi_level_wildcard_rules(V311);
}

#[test]
fn mqtt_4_7_1_1_v5_multi_level_wildcard_must_be_last_and_alone() {
    multi_level_wildcard_rules(V5);
}

#[test]
fn mqtt_4_7_1_3_v311_single_level_wildcard_must_fill_its_level() {
    single_level_wildcard_rules(V311);
}

#[test]
fn mqtt_4_7_1_2_v5_single_level_wildcard_must_fill_its_level() {
    single_level_wildcard_rules(V5);
}

/// Wildcards match levels as section 4.7 says, and a PUBLISH carries the topic it was sent
/// to, which matches the filter.
fn wildcards_match(version: ProtocolVersion) {
    let names = Names::new();
    let root = names.root();
    let mut sub = connect(version, &names.client_id("sub"));
    sub.sub(&format!("{root}/+/x"), QoS::AtMostOnce);
    sub.sub(&format!("{root}/deep/#"), QoS::AtMostOnce);
    let mut publisher = connect(version, &names.client_id("pub"));
    for (topic, matches) in [
        (format!("{root}/a/x"), true),
        (format!("{root}/a/b/x"), false),
        (format!("{root}/deep"), true),
        (format!("{root}/deep/1/2/3"), true),
        (format!("{root}/a/x/y"), false),
    ] {
        publisher.publish(&topic, topic.as_bytes(), QoS::AtMostOnce, false);
        publisher.ping();
        if matches {
            let p = sub.recv_publish();
            assert_eq!(&*p.topic, topic, "the PUBLISH names the topic published to");
        } else {
            sub.expect_nothing();
        }
    }
}

/// Covers [MQTT-4.7.1-2] (3.1.1) [MQTT-4.7.1-3] (3.1.1).
#[test]
fn mqtt_3_3_2_3_v311_delivered_topic_matches_the_filter() {
    wildcards_match(V311);
}

/// Covers [MQTT-4.7.1-1] (5.0) [MQTT-4.7.1-2] (5.0).
#[test]
fn mqtt_3_3_2_3_v5_delivered_topic_matches_the_filter() {
    wildcards_match(V5);
}

/// Filters starting with a wildcard do not match topics starting with `$`.
fn dollar_topics(version: ProtocolVersion) {
    let names = Names::new();
    let key = names.root().replace('/', "_");
    let topic = format!("$conformance/{key}/x");
    let mut wild = connect(version, &names.client_id("wild"));
    wild.sub(&format!("+/{key}/x"), QoS::AtMostOnce);
    let mut exact = connect(version, &names.client_id("exact"));
    exact.sub(&format!("$conformance/{key}/+"), QoS::AtMostOnce);
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&topic, b"x", QoS::AtMostOnce, false);
    // The message exists (a filter starting with "$" gets it) ...
    assert_eq!(&*exact.recv_publish().topic, topic);
    // ... but not for "+/...".
    wild.expect_nothing();
}

#[test]
fn mqtt_4_7_2_1_v311_wildcards_do_not_match_dollar_topics() {
    dollar_topics(V311);
}

#[test]
fn mqtt_4_7_2_1_v5_wildcards_do_not_match_dollar_topics() {
    dollar_topics(V5);
}

/// No normalisation: topics that differ only in case or Unicode form do not match.
fn no_normalisation(version: ProtocolVersion) {
    let names = Names::new();
    let root = names.root();
    let mut sub = connect(version, &names.client_id("sub"));
    // "é" precomposed (U+00E9).
    sub.sub(&format!("{root}/caf\u{e9}"), QoS::AtMostOnce);
    let mut publisher = connect(version, &names.client_id("pub"));
    // "e" followed by a combining acute accent (U+0301), and a capital letter.
    publisher.publish(&format!("{root}/cafe\u{301}"), b"x", QoS::AtMostOnce, false);
    publisher.publish(&format!("{root}/CAF\u{c9}"), b"x", QoS::AtMostOnce, false);
    publisher.publish(
        &format!("{root}/caf\u{e9}"),
        b"same",
        QoS::AtMostOnce,
        false,
    );
    let p = sub.recv_publish();
    assert_eq!(&p.payload[..], b"same");
    publisher.ping();
    sub.expect_nothing();
}

#[test]
fn mqtt_4_7_3_4_v311_topics_are_not_normalised() {
    no_normalisation(V311);
}

#[test]
fn mqtt_4_7_3_4_v5_topics_are_not_normalised() {
    no_normalisation(V5);
}

/// An empty topic filter is refused.
fn empty_filter(version: ProtocolVersion) {
    bad_filter(version, "");
}

#[test]
fn mqtt_4_7_3_1_v311_empty_topic_filter_is_refused() {
    empty_filter(V311);
}

#[test]
fn mqtt_4_7_3_1_v5_empty_topic_filter_is_refused() {
    empty_filter(V5);
}
