//! Target `broker`: the broker state machine driven by a sequence of structured operations over
//! several connections, with its invariants checked after every step.
//!
//! The run plays the driver's part (as the daemon and the simulator do) and checks, after each
//! operation and everything the broker asked for in response:
//! - every byte sent decodes as packets of the connection's version, within the client's
//!   Maximum Packet Size, CONNACK first, topic aliases and the number of unacknowledged
//!   messages within what the client announced (see [`peer`]);
//! - nothing is sent to, closed or paused on a connection that is closed;
//! - every `Persist` batch scans cleanly, ends with its `Commit`, continues the LSNs and is
//!   consistent with the records before it; a crash keeps what a disk could keep, reads back
//!   without corruption, and the broker recovered from it holds as many sessions and retained
//!   messages as the records say (see [`disk`]);
//! - `poll_timeout` is never in the past;
//! - the counters agree with what the driver saw (connections open, bytes sent) and with the
//!   configured limits.

mod disk;
mod ops;
mod peer;

pub use disk::{Disk, check_snapshot};
pub use peer::Peer;

use arbitrary::{Arbitrary, Unstructured};
use bytes::BytesMut;
use midge_core::broker::{Action, Broker, Config, ConnId, Input, ListenerId, Open, Time};
use ops::{Op, Run, SLOTS};
use std::collections::{BTreeMap, BTreeSet};

/// Most operations in one run, most ticks one advance of the clock may take, and most ticks in
/// a whole run: enough to reach any state a few clients can, short enough to keep the fuzzer
/// fast. (Without the run's budget, days of `$SYS` publications into an unlimited queue made
/// one input take 35 s, every tick walking the growing queue.)
const MAX_OPS: usize = 64;
const MAX_TICKS: usize = 1_000;
const MAX_RUN_TICKS: usize = 4_000;

/// Runs the operations the input describes.
pub fn run(data: &[u8]) {
    let u = Unstructured::new(data);
    let Ok(run) = Run::arbitrary_take_rest(u) else {
        return;
    };
    let mut world = World::new(run.config.config(), run.config.auto_durable);
    for op in run.ops.iter().take(MAX_OPS) {
        world.step(op);
    }
}

/// The operations an input stands for, one per line.
pub fn describe(data: &[u8]) -> String {
    match Run::arbitrary_take_rest(Unstructured::new(data)) {
        Ok(run) => {
            let mut out = format!("{:?}\n", run.config.config());
            for op in run.ops.iter().take(MAX_OPS) {
                out += &format!("{op:?}\n");
            }
            out
        }
        Err(e) => format!("not a run: {e}"),
    }
}

/// The broker and the driver's view of it.
struct World {
    config: Config,
    broker: Broker,
    now: Time,
    auto_durable: bool,
    next_conn: u64,
    slots: [Option<ConnId>; SLOTS as usize],
    /// Connections open as far as the driver knows, with their clients' view.
    peers: BTreeMap<ConnId, Peer>,
    closed: BTreeSet<ConnId>,
    /// `Open` inputs and bytes sent since the broker started.
    opens: u64,
    bytes_sent: u64,
    disk: disk::Disk,
    /// Print every input and action (`MIDGE_FUZZ_TRACE=1`), for reading a crash.
    trace: bool,
    /// Deadline ticks left in this run; once spent, the clock jumps straight to its target.
    ticks_left: usize,
}

impl World {
    fn new(config: Config, auto_durable: bool) -> World {
        World {
            broker: Broker::new(config.clone()),
            config,
            now: Time::ZERO,
            auto_durable,
            next_conn: 1,
            slots: [None; SLOTS as usize],
            peers: BTreeMap::new(),
            closed: BTreeSet::new(),
            opens: 0,
            bytes_sent: 0,
            disk: disk::Disk::default(),
            trace: std::env::var_os("MIDGE_FUZZ_TRACE").is_some(),
            ticks_left: MAX_RUN_TICKS,
        }
    }

