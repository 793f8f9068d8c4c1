//! Persistence in the broker: acknowledgements wait for durability, and a broker recovered from
//! its log carries on where the acknowledged state left off.

mod harness;

use harness::*;
use midge_core::broker::Config;
use midge_core::codec::{Connect, Packet, ProtocolVersion, QoS};

fn durable() -> Config {
    Config {
        persistence: true,
        ..Config::default()
    }
}

fn persistent(version: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect(version, id);
    c.clean_start = false;
    if version.is_v5() {
        c.properties.session_expiry_interval = Some(u32::MAX);
    }
    c
}

/// Connects and returns the CONNACK's session present flag and what followed it.
fn reconnect(w: &mut World, c: Connect) -> (midge_core::broker::ConnId, bool, Vec<Packet>) {
    let conn = w.open(c.protocol_version);
    w.send(conn, &Packet::from(c));
    let mut got = w.recv(conn);
    match got.remove(0) {
        Packet::ConnAck(ack) => (conn, ack.session_present, got),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

fn payloads(packets: &[Packet]) -> Vec<String> {
    publishes(packets)
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

#[test]
fn acknowledgements_and_deliveries_wait_for_the_log() {
    let mut w = World::new(durable());
    let (sub, _) = w.connect(persistent(V3_1_1, "sub"));
    w.subscribe(sub, "t", QoS::AtLeastOnce);
    let publ = w.client(V5, "pub");
    w.auto_durable = false;
    w.send(publ, &publish("t", b"m", QoS::AtLeastOnce, 1));
    // The message is recorded but not durable: nothing it implies may be seen yet.
    assert!(w.written > w.durable);
    w.recv_none(publ);
    w.recv_none(sub);
    w.make_durable();
    assert_eq!(w.recv(publ), [puback(pid(1))]);
    assert_eq!(payloads(&w.recv(sub)), ["m"]);
}

#[test]
fn clean_sessions_and_qos0_never_touch_the_log() {
    let mut w = World::new(durable());
    let sub = w.client(V3_1_1, "clean-sub");
    w.subscribe(sub, "t", QoS::AtLeastOnce);
    let publ = w.client(V3_1_1, "clean-pub");
    w.send(publ, &publish("t", b"m", QoS::AtLeastOnce, 1));
    w.send(publ, &publish("t", b"z", QoS::AtMostOnce, 0));
    assert_eq!(w.written, 0, "nothing persistent happened");
    assert_eq!(payloads(&w.recv(sub)), ["m", "z"]);
}

#[test]
fn queued_messages_survive_a_restart() {
    let mut w = World::new(durable());
    let (sub, _) = w.connect(persistent(V3_1_1, "sub"));
    w.subscribe(sub, "t/#", QoS::ExactlyOnce);
    w.peer_close(sub);
    let publ = w.client(V5, "pub");
    w.send(publ, &publish("t/1", b"one", QoS::AtLeastOnce, 1));
    w.send(publ, &publish("t/2", b"two", QoS::ExactlyOnce, 2));
    let acks = w.recv(publ);
    assert_eq!(acks.len(), 2, "{acks:?}");

    let mut w = World::recovered(durable(), &w.disk, w.now);
    let (sub, present, got) = reconnect(&mut w, persistent(V3_1_1, "sub"));
    assert!(present, "the session survived");
    assert_eq!(payloads(&got), ["one", "two"]);
    // The subscription survived too.
    let publ = w.client(V5, "pub2");
    w.send(publ, &publish("t/3", b"three", QoS::AtLeastOnce, 1));
    assert_eq!(payloads(&w.recv(sub)), ["three"]);
}

#[test]
fn in_flight_messages_resume_with_their_packet_ids_after_a_restart() {
    let mut w = World::new(durable());
    let (sub, _) = w.connect(persistent(V5, "sub"));
    w.subscribe(sub, "t", QoS::ExactlyOnce);
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish("t", b"a", QoS::ExactlyOnce, 1));
    w.send(publ, &publish("t", b"b", QoS::ExactlyOnce, 2));
    let sent = w.recv(sub);
    let ids: Vec<_> = publishes(&sent)
        .iter()
        .map(|p| p.qos_pid.packet_id().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    // The first reaches PUBREC (PUBREL sent), the second is unacknowledged.
    w.send(sub, &pubrec(ids[0]));
    assert_eq!(w.recv(sub), [pubrel(ids[0])]);

    let mut w = World::recovered(durable(), &w.disk, w.now);
    let (_, present, got) = reconnect(&mut w, persistent(V5, "sub"));
    assert!(present);
    // [MQTT-4.4.0-1]: PUBREL for the first, the PUBLISH again with DUP and its id for the second.
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], pubrel(ids[0]));
    let again = as_publish(&got[1]);
    assert!(again.dup);
    assert_eq!(again.qos_pid.packet_id(), Some(ids[1]));
    assert_eq!(&again.payload[..], b"b");
}

#[test]
fn inbound_qos2_is_deduplicated_across_a_restart() {
    let mut w = World::new(durable());
    let (sub, _) = w.connect(persistent(V3_1_1, "sub"));
    w.subscribe(sub, "t", QoS::AtMostOnce);
    w.peer_close(sub);
    let (publ, _) = w.connect(persistent(V3_1_1, "pub"));
    w.send(publ, &publish("t", b"once", QoS::ExactlyOnce, 9));
    assert_eq!(w.recv(publ), [pubrec(pid(9))]);

    // The publisher never saw PUBCOMP: after the restart it sends the PUBLISH again.
    let mut w = World::recovered(durable(), &w.disk, w.now);
    let (sub, _, _) = reconnect(&mut w, persistent(V3_1_1, "sub"));
    let (publ, present, _) = reconnect(&mut w, persistent(V3_1_1, "pub"));
    assert!(present);
    let mut again = match publish("t", b"once", QoS::ExactlyOnce, 9) {
        Packet::Publish(p) => p,
        _ => unreachable!(),
    };
    again.dup = true;
    w.send(publ, &Packet::Publish(again));
    assert_eq!(w.recv(publ), [pubrec(pid(9))]);
    w.send(publ, &pubrel(pid(9)));
    assert_eq!(w.recv(publ), [pubcomp(pid(9))]);
    // The subscriber's session (QoS 0 subscription) got nothing new from the repeat.
    w.recv_none(sub);
}

#[test]
fn retained_messages_and_wills_survive_a_restart() {
    let mut w = World::new(durable());
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish_retained("status", b"on", QoS::AtMostOnce, 0));
    let mut c = persistent(V5, "device");
    let mut last_will = will("device/gone", b"lost", QoS::AtLeastOnce, false);
    last_will.properties.will_delay_interval = Some(5);
    c.will = Some(last_will);
    w.connect(c);

    // The broker stops with the device connected: its will is due five seconds after the
    // broker is back, unless the device returns first.
    let mut w = World::recovered(durable(), &w.disk, w.now);
    let watcher = w.client(V3_1_1, "watcher");
    w.send(watcher, &subscribe(1, "#", QoS::AtLeastOnce));
    let got = w.recv(watcher);
    let topics: Vec<_> = publishes(&got)
        .iter()
        .map(|p| p.topic.to_string())
        .collect();
    assert_eq!(topics, ["status"]);
    w.advance_ms(4_999);
    w.recv_none(watcher);
    w.advance_ms(1);
    let got = w.recv(watcher);
    assert_eq!(payloads(&got), ["lost"]);
}

