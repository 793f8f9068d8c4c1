//! Bridges between two brokers wired together in memory: topics crossing and renamed, QoS end
//! to end, retained messages, loops, redialing and failover, keep alive, notifications,
//! misbehaving remotes, persistence and crashes.

mod harness;
mod pair;

use harness::*;
use midge_core::broker::bridge::{
    Backoff, BridgeAddress, BridgeConfig, BridgeDirection, BridgeId, BridgeTopic,
};
use midge_core::broker::{Config, ConnId};
use midge_core::codec::{
    ConnAck, ConnAckProperties, ConnectReason, Disconnect, DisconnectReason, Packet,
    ProtocolVersion, QoS,
};
use pair::{Pair, Side};

const B0: BridgeId = BridgeId(0);

fn line(
    pattern: &str,
    direction: BridgeDirection,
    qos: QoS,
    local: &str,
    remote: &str,
) -> BridgeTopic {
    BridgeTopic {
        pattern: pattern.into(),
        direction,
        qos,
        local_prefix: local.into(),
        remote_prefix: remote.into(),
    }
}

fn bridge(hosts: &[&str], protocol: ProtocolVersion, topics: Vec<BridgeTopic>) -> BridgeConfig {
    BridgeConfig {
        name: "to-remote".into(),
        addresses: hosts
            .iter()
            .map(|h| BridgeAddress {
                host: (*h).into(),
                port: 1883,
            })
            .collect(),
        round_robin: false,
        topics,
        remote_clientid: "bridge-a".into(),
        local_clientid: "local.bridge-a".into(),
        remote_username: None,
        remote_password: None,
        clean_session: false,
        local_clean_session: false,
        protocol,
        try_private: true,
        keepalive_secs: 60,
        restart: Backoff::Constant { secs: 5 },
        notifications: false,
        notifications_local_only: false,
        notification_topic: "$SYS/broker/connection/bridge-a/state".into(),
    }
}

fn with_bridge(b: BridgeConfig) -> Config {
    Config {
        bridges: vec![b],
        ..Config::default()
    }
}

fn persistent_config(b: Option<BridgeConfig>) -> Config {
    Config {
        bridges: b.into_iter().collect(),
        persistence: true,
        ..Config::default()
    }
}

/// A broker A bridged to a plain broker B.
fn pair_with(b: BridgeConfig) -> Pair {
    Pair::new(with_bridge(b), Config::default())
}

fn payloads(packets: &[Packet]) -> Vec<String> {
    publishes(packets)
        .iter()
        .map(|p| String::from_utf8_lossy(&p.payload).into_owned())
        .collect()
}

fn topics(packets: &[Packet]) -> Vec<String> {
    publishes(packets)
        .iter()
        .map(|p| p.topic.to_string())
        .collect()
}

/// Everything a subscriber receives until it falls quiet, completing every QoS flow.
fn recv_acking(p: &mut Pair, side: Side, conn: ConnId) -> Vec<Packet> {
    let mut all = Vec::new();
    loop {
        p.pump();
        let got = p.world(side).recv(conn);
        if got.is_empty() {
            return all;
        }
        ack_all(p.world(side), conn, &got);
        all.extend(got);
    }
}

/// Answers every QoS flow a subscriber's packets ask for.
fn ack_all(w: &mut World, conn: ConnId, packets: &[Packet]) {
    for p in packets {
        match p {
            Packet::Publish(p) => match (p.qos_pid.qos(), p.qos_pid.packet_id()) {
                (QoS::AtLeastOnce, Some(id)) => w.send(conn, &puback(id)),
                (QoS::ExactlyOnce, Some(id)) => w.send(conn, &pubrec(id)),
                _ => {}
            },
            Packet::PubRel(r) => w.send(conn, &pubcomp(r.packet_id)),
            _ => {}
        }
    }
}

#[test]
fn out_in_and_both_topics_cross_renamed() {
    let mut p = pair_with(bridge(
        &["b"],
        V5,
        vec![
            line(
                "sensors/#",
                BridgeDirection::Out,
                QoS::AtLeastOnce,
                "site/",
                "hq/site1/",
            ),
            line(
                "cmd/#",
                BridgeDirection::In,
                QoS::AtLeastOnce,
                "site/",
                "hq/site1/",
            ),
            line("chat", BridgeDirection::Both, QoS::AtLeastOnce, "", ""),
        ],
    ));
    assert_eq!(p.wires.len(), 1, "the bridge dialed and connected");
    let on_b = p.b.client(V5, "hq");
    p.b.subscribe(on_b, "#", QoS::AtLeastOnce);
    let on_a = p.a.client(V5, "site");
    p.a.subscribe(on_a, "#", QoS::AtLeastOnce);

    p.a.send(on_a, &publish("site/sensors/t", b"21", QoS::AtMostOnce, 0));
    p.pump();
    assert_eq!(topics(&p.b.recv(on_b)), ["hq/site1/sensors/t"]);
    // Renamed only where a line matches: a local topic outside the out lines stays.
    p.a.send(on_a, &publish("site/other", b"x", QoS::AtMostOnce, 0));
    p.pump();
    p.b.recv_none(on_b);

    let hq = p.b.client(V5, "hq-pub");
    p.b.send(
        hq,
        &publish("hq/site1/cmd/reboot", b"now", QoS::AtMostOnce, 0),
    );
    p.pump();
    // The subscriber on A saw its own two messages, then the command from B, renamed.
    let got = p.a.recv(on_a);
    assert_eq!(
        topics(&got),
        ["site/sensors/t", "site/other", "site/cmd/reboot"]
    );
    // An out-only line does not bring the remote's messages in.
    p.b.send(
        hq,
        &publish("hq/site1/sensors/t", b"no", QoS::AtMostOnce, 0),
    );
    p.pump();
    p.a.recv_none(on_a);
    p.b.recv(on_b);

    p.a.send(on_a, &publish("chat", b"from a", QoS::AtMostOnce, 0));
    p.b.send(hq, &publish("chat", b"from b", QoS::AtMostOnce, 0));
    p.pump();
    assert_eq!(payloads(&p.b.recv(on_b)), ["from b", "from a"]);
    assert_eq!(payloads(&p.a.recv(on_a)), ["from a", "from b"]);
}

/// Each message arrives at the lowest of its QoS, the bridge line's and the subscriber's.
#[test]
fn qos_0_1_and_2_end_to_end() {
    for (line_qos, sent, expect) in [
        (QoS::ExactlyOnce, QoS::ExactlyOnce, QoS::ExactlyOnce),
        (QoS::ExactlyOnce, QoS::AtLeastOnce, QoS::AtLeastOnce),
        (QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce),
        (QoS::ExactlyOnce, QoS::AtMostOnce, QoS::AtMostOnce),
    ] {
        for version in [V3_1_1, V5] {
            let mut p = pair_with(bridge(
                &["b"],
                version,
                vec![
                    line("up/#", BridgeDirection::Out, line_qos, "", ""),
                    line("down/#", BridgeDirection::In, line_qos, "", ""),
                ],
            ));
            let sub_b = p.b.client(V5, "sb");
            p.b.subscribe(sub_b, "up/#", QoS::ExactlyOnce);
            let sub_a = p.a.client(V5, "sa");
            p.a.subscribe(sub_a, "down/#", QoS::ExactlyOnce);
            let pub_a = p.a.client(V5, "pa");
            let pub_b = p.b.client(V5, "pb");
            p.a.send(pub_a, &publish("up/1", b"u", sent, 1));
            p.b.send(pub_b, &publish("down/1", b"d", sent, 1));
            for _ in 0..4 {
                p.pump();
                for (w, c) in [(&mut p.a, pub_a), (&mut p.b, pub_b)] {
                    let got = w.recv(c);
                    for packet in got {
                        if let Packet::PubRec(r) = packet {
                            w.send(c, &pubrel(r.packet_id));
                        }
                    }
                }
            }
            let mut seen = Vec::new();
            for (side, c) in [(Side::B, sub_b), (Side::A, sub_a)] {
                let got = recv_acking(&mut p, side, c);
                let pubs = publishes(&got);
                assert_eq!(pubs.len(), 1, "{version:?} {line_qos:?} {sent:?}: {got:?}");
                assert_eq!(
                    pubs[0].qos_pid.qos(),
                    expect,
                    "{version:?} {line_qos:?} {sent:?}"
                );
                seen.push(pubs[0].payload.clone());
            }
            assert_eq!(seen, [&b"u"[..], &b"d"[..]]);
            // Every flow completes on the bridge: nothing is sent again on the next pumps.
            p.pump();
            p.advance_secs(1);
            p.b.recv_none(sub_b);
            p.a.recv_none(sub_a);
        }
    }
}

