//! MQTT 5 Message Expiry Interval: copies that wait too long are deleted, and what is sent
//! carries the interval that is left (5.0, 3.3.2.3.3).

mod harness;

use harness::*;
use midge_core::broker::{Config, ConnId, Time};
use midge_core::codec::{Connect, Packet, ProtocolVersion, Publish, QoS};

fn expiring(topic: &str, payload: &'static [u8], qos: QoS, id: u16, secs: u32) -> Packet {
    let mut p = publish(topic, payload, qos, id);
    if let Packet::Publish(p) = &mut p {
        p.properties.message_expiry_interval = Some(secs);
    }
    p
}

fn expiring_retained(topic: &str, payload: &'static [u8], secs: u32) -> Packet {
    let mut p = expiring(topic, payload, QoS::AtLeastOnce, 9, secs);
    if let Packet::Publish(p) = &mut p {
        p.retain = true;
    }
    p
}

fn persistent(version: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect(version, id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(u32::MAX);
    c
}

/// Resumes a session and returns the PUBLISH packets that follow the CONNACK.
fn resume(w: &mut World, id: &str) -> (ConnId, Vec<Publish>) {
    let conn = w.open(V5);
    w.send(conn, &Packet::from(persistent(V5, id)));
    let got = w.recv(conn);
    match got.first() {
        Some(Packet::ConnAck(ack)) => assert!(ack.session_present),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    (conn, publishes(&got).into_iter().cloned().collect())
}

/// A subscriber with a persistent session that is offline now.
fn offline_subscriber(w: &mut World, filter: &str) {
    let (sub, _) = w.connect(persistent(V5, "sub"));
    w.subscribe(sub, filter, QoS::AtLeastOnce);
    w.send(sub, &disconnect());
}

#[test]
fn a_message_sent_at_once_carries_its_full_interval() {
    // [MQTT-3.3.2-6] (5.0): the received value less the time it waited, here none.
    let mut w = World::default();
    let sub = w.client(V5, "sub");
    w.subscribe(sub, "t", QoS::AtLeastOnce);
    let publ = w.client(V5, "pub");
    w.send(publ, &expiring("t", b"m", QoS::AtLeastOnce, 1, 30));
    let got = w.recv(sub);
    let p = publishes(&got);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].properties.message_expiry_interval, Some(30));
}

#[test]
fn a_queued_message_carries_what_is_left_of_its_interval() {
    // [MQTT-3.3.2-6] (5.0)
    let mut w = World::default();
    offline_subscriber(&mut w, "t");
    let publ = w.client(V5, "pub");
    w.send(publ, &expiring("t", b"m", QoS::AtLeastOnce, 1, 10));
    w.advance_ms(3_500);
    let (_, got) = resume(&mut w, "sub");
    assert_eq!(got.len(), 1);
    // 6.5 s are left: whole seconds, rounded up so an unexpired message never says 0.
    assert_eq!(got[0].properties.message_expiry_interval, Some(7));
}

#[test]
fn an_expired_queued_message_is_deleted_not_sent() {
    // [MQTT-3.3.2-5] (5.0): the copy for a subscriber whose delivery had not started goes.
    let mut w = World::default();
    offline_subscriber(&mut w, "t");
    let publ = w.client(V5, "pub");
    w.send(publ, &expiring("t", b"short", QoS::AtLeastOnce, 1, 2));
    w.send(publ, &publish("t", b"forever", QoS::AtLeastOnce, 2));
    w.recv(publ);
    w.advance_secs(3);
    let (_, got) = resume(&mut w, "sub");
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [&b"forever"[..]]);
    assert_eq!(w.broker.stats().dropped_expired, 1);
}

#[test]
fn a_message_in_flight_is_resent_even_after_it_expires() {
    // Onward delivery started, so the flow completes [MQTT-3.3.2-5] (5.0) [MQTT-4.4.0-1] (5.0).
    let mut w = World::default();
    let (sub, _) = w.connect(persistent(V5, "sub"));
    w.subscribe(sub, "t", QoS::AtLeastOnce);
    let publ = w.client(V5, "pub");
    w.send(publ, &expiring("t", b"m", QoS::AtLeastOnce, 1, 2));
    let first = w.recv(sub);
    assert_eq!(publishes(&first).len(), 1);
    w.peer_close(sub);
    w.advance_secs(5);
    let (_, got) = resume(&mut w, "sub");
    assert_eq!(got.len(), 1);
    assert!(got[0].dup);
    assert_eq!(got[0].properties.message_expiry_interval, Some(0));
}

