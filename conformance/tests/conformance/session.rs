//! Session state over time: redelivery on session resume (4.4), the QoS flows' packet ids and
//! acknowledgement rules (4.3), Session Expiry (4.1), Message Expiry (3.3.2.3.3), will delay
//! (3.1.3.2.2) and the DISCONNECT the broker sends (3.14).

use crate::{addr, connect, connect_persistent, end_session, persistent};
use midge_conformance::client::{RawClient, V5, V311, connect_packet, pid, publish_packet};
use midge_conformance::names::Names;
use midge_core::codec::{
    Connect, Disconnect, DisconnectReason, LastWill, Packet, ProtocolVersion, PubAck, PubComp,
    PubRec, QoS, QosPid, WillProperties,
};
use std::collections::BTreeSet;
use std::time::Duration;

fn connect_with(connect: Connect) -> (RawClient, bool) {
    let (c, ack) = RawClient::connect_with(addr(), connect);
    (c, ack.session_present)
}

// ---------------------------------------------------------------------------------------------
// Redelivery on session resume
// ---------------------------------------------------------------------------------------------

/// Three QoS 1 and QoS 2 messages go out unacknowledged (one QoS 2 message is PUBREC'd): on
/// resume the PUBLISH packets come again with DUP 1, their packet ids, in their order, and
/// the PUBREL comes again for the PUBREC'd one, not its PUBLISH.
fn resend_on_resume(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let id = names.client_id("sub");
    let (mut sub, _) = connect_persistent(version, &id);
    sub.sub(&topic, QoS::ExactlyOnce);
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&topic, b"a", QoS::AtLeastOnce, false);
    publisher.publish(&topic, b"b", QoS::ExactlyOnce, false);
    publisher.publish(&topic, b"c", QoS::AtLeastOnce, false);
    publisher.publish(&topic, b"d", QoS::ExactlyOnce, false);
    let first: Vec<_> = (0..4).map(|_| sub.expect_publish()).collect();
    assert_eq!(
        first.iter().map(|p| &p.payload[..]).collect::<Vec<_>>(),
        [b"a", b"b", b"c", b"d"]
    );
    // PUBREC for "d": the broker then owes a PUBREL, never the PUBLISH again.
    let QosPid::ExactlyOnce(d_id) = first[3].qos_pid else {
        panic!("QoS 2 expected: {:?}", first[3]);
    };
    sub.send(&Packet::PubRec(PubRec::success(d_id)));
    sub.expect_pubrel(d_id);
    sub.drop_connection();

    let (mut sub, present) = connect_persistent(version, &id);
    assert!(present, "session not present");
    let again: Vec<_> = (0..3).map(|_| sub.expect_publish()).collect();
    for (old, new) in first[..3].iter().zip(&again) {
        assert_eq!(new.qos_pid, old.qos_pid, "packet id and QoS kept");
        assert_eq!(new.payload, old.payload, "resent in the original order");
        assert!(new.dup, "DUP 0 on a redelivery: {new:?}");
    }
    sub.expect_pubrel(d_id);
    sub.send(&Packet::PubComp(PubComp::success(d_id)));
    for p in &again {
        sub.acknowledge(p);
    }
    sub.expect_nothing();
    sub.disconnect();
    end_session(version, &id);
}

/// Covers [MQTT-3.3.1-1] (3.1.1) [MQTT-4.6.0-1] (3.1.1).
#[test]
fn mqtt_4_4_0_1_v311_unacknowledged_publish_and_pubrel_resent_on_resume() {
    resend_on_resume(V311);
}

/// Covers [MQTT-3.3.1-1] (5.0) [MQTT-4.3.2-3] (5.0) [MQTT-4.3.3-3] (5.0) [MQTT-4.3.3-5] (5.0)
/// Covers [MQTT-4.3.3-6] (5.0)
#[test]
fn mqtt_4_4_0_1_v5_unacknowledged_publish_and_pubrel_resent_on_resume() {
    resend_on_resume(V5);
}

/// A message the client refused with PUBACK 0x80 counts as acknowledged: not resent.
#[test]
fn mqtt_4_4_0_2_v5_publish_refused_by_the_client_is_not_resent() {
    let names = Names::new();
    let topic = names.topic("t");
    let id = names.client_id("sub");
    let (mut sub, _) = connect_persistent(V5, &id);
    sub.sub(&topic, QoS::AtLeastOnce);
    let mut publisher = connect(V5, &names.client_id("pub"));
    publisher.publish(&topic, b"a", QoS::AtLeastOnce, false);
    let p = sub.expect_publish();
    let QosPid::AtLeastOnce(packet_id) = p.qos_pid else {
        panic!("QoS 1 expected: {p:?}");
    };
    sub.send(&Packet::PubAck(crate::options::refusal(packet_id)));
    sub.ping();
    sub.drop_connection();
    let (mut sub, present) = connect_persistent(V5, &id);
    assert!(present);
    sub.expect_nothing();
    sub.disconnect();
    end_session(V5, &id);
}

