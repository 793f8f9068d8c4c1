//! The `$SYS` tree: Mosquitto's topics and formats, published every `sys_interval` seconds as
//! retained messages, each value only when it changed; load averages as Mosquitto computes them.

mod harness;

use harness::*;
use midge_core::broker::{Config, ConnId, Input, Time};
use midge_core::codec::{Packet, PubAckReason, QoS};
use std::collections::BTreeMap;

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;

const VERSION: &str = concat!("midge version ", env!("CARGO_PKG_VERSION"));

fn sys_world(interval: u64) -> World {
    World::new(Config {
        sys_interval: interval,
        ..Config::default()
    })
}

/// The `$SYS` values a connection received since the last call, by topic; each topic at most
/// once, as QoS 0 messages.
fn sys_values(w: &mut World, conn: ConnId) -> BTreeMap<String, String> {
    let packets = w.recv(conn);
    let mut out = BTreeMap::new();
    for p in publishes(&packets) {
        assert!(p.topic.starts_with("$SYS/"), "unexpected {p:?}");
        assert_eq!(p.qos_pid.qos(), Q0);
        let payload = String::from_utf8(p.payload.to_vec()).expect("text payload");
        let previous = out.insert(p.topic.to_string(), payload);
        assert!(previous.is_none(), "{} published twice", p.topic);
    }
    out
}

/// Connects a client subscribed to `filter`, returning it and what the subscription brought.
fn monitor(w: &mut World, id: &str, filter: &str) -> (ConnId, BTreeMap<String, String>) {
    let conn = w.client(V5, id);
    w.send(conn, &subscribe(1, filter, Q0));
    let packets = w.recv(conn);
    assert!(
        matches!(packets.first(), Some(Packet::SubAck(_))),
        "{packets:?}"
    );
    let mut retained = BTreeMap::new();
    for p in publishes(&packets) {
        assert!(p.retain, "sent on subscribe: RETAIN set");
        retained.insert(
            p.topic.to_string(),
            String::from_utf8(p.payload.to_vec()).expect("text payload"),
        );
    }
    (conn, retained)
}

fn value<'a>(values: &'a BTreeMap<String, String>, topic: &str) -> &'a str {
    values
        .get(&format!("$SYS/broker/{topic}"))
        .unwrap_or_else(|| panic!("{topic} not published in {values:?}"))
}

/// Every topic of the first publication, which sends all of them.
const ALL_TOPICS: [&str; 50] = [
    "uptime",
    "clients/total",
    "clients/maximum",
    "clients/disconnected",
    "clients/inactive",
    "clients/connected",
    "clients/active",
    "clients/expired",
    "load/messages/received/1min",
    "load/messages/sent/1min",
    "load/publish/dropped/1min",
    "load/publish/received/1min",
    "load/publish/sent/1min",
    "load/bytes/received/1min",
    "load/bytes/sent/1min",
    "load/sockets/1min",
    "load/connections/1min",
    "load/messages/received/5min",
    "load/messages/sent/5min",
    "load/publish/dropped/5min",
    "load/publish/received/5min",
    "load/publish/sent/5min",
    "load/bytes/received/5min",
    "load/bytes/sent/5min",
    "load/sockets/5min",
    "load/connections/5min",
    "load/messages/received/15min",
    "load/messages/sent/15min",
    "load/publish/dropped/15min",
    "load/publish/received/15min",
    "load/publish/sent/15min",
    "load/bytes/received/15min",
    "load/bytes/sent/15min",
    "load/sockets/15min",
    "load/connections/15min",
    "messages/stored",
    "store/messages/count",
    "store/messages/bytes",
    "subscriptions/count",
    "shared_subscriptions/count",
    "retained messages/count",
    "messages/received",
    "messages/sent",
    "publish/messages/dropped",
    "publish/messages/received",
    "publish/messages/sent",
    "bytes/received",
    "bytes/sent",
    "publish/bytes/received",
    "publish/bytes/sent",
];

