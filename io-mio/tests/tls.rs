//! TLS listeners: server certificates, client certificates checked against a CA, and the
//! certificate's Common Name as the user name.

mod common;

use common::*;
use midge_core::codec::{Packet, PubAckReason, QoS, SubAckReason};
use std::path::Path;

fn tls_client(
    daemon: &Daemon,
    pki: &Pki,
    cert: Option<&CertPem>,
    options: ConnectOptions,
) -> Client {
    let stream = tls(
        daemon.listener("mqtt+tls").socket_addr(),
        pki.client_config(cert),
    );
    Client::connect_with(stream, options)
}

/// A TLS connection the daemon refuses at the TLS level: no CONNACK, a TLS alert instead.
fn expect_tls_refusal(daemon: &Daemon, pki: &Pki, cert: Option<&CertPem>, expected_alert: &str) {
    let stream = tls(
        daemon.listener("mqtt+tls").socket_addr(),
        pki.client_config(cert),
    );
    let mut client = Client::new(stream, V5);
    // With TLS 1.3 the client finishes its side of the handshake before the server has judged
    // its certificate, so the CONNECT may be written (or fail, once the alert is in).
    let _ = client.try_send(&Packet::from(ConnectOptions::new(V5, "refused").connect));
    match client.try_recv(WAIT) {
        Err(RecvError::Io(e)) => {
            let message = e.to_string();
            assert!(
                message.contains(expected_alert),
                "expected a TLS alert {expected_alert}, got: {message}"
            );
        }
        other => panic!("expected a TLS alert {expected_alert}, got {other:?}"),
    }
}

/// A listener on 127.0.0.1 with the server certificate (and the CA for client certificates
/// when `with_ca`), then `extra`.
fn tls_config(dir: &Path, pki: &Pki, with_ca: bool, extra: &str) -> String {
    format!(
        "listener 0 127.0.0.1\n{}{extra}",
        pki.write_server_files(dir, with_ca)
    )
}

/// A TLS listener with `certfile` and `keyfile`: clients that trust the CA connect and exchange
/// messages at every QoS, in both protocol versions.
#[test]
fn tls_listener_carries_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("midge test CA");
    let config = tls_config(dir.path(), &pki, false, "allow_anonymous true\n");
    let daemon = Daemon::start(dir.path(), &config);
    assert_eq!(daemon.listeners[0].kind, "mqtt+tls");
    for version in [V311, V5] {
        let mut sub = tls_client(&daemon, &pki, None, ConnectOptions::new(version, "sub"));
        sub.sub("secure/#", QoS::ExactlyOnce);
        let mut publisher = tls_client(&daemon, &pki, None, ConnectOptions::new(version, "pub"));
        for qos in QOS {
            publisher.publish("secure/x", &[qos as u8; 3000], qos, false);
            let got = sub.expect_message("secure/x", &[qos as u8; 3000]);
            assert_eq!(got.qos_pid.qos(), qos);
        }
        publisher.disconnect();
        sub.disconnect();
    }
}

/// A plain TCP client speaking MQTT to a TLS listener gets no CONNACK: the daemon waits for a
/// TLS ClientHello and drops the connection.
#[test]
fn plain_client_on_tls_listener_gets_no_connack() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("midge test CA");
    let config = tls_config(dir.path(), &pki, false, "allow_anonymous true\n");
    let daemon = Daemon::start(dir.path(), &config);
    let mut client = Client::new(tcp(daemon.addr()), V5);
    client.send(&Packet::from(ConnectOptions::new(V5, "plain").connect));
    match client.try_recv(WAIT) {
        Err(RecvError::Closed | RecvError::Decode(_)) => {}
        other => panic!("expected the connection to fail, got {other:?}"),
    }
}

