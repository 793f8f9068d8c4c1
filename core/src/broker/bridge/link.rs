//! A bridge's link: the client side of MQTT on a connection this broker dialed. CONNECT and
//! CONNACK, SUBSCRIBE for the `in` topics, keep alive, failures and redialing.
//!
//! Addresses are tried in order: a failed dial, a refused CONNECT or a link lost before
//! CONNACK moves on to the next address (wrapping around). A link that was up and is lost
//! dials the next address with `round_robin`, and the first one (the main broker) without it,
//! as Mosquitto's "the first address is treated as the main bridge connection". Every new
//! attempt waits for the backoff first. Mosquitto also probes the main address while connected
//! to another; midge does not (that would need a second connection), and returns to the main
//! address when the link to the other one fails.

use super::config::BridgeConfig;
use super::{BridgeId, BridgeState, Link, notify, rename};
use crate::broker::close::WillAction;
use crate::broker::connection::{BridgeLink, Client, ConnState, Connection};
use crate::broker::session::SessionKey;
use crate::broker::timers::Timer;
use crate::broker::topic_alias::{InboundAliases, OutboundAliases};
use crate::broker::{Action, Broker, Config, ConnId, ListenerId, keep_alive_deadline};
use crate::codec::{
    ByteString, ConnAck, Connect, ConnectProperties, ConnectReason, Disconnect, DisconnectReason,
    MAX_PACKET_SIZE, Packet, Publish, QoS, SubAck, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, topic,
};
use std::num::{NonZeroU16, NonZeroU32};

/// The Session Expiry Interval a bridge without clean session asks the remote broker for:
/// the session lasts until the bridge cleans it, as a 3.1.1 persistent session does.
pub(crate) const REMOTE_SESSION_EXPIRY: u32 = u32::MAX;

/// The CONNECT a bridge opens its link with; `state` holds what the remote is known to take.
fn connect_packet(cfg: &BridgeConfig, config: &Config, state: &BridgeState) -> Connect {
    let v5 = cfg.protocol.is_v5();
    let properties = if v5 {
        ConnectProperties {
            session_expiry_interval: (!cfg.clean_session).then_some(REMOTE_SESSION_EXPIRY),
            // What this broker accepts from the remote, as it tells its own clients.
            receive_maximum: config.announced_receive_maximum(),
            maximum_packet_size: config.announced_max_packet_size(),
            // No topic aliases from the remote: the names it sends are renamed one by one.
            topic_alias_maximum: None,
            ..ConnectProperties::default()
        }
    } else {
        ConnectProperties::default()
    };
    Connect {
        protocol_version: cfg.protocol,
        // MQTT 5 has no local instead; the bit is a 3.1.x extension.
        bridge: cfg.try_private && !v5,
        clean_start: cfg.clean_session,
        keep_alive: cfg.keepalive_secs,
        properties,
        client_id: ByteString::from(cfg.remote_clientid.as_str()),
        will: notify::will(cfg, state.remote_max_qos, state.remote_retain),
        username: cfg.remote_username.as_deref().map(ByteString::from),
        password: cfg.remote_password.clone().map(bytes::Bytes::from),
    }
}

/// The SUBSCRIBE for the `in` topics, one subscription per line, in order, each at the lower
/// of its line's QoS and the remote's Maximum QoS `max_qos`: the remote would grant no more
/// (5.0, 3.2.2.3.4), and asking for no more is what Mosquitto's bridges do.
fn subscriptions(cfg: &BridgeConfig, max_qos: QoS) -> Vec<Subscription> {
    let v5 = cfg.protocol.is_v5();
    cfg.topics
        .iter()
        .filter(|t| t.carries_in())
        .filter_map(|t| {
            let filter = t.remote_filter();
            if !topic::is_valid_filter(&filter) {
                tracing::warn!(bridge = %cfg.name, filter, "bridge topic is not a valid remote filter, ignored");
                return None;
            }
            Some(Subscription {
                filter: ByteString::from(filter),
                options: SubscriptionOptions {
                    // An MQTT 5 remote keeps what the bridge publishes there from coming back,
                    // and the RETAIN flag as published; a 3.1.x one does so when it
                    // understands try_private.
                    no_local: v5,
                    retain_as_published: v5,
                    ..SubscriptionOptions::new(t.qos.min(max_qos))
                },
            })
        })
        .collect()
}