#[test]
fn records_written_but_never_durable_are_lost_without_having_been_acknowledged() {
    let mut w = World::new(durable());
    let (sub, _) = w.connect(persistent(V3_1_1, "sub"));
    w.subscribe(sub, "t", QoS::AtLeastOnce);
    w.peer_close(sub);
    let publ = w.client(V3_1_1, "pub");
    w.auto_durable = false;
    w.send(
        publ,
        &publish("t", b"not acknowledged", QoS::AtLeastOnce, 1),
    );
    w.recv_none(publ);
    // The crash keeps only what was durable.
    let durable_len = {
        let data = bytes::Bytes::copy_from_slice(&w.disk);
        let scan = midge_core::persist::scan(&data);
        scan.records
            .iter()
            .take_while(|(lsn, _)| *lsn <= w.durable)
            .count()
    };
    let mut kept = bytes::BytesMut::new();
    let data = bytes::Bytes::copy_from_slice(&w.disk);
    for (lsn, record) in midge_core::persist::scan(&data)
        .records
        .iter()
        .take(durable_len)
    {
        record.encode(*lsn, &mut kept);
    }
    let mut w = World::recovered(durable(), &kept, w.now);
    let (_, present, got) = reconnect(&mut w, persistent(V3_1_1, "sub"));
    assert!(present);
    assert!(got.is_empty(), "{got:?}");
}

