//! CONNECT and CONNACK (section 3.1 and 3.2 of both versions), sessions, keep alive and wills.

use crate::{addr, connect, connect_persistent, end_session, open, persistent};
use midge_conformance::client::{RawClient, V5, V311, connect_packet, encode};
use midge_conformance::names::Names;
use midge_core::codec::{
    ConnectReason, DisconnectReason, LastWill, Packet, ProtocolVersion, QoS, WillProperties,
};
use std::time::{Duration, Instant};

/// Offsets in an encoded CONNECT with a remaining length below 128: the protocol name's bytes,
/// the protocol level and the connect flags.
const NAME: std::ops::Range<usize> = 4..8;
const LEVEL: usize = 8;
const FLAGS: usize = 9;

fn connect_bytes(version: ProtocolVersion, client_id: &str) -> Vec<u8> {
    let bytes = encode(&Packet::from(connect_packet(version, client_id)), version);
    assert!(bytes[1] < 128, "short CONNECT expected");
    bytes
}

// ---------------------------------------------------------------------------------------------
// The first packet, the second CONNECT
// ---------------------------------------------------------------------------------------------

fn first_packet_not_connect(version: ProtocolVersion) {
    let mut c = open(version);
    // PINGREQ before CONNECT.
    let _ = c.send_raw(&[0xC0, 0x00]);
    c.expect_closed_silently();
}

/// Covers [MQTT-4.8.0-1] (3.1.1).
#[test]
fn mqtt_3_1_0_1_v311_first_packet_not_connect_closes() {
    first_packet_not_connect(V311);
}

/// Nothing may come before CONNACK, not even DISCONNECT.
/// Covers [MQTT-3.14.0-1] (5.0) [MQTT-4.13.1-1] (5.0).
#[test]
fn mqtt_3_1_0_1_v5_first_packet_not_connect_closes() {
    first_packet_not_connect(V5);
}

fn second_connect(version: ProtocolVersion) -> RawClient {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    c.send(&Packet::from(connect_packet(
        version,
        &names.client_id("a"),
    )));
    c
}

#[test]
fn mqtt_3_1_0_2_v311_second_connect_closes() {
    second_connect(V311).expect_closed_silently();
}

/// At most one CONNACK per connection.
/// Covers [MQTT-3.2.0-2] (5.0).
#[test]
fn mqtt_3_1_0_2_v5_second_connect_closes() {
    second_connect(V5).expect_disconnect(&[DisconnectReason::ProtocolError]);
}

// ---------------------------------------------------------------------------------------------
// Protocol name, level and flags
// ---------------------------------------------------------------------------------------------

fn wrong_protocol_name(version: ProtocolVersion) -> RawClient {
    let names = Names::new();
    let mut bytes = connect_bytes(version, &names.client_id("a"));
    bytes[NAME].copy_from_slice(b"MQTX");
    let mut c = open(version);
    let _ = c.send_raw(&bytes);
    c
}

/// The server may close or go on under another specification, but must not accept the
/// connection as MQTT 3.1.1.
#[test]
fn mqtt_3_1_2_1_v311_wrong_protocol_name_is_not_accepted() {
    let mut c = wrong_protocol_name(V311);
    let before = c.expect_closed();
    assert!(
        !before
            .iter()
            .any(|p| matches!(p, Packet::ConnAck(a) if a.reason == ConnectReason::Success)),
        "a CONNECT with protocol name MQTX was accepted: {before:?}"
    );
}

#[test]
fn mqtt_3_1_2_1_v5_wrong_protocol_name_is_refused() {
    wrong_protocol_name(V5).expect_connect_refused(&[ConnectReason::UnsupportedProtocolVersion]);
}

fn unsupported_level(version: ProtocolVersion) -> RawClient {
    let names = Names::new();
    let mut bytes = connect_bytes(version, &names.client_id("a"));
    bytes[LEVEL] = 6;
    let mut c = open(version);
    let _ = c.send_raw(&bytes);
    c
}

