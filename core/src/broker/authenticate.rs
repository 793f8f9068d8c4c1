//! MQTT 5 enhanced authentication (5.0, 4.12): the AUTH exchange that a CONNECT with an
//! Authentication Method starts, and re-authentication of a connected client (AUTH 0x19).
//!
//! The broker drives the exchange and keeps its state per connection (`EnhancedAuth`); the
//! [`crate::auth::Authenticator`] computes each answer. Every exchange is bounded by
//! `Config::max_auth_rounds` and `Config::max_auth_data`, and one at CONNECT also by the connect
//! timeout, which keeps running until CONNACK.

use super::close::WillAction;
use super::connection::{ConnState, EnhancedAuth, PendingConnect};
use super::problem;
use super::{Broker, ConnId};
use crate::auth::{AuthFailure, AuthRequest, AuthStep, ConnectDecision, ConnectRequest};
use crate::codec::{
    Auth, AuthProperties, AuthReason, ByteString, ConnAck, ConnAckProperties, ConnectReason,
    Disconnect, DisconnectReason, Packet, ProtocolVersion,
};
use bytes::Bytes;

/// A client that enhanced authentication accepted.
#[derive(Debug)]
pub(crate) struct Authenticated {
    pub method: ByteString,
    pub username: ByteString,
    /// The authenticator's last data, for the CONNACK.
    pub data: Option<Bytes>,
}

impl Broker {
    /// Starts the exchange a CONNECT with an Authentication Method asks for. A method the
    /// authenticator does not offer on this listener is refused with CONNACK 0x8C and the
    /// connection closed [MQTT-4.12.0-1] (5.0).
    pub(super) fn start_connect_auth(&mut self, id: ConnId, pending: PendingConnect) {
        let props = &pending.connect.properties;
        let (Some(method), data) = (
            props.authentication_method.clone(),
            props.authentication_data.clone(),
        ) else {
            return;
        };
        let problem_information = props.request_problem_information != Some(false);
        let max_packet_size = props
            .maximum_packet_size
            .map_or(crate::codec::MAX_PACKET_SIZE, std::num::NonZeroU32::get);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.auth = Some(Box::new(EnhancedAuth {
            method: method.clone(),
            problem_information,
            max_packet_size,
            exchange: None,
            rounds: 0,
            data_bytes: 0,
        }));
        let supported = self
            .authenticator
            .as_ref()
            .is_some_and(|a| a.supports(conn.listener, &method));
        if !supported {
            tracing::info!(conn = id.0, client_id = %pending.client_id, method = %method, "authentication method not supported");
            conn.state = ConnState::Authenticating(Box::new(pending));
            return self.auth_failed(id, AuthFailure::BadAuthenticationMethod);
        }
        let (listener, tls_identity, peer) = (conn.listener, conn.tls_identity.clone(), conn.peer);
        let request = AuthRequest {
            listener,
            client_id: &pending.client_id,
            username: pending.connect.username.as_deref(),
            tls_identity: tls_identity.as_deref(),
            peer,
            method: &method,
            reauthenticating: false,
        };
        let step = self.first_step(id, &request, data.as_deref());
        if let Some(conn) = self.conns.get_mut(&id) {
            conn.state = ConnState::Authenticating(Box::new(pending));
        }
        self.auth_step(id, step);
    }

