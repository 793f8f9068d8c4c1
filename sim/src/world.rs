//! The world: virtual time, one priority queue of events, and the dispatch of each event to the
//! network, a broker's host, its disk or a client. No threads, no sockets, no clock: the run is
//! a function of the seed.

use crate::bridge::{Tap, Watch};
use crate::checker::Checker;
use crate::client::{Client, ClientTimer, ConnState};
use crate::crossing::Crossing;
use crate::host::Host;
use crate::net::{Dialer, Link, LinkId};
use crate::params::{Params, SessionKind};
use crate::rng::Rng;
use crate::trace::{Ev, Trace};
use crate::{BRIDGED_SHARE, MS, Options, RunKind, SEC};
use midge_core::codec::{ProtocolVersion, QoS};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Messages, faults and crashes.
    Workload,
    /// Everything heals; clients reconnect and finish what they started.
    Quiet,
    /// The auditor reads the retained store.
    Audit,
    Done,
}

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    Reset,
    Stall,
    Partition,
}

#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// A connection attempt (a client's, or a broker's for a bridge) reaches the host it
    /// connects to.
    LinkOpen(LinkId),
    /// The dialer learns that nobody listens.
    LinkRefused(LinkId),
    /// The accepting host's answer to a bridge's connection attempt reaches the dialing host.
    LinkAccepted(LinkId),
    /// A bridge's connection attempt timed out unanswered (a partition).
    DialTimeout(LinkId),
    Deliver(LinkId, bool),
    /// Host `.0`'s broker asked to be woken at this time.
    BrokerWake(usize, u64),
    FsyncStart(usize),
    FsyncDone(usize, u64),
    /// The next step of a roll or compaction (`storage.rs`) of a host, named by its sequence
    /// number.
    StorageStep(usize, u64),
    Client(usize, u64, ClientTimer),
    /// A crash of a host's broker during the workload; a `forced` one (the supervisor
    /// restarting the broker incarnation whose disk failed) happens in any phase, unless that
    /// broker is gone already.
    Crash {
        host: usize,
        forced: Option<u64>,
    },
    Restart(usize),
    WriteError(usize),
    Fault(Fault),
    EndWorkload,
    QuietCheck,
}

#[derive(Debug)]
struct Scheduled {
    time: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}

#[derive(Debug)]
pub struct World {
    pub now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    pub params: Params,
    pub rng_net: Rng,
    pub rng_disk: Rng,
    pub rng_fault: Rng,
    pub links: BTreeMap<LinkId, Link>,
    next_link: LinkId,
    /// The brokers, by index; a run with one broker has one.
    pub hosts: Vec<Host>,
    pub clients: Vec<Client>,
    pub checker: Checker,
    pub trace: Trace,
    pub phase: Phase,
    /// Per client: partitioned from the brokers until then.
    pub partitioned_until: Vec<u64>,
    /// The brokers are partitioned from each other until then.
    pub brokers_partitioned_until: u64,
    quiet_since: u64,
    quiet_streak: u32,
    /// Messages and acknowledgements clients received: progress.
    pub progress: u64,
    progress_seen: (u64, u64),
    pub events: u64,
    pub crashes: u64,
    /// The client that checks the retained store at the end.
    pub auditor: usize,
    /// When the broker stopped knowing each link's connection (it closed it, was told it
    /// closed, or crashed): where a detached session's expiry starts.
    pub conn_end: BTreeMap<LinkId, u64>,
    /// Bridge links decoded as read, by (link, direction).
    pub taps: BTreeMap<(LinkId, bool), Tap>,
    /// The subscriptions bridges forward by, until durable.
    pub watches: Vec<Watch>,
}

/// Names the stream bridged runs are drawn from: not a fork of the root, so that drawing it
/// changes no draw of a run with one broker.
const BRIDGE_STREAM: u64 = 0x6272_6964_6765_0000;

/// Most events a run may take before it counts as a livelock.
const EVENT_BUDGET: u64 = 50_000_000;
/// The quiet period fails when no message or acknowledgement moves for this long.
const STANDSTILL: u64 = 30 * SEC;
/// How often clients check their timers.
pub const TICK: u64 = 100 * MS;
/// How long a host waits for the answer to a bridge's connection attempt before it reports
/// the dial failed.
pub const DIAL_TIMEOUT: u64 = 2 * SEC;

