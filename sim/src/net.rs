//! The network: each connection (a link) is two one-way, in-order byte streams (pipes). Bytes
//! written to a pipe arrive after a latency, in chunks of random size; a pipe can be stalled
//! (one way), partitioned (both ways, with every other link of the client), or reset, which
//! cuts it at any byte and ends it.

use bytes::{Bytes, BytesMut};
use midge_core::broker::ConnId;
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

/// A network connection between a client and the broker.
#[derive(Debug)]
pub struct Link {
    pub client: usize,
    /// The broker's name for it, once the broker accepted it.
    pub conn: Option<ConnId>,
    /// The connection reached the broker: the client's bytes may flow.
    pub open: bool,
    /// Client to broker.
    pub up: Pipe,
    /// Broker to client.
    pub down: Pipe,
}

impl Link {
    pub fn new(client: usize) -> Link {
        Link {
            client,
            conn: None,
            open: false,
            up: Pipe::default(),
            down: Pipe::default(),
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
