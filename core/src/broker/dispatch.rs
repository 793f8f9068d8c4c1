//! From received bytes to packet handlers: framing, decode errors, and which packets a client
//! may send in which state.

use super::close::WillAction;
use super::connection::ConnState;
use super::{Action, Broker, ConnId};
use crate::codec::{self, ConnAck, ConnectReason, DecodeError, DisconnectReason, Packet};
use crate::codec::{ConnAckProperties, ProtocolVersion};

impl Broker {
    /// Appends received bytes and handles every complete packet in them.
    pub(super) fn received(&mut self, id: ConnId, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if !bytes.is_empty() {
            conn.read_buf.extend_from_slice(bytes);
            conn.last_received = self.now;
        }
        self.stats.bytes_received += bytes.len() as u64;
        // Each iteration re-fetches the connection: a handler may have closed it.
        while let Some(conn) = self.conns.get_mut(&id) {
            // A client that does not read what it is sent may not make the broker write more:
            // its further packets wait until the output drains, so the output buffer stays
            // bounded whatever the client sends.
            if conn.read_paused {
                break;
            }
            if conn.blocked && conn.pending_output() >= self.config.max_connection_buffer {
                conn.read_paused = true;
                self.outbox.push(Action::PauseRead { conn: id });
                break;
            }
            // Before CONNECT only a CONNECT is acceptable, and it decodes by its own version;
            // peeking at that version first lets a CONNECT that fails be answered in it.
            let version = match &conn.state {
                // This broker dialed it: it speaks the version of the bridge's CONNECT.
                _ if conn.bridge.is_some() => conn.bridge.as_ref().map(|b| b.version),
                ConnState::Connected(c) => Some(c.version),
                ConnState::AwaitingConnect { .. } => codec::peek_connect_version(&conn.read_buf),
                // Only an MQTT 5 CONNECT can ask for enhanced authentication.
                ConnState::Authenticating(_) => Some(ProtocolVersion::V5),
            };
            let decoding = version.unwrap_or(ProtocolVersion::V5);
            match codec::decode_from(&mut conn.read_buf, decoding, self.config.max_packet_size) {
                Ok(Some(packet)) => {
                    self.stats.messages_received += 1;
                    if matches!(packet, Packet::Connect(_)) {
                        self.stats.connects_received += 1;
                    }
                    self.dispatch(id, packet);
                    // A reply that could not be sent ends the connection: read no further.
                    if self.reply_too_large.contains(&id) {
                        break;
                    }
                }
                Ok(None) => {
                    // Nothing left to decode: an idle connection keeps no receive buffer.
                    if conn.read_buf.is_empty() {
                        conn.read_buf = bytes::BytesMut::new();
                    }
                    break;
                }
                Err(e) => {
                    self.decode_failed(id, e, version);
                    break;
                }
            }
        }
    }

