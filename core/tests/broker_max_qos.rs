//! A listener limited to QoS 0 or 1 (`Config::listener_max_qos`, Mosquitto's per-listener
//! max_qos): what MQTT 5 clients are told in CONNACK, how subscriptions are granted, and what
//! happens to a will or a PUBLISH above the limit, in both protocol versions. Other listeners
//! keep QoS 2.

mod harness;

use harness::*;
use midge_core::broker::{Config, ConnId, ListenerId};
use midge_core::codec::{
    ByteString, ConnectReason, DisconnectReason, Packet, ProtocolVersion, QoS, SubAckReason,
    Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
};

/// Listener 0 allows QoS 2, listener 1 at most QoS 1, listener 2 only QoS 0.
const FULL: ListenerId = ListenerId(0);
const QOS1: ListenerId = ListenerId(1);
const QOS0: ListenerId = ListenerId(2);

fn world() -> World {
    World::new(Config {
        listener_max_qos: [(QOS1, QoS::AtLeastOnce), (QOS0, QoS::AtMostOnce)].into(),
        ..Config::default()
    })
}

/// Opens a connection on `listener`, sends `connect` and returns what came back.
fn connect_on(
    w: &mut World,
    listener: ListenerId,
    connect: midge_core::codec::Connect,
) -> (ConnId, Vec<Packet>) {
    let conn = w.open_on(connect.protocol_version, listener);
    w.send(conn, &Packet::from(connect));
    let got = w.recv(conn);
    (conn, got)
}

/// A client accepted on `listener`, and its CONNACK.
fn client_on(
    w: &mut World,
    listener: ListenerId,
    version: ProtocolVersion,
    id: &str,
) -> (ConnId, midge_core::codec::ConnAck) {
    let (conn, packets) = connect_on(w, listener, connect(version, id));
    match packets.as_slice() {
        [Packet::ConnAck(ack)] if ack.reason == ConnectReason::Success => (conn, (**ack).clone()),
        other => panic!("expected a successful CONNACK, got {other:?}"),
    }
}

/// SUBSCRIBE to each filter at its QoS in one packet; the SUBACK's reasons. Retained messages
/// that follow the SUBACK stay to be received.
fn subscribe_all(w: &mut World, conn: ConnId, filters: &[(&str, QoS)]) -> Vec<SubAckReason> {
    w.send(
        conn,
        &Packet::Subscribe(Subscribe {
            packet_id: pid(7),
            properties: SubscribeProperties::default(),
            subscriptions: filters
                .iter()
                .map(|(f, qos)| Subscription {
                    filter: ByteString::from(*f),
                    options: SubscriptionOptions::new(*qos),
                })
                .collect(),
        }),
    );
    match w.recv(conn).as_slice() {
        [Packet::SubAck(ack), ..] => ack.reasons.clone(),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

#[test]
fn connack_announces_the_listeners_maximum_qos() {
    let mut w = world();
    for (listener, expected) in [
        (FULL, None),
        (QOS1, Some(QoS::AtLeastOnce)),
        (QOS0, Some(QoS::AtMostOnce)),
    ] {
        let (_, ack) = client_on(&mut w, listener, V5, &format!("c{}", listener.0));
        assert_eq!(ack.properties.maximum_qos, expected, "{listener:?}");
    }
}

#[test]
fn subscriptions_are_granted_at_most_the_listeners_maximum() {
    for version in [V3_1_1, V5] {
        let mut w = world();
        let requests = [
            ("a", QoS::AtMostOnce),
            ("b", QoS::AtLeastOnce),
            ("c", QoS::ExactlyOnce),
        ];
        let (limited, _) = client_on(&mut w, QOS1, version, "limited");
        assert_eq!(
            subscribe_all(&mut w, limited, &requests),
            [
                SubAckReason::GrantedQoS0,
                SubAckReason::GrantedQoS1,
                SubAckReason::GrantedQoS1
            ],
            "{version:?}"
        );
        let (only0, _) = client_on(&mut w, QOS0, version, "only0");
        assert_eq!(
            subscribe_all(&mut w, only0, &requests),
            [SubAckReason::GrantedQoS0; 3],
            "{version:?}"
        );
        let (full, _) = client_on(&mut w, FULL, version, "full");
        assert_eq!(
            subscribe_all(&mut w, full, &requests),
            [
                SubAckReason::GrantedQoS0,
                SubAckReason::GrantedQoS1,
                SubAckReason::GrantedQoS2
            ],
            "{version:?}"
        );
    }
}

/// A QoS 2 message from a client of another listener, live or retained, reaches a client of a
/// QoS 1 listener at the QoS its subscription was granted.
#[test]
fn deliveries_follow_the_capped_grant() {
    let mut w = world();
    let (publisher, _) = client_on(&mut w, FULL, V5, "pub");
    w.send(
        publisher,
        &publish_retained("kept", b"r", QoS::ExactlyOnce, 1),
    );
    assert!(matches!(w.recv(publisher).as_slice(), [Packet::PubRec(_)]));
    w.send(publisher, &pubrel(pid(1)));
    w.recv(publisher);

    let (sub, _) = client_on(&mut w, QOS1, V5, "sub");
    w.send(sub, &subscribe(1, "kept", QoS::ExactlyOnce));
    match w.recv(sub).as_slice() {
        [Packet::SubAck(ack), Packet::Publish(retained)] => {
            assert_eq!(ack.reasons, [SubAckReason::GrantedQoS1]);
            assert_eq!(retained.qos_pid.qos(), QoS::AtLeastOnce);
        }
        other => panic!("expected SUBACK and the retained message, got {other:?}"),
    }
    assert_eq!(
        subscribe_all(&mut w, sub, &[("live", QoS::ExactlyOnce)]),
        [SubAckReason::GrantedQoS1]
    );

    w.send(publisher, &publish("live", b"l", QoS::ExactlyOnce, 2));
    w.send(publisher, &pubrel(pid(2)));
    let got = w.recv(sub);
    let delivered = publishes(&got);
    assert_eq!(delivered.len(), 1, "{got:?}");
    assert_eq!(delivered[0].qos_pid.qos(), QoS::AtLeastOnce);
}

/// A PUBLISH above the maximum: MQTT 5 gets DISCONNECT 0x9B, 3.1.1 a silent close; the will is
/// published, since the server ended the connection. At the maximum it is accepted.
#[test]
fn publish_above_the_maximum_closes_the_connection() {
    for version in [V3_1_1, V5] {
        let mut w = world();
        let (watcher, _) = client_on(&mut w, FULL, V5, "watcher");
        w.subscribe(watcher, "#", QoS::AtMostOnce);

        let mut c = connect(version, "limited");
        c.will = Some(will("will", b"gone", QoS::AtMostOnce, false));
        let (conn, packets) = connect_on(&mut w, QOS1, c);
        assert!(matches!(packets.as_slice(), [Packet::ConnAck(_)]));
        w.send(conn, &publish("t", b"one", QoS::AtLeastOnce, 1));
        assert!(matches!(w.recv(conn).as_slice(), [Packet::PubAck(_)]));
        assert_eq!(as_publish(&w.recv_one(watcher)).payload, &b"one"[..]);

        w.send(conn, &publish("t", b"two", QoS::ExactlyOnce, 2));
        let got = without_reason_strings(w.recv(conn));
        if version.is_v5() {
            assert!(
                matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == DisconnectReason::QoSNotSupported),
                "{got:?}"
            );
        } else {
            assert!(got.is_empty(), "{got:?}");
        }
        assert!(w.is_closed(conn), "{version:?}");
        let seen = w.recv(watcher);
        let seen = publishes(&seen);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].topic, "will", "the refused message went through");
    }
}

