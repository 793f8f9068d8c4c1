//! What one run looks like, drawn from its seed: the broker's limits (often tiny, so that every
//! overflow and back-pressure path runs), the clients and what they do, the network, the disk
//! and how often things fail. BUGGIFY in spirit: every knob has extreme values with real odds.

use crate::rng::Rng;
use crate::{MS, SEC};
use midge_core::broker::Config;
use midge_core::broker::bridge::{
    Backoff, BridgeAddress, BridgeConfig, BridgeDirection, BridgeTopic,
};
use midge_core::codec::{MAX_PACKET_SIZE, ProtocolVersion, QoS};

/// Topic filters subscribers choose from. `r/#` reaches the retained topics, `w/+` the wills.
pub const FILTERS: [&str; 10] = [
    "a/b", "a/+", "a/#", "#", "+/c", "+/+", "r/#", "w/+", "a/b/c", "+/b/+",
];
/// Topics of ordinary publishes.
pub const TOPICS: [&str; 5] = ["a/b", "a/c", "b/c", "a/b/c", "x"];
/// Topics of ordinary publishes in bridged runs: also two under `s/`, which bridge lines with
/// that prefix rename.
pub const BRIDGED_TOPICS: [&str; 7] = ["a/b", "a/c", "b/c", "a/b/c", "x", "s/a/b", "s/x"];
/// Patterns of bridge topic lines. None matches a retained (`r/`) or will (`w/`) topic: what
/// crosses is ordinary messages, so the retained store of each broker stays its own.
pub const BRIDGE_PATTERNS: [&str; 5] = ["a/#", "a/b", "+/c", "x", "a/+"];
/// Prefixes of bridge topic lines: `ra/` names on B what came from A, `rb/` on A what came
/// from B, `s/` is used on either side.
pub const BRIDGE_PREFIXES: [&str; 4] = ["", "ra/", "rb/", "s/"];
/// Every prefix followed by every pattern: the filters subscribers use for what crosses to
/// them (subscriptions name `&'static str` filters).
pub const CROSSING_FILTERS: [[&str; 5]; 4] = [
    ["a/#", "a/b", "+/c", "x", "a/+"],
    ["ra/a/#", "ra/a/b", "ra/+/c", "ra/x", "ra/a/+"],
    ["rb/a/#", "rb/a/b", "rb/+/c", "rb/x", "rb/a/+"],
    ["s/a/#", "s/a/b", "s/+/c", "s/x", "s/a/+"],
];
/// Retained topics per owner: `r/<owner>/<k>`.
pub const RETAINED_PER_OWNER: usize = 2;

/// The shared subscription groups a run's workers may join, one per run.
pub const SHARED_FILTERS: [&str; 4] =
    ["$share/g/a/#", "$share/g/+/+", "$share/g/#", "$share/g/a/b"];

/// How long a client's session lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// Outlives every connection: 3.1.1 clean session 0, MQTT 5 clean start 0 with a Session
    /// Expiry Interval of 0xFFFFFFFF.
    Persistent,
    /// Ends with its connection: 3.1.1 clean session 1, MQTT 5 clean start 1 and expiry 0.
    Clean,
    /// MQTT 5 only: ends this many seconds after its connection.
    Expiring(u32),
}