#[test]
fn retained_messages_propagate_both_ways() {
    let mut p = Pair::new(
        with_bridge(bridge(
            &["b"],
            V3_1_1,
            vec![line(
                "state/#",
                BridgeDirection::Both,
                QoS::AtLeastOnce,
                "",
                "",
            )],
        )),
        Config::default(),
    );
    // Retained on B before the bridge subscribed arrives as retained and is kept on A.
    p.cut();
    let pb = p.b.client(V5, "pb");
    p.b.send(pb, &publish_retained("state/b", b"on", QoS::AtLeastOnce, 1));
    p.advance_secs(6);
    assert_eq!(p.wires.len(), 1, "the bridge came back");
    let late_a = p.a.client(V5, "late-a");
    p.a.send(late_a, &subscribe(1, "state/#", QoS::AtLeastOnce));
    let got = p.a.recv(late_a);
    let pubs = publishes(&got);
    assert_eq!(pubs.len(), 1, "{got:?}");
    assert!(pubs[0].retain);
    assert_eq!(&pubs[0].payload[..], b"on");

    // Retained on A, published while connected, is retained on B.
    let pa = p.a.client(V5, "pa");
    p.a.send(pa, &publish_retained("state/a", b"up", QoS::AtLeastOnce, 1));
    p.pump();
    let late_b = p.b.client(V5, "late-b");
    p.b.send(late_b, &subscribe(1, "state/a", QoS::AtLeastOnce));
    let got = p.b.recv(late_b);
    let pubs = publishes(&got);
    assert_eq!(pubs.len(), 1, "{got:?}");
    assert!(pubs[0].retain);
    assert_eq!(&pubs[0].payload[..], b"up");
}

/// A topic bridged both ways does not come back to where it was published: MQTT 5 with no
/// local, 3.1.1 with try_private towards a broker (midge) that honours it.
#[test]
fn both_ways_does_not_loop() {
    for (version, try_private, copies) in [(V5, true, 1), (V3_1_1, true, 1), (V3_1_1, false, 2)] {
        let mut b = bridge(
            &["b"],
            version,
            vec![line(
                "room/#",
                BridgeDirection::Both,
                QoS::ExactlyOnce,
                "",
                "",
            )],
        );
        b.try_private = try_private;
        let mut p = pair_with(b);
        let sub_a = p.a.client(V5, "sa");
        p.a.subscribe(sub_a, "room/#", QoS::AtMostOnce);
        let sub_b = p.b.client(V5, "sb");
        p.b.subscribe(sub_b, "room/#", QoS::AtMostOnce);
        let pa = p.a.client(V5, "pa");
        p.a.send(pa, &publish("room/1", b"hello", QoS::AtLeastOnce, 1));
        p.pump();
        p.advance_secs(1);
        assert_eq!(
            payloads(&p.b.recv(sub_b)),
            ["hello"],
            "{version:?} {try_private}"
        );
        // Without try_private the remote sends it back once; the bridge's own no local stops
        // it there.
        assert_eq!(
            payloads(&p.a.recv(sub_a)).len(),
            copies,
            "{version:?} try_private {try_private}"
        );
    }
}

fn refused_dial_times(p: &Pair) -> Vec<u64> {
    p.dials.iter().map(|d| d.at.as_millis()).collect()
}

#[test]
fn constant_backoff_redials_at_its_interval() {
    let mut b = bridge(&["b"], V5, vec![]);
    b.restart = Backoff::Constant { secs: 5 };
    let mut p = Pair::new(with_bridge(b), Config::default());
    p.cut();
    p.down.insert("b".into());
    p.advance_secs(21);
    assert_eq!(refused_dial_times(&p), [0, 5000, 10000, 15000, 20000]);
    p.down.clear();
    p.advance_secs(5);
    assert_eq!(p.wires.len(), 1, "connected again once the remote is back");
}

#[test]
fn jitter_backoff_stays_within_bounds_and_is_deterministic() {
    let run = || {
        let mut b = bridge(&["b"], V5, vec![]);
        b.restart = Backoff::Jitter {
            base_secs: 2,
            cap_secs: 30,
        };
        let mut a = with_bridge(b);
        a.client_id_seed = [7; 32];
        let mut p = Pair::new(a, Config::default());
        p.down.insert("b".into());
        p.cut();
        p.advance_secs(600);
        (refused_dial_times(&p), p.a.log.clone())
    };
    let (times, log) = run();
    let gaps: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() > 20, "{gaps:?}");
    assert_eq!(gaps[0], 2000, "the first wait after a loss is the base");
    for w in gaps.windows(2) {
        assert!((2000..=30_000).contains(&w[1]), "{gaps:?}");
        assert!(w[1] <= (w[0] * 3).max(2000), "{gaps:?}");
    }
    assert!(
        gaps.iter().any(|g| *g != gaps[1]),
        "the waits vary: {gaps:?}"
    );
    assert_eq!(run(), (times, log), "the same seed gives the same run");
}

#[test]
fn addresses_fail_over_in_order_and_return_to_the_first() {
    for (round_robin, after_loss) in [(false, 0), (true, 2)] {
        let mut b = bridge(&["gone", "b", "b"], V5, vec![]);
        b.round_robin = round_robin;
        let mut p = pair_with(b);
        p.advance_secs(5);
        let tried: Vec<(usize, bool)> = p.dials.iter().map(|d| (d.address, d.answered)).collect();
        assert_eq!(tried, [(0, false), (1, true)]);
        p.cut();
        p.advance_secs(5);
        assert_eq!(p.dials[2].address, after_loss, "round_robin {round_robin}");
    }
}

#[test]
fn idle_link_pings_and_a_silent_remote_times_out() {
    let mut b = bridge(&["b"], V3_1_1, vec![]);
    b.keepalive_secs = 10;
    let mut p = pair_with(b);
    let conn_on_b = p.wires[0].inn;
    // B sees a PINGREQ every 10 s of silence and answers; the link stays up.
    p.advance_secs(35);
    assert_eq!(p.dials.len(), 1, "no redial while the pings are answered");
    // PINGREQ counted as received on B: its own keep alive (15 s) never fired.
    assert!(!p.b.is_closed(conn_on_b));
    // B's answers stop reaching A: A gives up after 1.5 keep alive periods and redials.
    // The last PINGRESP A saw came at 30 s, so it closes the link at 45 s.
    p.stall();
    p.advance_secs(9);
    assert_eq!((p.wires.len(), p.dials.len()), (1, 1));
    p.advance_secs(2);
    assert_eq!(
        (p.wires.len(), p.dials.len()),
        (0, 1),
        "closed at 1.5 keep alive"
    );
    p.advance_secs(5);
    assert_eq!(
        p.dials.len(),
        2,
        "redialed after the timeout and the backoff"
    );
    assert_eq!(p.wires.len(), 1);
}

