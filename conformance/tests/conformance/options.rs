//! MQTT 5 subscription options (3.8.3.1: No Local, Retain As Published, Retain Handling),
//! Subscription Identifiers (3.3.4) and shared subscriptions (4.8.2).

use crate::connect;
use midge_conformance::client::{RawClient, V5, encode, publish_packet};
use midge_conformance::names::Names;
use midge_core::codec::{
    AckProperties, DisconnectReason, Packet, PubAckReason, PubResponse, PublishProperties, QoS,
    QosPid, RetainHandling, SubAckReason, SubscribeProperties, SubscriptionOptions,
};

fn options(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions::new(qos)
}

// ---------------------------------------------------------------------------------------------
// No Local, Retain As Published, Retain Handling
// ---------------------------------------------------------------------------------------------

/// With No Local a client's own messages are not sent back to it; others' still are.
#[test]
fn mqtt_3_8_3_3_v5_no_local_suppresses_own_messages() {
    let names = Names::new();
    let topic = names.topic("t");
    let mut me = connect(V5, &names.client_id("me"));
    let ack = me.subscribe_many(&[(
        &topic,
        SubscriptionOptions {
            no_local: true,
            ..options(QoS::AtMostOnce)
        },
    )]);
    assert_eq!(ack.reasons, [SubAckReason::GrantedQoS0]);
    me.publish(&topic, b"mine", QoS::AtMostOnce, false);
    me.expect_nothing();
    let mut other = connect(V5, &names.client_id("other"));
    other.publish(&topic, b"theirs", QoS::AtMostOnce, false);
    assert_eq!(&me.expect_publish().payload[..], b"theirs");
}

/// No Local on a shared subscription is a Protocol Error: DISCONNECT 0x82 and closure.
#[test]
fn mqtt_3_8_3_4_v5_no_local_on_a_shared_subscription_is_a_protocol_error() {
    let names = Names::new();
    let mut c = connect(V5, &names.client_id("a"));
    let filter = format!("$share/g/{}", names.topic("t"));
    let mut sub = midge_core::codec::Subscribe {
        packet_id: c.packet_id(),
        properties: SubscribeProperties::default(),
        subscriptions: vec![midge_core::codec::Subscription {
            filter: filter.as_str().into(),
            options: SubscriptionOptions {
                no_local: true,
                ..options(QoS::AtMostOnce)
            },
        }],
    };
    sub.subscriptions[0].options.no_local = true;
    c.send(&Packet::Subscribe(sub));
    c.expect_disconnect(&[DisconnectReason::ProtocolError]);
}

/// Reserved bits 6 and 7 of the subscription options make the SUBSCRIBE malformed.
#[test]
fn mqtt_3_8_3_5_v5_reserved_subscription_option_bits_are_malformed() {
    let names = Names::new();
    let mut c = connect(V5, &names.client_id("a"));
    let mut bytes = encode(
        &crate::subscribe::subscribe_packet(&names.topic("t"), QoS::AtMostOnce),
        V5,
    );
    // The options byte is the packet's last.
    *bytes.last_mut().expect("options byte") |= 0x80;
    let _ = c.send_raw(&bytes);
    c.expect_disconnect(&[DisconnectReason::MalformedPacket]);
}

/// A retained message delivered through a subscription with Retain As Published keeps its
/// RETAIN flag on a live publication; without the option it is cleared.
#[test]
fn mqtt_3_3_1_13_v5_retain_as_published_keeps_the_retain_flag() {
    let names = Names::new();
    let (kept, cleared) = (names.topic("kept"), names.topic("cleared"));
    let mut sub = connect(V5, &names.client_id("sub"));
    sub.subscribe_many(&[
        (
            &kept,
            SubscriptionOptions {
                retain_as_published: true,
                ..options(QoS::AtMostOnce)
            },
        ),
        (&cleared, options(QoS::AtMostOnce)),
    ]);
    let mut publisher = connect(V5, &names.client_id("pub"));
    publisher.publish(&kept, b"k", QoS::AtMostOnce, true);
    let p = sub.expect_publish();
    assert_eq!(&p.payload[..], b"k");
    assert!(p.retain, "RETAIN cleared despite Retain As Published");
    publisher.publish(&cleared, b"c", QoS::AtMostOnce, true);
    let p = sub.expect_publish();
    assert_eq!(&p.payload[..], b"c");
    assert!(!p.retain, "RETAIN kept without Retain As Published");
    // Clean up the retained messages.
    publisher.publish(&kept, b"", QoS::AtMostOnce, true);
    publisher.publish(&cleared, b"", QoS::AtMostOnce, true);
}

