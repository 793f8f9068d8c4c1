//! CONNECT and the life of a connection: version negotiation, client identifiers, session takeover,
//! clean start and session expiry, keep alive, the connect timeout, the connection limit, wills,
//! and how protocol violations end a connection in each protocol version.
//!
//! Statement ids are cited with the version they come from, as in `[MQTT-3.1.4-2] (3.1.1)`. Each
//! test also checks that clients unrelated to the scenario still work afterwards.

mod harness;

use harness::*;
use midge_core::broker::{Action, Config, ConnId};
use midge_core::codec::{
    Auth, AuthProperties, AuthReason, ConnAck, Connect, ConnectReason, Disconnect,
    DisconnectReason, LastWill, Packet, ProtocolVersion, QoS, SubAckReason,
};
use std::num::{NonZeroU16, NonZeroU32};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A CONNECT with Clean Session / Clean Start 0.
fn persistent(version: ProtocolVersion, id: &str) -> Connect {
    let mut c = connect(version, id);
    c.clean_start = false;
    c
}

/// An MQTT 5 CONNECT with the given Session Expiry Interval property.
fn v5_expiry(id: &str, clean_start: bool, expiry: Option<u32>) -> Connect {
    let mut c = connect(V5, id);
    c.clean_start = clean_start;
    c.properties.session_expiry_interval = expiry;
    c
}

fn with_will(mut c: Connect, w: LastWill) -> Connect {
    c.will = Some(w);
    c
}

fn with_keep_alive(mut c: Connect, secs: u16) -> Connect {
    c.keep_alive = secs;
    c
}

/// A will with an MQTT 5 Will Delay Interval.
fn delayed_will(topic: &str, payload: &'static [u8], delay_secs: u32) -> LastWill {
    let mut w = will(topic, payload, QoS::AtMostOnce, false);
    w.properties.will_delay_interval = Some(delay_secs);
    w
}

/// Opens a connection, sends CONNECT, and returns everything the client received.
fn connect_recv(w: &mut World, c: Connect) -> (ConnId, Vec<Packet>) {
    let conn = w.open(c.protocol_version);
    w.send(conn, &Packet::from(c));
    let got = w.recv(conn);
    (conn, got)
}

/// A refused CONNECT: exactly one CONNACK with `reason`, Session Present 0
/// [MQTT-3.2.2-4] (3.1.1) [MQTT-3.2.2-6] (5.0), then the connection is closed.
fn expect_refused(w: &mut World, c: Connect, reason: ConnectReason) -> ConnId {
    let (conn, ack) = w.try_connect(c);
    assert_eq!(ack.reason, reason, "{ack:?}");
    assert!(!ack.session_present, "{ack:?}");
    assert!(w.is_closed(conn), "refused connection left open");
    conn
}

/// Every byte the broker sent to a connection, from the action log.
fn sent_bytes(w: &World, conn: ConnId) -> Vec<u8> {
    w.log
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn: c, bytes } if *c == conn => Some(bytes.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The connection received exactly one DISCONNECT with `reason` and was closed.
fn expect_disconnect(w: &mut World, conn: ConnId, reason: DisconnectReason) {
    match w.recv(conn).as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, reason, "{d:?}"),
        other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
    }
    assert!(w.is_closed(conn), "connection left open after DISCONNECT");
}

/// The connection was closed without the broker sending anything.
fn expect_silent_close(w: &mut World, conn: ConnId) {
    w.recv_none(conn);
    assert!(w.is_closed(conn), "connection left open");
}

/// The connection is open and has received nothing.
fn expect_open_quiet(w: &mut World, conn: ConnId) {
    w.recv_none(conn);
    assert!(!w.is_closed(conn), "connection closed");
}

/// The subscriber received exactly one message, with this topic, payload, QoS and RETAIN flag.
fn expect_message(w: &mut World, sub: ConnId, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
    let got = w.recv_one(sub);
    let p = as_publish(&got);
    assert_eq!(&p.topic[..], topic, "{p:?}");
    assert_eq!(&p.payload[..], payload, "{p:?}");
    assert_eq!(p.qos_pid.qos(), qos, "{p:?}");
    assert_eq!(p.retain, retain, "{p:?}");
    if let Some(id) = p.qos_pid.packet_id() {
        match qos {
            QoS::AtLeastOnce => w.send(sub, &puback(id)),
            _ => {
                w.send(sub, &pubrec(id));
                assert!(matches!(w.recv_one(sub), Packet::PubRel(r) if r.packet_id == id));
                w.send(sub, &pubcomp(id));
            }
        }
    }
}

/// A client subscribed to `will/#` at QoS 2, to watch wills arrive.
fn will_watcher(w: &mut World, id: &str) -> ConnId {
    let watcher = w.client(V5, id);
    w.subscribe(watcher, "will/#", QoS::ExactlyOnce);
    watcher
}

/// Clients unrelated to the scenario still work: fresh clients of each version connect, subscribe,
/// exchange a QoS 1 message and disconnect.
fn assert_others_work(w: &mut World) {
    for (sub_version, pub_version) in [(V5, V3_1_1), (V3_1_1, V3_1), (V3_1, V5)] {
        let sub = w.client(sub_version, "probe-sub");
        w.subscribe(sub, "probe/+", QoS::AtLeastOnce);
        let publ = w.client(pub_version, "probe-pub");
        w.send(publ, &publish("probe/x", b"ping", QoS::AtLeastOnce, 1));
        assert!(
            matches!(w.recv_one(publ), Packet::PubAck(a) if a.packet_id == pid(1)),
            "probe publish not acknowledged"
        );
        expect_message(w, sub, "probe/x", b"ping", QoS::AtLeastOnce, false);
        for conn in [sub, publ] {
            w.send(conn, &disconnect());
            expect_silent_close(w, conn);
        }
    }
}

/// A CONNECT built byte by byte: `properties` is the MQTT 5 property block without its length.
fn raw_connect(
    name: &[u8],
    level: u8,
    flags: u8,
    properties: Option<&[u8]>,
    client_id: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&[0, 0]); // keep alive
    if let Some(p) = properties {
        body.push(u8::try_from(p.len()).unwrap());
        body.extend_from_slice(p);
    }
    body.extend_from_slice(&(client_id.len() as u16).to_be_bytes());
    body.extend_from_slice(client_id);
    assert!(body.len() < 128, "one-byte remaining length");
    let mut out = vec![0x10, body.len() as u8];
    out.extend(body);
    out
}