#[test]
fn notifications_report_the_link_state_here_and_on_the_remote() {
    let mut b = bridge(&["b"], V3_1_1, vec![]);
    b.notifications = true;
    let topic = b.notification_topic.clone();
    let mut p = pair_with(b);
    let watch_a = p.a.client(V5, "wa");
    p.a.send(watch_a, &subscribe(1, &topic, QoS::AtLeastOnce));
    let watch_b = p.b.client(V5, "wb");
    p.b.send(watch_b, &subscribe(1, &topic, QoS::AtLeastOnce));
    let ga = p.a.recv(watch_a);
    assert_eq!(payloads(&ga), ["1"]);
    assert!(publishes(&ga)[0].retain);
    let gb = p.b.recv(watch_b);
    assert_eq!(payloads(&gb), ["1"]);
    assert!(publishes(&gb)[0].retain);
    // The link dies without a word: B publishes the bridge's will, A its own "0".
    ack_all(&mut p.a, watch_a, &ga);
    ack_all(&mut p.b, watch_b, &gb);
    p.cut();
    assert_eq!(payloads(&recv_acking(&mut p, Side::A, watch_a)), ["0"]);
    assert_eq!(payloads(&recv_acking(&mut p, Side::B, watch_b)), ["0"]);
    p.advance_secs(5);
    assert_eq!(payloads(&recv_acking(&mut p, Side::A, watch_a)), ["1"]);
    assert_eq!(payloads(&recv_acking(&mut p, Side::B, watch_b)), ["1"]);
}

#[test]
fn local_only_notifications_leave_the_remote_alone() {
    let mut b = bridge(&["b"], V5, vec![]);
    b.notifications = true;
    b.notifications_local_only = true;
    let topic = b.notification_topic.clone();
    let mut p = pair_with(b);
    let watch_b = p.b.client(V5, "wb");
    p.b.send(watch_b, &subscribe(1, &topic, QoS::AtLeastOnce));
    assert_eq!(payloads(&p.b.recv(watch_b)), Vec::<String>::new());
    p.cut();
    p.b.recv_none(watch_b);
    let watch_a = p.a.client(V5, "wa");
    p.a.send(watch_a, &subscribe(1, &topic, QoS::AtLeastOnce));
    assert_eq!(payloads(&p.a.recv(watch_a)), ["0"]);
}

#[test]
fn shutdown_tells_the_remote_the_bridge_is_down_and_disconnects() {
    let mut b = bridge(&["b"], V5, vec![]);
    b.notifications = true;
    let topic = b.notification_topic.clone();
    let mut p = pair_with(b);
    let watch_b = p.b.client(V5, "wb");
    p.b.send(watch_b, &subscribe(1, &topic, QoS::AtLeastOnce));
    let got = recv_acking(&mut p, Side::B, watch_b);
    assert_eq!(payloads(&got), ["1"]);
    p.a.input(midge_core::broker::Input::Shutdown);
    p.pump();
    // "0" from the bridge, then DISCONNECT: no will, so exactly one "0".
    assert_eq!(payloads(&p.b.recv(watch_b)), ["0"]);
    assert!(p.wires.is_empty());
    p.advance_secs(60);
    assert_eq!(p.dials.len(), 1, "no redial after shutdown");
}

#[test]
fn a_refusing_remote_is_retried_after_the_backoff() {
    let mut b = bridge(&["b"], V3_1_1, vec![]);
    b.keepalive_secs = 600;
    let remote = Config {
        max_keepalive: Some(60),
        ..Config::default()
    };
    let mut p = Pair::new(with_bridge(b), remote);
    // B refuses the CONNECT (keep alive above its maximum); A closes and retries.
    assert!(p.wires.is_empty());
    p.advance_secs(12);
    assert_eq!(refused_dial_times(&p), [0, 5000, 10000]);
    assert!(p.dials.iter().all(|d| d.answered));
    assert_eq!(p.a.broker.stats().clients_connected, 0);
}

/// The test plays the remote broker by hand.
fn scripted(version: ProtocolVersion) -> (World, ConnId) {
    let mut w = World::new(with_bridge(bridge(
        &["r"],
        version,
        vec![line("in/#", BridgeDirection::In, QoS::AtLeastOnce, "", "")],
    )));
    w.drain();
    assert_eq!(w.dials, [(B0, 0)]);
    w.dials.clear();
    let conn = w.dialed(B0, version);
    let got = w.recv(conn);
    let Some(Packet::Connect(c)) = got.first() else {
        panic!("expected CONNECT, got {got:?}");
    };
    assert_eq!(&*c.client_id, "bridge-a");
    assert!(!c.clean_start);
    // try_private: the protocol level's top bit on 3.1.x only.
    assert_eq!(c.bridge, !version.is_v5());
    (w, conn)
}

fn connack(reason: ConnectReason) -> Packet {
    Packet::from(ConnAck {
        session_present: false,
        reason,
        properties: ConnAckProperties::default(),
    })
}

#[test]
fn the_connect_says_what_the_configuration_asks() {
    scripted(V3_1_1);
    let mut cfg = bridge(&["r"], V5, vec![]);
    cfg.notifications = true;
    cfg.remote_username = Some("u".into());
    cfg.remote_password = Some(b"p".to_vec());
    let mut w = World::new(with_bridge(cfg));
    w.drain();
    let conn = w.dialed(B0, V5);
    let got = w.recv(conn);
    let Some(Packet::Connect(c)) = got.first() else {
        panic!("expected CONNECT, got {got:?}");
    };
    assert!(!c.bridge, "MQTT 5 uses no local, not the protocol bit");
    assert_eq!(c.properties.session_expiry_interval, Some(u32::MAX));
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.username.as_deref(), Some("u"));
    let will = c.will.as_ref().expect("a will for notifications");
    assert_eq!((&will.payload[..], will.retain), (&b"0"[..], true));
}

#[test]
fn a_refused_connack_closes_the_link() {
    let (mut w, conn) = scripted(V5);
    w.send(conn, &connack(ConnectReason::NotAuthorized));
    assert!(w.is_closed(conn));
    w.advance_secs(5);
    assert_eq!(w.dials, [(B0, 0)], "dials again after the backoff");
}

#[test]
fn malformed_bytes_from_the_remote_close_the_link_with_a_reason() {
    let (mut w, conn) = scripted(V5);
    w.send(conn, &connack(ConnectReason::Success));
    let got = w.recv(conn);
    assert!(matches!(got.first(), Some(Packet::Subscribe(_))), "{got:?}");
    // A PUBLISH with QoS 3.
    w.send_raw(conn, &[0x36, 0x03, 0x00, 0x01, b'x']);
    assert!(w.is_closed(conn));
    let got = without_reason_strings(w.recv(conn));
    assert_eq!(
        got,
        [Packet::Disconnect(Disconnect::new(
            DisconnectReason::MalformedPacket
        ))]
    );
    w.advance_secs(5);
    assert_eq!(w.dials, [(B0, 0)]);
}

#[test]
fn client_packets_from_the_remote_are_protocol_errors() {
    for bad in [
        subscribe(1, "x", QoS::AtMostOnce),
        Packet::PingReq,
        Packet::from(connect(V3_1_1, "x")),
    ] {
        let (mut w, conn) = scripted(V3_1_1);
        w.send(conn, &connack(ConnectReason::Success));
        w.recv(conn);
        w.send(conn, &bad);
        assert!(w.is_closed(conn), "{bad:?}");
    }
    // Before CONNACK anything else closes it too.
    let (mut w, conn) = scripted(V3_1_1);
    w.send(conn, &publish("in/x", b"early", QoS::AtMostOnce, 0));
    assert!(w.is_closed(conn));
}

