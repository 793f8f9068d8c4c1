//! Statements that need a broker configured otherwise than the shared one: retained messages
//! unavailable, zero-length client ids refused, a password file (plain and SCRAM-SHA-256
//! entries) and an ACL. Each test starts a midge daemon of its own with the options it needs
//! (see `midge_conformance::target::configured_midge`); against a broker given by address it
//! checks nothing, since the suite cannot choose that broker's configuration.

use bytes::Bytes;
use midge::passwd::{HashScheme, PasswordHash};
use midge_conformance::client::{RawClient, V5, V311, connect_packet};
use midge_conformance::names::Names;
use midge_conformance::scram::{METHOD, ScramClient};
use midge_conformance::target::{Target, configured_midge};
use midge_core::codec::{
    Auth, AuthProperties, AuthReason, ByteString, ConnAck, Connect, ConnectReason,
    DisconnectReason, LastWill, Packet, ProtocolVersion, PubAckReason, QoS, WillProperties,
};

fn midge_with(extra: &str, files: &[(&str, &str)]) -> Option<Target> {
    configured_midge(env!("CARGO_BIN_EXE_midge-under-test"), extra, files)
}

// ---------------------------------------------------------------------------------------------
// Retain not available, zero-length client ids refused
// ---------------------------------------------------------------------------------------------

/// With `retain_available false` the CONNACK says so, and a will with Will Retain 1 is refused
/// with 0x9A (or the connection closed without CONNACK).
#[test]
fn mqtt_3_2_2_13_v5_retained_will_refused_when_retain_is_unavailable() {
    let Some(broker) = midge_with("retain_available false", &[]) else {
        return;
    };
    let names = Names::new();
    let (c, ack) =
        RawClient::connect_with(broker.addr(), connect_packet(V5, &names.client_id("a")));
    assert_eq!(ack.properties.retain_available, Some(false), "{ack:?}");
    c.disconnect();
    let mut connect = connect_packet(V5, &names.client_id("b"));
    connect.will = Some(LastWill {
        topic: names.topic("will").as_str().into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: WillProperties::default(),
    });
    let mut c = RawClient::open(broker.addr(), V5);
    c.send(&Packet::from(connect));
    c.expect_connect_refused(&[ConnectReason::RetainNotSupported]);
}

/// With `allow_zero_length_clientid false` an empty client id is refused: CONNACK 0x85 (5.0),
/// return code 0x02 (3.1.1), then closure.
fn empty_client_id_refused(version: ProtocolVersion) {
    let Some(broker) = midge_with("allow_zero_length_clientid false", &[]) else {
        return;
    };
    let mut c = RawClient::open(broker.addr(), version);
    c.send(&Packet::from(connect_packet(version, "")));
    c.expect_connack_refusal(ConnectReason::ClientIdentifierNotValid);
}

#[test]
fn mqtt_3_1_3_9_v311_refused_client_id_gets_connack_2_and_close() {
    empty_client_id_refused(V311);
}

#[test]
fn mqtt_3_1_3_8_v5_refused_client_id_gets_connack_0x85_and_close() {
    empty_client_id_refused(V5);
}

// ---------------------------------------------------------------------------------------------
// Password file and ACL
// ---------------------------------------------------------------------------------------------

const USER: &str = "alice";
const PASSWORD: &str = "correct horse";

/// A broker with a password file holding `alice` as a SCRAM-SHA-256 entry (which also checks
/// plain passwords), anonymous clients refused, and an ACL letting alice read everything and
/// write only below `conformance/+/allowed/`.
fn secured() -> Option<Target> {
    let entry = PasswordHash::new(
        PASSWORD.as_bytes(),
        HashScheme::ScramSha256 { iterations: 4096 },
    );
    let passwd = format!("{USER}:{entry}\n");
    let acl = format!("user {USER}\ntopic read #\ntopic write conformance/+/allowed/#\n");
    midge_with(
        "allow_anonymous false\npassword_file {dir}/passwd\nacl_file {dir}/acl",
        &[("passwd", &passwd), ("acl", &acl)],
    )
}

fn login(version: ProtocolVersion, id: &str, password: &str) -> Connect {
    let mut c = connect_packet(version, id);
    c.username = Some(USER.into());
    c.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    c
}

