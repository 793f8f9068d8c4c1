//! Network connections as the broker sees them: the bytes in and out, and, once CONNECT has been
//! accepted, what the client asked for.

use super::ListenerId;
use super::message::Message;
use super::session::SessionKey;
use super::time::Time;
use super::topic_alias::{InboundAliases, OutboundAliases};
use crate::auth::AuthExchange;
use crate::codec::{ByteString, Connect, ProtocolVersion};
use crate::persist::Lsn;
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
    /// Whether acknowledgements may carry Reason Strings: the client did not set Request
    /// Problem Information to 0 [MQTT-3.1.2-29] (5.0).
    pub problem_info: bool,
    /// Topic aliases the client set for its PUBLISH packets.
    pub inbound_aliases: InboundAliases,
    /// Topic aliases the broker set for PUBLISH packets to the client.
    pub outbound_aliases: OutboundAliases,
    /// The client announced itself as a bridge (the top bit of a 3.1.x protocol level,
    /// Mosquitto's `try_private`): its subscriptions get no local and retain as published, so
    /// what it forwards here does not go back to it.
    pub is_bridge: bool,
}

#[derive(Debug)]
pub(crate) enum ConnState {
    /// Opened; CONNECT not yet received.
    AwaitingConnect,
    /// CONNECT asked for enhanced authentication, whose exchange runs (`Connection::auth`); the
    /// session is created or taken over only once it succeeds.
    Authenticating(Box<PendingConnect>),
    Connected(Client),
}

/// A checked CONNECT waiting for its enhanced authentication to finish.
#[derive(Debug)]
pub(crate) struct PendingConnect {
    pub connect: Connect,
    pub client_id: ByteString,
    /// The client id the broker assigned, to announce in CONNACK.
    pub assigned: Option<ByteString>,
    pub keep_alive: u16,
    /// The keep alive the broker imposes, to announce in CONNACK.
    pub server_keep_alive: Option<u16>,
}

/// MQTT 5 enhanced authentication of a connection (5.0, 4.12): the method of its CONNECT, which
/// every AUTH must repeat, and the exchange under way, at CONNECT or re-authenticating.
#[derive(Debug)]
pub(crate) struct EnhancedAuth {
    pub method: ByteString,
    /// The client did not set Request Problem Information to 0: Reason Strings may be sent.
    pub problem_information: bool,
    /// The client's Maximum Packet Size.
    pub max_packet_size: u32,
    /// The exchange waiting for the client's next AUTH; `None` between exchanges.
    pub exchange: Option<Box<dyn AuthExchange>>,
    /// Messages from the client and bytes of their Authentication Data in this exchange,
    /// bounded by `Config::max_auth_rounds` and `Config::max_auth_data`.
    pub rounds: u32,
    pub data_bytes: usize,
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
    /// Encoded packets that wait for records to be durable, after `out` in the stream.
    pub held: Held,
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
    /// Set when the client's CONNECT named an Authentication Method.
    pub auth: Option<Box<EnhancedAuth>>,
    /// Set on a connection this broker dialed for a bridge: the broker is the client on it.
    pub bridge: Option<BridgeLink>,
    /// When output was last encoded for it, for a bridge's PINGREQ.
    pub last_sent: Time,
}

/// What a connection dialed for a bridge is: which bridge, in which protocol version.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BridgeLink {
    pub id: super::bridge::BridgeId,
    pub version: ProtocolVersion,
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
            held: Held::default(),
            blocked: false,
            read_paused: false,
            last_received: now,
            keep_alive_timer: None,
            state: ConnState::AwaitingConnect,
            auth: None,
            bridge: None,
            last_sent: now,
        }
    }

    /// Bytes waiting to go to this connection, held ones included.
    pub(crate) fn pending_output(&self) -> usize {
        self.out.len() + self.held.bytes
    }

    pub(crate) fn client(&self) -> Option<&Client> {
        match &self.state {
            ConnState::Connected(c) => Some(c),
            ConnState::AwaitingConnect | ConnState::Authenticating(_) => None,
        }
    }
}

/// Output waiting for durability, in segments tagged with the LSN each must wait for.
#[derive(Debug, Default)]
pub(crate) struct Held {
    segments: std::collections::VecDeque<(Lsn, BytesMut)>,
    pub bytes: usize,
}

impl Held {
    pub(crate) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Encodes output that must wait for `lsn`, after everything held before it.
    pub(crate) fn push<E>(
        &mut self,
        lsn: Lsn,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<usize, E> {
        if self.segments.back().is_none_or(|(l, _)| *l != lsn) {
            self.segments.push_back((lsn, BytesMut::new()));
        }
        let Some((_, buf)) = self.segments.back_mut() else {
            return Ok(0);
        };
        let start = buf.len();
        encode(buf)?;
        let n = buf.len() - start;
        self.bytes += n;
        Ok(n)
    }

    /// Moves every segment whose LSN is durable to `out`, in order.
    pub(crate) fn release(&mut self, durable: Lsn, out: &mut BytesMut) {
        while self.segments.front().is_some_and(|(l, _)| *l <= durable) {
            if let Some((_, buf)) = self.segments.pop_front() {
                self.bytes -= buf.len();
                out.extend_from_slice(&buf);
            }
        }
    }
}