/// CONNACK 0x01 with Session Present 0, then closure.
/// Covers [MQTT-3.2.2-4] (3.1.1) [MQTT-3.2.2-5] (3.1.1).
#[test]
fn mqtt_3_1_2_2_v311_unsupported_level_gets_connack_1_and_close() {
    let mut c = unsupported_level(V311);
    let before = c.expect_closed();
    match before.as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.reason, ConnectReason::UnsupportedProtocolVersion);
            assert!(!ack.session_present, "Session Present with a refusal");
        }
        other => panic!("expected CONNACK 0x01 then closure, got {other:?}"),
    }
}

#[test]
fn mqtt_3_1_2_2_v5_unsupported_version_is_refused() {
    unsupported_level(V5).expect_connect_refused(&[ConnectReason::UnsupportedProtocolVersion]);
}

fn reserved_connect_flag(version: ProtocolVersion) -> RawClient {
    let names = Names::new();
    let mut bytes = connect_bytes(version, &names.client_id("a"));
    bytes[FLAGS] |= 0x01;
    let mut c = open(version);
    let _ = c.send_raw(&bytes);
    c
}

/// Closed without a CONNACK.
/// Covers [MQTT-3.1.4-1] (3.1.1).
#[test]
fn mqtt_3_1_2_3_v311_reserved_connect_flag_closes() {
    reserved_connect_flag(V311).expect_closed_silently();
}

/// Covers [MQTT-3.1.4-1] (5.0).
#[test]
fn mqtt_3_1_2_3_v5_reserved_connect_flag_closes() {
    reserved_connect_flag(V5).expect_connect_refused(&[ConnectReason::MalformedPacket]);
}

fn will_qos_without_will(version: ProtocolVersion) -> RawClient {
    let names = Names::new();
    let mut bytes = connect_bytes(version, &names.client_id("a"));
    // Will QoS 1 (bit 3) with the Will Flag (bit 2) clear.
    bytes[FLAGS] |= 0x08;
    let mut c = open(version);
    let _ = c.send_raw(&bytes);
    c
}

/// Covers [MQTT-3.1.2-11] (3.1.1).
#[test]
fn mqtt_3_1_2_13_v311_will_qos_without_will_flag_closes() {
    will_qos_without_will(V311).expect_closed_silently();
}

/// Covers [MQTT-3.1.2-11] (5.0).
#[test]
fn mqtt_3_1_2_13_v5_will_qos_without_will_flag_closes() {
    will_qos_without_will(V5).expect_connect_refused(&[ConnectReason::MalformedPacket]);
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// A persistent session's subscription outlives the connection: the reconnecting client gets
/// Session Present 1 and messages without subscribing again.
fn session_resumes(version: ProtocolVersion) {
    let names = Names::new();
    let id = names.client_id("sub");
    let topic = names.topic("t");
    let (mut sub, present) = connect_persistent(version, &id);
    assert!(!present, "Session Present for a new session");
    sub.sub(&topic, QoS::AtLeastOnce);
    sub.disconnect();
    let (mut sub, present) = connect_persistent(version, &id);
    assert!(present, "Session Present 0 for a stored session");
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&topic, b"resumed", QoS::AtLeastOnce, false);
    let p = sub.recv_publish();
    assert_eq!(&p.payload[..], b"resumed");
    sub.disconnect();
    end_session(version, &id);
}

/// Covers [MQTT-3.2.2-2] (3.1.1) [MQTT-3.2.2-3] (3.1.1) [MQTT-3.1.3-2] (3.1.1)
/// Covers [MQTT-3.1.4-3] (3.1.1) [MQTT-4.1.0-1] (3.1.1).
#[test]
fn mqtt_3_1_2_4_v311_clean_session_0_resumes_the_session() {
    session_resumes(V311);
}

/// Covers [MQTT-3.1.2-6] (5.0) [MQTT-3.2.2-3] (5.0) [MQTT-3.1.3-2] (5.0) [MQTT-3.1.4-4] (5.0).
#[test]
fn mqtt_3_1_2_5_v5_clean_start_0_resumes_the_session() {
    session_resumes(V5);
}