/// Packet ids of QoS 1 and QoS 2 messages in flight together are non-zero and distinct.
fn server_packet_ids_unused(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = connect(version, &names.client_id("sub"));
    sub.sub(&topic, QoS::ExactlyOnce);
    let mut publisher = connect(version, &names.client_id("pub"));
    let n = 10;
    for i in 0..n {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        publisher.publish(&topic, &[i], qos, false);
    }
    let got: Vec<_> = (0..n).map(|_| sub.expect_publish()).collect();
    let ids: BTreeSet<u16> = got
        .iter()
        .map(|p| p.qos_pid.packet_id().expect("QoS > 0").get())
        .collect();
    assert_eq!(
        ids.len(),
        got.len(),
        "packet ids reused while in flight: {ids:?}"
    );
    for p in &got {
        sub.acknowledge(p);
    }
}

#[test]
fn mqtt_2_3_1_4_v311_server_packet_ids_are_unused_ones() {
    server_packet_ids_unused(V311);
}

/// Covers [MQTT-4.3.3-1] (5.0).
#[test]
fn mqtt_2_2_1_4_v5_server_packet_ids_are_unused_ones() {
    server_packet_ids_unused(V5);
}

/// After PUBACK (QoS 1) or PUBCOMP (QoS 2), the same packet id starts a new publication, DUP
/// or not; after PUBREC 0x80 (a refused QoS 2 message) too.
fn packet_id_reused_after_completion(qos: QoS) {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = connect(V5, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtMostOnce);
    let mut publisher = connect(V5, &names.client_id("pub"));
    let id = pid(42);
    for (n, payload) in [b"one", b"two"].iter().enumerate() {
        let mut p = publish_packet(&topic, *payload, qos, false, id);
        p.dup = n > 0;
        publisher.send(&Packet::Publish(p));
        match qos {
            QoS::AtLeastOnce => {
                publisher.expect_puback(id);
            }
            _ => {
                publisher.expect_pubrec(id);
                publisher.send(&Packet::PubRel(midge_core::codec::PubRel::success(id)));
                publisher.expect_pubcomp(id);
            }
        }
        assert_eq!(&sub.expect_publish().payload[..], *payload);
    }
}

#[test]
fn mqtt_4_3_2_5_v5_same_packet_id_after_puback_is_a_new_publication() {
    packet_id_reused_after_completion(QoS::AtLeastOnce);
}

#[test]
fn mqtt_4_3_3_12_v5_same_packet_id_after_pubcomp_is_a_new_publication() {
    packet_id_reused_after_completion(QoS::ExactlyOnce);
}

/// A QoS 2 PUBLISH refused with PUBREC 0x99 (payload not UTF-8 although said to be): the same
/// packet id with a valid payload is a new publication, delivered. (A broker that does not
/// check payload formats accepts the first PUBLISH and leaves nothing to check.)
#[test]
fn mqtt_4_3_3_9_v5_same_packet_id_after_pubrec_error_is_a_new_publication() {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = connect(V5, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtMostOnce);
    let mut publisher = connect(V5, &names.client_id("pub"));
    let id = pid(7);
    let mut p = publish_packet(&topic, &[0xC3, 0x28], QoS::ExactlyOnce, false, id);
    p.properties.payload_format_indicator = Some(midge_core::codec::PayloadFormat::Utf8);
    publisher.send(&Packet::Publish(p));
    let rec = publisher.expect_pubrec(id);
    if !rec.reason.is_error() {
        // A broker that does not check payload formats accepted it: no refusal to test.
        publisher.send(&Packet::PubRel(midge_core::codec::PubRel::success(id)));
        publisher.expect_pubcomp(id);
        return;
    }
    publisher.send(&Packet::Publish(publish_packet(
        &topic,
        b"fine",
        QoS::ExactlyOnce,
        false,
        id,
    )));
    let rec = publisher.expect_pubrec(id);
    assert!(!rec.reason.is_error(), "{rec:?}");
    publisher.send(&Packet::PubRel(midge_core::codec::PubRel::success(id)));
    publisher.expect_pubcomp(id);
    assert_eq!(&sub.expect_publish().payload[..], b"fine");
    sub.expect_nothing();
}

