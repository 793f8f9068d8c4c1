//! Cost of finding the subscriptions that match one PUBLISH topic, with 1, 1,000 and 1,000,000
//! subscriptions in the router.
//!
//! The topic is "sensors/site-17/device-00042/temperature". Five subscriptions match it: the exact
//! topic, "sensors/site-17/device-00042/+", "sensors/+/device-00042/temperature",
//! "sensors/site-17/#" and "sensors/#" (only the first when the router holds one subscription).
//! The others are the subscriptions of a fleet of devices on other sites: per device, exact topics
//! for six metrics, its "+" and "#" filters and a cross-site "sensors/+/device-…/metric" filter,
//! and per site a "#" filter shared by many subscribers. They share the matching path's nodes (the
//! "sensors" level, its '+' child) without matching, so a match walks the same trie a loaded
//! broker would. The bench ids carry the number of subscriptions and of matches.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use midge_core::broker::router::{Match, Router};
use std::hint::black_box;
use std::time::Duration;

const TOPIC: &str = "sensors/site-17/device-00042/temperature";

/// The subscriptions that match [`TOPIC`].
const MATCHING: [&str; 5] = [
    TOPIC,
    "sensors/site-17/device-00042/+",
    "sensors/+/device-00042/temperature",
    "sensors/site-17/#",
    "sensors/#",
];

const METRICS: [&str; 6] = [
    "temperature",
    "humidity",
    "pressure",
    "battery",
    "rssi",
    "co2",
];

/// The devices of one background site.
const DEVICES_PER_SITE: usize = 100;
/// The subscriptions of one background device: six metrics, '+', '#' and one cross-site filter.
const PER_DEVICE: usize = 9;

/// The `i`th background filter: none of them matches [`TOPIC`]. Sites are numbered from 1000 and
/// devices from 100, away from the matching topic's site 17 and device 42.
fn background(i: usize) -> String {
    let per_site = DEVICES_PER_SITE * PER_DEVICE + 1;
    let site = 1000 + i / per_site;
    let within = i % per_site;
    if within == DEVICES_PER_SITE * PER_DEVICE {
        return format!("sensors/site-{site}/#");
    }
    let device = 100 + within / PER_DEVICE;
    match within % PER_DEVICE {
        kind @ 0..6 => format!("sensors/site-{site}/device-{device:05}/{}", METRICS[kind]),
        6 => format!("sensors/site-{site}/device-{device:05}/+"),
        7 => format!("sensors/site-{site}/device-{device:05}/#"),
        _ => format!("sensors/+/device-{device:05}/{}", METRICS[site % 6]),
    }
}

/// A router of `n` subscriptions, each of its own subscriber, options a small value.
fn router(n: usize) -> Router<u32, u8> {
    let mut router = Router::new();
    let matching = MATCHING.iter().map(|filter| filter.to_string());
    let filters = matching.chain((0..).map(background)).take(n);
    for (subscriber, filter) in (0u32..).zip(filters) {
        router.insert(&filter, subscriber, 1);
    }
    assert_eq!(router.len(), n);
    router
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("router-match");
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    for n in [1, 1_000, 1_000_000] {
        let router = router(n);
        let mut found = 0;
        router.for_each_match(TOPIC, |_, _, _| found += 1);
        let id = format!("subs={n}/matches={found}");

        group.bench_function(BenchmarkId::new("for_each_match", &id), |b| {
            b.iter(|| {
                let mut count = 0usize;
                router.for_each_match(black_box(TOPIC), |subscriber, _, value| {
                    count += subscriber as usize + usize::from(*value);
                });
                black_box(count)
            })
        });
        let mut out: Vec<Match<'_, u32, u8>> = Vec::with_capacity(64);
        group.bench_function(BenchmarkId::new("matches", &id), |b| {
            b.iter(|| {
                out.clear();
                router.matches(black_box(TOPIC), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
