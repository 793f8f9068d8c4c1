//! Queue limits after a restart: retained messages queued for a new subscription count against
//! `max_retained_messages`, not the session's queue, before and after recovery alike. (Found by
//! the simulator: restored as ordinary queued messages, they took the queue's room, and each
//! restart with a new subscription could grow the queue past both limits.)

mod harness;

use harness::*;
use midge_core::broker::Config;
use midge_core::codec::{Connect, Packet, QoS};

fn config() -> Config {
    Config {
        persistence: true,
        max_inflight_messages: 1,
        max_queued_messages: 1,
        max_retained_messages: 2,
        ..Config::default()
    }
}

fn persistent(id: &str) -> Connect {
    let mut c = connect(V3_1_1, id);
    c.clean_start = false;
    c
}

#[test]
fn retained_messages_queued_on_subscribe_keep_their_own_limit_across_a_restart() {
    let mut w = World::new(config());
    let publ = w.client(V3_1_1, "pub");
    w.send(publ, &publish_retained("r/1", b"one", QoS::AtLeastOnce, 1));
    w.send(publ, &publish_retained("r/2", b"two", QoS::AtLeastOnce, 2));
    assert_eq!(w.recv(publ).len(), 2);

    // The first retained message goes in flight, the second waits in the queue.
    let (sub, _) = w.connect(persistent("sub"));
    w.send(sub, &subscribe(1, "r/#", QoS::AtLeastOnce));
    let got = w.recv(sub);
    assert_eq!(publishes(&got).len(), 1, "{got:?}");
    w.peer_close(sub);

    let mut w = World::recovered(config(), &w.disk, w.now);
    // The queue (one message) still has room for a message published now.
    let publ = w.client(V3_1_1, "pub2");
    w.send(publ, &publish("r/x", b"new", QoS::AtLeastOnce, 1));
    assert_eq!(w.recv(publ).len(), 1);
    assert_eq!(w.broker.stats().dropped_queue_full, 0);

    let conn = w.open(V3_1_1);
    w.send(conn, &Packet::from(persistent("sub")));
    let mut payloads = Vec::new();
    for _ in 0..3 {
        for p in w.recv(conn) {
            if let Packet::Publish(p) = p {
                payloads.push(String::from_utf8_lossy(&p.payload).into_owned());
                let id = p.qos_pid.packet_id().expect("QoS 1");
                w.send(conn, &puback(id));
            }
        }
    }
    assert_eq!(payloads, ["one", "two", "new"]);
}