#[test]
fn a_remote_that_never_answers_connect_times_out() {
    let (mut w, conn) = scripted(V3_1_1);
    w.advance_secs(9);
    assert!(!w.is_closed(conn));
    w.advance_secs(2);
    assert!(w.is_closed(conn), "closed at the connect timeout");
}

/// The first PINGREQ is due a keep alive period after the last packet the bridge sent (here its
/// CONNECT), not after the CONNACK: a remote slow to answer would otherwise hear nothing for
/// longer than the keep alive [MQTT-3.1.2-23] (3.1.1) [MQTT-3.1.2-22] (5.0), and past one and
/// a half periods it may close the link [MQTT-3.1.2-24].
#[test]
fn the_first_pingreq_counts_from_the_connect_when_the_connack_is_slow() {
    let mut cfg = bridge(&["r"], V3_1_1, vec![]);
    cfg.keepalive_secs = 10;
    let (mut w, conn) = scripted_with(cfg, false);
    w.advance_secs(6);
    w.send(conn, &connack(ConnectReason::Success));
    w.recv_none(conn);
    w.advance_ms(3_999);
    w.recv_none(conn);
    w.advance_ms(1);
    assert_eq!(w.recv(conn), [Packet::PingReq], "10 s after the CONNECT");
}

/// A PINGREQ that does not fit the remote's Maximum Packet Size (1 byte) cannot be sent
/// [MQTT-3.2.2-15] (5.0): the link closes when it is due, not at whatever input comes next (a
/// timer's reply too large waited for one).
#[test]
fn a_pingreq_larger_than_the_remotes_maximum_closes_the_link_when_due() {
    let mut cfg = bridge(&["r"], V5, vec![]);
    cfg.keepalive_secs = 10;
    let (mut w, conn) = scripted_with(cfg, false);
    // CONNACK, success, Maximum Packet Size 1.
    w.send_raw(
        conn,
        &[0x20, 0x08, 0x00, 0x00, 0x05, 0x27, 0x00, 0x00, 0x00, 0x01],
    );
    w.recv_none(conn);
    w.advance_ms(9_999);
    assert!(!w.is_closed(conn));
    // One wake-up at the deadline, as a driver gives it.
    w.now = w.now.plus_millis(1);
    w.tick();
    assert!(w.is_closed(conn), "closed when the PINGREQ was due");
    w.recv_none(conn);
}

#[test]
fn remote_receive_maximum_limits_the_bridge_window() {
    let mut cfg = bridge(
        &["r"],
        V5,
        vec![line("#", BridgeDirection::Out, QoS::AtLeastOnce, "", "")],
    );
    cfg.topics[0].pattern = "o/#".into();
    let mut w = World::new(with_bridge(cfg));
    w.drain();
    let conn = w.dialed(B0, V5);
    w.recv(conn);
    let mut ack = ConnAck {
        session_present: true,
        reason: ConnectReason::Success,
        properties: ConnAckProperties::default(),
    };
    ack.properties.receive_maximum = std::num::NonZeroU16::new(2);
    w.send(conn, &Packet::from(ack));
    let publisher = w.client(V5, "p");
    for i in 0..5u16 {
        w.send(publisher, &publish("o/x", b"m", QoS::AtLeastOnce, i + 1));
    }
    let sent = w.recv(conn);
    assert_eq!(publishes(&sent).len(), 2, "{sent:?}");
    let id = publishes(&sent)[0].qos_pid.packet_id().unwrap();
    w.send(conn, &puback(id));
    assert_eq!(publishes(&w.recv(conn)).len(), 1);
}

#[test]
fn a_client_may_not_take_the_bridge_s_local_session() {
    let mut p = pair_with(bridge(&["b"], V5, vec![]));
    let (_, ack) = p.a.try_connect(connect(V5, "local.bridge-a"));
    assert_eq!(ack.reason, ConnectReason::ClientIdentifierNotValid);
}

#[test]
fn messages_published_while_the_link_is_down_go_once_it_is_up() {
    let b = bridge(
        &["b"],
        V3_1_1,
        vec![line("q/#", BridgeDirection::Out, QoS::ExactlyOnce, "", "")],
    );
    let mut p = pair_with(b);
    let sub = p.b.client(V5, "sb");
    p.b.subscribe(sub, "q/#", QoS::ExactlyOnce);
    p.cut();
    p.down.insert("b".into());
    let pa = p.a.client(V5, "pa");
    for (i, m) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
        let n = i as u16 + 1;
        p.a.send(
            pa,
            &publish(
                "q/x",
                Box::leak(m.to_vec().into_boxed_slice()),
                QoS::AtLeastOnce,
                n,
            ),
        );
    }
    p.advance_secs(12);
    p.b.recv_none(sub);
    p.down.clear();
    p.advance_secs(5);
    let got = p.b.recv(sub);
    assert_eq!(payloads(&got), ["one", "two", "three"]);
}

#[test]
fn a_clean_local_session_drops_what_is_published_while_the_link_is_down() {
    let mut b = bridge(
        &["b"],
        V3_1_1,
        vec![line("q/#", BridgeDirection::Out, QoS::AtLeastOnce, "", "")],
    );
    b.local_clean_session = true;
    let mut p = pair_with(b);
    let sub = p.b.client(V5, "sb");
    p.b.subscribe(sub, "q/#", QoS::AtLeastOnce);
    p.cut();
    p.down.insert("b".into());
    let pa = p.a.client(V5, "pa");
    p.a.send(pa, &publish("q/x", b"lost", QoS::AtLeastOnce, 1));
    p.down.clear();
    p.advance_secs(5);
    p.b.recv_none(sub);
    p.a.send(pa, &publish("q/x", b"kept", QoS::AtLeastOnce, 2));
    p.pump();
    assert_eq!(payloads(&p.b.recv(sub)), ["kept"]);
}

#[test]
fn the_local_session_and_its_queue_survive_a_restart() {
    let b = bridge(
        &["b"],
        V5,
        vec![line("q/#", BridgeDirection::Out, QoS::AtLeastOnce, "", "")],
    );
    let mut p = Pair::new(persistent_config(Some(b)), Config::default());
    let sub = p.b.client(V5, "sb");
    p.b.subscribe(sub, "q/#", QoS::AtLeastOnce);
    p.down.insert("b".into());
    p.cut();
    let pa = p.a.client(V5, "pa");
    p.a.send(pa, &publish("q/x", b"kept", QoS::AtLeastOnce, 1));
    assert_eq!(p.a.recv(pa), [puback(pid(1))]);
    p.crash(Side::A);
    p.down.clear();
    p.advance_secs(5);
    assert_eq!(payloads(&p.b.recv(sub)), ["kept"]);
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let run = || {
        let mut p = pair_with(bridge(
            &["b"],
            V5,
            vec![line(
                "#",
                BridgeDirection::Both,
                QoS::ExactlyOnce,
                "l/",
                "r/",
            )],
        ));
        let sa = p.a.client(V5, "sa");
        p.a.subscribe(sa, "l/#", QoS::ExactlyOnce);
        let pb = p.b.client(V5, "pb");
        for i in 0..10u16 {
            p.b.send(pb, &publish("r/x", b"m", QoS::ExactlyOnce, i + 1));
        }
        p.advance_secs(100);
        (p.a.log.clone(), p.b.log.clone())
    };
    assert_eq!(run(), run());
}

#[test]
fn no_bridges_means_no_dials() {
    let mut w = World::default();
    w.client(V5, "x");
    assert!(w.dials.is_empty());
    assert!(
        !w.log
            .iter()
            .any(|a| matches!(a, midge_core::broker::Action::Dial { .. }))
    );
}

