//! CONNECT: client identifiers, keep alive, session takeover, clean start and session present.

use super::authenticate::Authenticated;
use super::close::WillAction;
use super::connection::{Client, ConnState, Connection, PendingConnect, Will};
use super::message::Message;
use super::problem;
use super::session::{Expiry, Session, SessionKey};
use super::timers::Timer;
use super::topic_alias::{InboundAliases, OutboundAliases};
use super::{Broker, ConnId, ListenerId, keep_alive_deadline};
use crate::auth::{Access, ClientRef, ConnectDecision, ConnectRequest};
use crate::codec::{
    ByteString, ConnAck, ConnAckProperties, Connect, ConnectReason, MAX_PACKET_SIZE, Packet,
    PayloadFormat, ProtocolVersion, PublishProperties, QoS,
};
use rand_chacha::rand_core::Rng;
use std::num::{NonZeroU16, NonZeroU32};
use std::sync::Arc;

impl Broker {
    pub(super) fn connect(&mut self, id: ConnId, c: Connect) {
        let version = c.protocol_version;
        let Some(listener) = self.conns.get(&id).map(|conn| conn.listener) else {
            return;
        };
        // The client's Maximum Packet Size, which a refusal must respect too.
        let max_packet_size = c
            .properties
            .maximum_packet_size
            .map_or(MAX_PACKET_SIZE, NonZeroU32::get);

        // Client identifier [MQTT-3.1.3-6] [MQTT-3.1.3-8] [MQTT-3.1.3-9] (3.1.1)
        // [MQTT-3.1.3-6] [MQTT-3.1.3-8] (5.0).
        let mut assigned = None;
        let client_id = if c.client_id.is_empty() {
            let allowed = self.config.allow_zero_length_clientid
                && match version {
                    // MQTT 3.1 requires 1 to 23 characters.
                    ProtocolVersion::V3_1 => false,
                    // Only with a clean session [MQTT-3.1.3-7].
                    ProtocolVersion::V3_1_1 => c.clean_start,
                    ProtocolVersion::V5 => true,
                };
            if !allowed {
                return self.refuse(
                    id,
                    version,
                    max_packet_size,
                    ConnectReason::ClientIdentifierNotValid,
                );
            }
            let new_id = self.assign_client_id();
            assigned = Some(new_id.clone());
            new_id
        } else {
            // A copy of its own: a slice would keep the whole buffer the CONNECT arrived in
            // (with whatever came after it in the same read) for as long as the session lasts.
            ByteString::from(&*c.client_id)
        };

        // A bridge's local session belongs to the bridge: a client taking it over would take
        // the bridge's queue and subscriptions with it.
        if self.is_bridge_client_id(&client_id) {
            tracing::info!(conn = id.0, client_id = %client_id, "client id of a bridge's local session refused");
            return self.refuse(
                id,
                version,
                max_packet_size,
                ConnectReason::ClientIdentifierNotValid,
            );
        }

        // Keep alive within the configured maximum.
        let mut keep_alive = c.keep_alive;
        let mut server_keep_alive = None;
        if let Some(max) = self.config.max_keepalive
            && (keep_alive == 0 || keep_alive > max)
        {
            if version.is_v5() {
                // The client must use the server's value [MQTT-3.1.2-23] (5.0).
                keep_alive = max;
                server_keep_alive = Some(max);
            } else {
                // 3.1.x cannot be told another value; refuse as Mosquitto does.
                return self.refuse(
                    id,
                    version,
                    max_packet_size,
                    ConnectReason::ClientIdentifierNotValid,
                );
            }
        }

        // A retained will needs retained messages [MQTT-3.2.2-13] (5.0).
        if c.will.as_ref().is_some_and(|w| w.retain) && !self.config.retain_available {
            return self.refuse(
                id,
                version,
                max_packet_size,
                ConnectReason::RetainNotSupported,
            );
        }
        // A will above the listener's maximum QoS is refused [MQTT-3.2.2-12] (5.0). No 3.1.x
        // return code says so, and none fits: the connection is closed without CONNACK
        // [MQTT-3.2.2-6] (3.1.1), as Mosquitto does.
        if c.will
            .as_ref()
            .is_some_and(|w| w.qos > self.config.max_qos(listener))
        {
            if version.is_v5() {
                return self.refuse(id, version, max_packet_size, ConnectReason::QoSNotSupported);
            }
            tracing::debug!(
                conn = id.0,
                "will QoS above the listener's max_qos, closing without CONNACK"
            );
            return self.close_conn(id, None, WillAction::Discard);
        }
        // A will payload that says it is UTF-8 must be (5.0, 3.1.3.2.3).
        if c.will.as_ref().is_some_and(|w| {
            w.properties.payload_format_indicator == Some(PayloadFormat::Utf8)
                && std::str::from_utf8(&w.payload).is_err()
        }) {
            return self.refuse(
                id,
                version,
                max_packet_size,
                ConnectReason::PayloadFormatInvalid,
            );
        }

        // What CONNACK will say, known before anything changes: a client whose Maximum Packet
        // Size leaves no room for it (an Assigned Client Identifier, say) is refused, since the
        // CONNACK cannot be sent [MQTT-3.1.2-27] (5.0).
        let properties = ConnAckProperties {
            // Only when asked for (5.0, 3.1.2.11.6): a topic prefix of the client's own that
            // request/response exchanges may use.
            response_information: c
                .properties
                .request_response_information
                .unwrap_or(false)
                .then_some(self.config.response_topic_prefix.as_ref())
                .flatten()
                .map(|prefix| ByteString::from(format!("{prefix}{client_id}"))),
            ..self.connack_properties(listener, assigned.clone(), server_keep_alive)
        };
        let mut probe = Packet::from(ConnAck {
            session_present: false,
            reason: ConnectReason::Success,
            properties,
        });
        if !problem::fit(&mut probe, version, max_packet_size) {
            return self.refuse(id, version, max_packet_size, ConnectReason::PacketTooLarge);
        }

        let opened = self
            .conns
            .get(&id)
            .and_then(Connection::opened)
            .unwrap_or(self.now);
        let pending = PendingConnect {
            opened,
            connect: c,
            client_id,
            assigned,
            keep_alive,
            server_keep_alive,
        };
        // An Authentication Method asks for enhanced authentication (5.0, 4.12), which runs
        // before anything below; the CONNECT is admitted once it succeeds.
        if pending.connect.properties.authentication_method.is_some() {
            return self.start_connect_auth(id, pending);
        }
        self.admit(id, pending, None);
    }

