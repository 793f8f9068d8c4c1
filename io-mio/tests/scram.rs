//! MQTT 5 enhanced authentication with SCRAM-SHA-256 over TCP: `$scram-sha-256$` entries written
//! by `midge passwd -H scram-sha-256` serve SCRAM clients and plain-password clients alike;
//! Mosquitto's `$7$` entries serve passwords only. The client side of RFC 5802 is computed here
//! with RustCrypto's primitives, independently of the daemon's code.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use midge_core::codec::{
    Auth, AuthProperties, AuthReason, ByteString, ConnAck, ConnectReason, Packet, QoS, SubAckReason,
};
use sha2::{Digest, Sha256};
use std::path::Path;

const SCRAM: &str = "SCRAM-SHA-256";

/// Writes the password file with `midge passwd`: alice with Mosquitto's default `$7$` hash,
/// bob with a SCRAM entry; an ACL gives each user their own tree. Starts the daemon.
fn start(dir: &Path) -> Daemon {
    let passwd = dir.join("passwd");
    add_password(&passwd, "alice", "wonderland", true);
    add_scram_password(&passwd, "bob", "builder");
    let text = std::fs::read_to_string(&passwd).unwrap();
    assert!(text.contains("alice:$7$101$"), "{text}");
    assert!(text.contains("bob:$scram-sha-256$4096$"), "{text}");
    assert!(
        !text.contains("builder"),
        "the file holds verifiers, not passwords"
    );
    let acl = dir.join("acl");
    std::fs::write(
        &acl,
        "user alice\ntopic readwrite alice/#\n\nuser bob\ntopic readwrite bob/#\n",
    )
    .unwrap();
    Daemon::start(
        dir,
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\n",
            passwd.display(),
            acl.display()
        ),
    )
}

fn add_scram_password(file: &Path, user: &str, password: &str) {
    let out = run_midge(&[
        "passwd",
        "-H",
        "scram-sha-256",
        "-b",
        file.to_str().unwrap(),
        user,
        password,
    ]);
    assert!(
        out.status.success(),
        "midge passwd -H scram-sha-256 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The client-final message answering `server_first`, and the server-final message to expect
/// (RFC 5802, 3).
fn client_final(password: &str, client_first_bare: &str, server_first: &str) -> (String, String) {
    let field = |name: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {server_first}"))
            .to_owned()
    };
    let (nonce, salt, iterations) = (field("r="), field("s="), field("i="));
    let client_nonce = client_first_bare.split_once(",r=").unwrap().1;
    assert!(
        nonce.starts_with(client_nonce) && nonce.len() > client_nonce.len(),
        "the server's nonce follows the client's: {nonce}"
    );
    let salt = STANDARD.decode(salt).unwrap();
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(
        password.as_bytes(),
        &salt,
        iterations.parse().unwrap(),
    );
    let client_key = hmac(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
    (
        format!("{without_proof},p={}", STANDARD.encode(proof)),
        format!("v={}", STANDARD.encode(server_signature)),
    )
}

fn auth_packet(reason: AuthReason, data: &str) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: AuthProperties {
            authentication_method: Some(ByteString::from(SCRAM)),
            authentication_data: Some(Bytes::copy_from_slice(data.as_bytes())),
            ..AuthProperties::default()
        },
    })
}

