//! midge as a client: its bridges ([MQTT-7.0.0-1]). A server that also connects out to other
//! servers must conform as a client too, so here the test is the remote broker: it listens on
//! 127.0.0.1 port 0, starts a daemon of its own whose `connection` section points there, and
//! checks what the bridge sends against the rules for clients, byte by byte where the rule is
//! about the encoding. Every test is named after [MQTT-7.0.0-1]; the client statements it
//! checks are on its `/// As a client` lines (see src/coverage.rs), which leave their status as
//! it is: the server side of a statement is covered by the other modules or not at all.
//!
//! The daemon needs this configuration, so against a broker given by address these tests check
//! nothing, like the `configured` ones. The bridge is configured `cleansession false`,
//! `restart_timeout 1` (it redials a second after losing the link), no state notifications
//! unless a test asks for them, and renames local `l/T` to remote `r/T`.

use bytes::Bytes;
use midge_conformance::client::{RawClient, RecvError, V5, V311, WAIT};
use midge_conformance::target::{Target, configured_midge};
use midge_core::codec::{
    ConnAck, ConnAckProperties, Connect, ConnectReason, DisconnectReason, MAX_PACKET_SIZE, Packet,
    PacketId, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS, QosPid, SubAck,
    SubAckReason, decode,
};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

const MIDGE: &str = env!("CARGO_BIN_EXE_midge-under-test");

/// The bridge's client id on the remote broker.
const REMOTE_ID: &str = "bridgeA";

/// Tolerance on keep alive timing: the bridge's timers and this machine's scheduling.
const SLACK: Duration = Duration::from_millis(500);

/// A daemon with one bridge whose remote broker is this test.
struct Bridged {
    /// The daemon; it stops when this is dropped.
    target: Target,
    /// Where the bridge dials.
    remote: TcpListener,
    version: ProtocolVersion,
}

/// Starts a daemon bridged to a listener of this test, in `version`, with the bridge options
/// `options` (lines of mosquitto.conf) after the common ones. `None` against a broker given by
/// address.
fn bridged(version: ProtocolVersion, options: &str) -> Option<Bridged> {
    let remote = TcpListener::bind("127.0.0.1:0").expect("bind the remote broker");
    let port = remote.local_addr().expect("local address").port();
    let protocol = if version.is_v5() {
        "mqttv50"
    } else {
        "mqttv311"
    };
    let config = format!(
        "connection conformance\n\
         address 127.0.0.1:{port}\n\
         bridge_protocol_version {protocol}\n\
         remote_clientid {REMOTE_ID}\n\
         cleansession false\n\
         restart_timeout 1\n\
         notifications false\n\
         {options}\n"
    );
    let target = configured_midge(MIDGE, &config, &[])?;
    Some(Bridged {
        target,
        remote,
        version,
    })
}