/// With `cafile` and `require_certificate true`, a client without a certificate, or with one
/// the CA did not sign, is refused by TLS itself; a client with a CA-signed certificate connects.
#[test]
fn require_certificate_refuses_clients_without_a_valid_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("midge test CA");
    let config = tls_config(
        dir.path(),
        &pki,
        true,
        "require_certificate true\nallow_anonymous true\n",
    );
    let daemon = Daemon::start(dir.path(), &config);

    expect_tls_refusal(&daemon, &pki, None, "CertificateRequired");
    let stranger = Pki::new("another CA").client("stranger");
    expect_tls_refusal(&daemon, &pki, Some(&stranger), "UnknownCA");

    let good = pki.client("device-1");
    let mut sub = tls_client(&daemon, &pki, Some(&good), ConnectOptions::new(V5, "sub"));
    sub.sub("t", QoS::AtLeastOnce);
    let mut publisher = tls_client(&daemon, &pki, Some(&good), ConnectOptions::new(V311, "pub"));
    publisher.publish("t", b"signed", QoS::AtLeastOnce, false);
    sub.expect_message("t", b"signed");
}

/// `use_identity_as_username`: the certificate's Common Name is the user name the ACL sees,
/// whatever user name the CONNECT carries.
#[test]
fn identity_of_certificate_is_the_username() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("midge test CA");
    std::fs::write(
        dir.path().join("acl"),
        "user device-7\ntopic readwrite devices/device-7/#\n\nuser intruder\ntopic read nothing\n",
    )
    .unwrap();
    let config = tls_config(
        dir.path(),
        &pki,
        true,
        &format!(
            "require_certificate true\nuse_identity_as_username true\n\
             allow_anonymous false\nacl_file {}\n",
            dir.path().join("acl").display()
        ),
    );
    let daemon = Daemon::start(dir.path(), &config);

    let device = pki.client("device-7");
    let mut c = tls_client(&daemon, &pki, Some(&device), ConnectOptions::new(V5, "dev"));
    assert_eq!(
        c.subscribe("devices/device-7/#", QoS::AtLeastOnce),
        SubAckReason::GrantedQoS1,
        "the ACL grants user device-7, the certificate's CN"
    );
    assert_eq!(
        c.subscribe("devices/other/#", QoS::AtLeastOnce),
        SubAckReason::NotAuthorized
    );
    c.publish("devices/device-7/state", b"on", QoS::AtLeastOnce, false);
    c.expect_message("devices/device-7/state", b"on");

    // Another certificate, claiming device-7 in CONNECT: the certificate wins, and without a
    // password check the claim gives nothing.
    let intruder = pki.client("intruder");
    let options = ConnectOptions::new(V5, "intruder").credentials("device-7", Some("guess"));
    let mut i = tls_client(&daemon, &pki, Some(&intruder), options);
    assert_eq!(
        i.subscribe("devices/device-7/#", QoS::AtLeastOnce),
        SubAckReason::NotAuthorized
    );
    // Its publications to device-7's topics are refused too.
    assert_eq!(
        i.publish("devices/device-7/state", b"off", QoS::AtLeastOnce, false),
        PubAckReason::NotAuthorized
    );
    c.ping();
    assert!(c.try_recv(std::time::Duration::from_millis(100)).is_err());
}

/// A message larger than TLS records and socket buffers crosses a TLS listener intact.
#[test]
fn large_message_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("midge test CA");
    let config = tls_config(dir.path(), &pki, false, "allow_anonymous true\n");
    let daemon = Daemon::start(dir.path(), &config);
    let mut sub = tls_client(&daemon, &pki, None, ConnectOptions::new(V5, "sub"));
    sub.sub("big", QoS::AtLeastOnce);
    let mut publisher = tls_client(&daemon, &pki, None, ConnectOptions::new(V5, "pub"));
    let payload: Vec<u8> = (0..2u32 << 20).map(|n| (n % 253) as u8).collect();
    publisher.publish("big", &payload, QoS::AtLeastOnce, false);
    let got = sub.recv_publish();
    assert!(got.payload[..] == payload[..], "payload changed");
}
