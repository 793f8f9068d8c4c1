//! The network: each connection (a link) is two one-way, in-order byte streams (pipes) between
//! the end that connected (a model client, or a broker's host dialing a bridge) and the broker
//! host that accepted it. Bytes written to a pipe arrive after a latency, in chunks of random
//! size; a pipe can be stalled (one way), partitioned (both ways, with every other link of the
//! client, or every link between brokers), or reset, which cuts it at any byte and ends it.

use bytes::{Bytes, BytesMut};
use midge_core::broker::ConnId;
use midge_core::broker::bridge::BridgeId;
use std::collections::VecDeque;

pub type LinkId = u64;

/// One direction of a link.
#[derive(Debug, Default)]
pub struct Pipe {
    chunks: VecDeque<Bytes>,
    /// Bytes written and not yet delivered.
    pub queued: usize,
    /// The writer closed its end: after the queued bytes comes the end of the stream.
    pub fin: bool,
    /// A delivery event is pending.
    pub scheduled: bool,
    /// The reader is gone: nothing more is delivered, writes are dropped.
    pub closed: bool,
    /// Nothing is delivered before this time.
    pub stalled_until: u64,
}

impl Pipe {
    /// Appends bytes; false if the pipe no longer carries any.
    pub fn write(&mut self, bytes: Bytes) -> bool {
        if self.closed || self.fin {
            return false;
        }
        if !bytes.is_empty() {
            self.queued += bytes.len();
            self.chunks.push_back(bytes);
        }
        true
    }

    /// Takes up to `n` bytes from the front.
    pub fn take(&mut self, n: usize) -> Bytes {
        let n = n.min(self.queued);
        self.queued -= n;
        match self.chunks.front_mut() {
            Some(front) if front.len() > n => return front.split_to(n),
            Some(front) if front.len() == n => return self.chunks.pop_front().unwrap_or_default(),
            _ => {}
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            let want = n - out.len();
            if front.len() <= want {
                out.extend_from_slice(front);
                self.chunks.pop_front();
            } else {
                out.extend_from_slice(&front.split_to(want));
            }
        }
        out.freeze()
    }

    /// Keeps only the first `keep` queued bytes.
    pub fn truncate(&mut self, keep: usize) {
        if keep >= self.queued {
            return;
        }
        let kept = self.take(keep);
        self.chunks.clear();
        self.queued = 0;
        if !kept.is_empty() {
            self.queued = kept.len();
            self.chunks.push_back(kept);
        }
    }

    /// Something to deliver: bytes or the end of the stream.
    pub fn has_work(&self) -> bool {
        !self.closed && (self.queued > 0 || self.fin)
    }

    pub fn close(&mut self) {
        self.closed = true;
        self.chunks.clear();
        self.queued = 0;
    }
}

/// The end of a link that connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialer {
    /// A model client, by index.
    Client(usize),
    /// A broker's host, connecting one of its bridges: `conn` is the dialing broker's name for
    /// the link once the host answered `Dialed`; `incarnation` is the broker that asked for it.
    Bridge {
        host: usize,
        incarnation: u64,
        bridge: BridgeId,
        conn: Option<ConnId>,
    },
}

/// A network connection from a client (or a dialing broker) to a broker.
#[derive(Debug)]
pub struct Link {
    pub dialer: Dialer,
    /// The host that accepts the connection.
    pub host: usize,
    /// The accepting broker's name for it, once it accepted it.
    pub conn: Option<ConnId>,
    /// The connection reached the broker: the client's bytes may flow.
    pub open: bool,
    /// Client (dialer) to broker.
    pub up: Pipe,
    /// Broker to client (dialer).
    pub down: Pipe,
}

impl Link {
    pub fn new(dialer: Dialer, host: usize) -> Link {
        Link {
            dialer,
            host,
            conn: None,
            open: false,
            up: Pipe::default(),
            down: Pipe::default(),
        }
    }

    /// The model client at the dialing end, if it is one.
    pub fn client(&self) -> Option<usize> {
        match self.dialer {
            Dialer::Client(c) => Some(c),
            Dialer::Bridge { .. } => None,
        }
    }

    pub fn pipe(&mut self, up: bool) -> &mut Pipe {
        if up { &mut self.up } else { &mut self.down }
    }

    /// Both directions are over.
    pub fn finished(&self) -> bool {
        self.up.closed && self.down.closed
    }
}