impl World {
    pub fn new(opts: &Options) -> World {
        let mut root = Rng::new(opts.seed);
        let mut rng_params = root.fork();
        let rng_net = root.fork();
        let rng_disk = root.fork();
        let rng_fault = root.fork();
        let mut params = Params::draw(&mut rng_params, opts.secs, opts.bug);
        let mut rng_bridge = Rng::new(opts.seed ^ BRIDGE_STREAM);
        let bridged = match opts.kind {
            RunKind::Drawn => rng_bridge.chance(BRIDGED_SHARE),
            RunKind::Single => false,
            RunKind::Bridged => true,
        };
        if bridged {
            params.make_bridged(&mut rng_bridge);
        }
        let mut clients: Vec<Client> = params
            .clients
            .iter()
            .enumerate()
            .map(|(i, spec)| Client::new(i, spec.clone(), root.fork()))
            .collect();
        let auditor = clients.len();
        clients.push(Client::new(
            auditor,
            crate::params::ClientSpec {
                version: ProtocolVersion::V5,
                session: SessionKind::Clean,
                keep_alive: 0,
                act_mean: SEC,
                publisher: false,
                qos_weights: [1, 1, 1],
                max_payload: 16,
                retained_owner: false,
                filters: vec![("r/#", QoS::AtLeastOnce)],
                window: 1,
                receive_maximum: None,
                max_packet_size: None,
                slow_reader: None,
                ack_delay_max: 0,
                will: None,
                p_disconnect: 0.0,
                p_drop: 0.0,
                p_fresh: 0.0,
                p_resubscribe: 0.0,
                shared_worker: false,
                topic_alias_maximum: 0,
                expiring_share: 0.0,
                host: 0,
                topics: &crate::params::TOPICS,
            },
            root.fork(),
        ));
        let mut checker = Checker::new(clients.len());
        for (i, c) in clients.iter().enumerate() {
            checker.clients[i].max_packet = c.spec.max_packet_size;
            checker.clients[i].v5 = c.spec.version.is_v5();
            checker.clients[i].worker = c.spec.shared_worker;
            checker.clients[i].host = c.spec.host;
        }
        let mut watches = Vec::new();
        for (h, hp) in params.hosts.iter().enumerate() {
            for b in &hp.config.bridges {
                let remote = b
                    .addresses
                    .first()
                    .and_then(|a| crate::bridge::host_of(&a.host))
                    .unwrap_or(h);
                checker.crossing = Some(Crossing::new(h, remote, b));
                watches.extend(crate::bridge::watches(h, remote, b));
            }
        }
        // Payloads, plus topic (at most 8 bytes here), packet id, properties and header.
        let largest_payload = params.clients.iter().map(|c| c.max_payload).max();
        let largest_publish = largest_payload.unwrap_or(0).max(crate::payload::TAG_LEN) + 32;
        let hosts = params
            .hosts
            .iter()
            .map(|hp| Host::new(hp.config.clone(), largest_publish, params.net.chunk_max))
            .collect();
        let n = clients.len();
        World {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            params,
            rng_net,
            rng_disk,
            rng_fault,
            links: BTreeMap::new(),
            next_link: 1,
            hosts,
            clients,
            checker,
            trace: Trace::new(opts.keep, opts.trace),
            phase: Phase::Workload,
            partitioned_until: vec![0; n],
            brokers_partitioned_until: 0,
            quiet_since: 0,
            quiet_streak: 0,
            progress: 0,
            progress_seen: (0, 0),
            events: 0,
            crashes: 0,
            auditor,
            conn_end: BTreeMap::new(),
            taps: BTreeMap::new(),
            watches,
        }
    }