/// Failed authentication closes the connection: no credentials, or a wrong password, get a
/// refusing CONNACK and closure; the right password is accepted.
fn authentication_checked(version: ProtocolVersion) {
    let Some(broker) = secured() else {
        return;
    };
    let names = Names::new();
    let refusals = [
        ConnectReason::NotAuthorized,
        ConnectReason::BadUserNameOrPassword,
    ];
    let mut c = RawClient::open(broker.addr(), version);
    c.send(&Packet::from(connect_packet(
        version,
        &names.client_id("a"),
    )));
    c.expect_connect_refused(&refusals);
    let mut c = RawClient::open(broker.addr(), version);
    c.send(&Packet::from(login(
        version,
        &names.client_id("a"),
        "wrong",
    )));
    c.expect_connect_refused(&refusals);
    let (c, _) = RawClient::connect_with(
        broker.addr(),
        login(version, &names.client_id("a"), PASSWORD),
    );
    c.disconnect();
}

/// The same for a 3.1.1 client (return codes 5 and 4).
#[test]
fn mqtt_3_1_4_2_v5_failed_authentication_closes_the_connection() {
    authentication_checked(V5);
    authentication_checked(V311);
}

/// A QoS 1 PUBLISH the ACL forbids: the 3.1.1 client gets a positive PUBACK (it has no way to
/// learn of the refusal) or the connection is closed; the message reaches nobody.
#[test]
fn mqtt_3_3_5_2_v311_unauthorized_publish_is_acknowledged_or_closed() {
    let Some(broker) = secured() else {
        return;
    };
    let names = Names::new();
    let topic = names.topic("denied/t");
    let (mut sub, _) = RawClient::connect_with(
        broker.addr(),
        login(V311, &names.client_id("sub"), PASSWORD),
    );
    sub.sub(&topic, QoS::AtLeastOnce);
    let (mut publisher, _) = RawClient::connect_with(
        broker.addr(),
        login(V311, &names.client_id("pub"), PASSWORD),
    );
    let id = publisher.packet_id();
    publisher.send(&Packet::Publish(midge_conformance::client::publish_packet(
        &topic,
        b"no",
        QoS::AtLeastOnce,
        false,
        id,
    )));
    match publisher.try_recv(midge_conformance::client::WAIT) {
        Ok(Packet::PubAck(ack)) => {
            assert_eq!(ack.packet_id, id);
            assert_eq!(ack.reason, PubAckReason::Success);
        }
        Err(midge_conformance::client::RecvError::Closed) => {}
        other => panic!("expected PUBACK or closure, got {other:?}"),
    }
    sub.expect_nothing();
}

// ---------------------------------------------------------------------------------------------
// Enhanced authentication: SCRAM-SHA-256
// ---------------------------------------------------------------------------------------------

fn scram_connect(id: &str, scram: &ScramClient) -> Connect {
    let mut c = connect_packet(V5, id);
    c.username = Some(scram.user().into());
    c.properties.authentication_method = Some(METHOD.into());
    c.properties.authentication_data = Some(Bytes::from(scram.client_first()));
    c
}

fn auth(reason: AuthReason, data: Vec<u8>) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: AuthProperties {
            authentication_method: Some(METHOD.into()),
            authentication_data: Some(Bytes::from(data)),
            ..AuthProperties::default()
        },
    })
}