#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub version: ProtocolVersion,
    pub session: SessionKind,
    pub keep_alive: u16,
    /// Mean time between actions (publishes when a publisher), microseconds.
    pub act_mean: u64,
    pub publisher: bool,
    /// Weights of QoS 0, 1, 2 for ordinary publishes.
    pub qos_weights: [u32; 3],
    /// Largest payload it publishes.
    pub max_payload: usize,
    /// Owner of retained topics `r/<idx>/*`.
    pub retained_owner: bool,
    /// Filters with the QoS asked for.
    pub filters: Vec<(&'static str, QoS)>,
    /// QoS 1 and 2 messages it keeps in flight at most.
    pub window: usize,
    /// MQTT 5 Receive Maximum it announces.
    pub receive_maximum: Option<u16>,
    /// MQTT 5 Maximum Packet Size it announces.
    pub max_packet_size: Option<u32>,
    /// Reads at most this many bytes per `read_interval`.
    pub slow_reader: Option<(usize, u64)>,
    /// Acknowledgements of received messages wait up to this long.
    pub ack_delay_max: u64,
    /// Will QoS and MQTT 5 Will Delay Interval.
    pub will: Option<(QoS, u32)>,
    /// Per action: probabilities of a graceful DISCONNECT, a dropped connection, a new session
    /// (clean start) and an unsubscribe or resubscribe; drawn as mean times between them.
    pub p_disconnect: f64,
    pub p_drop: f64,
    pub p_fresh: f64,
    pub p_resubscribe: f64,
    /// A worker: a persistent session whose one subscription is the run's shared subscription
    /// group, which it never leaves (see `checker.rs` for what a group is owed).
    pub shared_worker: bool,
    /// MQTT 5 Topic Alias Maximum it announces: the broker may send it topic aliases.
    pub topic_alias_maximum: u16,
    /// MQTT 5: the share of its ordinary publishes that carry a Message Expiry Interval.
    pub expiring_share: f64,
    /// The broker (host) it connects to.
    pub host: usize,
    /// The topics of its ordinary publishes.
    pub topics: &'static [&'static str],
}

#[derive(Debug, Clone)]
pub struct NetParams {
    pub latency_min: u64,
    pub latency_max: u64,
    /// Largest chunk delivered at once.
    pub chunk_max: usize,
    /// Bytes a connection holds towards a client (in flight plus unread) before the driver
    /// must keep output back and report it blocked.
    pub capacity: usize,
    /// Mean time between faults of each kind, or none.
    pub reset_mean: Option<u64>,
    pub stall_mean: Option<u64>,
    pub partition_mean: Option<u64>,
    pub stall_max: u64,
    pub partition_max: u64,
}

#[derive(Debug, Clone)]
pub struct DiskParams {
    pub fsync_min: u64,
    pub fsync_max: u64,
    /// Group commit: how long an fsync may wait for more records.
    pub group_delay_max: u64,
    /// A crash is a power loss (unsynced bytes lost, last write torn) rather than a process
    /// crash (the page cache keeps what was written).
    pub power_loss: f64,
    /// A power loss keeps a random prefix of the unsynced bytes.
    pub tear: bool,
    /// A torn tail's last frame gets a flipped bit.
    pub bit_flip: f64,
    /// Mean time between write errors, or none.
    pub write_error_mean: Option<u64>,
    /// The log since the last snapshot that starts a new segment and a snapshot (the daemon's
    /// `snapshot_log_bytes`, and twice the last snapshot's size).
    pub snapshot_log_bytes: u64,
    /// Share of rolls that plan a crash right after one of their steps or their snapshot's.
    pub compaction_crash: f64,
}