/// UNSUBSCRIBE while a QoS 1 and a QoS 2 message are in flight: both flows still complete.
fn unsubscribe_completes_deliveries(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = connect(version, &names.client_id("sub"));
    sub.sub(&topic, QoS::ExactlyOnce);
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&topic, b"1", QoS::AtLeastOnce, false);
    publisher.publish(&topic, b"2", QoS::ExactlyOnce, false);
    let one = sub.expect_publish();
    let two = sub.expect_publish();
    sub.unsubscribe(&[&topic]);
    let QosPid::ExactlyOnce(id) = two.qos_pid else {
        panic!("QoS 2 expected: {two:?}");
    };
    sub.send(&Packet::PubRec(PubRec::success(id)));
    sub.expect_pubrel(id);
    sub.send(&Packet::PubComp(PubComp::success(id)));
    if let QosPid::AtLeastOnce(id) = one.qos_pid {
        sub.send(&Packet::PubAck(PubAck::success(id)));
    }
    sub.ping();
    publisher.publish(&topic, b"3", QoS::AtLeastOnce, false);
    sub.expect_nothing();
}

#[test]
fn mqtt_3_10_4_3_v311_unsubscribe_completes_deliveries_in_flight() {
    unsubscribe_completes_deliveries(V311);
}

#[test]
fn mqtt_3_10_4_3_v5_unsubscribe_completes_deliveries_in_flight() {
    unsubscribe_completes_deliveries(V5);
}

// ---------------------------------------------------------------------------------------------
// Session Expiry
// ---------------------------------------------------------------------------------------------

/// A session with Session Expiry 1 s survives while connected well past 1 s; after the
/// connection closes it is gone within about 1 s.
/// Covers [MQTT-4.1.0-1] (5.0).
#[test]
fn mqtt_4_1_0_2_v5_session_discarded_after_its_expiry_interval() {
    let names = Names::new();
    let topic = names.topic("t");
    let id = names.client_id("sub");
    let mut c = persistent(V5, &id);
    c.properties.session_expiry_interval = Some(1);
    let (mut sub, _) = connect_with(c.clone());
    sub.sub(&topic, QoS::AtLeastOnce);
    std::thread::sleep(Duration::from_millis(1500));
    let mut publisher = connect(V5, &names.client_id("pub"));
    publisher.publish(&topic, b"still", QoS::AtLeastOnce, false);
    assert_eq!(&sub.recv_publish().payload[..], b"still");
    sub.drop_connection();
    std::thread::sleep(Duration::from_millis(2200));
    let (c, present) = connect_with(c);
    assert!(!present, "session outlived its expiry interval");
    c.disconnect();
    end_session(V5, &id);
}

/// A 3.1.1 clean session lasts as long as its connection: its subscription still delivers
/// after a while.
#[test]
fn mqtt_4_1_0_2_v311_session_lasts_while_connected() {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = connect(V311, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtLeastOnce);
    std::thread::sleep(Duration::from_millis(1200));
    let mut publisher = connect(V311, &names.client_id("pub"));
    publisher.publish(&topic, b"still", QoS::AtLeastOnce, false);
    assert_eq!(&sub.recv_publish().payload[..], b"still");
}

/// A session kept for 60 s at CONNECT is discarded at once when the DISCONNECT sets its Session
/// Expiry Interval to 0.
#[test]
fn mqtt_3_1_2_4_v5_disconnect_with_session_expiry_0_ends_the_session() {
    let names = Names::new();
    let id = names.client_id("a");
    let (mut c, _) = connect_persistent(V5, &id);
    c.sub(&names.topic("t"), QoS::AtLeastOnce);
    let mut d = Disconnect::new(DisconnectReason::NormalDisconnection);
    d.properties.session_expiry_interval = Some(0);
    c.send(&Packet::Disconnect(d));
    c.expect_closed();
    let (c, present) = connect_persistent(V5, &id);
    assert!(
        !present,
        "session kept after DISCONNECT set its expiry to 0"
    );
    c.disconnect();
    end_session(V5, &id);
}

/// Retained messages are not session state: they outlive the session that published them.
#[test]
fn mqtt_3_1_2_7_v311_retained_messages_outlive_the_session() {
    let names = Names::new();
    let topic = names.topic("r");
    let mut publisher = connect(V311, &names.client_id("pub"));
    publisher.publish(&topic, b"kept", QoS::AtLeastOnce, true);
    publisher.disconnect();
    let mut sub = connect(V311, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtMostOnce);
    let p = sub.expect_publish();
    assert!(p.retain && &p.payload[..] == b"kept", "{p:?}");
    sub.publish(&topic, b"", QoS::AtMostOnce, true);
}

