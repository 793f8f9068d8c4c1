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
use std::collections::VecDeque;
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
    /// The session, which has the client id.
    pub session: SessionKey,
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
    /// Opened at `opened`; CONNECT (or, on a bridge's link, CONNACK) not yet received.
    AwaitingConnect {
        opened: Time,
    },
    /// CONNECT asked for enhanced authentication, whose exchange runs (`Connection::auth`); the
    /// session is created or taken over only once it succeeds.
    Authenticating(Box<PendingConnect>),
    Connected(Client),
}

/// A checked CONNECT waiting for its enhanced authentication to finish.
#[derive(Debug)]
pub(crate) struct PendingConnect {
    /// When the connection opened, for the connect timeout.
    pub opened: Time,
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
    /// The verified TLS client certificate identity, if any. Boxed rather than a `ByteString`:
    /// half the size in every connection, and a copy only for the few that have one.
    pub tls_identity: Option<Box<str>>,
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
    /// Boxed: every other connection pays one pointer for it.
    pub bridge: Option<Box<BridgeLink>>,
}

/// What a connection dialed for a bridge is: which bridge, in which protocol version.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BridgeLink {
    pub id: super::bridge::BridgeId,
    pub version: ProtocolVersion,
    /// When output was last encoded for the link, for the bridge's PINGREQ.
    pub last_sent: Time,
}

impl Connection {
    pub(crate) fn new(listener: ListenerId, peer: Option<SocketAddr>, now: Time) -> Connection {
        Connection {
            listener,
            peer,
            tls_identity: None,
            read_buf: BytesMut::new(),
            out: BytesMut::new(),
            held: Held::default(),
            blocked: false,
            read_paused: false,
            last_received: now,
            keep_alive_timer: None,
            state: ConnState::AwaitingConnect { opened: now },
            auth: None,
            bridge: None,
        }
    }

    /// Bytes waiting to go to this connection, held ones included.
    pub(crate) fn pending_output(&self) -> usize {
        self.out.len() + self.held.bytes()
    }

    pub(crate) fn client(&self) -> Option<&Client> {
        match &self.state {
            ConnState::Connected(c) => Some(c),
            ConnState::AwaitingConnect { .. } | ConnState::Authenticating(_) => None,
        }
    }

    /// When the connection opened, while it waits for its CONNECT (or CONNACK) to be
    /// accepted: the connect timeout runs from then.
    pub(crate) fn opened(&self) -> Option<Time> {
        match &self.state {
            ConnState::AwaitingConnect { opened } => Some(*opened),
            ConnState::Authenticating(pending) => Some(pending.opened),
            ConnState::Connected(_) => None,
        }
    }
}

/// Output waiting for durability, in segments tagged with the LSN each must wait for.
///
/// Boxed, and there only while something is held: output waits for a few milliseconds at a
/// time (one fsync), and an idle connection should not carry an empty queue meanwhile.
#[derive(Debug, Default)]
pub(crate) struct Held(Option<Box<HeldSegments>>);

#[derive(Debug)]
struct HeldSegments {
    /// Never empty.
    segments: VecDeque<(Lsn, BytesMut)>,
    bytes: usize,
}

impl Held {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |h| h.bytes)
    }

    /// Encodes output that must wait for `lsn`, after everything held before it.
    pub(crate) fn push<E>(
        &mut self,
        lsn: Lsn,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<usize, E> {
        let held = self.0.get_or_insert_with(|| {
            Box::new(HeldSegments {
                segments: VecDeque::new(),
                bytes: 0,
            })
        });
        if held.segments.back().is_none_or(|(l, _)| *l != lsn) {
            held.segments.push_back((lsn, BytesMut::new()));
        }
        let Some((_, buf)) = held.segments.back_mut() else {
            return Ok(0);
        };
        let start = buf.len();
        let encoded = encode(buf);
        let n = buf.len() - start;
        held.bytes += n;
        if held.bytes == 0 {
            // Nothing was encoded (an error before the first byte): hold nothing.
            self.0 = None;
        }
        encoded.map(|()| n)
    }

    /// Moves every segment whose LSN is durable to `out`, in order.
    pub(crate) fn release(&mut self, durable: Lsn, out: &mut BytesMut) {
        let Some(held) = self.0.as_mut() else {
            return;
        };
        while held.segments.front().is_some_and(|(l, _)| *l <= durable) {
            if let Some((_, buf)) = held.segments.pop_front() {
                held.bytes -= buf.len();
                out.extend_from_slice(&buf);
            }
        }
        if held.segments.is_empty() {
            self.0 = None;
        }
    }
}
