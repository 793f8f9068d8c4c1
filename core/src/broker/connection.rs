//! Network connections as the broker sees them: the bytes in and out, and, once CONNECT has been
//! accepted, what the client asked for.

use super::ListenerId;
use super::message::Message;
use super::session::SessionKey;
use super::time::Time;
use crate::codec::{ByteString, ProtocolVersion};
use bytes::BytesMut;
use core::net::SocketAddr;
use std::sync::Arc;

/// A will message and its MQTT 5 Will Delay Interval in seconds.
#[derive(Debug, Clone)]
pub(crate) struct Will {
    pub msg: Arc<Message>,
    pub delay_secs: u32,
}

/// What a connected client asked for in CONNECT, and what the broker granted.
#[derive(Debug)]
pub(crate) struct Client {
    pub session: SessionKey,
    pub client_id: ByteString,
    pub version: ProtocolVersion,
    /// Keep alive in force, seconds; 0 turns it off.
    pub keep_alive: u16,
    pub will: Option<Will>,
    /// The client's Receive Maximum: outbound QoS 1 and 2 messages it accepts in flight.
    pub receive_maximum: u16,
    /// The client's Maximum Packet Size: larger messages are not sent to it [MQTT-3.1.2-27].
    pub max_packet_size: u32,
    /// The Session Expiry Interval of CONNECT, which limits what DISCONNECT may change.
    pub connect_session_expiry: u32,
}

#[derive(Debug)]
pub(crate) enum ConnState {
    /// Opened; CONNECT not yet received.
    AwaitingConnect,
    Connected(Client),
}

#[derive(Debug)]
pub(crate) struct Connection {
    pub listener: ListenerId,
    pub peer: Option<SocketAddr>,
    /// The verified TLS client certificate identity, if any.
    pub tls_identity: Option<ByteString>,
    pub opened: Time,
    /// Received bytes not yet decoded: at most one partial packet after each input.
    pub read_buf: BytesMut,
    /// Encoded packets not yet handed to the driver.
    pub out: BytesMut,
    /// The driver cannot write to the socket now.
    pub blocked: bool,
    /// The driver was asked to stop reading: output is backed up past its limit.
    pub read_paused: bool,
    /// When bytes last arrived, for keep alive. Any bytes count, not only whole packets: they
    /// prove the connection alive, and a large packet on a slow link must not time out halfway.
    pub last_received: Time,
    /// The keep alive timer currently scheduled.
    pub keep_alive_timer: Option<Time>,
    pub state: ConnState,
}

impl Connection {
    pub(crate) fn new(listener: ListenerId, peer: Option<SocketAddr>, now: Time) -> Connection {
        Connection {
            listener,
            peer,
            tls_identity: None,
            opened: now,
            read_buf: BytesMut::new(),
            out: BytesMut::new(),
            blocked: false,
            read_paused: false,
            last_received: now,
            keep_alive_timer: None,
            state: ConnState::AwaitingConnect,
        }
    }

    pub(crate) fn client(&self) -> Option<&Client> {
        match &self.state {
            ConnState::Connected(c) => Some(c),
            ConnState::AwaitingConnect => None,
        }
    }
}