#[test]
fn version_at_start_the_tree_at_the_first_interval_then_only_changes() {
    let mut w = sys_world(10);
    let (mon, retained) = monitor(&mut w, "mon", "$SYS/#");
    // Published with the first input, retained, so the subscription brings it.
    assert_eq!(
        retained,
        BTreeMap::from([("$SYS/broker/version".to_owned(), VERSION.to_owned())])
    );

    w.advance_secs(9);
    w.recv_none(mon);
    w.advance_secs(1);
    let first = sys_values(&mut w, mon);
    let mut expected: Vec<String> = ALL_TOPICS
        .iter()
        .map(|t| format!("$SYS/broker/{t}"))
        .collect();
    expected.sort();
    assert_eq!(first.keys().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(value(&first, "uptime"), "10 seconds");
    assert_eq!(value(&first, "clients/total"), "1");
    assert_eq!(value(&first, "clients/maximum"), "1");
    assert_eq!(value(&first, "clients/connected"), "1");
    assert_eq!(value(&first, "clients/active"), "1");
    assert_eq!(value(&first, "clients/disconnected"), "0");
    assert_eq!(value(&first, "clients/inactive"), "0");
    assert_eq!(value(&first, "clients/expired"), "0");
    assert_eq!(value(&first, "subscriptions/count"), "1");
    assert_eq!(value(&first, "shared_subscriptions/count"), "0");
    // The values as they stood before this publication: only the version was retained.
    assert_eq!(value(&first, "retained messages/count"), "1");
    assert_eq!(value(&first, "messages/stored"), "1");
    assert_eq!(value(&first, "store/messages/count"), "1");
    assert_eq!(
        value(&first, "store/messages/bytes"),
        VERSION.len().to_string()
    );
    // CONNECT and SUBSCRIBE in; CONNACK, SUBACK and the version out.
    assert_eq!(value(&first, "messages/received"), "2");
    assert_eq!(value(&first, "messages/sent"), "3");
    assert_eq!(value(&first, "publish/messages/received"), "0");
    assert_eq!(value(&first, "publish/messages/sent"), "1");
    assert_eq!(
        value(&first, "publish/bytes/sent"),
        VERSION.len().to_string()
    );
    assert_eq!(value(&first, "publish/messages/dropped"), "0");
    let stats = w.broker.stats().clone();
    assert_eq!(
        value(&first, "bytes/received"),
        stats.bytes_received.to_string()
    );
    // One connection and one CONNECT in the first 10 seconds: 6 a minute, folded into 0.
    assert_eq!(value(&first, "load/sockets/1min"), "0.92");
    assert_eq!(value(&first, "load/connections/5min"), "0.20");
    assert_eq!(value(&first, "load/connections/15min"), "0.07");
    assert_eq!(value(&first, "load/publish/received/1min"), "0.00");

    // Nothing happened but the publication itself: the uptime, what counts messages and
    // bytes sent, the retained count and the loads of what was sent.
    w.advance_secs(10);
    let second = sys_values(&mut w, mon);
    assert_eq!(value(&second, "uptime"), "20 seconds");
    assert_eq!(value(&second, "publish/messages/sent"), "51");
    // The version and the 50 values of the first publication.
    assert_eq!(value(&second, "retained messages/count"), "51");
    for unchanged in [
        "version",
        "clients/total",
        "clients/maximum",
        "clients/connected",
        "clients/active",
        "clients/disconnected",
        "clients/expired",
        "subscriptions/count",
        "shared_subscriptions/count",
        "messages/received",
        "publish/messages/received",
        "publish/messages/dropped",
        "bytes/received",
        "publish/bytes/received",
        "load/publish/received/1min",
        "load/publish/dropped/1min",
    ] {
        let topic = format!("$SYS/broker/{unchanged}");
        assert!(!second.contains_key(&topic), "{topic} sent again");
    }
}

#[test]
fn a_late_subscriber_gets_the_retained_values() {
    let mut w = sys_world(10);
    let _a = w.client(V3_1_1, "a");
    let _b = w.client(V3_1_1, "b");
    w.advance_secs(10);
    let (late, retained) = monitor(&mut w, "late", "$SYS/broker/#");
    assert_eq!(value(&retained, "version"), VERSION);
    assert_eq!(value(&retained, "uptime"), "10 seconds");
    assert_eq!(value(&retained, "clients/connected"), "2");
    assert_eq!(value(&retained, "clients/total"), "2");
    assert_eq!(value(&retained, "load/connections/1min"), "1.84");
    assert_eq!(retained.len(), 51, "{retained:?}");
    // A narrower filter brings only its own.
    w.send(late, &subscribe(2, "$SYS/broker/clients/+", Q0));
    let packets = w.recv(late);
    let topics: Vec<&str> = publishes(&packets).iter().map(|p| &*p.topic).collect();
    assert_eq!(
        topics,
        [
            "$SYS/broker/clients/active",
            "$SYS/broker/clients/connected",
            "$SYS/broker/clients/disconnected",
            "$SYS/broker/clients/expired",
            "$SYS/broker/clients/inactive",
            "$SYS/broker/clients/maximum",
            "$SYS/broker/clients/total",
        ]
    );
}

/// Values as they stood at the last publication, from the retained store.
fn retained_values(w: &mut World, n: u32) -> BTreeMap<String, String> {
    monitor(w, &format!("probe-{n}"), "$SYS/#").1
}

#[test]
fn counts_follow_connects_disconnects_expiry_and_messages() {
    let mut w = World::new(Config {
        sys_interval: 10,
        max_queued_messages: 1,
        ..Config::default()
    });
    // A persistent session that subscribes, then goes away: its queue holds one message.
    let mut persistent = connect(V3_1_1, "persistent");
    persistent.clean_start = false;
    let (p, _) = w.connect(persistent);
    w.subscribe(p, "t", Q1);
    // An MQTT 5 session that expires 5 seconds after its connection ends.
    let mut expiring = connect(V5, "expiring");
    expiring.properties.session_expiry_interval = Some(5);
    let (e, _) = w.connect(expiring);
    let c = w.client(V3_1_1, "clean");
    w.send(p, &disconnect());
    w.peer_close(e);
    w.peer_close(c);
    // Three QoS 1 messages for the offline session: one queued, two dropped.
    let publ = w.client(V3_1_1, "publisher");
    for (i, payload) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
        w.send(publ, &publish("t", payload, Q1, i as u16 + 1));
    }
    assert_eq!(publishes(&w.recv(publ)).len(), 0);
    w.advance_secs(10);

    let v = retained_values(&mut w, 1);
    // "persistent" is kept while offline, "expiring" has expired, "clean" is gone.
    assert_eq!(value(&v, "clients/total"), "2");
    assert_eq!(value(&v, "clients/connected"), "1");
    assert_eq!(value(&v, "clients/disconnected"), "1");
    assert_eq!(value(&v, "clients/expired"), "1");
    // persistent, expiring and clean were connected together.
    assert_eq!(value(&v, "clients/maximum"), "3");
    assert_eq!(value(&v, "subscriptions/count"), "1");
    assert_eq!(value(&v, "publish/messages/received"), "3");
    assert_eq!(value(&v, "publish/bytes/received"), "11");
    assert_eq!(value(&v, "publish/messages/dropped"), "2");
    // The version, retained, and the one queued message.
    assert_eq!(value(&v, "messages/stored"), "2");
    assert_eq!(
        value(&v, "store/messages/bytes"),
        (VERSION.len() + 3).to_string()
    );
    let stats = w.broker.stats();
    assert_eq!(stats.sessions_expired, 1);
    assert_eq!(stats.clients_maximum, 3);
    assert_eq!(stats.connections_opened, 5);
    assert_eq!(stats.connects_received, 5);

    // The persistent session comes back and receives its message; the counts follow.
    let mut back = connect(V3_1_1, "persistent");
    back.clean_start = false;
    let p = w.open(V3_1_1);
    w.send(p, &Packet::from(back));
    let got = w.recv(p);
    match got.as_slice() {
        [Packet::ConnAck(ack), Packet::Publish(msg)] => {
            assert!(ack.session_present);
            assert_eq!(&msg.payload[..], b"one");
            w.send(p, &puback(msg.qos_pid.packet_id().expect("QoS 1")));
        }
        other => panic!("expected CONNACK and the queued message, got {other:?}"),
    }
    w.advance_secs(10);
    let v = retained_values(&mut w, 2);
    assert_eq!(value(&v, "clients/total"), "3");
    assert_eq!(value(&v, "clients/connected"), "3");
    assert_eq!(value(&v, "clients/disconnected"), "0");
    assert_eq!(value(&v, "clients/maximum"), "3");
    let retained_count: u64 = value(&v, "retained messages/count").parse().unwrap();
    assert_eq!(value(&v, "messages/stored"), retained_count.to_string());
    let stats = w.broker.stats();
    // The second probe is the fourth client connected now.
    assert_eq!(stats.clients_maximum, 4);
    assert_eq!(
        stats.messages_received,
        // 7 CONNECT, 3 SUBSCRIBE, 1 DISCONNECT, 3 PUBLISH and 1 PUBACK.
        7 + 3 + 1 + 3 + 1
    );
}