impl Bridged {
    /// The next connection the bridge opens, within [`WAIT`] and the redial delay.
    fn accept(&self) -> RawClient {
        self.remote.set_nonblocking(true).expect("nonblocking");
        let deadline = Instant::now() + WAIT + Duration::from_secs(1);
        loop {
            match self.remote.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).expect("blocking");
                    return RawClient::accepted(stream, self.version);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        Instant::now() < deadline,
                        "the bridge did not connect within {WAIT:?} and its restart_timeout"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    /// Accepts the bridge's connection, reads its CONNECT and answers `ack`.
    fn accept_with(&self, ack: ConnAck) -> (RawClient, Connect) {
        let mut peer = self.accept();
        let (_, first) = next_raw(&mut peer);
        let Packet::Connect(connect) = first else {
            panic!("the bridge's first packet is not CONNECT: {first:?}");
        };
        peer.send(&Packet::from(ack));
        (peer, *connect)
    }

    /// Accepts the bridge's connection with a CONNACK that accepts it and has no properties.
    fn accept_connected(&self) -> RawClient {
        self.accept_with(connack(false, ConnAckProperties::default()))
            .0
    }

    /// A client of the bridged daemon.
    fn local(&self, tag: &str) -> RawClient {
        RawClient::connect(self.target.addr(), self.version, tag)
    }
}

fn connack(session_present: bool, properties: ConnAckProperties) -> ConnAck {
    ConnAck {
        session_present,
        reason: ConnectReason::Success,
        properties,
    }
}

/// The next packet from the bridge, as its bytes and decoded; every PUBLISH is checked
/// against the rules for any PUBLISH a client sends.
fn next_raw(peer: &mut RawClient) -> (Vec<u8>, Packet) {
    let bytes = peer.recv_packet_bytes();
    let packet = match decode(&Bytes::from(bytes.clone()), peer.version, MAX_PACKET_SIZE) {
        Ok(Some((p, n))) if n == bytes.len() => p,
        other => panic!("the bridge sent bytes the codec refuses: {bytes:?}: {other:?}"),
    };
    if let Packet::Publish(p) = &packet {
        check_publish(&bytes, p);
    }
    (bytes, packet)
}

/// What holds for every PUBLISH a client sends: no wildcard in the topic name [MQTT-3.3.2-2],
/// never both QoS bits [MQTT-3.3.1-4], DUP 0 at QoS 0 [MQTT-3.3.1-2], a non-zero packet id at
/// QoS 1 and 2 [MQTT-2.3.1-1] (3.1.1) [MQTT-2.2.1-3] (5.0), and no Subscription Identifier
/// [MQTT-3.3.4-6] (5.0).
fn check_publish(bytes: &[u8], p: &Publish) {
    let flags = bytes[0] & 0x0F;
    assert_ne!(
        flags & 0b0110,
        0b0110,
        "PUBLISH with both QoS bits: {bytes:?}"
    );
    if flags & 0b0110 == 0 {
        assert_eq!(flags & 0b1000, 0, "QoS 0 PUBLISH with DUP 1: {bytes:?}");
    }
    assert!(
        !p.topic.contains(['+', '#']),
        "PUBLISH with a wildcard in its topic name: {p:?}"
    );
    assert!(
        p.properties.subscription_identifiers.is_empty(),
        "a client's PUBLISH carries a Subscription Identifier: {p:?}"
    );
}

/// The next packet from the bridge, which must be a PUBLISH.
fn next_publish(peer: &mut RawClient) -> Publish {
    match next_raw(peer).1 {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH from the bridge, got {other:?}"),
    }
}

/// The next packet from the bridge, which must be a PUBREL for `id`, with fixed-header flags
/// 0010 [MQTT-3.6.1-1].
fn next_pubrel(peer: &mut RawClient, id: PacketId) {
    let (bytes, packet) = next_raw(peer);
    assert_eq!(bytes[0], 0x62, "PUBREL fixed header: {bytes:?}");
    match packet {
        Packet::PubRel(r) => assert_eq!(r.packet_id, id, "PUBREL for the wrong packet"),
        other => panic!("expected PUBREL {id:?}, got {other:?}"),
    }
}

fn packet_id(p: &Publish) -> PacketId {
    match p.qos_pid {
        QosPid::AtLeastOnce(id) | QosPid::ExactlyOnce(id) => id,
        QosPid::AtMostOnce => panic!("expected QoS 1 or 2: {p:?}"),
    }
}

/// Publishes on the daemon as a local client (its QoS flow completed).
fn publish_local(local: &mut RawClient, topic: &str, payload: &[u8], qos: QoS) {
    assert!(!local.publish(topic, payload, qos, false).is_error());
}

/// The 3.1.1 CONNECT of a bridge, byte by byte: the first packet [MQTT-3.1.0-1], protocol name
/// "MQTT" and level 4, with try_private's top bit (on by default, as in Mosquitto), reserved
/// flag 0, Clean Session 0 as configured, a will (the state notification "0", QoS 1, retained)
/// whose flags agree with the payload [MQTT-3.1.2-14], Password flag 0 without User Name flag
/// [MQTT-3.1.2-22], the client id and keep alive configured.
/// As a client [MQTT-3.1.0-1] (3.1.1) [MQTT-3.1.2-14] (3.1.1) [MQTT-3.1.2-22] (3.1.1).
#[test]
fn mqtt_7_0_0_1_v311_bridge_connect_is_first_and_well_formed() {
    let Some(b) = bridged(
        V311,
        "notifications true\nkeepalive_interval 7\ntopic # out 1 l/ r/",
    ) else {
        return;
    };
    let mut peer = b.accept();
    let (bytes, packet) = next_raw(&mut peer);
    assert_eq!(bytes[0], 0x10, "first packet is not CONNECT: {bytes:?}");
    // Fixed header, Remaining Length (one byte here), then the variable header.
    let vh = &bytes[2..];
    assert_eq!(&vh[..6], b"\x00\x04MQTT", "protocol name");
    assert_eq!(vh[6], 0x84, "protocol level 4 with try_private's bit");
    let flags = vh[7];
    assert_eq!(flags & 0x01, 0, "reserved flag");
    assert_eq!(flags & 0x02, 0, "Clean Session 0 (cleansession false)");
    assert_eq!(flags & 0x04, 0x04, "Will Flag (notifications)");
    assert_eq!((flags >> 3) & 0b11, 1, "Will QoS 1");
    assert_eq!(flags & 0x20, 0x20, "Will Retain");
    assert_eq!(flags & 0xC0, 0, "no user name, no password");
    assert_eq!(u16::from_be_bytes([vh[8], vh[9]]), 7, "keep alive");
    let Packet::Connect(c) = packet else {
        panic!("{packet:?}")
    };
    assert!(c.bridge);
    assert_eq!(&*c.client_id, REMOTE_ID);
    let will = c.will.expect("will");
    assert_eq!(
        &*will.topic,
        &*format!("$SYS/broker/connection/{REMOTE_ID}/state")
    );
    assert_eq!(&will.payload[..], b"0");
    peer.send(&Packet::from(connack(false, ConnAckProperties::default())));
    // With notifications, "1" follows on the remote: retained, QoS 0.
    let state = next_publish(&mut peer);
    assert_eq!(&state.payload[..], b"1");
    assert!(state.retain && state.qos_pid == QosPid::AtMostOnce);
}

/// `try_private false` on 3.1.1: protocol level 4 exactly. Without notifications there is no
/// will, and Will QoS and Will Retain are 0 [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15];
/// without a user name the payload ends with the client id [MQTT-3.1.2-18].
/// As a client [MQTT-3.1.0-1] (3.1.1) [MQTT-3.1.2-11] (3.1.1) [MQTT-3.1.2-13] (3.1.1).
/// As a client [MQTT-3.1.2-15] (3.1.1) [MQTT-3.1.2-18] (3.1.1).
#[test]
fn mqtt_7_0_0_1_v311_bridge_without_try_private_sends_level_4() {
    let Some(b) = bridged(V311, "try_private false\ntopic # out 1 l/ r/") else {
        return;
    };
    let mut peer = b.accept();
    let bytes = peer.recv_packet_bytes();
    assert_eq!(bytes[0], 0x10, "first packet is not CONNECT: {bytes:?}");
    assert_eq!(&bytes[2..8], b"\x00\x04MQTT");
    assert_eq!(bytes[8], 0x04, "protocol level");
    assert_eq!(
        bytes[9] & 0xFD,
        0,
        "only Clean Session may be set: {:#04x}",
        bytes[9]
    );
    check_payload_is_client_id(&bytes[12..]);
}

/// The payload of a CONNECT without will, user name or password: the client id alone.
fn check_payload_is_client_id(payload: &[u8]) {
    let mut expected = u16::try_from(REMOTE_ID.len())
        .expect("short id")
        .to_be_bytes()
        .to_vec();
    expected.extend_from_slice(REMOTE_ID.as_bytes());
    assert_eq!(payload, expected, "CONNECT payload");
}

/// The MQTT 5 CONNECT without notifications or user name: version 5 without try_private's top
/// bit (on by default, but it belongs to 3.1.x), Will QoS and Will Retain 0 without a will
/// [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15], and nothing but the client id in the payload
/// [MQTT-3.1.2-18].
/// As a client [MQTT-3.1.2-11] (5.0) [MQTT-3.1.2-13] (5.0) [MQTT-3.1.2-15] (5.0).
/// As a client [MQTT-3.1.2-18] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_without_will_or_user_clears_their_flags() {
    let Some(b) = bridged(V5, "topic # out 1 l/ r/") else {
        return;
    };
    let mut peer = b.accept();
    let bytes = peer.recv_packet_bytes();
    assert_eq!(bytes[0], 0x10, "first packet is not CONNECT: {bytes:?}");
    assert_eq!(
        &bytes[2..9],
        b"\x00\x04MQTT\x05",
        "protocol name and version"
    );
    assert_eq!(
        bytes[9] & 0xFD,
        0,
        "only Clean Start may be set: {:#04x}",
        bytes[9]
    );
    // Keep alive, then the properties: their length as a one-byte Variable Byte Integer.
    let properties_len = usize::from(bytes[12]);
    assert!(properties_len < 0x80);
    check_payload_is_client_id(&bytes[13 + properties_len..]);
}