/// QoS 1 and 2 messages that arrive while a persistent session has no connection wait for it.
fn messages_queued_while_disconnected(version: ProtocolVersion) {
    let names = Names::new();
    let id = names.client_id("sub");
    let topic = names.topic("t");
    let (mut sub, _) = connect_persistent(version, &id);
    sub.sub(&topic, QoS::ExactlyOnce);
    sub.disconnect();
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&topic, b"one", QoS::AtLeastOnce, false);
    publisher.publish(&topic, b"two", QoS::ExactlyOnce, false);
    let (mut sub, present) = connect_persistent(version, &id);
    assert!(present);
    let got: Vec<_> = (0..2).map(|_| sub.recv_publish().payload).collect();
    assert_eq!(got, [&b"one"[..], &b"two"[..]]);
    sub.disconnect();
    end_session(version, &id);
}

/// Covers [MQTT-4.5.0-1] (3.1.1).
#[test]
fn mqtt_3_1_2_5_v311_messages_stored_while_disconnected() {
    messages_queued_while_disconnected(V311);
}

/// Covers [MQTT-4.5.0-1] (5.0).
#[test]
fn mqtt_3_1_2_25_v5_session_stored_after_the_connection_closes() {
    messages_queued_while_disconnected(V5);
}

/// A clean session discards the stored one: Session Present 0, no subscriptions left.
fn clean_session_discards(version: ProtocolVersion) {
    let names = Names::new();
    let id = names.client_id("sub");
    let topic = names.topic("t");
    let (mut sub, _) = connect_persistent(version, &id);
    sub.sub(&topic, QoS::AtLeastOnce);
    sub.disconnect();
    let (mut sub, ack) = RawClient::connect_with(addr(), connect_packet(version, &id));
    assert!(!ack.session_present, "Session Present with a clean session");
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&topic, b"x", QoS::AtLeastOnce, false);
    publisher.ping();
    sub.expect_nothing();
}

/// Covers [MQTT-3.2.2-1] (3.1.1).
#[test]
fn mqtt_3_1_2_6_v311_clean_session_1_discards_the_session() {
    clean_session_discards(V311);
}

/// Covers [MQTT-3.2.2-2] (5.0).
#[test]
fn mqtt_3_1_2_4_v5_clean_start_1_discards_the_session() {
    clean_session_discards(V5);
}

// ---------------------------------------------------------------------------------------------
// Client identifiers
// ---------------------------------------------------------------------------------------------

fn longest_guaranteed_client_id(version: ProtocolVersion) {
    let names = Names::new();
    let mut id = names.client_id("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ");
    id.truncate(23);
    assert_eq!(id.len(), 23);
    connect(version, &id).disconnect();
}

#[test]
fn mqtt_3_1_3_5_v311_23_alphanumeric_characters_are_allowed() {
    longest_guaranteed_client_id(V311);
}

#[test]
fn mqtt_3_1_3_5_v5_23_alphanumeric_characters_are_allowed() {
    longest_guaranteed_client_id(V5);
}

/// Covers [MQTT-3.2.2-4] (3.1.1) [MQTT-3.2.2-5] (3.1.1).
#[test]
fn mqtt_3_1_3_8_v311_empty_client_id_with_clean_session_0_is_rejected() {
    let mut c = open(V311);
    c.send(&Packet::from(persistent(V311, "")));
    let before = c.expect_closed();
    match before.as_slice() {
        [Packet::ConnAck(ack)] => {
            assert_eq!(ack.reason, ConnectReason::ClientIdentifierNotValid);
            assert!(!ack.session_present);
        }
        other => panic!("expected CONNACK 0x02 then closure, got {other:?}"),
    }
}

/// A server that accepts empty client ids gives each connection its own: two at once both
/// stay connected (neither takes the other over).
#[test]
fn mqtt_3_1_3_6_v311_empty_client_ids_get_distinct_identities() {
    let mut a = open(V311);
    let ack = a.handshake(connect_packet(V311, ""));
    if ack.reason != ConnectReason::Success {
        // Allowed: the server need not accept empty client ids, but then says so.
        assert_eq!(ack.reason, ConnectReason::ClientIdentifierNotValid);
        return;
    }
    let mut b = connect(V311, "");
    a.ping();
    b.ping();
}