/// Subscribes and returns everything received: the SUBACK, granting `qos`, then any retained
/// messages (which [`World::subscribe`] would discard).
fn subscribe_recv(w: &mut World, conn: ConnId, filter: &str, qos: QoS) -> Vec<Packet> {
    w.send(conn, &subscribe(1, filter, qos));
    let got = w.recv(conn);
    match got.first() {
        Some(Packet::SubAck(a)) => assert_eq!(a.reasons, [SubAckReason::granted(qos)]),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    got
}

fn connack_of(packets: &[Packet]) -> &ConnAck {
    match packets.first() {
        Some(Packet::ConnAck(a)) => a,
        other => panic!("expected CONNACK first, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Version negotiation and CONNECT validation
// ---------------------------------------------------------------------------------------------

/// Each supported version is accepted with the CONNACK of that version: two bytes of flags and
/// return code for 3.1 and 3.1.1 (3.1 has no Session Present flag), flags, reason code and
/// properties for 5.0 [MQTT-3.1.4-5] (5.0) [MQTT-3.2.2-1] (3.1.1) [MQTT-3.2.2-2] (5.0).
#[test]
fn each_version_accepted_with_its_connack_mqtt_3_1_4_5() {
    let mut w = World::default();
    for (version, id) in [(V3_1, "c31"), (V3_1_1, "c311"), (V5, "c5")] {
        let (conn, ack) = w.connect(connect(version, id));
        assert!(!ack.session_present);
        assert!(!w.is_closed(conn));
        let bytes = sent_bytes(&w, conn);
        if version.is_v5() {
            // Fixed header, flags 0, reason 0x00, then a property block.
            assert_eq!(bytes[0], 0x20);
            assert_eq!(usize::from(bytes[1]), bytes.len() - 2);
            assert_eq!(&bytes[2..4], &[0x00, 0x00]);
            assert_eq!(usize::from(bytes[4]), bytes.len() - 5, "property length");
            // Shared subscriptions are available: the default, so not announced.
            assert_eq!(ack.properties.shared_subscription_available, None);
        } else {
            assert_eq!(bytes, [0x20, 0x02, 0x00, 0x00]);
        }
        // The accepted client works.
        w.send(conn, &Packet::PingReq);
        assert_eq!(w.recv_one(conn), Packet::PingResp);
    }
    assert_others_work(&mut w);
}

/// An unsupported protocol level is answered with the 3.1.1 CONNACK return code 0x01, then the
/// connection is closed [MQTT-3.1.2-2] (3.1.1).
#[test]
fn unsupported_protocol_level_gets_return_code_1_then_close_mqtt_3_1_2_2() {
    let mut w = World::default();
    for (name, level) in [
        (&b"MQTT"[..], 6),
        (&b"MQTT"[..], 3),
        (&b"MQTT"[..], 0),
        (&b"MQIsdp"[..], 4),
    ] {
        let conn = w.open(V3_1_1);
        w.send_raw(conn, &raw_connect(name, level, 0x02, None, b"x"));
        assert_eq!(
            sent_bytes(&w, conn),
            [0x20, 0x02, 0x00, 0x01],
            "level {level}"
        );
        match w.recv(conn).as_slice() {
            [Packet::ConnAck(a)] => {
                assert_eq!(a.reason, ConnectReason::UnsupportedProtocolVersion);
                assert!(!a.session_present);
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
        assert!(w.is_closed(conn));
    }
    assert_others_work(&mut w);
}

/// A protocol name other than "MQTT" or "MQIsdp": the connection is closed without a CONNACK
/// [MQTT-3.1.2-1] (3.1.1) [MQTT-3.1.2-1] (5.0).
#[test]
fn invalid_protocol_name_closes_without_connack_mqtt_3_1_2_1() {
    let mut w = World::default();
    for (name, level) in [(&b"MQTX"[..], 4), (&b"mqtt"[..], 5), (&b""[..], 4)] {
        let conn = w.open(V3_1_1);
        w.send_raw(conn, &raw_connect(name, level, 0x02, None, b"x"));
        assert!(sent_bytes(&w, conn).is_empty());
        expect_silent_close(&mut w, conn);
    }
    assert_others_work(&mut w);
}

/// A malformed MQTT 5 CONNECT is answered with an MQTT 5 CONNACK carrying the reason, Session
/// Present 0, then the connection is closed [MQTT-3.1.4-1] [MQTT-3.2.2-6] [MQTT-3.2.2-7] (5.0):
/// a duplicate property is a Protocol Error (0x82), a set reserved flag
/// [MQTT-3.1.2-3] (5.0) or an unknown property Malformed (0x81).
#[test]
fn malformed_v5_connect_gets_connack_reason_then_close_mqtt_3_1_4_1_v5() {
    let mut w = World::default();
    let expiry = [0x11, 0, 0, 0, 10];
    let twice = [expiry, expiry].concat();
    let cases: [(u8, &[u8], ConnectReason); 3] = [
        (0x02, &twice, ConnectReason::ProtocolError),
        (0x03, &expiry, ConnectReason::MalformedPacket),
        (0x02, &[0x7F, 0x00], ConnectReason::MalformedPacket),
    ];
    for (flags, props, reason) in cases {
        let conn = w.open(V5);
        w.send_raw(conn, &raw_connect(b"MQTT", 5, flags, Some(props), b"x"));
        match w.recv(conn).as_slice() {
            [Packet::ConnAck(a)] => {
                assert_eq!(a.reason, reason);
                assert!(!a.session_present);
            }
            other => panic!("expected CONNACK {reason:?}, got {other:?}"),
        }
        assert!(w.is_closed(conn));
    }
    assert_others_work(&mut w);
}

/// A malformed 3.1.1 or 3.1 CONNECT (the reserved flag set) is closed without a CONNACK
/// [MQTT-3.1.4-1] [MQTT-3.1.2-3] (3.1.1).
#[test]
fn malformed_v3_connect_closes_without_connack_mqtt_3_1_4_1_mqtt_3_1_2_3() {
    let mut w = World::default();
    for (name, level, version) in [(&b"MQTT"[..], 4, V3_1_1), (&b"MQIsdp"[..], 3, V3_1)] {
        let conn = w.open(version);
        w.send_raw(conn, &raw_connect(name, level, 0x03, None, b"x"));
        assert!(sent_bytes(&w, conn).is_empty());
        expect_silent_close(&mut w, conn);
    }
    // Will QoS set without a will is malformed too [MQTT-3.1.2-13] (3.1.1).
    let conn = w.open(V3_1_1);
    w.send_raw(conn, &raw_connect(b"MQTT", 4, 0x02 | 0x08, None, b"x"));
    expect_silent_close(&mut w, conn);
    assert_others_work(&mut w);
}

/// The first packet must be CONNECT; anything else closes the connection without a reply
/// [MQTT-3.1.0-1] (3.1.1) [MQTT-3.1.0-1] (5.0).
#[test]
fn first_packet_not_connect_closes_without_reply_mqtt_3_1_0_1() {
    let mut w = World::default();
    for version in [V3_1, V3_1_1, V5] {
        let firsts = [
            Packet::PingReq,
            publish("a/b", b"hello", QoS::AtMostOnce, 0),
            publish("a/b", b"hello", QoS::AtLeastOnce, 1),
            subscribe(1, "a/#", QoS::AtMostOnce),
            disconnect(),
        ];
        for first in &firsts {
            let conn = w.open(version);
            w.send(conn, first);
            assert!(sent_bytes(&w, conn).is_empty(), "{version:?} {first:?}");
            expect_silent_close(&mut w, conn);
        }
    }
    assert_eq!(w.broker.stats().connections_open, 0);
    assert_others_work(&mut w);
}

/// A second CONNECT is a protocol violation: MQTT 5 gets DISCONNECT 0x82 (Protocol Error) then
/// the close, 3.1.x only the close [MQTT-3.1.0-2] (3.1.1) [MQTT-3.1.0-2] (5.0).
#[test]
fn second_connect_is_protocol_violation_mqtt_3_1_0_2() {
    let mut w = World::default();
    for (version, id) in [(V3_1, "twice31"), (V3_1_1, "twice311"), (V5, "twice5")] {
        let conn = w.client(version, id);
        w.send(conn, &Packet::from(connect(version, id)));
        if version.is_v5() {
            expect_disconnect(&mut w, conn, DisconnectReason::ProtocolError);
        } else {
            expect_silent_close(&mut w, conn);
        }
        // The id is free again: the session ended with the connection.
        let (again, ack) = w.connect(connect(version, id));
        assert!(!ack.session_present);
        w.send(again, &disconnect());
        expect_silent_close(&mut w, again);
    }
    assert_others_work(&mut w);
}

/// 5.0: with no authenticator set, enhanced authentication is not offered, so a CONNECT with an
/// Authentication Method is refused with CONNACK 0x8C (Bad authentication method) and closed
/// [MQTT-4.12.0-1] (5.0); it cannot be accepted, since a successful CONNACK would have to carry
/// the same method [MQTT-4.12.0-5] (5.0). Its will is not published.
#[test]
fn v5_authentication_method_refused_0x8c_mqtt_4_12_0_1() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    let mut c = with_will(
        connect(V5, "scram"),
        will("will/scram", b"no", QoS::AtMostOnce, false),
    );
    c.properties.authentication_method = Some("SCRAM-SHA-1".into());
    c.properties.authentication_data = Some(bytes::Bytes::from_static(b"client-first"));
    let conn = expect_refused(&mut w, c, ConnectReason::BadAuthenticationMethod);
    // CONNACK, flags 0, reason 0x8C, and a Reason String saying why.
    let bytes = sent_bytes(&w, conn);
    assert_eq!((bytes[0], &bytes[2..4]), (0x20, &[0x00, 0x8C][..]));
    w.recv_none(watcher);
    assert_eq!(w.broker.stats().sessions, 1, "only the watcher's session");
    assert_others_work(&mut w);
}

// ---------------------------------------------------------------------------------------------
// Client identifiers
// ---------------------------------------------------------------------------------------------

/// 3.1.1: an empty client id with Clean Session 1 is assigned a unique id and the client works as
/// if it had sent that id [MQTT-3.1.3-6] (3.1.1).
#[test]
fn empty_client_id_v3_1_1_clean_session_is_assigned_an_id_mqtt_3_1_3_6() {
    let mut w = World::default();
    let (anon, ack) = w.connect(connect(V3_1_1, ""));
    assert!(!ack.session_present);
    // 3.1.1 has no way to tell the client its id.
    assert_eq!(sent_bytes(&w, anon), [0x20, 0x02, 0x00, 0x00]);
    w.subscribe(anon, "anon/+", QoS::AtLeastOnce);
    let publ = w.client(V5, "anon-pub");
    w.send(publ, &publish("anon/1", b"hi", QoS::AtLeastOnce, 1));
    assert!(matches!(w.recv_one(publ), Packet::PubAck(a) if a.reason.code() == 0));
    expect_message(&mut w, anon, "anon/1", b"hi", QoS::AtLeastOnce, false);
    // And it can publish.
    w.subscribe(publ, "back", QoS::AtMostOnce);
    w.send(anon, &publish("back", b"yo", QoS::AtMostOnce, 0));
    expect_message(&mut w, publ, "back", b"yo", QoS::AtMostOnce, false);
    assert!(!w.is_closed(anon));
    assert_others_work(&mut w);
}

/// 3.1.1: an empty client id with Clean Session 0 is rejected with return code 0x02
/// (Identifier rejected) and the connection closed [MQTT-3.1.3-8] (3.1.1).
#[test]
fn empty_client_id_v3_1_1_persistent_rejected_0x02_mqtt_3_1_3_8() {
    let mut w = World::default();
    let conn = expect_refused(
        &mut w,
        persistent(V3_1_1, ""),
        ConnectReason::ClientIdentifierNotValid,
    );
    assert_eq!(sent_bytes(&w, conn), [0x20, 0x02, 0x00, 0x02]);
    assert_eq!(w.broker.stats().sessions, 0);
    assert_others_work(&mut w);
}

/// 5.0: an empty client id is assigned one, returned as the Assigned Client Identifier property,
/// starting with the configured prefix [MQTT-3.2.2-16] [MQTT-3.1.3-6] [MQTT-3.1.3-7] (5.0); the
/// session is then that id's session.
#[test]
fn empty_client_id_v5_gets_assigned_client_identifier_mqtt_3_2_2_16() {
    let mut w = World::new(Config {
        auto_id_prefix: "gen-".to_owned(),
        ..Config::default()
    });
    let (anon, ack) = w.connect(v5_expiry("", false, Some(60)));
    assert!(!ack.session_present);
    let assigned = ack
        .properties
        .assigned_client_identifier
        .clone()
        .expect("Assigned Client Identifier");
    assert!(assigned.starts_with("gen-"), "{assigned}");
    assert!(assigned.len() > "gen-".len(), "{assigned}");
    w.subscribe(anon, "anon5/+", QoS::AtLeastOnce);
    w.send(anon, &disconnect());
    expect_silent_close(&mut w, anon);
    // Reconnecting with the assigned id resumes the session made for it.
    let (again, ack) = w.connect(v5_expiry(&assigned, false, Some(60)));
    assert!(ack.session_present);
    assert_eq!(ack.properties.assigned_client_identifier, None);
    let publ = w.client(V3_1_1, "anon5-pub");
    w.send(publ, &publish("anon5/x", b"v", QoS::AtLeastOnce, 1));
    assert!(matches!(w.recv_one(publ), Packet::PubAck(_)));
    expect_message(&mut w, again, "anon5/x", b"v", QoS::AtLeastOnce, false);
    assert_others_work(&mut w);
}

/// Nothing sent after a refused CONNECT is processed, even when it arrived in the same read
/// [MQTT-3.1.4-5] (3.1.1) [MQTT-3.1.4-6] (5.0); the will of a refused CONNECT is never stored, so
/// never published.
#[test]
fn data_after_refused_connect_is_not_processed_mqtt_3_1_4_5_mqtt_3_1_4_6_v5() {
    let mut w = World::new(Config {
        allow_zero_length_clientid: false,
        ..Config::default()
    });
    let watcher = will_watcher(&mut w, "watcher");
    let sub = w.client(V3_1_1, "refsub");
    w.subscribe(sub, "ref/+", QoS::AtMostOnce);
    for version in [V3_1, V3_1_1, V5] {
        let mut bytes = bytes::BytesMut::new();
        let refused = with_will(
            connect(version, ""),
            will("will/ref", b"never", QoS::AtMostOnce, false),
        );
        Packet::from(refused).encode(version, &mut bytes).unwrap();
        publish("ref/x", b"sneaky", QoS::AtMostOnce, 0)
            .encode(version, &mut bytes)
            .unwrap();
        Packet::PingReq.encode(version, &mut bytes).unwrap();
        let conn = w.open(version);
        w.send_raw(conn, &bytes);
        match w.recv(conn).as_slice() {
            [Packet::ConnAck(a)] => {
                assert_eq!(a.reason, ConnectReason::ClientIdentifierNotValid);
                assert!(!a.session_present);
            }
            other => panic!("expected only the refusing CONNACK, got {other:?}"),
        }
        assert!(w.is_closed(conn));
        w.recv_none(sub);
        w.recv_none(watcher);
    }
    assert_others_work(&mut w);
}

/// MQTT 3.1 requires a client id of 1 to 23 characters: an empty one is rejected with return code
/// 0x02 (Identifier rejected) even where 3.1.1 and 5.0 clients would be assigned one.
#[test]
fn empty_client_id_v3_1_rejected_0x02() {
    let mut w = World::default();
    let conn = expect_refused(
        &mut w,
        connect(V3_1, ""),
        ConnectReason::ClientIdentifierNotValid,
    );
    assert_eq!(sent_bytes(&w, conn), [0x20, 0x02, 0x00, 0x02]);
    assert_others_work(&mut w);
}

/// With `allow_zero_length_clientid` off, an empty client id is rejected: 0x85 (Client Identifier
/// not valid) for 5.0 [MQTT-3.1.3-8] (5.0), return code 0x02 for 3.1.1 [MQTT-3.1.3-9] (3.1.1).
#[test]
fn empty_client_id_rejected_when_not_allowed_mqtt_3_1_3_9_mqtt_3_1_3_8_v5() {
    let mut w = World::new(Config {
        allow_zero_length_clientid: false,
        ..Config::default()
    });
    let v5 = expect_refused(
        &mut w,
        connect(V5, ""),
        ConnectReason::ClientIdentifierNotValid,
    );
    let bytes = sent_bytes(&w, v5);
    assert_eq!((bytes[0], &bytes[2..4]), (0x20, &[0x00, 0x85][..]));
    let v311 = expect_refused(
        &mut w,
        connect(V3_1_1, ""),
        ConnectReason::ClientIdentifierNotValid,
    );
    assert_eq!(sent_bytes(&w, v311), [0x20, 0x02, 0x00, 0x02]);
    assert_eq!(w.broker.stats().sessions, 0);
    assert_others_work(&mut w);
}

/// Two clients assigned ids get different ones, and both stay connected: neither takes the other
/// over [MQTT-3.2.2-16] (5.0) [MQTT-3.1.3-6] (3.1.1).
#[test]
fn assigned_client_ids_are_unique_mqtt_3_2_2_16() {
    let mut w = World::default();
    let (a, ack_a) = w.connect(connect(V5, ""));
    let (b, ack_b) = w.connect(connect(V5, ""));
    let (c, _) = w.connect(connect(V3_1_1, ""));
    let id_a = ack_a.properties.assigned_client_identifier.unwrap();
    let id_b = ack_b.properties.assigned_client_identifier.unwrap();
    assert_ne!(id_a, id_b);
    for conn in [a, b, c] {
        expect_open_quiet(&mut w, conn);
    }
    assert_eq!(w.broker.stats().sessions, 3);
    assert_others_work(&mut w);
}

/// Assigned ids come from `client_id_seed` alone: the same seed gives the same ids, another seed
/// other ids.
#[test]
fn assigned_client_ids_are_determined_by_the_seed() {
    fn first_assigned(seed: [u8; 32]) -> String {
        let mut w = World::new(Config {
            client_id_seed: seed,
            ..Config::default()
        });
        let (_, ack) = w.connect(connect(V5, ""));
        ack.properties
            .assigned_client_identifier
            .unwrap()
            .to_string()
    }
    assert_eq!(first_assigned([0; 32]), first_assigned([0; 32]));
    assert_eq!(first_assigned([7; 32]), first_assigned([7; 32]));
    assert_ne!(first_assigned([0; 32]), first_assigned([7; 32]));
}

// ---------------------------------------------------------------------------------------------
// Session takeover
// ---------------------------------------------------------------------------------------------

/// 3.1.x: a second connection with the same client id closes the first, which gets nothing (there
/// is no server DISCONNECT before 5.0) [MQTT-3.1.4-2] (3.1.1). The old connection ended without a
/// DISCONNECT from its client, so its will is published [MQTT-3.1.2-8] (3.1.1). The new
/// connection resumes the session [MQTT-3.2.2-2] (3.1.1) and works.
#[test]
fn takeover_v3_closes_old_connection_and_publishes_its_will_mqtt_3_1_4_2() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    for (version, id) in [(V3_1_1, "dup311"), (V3_1, "dup31")] {
        let (old, _) = w.connect(with_will(
            persistent(version, id),
            will("will/dup", b"gone", QoS::AtLeastOnce, false),
        ));
        w.subscribe(old, "dup/+", QoS::AtLeastOnce);
        let (new, ack) = w.connect(persistent(version, id));
        // 3.1 has no Session Present flag.
        assert_eq!(ack.session_present, version == V3_1_1);
        expect_silent_close(&mut w, old);
        expect_message(
            &mut w,
            watcher,
            "will/dup",
            b"gone",
            QoS::AtLeastOnce,
            false,
        );
        // The subscription made on the old connection delivers to the new one.
        let publ = w.client(V5, "dup-pub");
        w.send(publ, &publish("dup/1", b"m", QoS::AtLeastOnce, 1));
        assert!(matches!(w.recv_one(publ), Packet::PubAck(_)));
        expect_message(&mut w, new, "dup/1", b"m", QoS::AtLeastOnce, false);
        w.send(publ, &disconnect());
        // Clean Session 1 takes the session over and discards it.
        let (newer, ack) = w.connect(connect(version, id));
        assert!(!ack.session_present);
        expect_silent_close(&mut w, new);
        // `new` had no will: nothing is published.
        w.recv_none(watcher);
        w.send(newer, &Packet::PingReq);
        assert_eq!(w.recv_one(newer), Packet::PingResp);
    }
    assert_others_work(&mut w);
}

/// 5.0: the old connection receives DISCONNECT 0x8E (Session taken over) and is closed
/// [MQTT-3.1.4-3] (5.0); its will (no delay) is published since its client sent no DISCONNECT
/// [MQTT-3.1.2-8] (5.0); the new connection works.
#[test]
fn takeover_v5_sends_disconnect_0x8e_and_publishes_will_mqtt_3_1_4_3_v5() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    let (old, _) = w.connect(with_will(
        v5_expiry("dup5", false, Some(60)),
        will("will/dup5", b"gone5", QoS::ExactlyOnce, false),
    ));
    w.subscribe(old, "dup5/+", QoS::ExactlyOnce);
    let (new, ack) = w.connect(v5_expiry("dup5", false, Some(60)));
    assert!(ack.session_present);
    expect_disconnect(&mut w, old, DisconnectReason::SessionTakenOver);
    expect_message(
        &mut w,
        watcher,
        "will/dup5",
        b"gone5",
        QoS::ExactlyOnce,
        false,
    );
    let publ = w.client(V3_1_1, "dup5-pub");
    w.send(publ, &publish("dup5/1", b"m", QoS::AtMostOnce, 0));
    expect_message(&mut w, new, "dup5/1", b"m", QoS::AtMostOnce, false);
    // A 3.1.1 connection may take over a 5.0 session too; the 5.0 client still hears why.
    let (v3, ack) = w.connect(connect(V3_1_1, "dup5"));
    assert!(!ack.session_present);
    expect_disconnect(&mut w, new, DisconnectReason::SessionTakenOver);
    w.recv_none(watcher);
    w.send(v3, &Packet::PingReq);
    assert_eq!(w.recv_one(v3), Packet::PingResp);
    assert_others_work(&mut w);
}

/// 5.0: a takeover is a new connection to the session before the will delay passed, so a delayed
/// will of the old connection is never published [MQTT-3.1.2-26] (5.0).
#[test]
fn takeover_v5_cancels_delayed_will_mqtt_3_1_2_26() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    let (old, _) = w.connect(with_will(
        v5_expiry("dly", false, Some(600)),
        delayed_will("will/dly", b"late", 30),
    ));
    let (new, ack) = w.connect(v5_expiry("dly", false, Some(600)));
    assert!(ack.session_present);
    expect_disconnect(&mut w, old, DisconnectReason::SessionTakenOver);
    w.advance_secs(31);
    w.recv_none(watcher);
    expect_open_quiet(&mut w, new);
    assert_others_work(&mut w);
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// 3.1.1 Clean Session 1: Session Present 0 [MQTT-3.2.2-1] (3.1.1), and the session lasts only as
/// long as the connection [MQTT-3.1.2-6] (3.1.1): its subscriptions are gone after a reconnect,
/// even one with Clean Session 0 [MQTT-3.2.2-3] (3.1.1).
#[test]
fn clean_session_1_discards_session_mqtt_3_2_2_1_mqtt_3_1_2_6() {
    let mut w = World::default();
    let (c, ack) = w.connect(connect(V3_1_1, "clean"));
    assert!(!ack.session_present);
    w.subscribe(c, "clean/+", QoS::AtLeastOnce);
    w.send(c, &disconnect());
    expect_silent_close(&mut w, c);
    assert_eq!(w.broker.stats().sessions, 0);

    let (c, ack) = w.connect(persistent(V3_1_1, "clean"));
    assert!(!ack.session_present);
    let publ = w.client(V5, "clean-pub");
    w.send(publ, &publish("clean/1", b"x", QoS::AtLeastOnce, 1));
    assert!(matches!(
        w.recv_one(publ),
        Packet::PubAck(a) if a.reason == midge_core::codec::PubAckReason::NoMatchingSubscribers
    ));
    expect_open_quiet(&mut w, c);
    assert_others_work(&mut w);
}

/// 3.1.1 Clean Session 0: the session outlives the connection [MQTT-3.1.2-4] (3.1.1); QoS 1
/// messages matching its subscriptions are stored while it is offline [MQTT-3.1.2-5] (3.1.1) and
/// delivered, in order, after the reconnect, whose CONNACK has Session Present 1
/// [MQTT-3.2.2-2] (3.1.1). The first connection, with no stored session, had Session Present 0
/// [MQTT-3.2.2-3] (3.1.1). QoS 0 messages are not stored (`queue_qos0_messages` off).
#[test]
fn clean_session_0_keeps_subscriptions_and_queued_messages_mqtt_3_2_2_2_mqtt_3_1_2_4_mqtt_3_1_2_5()
{
    let mut w = World::default();
    let (c, ack) = w.connect(persistent(V3_1_1, "keeper"));
    assert!(!ack.session_present);
    w.subscribe(c, "keep/+", QoS::AtLeastOnce);
    w.send(c, &disconnect());
    expect_silent_close(&mut w, c);

    let publ = w.client(V5, "keep-pub");
    w.send(publ, &publish("keep/1", b"one", QoS::AtLeastOnce, 1));
    w.send(publ, &publish("keep/0", b"zero", QoS::AtMostOnce, 0));
    w.send(publ, &publish("keep/2", b"two", QoS::ExactlyOnce, 2));
    let acks = w.recv(publ);
    assert!(
        matches!(acks.as_slice(), [Packet::PubAck(a), Packet::PubRec(r)]
        if a.reason.code() == 0 && r.reason.code() == 0)
    );
    w.send(publ, &pubrel(pid(2)));
    assert!(matches!(w.recv_one(publ), Packet::PubComp(_)));

    let (c, got) = connect_recv(&mut w, persistent(V3_1_1, "keeper"));
    let ack = connack_of(&got);
    assert_eq!(ack.reason, ConnectReason::Success);
    assert!(ack.session_present);
    let msgs = publishes(&got[1..]);
    assert_eq!(msgs.len(), got.len() - 1, "{got:?}");
    let topics: Vec<_> = msgs
        .iter()
        .map(|p| (&p.topic[..], p.qos_pid.qos()))
        .collect();
    assert_eq!(
        topics,
        [("keep/1", QoS::AtLeastOnce), ("keep/2", QoS::AtLeastOnce)]
    );
    assert!(msgs.iter().all(|p| !p.dup && !p.retain));
    for p in &msgs {
        w.send(c, &puback(p.qos_pid.packet_id().unwrap()));
    }
    // The subscription is still there for new messages.
    w.send(publ, &publish("keep/3", b"three", QoS::AtLeastOnce, 3));
    assert!(matches!(w.recv_one(publ), Packet::PubAck(_)));
    expect_message(&mut w, c, "keep/3", b"three", QoS::AtLeastOnce, false);
    assert_others_work(&mut w);
}

/// MQTT 3.1 persistent sessions resume too, but its CONNACK has no Session Present flag.
#[test]
fn clean_session_0_v3_1_resumes_without_session_present_flag() {
    let mut w = World::default();
    let (c, _) = w.connect(persistent(V3_1, "keeper31"));
    w.subscribe(c, "keep31/+", QoS::AtLeastOnce);
    w.peer_close(c);
    let publ = w.client(V3_1_1, "keep31-pub");
    w.send(publ, &publish("keep31/1", b"one", QoS::AtLeastOnce, 1));
    assert!(matches!(w.recv_one(publ), Packet::PubAck(_)));
    let (c, got) = connect_recv(&mut w, persistent(V3_1, "keeper31"));
    assert!(!connack_of(&got).session_present);
    assert_eq!(sent_bytes(&w, c)[..4], [0x20, 0x02, 0x00, 0x00]);
    let msgs = publishes(&got[1..]);
    assert_eq!(msgs.len(), 1, "{got:?}");
    assert_eq!(&msgs[0].topic[..], "keep31/1");
    assert_others_work(&mut w);
}

/// 5.0 Clean Start 1 discards the existing session [MQTT-3.1.2-4] (5.0): Session Present 0
/// [MQTT-3.2.2-2] (5.0), no queued messages, no subscriptions.
#[test]
fn v5_clean_start_1_discards_session_mqtt_3_1_2_4_v5() {
    let mut w = World::default();
    let (c, _) = w.connect(v5_expiry("cs5", false, Some(100)));
    w.subscribe(c, "cs5/+", QoS::AtLeastOnce);
    w.send(c, &disconnect());
    expect_silent_close(&mut w, c);
    let publ = w.client(V3_1_1, "cs5-pub");
    w.send(publ, &publish("cs5/1", b"queued", QoS::AtLeastOnce, 1));
    assert!(matches!(w.recv_one(publ), Packet::PubAck(_)));

    let (c, ack) = w.connect(v5_expiry("cs5", true, Some(100)));
    assert!(!ack.session_present);
    w.send(publ, &publish("cs5/2", b"new", QoS::AtLeastOnce, 2));
    assert!(matches!(w.recv_one(publ), Packet::PubAck(_)));
    expect_open_quiet(&mut w, c);
    assert_others_work(&mut w);
}

/// 5.0 Clean Start 0: without a session Session Present is 0 and one is created
/// [MQTT-3.1.2-6] (5.0); with one it is 1 [MQTT-3.2.2-3] (5.0) and the session resumes with its
/// subscriptions and the messages queued meanwhile [MQTT-3.1.2-5] (5.0).
#[test]
fn v5_clean_start_0_resumes_session_mqtt_3_2_2_3_v5() {
    let mut w = World::default();
    let (c, ack) = w.connect(v5_expiry("res5", false, Some(100)));
    assert!(!ack.session_present);
    w.subscribe(c, "res5/+", QoS::ExactlyOnce);
    w.peer_close(c);
    let publ = w.client(V3_1_1, "res5-pub");
    w.send(publ, &publish("res5/1", b"queued", QoS::AtLeastOnce, 1));
    assert!(matches!(w.recv_one(publ), Packet::PubAck(_)));

    let (c, got) = connect_recv(&mut w, v5_expiry("res5", false, Some(100)));
    let ack = connack_of(&got);
    assert_eq!(ack.reason, ConnectReason::Success);
    assert!(ack.session_present);
    let msgs = publishes(&got[1..]);
    assert_eq!(msgs.len(), 1, "{got:?}");
    assert_eq!(&msgs[0].topic[..], "res5/1");
    assert_eq!(msgs[0].qos_pid.qos(), QoS::AtLeastOnce);
    w.send(c, &puback(msgs[0].qos_pid.packet_id().unwrap()));
    expect_open_quiet(&mut w, c);
    assert_others_work(&mut w);
}

/// 5.0 Session Expiry Interval 0, or absent (which means 0, 5.0 section 3.1.2.11.2): the session
/// ends when the connection closes [MQTT-4.1.0-2] (5.0).
#[test]
fn v5_session_expiry_0_ends_session_at_disconnect_mqtt_4_1_0_2() {
    let mut w = World::default();
    for expiry in [Some(0), None] {
        let (c, _) = w.connect(v5_expiry("exp0", false, expiry));
        w.subscribe(c, "exp0/+", QoS::AtLeastOnce);
        w.send(c, &disconnect());
        expect_silent_close(&mut w, c);
        assert_eq!(w.broker.stats().sessions, 0, "{expiry:?}");
        let (c, ack) = w.connect(v5_expiry("exp0", false, Some(100)));
        assert!(!ack.session_present, "{expiry:?}");
        w.send(c, &disconnect());
        expect_silent_close(&mut w, c);
        // That session had expiry 100: clean it away for the next round.
        let (c, _) = w.connect(connect(V5, "exp0"));
        w.send(c, &disconnect());
    }
    assert_others_work(&mut w);
}

/// 5.0 Session Expiry Interval N: the session survives a reconnect within N seconds and is
/// discarded once N seconds pass with no connection [MQTT-4.1.0-2] [MQTT-3.1.2-25] (5.0).
#[test]
fn v5_session_expiry_n_survives_within_n_and_ends_after_mqtt_4_1_0_2() {
    let mut w = World::default();
    let (c, _) = w.connect(v5_expiry("expn", false, Some(10)));
    w.subscribe(c, "expn/+", QoS::AtLeastOnce);
    w.peer_close(c);
    w.advance_ms(9_999);
    assert_eq!(w.broker.stats().sessions, 1);
    let (c, ack) = w.connect(v5_expiry("expn", false, Some(10)));
    assert!(ack.session_present);
    // The timer of the first disconnect does not end the resumed session.
    w.advance_secs(5);
    assert_eq!(w.broker.stats().sessions, 1);
    w.send(c, &disconnect());
    expect_silent_close(&mut w, c);
    w.advance_ms(9_999);
    assert_eq!(w.broker.stats().sessions, 1);
    w.advance_ms(1);
    assert_eq!(w.broker.stats().sessions, 0);
    let (c, ack) = w.connect(v5_expiry("expn", false, Some(10)));
    assert!(!ack.session_present);
    let publ = w.client(V3_1_1, "expn-pub");
    w.send(publ, &publish("expn/1", b"x", QoS::AtMostOnce, 0));
    expect_open_quiet(&mut w, c);
    assert_others_work(&mut w);
}

/// 5.0 Session Expiry Interval 0xFFFFFFFF: the session does not expire (5.0, 3.1.2.11.2).
#[test]
fn v5_session_expiry_max_never_expires() {
    let mut w = World::default();
    let (c, _) = w.connect(v5_expiry("forever", false, Some(u32::MAX)));
    w.subscribe(c, "forever/+", QoS::AtLeastOnce);
    w.peer_close(c);
    w.advance_secs(u64::from(u32::MAX) + 1);
    assert_eq!(w.broker.stats().sessions, 1);
    let (c, ack) = w.connect(v5_expiry("forever", false, Some(u32::MAX)));
    assert!(ack.session_present);
    let publ = w.client(V3_1_1, "forever-pub");
    w.send(publ, &publish("forever/1", b"x", QoS::AtLeastOnce, 1));
    assert!(matches!(w.recv_one(publ), Packet::PubAck(_)));
    expect_message(&mut w, c, "forever/1", b"x", QoS::AtLeastOnce, false);
    assert_others_work(&mut w);
}

/// 5.0 DISCONNECT may change the Session Expiry Interval (5.0, 3.14.2.2.2): from 10 to 0 the
/// session ends at once; from 10 to 100 it outlives the original 10 seconds.
#[test]
fn v5_disconnect_changes_session_expiry() {
    let mut w = World::default();
    let mut to_zero = Disconnect::new(DisconnectReason::NormalDisconnection);
    to_zero.properties.session_expiry_interval = Some(0);
    let (c, _) = w.connect(v5_expiry("chg", false, Some(10)));
    w.send(c, &Packet::Disconnect(to_zero));
    expect_silent_close(&mut w, c);
    assert_eq!(w.broker.stats().sessions, 0);
    let (c, ack) = w.connect(v5_expiry("chg", false, Some(10)));
    assert!(!ack.session_present);

    let mut longer = Disconnect::new(DisconnectReason::NormalDisconnection);
    longer.properties.session_expiry_interval = Some(100);
    w.send(c, &Packet::Disconnect(longer));
    expect_silent_close(&mut w, c);
    w.advance_secs(50);
    let (c, ack) = w.connect(v5_expiry("chg", false, Some(10)));
    assert!(ack.session_present);
    expect_open_quiet(&mut w, c);
    assert_others_work(&mut w);
}

/// 5.0: a DISCONNECT setting a non-zero Session Expiry Interval when CONNECT had 0 is a Protocol
/// Error (5.0, 3.14.2.2.2): the server sends DISCONNECT 0x82 and closes [MQTT-4.13.1-1] (5.0).
/// The connection did not end normally, so the will is published, and the session (expiry 0)
/// ends.
#[test]
fn v5_disconnect_expiry_from_zero_is_protocol_error_mqtt_4_13_1_1() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    for expiry in [Some(0), None] {
        let (c, _) = w.connect(with_will(
            v5_expiry("zero", false, expiry),
            will("will/zero", b"z", QoS::AtMostOnce, false),
        ));
        w.subscribe(c, "zero/+", QoS::AtMostOnce);
        let mut d = Disconnect::new(DisconnectReason::NormalDisconnection);
        d.properties.session_expiry_interval = Some(10);
        w.send(c, &Packet::Disconnect(d));
        expect_disconnect(&mut w, c, DisconnectReason::ProtocolError);
        expect_message(&mut w, watcher, "will/zero", b"z", QoS::AtMostOnce, false);
        let (c, ack) = w.connect(v5_expiry("zero", false, Some(0)));
        assert!(!ack.session_present);
        w.send(c, &disconnect());
        expect_silent_close(&mut w, c);
    }
    assert_others_work(&mut w);
}

// ---------------------------------------------------------------------------------------------
// Keep alive
// ---------------------------------------------------------------------------------------------

/// A client with keep alive K that sends nothing is closed after one and a half times K, not
/// before [MQTT-3.1.2-24] (3.1.1) [MQTT-3.1.2-24] (5.0): 3.1.x silently, 5.0 after DISCONNECT
/// 0x8D (Keep Alive timeout).
#[test]
fn silent_client_closed_after_one_and_a_half_keep_alives_mqtt_3_1_2_24() {
    for version in [V3_1, V3_1_1, V5] {
        let mut w = World::default();
        w.advance_ms(1_234);
        let (c, ack) = w.connect(with_keep_alive(connect(version, "ka"), 10));
        assert_eq!(ack.properties.server_keep_alive, None);
        w.advance_ms(14_999);
        expect_open_quiet(&mut w, c);
        w.advance_ms(1);
        if version.is_v5() {
            expect_disconnect(&mut w, c, DisconnectReason::KeepAliveTimeout);
        } else {
            expect_silent_close(&mut w, c);
        }
        assert_eq!(w.broker.stats().clients_connected, 0);
        assert_others_work(&mut w);
    }
}

/// PINGREQ is answered with PINGRESP [MQTT-3.12.4-1] (3.1.1) [MQTT-3.12.4-1] (5.0), and any
/// packet from the client restarts the keep alive period [MQTT-3.1.2-24] (3.1.1) (5.0).
#[test]
fn pingreq_gets_pingresp_and_resets_keep_alive_mqtt_3_12_4_1() {
    for version in [V3_1, V3_1_1, V5] {
        let mut w = World::default();
        let (c, _) = w.connect(with_keep_alive(connect(version, "pinger"), 10));
        w.advance_secs(10);
        w.send(c, &Packet::PingReq);
        assert_eq!(w.recv_one(c), Packet::PingResp);
        // The deadline is now 15 s after the PINGREQ, not after CONNECT.
        w.advance_ms(14_000);
        expect_open_quiet(&mut w, c);
        // Any packet counts, not only PINGREQ.
        w.send(c, &publish("pinger/t", b"p", QoS::AtMostOnce, 0));
        w.advance_ms(14_999);
        expect_open_quiet(&mut w, c);
        w.advance_ms(1);
        if version.is_v5() {
            expect_disconnect(&mut w, c, DisconnectReason::KeepAliveTimeout);
        } else {
            expect_silent_close(&mut w, c);
        }
        assert_others_work(&mut w);
    }
}

/// Keep alive 0 turns the mechanism off: a silent client is never closed.
#[test]
fn keep_alive_0_never_times_out() {
    let mut w = World::default();
    let conns: Vec<_> = [(V3_1, "ka0-31"), (V3_1_1, "ka0-311"), (V5, "ka0-5")]
        .into_iter()
        .map(|(v, id)| w.client(v, id))
        .collect();
    w.advance_secs(1_000_000);
    for c in conns {
        expect_open_quiet(&mut w, c);
        w.send(c, &Packet::PingReq);
        assert_eq!(w.recv_one(c), Packet::PingResp);
    }
    assert_others_work(&mut w);
}

/// `max_keepalive` with 5.0: a client asking for more (or for 0) is told the maximum as Server
/// Keep Alive and is timed out by it [MQTT-3.2.2-21] [MQTT-3.1.2-24] (5.0); a client asking for
/// less gets no Server Keep Alive and its own value is used [MQTT-3.2.2-22] (5.0).
#[test]
fn max_keepalive_v5_gets_server_keep_alive_mqtt_3_2_2_21_mqtt_3_2_2_22() {
    let mut w = World::new(Config {
        max_keepalive: Some(10),
        ..Config::default()
    });
    for (asked, told, timeout_ms) in [
        (60, Some(10), 15_000),
        (0, Some(10), 15_000),
        (10, None, 15_000),
        (4, None, 6_000),
    ] {
        let (c, ack) = w.connect(with_keep_alive(connect(V5, "ska"), asked));
        assert_eq!(ack.properties.server_keep_alive, told, "asked {asked}");
        w.advance_ms(timeout_ms - 1);
        expect_open_quiet(&mut w, c);
        w.advance_ms(1);
        expect_disconnect(&mut w, c, DisconnectReason::KeepAliveTimeout);
    }
    assert_others_work_with_keepalive(&mut w);
}

/// `max_keepalive` with 3.1.1 and 3.1: the server cannot tell the client another value, so a
/// client asking for more than the maximum, or for 0 (no keep alive at all), is refused with
/// return code 0x02 (Identifier rejected), as Mosquitto does; a client within the maximum is
/// accepted.
#[test]
fn max_keepalive_v3_asking_more_refused_0x02() {
    let mut w = World::new(Config {
        max_keepalive: Some(10),
        ..Config::default()
    });
    for version in [V3_1_1, V3_1] {
        for asked in [11, 60, 0] {
            let conn = expect_refused(
                &mut w,
                with_keep_alive(connect(version, "ka3"), asked),
                ConnectReason::ClientIdentifierNotValid,
            );
            assert_eq!(sent_bytes(&w, conn), [0x20, 0x02, 0x00, 0x02]);
        }
        let (c, _) = w.connect(with_keep_alive(connect(version, "ka3"), 10));
        w.advance_ms(14_999);
        expect_open_quiet(&mut w, c);
        w.advance_ms(1);
        expect_silent_close(&mut w, c);
    }
    assert_others_work_with_keepalive(&mut w);
}

/// [`assert_others_work`] for a broker with `max_keepalive`: the probes need a keep alive.
fn assert_others_work_with_keepalive(w: &mut World) {
    let sub = w
        .connect(with_keep_alive(connect(V3_1_1, "probe-sub"), 5))
        .0;
    w.subscribe(sub, "probe/+", QoS::AtLeastOnce);
    let publ = w.connect(with_keep_alive(connect(V5, "probe-pub"), 5)).0;
    w.send(publ, &publish("probe/x", b"ping", QoS::AtLeastOnce, 1));
    assert!(matches!(w.recv_one(publ), Packet::PubAck(_)));
    expect_message(w, sub, "probe/x", b"ping", QoS::AtLeastOnce, false);
}

// ---------------------------------------------------------------------------------------------
// Connect timeout and connection limit
// ---------------------------------------------------------------------------------------------

/// A connection that sends nothing is closed, silently, `connect_timeout_ms` after it opened.
#[test]
fn connect_timeout_closes_silent_connection() {
    let mut w = World::new(Config {
        connect_timeout_ms: 2_000,
        ..Config::default()
    });
    w.advance_ms(500);
    let conn = w.open(V3_1_1);
    w.advance_ms(1_999);
    expect_open_quiet(&mut w, conn);
    w.advance_ms(1);
    expect_silent_close(&mut w, conn);
    assert_eq!(w.broker.stats().connections_open, 0);
    assert_others_work(&mut w);
}

/// Once CONNECT is accepted the connect timeout is over, and its timer goes with it: a client
/// without keep alive leaves the broker nothing to wake up for, rather than a dead entry per
/// idle connection until the timeout would have passed.
#[test]
fn connect_timeout_is_cancelled_once_connected() {
    let mut w = World::new(Config {
        connect_timeout_ms: 2_000,
        ..Config::default()
    });
    let conn = w.open(V3_1_1);
    assert!(w.broker.poll_timeout().is_some());
    w.send(conn, &Packet::from(connect(V3_1_1, "quiet")));
    assert!(matches!(w.recv_one(conn), Packet::ConnAck(a) if a.reason == ConnectReason::Success));
    assert_eq!(w.broker.poll_timeout(), None);
    w.advance_secs(60);
    expect_open_quiet(&mut w, conn);
}

/// A CONNECT that is still incomplete when `connect_timeout_ms` runs out is closed too: bytes
/// that are not a whole CONNECT do not extend the deadline. A client whose CONNECT completes in
/// time is not affected.
#[test]
fn connect_timeout_closes_partial_connect() {
    let mut w = World::new(Config {
        connect_timeout_ms: 2_000,
        ..Config::default()
    });
    let mut bytes = bytes::BytesMut::new();
    Packet::from(connect(V5, "slow"))
        .encode(V5, &mut bytes)
        .unwrap();
    let partial = w.open(V5);
    let in_time = w.open(V5);
    w.advance_ms(1_000);
    w.send_raw(partial, &bytes[..5]);
    w.send_raw(in_time, &bytes[..5]);
    w.advance_ms(999);
    w.send_raw(in_time, &bytes[5..]);
    assert!(
        matches!(w.recv_one(in_time), Packet::ConnAck(a) if a.reason == ConnectReason::Success)
    );
    expect_open_quiet(&mut w, partial);
    w.advance_ms(1);
    expect_silent_close(&mut w, partial);
    w.advance_secs(60);
    expect_open_quiet(&mut w, in_time);
    assert_others_work(&mut w);
}

/// With `max_connections` reached, a new connection is closed at once without a byte, and
/// `connections_refused` counts it; once a connection ends, a new one is accepted.
#[test]
fn max_connections_refuses_extra_connection() {
    let mut w = World::new(Config {
        max_connections: Some(3),
        ..Config::default()
    });
    let a = w.client(V3_1_1, "lim-a");
    let b = w.client(V5, "lim-b");
    // A connection awaiting CONNECT counts too.
    let pending = w.open(V3_1_1);
    let extra = w.open(V5);
    assert!(w.is_closed(extra));
    assert!(sent_bytes(&w, extra).is_empty());
    assert_eq!(w.broker.stats().connections_refused, 1);
    assert_eq!(w.broker.stats().connections_open, 3);
    let extra2 = w.open(V3_1);
    assert!(w.is_closed(extra2));
    assert_eq!(w.broker.stats().connections_refused, 2);
    // The open ones are unaffected.
    for c in [a, b, pending] {
        expect_open_quiet(&mut w, c);
    }
    w.send(pending, &Packet::from(connect(V3_1_1, "lim-p")));
    assert!(
        matches!(w.recv_one(pending), Packet::ConnAck(a) if a.reason == ConnectReason::Success)
    );
    // Room again after a disconnect.
    w.send(b, &disconnect());
    expect_silent_close(&mut w, b);
    let c = w.client(V5, "lim-c");
    w.send(c, &Packet::PingReq);
    assert_eq!(w.recv_one(c), Packet::PingResp);
    assert_eq!(w.broker.stats().connections_refused, 2);
    w.send(c, &disconnect());
    w.send(pending, &disconnect());
    // Two slots left: enough for the probes, which use two connections at a time.
    assert_others_work(&mut w);
}

// ---------------------------------------------------------------------------------------------
// Wills
// ---------------------------------------------------------------------------------------------

/// A connection closed without DISCONNECT (the peer went away) publishes its will, as a
/// non-retained message [MQTT-3.1.2-8] [MQTT-3.1.2-16] (3.1.1) [MQTT-3.1.2-8] [MQTT-3.1.2-16]
/// (5.0).
#[test]
fn will_published_on_peer_close_mqtt_3_1_2_8() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    for (version, id) in [(V3_1, "w31"), (V3_1_1, "w311"), (V5, "w5")] {
        let (c, _) = w.connect(with_will(
            connect(version, id),
            will("will/peer", b"bye", QoS::AtMostOnce, false),
        ));
        w.recv_none(watcher);
        let connected = w.broker.stats().clients_connected;
        w.peer_close(c);
        assert_eq!(w.broker.stats().clients_connected, connected - 1);
        expect_message(&mut w, watcher, "will/peer", b"bye", QoS::AtMostOnce, false);
        // Published once only.
        w.peer_close(c);
        w.recv_none(watcher);
    }
    assert_others_work(&mut w);
}

/// A keep alive timeout closes the connection "as if the network had failed"
/// [MQTT-3.1.2-24] (3.1.1) (5.0), so the will is published [MQTT-3.1.2-8] (3.1.1) (5.0).
#[test]
fn will_published_on_keep_alive_timeout_mqtt_3_1_2_24_mqtt_3_1_2_8() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    for (version, id) in [(V3_1_1, "kaw311"), (V5, "kaw5")] {
        let (c, _) = w.connect(with_will(
            with_keep_alive(connect(version, id), 2),
            will("will/ka", b"timeout", QoS::AtLeastOnce, false),
        ));
        // The watcher has keep alive 0, so only the client under test can time out.
        w.advance_ms(2_999);
        w.recv_none(watcher);
        w.advance_ms(1);
        if version.is_v5() {
            expect_disconnect(&mut w, c, DisconnectReason::KeepAliveTimeout);
        } else {
            expect_silent_close(&mut w, c);
        }
        expect_message(
            &mut w,
            watcher,
            "will/ka",
            b"timeout",
            QoS::AtLeastOnce,
            false,
        );
    }
    assert_others_work(&mut w);
}

