//! The `$SYS` tree: the broker's counters, published under the topics and in the formats of
//! Mosquitto (its `src/sys_tree.c` and mosquitto(8)), so that tools written to monitor Mosquitto
//! read midge unchanged.
//!
//! `$SYS/broker/version` is published once, with the broker's first input. From then on, every
//! `Config::sys_interval` seconds, `$SYS/broker/uptime` is published (seconds since the first
//! input), and every other value only when it changed since it was last published (all of them
//! the first time), so an idle broker sends little. The values are those of the moment the
//! publication starts: the `$SYS` messages themselves count in the next one.
//!
//! Every message is retained (when `Config::retain_available`), so a client that subscribes later
//! gets the latest values at once, and goes the way a client's message goes: through the retained
//! store, the subscriptions and the authorizer.
//!
//! The load averages are Mosquitto's: at each publication, each counter's rate over the time `dt`
//! (seconds) since the previous one, in events per minute, `rate = delta × 60 / dt`, is folded
//! into an exponentially decaying average over 1, 5 and 15 minutes,
//! `load = rate + e^(−dt / window) × (load − rate)`, starting from 0. A load is published with
//! two decimals (`%.2f`), when it moved by 0.01 or more since the previous computation.
//!
//! Everything is computed from the broker's own counters ([`super::Stats`]) and the `now` of its
//! inputs: the same inputs publish the same values.

use super::message::Message;
use super::time::Time;
use super::timers::Timer;
use super::{Broker, Stats};
use crate::codec::{ByteString, PublishProperties, QoS};
use bytes::Bytes;
use std::sync::Arc;

/// QoS of the `$SYS` messages. Mosquitto publishes them at QoS 2; at QoS 0 they are never queued
/// for offline sessions nor held in flight, and a subscriber only misses values that the next
/// publication or the retained store gives it again.
const QOS: QoS = QoS::AtMostOnce;

/// Counters with load averages, named as their topics are, `$SYS/broker/load/<name>/<window>`,
/// in Mosquitto's order.
const LOADS: [&str; 9] = [
    "messages/received",
    "messages/sent",
    "publish/dropped",
    "publish/received",
    "publish/sent",
    "bytes/received",
    "bytes/sent",
    "sockets",
    "connections",
];

/// The windows of the load averages, in seconds, with the last level of their topics.
const WINDOWS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

/// Values published when they change, each under its topics (a second one is the alias Mosquitto
/// also publishes), in Mosquitto's order; [`Broker::sys_values`] computes them in this order. The
/// loads are published after the first [`CLIENT_VALUES`].
const VALUES: [&[&str]; 19] = [
    &["$SYS/broker/clients/total"],
    &["$SYS/broker/clients/maximum"],
    &[
        "$SYS/broker/clients/disconnected",
        "$SYS/broker/clients/inactive",
    ],
    &[
        "$SYS/broker/clients/connected",
        "$SYS/broker/clients/active",
    ],
    &["$SYS/broker/clients/expired"],
    &[
        "$SYS/broker/messages/stored",
        "$SYS/broker/store/messages/count",
    ],
    &["$SYS/broker/store/messages/bytes"],
    &["$SYS/broker/subscriptions/count"],
    &["$SYS/broker/shared_subscriptions/count"],
    &["$SYS/broker/retained messages/count"],
    &["$SYS/broker/messages/received"],
    &["$SYS/broker/messages/sent"],
    &["$SYS/broker/publish/messages/dropped"],
    &["$SYS/broker/publish/messages/received"],
    &["$SYS/broker/publish/messages/sent"],
    &["$SYS/broker/bytes/received"],
    &["$SYS/broker/bytes/sent"],
    &["$SYS/broker/publish/bytes/received"],
    &["$SYS/broker/publish/bytes/sent"],
];

/// How many of [`VALUES`] come before the loads.
const CLIENT_VALUES: usize = 5;

