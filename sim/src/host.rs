//! The broker's host: what the daemon does around `midge_core::broker::Broker`, done against
//! the simulated network and disk. It hands the broker its inputs, carries out its actions
//! (bytes into the connection's pipe as far as the pipe takes them, `Blocked` and `Writable`
//! as io-mio reports them, reads paused and resumed, records appended), groups fsyncs and
//! reports `Durable` only for what an fsync covered, and crashes and restarts the broker.
//!
//! A run has one host per broker, named by its index; a host also dials the connections of
//! its broker's bridges (`Action::Dial`, see `bridge.rs`), which it then drives like the
//! connections it accepted, from the other end of the link.

use crate::MS;
use crate::disk::Disk;
use crate::net::{Dialer, LinkId};
use crate::storage::{self, Log};
use crate::trace::Ev;
use crate::world::{Event, World};
use bytes::Bytes;
use midge_core::broker::{Action, Broker, Config, ConnId, Input, ListenerId, Open, Time};
use midge_core::persist::{self, Lsn, State};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A connection as the host sees it.
#[derive(Debug)]
pub struct HostConn {
    pub link: LinkId,
    /// Output the pipe could not take yet.
    pub out: VecDeque<Bytes>,
    pub out_len: usize,
    /// `Blocked` was reported and `Writable` not yet.
    pub blocked: bool,
    pub read_paused: bool,
    /// The broker closed it: the rest of the output, then the end of the stream.
    pub closing: bool,
    /// This broker dialed it (a bridge): it writes the link's `up` pipe and reads `down`.
    pub dialed: bool,
}

impl HostConn {
    pub fn new(link: LinkId, dialed: bool) -> HostConn {
        HostConn {
            link,
            out: VecDeque::new(),
            out_len: 0,
            blocked: false,
            read_paused: false,
            closing: false,
            dialed,
        }
    }
}

#[derive(Debug)]
pub struct Host {
    pub config: Config,
    pub broker: Option<Broker>,
    pub conns: BTreeMap<ConnId, HostConn>,
    pub next_conn: u64,
    pub wake_at: Option<u64>,
    pub dirty: BTreeSet<ConnId>,
    pub disk: Disk,
    /// The daemon's log writer and compactor (`storage.rs`).
    pub log: Log,
    /// The last LSN handed to the writer, and the last reported durable.
    pub written_lsn: Lsn,
    pub durable_lsn: Lsn,
    pub fail_next_write: bool,
    /// Every record the broker wrote, applied: its durable state as it will be once synced.
    pub shadow: State,
    /// Queue-full drops counted by the running broker so far.
    seen_drops: u64,
    /// `Discarded` records the running broker wrote.
    discarded_records: u64,
    pub restart_pending: bool,
    /// Restarts so far: names the running broker.
    pub incarnation: u64,
    /// Most output a connection may have waiting in the driver (see `Host::new`).
    output_bound: usize,
}

impl Host {
    /// `largest_publish`: the largest PUBLISH packet of the run.
    pub fn new(config: Config, largest_publish: usize, chunk_max: usize) -> Host {
        // What the broker may have handed over by the time the driver reports the connection
        // blocked, and after: its output limit (QoS 0 and reading stop there), the window of
        // QoS 1 and 2 messages in flight (they are bounded by the window, not by that limit:
        // `max_inflight_messages` 0 means as many as the client's Receive Maximum), retained
        // messages sent on subscribe, and the answers to one chunk of input.
        let window = match config.max_inflight_messages {
            0 => usize::from(u16::MAX),
            n => usize::from(n),
        };
        let output_bound = config.max_connection_buffer
            + (window + config.max_retained_messages) * largest_publish
            + 4 * chunk_max
            + 64 * 1024;
        Host {
            output_bound,
            config,
            broker: None,
            conns: BTreeMap::new(),
            next_conn: 1,
            wake_at: None,
            dirty: BTreeSet::new(),
            disk: Disk::default(),
            log: Log::default(),
            written_lsn: 0,
            durable_lsn: 0,
            fail_next_write: false,
            shadow: State::default(),
            seen_drops: 0,
            discarded_records: 0,
            restart_pending: false,
            incarnation: 0,
        }
    }
}

