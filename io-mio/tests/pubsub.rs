//! Publish and subscribe through the running daemon over TCP: every QoS for MQTT 3.1.1 and 5.0
//! clients, retained messages, and wills.

mod common;

use common::*;
use midge_core::codec::{ProtocolVersion, QoS};

const PLAIN: &str = "listener 0 127.0.0.1\nallow_anonymous true\n";

/// A message published at each QoS reaches a subscriber at that QoS, with each QoS flow completed
/// by the daemon [MQTT-4.3.2-2] [MQTT-4.3.3-2] (3.1.1) [MQTT-4.3.2-4] [MQTT-4.3.3-8] (5.0), and in
/// publishing order [MQTT-4.6.0-6] (3.1.1) [MQTT-4.6.0-5] (5.0).
fn pubsub_at_every_qos(version: ProtocolVersion) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let mut sub = Client::connect(daemon.addr(), version, "sub");
    sub.sub("qos/#", QoS::ExactlyOnce);
    let mut publisher = Client::connect(daemon.addr(), version, "pub");
    for qos in QOS {
        let topic = format!("qos/{}", qos as u8);
        let payload = format!("at qos {}", qos as u8);
        let reason = publisher.publish(&topic, payload.as_bytes(), qos, false);
        assert!(!reason.is_error(), "publish at {qos:?} refused: {reason:?}");
        let got = sub.expect_message(&topic, payload.as_bytes());
        // Delivered at the minimum of the published and granted QoS [MQTT-3.8.4-6] (3.1.1)
        // [MQTT-3.8.4-8] (5.0): here the published one.
        assert_eq!(got.qos_pid.qos(), qos);
        assert!(!got.retain);
    }
    // A subscription granted at QoS 0 downgrades a QoS 2 message [MQTT-3.3.5-1] (3.1.1)
    // [MQTT-3.3.4-2] (5.0).
    let mut low = Client::connect(daemon.addr(), version, "low");
    low.sub("qos/#", QoS::AtMostOnce);
    publisher.publish("qos/down", b"down", QoS::ExactlyOnce, false);
    assert_eq!(
        low.expect_message("qos/down", b"down").qos_pid.qos(),
        QoS::AtMostOnce
    );
    assert_eq!(
        sub.expect_message("qos/down", b"down").qos_pid.qos(),
        QoS::ExactlyOnce
    );
    publisher.disconnect();
    sub.disconnect();
    low.disconnect();
}

#[test]
fn pubsub_at_every_qos_v311() {
    pubsub_at_every_qos(V311);
}

#[test]
fn pubsub_at_every_qos_v5() {
    pubsub_at_every_qos(V5);
}

/// A 3.1.1 publisher reaches a 5.0 subscriber and the other way round.
#[test]
fn pubsub_across_protocol_versions() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let mut old = Client::connect(daemon.addr(), V311, "old");
    let mut new = Client::connect(daemon.addr(), V5, "new");
    old.sub("to-old", QoS::AtLeastOnce);
    new.sub("to-new", QoS::AtLeastOnce);
    old.publish("to-new", b"from 3.1.1", QoS::AtLeastOnce, false);
    new.expect_message("to-new", b"from 3.1.1");
    new.publish("to-old", b"from 5.0", QoS::AtLeastOnce, false);
    old.expect_message("to-old", b"from 5.0");
}

/// A retained message is stored and sent, with RETAIN set, to a client that subscribes later
/// [MQTT-3.3.1-5] [MQTT-3.3.1-6] (3.1.1) [MQTT-3.3.1-5] [MQTT-3.3.1-9] (5.0); an empty retained
/// message is forwarded and removes it [MQTT-3.3.1-10] [MQTT-3.3.1-11] (3.1.1) [MQTT-3.3.1-6]
/// [MQTT-3.3.1-7] (5.0). RETAIN is set on messages sent because of a new subscription
/// [MQTT-3.3.1-8] (3.1.1).
fn retained_for_later_subscriber(version: ProtocolVersion) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let mut publisher = Client::connect(daemon.addr(), version, "pub");
    publisher.publish("status/door", b"open", QoS::AtLeastOnce, true);
    publisher.publish("status/window", b"shut", QoS::ExactlyOnce, true);
    publisher.disconnect();

    let mut later = Client::connect(daemon.addr(), version, "later");
    later.sub("status/door", QoS::ExactlyOnce);
    let got = later.expect_message("status/door", b"open");
    assert!(
        got.retain,
        "a retained message sent on subscribe carries RETAIN"
    );
    assert_eq!(got.qos_pid.qos(), QoS::AtLeastOnce);
    later.sub("status/+", QoS::AtLeastOnce);
    let mut got: Vec<_> = (0..2)
        .map(|_| {
            let p = later.recv_publish();
            assert!(p.retain);
            (p.topic.to_string(), p.payload.to_vec())
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("status/door".to_owned(), b"open".to_vec()),
            ("status/window".to_owned(), b"shut".to_vec())
        ]
    );

    // Clearing: an empty retained payload removes the message.
    let mut publisher = Client::connect(daemon.addr(), version, "pub");
    publisher.publish("status/door", b"", QoS::AtLeastOnce, true);
    // The live subscriber gets the clearing message as an ordinary one.
    later.expect_message("status/door", b"");
    let mut last = Client::connect(daemon.addr(), version, "last");
    last.sub("status/#", QoS::AtLeastOnce);
    let got = last.expect_message("status/window", b"shut");
    assert!(got.retain);
    // Nothing else is retained: a round trip proves nothing more was queued before it.
    last.ping();
    assert!(
        last.try_recv(std::time::Duration::from_millis(200))
            .is_err(),
        "only one retained message is left"
    );
}

