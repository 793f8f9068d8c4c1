//! Fields that must be present, absent or well-formed: the CONNECT flags against the CONNECT
//! payload (3.1.2, 3.1.3), and UTF-8 strings wherever they appear (1.5.3 of 3.1.1, 1.5.4 and
//! 1.5.7 of 5.0). The packets are built byte by byte, since the codec refuses to write them.

use crate::{connect, open};
use midge_conformance::client::{RawClient, V5, V311};
use midge_conformance::names::Names;
use midge_core::codec::{ConnectReason, DisconnectReason, ProtocolVersion, QoS};

/// Connect flags (3.1.2.3).
const USER: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL_QOS_1: u8 = 0x08;
const WILL_QOS_3: u8 = 0x18;
const WILL: u8 = 0x04;
const CLEAN: u8 = 0x02;

/// Invalid UTF-8: a lone continuation byte.
const NOT_UTF8: &[u8] = &[b'a', 0x80, b'b'];

/// A length-prefixed string or binary field.
fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(bytes.len())
        .expect("short field")
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A fixed header and `body`, with a one-byte Remaining Length.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let len = u8::try_from(body.len())
        .ok()
        .filter(|&l| l < 128)
        .expect("short packet");
    let mut out = vec![first, len];
    out.extend_from_slice(body);
    out
}