/// The broker's `$SYS` values are retained but never written to the log: an idle broker with
/// persistence writes nothing (no fsync every `sys_interval`), and a restart publishes fresh
/// values rather than restoring stale ones. A client's retained message is still written.
#[test]
fn sys_values_are_not_persisted() {
    let config = Config {
        sys_interval: 10,
        ..durable()
    };
    let mut w = World::new(config.clone());
    let watcher = w.client(V5, "watcher");
    w.subscribe(watcher, "$SYS/broker/uptime", QoS::AtMostOnce);
    let before = w.written;
    for _ in 0..5 {
        w.advance_secs(10);
    }
    let got = w.recv(watcher);
    assert!(
        publishes(&got).len() >= 5,
        "uptime published every interval: {got:?}"
    );
    assert_eq!(w.written, before, "no record for $SYS values");

    // A client's retained message is recorded, and only it comes back after a restart.
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish_retained("kept", b"v", QoS::AtLeastOnce, 1));
    assert!(w.written > before);
    assert_eq!(w.recv(publ), [puback(pid(1))]);
    let disk = w.disk.clone();
    let mut w = World::recovered(config, &disk, w.now);
    let late = w.client(V5, "late");
    w.send(late, &subscribe(1, "#", QoS::AtMostOnce));
    let got = w.recv(late);
    let topics: Vec<&str> = publishes(&got).iter().map(|p| &p.topic[..]).collect();
    assert_eq!(topics, ["kept"]);
}

/// A persistent session resumed with Session Expiry Interval 0 leaves the log (it now ends
/// with its connection, (5.0, 3.1.2.11.2)), but keeps its queued messages and sends them. What
/// happens to those deliveries afterwards (sent, acknowledged, discarded) is no longer the
/// log's business: a record of it after the session's end would make the log refer to a
/// session it does not have, and recovery would refuse the whole log after a crash.
#[test]
fn a_session_that_leaves_the_log_writes_nothing_more_for_its_deliveries() {
    let mut w = World::new(durable());
    let (sub, _) = w.connect(persistent(V5, "sub"));
    w.subscribe(sub, "t", QoS::AtLeastOnce);
    w.peer_close(sub);
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish("t", b"queued", QoS::AtLeastOnce, 1));
    assert_eq!(w.recv(publ), [puback(pid(1))]);

    // A crash and a recovery: the queued delivery comes back as recorded.
    let mut w = World::recovered(durable(), &w.disk, w.now);
    let mut c = persistent(V5, "sub");
    c.properties.session_expiry_interval = Some(0);
    let (sub, present, got) = reconnect(&mut w, c);
    assert!(present, "the session is resumed [MQTT-3.1.2-5] (5.0)");
    assert_eq!(payloads(&got), ["queued"]);
    let id = as_publish(&got[0]).qos_pid.packet_id().unwrap();
    w.send(sub, &puback(id));

    // Another crash: the log must still be consistent (`recovered` checks every record), and
    // the session it ended is gone.
    let mut w = World::recovered(durable(), &w.disk, w.now);
    let (_, present, got) = reconnect(&mut w, persistent(V5, "sub"));
    assert!(
        !present,
        "the session left the log when it was resumed with expiry 0"
    );
    assert!(got.is_empty(), "{got:?}");
}