/// A connection closed by the server for a protocol error did not end with DISCONNECT, so its
/// will is published [MQTT-3.1.2-8] (3.1.1) (5.0): a second CONNECT [MQTT-3.1.0-2] (3.1.1) (5.0), an AUTH
/// packet without enhanced authentication [MQTT-4.12.0-7] (5.0), a malformed packet.
#[test]
fn will_published_on_protocol_error_mqtt_3_1_2_8() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    let auth = Packet::Auth(Auth {
        reason: AuthReason::ReAuthenticate,
        properties: AuthProperties::default(),
    });
    let cases = [
        (V3_1_1, Some(Packet::from(connect(V3_1_1, "x")))),
        (V5, Some(Packet::from(connect(V5, "x")))),
        (V5, Some(auth)),
        (V3_1_1, None),
        (V5, None),
    ];
    for (version, packet) in cases {
        let (c, _) = w.connect(with_will(
            connect(version, "pe"),
            will("will/pe", b"broken", QoS::AtMostOnce, false),
        ));
        match &packet {
            Some(p) => w.send(c, p),
            None => w.send_raw(c, &[0x00, 0x00]),
        }
        if version.is_v5() {
            let reason = if packet.is_some() {
                DisconnectReason::ProtocolError
            } else {
                DisconnectReason::MalformedPacket
            };
            expect_disconnect(&mut w, c, reason);
        } else {
            expect_silent_close(&mut w, c);
        }
        expect_message(
            &mut w,
            watcher,
            "will/pe",
            b"broken",
            QoS::AtMostOnce,
            false,
        );
    }
    assert_others_work(&mut w);
}