#[test]
fn an_expired_retained_message_is_not_sent_to_new_subscribers() {
    let mut w = World::default();
    let publ = w.client(V5, "pub");
    w.send(publ, &expiring_retained("r/short", b"s", 2));
    w.send(publ, &expiring_retained("r/long", b"l", 100));
    w.recv(publ);
    w.advance_secs(1);
    let early = w.client(V5, "early");
    w.send(early, &subscribe(1, "r/#", QoS::AtLeastOnce));
    let got = w.recv(early);
    let mut seen: Vec<(String, Option<u32>)> = publishes(&got)
        .iter()
        .map(|p| (p.topic.to_string(), p.properties.message_expiry_interval))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("r/long".to_owned(), Some(99)),
            ("r/short".to_owned(), Some(1))
        ]
    );
    w.advance_secs(2);
    let late = w.client(V5, "late");
    w.send(late, &subscribe(1, "r/#", QoS::AtLeastOnce));
    let got = w.recv(late);
    let topics: Vec<String> = publishes(&got)
        .iter()
        .map(|p| p.topic.to_string())
        .collect();
    assert_eq!(topics, ["r/long"]);
    assert_eq!(w.broker.stats().retained_messages, 1);
}

#[test]
fn expired_messages_make_room_in_a_full_queue() {
    let mut w = World::new(Config {
        max_queued_messages: 2,
        ..Config::default()
    });
    offline_subscriber(&mut w, "t");
    let publ = w.client(V5, "pub");
    w.send(publ, &expiring("t", b"a", QoS::AtLeastOnce, 1, 1));
    w.send(publ, &expiring("t", b"b", QoS::AtLeastOnce, 2, 1));
    w.advance_secs(2);
    w.send(publ, &publish("t", b"c", QoS::AtLeastOnce, 3));
    assert_eq!(w.broker.stats().dropped_queue_full, 0);
    assert_eq!(w.broker.stats().dropped_expired, 2);
    let (_, got) = resume(&mut w, "sub");
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [&b"c"[..]]);
}

#[test]
fn a_will_expiry_interval_counts_from_its_publication() {
    // The will's Message Expiry Interval is sent with it (5.0, 3.1.3.2.4).
    let mut w = World::default();
    let sub = w.client(V5, "sub");
    w.subscribe(sub, "will", QoS::AtLeastOnce);
    let mut c = connect(V5, "dying");
    let mut lw = will("will", b"gone", QoS::AtLeastOnce, false);
    lw.properties.message_expiry_interval = Some(20);
    lw.properties.will_delay_interval = Some(5);
    c.will = Some(lw);
    c.properties.session_expiry_interval = Some(60);
    let (dying, _) = w.connect(c);
    w.advance_secs(30);
    w.peer_close(dying);
    w.advance_secs(6);
    let got = w.recv(sub);
    let p = publishes(&got);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].properties.message_expiry_interval, Some(20));
}

#[test]
fn a_message_without_an_interval_never_expires() {
    let mut w = World::default();
    offline_subscriber(&mut w, "t");
    let publ = w.client(V5, "pub");
    w.send(publ, &publish("t", b"m", QoS::AtLeastOnce, 1));
    w.advance_secs(1_000_000);
    let (_, got) = resume(&mut w, "sub");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].properties.message_expiry_interval, None);
}

#[test]
fn a_recovered_broker_keeps_the_deadline_of_a_stored_message() {
    // The deadline is stored as a point on the driver's clock, so time before the restart
    // counts. Two messages: one expires while the broker is down, one is still alive.
    let config = Config {
        persistence: true,
        ..Config::default()
    };
    let mut w = World::new(config.clone());
    w.advance_secs(1_000);
    offline_subscriber(&mut w, "t");
    let publ = w.client(V5, "pub");
    w.send(publ, &expiring("t", b"short", QoS::AtLeastOnce, 1, 10));
    w.send(publ, &expiring("t", b"long", QoS::AtLeastOnce, 2, 100));
    w.recv(publ);
    let restart = Time::from_millis(w.now.as_millis() + 30_000);
    let mut w = World::recovered(config, &w.disk, restart);
    let (_, got) = resume(&mut w, "sub");
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"long");
    assert_eq!(got[0].properties.message_expiry_interval, Some(70));
}
