//! Messages in and out: PUBLISH from clients and its acknowledgement, routing to subscribers,
//! the outbound QoS flows and queue, and retained messages.

use super::connection::ConnState;
use super::message::{Delivery, Message};
use super::outbound::{QueueFull, Resend};
use super::problem;
use super::session::SessionKey;
use super::shared::GroupKey;
use super::subscribe::SubEntry;
use super::{Broker, ConnId};
use crate::auth::Access;
use crate::codec::{
    DisconnectReason, MAX_PACKET_SIZE, Packet, PacketId, PayloadFormat, PubAck, PubAckReason,
    PubComp, PubRec, PubRel, PubRelReason, Publish, QoS, QosPid,
};
use std::sync::Arc;

/// Up to this many matches, the vector routing collects them in is kept for the next message
/// (a few kilobytes); one that a message matching more subscriptions grew is freed, so that a
/// rare large fan-out does not hold its memory for good.
const ROUTE_SCRATCH_KEEP: usize = 256;

impl Broker {
    /// A PUBLISH from a connected client.
    pub(super) fn publish_received(&mut self, id: ConnId, key: SessionKey, p: Publish) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let Some(client) = conn.client() else {
            return;
        };
        let v5 = client.version.is_v5();
        // A bridge's remote broker sends at most the QoS the bridge subscribed with; the
        // listener limits are for clients.
        let bridged = conn.bridge.is_some();
        // A QoS above the listener's maximum, which MQTT 5 clients were told in CONNACK
        // [MQTT-3.2.2-11] (5.0), closes the connection: MQTT 5 with DISCONNECT 0x9B (5.0,
        // 3.2.2.3.4), 3.1.x without a word, as Mosquitto does.
        if !bridged && p.qos_pid.qos() > self.config.max_qos(conn.listener) {
            tracing::debug!(conn = id.0, qos = ?p.qos_pid.qos(), "PUBLISH above the listener's max_qos");
            return self.protocol_error(id, DisconnectReason::QoSNotSupported);
        }
        // Only a server sends Subscription Identifiers [MQTT-3.3.4-6] (5.0).
        if !p.properties.subscription_identifiers.is_empty() {
            return self.protocol_error(id, DisconnectReason::ProtocolError);
        }
        let mut p = p;
        if p.properties.topic_alias.is_some() {
            let alias = p.properties.topic_alias;
            let topic = std::mem::take(&mut p.topic);
            let resolved = self.conns.get_mut(&id).and_then(|c| match &mut c.state {
                ConnState::Connected(client) => Some(client.inbound_aliases.resolve(topic, alias)),
                ConnState::AwaitingConnect { .. } | ConnState::Authenticating(_) => None,
            });
            match resolved {
                Some(Ok(topic)) => p.topic = topic,
                Some(Err(reason)) => return self.protocol_error(id, reason),
                None => return,
            }
        }
        // Retained messages switched off (5.0, 3.3.1.3; Mosquitto's retain_available).
        if p.retain && !self.config.retain_available {
            return self.protocol_error(id, DisconnectReason::RetainNotSupported);
        }
        self.stats.publish_received += 1;
        self.stats.publish_bytes_received += p.payload.len() as u64;
        // `$SYS` is the broker's own tree (4.7.2); the authorizer decides the rest.
        if is_broker_topic(&p.topic) || !self.allowed(key, Access::Publish, &p.topic) {
            self.stats.publish_denied += 1;
            tracing::debug!(conn = id.0, topic = %p.topic, "publish not authorized");
            return self.publish_refused(id, key, v5, p, PubAckReason::NotAuthorized);
        }
        // A payload that says it is UTF-8 must be (5.0, 3.3.2.3.2); checked only when it says so.
        if p.properties.payload_format_indicator == Some(PayloadFormat::Utf8)
            && std::str::from_utf8(&p.payload).is_err()
        {
            self.stats.publish_invalid_payload += 1;
            tracing::debug!(conn = id.0, topic = %p.topic, "publish with a payload that is not UTF-8 dropped");
            return self.publish_refused(id, key, v5, p, PubAckReason::PayloadFormatInvalid);
        }
        let limit = self.config.message_size_limit;
        if limit != 0 && p.payload.len() > limit as usize {
            self.stats.publish_too_large += 1;
            tracing::debug!(conn = id.0, topic = %p.topic, bytes = p.payload.len(), "publish above message_size_limit dropped");
            return self.publish_refused(id, key, v5, p, PubAckReason::ImplementationSpecificError);
        }
        match p.qos_pid {
            QosPid::AtMostOnce => {
                self.accept_message(Arc::new(Message::from_publish(p, self.now)), Some(key));
            }
            QosPid::AtLeastOnce(packet_id) => {
                // Accept, then acknowledge [MQTT-4.3.2-2] (3.1.1) [MQTT-4.3.2-4] (5.0).
                let matched =
                    self.accept_message(Arc::new(Message::from_publish(p, self.now)), Some(key));
                let mut ack = PubAck::success(packet_id);
                if v5 && matched == 0 {
                    ack.reason = PubAckReason::NoMatchingSubscribers;
                }
                self.reply(id, &Packet::PubAck(ack));
            }
            QosPid::ExactlyOnce(packet_id) => {
                let session = &mut self.sessions[key];
                let mut ack = PubRec::success(packet_id);
                if !session.inbound_qos2.contains(&packet_id) {
                    // The client may not exceed the Receive Maximum announced to it
                    // [MQTT-3.3.4-7] (5.0); 3.1.x has no flow control but packet ids bound it.
                    if v5 && session.inbound_qos2.len() >= usize::from(self.config.receive_maximum)
                    {
                        return self.protocol_error(id, DisconnectReason::ReceiveMaximumExceeded);
                    }
                    session.inbound_qos2.insert(packet_id);
                    self.record_inbound(key, packet_id, true);
                    let msg = Arc::new(Message::from_publish(p, self.now));
                    if self.accept_message(msg, Some(key)) == 0 && v5 {
                        ack.reason = PubAckReason::NoMatchingSubscribers;
                    }
                }
                // A repeat before PUBREL is acknowledged again, never delivered again
                // [MQTT-4.3.3-2] (3.1.1) [MQTT-4.3.3-10] (5.0).
                self.reply(id, &Packet::PubRec(ack));
            }
        }
    }

    /// A PUBLISH the broker will not route (not authorized, too large). MQTT 5 clients learn it
    /// from the acknowledgement's reason code (5.0, 3.4.2.1); 3.1.x acknowledgements cannot say
    /// it, so those clients are acknowledged as usual (Mosquitto's behaviour) and the message is
    /// dropped. QoS 0 has no acknowledgement to carry it.
    pub(super) fn publish_refused(
        &mut self,
        id: ConnId,
        key: SessionKey,
        v5: bool,
        p: Publish,
        reason: PubAckReason,
    ) {
        let reason_string = if self.problem_info(id) {
            problem::publish(reason)
        } else {
            None
        };
        match p.qos_pid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(packet_id) => {
                let mut ack = PubAck::success(packet_id);
                if v5 {
                    ack.reason = reason;
                    ack.properties.reason_string = reason_string;
                }
                self.reply(id, &Packet::PubAck(ack));
            }
            QosPid::ExactlyOnce(packet_id) => {
                let mut rec = PubRec::success(packet_id);
                if v5 {
                    // A refusing PUBREC ends the exchange: no PUBREL follows (5.0, 4.3.3).
                    rec.reason = reason;
                    rec.properties.reason_string = reason_string;
                } else {
                    if self.sessions[key].inbound_qos2.insert(packet_id) {
                        self.record_inbound(key, packet_id, true);
                    }
                }
                self.reply(id, &Packet::PubRec(rec));
            }
        }
    }

    /// Whether a connected client accepts Reason Strings on acknowledgements [MQTT-3.1.2-29].
    pub(super) fn problem_info(&self, id: ConnId) -> bool {
        self.conns
            .get(&id)
            .and_then(|c| c.client())
            .is_some_and(|c| c.version.is_v5() && c.problem_info)
    }

    /// PUBREL from a client releases an inbound QoS 2 packet id: answered with PUBCOMP
    /// [MQTT-4.3.3-2] (3.1.1) [MQTT-4.3.3-11] (5.0), reason 0x92 if the id is unknown.
    pub(super) fn pubrel_received(&mut self, id: ConnId, key: SessionKey, packet_id: PacketId) {
        let known = self.sessions[key].inbound_qos2.remove(&packet_id);
        let mut comp = PubComp::success(packet_id);
        if known {
            self.record_inbound(key, packet_id, false);
        } else {
            comp.reason = PubRelReason::PacketIdentifierNotFound;
        }
        self.reply(id, &Packet::PubComp(comp));
    }

    pub(super) fn puback_received(&mut self, key: SessionKey, packet_id: PacketId) {
        if self.sessions[key].outbound.puback(packet_id) {
            self.record_outbound(key, packet_id, false);
            self.pump(key);
        }
    }

    /// PUBREC for an outbound QoS 2 message: answer with PUBREL [MQTT-4.3.3-1] (3.1.1)
    /// [MQTT-4.3.3-4] (5.0), or end the flow when the reason code reports failure
    /// [MQTT-4.4.0-2] (5.0). An unknown id gets PUBREL with reason 0x92.
    pub(super) fn pubrec_received(&mut self, id: ConnId, key: SessionKey, r: PubRec) {
        let outbound = &mut self.sessions[key].outbound;
        if r.reason.is_error() {
            if outbound.pubrec_refused(r.packet_id) {
                self.record_outbound(key, r.packet_id, false);
                self.pump(key);
            }
            return;
        }
        let mut rel = PubRel::success(r.packet_id);
        if outbound.pubrec(r.packet_id) {
            self.record_outbound(key, r.packet_id, true);
        } else {
            rel.reason = PubRelReason::PacketIdentifierNotFound;
        }
        self.reply(id, &Packet::PubRel(rel));
    }

    pub(super) fn pubcomp_received(&mut self, key: SessionKey, packet_id: PacketId) {
        if self.sessions[key].outbound.pubcomp(packet_id) {
            self.record_outbound(key, packet_id, false);
            self.pump(key);
        }
    }

    /// Takes a message in: updates the retained store and routes it to the subscribers. Returns
    /// the number of sessions it was routed to.
    pub(super) fn accept_message(
        &mut self,
        msg: Arc<Message>,
        origin: Option<SessionKey>,
    ) -> usize {
        if msg.retain {
            self.retain(&msg);
        }
        self.route(msg, origin)
    }

    /// A PUBLISH with RETAIN replaces the topic's retained message; an empty payload only
    /// removes it [MQTT-3.3.1-5] [MQTT-3.3.1-10] [MQTT-3.3.1-11] (3.1.1) [MQTT-3.3.1-5]
    /// [MQTT-3.3.1-6] [MQTT-3.3.1-7] (5.0).
    fn retain(&mut self, msg: &Arc<Message>) {
        if msg.payload.is_empty() {
            self.remove_retained(&msg.topic);
            return;
        }
        let is_new = self.retained.get(&msg.topic).is_none();
        if is_new && self.retained.len() >= self.config.max_retained_messages {
            self.stats.dropped_retained_limit += 1;
            tracing::warn!(topic = %msg.topic, "max_retained_messages reached, message not retained");
            return;
        }
        // The broker's own $SYS values are published again after every start, so storing them
        // would only cost an fsync every `sys_interval` on an idle broker (a flash card's wear,
        // in home automation) and bring back stale values after a restart. Mosquitto does not
        // save them either.
        if !is_broker_topic(&msg.topic) {
            self.record_retain_set(msg);
        }
        if let Some(old) = self.retained.insert(&msg.topic, Arc::clone(msg)) {
            self.stats.retained_bytes -= old.payload.len() as u64;
        }
        self.stats.retained_bytes += msg.payload.len() as u64;
        if is_new {
            self.stats.retained_messages += 1;
        }
    }

    /// Removes a topic's retained message, if it has one.
    pub(super) fn remove_retained(&mut self, topic: &str) {
        if let Some(old) = self.retained.remove(topic) {
            if !is_broker_topic(topic) {
                self.record_retain_clear(topic);
            }
            self.stats.retained_messages -= 1;
            self.stats.retained_bytes -= old.payload.len() as u64;
        }
    }

    /// Delivers a message to every session with a matching subscription, once per session, at
    /// the highest QoS its matching subscriptions grant [MQTT-3.3.5-1] (3.1.1), with every
    /// matching Subscription Identifier (5.0, 3.3.4).
    fn route(&mut self, msg: Arc<Message>, origin: Option<SessionKey>) -> usize {
        let mut matches = std::mem::take(&mut self.route_scratch);
        self.router
            .for_each_match(&msg.topic, |key, _filter, entry| {
                matches.push((key, *entry))
            });
        // Group by session, in session order, so delivery order is deterministic.
        matches.sort_by_key(|(key, _)| *key);
        let mut delivered = 0;
        let mut i = 0;
        while i < matches.len() {
            let key = matches[i].0;
            let end = i + matches[i..].iter().take_while(|(k, _)| *k == key).count();
            let group = &matches[i..end];
            i = end;
            let mut best: Option<QoS> = None;
            let mut retain_as_published = false;
            let mut subscription_ids = Vec::new();
            for (_, entry) in group {
                // No Local: not back to the publisher's own session [MQTT-3.8.3-3] (5.0).
                if entry.no_local && origin == Some(key) {
                    continue;
                }
                best = best.max(Some(entry.qos));
                retain_as_published |= entry.retain_as_published;
                if let Some(sid) = entry.subscription_id {
                    subscription_ids.push(sid);
                }
            }
            let Some(granted) = best else {
                continue;
            };
            if !self.allowed(key, Access::Receive, &msg.topic) {
                continue;
            }
            subscription_ids.sort_unstable();
            subscription_ids.dedup();
            delivered += 1;
            self.deliver(
                key,
                Delivery {
                    // Never above what the subscription granted (3.1.1 and 5.0, 3.8.4).
                    qos: granted.min(msg.qos),
                    // RETAIN is cleared on forwarding unless Retain As Published
                    // [MQTT-3.3.1-9] (3.1.1) (5.0, 3.3.1.3).
                    retain: msg.retain && retain_as_published,
                    subscription_ids,
                    id: 0,
                    recorded: false,
                    on_subscribe: false,
                    shared: None,
                    msg: Arc::clone(&msg),
                },
            );
        }
        matches.clear();
        if matches.capacity() <= ROUTE_SCRATCH_KEEP {
            self.route_scratch = matches;
        }
        for group in self.shared.matching(&msg.topic) {
            if self.deliver_shared(group, &msg, None) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Delivers a message to one member of a shared subscription group, other than `not`.
    /// Returns whether a member took it.
    pub(super) fn deliver_shared(
        &mut self,
        group: GroupKey,
        msg: &Arc<Message>,
        not: Option<SessionKey>,
    ) -> bool {
        let Some((member, entry)) = self.choose_member(group, msg, not) else {
            return false;
        };
        self.shared.set_last(group, member);
        let full = self.shared.group(group).full.clone();
        self.deliver(
            member,
            Delivery::through(Arc::clone(msg), &entry, Some(full)),
        );
        true
    }

    /// Whether a message fits the Maximum Packet Size of a member's connected client.
    pub(super) fn fits_member(
        &self,
        key: SessionKey,
        msg: &Arc<Message>,
        entry: &SubEntry,
    ) -> bool {
        !self.too_large_for(key, &Delivery::through(Arc::clone(msg), entry, None))
    }

    /// Whether a delivery exceeds the Maximum Packet Size of the session's connected client.
    fn too_large_for(&self, key: SessionKey, d: &Delivery) -> bool {
        let Some(conn) = self.sessions[key].conn().and_then(|id| self.conns.get(&id)) else {
            return false;
        };
        let Some(client) = conn.client() else {
            return false;
        };
        if client.max_packet_size >= MAX_PACKET_SIZE {
            return false;
        }
        let mut publish = d.to_publish(PacketId::new(1), false, self.now, client.version);
        // A bridge sends it under its remote name, which may be longer.
        if let Some(link) = conn.bridge.as_ref() {
            super::bridge::outgoing(&self.config, &self.bridges, link.id, &mut publish);
        }
        publish
            .encoded_len(client.version)
            .is_ok_and(|len| len > client.max_packet_size as usize)
    }

    /// The member of a group a message goes to, taking turns: the first, after the one chosen
    /// last, whose client is connected and can take it now (room in its window, or for QoS 0
    /// room in its output); failing that the first connected one; failing that, so that a
    /// message is not lost while every member is away, the first with a session. A member not
    /// allowed to receive the topic is never chosen, nor is `not`, nor a connected member whose
    /// Maximum Packet Size the message exceeds.
    fn choose_member(
        &self,
        group: GroupKey,
        msg: &Arc<Message>,
        not: Option<SessionKey>,
    ) -> Option<(SessionKey, SubEntry)> {
        let mut connected = None;
        let mut away = None;
        for (key, entry) in self.shared.group(group).in_turn() {
            if Some(key) == not || !self.allowed(key, Access::Receive, &msg.topic) {
                continue;
            }
            let session = &self.sessions[key];
            if session.conn().is_none() {
                away = away.or(Some((key, *entry)));
                continue;
            }
            if !self.fits_member(key, msg, entry) {
                continue;
            }
            let ready = match entry.qos.min(msg.qos) {
                QoS::AtMostOnce => !self.output_backed_up(key),
                _ => {
                    session.outbound.queue_is_empty() && session.outbound.has_room(self.window(key))
                }
            };
            if ready {
                return Some((key, *entry));
            }
            connected = connected.or(Some((key, *entry)));
        }
        connected.or(away)
    }

    /// Hands a delivery to a session: sent now if its client is connected and nothing must go
    /// first, otherwise queued within the session's limits. What cannot be queued is counted.
    pub(super) fn deliver(&mut self, key: SessionKey, mut d: Delivery) {
        // Recorded before it is sent or queued; a delivery that then cannot be queued is
        // recorded as discarded, so the log never holds a message the queue does not.
        self.record_enqueue(key, &mut d);
        let session = &self.sessions[key];
        let online = session.conn().is_some();
        // The connection's window and output are looked up only where they decide.
        let can_send_now = online
            && match d.qos {
                // QoS 0 does not wait for the window, but keeps its order behind QoS 0 messages
                // already queued [MQTT-4.6.0-6] (3.1.1) [MQTT-4.6.0-5] (5.0).
                QoS::AtMostOnce => {
                    !session.outbound.has_queued_qos0() && !self.output_backed_up(key)
                }
                _ => {
                    !session.outbound.has_resend()
                        && session.outbound.queue_is_empty()
                        && session.outbound.has_room(self.window(key))
                }
            };
        if can_send_now {
            self.send_delivery(key, d);
            return;
        }
        // QoS 0 is queued only where the configuration asks for it, or for a retained message
        // on subscribe, which is never dropped for lack of room.
        if d.qos == QoS::AtMostOnce && !d.on_subscribe {
            if !online && !self.config.queue_qos0_messages {
                self.stats.dropped_qos0_offline += 1;
                return;
            }
            if online && self.output_backed_up(key) {
                self.stats.dropped_qos0_backlog += 1;
                return;
            }
        }
        let (max_msgs, max_bytes) = (
            self.config.max_queued_messages,
            self.config.max_queued_bytes,
        );
        let max_retained = self.config.max_retained_messages;
        let mut queued = self.sessions[key]
            .outbound
            .enqueue(d, max_msgs, max_bytes, max_retained);
        // Expired messages make room before a new one is turned away.
        if let Err((full, d)) = queued {
            let expired = self.sessions[key].outbound.remove_expired(self.now);
            for gone in &expired {
                self.stats.dropped_expired += 1;
                self.record_discarded(key, gone);
            }
            queued = if expired.is_empty() {
                Err((full, d))
            } else {
                self.sessions[key]
                    .outbound
                    .enqueue(d, max_msgs, max_bytes, max_retained)
            };
        }
        let session = &mut self.sessions[key];
        match queued {
            Ok(()) => {
                let dropped = session.outbound.take_dropped();
                if dropped > 0 {
                    tracing::warn!(client_id = %session.client_id, dropped, "queue accepting messages again");
                }
            }
            Err((full, d)) => {
                self.record_discarded(key, &d);
                let session = &mut self.sessions[key];
                self.stats.dropped_queue_full += 1;
                if session.outbound.count_dropped() == 0 {
                    let limit = match full {
                        QueueFull::Messages => "max_queued_messages",
                        QueueFull::Bytes => "max_queued_bytes",
                        QueueFull::Retained => "max_retained_messages",
                    };
                    tracing::warn!(client_id = %session.client_id, limit, "session queue full, dropping messages");
                }
            }
        }
    }

    /// True when the session's connection cannot take more output now: the driver reported it
    /// blocked and its buffer is at `max_connection_buffer`.
    fn output_backed_up(&self, key: SessionKey) -> bool {
        self.sessions[key]
            .conn()
            .and_then(|id| self.conns.get(&id))
            .is_some_and(|c| c.blocked && c.pending_output() >= self.config.max_connection_buffer)
    }

    /// Outbound messages a session's client accepts in flight: the smaller of the configured
    /// window and the client's Receive Maximum [MQTT-3.3.4-9] (5.0).
    pub(super) fn window(&self, key: SessionKey) -> usize {
        let configured = match self.config.max_inflight_messages {
            0 => usize::from(u16::MAX),
            n => usize::from(n),
        };
        let client_max = self.sessions[key]
            .conn()
            .and_then(|id| self.conns.get(&id))
            .and_then(|c| c.client())
            .map_or(usize::from(u16::MAX), |c| usize::from(c.receive_maximum));
        configured.min(client_max)
    }

    /// Sends a delivery to the session's connected client: QoS 0 directly, QoS 1 and 2 with a
    /// fresh packet id in the window.
    fn send_delivery(&mut self, key: SessionKey, mut d: Delivery) {
        // A copy whose expiry passed before its onward delivery started is deleted
        // [MQTT-3.3.2-5] (5.0). Once in flight it completes, resends included.
        if d.msg.expired(self.now) {
            self.stats.dropped_expired += 1;
            self.record_discarded(key, &d);
            return;
        }
        if !self.fits_client(key, &d) {
            self.record_discarded(key, &d);
            return;
        }
        // A bridge's remote may take less than the QoS the message was queued at
        // [MQTT-3.2.2-11] (5.0); the limit is known only once its CONNACK arrived.
        let max_qos = self.max_outgoing_qos(key);
        if d.qos > max_qos {
            d.qos = max_qos;
            if max_qos == QoS::AtMostOnce {
                // Nothing stays in flight for it: it leaves the log's queue before it is sent.
                self.record_discarded(key, &d);
            }
        }
        if d.qos == QoS::AtMostOnce {
            self.write_publish(key, &d, None, false);
            return;
        }
        // A packet id unused by any message in flight [MQTT-4.3.2-1] [MQTT-4.3.3-1].
        let Some(id) = self.sessions[key].outbound.fresh_id() else {
            return;
        };
        let packet_id = id.get();
        self.record_sent(key, &d, packet_id);
        self.write_publish(key, &d, Some(packet_id), false);
        // Written first and then moved in: the delivery is not copied.
        self.sessions[key].outbound.start(id, d);
    }

    /// Sends a message in flight again on a new connection: DUP set, same packet id
    /// [MQTT-4.4.0-1] [MQTT-3.3.1-1].
    fn resend(&mut self, key: SessionKey, packet_id: PacketId, mut d: Delivery) {
        if !self.fits_client(key, &d) {
            self.sessions[key].outbound.abandon(packet_id);
            self.record_outbound(key, packet_id, false);
            return;
        }
        // A bridge's remote that now takes less than the QoS the message went at before gets
        // it at its Maximum QoS [MQTT-3.2.2-11] (5.0): at QoS 1 under the same packet id, at
        // QoS 0 as a new PUBLISH with the flow ended here.
        let max_qos = self.max_outgoing_qos(key);
        if d.qos > max_qos {
            d.qos = max_qos;
            if max_qos == QoS::AtMostOnce {
                self.sessions[key].outbound.abandon(packet_id);
                self.record_outbound(key, packet_id, false);
                self.write_publish(key, &d, None, false);
                return;
            }
            self.sessions[key].outbound.downgrade(packet_id, max_qos);
        }
        self.write_publish(key, &d, Some(packet_id), true);
    }

    /// Nothing larger than the client's Maximum Packet Size is sent; the message is dropped for
    /// this client and counted [MQTT-3.1.2-27] (5.0, 3.1.2.11.4).
    fn fits_client(&mut self, key: SessionKey, d: &Delivery) -> bool {
        if self.sessions[key].conn().is_none() {
            return false;
        }
        if self.too_large_for(key, d) {
            self.stats.dropped_too_large += 1;
            return false;
        }
        true
    }

    fn write_publish(&mut self, key: SessionKey, d: &Delivery, id: Option<PacketId>, dup: bool) {
        let Some(conn_id) = self.sessions[key].conn() else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let ConnState::Connected(client) = &mut conn.state else {
            return;
        };
        let version = client.version;
        let mut publish = d.to_publish(id, dup, self.now, version);
        if let Some(link) = conn.bridge.as_ref() {
            super::bridge::outgoing(&self.config, &self.bridges, link.id, &mut publish);
        }
        client
            .outbound_aliases
            .apply(&mut publish, version, client.max_packet_size);
        match self
            .outbox
            .write_publish(conn_id, conn, version, &publish, &mut self.stats)
        {
            Ok(_) => {
                self.stats.publish_sent += 1;
                self.stats.publish_bytes_sent += d.msg.payload.len() as u64;
            }
            Err(e) => tracing::error!(conn = conn_id.0, error = %e, "cannot encode PUBLISH"),
        }
    }

    /// Sends what waits while the client is connected: first messages in flight from an
    /// earlier connection, then the queue, each QoS 1/2 message as the window allows and QoS 0
    /// as the connection's output allows.
    pub(super) fn pump(&mut self, key: SessionKey) {
        while self.sessions[key].conn().is_some() {
            let window = self.window(key);
            let outbound = &mut self.sessions[key].outbound;
            if outbound.has_resend() {
                match outbound.next_resend(window) {
                    Some(Resend::Publish(packet_id, d)) => self.resend(key, packet_id, d),
                    Some(Resend::Release(packet_id)) => {
                        if let Some(conn) = self.sessions[key].conn() {
                            self.reply(conn, &Packet::PubRel(PubRel::success(packet_id)));
                        }
                    }
                    None if outbound.has_resend() => return,
                    None => {}
                }
                continue;
            }
            let ready = match outbound.next_queued_qos() {
                None => false,
                Some(QoS::AtMostOnce) => !self.output_backed_up(key),
                Some(_) => outbound.has_room(window),
            };
            if !ready {
                return;
            }
            let Some(d) = self.sessions[key].outbound.dequeue() else {
                return;
            };
            self.send_delivery(key, d);
        }
    }
}

/// Topics only the broker publishes to: the `$SYS` tree, except the connection state a bridge
/// reports about itself, which Mosquitto's bridges publish and Mosquitto accepts.
fn is_broker_topic(topic: &str) -> bool {
    topic.starts_with("$SYS")
        && !crate::codec::topic::matches("$SYS/broker/connection/+/state", topic)
}
