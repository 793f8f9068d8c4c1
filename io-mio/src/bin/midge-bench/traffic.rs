//! The message scenarios: fan-in, fan-out and pairs, at full speed or at a fixed rate.
//!
//! Subscribers connect and subscribe first, then publishers connect; the measurement runs from
//! the first publish to the last delivery. Each subscriber keeps, per publisher it hears, the
//! next sequence number it expects: MQTT keeps the order of one publisher's messages on a topic
//! at QoS 1 and 2 (and a broker does at QoS 0 in practice), so a lower number is a duplicate
//! and a higher one means the ones between were lost.

use crate::histogram::Histogram;
use crate::net::Net;
use crate::options::{Options, Scenario};
use crate::procfs;
use crate::report::Report;
use crate::wire::{self, Incoming};
use bytes::BytesMut;
use midge_core::codec::QoS;
use std::time::{Duration, Instant};

/// Publishes one publisher adds per loop turn at most, so reading keeps pace with writing.
const BATCH: u64 = 64;
/// A run ends when this long passes without a delivery after the last publish was
/// acknowledged: what has not arrived by then was lost.
const QUIET: Duration = Duration::from_secs(3);

#[derive(Debug)]
struct Publisher {
    conn: usize,
    topic: Vec<u8>,
    sent: u64,
    /// Unacknowledged QoS 1/2 publishes.
    inflight: u16,
    /// Packet ids in use.
    in_use: Vec<u64>,
    next_id: u16,
    /// The subscribers that hear this publisher.
    audience: Vec<usize>,
    /// The fewest messages any of its audience has received, as last computed.
    floor: u64,
}

#[derive(Debug)]
struct Subscriber {
    conn: usize,
    /// Per publisher: the next sequence number expected.
    next: Vec<u64>,
    received: u64,
    duplicates: u64,
    gaps: u64,
    reordered: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Publisher(usize),
    Subscriber(usize),
}

