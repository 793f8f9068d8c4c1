//! Publish and subscribe through the broker, in MQTT 3.1.1 and 5.0 and across the two: topic
//! matching, SUBACK and UNSUBACK, the QoS flows, the outbound window and queue, session resumption,
//! retained messages, MQTT 5 subscription options and properties, and back-pressure.
//!
//! Each test names the normative statements it checks, with the version of the specification
//! whose numbering it uses: the ids differ between 3.1.1 and 5.0.

mod harness;

use bytes::Bytes;
use harness::*;
use midge_core::broker::{Action, Config, ConnId};
use midge_core::codec::{
    AckProperties, ByteString, ConnAck, Connect, DisconnectReason, Packet, PayloadFormat, PubAck,
    PubAckReason, PubComp, PubRec, PubRelReason, Publish, PublishProperties, QoS, QosPid,
    RetainHandling, SubAck, SubAckReason, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, UnsubAck, UnsubAckReason, Unsubscribe, UnsubscribeProperties,
};
use midge_core::codec::{Disconnect, ProtocolVersion};
use std::num::{NonZeroU16, NonZeroU32};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const Q2: QoS = QoS::ExactlyOnce;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn q0() -> QosPid {
    QosPid::AtMostOnce
}

fn q1(id: u16) -> QosPid {
    QosPid::AtLeastOnce(pid(id))
}

fn q2(id: u16) -> QosPid {
    QosPid::ExactlyOnce(pid(id))
}

/// A PUBLISH as the broker is expected to send it, without properties.
fn msg(topic: &str, payload: &[u8], qos_pid: QosPid, dup: bool, retain: bool) -> Packet {
    msg_with(
        topic,
        payload,
        qos_pid,
        dup,
        retain,
        PublishProperties::default(),
    )
}

/// A PUBLISH as the broker is expected to send it, with properties.
fn msg_with(
    topic: &str,
    payload: &[u8],
    qos_pid: QosPid,
    dup: bool,
    retain: bool,
    properties: PublishProperties,
) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos_pid,
        retain,
        topic: ByteString::from(topic),
        properties,
        payload: Bytes::copy_from_slice(payload),
    })
}

/// A PUBLISH from a client, with any payload.
fn publish_msg(topic: &str, payload: &[u8], qos: QoS, packet_id: u16, retain: bool) -> Packet {
    let qos_pid = match qos {
        Q0 => q0(),
        q => QosPid::new(q, pid(packet_id)),
    };
    msg(topic, payload, qos_pid, false, retain)
}

/// Subscription identifiers as the broker sends them to an MQTT 5 subscriber.
fn sub_ids(ids: &[u32]) -> PublishProperties {
    PublishProperties {
        subscription_identifiers: ids.to_vec(),
        ..PublishProperties::default()
    }
}

fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions::new(qos)
}

/// A SUBSCRIBE with several filters and an optional Subscription Identifier.
fn subscribe_many(
    packet_id: u16,
    filters: &[(&str, SubscriptionOptions)],
    subscription_id: Option<u32>,
) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: pid(packet_id),
        properties: SubscribeProperties {
            subscription_identifier: subscription_id,
            ..SubscribeProperties::default()
        },
        subscriptions: filters
            .iter()
            .map(|(filter, options)| Subscription {
                filter: ByteString::from(*filter),
                options: *options,
            })
            .collect(),
    })
}

fn unsubscribe_many(packet_id: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(packet_id),
        properties: UnsubscribeProperties::default(),
        filters: filters.iter().map(|f| ByteString::from(*f)).collect(),
    })
}

fn suback(packet_id: u16, reasons: &[SubAckReason]) -> Packet {
    Packet::SubAck(SubAck {
        packet_id: pid(packet_id),
        properties: AckProperties::default(),
        reasons: reasons.to_vec(),
    })
}

fn unsuback(packet_id: u16, reasons: &[UnsubAckReason]) -> Packet {
    Packet::UnsubAck(UnsubAck {
        packet_id: pid(packet_id),
        properties: AckProperties::default(),
        reasons: reasons.to_vec(),
    })
}

fn puback_with(packet_id: u16, reason: PubAckReason) -> Packet {
    Packet::PubAck(PubAck {
        packet_id: pid(packet_id),
        reason,
        properties: AckProperties::default(),
    })
}

fn pubrec_with(packet_id: u16, reason: PubAckReason) -> Packet {
    Packet::PubRec(PubRec {
        packet_id: pid(packet_id),
        reason,
        properties: AckProperties::default(),
    })
}

fn pubcomp_with(packet_id: u16, reason: PubRelReason) -> Packet {
    Packet::PubComp(PubComp {
        packet_id: pid(packet_id),
        reason,
        properties: AckProperties::default(),
    })
}

/// The Reason Code of a failed subscription as a subscriber of `version` decodes it: 3.1.1 only
/// knows 0x80 [MQTT-3.9.3-2] (3.1.1).
fn refused(version: ProtocolVersion, v5_reason: SubAckReason) -> SubAckReason {
    if version.is_v5() {
        v5_reason
    } else {
        SubAckReason::UnspecifiedError
    }
}

/// CONNECT for a session that outlives the connection: Clean Session 0 in 3.1.1, Clean Start 0
/// and a Session Expiry Interval that never ends in 5.0.
fn persistent(version: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect(version, id);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(u32::MAX);
    }
    c
}

/// Connects and returns the CONNACK and whatever followed it (a resumed session's resends).
fn connect_resuming(w: &mut World, c: Connect) -> (ConnId, ConnAck, Vec<Packet>) {
    let conn = w.open(c.protocol_version);
    w.send(conn, &Packet::from(c));
    let mut packets = w.recv(conn);
    assert!(!packets.is_empty(), "expected CONNACK");
    match packets.remove(0) {
        Packet::ConnAck(ack) => (conn, *ack, packets),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// The topics of the PUBLISH packets a connection received, checking that nothing else came.
fn topics(w: &mut World, conn: ConnId) -> Vec<String> {
    w.recv(conn)
        .iter()
        .map(|p| as_publish(p).topic.to_string())
        .collect()
}

/// How many `Send` actions the broker has handed out for a connection so far.
fn sends_to(w: &World, conn: ConnId) -> usize {
    w.log
        .iter()
        .filter(|a| matches!(a, Action::Send { conn: c, .. } if *c == conn))
        .count()
}

fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

// ---------------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------------

/// '+' matches exactly one level (an empty one too) and '#' its parent level and every level
/// below, so "sport/#" receives "sport": [MQTT-4.7.1-2] and [MQTT-4.7.1-3] (3.1.1) with the
/// examples of section 4.7.1.2 and 4.7.1.3; [MQTT-4.7.1-1] and [MQTT-4.7.1-2] (5.0).
#[test]
fn mqtt_4_7_1_2_wildcards_match_by_level() {
    let mut w = World::default();
    let hash = w.client(V3_1_1, "hash");
    w.subscribe(hash, "sport/#", Q0);
    let plus = w.client(V5, "plus");
    w.subscribe(plus, "sport/+", Q0);
    let two = w.client(V3_1_1, "two");
    w.subscribe(two, "+/+", Q0);
    let deep = w.client(V5, "deep");
    w.subscribe(deep, "sport/tennis/+", Q0);
    let all = w.client(V5, "all");
    w.subscribe(all, "#", Q0);
    let publ = w.client(V5, "pub");
    let sent = [
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1",
        "sports",
        "/finance",
    ];
    for topic in sent {
        w.send(publ, &publish(topic, b"x", Q0, 0));
    }
    assert_eq!(
        topics(&mut w, hash),
        ["sport", "sport/", "sport/tennis", "sport/tennis/player1"]
    );
    assert_eq!(topics(&mut w, plus), ["sport/", "sport/tennis"]);
    assert_eq!(topics(&mut w, two), ["sport/", "sport/tennis", "/finance"]);
    assert_eq!(topics(&mut w, deep), ["sport/tennis/player1"]);
    assert_eq!(topics(&mut w, all), sent);
    w.recv_none(publ);
}

/// [MQTT-4.7.2-1] (3.1.1 and 5.0): filters that start with a wildcard do not match topics that
/// start with '$'; "$app/#" and "$app/+/Clients" do. (Clients may publish to '$' topics other
/// than the broker's own `$SYS` tree.)
#[test]
fn mqtt_4_7_2_1_dollar_topics_not_matched_by_leading_wildcards() {
    let mut w = World::default();
    let hash = w.client(V3_1_1, "hash");
    w.subscribe(hash, "#", Q0);
    let plus = w.client(V5, "plus");
    w.subscribe(plus, "+/monitor/Clients", Q0);
    let sys = w.client(V5, "sys");
    w.subscribe(sys, "$app/#", Q0);
    let sys_plus = w.client(V3_1_1, "sys_plus");
    w.subscribe(sys_plus, "$app/+/Clients", Q0);
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish("$app/monitor/Clients", b"1", Q0, 0));
    w.send(publ, &publish("$app", b"2", Q0, 0));
    w.send(publ, &publish("a/monitor/Clients", b"3", Q0, 0));
    assert_eq!(topics(&mut w, hash), ["a/monitor/Clients"]);
    assert_eq!(topics(&mut w, plus), ["a/monitor/Clients"]);
    assert_eq!(topics(&mut w, sys), ["$app/monitor/Clients", "$app"]);
    assert_eq!(topics(&mut w, sys_plus), ["$app/monitor/Clients"]);
}

/// One SUBSCRIBE with several filters: one SUBACK with the same packet id and one return code per
/// filter, in order, each filter handled as its own subscription: [MQTT-3.8.4-1], [MQTT-3.8.4-2],
/// [MQTT-3.8.4-4], [MQTT-3.8.4-5], [MQTT-3.9.3-1] (3.1.1); [MQTT-3.8.4-1], [MQTT-3.8.4-2],
/// [MQTT-3.8.4-5], [MQTT-3.8.4-6], [MQTT-3.8.4-7], [MQTT-3.9.3-1] (5.0).
#[test]
fn mqtt_3_8_4_1_to_5_suback_one_code_per_filter_in_order() {
    for version in [V3_1_1, V5] {
        let mut w = World::default();
        let sub = w.client(version, "sub");
        w.send(
            sub,
            &subscribe_many(
                42,
                &[
                    ("a", opts(Q2)),
                    ("b/+", opts(Q0)),
                    ("$share//t", opts(Q1)),
                    ("c/#", opts(Q1)),
                ],
                None,
            ),
        );
        // A shared subscription without a Share Name [MQTT-4.8.2-1] (5.0).
        let failed = refused(version, SubAckReason::TopicFilterInvalid);
        assert_eq!(
            without_reason_strings(w.recv(sub)),
            [suback(
                42,
                &[
                    SubAckReason::GrantedQoS2,
                    SubAckReason::GrantedQoS0,
                    failed,
                    SubAckReason::GrantedQoS1
                ]
            )],
            "{version:?}"
        );
        let publ = w.client(V5, "pub");
        w.send(publ, &publish("a", b"1", Q2, 1));
        w.send(publ, &publish("b/x", b"2", Q2, 2));
        w.send(publ, &publish("c/d/e", b"3", Q2, 3));
        w.send(publ, &publish("t", b"4", Q2, 4));
        assert_eq!(
            w.recv(sub),
            [
                msg("a", b"1", q2(1), false, false),
                msg("b/x", b"2", q0(), false, false),
                msg("c/d/e", b"3", q1(2), false, false),
            ],
            "{version:?}"
        );
    }
}

/// Subscribing again to an identical filter replaces the subscription: the new maximum QoS
/// applies, there is still one subscription, and the retained messages are sent again, while a
/// message in flight under the old subscription completes: [MQTT-3.8.4-3] (3.1.1);
/// [MQTT-3.8.4-3], [MQTT-3.8.4-4] (5.0).
#[test]
fn mqtt_3_8_4_3_resubscribe_replaces_and_resends_retained() {
    for version in [V3_1_1, V5] {
        let mut w = World::default();
        let publ = w.client(V3_1_1, "pub");
        w.send(publ, &publish_retained("r/a", b"ret", Q2, 1));
        w.recv(publ);
        let sub = w.client(version, "sub");
        w.send(sub, &subscribe(1, "r/#", Q1));
        assert_eq!(
            w.recv(sub),
            [
                suback(1, &[SubAckReason::GrantedQoS1]),
                msg("r/a", b"ret", q1(1), false, true),
            ]
        );
        // Packet id 1 stays unacknowledged across the resubscription.
        w.send(sub, &subscribe(2, "r/#", Q2));
        assert_eq!(
            w.recv(sub),
            [
                suback(2, &[SubAckReason::GrantedQoS2]),
                msg("r/a", b"ret", q2(2), false, true),
            ]
        );
        w.send(sub, &puback(pid(1)));
        w.send(sub, &pubrec(pid(2)));
        assert_eq!(w.recv(sub), [pubrel(pid(2))]);
        w.send(sub, &pubcomp(pid(2)));
        w.recv_none(sub);
        // One subscription, at the new QoS: one copy at QoS 2.
        w.send(publ, &publish("r/a", b"live", Q2, 2));
        assert_eq!(w.recv(sub), [msg("r/a", b"live", q2(3), false, false)]);
        // And down again to QoS 0.
        w.send(sub, &subscribe(3, "r/#", Q0));
        assert_eq!(
            w.recv(sub),
            [
                suback(3, &[SubAckReason::GrantedQoS0]),
                msg("r/a", b"ret", q0(), false, true),
            ]
        );
        w.send(publ, &publish("r/a", b"low", Q2, 3));
        assert_eq!(w.recv(sub), [msg("r/a", b"low", q0(), false, false)]);
        assert!(!w.is_closed(sub));
    }
}

/// UNSUBSCRIBE removes the subscription (compared character by character) and stops delivery; the
/// UNSUBACK has the packet id of the UNSUBSCRIBE and is sent even when nothing was removed; QoS 1
/// and 2 deliveries already started complete: [MQTT-3.10.4-1], [MQTT-3.10.4-2], [MQTT-3.10.4-3],
/// [MQTT-3.10.4-4], [MQTT-3.10.4-5] (3.1.1).
#[test]
fn mqtt_3_10_4_4_and_5_unsuback_always_sent_v311() {
    let mut w = World::default();
    let sub = w.client(V3_1_1, "sub");
    w.send(
        sub,
        &subscribe_many(1, &[("a/+", opts(Q2)), ("b", opts(Q0))], None),
    );
    w.recv(sub);
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish("a/x", b"before", Q2, 1));
    assert_eq!(w.recv(sub), [msg("a/x", b"before", q2(1), false, false)]);

    w.send(sub, &unsubscribe(7, "a/+"));
    assert_eq!(w.recv(sub), [unsuback(7, &[])]);
    w.send(publ, &publish("a/x", b"after", Q1, 2));
    w.send(publ, &publish("b", b"still", Q0, 0));
    assert_eq!(w.recv(sub), [msg("b", b"still", q0(), false, false)]);
    // The QoS 2 delivery started before the UNSUBSCRIBE completes.
    w.send(sub, &pubrec(pid(1)));
    assert_eq!(w.recv(sub), [pubrel(pid(1))]);
    w.send(sub, &pubcomp(pid(1)));

    // Nothing matches: UNSUBACK all the same. "a/#" is not "a/+", nor "B" "b".
    w.send(sub, &unsubscribe_many(8, &["nope", "a/#", "B"]));
    assert_eq!(w.recv(sub), [unsuback(8, &[])]);
    w.send(publ, &publish("b", b"kept", Q0, 0));
    assert_eq!(w.recv(sub), [msg("b", b"kept", q0(), false, false)]);
    assert!(!w.is_closed(sub));
}