/// Covers [MQTT-3.1.3-6] (5.0) [MQTT-3.1.3-7] (5.0).
#[test]
fn mqtt_3_2_2_16_v5_empty_client_id_gets_an_assigned_identifier() {
    let mut a = open(V5);
    let ack_a = a.handshake(connect_packet(V5, ""));
    if ack_a.reason != ConnectReason::Success {
        assert_eq!(ack_a.reason, ConnectReason::ClientIdentifierNotValid);
        return;
    }
    let mut b = open(V5);
    let ack_b = b.handshake(connect_packet(V5, ""));
    let id_a = ack_a
        .properties
        .assigned_client_identifier
        .expect("Assigned Client Identifier in CONNACK");
    let id_b = ack_b
        .properties
        .assigned_client_identifier
        .expect("Assigned Client Identifier in CONNACK");
    assert!(!id_a.is_empty());
    assert_ne!(id_a, id_b, "two connections were assigned one identifier");
    a.ping();
    b.ping();
}

// ---------------------------------------------------------------------------------------------
// Acceptance, takeover, refusal
// ---------------------------------------------------------------------------------------------

/// CONNECT and PINGREQ in one write: CONNACK 0x00 comes first, then PINGRESP.
fn connack_comes_first(version: ProtocolVersion) {
    let names = Names::new();
    let mut bytes = connect_bytes(version, &names.client_id("a"));
    bytes.extend_from_slice(&[0xC0, 0x00]);
    let mut c = open(version);
    c.send_raw(&bytes).expect("send");
    match c.recv() {
        Packet::ConnAck(ack) => {
            assert_eq!(ack.reason, ConnectReason::Success);
            assert!(!ack.session_present);
        }
        other => panic!("expected CONNACK first, got {other:?}"),
    }
    assert!(matches!(c.recv(), Packet::PingResp));
}

/// Covers [MQTT-3.2.0-1] (3.1.1) [MQTT-7.1.1-1] (3.1.1) [MQTT-7.0.0-2] (3.1.1).
#[test]
fn mqtt_3_1_4_4_v311_valid_connect_gets_connack_0() {
    connack_comes_first(V311);
}

/// Covers [MQTT-3.2.0-1] (5.0) [MQTT-7.1.1-1] (5.0) [MQTT-7.0.0-2] (5.0).
#[test]
fn mqtt_3_1_4_5_v5_valid_connect_gets_connack_success() {
    connack_comes_first(V5);
}

#[test]
fn mqtt_3_1_4_2_v311_same_client_id_disconnects_the_existing_client() {
    let names = Names::new();
    let id = names.client_id("dup");
    let mut first = connect(V311, &id);
    let mut second = connect(V311, &id);
    first.expect_closed_silently();
    second.ping();
}

#[test]
fn mqtt_3_1_4_3_v5_same_client_id_takes_over_with_0x8e() {
    let names = Names::new();
    let id = names.client_id("dup");
    let mut first = connect(V5, &id);
    let mut second = connect(V5, &id);
    first.expect_disconnect(&[DisconnectReason::SessionTakenOver]);
    second.ping();
}

/// A refused CONNECT followed, in the same write, by a PUBLISH: the PUBLISH must not reach
/// a subscriber.
fn refused_connect_then_publish(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("t");
    let mut sub = connect(version, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtMostOnce);
    let mut bytes = connect_bytes(version, &names.client_id("bad"));
    bytes[LEVEL] = 6;
    let publish = midge_conformance::client::publish_packet(
        &topic,
        b"must not arrive",
        QoS::AtMostOnce,
        false,
        midge_conformance::client::pid(1),
    );
    bytes.extend(encode(&Packet::Publish(publish), version));
    let mut bad = open(version);
    let _ = bad.send_raw(&bytes);
    let _ = bad.expect_closed();
    sub.expect_nothing();
}

#[test]
fn mqtt_3_1_4_5_v311_data_after_a_refused_connect_is_not_processed() {
    refused_connect_then_publish(V311);
}

#[test]
fn mqtt_3_1_4_6_v5_data_after_a_refused_connect_is_not_processed() {
    refused_connect_then_publish(V5);
}

// ---------------------------------------------------------------------------------------------
// Keep alive
// ---------------------------------------------------------------------------------------------

/// Keep alive 1 s and silence: closed within one and a half times the keep alive the broker
/// uses (with a second of slack for scheduling). Returns the client and that limit.
fn keep_alive_expires(version: ProtocolVersion) -> (RawClient, Duration) {
    let names = Names::new();
    let mut connect = connect_packet(version, &names.client_id("a"));
    connect.keep_alive = 1;
    let (c, ack) = RawClient::connect_with(addr(), connect);
    let keep_alive = ack.properties.server_keep_alive.unwrap_or(1);
    assert!(keep_alive > 0, "Server Keep Alive 0 turns the check off");
    (
        c,
        Duration::from_millis(u64::from(keep_alive) * 1500 + 1000),
    )
}