/// A QoS 1 PUBLISH on a QoS 0 listener is refused the same way.
#[test]
fn qos0_listener_refuses_qos1() {
    let mut w = world();
    let (conn, _) = client_on(&mut w, QOS0, V5, "only0");
    w.send(conn, &publish("t", b"x", QoS::AtMostOnce, 1));
    w.send(conn, &publish("t", b"x", QoS::AtLeastOnce, 1));
    let got = without_reason_strings(w.recv(conn));
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == DisconnectReason::QoSNotSupported),
        "{got:?}"
    );
    assert!(w.is_closed(conn));
}

/// A will above the maximum refuses the connection: CONNACK 0x9B for MQTT 5 [MQTT-3.2.2-12]
/// (5.0); 3.1.1 has no return code for it, so the connection is closed without CONNACK
/// [MQTT-3.2.2-6] (3.1.1). A will at the maximum is accepted.
#[test]
fn will_above_the_maximum_refuses_the_connection() {
    let mut w = world();
    let with_will = |version, id: &str, qos| {
        let mut c = connect(version, id);
        c.will = Some(will("w", b"x", qos, false));
        c
    };
    let (conn, got) = connect_on(&mut w, QOS1, with_will(V5, "a", QoS::ExactlyOnce));
    match got.as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.reason, ConnectReason::QoSNotSupported);
            assert!(!ack.session_present);
        }
        other => panic!("expected CONNACK 0x9B, got {other:?}"),
    }
    assert!(w.is_closed(conn));

    let (conn, got) = connect_on(&mut w, QOS1, with_will(V3_1_1, "b", QoS::ExactlyOnce));
    assert!(got.is_empty(), "{got:?}");
    assert!(w.is_closed(conn));

    let (conn, got) = connect_on(&mut w, QOS0, with_will(V3_1_1, "c", QoS::AtLeastOnce));
    assert!(got.is_empty(), "{got:?}");
    assert!(w.is_closed(conn));

    for version in [V3_1_1, V5] {
        let (conn, got) = connect_on(&mut w, QOS1, with_will(version, "d", QoS::AtLeastOnce));
        assert!(
            matches!(got.as_slice(), [Packet::ConnAck(a)] if a.reason == ConnectReason::Success),
            "{got:?}"
        );
        assert!(!w.is_closed(conn));
        let (conn, got) = connect_on(&mut w, FULL, with_will(version, "e", QoS::ExactlyOnce));
        assert!(
            matches!(got.as_slice(), [Packet::ConnAck(a)] if a.reason == ConnectReason::Success),
            "{got:?}"
        );
        assert!(!w.is_closed(conn));
    }
}