#[test]
fn loads_rise_with_traffic_and_decay_when_idle() {
    let mut w = sys_world(10);
    let (mon, _) = monitor(&mut w, "mon", "$SYS/broker/load/publish/received/+");
    let publ = w.client(V3_1_1, "publisher");
    for i in 0..10 {
        w.send(publ, &publish("t", b"x", Q0, i));
    }
    w.advance_secs(10);
    // 10 PUBLISH in 10 s: 60 a minute. load = 60 + e^(-10/window) * (0 - 60).
    //   1 min: 60 * (1 - e^(-1/6))  = 9.2111
    //   5 min: 60 * (1 - e^(-1/30)) = 1.9670
    //  15 min: 60 * (1 - e^(-1/90)) = 0.6630
    let v = sys_values(&mut w, mon);
    assert_eq!(value(&v, "load/publish/received/1min"), "9.21");
    assert_eq!(value(&v, "load/publish/received/5min"), "1.97");
    assert_eq!(value(&v, "load/publish/received/15min"), "0.66");

    // Idle: each average decays by e^(-10/window).
    //   1 min: 9.2111 * e^(-1/6)  = 7.7970
    //   5 min: 1.9670 * e^(-1/30) = 1.9026
    //  15 min: 0.6630 * e^(-1/90) = 0.6556, less than 0.01 below: not published.
    w.advance_secs(10);
    let v = sys_values(&mut w, mon);
    assert_eq!(value(&v, "load/publish/received/1min"), "7.80");
    assert_eq!(value(&v, "load/publish/received/5min"), "1.90");
    assert_eq!(v.len(), 2, "{v:?}");

    // More traffic raises them again: 30 in 10 s is 180 a minute.
    //   1 min: 180 + e^(-1/6) * (7.7970 - 180) = 34.2333
    for i in 0..30 {
        w.send(publ, &publish("t", b"x", Q0, i));
    }
    w.advance_secs(10);
    let v = sys_values(&mut w, mon);
    assert_eq!(value(&v, "load/publish/received/1min"), "34.23");

    // A long idle spell brings the 1 minute load down, one step at a time. As in Mosquitto, a
    // step smaller than 0.01 is not published, so the last value published stays just above 0.
    let mut last = 34.23_f64;
    for _ in 0..60 {
        w.advance_secs(10);
        if let Some(s) = sys_values(&mut w, mon).get("$SYS/broker/load/publish/received/1min") {
            let now: f64 = s.parse().unwrap();
            assert!(now < last, "{now} after {last}");
            last = now;
        }
    }
    assert_eq!(format!("{last:.2}"), "0.06");
}