/// DISCONNECT deletes the will: it is not published, then or later [MQTT-3.14.4-3] (3.1.1)
/// [MQTT-3.14.4-3] [MQTT-3.1.2-10] (5.0).
#[test]
fn will_not_published_after_disconnect_mqtt_3_14_4_3() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    for (version, id) in [(V3_1, "nd31"), (V3_1_1, "nd311"), (V5, "nd5")] {
        let (c, _) = w.connect(with_will(
            v5_or(version, id, Some(60)),
            will("will/nd", b"no", QoS::AtLeastOnce, true),
        ));
        w.send(c, &disconnect());
        expect_silent_close(&mut w, c);
        w.peer_close(c);
        w.advance_secs(120);
        w.recv_none(watcher);
    }
    // Nor was it retained.
    let late = w.client(V3_1_1, "late");
    let got = subscribe_recv(&mut w, late, "will/#", QoS::AtLeastOnce);
    assert!(publishes(&got).is_empty(), "{got:?}");
    assert_others_work(&mut w);
}

/// A CONNECT of `version` with Clean Start 1; for 5.0 also a Session Expiry Interval.
fn v5_or(version: ProtocolVersion, id: &str, expiry: Option<u32>) -> Connect {
    if version.is_v5() {
        v5_expiry(id, true, expiry)
    } else {
        connect(version, id)
    }
}