/// Publishes a retained message on a topic of its own and returns (topic, publisher).
fn retained(names: &Names) -> (String, RawClient) {
    let topic = names.topic("r");
    let mut publisher = connect(V5, &names.client_id("pub"));
    publisher.publish(&topic, b"kept", QoS::AtLeastOnce, true);
    (topic, publisher)
}

fn subscribe_handling(c: &mut RawClient, topic: &str, handling: RetainHandling) {
    let ack = c.subscribe_many(&[(
        topic,
        SubscriptionOptions {
            retain_handling: handling,
            ..options(QoS::AtMostOnce)
        },
    )]);
    assert_eq!(ack.reasons, [SubAckReason::GrantedQoS0]);
}

/// Retain Handling 0: retained messages on every SUBSCRIBE, a repeated one included, and the
/// replaced subscription loses no publication.
#[test]
fn mqtt_3_8_4_4_v5_retain_handling_0_resends_retained_on_resubscribe() {
    let names = Names::new();
    let (topic, mut publisher) = retained(&names);
    let mut sub = connect(V5, &names.client_id("sub"));
    for _ in 0..2 {
        subscribe_handling(&mut sub, &topic, RetainHandling::OnSubscribe);
        let p = sub.expect_publish();
        assert!(p.retain && &p.payload[..] == b"kept", "{p:?}");
    }
    publisher.publish(&topic, b"live", QoS::AtMostOnce, false);
    assert_eq!(&sub.expect_publish().payload[..], b"live");
    publisher.publish(&topic, b"", QoS::AtMostOnce, true);
}

/// Retain Handling 1: retained messages only when the subscription is new.
#[test]
fn mqtt_3_3_1_10_v5_retain_handling_1_sends_retained_only_to_new_subscriptions() {
    let names = Names::new();
    let (topic, mut publisher) = retained(&names);
    let mut sub = connect(V5, &names.client_id("sub"));
    subscribe_handling(&mut sub, &topic, RetainHandling::OnNewSubscribe);
    let p = sub.expect_publish();
    assert!(p.retain && &p.payload[..] == b"kept", "{p:?}");
    subscribe_handling(&mut sub, &topic, RetainHandling::OnNewSubscribe);
    sub.expect_nothing();
    publisher.publish(&topic, b"", QoS::AtMostOnce, true);
}

/// Retain Handling 2: no retained messages at the time of the SUBSCRIBE.
#[test]
fn mqtt_3_3_1_11_v5_retain_handling_2_sends_no_retained() {
    let names = Names::new();
    let (topic, mut publisher) = retained(&names);
    let mut sub = connect(V5, &names.client_id("sub"));
    subscribe_handling(&mut sub, &topic, RetainHandling::Never);
    sub.expect_nothing();
    publisher.publish(&topic, b"live", QoS::AtMostOnce, false);
    assert_eq!(&sub.expect_publish().payload[..], b"live");
    publisher.publish(&topic, b"", QoS::AtMostOnce, true);
}

// ---------------------------------------------------------------------------------------------
// Subscription Identifiers
// ---------------------------------------------------------------------------------------------

fn subscribe_id(c: &mut RawClient, filter: &str, id: Option<u32>) {
    let ack = c.subscribe_with(
        SubscribeProperties {
            subscription_identifier: id,
            ..SubscribeProperties::default()
        },
        &[(filter, options(QoS::AtMostOnce))],
    );
    assert_eq!(
        ack.reasons,
        [SubAckReason::GrantedQoS0],
        "SUBACK for {filter}"
    );
}

/// Overlapping subscriptions with identifiers 7 and 300 (and one without): the identifiers of
/// the matching subscriptions arrive with the message, in one PUBLISH or one each.
/// Covers [MQTT-3.3.4-4] (5.0) [MQTT-3.3.4-5] (5.0).
#[test]
fn mqtt_3_3_4_3_v5_subscription_identifiers_of_overlapping_subscriptions_are_sent() {
    let names = Names::new();
    let topic = names.topic("a/b");
    let mut sub = connect(V5, &names.client_id("sub"));
    subscribe_id(&mut sub, &format!("{}/+/b", names.root()), Some(7));
    subscribe_id(&mut sub, &format!("{}/#", names.root()), Some(300));
    subscribe_id(&mut sub, &topic, None);
    let mut publisher = connect(V5, &names.client_id("pub"));
    publisher.publish(&topic, b"x", QoS::AtMostOnce, false);
    let first = sub.expect_publish();
    let mut ids = first.properties.subscription_identifiers.clone();
    if ids.len() < 2 {
        // One copy per subscription: three PUBLISH packets, each with at most its own id.
        let second = sub.expect_publish();
        let third = sub.expect_publish();
        for p in [&first, &second, &third] {
            assert!(
                p.properties.subscription_identifiers.len() <= 1,
                "a copy for one subscription carries another's identifier: {p:?}"
            );
        }
        ids.extend(&second.properties.subscription_identifiers);
        ids.extend(&third.properties.subscription_identifiers);
    }
    ids.sort_unstable();
    assert_eq!(ids, [7, 300], "subscription identifiers");
    sub.expect_nothing();
}

