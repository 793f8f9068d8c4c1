//! The driver's side of bridges: a broker's `Action::Dial` becomes a link from its host to the
//! remote broker's host, which sees a plain `Input::Open` like any client's. The dialing host
//! answers `Input::Dialed` once the remote accepted (a latency after the attempt reached it),
//! and `Input::DialFailed` when the remote broker is down (refused) or the brokers are
//! partitioned (no answer within `DIAL_TIMEOUT`). From then on the dialing host drives its end
//! of the link like any connection, from the other side of the pipes: it writes `up` and reads
//! `down`, and a crash of either broker ends the link as it ends a client's.
//!
//! Addresses name hosts: `host_name(h)`; the port is not looked at.
//!
//! Two things are watched for the checker. The wire: every packet that crosses a bridge link
//! is decoded as the receiving broker reads it (`Tap`), and each PUBLISH must come from the
//! broker its message was published on (never back to it: a loop), with the name and at most
//! the QoS the configuration gives it (`crossing.rs`). And the subscriptions that forward
//! messages (`Watch`): the bridge's session on its own broker for `out` lines, on the remote
//! for `in` lines; from when they are durable, what is published is owed across.

use crate::checker::Checker;
use crate::crossing::Crossing;
use crate::host::HostConn;
use crate::net::{Dialer, LinkId};
use crate::payload;
use crate::trace::Ev;
use crate::world::{Event, World};
use bytes::BytesMut;
use midge_core::broker::bridge::{BridgeConfig, BridgeId};
use midge_core::broker::{ConnId, Input};
use midge_core::codec::{self, ByteString, Packet, ProtocolVersion};
use midge_core::persist::Lsn;
use std::collections::BTreeMap;

/// One direction of a bridge link, decoded as it is read.
#[derive(Debug)]
pub struct Tap {
    version: ProtocolVersion,
    rx: BytesMut,
    /// Topic aliases the sender set on this connection.
    aliases: BTreeMap<u16, ByteString>,
}

/// Subscriptions a direction of a bridge forwards by, on the broker that holds them.
#[derive(Debug)]
pub struct Watch {
    pub host: usize,
    pub session: String,
    pub filters: Vec<String>,
    /// Messages published on `from` are owed on `to` once these are durable.
    pub from: usize,
    pub to: usize,
    /// The LSN of the write that first held them all, awaiting durability.
    pending: Option<Lsn>,
    /// Durable since.
    pub since: Option<u64>,
}

/// The watches of bridge `config` of host `local`, dialing `remote`.
pub fn watches(local: usize, remote: usize, config: &BridgeConfig) -> Vec<Watch> {
    let mut out = Vec::new();
    let filters = |outward: bool| {
        let mut f: Vec<String> = config
            .topics
            .iter()
            .filter(|t| match t.direction {
                midge_core::broker::bridge::BridgeDirection::Out => outward,
                midge_core::broker::bridge::BridgeDirection::In => !outward,
                midge_core::broker::bridge::BridgeDirection::Both => true,
            })
            .map(|t| {
                let prefix = if outward {
                    &t.local_prefix
                } else {
                    &t.remote_prefix
                };
                format!("{prefix}{}", t.pattern)
            })
            .collect();
        f.sort();
        f.dedup();
        f
    };
    let (outward, inward) = (filters(true), filters(false));
    if !outward.is_empty() {
        out.push(Watch {
            host: local,
            session: config.local_clientid.clone(),
            filters: outward,
            from: local,
            to: remote,
            pending: None,
            since: None,
        });
    }
    if !inward.is_empty() {
        out.push(Watch {
            host: remote,
            session: config.remote_clientid.clone(),
            filters: inward,
            from: remote,
            to: local,
            pending: None,
            since: None,
        });
    }
    out
}

/// The address a bridge dials to reach host `h`.
pub fn host_name(h: usize) -> String {
    format!("broker-{h}")
}

/// The host an address names.
pub fn host_of(name: &str) -> Option<usize> {
    name.strip_prefix("broker-")?.parse().ok()
}