/// MQTT 5 UNSUBACK: one Reason Code per filter in order, 0x11 where no subscription existed:
/// [MQTT-3.10.4-1], [MQTT-3.10.4-2], [MQTT-3.10.4-4], [MQTT-3.10.4-5], [MQTT-3.10.4-6],
/// [MQTT-3.11.3-1], [MQTT-3.11.3-2] (5.0).
#[test]
fn mqtt_3_10_4_5_unsuback_reason_0x11_for_missing_filter_v5() {
    let mut w = World::default();
    let sub = w.client(V5, "sub");
    w.send(
        sub,
        &subscribe_many(1, &[("a/+", opts(Q1)), ("b", opts(Q1))], None),
    );
    w.recv(sub);
    w.send(sub, &unsubscribe_many(9, &["a/+", "nope", "b", "b"]));
    assert_eq!(
        w.recv(sub),
        [unsuback(
            9,
            &[
                UnsubAckReason::Success,
                UnsubAckReason::NoSubscriptionExisted,
                UnsubAckReason::Success,
                UnsubAckReason::NoSubscriptionExisted,
            ]
        )]
    );
    let publ = w.client(V5, "pub");
    w.send(publ, &publish("a/x", b"1", Q1, 1));
    w.send(publ, &publish("b", b"2", Q1, 2));
    assert_eq!(
        w.recv(publ),
        [
            puback_with(1, PubAckReason::NoMatchingSubscribers),
            puback_with(2, PubAckReason::NoMatchingSubscribers),
        ]
    );
    w.recv_none(sub);
}

/// Overlapping subscriptions of one session: one copy, at the highest QoS of the matching
/// subscriptions: [MQTT-3.3.5-1] (3.1.1).
#[test]
fn mqtt_3_3_5_1_overlapping_subscriptions_one_copy_at_max_qos_v311() {
    let mut w = World::default();
    let sub = w.client(V3_1_1, "sub");
    w.send(
        sub,
        &subscribe_many(
            1,
            &[("a/+", opts(Q0)), ("a/#", opts(Q1)), ("a/b", opts(Q2))],
            None,
        ),
    );
    w.recv(sub);
    let publ = w.client(V5, "pub");
    w.send(publ, &publish("a/b", b"1", Q2, 1));
    w.send(publ, &publish("a/c", b"2", Q2, 2));
    w.send(publ, &publish("a/b", b"3", Q1, 3));
    w.send(publ, &publish("a", b"4", Q2, 4));
    assert_eq!(
        w.recv(sub),
        [
            msg("a/b", b"1", q2(1), false, false),
            msg("a/c", b"2", q1(2), false, false),
            msg("a/b", b"3", q1(3), false, false),
            msg("a", b"4", q1(4), false, false),
        ]
    );
}

/// MQTT 5 overlapping subscriptions: one copy at the highest QoS, carrying the Subscription
/// Identifiers of every matching subscription that has one: [MQTT-3.3.4-2], [MQTT-3.3.4-3],
/// [MQTT-3.3.4-4] (5.0).
#[test]
fn mqtt_3_3_4_4_overlapping_subscriptions_carry_all_identifiers_v5() {
    let mut w = World::default();
    let sub = w.client(V5, "sub");
    w.send(sub, &subscribe_many(1, &[("a/+", opts(Q0))], Some(5)));
    w.send(sub, &subscribe_many(2, &[("a/#", opts(Q1))], Some(9)));
    w.send(sub, &subscribe_many(3, &[("a/b", opts(Q0))], None));
    w.recv(sub);
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish("a/b", b"1", Q2, 1));
    w.send(publ, &publish("a", b"2", Q2, 2));
    w.send(publ, &publish("a/c", b"3", Q0, 0));
    let got = w.recv(sub);
    assert_eq!(got.len(), 3, "{got:?}");
    let first = as_publish(&got[0]);
    // Their order is not significant [MQTT-3.3.4-4] (5.0).
    let mut ids = first.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    assert_eq!(
        Packet::Publish(Publish {
            properties: sub_ids(&ids),
            ..first.clone()
        }),
        msg_with("a/b", b"1", q1(1), false, false, sub_ids(&[5, 9]))
    );
    assert_eq!(
        got[1],
        msg_with("a", b"2", q1(2), false, false, sub_ids(&[9]))
    );
    let mut third = as_publish(&got[2]).clone();
    third.properties.subscription_identifiers.sort_unstable();
    assert_eq!(
        Packet::Publish(third),
        msg_with("a/c", b"3", q0(), false, false, sub_ids(&[5, 9]))
    );
}

/// max_subscriptions_per_session: a new filter beyond it is refused, 0x97 Quota exceeded in
/// MQTT 5 and 0x80 in 3.1.1 [MQTT-3.8.4-5] (3.1.1) [MQTT-3.8.4-7] (5.0); replacing an existing
/// subscription is not a new one [MQTT-3.8.4-3] (3.1.1 and 5.0).
#[test]
fn max_subscriptions_per_session_refuses_new_filters() {
    for version in [V3_1_1, V5] {
        let mut w = World::new(config(|c| c.max_subscriptions_per_session = 2));
        let sub = w.client(version, "sub");
        w.send(
            sub,
            &subscribe_many(
                1,
                &[("a", opts(Q0)), ("b", opts(Q0)), ("c", opts(Q0))],
                None,
            ),
        );
        let quota = refused(version, SubAckReason::QuotaExceeded);
        assert_eq!(
            without_reason_strings(w.recv(sub)),
            [suback(
                1,
                &[SubAckReason::GrantedQoS0, SubAckReason::GrantedQoS0, quota]
            )]
        );
        w.send(sub, &subscribe(2, "a", Q1));
        assert_eq!(w.recv(sub), [suback(2, &[SubAckReason::GrantedQoS1])]);
        let publ = w.client(version, "pub");
        w.send(publ, &publish("c", b"no", Q0, 0));
        w.recv_none(sub);
        w.send(sub, &unsubscribe(3, "b"));
        w.recv(sub);
        w.send(sub, &subscribe(4, "c", Q0));
        assert_eq!(w.recv(sub), [suback(4, &[SubAckReason::GrantedQoS0])]);
        w.send(publ, &publish("c", b"yes", Q0, 0));
        assert_eq!(w.recv(sub), [msg("c", b"yes", q0(), false, false)]);
    }
}

// ---------------------------------------------------------------------------------------------
// QoS flows
// ---------------------------------------------------------------------------------------------

