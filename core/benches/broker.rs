//! Messages routed per second through a `Broker` in memory, with no sockets: 64-byte payloads on
//! one topic, one publisher to one subscriber, one publisher to 100 subscribers (fan-out) and 100
//! publishers to one subscriber (fan-in), at QoS 0, 1 and 2. Clients speak MQTT 3.1.1 with the
//! default configuration (20 messages in flight per subscriber).
//!
//! Subscribers acknowledge as they receive (PUBACK; PUBREC, then PUBCOMP after the broker's
//! PUBREL) so their windows keep moving, and QoS 2 publishers release their messages (PUBREL).
//! All client packets are encoded before timing; the subscribers know which packet ids the broker
//! gives their messages (it counts up from 1) without decoding its output, so what is timed is the
//! broker's work alone: `handle` for every input and draining `poll_action` after each. One
//! iteration routes one message from every publisher and completes every flow, so the broker is in
//! the same state after each; throughput counts messages delivered to subscribers.

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use midge_core::broker::{Action, Broker, Config, ConnId, Input, ListenerId, Open, Time};
use midge_core::codec::{
    ByteString, Connect, ConnectProperties, Packet, PacketId, ProtocolVersion, PubResponse,
    Publish, PublishProperties, QoS, QosPid, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions,
};
use std::hint::black_box;
use std::time::Duration;

const VERSION: ProtocolVersion = ProtocolVersion::V3_1_1;
const TOPIC: &str = "sensors/site-17/device-00042/temperature";
const NOW: Time = Time::ZERO;