    /// Admits a checked CONNECT: asks the authorizer, takes over or creates the session and
    /// answers CONNACK. `authenticated` is the outcome of enhanced authentication, if the client
    /// asked for it.
    pub(super) fn admit(
        &mut self,
        id: ConnId,
        pending: PendingConnect,
        authenticated: Option<Authenticated>,
    ) {
        let PendingConnect {
            opened,
            connect: c,
            client_id,
            assigned,
            keep_alive,
            server_keep_alive,
        } = pending;
        let version = c.protocol_version;
        let max_packet_size = c
            .properties
            .maximum_packet_size
            .map_or(MAX_PACKET_SIZE, NonZeroU32::get);
        // Authentication comes before anything that affects other connections, so a client that
        // fails it cannot take a session over.
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let request = ConnectRequest {
            listener: conn.listener,
            version,
            client_id: &client_id,
            // A user proven by enhanced authentication, with no password to check.
            username: match &authenticated {
                Some(a) => Some(&a.username),
                None => c.username.as_deref(),
            },
            password: match &authenticated {
                Some(_) => None,
                None => c.password.as_deref(),
            },
            tls_identity: conn.tls_identity.as_deref(),
            peer: conn.peer,
            authentication_method: authenticated.as_ref().map(|a| &*a.method),
        };
        let (listener, peer) = (conn.listener, conn.peer);
        let username = match self.authorizer.connect(&request) {
            ConnectDecision::Accept { username } => username,
            ConnectDecision::Refuse(reason) => {
                tracing::info!(conn = id.0, ?peer, client_id = %client_id, ?reason, "client not authorized to connect");
                return self.refuse(id, version, max_packet_size, reason);
            }
        };
        // A will is a publication: one the client may not publish refuses the connection, as
        // Mosquitto does, rather than failing silently when the client goes away.
        if let Some(will) = &c.will
            && self.authorizer.checks_topics()
        {
            let client = ClientRef {
                listener,
                client_id: &client_id,
                username: username.as_deref(),
            };
            if !self
                .authorizer
                .authorize(&client, Access::Publish, &will.topic)
            {
                tracing::info!(conn = id.0, client_id = %client_id, topic = %will.topic, "will topic not authorized");
                return self.refuse(id, version, max_packet_size, ConnectReason::NotAuthorized);
            }
        }

        let expiry = match version {
            ProtocolVersion::V5 => {
                Expiry::from_interval(c.properties.session_expiry_interval.unwrap_or(0))
            }
            _ if c.clean_start => Expiry::OnDisconnect,
            _ => Expiry::Never,
        };

        // An existing connection for this client id is closed [MQTT-3.1.4-2] (3.1.1)
        // [MQTT-3.1.4-3] (5.0).
        let mut existing = self.session_index.get(&*client_id).copied();
        if let Some(old) = existing.and_then(|key| self.sessions[key].conn()) {
            tracing::info!(client_id = %client_id, "session taken over by a new connection");
            self.close_taken_over(old);
            // A session that lasts as long as its connection ends with it: a clean session is
            // never resumed [MQTT-3.1.2-6] (3.1.1), nor one with Session Expiry Interval 0
            // (5.0, 3.1.4), whose delayed will is then published.
            if let Some(key) = existing
                && self.sessions[key].expiry == Expiry::OnDisconnect
            {
                self.end_session(key);
                existing = None;
            }
        }

        // Clean start discards the old session [MQTT-3.1.2-6] (3.1.1) [MQTT-3.1.2-4] (5.0);
        // otherwise it is resumed [MQTT-3.1.2-4] (3.1.1) [MQTT-3.1.2-5] (5.0).
        let (key, session_present) = match existing {
            Some(key) if !c.clean_start => (key, true),
            _ => {
                if let Some(key) = existing {
                    self.end_session(key);
                }
                if self.sessions.len() >= self.config.max_sessions {
                    tracing::warn!(client_id = %client_id, "max_sessions reached, refusing");
                    return self.refuse(id, version, max_packet_size, ConnectReason::ServerBusy);
                }
                // The id moves into the session: a clone would make the bytes shared, with a
                // reference count allocated beside them for as long as the session lasts.
                let entry = self.sessions.vacant_entry();
                let key = entry.key();
                self.session_index.insert(Box::from(&*client_id), key);
                entry.insert(Session::new(client_id, version, expiry));
                self.stats.sessions += 1;
                (key, false)
            }
        };
        let session = &mut self.sessions[key];
        session.attach(id);
        session.username = username.as_deref().map(Box::from);
        session.listener = listener;
        session.version = version;
        session.expiry = expiry;
        // A reconnect within the will delay cancels the old will [MQTT-3.1.2-26] (5.0).
        session.pending_will = None;

        let will = c.will.map(|w| Will {
            delay_secs: w.properties.will_delay_interval.unwrap_or(0),
            msg: Arc::new(Message {
                topic: w.topic,
                payload: w.payload,
                qos: w.qos,
                retain: w.retain,
                properties: PublishProperties {
                    payload_format_indicator: w.properties.payload_format_indicator,
                    message_expiry_interval: w.properties.message_expiry_interval,
                    content_type: w.properties.content_type,
                    response_topic: w.properties.response_topic,
                    correlation_data: w.properties.correlation_data,
                    user_properties: w.properties.user_properties,
                    ..PublishProperties::default()
                },
                // The expiry interval runs from the will's publication.
                expires_at: None,
                stored_id: Default::default(),
            }),
        });
        self.record_session(key);
        self.record_will(key, will.as_ref());
        let client = Client {
            session: key,
            version,
            keep_alive,
            will,
            receive_maximum: c
                .properties
                .receive_maximum
                .map_or(u16::MAX, NonZeroU16::get),
            max_packet_size: c
                .properties
                .maximum_packet_size
                .map_or(MAX_PACKET_SIZE, NonZeroU32::get),
            connect_session_expiry: c.properties.session_expiry_interval.unwrap_or(0),
            problem_info: c.properties.request_problem_information != Some(false),
            inbound_aliases: InboundAliases::new(if version.is_v5() {
                self.config.max_topic_alias
            } else {
                0
            }),
            outbound_aliases: OutboundAliases::new(
                c.properties
                    .topic_alias_maximum
                    .unwrap_or(0)
                    .min(self.config.max_topic_alias_broker),
            ),
            is_bridge: c.bridge,
        };
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.state = ConnState::Connected(client);
        self.timers.cancel(
            opened.plus_millis(self.config.connect_timeout_ms),
            Timer::ConnectTimeout(id),
        );
        self.stats.clients_connected += 1;
        self.stats.clients_maximum = self.stats.clients_maximum.max(self.stats.clients_connected);
        if keep_alive > 0 {
            let deadline = keep_alive_deadline(conn.last_received, keep_alive);
            conn.keep_alive_timer = Some(deadline);
            self.timers.schedule(deadline, Timer::KeepAlive(id));
        }
        tracing::info!(
            target: CONNECTIONS,
            "client {} connected from {} (mqtt {}, clean {}, keep alive {keep_alive}{})",
            self.sessions[key].client_id,
            peer_text(conn.peer),
            version_text(version),
            u8::from(c.clean_start),
            self.sessions[key]
                .username
                .as_ref()
                .map(|u| format!(", user '{u}'"))
                .unwrap_or_default(),
        );

        let mut properties = self.connack_properties(listener, assigned, server_keep_alive);
        // Only when asked for (5.0, 3.1.2.11.6): a topic prefix of the client's own that
        // request/response exchanges may use.
        properties.response_information = c
            .properties
            .request_response_information
            .unwrap_or(false)
            .then_some(self.config.response_topic_prefix.as_ref())
            .flatten()
            .map(|prefix| ByteString::from(format!("{prefix}{}", self.sessions[key].client_id)));
        if let Some(a) = authenticated {
            // The method of CONNECT, with the authenticator's final data [MQTT-4.12.0-5] (5.0).
            properties.authentication_method = Some(a.method);
            properties.authentication_data = a.data;
        }
        let connack = Packet::from(ConnAck {
            // [MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-3.2.2-3] (3.1.1) [MQTT-3.2.2-2] [MQTT-3.2.2-3].
            session_present,
            reason: ConnectReason::Success,
            properties,
        });
        self.reply(id, &connack);
        if session_present {
            self.resume_session(key);
        }
    }