impl Broker {
    /// Sets up every configured bridge: its local session, a "0" state notification (a "1"
    /// retained from before a restart would be stale), and its first dial.
    pub(crate) fn start_bridges(&mut self) {
        for i in 0..self.config.bridges.len() {
            let id = BridgeId(u32::try_from(i).unwrap_or(u32::MAX));
            self.bridges.push(BridgeState::new());
            if self.config.bridges[i].addresses.is_empty() {
                // Nothing to dial; the daemon's configuration check should not let this through.
                tracing::error!(bridge = %self.config.bridges[i].name, "bridge has no address, not started");
                self.bridges[i].link = Link::Stopped;
                continue;
            }
            self.prepare_bridge_session(id);
            self.notify_local(id, false);
            self.dial(id);
        }
    }

    fn state(&mut self, id: BridgeId) -> Option<&mut BridgeState> {
        self.bridges.get_mut(id.index())
    }

    /// Asks the driver to dial the bridge's current address.
    fn dial(&mut self, id: BridgeId) {
        let Some(state) = self.bridges.get_mut(id.index()) else {
            return;
        };
        state.link = Link::Dialing;
        let address = state.address;
        tracing::debug!(bridge = %self.config.bridges[id.index()].name, address, "dialing");
        self.outbox.push(Action::Dial {
            bridge: id,
            address,
        });
    }

    /// The driver connected for a bridge: CONNECT goes out, and CONNACK must come within the
    /// connect timeout.
    pub(crate) fn bridge_dialed(&mut self, id: BridgeId, conn_id: ConnId) {
        let expected = self
            .bridges
            .get(id.index())
            .is_some_and(|s| s.link == Link::Dialing);
        if !expected || self.shutting_down {
            tracing::debug!(
                bridge = id.0,
                conn = conn_id.0,
                "connection for a bridge that did not ask for one, closing"
            );
            self.outbox.push(Action::Close { conn: conn_id });
            return;
        }
        if self.conns.contains_key(&conn_id) {
            // The driver reused a live id: treat the old connection as gone.
            self.peer_closed(conn_id);
        }
        let cfg = &self.config.bridges[id.index()];
        let version = cfg.protocol;
        let connect = Packet::from(connect_packet(cfg, &self.config, &self.bridges[id.index()]));
        tracing::info!(target: crate::broker::CONNECTIONS, "bridge {} connecting to {}:{}", cfg.name,
            cfg.addresses.get(self.bridges[id.index()].address).map_or("?", |a| a.host.as_str()),
            cfg.addresses.get(self.bridges[id.index()].address).map_or(0, |a| a.port));
        let mut conn = Connection::new(ListenerId::default(), None, self.now);
        conn.bridge = Some(Box::new(BridgeLink {
            id,
            version,
            last_sent: self.now,
        }));
        self.stats.connections_opened += 1;
        self.stats.connections_open += 1;
        if let Err(e) = self
            .outbox
            .write(conn_id, &mut conn, version, &connect, &mut self.stats)
        {
            tracing::error!(conn = conn_id.0, error = %e, "cannot encode a bridge's CONNECT");
        }
        self.conns.insert(conn_id, conn);
        self.bridges[id.index()].link = Link::Connecting { conn: conn_id };
        let deadline = self.now.plus_millis(self.config.connect_timeout_ms);
        self.timers
            .schedule(deadline, Timer::ConnectTimeout(conn_id));
    }

    /// The driver could not connect: the next address, after the backoff.
    pub(crate) fn bridge_dial_failed(&mut self, id: BridgeId) {
        if self.state(id).is_some_and(|s| s.link == Link::Dialing) {
            tracing::info!(bridge = %self.config.bridges[id.index()].name, "bridge could not connect");
            self.bridge_retry(id, false);
        }
    }