mod crashes {
    //! Crashes of either broker in the middle of QoS 2 flows across the bridge: every message
    //! published reaches the subscriber on the other side exactly once.
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// A subscriber that completes its QoS 2 flows and counts each message once per packet id
    /// flow, as a client does [MQTT-4.3.3-2].
    struct Receiver {
        conn: ConnId,
        awaiting_rel: BTreeSet<u16>,
        got: BTreeMap<String, usize>,
    }

    impl Receiver {
        fn serve(&mut self, w: &mut World) {
            let packets = w.recv(self.conn);
            for p in &packets {
                match p {
                    Packet::Publish(p) => {
                        let id = p.qos_pid.packet_id().expect("QoS 2").get();
                        if self.awaiting_rel.insert(id) {
                            let text = String::from_utf8_lossy(&p.payload).into_owned();
                            *self.got.entry(text).or_default() += 1;
                        }
                        w.send(self.conn, &pubrec(pid(id)));
                    }
                    Packet::PubRel(r) => {
                        self.awaiting_rel.remove(&r.packet_id.get());
                        w.send(self.conn, &pubcomp(r.packet_id));
                    }
                    _ => {}
                }
            }
        }
    }

    fn persistent(id: &str) -> midge_core::codec::Connect {
        let mut c = connect(V5, id);
        c.clean_start = false;
        c.properties.session_expiry_interval = Some(u32::MAX);
        c
    }

    fn run(
        messages: usize,
        steps: Vec<usize>,
        crash_at: usize,
        crash: Side,
        version: ProtocolVersion,
    ) {
        let b = bridge(
            &["b"],
            version,
            vec![line(
                "q/#",
                BridgeDirection::Out,
                QoS::ExactlyOnce,
                "",
                "r/",
            )],
        );
        let mut p = Pair::new(persistent_config(Some(b)), persistent_config(None));
        let (sub, _) = p.b.connect(persistent("sub"));
        p.b.subscribe(sub, "r/q/#", QoS::ExactlyOnce);
        let mut rx = Receiver {
            conn: sub,
            awaiting_rel: BTreeSet::new(),
            got: BTreeMap::new(),
        };
        // Published and acknowledged on A while the network waits.
        let pa = p.a.client(V5, "pa");
        for i in 0..messages {
            let payload: &'static [u8] = Box::leak(format!("m{i}").into_bytes().into_boxed_slice());
            p.a.send(pa, &publish("q/x", payload, QoS::ExactlyOnce, i as u16 + 1));
            let got = p.a.recv(pa);
            assert!(matches!(got.as_slice(), [Packet::PubRec(_)]), "{got:?}");
            p.a.send(pa, &pubrel(pid(i as u16 + 1)));
            p.a.recv(pa);
        }
        // The disks of both sides lag behind: only what a step made durable survives.
        p.a.auto_durable = false;
        p.b.auto_durable = false;
        for (n, choice) in steps.iter().enumerate() {
            if n == crash_at {
                break;
            }
            match choice % 4 {
                0 => p.a.make_durable(),
                1 => p.b.make_durable(),
                _ => {
                    p.step(*choice / 4);
                }
            }
            rx.serve(&mut p.b);
        }
        p.crash(crash);
        p.a.auto_durable = true;
        p.b.auto_durable = true;
        p.a.make_durable();
        p.b.make_durable();
        if crash == Side::B {
            let conn = p.b.open(V5);
            p.b.send(conn, &Packet::from(persistent("sub")));
            rx.conn = conn;
        }
        for _ in 0..10 {
            p.pump();
            rx.serve(&mut p.b);
            p.advance_secs(6);
            rx.serve(&mut p.b);
        }
        let expect: BTreeMap<String, usize> = (0..messages).map(|i| (format!("m{i}"), 1)).collect();
        assert_eq!(rx.got, expect);
    }