    /// What an MQTT 5 client of `listener` is told about this broker (5.0, 3.2.2.3). Defaults
    /// are left out.
    fn connack_properties(
        &self,
        listener: ListenerId,
        assigned_client_identifier: Option<ByteString>,
        server_keep_alive: Option<u16>,
    ) -> ConnAckProperties {
        let c = &self.config;
        let max_qos = c.max_qos(listener);
        ConnAckProperties {
            // A listener limited below QoS 2 says so [MQTT-3.2.2-9] (5.0).
            maximum_qos: (max_qos < QoS::ExactlyOnce).then_some(max_qos),
            // [MQTT-3.2.2-16]: an assigned id is announced.
            assigned_client_identifier,
            server_keep_alive,
            receive_maximum: c.announced_receive_maximum(),
            maximum_packet_size: c.announced_max_packet_size(),
            retain_available: (!c.retain_available).then_some(false),
            topic_alias_maximum: (c.max_topic_alias > 0).then_some(c.max_topic_alias),
            ..ConnAckProperties::default()
        }
    }

    /// Refuses a CONNECT with a CONNACK carrying `reason` (a 3.1.x return code for 3.1.x
    /// clients) and closes [MQTT-3.2.2-4] (3.1.1) [MQTT-3.2.2-6] (5.0): session present is 0.
    /// The Reason String is left out when it would make the CONNACK larger than the client's
    /// Maximum Packet Size [MQTT-3.2.2-19] (5.0).
    fn refuse(
        &mut self,
        id: ConnId,
        version: ProtocolVersion,
        max_packet_size: u32,
        reason: ConnectReason,
    ) {
        tracing::debug!(conn = id.0, ?reason, "CONNECT refused");
        if let Some(conn) = self.conns.get_mut(&id) {
            let mut connack = Packet::from(ConnAck {
                session_present: false,
                reason,
                properties: ConnAckProperties {
                    reason_string: problem::connect(reason),
                    ..ConnAckProperties::default()
                },
            });
            if !problem::fit(&mut connack, version, max_packet_size) {
                tracing::debug!(
                    conn = id.0,
                    "CONNACK exceeds the client's maximum packet size"
                );
            } else if let Err(e) = self
                .outbox
                .write(id, conn, version, &connack, &mut self.stats)
            {
                tracing::error!(conn = id.0, error = %e, "cannot encode CONNACK");
            }
        }
        self.close_conn(id, None, WillAction::Discard);
    }

