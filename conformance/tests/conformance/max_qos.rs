//! A server that does not support QoS 2, or neither QoS 1 nor 2 (5.0, 3.2.2.3.4): what it tells
//! MQTT 5 clients, how it grants subscriptions, and how it refuses a will or a PUBLISH above its
//! maximum, in both versions. Each test starts a midge daemon of its own whose first listener
//! has `max_qos 1`, second `max_qos 0` and third no limit (Mosquitto's per-listener option);
//! against a broker given by address they check nothing, since the suite cannot choose its
//! configuration.

use bytes::Bytes;
use midge_conformance::client::{RawClient, V5, V311, connect_packet};
use midge_conformance::names::Names;
use midge_conformance::target::{Target, configured_midge};
use midge_core::codec::{
    Connect, ConnectReason, DisconnectReason, LastWill, Packet, ProtocolVersion, QoS, QosPid,
    SubAckReason, SubscriptionOptions, WillProperties,
};
use std::net::SocketAddr;

/// The daemon's listeners: at most QoS 1, only QoS 0, no limit.
struct Listeners {
    _broker: Target,
    qos1: SocketAddr,
    qos0: SocketAddr,
    full: SocketAddr,
}

fn limited_midge() -> Option<Listeners> {
    let broker = configured_midge(
        env!("CARGO_BIN_EXE_midge-under-test"),
        "max_qos 1\nlistener 0 127.0.0.1\nmax_qos 0\nlistener 0 127.0.0.1",
        &[],
    )?;
    Some(Listeners {
        qos1: broker.listener_addr(0),
        qos0: broker.listener_addr(1),
        full: broker.listener_addr(2),
        _broker: broker,
    })
}

fn with_will(version: ProtocolVersion, client_id: &str, topic: &str, qos: QoS) -> Connect {
    let mut c = connect_packet(version, client_id);
    c.will = Some(LastWill {
        topic: topic.into(),
        payload: Bytes::from_static(b"gone"),
        qos,
        retain: false,
        properties: WillProperties::default(),
    });
    c
}

/// MQTT 5 clients are told the listener's Maximum QoS; the listener without a limit sends none.
#[test]
fn mqtt_3_2_2_9_v5_limited_server_sends_its_maximum_qos() {
    let Some(l) = limited_midge() else {
        return;
    };
    let names = Names::new();
    for (addr, expected) in [
        (l.qos1, Some(QoS::AtLeastOnce)),
        (l.qos0, Some(QoS::AtMostOnce)),
        (l.full, None),
    ] {
        let (c, ack) = RawClient::connect_with(addr, connect_packet(V5, &names.client_id("c")));
        assert_eq!(ack.properties.maximum_qos, expected, "{ack:?}");
        c.disconnect();
    }
}

