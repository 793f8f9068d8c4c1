//! A subscriber that stops reading must cost the others nothing: the daemon keeps a bounded
//! amount of output for it and drops QoS 0 messages beyond that, while other subscribers get
//! everything at full speed.

mod common;

use common::*;
use midge_core::codec::QoS;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MESSAGES: usize = 10_000;
const PAYLOAD: usize = 2_048;
/// Messages the publisher sends before waiting for the fast subscriber to catch up, so the fast
/// subscriber's own output never reaches the daemon's per-connection limit (1 MiB).
const BATCH: usize = 200;

/// The queues of a TCP socket on 127.0.0.1, from /proc/net/tcp: (send queue, receive queue)
/// of the socket whose local and remote ports are these (remote 0: any).
fn tcp_queues(local_port: u16, remote_port: u16) -> Option<(u64, u64)> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (local, remote, queues) = (fields.get(1)?, fields.get(2)?, fields.get(4)?);
        if port(local)? != local_port || (remote_port != 0 && port(remote)? != remote_port) {
            return None;
        }
        let (tx, rx) = queues.split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

fn payload(seq: usize) -> Vec<u8> {
    let mut p = format!("{seq:08}").into_bytes();
    p.resize(PAYLOAD, b'.');
    p
}

fn seq_of(payload: &[u8]) -> usize {
    std::str::from_utf8(&payload[..8]).unwrap().parse().unwrap()
}

#[test]
fn slow_subscriber_does_not_slow_a_fast_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path(), "listener 0 127.0.0.1\nallow_anonymous true\n");
    let addr = daemon.addr();
    let rss_before = daemon.rss_kib();

    // The slow subscriber subscribes, then reads nothing until the end.
    let slow_stream = tcp(addr);
    let slow_port = slow_stream.local_addr().unwrap().port();
    let mut slow = Client::connect_with(slow_stream, ConnectOptions::new(V311, "slow"));
    slow.sub("flood/#", QoS::AtLeastOnce);

    // The fast subscriber reads in its own thread and counts.
    let received = Arc::new(AtomicUsize::new(0));
    let mut fast = Client::connect(addr, V311, "fast");
    fast.sub("flood/#", QoS::AtMostOnce);
    let counter = Arc::clone(&received);
    let reader = std::thread::spawn(move || {
        for expected in 0..MESSAGES {
            let p = fast
                .try_recv_publish(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("fast subscriber: message {expected} missing: {e:?}"));
            assert_eq!(
                seq_of(&p.payload),
                expected,
                "fast subscriber: out of order"
            );
            assert_eq!(p.payload.len(), PAYLOAD);
            counter.store(expected + 1, Ordering::Release);
        }
        fast
    });

    let mut publisher = Client::connect(addr, V311, "publisher");
    let started = Instant::now();
    for batch in 0..MESSAGES / BATCH {
        for seq in batch * BATCH..(batch + 1) * BATCH {
            publisher.publish_qos0("flood/data", &payload(seq));
        }
        let target = (batch + 1) * BATCH;
        assert!(
            wait_until(Duration::from_secs(20), || received.load(Ordering::Acquire)
                >= target
                || reader.is_finished()),
            "the fast subscriber is stuck at {} of {target} messages",
            received.load(Ordering::Acquire)
        );
    }
    let mut fast = reader.join().expect("fast subscriber");
    let elapsed = started.elapsed();
    eprintln!(
        "fast subscriber received {MESSAGES} messages of {PAYLOAD} bytes in {elapsed:?} while \
         the slow one read nothing"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "the fast subscriber took {elapsed:?}"
    );

    // The slow subscriber's socket is full: data waits in its receive queue (and in the
    // daemon's send queue towards it).
    let (_, slow_rx) = tcp_queues(slow_port, addr.port()).expect("the slow socket");
    let daemon_tx = tcp_queues(addr.port(), slow_port).map(|(tx, _)| tx);
    eprintln!("slow socket receive queue {slow_rx} bytes, daemon send queue {daemon_tx:?}");
    assert!(
        slow_rx > 64 * 1024,
        "the slow socket holds only {slow_rx} bytes"
    );
    assert!(
        daemon_tx.is_some_and(|tx| tx > 0),
        "the daemon's side of the slow connection has nothing waiting"
    );

    // The daemon is alive, answers, and did not buffer the flood for the slow client.
    assert!(daemon.is_running());
    fast.ping();
    let rss_after = daemon.rss_kib();
    eprintln!("daemon RSS {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "daemon RSS grew from {rss_before} KiB to {rss_after} KiB"
    );

    // Once the slow subscriber reads again it gets a prefix-ordered part of the flood (the
    // rest was dropped, QoS 0 over a full buffer), then a QoS 1 message that waited for it.
    publisher.publish("flood/end", b"end", QoS::AtLeastOnce, false);
    fast.expect_message("flood/end", b"end");
    let mut slow_got = 0;
    let mut last = None;
    loop {
        let p = slow
            .try_recv_publish(Duration::from_secs(20))
            .expect("the slow subscriber gets the rest, then the end marker");
        if &p.topic[..] == "flood/end" {
            break;
        }
        let seq = seq_of(&p.payload);
        assert!(
            last.is_none_or(|l| seq > l),
            "slow subscriber: out of order"
        );
        last = Some(seq);
        slow_got += 1;
    }
    eprintln!("the slow subscriber got {slow_got} of {MESSAGES} messages");
    assert!(
        slow_got < MESSAGES,
        "all {MESSAGES} messages ({} MiB) were kept for a client that did not read",
        (MESSAGES * PAYLOAD) >> 20
    );
    slow.ping();
}