fn broker_time(now: u64) -> Time {
    Time::from_millis(now / MS)
}

impl World {
    /// Records an event of host `h`: the first host's events as they always were, the others'
    /// marked with the host.
    pub fn host_push(&mut self, h: usize, ev: Ev) {
        if h == 0 {
            self.push(ev);
        } else {
            self.push(Ev::Host {
                host: h,
                ev: Box::new(ev),
            });
        }
    }

    pub fn host_start(&mut self, h: usize) {
        let bug = self.hosts[h].config.bug;
        match storage::recover(&mut self.hosts[h].disk, bug) {
            Ok(plan) => self.storage_start(h, &plan),
            Err(e) => return self.fail("recovery of an empty directory", e.to_string()),
        }
        self.hosts[h].broker = Some(Broker::new(self.hosts[h].config.clone()));
        self.after_broker(h);
    }

    /// Hands the broker one input and carries out what follows.
    pub(crate) fn broker_input(
        &mut self,
        h: usize,
        what: &'static str,
        conn: ConnId,
        input: Input<'_>,
    ) {
        let now = broker_time(self.now);
        if self.hosts[h].broker.is_none() {
            return;
        }
        self.host_push(h, Ev::Input { what, conn: conn.0 });
        let broker = self.hosts[h].broker.as_mut().expect("broker");
        broker.handle(now, input);
        self.after_broker(h);
    }

    /// Carries out every action, flushing output into pipes (which may report `Blocked` or
    /// `Writable` and so produce more actions), then re-arms the broker's timer.
    fn after_broker(&mut self, h: usize) {
        loop {
            loop {
                let Some(broker) = self.hosts[h].broker.as_mut() else {
                    return;
                };
                let Some(action) = broker.poll_action() else {
                    break;
                };
                self.apply_action(h, action);
                if self.checker.failed() {
                    return;
                }
            }
            if self.hosts[h].dirty.is_empty() {
                break;
            }
            for conn in std::mem::take(&mut self.hosts[h].dirty) {
                self.flush_conn(h, conn);
            }
        }
        self.check_broker(h);
        self.rearm_broker(h);
    }

    fn apply_action(&mut self, h: usize, action: Action) {
        match action {
            Action::Send { conn, bytes } => {
                self.host_push(
                    h,
                    Ev::Action {
                        what: "send",
                        conn: conn.0,
                        bytes: bytes.len() as u32,
                    },
                );
                self.trace.bytes(&bytes);
                let Some(hc) = self.hosts[h].conns.get_mut(&conn) else {
                    return self.fail(
                        "driver protocol",
                        format!(
                            "Send to connection {} the broker closed or was told closed",
                            conn.0
                        ),
                    );
                };
                if hc.closing {
                    return self.fail(
                        "driver protocol",
                        format!("Send to connection {} after its Close", conn.0),
                    );
                }
                hc.out_len += bytes.len();
                hc.out.push_back(bytes);
                self.hosts[h].dirty.insert(conn);
            }
            Action::Close { conn } => {
                self.host_push(
                    h,
                    Ev::Action {
                        what: "close",
                        conn: conn.0,
                        bytes: 0,
                    },
                );
                let Some(hc) = self.hosts[h].conns.get_mut(&conn) else {
                    return self.fail(
                        "driver protocol",
                        format!(
                            "Close of connection {} the broker closed or was told closed",
                            conn.0
                        ),
                    );
                };
                if hc.closing {
                    return self.fail(
                        "driver protocol",
                        format!("connection {} closed twice", conn.0),
                    );
                }
                hc.closing = true;
                let (link, dialed) = (hc.link, hc.dialed);
                self.conn_end.entry(link).or_insert(self.now);
                // Nothing more is read from it.
                if let Some(l) = self.links.get_mut(&link) {
                    l.pipe(!dialed).close();
                }
                self.hosts[h].dirty.insert(conn);
            }
            Action::PauseRead { conn } => {
                self.host_push(
                    h,
                    Ev::Action {
                        what: "pause reading",
                        conn: conn.0,
                        bytes: 0,
                    },
                );
                if let Some(hc) = self.hosts[h].conns.get_mut(&conn) {
                    hc.read_paused = true;
                }
            }
            Action::ResumeRead { conn } => {
                self.host_push(
                    h,
                    Ev::Action {
                        what: "resume reading",
                        conn: conn.0,
                        bytes: 0,
                    },
                );
                if let Some(hc) = self.hosts[h].conns.get_mut(&conn) {
                    hc.read_paused = false;
                    let (link, dialed) = (hc.link, hc.dialed);
                    self.kick(link, !dialed);
                }
            }
            Action::Persist { lsn, bytes } => self.persist(h, lsn, bytes),
            Action::Dial { bridge, address } => self.dial(h, bridge, address),
        }
    }