    pub fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            time: at.max(self.now),
            seq: self.seq,
            event,
        }));
    }

    pub fn push(&mut self, ev: Ev) {
        self.trace.push(self.now, ev);
    }

    pub fn fail(&mut self, property: &'static str, detail: String) {
        self.checker.now = self.now;
        self.checker.fail(property, detail);
    }

    /// Runs to the end or the first violation.
    pub fn run(&mut self) {
        self.start();
        while let Some(Reverse(s)) = self.queue.pop() {
            debug_assert!(s.time >= self.now, "time runs forward");
            self.now = s.time;
            self.checker.now = s.time;
            self.events += 1;
            self.dispatch(s.event);
            if self.checker.failed() || self.phase == Phase::Done {
                return;
            }
            if self.events > EVENT_BUDGET {
                self.fail(
                    "liveness",
                    format!("more than {EVENT_BUDGET} events: a livelock"),
                );
                return;
            }
        }
        if self.phase != Phase::Done {
            self.fail("liveness", "the world ran out of events".to_owned());
        }
    }

    fn start(&mut self) {
        self.push(Ev::Phase("workload"));
        for h in 0..self.hosts.len() {
            self.host_start(h);
        }
        for c in 0..self.auditor {
            let at = self.rng_fault.below(50 * MS);
            self.schedule(at, Event::Client(c, 0, ClientTimer::Reconnect));
            let act = self.clients[c].spec.act_mean;
            let at = self.rng_fault.exp(act);
            self.schedule(at, Event::Client(c, 0, ClientTimer::Act));
        }
        let p = &self.params;
        let faults = [
            (Fault::Reset, p.net.reset_mean),
            (Fault::Stall, p.net.stall_mean),
            (Fault::Partition, p.net.partition_mean),
        ];
        for (fault, mean) in faults {
            if let Some(mean) = mean {
                let at = self.rng_fault.exp(mean);
                self.schedule(at, Event::Fault(fault));
            }
        }
        // Each broker crashes and sees write errors on its own schedule: the first one's is
        // drawn where it always was, the others' after it.
        self.schedule_failures(0);
        let end = self.params.workload;
        self.schedule(end, Event::EndWorkload);
        for h in 1..self.hosts.len() {
            self.schedule_failures(h);
        }
    }

    /// The first crash and write error of host `h`.
    fn schedule_failures(&mut self, h: usize) {
        if let Some(mean) = self.params.hosts[h].crash_mean {
            let at = self.rng_fault.exp(mean);
            self.schedule(
                at,
                Event::Crash {
                    host: h,
                    forced: None,
                },
            );
        }
        if let Some(mean) = self.params.disk.write_error_mean {
            let at = self.rng_fault.exp(mean);
            self.schedule(at, Event::WriteError(h));
        }
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::LinkOpen(link) => self.link_open(link),
            Event::LinkRefused(link) => self.link_refused(link),
            Event::LinkAccepted(link) => self.link_accepted(link),
            Event::DialTimeout(link) => self.dial_timeout(link),
            Event::Deliver(link, up) => self.deliver(link, up),
            Event::BrokerWake(h, at) => self.broker_wake(h, at),
            Event::FsyncStart(h) => self.fsync_start(h),
            Event::FsyncDone(h, generation) => self.fsync_done(h, generation),
            Event::StorageStep(h, seq) => self.storage_step(h, seq),
            Event::Client(c, generation, timer) => self.client_timer(c, generation, timer),
            Event::Crash { host: h, forced } => {
                let due = match forced {
                    Some(incarnation) => incarnation == self.hosts[h].incarnation,
                    None => self.phase == Phase::Workload,
                };
                if due && self.hosts[h].broker.is_some() {
                    self.crash(h);
                }
                if forced.is_none()
                    && self.phase == Phase::Workload
                    && let Some(mean) = self.params.hosts[h].crash_mean
                {
                    let at = self.now + self.params.downtime_max + self.rng_fault.exp(mean);
                    self.schedule(
                        at,
                        Event::Crash {
                            host: h,
                            forced: None,
                        },
                    );
                }
            }
            Event::Restart(h) => self.restart(h),
            Event::WriteError(h) => {
                if self.phase == Phase::Workload {
                    self.hosts[h].fail_next_write = true;
                    if let Some(mean) = self.params.disk.write_error_mean {
                        let at = self.now + self.rng_fault.exp(mean);
                        self.schedule(at, Event::WriteError(h));
                    }
                }
            }
            Event::Fault(fault) => self.fault(fault),
            Event::EndWorkload => self.end_workload(),
            Event::QuietCheck => self.quiet_check(),
        }
    }

    // --- Faults ----------------------------------------------------------------------------

    fn fault(&mut self, fault: Fault) {
        if self.phase != Phase::Workload {
            return;
        }
        let (mean, max) = match fault {
            Fault::Reset => (self.params.net.reset_mean, 0),
            Fault::Stall => (self.params.net.stall_mean, self.params.net.stall_max),
            Fault::Partition => (
                self.params.net.partition_mean,
                self.params.net.partition_max,
            ),
        };
        if let Some(mean) = mean {
            let at = self.now + self.rng_fault.exp(mean);
            self.schedule(at, Event::Fault(fault));
        }
        match fault {
            Fault::Reset | Fault::Stall => {
                let live: Vec<LinkId> = self
                    .links
                    .iter()
                    .filter(|(_, l)| l.open && !l.finished())
                    .map(|(id, _)| *id)
                    .collect();
                if live.is_empty() {
                    return;
                }
                let link = self.rng_fault.pick(&live);
                if matches!(fault, Fault::Reset) {
                    self.push(Ev::Fault {
                        what: "reset link",
                        a: link,
                        b: 0,
                    });
                    self.reset_link(link);
                } else {
                    let up = self.rng_fault.chance(0.5);
                    let until = self.now + self.rng_fault.range(MS, max.max(MS));
                    self.push(Ev::Fault {
                        what: if up {
                            "stall link (to broker) until"
                        } else {
                            "stall link (to client) until"
                        },
                        a: link,
                        b: until,
                    });
                    if let Some(l) = self.links.get_mut(&link) {
                        let p = l.pipe(up);
                        p.stalled_until = p.stalled_until.max(until);
                    }
                }
            }
            Fault::Partition => {
                let until = self.now + self.rng_fault.range(MS, max.max(MS));
                let all = self.rng_fault.chance(0.3);
                for c in 0..self.auditor {
                    if all || self.rng_fault.chance(0.4) {
                        self.push(Ev::Fault {
                            what: "partition client until",
                            a: c as u64,
                            b: until,
                        });
                        self.partitioned_until[c] = self.partitioned_until[c].max(until);
                    }
                }
                // With several brokers, the network between them fails too.
                if self.hosts.len() > 1 && (all || self.rng_fault.chance(0.4)) {
                    self.push(Ev::Fault {
                        what: "partition the brokers from each other until",
                        a: 0,
                        b: until,
                    });
                    self.brokers_partitioned_until = self.brokers_partitioned_until.max(until);
                }
            }
        }
    }

    /// Cuts a link at any byte in each direction: what was not yet delivered past the cut is
    /// lost, and each end then sees the end of the stream.
    pub fn reset_link(&mut self, link: LinkId) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        for up in [true, false] {
            let p = l.pipe(up);
            if p.closed {
                continue;
            }
            let keep = self.rng_net.below(p.queued as u64 + 1) as usize;
            p.truncate(keep);
            p.fin = true;
        }
        self.kick(link, true);
        self.kick(link, false);
    }

    // --- The network -------------------------------------------------------------------------

    pub fn new_link(&mut self, dialer: Dialer, host: usize) -> LinkId {
        let id = self.next_link;
        self.next_link += 1;
        self.links.insert(id, Link::new(dialer, host));
        id
    }

    /// Until when a link is partitioned (both ways).
    fn partitioned(&self, l: &Link) -> u64 {
        match l.dialer {
            Dialer::Client(c) => self.partitioned_until[c],
            Dialer::Bridge { .. } => self.brokers_partitioned_until,
        }
    }

    pub fn latency(&mut self) -> u64 {
        let (lo, hi) = (self.params.net.latency_min, self.params.net.latency_max);
        self.rng_net.range(lo, hi)
    }

    /// Makes sure a pipe with something to deliver has a delivery scheduled.
    pub fn kick(&mut self, link: LinkId, up: bool) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if up && !l.open {
            return;
        }
        let p = l.pipe(up);
        if p.scheduled || !p.has_work() {
            return;
        }
        p.scheduled = true;
        let (lo, hi) = (self.params.net.latency_min, self.params.net.latency_max);
        let at = self.now + self.rng_net.range(lo, hi);
        self.schedule(at, Event::Deliver(link, up));
    }

    fn deliver(&mut self, link: LinkId, up: bool) {
        let partition = {
            let Some(l) = self.links.get(&link) else {
                return;
            };
            self.partitioned(l)
        };
        let now = self.now;
        let chunk_max = self.params.net.chunk_max;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let (dialer, host) = (l.dialer, l.host);
        // The end that reads this direction: the accepting host's connection, or the dialing
        // end (a client, or a host's dialed connection).
        let reader = match (up, dialer) {
            (true, _) => Some((host, l.conn)),
            (false, Dialer::Bridge { host, conn, .. }) => Some((host, conn)),
            (false, Dialer::Client(_)) => None,
        };
        let p = l.pipe(up);
        p.scheduled = false;
        if !p.has_work() {
            return self.cleanup(link);
        }
        let stalled = p.stalled_until.max(partition);
        if now < stalled {
            p.scheduled = true;
            self.schedule(stalled, Event::Deliver(link, up));
            return;
        }
        if let Some((h, conn)) = reader {
            if conn.is_none() && !up {
                // A dialing host reads once it learned the remote accepted (`LinkAccepted`
                // kicks this pipe).
                return;
            }
            let paused = conn
                .and_then(|c| self.hosts[h].conns.get(&c))
                .map(|hc| hc.read_paused);
            match paused {
                // Waits for ResumeRead.
                Some(true) => return,
                Some(false) => {}
                // The broker forgot the connection: nobody reads this end any more.
                None => {
                    let Some(l) = self.links.get_mut(&link) else {
                        return;
                    };
                    l.pipe(up).close();
                    return self.cleanup(link);
                }
            }
        }
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let p = l.pipe(up);
        let most = p.queued.min(chunk_max);
        let n = if most == 0 {
            0
        } else if self.rng_net.chance(0.5) {
            most
        } else {
            self.rng_net.range_usize(1, most)
        };
        let bytes = p.take(n);
        let fin = p.queued == 0 && p.fin;
        if fin {
            p.close();
        }
        let more = p.has_work();
        if more {
            p.scheduled = true;
            let gap = self.rng_net.below(self.params.net.latency_min / 4 + 1);
            self.schedule(now + gap, Event::Deliver(link, up));
        }
        self.push(Ev::Deliver {
            link,
            up,
            bytes: bytes.len() as u32,
            fin,
        });
        if matches!(dialer, Dialer::Bridge { .. }) {
            if !bytes.is_empty() {
                self.tap(link, up, &bytes);
                if self.checker.failed() {
                    return;
                }
            }
            if fin {
                self.taps.remove(&(link, up));
            }
        }
        match (reader, dialer) {
            (Some((h, conn)), _) => {
                let conn = conn.expect("an open link has a connection at each host");
                if !bytes.is_empty() {
                    self.host_received(h, conn, &bytes);
                }
                if fin {
                    self.host_peer_closed(h, conn);
                }
                // The host read what it was sent: room for more from the other end.
                if up {
                    self.dialer_drained(link);
                } else {
                    self.link_drained(link);
                }
            }
            (None, Dialer::Client(client)) => {
                if !bytes.is_empty() {
                    self.client_bytes(client, link, bytes);
                }
                if fin {
                    self.client_eof(client, link);
                }
                // The client read what it was sent: room for more.
                self.link_drained(link);
            }
            (None, Dialer::Bridge { .. }) => unreachable!("a dialing host reads its link"),
        }
        self.cleanup(link);
    }

    /// Forgets a link once neither direction carries anything.
    pub fn cleanup(&mut self, link: LinkId) {
        if self.links.get(&link).is_some_and(|l| l.finished()) {
            let l = self.links.remove(&link).expect("link");
            if let Some(conn) = l.conn {
                let host = &self.hosts[l.host];
                debug_assert!(!host.conns.contains_key(&conn) || host.broker.is_none());
            }
        }
    }

    fn link_open(&mut self, link: LinkId) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let (dialer, h) = (l.dialer, l.host);
        if self.now < self.partitioned(l) {
            // The connection attempt is lost; the client gives up on it in time.
            if let Some(l) = self.links.get_mut(&link) {
                l.up.close();
            }
            if matches!(dialer, Dialer::Bridge { .. }) {
                // So does the dialing host, after a timeout of its own.
                self.schedule(self.now + DIAL_TIMEOUT, Event::DialTimeout(link));
                return;
            }
            return self.cleanup(link);
        }
        if self.hosts[h].broker.is_none() {
            let at = self.now + self.latency();
            self.schedule(at, Event::LinkRefused(link));
            return;
        }
        self.host_open(h, link);
        if matches!(dialer, Dialer::Bridge { .. }) {
            let at = self.now + self.latency();
            self.schedule(at, Event::LinkAccepted(link));
        }
    }

    fn link_refused(&mut self, link: LinkId) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.up.close();
        match l.dialer {
            Dialer::Client(client) => {
                if self.clients[client].link == Some(link) {
                    self.client_lost(client, "connection refused");
                }
                self.cleanup(link);
            }
            Dialer::Bridge { .. } => self.dial_failed(link),
        }
    }

    // --- The end of a run ----------------------------------------------------------------------

    fn end_workload(&mut self) {
        self.phase = Phase::Quiet;
        self.quiet_since = self.now;
        self.push(Ev::Phase("quiet: faults heal, clients finish"));
        for host in &mut self.hosts {
            host.fail_next_write = false;
        }
        for c in 0..self.partitioned_until.len() {
            self.partitioned_until[c] = 0;
        }
        self.brokers_partitioned_until = 0;
        let ids: Vec<LinkId> = self.links.keys().copied().collect();
        for link in ids {
            if let Some(l) = self.links.get_mut(&link) {
                l.up.stalled_until = 0;
                l.down.stalled_until = 0;
            }
        }
        for c in 0..self.auditor {
            if self.clients[c].state == ConnState::Idle {
                self.clients[c].reconnect_gen += 1;
                let generation = self.clients[c].reconnect_gen;
                let at = self.now + 10 * MS;
                self.schedule(at, Event::Client(c, generation, ClientTimer::Reconnect));
            }
        }
        let at = self.now + 200 * MS;
        self.schedule(at, Event::QuietCheck);
    }

    /// What still moves, if anything.
    fn busy(&self, audit: bool) -> Option<String> {
        for (h, host) in self.hosts.iter().enumerate() {
            // The first broker's words as they always were; the others named.
            let name = if h == 0 {
                String::new()
            } else {
                format!("broker {h}: ")
            };
            if host.broker.is_none() {
                return Some(format!("{name}the broker is down"));
            }
            if host.disk.failed {
                return Some(format!("{name}the disk failed"));
            }
            if host.written_lsn != host.durable_lsn {
                return Some(format!(
                    "{name}log written to {} but durable to {}",
                    host.written_lsn, host.durable_lsn
                ));
            }
        }
        for (id, l) in &self.links {
            if l.up.has_work() && l.open || l.down.has_work() {
                return Some(format!("link {id} carries bytes"));
            }
        }
        for (h, host) in self.hosts.iter().enumerate() {
            for (conn, hc) in &host.conns {
                if hc.out_len > 0 || hc.closing {
                    let name = if h == 0 {
                        String::new()
                    } else {
                        format!("broker {h}: ")
                    };
                    return Some(format!("{name}connection {} has output waiting", conn.0));
                }
            }
        }
        if let Some(why) = self.bridges_busy() {
            return Some(why);
        }
        let n = if audit {
            self.clients.len()
        } else {
            self.auditor
        };
        for (i, c) in self.clients.iter().enumerate().take(n) {
            if let Some(why) = c.busy() {
                return Some(format!("c{i}: {why}"));
            }
        }
        None
    }

    fn quiet_check(&mut self) {
        let audit = self.phase == Phase::Audit;
        match self.busy(audit) {
            Some(why) => {
                self.quiet_streak = 0;
                // A large backlog through a slow link may take long; a standstill may not.
                if self.progress != self.progress_seen.0 {
                    self.progress_seen = (self.progress, self.now);
                }
                let stuck = self.now > self.progress_seen.1.max(self.quiet_since) + STANDSTILL;
                if stuck || self.now > self.quiet_since + self.params.quiet_max {
                    return self.fail(
                        "liveness: everything completes once faults heal",
                        format!(
                            "still busy {} s after the faults healed, {} s without progress: {why}",
                            (self.now - self.quiet_since) / SEC,
                            (self.now - self.progress_seen.1.max(self.quiet_since)) / SEC,
                        ),
                    );
                }
            }
            None => {
                self.quiet_streak += 1;
                if self.quiet_streak >= 3 {
                    self.quiet_streak = 0;
                    if audit {
                        self.push(Ev::Phase("final checks"));
                        self.checker.final_check();
                        self.phase = Phase::Done;
                        return;
                    }
                    self.phase = Phase::Audit;
                    self.push(Ev::Phase("audit: a new client reads the retained store"));
                    let a = self.auditor;
                    self.schedule(self.now, Event::Client(a, 0, ClientTimer::Reconnect));
                }
            }
        }
        let at = self.now + 200 * MS;
        self.schedule(at, Event::QuietCheck);
    }
}

