//! Two brokers and the network between them, for bridge tests. A bridge's `Action::Dial` is
//! answered by opening a connection on the broker its address names (host "a" or "b"; any
//! other host, or one marked down, refuses), and bytes are shuttled both ways until nothing
//! moves. Tests can cut and stall links, refuse dials, move time and crash a broker (it comes
//! back from what its log made durable).
#![allow(dead_code)] // Each test uses a different part.

use crate::harness::World;
use bytes::BytesMut;
use midge_core::broker::bridge::BridgeId;
use midge_core::broker::{Config, ConnId, Time};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// One TCP connection a bridge dialed.
#[derive(Debug, Clone)]
pub struct Wire {
    pub dialer: Side,
    pub bridge: BridgeId,
    /// The connection on the dialing broker and on the broker dialed.
    pub out: ConnId,
    pub inn: ConnId,
    /// Bytes from the dialed broker are not delivered (a one-way stall).
    pub stalled: bool,
}

/// A dial a bridge asked for, as the network saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    pub at: Time,
    pub side: Side,
    pub bridge: BridgeId,
    pub address: usize,
    pub host: String,
    pub answered: bool,
}

pub struct Pair {
    pub a: World,
    pub b: World,
    pub a_config: Config,
    pub b_config: Config,
    pub wires: Vec<Wire>,
    /// Hosts that refuse connections.
    pub down: BTreeSet<String>,
    /// Every dial, in order.
    pub dials: Vec<Dial>,
}

impl Pair {
    pub fn new(a_config: Config, b_config: Config) -> Pair {
        let mut p = Pair {
            a: World::new(a_config.clone()),
            b: World::new(b_config.clone()),
            a_config,
            b_config,
            wires: Vec::new(),
            down: BTreeSet::new(),
            dials: Vec::new(),
        };
        p.a.drain();
        p.b.drain();
        p.pump();
        p
    }

    pub fn world(&mut self, side: Side) -> &mut World {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn config(&self, side: Side) -> &Config {
        match side {
            Side::A => &self.a_config,
            Side::B => &self.b_config,
        }
    }

    pub fn now(&self) -> Time {
        self.a.now.max(self.b.now)
    }

    /// Moves everything that can move until nothing does.
    pub fn pump(&mut self) {
        for _ in 0..100_000 {
            if !self.step(0) {
                return;
            }
        }
        panic!("the brokers never fell quiet: a bridge loop?");
    }

    /// The things that can happen next on the network.
    fn moves(&self) -> Vec<Move> {
        let mut moves = Vec::new();
        for side in [Side::A, Side::B] {
            let w = match side {
                Side::A => &self.a,
                Side::B => &self.b,
            };
            if !w.dials.is_empty() {
                moves.push(Move::Dial(side));
            }
        }
        for i in 0..self.wires.len() {
            moves.push(Move::Wire(i));
        }
        moves
    }

    /// Does one thing that can happen, the `choice`th (modulo) of those that can; false when
    /// nothing can. A wire step carries what each end sent to the other and reports closes.
    pub fn step(&mut self, choice: usize) -> bool {
        let moves = self.moves();
        let mut tried = 0;
        while tried < moves.len() {
            let m = moves[(choice + tried) % moves.len()];
            let did = match m {
                Move::Dial(side) => {
                    self.answer_dial(side);
                    true
                }
                Move::Wire(i) => self.carry(i),
            };
            if did {
                return true;
            }
            tried += 1;
        }
        false
    }

    fn answer_dial(&mut self, side: Side) {
        let (bridge, address) = self.world(side).dials.remove(0);
        let cfg = &self.config(side).bridges[bridge.0 as usize];
        let host = cfg.addresses[address].host.clone();
        let version = cfg.protocol;
        let target = match host.as_str() {
            "a" => Some(Side::A),
            "b" => Some(Side::B),
            _ => None,
        }
        .filter(|_| !self.down.contains(&host));
        let at = self.now();
        self.dials.push(Dial {
            at,
            side,
            bridge,
            address,
            host,
            answered: target.is_some(),
        });
        match target {
            None => self
                .world(side)
                .input(midge_core::broker::Input::DialFailed { bridge }),
            Some(target) => {
                let inn = self.world(target).open(version);
                let out = self.world(side).fresh_conn();
                self.wires.push(Wire {
                    dialer: side,
                    bridge,
                    out,
                    inn,
                    stalled: false,
                });
                self.world(side)
                    .input(midge_core::broker::Input::Dialed { bridge, conn: out });
            }
        }
    }

    /// Carries bytes both ways on wire `i` and its close; false if nothing moved.
    fn carry(&mut self, i: usize) -> bool {
        let wire = self.wires[i].clone();
        let (d, t) = (wire.dialer, wire.dialer.other());
        let mut moved = false;
        let up = self.world(d).take_bytes(wire.out);
        if !up.is_empty() {
            self.world(t).send_raw(wire.inn, &up);
            moved = true;
        }
        if !wire.stalled {
            let down = self.world(t).take_bytes(wire.inn);
            if !down.is_empty() {
                self.world(d).send_raw(wire.out, &down);
                moved = true;
            }
        }
        let out_closed = self.world(d).is_closed(wire.out);
        let in_closed = self.world(t).is_closed(wire.inn);
        if out_closed || in_closed {
            if !out_closed {
                self.world(d).peer_close(wire.out);
            }
            if !in_closed {
                self.world(t).peer_close(wire.inn);
            }
            self.wires.remove(i);
            moved = true;
        }
        moved
    }

    /// Cuts every wire: both ends see the connection fail.
    pub fn cut(&mut self) {
        for wire in std::mem::take(&mut self.wires) {
            let d = wire.dialer;
            self.world(d).peer_close(wire.out);
            self.world(d.other()).peer_close(wire.inn);
        }
    }

    /// Stops delivering what the dialed brokers send on every wire.
    pub fn stall(&mut self) {
        for wire in &mut self.wires {
            wire.stalled = true;
        }
    }

    /// Moves time on both brokers by `ms`, waking each at its deadlines and letting the
    /// network carry everything between them.
    pub fn advance_ms(&mut self, ms: u64) {
        let target = self.now().plus_millis(ms);
        loop {
            self.pump();
            let next = [self.a.broker.poll_timeout(), self.b.broker.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .filter(|t| *t <= target);
            let Some(t) = next else {
                break;
            };
            let t = t.max(self.now());
            self.a.now = t;
            self.b.now = t;
            self.a.tick();
            self.b.tick();
        }
        self.a.now = target;
        self.b.now = target;
        self.a.tick();
        self.b.tick();
        self.pump();
    }

    pub fn advance_secs(&mut self, s: u64) {
        self.advance_ms(s * 1000);
    }

    /// Drops a broker and starts it again from the part of its log that was durable; its
    /// connections fail on the other side.
    pub fn crash(&mut self, side: Side) {
        let wires = std::mem::take(&mut self.wires);
        for wire in wires {
            if wire.dialer == side {
                self.world(side.other()).peer_close(wire.inn);
            } else if wire.dialer.other() == side {
                self.world(side.other()).peer_close(wire.out);
            } else {
                self.wires.push(wire);
            }
        }
        let now = self.now();
        let config = self.config(side).clone();
        let w = self.world(side);
        let disk = BytesMut::from(&w.disk[..w.durable_len]);
        let auto = w.auto_durable;
        *w = World::recovered(config, &disk, now);
        w.auto_durable = auto;
        w.drain();
        self.pump();
    }
}

#[derive(Debug, Clone, Copy)]
enum Move {
    Dial(Side),
    Wire(usize),
}
