//! Password files (`password_file`, written with `midge passwd`) and `allow_anonymous false`.

mod common;

use common::*;
use midge_core::codec::{ConnectReason, ProtocolVersion, QoS};

fn start(dir: &std::path::Path) -> Daemon {
    let passwd = dir.join("passwd");
    add_password(&passwd, "alice", "wonderland", true);
    add_password(&passwd, "bob", "builder", false);
    let text = std::fs::read_to_string(&passwd).unwrap();
    for user in ["alice:$", "bob:$"] {
        assert!(
            text.lines().any(|l| l.starts_with(user)),
            "{user} in {text}"
        );
    }
    assert!(
        !text.contains("wonderland"),
        "the file holds hashes, not passwords"
    );
    Daemon::start(
        dir,
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            passwd.display()
        ),
    )
}

/// The CONNACK for `options`, and that a refused connection is closed after it
/// [MQTT-3.2.2-5] (3.1.1) [MQTT-3.2.2-7] (5.0).
fn connack(daemon: &Daemon, options: ConnectOptions) -> ConnectReason {
    let mut client = Client::new(tcp(daemon.addr()), options.connect.protocol_version);
    let ack = client.handshake(options);
    if ack.reason != ConnectReason::Success {
        assert!(
            !ack.session_present,
            "[MQTT-3.2.2-4] (3.1.1) [MQTT-3.2.2-6] (5.0)"
        );
        client.expect_closed();
    }
    ack.reason
}

fn check_credentials(
    version: ProtocolVersion,
    wrong: (ConnectReason, u8),
    anonymous: (ConnectReason, u8),
) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());
    let opts = |id: &str| ConnectOptions::new(version, id);

    // The right passwords are accepted, and the session works.
    assert_eq!(
        connack(&daemon, opts("a").credentials("alice", Some("wonderland"))),
        ConnectReason::Success
    );
    let mut bob = Client::connect_with(
        tcp(daemon.addr()),
        opts("b").credentials("bob", Some("builder")),
    );
    bob.sub("t", QoS::AtLeastOnce);
    bob.publish("t", b"x", QoS::AtLeastOnce, false);
    bob.expect_message("t", b"x");

    // A wrong password, another user's password, a missing password, an unknown user.
    for options in [
        opts("w1").credentials("alice", Some("Wonderland")),
        opts("w2").credentials("alice", Some("builder")),
        opts("w3").credentials("alice", None),
        opts("w4").credentials("carol", Some("wonderland")),
        opts("w5").credentials("alice", Some("")),
    ] {
        let what = format!("{:?}", options.connect.username);
        let reason = connack(&daemon, options);
        assert_eq!(reason, wrong.0, "{what}");
        // The code on the wire: 4 ("bad user name or password") for 3.1.1, 0x86 for 5.0.
        let code = if version.is_v5() {
            reason.code()
        } else {
            reason.v3_return_code()
        };
        assert_eq!(code, wrong.1);
    }

    // No user name at all while anonymous clients are not allowed.
    let reason = connack(&daemon, opts("anon"));
    assert_eq!(reason, anonymous.0);
    let code = if version.is_v5() {
        reason.code()
    } else {
        reason.v3_return_code()
    };
    assert_eq!(code, anonymous.1);
}

/// MQTT 3.1.1: return code 4 for bad credentials, 5 (not authorized) for anonymous clients.
#[test]
fn password_file_v311() {
    check_credentials(
        V311,
        (ConnectReason::BadUserNameOrPassword, 4),
        (ConnectReason::NotAuthorized, 5),
    );
}

/// MQTT 5.0: reason 0x86 for bad credentials, 0x87 for anonymous clients.
#[test]
fn password_file_v5() {
    check_credentials(
        V5,
        (ConnectReason::BadUserNameOrPassword, 0x86),
        (ConnectReason::NotAuthorized, 0x87),
    );
}

/// A refused client's will is never published, and what it sends after the CONNECT is not
/// processed [MQTT-3.1.4-5] (3.1.1) [MQTT-3.1.4-6] (5.0).
#[test]
fn refused_client_has_no_effect() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());
    let mut watcher = Client::connect_with(
        tcp(daemon.addr()),
        ConnectOptions::new(V5, "watcher").credentials("bob", Some("builder")),
    );
    watcher.sub("#", QoS::AtLeastOnce);

    let mut refused = Client::new(tcp(daemon.addr()), V311);
    let options = ConnectOptions::new(V311, "refused")
        .credentials("alice", Some("nope"))
        .will(
            "will/refused",
            b"should not appear",
            QoS::AtLeastOnce,
            false,
        );
    // CONNECT and a PUBLISH in one write: the PUBLISH must be ignored.
    let mut bytes = bytes::BytesMut::new();
    midge_core::codec::Packet::from(options.connect)
        .encode(V311, &mut bytes)
        .unwrap();
    publish_packet(
        "sneaky",
        b"data",
        QoS::AtMostOnce,
        false,
        midge_core::codec::PacketId::MIN,
    )
    .encode(V311, &mut bytes)
    .unwrap();
    refused.send_raw(&bytes);
    match refused.recv() {
        midge_core::codec::Packet::ConnAck(ack) => {
            assert_eq!(ack.reason, ConnectReason::BadUserNameOrPassword)
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
    refused.expect_closed();

    // Neither the will nor the PUBLISH arrived: the next message the watcher gets is its own.
    watcher.publish("marker", b"m", QoS::AtLeastOnce, false);
    watcher.expect_message("marker", b"m");
}
