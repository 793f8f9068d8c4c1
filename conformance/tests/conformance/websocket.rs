//! MQTT over WebSocket (section 6 of both specifications): the server selects the "mqtt"
//! subprotocol, reads MQTT packets from binary messages however they are cut, and closes the
//! connection on any other kind of data message. Each test starts a midge daemon of its own with
//! a `protocol websockets` listener (the suite's shared broker has only a TCP one); against a
//! broker given by address they check nothing, since the suite cannot choose its listeners.

use midge_conformance::client::{RawClient, V5, V311, connect_packet, encode, publish_packet};
use midge_conformance::names::Names;
use midge_conformance::target::{Target, configured_midge};
use midge_core::codec::{ConnectReason, Packet, ProtocolVersion, QoS};
use std::net::SocketAddr;
use tungstenite::Message;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};

/// A daemon whose second listener speaks MQTT over WebSocket, and that listener's address.
fn websocket_midge() -> Option<(Target, SocketAddr)> {
    let broker = configured_midge(
        env!("CARGO_BIN_EXE_midge-under-test"),
        "listener 0 127.0.0.1\nprotocol websockets",
        &[],
    )?;
    let addr = broker.listener_addr(1);
    Some((broker, addr))
}

/// A WebSocket connection offering "mqtt", whose upgrade must select it.
fn open(addr: SocketAddr, version: ProtocolVersion) -> RawClient {
    let (client, selected) = RawClient::open_websocket(addr, version, "mqtt");
    assert_eq!(selected.as_deref(), Some("mqtt"), "selected subprotocol");
    client
}

