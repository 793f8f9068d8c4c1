//! Authentication and authorization: the decisions the broker asks of the outside world.
//!
//! The broker calls an [`Authorizer`] when a client connects (who may connect, and as which user)
//! and before a message crosses a trust boundary: a client publishing to a topic, subscribing to
//! a filter, or receiving a message. The daemon implements it with Mosquitto-compatible password
//! and ACL files; the default allows everything. Decisions must be deterministic functions of
//! their inputs and the authorizer's own state, so that the broker stays deterministic.
//!
//! MQTT 5 enhanced authentication (5.0, 4.12) goes through an [`Authenticator`]: a client names
//! an Authentication Method in CONNECT and the two sides exchange AUTH packets until the
//! authenticator succeeds or fails. The broker drives the exchange and keeps its state, an
//! [`AuthExchange`], per connection; the authenticator only computes. [`scram`] implements
//! SCRAM-SHA-256. A client that authenticated this way is then passed to the [`Authorizer`] with
//! the user name the authenticator established, so connect decisions and ACLs still apply.

pub mod scram;

use crate::broker::ListenerId;
use crate::codec::{ByteString, ConnectReason, DisconnectReason, ProtocolVersion};
use bytes::Bytes;
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
    /// Set when an [`Authenticator`] has already authenticated `username` with this method
    /// (MQTT 5 enhanced authentication): there is no password, and the user name is proven.
    pub authentication_method: Option<&'a str>,
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

/// What the broker knows when a client starts an enhanced authentication exchange, in CONNECT or
/// by re-authenticating (AUTH 0x19).
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    pub listener: ListenerId,
    /// The client identifier (the assigned one for a client that sent none).
    pub client_id: &'a str,
    /// In CONNECT, the User Name the client sent, if any; when re-authenticating, the user name
    /// the connection is authenticated as. An authenticator should refuse to authenticate
    /// anyone else.
    pub username: Option<&'a str>,
    /// The identity of a verified TLS client certificate.
    pub tls_identity: Option<&'a str>,
    pub peer: Option<SocketAddr>,
    /// The Authentication Method: one [`Authenticator::supports`] accepted.
    pub method: &'a str,
    /// True for re-authentication of a connected client (5.0, 4.12.1).
    pub reauthenticating: bool,
}

/// Why an enhanced authentication failed. Each maps to the CONNACK reason code a failed CONNECT
/// gets and to the DISCONNECT reason code a failed re-authentication gets (DISCONNECT has no
/// 0x86, so a bad user name or password is 0x87 there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// The credentials are wrong: CONNACK 0x86, DISCONNECT 0x87.
    BadUserNameOrPassword,
    /// The client may not connect, or sent what the method does not allow: 0x87.
    NotAuthorized,
    /// The method cannot be used here (any more): 0x8C.
    BadAuthenticationMethod,
    /// The exchange broke the broker's limits (rounds or data): 0x87.
    LimitExceeded,
}

impl AuthFailure {
    /// The reason code of the CONNACK refusing a CONNECT.
    pub const fn connect_reason(self) -> ConnectReason {
        match self {
            AuthFailure::BadUserNameOrPassword => ConnectReason::BadUserNameOrPassword,
            AuthFailure::NotAuthorized | AuthFailure::LimitExceeded => ConnectReason::NotAuthorized,
            AuthFailure::BadAuthenticationMethod => ConnectReason::BadAuthenticationMethod,
        }
    }

    /// The reason code of the DISCONNECT ending a failed re-authentication.
    pub const fn disconnect_reason(self) -> DisconnectReason {
        match self {
            AuthFailure::BadAuthenticationMethod => DisconnectReason::BadAuthenticationMethod,
            _ => DisconnectReason::NotAuthorized,
        }
    }
}

/// What the authenticator answers to each message of the client.
#[derive(Debug)]
pub enum AuthStep {
    /// The server sends AUTH 0x18 (Continue authentication) with this data [MQTT-4.12.0-2]
    /// (5.0); the client's answer goes to `exchange`.
    Continue {
        data: Bytes,
        exchange: Box<dyn AuthExchange>,
    },
    /// The client is authenticated as `username`; `data` (for example SCRAM's server
    /// signature) goes in the CONNACK, or in AUTH 0x00 after re-authentication.
    Success {
        data: Option<Bytes>,
        username: ByteString,
    },
    /// The client is refused.
    Failure(AuthFailure),
}

/// The state of one running exchange, kept by the broker for its connection between AUTH
/// packets. It is consumed by each step, which returns the next state with
/// [`AuthStep::Continue`], so a finished exchange cannot be stepped again.
pub trait AuthExchange: fmt::Debug + Send {
    /// The client's next message: the Authentication Data of its AUTH 0x18.
    fn step(self: Box<Self>, data: Option<&[u8]>) -> AuthStep;
}

/// Offers authentication methods and starts their exchanges. Like the [`Authorizer`], it must
/// be deterministic: randomness (nonces) comes from a generator it owns, seeded by its creator.
pub trait Authenticator: fmt::Debug + Send {
    /// Whether `method` can be used on `listener`. A CONNECT naming any other method is refused
    /// with CONNACK 0x8C [MQTT-4.12.0-1] (5.0).
    fn supports(&self, listener: ListenerId, method: &str) -> bool;

    /// Starts an exchange with the Authentication Data of the CONNECT (or of the AUTH 0x19 that
    /// re-authenticates).
    fn start(&mut self, request: &AuthRequest<'_>, data: Option<&[u8]>) -> AuthStep;
}