/// The MQTT 5 CONNECT of a bridge: first [MQTT-3.1.0-1], protocol name "MQTT" [MQTT-3.1.2-1],
/// version 5 without try_private's bit (MQTT 5 has no local instead), reserved flag 0, Clean
/// Start 0 with Session Expiry Interval 0xFFFFFFFF, user name and password flags as
/// configured [MQTT-3.1.2-19], will flags agreeing with the will [MQTT-3.1.2-14].
/// As a client [MQTT-3.1.0-1] (5.0) [MQTT-3.1.2-1] (5.0) [MQTT-3.1.2-14] (5.0).
/// As a client [MQTT-3.1.2-19] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_connect_is_first_and_well_formed() {
    let Some(b) = bridged(
        V5,
        "notifications true\nremote_username user\nremote_password secret\ntopic # out 1 l/ r/",
    ) else {
        return;
    };
    let mut peer = b.accept();
    let (bytes, packet) = next_raw(&mut peer);
    assert_eq!(bytes[0], 0x10, "first packet is not CONNECT: {bytes:?}");
    let vh = &bytes[2..];
    assert_eq!(&vh[..6], b"\x00\x04MQTT", "protocol name");
    assert_eq!(vh[6], 0x05, "protocol version 5, no try_private bit");
    let flags = vh[7];
    assert_eq!(flags & 0x01, 0, "reserved flag");
    assert_eq!(flags & 0x02, 0, "Clean Start 0 (cleansession false)");
    assert_eq!(flags & 0x3C, 0x04 | 0x08 | 0x20, "will, QoS 1, retained");
    assert_eq!(flags & 0xC0, 0xC0, "user name and password");
    let Packet::Connect(c) = packet else {
        panic!("{packet:?}")
    };
    assert!(!c.bridge);
    assert_eq!(c.properties.session_expiry_interval, Some(u32::MAX));
    assert_eq!(c.properties.topic_alias_maximum, None);
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&b"secret"[..]));
    assert_eq!(&c.will.expect("will").payload[..], b"0");
}

