//! SIGTERM and SIGINT stop the daemon cleanly: MQTT 5.0 clients are told why (DISCONNECT with
//! reason 0x8B, "Server shutting down"), every connection is closed, and the exit status is 0.

mod common;

use common::*;
use midge_core::codec::{DisconnectReason, Packet, QoS};

fn stops_cleanly(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("midge test CA");
    let config = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\n\
         listener 0 127.0.0.1\nprotocol websockets\n\
         listener 0 127.0.0.1\n{}",
        pki.write_server_files(dir.path(), false)
    );
    let mut daemon = Daemon::start(dir.path(), &config);
    let tcp_addr = daemon.listener("mqtt").socket_addr();
    let ws_addr = daemon.listener("websockets").socket_addr();
    let tls_addr = daemon.listener("mqtt+tls").socket_addr();

    let mut v5 = Client::connect(tcp_addr, V5, "v5");
    v5.sub("t", QoS::AtLeastOnce);
    let mut v311 = Client::connect(tcp_addr, V311, "v311");
    let ws = websocket(tcp(ws_addr), &format!("ws://{ws_addr}/"), Some("mqtt")).unwrap();
    let mut v5_ws = Client::connect_with(ws, ConnectOptions::new(V5, "v5-ws"));
    let mut v5_tls = Client::connect_with(
        tls(tls_addr, pki.client_config(None)),
        ConnectOptions::new(V5, "v5-tls"),
    );
    // A client with a will: the server ends its connection, so the will is due (5.0, 3.1.2.5),
    // though the other clients may already be gone when it is published.
    let _with_will = Client::connect_with(
        tcp(tcp_addr),
        ConnectOptions::new(V5, "with-will").will("t", b"will", QoS::AtLeastOnce, false),
    );
    // A connection that never sent CONNECT.
    let idle = tcp(tcp_addr);

    daemon.signal(signal);
    // The will may come before the DISCONNECT; nothing else may.
    loop {
        match v5.recv() {
            Packet::Publish(p) => {
                assert_eq!(&p.topic[..], "t");
                assert_eq!(&p.payload[..], b"will");
            }
            Packet::Disconnect(d) => {
                assert_eq!(d.reason, DisconnectReason::ServerShuttingDown);
                assert_eq!(d.reason.code(), 0x8B);
                break;
            }
            other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
        }
    }
    // After DISCONNECT the server closes the connection [MQTT-3.14.4-2] (5.0).
    v5.expect_closed();
    for c in [&mut v5_ws, &mut v5_tls] {
        match c.recv() {
            Packet::Disconnect(d) => assert_eq!(d.reason, DisconnectReason::ServerShuttingDown),
            other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
        }
        c.expect_closed();
    }
    // 3.1.1 has no server DISCONNECT: the connection is just closed.
    v311.expect_closed();
    let mut idle = Client::new(idle, V5);
    idle.expect_closed();

    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status after SIG{signal}");
}

#[test]
fn sigterm_disconnects_clients_and_exits_zero() {
    stops_cleanly("TERM");
}

#[test]
fn sigint_disconnects_clients_and_exits_zero() {
    stops_cleanly("INT");
}

/// A client that stopped reading, with the daemon's output to it backed up, does not hold the
/// daemon up: SIGTERM still ends it promptly with status 0.
#[test]
fn sigterm_exits_promptly_despite_a_client_that_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), "listener 0 127.0.0.1\nallow_anonymous true\n");
    let mut stuck = Client::connect(daemon.addr(), V5, "stuck");
    stuck.sub("flood", QoS::AtMostOnce);
    let mut publisher = Client::connect(daemon.addr(), V5, "publisher");
    // 16 MiB: more than the socket buffers and the daemon's per-connection limit together.
    let payload = vec![0u8; 64 * 1024];
    for _ in 0..256 {
        publisher.publish_qos0("flood", &payload);
    }
    // Everything the publisher sent was processed once it answers a ping.
    publisher.ping();
    let started = std::time::Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit();
    assert_eq!(status.code(), Some(0));
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "exit took {took:?}"
    );
    drop(stuck);
}