    #[test]
    fn crash_of_either_side_without_steps_delivers_once() {
        for side in [Side::A, Side::B] {
            run(3, vec![], 0, side, V5);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn qos2_is_exactly_once_across_crashes(
            steps in proptest::collection::vec(0usize..64, 0..80),
            crash_at in 0usize..80,
            crash_b in any::<bool>(),
            v5 in any::<bool>(),
        ) {
            let side = if crash_b { Side::B } else { Side::A };
            run(4, steps, crash_at, side, if v5 { V5 } else { V3_1_1 });
        }
    }
}

/// midge as the remote end of a Mosquitto-style 3.1.1 bridge: a client whose CONNECT sets the
/// top bit of the protocol level gets no local and retain as published on its subscriptions.
#[test]
fn a_try_private_client_gets_no_local_and_retain_as_published() {
    for (bridge_bit, echoed) in [(true, false), (false, true)] {
        let mut w = World::default();
        let mut c = connect(V3_1_1, "remote-bridge");
        c.bridge = bridge_bit;
        let (conn, _) = w.connect(c);
        w.subscribe(conn, "t/#", QoS::AtLeastOnce);
        w.send(conn, &publish_retained("t/1", b"own", QoS::AtMostOnce, 0));
        assert_eq!(!w.recv(conn).is_empty(), echoed, "bridge bit {bridge_bit}");
        let other = w.client(V3_1_1, "other");
        w.send(other, &publish_retained("t/2", b"x", QoS::AtMostOnce, 0));
        let got = w.recv(conn);
        assert_eq!(publishes(&got).len(), 1);
        // RETAIN is kept only for the bridge [MQTT-3.3.1-9] (3.1.1).
        assert_eq!(publishes(&got)[0].retain, bridge_bit);
    }
}

/// A remote that keeps no retained messages [MQTT-3.2.2-14] (5.0) gets none from the bridge.
#[test]
fn retain_is_cleared_towards_a_remote_without_retained_messages() {
    let mut w = World::new(with_bridge(bridge(
        &["r"],
        V5,
        vec![line("o/#", BridgeDirection::Out, QoS::AtMostOnce, "", "")],
    )));
    w.drain();
    let conn = w.dialed(B0, V5);
    w.recv(conn);
    let mut ack = ConnAck {
        session_present: false,
        reason: ConnectReason::Success,
        properties: ConnAckProperties::default(),
    };
    ack.properties.retain_available = Some(false);
    w.send(conn, &Packet::from(ack));
    let publisher = w.client(V5, "p");
    w.send(
        publisher,
        &publish_retained("o/x", b"m", QoS::AtMostOnce, 0),
    );
    let sent = w.recv(conn);
    let pubs = publishes(&sent);
    assert_eq!(pubs.len(), 1, "{sent:?}");
    assert!(!pubs[0].retain);
}

#[test]
fn a_bridge_without_an_address_never_dials() {
    let mut b = bridge(&[], V5, vec![]);
    b.addresses.clear();
    let mut w = World::new(with_bridge(b));
    w.drain();
    w.advance_secs(60);
    assert!(w.dials.is_empty());
}

/// A broker A bridged to a remote B whose listener takes QoS 1 at most, as MQTT 5 CONNACK tells
/// the bridge.
fn pair_with_qos1_remote(b: BridgeConfig) -> Pair {
    let remote = Config {
        listener_max_qos: [(midge_core::broker::ListenerId(0), QoS::AtLeastOnce)].into(),
        ..Config::default()
    };
    Pair::new(with_bridge(b), remote)
}

/// A QoS 2 `out` line towards a remote limited to QoS 1 sends at QoS 1 [MQTT-3.2.2-11] (5.0):
/// the remote never sees QoS 2, so it never closes the link with 0x9B and the bridge does not
/// loop redialing. The `in` line is subscribed at QoS 1 and carries the remote's messages.
#[test]
fn a_remote_maximum_qos_caps_what_the_bridge_sends_mqtt_3_2_2_11() {
    let mut p = pair_with_qos1_remote(bridge(
        &["b"],
        V5,
        vec![
            line("up/#", BridgeDirection::Out, QoS::ExactlyOnce, "", ""),
            line("down/#", BridgeDirection::In, QoS::ExactlyOnce, "", ""),
        ],
    ));
    let sub_b = p.b.client(V5, "sb");
    p.b.subscribe(sub_b, "up/#", QoS::AtLeastOnce);
    let sub_a = p.a.client(V5, "sa");
    p.a.subscribe(sub_a, "down/#", QoS::ExactlyOnce);
    let pub_a = p.a.client(V5, "pa");
    for i in 1..=3u16 {
        p.a.send(pub_a, &publish("up/x", b"u", QoS::ExactlyOnce, i));
        p.a.recv(pub_a);
        p.a.send(pub_a, &pubrel(pid(i)));
    }
    p.pump();
    let got = recv_acking(&mut p, Side::B, sub_b);
    assert_eq!(payloads(&got), ["u", "u", "u"], "{got:?}");
    let pub_b = p.b.client(V5, "pb");
    p.b.send(pub_b, &publish("down/y", b"d", QoS::AtLeastOnce, 1));
    p.pump();
    let got = recv_acking(&mut p, Side::A, sub_a);
    assert_eq!(payloads(&got), ["d"]);
    assert_eq!(publishes(&got)[0].qos_pid.qos(), QoS::AtLeastOnce);
    p.advance_secs(60);
    assert_eq!(p.dials.len(), 1, "the link stayed up: {:?}", p.dials);
    assert_eq!(p.wires.len(), 1);
    // Nothing stays in flight on the bridge: every QoS 1 flow was completed by PUBACK.
    p.cut();
    p.advance_secs(6);
    p.b.recv_none(sub_b);
}

/// A remote played by the test, with a bridge of these topics; returns the link after CONNECT.
fn scripted_with(cfg: BridgeConfig, persistence: bool) -> (World, ConnId) {
    let version = cfg.protocol;
    let mut w = World::new(Config {
        persistence,
        ..with_bridge(cfg)
    });
    w.drain();
    w.dials.clear();
    let conn = w.dialed(B0, version);
    let got = w.recv(conn);
    assert!(matches!(got.first(), Some(Packet::Connect(_))), "{got:?}");
    (w, conn)
}

fn connack_max_qos(max_qos: Option<QoS>) -> Packet {
    let mut ack = ConnAck {
        session_present: true,
        reason: ConnectReason::Success,
        properties: ConnAckProperties::default(),
    };
    ack.properties.maximum_qos = max_qos;
    Packet::from(ack)
}

/// The link comes up again after the backoff, with this CONNACK; returns the new link and what
/// the bridge sent on it after the CONNACK.
fn redial(w: &mut World, ack: &Packet) -> (ConnId, Vec<Packet>) {
    w.advance_secs(5);
    assert_eq!(w.dials, [(B0, 0)]);
    w.dials.clear();
    let conn = w.dialed(B0, V5);
    w.recv(conn);
    w.send(conn, ack);
    let got = w.recv(conn);
    (conn, got)
}

/// The SUBSCRIBE asks for no more than the remote's Maximum QoS, and what goes out is sent at
/// it: QoS 1 with a packet id, or QoS 0 without one [MQTT-3.2.2-11] (5.0).
#[test]
fn the_bridge_subscribes_and_publishes_at_most_at_the_remote_maximum_qos() {
    for max in [QoS::AtLeastOnce, QoS::AtMostOnce] {
        let (mut w, conn) = scripted_with(
            bridge(
                &["r"],
                V5,
                vec![
                    line("in/#", BridgeDirection::In, QoS::ExactlyOnce, "", ""),
                    line("o/#", BridgeDirection::Out, QoS::ExactlyOnce, "", ""),
                ],
            ),
            false,
        );
        w.send(conn, &connack_max_qos(Some(max)));
        let got = w.recv(conn);
        let Some(Packet::Subscribe(s)) = got.first() else {
            panic!("expected SUBSCRIBE, got {got:?}");
        };
        assert_eq!(s.subscriptions[0].options.qos, max, "{max:?}");
        let publisher = w.client(V5, "p");
        w.send(publisher, &publish("o/x", b"m", QoS::ExactlyOnce, 1));
        let sent = w.recv(conn);
        let pubs = publishes(&sent);
        assert_eq!(pubs.len(), 1, "{sent:?}");
        assert_eq!(pubs[0].qos_pid.qos(), max, "{max:?}");
        if let Some(id) = pubs[0].qos_pid.packet_id() {
            w.send(conn, &puback(id));
        }
        // The flow is complete: a new link resends nothing.
        w.peer_close(conn);
        let (_, again) = redial(&mut w, &connack_max_qos(Some(max)));
        assert!(publishes(&again).is_empty(), "{max:?}: {again:?}");
    }
}

/// A QoS 2 message in flight when the link went, resent to a remote that now takes QoS 1 at
/// most, goes at QoS 1 under its packet id and is done with PUBACK; to one that takes QoS 0, at
/// QoS 0, and the flow ends at once.
#[test]
fn a_qos2_message_in_flight_is_resent_at_a_lower_remote_maximum_qos() {
    for max in [QoS::AtLeastOnce, QoS::AtMostOnce] {
        let (mut w, conn) = scripted_with(
            bridge(
                &["r"],
                V5,
                vec![line("o/#", BridgeDirection::Out, QoS::ExactlyOnce, "", "")],
            ),
            false,
        );
        w.send(conn, &connack_max_qos(None));
        let publisher = w.client(V5, "p");
        w.send(publisher, &publish("o/x", b"m", QoS::ExactlyOnce, 1));
        let sent = w.recv(conn);
        let first = publishes(&sent)[0].clone();
        assert_eq!(first.qos_pid.qos(), QoS::ExactlyOnce);
        // No PUBREC: the link goes.
        w.peer_close(conn);
        let (conn, got) = redial(&mut w, &connack_max_qos(Some(max)));
        let pubs = publishes(&got);
        assert_eq!(pubs.len(), 1, "{max:?}: {got:?}");
        assert_eq!(pubs[0].qos_pid.qos(), max);
        assert_eq!(&pubs[0].payload[..], b"m");
        if max == QoS::AtLeastOnce {
            assert_eq!(pubs[0].qos_pid.packet_id(), first.qos_pid.packet_id());
            assert!(pubs[0].dup);
            w.send(conn, &puback(pubs[0].qos_pid.packet_id().unwrap()));
        } else {
            assert!(!pubs[0].dup, "DUP is 0 at QoS 0 [MQTT-3.3.1-2] (5.0)");
        }
        w.peer_close(conn);
        let (_, again) = redial(&mut w, &connack_max_qos(None));
        assert!(publishes(&again).is_empty(), "{max:?}: {again:?}");
    }
}

/// With persistence, a message queued at QoS 1 and sent at QoS 0 to a remote that takes no
/// more leaves the log's queue: after a restart it is not sent again.
#[test]
fn a_message_sent_at_qos_0_is_not_recovered_as_queued() {
    let cfg = bridge(
        &["r"],
        V5,
        vec![line("o/#", BridgeDirection::Out, QoS::AtLeastOnce, "", "")],
    );
    let (mut w, conn) = scripted_with(cfg.clone(), true);
    w.peer_close(conn);
    let publisher = w.client(V5, "p");
    w.send(publisher, &publish("o/x", b"m", QoS::AtLeastOnce, 1));
    assert_eq!(w.recv(publisher), [puback(pid(1))]);
    let (conn, got) = redial(&mut w, &connack_max_qos(Some(QoS::AtMostOnce)));
    assert_eq!(payloads(&got), ["m"]);
    assert_eq!(publishes(&got)[0].qos_pid.qos(), QoS::AtMostOnce);
    w.peer_close(conn);
    let config = Config {
        persistence: true,
        ..with_bridge(cfg)
    };
    let mut w = World::recovered(config, &w.disk, w.now);
    w.drain();
    w.dials.clear();
    let conn = w.dialed(B0, V5);
    w.recv(conn);
    w.send(conn, &connack_max_qos(None));
    let got = w.recv(conn);
    assert!(publishes(&got).is_empty(), "{got:?}");
}

/// A late subscriber on `side`'s view of the retained message on `topic`: its payload and
/// RETAIN flag, or `None`.
fn retained_on(p: &mut Pair, side: Side, topic: &str) -> Option<(String, bool)> {
    let w = p.world(side);
    let late = w.client(V5, "late-reader");
    w.send(late, &subscribe(1, topic, QoS::AtMostOnce));
    let got = w.recv(late);
    w.send(late, &disconnect());
    let pubs = publishes(&got);
    assert!(pubs.len() <= 1, "{got:?}");
    pubs.first()
        .map(|p| (String::from_utf8_lossy(&p.payload).into_owned(), p.retain))
}

/// Retained messages set on A before its bridge existed reach B when the bridge comes up, as
/// retained messages, at the lower of their QoS and the line's; what is not bridged stays.
#[test]
fn retained_messages_set_before_the_bridge_came_up_reach_the_remote() {
    let mut p = Pair::new(persistent_config(None), Config::default());
    let pa = p.a.client(V5, "pa");
    p.a.send(pa, &publish_retained("state/1", b"on", QoS::AtLeastOnce, 1));
    p.a.send(pa, &publish_retained("state/2", b"off", QoS::AtMostOnce, 0));
    p.a.send(pa, &publish_retained("other/1", b"x", QoS::AtMostOnce, 0));
    let sub_b = p.b.client(V5, "sb");
    p.b.subscribe(sub_b, "#", QoS::ExactlyOnce);
    // A restarts with a bridge of `state/#` configured.
    p.a_config.bridges = vec![bridge(
        &["b"],
        V5,
        vec![line(
            "state/#",
            BridgeDirection::Out,
            QoS::ExactlyOnce,
            "",
            "site/",
        )],
    )];
    p.crash(Side::A);
    assert_eq!(p.wires.len(), 1);
    let got = recv_acking(&mut p, Side::B, sub_b);
    let pubs = publishes(&got);
    let seen: Vec<(&str, &[u8], QoS)> = pubs
        .iter()
        .map(|p| (&*p.topic, &p.payload[..], p.qos_pid.qos()))
        .collect();
    assert_eq!(
        seen,
        [
            ("site/state/1", &b"on"[..], QoS::AtLeastOnce),
            ("site/state/2", &b"off"[..], QoS::AtMostOnce)
        ]
    );
    // Retain as published: they are retained on B.
    assert_eq!(
        retained_on(&mut p, Side::B, "site/state/1"),
        Some(("on".into(), true))
    );
    assert_eq!(retained_on(&mut p, Side::B, "site/other/1"), None);
}

/// As in Mosquitto, the retained messages go at every connect of the link, not only with a new
/// local session: the remote may have lost them, and the local queue may have dropped a change
/// (QoS 0 while the link was down is not queued). A remote that had them gets them again.
#[test]
fn retained_messages_go_to_the_remote_at_every_connect() {
    for local_clean_session in [false, true] {
        let mut b = bridge(
            &["b"],
            V3_1_1,
            vec![line(
                "state/#",
                BridgeDirection::Out,
                QoS::AtLeastOnce,
                "",
                "",
            )],
        );
        b.local_clean_session = local_clean_session;
        let mut p = pair_with(b);
        let sub_b = p.b.client(V5, "sb");
        p.b.subscribe(sub_b, "state/#", QoS::AtLeastOnce);
        let pa = p.a.client(V5, "pa");
        p.a.send(pa, &publish_retained("state/1", b"v1", QoS::AtMostOnce, 0));
        p.pump();
        assert_eq!(payloads(&recv_acking(&mut p, Side::B, sub_b)), ["v1"]);
        // A QoS 0 change while the link is down is not queued for it.
        p.down.insert("b".into());
        p.cut();
        p.a.send(pa, &publish_retained("state/1", b"v2", QoS::AtMostOnce, 0));
        p.down.clear();
        p.advance_secs(5);
        assert_eq!(p.wires.len(), 1);
        assert_eq!(
            payloads(&recv_acking(&mut p, Side::B, sub_b)),
            ["v2"],
            "local_clean_session {local_clean_session}"
        );
        // And once more on the next connect, unchanged.
        p.cut();
        p.advance_secs(5);
        assert_eq!(payloads(&recv_acking(&mut p, Side::B, sub_b)), ["v2"]);
    }
}

/// Queued while the link was down, an older retained value goes before the retained one, so
/// the remote ends with the newest.
#[test]
fn the_remote_ends_with_the_newest_retained_value() {
    let mut p = pair_with(bridge(
        &["b"],
        V5,
        vec![line(
            "state/#",
            BridgeDirection::Out,
            QoS::AtLeastOnce,
            "",
            "",
        )],
    ));
    let sub_b = p.b.client(V5, "sb");
    p.b.subscribe(sub_b, "state/#", QoS::AtLeastOnce);
    p.down.insert("b".into());
    p.cut();
    let pa = p.a.client(V5, "pa");
    p.a.send(
        pa,
        &publish_retained("state/1", b"old", QoS::AtLeastOnce, 1),
    );
    p.a.send(pa, &publish_retained("state/1", b"new", QoS::AtMostOnce, 0));
    p.down.clear();
    p.advance_secs(5);
    assert_eq!(
        payloads(&recv_acking(&mut p, Side::B, sub_b)),
        ["old", "new"]
    );
    assert_eq!(
        retained_on(&mut p, Side::B, "state/1"),
        Some(("new".into(), true))
    );
}

/// On a topic that crosses both ways the local retained copy may be an old one from the
/// remote: it is not sent back at connect, where it would overwrite the remote's newer value.
#[test]
fn retained_messages_from_the_remote_are_not_sent_back_at_connect() {
    let mut p = pair_with(bridge(
        &["b"],
        V5,
        vec![line(
            "state/#",
            BridgeDirection::Both,
            QoS::AtLeastOnce,
            "",
            "",
        )],
    ));
    let pb = p.b.client(V5, "pb");
    p.b.send(pb, &publish_retained("state/1", b"on", QoS::AtLeastOnce, 1));
    p.pump();
    assert_eq!(
        retained_on(&mut p, Side::A, "state/1"),
        Some(("on".into(), true))
    );
    p.down.insert("b".into());
    p.cut();
    p.b.send(
        pb,
        &publish_retained("state/1", b"off", QoS::AtLeastOnce, 2),
    );
    p.down.clear();
    p.advance_secs(5);
    assert_eq!(p.wires.len(), 1);
    assert_eq!(
        retained_on(&mut p, Side::B, "state/1"),
        Some(("off".into(), true))
    );
    assert_eq!(
        retained_on(&mut p, Side::A, "state/1"),
        Some(("off".into(), true))
    );
}

/// The bridge's own state topic, retained here, is not queued for the remote at connect: the
/// "0" stored while it was down would arrive after the "1" it sends as it comes up.
#[test]
fn the_bridge_s_own_state_is_not_sent_as_a_retained_message() {
    let mut b = bridge(
        &["b"],
        V5,
        vec![line(
            "$SYS/broker/connection/#",
            BridgeDirection::Out,
            QoS::AtLeastOnce,
            "",
            "",
        )],
    );
    b.notifications = true;
    let topic = b.notification_topic.clone();
    let mut p = pair_with(b);
    p.cut();
    p.advance_secs(5);
    assert_eq!(p.wires.len(), 1);
    assert_eq!(
        retained_on(&mut p, Side::B, &topic),
        Some(("1".into(), true))
    );
}

/// A retained message already waiting for the remote, queued or in flight, is not queued again
/// at the next connect: a link that keeps failing does not fill the queue with copies.
#[test]
fn retained_messages_are_not_queued_twice_by_a_failing_link() {
    let (mut w, conn) = scripted_with(
        bridge(
            &["r"],
            V5,
            vec![line("s/#", BridgeDirection::Out, QoS::AtLeastOnce, "", "")],
        ),
        false,
    );
    // A remote that takes one message at a time, and fails before acknowledging any.
    let mut ack = ConnAck {
        session_present: true,
        reason: ConnectReason::Success,
        properties: ConnAckProperties::default(),
    };
    ack.properties.receive_maximum = std::num::NonZeroU16::new(1);
    w.send(conn, &Packet::from(ack.clone()));
    w.recv(conn);
    let pa = w.client(V5, "pa");
    for (i, t) in ["s/1", "s/2", "s/3"].into_iter().enumerate() {
        w.send(
            pa,
            &publish_retained(t, b"v", QoS::AtLeastOnce, i as u16 + 1),
        );
    }
    assert_eq!(topics(&w.recv(conn)), ["s/1"]);
    w.peer_close(conn);
    let (conn, _) = redial(&mut w, &Packet::from(ack.clone()));
    w.peer_close(conn);
    let (conn, mut got) = redial(&mut w, &Packet::from(ack));
    let mut all = Vec::new();
    while let Some(id) = publishes(&got).first().and_then(|p| p.qos_pid.packet_id()) {
        all.extend(topics(&got));
        w.send(conn, &puback(id));
        got = w.recv(conn);
    }
    assert_eq!(all, ["s/1", "s/2", "s/3"]);
}

/// The counts `$SYS/broker/clients/...` publishes, on A: (total, connected, connections open).
fn client_counts(p: &Pair) -> (u64, u64, u64) {
    let s = p.a.broker.stats();
    (s.sessions, s.clients_connected, s.connections_open)
}

/// A bridge counts as a client, as Mosquitto's bridges do in its `$SYS` tree: a persistent
/// local session is a client from the start, connected while the link is up; a clean one is
/// a client only while the link is up. The counts come back to where they were when it goes.
#[test]
fn a_bridge_counts_as_a_client_while_its_session_exists() {
    for (local_clean_session, total_when_down) in [(false, 1), (true, 0)] {
        let mut b = bridge(
            &["b"],
            V5,
            vec![line("q/#", BridgeDirection::Out, QoS::AtLeastOnce, "", "")],
        );
        b.local_clean_session = local_clean_session;
        let mut p = pair_with(b);
        assert_eq!(client_counts(&p), (1, 1, 1), "clean {local_clean_session}");
        p.down.insert("b".into());
        p.cut();
        assert_eq!(
            client_counts(&p),
            (total_when_down, 0, 0),
            "clean {local_clean_session}"
        );
        // Refused dials leave no trace in the counts.
        p.advance_secs(11);
        assert_eq!(client_counts(&p), (total_when_down, 0, 0));
        p.down.clear();
        p.advance_secs(5);
        assert_eq!(client_counts(&p), (1, 1, 1), "clean {local_clean_session}");
        assert_eq!(p.a.broker.stats().clients_maximum, 1);
        p.a.input(midge_core::broker::Input::Shutdown);
        p.pump();
        assert_eq!(client_counts(&p).1, 0);
        assert_eq!(client_counts(&p).2, 0);
    }
}

/// `max_queued_messages` bounds what waits for the remote while the link is down; the rest is
/// dropped and counted, as for any session.
#[test]
fn max_queued_messages_bounds_the_bridge_queue() {
    let mut a = with_bridge(bridge(
        &["b"],
        V5,
        vec![line("q/#", BridgeDirection::Out, QoS::AtLeastOnce, "", "")],
    ));
    a.max_queued_messages = 2;
    let mut p = Pair::new(a, Config::default());
    let sub = p.b.client(V5, "sb");
    p.b.subscribe(sub, "q/#", QoS::AtLeastOnce);
    p.down.insert("b".into());
    p.cut();
    let pa = p.a.client(V5, "pa");
    for (i, m) in [&b"one"[..], b"two", b"three"].into_iter().enumerate() {
        let m: &'static [u8] = Box::leak(m.to_vec().into_boxed_slice());
        p.a.send(pa, &publish("q/x", m, QoS::AtLeastOnce, i as u16 + 1));
    }
    assert_eq!(p.a.broker.stats().dropped_queue_full, 1);
    p.down.clear();
    p.advance_secs(5);
    assert_eq!(payloads(&recv_acking(&mut p, Side::B, sub)), ["one", "two"]);
}

/// Shutdown while the bridge waits out its backoff or waits for its dial: nothing is dialed
/// afterwards, and a connection the driver makes for it anyway is closed at once.
#[test]
fn shutdown_stops_a_bridge_that_is_not_connected() {
    let mut w = World::new(with_bridge(bridge(&["r"], V5, vec![])));
    w.drain();
    assert_eq!(w.dials, [(B0, 0)]);
    w.dials.clear();
    w.input(midge_core::broker::Input::Shutdown);
    let conn = w.dialed(B0, V5);
    assert!(w.is_closed(conn));
    w.recv_none(conn);
    w.advance_secs(60);
    assert!(w.dials.is_empty());

    let mut w = World::new(with_bridge(bridge(&["r"], V5, vec![])));
    w.drain();
    w.dials.clear();
    w.input(midge_core::broker::Input::DialFailed { bridge: B0 });
    w.input(midge_core::broker::Input::Shutdown);
    w.advance_secs(60);
    assert!(w.dials.is_empty());
}

/// The bridge's will ("0", retained, QoS 1) is more than some MQTT 5 remotes take: one without
/// retained messages refuses it with CONNACK 0x9A [MQTT-3.2.2-13] (5.0), one limited to QoS 0
/// with 0x9B [MQTT-3.2.2-12] (5.0). The bridge learns from the refusal and its next CONNECT
/// carries a will the remote takes, instead of being refused forever.
#[test]
fn a_will_refused_by_the_remote_is_adapted_at_the_next_connect() {
    for (remote, field) in [
        (
            Config {
                retain_available: false,
                ..Config::default()
            },
            "retain",
        ),
        (
            Config {
                listener_max_qos: [(midge_core::broker::ListenerId(0), QoS::AtMostOnce)].into(),
                ..Config::default()
            },
            "qos",
        ),
    ] {
        let mut b = bridge(&["b"], V5, vec![]);
        b.notifications = true;
        let topic = b.notification_topic.clone();
        let mut p = Pair::new(with_bridge(b), remote);
        assert!(p.wires.is_empty(), "{field}: the first CONNECT is refused");
        p.advance_secs(5);
        assert_eq!(p.wires.len(), 1, "{field}: the second is accepted");
        assert_eq!(p.a.broker.stats().clients_connected, 1);
        // The will still tells B's clients when the link dies.
        let watch = p.b.client(V5, "wb");
        p.b.send(watch, &subscribe(1, &topic, QoS::AtLeastOnce));
        p.b.recv(watch);
        p.cut();
        assert_eq!(payloads(&p.b.recv(watch)), ["0"], "{field}");
    }
}