/// Keep alive: with nothing else to send, the bridge sends PINGREQ within its Keep Alive
/// [MQTT-3.1.2-23] (3.1.1).
/// As a client [MQTT-3.1.2-23] (3.1.1).
#[test]
fn mqtt_7_0_0_1_v311_bridge_sends_pingreq_within_keep_alive() {
    let Some(b) = bridged(V311, "keepalive_interval 5\ntopic # out 1 l/ r/") else {
        return;
    };
    let (mut peer, connect) = b.accept_with(connack(false, ConnAckProperties::default()));
    let sent = Instant::now();
    assert_eq!(connect.keep_alive, 5);
    match peer.try_recv(Duration::from_secs(5) + SLACK) {
        Ok(Packet::PingReq) => {}
        other => panic!("expected PINGREQ within the keep alive of 5 s, got {other:?}"),
    }
    assert!(sent.elapsed() <= Duration::from_secs(5) + SLACK);
    peer.send(&Packet::PingResp);
}

/// The Server Keep Alive of CONNACK replaces the bridge's own [MQTT-3.2.2-21]
/// [MQTT-3.1.2-23]: CONNECT says 5 s, CONNACK 1 s, and PINGREQ comes every second
/// [MQTT-3.1.2-22].
/// As a client [MQTT-3.1.2-22] (5.0) [MQTT-3.1.2-23] (5.0) [MQTT-3.2.2-21] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_uses_server_keep_alive() {
    let Some(b) = bridged(V5, "keepalive_interval 5\ntopic # out 1 l/ r/") else {
        return;
    };
    let props = ConnAckProperties {
        server_keep_alive: Some(1),
        ..ConnAckProperties::default()
    };
    let (mut peer, connect) = b.accept_with(connack(false, props));
    assert_eq!(connect.keep_alive, 5);
    for _ in 0..2 {
        let since = Instant::now();
        match peer.try_recv(Duration::from_secs(1) + SLACK) {
            Ok(Packet::PingReq) => {}
            other => panic!("expected PINGREQ within the Server Keep Alive of 1 s, got {other:?}"),
        }
        assert!(since.elapsed() <= Duration::from_secs(1) + SLACK);
        peer.send(&Packet::PingResp);
    }
}

/// The SUBSCRIBE for the `in` and `both` lines: fixed-header flags 0010, a non-zero packet id,
/// one subscription per line at its QoS with the remote prefix; and while it waits for its
/// SUBACK, a PUBLISH of the bridge takes another id, since a client's SUBSCRIBE and PUBLISH
/// share one id space.
fn bridge_subscribes(version: ProtocolVersion) {
    let Some(b) = bridged(
        version,
        "topic a/# in 1 l/ r/\ntopic b/+ both 2 l/ r/\ntopic o/# out 1 l/ r/",
    ) else {
        return;
    };
    let mut peer = b.accept_connected();
    let (bytes, packet) = next_raw(&mut peer);
    assert_eq!(bytes[0], 0x82, "SUBSCRIBE fixed header: {bytes:?}");
    assert_ne!(&bytes[2..4], &[0, 0], "SUBSCRIBE packet id 0");
    let Packet::Subscribe(s) = packet else {
        panic!("expected SUBSCRIBE, got {packet:?}")
    };
    let subs: Vec<(&str, QoS)> = s
        .subscriptions
        .iter()
        .map(|s| (&*s.filter, s.options.qos))
        .collect();
    assert_eq!(
        subs,
        [("r/a/#", QoS::AtLeastOnce), ("r/b/+", QoS::ExactlyOnce)]
    );
    if version.is_v5() {
        assert!(s.subscriptions.iter().all(|s| s.options.no_local));
    }
    // The SUBACK is held back: the SUBSCRIBE's id is still in use.
    let mut local = b.local("pub");
    publish_local(&mut local, "l/o/x", b"m", QoS::AtLeastOnce);
    let p = next_publish(&mut peer);
    assert_eq!(&*p.topic, "r/o/x");
    assert_ne!(
        packet_id(&p),
        s.packet_id,
        "PUBLISH reuses the id of a SUBSCRIBE not yet acknowledged"
    );
    peer.send(&Packet::SubAck(SubAck {
        packet_id: s.packet_id,
        properties: Default::default(),
        reasons: vec![SubAckReason::GrantedQoS1, SubAckReason::GrantedQoS2],
    }));
    peer.send(&Packet::PubAck(PubAck::success(packet_id(&p))));
    peer.expect_nothing();
}

/// As a client [MQTT-2.3.1-1] (3.1.1) [MQTT-2.3.1-2] (3.1.1) [MQTT-3.8.1-1] (3.1.1).
#[test]
fn mqtt_7_0_0_1_v311_bridge_subscribes_well_formed_with_unused_ids() {
    bridge_subscribes(V311);
}

/// As a client [MQTT-2.2.1-3] (5.0) [MQTT-3.8.1-1] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_subscribes_well_formed_with_unused_ids() {
    bridge_subscribes(V5);
}