fn encode(packet: &Packet) -> Bytes {
    let mut buf = BytesMut::new();
    packet
        .encode(VERSION, &mut buf)
        .expect("bench packet encodes");
    buf.freeze()
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

/// One acknowledgement packet for every packet id, 1 to 65,535 in order, so that the packets
/// acknowledging a run of consecutive ids are one slice.
struct AckTable {
    bytes: Bytes,
    len: usize,
}

impl AckTable {
    fn new(make: impl Fn(PacketId) -> Packet) -> AckTable {
        let mut buf = BytesMut::new();
        for n in 1..=u16::MAX {
            make(pid(n)).encode(VERSION, &mut buf).unwrap();
        }
        let len = buf.len() / usize::from(u16::MAX);
        AckTable {
            bytes: buf.freeze(),
            len,
        }
    }

    /// The acknowledgements of `count` ids from `first` on, as at most two slices (ids wrap
    /// from 65,535 to 1).
    fn run(&self, first: u16, count: usize) -> [&[u8]; 2] {
        let start = usize::from(first - 1);
        let until_wrap = usize::from(u16::MAX) - start;
        let head = count.min(until_wrap);
        [
            &self.bytes[start * self.len..(start + head) * self.len],
            &self.bytes[..(count - head) * self.len],
        ]
    }
}

/// The packet ids the broker gives one subscriber's messages: 1, 2, ... 65,535, 1, ...
#[derive(Clone, Copy)]
struct Ids {
    next: u16,
}

impl Ids {
    /// The first of the next `count` ids, moving past them.
    fn take(&mut self, count: usize) -> u16 {
        let first = self.next;
        for _ in 0..count {
            self.next = if self.next == u16::MAX {
                1
            } else {
                self.next + 1
            };
        }
        first
    }
}

struct Bench {
    broker: Broker,
    qos: QoS,
    publishers: Vec<ConnId>,
    subscribers: Vec<(ConnId, Ids)>,
    /// Messages in flight per subscriber.
    window: usize,
    publish: Bytes,
    pubrel: Bytes,
    puback: AckTable,
    pubrec: AckTable,
    pubcomp: AckTable,
    /// Actions drained, for the checks after timing.
    sends: u64,
    closes: u64,
}

impl Bench {
    fn new(publishers: usize, subscribers: usize, qos: QoS) -> Bench {
        let config = Config::default();
        let window = usize::from(config.max_inflight_messages);
        let mut b = Bench {
            broker: Broker::new(config),
            qos,
            publishers: Vec::new(),
            subscribers: Vec::new(),
            window,
            publish: encode(&Packet::Publish(Publish {
                dup: false,
                qos_pid: QosPid::new(qos, pid(1)),
                retain: false,
                topic: ByteString::from(TOPIC),
                properties: PublishProperties::default(),
                payload: Bytes::from_static(&[0x5A; 64]),
            })),
            pubrel: encode(&Packet::PubRel(PubResponse::success(pid(1)))),
            puback: AckTable::new(|id| Packet::PubAck(PubResponse::success(id))),
            pubrec: AckTable::new(|id| Packet::PubRec(PubResponse::success(id))),
            pubcomp: AckTable::new(|id| Packet::PubComp(PubResponse::success(id))),
            sends: 0,
            closes: 0,
        };
        let mut next = 0;
        let mut connect = |b: &mut Bench, name: String| {
            next += 1;
            let conn = ConnId(next);
            b.broker.handle(
                NOW,
                Input::Open(Open {
                    conn,
                    listener: ListenerId(0),
                    peer: None,
                    tls_identity: None,
                }),
            );
            let connect = Packet::from(Connect {
                protocol_version: VERSION,
                bridge: false,
                clean_start: true,
                keep_alive: 0,
                properties: ConnectProperties::default(),
                client_id: ByteString::from(name),
                will: None,
                username: None,
                password: None,
            });
            b.input(conn, &encode(&connect));
            conn
        };
        for i in 0..subscribers {
            let conn = connect(&mut b, format!("sub-{i}"));
            let subscribe = Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: SubscribeProperties::default(),
                subscriptions: vec![Subscription {
                    filter: ByteString::from(TOPIC),
                    options: SubscriptionOptions::new(qos),
                }],
            });
            b.input(conn, &encode(&subscribe));
            b.subscribers.push((conn, Ids { next: 1 }));
        }
        for i in 0..publishers {
            let conn = connect(&mut b, format!("pub-{i}"));
            b.publishers.push(conn);
        }
        b
    }

    fn input(&mut self, conn: ConnId, bytes: &[u8]) {
        self.broker.handle(NOW, Input::Received { conn, bytes });
        while let Some(action) = self.broker.poll_action() {
            match action {
                Action::Send { .. } => self.sends += 1,
                _ => self.closes += 1,
            }
            black_box(action);
        }
    }

    /// Messages a subscriber receives per iteration.
    fn per_subscriber(&self) -> usize {
        self.publishers.len()
    }

    /// One message from every publisher, delivered and acknowledged everywhere.
    fn iteration(&mut self) {
        for i in 0..self.publishers.len() {
            let conn = self.publishers[i];
            self.input(conn, &self.publish.clone());
            if self.qos == QoS::ExactlyOnce {
                // Released once PUBREC is in, which the broker sent at once.
                self.input(conn, &self.pubrel.clone());
            }
        }
        if self.qos == QoS::AtMostOnce {
            return;
        }
        let total = self.per_subscriber();
        for s in 0..self.subscribers.len() {
            let (conn, mut ids) = self.subscribers[s];
            // The broker sent up to a window at once; each acknowledged window frees room for
            // the next.
            let mut left = total;
            while left > 0 {
                let count = left.min(self.window);
                let first = ids.take(count);
                if self.qos == QoS::AtLeastOnce {
                    self.ack(conn, |b| &b.puback, first, count);
                } else {
                    self.ack(conn, |b| &b.pubrec, first, count);
                    self.ack(conn, |b| &b.pubcomp, first, count);
                }
                left -= count;
            }
            self.subscribers[s].1 = ids;
        }
    }

    /// Sends the acknowledgements of `count` consecutive ids from one of the tables.
    fn ack(&mut self, conn: ConnId, table: fn(&Bench) -> &AckTable, first: u16, count: usize) {
        let table = table(self);
        let [head, tail] = table.run(first, count);
        // Cheap clones of the shared buffer, so that `input` may borrow the broker mutably.
        let (head, tail) = (
            table.bytes.slice_ref(head),
            (!tail.is_empty()).then(|| table.bytes.slice_ref(tail)),
        );
        self.input(conn, &head);
        if let Some(tail) = tail {
            self.input(conn, &tail);
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker-route-64B");
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(500));
    group.sample_size(50);
    let shapes = [("1-to-1", 1, 1), ("1-to-100", 1, 100), ("100-to-1", 100, 1)];
    for (shape, publishers, subscribers) in shapes {
        for (name, qos) in [
            ("qos0", QoS::AtMostOnce),
            ("qos1", QoS::AtLeastOnce),
            ("qos2", QoS::ExactlyOnce),
        ] {
            let mut b = Bench::new(publishers, subscribers, qos);
            let delivered = (publishers * subscribers) as u64;
            group.throughput(Throughput::Elements(delivered));
            let before = b.broker.stats().publish_sent;
            let mut iterations = 0u64;
            group.bench_function(BenchmarkId::new(shape, name), |bencher| {
                bencher.iter(|| {
                    b.iteration();
                    iterations += 1;
                })
            });
            // Every message went out once, nothing was dropped or closed, and nothing is left in
            // flight or queued: the acknowledgements matched the ids the broker gave.
            let stats = b.broker.stats();
            assert_eq!(stats.publish_sent - before, iterations * delivered);
            assert_eq!(stats.dropped_queue_full + stats.dropped_qos0_backlog, 0);
            assert_eq!(b.closes, 0, "a connection was closed");
            // A wrong acknowledgement would leave its message in flight: more iterations than
            // a window holds would then stall.
            for _ in 0..=b.window {
                let sent = b.broker.stats().publish_sent;
                b.iteration();
                assert_eq!(b.broker.stats().publish_sent - sent, delivered);
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