/// 5.0 DISCONNECT with reason 0x04 (Disconnect with Will Message) publishes the will
/// [MQTT-3.14.4-3] [MQTT-3.1.2-8] (5.0).
#[test]
fn will_published_on_v5_disconnect_with_will_message_0x04() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    let (c, _) = w.connect(with_will(
        connect(V5, "dww"),
        will("will/dww", b"asked", QoS::ExactlyOnce, false),
    ));
    w.send(
        c,
        &Packet::Disconnect(Disconnect::new(DisconnectReason::DisconnectWithWillMessage)),
    );
    expect_silent_close(&mut w, c);
    expect_message(
        &mut w,
        watcher,
        "will/dww",
        b"asked",
        QoS::ExactlyOnce,
        false,
    );
    assert_others_work(&mut w);
}

/// The will is published at its Will QoS [MQTT-3.1.2-9] (3.1.1) (5.0): a subscriber at QoS 2
/// receives it at the will's QoS; a subscriber at a lower QoS at its own.
#[test]
fn will_qos_honoured_mqtt_3_1_2_9() {
    let mut w = World::default();
    let high = will_watcher(&mut w, "high");
    let low = w.client(V3_1_1, "low");
    w.subscribe(low, "will/#", QoS::AtMostOnce);
    for (version, qos) in [
        (V3_1_1, QoS::AtMostOnce),
        (V3_1_1, QoS::AtLeastOnce),
        (V3_1_1, QoS::ExactlyOnce),
        (V5, QoS::AtLeastOnce),
        (V3_1, QoS::ExactlyOnce),
    ] {
        let (c, _) = w.connect(with_will(
            connect(version, "wq"),
            will("will/q", b"q", qos, false),
        ));
        w.peer_close(c);
        expect_message(&mut w, high, "will/q", b"q", qos, false);
        expect_message(&mut w, low, "will/q", b"q", QoS::AtMostOnce, false);
    }
    assert_others_work(&mut w);
}