/// The data of an AUTH 0x18 from the server, which carries the method [MQTT-4.12.0-2]
/// [MQTT-4.12.0-5] (5.0).
fn server_continue(packet: Packet) -> String {
    match packet {
        Packet::Auth(a) => {
            assert_eq!(a.reason, AuthReason::ContinueAuthentication);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(SCRAM));
            String::from_utf8(a.properties.authentication_data.unwrap().to_vec()).unwrap()
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
}

/// Runs SCRAM-SHA-256 at CONNECT as `user` with `password`: the client, the CONNACK, and the
/// server-final message a correct server sends.
fn scram_connect(
    daemon: &Daemon,
    id: &str,
    user: &str,
    password: &str,
) -> (Client, ConnAck, String) {
    let mut client = Client::new(tcp(daemon.addr()), V5);
    let bare = format!("n={user},r=client-nonce-{id}");
    let mut options = ConnectOptions::new(V5, id);
    options.connect.properties.authentication_method = Some(ByteString::from(SCRAM));
    options.connect.properties.authentication_data = Some(Bytes::from(format!("n,,{bare}")));
    client.send(&Packet::from(options.connect));
    let server_first = server_continue(client.recv());
    let (client_final, server_final) = client_final(password, &bare, &server_first);
    client.send(&auth_packet(
        AuthReason::ContinueAuthentication,
        &client_final,
    ));
    match client.recv() {
        Packet::ConnAck(ack) => (client, *ack, server_final),
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// The full exchange over TCP: CONNACK 0x00 with the method and the server signature
/// [MQTT-4.12.0-5] (5.0); the ACL applies to the SCRAM user; re-authentication ends with AUTH
/// 0x00 [MQTT-4.12.1-1] (5.0) and the connection keeps working.
#[test]
fn scram_sha_256_exchange_over_tcp_mqtt_4_12_0_5_mqtt_4_12_1_1() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());
    let (mut bob, ack, server_final) = scram_connect(&daemon, "b1", "bob", "builder");
    assert_eq!(ack.reason, ConnectReason::Success);
    assert_eq!(ack.properties.authentication_method.as_deref(), Some(SCRAM));
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(server_final.as_bytes()),
        "the server proves it knows the verifier"
    );
    bob.sub("bob/#", QoS::AtLeastOnce);
    bob.publish("bob/t", b"hello", QoS::AtLeastOnce, false);
    bob.expect_message("bob/t", b"hello");
    assert_eq!(
        bob.subscribe("alice/#", QoS::AtLeastOnce),
        SubAckReason::NotAuthorized,
        "the ACL sees the authenticated user"
    );

    let bare = "n=bob,r=again";
    bob.send(&auth_packet(
        AuthReason::ReAuthenticate,
        &format!("n,,{bare}"),
    ));
    let server_first = server_continue(bob.recv());
    let (client_final, server_final) = client_final("builder", bare, &server_first);
    bob.send(&auth_packet(
        AuthReason::ContinueAuthentication,
        &client_final,
    ));
    match bob.recv() {
        Packet::Auth(a) => {
            assert_eq!(a.reason, AuthReason::Success);
            assert_eq!(
                a.properties.authentication_data.as_deref(),
                Some(server_final.as_bytes())
            );
        }
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    bob.publish("bob/t", b"after", QoS::AtLeastOnce, false);
    bob.expect_message("bob/t", b"after");
}

/// A wrong password gets CONNACK 0x86 and the close [MQTT-4.12.0-4] (5.0); so does a user with
/// a Mosquitto `$7$` entry, which cannot do SCRAM, and the log says why.
#[test]
fn scram_wrong_password_and_mosquitto_entries_are_refused_mqtt_4_12_0_4() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());
    let (mut client, ack, _) = scram_connect(&daemon, "w", "bob", "Builder");
    assert_eq!(ack.reason, ConnectReason::BadUserNameOrPassword);
    client.expect_closed();

    let mark = daemon.log.count();
    let (mut client, ack, _) = scram_connect(&daemon, "a", "alice", "wonderland");
    assert_eq!(ack.reason, ConnectReason::BadUserNameOrPassword);
    client.expect_closed();
    assert!(
        daemon
            .log
            .wait_line(mark, "midge passwd -H scram-sha-256", WAIT)
            .is_some(),
        "the log names the fix"
    );
    // Unknown users fail the same way.
    let (mut client, ack, _) = scram_connect(&daemon, "n", "nobody", "x");
    assert_eq!(ack.reason, ConnectReason::BadUserNameOrPassword);
    client.expect_closed();
}

/// A SCRAM entry also checks a plain CONNECT password, in MQTT 5 and 3.1.1; Mosquitto's entries
/// keep working for passwords.
#[test]
fn plain_password_against_a_scram_entry() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());
    for version in [V5, V311] {
        let mut bob = Client::connect_with(
            tcp(daemon.addr()),
            ConnectOptions::new(version, "plain-bob").credentials("bob", Some("builder")),
        );
        bob.sub("bob/#", QoS::AtMostOnce);
        bob.disconnect();
        let mut client = Client::new(tcp(daemon.addr()), version);
        let ack = client.handshake(
            ConnectOptions::new(version, "wrong-bob").credentials("bob", Some("builders")),
        );
        assert_eq!(ack.reason, ConnectReason::BadUserNameOrPassword);
        client.expect_closed();
        Client::connect_with(
            tcp(daemon.addr()),
            ConnectOptions::new(version, "alice").credentials("alice", Some("wonderland")),
        )
        .disconnect();
    }
}

/// SIGHUP picks up new SCRAM entries, as it does passwords.
#[test]
fn reload_picks_up_new_scram_entries() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path());
    let (_, ack, _) = scram_connect(&daemon, "c1", "carol", "secret");
    assert_eq!(ack.reason, ConnectReason::BadUserNameOrPassword);
    add_scram_password(&dir.path().join("passwd"), "carol", "secret");
    let mark = daemon.log.count();
    daemon.signal("HUP");
    assert!(
        daemon
            .log
            .wait_line(mark, "reloaded password and ACL files", WAIT)
            .is_some()
    );
    let (_, ack, _) = scram_connect(&daemon, "c2", "carol", "secret");
    assert_eq!(ack.reason, ConnectReason::Success);
}
