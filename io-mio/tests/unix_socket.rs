#![cfg(unix)]

//! Unix socket listeners (`listener 0 PATH`).

mod common;

use common::*;
use midge_core::codec::QoS;
use std::os::unix::net::UnixStream;

/// A client on the Unix socket connects, publishes to and receives from a TCP client; the
/// socket file goes away when the daemon stops.
#[test]
fn unix_socket_listener_carries_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("midge.sock");
    let mut daemon = Daemon::start(
        dir.path(),
        &format!(
            "listener 0 {}\nlistener 0 127.0.0.1\nallow_anonymous true\n",
            path.display()
        ),
    );
    assert_eq!(daemon.listeners[0].addr, path.display().to_string());
    assert_eq!(daemon.listeners[0].kind, "mqtt");

    let unix = |id: &str, version| {
        let s = UnixStream::connect(&path).expect("connect to the Unix socket");
        s.set_read_timeout(Some(WAIT)).unwrap();
        Client::connect_with(s, ConnectOptions::new(version, id))
    };
    let mut tcp_sub = Client::connect(daemon.listeners[1].socket_addr(), V311, "tcp-sub");
    tcp_sub.sub("local/#", QoS::ExactlyOnce);
    let mut unix_sub = unix("unix-sub", V5);
    unix_sub.sub("local/#", QoS::ExactlyOnce);
    for version in [V311, V5] {
        let mut publisher = unix("unix-pub", version);
        for qos in QOS {
            publisher.publish("local/x", b"via unix socket", qos, false);
            tcp_sub.expect_message("local/x", b"via unix socket");
            unix_sub.expect_message("local/x", b"via unix socket");
        }
        publisher.disconnect();
    }

    assert!(daemon.terminate().success());
    assert!(!path.exists(), "the socket file is removed at exit");
}
