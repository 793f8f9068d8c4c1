//! SIGHUP re-reads the password and ACL files: new users can connect, connected clients stay
//! connected, and the new rules apply to them from then on.

mod common;

use common::*;
use midge_core::codec::{ConnectReason, PubAckReason, QoS, SubAckReason};

#[test]
fn sighup_reloads_passwords_and_acl_keeping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let acl = dir.path().join("acl");
    add_password(&passwd, "alice", "alice-pw", true);
    std::fs::write(&acl, "user alice\ntopic readwrite old/#\n").unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\n",
            passwd.display(),
            acl.display()
        ),
    );
    let alice_opts = |id: &str| ConnectOptions::new(V5, id).credentials("alice", Some("alice-pw"));
    let bob_opts = || ConnectOptions::new(V5, "bob").credentials("bob", Some("bob-pw"));

    // Before: bob is unknown; alice may use old/# only.
    let mut bob = Client::new(tcp(daemon.addr()), V5);
    assert_eq!(
        bob.handshake(bob_opts()).reason,
        ConnectReason::BadUserNameOrPassword
    );
    let mut alice = Client::connect_with(tcp(daemon.addr()), alice_opts("alice"));
    alice.sub("old/#", QoS::AtLeastOnce);
    let mut alice_v311 = Client::connect_with(
        tcp(daemon.addr()),
        ConnectOptions::new(V311, "alice-311").credentials("alice", Some("alice-pw")),
    );
    alice_v311.sub("old/#", QoS::AtMostOnce);
    assert_eq!(
        alice.publish("new/x", b"too early", QoS::AtLeastOnce, false),
        PubAckReason::NotAuthorized
    );
    assert_eq!(
        alice.subscribe("new/#", QoS::AtLeastOnce),
        SubAckReason::NotAuthorized
    );
    alice.publish("old/x", b"before", QoS::AtLeastOnce, false);
    alice.expect_message("old/x", b"before");
    alice_v311.expect_message("old/x", b"before");

    // Add bob, move alice from old/# to new/#, and reload.
    add_password(&passwd, "bob", "bob-pw", false);
    std::fs::write(
        &acl,
        "user alice\ntopic readwrite new/#\n\nuser bob\ntopic readwrite new/#\ntopic write old/#\n",
    )
    .unwrap();
    let mark = daemon.log.count();
    daemon.signal("HUP");
    assert!(
        daemon
            .log
            .wait_line(mark, "reloaded password and ACL files", WAIT)
            .is_some(),
        "no reload in the log"
    );

    // bob can connect now.
    let mut bob = Client::connect_with(tcp(daemon.addr()), bob_opts());
    bob.sub("new/#", QoS::AtLeastOnce);
    // alice's connections were kept (a ping round trip on each)...
    alice.ping();
    alice_v311.ping();
    // ...and the new ACL applies to them: new/# is hers now, old/# no longer.
    assert_eq!(
        alice.subscribe("new/#", QoS::AtLeastOnce),
        SubAckReason::GrantedQoS1
    );
    assert!(
        !alice
            .publish("new/x", b"after", QoS::AtLeastOnce, false)
            .is_error()
    );
    alice.expect_message("new/x", b"after");
    bob.expect_message("new/x", b"after");
    assert_eq!(
        alice.publish("old/x", b"too late", QoS::AtLeastOnce, false),
        PubAckReason::NotAuthorized
    );
    // Deliveries are checked against the new rules: alice-311's old/# subscription stays, but
    // gets nothing it may no longer read. bob may write to old/x, then to new/marker.
    alice_v311.sub("new/#", QoS::AtMostOnce);
    assert!(
        !bob.publish("old/x", b"not for alice", QoS::AtLeastOnce, false)
            .is_error()
    );
    bob.publish("new/marker", b"m", QoS::AtLeastOnce, false);
    alice_v311.expect_message("new/marker", b"m");
    alice.expect_message("new/marker", b"m");

    // A reload that fails (an unreadable ACL) keeps the rules in force and the daemon running.
    std::fs::write(&acl, "user alice\ntopic readwrite new/#\nfrobnicate\n").unwrap();
    let mark = daemon.log.count();
    daemon.signal("HUP");
    assert!(
        daemon.log.wait_line(mark, "reload failed", WAIT).is_some(),
        "a bad ACL file is reported"
    );
    assert!(
        !alice
            .publish("new/y", b"still", QoS::AtLeastOnce, false)
            .is_error()
    );
    alice.expect_message("new/y", b"still");
    let mut bob2 = Client::connect_with(
        tcp(daemon.addr()),
        ConnectOptions::new(V311, "bob2").credentials("bob", Some("bob-pw")),
    );
    bob2.ping();
}
