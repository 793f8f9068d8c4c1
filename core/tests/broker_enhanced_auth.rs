//! MQTT 5 enhanced authentication (5.0, 4.12 and 3.15): the AUTH exchange a CONNECT with an
//! Authentication Method starts, its failures and protocol errors, re-authentication, and
//! SCRAM-SHA-256 end to end. A scripted challenge-response authenticator drives the exchange
//! through every path; SCRAM runs against an independent client computation of RFC 5802.

mod harness;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use harness::*;
use hmac::{Hmac, KeyInit, Mac};
use midge_core::auth::scram::{SCRAM_SHA_256, ScramCredential, ScramSha256};
use midge_core::auth::{
    Access, AuthExchange, AuthFailure, AuthRequest, AuthStep, Authenticator, Authorizer, ClientRef,
    ConnectDecision, ConnectRequest,
};
use midge_core::broker::{Config, ConnId, ListenerId};
use midge_core::codec::{
    Auth, AuthProperties, AuthReason, ByteString, ConnAck, Connect, ConnectReason,
    DisconnectReason, Packet, QoS,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const METHOD: &str = "CHALLENGE";

/// What the authenticator and authorizer were asked, for assertions.
#[derive(Debug, Default)]
struct Seen {
    starts: Vec<(String, Option<String>, bool)>,
    connects: Vec<(Option<String>, bool, Option<String>)>,
}

/// A challenge-response method: the client's first data is its user name, the server answers
/// "challenge", and the client must answer "<user>-secret"; "again" asks for another round.
#[derive(Debug)]
struct Challenge {
    seen: Arc<Mutex<Seen>>,
}

impl Authenticator for Challenge {
    fn supports(&self, listener: ListenerId, method: &str) -> bool {
        listener == ListenerId(0) && method == METHOD
    }

    fn start(&mut self, r: &AuthRequest<'_>, data: Option<&[u8]>) -> AuthStep {
        self.seen.lock().unwrap().starts.push((
            r.client_id.to_owned(),
            r.username.map(str::to_owned),
            r.reauthenticating,
        ));
        let Some(user) = data.and_then(|d| std::str::from_utf8(d).ok()) else {
            return AuthStep::Failure(AuthFailure::NotAuthorized);
        };
        AuthStep::Continue {
            data: Bytes::from_static(b"challenge"),
            exchange: Box::new(Awaiting {
                user: user.to_owned(),
            }),
        }
    }
}

#[derive(Debug)]
struct Awaiting {
    user: String,
}

impl AuthExchange for Awaiting {
    fn step(self: Box<Self>, data: Option<&[u8]>) -> AuthStep {
        match data {
            Some(b"again") => AuthStep::Continue {
                data: Bytes::from_static(b"challenge"),
                exchange: self,
            },
            Some(d) if d == format!("{}-secret", self.user).as_bytes() => AuthStep::Success {
                data: Some(Bytes::from_static(b"welcome")),
                username: ByteString::from(self.user),
            },
            _ => AuthStep::Failure(AuthFailure::BadUserNameOrPassword),
        }
    }
}

/// Accepts everyone but "mallory"; "reader" may not publish.
#[derive(Debug)]
struct Gate {
    seen: Arc<Mutex<Seen>>,
}

impl Authorizer for Gate {
    fn connect(&mut self, r: &ConnectRequest<'_>) -> ConnectDecision {
        self.seen.lock().unwrap().connects.push((
            r.username.map(str::to_owned),
            r.password.is_some(),
            r.authentication_method.map(str::to_owned),
        ));
        if r.username == Some("mallory") {
            return ConnectDecision::Refuse(ConnectReason::NotAuthorized);
        }
        ConnectDecision::Accept {
            username: r.username.map(ByteString::from),
        }
    }

    fn authorize(&self, c: &ClientRef<'_>, access: Access, _: &str) -> bool {
        !(c.username == Some("reader") && access == Access::Publish)
    }
}

fn world_with(config: Config) -> (World, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut w = World::new(config);
    w.broker.set_authenticator(Box::new(Challenge {
        seen: Arc::clone(&seen),
    }));
    w.broker.set_authorizer(Box::new(Gate {
        seen: Arc::clone(&seen),
    }));
    (w, seen)
}

fn with_clean_start(mut c: Connect, clean_start: bool) -> Connect {
    c.clean_start = clean_start;
    c
}

fn world() -> (World, Arc<Mutex<Seen>>) {
    world_with(Config::default())
}

fn auth_connect(id: &str, method: &str, data: &'static [u8]) -> Connect {
    let mut c = connect(V5, id);
    c.properties.authentication_method = Some(ByteString::from(method));
    c.properties.authentication_data = Some(Bytes::from_static(data));
    c
}

fn auth(reason: AuthReason, method: Option<&str>, data: &[u8]) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: AuthProperties {
            authentication_method: method.map(ByteString::from),
            authentication_data: Some(Bytes::copy_from_slice(data)),
            ..AuthProperties::default()
        },
    })
}