/// The sender's QoS flows: QoS 0 with DUP 0 and no id; QoS 1 and 2 with DUP 0 and ids not in
/// use; PUBREL (flags 0010) with the PUBLISH's id after PUBREC; nothing sent again on the
/// same connection once acknowledged; and an id reused only after its flow ended.
fn bridge_sends_qos_flows(version: ProtocolVersion) {
    let Some(b) = bridged(version, "topic # out 2 l/ r/") else {
        return;
    };
    let mut peer = b.accept_connected();
    let mut local = b.local("pub");
    publish_local(&mut local, "l/q0", b"zero", QoS::AtMostOnce);
    publish_local(&mut local, "l/q1", b"one", QoS::AtLeastOnce);
    publish_local(&mut local, "l/q2", b"two", QoS::ExactlyOnce);
    let p0 = next_publish(&mut peer);
    assert_eq!((&*p0.topic, p0.qos_pid), ("r/q0", QosPid::AtMostOnce));
    let p1 = next_publish(&mut peer);
    assert_eq!((&*p1.topic, &p1.payload[..]), ("r/q1", &b"one"[..]));
    assert!(matches!(p1.qos_pid, QosPid::AtLeastOnce(_)) && !p1.dup);
    let p2 = next_publish(&mut peer);
    assert_eq!((&*p2.topic, &p2.payload[..]), ("r/q2", &b"two"[..]));
    assert!(matches!(p2.qos_pid, QosPid::ExactlyOnce(_)) && !p2.dup);
    let (id1, id2) = (packet_id(&p1), packet_id(&p2));
    assert_ne!(id1, id2, "two unacknowledged PUBLISH share a packet id");
    peer.send(&Packet::PubRec(PubRec::success(id2)));
    next_pubrel(&mut peer, id2);
    peer.send(&Packet::PubComp(PubComp::success(id2)));
    peer.send(&Packet::PubAck(PubAck::success(id1)));
    peer.expect_nothing();
    // Many more in flight at once: every id distinct while unacknowledged.
    let mut ids = Vec::new();
    for i in 0..5u8 {
        publish_local(&mut local, "l/more", &[i], QoS::AtLeastOnce);
        let p = next_publish(&mut peer);
        assert_eq!(p.payload[..], [i]);
        assert!(!ids.contains(&packet_id(&p)), "{ids:?} reused");
        ids.push(packet_id(&p));
    }
    for id in ids {
        peer.send(&Packet::PubAck(PubAck::success(id)));
    }
    peer.expect_nothing();
}

/// As a client [MQTT-2.3.1-2] (3.1.1) [MQTT-3.3.1-2] (3.1.1) [MQTT-3.3.2-2] (3.1.1).
/// As a client [MQTT-4.3.2-1] (3.1.1) [MQTT-4.3.3-1] (3.1.1) [MQTT-3.6.1-1] (3.1.1).
#[test]
fn mqtt_7_0_0_1_v311_bridge_sends_qos_flows() {
    bridge_sends_qos_flows(V311);
}

/// As a client [MQTT-2.2.1-3] (5.0) [MQTT-3.3.1-2] (5.0) [MQTT-3.3.2-2] (5.0).
/// As a client [MQTT-4.3.2-1] (5.0) [MQTT-4.3.2-2] (5.0) [MQTT-4.3.3-1] (5.0).
/// As a client [MQTT-4.3.3-2] (5.0) [MQTT-4.3.3-4] (5.0) [MQTT-3.6.1-1] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_sends_qos_flows() {
    bridge_sends_qos_flows(V5);
}

/// On reconnecting with Clean Session 0 to a remote that kept the session, the bridge re-sends
/// what was unacknowledged with the original ids [MQTT-4.4.0-1]: the PUBLISH packets with DUP 1
/// [MQTT-3.3.1-1] in their original order [MQTT-4.6.0-1], and PUBREL, not the PUBLISH again,
/// where PUBREC had arrived.
fn bridge_resends_on_reconnect(version: ProtocolVersion) {
    let Some(b) = bridged(version, "topic # out 2 l/ r/") else {
        return;
    };
    let mut peer = b.accept_connected();
    let mut local = b.local("pub");
    publish_local(&mut local, "l/a", b"a", QoS::AtLeastOnce);
    publish_local(&mut local, "l/b", b"b", QoS::ExactlyOnce);
    publish_local(&mut local, "l/c", b"c", QoS::ExactlyOnce);
    let a = next_publish(&mut peer);
    let bb = next_publish(&mut peer);
    let c = next_publish(&mut peer);
    assert_eq!(
        [&a.payload[..], &bb.payload[..], &c.payload[..]],
        [b"a", b"b", b"c"]
    );
    peer.send(&Packet::PubRec(PubRec::success(packet_id(&c))));
    next_pubrel(&mut peer, packet_id(&c));
    // The link fails with all three unfinished.
    peer.drop_connection();

    let (mut peer, connect) = b.accept_with(connack(true, ConnAckProperties::default()));
    assert!(!connect.clean_start, "reconnects with Clean Session 0");
    let again_a = next_publish(&mut peer);
    let again_b = next_publish(&mut peer);
    for (again, first) in [(&again_a, &a), (&again_b, &bb)] {
        assert!(again.dup, "re-sent PUBLISH without DUP: {again:?}");
        assert_eq!(
            (again.qos_pid, &again.topic, &again.payload),
            (first.qos_pid, &first.topic, &first.payload),
            "re-sent PUBLISH differs from the first (or comes out of order)"
        );
    }
    next_pubrel(&mut peer, packet_id(&c));
    peer.send(&Packet::PubAck(PubAck::success(packet_id(&a))));
    peer.send(&Packet::PubRec(PubRec::success(packet_id(&bb))));
    next_pubrel(&mut peer, packet_id(&bb));
    peer.send(&Packet::PubComp(PubComp::success(packet_id(&bb))));
    peer.send(&Packet::PubComp(PubComp::success(packet_id(&c))));
    peer.expect_nothing();
}