    /// Moves a connection's output into its pipe as far as the pipe has room.
    fn flush_conn(&mut self, h: usize, conn: ConnId) {
        let capacity = self.params.net.capacity;
        let Some(hc) = self.hosts[h].conns.get_mut(&conn) else {
            return;
        };
        let (link, dialed) = (hc.link, hc.dialed);
        let Some(l) = self.links.get_mut(&link) else {
            // Gone entirely: nothing more can be written.
            hc.out.clear();
            hc.out_len = 0;
            return self.flushed(h, conn);
        };
        // What the reading end holds unread counts against the capacity too; a host reads all
        // it is given unless it paused reading, and then the bytes wait in the pipe.
        let unread = match l.dialer {
            Dialer::Client(c) if !dialed => match self.clients.get(c) {
                Some(cl) if cl.link == Some(link) => cl.sock.len(),
                _ => 0,
            },
            _ => 0,
        };
        let out = l.pipe(dialed);
        if out.closed || out.fin {
            // The reader is gone or the link was reset: written bytes vanish.
            hc.out.clear();
            hc.out_len = 0;
        } else {
            let mut room = capacity.saturating_sub(out.queued + unread);
            while room > 0 {
                let Some(front) = hc.out.front_mut() else {
                    break;
                };
                let n = room.min(front.len());
                let chunk = front.split_to(n);
                if front.is_empty() {
                    hc.out.pop_front();
                }
                hc.out_len -= n;
                room -= n;
                out.write(chunk);
            }
        }
        self.kick(link, dialed);
        self.flushed(h, conn);
    }

    /// After a flush: finish a close, or report the connection blocked or writable.
    fn flushed(&mut self, h: usize, conn: ConnId) {
        let now = broker_time(self.now);
        let bound = self.hosts[h].output_bound;
        let Some(hc) = self.hosts[h].conns.get_mut(&conn) else {
            return;
        };
        if hc.out_len > bound {
            let n = hc.out_len;
            return self.fail(
                "bounded memory",
                format!(
                    "connection {} has {n} bytes of output waiting in the driver",
                    conn.0
                ),
            );
        }
        if hc.out_len == 0 {
            if hc.closing {
                let (link, dialed) = (hc.link, hc.dialed);
                self.hosts[h].conns.remove(&conn);
                if let Some(l) = self.links.get_mut(&link) {
                    l.pipe(dialed).fin = true;
                }
                self.kick(link, dialed);
                self.cleanup(link);
                return;
            }
            if hc.blocked {
                hc.blocked = false;
                self.host_push(
                    h,
                    Ev::Input {
                        what: "writable",
                        conn: conn.0,
                    },
                );
                if let Some(b) = self.hosts[h].broker.as_mut() {
                    b.handle(now, Input::Writable { conn });
                }
            }
        } else if !hc.blocked && !hc.closing {
            hc.blocked = true;
            self.host_push(
                h,
                Ev::Input {
                    what: "blocked",
                    conn: conn.0,
                },
            );
            if let Some(b) = self.hosts[h].broker.as_mut() {
                b.handle(now, Input::Blocked { conn });
            }
        }
    }