#[test]
fn sys_interval_zero_publishes_nothing_and_sets_no_timer() {
    let mut w = World::default();
    assert_eq!(w.broker.poll_timeout(), None);
    let (mon, retained) = monitor(&mut w, "mon", "$SYS/#");
    assert!(retained.is_empty());
    w.advance_secs(100);
    w.recv_none(mon);
    w.send(mon, &disconnect());
    assert_eq!(w.broker.poll_timeout(), None);
    assert_eq!(w.broker.stats().retained_messages, 0);
}

#[test]
fn the_timer_wakes_an_idle_broker_once_per_interval() {
    let mut w = World::new(Config {
        sys_interval: 10,
        ..Config::default()
    });
    assert_eq!(
        w.broker.poll_timeout(),
        None,
        "not started before any input"
    );
    w.now = Time::from_millis(5_000);
    w.broker.handle(w.now, Input::Tick);
    assert_eq!(w.broker.poll_timeout(), Some(Time::from_millis(15_000)));
    w.advance_secs(10);
    assert_eq!(w.broker.poll_timeout(), Some(Time::from_millis(25_000)));
    // A late tick publishes once and keeps to the schedule.
    w.now = Time::from_millis(47_000);
    w.broker.handle(w.now, Input::Tick);
    assert_eq!(w.broker.poll_timeout(), Some(Time::from_millis(55_000)));
    let (_, v) = monitor(&mut w, "mon", "$SYS/broker/uptime");
    assert_eq!(value(&v, "uptime"), "42 seconds");
}

