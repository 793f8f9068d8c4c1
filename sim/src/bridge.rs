//! The driver's side of bridges: a broker's `Action::Dial` becomes a link from its host to the
//! remote broker's host, which sees a plain `Input::Open` like any client's. The dialing host
//! answers `Input::Dialed` once the remote accepted (a latency after the attempt reached it),
//! and `Input::DialFailed` when the remote broker is down (refused) or the brokers are
//! partitioned (no answer within `DIAL_TIMEOUT`). From then on the dialing host drives its end
//! of the link like any connection, from the other side of the pipes: it writes `up` and reads
//! `down`, and a crash of either broker ends the link as it ends a client's.
//!
//! Addresses name hosts: `host_name(h)`; the port is not looked at.

use crate::host::HostConn;
use crate::net::{Dialer, LinkId};
use crate::trace::Ev;
use crate::world::{Event, World};
use midge_core::broker::bridge::BridgeId;
use midge_core::broker::{ConnId, Input};

/// The address a bridge dials to reach host `h`.
pub fn host_name(h: usize) -> String {
    format!("broker-{h}")
}

fn host_of(name: &str) -> Option<usize> {
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