/// QoS 0: forwarded with QoS 0, DUP 0 and no packet id, nothing sent back to the publisher, across
/// versions: [MQTT-4.3.1-1] (3.1.1 and 5.0), [MQTT-3.3.1-2] (3.1.1 and 5.0).
#[test]
fn mqtt_4_3_1_1_qos0_delivery_across_versions() {
    let mut w = World::default();
    let v3 = w.client(V3_1_1, "v3");
    w.subscribe(v3, "t", Q2);
    let v5 = w.client(V5, "v5");
    w.subscribe(v5, "t", Q2);
    let pub3 = w.client(V3_1_1, "pub3");
    let pub5 = w.client(V5, "pub5");
    w.send(pub3, &publish("t", b"from3", Q0, 0));
    w.send(pub5, &publish("t", b"from5", Q0, 0));
    for sub in [v3, v5] {
        assert_eq!(
            w.recv(sub),
            [
                msg("t", b"from3", q0(), false, false),
                msg("t", b"from5", q0(), false, false),
            ]
        );
    }
    w.recv_none(pub3);
    w.recv_none(pub5);
    let s = w.broker.stats();
    assert_eq!((s.publish_received, s.publish_sent), (2, 4));
}

/// QoS 1: PUBACK with the PUBLISH's packet id [MQTT-4.3.2-2] (3.1.1) [MQTT-4.3.2-4] (5.0), with
/// Reason Code 0x10 for an MQTT 5 publisher when nobody subscribes (5.0, 3.4.2.1); forwarded with
/// a packet id, QoS 1 and DUP 0 and complete once PUBACK arrives [MQTT-4.3.2-1] (3.1.1)
/// [MQTT-4.3.2-1], [MQTT-4.3.2-2], [MQTT-4.3.2-3] (5.0).
#[test]
fn mqtt_4_3_2_qos1_flow_and_puback_0x10() {
    let mut w = World::default();
    let pub5 = w.client(V5, "pub5");
    let pub3 = w.client(V3_1_1, "pub3");
    w.send(pub5, &publish("t", b"none", Q1, 10));
    assert_eq!(
        w.recv(pub5),
        [puback_with(10, PubAckReason::NoMatchingSubscribers)]
    );
    w.send(pub3, &publish("t", b"none", Q1, 10));
    assert_eq!(w.recv(pub3), [puback(pid(10))]);

    let v3 = w.client(V3_1_1, "v3");
    w.subscribe(v3, "t", Q1);
    let v5 = w.client(V5, "v5");
    w.subscribe(v5, "t", Q2);
    w.send(pub5, &publish("t", b"one", Q1, 11));
    assert_eq!(w.recv(pub5), [puback(pid(11))]);
    w.send(pub3, &publish("t", b"two", Q1, 11));
    assert_eq!(w.recv(pub3), [puback(pid(11))]);
    for sub in [v3, v5] {
        assert_eq!(
            w.recv(sub),
            [
                msg("t", b"one", q1(1), false, false),
                msg("t", b"two", q1(2), false, false),
            ]
        );
        w.send(sub, &puback(pid(1)));
        w.send(sub, &puback(pid(2)));
        w.recv_none(sub);
    }
    let s = w.broker.stats();
    assert_eq!((s.publish_received, s.publish_sent), (4, 4));
}

/// QoS 2 end to end, both directions, across versions: PUBREC, PUBREL and PUBCOMP with the packet
/// id of the PUBLISH [MQTT-4.3.3-1], [MQTT-4.3.3-2] (3.1.1); [MQTT-4.3.3-1] to [MQTT-4.3.3-5],
/// [MQTT-4.3.3-8], [MQTT-4.3.3-11] (5.0).
#[test]
fn mqtt_4_3_3_qos2_flow_across_versions() {
    for (pv, sv) in [(V3_1_1, V5), (V5, V3_1_1)] {
        let mut w = World::default();
        let sub = w.client(sv, "sub");
        w.subscribe(sub, "t", Q2);
        let publ = w.client(pv, "pub");
        w.send(publ, &publish("t", b"x", Q2, 300));
        assert_eq!(w.recv(publ), [pubrec(pid(300))]);
        assert_eq!(w.recv(sub), [msg("t", b"x", q2(1), false, false)]);
        w.send(publ, &pubrel(pid(300)));
        assert_eq!(w.recv(publ), [pubcomp(pid(300))]);
        w.send(sub, &pubrec(pid(1)));
        assert_eq!(w.recv(sub), [pubrel(pid(1))]);
        // A repeated PUBREC (the PUBREL may have been lost) gets PUBREL again.
        w.send(sub, &pubrec(pid(1)));
        assert_eq!(w.recv(sub), [pubrel(pid(1))]);
        w.send(sub, &pubcomp(pid(1)));
        w.recv_none(sub);
        w.send(publ, &publish("t", b"y", Q2, 301));
        assert_eq!(w.recv(publ), [pubrec(pid(301))]);
        assert_eq!(w.recv(sub), [msg("t", b"y", q2(2), false, false)]);
    }
}

/// An inbound QoS 2 PUBLISH repeated (with DUP 1) before PUBREL is acknowledged with PUBREC again,
/// not delivered again, and the connection stays open: [MQTT-4.3.3-2] (3.1.1),
/// [MQTT-4.3.3-10] (5.0). DUP is not forwarded [MQTT-3.3.1-3] (3.1.1 and 5.0).
#[test]
fn mqtt_4_3_3_10_inbound_qos2_duplicate_before_pubrel() {
    for version in [V3_1_1, V5] {
        let mut w = World::default();
        let sub = w.client(V5, "sub");
        w.subscribe(sub, "t", Q2);
        let publ = w.client(version, "pub");
        w.send(publ, &publish("t", b"once", Q2, 7));
        assert_eq!(w.recv(publ), [pubrec(pid(7))]);
        let mut dup = publish("t", b"once", Q2, 7);
        if let Packet::Publish(p) = &mut dup {
            p.dup = true;
        }
        w.send(publ, &dup);
        assert_eq!(w.recv(publ), [pubrec(pid(7))]);
        w.send(publ, &dup);
        assert_eq!(w.recv(publ), [pubrec(pid(7))]);
        assert_eq!(w.recv(sub), [msg("t", b"once", q2(1), false, false)]);
        assert!(!w.is_closed(publ));
        w.send(publ, &pubrel(pid(7)));
        assert_eq!(w.recv(publ), [pubcomp(pid(7))]);
        w.recv_none(sub);
        let s = w.broker.stats();
        assert_eq!((s.publish_received, s.publish_sent), (3, 1), "{version:?}");
    }
}

/// Once PUBCOMP has been sent, the same packet id starts a new message: [MQTT-4.3.3-2] last
/// clause (3.1.1), [MQTT-4.3.3-12] (5.0).
#[test]
fn mqtt_4_3_3_12_same_packet_id_after_pubcomp_is_new() {
    for version in [V3_1_1, V5] {
        let mut w = World::default();
        let sub = w.client(V3_1_1, "sub");
        w.subscribe(sub, "t", Q0);
        let publ = w.client(version, "pub");
        for payload in [&b"first"[..], b"second"] {
            w.send(publ, &publish_msg("t", payload, Q2, 9, false));
            assert_eq!(w.recv(publ), [pubrec(pid(9))]);
            w.send(publ, &pubrel(pid(9)));
            assert_eq!(w.recv(publ), [pubcomp(pid(9))]);
        }
        assert_eq!(
            w.recv(sub),
            [
                msg("t", b"first", q0(), false, false),
                msg("t", b"second", q0(), false, false),
            ]
        );
    }
}

/// PUBREL for a packet id with no QoS 2 exchange gets PUBCOMP all the same, Reason Code 0x92 in
/// MQTT 5, and the connection stays open: [MQTT-4.3.3-2] (3.1.1), [MQTT-4.3.3-11] (5.0) and
/// 5.0 section 3.7.2.1.
#[test]
fn mqtt_4_3_3_11_pubrel_for_unknown_id_gets_pubcomp() {
    let mut w = World::default();
    let v5 = w.client(V5, "v5");
    let v3 = w.client(V3_1_1, "v3");
    w.send(v5, &pubrel(pid(44)));
    assert_eq!(
        w.recv(v5),
        [pubcomp_with(44, PubRelReason::PacketIdentifierNotFound)]
    );
    w.send(v3, &pubrel(pid(44)));
    assert_eq!(w.recv(v3), [pubcomp(pid(44))]);
    assert!(!w.is_closed(v5) && !w.is_closed(v3));
}

/// Messages are forwarded at the lower of their QoS and the subscription's granted QoS, so a QoS 0
/// publish reaches a QoS 2 subscription at QoS 0: [MQTT-3.8.4-6] (3.1.1), [MQTT-3.8.4-8] (5.0).
#[test]
fn mqtt_3_8_4_6_qos_downgraded_to_granted() {
    for version in [V3_1_1, V5] {
        let mut w = World::default();
        let sub = w.client(version, "sub");
        w.send(
            sub,
            &subscribe_many(
                1,
                &[("d/0", opts(Q0)), ("d/1", opts(Q1)), ("d/2", opts(Q2))],
                None,
            ),
        );
        w.recv(sub);
        let publ = w.client(V5, "pub");
        w.send(publ, &publish("d/1", b"a", Q2, 1));
        w.send(publ, &publish("d/0", b"b", Q1, 2));
        w.send(publ, &publish("d/2", b"c", Q0, 0));
        w.send(publ, &publish("d/2", b"d", Q1, 3));
        w.send(publ, &publish("d/0", b"e", Q2, 4));
        assert_eq!(
            w.recv(sub),
            [
                msg("d/1", b"a", q1(1), false, false),
                msg("d/0", b"b", q0(), false, false),
                msg("d/2", b"c", q0(), false, false),
                msg("d/2", b"d", q1(2), false, false),
                msg("d/0", b"e", q0(), false, false),
            ]
        );
    }
}

/// A PUBLISH received with DUP 1 is forwarded with DUP 0: the outgoing DUP says only whether the
/// outgoing packet is a retransmission [MQTT-3.3.1-3] (3.1.1 and 5.0).
#[test]
fn mqtt_3_3_1_3_dup_not_propagated() {
    for version in [V3_1_1, V5] {
        let mut w = World::default();
        let sub = w.client(version, "sub");
        w.subscribe(sub, "t", Q1);
        let publ = w.client(version, "pub");
        let mut dup = publish("t", b"x", Q1, 3);
        if let Packet::Publish(p) = &mut dup {
            p.dup = true;
        }
        w.send(publ, &dup);
        assert_eq!(w.recv(publ), [puback(pid(3))]);
        assert_eq!(w.recv(sub), [msg("t", b"x", q1(1), false, false)]);
    }
}

/// Encodes packets back to back, as one read from the network.
fn encode_all(version: ProtocolVersion, packets: &[Packet]) -> bytes::BytesMut {
    let mut buf = bytes::BytesMut::new();
    for p in packets {
        p.encode(version, &mut buf).expect("test packet encodes");
    }
    buf
}