/// Runs a message scenario.
pub fn run(o: &Options) -> Result<Report, String> {
    let (publishers, subscribers) = match o.scenario {
        Scenario::FanIn { publishers } => (publishers, 1),
        Scenario::FanOut { subscribers } => (1, subscribers),
        Scenario::Pairs { pairs } => (pairs, pairs),
        Scenario::Idle { .. } => unreachable!("not a message scenario"),
    };
    let v5 = o.version.is_v5();
    let run_id = format!(
        "{:x}",
        std::process::id() ^ (Instant::now().elapsed().subsec_nanos())
    );
    let prefix = format!("bench/{run_id}");
    let topic = |p: usize| match o.scenario {
        Scenario::FanOut { .. } => format!("{prefix}/all"),
        _ => format!("{prefix}/{p}"),
    };
    let filter = |s: usize| match o.scenario {
        Scenario::FanIn { .. } => format!("{prefix}/+"),
        Scenario::FanOut { .. } => format!("{prefix}/all"),
        _ => format!("{prefix}/{s}"),
    };
    let audience = |p: usize| -> Vec<usize> {
        match o.scenario {
            Scenario::FanIn { .. } => vec![0],
            Scenario::FanOut { .. } => (0..subscribers).collect(),
            _ => vec![p],
        }
    };

    let mut net = Net::new(v5).map_err(|e| format!("poll: {e}"))?;
    let deadline = Instant::now() + o.timeout;
    let mut roles: Vec<Option<Role>> = Vec::new();
    let set_role = |roles: &mut Vec<Option<Role>>, key: usize, role: Role| {
        if roles.len() <= key {
            roles.resize(key + 1, None);
        }
        roles[key] = Some(role);
    };

    // Background load first: idle connections and subscriptions no message matches.
    if o.background_connections > 0 || o.background_subscriptions > 0 {
        crate::idle::open_background(
            &mut net,
            o,
            o.background_connections,
            o.background_subscriptions,
            &format!("mb-{run_id}"),
            deadline,
        )?;
    }
    // Subscribers next, each subscribed before any publisher connects.
    let mut subs = Vec::with_capacity(subscribers);
    let mut buf = BytesMut::new();
    for s in 0..subscribers {
        let key = net
            .open(o.addrs[s % o.addrs.len()])
            .map_err(|e| format!("connect: {e}"))?;
        buf.clear();
        wire::connect(o.version, &format!("mb-{run_id}-s{s}"), 300, &mut buf);
        wire::subscribe(o.version, &filter(s), o.qos, &mut buf);
        net.send(key, &buf);
        set_role(&mut roles, key, Role::Subscriber(s));
        subs.push(Subscriber {
            conn: key,
            next: vec![0; publishers],
            received: 0,
            duplicates: 0,
            gaps: 0,
            reordered: 0,
        });
    }
    let mut pubs = Vec::with_capacity(publishers);
    // A CONNACK and a SUBACK granting the QoS asked for, from each subscriber.
    wait(&mut net, deadline, subscribers * 2, |packet| match packet {
        Incoming::ConnAck { code: 0 } => Ok(()),
        Incoming::SubAck { code } if code == o.qos as u8 => Ok(()),
        other => Err(format!("subscriber setup: unexpected {other:?}")),
    })?;
    for p in 0..publishers {
        let key = net
            .open(o.addrs[p % o.addrs.len()])
            .map_err(|e| format!("connect: {e}"))?;
        buf.clear();
        wire::connect(o.version, &format!("mb-{run_id}-p{p}"), 300, &mut buf);
        net.send(key, &buf);
        set_role(&mut roles, key, Role::Publisher(p));
        pubs.push(Publisher {
            conn: key,
            topic: topic(p).into_bytes(),
            sent: 0,
            inflight: 0,
            in_use: vec![0; 65536 / 64],
            next_id: 1,
            audience: audience(p),
            floor: 0,
        });
    }
    wait(&mut net, deadline, publishers, |packet| match packet {
        Incoming::ConnAck { code: 0 } => Ok(()),
        other => Err(format!("publisher setup: unexpected {other:?}")),
    })?;

    // The measured part.
    let epoch = Instant::now();
    let broker_cpu0 = o.broker_pid.and_then(procfs::cpu_seconds);
    let own_cpu0 = procfs::cpu_seconds(std::process::id());
    let mut latency = Histogram::default();
    let total = o.messages;
    // How many publishers each subscriber hears.
    let heard_by: Vec<u64> = (0..subscribers)
        .map(|s| pubs.iter().filter(|p| p.audience.contains(&s)).count() as u64)
        .collect();
    let expected_per_sub: Vec<u64> = heard_by.iter().map(|n| n * total).collect();
    let expected: u64 = expected_per_sub.iter().sum();
    // The time each publisher's k-th message is due at a fixed rate: the publishers take turns.
    let interval_ns = o.rate.map(|r| publishers as f64 * 1e9 / r);
    let due = |p: usize, seq: u64| -> u64 {
        let i = interval_ns.unwrap_or(0.0);
        (seq as f64 * i + p as f64 * i / publishers as f64) as u64
    };
    // The run-ahead bound is per subscriber; a publisher gets its share of what the busiest of
    // its audience may have outstanding (with the defaults, below Mosquitto's and midge's
    // queue of 1,000 messages, so a slow subscriber is not a lossy one).
    let ahead: Vec<u64> = pubs
        .iter()
        .map(|p| {
            let busiest = p.audience.iter().map(|&s| heard_by[s]).max().unwrap_or(1);
            (o.ahead / busiest.max(1)).max(1)
        })
        .collect();
    let mut delivered = 0u64;
    let mut last_delivery = Instant::now();
    let mut problems = Vec::new();
    let mut timed_out = false;
    loop {
        let now_ns = epoch.elapsed().as_nanos() as u64;
        // Publish what each publisher may.
        let mut next_due: Option<u64> = None;
        for (p, publisher) in pubs.iter_mut().enumerate() {
            let mut added = 0;
            while publisher.sent < total && added < BATCH {
                if o.qos != QoS::AtMostOnce && publisher.inflight >= o.inflight {
                    break;
                }
                if publisher.sent - publisher.floor >= ahead[p] {
                    publisher.floor = publisher
                        .audience
                        .iter()
                        .map(|&s| subs[s].next[p])
                        .min()
                        .unwrap_or(publisher.sent);
                    if publisher.sent - publisher.floor >= ahead[p] {
                        break;
                    }
                }
                let stamp = if interval_ns.is_some() {
                    let at = due(p, publisher.sent);
                    if at > now_ns {
                        next_due = Some(next_due.map_or(at, |d| d.min(at)));
                        break;
                    }
                    at
                } else {
                    now_ns
                };
                let id = if o.qos == QoS::AtMostOnce {
                    0
                } else {
                    let id = take_id(publisher);
                    publisher.inflight += 1;
                    id
                };
                wire::publish(
                    net.out(publisher.conn),
                    v5,
                    &publisher.topic,
                    o.qos,
                    id,
                    p as u32,
                    publisher.sent,
                    stamp,
                    o.payload,
                );
                publisher.sent += 1;
                added += 1;
            }
        }
        net.flush()?;

        let all_sent = pubs.iter().all(|p| p.sent == total && p.inflight == 0);
        if all_sent && delivered >= expected {
            break;
        }
        if all_sent && last_delivery.elapsed() >= QUIET {
            break;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        // At a fixed rate, sleep until the next message is due; closer than a millisecond
        // (the poll's resolution), spin.
        let timeout = match next_due {
            Some(at) => {
                let now = epoch.elapsed().as_nanos() as u64;
                let wait = at.saturating_sub(now);
                if wait < 1_000_000 {
                    Some(Duration::ZERO)
                } else {
                    Some(Duration::from_nanos(wait - 1_000_000))
                }
            }
            None => Some(Duration::from_millis(100)),
        };
        let before = delivered;
        net.turn(timeout, |net, key, packet| {
            match roles.get(key).copied().flatten() {
                Some(Role::Subscriber(s)) => on_subscriber_packet(
                    net,
                    &mut subs[s],
                    packet,
                    &mut latency,
                    epoch,
                    &mut delivered,
                ),
                Some(Role::Publisher(p)) => on_publisher_packet(net, &mut pubs[p], packet, o.qos),
                None => Err(format!("packet on unknown connection {key}")),
            }
        })?;
        if delivered > before {
            last_delivery = Instant::now();
        }
    }
    let elapsed = epoch.elapsed().as_secs_f64();
    let broker_cpu = broker_cpu0
        .zip(o.broker_pid.and_then(procfs::cpu_seconds))
        .map(|(a, b)| b - a);
    let own_cpu = own_cpu0
        .zip(procfs::cpu_seconds(std::process::id()))
        .map(|(a, b)| b - a);
    let broker_rss = o.broker_pid.and_then(procfs::rss_kib);
    net.close_all();

    // Verdict.
    let sent: u64 = pubs.iter().map(|p| p.sent).sum();
    let duplicates: u64 = subs.iter().map(|s| s.duplicates).sum();
    let gaps: u64 = subs.iter().map(|s| s.gaps).sum();
    let reordered: u64 = subs.iter().map(|s| s.reordered).sum();
    let missing: u64 = subs
        .iter()
        .enumerate()
        .map(|(i, s)| expected_per_sub[i].saturating_sub(s.received - s.duplicates))
        .sum();
    if timed_out {
        problems.push(format!(
            "timed out after {:?}: {delivered} of {expected} deliveries",
            o.timeout
        ));
    }
    if o.qos != QoS::AtMostOnce && missing > 0 {
        problems.push(format!("{missing} messages lost at QoS {}", o.qos as u8));
    }
    if o.qos == QoS::ExactlyOnce && duplicates > 0 {
        problems.push(format!("{duplicates} duplicates at QoS 2"));
    }
    if o.qos != QoS::AtMostOnce && reordered > 0 {
        problems.push(format!("{reordered} messages out of order"));
    }

    let mut r = Report::new(&o.label, o.scenario.name());
    r.int("qos", o.qos as u8 as u64);
    r.text("mqtt", if v5 { "5" } else { "3.1.1" });
    r.int("payload", o.payload as u64);
    r.int("publishers", publishers as u64);
    r.int("subscribers", subscribers as u64);
    r.int("background_connections", o.background_connections as u64);
    r.int(
        "background_subscriptions",
        o.background_subscriptions as u64,
    );
    if let Some(rate) = o.rate {
        r.float("target_rate", rate);
    }
    r.int("sent", sent);
    r.int("expected", expected);
    r.int("delivered", delivered);
    r.int("lost", missing);
    r.int("duplicates", duplicates);
    r.int("gaps", gaps);
    r.float("elapsed_s", elapsed);
    r.float("deliveries_per_s", delivered as f64 / elapsed);
    if let Some(cpu) = broker_cpu {
        r.float("broker_cpu_s", cpu);
        r.float("deliveries_per_broker_cpu_s", delivered as f64 / cpu);
    }
    if let Some(cpu) = own_cpu {
        r.float("client_cpu_s", cpu);
    }
    if let Some(rss) = broker_rss {
        r.int("broker_rss_kib", rss);
    }
    if let Some(path) = &o.latency_out {
        let mut tsv = String::from("ns\tcount\n");
        for (ns, count) in latency.buckets() {
            tsv += &format!("{ns}\t{count}\n");
        }
        std::fs::write(path, tsv).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    r.latency = Some(latency);
    r.problems = problems;
    Ok(r)
}

/// Runs the loop until `count` packets arrived, each accepted by `check`; fails at the
/// deadline.
fn wait(
    net: &mut Net,
    deadline: Instant,
    count: usize,
    mut check: impl FnMut(Incoming) -> Result<(), String>,
) -> Result<(), String> {
    let mut seen = 0;
    loop {
        net.flush()?;
        if seen >= count {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err("timed out while connecting and subscribing".into());
        }
        net.turn(Some(Duration::from_millis(100)), |_, _, packet| {
            seen += 1;
            check(packet)
        })?;
    }
}

fn take_id(p: &mut Publisher) -> u16 {
    loop {
        let id = p.next_id;
        p.next_id = p.next_id.checked_add(1).unwrap_or(1);
        let (word, bit) = (usize::from(id) / 64, id % 64);
        if p.in_use[word] & (1 << bit) == 0 {
            p.in_use[word] |= 1 << bit;
            return id;
        }
    }
}

fn release_id(p: &mut Publisher, id: u16) -> Result<(), String> {
    let (word, bit) = (usize::from(id) / 64, id % 64);
    if p.in_use[word] & (1 << bit) == 0 {
        return Err(format!("acknowledgement for packet id {id} not in use"));
    }
    p.in_use[word] &= !(1 << bit);
    p.inflight -= 1;
    Ok(())
}

fn on_publisher_packet(
    net: &mut Net,
    p: &mut Publisher,
    packet: Incoming,
    qos: QoS,
) -> Result<(), String> {
    match packet {
        Incoming::Ack { reason, .. } if reason >= 0x80 => {
            Err(format!("publish refused with reason code {reason:#04x}"))
        }
        Incoming::Ack {
            kind: wire::PUBACK,
            packet_id,
            ..
        } if qos == QoS::AtLeastOnce => release_id(p, packet_id),
        Incoming::Ack {
            kind: wire::PUBREC,
            packet_id,
            ..
        } if qos == QoS::ExactlyOnce => {
            wire::ack(net.out(p.conn), wire::PUBREL, packet_id);
            Ok(())
        }
        Incoming::Ack {
            kind: wire::PUBCOMP,
            packet_id,
            ..
        } if qos == QoS::ExactlyOnce => release_id(p, packet_id),
        Incoming::PingResp => Ok(()),
        other => Err(format!("publisher: unexpected {other:?}")),
    }
}

fn on_subscriber_packet(
    net: &mut Net,
    s: &mut Subscriber,
    packet: Incoming,
    latency: &mut Histogram,
    epoch: Instant,
    delivered: &mut u64,
) -> Result<(), String> {
    match packet {
        Incoming::Publish(d) => {
            match d.qos {
                1 => wire::ack(net.out(s.conn), wire::PUBACK, d.packet_id),
                2 => wire::ack(net.out(s.conn), wire::PUBREC, d.packet_id),
                _ => {}
            }
            let next = s
                .next
                .get_mut(d.publisher as usize)
                .ok_or_else(|| format!("message from unknown publisher {}", d.publisher))?;
            if d.seq == *next {
                *next += 1;
            } else if d.seq < *next {
                s.duplicates += 1;
            } else {
                s.gaps += d.seq - *next;
                s.reordered += 1;
                *next = d.seq + 1;
            }
            s.received += 1;
            *delivered += 1;
            let now = epoch.elapsed().as_nanos() as u64;
            latency.record(now.saturating_sub(d.sent_nanos));
            Ok(())
        }
        Incoming::Ack {
            kind: wire::PUBREL,
            packet_id,
            ..
        } => {
            wire::ack(net.out(s.conn), wire::PUBCOMP, packet_id);
            Ok(())
        }
        Incoming::PingResp => Ok(()),
        other => Err(format!("subscriber: unexpected {other:?}")),
    }
}