    /// Schedules the next dial: `was_up` when a link that had come up was lost.
    fn bridge_retry(&mut self, id: BridgeId, was_up: bool) {
        let cfg = &self.config.bridges[id.index()];
        let (restart, round_robin, count) = (cfg.restart, cfg.round_robin, cfg.addresses.len());
        let state = &mut self.bridges[id.index()];
        state.subscribe_id = None;
        if self.shutting_down {
            state.link = Link::Stopped;
            return;
        }
        state.address = if was_up && !round_robin {
            0
        } else {
            (state.address + 1) % count.max(1)
        };
        let wait = state.backoff.next(restart, &mut self.rng);
        let until = self.now.plus_millis(wait);
        state.link = Link::Waiting { until };
        self.timers.schedule(until, Timer::BridgeRedial(id));
    }

    /// A bridge's backoff may have run out.
    pub(crate) fn bridge_redial_due(&mut self, id: BridgeId, at: crate::broker::Time) {
        if self
            .state(id)
            .is_some_and(|s| s.link == Link::Waiting { until: at })
        {
            self.dial(id);
        }
    }

    /// A bridge's link closed, whichever side closed it: the local session is detached (a
    /// clean one ended) already; the state goes to "0" and the bridge dials again.
    pub(crate) fn bridge_link_closed(&mut self, id: BridgeId, conn: ConnId) {
        let Some(state) = self.bridges.get(id.index()) else {
            return;
        };
        let was_up = match state.link {
            Link::Up { conn: c } if c == conn => true,
            Link::Connecting { conn: c } if c == conn => false,
            _ => return,
        };
        if let Some(key) = self.bridge_session(id) {
            self.sessions[key].outbound.clear_reserved();
        }
        if was_up {
            tracing::info!(target: crate::broker::CONNECTIONS, "bridge {} disconnected", self.config.bridges[id.index()].name);
            self.notify_local(id, false);
        }
        self.bridge_retry(id, was_up);
    }

    /// A packet from a bridge's remote broker. Before CONNACK only CONNACK is expected
    /// [MQTT-3.2.0-1]; after it, what a server sends a client. CONNECT, SUBSCRIBE, UNSUBSCRIBE
    /// and PINGREQ are a client's packets, a second CONNACK and an UNSUBACK for an UNSUBSCRIBE
    /// never sent are protocol errors, and so is AUTH, which the bridge never asked for.
    pub(crate) fn bridge_dispatch(&mut self, conn: ConnId, id: BridgeId, packet: Packet) {
        let key = self
            .conns
            .get(&conn)
            .and_then(|c| c.client())
            .map(|c| c.session);
        let Some(key) = key else {
            match packet {
                Packet::ConnAck(ack) => self.bridge_connack(conn, id, *ack),
                other => {
                    tracing::warn!(conn = conn.0, packet = ?other.packet_type(), "bridge's remote broker sent something other than CONNACK");
                    self.close_conn(conn, None, WillAction::Discard);
                }
            }
            return;
        };
        match packet {
            Packet::Publish(p) => self.bridge_publish(conn, id, key, p),
            Packet::PubAck(a) => self.puback_received(key, a.packet_id),
            Packet::PubRec(r) => self.pubrec_received(conn, key, r),
            Packet::PubRel(r) => self.pubrel_received(conn, key, r.packet_id),
            Packet::PubComp(c) => self.pubcomp_received(key, c.packet_id),
            Packet::SubAck(s) => self.bridge_suback(conn, id, key, s),
            // Its arrival already counted for keep alive.
            Packet::PingResp => {}
            Packet::Disconnect(d) => {
                tracing::info!(target: crate::broker::CONNECTIONS, "bridge {} disconnected by the remote broker: {:?}", self.config.bridges[id.index()].name, d.reason);
                self.close_conn(conn, None, WillAction::Discard);
            }
            Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::UnsubAck(_)
            | Packet::PingReq
            | Packet::Auth(_) => {
                tracing::warn!(conn = conn.0, packet = ?packet.packet_type(), "unexpected packet from a bridge's remote broker");
                self.protocol_error(conn, DisconnectReason::ProtocolError);
            }
        }
    }