/// Outbound packet ids are unused by any message in flight, a PUBREL awaiting PUBCOMP included,
/// also when the counter wraps around: [MQTT-2.3.1-4], [MQTT-4.3.2-1], [MQTT-4.3.3-1] (3.1.1);
/// [MQTT-2.2.1-4], [MQTT-4.3.2-1], [MQTT-4.3.3-1] (5.0).
#[test]
fn mqtt_2_2_1_4_outbound_packet_ids_unique_in_flight() {
    let mut w = World::default();
    let sub = w.client(V5, "sub");
    w.subscribe(sub, "t", Q2);
    let publ = w.client(V5, "pub");
    // Packet id 1 stays in flight, awaiting PUBCOMP, for the whole test.
    w.send(publ, &publish("t", b"held", Q2, 1));
    w.recv(publ);
    assert_eq!(w.recv(sub), [msg("t", b"held", q2(1), false, false)]);
    w.send(sub, &pubrec(pid(1)));
    assert_eq!(w.recv(sub), [pubrel(pid(1))]);

    // Ids 2 to 65,535, in batches of 19 that fill the window of 20 next to id 1.
    let mut next = 2u32;
    while next <= u32::from(u16::MAX) {
        let batch = (u32::from(u16::MAX) + 1 - next).min(19) as u16;
        let pubs: Vec<Packet> = (1..=batch).map(|i| publish("t", b"", Q1, i)).collect();
        w.send_raw(publ, &encode_all(V5, &pubs));
        w.recv(publ);
        let ids: Vec<u32> = w
            .recv(sub)
            .iter()
            .map(|p| u32::from(as_publish(p).qos_pid.packet_id().unwrap().get()))
            .collect();
        let expected: Vec<u32> = (next..next + u32::from(batch)).collect();
        assert_eq!(ids, expected);
        let acks: Vec<Packet> = ids.iter().map(|&id| puback(pid(id as u16))).collect();
        w.send_raw(sub, &encode_all(V5, &acks));
        next += u32::from(batch);
    }
    // The counter wraps: 1 is still in flight, so the next message gets 2.
    w.send(publ, &publish("t", b"wrapped", Q1, 1));
    assert_eq!(w.recv(sub), [msg("t", b"wrapped", q1(2), false, false)]);
    w.send(sub, &pubcomp(pid(1)));
    w.send(sub, &puback(pid(2)));
    w.recv_none(sub);
    assert!(!w.is_closed(sub));
}

// ---------------------------------------------------------------------------------------------
// Outbound window
// ---------------------------------------------------------------------------------------------

/// max_inflight_messages = 2 (Mosquitto's option): further QoS 1 and 2 messages wait until a
/// slot frees; PUBACK frees a QoS 1 slot, and only PUBCOMP frees a QoS 2 one (PUBREL is still
/// unacknowledged [MQTT-4.3.3-1] (3.1.1) [MQTT-4.3.3-5] (5.0)). Publishers are acknowledged at
/// once regardless.
#[test]
fn max_inflight_messages_holds_further_messages_until_acknowledged() {
    for version in [V3_1_1, V5] {
        let mut w = World::new(config(|c| c.max_inflight_messages = 2));
        let sub = w.client(version, "sub");
        w.subscribe(sub, "t", Q2);
        let publ = w.client(V5, "pub");
        w.send(publ, &publish("t", b"1", Q1, 1));
        w.send(publ, &publish("t", b"2", Q2, 2));
        w.send(publ, &publish("t", b"3", Q1, 3));
        w.send(publ, &publish("t", b"4", Q2, 4));
        assert_eq!(
            w.recv(publ),
            [
                puback(pid(1)),
                pubrec(pid(2)),
                puback(pid(3)),
                pubrec(pid(4))
            ]
        );
        assert_eq!(
            w.recv(sub),
            [
                msg("t", b"1", q1(1), false, false),
                msg("t", b"2", q2(2), false, false),
            ]
        );
        w.send(sub, &puback(pid(1)));
        assert_eq!(w.recv(sub), [msg("t", b"3", q1(3), false, false)]);
        w.send(sub, &pubrec(pid(2)));
        assert_eq!(w.recv(sub), [pubrel(pid(2))]);
        w.send(sub, &pubcomp(pid(2)));
        assert_eq!(w.recv(sub), [msg("t", b"4", q2(4), false, false)]);
        w.send(sub, &puback(pid(3)));
        w.recv_none(sub);
        assert_eq!(w.broker.stats().dropped_queue_full, 0);
    }
}

/// An MQTT 5 subscriber's Receive Maximum bounds the QoS 1 and 2 PUBLISH packets in flight to it,
/// below the configured window; a PUBREC with a Reason Code of 0x80 or more ends the exchange and
/// frees the slot without PUBREL: [MQTT-3.3.4-9], [MQTT-4.9.0-2], [MQTT-4.4.0-2] (5.0).
#[test]
fn mqtt_3_3_4_9_receive_maximum_limits_the_window() {
    let mut w = World::default();
    let mut c = connect(V5, "sub");
    c.properties.receive_maximum = NonZeroU16::new(1);
    let (sub, _) = w.connect(c);
    w.subscribe(sub, "t", Q2);
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish("t", b"1", Q1, 1));
    w.send(publ, &publish("t", b"2", Q2, 2));
    w.send(publ, &publish("t", b"3", Q2, 3));
    w.send(publ, &publish("t", b"4", Q1, 4));
    assert_eq!(w.recv(sub), [msg("t", b"1", q1(1), false, false)]);
    w.send(sub, &puback(pid(1)));
    assert_eq!(w.recv(sub), [msg("t", b"2", q2(2), false, false)]);
    w.send(sub, &pubrec_with(2, PubAckReason::UnspecifiedError));
    assert_eq!(w.recv(sub), [msg("t", b"3", q2(3), false, false)]);
    w.send(sub, &pubrec(pid(3)));
    assert_eq!(w.recv(sub), [pubrel(pid(3))]);
    w.send(sub, &pubcomp(pid(3)));
    assert_eq!(w.recv(sub), [msg("t", b"4", q1(4), false, false)]);
}

/// A full window holds back only QoS 1 and 2 PUBLISH packets: QoS 0 messages, PINGRESP and SUBACK
/// go out at once [MQTT-4.9.0-2], [MQTT-4.9.0-3], [MQTT-3.3.4-10] (5.0); the same with a
/// configured window for 3.1.1.
#[test]
fn qos0_and_other_packets_not_held_back_by_full_window() {
    for version in [V3_1_1, V5] {
        let mut w = World::new(config(|c| {
            if !version.is_v5() {
                c.max_inflight_messages = 1;
            }
        }));
        let mut c = connect(version, "sub");
        if version.is_v5() {
            c.properties.receive_maximum = NonZeroU16::new(1);
        }
        let (sub, _) = w.connect(c);
        w.subscribe(sub, "t", Q1);
        let publ = w.client(V5, "pub");
        w.send(publ, &publish("t", b"1", Q1, 1));
        w.send(publ, &publish("t", b"2", Q1, 2));
        w.send(publ, &publish("t", b"3", Q0, 0));
        w.send(sub, &Packet::PingReq);
        w.send(sub, &subscribe(9, "u", Q0));
        assert_eq!(
            w.recv(sub),
            [
                msg("t", b"1", q1(1), false, false),
                msg("t", b"3", q0(), false, false),
                Packet::PingResp,
                suback(9, &[SubAckReason::GrantedQoS0]),
            ]
        );
        w.send(sub, &puback(pid(1)));
        assert_eq!(w.recv(sub), [msg("t", b"2", q1(2), false, false)]);
    }
}

// ---------------------------------------------------------------------------------------------
// Session queue
// ---------------------------------------------------------------------------------------------

/// max_queued_messages (Mosquitto's option; the specifications leave such limits to the
/// implementation): a message that finds the session's queue full is dropped and counted in
/// stats().dropped_queue_full, never silently; the queue takes messages again once it drains.
/// The publisher is acknowledged all the same [MQTT-4.3.2-2] (3.1.1) [MQTT-4.3.2-4] (5.0), and
/// what is delivered keeps its order [MQTT-4.6.0-6] (3.1.1) [MQTT-4.6.0-5] (5.0).
#[test]
fn max_queued_messages_overflow_dropped_and_counted() {
    for version in [V3_1_1, V5] {
        let mut w = World::new(config(|c| {
            c.max_inflight_messages = 1;
            c.max_queued_messages = 2;
        }));
        let sub = w.client(version, "sub");
        w.subscribe(sub, "q", Q1);
        let publ = w.client(V5, "pub");
        for (i, payload) in [b"1", b"2", b"3", b"4", b"5"].iter().enumerate() {
            w.send(publ, &publish("q", *payload, Q1, i as u16 + 1));
        }
        // The broker took ownership of every message [MQTT-4.3.2-4] (5.0).
        assert_eq!(w.recv(publ).len(), 5);
        assert_eq!(w.broker.stats().dropped_queue_full, 2);
        assert_eq!(w.recv(sub), [msg("q", b"1", q1(1), false, false)]);
        w.send(sub, &puback(pid(1)));
        assert_eq!(w.recv(sub), [msg("q", b"2", q1(2), false, false)]);
        w.send(sub, &puback(pid(2)));
        assert_eq!(w.recv(sub), [msg("q", b"3", q1(3), false, false)]);
        w.send(sub, &puback(pid(3)));
        w.recv_none(sub);
        w.send(publ, &publish("q", b"6", Q1, 6));
        assert_eq!(w.recv(sub), [msg("q", b"6", q1(4), false, false)]);
        assert_eq!(w.broker.stats().dropped_queue_full, 2);
    }
}

/// max_queued_bytes (Mosquitto's option): queued payload bytes are bounded too; what does not fit
/// is dropped and counted, and a smaller message that fits is still queued; what is delivered
/// keeps its order [MQTT-4.6.0-6] (3.1.1) [MQTT-4.6.0-5] (5.0).
#[test]
fn max_queued_bytes_overflow_dropped_and_counted() {
    let mut w = World::new(config(|c| {
        c.max_inflight_messages = 1;
        c.max_queued_messages = 0;
        c.max_queued_bytes = 10;
    }));
    let sub = w.client(V3_1_1, "sub");
    w.subscribe(sub, "q", Q1);
    let publ = w.client(V3_1_1, "pub");
    let payloads: [&[u8]; 6] = [b"aaaa", b"bbbb", b"cccc", b"dddd", b"ee", b"f"];
    for (i, payload) in payloads.iter().enumerate() {
        w.send(publ, &publish_msg("q", payload, Q1, i as u16 + 1, false));
    }
    assert_eq!(w.broker.stats().dropped_queue_full, 2);
    let mut got = Vec::new();
    for id in 1..=4 {
        let packets = w.recv(sub);
        assert_eq!(packets.len(), 1, "{packets:?}");
        got.push(packets[0].clone());
        w.send(sub, &puback(pid(id)));
    }
    w.recv_none(sub);
    assert_eq!(
        got,
        [
            msg("q", b"aaaa", q1(1), false, false),
            msg("q", b"bbbb", q1(2), false, false),
            msg("q", b"cccc", q1(3), false, false),
            msg("q", b"ee", q1(4), false, false),
        ]
    );
}

