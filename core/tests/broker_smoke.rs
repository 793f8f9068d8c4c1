//! The basic paths through the broker: connect, subscribe, publish at each QoS.

mod harness;

use harness::*;
use midge_core::codec::{Packet, QoS};

#[test]
fn qos0_message_reaches_subscriber() {
    let mut w = World::default();
    let sub = w.client(V3_1_1, "sub");
    w.subscribe(sub, "a/+", QoS::AtMostOnce);
    let publ = w.client(V5, "pub");
    w.send(publ, &publish("a/b", b"hello", QoS::AtMostOnce, 0));
    let got = w.recv_one(sub);
    let p = as_publish(&got);
    assert_eq!(&p.topic[..], "a/b");
    assert_eq!(&p.payload[..], b"hello");
    w.recv_none(publ);
}

#[test]
fn qos2_flow_delivers_once() {
    let mut w = World::default();
    let sub = w.client(V5, "sub");
    w.subscribe(sub, "t", QoS::ExactlyOnce);
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish("t", b"x", QoS::ExactlyOnce, 7));
    assert!(matches!(w.recv_one(publ), Packet::PubRec(r) if r.packet_id == pid(7)));
    // A duplicate before PUBREL is acknowledged again and not delivered again.
    w.send(publ, &publish("t", b"x", QoS::ExactlyOnce, 7));
    assert!(matches!(w.recv_one(publ), Packet::PubRec(r) if r.packet_id == pid(7)));
    let got = w.recv(sub);
    assert_eq!(got.len(), 1, "{got:?}");
    let id = as_publish(&got[0]).qos_pid.packet_id().unwrap();
    w.send(publ, &pubrel(pid(7)));
    assert!(matches!(w.recv_one(publ), Packet::PubComp(c) if c.packet_id == pid(7)));
    w.send(sub, &pubrec(id));
    assert!(matches!(w.recv_one(sub), Packet::PubRel(r) if r.packet_id == id));
    w.send(sub, &pubcomp(id));
    w.recv_none(sub);
}

#[test]
fn a_client_that_does_not_read_cannot_grow_its_output_without_bound() {
    use bytes::BytesMut;
    use midge_core::broker::Config;
    let mut w = World::new(Config {
        max_connection_buffer: 64,
        ..Config::default()
    });
    let publ = w.client(V3_1_1, "flood");
    w.blocked(publ);
    // 100 QoS 1 publishes in one read: each is answered with a 4-byte PUBACK.
    let mut burst = BytesMut::new();
    for i in 1..=100u16 {
        let p = match publish("t", b"x", QoS::AtLeastOnce, i) {
            Packet::Publish(p) => p,
            _ => unreachable!(),
        };
        Packet::Publish(p)
            .encode(V3_1_1, &mut burst)
            .expect("encodes");
    }
    w.send_raw(publ, &burst);
    assert!(
        w.is_read_paused(publ),
        "reading should pause once output is full"
    );
    w.recv_none(publ); // Blocked: nothing handed over yet.
    // Draining the output resumes reading; every publish is eventually acknowledged, in order.
    let mut acked = Vec::new();
    for _ in 0..100 {
        w.writable(publ);
        for p in w.recv(publ) {
            match p {
                Packet::PubAck(a) => acked.push(a.packet_id.get()),
                other => panic!("unexpected {other:?}"),
            }
        }
        if acked.len() == 100 {
            break;
        }
        w.blocked(publ);
    }
    assert_eq!(acked, (1..=100).collect::<Vec<u16>>());
    assert!(!w.is_read_paused(publ));
}

#[test]
fn shutdown_disconnects_everyone_with_0x8b_and_refuses_new_connections() {
    use midge_core::broker::Input;
    use midge_core::codec::{DisconnectReason, Packet};
    let mut w = World::default();
    let v5 = w.client(V5, "five");
    let mut with_will = connect(V3_1_1, "three");
    with_will.will = Some(will("status/three", b"gone", QoS::AtMostOnce, true));
    let (v3, _) = w.connect(with_will);
    w.broker.handle(w.now, Input::Shutdown);
    w.drain();
    assert!(
        matches!(w.recv_one(v5), Packet::Disconnect(d) if d.reason == DisconnectReason::ServerShuttingDown)
    );
    w.recv_none(v3);
    assert!(w.is_closed(v5) && w.is_closed(v3));
    // The will was published (retained here), since the server ended the connection.
    assert_eq!(w.broker.stats().retained_messages, 1);
    let late = w.open(V5);
    assert!(w.is_closed(late));
}