    /// CONNACK: refused, the link closes and the next address is tried after the backoff;
    /// accepted, the link is attached to the local session, which then resends what was in
    /// flight and sends what was queued.
    fn bridge_connack(&mut self, conn_id: ConnId, id: BridgeId, ack: ConnAck) {
        let cfg = &self.config.bridges[id.index()];
        if ack.reason != ConnectReason::Success {
            tracing::warn!(target: crate::broker::CONNECTIONS, "bridge {} refused by the remote broker: {:?}", cfg.name, ack.reason);
            // Only the will can be above what an MQTT 5 remote takes: the next CONNECT asks
            // for less, rather than being refused again and again. A CONNACK that accepts
            // says again what the remote takes.
            if cfg.protocol.is_v5() {
                let state = &mut self.bridges[id.index()];
                match ack.reason {
                    ConnectReason::RetainNotSupported => state.remote_retain = false,
                    ConnectReason::QoSNotSupported => state.remote_max_qos = QoS::AtMostOnce,
                    _ => {}
                }
            }
            return self.close_conn(conn_id, None, WillAction::Discard);
        }
        let version = cfg.protocol;
        let v5 = version.is_v5();
        // An MQTT 5 server may impose its keep alive [MQTT-3.2.2-21] (5.0).
        let keep_alive = match ack.properties.server_keep_alive {
            Some(k) if v5 => k,
            _ => cfg.keepalive_secs,
        };
        let key = match self.bridge_session(id) {
            Some(key) => key,
            None => self.adopt_bridge_session(id),
        };
        let client = Client {
            session: key,
            version,
            keep_alive,
            will: None,
            // The remote's Receive Maximum limits the bridge's window [MQTT-3.3.4-9] (5.0),
            // and its Maximum Packet Size what is sent to it [MQTT-3.1.2-24] (5.0).
            receive_maximum: ack
                .properties
                .receive_maximum
                .map_or(u16::MAX, NonZeroU16::get),
            max_packet_size: ack
                .properties
                .maximum_packet_size
                .map_or(MAX_PACKET_SIZE, NonZeroU32::get),
            connect_session_expiry: 0,
            // Reason Strings are for people; the remote is a broker.
            problem_info: false,
            inbound_aliases: InboundAliases::new(0),
            outbound_aliases: OutboundAliases::new(
                ack.properties
                    .topic_alias_maximum
                    .unwrap_or(0)
                    .min(self.config.max_topic_alias_broker),
            ),
            is_bridge: false,
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.state = ConnState::Connected(client);
        let last_received = conn.last_received;
        if keep_alive > 0 {
            let deadline = keep_alive_deadline(last_received, keep_alive);
            conn.keep_alive_timer = Some(deadline);
            self.timers.schedule(deadline, Timer::KeepAlive(conn_id));
            // The period counts from the last packet the bridge sent (its CONNECT at the
            // latest), not from CONNACK: after a slow CONNACK the remote would otherwise hear
            // nothing for longer than the keep alive [MQTT-3.1.2-23] (3.1.1) [MQTT-3.1.2-22]
            // (5.0). Already past, the PINGREQ goes as this input's timers run.
            let last_sent = conn.bridge.as_ref().map_or(self.now, |b| b.last_sent);
            self.timers.schedule(
                last_sent.plus_secs(u64::from(keep_alive)).max(self.now),
                Timer::BridgePing(conn_id),
            );
        }
        self.stats.clients_connected += 1;
        self.stats.clients_maximum = self.stats.clients_maximum.max(self.stats.clients_connected);
        // While the session is not attached yet, so that they queue behind what waits.
        self.queue_retained_for_remote(id, key);
        let session = &mut self.sessions[key];
        session.attach(conn_id);
        session.version = version;
        let state = &mut self.bridges[id.index()];
        state.link = Link::Up { conn: conn_id };
        state.backoff.reset();
        state.remote_retain = ack.properties.retain_available != Some(false);
        // Before anything is sent: what was queued or in flight at a higher QoS goes at this
        // one [MQTT-3.2.2-11] (5.0).
        state.remote_max_qos = match ack.properties.maximum_qos {
            Some(q) if v5 => q,
            _ => QoS::ExactlyOnce,
        };
        tracing::info!(target: crate::broker::CONNECTIONS, "bridge {} connected (session present {})", self.config.bridges[id.index()].name, u8::from(ack.session_present));

        let max_qos = self.bridges[id.index()].remote_max_qos;
        let subs = subscriptions(&self.config.bridges[id.index()], max_qos);
        if !subs.is_empty()
            && let Some(packet_id) = self.sessions[key].outbound.reserve_packet_id()
        {
            self.bridges[id.index()].subscribe_id = Some(packet_id);
            let subscribe = Packet::Subscribe(Subscribe {
                packet_id,
                properties: SubscribeProperties::default(),
                subscriptions: subs,
            });
            self.reply(conn_id, &subscribe);
        }
        self.notify_local(id, true);
        self.notify_remote(id, conn_id, true);
        // What was in flight goes again, in order, PUBREL where PUBREC had arrived and PUBLISH
        // with DUP [MQTT-4.4.0-1], whether or not the remote kept the session: a remote that
        // lost it takes the PUBLISH as new, and answers the PUBREL with PUBCOMP.
        self.sessions[key].outbound.resume();
        self.pump(key);
    }

    /// PUBLISH from the remote: renamed to its local topic, then taken in as from a client of
    /// this broker, acknowledgements and inbound QoS 2 state included.
    fn bridge_publish(&mut self, conn: ConnId, id: BridgeId, key: SessionKey, mut p: Publish) {
        let cfg = &self.config.bridges[id.index()];
        // The identifiers of the remote's subscription mean nothing here.
        p.properties.subscription_identifiers.clear();
        // The remote cannot be told that this broker keeps no retained messages.
        if !self.config.retain_available {
            p.retain = false;
        }
        if let Some(local) = rename::incoming(cfg, &p.topic) {
            p.topic = local;
        }
        self.publish_received(conn, key, p);
    }

    fn bridge_suback(&mut self, conn: ConnId, id: BridgeId, key: SessionKey, s: SubAck) {
        let state = &mut self.bridges[id.index()];
        if state.subscribe_id != Some(s.packet_id) {
            tracing::warn!(conn = conn.0, "SUBACK for no SUBSCRIBE of the bridge");
            return self.protocol_error(conn, DisconnectReason::ProtocolError);
        }
        state.subscribe_id = None;
        self.sessions[key].outbound.release_reserved(s.packet_id);
        let cfg = &self.config.bridges[id.index()];
        let filters = subscriptions(cfg, state.remote_max_qos);
        for (sub, reason) in filters.iter().zip(&s.reasons) {
            if reason.is_error() {
                tracing::warn!(bridge = %cfg.name, filter = %sub.filter, ?reason, "remote broker refused a bridge subscription");
            }
        }
    }

    /// Sends PINGREQ on a bridge's link that sent nothing for a keep alive period
    /// [MQTT-3.1.2-23] (3.1.1).
    pub(crate) fn bridge_ping_due(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let Some(keep_alive) = conn
            .client()
            .filter(|_| conn.bridge.is_some())
            .map(|c| u64::from(c.keep_alive) * 1000)
        else {
            return;
        };
        if keep_alive == 0 {
            return;
        }
        let Some(last_sent) = conn.bridge.as_ref().map(|b| b.last_sent) else {
            return;
        };
        let due = last_sent.plus_millis(keep_alive);
        if due <= self.now {
            self.reply(id, &Packet::PingReq);
            self.timers
                .schedule(self.now.plus_millis(keep_alive), Timer::BridgePing(id));
        } else {
            self.timers.schedule(due, Timer::BridgePing(id));
        }
    }

    /// Ends every bridge's link at shutdown: the state "0" on the remote first, since the
    /// DISCONNECT that follows makes the remote drop the will that would say it
    /// [MQTT-3.14.4-3]; then DISCONNECT (normal), in 3.1.x too, where it is how a client
    /// leaves without its will.
    pub(crate) fn shutdown_bridges(&mut self) {
        for i in 0..self.bridges.len() {
            let id = BridgeId(u32::try_from(i).unwrap_or(u32::MAX));
            match self.bridges[i].link {
                Link::Up { conn } => {
                    self.notify_remote(id, conn, false);
                    self.reply(
                        conn,
                        &Packet::Disconnect(Disconnect::new(DisconnectReason::NormalDisconnection)),
                    );
                    self.close_conn(conn, None, WillAction::Discard);
                }
                Link::Connecting { conn } => self.close_conn(conn, None, WillAction::Discard),
                Link::Waiting { .. } | Link::Dialing | Link::Stopped => {}
            }
            self.bridges[i].link = Link::Stopped;
        }
    }
}