    /// The dialing end of a link read bytes: room for more of the accepting broker's output.
    pub fn link_drained(&mut self, link: LinkId) {
        let Some((h, conn)) = self
            .links
            .get(&link)
            .and_then(|l| l.conn.map(|c| (l.host, c)))
        else {
            return;
        };
        if self.hosts[h]
            .conns
            .get(&conn)
            .is_some_and(|hc| hc.link == link)
        {
            self.hosts[h].dirty.insert(conn);
            self.after_broker(h);
        }
    }

    /// The accepting broker read bytes of a bridge link: room for more of the dialing
    /// broker's output.
    pub fn dialer_drained(&mut self, link: LinkId) {
        let Some(Dialer::Bridge {
            host,
            conn: Some(conn),
            ..
        }) = self.links.get(&link).map(|l| l.dialer)
        else {
            return;
        };
        if self.hosts[host]
            .conns
            .get(&conn)
            .is_some_and(|hc| hc.link == link)
        {
            self.hosts[host].dirty.insert(conn);
            self.after_broker(host);
        }
    }

    pub fn host_open(&mut self, h: usize, link: LinkId) {
        let conn = ConnId(self.hosts[h].next_conn);
        self.hosts[h].next_conn += 1;
        self.hosts[h].conns.insert(conn, HostConn::new(link, false));
        if let Some(l) = self.links.get_mut(&link) {
            l.conn = Some(conn);
            l.open = true;
        }
        self.broker_input(
            h,
            "open",
            conn,
            Input::Open(Open {
                conn,
                listener: ListenerId(0),
                peer: None,
                tls_identity: None,
            }),
        );
        self.kick(link, true);
    }

    pub fn host_received(&mut self, h: usize, conn: ConnId, bytes: &[u8]) {
        if self.hosts[h].conns.get(&conn).is_some_and(|hc| !hc.closing) {
            self.broker_input(h, "bytes", conn, Input::Received { conn, bytes });
        }
    }

    /// The end of the peer's stream reached the host.
    pub fn host_peer_closed(&mut self, h: usize, conn: ConnId) {
        if self.hosts[h].conns.get(&conn).is_some_and(|hc| !hc.closing) {
            let hc = self.hosts[h].conns.remove(&conn).expect("conn");
            self.hosts[h].dirty.remove(&conn);
            self.conn_end.entry(hc.link).or_insert(self.now);
            if let Some(l) = self.links.get_mut(&hc.link) {
                // Whatever the broker still had for it cannot be sent.
                l.pipe(hc.dialed).fin = true;
            }
            self.kick(hc.link, hc.dialed);
            self.broker_input(h, "closed", conn, Input::Closed { conn });
        }
    }

    fn rearm_broker(&mut self, h: usize) {
        let Some(broker) = self.hosts[h].broker.as_ref() else {
            return;
        };
        if let Some(t) = broker.poll_timeout() {
            let at = (t.as_millis() * MS).max(self.now);
            if self.hosts[h].wake_at.is_none_or(|w| at < w) {
                self.hosts[h].wake_at = Some(at);
                self.schedule(at, Event::BrokerWake(h, at));
            }
        }
    }

    pub fn broker_wake(&mut self, h: usize, at: u64) {
        if self.hosts[h].wake_at != Some(at) {
            return;
        }
        self.hosts[h].wake_at = None;
        self.broker_input(h, "tick", ConnId(0), Input::Tick);
        self.rearm_broker(h);
    }