#[test]
fn mqtt_3_1_2_24_v311_silent_client_is_disconnected_after_1_5_keep_alive() {
    let (mut c, limit) = keep_alive_expires(V311);
    let started = Instant::now();
    c.expect_closed_silently();
    assert!(
        started.elapsed() <= limit,
        "closed after {:?}",
        started.elapsed()
    );
}

/// Covers [MQTT-3.2.2-22] (5.0).
#[test]
fn mqtt_3_1_2_24_v5_silent_client_is_disconnected_after_1_5_keep_alive() {
    let (mut c, limit) = keep_alive_expires(V5);
    let started = Instant::now();
    c.expect_disconnect(&[DisconnectReason::KeepAliveTimeout]);
    assert!(
        started.elapsed() <= limit,
        "closed after {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// Wills
// ---------------------------------------------------------------------------------------------

fn with_will(version: ProtocolVersion, id: &str, topic: &str, retain: bool) -> RawClient {
    let mut c = connect_packet(version, id);
    c.will = Some(LastWill {
        topic: topic.into(),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain,
        properties: WillProperties::default(),
    });
    RawClient::connect_with(addr(), c).0
}

/// A connection that ends without DISCONNECT has its will published, not retained.
fn will_published(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("will");
    let mut sub = connect(version, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtLeastOnce);
    let c = with_will(version, &names.client_id("w"), &topic, false);
    c.drop_connection();
    let p = sub.recv_publish();
    assert_eq!((&*p.topic, &p.payload[..]), (&*topic, &b"gone"[..]));
    assert!(
        !p.retain,
        "a will without Will Retain was published retained"
    );
}

/// Covers [MQTT-3.1.2-16] (3.1.1).
#[test]
fn mqtt_3_1_2_8_v311_will_published_when_the_connection_drops() {
    will_published(V311);
}

/// Covers [MQTT-3.1.2-7] (5.0) [MQTT-3.1.2-16] (5.0).
#[test]
fn mqtt_3_1_2_8_v5_will_published_when_the_connection_drops() {
    will_published(V5);
}

/// DISCONNECT (0x00 in 5.0) discards the will.
fn will_discarded_on_disconnect(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("will");
    let mut sub = connect(version, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtLeastOnce);
    with_will(version, &names.client_id("w"), &topic, false).disconnect();
    sub.expect_nothing();
}

/// Covers [MQTT-3.1.2-10] (3.1.1).
#[test]
fn mqtt_3_14_4_3_v311_disconnect_discards_the_will() {
    will_discarded_on_disconnect(V311);
}

/// Covers [MQTT-3.1.2-10] (5.0).
#[test]
fn mqtt_3_14_4_3_v5_disconnect_0_discards_the_will() {
    will_discarded_on_disconnect(V5);
}

/// A will with Will Retain 1 is published retained: a later subscriber gets it.
fn will_retained(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("will");
    with_will(version, &names.client_id("w"), &topic, true).drop_connection();
    // The will goes out once the broker sees the connection end; poll for the retained copy.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut sub = connect(version, &names.client_id("sub"));
        sub.sub(&topic, QoS::AtLeastOnce);
        match sub.try_recv(Duration::from_millis(200)) {
            Ok(Packet::Publish(p)) => {
                assert!(p.retain, "retained will sent without RETAIN");
                assert_eq!(&p.payload[..], b"gone");
                break;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) if Instant::now() < deadline => {}
            Err(e) => panic!("no retained will: {e:?}"),
        }
    }
    let mut cleaner = connect(version, &names.client_id("clean"));
    cleaner.publish(&topic, b"", QoS::AtLeastOnce, true);
}

#[test]
fn mqtt_3_1_2_17_v311_will_retain_1_publishes_retained() {
    will_retained(V311);
}

#[test]
fn mqtt_3_1_2_17_v5_will_retain_1_publishes_retained() {
    will_retained(V5);
}