/// One broker of the run.
#[derive(Debug, Clone)]
pub struct HostParams {
    pub config: Config,
    /// Mean time between crashes of this broker, or none.
    pub crash_mean: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Params {
    /// The brokers; clients name theirs by index.
    pub hosts: Vec<HostParams>,
    pub clients: Vec<ClientSpec>,
    pub net: NetParams,
    pub disk: DiskParams,
    pub downtime_max: u64,
    /// Simulated time with faults and new messages, then the quiet period.
    pub workload: u64,
    pub quiet_max: u64,
}

fn qos_of(i: usize) -> QoS {
    [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][i]
}

impl Params {
    pub fn draw(rng: &mut Rng, workload_secs: u64, bug: Option<midge_core::bugs::Bug>) -> Params {
        let n_clients = rng.range_usize(2, 7);
        let max_keepalive = rng.chance(0.15).then(|| rng.range(2, 30) as u16);
        let mut clients = Vec::new();
        for i in 0..n_clients {
            clients.push(draw_client(rng, i, max_keepalive));
        }
        // At least one publisher and one subscriber with a persistent session.
        if !clients.iter().any(|c| c.publisher) {
            clients[0].publisher = true;
        }
        if !clients
            .iter()
            .any(|c| !c.filters.is_empty() && c.session == SessionKind::Persistent)
        {
            let last = clients.len() - 1;
            clients[last].session = SessionKind::Persistent;
            clients[last].filters.push(("a/#", QoS::ExactlyOnce));
        }
        let owners = clients.iter().filter(|c| c.retained_owner).count();

        let small_packets = rng.chance(0.3);
        let max_packet_size = if small_packets {
            rng.range(160, 1024) as u32
        } else {
            MAX_PACKET_SIZE
        };
        let config = Config {
            max_inflight_messages: if rng.chance(0.2) {
                0
            } else {
                rng.log_range(1, 20) as u16
            },
            max_queued_messages: if rng.chance(0.15) {
                0
            } else {
                rng.log_range(1, 200) as usize
            },
            max_queued_bytes: if rng.chance(0.7) {
                0
            } else {
                rng.log_range(100, 20_000) as usize
            },
            queue_qos0_messages: rng.chance(0.4),
            max_keepalive,
            max_packet_size,
            connect_timeout_ms: rng.range(2_000, 10_000),
            receive_maximum: if rng.chance(0.5) {
                u16::MAX
            } else {
                rng.range(1, 10) as u16
            },
            max_retained_messages: (owners * RETAINED_PER_OWNER).max(1),
            max_connection_buffer: if rng.chance(0.4) {
                1 << 20
            } else {
                rng.log_range(64, 16_384) as usize
            },
            persistence: true,
            client_id_seed: {
                let mut seed = [0u8; 32];
                for chunk in seed.chunks_mut(8) {
                    chunk.copy_from_slice(&rng.u64().to_le_bytes());
                }
                seed
            },
            bug,
            ..Config::default()
        };
        // Payloads (with topic and headers) must fit the broker's Maximum Packet Size.
        let payload_cap = (max_packet_size as usize).saturating_sub(40).max(16);
        for c in &mut clients {
            c.max_payload = c.max_payload.min(payload_cap);
        }

        let latency_min = rng.log_range(10, 2 * MS);
        let net = NetParams {
            latency_min,
            latency_max: latency_min + rng.log_range(10, 30 * MS),
            chunk_max: if rng.chance(0.2) {
                rng.log_range(1, 64) as usize
            } else {
                rng.log_range(64, 16_384) as usize
            },
            capacity: if rng.chance(0.3) {
                rng.log_range(256, 4096) as usize
            } else {
                rng.log_range(4096, 256 * 1024) as usize
            },
            reset_mean: rng.chance(0.7).then(|| rng.log_range(300 * MS, 10 * SEC)),
            stall_mean: rng.chance(0.5).then(|| rng.log_range(300 * MS, 10 * SEC)),
            partition_mean: rng.chance(0.4).then(|| rng.log_range(SEC, 20 * SEC)),
            stall_max: rng.log_range(10 * MS, 5 * SEC),
            partition_max: rng.log_range(100 * MS, 8 * SEC),
        };
        let fsync_min = rng.log_range(20, 2 * MS);
        let disk = DiskParams {
            fsync_min,
            fsync_max: fsync_min + rng.log_range(10, 50 * MS),
            group_delay_max: if rng.chance(0.5) {
                0
            } else {
                rng.log_range(10, 5 * MS)
            },
            power_loss: [0.0, 0.5, 0.9, 1.0][rng.below(4) as usize],
            tear: rng.chance(0.8),
            bit_flip: if rng.chance(0.3) { 0.5 } else { 0.0 },
            write_error_mean: rng.chance(0.1).then(|| rng.log_range(2 * SEC, 30 * SEC)),
            snapshot_log_bytes: 0,
            compaction_crash: 0.0,
        };
        let crash_mean = rng.chance(0.85).then(|| rng.log_range(300 * MS, 15 * SEC));
        let downtime_max = rng.log_range(MS, 3 * SEC);
        // Drawn last, so that the draws above stay what they were for each seed.
        let mut disk = disk;
        disk.snapshot_log_bytes = rng.log_range(256, 64 * 1024);
        disk.compaction_crash = if crash_mean.is_some() && rng.chance(0.5) {
            rng.pick(&[0.1, 0.25, 0.5])
        } else {
            0.0
        };
        // MQTT 5 clients that accept a few topic aliases, so that the broker assigns and
        // reassigns them; and the broker's own limit on them.
        let alias_limit = rng.pick(&[0u16, 1, 2, 10]);
        let config = Config {
            max_topic_alias_broker: alias_limit,
            ..config
        };
        for c in &mut clients {
            if c.version.is_v5() && rng.chance(0.5) {
                c.topic_alias_maximum = rng.range(1, 4) as u16;
            }
        }
        // MQTT 5 publishers whose messages often expire (1 to 10 s) while queued or stored.
        for c in &mut clients {
            if c.version.is_v5() && rng.chance(0.3) {
                c.expiring_share = rng.pick(&[0.2, 0.5, 1.0]);
            }
        }
        // Some runs have a shared subscription group of two or more workers, of both versions.
        if rng.chance(0.35) {
            let group = rng.pick(&SHARED_FILTERS);
            let workers = rng.range_usize(2, clients.len().min(4));
            for c in clients.iter_mut().take(workers) {
                c.shared_worker = true;
                c.session = SessionKind::Persistent;
                c.filters = vec![(group, qos_of(rng.weighted(&[1, 3, 3])))];
                c.p_fresh = 0.0;
                c.max_packet_size = None;
            }
        }
        Params {
            hosts: vec![HostParams { config, crash_mean }],
            clients,
            net,
            disk,
            downtime_max,
            workload: workload_secs * SEC,
            quiet_max: 1200 * SEC,
        }
    }
}

fn draw_client(rng: &mut Rng, idx: usize, max_keepalive: Option<u16>) -> ClientSpec {
    let version = if rng.chance(0.5) {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let session = match rng.weighted(&[6, 2, 2]) {
        0 => SessionKind::Persistent,
        1 => SessionKind::Clean,
        // Short intervals half the time, so that reconnects near the expiry happen in short
        // runs too.
        _ if version.is_v5() => SessionKind::Expiring(if rng.chance(0.5) {
            rng.range(1, 3) as u32
        } else {
            rng.range(1, 10) as u32
        }),
        _ => SessionKind::Persistent,
    };
    let mut keep_alive = if rng.chance(0.3) {
        0
    } else {
        rng.range(1, 10) as u16
    };
    if let Some(max) = max_keepalive
        && !version.is_v5()
        && (keep_alive == 0 || keep_alive > max)
    {
        keep_alive = rng.range(1, u64::from(max)) as u16;
    }
    let publisher = rng.chance(0.7);
    let mut filters = Vec::new();
    if rng.chance(0.7) {
        for _ in 0..rng.range(1, 3) {
            let filter = rng.pick(&FILTERS);
            if !filters.iter().any(|(f, _)| *f == filter) {
                filters.push((filter, qos_of(rng.weighted(&[1, 2, 2]))));
            }
        }
    }
    let _ = idx;
    let act_mean = rng.log_range(5 * MS, 300 * MS);
    // Something that happens every `secs` seconds on average (never for 0).
    let per_act = |secs: u64| {
        if secs == 0 {
            0.0
        } else {
            act_mean as f64 / (secs * SEC) as f64
        }
    };
    ClientSpec {
        version,
        session,
        keep_alive,
        act_mean,
        publisher,
        qos_weights: [
            rng.range(0, 3) as u32,
            rng.range(1, 4) as u32,
            rng.range(1, 4) as u32,
        ],
        max_payload: rng.log_range(16, 600) as usize,
        retained_owner: rng.chance(0.25),
        filters,
        window: rng.log_range(1, 16) as usize,
        receive_maximum: (version.is_v5() && rng.chance(0.3)).then(|| rng.range(1, 5) as u16),
        max_packet_size: (version.is_v5() && rng.chance(0.2)).then(|| rng.range(48, 300) as u32),
        slow_reader: rng
            .chance(0.2)
            .then(|| (rng.log_range(8, 2048) as usize, rng.log_range(MS, 100 * MS))),
        ack_delay_max: if rng.chance(0.6) {
            0
        } else {
            rng.log_range(100, 300 * MS)
        },
        will: rng.chance(0.3).then(|| {
            let delay = if version.is_v5() && rng.chance(0.5) {
                rng.range(1, 5) as u32
            } else {
                0
            };
            (qos_of(rng.below(3) as usize), delay)
        }),
        // Expiring sessions are left (and come back around their expiry) every few seconds.
        p_disconnect: match session {
            SessionKind::Expiring(_) => per_act(rng.pick(&[1, 2, 4])),
            _ => per_act(rng.pick(&[0, 2, 8, 30])),
        },
        p_drop: per_act(rng.pick(&[0, 2, 8, 30])),
        p_fresh: per_act(rng.pick(&[0, 0, 20, 60])),
        p_resubscribe: per_act(rng.pick(&[0, 4, 15])),
        shared_worker: false,
        topic_alias_maximum: 0,
        expiring_share: 0.0,
        host: 0,
        topics: &TOPICS,
    }
}

/// The client id of the run's bridge on the remote broker, and of its session on its own.
pub const BRIDGE_CLIENT_ID: &str = "bridge-a";
pub const BRIDGE_LOCAL_CLIENT_ID: &str = "local.bridge-a";

/// A topic line's pattern and prefixes, by index into `BRIDGE_PATTERNS` and
/// `BRIDGE_PREFIXES` (so that the filter of either side is in `CROSSING_FILTERS`).
#[derive(Debug, Clone, Copy)]
struct LineDraw {
    direction: BridgeDirection,
    pattern: usize,
    local: usize,
    remote: usize,
}

impl Params {
    /// Turns a drawn run into a bridged one: broker A (host 0, as drawn) bridged to broker B
    /// (host 1) with persistence on both, clients spread over both, publishing and subscribing
    /// on topics that cross. Everything here is drawn from `rng`, a stream of its own, so the
    /// draws of a run with one broker stay what they are.
    pub fn make_bridged(&mut self, rng: &mut Rng) {
        // Queues large enough that nothing acknowledged is dropped on the way: a drop in the
        // bridge's session would be no client's and could not be matched to a counted one.
        let a = &mut self.hosts[0].config;
        a.max_queued_messages = 100_000;
        a.max_queued_bytes = 0;
        // Room for the bridge's state notification, retained on both brokers.
        a.max_retained_messages += 1;
        let mut b = a.clone();
        for chunk in b.client_id_seed.chunks_mut(8) {
            chunk.copy_from_slice(&rng.u64().to_le_bytes());
        }
        let crash_mean = rng.chance(0.85).then(|| rng.log_range(300 * MS, 15 * SEC));

        let a_max_keepalive = self.hosts[0].config.max_keepalive;
        let protocol = if rng.chance(0.5) {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        let mut lines = Vec::new();
        for _ in 0..rng.range(1, 3) {
            let direction = [
                BridgeDirection::Out,
                BridgeDirection::In,
                BridgeDirection::Both,
            ][rng.below(3) as usize];
            // Each side's filter must match what is published there: `s/` on either side,
            // `ra/` only on B (named by a line out of A), `rb/` only on A.
            let (local, remote) = match direction {
                BridgeDirection::Out => (rng.pick(&[0, 3]), rng.pick(&[0, 1, 3])),
                BridgeDirection::In => (rng.pick(&[0, 2, 3]), rng.pick(&[0, 3])),
                BridgeDirection::Both => (rng.pick(&[0, 3]), rng.pick(&[0, 3])),
            };
            lines.push(LineDraw {
                direction,
                pattern: rng.below(BRIDGE_PATTERNS.len() as u64) as usize,
                local,
                remote,
            });
        }
        let topics = lines
            .iter()
            .map(|l| BridgeTopic {
                pattern: BRIDGE_PATTERNS[l.pattern].to_owned(),
                direction: l.direction,
                qos: if rng.chance(0.6) {
                    QoS::ExactlyOnce
                } else {
                    QoS::AtLeastOnce
                },
                local_prefix: BRIDGE_PREFIXES[l.local].to_owned(),
                remote_prefix: BRIDGE_PREFIXES[l.remote].to_owned(),
            })
            .collect();
        let restart = match rng.below(4) {
            0 => Backoff::Constant { secs: 0 },
            1 => Backoff::Constant { secs: 1 },
            2 => Backoff::Jitter {
                base_secs: 0,
                cap_secs: 1,
            },
            _ => Backoff::Jitter {
                base_secs: 0,
                cap_secs: 2,
            },
        };
        let notifications = rng.chance(0.5);
        let bridge = BridgeConfig {
            name: "ab".to_owned(),
            addresses: vec![BridgeAddress {
                host: crate::bridge::host_name(1),
                port: 1883,
            }],
            round_robin: false,
            topics,
            remote_clientid: BRIDGE_CLIENT_ID.to_owned(),
            local_clientid: BRIDGE_LOCAL_CLIENT_ID.to_owned(),
            remote_username: None,
            remote_password: None,
            clean_session: false,
            local_clean_session: false,
            protocol,
            // Without it a 3.1.1 bridge with `both` lines loops; the run is about the bridge
            // as it is meant to be configured.
            try_private: true,
            // Within the remote's maximum, which refuses a 3.1.1 client asking for more.
            keepalive_secs: match a_max_keepalive {
                Some(max) if !protocol.is_v5() => rng.pick(&[2, 5, 10, 60]).min(max).max(1),
                _ => rng.pick(&[2, 5, 10, 60]),
            },
            restart,
            notifications,
            notifications_local_only: notifications && rng.chance(0.3),
            notification_topic: format!("$SYS/broker/connection/{BRIDGE_CLIENT_ID}/state"),
        };
        self.hosts[0].config.bridges = vec![bridge];
        self.hosts.push(HostParams {
            config: b,
            crash_mean,
        });

        // Clients on both brokers; a shared subscription group lives on one of them.
        let group_host = rng.below(2) as usize;
        // Retained owners stay on A (below), and the group stays on one broker.
        let group_host = if self
            .clients
            .iter()
            .any(|c| c.shared_worker && c.retained_owner)
        {
            0
        } else {
            group_host
        };
        for c in &mut self.clients {
            // Retained topics never cross and the auditor reads A's store: their owners
            // publish on A.
            c.host = if c.shared_worker {
                group_host
            } else if c.retained_owner {
                0
            } else {
                rng.below(2) as usize
            };
            c.topics = &BRIDGED_TOPICS;
            if c.shared_worker || c.filters.is_empty() || !rng.chance(0.7) {
                continue;
            }
            if let Some(filter) = crossing_filter(&lines, c.host, rng)
                && !c.filters.iter().any(|(f, _)| *f == filter)
            {
                c.filters.push((filter, qos_of(rng.weighted(&[1, 2, 2]))));
            }
        }
        // Clients on both brokers (a run has two at least).
        for host in 0..2 {
            if self.clients.iter().any(|c| c.host == host) {
                continue;
            }
            let movable = |c: &ClientSpec| !c.shared_worker && !c.retained_owner;
            let i = self
                .clients
                .iter()
                .rposition(movable)
                .or_else(|| self.clients.iter().rposition(|c| !c.shared_worker));
            if let Some(i) = i {
                let c = &mut self.clients[i];
                c.host = host;
                // Retained topics stay on A.
                c.retained_owner &= host == 0;
            }
        }
        // On each broker a publisher, and a persistent subscriber at QoS 2 to what crosses to
        // it, when something does.
        for host in 0..2 {
            let on: Vec<usize> = (0..self.clients.len())
                .filter(|&i| self.clients[i].host == host)
                .collect();
            let Some(&first) = on.first() else { continue };
            if !on.iter().any(|&i| self.clients[i].publisher) {
                self.clients[first].publisher = true;
            }
            let subscriber = on.iter().rev().find(|&&i| !self.clients[i].shared_worker);
            if let Some(&last) = subscriber
                && let Some(filter) = crossing_filter(&lines, host, rng)
            {
                let c = &mut self.clients[last];
                c.session = SessionKind::Persistent;
                c.p_fresh = 0.0;
                c.max_packet_size = None;
                c.filters.retain(|(f, _)| *f != filter);
                c.filters.push((filter, QoS::ExactlyOnce));
            }
        }
    }
}

/// The filter, on `host`'s side, of a line that carries messages to it, if any does.
fn crossing_filter(lines: &[LineDraw], host: usize, rng: &mut Rng) -> Option<&'static str> {
    let into: Vec<&'static str> = lines
        .iter()
        .filter_map(|l| match (host, l.direction) {
            (0, BridgeDirection::In | BridgeDirection::Both) => {
                Some(CROSSING_FILTERS[l.local][l.pattern])
            }
            (1, BridgeDirection::Out | BridgeDirection::Both) => {
                Some(CROSSING_FILTERS[l.remote][l.pattern])
            }
            _ => None,
        })
        .collect();
    (!into.is_empty()).then(|| rng.pick(&into))
}