    /// AUTH from a client, while connecting or connected.
    pub(super) fn auth_received(&mut self, id: ConnId, a: Auth) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let connecting = matches!(conn.state, ConnState::Authenticating(_));
        let Some(auth) = conn.auth.as_mut() else {
            // No Authentication Method in CONNECT, so no AUTH [MQTT-4.12.0-7] (5.0).
            tracing::debug!(conn = id.0, "AUTH without enhanced authentication");
            return self.auth_protocol_error(id);
        };
        // Every AUTH carries the method of CONNECT [MQTT-4.12.0-5] [MQTT-4.12.1-1] (5.0).
        if a.properties.authentication_method.as_ref() != Some(&auth.method) {
            tracing::debug!(conn = id.0, method = ?a.properties.authentication_method, "AUTH with another authentication method");
            return self.auth_protocol_error(id);
        }
        let data = a.properties.authentication_data;
        match (a.reason, auth.exchange.take()) {
            // The client answers the server's AUTH 0x18 with AUTH 0x18 [MQTT-4.12.0-3] (5.0).
            (AuthReason::ContinueAuthentication, Some(exchange)) => {
                if let Some(failure) = count_round(auth, data.as_deref(), &self.config) {
                    return self.auth_failed(id, failure);
                }
                let step = exchange.step(data.as_deref());
                self.auth_step(id, step);
            }
            // A connected client re-authenticates with AUTH 0x19 [MQTT-4.12.1-1] (5.0).
            (AuthReason::ReAuthenticate, None) if !connecting => self.start_reauth(id, data),
            // Anything else is out of turn: 0x19 while connecting or during an exchange, 0x18
            // with no exchange, or 0x00, which only the server sends.
            (reason, exchange) => {
                tracing::debug!(
                    conn = id.0,
                    ?reason,
                    running = exchange.is_some(),
                    "AUTH out of turn"
                );
                self.auth_protocol_error(id);
            }
        }
    }

    /// AUTH 0x19 from a connected client that authenticated with the same method.
    fn start_reauth(&mut self, id: ConnId, data: Option<Bytes>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let (Some(client), Some(auth)) = (conn.client(), conn.auth.as_deref()) else {
            return;
        };
        let method = auth.method.clone();
        let username = self.sessions[client.session].username.clone();
        let client_id = self.sessions[client.session].client_id.clone();
        let (listener, tls_identity, peer) = (conn.listener, conn.tls_identity.clone(), conn.peer);
        let supported = self
            .authenticator
            .as_ref()
            .is_some_and(|a| a.supports(listener, &method));
        if !supported {
            return self.auth_failed(id, AuthFailure::BadAuthenticationMethod);
        }
        let request = AuthRequest {
            listener,
            client_id: &client_id,
            username: username.as_deref(),
            tls_identity: tls_identity.as_deref(),
            peer,
            method: &method,
            reauthenticating: true,
        };
        let step = self.first_step(id, &request, data.as_deref());
        self.auth_step(id, step);
    }

    /// Counts the client's first message of an exchange and hands it to the authenticator.
    fn first_step(
        &mut self,
        id: ConnId,
        request: &AuthRequest<'_>,
        data: Option<&[u8]>,
    ) -> AuthStep {
        let Some(auth) = self.conns.get_mut(&id).and_then(|c| c.auth.as_deref_mut()) else {
            return AuthStep::Failure(AuthFailure::NotAuthorized);
        };
        auth.rounds = 0;
        auth.data_bytes = 0;
        if let Some(failure) = count_round(auth, data, &self.config) {
            return AuthStep::Failure(failure);
        }
        match self.authenticator.as_mut() {
            Some(authenticator) => authenticator.start(request, data),
            None => AuthStep::Failure(AuthFailure::BadAuthenticationMethod),
        }
    }

    /// Carries out the authenticator's answer.
    fn auth_step(&mut self, id: ConnId, step: AuthStep) {
        match step {
            AuthStep::Continue { data, exchange } => {
                let Some(conn) = self.conns.get_mut(&id) else {
                    return;
                };
                let Some(auth) = conn.auth.as_deref_mut() else {
                    return;
                };
                // AUTH 0x18 with the method and the authenticator's data [MQTT-4.12.0-2]
                // [MQTT-4.12.0-5] (5.0).
                let packet =
                    auth_packet(AuthReason::ContinueAuthentication, &auth.method, Some(data));
                // A packet beyond the client's Maximum Packet Size cannot be sent
                // [MQTT-3.1.2-27] (5.0), and the exchange cannot go on without it.
                if !fits(&packet, auth.max_packet_size) {
                    tracing::debug!(
                        conn = id.0,
                        "AUTH larger than the client's maximum packet size"
                    );
                    return self.auth_failed(id, AuthFailure::LimitExceeded);
                }
                auth.exchange = Some(exchange);
                self.write_v5(id, &packet);
            }
            AuthStep::Success { data, username } => self.auth_succeeded(id, data, username),
            AuthStep::Failure(failure) => self.auth_failed(id, failure),
        }
    }

    fn auth_succeeded(&mut self, id: ConnId, data: Option<Bytes>, username: ByteString) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(method) = conn.auth.as_ref().map(|a| a.method.clone()) else {
            return;
        };
        if matches!(conn.state, ConnState::Authenticating(_)) {
            let opened = conn.opened().unwrap_or(self.now);
            let state = std::mem::replace(&mut conn.state, ConnState::AwaitingConnect { opened });
            let ConnState::Authenticating(pending) = state else {
                return;
            };
            tracing::debug!(conn = id.0, user = %username, method = %method, "enhanced authentication succeeded");
            let authenticated = Authenticated {
                method,
                username,
                data,
            };
            return self.admit(id, *pending, Some(authenticated));
        }

        // Re-authentication: the authorizer decides again, and the connection stays who it was;
        // a different user would change what its session may do without a new CONNECT.
        let Some(client) = conn.client() else {
            return;
        };
        let current = self.sessions[client.session].username.clone();
        let request = ConnectRequest {
            listener: conn.listener,
            version: client.version,
            client_id: &self.sessions[client.session].client_id,
            username: Some(&username),
            password: None,
            tls_identity: conn.tls_identity.as_deref(),
            peer: conn.peer,
            authentication_method: Some(&method),
        };
        let same_user = match self.authorizer.connect(&request) {
            ConnectDecision::Accept { username } => username.as_deref() == current.as_deref(),
            ConnectDecision::Refuse(reason) => {
                tracing::info!(
                    conn = id.0,
                    ?reason,
                    "re-authenticated client no longer authorized"
                );
                false
            }
        };
        if !same_user {
            return self.auth_failed(id, AuthFailure::NotAuthorized);
        }
        tracing::debug!(conn = id.0, user = %username, "re-authentication succeeded");
        // AUTH 0x00 ends a successful re-authentication (5.0, 4.12.1).
        let packet = auth_packet(AuthReason::Success, &method, data);
        let fits_client = conn
            .auth
            .as_ref()
            .is_some_and(|a| fits(&packet, a.max_packet_size));
        if !fits_client {
            return self.auth_failed(id, AuthFailure::LimitExceeded);
        }
        self.write_v5(id, &packet);
    }

    /// Ends a failed exchange: CONNACK with the reason and the close while connecting
    /// [MQTT-4.12.0-4] (5.0); after a failed re-authentication, DISCONNECT with the reason and
    /// the close [MQTT-4.12.1-2] (5.0), the will published as for any close the server decides.
    fn auth_failed(&mut self, id: ConnId, failure: AuthFailure) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let why = match failure {
            AuthFailure::BadAuthenticationMethod => "authentication method not supported",
            AuthFailure::LimitExceeded => "authentication exchange too long",
            AuthFailure::BadUserNameOrPassword | AuthFailure::NotAuthorized => {
                "authentication failed"
            }
        };
        tracing::info!(conn = id.0, peer = ?conn.peer, ?failure, "{why}");
        if matches!(conn.state, ConnState::Authenticating(_)) {
            return self.refuse_authenticating_because(id, failure.connect_reason(), why);
        }
        let mut disconnect = Disconnect::new(failure.disconnect_reason());
        disconnect.properties.reason_string = reason_string(conn.auth.as_deref(), why);
        let mut packet = Packet::Disconnect(disconnect);
        if let Some(max) = conn.auth.as_ref().map(|a| a.max_packet_size) {
            problem::fit(&mut packet, ProtocolVersion::V5, max);
        }
        self.write_v5(id, &packet);
        self.close_conn(id, None, WillAction::Publish);
    }

    /// A protocol error in AUTH: while connecting CONNACK 0x82, afterwards DISCONNECT 0x82; both
    /// close the connection (5.0, 4.13).
    fn auth_protocol_error(&mut self, id: ConnId) {
        let connected = self.conns.get(&id).is_some_and(|c| c.client().is_some());
        if connected {
            self.protocol_error(id, DisconnectReason::ProtocolError);
        } else {
            self.refuse_authenticating(id, ConnectReason::ProtocolError);
        }
    }

    /// Refuses a connection whose enhanced authentication is under way, with a CONNACK (no
    /// session present) and the close.
    pub(super) fn refuse_authenticating(&mut self, id: ConnId, reason: ConnectReason) {
        let why = match reason {
            ConnectReason::ProtocolError => "only AUTH or DISCONNECT may be sent before CONNACK",
            _ => "refused",
        };
        self.refuse_authenticating_because(id, reason, why);
    }

    fn refuse_authenticating_because(&mut self, id: ConnId, reason: ConnectReason, why: &str) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let max = conn
            .auth
            .as_ref()
            .map_or(crate::codec::MAX_PACKET_SIZE, |a| a.max_packet_size);
        let mut packet = Packet::from(ConnAck {
            session_present: false,
            reason,
            properties: ConnAckProperties {
                reason_string: reason_string(conn.auth.as_deref(), why),
                ..ConnAckProperties::default()
            },
        });
        // A Reason String that would make the CONNACK too large for the client is left out
        // [MQTT-3.2.2-19] (5.0).
        problem::fit(&mut packet, ProtocolVersion::V5, max);
        self.write_v5(id, &packet);
        self.close_conn(id, None, WillAction::Discard);
    }

    /// Writes an MQTT 5 packet to a connection in any state.
    fn write_v5(&mut self, id: ConnId, packet: &Packet) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if let Err(e) = self
            .outbox
            .write(id, conn, ProtocolVersion::V5, packet, &mut self.stats)
        {
            tracing::error!(conn = id.0, error = %e, "cannot encode authentication reply");
        }
    }
}