fn cont(data: &[u8]) -> Packet {
    auth(AuthReason::ContinueAuthentication, Some(METHOD), data)
}

/// Opens a connection and sends CONNECT.
fn send_connect(w: &mut World, c: Connect) -> ConnId {
    let conn = w.open(V5);
    w.send(conn, &Packet::from(c));
    conn
}

/// Opens a connection and sends CONNECT; returns what came back.
fn start(w: &mut World, c: Connect) -> (ConnId, Vec<Packet>) {
    let conn = send_connect(w, c);
    let packets = w.recv(conn);
    (conn, packets)
}

/// The one AUTH received, checked to be a Continue with the method [MQTT-4.12.0-2]
/// [MQTT-4.12.0-5] (5.0); its data.
fn expect_continue(packets: &[Packet], method: &str) -> Bytes {
    match packets {
        [Packet::Auth(a)] => {
            assert_eq!(a.reason, AuthReason::ContinueAuthentication);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(method));
            a.properties.authentication_data.clone().unwrap_or_default()
        }
        other => panic!("expected AUTH 0x18, got {other:?}"),
    }
}

fn expect_connack(packets: &[Packet]) -> &ConnAck {
    match packets {
        [Packet::ConnAck(ack)] => ack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// The whole challenge-response exchange for `user`, ending with a successful CONNACK.
fn authenticate(w: &mut World, id: &str, user: &'static str) -> ConnId {
    let mut c = auth_connect(id, METHOD, user.as_bytes());
    c.username = Some(ByteString::from(user));
    let (conn, packets) = start(w, c);
    assert_eq!(expect_continue(&packets, METHOD), "challenge");
    w.send(conn, &cont(format!("{user}-secret").as_bytes()));
    let packets = w.recv(conn);
    let ack = expect_connack(&packets);
    assert_eq!(ack.reason, ConnectReason::Success);
    conn
}

fn expect_refused_closed(w: &mut World, conn: ConnId, reason: ConnectReason) -> ConnAck {
    let packets = w.recv(conn);
    let ack = expect_connack(&packets).clone();
    assert_eq!(ack.reason, reason);
    assert!(!ack.session_present);
    assert!(w.is_closed(conn), "refused connection closed");
    ack
}

fn expect_disconnected(w: &mut World, conn: ConnId, reason: DisconnectReason) -> Packet {
    let packets = w.recv(conn);
    match packets.as_slice() {
        [p @ Packet::Disconnect(d)] if d.reason == reason => {
            assert!(w.is_closed(conn));
            p.clone()
        }
        other => panic!("expected DISCONNECT {reason:?}, got {other:?}"),
    }
}

/// A client still connected and working: a round trip through the broker.
fn assert_works(w: &mut World, conn: ConnId) {
    assert!(!w.is_closed(conn));
    w.send(conn, &Packet::PingReq);
    assert_eq!(w.recv_one(conn), Packet::PingResp);
}

// ---------------------------------------------------------------------------------------------
// The exchange at CONNECT
// ---------------------------------------------------------------------------------------------

/// CONNECT with a supported method starts the exchange: the server answers AUTH 0x18 with the
/// method [MQTT-4.12.0-2] [MQTT-4.12.0-5] (5.0) and no CONNACK; the client answers AUTH 0x18
/// [MQTT-4.12.0-3] (5.0); success is a CONNACK 0x00 carrying the same method and the final
/// data [MQTT-4.12.0-5] (5.0). The authorizer then decides with the authenticated user name and
/// no password, and the session works.
#[test]
fn exchange_ends_in_connack_with_method_mqtt_4_12_0_2_mqtt_4_12_0_3_mqtt_4_12_0_5() {
    let (mut w, seen) = world();
    let (conn, packets) = start(&mut w, auth_connect("c1", METHOD, b"alice"));
    assert_eq!(expect_continue(&packets, METHOD), "challenge");
    assert_eq!(w.broker.stats().sessions, 0, "no session before success");
    assert_eq!(w.broker.stats().clients_connected, 0);

    w.send(conn, &cont(b"alice-secret"));
    let packets = w.recv(conn);
    let ack = expect_connack(&packets);
    assert_eq!(ack.reason, ConnectReason::Success);
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(&b"welcome"[..])
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.starts, [("c1".to_owned(), None, false)]);
    assert_eq!(
        seen.connects,
        [(Some("alice".to_owned()), false, Some(METHOD.to_owned()))]
    );
    drop(seen);
    assert_eq!(w.broker.stats().sessions, 1);
    w.subscribe(conn, "t", QoS::AtMostOnce);
    w.send(conn, &publish("t", b"hello", QoS::AtMostOnce, 0));
    assert_eq!(as_publish(&w.recv_one(conn)).payload, "hello");
}

/// Several rounds of AUTH 0x18 before success [MQTT-4.12.0-2] [MQTT-4.12.0-3] (5.0).
#[test]
fn several_rounds_mqtt_4_12_0_3() {
    let (mut w, _) = world();
    let (conn, packets) = start(&mut w, auth_connect("c1", METHOD, b"bob"));
    expect_continue(&packets, METHOD);
    for _ in 0..3 {
        w.send(conn, &cont(b"again"));
        expect_continue(&w.recv(conn), METHOD);
    }
    w.send(conn, &cont(b"bob-secret"));
    assert_eq!(expect_connack(&w.recv(conn)).reason, ConnectReason::Success);
}

/// A method the authenticator does not support: CONNACK 0x8C and the close [MQTT-4.12.0-1]
/// (5.0), with a Reason String unless the client asked for no problem information
/// [MQTT-3.1.2-32] (5.0). The will is not published and no session is made.
#[test]
fn unsupported_method_gets_0x8c_mqtt_4_12_0_1() {
    let (mut w, _) = world();
    let watcher = w.client(V5, "watcher");
    w.subscribe(watcher, "will/#", QoS::AtMostOnce);
    let mut c = auth_connect("c1", "SCRAM-SHA-1", b"n,,n=user,r=abc");
    c.will = Some(will("will/c1", b"no", QoS::AtMostOnce, false));
    let conn = send_connect(&mut w, c);
    let ack = expect_refused_closed(&mut w, conn, ConnectReason::BadAuthenticationMethod);
    assert!(ack.properties.reason_string.is_some());
    assert!(ack.properties.authentication_method.is_none());

    let mut c = auth_connect("c2", "SCRAM-SHA-1", b"x");
    c.properties.request_problem_information = Some(false);
    let conn = send_connect(&mut w, c);
    let ack = expect_refused_closed(&mut w, conn, ConnectReason::BadAuthenticationMethod);
    assert_eq!(ack.properties.reason_string, None);
    w.recv_none(watcher);
    assert_eq!(w.broker.stats().sessions, 1, "only the watcher's");
}

/// The method is offered per listener: the same method on another listener is refused 0x8C
/// [MQTT-4.12.0-1] (5.0).
#[test]
fn method_not_offered_on_this_listener_mqtt_4_12_0_1() {
    let (mut w, _) = world();
    let conn = w.open_on(V5, ListenerId(1));
    w.send(conn, &Packet::from(auth_connect("c1", METHOD, b"alice")));
    expect_refused_closed(&mut w, conn, ConnectReason::BadAuthenticationMethod);
}

/// The authenticator rejects: CONNACK with its reason (0x86 for wrong credentials) and the
/// close [MQTT-4.12.0-4] (5.0). The session of the same client id, connected elsewhere, is
/// neither taken over nor touched: sessions change only after success.
#[test]
fn failure_refuses_and_takes_nothing_over_mqtt_4_12_0_4() {
    let (mut w, _) = world();
    let (owner, _) = w.connect(with_clean_start(connect(V5, "shared"), false));
    w.subscribe(owner, "keep", QoS::AtLeastOnce);

    let (conn, packets) = start(&mut w, auth_connect("shared", METHOD, b"alice"));
    expect_continue(&packets, METHOD);
    // While the exchange runs the old connection is still the session's.
    assert_works(&mut w, owner);
    w.send(conn, &cont(b"wrong"));
    let ack = expect_refused_closed(&mut w, conn, ConnectReason::BadUserNameOrPassword);
    assert_eq!(
        ack.properties.reason_string.as_deref(),
        Some("authentication failed")
    );
    assert_works(&mut w, owner);
    w.send(owner, &publish("keep", b"still", QoS::AtMostOnce, 0));
    assert_eq!(as_publish(&w.recv_one(owner)).payload, "still");
}

/// Success takes the session over as a plain CONNECT does [MQTT-3.1.4-3] (5.0), and only then.
#[test]
fn success_takes_the_session_over_mqtt_3_1_4_3() {
    let (mut w, _) = world();
    let (owner, _) = w.connect(with_clean_start(connect(V5, "shared"), false));
    let (conn, packets) = start(&mut w, auth_connect("shared", METHOD, b"alice"));
    expect_continue(&packets, METHOD);
    assert_works(&mut w, owner);
    w.send(conn, &cont(b"alice-secret"));
    expect_disconnected(&mut w, owner, DisconnectReason::SessionTakenOver);
    let packets = w.recv(conn);
    let ack = expect_connack(&packets);
    assert_eq!(ack.reason, ConnectReason::Success);
    assert_eq!(w.broker.stats().sessions, 1);
}

/// The authorizer still decides after a successful exchange, with the authenticated user name:
/// it may refuse (CONNACK 0x87), and its topic rules apply to that user.
#[test]
fn authorizer_decides_with_the_authenticated_user() {
    let (mut w, seen) = world();
    let (conn, packets) = start(&mut w, auth_connect("m", METHOD, b"mallory"));
    expect_continue(&packets, METHOD);
    w.send(conn, &cont(b"mallory-secret"));
    expect_refused_closed(&mut w, conn, ConnectReason::NotAuthorized);
    assert_eq!(
        seen.lock().unwrap().connects,
        [(Some("mallory".to_owned()), false, Some(METHOD.to_owned()))]
    );

    let reader = authenticate(&mut w, "r", "reader");
    w.send(reader, &publish("t", b"x", QoS::AtLeastOnce, 1));
    match w.recv_one(reader) {
        Packet::PubAck(a) => {
            assert_eq!(a.reason, midge_core::codec::PubAckReason::NotAuthorized)
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// While the exchange runs the client may send only AUTH or DISCONNECT [MQTT-3.1.2-33] (5.0):
/// anything else is a protocol error, CONNACK 0x82 and the close. DISCONNECT just closes.
#[test]
fn only_auth_or_disconnect_before_connack_mqtt_3_1_2_33() {
    let (mut w, _) = world();
    let others = [
        publish("t", b"x", QoS::AtMostOnce, 0),
        subscribe(1, "t", QoS::AtMostOnce),
        Packet::PingReq,
        Packet::from(auth_connect("again", METHOD, b"alice")),
    ];
    for packet in others {
        let (conn, packets) = start(&mut w, auth_connect("c", METHOD, b"alice"));
        expect_continue(&packets, METHOD);
        w.send(conn, &packet);
        expect_refused_closed(&mut w, conn, ConnectReason::ProtocolError);
    }
    let (conn, packets) = start(&mut w, auth_connect("c", METHOD, b"alice"));
    expect_continue(&packets, METHOD);
    w.send(conn, &disconnect());
    w.recv_none(conn);
    assert!(w.is_closed(conn));
    assert_eq!(w.broker.stats().sessions, 0);
}

/// Every AUTH repeats the method of CONNECT [MQTT-4.12.0-5] (5.0), and while connecting only
/// AUTH 0x18 answers the server's [MQTT-4.12.0-3] (5.0): another method, no method, 0x19 or
/// 0x00 are protocol errors, CONNACK 0x82.
#[test]
fn auth_out_of_turn_while_connecting_mqtt_4_12_0_5_mqtt_4_12_0_3() {
    let (mut w, _) = world();
    let bad = [
        auth(
            AuthReason::ContinueAuthentication,
            Some("OTHER"),
            b"alice-secret",
        ),
        auth(AuthReason::ContinueAuthentication, None, b"alice-secret"),
        auth(AuthReason::ReAuthenticate, Some(METHOD), b"alice-secret"),
        auth(AuthReason::Success, Some(METHOD), b"alice-secret"),
    ];
    for packet in bad {
        let (conn, packets) = start(&mut w, auth_connect("c", METHOD, b"alice"));
        expect_continue(&packets, METHOD);
        w.send(conn, &packet);
        expect_refused_closed(&mut w, conn, ConnectReason::ProtocolError);
    }
}

/// A malformed AUTH during the exchange is answered with CONNACK 0x81 (5.0, 4.13) and closed.
#[test]
fn malformed_auth_while_connecting_mqtt_3_15_1_1() {
    let (mut w, _) = world();
    let (conn, packets) = start(&mut w, auth_connect("c", METHOD, b"alice"));
    expect_continue(&packets, METHOD);
    // AUTH with reserved flag bits set [MQTT-3.15.1-1] (5.0).
    w.send_raw(conn, &[0xF1, 0x00]);
    expect_refused_closed(&mut w, conn, ConnectReason::MalformedPacket);
}

/// The connect timeout keeps running during the exchange: a client that goes silent, or one
/// that keeps the exchange going, is closed when it expires, without a CONNACK.
#[test]
fn connect_timeout_runs_during_the_exchange() {
    let config = Config {
        connect_timeout_ms: 5_000,
        max_auth_rounds: 1000,
        ..Config::default()
    };
    let (mut w, _) = world_with(config);
    let (silent, packets) = start(&mut w, auth_connect("s", METHOD, b"alice"));
    expect_continue(&packets, METHOD);
    let (busy, packets) = start(&mut w, auth_connect("b", METHOD, b"alice"));
    expect_continue(&packets, METHOD);
    for _ in 0..4 {
        w.advance_ms(1_000);
        w.send(busy, &cont(b"again"));
        expect_continue(&w.recv(busy), METHOD);
    }
    assert!(!w.is_closed(silent) && !w.is_closed(busy));
    w.advance_ms(1_000);
    for conn in [silent, busy] {
        assert!(w.is_closed(conn), "closed at the connect timeout");
        w.recv_none(conn);
    }
    assert_eq!(w.broker.stats().connections_open, 0);
}

/// An exchange is bounded: past `max_auth_rounds` messages, or `max_auth_data` bytes of data,
/// it fails with CONNACK 0x87.
#[test]
fn exchange_is_bounded_by_rounds_and_data() {
    let config = Config {
        max_auth_rounds: 3,
        max_auth_data: 40,
        ..Config::default()
    };
    let (mut w, _) = world_with(config);
    // CONNECT and two AUTH are three messages; a fourth is one too many.
    let (conn, packets) = start(&mut w, auth_connect("c", METHOD, b"alice"));
    expect_continue(&packets, METHOD);
    for _ in 0..2 {
        w.send(conn, &cont(b"again"));
        expect_continue(&w.recv(conn), METHOD);
    }
    w.send(conn, &cont(b"alice-secret"));
    expect_refused_closed(&mut w, conn, ConnectReason::NotAuthorized);

    let (conn, packets) = start(&mut w, auth_connect("c", METHOD, b"alice"));
    expect_continue(&packets, METHOD);
    w.send(conn, &cont(&[b'x'; 36]));
    expect_refused_closed(&mut w, conn, ConnectReason::NotAuthorized);

    // Within both limits the same exchange succeeds.
    let (conn, packets) = start(&mut w, auth_connect("c", METHOD, b"alice"));
    expect_continue(&packets, METHOD);
    w.send(conn, &cont(b"again"));
    expect_continue(&w.recv(conn), METHOD);
    w.send(conn, &cont(b"alice-secret"));
    assert_eq!(expect_connack(&w.recv(conn)).reason, ConnectReason::Success);
}

/// The server does not send a packet larger than the client's Maximum Packet Size
/// [MQTT-3.1.2-27] (5.0): an AUTH that would be is not sent, and the exchange fails; the
/// Reason String is left out of a CONNACK it would make too large [MQTT-3.2.2-19] (5.0).
#[test]
fn auth_beyond_the_clients_maximum_packet_size_mqtt_3_1_2_27_mqtt_3_2_2_19() {
    let (mut w, _) = world();
    let mut c = auth_connect("c", METHOD, b"alice");
    c.properties.maximum_packet_size = std::num::NonZeroU32::new(16);
    let (conn, packets) = start(&mut w, c);
    let ack = expect_connack(&packets);
    assert_eq!(ack.reason, ConnectReason::NotAuthorized);
    assert_eq!(ack.properties.reason_string, None);
    assert!(w.is_closed(conn));
}

/// A client that names no Authentication Method gets no AUTH and no method in its CONNACK
/// [MQTT-4.12.0-6] (5.0), even with an authenticator set; the authorizer checks its password.
#[test]
fn no_method_no_auth_mqtt_4_12_0_6() {
    let (mut w, seen) = world();
    let mut c = connect(V5, "plain");
    c.username = Some(ByteString::from("dave"));
    c.password = Some(Bytes::from_static(b"pw"));
    let (conn, ack) = w.connect(c);
    assert_eq!(ack.properties.authentication_method, None);
    assert_eq!(ack.properties.authentication_data, None);
    assert_works(&mut w, conn);
    assert!(seen.lock().unwrap().starts.is_empty());
    assert_eq!(
        seen.lock().unwrap().connects,
        [(Some("dave".to_owned()), true, None)]
    );
}

/// MQTT 3.1.1 knows no enhanced authentication: with an authenticator set, a 3.1.1 client
/// connects with user name and password as before, and the authorizer checks the password.
#[test]
fn mqtt_3_1_1_is_unaffected() {
    let (mut w, seen) = world();
    let mut c = connect(V3_1_1, "old");
    c.username = Some(ByteString::from("carol"));
    c.password = Some(Bytes::from_static(b"pw"));
    let (conn, _) = w.connect(c);
    assert_works(&mut w, conn);
    assert_eq!(
        seen.lock().unwrap().connects,
        [(Some("carol".to_owned()), true, None)]
    );
}

// ---------------------------------------------------------------------------------------------
// Re-authentication
// ---------------------------------------------------------------------------------------------

/// A client that authenticated with a method re-authenticates with AUTH 0x19 and the same
/// method [MQTT-4.12.1-1] (5.0); the exchange runs while the connection keeps working, and
/// success is AUTH 0x00 with the method and the final data.
#[test]
fn reauthentication_succeeds_while_connection_works_mqtt_4_12_1_1() {
    let (mut w, seen) = world();
    let conn = authenticate(&mut w, "c1", "alice");
    w.subscribe(conn, "t", QoS::AtMostOnce);
    w.send(
        conn,
        &auth(AuthReason::ReAuthenticate, Some(METHOD), b"alice"),
    );
    assert_eq!(expect_continue(&w.recv(conn), METHOD), "challenge");
    // Traffic flows during the exchange.
    w.send(conn, &publish("t", b"during", QoS::AtMostOnce, 0));
    assert_eq!(as_publish(&w.recv_one(conn)).payload, "during");
    w.send(conn, &cont(b"alice-secret"));
    match w.recv_one(conn) {
        Packet::Auth(a) => {
            assert_eq!(a.reason, AuthReason::Success);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
            assert_eq!(
                a.properties.authentication_data.as_deref(),
                Some(&b"welcome"[..])
            );
        }
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    assert_works(&mut w, conn);
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.starts,
        [
            ("c1".to_owned(), Some("alice".to_owned()), false),
            ("c1".to_owned(), Some("alice".to_owned()), true),
        ]
    );
    assert_eq!(seen.connects.len(), 2, "the authorizer decides again");
    drop(seen);
    // And again: a finished re-authentication may be followed by another.
    w.send(
        conn,
        &auth(AuthReason::ReAuthenticate, Some(METHOD), b"alice"),
    );
    expect_continue(&w.recv(conn), METHOD);
}

/// A failed re-authentication ends with DISCONNECT carrying a reason and the close
/// [MQTT-4.12.1-2] (5.0); the will is published since the client did not disconnect.
#[test]
fn reauthentication_failure_disconnects_mqtt_4_12_1_2() {
    let (mut w, _) = world();
    let watcher = w.client(V5, "watcher");
    w.subscribe(watcher, "will/#", QoS::AtMostOnce);
    let mut c = auth_connect("c1", METHOD, b"alice");
    c.will = Some(will("will/c1", b"gone", QoS::AtMostOnce, false));
    let (conn, packets) = start(&mut w, c);
    expect_continue(&packets, METHOD);
    w.send(conn, &cont(b"alice-secret"));
    assert_eq!(expect_connack(&w.recv(conn)).reason, ConnectReason::Success);

    w.send(
        conn,
        &auth(AuthReason::ReAuthenticate, Some(METHOD), b"alice"),
    );
    expect_continue(&w.recv(conn), METHOD);
    w.send(conn, &cont(b"wrong"));
    match expect_disconnected(&mut w, conn, DisconnectReason::NotAuthorized) {
        Packet::Disconnect(d) => assert_eq!(
            d.properties.reason_string.as_deref(),
            Some("authentication failed")
        ),
        _ => unreachable!(),
    }
    assert_eq!(as_publish(&w.recv_one(watcher)).payload, "gone");
}

/// Without problem information the failure DISCONNECT carries no Reason String.
#[test]
fn reauthentication_failure_without_problem_information_mqtt_3_1_2_32() {
    let (mut w, _) = world();
    let mut c = auth_connect("c1", METHOD, b"alice");
    c.properties.request_problem_information = Some(false);
    let (conn, packets) = start(&mut w, c);
    expect_continue(&packets, METHOD);
    w.send(conn, &cont(b"alice-secret"));
    assert_eq!(expect_connack(&w.recv(conn)).reason, ConnectReason::Success);
    w.send(
        conn,
        &auth(AuthReason::ReAuthenticate, Some(METHOD), b"alice"),
    );
    expect_continue(&w.recv(conn), METHOD);
    w.send(conn, &cont(b"wrong"));
    match expect_disconnected(&mut w, conn, DisconnectReason::NotAuthorized) {
        Packet::Disconnect(d) => assert_eq!(d.properties.reason_string, None),
        _ => unreachable!(),
    }
}

/// Re-authentication may not change who the connection is: succeeding as another user fails
/// the re-authentication (DISCONNECT 0x87) [MQTT-4.12.1-2] (5.0).
#[test]
fn reauthentication_as_another_user_fails_mqtt_4_12_1_2() {
    let (mut w, _) = world();
    let conn = authenticate(&mut w, "c1", "alice");
    w.send(
        conn,
        &auth(AuthReason::ReAuthenticate, Some(METHOD), b"bob"),
    );
    expect_continue(&w.recv(conn), METHOD);
    w.send(conn, &cont(b"bob-secret"));
    expect_disconnected(&mut w, conn, DisconnectReason::NotAuthorized);
}

/// AUTH out of turn from a connected client is a protocol error, DISCONNECT 0x82: another
/// method or none [MQTT-4.12.1-1] (5.0), 0x18 with no exchange running [MQTT-4.12.0-3] (5.0),
/// 0x19 during a re-authentication, 0x00; and any AUTH from a client that gave no method in
/// CONNECT [MQTT-4.12.0-7] (5.0).
#[test]
fn auth_out_of_turn_when_connected_mqtt_4_12_1_1_mqtt_4_12_0_7() {
    let (mut w, _) = world();
    let cases = [
        vec![auth(AuthReason::ReAuthenticate, Some("OTHER"), b"alice")],
        vec![auth(AuthReason::ReAuthenticate, None, b"alice")],
        vec![cont(b"alice-secret")],
        vec![auth(AuthReason::Success, Some(METHOD), b"")],
        vec![
            auth(AuthReason::ReAuthenticate, Some(METHOD), b"alice"),
            auth(AuthReason::ReAuthenticate, Some(METHOD), b"alice"),
        ],
    ];
    for packets in cases {
        let conn = authenticate(&mut w, "c1", "alice");
        for p in &packets {
            w.send(conn, p);
        }
        let mut received = w.recv(conn);
        if packets.len() == 2 {
            expect_continue(&received[..1], METHOD);
            received.remove(0);
        }
        match received.as_slice() {
            [Packet::Disconnect(d)] => assert_eq!(d.reason, DisconnectReason::ProtocolError),
            other => panic!("expected DISCONNECT 0x82 for {packets:?}, got {other:?}"),
        }
        assert!(w.is_closed(conn));
    }
    let plain = w.client(V5, "plain");
    w.send(
        plain,
        &auth(AuthReason::ReAuthenticate, Some(METHOD), b"alice"),
    );
    expect_disconnected(&mut w, plain, DisconnectReason::ProtocolError);
}

/// Re-authentication is bounded like the exchange at CONNECT: past the rounds it fails with
/// DISCONNECT 0x87.
#[test]
fn reauthentication_is_bounded() {
    let config = Config {
        max_auth_rounds: 2,
        ..Config::default()
    };
    let (mut w, _) = world_with(config);
    let conn = authenticate(&mut w, "c1", "alice");
    // AUTH 0x19 and one AUTH 0x18 are two messages; a third is one too many.
    w.send(
        conn,
        &auth(AuthReason::ReAuthenticate, Some(METHOD), b"alice"),
    );
    expect_continue(&w.recv(conn), METHOD);
    w.send(conn, &cont(b"again"));
    expect_continue(&w.recv(conn), METHOD);
    w.send(conn, &cont(b"alice-secret"));
    expect_disconnected(&mut w, conn, DisconnectReason::NotAuthorized);
}

// ---------------------------------------------------------------------------------------------
// SCRAM-SHA-256 end to end
// ---------------------------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap();
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The client's side of RFC 5802, written out independently of the server's code: the
/// client-final message for `server_first`, and the server signature to expect.
fn scram_client_final(
    password: &str,
    client_first_bare: &str,
    server_first: &str,
) -> (String, String) {
    let mut nonce = "";
    let mut salt = Vec::new();
    let mut iterations = 0;
    for attribute in server_first.split(',') {
        match attribute.split_at(2) {
            ("r=", v) => nonce = v,
            ("s=", v) => salt = STANDARD.decode(v).unwrap(),
            ("i=", v) => iterations = v.parse().unwrap(),
            _ => {}
        }
    }
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), &salt, iterations);
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
    let server_key = hmac(&salted, b"Server Key");
    let server_signature = hmac(&server_key, auth_message.as_bytes());
    (
        format!("{without_proof},p={}", STANDARD.encode(proof)),
        format!("v={}", STANDARD.encode(server_signature)),
    )
}

fn scram_world(seed: u8) -> World {
    let mut users = BTreeMap::new();
    users.insert(
        "user".to_owned(),
        ScramCredential::new(b"pencil", b"salt-of-user", 64).unwrap(),
    );
    let mut w = World::default();
    w.broker
        .set_authenticator(Box::new(ScramSha256::new(Box::new(users), [seed; 32])));
    w
}

/// Runs SCRAM at CONNECT; the CONNACK, and the connection.
fn scram_connect(
    w: &mut World,
    password: &str,
    problem_information: bool,
) -> (ConnId, ConnAck, String) {
    let bare = "n=user,r=fyko+d2lbbFgONRv9qkxdawL";
    let mut c = connect(V5, "scram");
    c.properties.authentication_method = Some(ByteString::from(SCRAM_SHA_256));
    c.properties.authentication_data = Some(Bytes::from(format!("n,,{bare}")));
    if !problem_information {
        c.properties.request_problem_information = Some(false);
    }
    let (conn, packets) = start(w, c);
    let server_first =
        String::from_utf8(expect_continue(&packets, SCRAM_SHA_256).to_vec()).unwrap();
    assert!(server_first.starts_with("r=fyko+d2lbbFgONRv9qkxdawL"));
    let (client_final, server_final) = scram_client_final(password, bare, &server_first);
    w.send(
        conn,
        &auth(
            AuthReason::ContinueAuthentication,
            Some(SCRAM_SHA_256),
            client_final.as_bytes(),
        ),
    );
    let packets = w.recv(conn);
    (conn, expect_connack(&packets).clone(), server_final)
}

/// SCRAM-SHA-256 over the broker: the right password gets CONNACK 0x00 with the method and the
/// server signature [MQTT-4.12.0-5] (5.0); re-authentication with SCRAM gets AUTH 0x00 with a
/// fresh signature [MQTT-4.12.1-1] (5.0).
#[test]
fn scram_sha_256_exchange_and_reauthentication_mqtt_4_12_0_5_mqtt_4_12_1_1() {
    let mut w = scram_world(1);
    let (conn, ack, server_final) = scram_connect(&mut w, "pencil", true);
    assert_eq!(ack.reason, ConnectReason::Success);
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(SCRAM_SHA_256)
    );
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(server_final.as_bytes())
    );
    assert_works(&mut w, conn);

    let bare = "n=user,r=second-nonce";
    w.send(
        conn,
        &auth(
            AuthReason::ReAuthenticate,
            Some(SCRAM_SHA_256),
            format!("n,,{bare}").as_bytes(),
        ),
    );
    let server_first =
        String::from_utf8(expect_continue(&w.recv(conn), SCRAM_SHA_256).to_vec()).unwrap();
    let (client_final, server_final) = scram_client_final("pencil", bare, &server_first);
    w.send(
        conn,
        &auth(
            AuthReason::ContinueAuthentication,
            Some(SCRAM_SHA_256),
            client_final.as_bytes(),
        ),
    );
    match w.recv_one(conn) {
        Packet::Auth(a) => {
            assert_eq!(a.reason, AuthReason::Success);
            assert_eq!(
                a.properties.authentication_data.as_deref(),
                Some(server_final.as_bytes())
            );
        }
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    assert_works(&mut w, conn);
}

/// A wrong password gets CONNACK 0x86 [MQTT-4.12.0-4] (5.0); so does an unknown user, and the
/// two cannot be told apart by the reason string.
#[test]
fn scram_wrong_password_gets_0x86_mqtt_4_12_0_4() {
    let mut w = scram_world(1);
    let (conn, ack, _) = scram_connect(&mut w, "pencil2", true);
    assert_eq!(ack.reason, ConnectReason::BadUserNameOrPassword);
    assert_eq!(ack.properties.authentication_data, None);
    assert!(w.is_closed(conn));
    assert_eq!(w.broker.stats().sessions, 0);
}

/// The same inputs give the same outputs, nonces included: the SCRAM generator is seeded.
#[test]
fn scram_exchange_is_deterministic() {
    let run = |seed| {
        let mut w = scram_world(seed);
        scram_connect(&mut w, "pencil", false);
        w.log
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4), "the nonce follows the seed");
}
