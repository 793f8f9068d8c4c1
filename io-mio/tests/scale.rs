//! Many concurrent clients on one daemon.

mod common;

use common::*;
use midge_core::codec::{
    ByteString, Packet, PacketId, QoS, SubAckReason, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions,
};
use std::time::Instant;

const CLIENTS: usize = 1_000;

/// 1,000 MQTT 3.1.1 clients connect at once, subscribe to one topic, and each receives the one
/// message published to it.
#[test]
fn thousand_clients_receive_one_broadcast() {
    // Each client is one descriptor here and one in the daemon, which raises its own limit;
    // the hard limit on this machine and CI's is 20,000, the soft one may be 1,024.
    let limit = rlimit::increase_nofile_limit(4 * CLIENTS as u64).expect("raise RLIMIT_NOFILE");
    assert!(
        limit >= CLIENTS as u64 + 200,
        "open files limit {limit} is too low for {CLIENTS} clients"
    );
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        dir.path(),
        // Connection messages would be 2,000 log lines; they are not what is tested.
        "listener 0 127.0.0.1\nallow_anonymous true\nconnection_messages false\n",
    );
    let started = Instant::now();

    // Connect everyone first, sending CONNECT and SUBSCRIBE without waiting, so the daemon
    // holds all the connections at once; then read every CONNACK and SUBACK.
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let mut c = Client::new(tcp(daemon.addr()), V311);
            c.send(&Packet::from(
                ConnectOptions::new(V311, &format!("client-{i}")).connect,
            ));
            c.send(&Packet::Subscribe(Subscribe {
                packet_id: PacketId::new(7).unwrap(),
                properties: SubscribeProperties::default(),
                subscriptions: vec![Subscription {
                    filter: ByteString::from("broadcast/+"),
                    options: SubscriptionOptions::new(QoS::AtLeastOnce),
                }],
            }));
            c
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        match c.recv() {
            Packet::ConnAck(ack) => assert!(!ack.reason.is_error(), "client {i}: {ack:?}"),
            other => panic!("client {i}: expected CONNACK, got {other:?}"),
        }
        match c.recv() {
            Packet::SubAck(ack) => assert_eq!(ack.reasons, [SubAckReason::GrantedQoS1]),
            other => panic!("client {i}: expected SUBACK, got {other:?}"),
        }
    }
    let connected = started.elapsed();

    let mut publisher = Client::connect(daemon.addr(), V311, "publisher");
    publisher.publish("broadcast/all", b"hello, everyone", QoS::AtLeastOnce, false);
    for c in &mut clients {
        let p = c.expect_message("broadcast/all", b"hello, everyone");
        assert_eq!(p.qos_pid.qos(), QoS::AtLeastOnce);
    }
    eprintln!(
        "{CLIENTS} clients connected and subscribed in {connected:?}, broadcast received by all \
         after {:?}",
        started.elapsed()
    );
}