/// The next packet, which must be AUTH 0x18 carrying the method: returns its data.
fn expect_continue(c: &mut RawClient) -> Bytes {
    match c.recv() {
        Packet::Auth(a) => {
            assert_eq!(a.reason, AuthReason::ContinueAuthentication, "{a:?}");
            assert_eq!(
                a.properties.authentication_method,
                Some(ByteString::from(METHOD)),
                "AUTH without the CONNECT's Authentication Method: {a:?}"
            );
            a.properties
                .authentication_data
                .expect("AUTH 0x18 without Authentication Data")
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
}

/// CONNECT with SCRAM, AUTH 0x18 both ways; returns the client and the CONNACK.
fn scram_login(broker: &Target, id: &str, password: &str, nonce: &str) -> (RawClient, ConnAck) {
    let mut scram = ScramClient::new(USER, password, nonce);
    let mut c = RawClient::open(broker.addr(), V5);
    c.send(&Packet::from(scram_connect(id, &scram)));
    let server_first = expect_continue(&mut c);
    let client_final = scram.client_final(&server_first);
    c.send(&auth(AuthReason::ContinueAuthentication, client_final));
    let ack = c.expect_connack();
    if ack.reason == ConnectReason::Success {
        let server_final = ack
            .properties
            .authentication_data
            .clone()
            .expect("successful CONNACK without server-final");
        assert!(
            scram.server_final_ok(&server_final),
            "server-final does not prove the credential"
        );
    }
    (c, ack)
}

/// A SCRAM exchange: the server's AUTH carries 0x18 and the method, the successful CONNACK
/// the method too.
/// Covers [MQTT-4.12.0-5] (5.0) [MQTT-3.15.2-1] (5.0).
#[test]
fn mqtt_4_12_0_2_v5_enhanced_authentication_continues_with_auth_0x18() {
    let Some(broker) = secured() else {
        return;
    };
    let names = Names::new();
    let (mut c, ack) = scram_login(&broker, &names.client_id("a"), PASSWORD, "n0nce1");
    assert_eq!(ack.reason, ConnectReason::Success, "{ack:?}");
    assert_eq!(
        ack.properties.authentication_method,
        Some(ByteString::from(METHOD)),
        "{ack:?}"
    );
    c.ping();
}

/// A wrong password in the SCRAM exchange: a refusing CONNACK, then closure.
#[test]
fn mqtt_4_12_0_4_v5_rejected_enhanced_authentication_closes() {
    let Some(broker) = secured() else {
        return;
    };
    let names = Names::new();
    let (mut c, ack) = scram_login(&broker, &names.client_id("a"), "wrong", "n0nce2");
    assert!(ack.reason.is_error(), "wrong password accepted: {ack:?}");
    assert!(!ack.session_present);
    c.expect_closed();
}

/// Re-authentication: AUTH 0x19 with client-first, AUTH 0x18 back, client-final, AUTH 0x00
/// with the method and server-final. The connection carries on.
#[test]
fn mqtt_4_12_1_1_v5_re_authentication_with_auth_0x19() {
    let Some(broker) = secured() else {
        return;
    };
    let names = Names::new();
    let (mut c, ack) = scram_login(&broker, &names.client_id("a"), PASSWORD, "n0nce3");
    assert_eq!(ack.reason, ConnectReason::Success, "{ack:?}");
    let mut scram = ScramClient::new(USER, PASSWORD, "n0nce4");
    c.send(&auth(AuthReason::ReAuthenticate, scram.client_first()));
    let server_first = expect_continue(&mut c);
    c.send(&auth(
        AuthReason::ContinueAuthentication,
        scram.client_final(&server_first),
    ));
    match c.recv() {
        Packet::Auth(a) => {
            assert_eq!(a.reason, AuthReason::Success, "{a:?}");
            assert_eq!(
                a.properties.authentication_method,
                Some(ByteString::from(METHOD))
            );
            let data = a.properties.authentication_data.expect("server-final");
            assert!(scram.server_final_ok(&data), "server-final does not verify");
        }
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    c.ping();
}

/// Re-authentication with a wrong password: DISCONNECT (if any) with an error reason, then
/// closure.
#[test]
fn mqtt_4_12_1_2_v5_failed_re_authentication_closes() {
    let Some(broker) = secured() else {
        return;
    };
    let names = Names::new();
    let (mut c, ack) = scram_login(&broker, &names.client_id("a"), PASSWORD, "n0nce5");
    assert_eq!(ack.reason, ConnectReason::Success, "{ack:?}");
    let mut scram = ScramClient::new(USER, "wrong", "n0nce6");
    c.send(&auth(AuthReason::ReAuthenticate, scram.client_first()));
    let server_first = expect_continue(&mut c);
    c.send(&auth(
        AuthReason::ContinueAuthentication,
        scram.client_final(&server_first),
    ));
    match c.expect_closed().as_slice() {
        [] => {}
        [Packet::Disconnect(d)] => assert!(d.reason.is_error(), "{d:?}"),
        other => panic!("expected closure after at most a DISCONNECT, got {other:?}"),
    }
}

/// AUTH with reserved fixed-header flag bits set is malformed: the broker closes the
/// connection (after at most DISCONNECT 0x81), even in the middle of an exchange it expects
/// AUTH in.
#[test]
fn mqtt_3_15_1_1_v5_auth_with_reserved_flags_is_malformed() {
    let Some(broker) = secured() else {
        return;
    };
    let names = Names::new();
    let mut scram = ScramClient::new(USER, PASSWORD, "n0nce7");
    let mut c = RawClient::open(broker.addr(), V5);
    c.send(&Packet::from(scram_connect(&names.client_id("a"), &scram)));
    let server_first = expect_continue(&mut c);
    let mut bytes = midge_conformance::client::encode(
        &auth(
            AuthReason::ContinueAuthentication,
            scram.client_final(&server_first),
        ),
        V5,
    );
    bytes[0] |= 0x01;
    let _ = c.send_raw(&bytes);
    match c.expect_closed().as_slice() {
        [] => {}
        [Packet::ConnAck(a)] => assert_eq!(a.reason, ConnectReason::MalformedPacket, "{a:?}"),
        [Packet::Disconnect(d)] => {
            assert_eq!(d.reason, DisconnectReason::MalformedPacket, "{d:?}")
        }
        other => panic!("expected closure, got {other:?}"),
    }
}

/// The next packet's bytes, which must be an AUTH within `max` bytes, decoded.
fn expect_auth_within(c: &mut RawClient, max: usize) -> Auth {
    let bytes = c.recv_packet_bytes();
    assert!(
        bytes.len() <= max,
        "AUTH of {} bytes to a client whose Maximum Packet Size is {max}",
        bytes.len()
    );
    let mut buf = bytes::BytesMut::from(&bytes[..]);
    match midge_core::codec::decode_from(&mut buf, V5, midge_core::codec::MAX_PACKET_SIZE) {
        Ok(Some(Packet::Auth(a))) => a,
        other => panic!("expected AUTH, got {other:?}"),
    }
}

/// AUTH packets stay within the client's Maximum Packet Size: a Reason String (or User
/// Properties) that would push one past it is left out. A first SCRAM exchange measures the
/// broker's AUTH 0x18 without those properties; a second client announces exactly that size as
/// its Maximum Packet Size, and every AUTH it receives (0x18 at connect and on
/// re-authentication, 0x00 at the end) must fit it. midge itself puts no Reason String on AUTH
/// (an exchange that fails ends with CONNACK or DISCONNECT, which carry one), so what this
/// checks there is that AUTH never exceeds the limit.
#[test]
fn mqtt_3_15_2_2_v5_auth_stays_within_the_clients_maximum_packet_size() {
    let Some(broker) = secured() else {
        return;
    };
    let names = Names::new();
    // Nonces of one length: server-first repeats the client's, so its size depends on it.
    let scram = ScramClient::new(USER, PASSWORD, "n0nce8");
    let mut c = RawClient::open(broker.addr(), V5);
    c.send(&Packet::from(scram_connect(&names.client_id("a"), &scram)));
    let mut first = match c.recv() {
        Packet::Auth(a) => a,
        other => panic!("expected AUTH 0x18, got {other:?}"),
    };
    first.properties.reason_string = None;
    first.properties.user_properties.clear();
    let bare = midge_conformance::client::encode(&Packet::Auth(first), V5).len();
    c.drop_connection();

    let mut scram = ScramClient::new(USER, PASSWORD, "n0nce9");
    let mut connect = scram_connect(&names.client_id("b"), &scram);
    connect.properties.maximum_packet_size = std::num::NonZeroU32::new(bare as u32);
    let mut c = RawClient::open(broker.addr(), V5);
    c.send(&Packet::from(connect));
    let server_first = expect_auth_within(&mut c, bare);
    assert_eq!(server_first.reason, AuthReason::ContinueAuthentication);
    let data = server_first
        .properties
        .authentication_data
        .expect("server-first");
    c.send(&auth(
        AuthReason::ContinueAuthentication,
        scram.client_final(&data),
    ));
    let ack = c.expect_connack();
    assert_eq!(ack.reason, ConnectReason::Success, "{ack:?}");

    let mut scram = ScramClient::new(USER, PASSWORD, "n0nceA");
    c.send(&auth(AuthReason::ReAuthenticate, scram.client_first()));
    let server_first = expect_auth_within(&mut c, bare);
    assert_eq!(server_first.reason, AuthReason::ContinueAuthentication);
    let data = server_first
        .properties
        .authentication_data
        .expect("server-first");
    c.send(&auth(
        AuthReason::ContinueAuthentication,
        scram.client_final(&data),
    ));
    let done = expect_auth_within(&mut c, bare);
    assert_eq!(done.reason, AuthReason::Success, "{done:?}");
    c.ping();
}
