//! MQTT 5 Topic Aliases in both directions (5.0, 3.3.2.3.4).

mod harness;

use harness::*;
use midge_core::broker::Config;
use midge_core::codec::{ByteString, DisconnectReason, Packet, Publish, QoS};
use std::num::NonZeroU16;

fn aliased(topic: &str, alias: u16, payload: &'static [u8]) -> Packet {
    let mut p = publish(topic, payload, QoS::AtMostOnce, 0);
    if let Packet::Publish(p) = &mut p {
        p.properties.topic_alias = NonZeroU16::new(alias);
    }
    p
}

fn received(w: &mut World, conn: midge_core::broker::ConnId) -> Vec<Publish> {
    let got = w.recv(conn);
    publishes(&got).into_iter().cloned().collect()
}

fn expect_disconnect(w: &mut World, conn: midge_core::broker::ConnId, reason: DisconnectReason) {
    match w.recv(conn).as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, reason),
        other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
    }
    assert!(w.is_closed(conn));
}

#[test]
fn the_topic_alias_maximum_is_announced_in_connack() {
    // [MQTT-3.2.2-17] (5.0): the broker says how many aliases it accepts.
    let mut w = World::new(Config {
        max_topic_alias: 7,
        ..Config::default()
    });
    let (_, ack) = w.connect(connect(V5, "c"));
    assert_eq!(ack.properties.topic_alias_maximum, Some(7));
}

