//! ACL files (`acl_file`): `topic` rules for anonymous clients and per user, and `pattern`
//! rules with `%c` (client id) and `%u` (user name), enforced on PUBLISH (the message is
//! dropped; MQTT 5 clients get reason 0x87), on SUBSCRIBE (a failure code in SUBACK) and on
//! each delivery.
//!
//! Absence of a message is shown without waiting: the publisher then sends a permitted marker
//! message, and since the daemon forwards one connection's messages in order [MQTT-4.6.0-6]
//! (3.1.1) [MQTT-4.6.0-5] (5.0), a subscriber that gets the marker next never got the other.

mod common;

use common::*;
use midge_core::codec::{ProtocolVersion, PubAckReason, QoS, SubAckReason};

const ACL: &str = "\
# Anonymous clients may read the news.
topic read news/#

user alice
topic readwrite alice/#
topic read feed/+/public
topic write inbox/#

user bob
topic write feed/#
topic readwrite inbox/#
topic write users/#
topic write news/#
topic write clients/#

pattern readwrite clients/%c/#
pattern read users/%u/#
";

fn start(dir: &std::path::Path) -> Daemon {
    std::fs::write(dir.join("acl"), ACL).unwrap();
    // No password file: user names identify clients (allowed with allow_anonymous true).
    Daemon::start(
        dir,
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nacl_file {}\n",
            dir.join("acl").display()
        ),
    )
}

fn user(daemon: &Daemon, version: ProtocolVersion, client_id: &str, name: &str) -> Client {
    Client::connect_with(
        tcp(daemon.addr()),
        ConnectOptions::new(version, client_id).credentials(name, None),
    )
}

/// SUBACK reports a failure for filters the ACL gives no read access to: 0x87 in MQTT 5.0,
/// 0x80 in 3.1.1 [MQTT-3.8.4-5] [MQTT-3.9.3-2] (3.1.1) [MQTT-3.8.4-7] (5.0).
#[test]
fn acl_decides_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());
    let cases = [
        ("alice/#", true),
        ("alice/x", true),
        // Broader than the readable feed/+/public, but overlapping it.
        ("feed/#", true),
        ("feed/+/public", true),
        // Write access only.
        ("inbox/#", false),
        ("secret", false),
        ("#", true),
        // %c with the client id alice-phone, %u with the user name alice.
        ("clients/alice-phone/#", true),
        ("clients/bob-phone/#", false),
        ("users/alice/#", true),
        ("users/bob/#", false),
        // The anonymous rules are not alice's.
        ("news/#", false),
    ];
    for version in [V5, V311] {
        let mut alice = user(&daemon, version, "alice-phone", "alice");
        for (filter, granted) in cases {
            let reason = alice.subscribe(filter, QoS::AtLeastOnce);
            if granted {
                assert_eq!(reason, SubAckReason::GrantedQoS1, "{version:?} {filter}");
            } else if version.is_v5() {
                assert_eq!(reason, SubAckReason::NotAuthorized, "{filter}");
            } else {
                assert_eq!(reason.v3_return_code(), 0x80, "{filter}");
            }
        }
        alice.disconnect();
    }
    let mut anonymous = Client::connect(daemon.addr(), V5, "anon");
    assert_eq!(
        anonymous.subscribe("news/#", QoS::AtMostOnce),
        SubAckReason::GrantedQoS0
    );
    assert_eq!(
        anonymous.subscribe("alice/#", QoS::AtMostOnce),
        SubAckReason::NotAuthorized
    );
}

/// A PUBLISH the ACL does not allow is acknowledged with 0x87 to an MQTT 5.0 client, and in any
/// version it reaches nobody [MQTT-3.3.5-2] (3.1.1).
#[test]
fn acl_decides_publications() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());
    // Readers that would get each message if it were published.
    let mut reader = user(&daemon, V5, "reader-bob", "bob");
    reader.sub("inbox/#", QoS::AtLeastOnce);
    let mut news = Client::connect(daemon.addr(), V5, "anon-reader");
    news.sub("news/#", QoS::AtLeastOnce);
    let mut bob_publisher = user(&daemon, V5, "bob-pub", "bob");

    for version in [V5, V311] {
        let mut alice = user(&daemon, version, "alice-phone", "alice");
        let denied = |reason: PubAckReason| {
            if version.is_v5() {
                assert_eq!(reason, PubAckReason::NotAuthorized);
            } else {
                // 3.1.1 has no way to tell: a positive acknowledgement [MQTT-3.3.5-2].
                assert_eq!(reason, PubAckReason::Success);
            }
        };
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            // Write access: delivered.
            assert!(!alice.publish("inbox/bob", b"hi bob", qos, false).is_error());
            reader.expect_message("inbox/bob", b"hi bob");
            // Read-only topic, no rule at all, and another client's %c topic: refused.
            denied(alice.publish("feed/x/public", b"no", qos, false));
            denied(alice.publish("news/today", b"no", qos, false));
            denied(alice.publish("clients/bob-phone/cmd", b"no", qos, false));
            // None of them arrived: markers come next.
            bob_publisher.publish("news/marker", b"m", QoS::AtLeastOnce, false);
            news.expect_message("news/marker", b"m");
            bob_publisher.publish("inbox/marker", b"m", QoS::AtLeastOnce, false);
            reader.expect_message("inbox/marker", b"m");
        }
        // Her own %c topic is hers to write.
        alice.sub("clients/alice-phone/#", QoS::AtLeastOnce);
        alice.publish(
            "clients/alice-phone/state",
            b"mine",
            QoS::AtLeastOnce,
            false,
        );
        alice.expect_message("clients/alice-phone/state", b"mine");
        alice.disconnect();
    }

    // Anonymous clients may only read the news.
    let mut anonymous = Client::connect(daemon.addr(), V5, "anon-writer");
    assert_eq!(
        anonymous.publish("news/fake", b"no", QoS::AtLeastOnce, false),
        PubAckReason::NotAuthorized
    );
    bob_publisher.publish("news/marker2", b"m", QoS::AtLeastOnce, false);
    news.expect_message("news/marker2", b"m");
}

/// A granted subscription delivers only the messages the client may read, retained messages
/// included; `%u` patterns deliver to the user they name.
#[test]
fn acl_decides_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());
    let mut bob = user(&daemon, V5, "bob-pub", "bob");
    for version in [V5, V311] {
        let mut alice = user(&daemon, version, "alice-phone", "alice");
        alice.sub("feed/#", QoS::AtLeastOnce);
        alice.sub("users/alice/#", QoS::AtLeastOnce);
        for qos in QOS {
            bob.publish("feed/a/private", b"secret", qos, false);
            bob.publish("feed/a/public", b"open", qos, false);
            alice.expect_message("feed/a/public", b"open");
            bob.publish("users/bob/note", b"for bob", qos, false);
            bob.publish("users/alice/note", b"for alice", qos, false);
            alice.expect_message("users/alice/note", b"for alice");
        }
        alice.disconnect();
    }

    // Retained messages are checked on delivery too.
    bob.publish("feed/b/private", b"kept secret", QoS::AtLeastOnce, true);
    bob.publish("feed/b/public", b"kept open", QoS::AtLeastOnce, true);
    let mut alice = user(&daemon, V5, "alice-2", "alice");
    alice.sub("feed/b/+", QoS::AtLeastOnce);
    let got = alice.expect_message("feed/b/public", b"kept open");
    assert!(got.retain);
    // The private one would have come before the PINGRESP.
    alice.ping();
    assert!(
        alice
            .try_recv(std::time::Duration::from_millis(100))
            .is_err()
    );
}