/// As a client [MQTT-4.4.0-1] (3.1.1) [MQTT-3.3.1-1] (3.1.1) [MQTT-4.6.0-1] (3.1.1).
/// As a client [MQTT-2.3.1-3] (3.1.1).
#[test]
fn mqtt_7_0_0_1_v311_bridge_resends_on_reconnect() {
    bridge_resends_on_reconnect(V311);
}

/// As a client [MQTT-4.4.0-1] (5.0) [MQTT-3.3.1-1] (5.0) [MQTT-4.6.0-1] (5.0).
/// As a client [MQTT-4.3.3-3] (5.0) [MQTT-4.3.3-5] (5.0) [MQTT-4.3.3-6] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_resends_on_reconnect() {
    bridge_resends_on_reconnect(V5);
}

/// The receiver's QoS flows on what the remote publishes to an `in` line: PUBACK for QoS 1,
/// PUBREC then PUBCOMP for QoS 2, with the PUBLISH's ids and in the order the PUBLISH packets
/// came; the message reaches the daemon's subscribers under the local prefix.
fn bridge_receives(version: ProtocolVersion) {
    let Some(b) = bridged(version, "topic # in 2 l/ r/") else {
        return;
    };
    let mut local = b.local("sub");
    local.sub("l/#", QoS::ExactlyOnce);
    let mut peer = b.accept_connected();
    let Packet::Subscribe(s) = next_raw(&mut peer).1 else {
        panic!("expected SUBSCRIBE")
    };
    peer.send(&Packet::SubAck(SubAck {
        packet_id: s.packet_id,
        properties: Default::default(),
        reasons: vec![SubAckReason::GrantedQoS2],
    }));
    let pub_from_remote = |topic: &str, qos: QoS, id: u16| {
        Packet::Publish(midge_conformance::client::publish_packet(
            topic,
            topic.as_bytes(),
            qos,
            false,
            midge_conformance::client::pid(id),
        ))
    };
    peer.send(&pub_from_remote("r/x", QoS::AtLeastOnce, 7));
    peer.send(&pub_from_remote("r/y", QoS::AtLeastOnce, 9));
    peer.send(&pub_from_remote("r/z", QoS::ExactlyOnce, 8));
    peer.send(&pub_from_remote("r/w", QoS::ExactlyOnce, 3));
    let mut acks = Vec::new();
    for _ in 0..4 {
        acks.push(next_raw(&mut peer).1);
    }
    let pid = midge_conformance::client::pid;
    assert_eq!(
        acks,
        [
            Packet::PubAck(PubAck::success(pid(7))),
            Packet::PubAck(PubAck::success(pid(9))),
            Packet::PubRec(PubRec::success(pid(8))),
            Packet::PubRec(PubRec::success(pid(3))),
        ]
    );
    peer.send(&Packet::PubRel(PubRel::success(pid(8))));
    peer.send(&Packet::PubRel(PubRel::success(pid(3))));
    assert_eq!(
        next_raw(&mut peer).1,
        Packet::PubComp(PubComp::success(pid(8)))
    );
    assert_eq!(
        next_raw(&mut peer).1,
        Packet::PubComp(PubComp::success(pid(3)))
    );
    let mut got: Vec<String> = (0..4)
        .map(|_| local.recv_publish().topic.to_string())
        .collect();
    got.sort();
    assert_eq!(got, ["l/w", "l/x", "l/y", "l/z"]);
}

/// As a client [MQTT-4.3.2-2] (3.1.1) [MQTT-4.3.3-2] (3.1.1) [MQTT-4.5.0-2] (3.1.1).
/// As a client [MQTT-4.6.0-2] (3.1.1) [MQTT-4.6.0-3] (3.1.1).
#[test]
fn mqtt_7_0_0_1_v311_bridge_acknowledges_in_order() {
    bridge_receives(V311);
}

/// As a client [MQTT-4.3.2-4] (5.0) [MQTT-4.3.3-8] (5.0) [MQTT-4.5.0-2] (5.0).
/// As a client [MQTT-4.6.0-2] (5.0) [MQTT-4.6.0-3] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_acknowledges_in_order() {
    bridge_receives(V5);
}