/// A PUBLISH from a client carrying a Subscription Identifier is a Protocol Error.
#[test]
fn mqtt_3_3_4_6_v5_client_publish_with_subscription_identifier_is_a_protocol_error() {
    let names = Names::new();
    let mut c = connect(V5, &names.client_id("a"));
    let mut p = publish_packet(
        &names.topic("t"),
        b"x",
        QoS::AtMostOnce,
        false,
        c.packet_id(),
    );
    p.properties = PublishProperties {
        subscription_identifiers: vec![5],
        ..PublishProperties::default()
    };
    c.send(&Packet::Publish(p));
    c.expect_disconnect(&[
        DisconnectReason::ProtocolError,
        DisconnectReason::MalformedPacket,
    ]);
}

// ---------------------------------------------------------------------------------------------
// Shared subscriptions
// ---------------------------------------------------------------------------------------------

fn share(group: &str, filter: &str) -> String {
    format!("$share/{group}/{filter}")
}

/// Filters that are not shared subscriptions although they start with `$share/`: no share
/// name, a share name with a wildcard, no filter after it. Each is refused: SUBACK 0x8F, or the
/// connection closed (after at most DISCONNECT 0x81 or 0x82) as for a malformed filter. A
/// well-formed one is granted.
/// Covers [MQTT-4.8.2-2] (5.0).
#[test]
fn mqtt_4_8_2_1_v5_shared_filter_needs_a_share_name_and_a_filter() {
    let names = Names::new();
    let topic = names.topic("t");
    let mut c = connect(V5, &names.client_id("a"));
    let ack = c.subscribe_many(&[(&share("g", &topic), options(QoS::AtMostOnce))]);
    assert_eq!(ack.reasons, [SubAckReason::GrantedQoS0]);
    for (i, bad) in [
        format!("$share//{topic}"),
        format!("$share/g+/{topic}"),
        format!("$share/g#/{topic}"),
        "$share/g".to_owned(),
        "$share/g/".to_owned(),
    ]
    .iter()
    .enumerate()
    {
        let mut c = connect(V5, &names.client_id(&format!("b{i}")));
        c.send(&crate::subscribe::subscribe_packet(bad, QoS::AtMostOnce));
        match c.try_recv(midge_conformance::client::WAIT) {
            Ok(Packet::SubAck(ack)) => assert_eq!(
                ack.reasons,
                [SubAckReason::TopicFilterInvalid],
                "SUBACK for {bad}"
            ),
            Ok(Packet::Disconnect(d)) => {
                assert!(
                    matches!(
                        d.reason,
                        DisconnectReason::MalformedPacket | DisconnectReason::ProtocolError
                    ),
                    "DISCONNECT for {bad}: {d:?}"
                );
                c.expect_closed();
            }
            Err(midge_conformance::client::RecvError::Closed) => {}
            other => panic!("{bad} neither refused nor closed: {other:?}"),
        }
    }
}