/// What the `$SYS` tree remembers between publications.
#[derive(Debug, Default)]
pub(crate) struct SysTree {
    /// The time of the broker's first input, from which the uptime counts.
    started: Option<Time>,
    /// The time of the last publication (or of the first input, before the first one).
    last_update: Time,
    /// The [`LOADS`] counters at `last_update`.
    last_counts: [u64; LOADS.len()],
    /// The load averages, by counter and window.
    loads: [[f64; WINDOWS.len()]; LOADS.len()],
    /// The [`VALUES`] last published; `None` before the first publication.
    published: [Option<u64>; VALUES.len()],
}

impl SysTree {
    /// Whether the broker had its first input.
    pub(crate) fn is_started(&self) -> bool {
        self.started.is_some()
    }
}

/// One step of a load average: the rate `rate` over the last `dt` seconds folded into the
/// average `load` with `decay = e^(−dt / window)` (Mosquitto's `calc_load`).
fn load_average(load: f64, rate: f64, decay: f64) -> f64 {
    rate + decay * (load - rate)
}

/// PUBLISH messages dropped because of queue or in-flight limits, as Mosquitto counts
/// `$SYS/broker/publish/messages/dropped`: not those for offline sessions that do not queue
/// QoS 0 messages, nor those too large for their client.
fn publish_dropped(s: &Stats) -> u64 {
    s.dropped_queue_full + s.dropped_qos0_backlog
}

impl Broker {
    /// The broker's first input: the uptime counts from now; `$SYS/broker/version` is published
    /// and the first publication of the tree scheduled when the tree is on.
    pub(super) fn sys_start(&mut self) {
        self.sys.started = Some(self.now);
        self.sys.last_update = self.now;
        if self.config.sys_interval == 0 {
            return;
        }
        let version = self.config.version.clone();
        self.publish_sys("$SYS/broker/version".to_owned(), version);
        self.timers
            .schedule(self.now.plus_secs(self.config.sys_interval), Timer::Sys);
    }

    /// The `$SYS` timer fired (due at `at`): publish, and schedule the next publication one
    /// interval later, skipping those a late tick missed.
    pub(super) fn sys_due(&mut self, at: Time) {
        let interval_ms = self.config.sys_interval.saturating_mul(1000);
        if interval_ms == 0 {
            return;
        }
        let missed = (self.now.as_millis() - at.as_millis()) / interval_ms;
        let next = at.plus_millis(interval_ms.saturating_mul(missed + 1));
        self.timers.schedule(next, Timer::Sys);
        self.sys_update();
    }

    /// Publishes the uptime, and every value and load average that changed.
    fn sys_update(&mut self) {
        let now = self.now;
        let values = self.sys_values();
        let counts = self.load_counts();
        let first = self.sys.published[0].is_none();
        let sys = &mut self.sys;
        let mut out: Vec<(String, String)> = Vec::new();

        let uptime_ms = now.as_millis() - sys.started.unwrap_or(now).as_millis();
        out.push((
            "$SYS/broker/uptime".to_owned(),
            format!("{} seconds", uptime_ms / 1000),
        ));
        push_changed(&mut out, &mut sys.published, &values, 0..CLIENT_VALUES);

        let elapsed_ms = now.as_millis() - sys.last_update.as_millis();
        if elapsed_ms > 0 {
            let dt = elapsed_ms as f64 / 1000.0;
            let per_minute = 60.0 / dt;
            for (w, (window, window_name)) in WINDOWS.iter().enumerate() {
                let decay = (-dt / window).exp();
                for (m, name) in LOADS.iter().enumerate() {
                    let delta = counts[m].saturating_sub(sys.last_counts[m]);
                    let rate = delta as f64 * per_minute;
                    let old = sys.loads[m][w];
                    let new = load_average(old, rate, decay);
                    if first || (new - old).abs() >= 0.01 {
                        out.push((
                            format!("$SYS/broker/load/{name}/{window_name}"),
                            format!("{new:.2}"),
                        ));
                    }
                    sys.loads[m][w] = new;
                }
            }
            sys.last_counts = counts;
            sys.last_update = now;
        }

        push_changed(
            &mut out,
            &mut sys.published,
            &values,
            CLIENT_VALUES..VALUES.len(),
        );

        for (topic, payload) in out {
            self.publish_sys(topic, payload);
        }
    }