    /// Checks the broker's counters against what the host knows, and collects its drops.
    fn check_broker(&mut self, h: usize) {
        let host = &mut self.hosts[h];
        let Some(broker) = host.broker.as_ref() else {
            return;
        };
        let stats = broker.stats().clone();
        if stats.dropped_queue_full > host.seen_drops {
            let n = stats.dropped_queue_full - host.seen_drops;
            host.seen_drops = stats.dropped_queue_full;
            self.checker.dropped(n);
        }
        let host = &self.hosts[h];
        if stats.dropped_queue_full
            + stats.dropped_too_large
            + stats.dropped_expired
            + stats.shared_handed_over
            < host.discarded_records
        {
            return self.fail(
                "drops are counted",
                format!(
                    "the broker discarded {} queued deliveries but counts {} dropped (queue full), {} (too large), {} (expired) and {} handed to another shared subscription member",
                    host.discarded_records,
                    stats.dropped_queue_full,
                    stats.dropped_too_large,
                    stats.dropped_expired,
                    stats.shared_handed_over
                ),
            );
        }
        if stats.dropped_retained_limit > 0 {
            return self.fail(
                "retained store equals the model",
                "a retained message was dropped though the limit fits every retained topic"
                    .to_owned(),
            );
        }
        // A connection the broker closed while output for it waited for the log is gone for
        // the broker before its `Close` reaches the driver.
        let open = host.conns.values().filter(|hc| !hc.closing).count() as u64;
        let settled = host.written_lsn == host.durable_lsn;
        if stats.connections_open > open || settled && stats.connections_open != open {
            self.fail(
                "broker state matches the driver",
                format!(
                    "the broker counts {} open connections, the driver {open}",
                    stats.connections_open
                ),
            );
        }
    }

    // --- The disk ------------------------------------------------------------------------------

    fn persist(&mut self, h: usize, lsn: Lsn, bytes: Bytes) {
        self.host_push(
            h,
            Ev::Persist {
                lsn,
                bytes: bytes.len() as u32,
            },
        );
        self.trace.bytes(&bytes);
        if lsn <= self.hosts[h].written_lsn {
            return self.fail(
                "log sequence numbers increase",
                format!("records up to {lsn} after {}", self.hosts[h].written_lsn),
            );
        }
        // The state the log adds up to must stay consistent and within the broker's limits.
        let scan = persist::scan(&bytes);
        if scan.damage.is_some() || scan.valid_len != bytes.len() {
            return self.fail(
                "records are well formed",
                format!(
                    "a batch of records up to {lsn} does not read back: {:?}",
                    scan.damage
                ),
            );
        }
        for (l, record) in &scan.records {
            if let persist::Record::Discarded {
                client_id,
                delivery_id,
            } = record
            {
                self.discarded(h, client_id, *delivery_id);
            }
            if let Err(e) = self.hosts[h].shadow.apply(*l, record) {
                return self.fail("records are consistent", format!("{e} ({record:?})"));
            }
        }
        self.check_memory_shadow(h);
        self.hosts[h].written_lsn = lsn;
        self.write_batch(h, lsn, bytes);
        self.watch_subscriptions(h);
    }

    /// The broker dropped a queued delivery and wrote it down: which message, for whom.
    fn discarded(&mut self, h: usize, client_id: &str, delivery_id: u64) {
        let host = &mut self.hosts[h];
        host.discarded_records += 1;
        let tag = host
            .shadow
            .sessions
            .get(client_id)
            .and_then(|s| s.deliveries.get(&delivery_id))
            .and_then(|d| host.shadow.messages.get(&d.message_id))
            .and_then(|e| crate::payload::parse(&e.message.payload).ok())
            .map(|(_, tag)| tag);
        let client = client_id
            .strip_prefix('c')
            .and_then(|n| n.parse::<usize>().ok());
        if let (Some(client), Some(tag)) = (client, tag) {
            self.checker.discards.insert((client, tag));
        }
    }

    /// The durable state of every persistent session stays within the broker's limits.
    fn check_memory_shadow(&mut self, h: usize) {
        let host = &self.hosts[h];
        let c = &host.config;
        if c.max_queued_messages == 0 {
            return;
        }
        let inflight = match c.max_inflight_messages {
            0 => usize::from(u16::MAX),
            n => usize::from(n),
        };
        let bound = c.max_queued_messages + inflight + c.max_retained_messages;
        let over = host
            .shadow
            .sessions
            .iter()
            .find(|(_, s)| s.deliveries.len() > bound)
            .map(|(id, s)| {
                let sent = s
                    .deliveries
                    .values()
                    .filter(|d| d.packet_id.is_some())
                    .count();
                let retained = s.deliveries.values().filter(|d| d.retain).count();
                (id.to_string(), s.deliveries.len(), sent, retained)
            });
        if let Some((id, n, sent, retained)) = over {
            let (queued, retained_max) = (c.max_queued_messages, c.max_retained_messages);
            self.fail(
                "bounded memory",
                format!(
                    "session {id} holds {n} messages ({sent} in flight, {retained} retained); queue {queued} + in flight {inflight} + retained {retained_max} allow {bound}",
                ),
            );
        }
    }