// ---------------------------------------------------------------------------------------------
// Message Expiry
// ---------------------------------------------------------------------------------------------

/// Two messages queued for a disconnected subscriber, one with Message Expiry 1 s and one with
/// 60 s. After 2 s the first is gone and the second comes with its remaining interval.
/// Covers [MQTT-3.3.2-6] (5.0).
#[test]
fn mqtt_3_3_2_5_v5_expired_queued_messages_are_deleted() {
    let names = Names::new();
    let topic = names.topic("t");
    let id = names.client_id("sub");
    let (mut sub, _) = connect_persistent(V5, &id);
    sub.sub(&topic, QoS::AtLeastOnce);
    sub.disconnect();
    let mut publisher = connect(V5, &names.client_id("pub"));
    for (payload, expiry) in [(b"short", 1), (b"long!", 60)] {
        let mut p = publish_packet(
            &topic,
            payload,
            QoS::AtLeastOnce,
            false,
            publisher.packet_id(),
        );
        p.properties.message_expiry_interval = Some(expiry);
        publisher.send(&Packet::Publish(p));
    }
    publisher.ping();
    std::thread::sleep(Duration::from_millis(2100));
    let (mut sub, present) = connect_persistent(V5, &id);
    assert!(present);
    let p = sub.recv_publish();
    assert_eq!(
        &p.payload[..],
        b"long!",
        "the expired message was delivered"
    );
    let left = p
        .properties
        .message_expiry_interval
        .expect("Message Expiry Interval forwarded");
    assert!(
        (55..=58).contains(&left),
        "remaining interval {left} after 2 s of 60"
    );
    sub.expect_nothing();
    sub.disconnect();
    end_session(V5, &id);
}

/// A QoS 2 message with Message Expiry 1 s already sent to the subscriber is resent after it
/// expired: expiry applies only before sending.
#[test]
fn mqtt_4_3_3_7_v5_sent_qos2_message_is_not_expired() {
    let names = Names::new();
    let topic = names.topic("t");
    let id = names.client_id("sub");
    let (mut sub, _) = connect_persistent(V5, &id);
    sub.sub(&topic, QoS::ExactlyOnce);
    let mut publisher = connect(V5, &names.client_id("pub"));
    let mut p = publish_packet(&topic, b"x", QoS::ExactlyOnce, false, publisher.packet_id());
    p.properties.message_expiry_interval = Some(1);
    publisher.send(&Packet::Publish(p));
    let first = sub.expect_publish();
    sub.drop_connection();
    std::thread::sleep(Duration::from_millis(2100));
    let (mut sub, present) = connect_persistent(V5, &id);
    assert!(present);
    let again = sub.expect_publish();
    assert_eq!(again.qos_pid, first.qos_pid);
    assert!(again.dup);
    sub.acknowledge(&again);
    sub.disconnect();
    end_session(V5, &id);
}

/// The broker as QoS 2 receiver completes the flow for a message whose expiry has passed.
#[test]
fn mqtt_4_3_3_13_v5_qos2_flow_completes_after_expiry() {
    let names = Names::new();
    let mut c = connect(V5, &names.client_id("a"));
    let id = pid(3);
    let mut p = publish_packet(&names.topic("t"), b"x", QoS::ExactlyOnce, false, id);
    p.properties.message_expiry_interval = Some(1);
    c.send(&Packet::Publish(p));
    c.expect_pubrec(id);
    std::thread::sleep(Duration::from_millis(2100));
    c.send(&Packet::PubRel(midge_core::codec::PubRel::success(id)));
    let comp = c.expect_pubcomp(id);
    assert!(!comp.reason.is_error(), "{comp:?}");
}

// ---------------------------------------------------------------------------------------------
// Wills
// ---------------------------------------------------------------------------------------------

/// A connection without a will ends without DISCONNECT: nothing is published.
fn no_will_no_message(version: ProtocolVersion) {
    let names = Names::new();
    let mut watcher = connect(version, &names.client_id("w"));
    watcher.sub("#", QoS::AtMostOnce);
    let c = connect(version, &names.client_id("a"));
    c.drop_connection();
    // Other tests publish meanwhile; only a message about this client would be a will.
    let deadline = std::time::Instant::now() + midge_conformance::client::QUIET * 2;
    while std::time::Instant::now() < deadline {
        if let Ok(Packet::Publish(p)) = watcher.try_recv(midge_conformance::client::QUIET) {
            assert!(
                !p.topic.contains(&names.root()),
                "a message for a client without a will: {p:?}"
            );
        }
    }
}

#[test]
fn mqtt_3_1_2_12_v311_no_will_flag_no_will_message() {
    no_will_no_message(V311);
}

