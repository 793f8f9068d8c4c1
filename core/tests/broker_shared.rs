//! Shared subscriptions, `$share/{ShareName}/{filter}` (5.0, 4.8.2), for MQTT 5 and 3.1.1
//! clients: each message goes to one member of the group, members take turns, a member that is
//! away is not chosen, and what a member leaves unacknowledged goes to another.

mod harness;

use harness::*;
use midge_core::broker::{Config, ConnId};
use midge_core::codec::{Connect, Packet, ProtocolVersion, QoS, SubAckReason};

const GROUP: &str = "$share/workers/jobs/+";

fn persistent(version: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect(version, id);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(u32::MAX);
    }
    c
}

/// Connects a member with a persistent session subscribed to GROUP at `qos`.
fn member(w: &mut World, version: ProtocolVersion, id: &str, qos: QoS) -> ConnId {
    let (conn, _) = w.connect(persistent(version, id));
    w.subscribe(conn, GROUP, qos);
    conn
}

fn payloads(w: &mut World, conn: ConnId) -> Vec<String> {
    let got = w.recv(conn);
    publishes(&got)
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

fn send_jobs(w: &mut World, publ: ConnId, names: &[&'static str]) {
    for (i, name) in names.iter().enumerate() {
        w.send(
            publ,
            &publish("jobs/a", name.as_bytes(), QoS::AtLeastOnce, i as u16 + 1),
        );
    }
    w.recv(publ);
}

/// Acknowledges every QoS 1 PUBLISH in `packets`.
fn ack_all(w: &mut World, conn: ConnId, packets: &[Packet]) {
    for p in publishes(packets) {
        if let Some(id) = p.qos_pid.packet_id() {
            w.send(conn, &puback(id));
        }
    }
}

/// Resumes a session and returns the payloads that follow its CONNACK.
fn resume(w: &mut World, version: ProtocolVersion, id: &str) -> (ConnId, Vec<Packet>) {
    let conn = w.open(version);
    w.send(conn, &Packet::from(persistent(version, id)));
    let mut got = w.recv(conn);
    assert!(matches!(got.remove(0), Packet::ConnAck(a) if a.session_present));
    (conn, got)
}

#[test]
fn each_message_goes_to_one_member_in_turn() {
    // Members of MQTT 5 and 3.1.1 share the group, acknowledging as they go; an ordinary
    // subscriber gets everything.
    let mut w = World::default();
    let a = member(&mut w, V5, "a", QoS::AtLeastOnce);
    let b = member(&mut w, V3_1_1, "b", QoS::AtLeastOnce);
    let c = member(&mut w, V5, "c", QoS::AtLeastOnce);
    let watcher = w.client(V5, "watcher");
    w.subscribe(watcher, "jobs/#", QoS::AtMostOnce);
    let publ = w.client(V5, "pub");
    let mut got: Vec<Vec<String>> = vec![Vec::new(); 3];
    for i in 0..6u16 {
        let payload: &'static [u8] = [b"0", b"1", b"2", b"3", b"4", b"5"][usize::from(i)];
        w.send(publ, &publish("jobs/a", payload, QoS::AtLeastOnce, i + 1));
        for (n, conn) in [a, b, c].into_iter().enumerate() {
            let packets = w.recv(conn);
            got[n].extend(
                publishes(&packets)
                    .iter()
                    .map(|p| String::from_utf8_lossy(&p.payload).into_owned()),
            );
            ack_all(&mut w, conn, &packets);
        }
    }
    assert_eq!(got, [vec!["0", "3"], vec!["1", "4"], vec!["2", "5"]]);
    assert_eq!(payloads(&mut w, watcher).len(), 6);
}

#[test]
fn the_granted_qos_of_the_member_is_respected() {
    // [MQTT-4.8.2-3] (5.0)
    let mut w = World::default();
    let a = member(&mut w, V5, "a", QoS::AtMostOnce);
    let publ = w.client(V5, "pub");
    w.send(publ, &publish("jobs/a", b"x", QoS::ExactlyOnce, 1));
    let got = w.recv(a);
    let p = publishes(&got);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].qos_pid.qos(), QoS::AtMostOnce);
}