/// SUBSCRIBE at QoS 0, 1 and 2 is accepted; each grant is at most the Maximum QoS, and a QoS 2
/// message from a client of the unlimited listener arrives at the granted QoS.
#[test]
fn mqtt_3_2_2_10_v5_limited_server_accepts_subscribe_at_every_qos() {
    let Some(l) = limited_midge() else {
        return;
    };
    let names = Names::new();
    let topics = [names.topic("q0"), names.topic("q1"), names.topic("q2")];
    for (addr, max) in [(l.qos1, QoS::AtLeastOnce), (l.qos0, QoS::AtMostOnce)] {
        let (mut c, ack) =
            RawClient::connect_with(addr, connect_packet(V5, &names.client_id("sub")));
        assert_eq!(ack.properties.maximum_qos, Some(max));
        let requests: Vec<(&str, SubscriptionOptions)> = topics
            .iter()
            .zip([QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
            .map(|(t, qos)| (t.as_str(), SubscriptionOptions::new(qos)))
            .collect();
        let suback = c.subscribe_many(&requests);
        assert_eq!(suback.reasons.len(), 3, "{suback:?}");
        for (reason, (_, asked)) in suback.reasons.iter().zip(&requests) {
            assert!(!reason.is_error(), "refused: {suback:?}");
            let granted = reason.code();
            assert!(
                granted <= (asked.qos as u8).min(max as u8),
                "granted {reason:?} for {:?} under Maximum QoS {max:?}",
                asked.qos
            );
        }
        assert_eq!(
            suback.reasons[2],
            SubAckReason::granted(max),
            "as Mosquitto, the grant is the Maximum QoS"
        );

        let mut publisher = RawClient::connect(l.full, V5, &names.client_id("pub"));
        publisher.publish(&topics[2], b"x", QoS::ExactlyOnce, false);
        let p = c.recv_publish();
        assert!(p.qos_pid.qos() <= max, "{p:?}");
        publisher.disconnect();
        c.disconnect();
    }
}

/// A will above the Maximum QoS refuses the connection: CONNACK 0x9B (or closure without a
/// CONNACK), then closure. A will at the maximum is accepted.
#[test]
fn mqtt_3_2_2_12_v5_will_qos_above_the_maximum_is_refused() {
    let Some(l) = limited_midge() else {
        return;
    };
    let names = Names::new();
    let topic = names.topic("will");
    for (addr, too_high) in [(l.qos1, QoS::ExactlyOnce), (l.qos0, QoS::AtLeastOnce)] {
        let mut c = RawClient::open(addr, V5);
        c.send(&Packet::from(with_will(
            V5,
            &names.client_id("a"),
            &topic,
            too_high,
        )));
        c.expect_connect_refused(&[ConnectReason::QoSNotSupported]);
    }
    let (c, _) = RawClient::connect_with(
        l.qos1,
        with_will(V5, &names.client_id("b"), &topic, QoS::AtLeastOnce),
    );
    c.disconnect();
}

/// 3.1.1 has no return code for a will QoS the server does not support (3.2.2.3 lists five
/// refusals, none about QoS): the server closes the connection without CONNACK. A will at the
/// maximum is accepted.
#[test]
fn mqtt_3_2_2_6_v311_refusal_without_a_return_code_closes_without_connack() {
    let Some(l) = limited_midge() else {
        return;
    };
    let names = Names::new();
    let topic = names.topic("will");
    for (addr, too_high) in [(l.qos1, QoS::ExactlyOnce), (l.qos0, QoS::AtLeastOnce)] {
        let mut c = RawClient::open(addr, V311);
        c.send(&Packet::from(with_will(
            V311,
            &names.client_id("a"),
            &topic,
            too_high,
        )));
        c.expect_closed_silently();
    }
    let (c, _) = RawClient::connect_with(
        l.qos1,
        with_will(V311, &names.client_id("b"), &topic, QoS::AtLeastOnce),
    );
    c.disconnect();
}

/// A client that publishes above the Maximum QoS anyway [MQTT-3.2.2-11] (5.0) is disconnected:
/// MQTT 5 with DISCONNECT 0x9B, as 3.2.2.3.4 says (4.13), 3.1.1 without a packet. The message
/// reaches no one, and its will (a server-side close) is published. QoS at the maximum passes.
fn publish_above_the_maximum_disconnects(version: ProtocolVersion) {
    let Some(l) = limited_midge() else {
        return;
    };
    let names = Names::new();
    let topic = names.topic("t");
    let will_topic = names.topic("will");
    let mut watcher = RawClient::connect(l.full, V5, &names.client_id("watch"));
    watcher.sub(&format!("{}/#", names.root()), QoS::AtMostOnce);

    let (mut c, _) = RawClient::connect_with(
        l.qos1,
        with_will(
            version,
            &names.client_id("pub"),
            &will_topic,
            QoS::AtMostOnce,
        ),
    );
    assert!(!c.publish(&topic, b"ok", QoS::AtLeastOnce, false).is_error());
    assert_eq!(&watcher.expect_publish().payload[..], b"ok");

    let id = c.packet_id();
    c.send(&Packet::Publish(midge_conformance::client::publish_packet(
        &topic,
        b"too high",
        QoS::ExactlyOnce,
        false,
        id,
    )));
    if version.is_v5() {
        c.expect_disconnect(&[DisconnectReason::QoSNotSupported]);
    } else {
        c.expect_closed_silently();
    }
    let p = watcher.expect_publish();
    assert_eq!(p.topic, will_topic.as_str(), "{p:?}");
    assert!(matches!(p.qos_pid, QosPid::AtMostOnce));
    watcher.expect_nothing();
}

#[test]
fn publish_above_the_maximum_qos_disconnects_v311() {
    publish_above_the_maximum_disconnects(V311);
}

#[test]
fn publish_above_the_maximum_qos_disconnects_v5() {
    publish_above_the_maximum_disconnects(V5);
}