/// A connected WebSocket client with a clean session.
fn connect(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> RawClient {
    let mut c = open(addr, version);
    let ack = c.handshake(connect_packet(version, client_id));
    assert_eq!(ack.reason, ConnectReason::Success, "{ack:?}");
    c
}

/// The server answers the upgrade with the "mqtt" subprotocol, whether the client offers it
/// alone or among others, and MQTT of the version under test then flows.
fn selects_mqtt(version: ProtocolVersion) {
    let Some((_broker, addr)) = websocket_midge() else {
        return;
    };
    let names = Names::new();
    for offered in ["mqtt", "chat, mqtt", "mqtt, chat"] {
        let (mut c, selected) = RawClient::open_websocket(addr, version, offered);
        assert_eq!(selected.as_deref(), Some("mqtt"), "offered {offered:?}");
        let ack = c.handshake(connect_packet(version, &names.client_id("c")));
        assert_eq!(ack.reason, ConnectReason::Success, "{ack:?}");
        c.ping();
        c.disconnect();
    }
}

#[test]
fn mqtt_6_0_0_4_v311_server_selects_the_mqtt_subprotocol() {
    selects_mqtt(V311);
}

#[test]
fn mqtt_6_0_0_4_v5_server_selects_the_mqtt_subprotocol() {
    selects_mqtt(V5);
}

/// Packets need not line up with WebSocket messages or frames: a CONNECT cut into two messages,
/// SUBSCRIBE and PUBLISH together in one, a PUBLISH cut into three, and one PUBLISH and the
/// start of the next in one message whose frames cut the first packet too. Everything arrives.
fn packets_need_not_align_with_frames(version: ProtocolVersion) {
    let Some((_broker, addr)) = websocket_midge() else {
        return;
    };
    let names = Names::new();
    let topic = names.topic("split");
    let mut c = open(addr, version);
    let connect = encode(
        &Packet::from(connect_packet(version, &names.client_id("c"))),
        version,
    );
    c.send_raw(&connect[..3]).expect("send");
    c.send_raw(&connect[3..]).expect("send");
    assert_eq!(c.expect_connack().reason, ConnectReason::Success);

    // SUBSCRIBE and a PUBLISH in one message, through the broker back to the client.
    let sub_id = c.packet_id();
    let mut both = encode(
        &Packet::Subscribe(midge_core::codec::Subscribe {
            packet_id: sub_id,
            properties: Default::default(),
            subscriptions: vec![midge_core::codec::Subscription {
                filter: topic.as_str().into(),
                options: midge_core::codec::SubscriptionOptions::new(QoS::AtLeastOnce),
            }],
        }),
        version,
    );
    let pub_id = c.packet_id();
    both.extend(encode(
        &Packet::Publish(publish_packet(
            &topic,
            b"one",
            QoS::AtLeastOnce,
            false,
            pub_id,
        )),
        version,
    ));
    c.send_raw(&both).expect("send");
    assert!(matches!(c.recv(), Packet::SubAck(a) if a.packet_id == sub_id));
    expect_message(&mut c, b"one");
    c.expect_puback(pub_id);

    // A PUBLISH in three messages.
    let payload = vec![7u8; 1000];
    let id = c.packet_id();
    let publish = encode(
        &Packet::Publish(publish_packet(
            &topic,
            &payload,
            QoS::AtLeastOnce,
            false,
            id,
        )),
        version,
    );
    c.send_raw(&publish[..1]).expect("send");
    c.send_raw(&publish[1..400]).expect("send");
    c.send_raw(&publish[400..]).expect("send");
    expect_message(&mut c, &payload);
    c.expect_puback(id);

    // One message in three frames holding a whole PUBLISH and the first bytes of another,
    // whose rest follows in a message of its own.
    let (first, second) = (c.packet_id(), c.packet_id());
    let mut bytes = encode(
        &Packet::Publish(publish_packet(
            &topic,
            b"two",
            QoS::AtLeastOnce,
            false,
            first,
        )),
        version,
    );
    let next = encode(
        &Packet::Publish(publish_packet(
            &topic,
            b"three",
            QoS::AtLeastOnce,
            false,
            second,
        )),
        version,
    );
    let cut = bytes.len() + 4;
    bytes.extend_from_slice(&next);
    let frames = [
        Frame::message(bytes[..2].to_vec(), OpCode::Data(Data::Binary), false),
        Frame::message(bytes[2..6].to_vec(), OpCode::Data(Data::Continue), false),
        Frame::message(bytes[6..cut].to_vec(), OpCode::Data(Data::Continue), true),
    ];
    for frame in frames {
        c.send_ws(Message::Frame(frame)).expect("send frame");
    }
    c.send_raw(&bytes[cut..]).expect("send");
    expect_message(&mut c, b"two");
    expect_message(&mut c, b"three");
    c.ping();
    c.disconnect();
}

/// The next PUBLISH carries `payload`; it is acknowledged.
fn expect_message(c: &mut RawClient, payload: &[u8]) {
    let p = c.recv_publish();
    assert_eq!(&p.payload[..], payload, "payload of {p:?}");
}

#[test]
fn mqtt_6_0_0_2_v311_packets_need_not_align_with_websocket_frames() {
    packets_need_not_align_with_frames(V311);
}

#[test]
fn mqtt_6_0_0_2_v5_packets_need_not_align_with_websocket_frames() {
    packets_need_not_align_with_frames(V5);
}

/// A text message closes the connection, before CONNECT and from a connected client.
fn text_message_closes(version: ProtocolVersion) {
    let Some((_broker, addr)) = websocket_midge() else {
        return;
    };
    let names = Names::new();
    let mut c = open(addr, version);
    let bytes = encode(
        &Packet::from(connect_packet(version, &names.client_id("a"))),
        version,
    );
    // A well-formed CONNECT, in the wrong kind of message.
    let _ = c.send_ws(Message::text(String::from_utf8_lossy(&bytes).into_owned()));
    c.expect_closed_silently();

    let mut c = connect(addr, version, &names.client_id("b"));
    let _ = c.send_ws(Message::text("PINGREQ"));
    match c.expect_closed().as_slice() {
        [] => {}
        // An MQTT 5 server may say why first (4.13).
        [Packet::Disconnect(d)] if version.is_v5() => assert!(d.reason.is_error(), "{d:?}"),
        other => panic!("expected the connection closed, got {other:?}"),
    }
}

#[test]
fn mqtt_6_0_0_1_v311_text_message_closes_the_connection() {
    text_message_closes(V311);
}

#[test]
fn mqtt_6_0_0_1_v5_text_message_closes_the_connection() {
    text_message_closes(V5);
}