    /// The current [`VALUES`], in their order.
    fn sys_values(&self) -> [u64; VALUES.len()] {
        let s = &self.stats;
        let (stored, stored_bytes) = self.stored_messages();
        [
            s.sessions,
            // The peak of connected clients, as mosquitto(8) describes it, kept exactly: Mosquitto
            // itself samples `clients/total` at each publication.
            s.clients_maximum,
            s.sessions.saturating_sub(s.clients_connected),
            s.clients_connected,
            s.sessions_expired,
            stored,
            stored_bytes,
            (self.router.len() + self.shared.len()) as u64,
            self.shared.len() as u64,
            s.retained_messages,
            s.messages_received,
            s.messages_sent,
            publish_dropped(s),
            s.publish_received,
            s.publish_sent,
            s.bytes_received,
            s.bytes_sent,
            s.publish_bytes_received,
            s.publish_bytes_sent,
        ]
    }

    /// The current [`LOADS`] counters, in their order.
    fn load_counts(&self) -> [u64; LOADS.len()] {
        let s = &self.stats;
        [
            s.messages_received,
            s.messages_sent,
            publish_dropped(s),
            s.publish_received,
            s.publish_sent,
            s.bytes_received,
            s.bytes_sent,
            s.connections_opened,
            s.connects_received,
        ]
    }

    /// Messages the broker holds, and their payload bytes: the retained ones and those queued or
    /// in flight for sessions, each message counted once however many sessions hold it (as
    /// Mosquitto's message store counts). Walks the sessions' queues when the tree is
    /// published, so the walk is kept to a few nanoseconds a message: a message only one
    /// session refers to (the usual case: nothing else holds an `Arc` of it between inputs) is
    /// counted at once; only shared ones are collected, deduplicated and looked up in the
    /// retained store.
    fn stored_messages(&self) -> (u64, u64) {
        let mut count = self.stats.retained_messages;
        let mut bytes = self.stats.retained_bytes;
        let mut shared: Vec<&Arc<Message>> = Vec::new();
        for (_, session) in &self.sessions {
            for msg in session.outbound.messages() {
                if Arc::strong_count(msg) > 1 {
                    shared.push(msg);
                } else {
                    count += 1;
                    bytes += msg.payload.len() as u64;
                }
            }
        }
        // Sorted by address only to find the copies of one message: the order is never seen.
        shared.sort_unstable_by_key(|m| Arc::as_ptr(m));
        shared.dedup_by_key(|m| Arc::as_ptr(m));
        for msg in shared {
            let retained = msg.retain
                && self
                    .retained
                    .get(&msg.topic)
                    .is_some_and(|r| Arc::ptr_eq(r, msg));
            if !retained {
                count += 1;
                bytes += msg.payload.len() as u64;
            }
        }
        (count, bytes)
    }

    /// Publishes one `$SYS` value as the broker's own message.
    fn publish_sys(&mut self, topic: String, payload: String) {
        let msg = Message {
            topic: ByteString::from(topic),
            payload: Bytes::from(payload),
            qos: QOS,
            retain: self.config.retain_available,
            properties: PublishProperties::default(),
            expires_at: None,
            stored_id: Default::default(),
        };
        self.accept_message(Arc::new(msg), None);
    }
}

/// Adds the values in `range` that differ from those last published to `out`, under each of
/// their topics, and remembers them as published.
fn push_changed(
    out: &mut Vec<(String, String)>,
    published: &mut [Option<u64>; VALUES.len()],
    values: &[u64; VALUES.len()],
    range: std::ops::Range<usize>,
) {
    for i in range {
        if published[i] == Some(values[i]) {
            continue;
        }
        published[i] = Some(values[i]);
        for topic in VALUES[i] {
            out.push(((*topic).to_owned(), values[i].to_string()));
        }
    }
}
