//! Authentication and authorization: the decisions the broker asks of the outside world.
//!
//! The broker calls an [`Authorizer`] when a client connects (who may connect, and as which user)
//! and before a message crosses a trust boundary: a client publishing to a topic, subscribing to
//! a filter, or receiving a message. The daemon implements it with Mosquitto-compatible password
//! and ACL files; the default allows everything. Decisions must be deterministic functions of
//! their inputs and the authorizer's own state, so that the broker stays deterministic.

use crate::broker::ListenerId;
use crate::codec::{ByteString, ConnectReason, ProtocolVersion};
use core::net::SocketAddr;
use std::fmt;

/// What a client presents in CONNECT, with what the transport knows about it.
#[derive(Debug, Clone, Copy)]
pub struct ConnectRequest<'a> {
    pub listener: ListenerId,
    pub version: ProtocolVersion,
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    /// The identity of a verified TLS client certificate.
    pub tls_identity: Option<&'a str>,
    pub peer: Option<SocketAddr>,
}

/// The answer to a [`ConnectRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectDecision {
    /// The client may connect, as this user (the user name it sent, or for example its
    /// certificate identity); `None` for an anonymous client.
    Accept { username: Option<ByteString> },
    /// The client is refused with this reason; 3.1.x clients see the nearest return code
    /// (0x04 for a bad user name or password, 0x05 for not authorized).
    Refuse(ConnectReason),
}

/// A connected client, as topic decisions see it.
#[derive(Debug, Clone, Copy)]
pub struct ClientRef<'a> {
    pub listener: ListenerId,
    pub client_id: &'a str,
    pub username: Option<&'a str>,
}

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Publish to a topic name (its wills included).
    Publish,
    /// Subscribe to a topic filter.
    Subscribe,
    /// Receive a message published to a topic name.
    Receive,
}

/// Decides who may connect and what they may do.
pub trait Authorizer: fmt::Debug + Send {
    /// Whether a client may connect.
    fn connect(&mut self, request: &ConnectRequest<'_>) -> ConnectDecision;

    /// Whether a connected client may publish, subscribe or receive on `topic`.
    fn authorize(&self, client: &ClientRef<'_>, access: Access, topic: &str) -> bool;

    /// False when [`Authorizer::authorize`] always allows, letting the broker skip the calls on
    /// its hot path.
    fn checks_topics(&self) -> bool {
        true
    }
}

/// Allows every client and every topic: the broker's default.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn connect(&mut self, request: &ConnectRequest<'_>) -> ConnectDecision {
        ConnectDecision::Accept {
            username: request.username.map(ByteString::from),
        }
    }

    fn authorize(&self, _: &ClientRef<'_>, _: Access, _: &str) -> bool {
        true
    }

    fn checks_topics(&self) -> bool {
        false
    }
}