/// Will Retain 1 publishes the will as a retained message [MQTT-3.1.2-17] (3.1.1) (5.0): a
/// subscriber present at the time gets it with RETAIN 0 [MQTT-3.3.1-9] (3.1.1), a later
/// subscriber gets it with RETAIN 1 [MQTT-3.3.1-8] (3.1.1). Will Retain 0 leaves nothing retained
/// [MQTT-3.1.2-16] (3.1.1) (5.0).
#[test]
fn will_retain_honoured_mqtt_3_1_2_17_mqtt_3_1_2_16() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    for (version, id) in [(V3_1_1, "wr311"), (V5, "wr5")] {
        let (c, _) = w.connect(with_will(
            connect(version, id),
            will("will/ret", b"kept", QoS::AtLeastOnce, true),
        ));
        w.peer_close(c);
        expect_message(
            &mut w,
            watcher,
            "will/ret",
            b"kept",
            QoS::AtLeastOnce,
            false,
        );
        let late = w.client(V3_1_1, "late");
        let got = subscribe_recv(&mut w, late, "will/ret", QoS::ExactlyOnce);
        let retained = publishes(&got);
        assert_eq!(retained.len(), 1, "{got:?}");
        let p = retained[0];
        assert_eq!((&p.topic[..], &p.payload[..]), ("will/ret", &b"kept"[..]));
        assert_eq!(p.qos_pid.qos(), QoS::AtLeastOnce);
        assert!(
            p.retain,
            "a retained message sent for a new subscription has RETAIN 1"
        );
        w.send(late, &disconnect());
        // Clear it for the next round.
        let cleaner = w.client(V3_1_1, "cleaner");
        w.send(
            cleaner,
            &publish_retained("will/ret", b"", QoS::AtMostOnce, 0),
        );
        let got = w.recv_one(watcher);
        assert!(as_publish(&got).payload.is_empty());
        w.send(cleaner, &disconnect());
    }
    let (c, _) = w.connect(with_will(
        connect(V3_1_1, "wnr"),
        will("will/nr", b"gone", QoS::AtLeastOnce, false),
    ));
    w.peer_close(c);
    expect_message(&mut w, watcher, "will/nr", b"gone", QoS::AtLeastOnce, false);
    let late = w.client(V5, "late2");
    let got = subscribe_recv(&mut w, late, "will/nr", QoS::AtLeastOnce);
    assert!(publishes(&got).is_empty(), "{got:?}");
    assert_eq!(w.broker.stats().retained_messages, 0);
    assert_others_work(&mut w);
}