impl World {
    /// The run's parameters, briefly.
    pub fn describe(&self) -> String {
        let c = &self.params.hosts[0].config;
        let clients: Vec<String> = self
            .clients
            .iter()
            .take(self.auditor)
            .map(|cl| {
                let s = &cl.spec;
                let v = if s.version.is_v5() { "5" } else { "3.1.1" };
                let session = match s.session {
                    SessionKind::Persistent => "persistent".to_owned(),
                    SessionKind::Clean => "clean".to_owned(),
                    SessionKind::Expiring(e) => format!("expiring {e}s"),
                };
                let mut roles = Vec::new();
                if s.publisher {
                    roles.push("pub".to_owned());
                }
                if s.retained_owner {
                    roles.push("retain".to_owned());
                }
                if !s.filters.is_empty() {
                    let f: Vec<String> = s
                        .filters
                        .iter()
                        .map(|(f, q)| format!("{f}:{}", *q as u8))
                        .collect();
                    roles.push(format!("sub {}", f.join(" ")));
                }
                if s.slow_reader.is_some() {
                    roles.push("slow".to_owned());
                }
                if s.will.is_some() {
                    roles.push("will".to_owned());
                }
                format!("c{} v{v} {session} [{}]", cl.idx, roles.join(", "))
            })
            .collect();
        format!(
            "{} clients: {}\n     broker: inflight {}, queue {} msgs / {} bytes, qos0 queued {}, packet {}, buffer {}, receive max {}\n     net: latency {}-{} us, chunks <= {}, capacity {}; crashes every ~{:?} ms, power loss {}",
            self.auditor,
            clients.join("; "),
            c.max_inflight_messages,
            c.max_queued_messages,
            c.max_queued_bytes,
            c.queue_qos0_messages,
            c.max_packet_size,
            c.max_connection_buffer,
            c.receive_maximum,
            self.params.net.latency_min,
            self.params.net.latency_max,
            self.params.net.chunk_max,
            self.params.net.capacity,
            self.params.hosts[0].crash_mean.map(|m| m / MS),
            self.params.disk.power_loss,
        ) + &self.describe_bridges()
    }