/// An offline persistent session (Clean Session 0; MQTT 5 Session Expiry Interval > 0) keeps
/// QoS 1 and 2 messages for its subscriptions and delivers them in order on reconnect with
/// Session Present 1; QoS 0 messages only with queue_qos0_messages, and otherwise counted in
/// stats().dropped_qos0_offline: [MQTT-3.1.2-4], [MQTT-3.1.2-5], [MQTT-3.2.2-2] (3.1.1);
/// [MQTT-3.1.2-5], [MQTT-3.1.2-25], [MQTT-3.2.2-3] (5.0).
#[test]
fn mqtt_3_1_2_5_offline_session_queues_qos1_and_qos2() {
    for version in [V3_1_1, V5] {
        for queue_qos0 in [false, true] {
            let mut w = World::new(config(|c| c.queue_qos0_messages = queue_qos0));
            let (sub, _) = w.connect(persistent(version, "sub"));
            w.subscribe(sub, "o", Q2);
            w.peer_close(sub);
            let publ = w.client(V5, "pub");
            w.send(publ, &publish("o", b"zero", Q0, 0));
            w.send(publ, &publish("o", b"one", Q1, 1));
            w.send(publ, &publish("o", b"two", Q2, 2));
            w.send(publ, &publish("o", b"zero again", Q0, 0));
            assert_eq!(w.recv(publ), [puback(pid(1)), pubrec(pid(2))]);
            let dropped = if queue_qos0 { 0 } else { 2 };
            assert_eq!(w.broker.stats().dropped_qos0_offline, dropped);

            let (_, ack, rest) = connect_resuming(&mut w, persistent(version, "sub"));
            assert!(ack.session_present);
            let mut expected = Vec::new();
            if queue_qos0 {
                expected.push(msg("o", b"zero", q0(), false, false));
            }
            expected.push(msg("o", b"one", q1(1), false, false));
            expected.push(msg("o", b"two", q2(2), false, false));
            if queue_qos0 {
                expected.push(msg("o", b"zero again", q0(), false, false));
            }
            assert_eq!(rest, expected, "{version:?} queue_qos0 {queue_qos0}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resuming a session
// ---------------------------------------------------------------------------------------------

/// On reconnect with Clean Session 0 the broker resends, in their original order, the
/// unacknowledged QoS 1 and 2 PUBLISH packets with DUP 1 and their original packet ids, and
/// PUBREL where PUBREC had arrived (never that PUBLISH again); then the queued messages follow:
/// [MQTT-4.4.0-1], [MQTT-3.3.1-1], [MQTT-4.3.3-1], and [MQTT-4.6.0-1] as [MQTT-4.6.0-6] applies it
/// to the server (3.1.1); [MQTT-4.4.0-1], [MQTT-3.3.1-1], [MQTT-4.3.3-6] (5.0).
#[test]
fn mqtt_4_4_0_1_resume_resends_in_flight_then_queue() {
    for version in [V3_1_1, V5] {
        let mut w = World::new(config(|c| c.max_inflight_messages = 3));
        let (sub, _) = w.connect(persistent(version, "sub"));
        w.subscribe(sub, "r", Q2);
        let publ = w.client(V5, "pub");
        w.send(publ, &publish("r", b"m1", Q1, 1));
        w.send(publ, &publish("r", b"m2", Q2, 2));
        w.send(publ, &publish("r", b"m3", Q2, 3));
        w.send(publ, &publish("r", b"m4", Q1, 4));
        w.send(publ, &publish("r", b"m5", Q2, 5));
        assert_eq!(
            w.recv(sub),
            [
                msg("r", b"m1", q1(1), false, false),
                msg("r", b"m2", q2(2), false, false),
                msg("r", b"m3", q2(3), false, false),
            ]
        );
        w.send(sub, &pubrec(pid(3)));
        assert_eq!(w.recv(sub), [pubrel(pid(3))]);
        w.peer_close(sub);
        w.send(publ, &publish("r", b"m6", Q1, 6));

        let (sub, ack, rest) = connect_resuming(&mut w, persistent(version, "sub"));
        assert!(ack.session_present);
        assert_eq!(
            rest,
            [
                msg("r", b"m1", q1(1), true, false),
                msg("r", b"m2", q2(2), true, false),
                pubrel(pid(3)),
            ],
            "{version:?}"
        );
        w.send(sub, &puback(pid(1)));
        assert_eq!(w.recv(sub), [msg("r", b"m4", q1(4), false, false)]);
        w.send(sub, &pubrec(pid(2)));
        assert_eq!(w.recv(sub), [pubrel(pid(2))]);
        w.send(sub, &pubcomp(pid(3)));
        assert_eq!(w.recv(sub), [msg("r", b"m5", q2(5), false, false)]);
        w.send(sub, &pubcomp(pid(2)));
        assert_eq!(w.recv(sub), [msg("r", b"m6", q1(6), false, false)]);
        w.send(sub, &puback(pid(4)));
        w.send(sub, &pubrec(pid(5)));
        assert_eq!(w.recv(sub), [pubrel(pid(5))]);
        w.send(sub, &pubcomp(pid(5)));
        w.send(sub, &puback(pid(6)));
        w.recv_none(sub);
        assert_eq!(w.broker.stats().publish_sent, 8);
    }
}

/// Every topic is an ordered topic: a subscriber gets the messages of one topic and QoS in the
/// order they were received from each publisher, through the window, the queue, a disconnection
/// and a resume: [MQTT-4.6.0-5], [MQTT-4.6.0-6] (3.1.1); [MQTT-4.6.0-5], [MQTT-4.6.0-6] (5.0).
#[test]
fn mqtt_4_6_0_6_order_per_topic_preserved() {
    for version in [V3_1_1, V5] {
        let mut w = World::new(config(|c| {
            c.max_inflight_messages = 2;
            c.max_queued_messages = 0;
        }));
        let (sub, _) = w.connect(persistent(version, "sub"));
        w.subscribe(sub, "o", Q1);
        let a = w.client(V5, "a");
        let b = w.client(V3_1_1, "b");
        let mut id = 0;
        let mut send = |w: &mut World, conn, payload: &'static [u8]| {
            id += 1;
            w.send(conn, &publish("o", payload, Q1, id));
        };
        send(&mut w, a, b"a1");
        send(&mut w, b, b"b1");
        send(&mut w, a, b"a2");
        send(&mut w, b, b"b2");
        let first: Vec<Packet> = w.recv(sub);
        assert_eq!(
            first,
            [
                msg("o", b"a1", q1(1), false, false),
                msg("o", b"b1", q1(2), false, false),
            ]
        );
        w.peer_close(sub);
        send(&mut w, a, b"a3");
        send(&mut w, b, b"b3");
        send(&mut w, a, b"a4");
        send(&mut w, b, b"b4");
        let (sub, _, mut pending) = connect_resuming(&mut w, persistent(version, "sub"));
        send(&mut w, a, b"a5");
        let mut order = Vec::new();
        while !pending.is_empty() {
            for p in &pending {
                let p = as_publish(p);
                order.push((p.payload.to_vec(), p.dup));
                w.send(sub, &puback(p.qos_pid.packet_id().unwrap()));
            }
            pending = w.recv(sub);
        }
        let expected: Vec<(Vec<u8>, bool)> = [
            ("a1", true),
            ("b1", true),
            ("a2", false),
            ("b2", false),
            ("a3", false),
            ("b3", false),
            ("a4", false),
            ("b4", false),
            ("a5", false),
        ]
        .iter()
        .map(|(p, dup)| (p.as_bytes().to_vec(), *dup))
        .collect();
        assert_eq!(order, expected, "{version:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Retained messages
// ---------------------------------------------------------------------------------------------

/// A retained message is stored with its QoS and sent to new subscriptions with RETAIN 1:
/// [MQTT-3.3.1-5], [MQTT-3.3.1-6], [MQTT-3.3.1-8] (3.1.1); [MQTT-3.3.1-5], [MQTT-3.3.1-9]
/// (5.0).
#[test]
fn mqtt_3_3_1_6_retained_sent_on_subscribe_with_retain_1() {
    let mut w = World::default();
    let publ = w.client(V5, "pub");
    w.send(publ, &publish_retained("r/1", b"one", Q1, 1));
    w.send(publ, &publish("r/2", b"not retained", Q1, 2));
    assert_eq!(
        w.recv(publ),
        [
            puback_with(1, PubAckReason::NoMatchingSubscribers),
            puback_with(2, PubAckReason::NoMatchingSubscribers),
        ]
    );
    assert_eq!(w.broker.stats().retained_messages, 1);
    for (id, version) in [("v3", V3_1_1), ("v5", V5)] {
        let sub = w.client(version, id);
        w.send(sub, &subscribe(1, "r/+", Q2));
        assert_eq!(
            w.recv(sub),
            [
                suback(1, &[SubAckReason::GrantedQoS2]),
                msg("r/1", b"one", q1(1), false, true),
            ]
        );
        w.send(sub, &subscribe(2, "x/#", Q2));
        assert_eq!(w.recv(sub), [suback(2, &[SubAckReason::GrantedQoS2])]);
    }
}

/// A newer retained message replaces the old one, a QoS 0 one included: [MQTT-3.3.1-5],
/// [MQTT-3.3.1-7] (3.1.1); [MQTT-3.3.1-5] (5.0).
#[test]
fn mqtt_3_3_1_5_retained_replaced_by_newer() {
    let mut w = World::default();
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish_retained("r", b"one", Q2, 1));
    w.send(publ, &pubrel(pid(1)));
    w.send(publ, &publish_retained("r", b"two", Q1, 2));
    w.recv(publ);
    let a = w.client(V5, "a");
    w.send(a, &subscribe(1, "r", Q2));
    assert_eq!(
        w.recv(a),
        [
            suback(1, &[SubAckReason::GrantedQoS2]),
            msg("r", b"two", q1(1), false, true),
        ]
    );
    w.send(publ, &publish_retained("r", b"three", Q0, 0));
    assert_eq!(w.recv(a), [msg("r", b"three", q0(), false, false)]);
    let b = w.client(V3_1_1, "b");
    w.send(b, &subscribe(1, "r", Q2));
    assert_eq!(
        w.recv(b),
        [
            suback(1, &[SubAckReason::GrantedQoS2]),
            msg("r", b"three", q0(), false, true),
        ]
    );
    assert_eq!(w.broker.stats().retained_messages, 1);
}

/// A retained PUBLISH with an empty payload deletes the topic's retained message, is not stored
/// itself, and is still forwarded to current subscribers: [MQTT-3.3.1-10], [MQTT-3.3.1-11]
/// (3.1.1); [MQTT-3.3.1-6], [MQTT-3.3.1-7] (5.0).
#[test]
fn mqtt_3_3_1_10_empty_retained_deletes_and_is_forwarded() {
    let mut w = World::default();
    let publ = w.client(V5, "pub");
    w.send(publ, &publish_retained("e/1", b"full", Q1, 1));
    w.recv(publ);
    let v3 = w.client(V3_1_1, "v3");
    w.send(v3, &subscribe(1, "e/#", Q1));
    assert_eq!(
        w.recv(v3),
        [
            suback(1, &[SubAckReason::GrantedQoS1]),
            msg("e/1", b"full", q1(1), false, true),
        ]
    );
    let rap = w.client(V5, "rap");
    let mut o = opts(Q1);
    o.retain_as_published = true;
    w.send(rap, &subscribe_with(1, "e/#", o));
    w.recv(rap);

    w.send(publ, &publish_retained("e/1", b"", Q1, 2));
    assert_eq!(w.recv(publ), [puback(pid(2))]);
    assert_eq!(w.recv(v3), [msg("e/1", b"", q1(2), false, false)]);
    assert_eq!(w.recv(rap), [msg("e/1", b"", q1(2), false, true)]);
    assert_eq!(w.broker.stats().retained_messages, 0);

    for (id, version) in [("new3", V3_1_1), ("new5", V5)] {
        let late = w.client(version, id);
        w.send(late, &subscribe(1, "e/#", Q1));
        assert_eq!(w.recv(late), [suback(1, &[SubAckReason::GrantedQoS1])]);
    }
    // Deleting what is not there is harmless and still forwarded.
    w.send(publ, &publish_retained("e/2", b"", Q0, 0));
    assert_eq!(w.recv(v3), [msg("e/2", b"", q0(), false, false)]);
    assert_eq!(w.broker.stats().retained_messages, 0);
}

/// Forwarded to an established subscription, a retained message has RETAIN 0 [MQTT-3.3.1-9]
/// (3.1.1), unless the MQTT 5 subscription asked for Retain As Published [MQTT-3.3.1-12],
/// [MQTT-3.3.1-13] (5.0).
#[test]
fn mqtt_3_3_1_9_forwarded_retain_flag_cleared_unless_retain_as_published() {
    let mut w = World::default();
    let v3 = w.client(V3_1_1, "v3");
    w.subscribe(v3, "f", Q0);
    let v5 = w.client(V5, "v5");
    w.subscribe(v5, "f", Q0);
    let rap = w.client(V5, "rap");
    let mut o = opts(Q0);
    o.retain_as_published = true;
    w.send(rap, &subscribe_with(1, "f", o));
    w.recv(rap);
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish_retained("f", b"r", Q0, 0));
    w.send(publ, &publish("f", b"n", Q0, 0));
    for sub in [v3, v5] {
        assert_eq!(
            w.recv(sub),
            [
                msg("f", b"r", q0(), false, false),
                msg("f", b"n", q0(), false, false),
            ]
        );
    }
    assert_eq!(
        w.recv(rap),
        [
            msg("f", b"r", q0(), false, true),
            msg("f", b"n", q0(), false, false),
        ]
    );
}

/// A PUBLISH without RETAIN neither stores, replaces nor removes the retained message, even with
/// an empty payload: [MQTT-3.3.1-12] (3.1.1); [MQTT-3.3.1-8] (5.0).
#[test]
fn mqtt_3_3_1_12_non_retained_publish_leaves_retained_alone() {
    let mut w = World::default();
    let publ = w.client(V5, "pub");
    w.send(publ, &publish_retained("n", b"kept", Q0, 0));
    w.send(publ, &publish("n", b"live", Q0, 0));
    w.send(publ, &publish("n", b"", Q0, 0));
    w.send(publ, &publish("other", b"live", Q0, 0));
    let sub = w.client(V3_1_1, "sub");
    w.send(sub, &subscribe(1, "#", Q0));
    assert_eq!(
        w.recv(sub),
        [
            suback(1, &[SubAckReason::GrantedQoS0]),
            msg("n", b"kept", q0(), false, true),
        ]
    );
    assert_eq!(w.broker.stats().retained_messages, 1);
}

/// MQTT 5 Retain Handling: 0 sends retained messages on every SUBSCRIBE, 1 only when the
/// subscription is new, 2 never: [MQTT-3.3.1-9], [MQTT-3.3.1-10], [MQTT-3.3.1-11],
/// [MQTT-3.8.4-4] (5.0).
#[test]
fn mqtt_3_3_1_9_to_11_retain_handling_v5() {
    let mut w = World::default();
    let publ = w.client(V5, "pub");
    w.send(publ, &publish_retained("h/1", b"x", Q0, 0));
    let sub = w.client(V5, "sub");
    let with = |rh| {
        let mut o = opts(Q0);
        o.retain_handling = rh;
        o
    };
    let retained = msg("h/1", b"x", q0(), false, true);
    let granted = [SubAckReason::GrantedQoS0];
    let steps = [
        ("h/#", RetainHandling::OnNewSubscribe, true),
        ("h/#", RetainHandling::OnNewSubscribe, false),
        ("h/#", RetainHandling::OnSubscribe, true),
        ("h/#", RetainHandling::OnSubscribe, true),
        ("h/#", RetainHandling::Never, false),
        ("h/+", RetainHandling::Never, false),
        ("h/+", RetainHandling::OnNewSubscribe, false),
    ];
    for (i, (filter, rh, sends)) in steps.into_iter().enumerate() {
        let id = i as u16 + 1;
        w.send(sub, &subscribe_with(id, filter, with(rh)));
        let mut expected = vec![suback(id, &granted)];
        if sends {
            expected.push(retained.clone());
        }
        assert_eq!(w.recv(sub), expected, "step {i}: {filter} {rh:?}");
    }
    // Both subscriptions still hold: one copy of a live message.
    w.send(publ, &publish("h/1", b"live", Q0, 0));
    assert_eq!(w.recv(sub), [msg("h/1", b"live", q0(), false, false)]);
}

/// Retained messages go out at the lower of their stored QoS and the granted QoS:
/// [MQTT-3.3.1-5], [MQTT-3.8.4-6] (3.1.1); [MQTT-3.3.1-5], [MQTT-3.8.4-8] (5.0).
#[test]
fn mqtt_3_8_4_6_retained_qos_is_min_of_message_and_granted() {
    for version in [V3_1_1, V5] {
        let mut w = World::default();
        let publ = w.client(V5, "pub");
        w.send(publ, &publish_retained("m/0", b"0", Q0, 0));
        w.send(publ, &publish_retained("m/1", b"1", Q1, 1));
        w.send(publ, &publish_retained("m/2", b"2", Q2, 2));
        let expected = [
            (Q0, [q0(), q0(), q0()]),
            (Q1, [q0(), q1(1), q1(2)]),
            (Q2, [q0(), q1(1), q2(2)]),
        ];
        for (i, (granted, qos)) in expected.into_iter().enumerate() {
            let sub = w.client(version, &format!("sub{i}"));
            w.send(sub, &subscribe(1, "m/+", granted));
            assert_eq!(
                w.recv(sub),
                [
                    suback(1, &[SubAckReason::granted(granted)]),
                    msg("m/0", b"0", qos[0], false, true),
                    msg("m/1", b"1", qos[1], false, true),
                    msg("m/2", b"2", qos[2], false, true),
                ],
                "{version:?} granted {granted:?}"
            );
        }
    }
}

/// Acknowledges every QoS 1 PUBLISH received until nothing more comes, and returns the topics and
/// payloads in the order received.
fn drain_acking(w: &mut World, conn: ConnId, mut pending: Vec<Packet>) -> Vec<(String, Vec<u8>)> {
    let mut got = Vec::new();
    while !pending.is_empty() {
        for p in &pending {
            let p = as_publish(p);
            got.push((p.topic.to_string(), p.payload.to_vec()));
            if let Some(id) = p.qos_pid.packet_id() {
                w.send(conn, &puback(id));
            }
        }
        pending = w.recv(conn);
    }
    got
}

/// More retained messages match a new subscription than max_queued_messages (or max_queued_bytes)
/// allows: they are all delivered, through the window, none dropped, as every matching retained
/// message must be sent [MQTT-3.3.1-6] (3.1.1) [MQTT-3.3.1-9] (5.0). Retained messages are not
/// counted against a session's queue limits (Config::max_retained_messages), unlike Mosquitto,
/// which caps them by its queue limits. A live message arriving meanwhile is queued behind them.
#[test]
fn retained_on_subscribe_not_capped_by_queue_limits() {
    let limits: [(usize, usize); 2] = [(2, 0), (0, 5)];
    for (max_msgs, max_bytes) in limits {
        let mut w = World::new(config(|c| {
            c.max_inflight_messages = 2;
            c.max_queued_messages = max_msgs;
            c.max_queued_bytes = max_bytes;
        }));
        let publ = w.client(V5, "pub");
        let topics: Vec<String> = (0..10).map(|i| format!("many/{i}")).collect();
        for (i, t) in topics.iter().enumerate() {
            w.send(
                publ,
                &Packet::Publish(Publish {
                    retain: true,
                    ..as_publish(&publish_msg(t, b"abc", Q1, i as u16 + 1, true)).clone()
                }),
            );
        }
        w.recv(publ);
        assert_eq!(w.broker.stats().retained_messages, 10);
        let sub = w.client(V3_1_1, "sub");
        w.send(sub, &subscribe(1, "many/#", Q1));
        let mut first = w.recv(sub);
        assert_eq!(first.remove(0), suback(1, &[SubAckReason::GrantedQoS1]));
        assert_eq!(
            first,
            [
                msg("many/0", b"abc", q1(1), false, true),
                msg("many/1", b"abc", q1(2), false, true),
            ]
        );
        w.send(publ, &publish("many/live", b"xyz", Q1, 20));
        let got = drain_acking(&mut w, sub, first);
        let mut expected: Vec<(String, Vec<u8>)> = topics
            .iter()
            .map(|t| (t.clone(), b"abc".to_vec()))
            .collect();
        expected.push(("many/live".to_owned(), b"xyz".to_vec()));
        assert_eq!(
            got, expected,
            "limits {max_msgs} messages, {max_bytes} bytes"
        );
        assert_eq!(w.broker.stats().dropped_queue_full, 0);
    }
}

/// What a session may queue outside its queue limits for retained messages is itself bounded by
/// max_retained_messages: a client that subscribes again and again without acknowledging cannot
/// grow its queue without bound. What is beyond is dropped and counted.
#[test]
fn retained_on_subscribe_backlog_bounded_by_max_retained_messages() {
    let mut w = World::new(config(|c| {
        c.max_inflight_messages = 1;
        c.max_queued_messages = 1;
        c.max_retained_messages = 3;
    }));
    let publ = w.client(V5, "pub");
    for (i, t) in ["b/1", "b/2", "b/3"].into_iter().enumerate() {
        w.send(publ, &publish_retained(t, b"r", Q1, i as u16 + 1));
    }
    w.recv(publ);
    let sub = w.client(V5, "sub");
    w.send(sub, &subscribe(1, "b/#", Q1));
    let mut first = w.recv(sub);
    first.remove(0);
    assert_eq!(first, [msg("b/1", b"r", q1(1), false, true)]);
    // Two retained messages wait; the second SUBSCRIBE adds three, of which one fits.
    w.send(sub, &subscribe(2, "b/#", Q1));
    assert_eq!(w.recv(sub), [suback(2, &[SubAckReason::GrantedQoS1])]);
    assert_eq!(w.broker.stats().dropped_queue_full, 2);
    // The ordinary queue limit still has its room for live messages.
    w.send(publ, &publish("b/live", b"l", Q1, 9));
    assert_eq!(w.broker.stats().dropped_queue_full, 2);
    w.send(sub, &puback(pid(1)));
    let pending = w.recv(sub);
    let got = drain_acking(&mut w, sub, pending);
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(topics, ["b/2", "b/3", "b/1", "b/live"]);
}

/// max_retained_messages: a retained message for a new topic beyond it is not stored (the limit
/// bounds [MQTT-3.3.1-5] (3.1.1 and 5.0)), counted in stats().dropped_retained_limit, and still
/// forwarded; replacing or deleting existing ones is always possible [MQTT-3.3.1-10] (3.1.1)
/// [MQTT-3.3.1-6] (5.0).
#[test]
fn max_retained_messages_limit_counted() {
    let mut w = World::new(config(|c| c.max_retained_messages = 2));
    let sub = w.client(V3_1_1, "sub");
    w.subscribe(sub, "l/#", Q0);
    let publ = w.client(V5, "pub");
    w.send(publ, &publish_retained("l/a", b"a", Q0, 0));
    w.send(publ, &publish_retained("l/b", b"b", Q0, 0));
    w.send(publ, &publish_retained("l/c", b"c", Q0, 0));
    assert_eq!(topics(&mut w, sub), ["l/a", "l/b", "l/c"]);
    let s = w.broker.stats();
    assert_eq!((s.retained_messages, s.dropped_retained_limit), (2, 1));
    w.send(publ, &publish_retained("l/a", b"a2", Q0, 0));
    let s = w.broker.stats();
    assert_eq!((s.retained_messages, s.dropped_retained_limit), (2, 1));
    w.send(publ, &publish_retained("l/b", b"", Q0, 0));
    w.send(publ, &publish_retained("l/c", b"c2", Q0, 0));
    let s = w.broker.stats();
    assert_eq!((s.retained_messages, s.dropped_retained_limit), (2, 1));
    let late = w.client(V5, "late");
    w.send(late, &subscribe(1, "l/#", Q0));
    assert_eq!(
        w.recv(late),
        [
            suback(1, &[SubAckReason::GrantedQoS0]),
            msg("l/a", b"a2", q0(), false, true),
            msg("l/c", b"c2", q0(), false, true),
        ]
    );
}

/// With retain_available off, CONNACK says Retain Available 0 and a PUBLISH with RETAIN 1 closes
/// the connection, with DISCONNECT 0x9A for an MQTT 5 client (5.0 section 3.3.1.3,
/// [MQTT-3.2.2-14] (5.0)); nothing is stored or forwarded.
#[test]
fn retain_unavailable_publish_with_retain_disconnects_0x9a() {
    let mut w = World::new(config(|c| c.retain_available = false));
    let sub = w.client(V3_1_1, "sub");
    w.subscribe(sub, "t", Q0);
    let (v5, ack) = w.connect(connect(V5, "v5"));
    assert_eq!(ack.properties.retain_available, Some(false));
    w.send(v5, &publish_retained("t", b"x", Q0, 0));
    assert_eq!(
        without_reason_strings(w.recv(v5)),
        [Packet::Disconnect(Disconnect::new(
            DisconnectReason::RetainNotSupported
        ))]
    );
    assert!(w.is_closed(v5));
    let v3 = w.client(V3_1_1, "v3");
    w.send(v3, &publish_retained("t", b"y", Q1, 1));
    w.recv_none(v3);
    assert!(w.is_closed(v3));
    w.recv_none(sub);
    let other = w.client(V5, "other");
    w.send(other, &publish("t", b"plain", Q0, 0));
    assert_eq!(w.recv(sub), [msg("t", b"plain", q0(), false, false)]);
    assert_eq!(w.broker.stats().retained_messages, 0);
}

// ---------------------------------------------------------------------------------------------
// MQTT 5 subscription options and properties
// ---------------------------------------------------------------------------------------------

/// No Local: a subscription with it does not receive its own client's publications, while other
/// clients' subscriptions with No Local do: [MQTT-3.8.3-3] (5.0).
#[test]
fn mqtt_3_8_3_3_no_local() {
    let mut w = World::default();
    let mut o = opts(Q1);
    o.no_local = true;
    let me = w.client(V5, "me");
    w.send(me, &subscribe_with(1, "nl", o));
    w.recv(me);
    let other = w.client(V5, "other");
    w.send(other, &subscribe_with(1, "nl", o));
    w.recv(other);
    let v3 = w.client(V3_1_1, "v3");
    w.subscribe(v3, "nl", Q1);
    w.send(me, &publish("nl", b"mine", Q1, 1));
    assert_eq!(w.recv(me), [puback(pid(1))]);
    assert_eq!(w.recv(other), [msg("nl", b"mine", q1(1), false, false)]);
    assert_eq!(w.recv(v3), [msg("nl", b"mine", q1(1), false, false)]);
    w.send(other, &publish("nl", b"theirs", Q0, 0));
    assert_eq!(w.recv(me), [msg("nl", b"theirs", q0(), false, false)]);
    w.recv_none(other);
}

/// A Subscription Identifier given with SUBSCRIBE comes back with every message delivered through
/// that subscription, retained ones included, and goes away when the subscription is replaced
/// without one: [MQTT-3.3.4-3] (5.0), 5.0 section 3.8.2.1.2. A 3.1.1 subscriber gets no
/// properties.
#[test]
fn mqtt_3_3_4_3_subscription_identifier_delivered() {
    let mut w = World::default();
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish_retained("s/r", b"old", Q1, 1));
    w.recv(publ);
    let v5 = w.client(V5, "v5");
    w.send(v5, &subscribe_many(1, &[("s/+", opts(Q1))], Some(77)));
    assert_eq!(
        w.recv(v5),
        [
            suback(1, &[SubAckReason::GrantedQoS1]),
            msg_with("s/r", b"old", q1(1), false, true, sub_ids(&[77])),
        ]
    );
    let v3 = w.client(V3_1_1, "v3");
    w.subscribe(v3, "s/+", Q1);
    w.recv(v3);
    w.send(publ, &publish("s/x", b"new", Q1, 2));
    assert_eq!(
        w.recv(v5),
        [msg_with("s/x", b"new", q1(2), false, false, sub_ids(&[77]))]
    );
    assert_eq!(w.recv(v3), [msg("s/x", b"new", q1(2), false, false)]);
    w.send(v5, &subscribe_many(2, &[("s/+", opts(Q1))], None));
    w.recv(v5);
    w.send(publ, &publish("s/x", b"plain", Q0, 0));
    assert_eq!(w.recv(v5), [msg("s/x", b"plain", q0(), false, false)]);
}

/// The properties of the application message reach MQTT 5 subscribers unaltered, user properties
/// in order (duplicates included), live and retained: [MQTT-3.3.2-4], [MQTT-3.3.2-15],
/// [MQTT-3.3.2-16], [MQTT-3.3.2-17], [MQTT-3.3.2-18], [MQTT-3.3.2-20] (5.0). A 3.1.1 subscriber
/// gets the same message without them.
#[test]
fn mqtt_3_3_2_17_properties_passed_through_to_v5_dropped_for_v311() {
    let mut w = World::default();
    let props = PublishProperties {
        payload_format_indicator: Some(PayloadFormat::Utf8),
        message_expiry_interval: Some(3600),
        response_topic: Some(ByteString::from("reply/here")),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![
            (ByteString::from("k"), ByteString::from("1")),
            (ByteString::from("a"), ByteString::from("2")),
            (ByteString::from("k"), ByteString::from("3")),
        ],
        content_type: Some(ByteString::from("text/plain")),
        ..PublishProperties::default()
    };
    let v5 = w.client(V5, "v5");
    w.subscribe(v5, "p", Q1);
    let ids = w.client(V5, "ids");
    w.send(ids, &subscribe_many(1, &[("p", opts(Q1))], Some(3)));
    w.recv(ids);
    let v3 = w.client(V3_1_1, "v3");
    w.subscribe(v3, "p", Q1);
    let publ = w.client(V5, "pub");
    let mut sent = as_publish(&publish_msg("p", b"hello", Q1, 1, true)).clone();
    sent.properties = props.clone();
    w.send(publ, &Packet::Publish(sent));
    assert_eq!(w.recv(publ), [puback(pid(1))]);
    assert_eq!(
        w.recv(v5),
        [msg_with("p", b"hello", q1(1), false, false, props.clone())]
    );
    let with_id = PublishProperties {
        subscription_identifiers: vec![3],
        ..props.clone()
    };
    assert_eq!(
        w.recv(ids),
        [msg_with("p", b"hello", q1(1), false, false, with_id)]
    );
    assert_eq!(w.recv(v3), [msg("p", b"hello", q1(1), false, false)]);
    // The retained copy keeps them.
    let late = w.client(V5, "late");
    w.send(late, &subscribe(1, "p", Q1));
    assert_eq!(
        w.recv(late),
        [
            suback(1, &[SubAckReason::GrantedQoS1]),
            msg_with("p", b"hello", q1(1), false, true, props),
        ]
    );
}

/// A message larger than an MQTT 5 subscriber's Maximum Packet Size is not sent to it, counted in
/// stats().dropped_too_large, and treated as delivered (it takes no slot of the window), while
/// other subscribers get it: [MQTT-3.1.2-27], [MQTT-3.1.2-28] (5.0).
#[test]
fn mqtt_3_1_2_27_message_larger_than_maximum_packet_size_not_sent() {
    let mut w = World::default();
    let mut c = connect(V5, "small");
    c.properties.maximum_packet_size = NonZeroU32::new(40);
    c.properties.receive_maximum = NonZeroU16::new(1);
    let (small, _) = w.connect(c);
    w.subscribe(small, "big/#", Q1);
    let big = w.client(V5, "big");
    w.subscribe(big, "big/#", Q1);
    let publ = w.client(V3_1_1, "pub");
    let large = [b'x'; 100];
    w.send(publ, &publish_msg("big/t", &large, Q1, 1, false));
    assert_eq!(w.recv(big), [msg("big/t", &large, q1(1), false, false)]);
    w.recv_none(small);
    assert_eq!(w.broker.stats().dropped_too_large, 1);
    w.send(publ, &publish_msg("big/t", b"tiny", Q1, 2, false));
    assert_eq!(w.recv(small), [msg("big/t", b"tiny", q1(1), false, false)]);
    assert_eq!(w.recv(big), [msg("big/t", b"tiny", q1(2), false, false)]);
    // The same for a retained message sent on subscribe.
    w.send(small, &puback(pid(1)));
    w.send(publ, &publish_msg("big/r", &large, Q0, 0, true));
    w.recv(big);
    w.send(small, &subscribe(2, "big/r", Q1));
    assert_eq!(w.recv(small), [suback(2, &[SubAckReason::GrantedQoS1])]);
    assert_eq!(w.broker.stats().dropped_too_large, 3);
}

// ---------------------------------------------------------------------------------------------
// Back-pressure
// ---------------------------------------------------------------------------------------------

/// While the driver reports a connection blocked, the broker hands it no Send at all; once
/// writable, everything pending arrives in order, replies included: the order of an ordered topic
/// survives back-pressure [MQTT-4.6.0-6] (3.1.1) [MQTT-4.6.0-5] (5.0).
#[test]
fn blocked_connection_gets_nothing_until_writable_then_all_in_order() {
    for version in [V3_1_1, V5] {
        let mut w = World::default();
        let sub = w.client(version, "sub");
        w.subscribe(sub, "bp", Q2);
        let publ = w.client(V5, "pub");
        w.blocked(sub);
        let before = sends_to(&w, sub);
        w.send(publ, &publish("bp", b"1", Q0, 0));
        w.send(publ, &publish("bp", b"2", Q1, 1));
        w.send(sub, &Packet::PingReq);
        w.send(publ, &publish("bp", b"3", Q2, 2));
        w.send(publ, &publish("bp", b"4", Q0, 0));
        assert_eq!(sends_to(&w, sub), before);
        w.recv_none(sub);
        w.writable(sub);
        assert_eq!(sends_to(&w, sub), before + 1);
        assert_eq!(
            w.recv(sub),
            [
                msg("bp", b"1", q0(), false, false),
                msg("bp", b"2", q1(1), false, false),
                Packet::PingResp,
                msg("bp", b"3", q2(2), false, false),
                msg("bp", b"4", q0(), false, false),
            ]
        );
        // Writable again: output flows at once.
        w.send(publ, &publish("bp", b"5", Q0, 0));
        assert_eq!(w.recv(sub), [msg("bp", b"5", q0(), false, false)]);
    }
}

/// QoS 0 messages that find more than max_connection_buffer bytes waiting for a blocked
/// connection are dropped and counted in stats().dropped_qos0_backlog, as QoS 0 promises at most
/// once delivery (3.1.1 and 5.0, 4.3.1); QoS 1 and 2 messages are kept, and what is delivered keeps
/// its order [MQTT-4.6.0-6] (3.1.1) [MQTT-4.6.0-5] (5.0).
#[test]
fn qos0_beyond_connection_buffer_dropped_while_blocked() {
    let mut w = World::new(config(|c| c.max_connection_buffer = 64));
    let sub = w.client(V3_1_1, "sub");
    w.subscribe(sub, "bp", Q1);
    let publ = w.client(V3_1_1, "pub");
    w.blocked(sub);
    // Each PUBLISH to the subscriber is 26 bytes: three fit below 64 bytes, the rest do not.
    let payloads: [&[u8; 20]; 5] = [
        b"aaaaaaaaaaaaaaaaaaa1",
        b"aaaaaaaaaaaaaaaaaaa2",
        b"aaaaaaaaaaaaaaaaaaa3",
        b"aaaaaaaaaaaaaaaaaaa4",
        b"aaaaaaaaaaaaaaaaaaa5",
    ];
    for p in payloads {
        w.send(publ, &publish_msg("bp", p, Q0, 0, false));
    }
    w.send(publ, &publish("bp", b"kept", Q1, 1));
    assert_eq!(w.broker.stats().dropped_qos0_backlog, 2);
    w.recv_none(sub);
    w.writable(sub);
    assert_eq!(
        w.recv(sub),
        [
            msg("bp", payloads[0], q0(), false, false),
            msg("bp", payloads[1], q0(), false, false),
            msg("bp", payloads[2], q0(), false, false),
            msg("bp", b"kept", q1(1), false, false),
        ]
    );
    w.send(publ, &publish_msg("bp", payloads[3], Q0, 0, false));
    assert_eq!(w.recv(sub), [msg("bp", payloads[3], q0(), false, false)]);
    assert_eq!(w.broker.stats().dropped_qos0_backlog, 2);
}

// ---------------------------------------------------------------------------------------------
// Resume within the new connection's limits, QoS 0 order and back-pressure
// ---------------------------------------------------------------------------------------------

/// A resumed session resends its messages in flight within the new connection's Receive
/// Maximum: [MQTT-4.4.0-1] with [MQTT-3.3.4-9] (5.0). The rest follow as acknowledgements free
/// the window, in their original order and with their original packet ids.
#[test]
fn mqtt_3_3_4_9_resume_respects_the_new_receive_maximum() {
    let mut w = World::new(config(|c| c.max_inflight_messages = 10));
    let (sub, _) = w.connect(persistent(V5, "sub"));
    w.subscribe(sub, "t", Q1);
    let publ = w.client(V3_1_1, "pub");
    for (i, payload) in [b"m1", b"m2", b"m3", b"m4", b"m5"].into_iter().enumerate() {
        w.send(publ, &publish("t", payload, Q1, i as u16 + 1));
    }
    assert_eq!(publishes(&w.recv(sub)).len(), 5);
    w.peer_close(sub);

    let mut again = persistent(V5, "sub");
    again.properties.receive_maximum = NonZeroU16::new(2);
    let (sub, ack, rest) = connect_resuming(&mut w, again);
    assert!(ack.session_present);
    assert_eq!(
        rest,
        [
            msg("t", b"m1", q1(1), true, false),
            msg("t", b"m2", q1(2), true, false)
        ]
    );
    w.send(sub, &puback(pid(1)));
    assert_eq!(w.recv(sub), [msg("t", b"m3", q1(3), true, false)]);
    w.send(sub, &puback(pid(2)));
    w.send(sub, &puback(pid(3)));
    assert_eq!(
        w.recv(sub),
        [
            msg("t", b"m4", q1(4), true, false),
            msg("t", b"m5", q1(5), true, false)
        ]
    );
}

/// A message in flight that is too large for the new connection's Maximum Packet Size is not
/// resent; it is dropped and counted [MQTT-3.1.2-27] (5.0).
#[test]
fn mqtt_3_1_2_27_resume_drops_messages_too_large_for_the_new_connection() {
    let mut w = World::default();
    let (sub, _) = w.connect(persistent(V5, "sub"));
    w.subscribe(sub, "t", Q1);
    let publ = w.client(V3_1_1, "pub");
    w.send(
        publ,
        &publish("t", b"a long payload that will not fit", Q1, 1),
    );
    w.send(publ, &publish("t", b"ok", Q1, 2));
    assert_eq!(publishes(&w.recv(sub)).len(), 2);
    w.peer_close(sub);

    let mut again = persistent(V5, "sub");
    again.properties.maximum_packet_size = NonZeroU32::new(16);
    let (_sub, _, rest) = connect_resuming(&mut w, again);
    assert_eq!(rest, [msg("t", b"ok", q1(2), true, false)]);
    assert_eq!(w.broker.stats().dropped_too_large, 1);
}

/// With QoS 0 queued for an offline session, a QoS 0 message arriving after the reconnect does
/// not overtake the queued ones: same topic and QoS keep their order [MQTT-4.6.0-6] (3.1.1)
/// [MQTT-4.6.0-5] (5.0).
#[test]
fn queued_qos0_keeps_its_order_ahead_of_new_qos0() {
    let mut w = World::new(config(|c| {
        c.queue_qos0_messages = true;
        c.max_inflight_messages = 1;
    }));
    let (sub, _) = w.connect(persistent(V3_1_1, "sub"));
    w.subscribe(sub, "t", Q1);
    w.peer_close(sub);
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish("t", b"m1", Q1, 1));
    w.send(publ, &publish("t", b"m2", Q1, 2));
    w.send(publ, &publish("t", b"z1", Q0, 0));

    let (sub, _, rest) = connect_resuming(&mut w, persistent(V3_1_1, "sub"));
    assert_eq!(rest, [msg("t", b"m1", q1(1), false, false)]);
    w.send(publ, &publish("t", b"z2", Q0, 0));
    w.recv_none(sub);
    w.send(sub, &puback(pid(1)));
    assert_eq!(
        w.recv(sub),
        [
            msg("t", b"m2", q1(2), false, false),
            msg("t", b"z1", q0(), false, false),
            msg("t", b"z2", q0(), false, false)
        ]
    );
}

/// Retained QoS 0 messages sent on subscribe are not lost to `max_connection_buffer`: the
/// limit applies to a connection the driver reports blocked, and even then retained messages
/// wait for the output to drain instead of being dropped [MQTT-3.3.1-6] (3.1.1).
#[test]
fn retained_qos0_on_subscribe_is_not_dropped_by_the_connection_buffer() {
    let mut w = World::new(config(|c| c.max_connection_buffer = 32));
    let publ = w.client(V3_1_1, "pub");
    let names = ["r/0", "r/1", "r/2", "r/3", "r/4", "r/5", "r/6", "r/7"];
    for topic in names {
        w.send(publ, &publish_retained(topic, b"retained payload", Q0, 0));
    }
    // Not blocked: every retained message arrives at once.
    let a = w.client(V3_1_1, "a");
    w.send(a, &subscribe(1, "r/#", Q0));
    let got = w.recv(a);
    assert_eq!(publishes(&got).len(), names.len(), "{got:?}");
    // Blocked: they wait and arrive when the connection drains.
    let b = w.client(V3_1_1, "b");
    w.blocked(b);
    w.send(b, &subscribe(1, "r/#", Q0));
    w.recv_none(b);
    let mut received = Vec::new();
    for _ in 0..names.len() + 1 {
        w.writable(b);
        received.extend(topics_and_acks(&mut w, b));
        w.blocked(b);
    }
    let expected: Vec<String> = std::iter::once("SUBACK".to_owned())
        .chain(names.iter().map(|t| t.to_string()))
        .collect();
    assert_eq!(received, expected);
    assert_eq!(w.broker.stats().dropped_qos0_backlog, 0);
}

/// Names what a connection received: topics of PUBLISH packets, "SUBACK" for SUBACKs.
fn topics_and_acks(w: &mut World, conn: ConnId) -> Vec<String> {
    w.recv(conn)
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => p.topic.to_string(),
            Packet::SubAck(_) => "SUBACK".to_owned(),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// `$SYS` belongs to the broker: a client's PUBLISH there is not routed (MQTT 5: PUBACK 0x87),
/// except a bridge's own connection state, as Mosquitto allows.
#[test]
fn clients_cannot_publish_to_sys() {
    let mut w = World::default();
    let sub = w.client(V5, "sub");
    w.subscribe(sub, "$SYS/#", Q1);
    let publ = w.client(V5, "pub");
    w.send(publ, &publish("$SYS/broker/uptime", b"forged", Q1, 1));
    assert_eq!(
        without_reason_strings(w.recv(publ)),
        [puback_with(1, PubAckReason::NotAuthorized)]
    );
    w.send(
        publ,
        &publish("$SYS/broker/connection/bridge-1/state", b"1", Q1, 2),
    );
    assert_eq!(w.recv(publ), [puback(pid(2))]);
    assert_eq!(
        topics(&mut w, sub),
        ["$SYS/broker/connection/bridge-1/state"]
    );
    assert_eq!(w.broker.stats().publish_denied, 1);
}

/// Mosquitto's message_size_limit: a larger payload is acknowledged and dropped; MQTT 5
/// publishers learn it from reason 0x83.
#[test]
fn message_size_limit_drops_larger_payloads() {
    let mut w = World::new(config(|c| c.message_size_limit = 4));
    let sub = w.client(V3_1_1, "sub");
    w.subscribe(sub, "t", Q1);
    let p5 = w.client(V5, "p5");
    w.send(p5, &publish("t", b"12345", Q1, 1));
    assert_eq!(
        without_reason_strings(w.recv(p5)),
        [puback_with(1, PubAckReason::ImplementationSpecificError)]
    );
    let p3 = w.client(V3_1_1, "p3");
    w.send(p3, &publish("t", b"12345", Q1, 1));
    assert_eq!(w.recv(p3), [puback(pid(1))]);
    w.send(p3, &publish("t", b"1234", Q1, 2));
    assert_eq!(w.recv(p3), [puback(pid(2))]);
    assert_eq!(topics(&mut w, sub), ["t"]);
    assert_eq!(w.broker.stats().publish_too_large, 2);
}