/// 5.0 Will Delay Interval: the will is published only when the delay has passed
/// [MQTT-3.1.2-8] (5.0).
#[test]
fn will_delay_publishes_after_the_delay_mqtt_3_1_2_8_v5() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    let (c, _) = w.connect(with_will(
        v5_expiry("wd", false, Some(60)),
        delayed_will("will/wd", b"later", 5),
    ));
    w.advance_secs(1);
    w.peer_close(c);
    w.advance_ms(4_999);
    w.recv_none(watcher);
    w.advance_ms(1);
    expect_message(&mut w, watcher, "will/wd", b"later", QoS::AtMostOnce, false);
    w.advance_secs(120);
    w.recv_none(watcher);
    assert_others_work(&mut w);
}

/// 5.0: a reconnect to the session within the Will Delay Interval means the will is never
/// published [MQTT-3.1.2-26] (5.0); a later abnormal close of the new connection without a will
/// publishes nothing either.
#[test]
fn will_delay_cancelled_by_reconnect_mqtt_3_1_2_26() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    let (c, _) = w.connect(with_will(
        v5_expiry("wdr", false, Some(60)),
        delayed_will("will/wdr", b"never", 5),
    ));
    w.peer_close(c);
    w.advance_secs(3);
    let (c, ack) = w.connect(v5_expiry("wdr", false, Some(60)));
    assert!(ack.session_present);
    w.advance_secs(10);
    w.recv_none(watcher);
    w.peer_close(c);
    w.advance_secs(120);
    w.recv_none(watcher);
    assert_others_work(&mut w);
}

