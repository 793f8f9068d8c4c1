//! The idle scenario: N clients connect (CONNECT, CONNACK) with a bounded number in the
//! handshake at once, then stay connected doing nothing. Measures the connect rate and the
//! broker's resident memory per connection (growth of VmRSS over the run divided by N).
//!
//! One source address reaches about 28,000 connections per destination port (the ephemeral
//! port range); for more, give several `--addr` (the broker listening on several ports).

use crate::net::Net;
use crate::options::Options;
use crate::procfs;
use crate::report::Report;
use crate::wire::{self, Incoming};
use bytes::BytesMut;
use std::time::{Duration, Instant};

/// How long to let the broker settle after the last CONNACK before reading its memory.
const SETTLE: Duration = Duration::from_secs(1);
/// Keep alive of idle connections: the largest there is (18 hours), so that no PINGREQ is due
/// in any run. Not 0 (no keep alive): rumqttd refuses such a CONNECT.
const IDLE_KEEP_ALIVE: u16 = u16::MAX;

pub fn run(o: &Options, connections: usize) -> Result<Report, String> {
    let mut net = Net::new(o.version.is_v5()).map_err(|e| format!("poll: {e}"))?;
    let deadline = Instant::now() + o.timeout;
    let rss0 = o.broker_pid.and_then(procfs::rss_kib);
    let cpu0 = o.broker_pid.and_then(procfs::cpu_seconds);
    let run_id = format!("{:x}", std::process::id());
    let started = Instant::now();
    connect_idle(
        &mut net,
        o,
        connections,
        &format!("mb-{run_id}-i"),
        deadline,
    )?;
    let connect_time = started.elapsed().as_secs_f64();
    let cpu1 = o.broker_pid.and_then(procfs::cpu_seconds);
    std::thread::sleep(SETTLE);
    let rss1 = o.broker_pid.and_then(procfs::rss_kib);
    if !o.hold.is_zero() {
        // Keep reading so that a broker closing connections is noticed.
        let until = Instant::now() + o.hold;
        while Instant::now() < until {
            net.turn(Some(Duration::from_millis(200)), |_, key, packet| {
                Err(format!("idle connection {key} got {packet:?}"))
            })?;
        }
    }
    net.close_all();

    let mut r = Report::new(&o.label, o.scenario.name());
    r.text("mqtt", if o.version.is_v5() { "5" } else { "3.1.1" });
    r.int("connections", connections as u64);
    r.float("connect_s", connect_time);
    r.float("connects_per_s", connections as f64 / connect_time);
    if let Some((a, b)) = cpu0.zip(cpu1) {
        r.float("broker_cpu_s", b - a);
        r.float(
            "broker_cpu_us_per_connect",
            (b - a) * 1e6 / connections as f64,
        );
    }
    if let Some((a, b)) = rss0.zip(rss1) {
        r.int("broker_rss_before_kib", a);
        r.int("broker_rss_after_kib", b);
        r.float(
            "broker_kib_per_connection",
            b.saturating_sub(a) as f64 / connections as f64,
        );
    }
    Ok(r)
}

/// Opens `connections` connections whose client ids are `id_prefix` and a number, at most
/// `--connect-parallel` of them in the handshake at once, and waits for every CONNACK.
/// Returns their keys.
fn connect_idle(
    net: &mut Net,
    o: &Options,
    connections: usize,
    id_prefix: &str,
    deadline: Instant,
) -> Result<Vec<usize>, String> {
    let mut keys = Vec::with_capacity(connections);
    let mut acked = 0usize;
    let mut buf = BytesMut::new();
    while acked < connections {
        while keys.len() < connections && keys.len() - acked < o.connect_parallel {
            let i = keys.len();
            let key = net
                .open(o.addrs[i % o.addrs.len()])
                .map_err(|e| format!("connection {i}: {e}"))?;
            buf.clear();
            wire::connect(
                o.version,
                &format!("{id_prefix}{i}"),
                IDLE_KEEP_ALIVE,
                &mut buf,
            );
            net.send(key, &buf);
            keys.push(key);
        }
        net.flush()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out: {acked} of {connections} connections acknowledged"
            ));
        }
        net.turn(
            Some(Duration::from_millis(100)),
            |_, key, packet| match packet {
                Incoming::ConnAck { code: 0 } => {
                    acked += 1;
                    Ok(())
                }
                other => Err(format!("connection {key}: unexpected {other:?}")),
            },
        )?;
    }
    Ok(keys)
}

/// Filters per SUBSCRIBE when loading background subscriptions.
const FILTERS_PER_SUBSCRIBE: usize = 100;

/// Opens `connections` idle connections (at least one when `subscriptions` > 0) and gives them
/// `subscriptions` subscriptions in all, on filters under `prefix` that no message of the run
/// matches: the broker holds them while the traffic scenario is measured, for curves of cost
/// against connections and subscriptions. Returns the connections' keys.
pub fn open_background(
    net: &mut Net,
    o: &Options,
    connections: usize,
    subscriptions: usize,
    prefix: &str,
    deadline: Instant,
) -> Result<Vec<usize>, String> {
    let connections = if subscriptions > 0 {
        connections.max(1)
    } else {
        connections
    };
    let keys = connect_idle(net, o, connections, &format!("{prefix}-b"), deadline)?;
    let mut buf = BytesMut::new();
    // The subscriptions, spread evenly, in SUBSCRIBE packets of up to 100 filters.
    let mut packets = 0usize;
    let mut filters = Vec::with_capacity(FILTERS_PER_SUBSCRIBE);
    let mut next = 0usize;
    for (c, &key) in keys.iter().enumerate() {
        let share = subscriptions / connections + usize::from(c < subscriptions % connections);
        let mut packet_id = 1u16;
        let mut left = share;
        while left > 0 {
            filters.clear();
            for _ in 0..left.min(FILTERS_PER_SUBSCRIBE) {
                filters.push(format!("{prefix}/idle/{next}"));
                next += 1;
            }
            left -= filters.len();
            buf.clear();
            wire::subscribe_many(o.version, packet_id, &filters, o.qos, &mut buf);
            packet_id = packet_id.checked_add(1).unwrap_or(1);
            net.send(key, &buf);
            packets += 1;
        }
    }
    let mut subacked = 0usize;
    while subacked < packets {
        net.flush()?;
        if Instant::now() >= deadline {
            return Err(format!(
                "timed out: {subacked} of {packets} background SUBSCRIBEs acknowledged"
            ));
        }
        net.turn(
            Some(Duration::from_millis(100)),
            |_, key, packet| match packet {
                Incoming::SubAck { code } if code < 0x80 => {
                    subacked += 1;
                    Ok(())
                }
                other => Err(format!("background connection {key}: unexpected {other:?}")),
            },
        )?;
    }
    Ok(keys)
}