/// The remote's Receive Maximum bounds the bridge's unacknowledged QoS 1 and 2 PUBLISH
/// packets [MQTT-3.3.4-7] [MQTT-4.9.0-2], and does not hold back its other packets: PINGREQ
/// still goes at the Server Keep Alive while the quota is used up [MQTT-3.3.4-8]
/// [MQTT-4.9.0-3].
/// As a client [MQTT-3.3.4-7] (5.0) [MQTT-3.3.4-8] (5.0) [MQTT-4.9.0-1] (5.0).
/// As a client [MQTT-4.9.0-2] (5.0) [MQTT-4.9.0-3] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_respects_receive_maximum() {
    let Some(b) = bridged(V5, "topic # out 1 l/ r/") else {
        return;
    };
    let props = ConnAckProperties {
        receive_maximum: NonZeroU16::new(1),
        server_keep_alive: Some(1),
        ..ConnAckProperties::default()
    };
    let (mut peer, _) = b.accept_with(connack(false, props));
    let mut local = b.local("pub");
    for i in 0..3u8 {
        publish_local(&mut local, "l/t", &[i], QoS::AtLeastOnce);
    }
    for i in 0..3u8 {
        let p = next_publish(&mut peer);
        assert_eq!(p.payload[..], [i]);
        // Quota spent: only PINGREQ until the PUBACK, within the Server Keep Alive.
        let until = Instant::now() + Duration::from_secs(1) + SLACK;
        let mut pinged = false;
        while Instant::now() < until {
            match peer.try_recv(until.saturating_duration_since(Instant::now())) {
                Ok(Packet::PingReq) => {
                    pinged = true;
                    peer.send(&Packet::PingResp);
                }
                Ok(other) => panic!("beyond Receive Maximum 1: {other:?}"),
                Err(RecvError::Timeout) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(pinged, "no PINGREQ while the send quota was spent");
        peer.send(&Packet::PubAck(PubAck::success(packet_id(&p))));
    }
}

/// The remote's Maximum Packet Size: the bridge sends nothing larger [MQTT-3.2.2-15]; the
/// message too large for it is not sent, and the next one is.
/// As a client [MQTT-3.2.2-15] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_respects_maximum_packet_size() {
    let Some(b) = bridged(V5, "topic # out 1 l/ r/") else {
        return;
    };
    let props = ConnAckProperties {
        maximum_packet_size: NonZeroU32::new(64),
        ..ConnAckProperties::default()
    };
    let (mut peer, _) = b.accept_with(connack(false, props));
    let mut local = b.local("pub");
    publish_local(&mut local, "l/big", &[b'x'; 200], QoS::AtLeastOnce);
    publish_local(&mut local, "l/small", b"s", QoS::AtLeastOnce);
    let bytes = peer.recv_packet_bytes();
    assert!(
        bytes.len() <= 64,
        "{} bytes above Maximum Packet Size 64",
        bytes.len()
    );
    let Ok(Some((Packet::Publish(p), _))) = decode(&Bytes::from(bytes), V5, MAX_PACKET_SIZE) else {
        panic!("expected PUBLISH")
    };
    assert_eq!(&*p.topic, "r/small");
    peer.send(&Packet::PubAck(PubAck::success(packet_id(&p))));
    peer.expect_nothing();
}

/// Retain Available 0 in CONNACK: the bridge sends no PUBLISH with RETAIN 1 [MQTT-3.2.2-14].
/// As a client [MQTT-3.2.2-14] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_respects_retain_available() {
    let Some(b) = bridged(V5, "topic # out 1 l/ r/") else {
        return;
    };
    let props = ConnAckProperties {
        retain_available: Some(false),
        ..ConnAckProperties::default()
    };
    let (mut peer, _) = b.accept_with(connack(false, props));
    let mut local = b.local("pub");
    assert!(
        !local
            .publish("l/r", b"kept", QoS::AtLeastOnce, true)
            .is_error()
    );
    let (bytes, packet) = next_raw(&mut peer);
    assert_eq!(
        bytes[0] & 0x01,
        0,
        "RETAIN 1 to a remote without retained messages"
    );
    let Packet::Publish(p) = packet else {
        panic!("{packet:?}")
    };
    peer.send(&Packet::PubAck(PubAck::success(packet_id(&p))));
}