#[test]
fn a_member_that_is_away_is_not_chosen() {
    let mut w = World::default();
    let a = member(&mut w, V5, "a", QoS::AtLeastOnce);
    let b = member(&mut w, V5, "b", QoS::AtLeastOnce);
    w.peer_close(b);
    let publ = w.client(V5, "pub");
    send_jobs(&mut w, publ, &["0", "1", "2"]);
    assert_eq!(payloads(&mut w, a), ["0", "1", "2"]);
    let (_, got) = resume(&mut w, V5, "b");
    assert!(publishes(&got).is_empty(), "{got:?}");
}

#[test]
fn when_every_member_is_away_one_keeps_the_message() {
    let mut w = World::default();
    let a = member(&mut w, V5, "a", QoS::AtLeastOnce);
    let b = member(&mut w, V3_1_1, "b", QoS::AtLeastOnce);
    w.peer_close(a);
    w.peer_close(b);
    let publ = w.client(V5, "pub");
    send_jobs(&mut w, publ, &["0", "1"]);
    let (_, got_a) = resume(&mut w, V5, "a");
    let (_, got_b) = resume(&mut w, V3_1_1, "b");
    let mut all: Vec<String> = publishes(&got_a)
        .iter()
        .chain(publishes(&got_b).iter())
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect();
    all.sort();
    assert_eq!(all, ["0", "1"]);
}

#[test]
fn unacknowledged_qos1_messages_of_a_lost_member_go_to_another() {
    let mut w = World::default();
    let a = member(&mut w, V5, "a", QoS::AtLeastOnce);
    let publ = w.client(V5, "pub");
    send_jobs(&mut w, publ, &["0", "1"]);
    assert_eq!(payloads(&mut w, a), ["0", "1"]);
    let b = member(&mut w, V5, "b", QoS::AtLeastOnce);
    // a never acknowledges and its connection goes: b gets both, as new deliveries.
    w.peer_close(a);
    let got = w.recv(b);
    let p = publishes(&got);
    let names: Vec<&[u8]> = p.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(names, [&b"0"[..], &b"1"[..]]);
    assert!(p.iter().all(|p| !p.dup));
    // a's session still has them in flight under their packet ids, which may not be reused
    // before PUBACK [MQTT-2.2.1-3] (5.0): they are resent when it returns (at least once).
    let (a, got) = resume(&mut w, V5, "a");
    let p = publishes(&got);
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|p| p.dup));
    // Handed over once only: a leaving again gives b nothing more.
    w.peer_close(a);
    w.recv_none(b);
}

#[test]
fn a_qos2_message_in_flight_stays_with_its_member() {
    // [MQTT-4.8.2-4] (5.0): the delivery completes with that client when it reconnects.
    let mut w = World::default();
    let a = member(&mut w, V5, "a", QoS::ExactlyOnce);
    let publ = w.client(V5, "pub");
    w.send(publ, &publish("jobs/a", b"q2", QoS::ExactlyOnce, 1));
    w.recv(publ);
    assert_eq!(payloads(&mut w, a), ["q2"]);
    let b = member(&mut w, V5, "b", QoS::ExactlyOnce);
    w.peer_close(a);
    w.recv_none(b);
    let (_, got) = resume(&mut w, V5, "a");
    let p = publishes(&got);
    assert_eq!(p.len(), 1);
    assert!(p[0].dup);
}

#[test]
fn a_member_whose_session_ends_leaves_its_queue_to_another() {
    let mut w = World::new(Config {
        max_inflight_messages: 1,
        ..Config::default()
    });
    // a is a clean session: when it goes, so does its session.
    let (a, _) = w.connect(connect(V5, "a"));
    w.subscribe(a, GROUP, QoS::AtLeastOnce);
    let b = member(&mut w, V5, "b", QoS::AtLeastOnce);
    w.peer_close(b);
    let publ = w.client(V5, "pub");
    send_jobs(&mut w, publ, &["0", "1", "2"]);
    // a is the only member connected: it has one in flight and two queued.
    assert_eq!(payloads(&mut w, a), ["0"]);
    w.peer_close(a);
    // b is away, but a's session is gone: b keeps them, in order.
    let (b, mut got) = resume(&mut w, V5, "b");
    let mut names = Vec::new();
    while !publishes(&got).is_empty() {
        names.extend(publishes(&got).iter().map(|p| p.payload.clone()));
        ack_all(&mut w, b, &got);
        got = w.recv(b);
    }
    assert_eq!(names, [&b"0"[..], &b"1"[..], &b"2"[..]]);
}