#[test]
fn mqtt_3_1_2_12_v5_no_will_flag_no_will_message() {
    no_will_no_message(V5);
}

/// A will with Will Delay 1 s: the client reconnects to its session before the delay passes,
/// and the will is never published.
#[test]
fn mqtt_3_1_2_26_v5_reconnect_within_the_will_delay_suppresses_the_will() {
    let names = Names::new();
    let topic = names.topic("will");
    let id = names.client_id("a");
    let mut watcher = connect(V5, &names.client_id("w"));
    watcher.sub(&topic, QoS::AtMostOnce);
    let mut c = persistent(V5, &id);
    c.will = Some(LastWill {
        topic: topic.as_str().into(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(1),
            ..WillProperties::default()
        },
    });
    let (first, _) = connect_with(c);
    first.drop_connection();
    let (again, present) = connect_persistent(V5, &id);
    assert!(present);
    std::thread::sleep(Duration::from_millis(1600));
    watcher.expect_nothing();
    again.disconnect();
    end_session(V5, &id);
}

// ---------------------------------------------------------------------------------------------
// DISCONNECT from the broker
// ---------------------------------------------------------------------------------------------

/// A session taken over: the old connection is closed, after at most a DISCONNECT 0x8E (a
/// DISCONNECT reason code) without a Session Expiry Interval and nothing after it.
/// Covers [MQTT-3.14.2-2] (5.0) [MQTT-3.14.4-1] (5.0) [MQTT-3.14.4-2] (5.0) [MQTT-4.13.2-1] (5.0)
#[test]
fn mqtt_3_14_2_1_v5_server_disconnect_uses_a_disconnect_reason_and_closes() {
    let names = Names::new();
    let id = names.client_id("a");
    let mut old = connect(V5, &id);
    let new = connect(V5, &id);
    match old.expect_closed().as_slice() {
        // Closing without DISCONNECT is allowed too; then there is no packet to check.
        [] => {}
        [Packet::Disconnect(d)] => {
            assert_eq!(d.reason, DisconnectReason::SessionTakenOver);
            assert_eq!(d.properties.session_expiry_interval, None, "{d:?}");
        }
        other => panic!("expected closure after at most one DISCONNECT, got {other:?}"),
    }
    new.disconnect();
}

/// A refused CONNECT (unsupported authentication method) for a client id with a stored
/// session: CONNACK 0x8C with Session Present 0, then closure.
/// Covers [MQTT-3.2.2-7] (5.0) [MQTT-3.2.2-8] (5.0) [MQTT-4.12.0-1] (5.0)
#[test]
fn mqtt_3_2_2_6_v5_refusing_connack_has_session_present_0_and_closes() {
    let names = Names::new();
    let id = names.client_id("a");
    let (c, _) = connect_persistent(V5, &id);
    c.disconnect();
    let mut refused = persistent(V5, &id);
    refused.properties.authentication_method = Some("NO-SUCH-METHOD".into());
    let mut c = RawClient::open(addr(), V5);
    c.send(&Packet::from(refused));
    match c.expect_closed().as_slice() {
        [] => {}
        [Packet::ConnAck(ack)] => {
            assert!(ack.reason.is_error(), "{ack:?}");
            assert!(
                !ack.session_present,
                "Session Present with a refusal: {ack:?}"
            );
            assert!(
                matches!(
                    ack.reason,
                    midge_core::codec::ConnectReason::BadAuthenticationMethod
                        | midge_core::codec::ConnectReason::NotAuthorized
                ),
                "{ack:?}"
            );
        }
        other => panic!("expected CONNACK 0x8C then closure, got {other:?}"),
    }
    end_session(V5, &id);
}

/// The CONNACK's reserved flag bits (7 to 1) are 0.
fn connack_reserved_bits(version: ProtocolVersion) {
    use std::io::{Read, Write};
    let names = Names::new();
    let mut s = std::net::TcpStream::connect(addr()).expect("connect");
    s.set_read_timeout(Some(midge_conformance::client::WAIT))
        .expect("timeout");
    s.write_all(&midge_conformance::client::encode(
        &Packet::from(connect_packet(version, &names.client_id("a"))),
        version,
    ))
    .expect("write");
    let mut head = [0u8; 3];
    s.read_exact(&mut head).expect("CONNACK");
    assert_eq!(head[0], 0x20, "CONNACK type");
    assert_eq!(
        head[2] & 0xFE,
        0,
        "reserved acknowledge flags set: {head:?}"
    );
}

#[test]
fn mqtt_3_2_2_1_v5_connack_reserved_flags_are_0() {
    connack_reserved_bits(V5);
}
