//! Packet format (section 2), PINGREQ (3.12), DISCONNECT (3.14) and the reserved fixed-header
//! flags of every packet a client sends.

use crate::{connect, open};
use midge_conformance::client::{RawClient, V5, V311, encode, pid};
use midge_conformance::names::Names;
use midge_core::codec::{
    DisconnectReason, Packet, ProtocolVersion, PubRel, QoS, Subscribe, SubscribeProperties,
    Subscription, SubscriptionOptions, Unsubscribe, UnsubscribeProperties,
};

/// A connected client that then sends `bytes`.
fn connected_then(version: ProtocolVersion, bytes: &[u8]) -> RawClient {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    let _ = c.send_raw(bytes);
    c
}

const MALFORMED: &[DisconnectReason] = &[DisconnectReason::MalformedPacket];

/// PINGREQ with a reserved flag bit set.
const BAD_PINGREQ: [u8; 2] = [0xC1, 0x00];

/// Covers [MQTT-2.2.2-1] (3.1.1) [MQTT-4.8.0-1] (3.1.1).
#[test]
fn mqtt_2_2_2_2_v311_invalid_fixed_header_flags_close() {
    connected_then(V311, &BAD_PINGREQ).expect_closed_silently();
}

/// Covers [MQTT-4.13.1-1] (5.0).
#[test]
fn mqtt_2_1_3_1_v5_invalid_fixed_header_flags_close() {
    connected_then(V5, &BAD_PINGREQ).expect_disconnect(MALFORMED);
}

/// PUBREL with flags 0000 instead of 0010.
fn bad_pubrel(version: ProtocolVersion) -> RawClient {
    let mut bytes = encode(&Packet::PubRel(PubRel::success(pid(1))), version);
    bytes[0] &= 0xF0;
    connected_then(version, &bytes)
}

#[test]
fn mqtt_3_6_1_1_v311_pubrel_with_wrong_flags_closes() {
    bad_pubrel(V311).expect_closed_silently();
}

#[test]
fn mqtt_3_6_1_1_v5_pubrel_with_wrong_flags_closes() {
    bad_pubrel(V5).expect_disconnect(MALFORMED);
}

/// SUBSCRIBE with flags 0000 instead of 0010.
fn bad_subscribe(version: ProtocolVersion) -> RawClient {
    let names = Names::new();
    let sub = crate::subscribe::subscribe_packet(&names.topic("t"), QoS::AtMostOnce);
    let mut bytes = encode(&sub, version);
    bytes[0] &= 0xF0;
    connected_then(version, &bytes)
}

#[test]
fn mqtt_3_8_1_1_v311_subscribe_with_wrong_flags_closes() {
    bad_subscribe(V311).expect_closed_silently();
}

#[test]
fn mqtt_3_8_1_1_v5_subscribe_with_wrong_flags_closes() {
    bad_subscribe(V5).expect_disconnect(MALFORMED);
}

/// UNSUBSCRIBE with flags 0000 instead of 0010.
fn bad_unsubscribe(version: ProtocolVersion) -> RawClient {
    let names = Names::new();
    let unsub = crate::subscribe::unsubscribe_packet(&[&names.topic("t")]);
    let mut bytes = encode(&unsub, version);
    bytes[0] &= 0xF0;
    connected_then(version, &bytes)
}

#[test]
fn mqtt_3_10_1_1_v311_unsubscribe_with_wrong_flags_closes() {
    bad_unsubscribe(V311).expect_closed_silently();
}

#[test]
fn mqtt_3_10_1_1_v5_unsubscribe_with_wrong_flags_closes() {
    bad_unsubscribe(V5).expect_disconnect(MALFORMED);
}

/// DISCONNECT with a reserved flag bit set.
#[test]
fn mqtt_3_14_1_1_v311_disconnect_with_reserved_bits_closes() {
    connected_then(V311, &[0xE1, 0x00]).expect_closed_silently();
}

#[test]
fn mqtt_3_14_1_1_v5_disconnect_with_reserved_bits_is_malformed() {
    connected_then(V5, &[0xE1, 0x00]).expect_disconnect(MALFORMED);
}

fn ping(version: ProtocolVersion) {
    let names = Names::new();
    let mut c = connect(version, &names.client_id("a"));
    c.send_raw(&[0xC0, 0x00]).expect("send");
    assert!(matches!(c.recv(), Packet::PingResp));
}

#[test]
fn mqtt_3_12_4_1_v311_pingreq_gets_pingresp() {
    ping(V311);
}

#[test]
fn mqtt_3_12_4_1_v5_pingreq_gets_pingresp() {
    ping(V5);
}

/// A packet in pieces, one byte at a time: the broker reassembles it.
fn partial_packets(version: ProtocolVersion) {
    let names = Names::new();
    let connect = encode(
        &Packet::from(midge_conformance::client::connect_packet(
            version,
            &names.client_id("a"),
        )),
        version,
    );
    let mut c = open(version);
    for b in connect {
        c.send_raw(&[b]).expect("send");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(matches!(c.recv(), Packet::ConnAck(a) if !a.reason.is_error()));
    c.ping();
}

/// A lossless byte stream, whatever the segmentation.
#[test]
fn mqtt_7_1_1_1_v311_packets_split_across_writes_are_reassembled() {
    partial_packets(V311);
}

#[test]
fn mqtt_7_1_1_1_v5_packets_split_across_writes_are_reassembled() {
    partial_packets(V5);
}

/// A remaining length encoded in more bytes than needed (0x80 0x00 for 0) is malformed in 5.0.
#[test]
fn mqtt_1_5_5_1_v5_non_minimal_variable_byte_integer_is_malformed() {
    // PINGREQ with remaining length 0 written as two bytes.
    let mut c = connected_then(V5, &[0xC0, 0x80, 0x00]);
    // The broker may also wait for more bytes of a packet it cannot finish; a PINGREQ that
    // follows must not be answered as if the first had been well-formed.
    let _ = c.send_raw(&[0xC0, 0x00]);
    c.expect_disconnect(MALFORMED);
}

/// SUBACK and UNSUBACK without properties (the filters accepted, so no Reason String) carry a
/// Property Length of 0 rather than none: the bytes are exactly fixed header, Remaining Length
/// 4, Packet Identifier, Property Length 0 and the one reason code.
#[test]
fn mqtt_2_2_2_1_v5_no_properties_is_a_property_length_of_zero() {
    let names = Names::new();
    let topic = names.topic("t");
    let mut c = connect(V5, &names.client_id("a"));
    let id = c.packet_id();
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: id,
        properties: SubscribeProperties::default(),
        subscriptions: vec![Subscription {
            filter: topic.as_str().into(),
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        }],
    }));
    let [hi, lo] = id.get().to_be_bytes();
    assert_eq!(
        c.recv_packet_bytes(),
        [0x90, 0x04, hi, lo, 0x00, 0x01],
        "SUBACK granting QoS 1"
    );
    let id = c.packet_id();
    c.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id: id,
        properties: UnsubscribeProperties::default(),
        filters: vec![topic.as_str().into()],
    }));
    let [hi, lo] = id.get().to_be_bytes();
    assert_eq!(
        c.recv_packet_bytes(),
        [0xB0, 0x04, hi, lo, 0x00, 0x00],
        "UNSUBACK with success"
    );
    c.ping();
}