    /// The open connection in a slot.
    fn live(&self, slot: u8) -> Option<ConnId> {
        self.slots[usize::from(slot % SLOTS)].filter(|c| self.peers.contains_key(c))
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Open { slot } => {
                if let Some(old) = self.live(*slot) {
                    self.peer_closed(old);
                }
                let conn = ConnId(self.next_conn);
                self.next_conn += 1;
                self.slots[usize::from(slot % SLOTS)] = Some(conn);
                self.peers
                    .insert(conn, Peer::new(self.config.max_packet_size));
                self.opens += 1;
                self.input(Input::Open(Open {
                    conn,
                    listener: ListenerId(0),
                    peer: None,
                    tls_identity: None,
                }));
            }
            Op::Send {
                slot,
                packet,
                split,
            } => {
                if let Some(conn) = self.live(*slot) {
                    let packet = packet.packet(self.peers[&conn].encoding_version());
                    self.send_packet(conn, &packet, *split);
                }
            }
            Op::Respond { slot, which, fail } => {
                if let Some(conn) = self.live(*slot) {
                    let owed = &mut self.peers.get_mut(&conn).expect("live").owed;
                    if !owed.is_empty() {
                        let owed = owed.remove(usize::from(*which) % owed.len());
                        self.send_packet(conn, &ops::response(owed, *fail), None);
                    }
                }
            }
            Op::Raw { slot, bytes } => {
                if let Some(conn) = self.live(*slot) {
                    self.receive(conn, &bytes[..bytes.len().min(256)], None);
                }
            }
            Op::Close { slot } => {
                if let Some(conn) = self.live(*slot) {
                    self.peer_closed(conn);
                }
            }
            Op::Blocked { slot } => {
                if let Some(conn) = self.live(*slot) {
                    self.input(Input::Blocked { conn });
                }
            }
            Op::Writable { slot } => {
                if let Some(conn) = self.live(*slot) {
                    self.input(Input::Writable { conn });
                }
            }
            Op::AdvanceMs { ms } => self.advance(u64::from(*ms)),
            Op::AdvanceSecs { secs } => self.advance(u64::from(*secs) * 1000),
            Op::Durable { upto } => {
                if let Some(lsn) = self.disk.make_durable(*upto) {
                    self.input(Input::Durable { lsn });
                }
            }
            Op::Crash { extra } => self.crash(*extra),
            Op::Shutdown => self.input(Input::Shutdown),
        }
    }

    fn send_packet(&mut self, conn: ConnId, packet: &midge_core::codec::Packet, split: Option<u8>) {
        let mut bytes = BytesMut::new();
        // A packet the encoder refuses (an empty SUBSCRIBE, say) is not sent: the codec's own
        // target covers encoding.
        if packet
            .encode(self.peers[&conn].encoding_version(), &mut bytes)
            .is_ok()
        {
            self.receive(conn, &bytes, split);
        }
    }

    /// The client's bytes arrive, in one piece or two.
    fn receive(&mut self, conn: ConnId, bytes: &[u8], split: Option<u8>) {
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.client_sent(bytes);
        }
        let at = split.map_or(bytes.len(), |s| usize::from(s).min(bytes.len()));
        let (first, second) = bytes.split_at(at);
        self.input(Input::Received { conn, bytes: first });
        if !second.is_empty() && self.peers.contains_key(&conn) {
            self.input(Input::Received {
                conn,
                bytes: second,
            });
        }
    }

    fn peer_closed(&mut self, conn: ConnId) {
        self.peers.remove(&conn);
        self.closed.insert(conn);
        self.input(Input::Closed { conn });
    }

    /// Moves the clock to `ms` later, ticking at every deadline the broker asks for on the way.
    fn advance(&mut self, ms: u64) {
        let target = self.now.plus_millis(ms);
        for _ in 0..MAX_TICKS.min(self.ticks_left) {
            match self.broker.poll_timeout() {
                Some(t) if t <= target => {
                    self.ticks_left -= 1;
                    self.now = self.now.max(t);
                    self.input(Input::Tick);
                }
                _ => break,
            }
        }
        self.now = self.now.max(target);
        self.input(Input::Tick);
    }

    /// The broker stops without warning; the driver forgets every connection and restarts the
    /// broker from what its disk kept.
    fn crash(&mut self, extra: u16) {
        let (state, disk) = self.disk.crash(extra);
        self.broker = Broker::recover(self.config.clone(), &state, self.now);
        self.disk = disk;
        self.closed.extend(self.peers.keys().copied());
        self.peers.clear();
        self.opens = 0;
        self.bytes_sent = 0;
        let stats = self.broker.stats();
        assert_eq!(
            stats.sessions,
            state.sessions.len() as u64,
            "recovered sessions"
        );
        assert_eq!(
            stats.retained_messages,
            state.retained.len() as u64,
            "recovered retained messages"
        );
        self.drain();
        self.check();
    }

    fn input(&mut self, input: Input<'_>) {
        if self.trace {
            println!("{:?} <- {input:?}", self.now);
        }
        self.broker.handle(self.now, input);
        self.drain();
        self.check();
    }

    /// Carries out every action, checking each; reports durability at once when the disk does.
    fn drain(&mut self) {
        loop {
            while let Some(action) = self.broker.poll_action() {
                self.action(action);
            }
            if !self.auto_durable {
                return;
            }
            let Some(lsn) = self.disk.make_durable(None) else {
                return;
            };
            self.broker.handle(self.now, Input::Durable { lsn });
        }
    }

    fn action(&mut self, action: Action) {
        if self.trace {
            println!("    -> {action:?}");
        }
        let conn = match &action {
            Action::Send { conn, .. }
            | Action::Close { conn }
            | Action::PauseRead { conn }
            | Action::ResumeRead { conn } => Some(*conn),
            Action::Persist { .. } | Action::Dial { .. } => None,
        };
        if let Some(conn) = conn {
            assert!(
                conn.0 < self.next_conn,
                "an action for a connection never opened: {action:?}"
            );
            assert!(
                !self.closed.contains(&conn),
                "an action for a closed connection: {action:?}"
            );
        }
        match action {
            Action::Send { conn, bytes } => {
                self.bytes_sent += bytes.len() as u64;
                if let Some(peer) = self.peers.get_mut(&conn) {
                    peer.broker_sent(&bytes);
                }
            }
            Action::Close { conn } => {
                self.peers.remove(&conn);
                self.closed.insert(conn);
            }
            Action::PauseRead { .. } | Action::ResumeRead { .. } => {}
            Action::Dial { .. } => panic!("a bridge dialed with no bridge configured"),
            Action::Persist { lsn, bytes } => {
                assert!(self.config.persistence, "Persist without persistence");
                self.disk.persist(lsn, &bytes);
            }
        }
    }

    fn check(&self) {
        if let Some(t) = self.broker.poll_timeout() {
            assert!(
                t >= self.now,
                "poll_timeout {t:?} is before now {:?}",
                self.now
            );
        }
        let s = self.broker.stats();
        // Output produced after a record that is not yet durable is held, closes included, so
        // the driver may still see open a connection the broker has closed; once everything
        // is durable the two views agree.
        if self.disk.durable == self.disk.written {
            assert_eq!(
                s.connections_open,
                self.peers.len() as u64,
                "connections open"
            );
            assert_eq!(s.bytes_sent, self.bytes_sent, "bytes sent");
        } else {
            assert!(s.connections_open <= self.peers.len() as u64, "{s:?}");
            assert!(s.bytes_sent >= self.bytes_sent, "{s:?}");
        }
        assert_eq!(s.connections_opened, self.opens, "connections opened");
        assert!(s.clients_connected <= s.connections_open, "{s:?}");
        assert!(s.clients_connected <= s.sessions, "{s:?}");
        assert!(s.clients_maximum >= s.clients_connected, "{s:?}");
        assert!(s.sessions <= self.config.max_sessions as u64, "{s:?}");
        assert!(
            s.retained_messages <= self.config.max_retained_messages as u64,
            "{s:?}"
        );
        assert!(s.publish_sent <= s.messages_sent, "{s:?}");
        assert!(s.messages_received <= s.bytes_received, "{s:?}");
    }
}