    /// A fresh client id for a client that sent none, unguessable given a secret seed.
    fn assign_client_id(&mut self) -> ByteString {
        loop {
            let id = format!("{}{:016x}", self.config.auto_id_prefix, self.rng.next_u64());
            let id = ByteString::from(id);
            if !self.session_index.contains_key(&*id) {
                return id;
            }
        }
    }

    /// A resumed session first resends what was in flight, in order, PUBREL where PUBREC had
    /// arrived and PUBLISH with DUP set within the new connection's window [MQTT-4.4.0-1]
    /// [MQTT-3.3.4-9] (5.0), then continues with its queue.
    fn resume_session(&mut self, key: SessionKey) {
        self.sessions[key].outbound.resume();
        #[cfg(feature = "sim-bugs")]
        {
            use crate::bugs::{Bug, planted};
            let outbound = &mut self.sessions[key].outbound;
            if planted(&self.config, Bug::DropQueueOnReconnect) {
                while outbound.dequeue().is_some() {}
            }
            if planted(&self.config, Bug::SkipQos1Resend) {
                outbound.skip_qos1_resends();
            }
        }
        self.pump(key);
    }
}

/// The tracing target of connection messages (Mosquitto's connection_messages), so a driver can
/// switch them off on their own.
pub const CONNECTIONS: &str = "midge::connections";

pub(crate) fn peer_text(peer: Option<core::net::SocketAddr>) -> String {
    peer.map_or_else(|| "a local socket".to_owned(), |p| p.to_string())
}

fn version_text(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V3_1 => "3.1",
        ProtocolVersion::V3_1_1 => "3.1.1",
        ProtocolVersion::V5 => "5.0",
    }
}