    // --- Crash and restart ---------------------------------------------------------------------

    /// The broker goes down: mostly a crash at whatever point it was, sometimes a graceful
    /// stop (`Shutdown`, then the log synced before the process exits).
    pub fn crash(&mut self, h: usize) {
        if self.rng_fault.chance(0.1) {
            self.host_push(h, Ev::Phase("graceful stop"));
            self.broker_input(h, "shutdown", ConnId(0), Input::Shutdown);
            self.storage_close(h);
            return self.die(h, false);
        }
        let power_loss = self.rng_disk.chance(self.params.disk.power_loss);
        self.die(h, power_loss);
    }

    fn die(&mut self, h: usize, power_loss: bool) {
        self.crashes += 1;
        let host = &mut self.hosts[h];
        host.broker = None;
        host.wake_at = None;
        self.storage_die(h);
        let host = &mut self.hosts[h];
        host.dirty.clear();
        host.seen_drops = 0;
        host.discarded_records = 0;
        // Every connection dies with the process: bytes already in the network may still
        // arrive (a random part of them), then the end of the stream; the rest is lost.
        let conns = std::mem::take(&mut host.conns);
        for hc in conns.values() {
            self.conn_end.entry(hc.link).or_insert(self.now);
            // What the broker wrote travels on; what it would have read is gone.
            let (read, write) = (!hc.dialed, hc.dialed);
            if let Some(l) = self.links.get_mut(&hc.link) {
                l.pipe(read).close();
                let out = l.pipe(write);
                if !out.closed {
                    let keep = self.rng_net.below(out.queued as u64 + 1) as usize;
                    out.truncate(keep);
                    out.fin = true;
                }
            }
            self.kick(hc.link, write);
            self.cleanup(hc.link);
        }
        let d = &self.params.disk;
        let (tear, flip) = (d.tear, d.bit_flip);
        let report = self.hosts[h]
            .disk
            .crash(&mut self.rng_disk, power_loss, tear, flip);
        self.host_push(
            h,
            Ev::Crash {
                power_loss: power_loss || report.lost > 0,
                kept: report.kept,
                lost: report.lost,
                flipped: report.flipped,
                undone: report.undone,
            },
        );
        self.hosts[h].restart_pending = true;
        let at = self.now + self.rng_fault.range(0, self.params.downtime_max);
        self.schedule(at, Event::Restart(h));
    }

    pub fn restart(&mut self, h: usize) {
        if self.hosts[h].broker.is_some() {
            return;
        }
        self.hosts[h].restart_pending = false;
        self.hosts[h].incarnation += 1;
        let bug = self.hosts[h].config.bug;
        let plan = match storage::recover(&mut self.hosts[h].disk, bug) {
            Ok(plan) => plan,
            Err(e) => {
                return self.fail(
                    "recovery never finds corruption after a crash",
                    e.to_string(),
                );
            }
        };
        let lsn = plan.state.last_lsn();
        self.host_push(
            h,
            Ev::Restart {
                records: plan.report.records,
                lsn,
                snapshot: plan.report.snapshot.is_some(),
                segments: plan.report.segments as u32,
                truncated: plan.report.truncated.as_ref().map_or(0, |t| t.2),
            },
        );
        self.storage_start(h, &plan);
        let host = &mut self.hosts[h];
        let broker = Broker::recover(host.config.clone(), &plan.state, broker_time(self.now));
        host.broker = Some(broker);
        host.written_lsn = lsn;
        host.durable_lsn = lsn;
        host.shadow = plan.state;
        // The writer starts before the broker does: a long log replayed is compacted at once.
        self.maybe_roll(h);
        self.check_memory_shadow(h);
        self.watch_subscriptions(h);
        self.after_broker(h);
    }
}