/// 5.0: when the session ends before the Will Delay Interval passes, the will is published then
/// [MQTT-3.1.2-8] (5.0): at once with Session Expiry Interval 0, at the session's expiry when it
/// is shorter than the delay.
#[test]
fn will_published_when_session_ends_before_delay_mqtt_3_1_2_8_v5() {
    let mut w = World::default();
    let watcher = will_watcher(&mut w, "watcher");
    let (c, _) = w.connect(with_will(
        v5_expiry("wse0", true, Some(0)),
        delayed_will("will/wse", b"now", 30),
    ));
    w.peer_close(c);
    expect_message(&mut w, watcher, "will/wse", b"now", QoS::AtMostOnce, false);

    let (c, _) = w.connect(with_will(
        v5_expiry("wse3", true, Some(3)),
        delayed_will("will/wse", b"at expiry", 30),
    ));
    w.peer_close(c);
    w.advance_ms(2_999);
    w.recv_none(watcher);
    w.advance_ms(1);
    expect_message(
        &mut w,
        watcher,
        "will/wse",
        b"at expiry",
        QoS::AtMostOnce,
        false,
    );
    w.advance_secs(60);
    w.recv_none(watcher);
    assert_others_work(&mut w);
}

// ---------------------------------------------------------------------------------------------
// Protocol violations after CONNECT
// ---------------------------------------------------------------------------------------------

/// 5.0: with topic aliases switched off no Topic Alias Maximum is announced, so a PUBLISH with a
/// Topic Alias breaks [MQTT-3.2.2-18] (5.0): DISCONNECT 0x94 (Topic Alias invalid), then the
/// close [MQTT-4.13.1-1] (5.0). Nothing is delivered.
#[test]
fn v5_publish_with_topic_alias_gets_disconnect_0x94_mqtt_3_2_2_18() {
    let mut w = World::new(midge_core::broker::Config {
        max_topic_alias: 0,
        ..midge_core::broker::Config::default()
    });
    let (_, ack) = w.connect(connect(V5, "alias-probe"));
    assert_eq!(ack.properties.topic_alias_maximum, None);
    let sub = w.client(V3_1_1, "alias-sub");
    w.subscribe(sub, "alias/+", QoS::AtMostOnce);
    let c = w.client(V5, "alias");
    let mut p = publish("alias/t", b"x", QoS::AtMostOnce, 0);
    if let Packet::Publish(p) = &mut p {
        p.properties.topic_alias = NonZeroU16::new(1);
    }
    w.send(c, &p);
    expect_disconnect(&mut w, c, DisconnectReason::TopicAliasInvalid);
    w.recv_none(sub);
    assert_others_work(&mut w);
}

/// 5.0: a PUBLISH from a client must not carry a Subscription Identifier [MQTT-3.3.4-6] (5.0):
/// DISCONNECT 0x82 (Protocol Error), then the close.
#[test]
fn v5_publish_with_subscription_identifier_gets_disconnect_0x82_mqtt_3_3_4_6() {
    let mut w = World::default();
    let sub = w.client(V3_1_1, "sid-sub");
    w.subscribe(sub, "sid/+", QoS::AtMostOnce);
    let c = w.client(V5, "sid");
    let mut p = publish("sid/t", b"x", QoS::AtLeastOnce, 1);
    if let Packet::Publish(p) = &mut p {
        p.properties.subscription_identifiers = vec![7];
    }
    w.send(c, &p);
    expect_disconnect(&mut w, c, DisconnectReason::ProtocolError);
    w.recv_none(sub);
    assert_others_work(&mut w);
}

/// 5.0: a client that gave no Authentication Method must not send AUTH [MQTT-4.12.0-7] (5.0):
/// DISCONNECT 0x82 (Protocol Error), then the close.
#[test]
fn v5_auth_packet_gets_disconnect_0x82_mqtt_4_12_0_7() {
    let mut w = World::default();
    for reason in [AuthReason::Success, AuthReason::ReAuthenticate] {
        let c = w.client(V5, "auth");
        w.send(
            c,
            &Packet::Auth(Auth {
                reason,
                properties: AuthProperties::default(),
            }),
        );
        expect_disconnect(&mut w, c, DisconnectReason::ProtocolError);
    }
    // Packet type 15 does not exist before 5.0: malformed, closed silently.
    let c = w.client(V3_1_1, "auth311");
    w.send_raw(c, &[0xF0, 0x00]);
    expect_silent_close(&mut w, c);
    assert_others_work(&mut w);
}

/// A malformed packet after CONNECT: 5.0 gets DISCONNECT 0x81 (Malformed Packet) then the close
/// [MQTT-4.13.1-1] (5.0); 3.1.x only the close [MQTT-4.8.0-1] (3.1.1).
#[test]
fn malformed_packet_after_connect_mqtt_4_13_1_1_mqtt_4_8_0_1() {
    let mut w = World::default();
    let cases: [&[u8]; 4] = [
        // Reserved packet type 0.
        &[0x00, 0x00],
        // PUBLISH with QoS 3 [MQTT-3.3.1-4] (3.1.1) (5.0).
        &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01],
        // PINGREQ with a body.
        &[0xC0, 0x01, 0x00],
        // SUBSCRIBE with reserved flags 0 [MQTT-3.8.1-1] (3.1.1) (5.0).
        &[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x00],
    ];
    for version in [V3_1_1, V5] {
        for bytes in cases {
            let c = w.client(version, "mal");
            w.send_raw(c, bytes);
            if version.is_v5() {
                expect_disconnect(&mut w, c, DisconnectReason::MalformedPacket);
            } else {
                expect_silent_close(&mut w, c);
            }
        }
    }
    // 3.1 is held to the reserved packet type, PUBLISH's QoS and packet lengths (not to the
    // fixed header flags of other packets, which it did not define as reserved).
    for bytes in &cases[..3] {
        let c = w.client(V3_1, "mal31");
        w.send_raw(c, bytes);
        expect_silent_close(&mut w, c);
    }
    assert_others_work(&mut w);
}

/// A packet larger than `max_packet_size`: 5.0 clients are told the maximum in CONNACK and get
/// DISCONNECT 0x95 (Packet too large) when they exceed it [MQTT-3.2.2-15] [MQTT-4.13.1-1] (5.0);
/// 3.1.x clients are closed. A CONNECT that is too large gets CONNACK 0x95 (5.0) or is closed
/// (3.1.1).
#[test]
fn packet_too_large_gets_disconnect_0x95_mqtt_3_2_2_15() {
    let mut w = World::new(Config {
        max_packet_size: 128,
        ..Config::default()
    });
    let sub = w.client(V3_1_1, "big-sub");
    w.subscribe(sub, "big/+", QoS::AtMostOnce);
    let big = publish("big/t", &[b'x'; 200], QoS::AtMostOnce, 0);
    let (c, ack) = w.connect(connect(V5, "big5"));
    assert_eq!(ack.properties.maximum_packet_size, NonZeroU32::new(128));
    w.send(c, &big);
    expect_disconnect(&mut w, c, DisconnectReason::PacketTooLarge);
    for version in [V3_1_1, V3_1] {
        let c = w.client(version, "big3");
        w.send(c, &big);
        expect_silent_close(&mut w, c);
    }
    w.recv_none(sub);
    // A packet of exactly the maximum is accepted: 2 + 2 + 5 + 119 = 128 bytes.
    let c = w.client(V3_1_1, "fits");
    w.send(c, &publish("big/t", &[b'y'; 119], QoS::AtMostOnce, 0));
    let got = w.recv_one(sub);
    assert_eq!(as_publish(&got).payload.len(), 119);
    expect_open_quiet(&mut w, c);

    let long_id = "i".repeat(150);
    let (c, ack) = w.try_connect(connect(V5, &long_id));
    assert_eq!(ack.reason, ConnectReason::PacketTooLarge);
    assert!(w.is_closed(c));
    let c = w.open(V3_1_1);
    w.send(c, &Packet::from(connect(V3_1_1, &long_id)));
    expect_silent_close(&mut w, c);
    assert_others_work(&mut w);
}
