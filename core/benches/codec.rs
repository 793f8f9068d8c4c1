//! Decode and encode cost of the packet a broker handles most: a QoS 1 PUBLISH with a 64-byte
//! payload, in MQTT 3.1.1 and 5.0.

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use midge_core::codec::{
    self, Packet, PacketId, ProtocolVersion, Publish, PublishProperties, QosPid,
};
use std::hint::black_box;

fn publish() -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos_pid: QosPid::AtLeastOnce(PacketId::new(42).unwrap()),
        retain: false,
        topic: "sensors/building-7/floor-3/temperature".into(),
        properties: PublishProperties::default(),
        payload: Bytes::from_static(&[0x5A; 64]),
    })
}

fn bench(c: &mut Criterion) {
    for (name, version) in [
        ("v3.1.1", ProtocolVersion::V3_1_1),
        ("v5", ProtocolVersion::V5),
    ] {
        let packet = publish();
        let mut buf = BytesMut::new();
        packet.encode(version, &mut buf).unwrap();
        let wire = buf.freeze();

        let mut group = c.benchmark_group(format!("publish-qos1-64B/{name}"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("decode", |b| {
            b.iter(|| {
                let decoded = codec::decode(black_box(&wire), version, u32::MAX).unwrap();
                black_box(decoded)
            })
        });
        let mut out = BytesMut::with_capacity(4096);
        group.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                black_box(&packet).encode(version, &mut out).unwrap();
                black_box(out.len())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
