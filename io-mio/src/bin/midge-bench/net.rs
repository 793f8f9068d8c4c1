//! Connections of the load generator: non-blocking TCP sockets on one mio poll, each with an
//! input buffer and an output buffer that is written in one go per loop turn.

use crate::wire::{self, Incoming};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    /// Output not yet written: `out[written..]`.
    pub out: Vec<u8>,
    written: usize,
    /// The socket reported writable since the last short write.
    writable: bool,
    /// The peer closed the connection or it failed.
    pub closed: bool,
}

/// Every connection of a run.
#[derive(Debug)]
pub struct Net {
    poll: Poll,
    events: Events,
    pub conns: Slab<Conn>,
    scratch: Vec<u8>,
    /// Connections with output to write at the end of the turn.
    dirty: Vec<usize>,
    v5: bool,
}

impl Net {
    pub fn new(v5: bool) -> io::Result<Net> {
        Ok(Net {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            conns: Slab::new(),
            scratch: vec![0; 256 * 1024],
            dirty: Vec::new(),
            v5,
        })
    }

    /// Starts connecting to `addr`; the connection is usable once it reports writable.
    pub fn open(&mut self, addr: SocketAddr) -> io::Result<usize> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Conn {
            stream,
            input: Vec::new(),
            out: Vec::new(),
            written: 0,
            writable: false,
            closed: false,
        });
        Ok(key)
    }

    /// Queues bytes for `key`, written at the next [`Net::flush`].
    pub fn send(&mut self, key: usize, bytes: &[u8]) {
        let conn = &mut self.conns[key];
        if conn.out.is_empty() {
            self.dirty.push(key);
        }
        conn.out.extend_from_slice(bytes);
    }

    /// Lets `f` append to the output of `key`.
    pub fn out(&mut self, key: usize) -> &mut Vec<u8> {
        let conn = &mut self.conns[key];
        if conn.out.len() == conn.written {
            self.dirty.push(key);
        }
        &mut conn.out
    }

    /// Waits for readiness up to `timeout`, then reads every readable connection, handing each
    /// whole packet to `on_packet(key, packet)`. Returns an error on a broken connection or a
    /// packet that cannot be read.
    pub fn turn(
        &mut self,
        timeout: Option<Duration>,
        mut on_packet: impl FnMut(&mut Net, usize, Incoming) -> Result<(), String>,
    ) -> Result<(), String> {
        self.poll
            .poll(&mut self.events, timeout)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| format!("poll: {e}"))?;
        let ready: Vec<(usize, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                (
                    e.token().0,
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable(),
                )
            })
            .collect();
        for (key, readable, writable) in ready {
            if !self.conns.contains(key) {
                continue;
            }
            if writable {
                self.conns[key].writable = true;
                self.dirty.push(key);
            }
            if readable {
                self.read(key, &mut on_packet)?;
            }
        }
        Ok(())
    }

    fn read(
        &mut self,
        key: usize,
        on_packet: &mut impl FnMut(&mut Net, usize, Incoming) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let conn = &mut self.conns[key];
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    conn.closed = true;
                    return Err(format!("connection {key} closed by the broker"));
                }
                Ok(n) => {
                    let mut input = std::mem::take(&mut conn.input);
                    input.extend_from_slice(&self.scratch[..n]);
                    let mut at = 0;
                    while let Some((packet, len)) = wire::read(&input[at..], self.v5)? {
                        at += len;
                        on_packet(self, key, packet)?;
                    }
                    input.drain(..at);
                    self.conns[key].input = input;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    conn.closed = true;
                    return Err(format!("connection {key}: {e}"));
                }
            }
        }
    }

    /// Writes the output of every connection that has some, one write per connection unless
    /// the socket takes less.
    pub fn flush(&mut self) -> Result<(), String> {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !conn.writable {
                continue;
            }
            while conn.written < conn.out.len() {
                match conn.stream.write(&conn.out[conn.written..]) {
                    Ok(n) => conn.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        conn.writable = false;
                        break;
                    }
                    // Not connected yet: the writable event comes when it is.
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        conn.writable = false;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("connection {key}: {e}")),
                }
            }
            if conn.written == conn.out.len() {
                conn.out.clear();
                conn.written = 0;
            }
        }
        // Connections still holding output wait for their writable event, which puts them back.
        dirty.clear();
        self.dirty = dirty;
        Ok(())
    }

    /// Sends DISCONNECT on every connection and closes them.
    pub fn close_all(&mut self) {
        for (_, conn) in self.conns.iter_mut() {
            let _ = conn.stream.write(&[0xE0, 0]);
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        }
        self.conns.clear();
    }
}