    fn dispatch(&mut self, id: ConnId, packet: Packet) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if let Some(link) = conn.bridge.as_ref() {
            return self.bridge_dispatch(id, link.id, packet);
        }
        let Some(client) = conn.client() else {
            let authenticating = matches!(conn.state, ConnState::Authenticating(_));
            match packet {
                Packet::Connect(c) if !authenticating => self.connect(id, *c),
                // While enhanced authentication runs the client may send only AUTH and
                // DISCONNECT [MQTT-3.1.2-33] (5.0).
                Packet::Auth(a) if authenticating => self.auth_received(id, a),
                Packet::Disconnect(_) if authenticating => {
                    tracing::debug!(conn = id.0, "client gave up authenticating");
                    self.close_conn(id, None, WillAction::Discard);
                }
                other if authenticating => {
                    tracing::debug!(conn = id.0, packet = ?other.packet_type(), "packet other than AUTH while authenticating");
                    self.refuse_authenticating(id, ConnectReason::ProtocolError);
                }
                // The first packet must be CONNECT [MQTT-3.1.0-1].
                other => {
                    tracing::debug!(conn = id.0, packet = ?other.packet_type(), "first packet is not CONNECT");
                    self.close_conn(id, None, WillAction::Discard);
                }
            }
            return;
        };
        let key = client.session;
        match packet {
            Packet::Publish(p) => self.publish_received(id, key, p),
            Packet::PubAck(a) => self.puback_received(key, a.packet_id),
            Packet::PubRec(r) => self.pubrec_received(id, key, r),
            Packet::PubRel(r) => self.pubrel_received(id, key, r.packet_id),
            Packet::PubComp(c) => self.pubcomp_received(key, c.packet_id),
            Packet::Subscribe(s) => self.subscribe(id, key, s),
            Packet::Unsubscribe(u) => self.unsubscribe(id, key, u),
            Packet::PingReq => self.reply(id, &Packet::PingResp), // [MQTT-3.12.4-1]
            Packet::Disconnect(d) => self.client_disconnect(id, key, d),
            // Re-authentication (5.0, 4.12.1), or a protocol error.
            Packet::Auth(a) => self.auth_received(id, a),
            // A second CONNECT is a protocol violation [MQTT-3.1.0-2].
            Packet::Connect(_)
            // Packets only a server sends.
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => {
                tracing::debug!(conn = id.0, packet = ?packet.packet_type(), "unexpected packet from client");
                self.protocol_error(id, DisconnectReason::ProtocolError);
            }
        }
    }

    /// Encodes a packet for a connected client in its version.
    pub(super) fn reply(&mut self, id: ConnId, packet: &Packet) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Some((version, max)) = conn.client().map(|c| (c.version, c.max_packet_size)) else {
            return;
        };
        let mut fitted;
        // Most replies fit: only those that do not are copied to have their extras removed.
        let fits =
            max >= crate::codec::MAX_PACKET_SIZE || super::problem::fits(packet, version, max);
        let packet = if !fits {
            fitted = packet.clone();
            if !super::problem::fit(&mut fitted, version, max) {
                // It must not be sent [MQTT-3.1.2-27] (5.0). A client left without its answer
                // would wait for it forever, so the connection is closed with DISCONNECT 0x95
                // (as Mosquitto closes it), once the input being handled is done (CONNACK, the
                // one reply that cannot be skipped, is checked before the connection is
                // accepted).
                tracing::warn!(conn = id.0, packet = ?packet.packet_type(), max, "reply exceeds the client's maximum packet size, closing");
                if !self.reply_too_large.contains(&id) {
                    self.reply_too_large.push(id);
                }
                return;
            }
            &fitted
        } else {
            packet
        };
        if let Err(e) = self
            .outbox
            .write(id, conn, version, packet, &mut self.stats)
        {
            // Only packets the broker builds reach here; failing to encode one is a bug.
            tracing::error!(conn = id.0, error = %e, "cannot encode reply");
        }
    }

    /// Closes the connections a reply did not fit, with DISCONNECT 0x95 (Packet too large).
    pub(super) fn close_reply_too_large(&mut self) {
        for id in std::mem::take(&mut self.reply_too_large) {
            if self.conns.get(&id).is_some_and(|c| c.client().is_some()) {
                self.protocol_error(id, DisconnectReason::PacketTooLarge);
            }
        }
    }

    /// Bytes that are not a valid packet.
    fn decode_failed(&mut self, id: ConnId, e: DecodeError, version: Option<ProtocolVersion>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        tracing::debug!(conn = id.0, error = %e, "malformed packet");
        // From a bridge's remote broker: the link closes, MQTT 5 with DISCONNECT and the reason
        // once connected [MQTT-4.13.1-1] (5.0), and the bridge dials again after its backoff.
        if conn.bridge.is_some() {
            let reason = conn.client().map(|_| e.disconnect_reason());
            tracing::warn!(conn = id.0, error = %e, "malformed packet from a bridge's remote broker");
            return self.close_conn(id, reason, WillAction::Discard);
        }
        if conn.client().is_some() {
            self.protocol_error(id, e.disconnect_reason());
            return;
        }
        // A CONNECT that does not decode: close [MQTT-3.1.4-1], answering first where the
        // client can understand the answer. An unsupported protocol level gets the 3.1.1 return
        // code 0x01 [MQTT-3.1.2-2] (3.1.1); an MQTT 5 CONNECT may get a reason code (5.0, 3.1.4).
        let answer = match &e {
            DecodeError::UnsupportedProtocolVersion(_) => Some(ProtocolVersion::V3_1_1),
            _ if version == Some(ProtocolVersion::V5) => Some(ProtocolVersion::V5),
            _ => None,
        };
        if let Some(version) = answer {
            let connack = Packet::from(ConnAck {
                session_present: false,
                reason: match version {
                    ProtocolVersion::V5 => e.connect_reason(),
                    _ => ConnectReason::UnsupportedProtocolVersion,
                },
                properties: ConnAckProperties::default(),
            });
            if self
                .outbox
                .write(id, conn, version, &connack, &mut self.stats)
                .is_err()
            {
                tracing::error!(conn = id.0, "cannot encode CONNACK");
            }
        }
        self.close_conn(id, None, WillAction::Discard);
    }

    /// A connected client broke the protocol: MQTT 5 clients get a DISCONNECT with the reason,
    /// 3.1.x clients a closed connection (5.0, 4.13; 3.1.1, 4.8). Its will is published.
    pub(super) fn protocol_error(&mut self, id: ConnId, reason: DisconnectReason) {
        self.close_conn(id, Some(reason), WillAction::Publish);
    }
}
