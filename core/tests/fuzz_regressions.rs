//! Inputs on which fuzzing (fuzz/, target `broker`) found the broker breaking a rule, each
//! reduced to the exchange that shows it. The raw crash inputs are replayed by fuzz/'s own tests
//! from fuzz/regressions/.

mod harness;

use bytes::{Bytes, BytesMut};
use harness::*;
use midge_core::broker::{Action, Config};
use midge_core::codec::{self, ConnectReason, DisconnectReason, Packet};
use std::num::NonZeroU32;

/// Every byte the broker sent to the connection, in order.
fn sent_to(w: &World, conn: midge_core::broker::ConnId) -> Vec<u8> {
    w.log
        .iter()
        .filter_map(|a| match a {
            Action::Send { conn: c, bytes } if *c == conn => Some(bytes.to_vec()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// fuzz/regressions/broker/refused-connack-over-maximum-packet-size: a CONNECT refused for its
/// empty client id, from a client whose Maximum Packet Size (36) is smaller than the CONNACK
/// with its Reason String (38 bytes). The Reason String must go [MQTT-3.2.2-19] (5.0); the
/// packet must fit [MQTT-3.1.2-27] (5.0).
#[test]
fn a_refusal_leaves_out_the_reason_string_that_would_exceed_the_maximum_packet_size() {
    let mut w = World::new(Config {
        allow_zero_length_clientid: false,
        ..Config::default()
    });
    let mut c = connect(V5, "");
    c.properties.maximum_packet_size = NonZeroU32::new(36);
    let conn = w.open(V5);
    w.send(conn, &Packet::from(c));
    assert!(w.is_closed(conn));

    let bytes = Bytes::from(sent_to(&w, conn));
    let (packet, used) = codec::decode(&bytes, V5, 36)
        .expect("the CONNACK fits the client's Maximum Packet Size")
        .expect("a whole CONNACK");
    assert_eq!(used, bytes.len(), "nothing but the CONNACK is sent");
    match packet {
        Packet::ConnAck(ack) => {
            assert_eq!(ack.reason, ConnectReason::ClientIdentifierNotValid);
            assert_eq!(ack.properties.reason_string, None);
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// The same refusal to a client with room for it keeps its Reason String.
#[test]
fn a_refusal_that_fits_keeps_its_reason_string() {
    let mut w = World::new(Config {
        allow_zero_length_clientid: false,
        ..Config::default()
    });
    let mut c = connect(V5, "");
    c.properties.maximum_packet_size = NonZeroU32::new(200);
    let (_, ack) = w.try_connect(c);
    assert_eq!(ack.reason, ConnectReason::ClientIdentifierNotValid);
    assert!(ack.properties.reason_string.is_some());
}

/// fuzz/regressions/broker/assigned-id-connack-over-maximum-packet-size: a client with an
/// empty client id and a Maximum Packet Size of 23 would be accepted, but its CONNACK must carry
/// the Assigned Client Identifier [MQTT-3.2.2-16] (5.0) and is 32 bytes, which cannot be sent
/// [MQTT-3.1.2-27] (5.0). It is refused with 0x95 (Packet too large) in a CONNACK that fits,
/// before any session exists.
#[test]
fn a_client_whose_maximum_leaves_no_room_for_its_connack_is_refused() {
    let mut w = World::default();
    let mut c = connect(V5, "");
    c.properties.maximum_packet_size = NonZeroU32::new(23);
    let conn = w.open(V5);
    w.send(conn, &Packet::from(c));
    assert!(w.is_closed(conn));
    let bytes = Bytes::from(sent_to(&w, conn));
    let (packet, used) = codec::decode(&bytes, V5, 23)
        .expect("the CONNACK fits the client's Maximum Packet Size")
        .expect("a whole CONNACK");
    assert_eq!(used, bytes.len(), "nothing but the CONNACK is sent");
    match packet {
        Packet::ConnAck(ack) => assert_eq!(ack.reason, ConnectReason::PacketTooLarge),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert_eq!(w.broker.stats().sessions, 0);
}

/// fuzz/regressions/broker/resumed-session-connack-over-maximum-packet-size: the same check
/// comes before a stored session is resumed, so a refused client leaves it as it was (an
/// earlier version closed the connection after resuming, ending the session under the code
/// still resuming it, and panicked).
#[test]
fn a_refusal_for_the_connacks_size_leaves_a_stored_session_alone() {
    let mut w = World::new(Config {
        receive_maximum: 1,
        ..Config::default()
    });
    let mut c = connect(V5, "a");
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(u32::MAX);
    let (first, _) = w.connect(c.clone());
    w.subscribe(first, "t", midge_core::codec::QoS::AtLeastOnce);
    w.peer_close(first);
    c.properties.session_expiry_interval = Some(0);
    c.properties.maximum_packet_size = NonZeroU32::new(8);
    let (_, ack) = w.try_connect(c.clone());
    assert_eq!(ack.reason, ConnectReason::PacketTooLarge);
    c.properties.maximum_packet_size = None;
    let (_, ack) = w.connect(c);
    assert!(ack.session_present, "the stored session is still there");
}

/// The same rule for any other reply: a SUBACK with two reason codes (7 bytes) to a client
/// whose maximum is 5 bytes, just enough for its CONNACK, is not sent [MQTT-3.1.2-27] (5.0).
/// A client left without its answer would wait forever, so the connection is closed with
/// DISCONNECT 0x95 (Packet too large), which fits, and a packet behind the SUBACK in the same
/// read is not handled.
#[test]
fn a_reply_larger_than_the_clients_maximum_is_not_sent_and_closes() {
    let mut w = World::new(Config {
        max_topic_alias: 0,
        ..Config::default()
    });
    let mut c = connect(V5, "small");
    c.properties.maximum_packet_size = NonZeroU32::new(5);
    let (conn, _) = w.connect(c);
    let mut sub = subscribe(1, "a", midge_core::codec::QoS::AtMostOnce);
    if let Packet::Subscribe(s) = &mut sub {
        s.subscriptions.push(s.subscriptions[0].clone());
        s.subscriptions[1].filter = "b".into();
    }
    let mut bytes = BytesMut::new();
    sub.encode(V5, &mut bytes).unwrap();
    Packet::PingReq.encode(V5, &mut bytes).unwrap();
    w.send_raw(conn, &bytes);
    let got = w.recv(conn);
    match got.as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, DisconnectReason::PacketTooLarge),
        other => panic!("expected only DISCONNECT 0x95, got {other:?}"),
    }
    assert!(w.is_closed(conn));
}

/// fuzz/regressions/broker/bytes-sent-after-a-held-close: with persistence, a connection closed
/// while its output waits for durability sends that output once the log is durable; those bytes
/// count in `bytes_sent` ($SYS/broker/bytes/sent) like any others.
#[test]
fn output_released_after_a_close_counts_in_bytes_sent() {
    let mut w = World::new(Config {
        persistence: true,
        ..Config::default()
    });
    w.auto_durable = false;
    let mut c = connect(V3_1_1, "a");
    c.clean_start = false;
    let conn = w.open(V3_1_1);
    w.send(conn, &Packet::from(c));
    // The CONNACK of a persistent session waits for its record.
    assert_eq!(sent_to(&w, conn), Vec::<u8>::new());
    w.broker.handle(w.now, midge_core::broker::Input::Shutdown);
    w.drain();
    assert!(!w.is_closed(conn), "the close waits behind the CONNACK");
    w.make_durable();
    assert!(w.is_closed(conn));
    let sent: usize = w
        .log
        .iter()
        .map(|a| match a {
            Action::Send { bytes, .. } => bytes.len(),
            _ => 0,
        })
        .sum();
    assert!(sent > 0);
    assert_eq!(w.broker.stats().bytes_sent, sent as u64);
}

/// fuzz/regressions/recover/delivery-sent-twice: a log in which one delivery is recorded as
/// sent with two packet ids. Applied as it was, the state kept both ids in flight for it, and a
/// snapshot of that state (which stores each delivery with its one packet id) read back as a
/// different state. The second `Sent` is refused as inconsistent; the log is never silently
/// reinterpreted.
#[test]
fn a_delivery_recorded_as_sent_twice_is_refused() {
    use midge_core::persist::{Record, State, StoredMessage};
    let client_id = midge_core::codec::ByteString::from("c");
    let sent = |packet_id: u16| Record::Sent {
        client_id: client_id.clone(),
        delivery_id: 2,
        packet_id: pid(packet_id),
    };
    let records = [
        Record::SessionOpen {
            client_id: client_id.clone(),
            expiry_secs: u32::MAX,
        },
        Record::Message(StoredMessage {
            id: 2,
            topic: "t".into(),
            payload: Bytes::from_static(b"payload"),
            qos: midge_core::codec::QoS::ExactlyOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
        }),
        Record::Enqueue {
            client_id: client_id.clone(),
            delivery_id: 2,
            message_id: 2,
            qos: midge_core::codec::QoS::ExactlyOnce,
            retain: false,
            subscription_ids: Vec::new(),
        },
        sent(3),
        Record::Commit,
    ];
    let mut state = State::default();
    for (i, record) in records.iter().enumerate() {
        state.apply(i as u64 + 1, record).expect("consistent");
    }
    let before = state.clone();
    let error = state
        .apply(6, &sent(2))
        .expect_err("a second Sent is refused");
    assert_eq!(error.lsn, 6);
    assert_eq!(state, before, "a refused record leaves the state as it was");
    assert_eq!(state.sessions[&client_id].in_flight.len(), 1);
}

/// fuzz/regressions/recover/discarded-delivery-in-flight: a log that discards a delivery after
/// recording it as sent. Applied as it was, the delivery went but its packet id stayed in
/// flight, pointing at nothing, and a snapshot of that state read back differently. Only a
/// queued delivery is discarded; one in flight ends with `Acked`.
#[test]
fn a_delivery_discarded_while_in_flight_is_refused() {
    use midge_core::persist::{Record, State, StoredMessage};
    let client_id = midge_core::codec::ByteString::from("b");
    let records = [
        Record::SessionOpen {
            client_id: client_id.clone(),
            expiry_secs: 0,
        },
        Record::Message(StoredMessage {
            id: 1,
            topic: "t/u".into(),
            payload: Bytes::from_static(b"payload"),
            qos: midge_core::codec::QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            expires_at: None,
        }),
        Record::Enqueue {
            client_id: client_id.clone(),
            delivery_id: 3,
            message_id: 1,
            qos: midge_core::codec::QoS::AtLeastOnce,
            retain: false,
            subscription_ids: Vec::new(),
        },
        Record::Sent {
            client_id: client_id.clone(),
            delivery_id: 3,
            packet_id: pid(1),
        },
        Record::Commit,
    ];
    let mut state = State::default();
    for (i, record) in records.iter().enumerate() {
        state.apply(i as u64 + 1, record).expect("consistent");
    }
    let before = state.clone();
    let discard = Record::Discarded {
        client_id: client_id.clone(),
        delivery_id: 3,
    };
    let error = state
        .apply(6, &discard)
        .expect_err("an in-flight delivery is not discarded");
    assert_eq!(error.lsn, 6);
    assert_eq!(state, before, "a refused record leaves the state as it was");
    // Acknowledged, it ends properly: delivery and packet id both go.
    let acked = Record::Acked {
        client_id: client_id.clone(),
        packet_id: pid(1),
    };
    state.apply(6, &acked).expect("an acknowledgement ends it");
    let session = &state.sessions[&client_id];
    assert!(session.deliveries.is_empty() && session.in_flight.is_empty());
}