impl World {
    /// Host `h`'s broker asks for a connection of `bridge` to `addresses[address]`.
    pub(crate) fn dial(&mut self, h: usize, bridge: BridgeId, address: usize) {
        self.host_push(
            h,
            Ev::Action {
                what: "dial bridge",
                conn: u64::from(bridge.0),
                bytes: 0,
            },
        );
        let Some(config) = self.hosts[h].config.bridges.get(bridge.0 as usize) else {
            return self.fail(
                "driver protocol",
                format!("Dial of bridge {} that is not configured", bridge.0),
            );
        };
        let Some(addr) = config.addresses.get(address) else {
            return self.fail(
                "driver protocol",
                format!(
                    "Dial of address {address} of bridge {}, which has {}",
                    bridge.0,
                    config.addresses.len()
                ),
            );
        };
        let Some(remote) = host_of(&addr.host).filter(|r| *r < self.hosts.len()) else {
            let name = addr.host.clone();
            return self.fail(
                "simulator consistency",
                format!("bridge {} names {name}, no host of this run", bridge.0),
            );
        };
        let dialer = Dialer::Bridge {
            host: h,
            incarnation: self.hosts[h].incarnation,
            bridge,
            conn: None,
        };
        let link = self.new_link(dialer, remote);
        let at = self.now + self.latency();
        self.schedule(at, Event::LinkOpen(link));
    }

    /// The remote accepted: the dialing host learns it and names the connection.
    pub(crate) fn link_accepted(&mut self, link: LinkId) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let Dialer::Bridge {
            host: h,
            incarnation,
            bridge,
            ..
        } = l.dialer
        else {
            return;
        };
        if self.hosts[h].incarnation != incarnation || self.hosts[h].broker.is_none() {
            // The broker that dialed is gone: the connection ends unused.
            let l = self.links.get_mut(&link).expect("link");
            l.down.close();
            l.up.fin = true;
            self.kick(link, true);
            return self.cleanup(link);
        }
        let conn = ConnId(self.hosts[h].next_conn);
        self.hosts[h].next_conn += 1;
        self.hosts[h].conns.insert(conn, HostConn::new(link, true));
        if let Some(l) = self.links.get_mut(&link)
            && let Dialer::Bridge { conn: c, .. } = &mut l.dialer
        {
            *c = Some(conn);
        }
        self.broker_input(h, "dialed", conn, Input::Dialed { bridge, conn });
        // What the remote already sent (or the end of its stream) may now be read.
        self.kick(link, false);
    }

    /// No answer from the remote within the dial timeout.
    pub(crate) fn dial_timeout(&mut self, link: LinkId) {
        self.dial_failed(link);
    }

    /// The connection attempt of a bridge failed: the dialing broker is told, if it is still
    /// the one that asked.
    pub(crate) fn dial_failed(&mut self, link: LinkId) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.up.close();
        l.down.close();
        let dialer = l.dialer;
        self.cleanup(link);
        if let Dialer::Bridge {
            host: h,
            incarnation,
            bridge,
            ..
        } = dialer
            && self.hosts[h].incarnation == incarnation
        {
            self.broker_input(h, "dial failed", ConnId(0), Input::DialFailed { bridge });
        }
    }

    /// After host `h` wrote records, made them durable or restarted: the watches on it that
    /// now hold durably.
    pub(crate) fn watch_subscriptions(&mut self, h: usize) {
        let host = &self.hosts[h];
        for w in self.watches.iter_mut().filter(|w| w.host == h) {
            if w.since.is_some() {
                continue;
            }
            let held = host
                .shadow
                .sessions
                .get(w.session.as_str())
                .is_some_and(|s| {
                    w.filters
                        .iter()
                        .all(|f| s.subscriptions.contains_key(f.as_str()))
                });
            if !held {
                w.pending = None;
                continue;
            }
            // A crash may have lost the write that held them; a later one holds them again.
            let lsn = match w.pending {
                Some(l) if l <= host.written_lsn => l,
                _ => *w.pending.insert(host.written_lsn),
            };
            if host.durable_lsn >= lsn {
                w.since = Some(self.now);
                self.checker.bridge_ready.insert((w.from, w.to), self.now);
            }
        }
    }

    /// Bytes of a bridge link reached the broker at one end: what crossed.
    pub(crate) fn tap(&mut self, link: LinkId, up: bool, bytes: &[u8]) {
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let Dialer::Bridge { host, bridge, .. } = l.dialer else {
            return;
        };
        let (from, to) = if up { (host, l.host) } else { (l.host, host) };
        let version = self.hosts[host]
            .config
            .bridges
            .get(bridge.0 as usize)
            .map_or(ProtocolVersion::V3_1_1, |b| b.protocol);
        let tap = self.taps.entry((link, up)).or_insert_with(|| Tap {
            version,
            rx: BytesMut::new(),
            aliases: BTreeMap::new(),
        });
        tap.rx.extend_from_slice(bytes);
        loop {
            let tap = self.taps.get_mut(&(link, up)).expect("tap");
            let packet = match codec::decode_from(&mut tap.rx, tap.version, u32::MAX) {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(e) => {
                    return self.fail(
                        "the bridge link carries valid packets",
                        format!("from broker {from} to broker {to} on link {link}: {e}"),
                    );
                }
            };
            let Packet::Publish(mut p) = packet else {
                continue;
            };
            if let Some(alias) = p.properties.topic_alias {
                if p.topic.is_empty() {
                    match tap.aliases.get(&alias.get()) {
                        Some(t) => p.topic = t.clone(),
                        None => {
                            return self.fail(
                                "topic aliases stand for a topic",
                                format!(
                                    "broker {from} sent broker {to} topic alias {alias}, never set"
                                ),
                            );
                        }
                    }
                } else {
                    tap.aliases.insert(alias.get(), p.topic.clone());
                }
            }
            let Ok((_, tag)) = payload::parse(&p.payload) else {
                // The bridge's own state notifications carry no tag.
                continue;
            };
            let qos = p.qos_pid.qos();
            check_crossing(&mut self.checker, from, to, tag, &p.topic, qos);
            if self.checker.failed() {
                return;
            }
        }
    }

    /// What keeps a bridge from being done once faults heal: not connected, or messages still
    /// owed across it (its session on either broker holds deliveries).
    pub(crate) fn bridges_busy(&self) -> Option<String> {
        for (h, host) in self.hosts.iter().enumerate() {
            for (b, config) in host.config.bridges.iter().enumerate() {
                let bridge = BridgeId(b as u32);
                let up = host.conns.values().any(|hc| {
                    hc.dialed
                        && !hc.closing
                        && self.links.get(&hc.link).is_some_and(
                            |l| matches!(l.dialer, Dialer::Bridge { bridge: x, .. } if x == bridge),
                        )
                });
                if !up {
                    return Some(format!("broker {h}: bridge {b} is not connected"));
                }
                let local = host
                    .shadow
                    .sessions
                    .get(config.local_clientid.as_str())
                    .map_or(0, |s| s.deliveries.len());
                if local > 0 {
                    return Some(format!(
                        "broker {h}: bridge {b} has {local} messages to forward"
                    ));
                }
                let remote = config
                    .addresses
                    .first()
                    .and_then(|a| host_of(&a.host))
                    .and_then(|r| self.hosts.get(r));
                if let Some(remote) = remote {
                    let n = remote
                        .shadow
                        .sessions
                        .get(config.remote_clientid.as_str())
                        .map_or(0, |s| s.deliveries.len());
                    if n > 0 {
                        return Some(format!(
                            "broker {h}: bridge {b} has {n} messages to bring in"
                        ));
                    }
                }
            }
        }
        None
    }
}