/// Counts one message of the client in the current exchange; a failure once it goes past the
/// configured rounds or data.
fn count_round(
    auth: &mut EnhancedAuth,
    data: Option<&[u8]>,
    config: &super::Config,
) -> Option<AuthFailure> {
    auth.rounds = auth.rounds.saturating_add(1);
    auth.data_bytes = auth.data_bytes.saturating_add(data.map_or(0, <[u8]>::len));
    (auth.rounds > config.max_auth_rounds || auth.data_bytes > config.max_auth_data)
        .then_some(AuthFailure::LimitExceeded)
}

/// A Reason String, unless the client set Request Problem Information to 0. CONNACK and
/// DISCONNECT may carry one even then [MQTT-3.1.2-32] (5.0), but a client that asked for no
/// diagnostics gets none.
fn reason_string(auth: Option<&EnhancedAuth>, why: &str) -> Option<ByteString> {
    auth.is_none_or(|a| a.problem_information)
        .then(|| ByteString::from(why))
}

fn auth_packet(reason: AuthReason, method: &ByteString, data: Option<Bytes>) -> Packet {
    Packet::Auth(Auth {
        reason,
        properties: AuthProperties {
            authentication_method: Some(method.clone()),
            authentication_data: data,
            ..AuthProperties::default()
        },
    })
}

/// Whether `packet` is within a client's Maximum Packet Size.
/// Whether a packet to an MQTT 5 client fits its Maximum Packet Size.
fn fits(packet: &Packet, max: u32) -> bool {
    problem::fits(packet, ProtocolVersion::V5, max)
}