#[test]
fn retained_for_later_subscriber_v311() {
    retained_for_later_subscriber(V311);
}

#[test]
fn retained_for_later_subscriber_v5() {
    retained_for_later_subscriber(V5);
}

/// A client whose socket goes away without DISCONNECT has its will published [MQTT-3.1.2-8]
/// (3.1.1 and 5.0), with its QoS and RETAIN [MQTT-3.1.2-17] (5.0); a client that disconnects
/// properly does not [MQTT-3.1.2-10] [MQTT-3.14.4-3].
fn will_on_dropped_socket(version: ProtocolVersion) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let mut watcher = Client::connect(daemon.addr(), version, "watcher");
    watcher.sub("wills/#", QoS::ExactlyOnce);

    // Disconnects cleanly: no will.
    let polite = Client::connect_with(
        tcp(daemon.addr()),
        ConnectOptions::new(version, "polite").will(
            "wills/polite",
            b"unused",
            QoS::AtLeastOnce,
            false,
        ),
    );
    polite.disconnect();

    // Just drops the socket.
    let rude = Client::connect_with(
        tcp(daemon.addr()),
        ConnectOptions::new(version, "rude").will("wills/rude", b"gone", QoS::AtLeastOnce, true),
    );
    drop(rude);

    let will = watcher.expect_message("wills/rude", b"gone");
    assert_eq!(will.qos_pid.qos(), QoS::AtLeastOnce);
    // Forwarded to an established subscription, RETAIN is 0: [MQTT-3.3.1-9] (3.1.1), and
    // [MQTT-3.3.1-12] (5.0) with Retain As Published off.
    assert!(!will.retain);

    // The will was retained.
    let mut later = Client::connect(daemon.addr(), version, "later");
    later.sub("wills/#", QoS::AtLeastOnce);
    let got = later.expect_message("wills/rude", b"gone");
    assert!(got.retain);
    // And the polite client's will never came: nothing was queued for the watcher.
    watcher.ping();
    assert!(
        watcher
            .try_recv(std::time::Duration::from_millis(200))
            .is_err()
    );
}

#[test]
fn will_on_dropped_socket_v311() {
    will_on_dropped_socket(V311);
}

#[test]
fn will_on_dropped_socket_v5() {
    will_on_dropped_socket(V5);
}

/// A client's last bytes and the end of its stream often arrive together, announced by one
/// readiness event; the daemon must still see the end at once and publish the will
/// [MQTT-3.1.2-8], not wait for the keep alive (60 s here) to expire. The daemon is stopped
/// while the client writes and closes, so that both are there when it looks.
#[test]
fn will_when_the_last_bytes_and_the_close_arrive_together() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let mut watcher = Client::connect(daemon.addr(), V311, "watcher");
    watcher.sub("wills/#", QoS::AtMostOnce);
    let mut leaver = Client::connect_with(
        tcp(daemon.addr()),
        ConnectOptions::new(V311, "leaver").will("wills/leaver", b"gone", QoS::AtMostOnce, false),
    );
    daemon.signal("STOP");
    // A QoS 0 PUBLISH to "x": nothing answers it, so no write meets the closed socket.
    leaver.send_raw(&[0x30, 0x03, 0x00, 0x01, b'x']);
    drop(leaver);
    std::thread::sleep(std::time::Duration::from_millis(100));
    daemon.signal("CONT");
    let will = watcher.try_recv_publish(std::time::Duration::from_secs(5));
    assert!(
        will.as_ref().is_ok_and(|p| &*p.topic == "wills/leaver"),
        "no will within 5 s of the close: {will:?}"
    );
}

/// Messages far larger than a socket buffer cross the daemon intact, at every QoS, while the
/// sockets on both sides take them in pieces.
#[test]
fn large_messages_cross_intact() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), PLAIN);
    let mut sub = Client::connect(daemon.addr(), V5, "sub");
    sub.sub("big", QoS::ExactlyOnce);
    let mut publisher = Client::connect(daemon.addr(), V311, "pub");
    for (i, qos) in QOS.into_iter().enumerate() {
        let payload: Vec<u8> = (0..4 << 20)
            .map(|n: u32| (n % 251) as u8 + i as u8)
            .collect();
        publisher.publish("big", &payload, qos, false);
        let got = sub.recv_publish();
        assert_eq!(got.qos_pid.qos(), qos);
        assert!(got.payload[..] == payload[..], "payload at {qos:?} changed");
    }
}