    /// The bridges of a bridged run and where each client is.
    fn describe_bridges(&self) -> String {
        let mut out = String::new();
        for (h, hp) in self.params.hosts.iter().enumerate().skip(1) {
            let on: Vec<String> = (0..self.auditor)
                .filter(|&c| self.clients[c].spec.host == h)
                .map(|c| format!("c{c}"))
                .collect();
            out += &format!(
                "\n     broker {h}: clients {}; crashes every ~{:?} ms",
                on.join(" "),
                hp.crash_mean.map(|m| m / MS)
            );
        }
        for (h, hp) in self.params.hosts.iter().enumerate() {
            for b in &hp.config.bridges {
                let lines: Vec<String> = b
                    .topics
                    .iter()
                    .map(|t| {
                        format!(
                            "{} {:?} q{} '{}' '{}'",
                            t.pattern, t.direction, t.qos as u8, t.local_prefix, t.remote_prefix
                        )
                    })
                    .collect();
                out += &format!(
                    "\n     bridge on broker {h} to {}: {:?}, keep alive {}, {:?}, notifications {}; topic {}",
                    b.addresses.first().map_or("", |a| a.host.as_str()),
                    b.protocol,
                    b.keepalive_secs,
                    b.restart,
                    b.notifications,
                    lines.join("; topic ")
                );
            }
        }
        out
    }
}