/// Two members of a group: each message goes to one of them, at the member's granted QoS (0
/// here, for messages published at QoS 1).
/// Covers [MQTT-4.8.2-3] (5.0).
#[test]
fn mqtt_4_8_2_3_v5_shared_subscription_delivers_once_at_the_granted_qos() {
    let names = Names::new();
    let topic = names.topic("t");
    let filter = share("g", &topic);
    let mut members = [
        connect(V5, &names.client_id("m1")),
        connect(V5, &names.client_id("m2")),
    ];
    for m in &mut members {
        m.sub(&filter, QoS::AtMostOnce);
    }
    let mut publisher = connect(V5, &names.client_id("pub"));
    const N: usize = 10;
    for i in 0..N {
        publisher.publish(&topic, format!("{i}").as_bytes(), QoS::AtLeastOnce, false);
    }
    let mut got: Vec<String> = Vec::new();
    for m in &mut members {
        while let Ok(Packet::Publish(p)) = m.try_recv(midge_conformance::client::QUIET) {
            assert_eq!(p.qos_pid, QosPid::AtMostOnce, "granted QoS 0 not respected");
            got.push(String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    got.sort_by_key(|s| s.parse::<usize>().unwrap_or(usize::MAX));
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(got, want, "each message to exactly one member");
}

/// PUBACK or PUBREC 0x80 (Unspecified error).
pub fn refusal(packet_id: midge_core::codec::PacketId) -> PubResponse<PubAckReason> {
    PubResponse {
        packet_id,
        reason: PubAckReason::UnspecifiedError,
        properties: AckProperties::default(),
    }
}

/// A shared message refused by its member with PUBACK/PUBREC 0x80 is discarded, not sent to
/// another member.
fn shared_refusal(qos: QoS) {
    let names = Names::new();
    let topic = names.topic("t");
    let filter = share("g", &topic);
    let mut members = [
        connect(V5, &names.client_id("m1")),
        connect(V5, &names.client_id("m2")),
    ];
    for m in &mut members {
        m.sub(&filter, qos);
    }
    let mut publisher = connect(V5, &names.client_id("pub"));
    publisher.publish(&topic, b"no", qos, false);
    // The member that got it refuses it; the other must get nothing.
    let mut refused = false;
    for m in &mut members {
        match m.try_recv(midge_conformance::client::QUIET) {
            Ok(Packet::Publish(p)) => {
                assert!(!refused, "the message went to both members");
                refused = true;
                match p.qos_pid {
                    QosPid::AtLeastOnce(id) => m.send(&Packet::PubAck(refusal(id))),
                    QosPid::ExactlyOnce(id) => m.send(&Packet::PubRec(refusal(id))),
                    QosPid::AtMostOnce => panic!("granted QoS not respected: {p:?}"),
                }
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => {}
        }
    }
    assert!(refused, "no member got the message");
    for m in &mut members {
        m.expect_nothing();
    }
}

#[test]
fn mqtt_4_8_2_6_v5_shared_message_refused_with_puback_0x80_is_discarded() {
    shared_refusal(QoS::AtLeastOnce);
}

#[test]
fn mqtt_4_8_2_6_v5_shared_message_refused_with_pubrec_0x80_is_discarded() {
    shared_refusal(QoS::ExactlyOnce);
}

/// A QoS 2 shared message in flight to a member whose session ends (Session Expiry 0,
/// connection dropped) is not sent to another member.
#[test]
fn mqtt_4_8_2_5_v5_shared_qos2_message_of_an_ended_session_goes_to_no_other_member() {
    let names = Names::new();
    let topic = names.topic("t");
    let filter = share("g", &topic);
    let mut members = vec![
        connect(V5, &names.client_id("m1")),
        connect(V5, &names.client_id("m2")),
    ];
    for m in &mut members {
        m.sub(&filter, QoS::ExactlyOnce);
    }
    let mut publisher = connect(V5, &names.client_id("pub"));
    publisher.publish(&topic, b"x", QoS::ExactlyOnce, false);
    let holder = members
        .iter_mut()
        .position(|m| {
            matches!(
                m.try_recv(midge_conformance::client::QUIET),
                Ok(Packet::Publish(_))
            )
        })
        .expect("no member got the message");
    members.remove(holder).drop_connection();
    members[0].expect_nothing();
}

/// A QoS 2 shared message in flight to a member with a persistent session is completed when
/// it reconnects.
#[test]
fn mqtt_4_8_2_4_v5_shared_qos2_message_is_completed_when_the_member_reconnects() {
    let names = Names::new();
    let topic = names.topic("t");
    let id = names.client_id("m");
    let (mut member, _) = crate::connect_persistent(V5, &id);
    member.sub(&share("g", &topic), QoS::ExactlyOnce);
    let mut publisher = connect(V5, &names.client_id("pub"));
    publisher.publish(&topic, b"x", QoS::ExactlyOnce, false);
    let first = member.expect_publish();
    member.drop_connection();
    let (mut member, present) = crate::connect_persistent(V5, &id);
    assert!(present, "session not present");
    let again = member.expect_publish();
    assert_eq!(again.qos_pid, first.qos_pid, "resent with its packet id");
    assert!(again.dup, "resent without DUP");
    assert_eq!(&again.payload[..], b"x");
    member.acknowledge(&again);
    member.disconnect();
    crate::end_session(V5, &id);
}