/// Parts of a CONNECT payload after the client id.
enum Part<'a> {
    /// The Will Properties (empty, MQTT 5 only), Will Topic and Will Payload.
    Will(&'a [u8]),
    /// A string or binary field.
    Field(&'a [u8]),
    /// Bytes as they are.
    Raw(&'a [u8]),
}

/// A CONNECT with `flags`, keep alive 60, client id `client_id` (`None`: no payload at all)
/// and `parts` after it.
fn connect_bytes(
    version: ProtocolVersion,
    flags: u8,
    client_id: Option<&[u8]>,
    parts: &[Part<'_>],
) -> Vec<u8> {
    let mut body = field(b"MQTT");
    body.push(if version.is_v5() { 5 } else { 4 });
    body.push(flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    if version.is_v5() {
        body.push(0); // no properties
    }
    if let Some(id) = client_id {
        body.extend(field(id));
    }
    for part in parts {
        match part {
            Part::Will(topic) => {
                if version.is_v5() {
                    body.push(0);
                }
                body.extend(field(topic));
                body.extend(field(b"will"));
            }
            Part::Field(f) => body.extend(field(f)),
            Part::Raw(r) => body.extend_from_slice(r),
        }
    }
    packet(0x10, &body)
}

/// Sends `bytes` as the first packet and checks the broker refuses the connection: it closes
/// it, after at most a CONNACK 0x81 or 0x82 (MQTT 5; in 3.1.1 no CONNACK fits a malformed
/// CONNECT, and none may come).
fn refused(version: ProtocolVersion, bytes: &[u8]) {
    let mut c = open(version);
    let _ = c.send_raw(bytes);
    if version.is_v5() {
        c.expect_connect_refused(&[ConnectReason::MalformedPacket, ConnectReason::ProtocolError]);
    } else {
        c.expect_connect_refused(&[]);
    }
}

/// The same CONNECT with the fault repaired is accepted, so the refusal was for the fault.
fn accepted(version: ProtocolVersion, bytes: &[u8]) {
    let mut c = open(version);
    c.send_raw(bytes).expect("send CONNECT");
    let ack = c.expect_connack();
    assert_eq!(ack.reason, ConnectReason::Success, "{ack:?}");
}

fn id(names: &Names) -> Vec<u8> {
    names.client_id("a").into_bytes()
}

fn will_without_topic(version: ProtocolVersion) {
    let names = Names::new();
    let id = id(&names);
    let topic = names.topic("will");
    refused(
        version,
        &connect_bytes(version, CLEAN | WILL, Some(&id), &[]),
    );
    accepted(
        version,
        &connect_bytes(
            version,
            CLEAN | WILL,
            Some(&id),
            &[Part::Will(topic.as_bytes())],
        ),
    );
}

#[test]
fn mqtt_3_1_2_9_v311_will_flag_without_will_fields_closes() {
    will_without_topic(V311);
}

#[test]
fn mqtt_3_1_2_9_v5_will_flag_without_will_fields_closes() {
    will_without_topic(V5);
}

fn will_qos_3(version: ProtocolVersion) {
    let names = Names::new();
    let topic = names.topic("will");
    let id = id(&names);
    let will = [Part::Will(topic.as_bytes())];
    refused(
        version,
        &connect_bytes(version, CLEAN | WILL | WILL_QOS_3, Some(&id), &will),
    );
    accepted(
        version,
        &connect_bytes(version, CLEAN | WILL | WILL_QOS_1, Some(&id), &will),
    );
}

#[test]
fn mqtt_3_1_2_14_v311_will_qos_3_closes() {
    will_qos_3(V311);
}

#[test]
fn mqtt_3_1_2_14_v5_will_qos_3_closes() {
    will_qos_3(V5);
}

fn will_retain_without_will(version: ProtocolVersion) {
    let names = Names::new();
    let id = id(&names);
    refused(
        version,
        &connect_bytes(version, CLEAN | WILL_RETAIN, Some(&id), &[]),
    );
}

#[test]
fn mqtt_3_1_2_15_v311_will_retain_without_will_flag_closes() {
    will_retain_without_will(V311);
}

#[test]
fn mqtt_3_1_2_15_v5_will_retain_without_will_flag_closes() {
    will_retain_without_will(V5);
}

/// A user name (or password) in the payload that the flags do not announce: bytes left over
/// after the CONNECT's fields.
fn unannounced_field(version: ProtocolVersion, flags: u8, parts: &[Part<'_>]) {
    let names = Names::new();
    let id = id(&names);
    refused(
        version,
        &connect_bytes(version, CLEAN | flags, Some(&id), parts),
    );
}

#[test]
fn mqtt_3_1_2_18_v311_user_name_without_its_flag_closes() {
    unannounced_field(V311, 0, &[Part::Field(b"user")]);
}

#[test]
fn mqtt_3_1_2_18_v5_user_name_without_its_flag_closes() {
    unannounced_field(V5, 0, &[Part::Field(b"user")]);
}

#[test]
fn mqtt_3_1_2_20_v311_password_without_its_flag_closes() {
    unannounced_field(V311, USER, &[Part::Field(b"user"), Part::Field(b"pw")]);
}

#[test]
fn mqtt_3_1_2_20_v5_password_without_its_flag_closes() {
    unannounced_field(V5, USER, &[Part::Field(b"user"), Part::Field(b"pw")]);
}

#[test]
fn mqtt_3_1_2_19_v311_user_name_flag_without_user_name_closes() {
    unannounced_field(V311, USER, &[]);
}

#[test]
fn mqtt_3_1_2_19_v5_user_name_flag_without_user_name_closes() {
    unannounced_field(V5, USER, &[]);
}

#[test]
fn mqtt_3_1_2_21_v311_password_flag_without_password_closes() {
    unannounced_field(V311, USER | PASSWORD, &[Part::Field(b"user")]);
    complete_login(V311);
}

#[test]
fn mqtt_3_1_2_21_v5_password_flag_without_password_closes() {
    unannounced_field(V5, USER | PASSWORD, &[Part::Field(b"user")]);
    complete_login(V5);
}

/// The same flags with both fields present are accepted (anonymous logins are, so any user
/// name is), so the refusals above are for the missing fields.
fn complete_login(version: ProtocolVersion) {
    let names = Names::new();
    let id = id(&names);
    accepted(
        version,
        &connect_bytes(
            version,
            CLEAN | USER | PASSWORD,
            Some(&id),
            &[Part::Field(b"user"), Part::Field(b"pw")],
        ),
    );
}

/// 3.1.1 only: a password without a user name.
#[test]
fn mqtt_3_1_2_22_v311_password_flag_without_user_name_flag_closes() {
    unannounced_field(V311, PASSWORD, &[Part::Field(b"pw")]);
}

fn no_client_id(version: ProtocolVersion) {
    refused(version, &connect_bytes(version, CLEAN, None, &[]));
}

#[test]
fn mqtt_3_1_3_3_v311_connect_without_client_id_closes() {
    no_client_id(V311);
}

#[test]
fn mqtt_3_1_3_3_v5_connect_without_client_id_closes() {
    no_client_id(V5);
}

fn client_id_not_utf8(version: ProtocolVersion) {
    refused(version, &connect_bytes(version, CLEAN, Some(NOT_UTF8), &[]));
}

#[test]
fn mqtt_3_1_3_4_v311_client_id_not_utf8_closes() {
    client_id_not_utf8(V311);
}

#[test]
fn mqtt_3_1_3_4_v5_client_id_not_utf8_closes() {
    client_id_not_utf8(V5);
}

fn will_topic_not_utf8(version: ProtocolVersion) {
    let names = Names::new();
    let id = id(&names);
    refused(
        version,
        &connect_bytes(version, CLEAN | WILL, Some(&id), &[Part::Will(NOT_UTF8)]),
    );
}

#[test]
fn mqtt_3_1_3_10_v311_will_topic_not_utf8_closes() {
    will_topic_not_utf8(V311);
}

#[test]
fn mqtt_3_1_3_9_v5_will_topic_not_utf8_closes() {
    will_topic_not_utf8(V5);
}

fn user_name_not_utf8(version: ProtocolVersion) {
    let names = Names::new();
    let id = id(&names);
    refused(
        version,
        &connect_bytes(
            version,
            CLEAN | USER,
            Some(&id),
            &[Part::Raw(&field(NOT_UTF8))],
        ),
    );
}

#[test]
fn mqtt_3_1_3_11_v311_user_name_not_utf8_closes() {
    user_name_not_utf8(V311);
}

#[test]
fn mqtt_3_1_3_10_v5_user_name_not_utf8_closes() {
    user_name_not_utf8(V5);
}

// ---------------------------------------------------------------------------------------------
// UTF-8 strings after CONNECT
// ---------------------------------------------------------------------------------------------

/// The broker closes the connection after `bytes` (after at most a DISCONNECT 0x81 in MQTT 5).
fn closes_after(version: ProtocolVersion, bytes: &[u8]) {
    let names = Names::new();
    let mut c: RawClient = connect(version, &names.client_id("a"));
    let _ = c.send_raw(bytes);
    if version.is_v5() {
        c.expect_disconnect(&[
            DisconnectReason::MalformedPacket,
            DisconnectReason::ProtocolError,
        ]);
    } else {
        c.expect_closed_silently();
    }
}

fn subscribe_not_utf8(version: ProtocolVersion) {
    let mut body = vec![0, 1];
    if version.is_v5() {
        body.push(0);
    }
    body.extend(field(NOT_UTF8));
    body.push(0);
    closes_after(version, &packet(0x82, &body));
}

#[test]
fn mqtt_3_8_3_1_v311_subscribe_filter_not_utf8_closes() {
    subscribe_not_utf8(V311);
}

#[test]
fn mqtt_3_8_3_1_v5_subscribe_filter_not_utf8_closes() {
    subscribe_not_utf8(V5);
}

fn unsubscribe_not_utf8(version: ProtocolVersion) {
    let mut body = vec![0, 1];
    if version.is_v5() {
        body.push(0);
    }
    body.extend(field(NOT_UTF8));
    closes_after(version, &packet(0xA2, &body));
}

#[test]
fn mqtt_3_10_3_1_v311_unsubscribe_filter_not_utf8_closes() {
    unsubscribe_not_utf8(V311);
}

#[test]
fn mqtt_3_10_3_1_v5_unsubscribe_filter_not_utf8_closes() {
    unsubscribe_not_utf8(V5);
}

/// A User Property whose value is not UTF-8 makes the PUBLISH malformed.
#[test]
fn mqtt_1_5_7_1_v5_user_property_not_utf8_is_malformed() {
    let names = Names::new();
    let mut props = vec![0x26];
    props.extend(field(b"key"));
    props.extend(field(NOT_UTF8));
    let mut body = field(names.topic("t").as_bytes());
    body.push(u8::try_from(props.len()).expect("short properties"));
    body.extend(props);
    body.extend_from_slice(b"payload");
    closes_after(V5, &packet(0x30, &body));
}

/// A Response Topic (3.3.2-13) or Content Type (3.3.2-19) that is not UTF-8 makes the PUBLISH
/// malformed.
fn publish_string_property_not_utf8(id: u8) {
    let names = Names::new();
    let mut props = vec![id];
    props.extend(field(NOT_UTF8));
    let mut body = field(names.topic("t").as_bytes());
    body.push(u8::try_from(props.len()).expect("short properties"));
    body.extend(props);
    closes_after(V5, &packet(0x30, &body));
}

#[test]
fn mqtt_3_3_2_13_v5_response_topic_not_utf8_is_malformed() {
    publish_string_property_not_utf8(0x08);
}

#[test]
fn mqtt_3_3_2_19_v5_content_type_not_utf8_is_malformed() {
    publish_string_property_not_utf8(0x03);
}

/// U+FEFF (bytes EF BB BF) in a topic is a character like any other: a filter with it matches
/// only the topic with it, and the delivered topic keeps it.
fn bom_kept(version: ProtocolVersion) {
    let names = Names::new();
    let with = names.topic("\u{FEFF}t");
    let without = names.topic("t");
    let mut sub = connect(version, &names.client_id("sub"));
    sub.sub(&with, QoS::AtMostOnce);
    let mut publisher = connect(version, &names.client_id("pub"));
    publisher.publish(&without, b"plain", QoS::AtMostOnce, false);
    publisher.publish(&with, b"bom", QoS::AtMostOnce, false);
    let p = sub.expect_publish();
    assert_eq!(&p.payload[..], b"bom", "U+FEFF stripped when matching");
    assert_eq!(p.topic.as_bytes(), with.as_bytes(), "U+FEFF stripped");
    sub.expect_nothing();
}

#[test]
fn mqtt_1_5_3_3_v311_bom_is_not_stripped() {
    bom_kept(V311);
}

#[test]
fn mqtt_1_5_4_3_v5_bom_is_not_stripped() {
    bom_kept(V5);
}

/// A retained QoS 0 message replaces the one retained before it.
#[test]
fn mqtt_3_3_1_7_v311_retained_qos0_message_replaces_the_previous_one() {
    let names = Names::new();
    let topic = names.topic("r");
    let mut publisher = connect(V311, &names.client_id("pub"));
    publisher.publish(&topic, b"old", QoS::AtLeastOnce, true);
    publisher.publish(&topic, b"new", QoS::AtMostOnce, true);
    publisher.ping();
    let mut sub = connect(V311, &names.client_id("sub"));
    sub.sub(&topic, QoS::AtLeastOnce);
    let p = sub.recv_publish();
    assert!(p.retain, "{p:?}");
    assert_eq!(&p.payload[..], b"new");
    sub.expect_nothing();
    publisher.publish(&topic, b"", QoS::AtMostOnce, true);
}