/// One message crossing from broker `from` to `to`: it must come from where it was published,
/// with the name and QoS the bridge's model gives it.
fn check_crossing(
    checker: &mut Checker,
    from: usize,
    to: usize,
    tag: payload::Tag,
    topic: &str,
    qos: codec::QoS,
) {
    let Some(msg) = checker.msgs.get(&tag) else {
        return checker.fail(
            "no phantom messages",
            format!(
                "broker {from} sent broker {to} c{}#{} that was never published",
                tag.0, tag.1
            ),
        );
    };
    if msg.host != from {
        let origin = msg.host;
        return checker.fail(
            "no loop across the bridge",
            format!(
                "broker {from} sent c{}#{} ({topic}) to broker {to}; it was published on broker {origin}",
                tag.0, tag.1
            ),
        );
    }
    let expected = checker
        .crossing
        .as_ref()
        .and_then(|c: &Crossing| c.wire_name(from, to, &msg.topic));
    let Some((name, line_qos)) = expected else {
        let published = msg.topic.clone();
        return checker.fail(
            "only bridged topics cross",
            format!(
                "broker {from} sent c{}#{} (published on {published}) to broker {to} as {topic}; no line carries it",
                tag.0, tag.1
            ),
        );
    };
    if name != topic {
        let published = msg.topic.clone();
        return checker.fail(
            "the bridge renames topics by its lines",
            format!(
                "broker {from} sent c{}#{} (published on {published}) to broker {to} as {topic}, not {name}",
                tag.0, tag.1
            ),
        );
    }
    let most = msg.qos.min(line_qos);
    if qos > most {
        let published = msg.qos;
        return checker.fail(
            "QoS never above the published QoS",
            format!(
                "broker {from} sent c{}#{} to broker {to} at {qos:?}: published at {published:?}, line at {line_qos:?}",
                tag.0, tag.1
            ),
        );
    }
    *checker.crossings.entry(tag).or_default() += 1;
    let now = checker.now;
    checker.crossed_at.insert(tag, now);
}