/// Topic aliases: none to a remote whose CONNACK has no Topic Alias Maximum [MQTT-3.2.2-18];
/// with a maximum of 1, none above it and never 0 [MQTT-3.2.2-17] [MQTT-3.3.2-9]
/// [MQTT-3.3.2-8], and every PUBLISH names its topic or an alias this connection set.
/// As a client [MQTT-3.2.2-17] (5.0) [MQTT-3.2.2-18] (5.0) [MQTT-3.3.2-8] (5.0).
/// As a client [MQTT-3.3.2-9] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_respects_topic_alias_maximum() {
    for maximum in [None, Some(1u16)] {
        let Some(b) = bridged(V5, "topic # out 0 l/ r/") else {
            return;
        };
        let props = ConnAckProperties {
            topic_alias_maximum: maximum,
            ..ConnAckProperties::default()
        };
        let (mut peer, _) = b.accept_with(connack(false, props));
        let mut local = b.local("pub");
        let topics = [
            "l/a/long/topic",
            "l/b/long/topic",
            "l/a/long/topic",
            "l/a/long/topic",
        ];
        for t in topics {
            publish_local(&mut local, t, t.as_bytes(), QoS::AtMostOnce);
        }
        let mut aliases: BTreeMap<u16, String> = BTreeMap::new();
        for t in topics {
            let (bytes, packet) = next_raw(&mut peer);
            let Packet::Publish(p) = packet else {
                panic!("{packet:?}")
            };
            let topic = match p.properties.topic_alias.map(NonZeroU16::get) {
                None => p.topic.to_string(),
                Some(alias) => {
                    let max = maximum.unwrap_or(0);
                    assert!(
                        alias <= max,
                        "Topic Alias {alias} above the remote's maximum {max}: {bytes:?}"
                    );
                    if p.topic.is_empty() {
                        aliases
                            .get(&alias)
                            .cloned()
                            .unwrap_or_else(|| panic!("alias {alias} was never set"))
                    } else {
                        aliases.insert(alias, p.topic.to_string());
                        p.topic.to_string()
                    }
                }
            };
            assert_eq!(topic, t.replacen("l/", "r/", 1));
        }
    }
}

/// A malformed packet from the remote (PUBLISH with both QoS bits set) makes the MQTT 5 bridge
/// send DISCONNECT with reason 0x81 and close [MQTT-4.13.1-1]-style, using a DISCONNECT reason
/// code [MQTT-3.14.2-1] and sending nothing after it [MQTT-3.14.4-1] [MQTT-3.14.4-2]; a
/// server's packet a client never gets (PINGREQ) is a protocol error, 0x82. It then redials.
/// As a client [MQTT-3.3.1-4] (5.0) [MQTT-3.14.2-1] (5.0) [MQTT-3.14.4-1] (5.0).
/// As a client [MQTT-3.14.4-2] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_disconnects_on_malformed_packet() {
    let Some(b) = bridged(V5, "topic # out 1 l/ r/") else {
        return;
    };
    let cases: [(&[u8], DisconnectReason); 2] = [
        // PUBLISH, QoS bits 11, topic "r/x", packet id 1.
        (
            &[0x36, 0x08, 0x00, 0x03, b'r', b'/', b'x', 0x00, 0x01, 0x00],
            DisconnectReason::MalformedPacket,
        ),
        (&[0xC0, 0x00], DisconnectReason::ProtocolError),
    ];
    for (bytes, reason) in cases {
        let mut peer = b.accept_connected();
        peer.send_raw(bytes).expect("send");
        let before = peer.expect_closed();
        match before.as_slice() {
            [Packet::Disconnect(d)] => assert_eq!(d.reason, reason, "after {bytes:?}"),
            other => panic!("expected DISCONNECT {reason:?} then closure, got {other:?}"),
        }
    }
    // And it comes back.
    let _ = b.accept_connected();
}

/// On 3.1.1 a protocol violation from the remote (PUBLISH with both QoS bits set) closes the
/// link [MQTT-4.8.0-1] [MQTT-3.3.1-4]; 3.1.1 has no DISCONNECT from server to client, so the
/// bridge sends nothing first.
/// As a client [MQTT-4.8.0-1] (3.1.1) [MQTT-3.3.1-4] (3.1.1).
#[test]
fn mqtt_7_0_0_1_v311_bridge_closes_on_malformed_packet() {
    let Some(b) = bridged(V311, "topic # out 1 l/ r/") else {
        return;
    };
    let mut peer = b.accept_connected();
    peer.send_raw(&[0x36, 0x08, 0x00, 0x03, b'r', b'/', b'x', 0x00, 0x01, 0x00])
        .expect("send");
    peer.expect_closed_silently();
    let _ = b.accept_connected();
}

/// The remote's Maximum QoS: the bridge sends no PUBLISH above it [MQTT-3.2.2-11], even for a
/// line of QoS 2 and a message published at QoS 2.
/// As a client [MQTT-3.2.2-11] (5.0).
#[test]
fn mqtt_7_0_0_1_v5_bridge_respects_maximum_qos() {
    let Some(b) = bridged(V5, "topic # out 2 l/ r/") else {
        return;
    };
    let props = ConnAckProperties {
        maximum_qos: Some(QoS::AtLeastOnce),
        ..ConnAckProperties::default()
    };
    let (mut peer, _) = b.accept_with(connack(false, props));
    let mut local = b.local("pub");
    publish_local(&mut local, "l/q2", b"two", QoS::ExactlyOnce);
    let p = next_publish(&mut peer);
    assert!(
        matches!(p.qos_pid, QosPid::AtMostOnce | QosPid::AtLeastOnce(_)),
        "PUBLISH above the remote's Maximum QoS 1: {p:?}"
    );
    if let QosPid::AtLeastOnce(id) = p.qos_pid {
        peer.send(&Packet::PubAck(PubAck::success(id)));
    }
}