#[test]
fn clients_cannot_publish_into_sys() {
    let mut w = sys_world(10);
    let forger = w.client(V5, "forger");
    w.advance_secs(10);
    w.send(
        forger,
        &publish_retained("$SYS/broker/uptime", b"forged", Q1, 1),
    );
    match w.recv_one(forger) {
        Packet::PubAck(ack) => assert_eq!(ack.reason, PubAckReason::NotAuthorized),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let (_, v) = monitor(&mut w, "mon", "$SYS/broker/uptime");
    assert_eq!(value(&v, "uptime"), "10 seconds");
}

#[test]
fn the_tree_is_deterministic() {
    let run = || {
        let mut w = sys_world(5);
        let (mon, _) = monitor(&mut w, "mon", "$SYS/#");
        let publ = w.client(V5, "publisher");
        for round in 0..6u16 {
            for i in 0..round {
                w.send(publ, &publish("t", b"payload", Q1, round * 10 + i + 1));
            }
            w.advance_secs(5);
            w.recv(mon);
        }
        w.log
    };
    assert_eq!(run(), run());
}

/// The message store counts each message once, however many sessions hold it and whether it is
/// also the retained message of its topic; a message only one session holds counts once too.
#[test]
fn stored_messages_count_each_message_once() {
    let mut w = World::new(Config {
        sys_interval: 10,
        ..Config::default()
    });
    for id in ["a", "b"] {
        let mut c = connect(V3_1_1, id);
        c.clean_start = false;
        let (conn, _) = w.connect(c);
        w.subscribe(conn, "t/#", Q1);
        w.send(conn, &disconnect());
    }
    let mut only = connect(V3_1_1, "only");
    only.clean_start = false;
    let (conn, _) = w.connect(only);
    w.subscribe(conn, "solo", Q1);
    w.send(conn, &disconnect());
    let publ = w.client(V3_1_1, "publisher");
    // Queued for a and b, and the retained message of t/r.
    w.send(publ, &publish_retained("t/r", b"rr", Q1, 1));
    // Queued for a and b.
    w.send(publ, &publish("t/m", b"mmm", Q1, 2));
    // Queued for "only".
    w.send(publ, &publish("solo", b"sssss", Q1, 3));
    w.advance_secs(10);
    let v = retained_values(&mut w, 1);
    // The version and t/r (retained), t/m and solo (queued).
    assert_eq!(value(&v, "retained messages/count"), "2");
    assert_eq!(value(&v, "store/messages/count"), "4");
    assert_eq!(
        value(&v, "store/messages/bytes"),
        (VERSION.len() + 2 + 3 + 5).to_string()
    );
}