#[test]
fn an_alias_set_by_a_client_stands_for_its_topic() {
    // [MQTT-3.3.2-12] (5.0): every alias from 1 to the maximum is accepted.
    let mut w = World::default();
    let sub = w.client(V5, "sub");
    w.subscribe(sub, "a/#", QoS::AtMostOnce);
    let publ = w.client(V5, "pub");
    w.send(publ, &aliased("a/one", 1, b"1"));
    w.send(publ, &aliased("a/ten", 10, b"2"));
    w.send(publ, &aliased("", 1, b"3"));
    w.send(publ, &aliased("", 10, b"4"));
    // A new name for an alias replaces the old one.
    w.send(publ, &aliased("a/two", 1, b"5"));
    w.send(publ, &aliased("", 1, b"6"));
    let got: Vec<(String, String)> = received(&mut w, sub)
        .iter()
        .map(|p| {
            (
                p.topic.to_string(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )
        })
        .collect();
    let want = [
        ("a/one", "1"),
        ("a/ten", "2"),
        ("a/one", "3"),
        ("a/ten", "4"),
        ("a/two", "5"),
        ("a/two", "6"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    assert_eq!(got, want);
    // The subscriber asked for no aliases, so it gets none [MQTT-3.3.2-11] (5.0).
    assert!(!w.is_closed(publ));
}

#[test]
fn an_alias_above_the_maximum_gets_disconnect_0x94() {
    // [MQTT-3.3.2-9] (5.0): DISCONNECT with Topic Alias invalid.
    let mut w = World::new(Config {
        max_topic_alias: 3,
        ..Config::default()
    });
    let publ = w.client(V5, "pub");
    w.send(publ, &aliased("t", 4, b"x"));
    expect_disconnect(&mut w, publ, DisconnectReason::TopicAliasInvalid);
}

#[test]
fn an_alias_that_stands_for_nothing_is_a_protocol_error() {
    // (5.0, 3.3.2.3.4): an empty topic with an alias not mapped on this connection.
    let mut w = World::default();
    let publ = w.client(V5, "pub");
    w.send(publ, &aliased("", 2, b"x"));
    expect_disconnect(&mut w, publ, DisconnectReason::ProtocolError);
}

#[test]
fn alias_mappings_do_not_carry_over_to_a_new_connection() {
    // [MQTT-3.3.2-7] (5.0)
    let mut w = World::default();
    let mut c = connect(V5, "pub");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(100);
    let (publ, _) = w.connect(c.clone());
    w.send(publ, &aliased("t", 1, b"x"));
    w.peer_close(publ);
    let (publ, _) = w.connect(c);
    w.send(publ, &aliased("", 1, b"y"));
    expect_disconnect(&mut w, publ, DisconnectReason::ProtocolError);
}

#[test]
fn the_broker_assigns_aliases_to_a_client_that_accepts_them() {
    // [MQTT-3.3.2-8] [MQTT-3.3.2-11] (5.0): never 0, never above the client's maximum; the
    // least recently used alias is reassigned when all are taken.
    let mut w = World::default();
    let mut c = connect(V5, "sub");
    c.properties.topic_alias_maximum = Some(2);
    let (sub, _) = w.connect(c);
    w.subscribe(sub, "#", QoS::AtMostOnce);
    let publ = w.client(V5, "pub");
    for topic in ["x", "y", "x", "z", "y"] {
        let t: &'static str = topic;
        w.send(publ, &publish(t, b"m", QoS::AtMostOnce, 0));
    }
    let got: Vec<(String, Option<u16>)> = received(&mut w, sub)
        .iter()
        .map(|p| {
            (
                p.topic.to_string(),
                p.properties.topic_alias.map(|a| a.get()),
            )
        })
        .collect();
    let want: Vec<(String, Option<u16>)> = [
        ("x", Some(1)),
        ("y", Some(2)),
        ("", Some(1)),  // x again: the alias alone
        ("z", Some(2)), // y was least recently used
        ("y", Some(1)), // x was least recently used
    ]
    .iter()
    .map(|(t, a)| (t.to_string(), *a))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn the_broker_uses_no_more_aliases_than_its_own_limit() {
    let mut w = World::new(Config {
        max_topic_alias_broker: 1,
        ..Config::default()
    });
    let mut c = connect(V5, "sub");
    c.properties.topic_alias_maximum = Some(100);
    let (sub, _) = w.connect(c);
    w.subscribe(sub, "#", QoS::AtMostOnce);
    let publ = w.client(V5, "pub");
    w.send(publ, &publish("x", b"m", QoS::AtMostOnce, 0));
    w.send(publ, &publish("y", b"m", QoS::AtMostOnce, 0));
    let aliases: Vec<Option<u16>> = received(&mut w, sub)
        .iter()
        .map(|p| p.properties.topic_alias.map(|a| a.get()))
        .collect();
    assert_eq!(aliases, [Some(1), Some(1)]);
}

#[test]
fn a_resumed_session_resends_with_the_full_topic_name() {
    // Aliases are per connection [MQTT-3.3.2-7] (5.0): a resend on a new connection sets its
    // alias afresh.
    let mut w = World::default();
    let mut c = connect(V5, "sub");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(100);
    c.properties.topic_alias_maximum = Some(5);
    let (sub, _) = w.connect(c.clone());
    w.subscribe(sub, "t", QoS::AtLeastOnce);
    let publ = w.client(V5, "pub");
    w.send(publ, &publish("t", b"1", QoS::AtLeastOnce, 1));
    w.send(publ, &publish("t", b"2", QoS::AtLeastOnce, 2));
    let first = received(&mut w, sub);
    assert_eq!(first[1].topic, ByteString::from(""));
    w.peer_close(sub);
    let conn = w.open(V5);
    w.send(conn, &Packet::from(c));
    let got = w.recv(conn);
    let resent: Vec<(String, Option<u16>, bool)> = publishes(&got)
        .iter()
        .map(|p| {
            (
                p.topic.to_string(),
                p.properties.topic_alias.map(|a| a.get()),
                p.dup,
            )
        })
        .collect();
    assert_eq!(
        resent,
        [
            ("t".to_owned(), Some(1), true),
            (String::new(), Some(1), true)
        ]
    );
}

#[test]
fn an_alias_is_not_used_where_it_would_exceed_the_maximum_packet_size() {
    // The Topic Alias property adds 3 bytes: a message that fits the client's Maximum Packet
    // Size without it is sent without it [MQTT-3.1.2-24] (5.0), and no alias is taken.
    let mut w = World::default();
    let mut c = connect(V5, "sub");
    c.properties.topic_alias_maximum = Some(2);
    // PUBLISH QoS 0 to "t" with a 10-byte payload: 2 + 3 (topic) + 1 (properties) + 10 = 16
    // bytes after the fixed header, 18 in all; with the alias, 21.
    c.properties.maximum_packet_size = std::num::NonZeroU32::new(18);
    let (sub, _) = w.connect(c);
    w.subscribe(sub, "t", QoS::AtMostOnce);
    let publ = w.client(V5, "pub");
    w.send(publ, &publish("t", b"0123456789", QoS::AtMostOnce, 0));
    w.send(publ, &publish("t", b"short", QoS::AtMostOnce, 0));
    let got = received(&mut w, sub);
    let seen: Vec<(String, Option<u16>)> = got
        .iter()
        .map(|p| {
            (
                p.topic.to_string(),
                p.properties.topic_alias.map(|a| a.get()),
            )
        })
        .collect();
    // The first goes without an alias; the second, smaller, sets one.
    assert_eq!(seen, [("t".to_owned(), None), ("t".to_owned(), Some(1))]);
}