#[test]
fn no_retained_messages_for_a_shared_subscription() {
    let mut w = World::default();
    let publ = w.client(V5, "pub");
    w.send(publ, &publish_retained("jobs/a", b"r", QoS::AtLeastOnce, 1));
    w.recv(publ);
    let a = w.client(V5, "a");
    w.send(a, &subscribe(1, GROUP, QoS::AtLeastOnce));
    let got = w.recv(a);
    assert!(matches!(got.as_slice(), [Packet::SubAck(_)]), "{got:?}");
}

#[test]
fn unsubscribing_leaves_the_group() {
    let mut w = World::default();
    let a = member(&mut w, V5, "a", QoS::AtLeastOnce);
    let b = member(&mut w, V5, "b", QoS::AtLeastOnce);
    w.send(a, &unsubscribe(2, GROUP));
    w.recv(a);
    let publ = w.client(V5, "pub");
    send_jobs(&mut w, publ, &["0", "1"]);
    w.recv_none(a);
    assert_eq!(payloads(&mut w, b), ["0", "1"]);
}

#[test]
fn invalid_shared_filters_are_refused() {
    // [MQTT-4.8.2-1] [MQTT-4.8.2-2] (5.0): 0x8F in MQTT 5, 0x80 in 3.1.1.
    let mut w = World::default();
    for (version, id, want) in [
        (V5, "v5", SubAckReason::TopicFilterInvalid),
        (V3_1_1, "v3", SubAckReason::UnspecifiedError),
    ] {
        let conn = w.client(version, id);
        // ("$share/g+/t" is not even a filter: the codec refuses it as malformed.)
        for filter in ["$share/g", "$share//t"] {
            w.send(conn, &subscribe(3, filter, QoS::AtLeastOnce));
            match w.recv(conn).as_slice() {
                [Packet::SubAck(s)] => assert_eq!(s.reasons, [want], "{filter}"),
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }
}

#[test]
fn shared_subscriptions_survive_a_restart() {
    let config = Config {
        persistence: true,
        ..Config::default()
    };
    let mut w = World::new(config.clone());
    member(&mut w, V5, "a", QoS::AtLeastOnce);
    member(&mut w, V3_1_1, "b", QoS::AtLeastOnce);
    let now = w.now;
    let mut w = World::recovered(config, &w.disk, now);
    let (a, _) = resume(&mut w, V5, "a");
    let (b, _) = resume(&mut w, V3_1_1, "b");
    let publ = w.client(V5, "pub");
    send_jobs(&mut w, publ, &["0", "1"]);
    let mut got = payloads(&mut w, a);
    got.extend(payloads(&mut w, b));
    got.sort();
    assert_eq!(got, ["0", "1"]);
}

#[test]
fn a_member_that_cannot_take_the_message_size_is_passed_over() {
    // A message larger than a member's Maximum Packet Size would be dropped for it
    // [MQTT-3.1.2-25] (5.0), so another member takes it.
    let mut w = World::default();
    let mut c = persistent(V5, "small");
    c.properties.maximum_packet_size = std::num::NonZeroU32::new(30);
    let (small, _) = w.connect(c);
    w.subscribe(small, GROUP, QoS::AtLeastOnce);
    let big = member(&mut w, V5, "big", QoS::AtLeastOnce);
    let publ = w.client(V5, "pub");
    let large: &'static [u8] = &[b'x'; 100];
    for i in 1..=3u16 {
        w.send(publ, &publish("jobs/a", large, QoS::AtLeastOnce, i));
    }
    w.recv(publ);
    w.recv_none(small);
    assert_eq!(publishes(&w.recv(big)).len(), 3);
    assert_eq!(w.broker.stats().dropped_too_large, 0);
}
