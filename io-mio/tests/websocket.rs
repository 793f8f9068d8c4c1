//! WebSocket listeners (`protocol websockets`), plain and over TLS: MQTT in binary WebSocket
//! messages, behind the "mqtt" subprotocol (MQTT 3.1.1 and 5.0, section 6).

mod common;

use common::*;
use midge_core::codec::{
    ByteString, Packet, PacketId, ProtocolVersion, QoS, Subscribe, SubscribeProperties,
    Subscription, SubscriptionOptions,
};

fn ws_stream(daemon: &Daemon) -> WsStream<std::net::TcpStream> {
    let addr = daemon.listener("websockets").socket_addr();
    let ws = websocket(tcp(addr), &format!("ws://{addr}/mqtt"), Some("mqtt"))
        .expect("WebSocket handshake with subprotocol mqtt");
    // The server selects "mqtt" [MQTT-6.0.0-4].
    assert_eq!(ws.protocol.as_deref(), Some("mqtt"));
    ws
}

fn ws_client(daemon: &Daemon, version: ProtocolVersion, client_id: &str) -> Client {
    Client::connect_with(ws_stream(daemon), ConnectOptions::new(version, client_id))
}

/// A WebSocket client offering the "mqtt" subprotocol connects and publishes and subscribes at
/// every QoS, with both protocol versions, to and from a plain TCP client.
#[test]
fn websocket_listener_carries_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        "listener 0 127.0.0.1\nprotocol websockets\n\
         listener 0 127.0.0.1\n\
         allow_anonymous true\n",
    );
    assert_eq!(daemon.listeners[0].kind, "websockets");
    assert_eq!(daemon.listeners[1].kind, "mqtt");
    for version in [V311, V5] {
        let mut ws_sub = ws_client(&daemon, version, "ws-sub");
        ws_sub.sub("web/#", QoS::ExactlyOnce);
        let mut ws_pub = ws_client(&daemon, version, "ws-pub");
        let mut tcp_client = Client::connect(daemon.listeners[1].socket_addr(), version, "tcp");
        tcp_client.sub("from-web", QoS::ExactlyOnce);
        for qos in QOS {
            // Larger than one TCP segment, so the WebSocket frames are split on the way.
            let payload = vec![b'a' + qos as u8; 70_000];
            ws_pub.publish("web/in", &payload, qos, false);
            assert_eq!(ws_sub.expect_message("web/in", &payload).qos_pid.qos(), qos);
            ws_pub.publish("from-web", b"hello tcp", qos, false);
            tcp_client.expect_message("from-web", b"hello tcp");
            tcp_client.publish("web/tcp", b"hello web", qos, false);
            ws_sub.expect_message("web/tcp", b"hello web");
        }
        ws_pub.disconnect();
        ws_sub.disconnect();
        tcp_client.disconnect();
    }
}

/// An upgrade that does not offer the "mqtt" subprotocol is refused with an HTTP error.
#[test]
fn websocket_without_mqtt_subprotocol_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        "listener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\n",
    );
    let addr = daemon.addr();
    // A client offering several subprotocols gets "mqtt" selected.
    let ws = websocket(tcp(addr), &format!("ws://{addr}/"), Some("chat, mqtt")).unwrap();
    assert_eq!(ws.protocol.as_deref(), Some("mqtt"));
    for offered in [None, Some("chat")] {
        match websocket(tcp(addr), &format!("ws://{addr}/mqtt"), offered) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 400, "offered {offered:?}");
            }
            Err(e) => panic!("expected an HTTP refusal for {offered:?}, got {e}"),
            Ok(_) => panic!("upgrade without the mqtt subprotocol ({offered:?}) was accepted"),
        }
    }
    // The listener still serves a proper client afterwards.
    let mut c = ws_client(&daemon, V5, "after");
    c.ping();
}

/// MQTT packets need not align with WebSocket messages [MQTT-6.0.0-2]: a CONNECT split over two
/// messages, then SUBSCRIBE and PUBLISH in one, and a PUBLISH split over three.
#[test]
fn websocket_packets_need_not_align_with_messages() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        "listener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\n",
    );
    let encode = |packets: &[Packet]| {
        let mut out = bytes::BytesMut::new();
        for p in packets {
            p.encode(V5, &mut out).unwrap();
        }
        out
    };
    let mut c = Client::new(ws_stream(&daemon), V5);
    // Each send_raw is one WebSocket message.
    let connect = encode(&[Packet::from(ConnectOptions::new(V5, "split").connect)]);
    c.send_raw(&connect[..5]);
    c.send_raw(&connect[5..]);
    assert!(matches!(c.recv(), Packet::ConnAck(a) if !a.reason.is_error()));
    let id = PacketId::new(1).unwrap();
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: id,
        properties: SubscribeProperties::default(),
        subscriptions: vec![Subscription {
            filter: ByteString::from("split/#"),
            options: SubscriptionOptions::new(QoS::AtMostOnce),
        }],
    });
    let both = encode(&[
        subscribe,
        publish_packet("split/one", b"together", QoS::AtMostOnce, false, id),
    ]);
    c.send_raw(&both);
    assert!(matches!(c.recv(), Packet::SubAck(_)));
    c.expect_message("split/one", b"together");
    let publish = encode(&[publish_packet(
        "split/two",
        &[7; 1000],
        QoS::AtMostOnce,
        false,
        id,
    )]);
    c.send_raw(&publish[..1]);
    c.send_raw(&publish[1..400]);
    c.send_raw(&publish[400..]);
    c.expect_message("split/two", &[7; 1000]);
}

/// A text WebSocket message closes the connection [MQTT-6.0.0-1], with a WebSocket Close.
#[test]
fn websocket_text_message_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        "listener 0 127.0.0.1\nprotocol websockets\nallow_anonymous true\n",
    );
    let mut ws = ws_stream(&daemon);
    ws.ws
        .send(tungstenite::Message::text("CONNECT please"))
        .unwrap();
    let mut c = Client::new(ws, V5);
    c.expect_closed();
}

/// MQTT over WebSocket over TLS (`protocol websockets` with `certfile` and `keyfile`).
#[test]
fn websocket_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("midge test CA");
    let config = format!(
        "listener 0 127.0.0.1\nprotocol websockets\n{}allow_anonymous true\n",
        pki.write_server_files(dir.path(), false)
    );
    let daemon = Daemon::start(dir.path(), &config);
    let addr = daemon.listener("websockets+tls").socket_addr();
    let connect = |id: &str| {
        let stream = tls(addr, pki.client_config(None));
        let ws = websocket(
            stream,
            &format!("wss://localhost:{}/mqtt", addr.port()),
            Some("mqtt"),
        )
        .expect("WebSocket handshake over TLS");
        Client::connect_with(ws, ConnectOptions::new(V5, id))
    };
    let mut sub = connect("sub");
    sub.sub("wss/#", QoS::AtLeastOnce);
    let mut publisher = connect("pub");
    for qos in QOS {
        publisher.publish("wss/t", b"over wss", qos, false);
        sub.expect_message("wss/t", b"over wss");
    }
}
