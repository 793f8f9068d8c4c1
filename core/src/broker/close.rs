//! The end of connections and sessions: closing, wills, session expiry, and DISCONNECT from a
//! client.

use super::connect::{CONNECTIONS, peer_text};
use super::connection::{ConnState, Connection, Will};
use super::message::expiry_deadline;
use super::problem;
use super::session::{Expiry, SessionKey};
use super::timers::Timer;
use super::{Broker, ConnId};
use crate::codec::{Disconnect, DisconnectReason, Packet};
use std::sync::Arc;

/// What happens to the will of a connection that ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WillAction {
    /// The connection ended abnormally: publish the will (after its delay) [MQTT-3.1.2-8].
    Publish,
    /// The client disconnected normally: the will is deleted [MQTT-3.14.4-3].
    Discard,
}

/// Whether the session of a closed connection may end now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionFate {
    /// By its expiry, as usual.
    ByExpiry,
    /// Never now: a new connection is taking it over.
    TakenOver,
}

impl Broker {
    /// Closes a connection from the broker's side: an MQTT 5 client first gets a DISCONNECT
    /// with `reason`, when one is given.
    pub(super) fn close_conn(
        &mut self,
        id: ConnId,
        reason: Option<DisconnectReason>,
        will: WillAction,
    ) {
        self.close_inner(id, reason, will, SessionFate::ByExpiry);
    }

    /// Closes the connection a session is attached to because a new connection takes the
    /// session over [MQTT-3.1.4-2] (3.1.1) [MQTT-3.1.4-3] (5.0).
    pub(super) fn close_taken_over(&mut self, id: ConnId) {
        self.close_inner(
            id,
            Some(DisconnectReason::SessionTakenOver),
            WillAction::Publish,
            SessionFate::TakenOver,
        );
    }

    fn close_inner(
        &mut self,
        id: ConnId,
        reason: Option<DisconnectReason>,
        will: WillAction,
        fate: SessionFate,
    ) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        if let Some(client) = conn.client() {
            let why = match (reason, will) {
                (Some(r), _) => format!("{r:?}"),
                (None, WillAction::Discard) => "disconnected".to_owned(),
                (None, WillAction::Publish) => "DisconnectWithWillMessage".to_owned(),
            };
            tracing::info!(
                target: CONNECTIONS,
                "client {} from {} closed: {why}",
                self.client_id(client.session),
                peer_text(conn.peer)
            );
        }
        if let (Some(reason), Some(client)) = (reason, conn.client())
            && client.version.is_v5()
        {
            let version = client.version;
            let mut disconnect = Disconnect::new(reason);
            disconnect.properties.reason_string = problem::disconnect(reason);
            let mut packet = Packet::Disconnect(disconnect);
            if !problem::fit(&mut packet, version, client.max_packet_size) {
                tracing::debug!(
                    conn = id.0,
                    "DISCONNECT exceeds the client's maximum packet size"
                );
            } else if let Err(e) =
                self.outbox
                    .write(id, &mut conn, version, &packet, &mut self.stats)
            {
                tracing::error!(conn = id.0, error = %e, "cannot encode DISCONNECT");
            }
        }
        self.outbox.close(id, &mut conn, &mut self.stats);
        self.detach(id, conn, will, fate);
    }

    /// The peer closed the connection, or it failed: nothing more can be sent. A connection that
    /// ends without DISCONNECT publishes its will [MQTT-3.1.2-8].
    pub(super) fn peer_closed(&mut self, id: ConnId) {
        self.outbox.forget(id);
        if let Some(conn) = self.conns.remove(&id) {
            if let Some(client) = conn.client() {
                tracing::info!(
                    target: CONNECTIONS,
                    "client {} from {} closed its connection without DISCONNECT",
                    self.client_id(client.session),
                    peer_text(conn.peer)
                );
            }
            self.detach(id, conn, WillAction::Publish, SessionFate::ByExpiry);
        }
    }

    /// Forgets a connection that is gone and detaches its session; a bridge's link that is gone
    /// makes the bridge dial again.
    fn detach(&mut self, id: ConnId, conn: Connection, will: WillAction, fate: SessionFate) {
        let bridge = conn.bridge.as_ref().map(|link| link.id);
        self.detach_session(id, conn, will, fate);
        if let Some(bridge) = bridge {
            self.bridge_link_closed(bridge, id);
        }
    }

    fn detach_session(
        &mut self,
        id: ConnId,
        conn: Connection,
        will: WillAction,
        fate: SessionFate,
    ) {
        self.stats.connections_open -= 1;
        let ConnState::Connected(client) = conn.state else {
            return;
        };
        self.stats.clients_connected -= 1;
        let key = client.session;
        let Some(session) = self.sessions.get_mut(key) else {
            return;
        };
        if session.conn() != Some(id) {
            return;
        }
        session.detach();
        match (will, client.will) {
            (WillAction::Publish, Some(w)) if w.delay_secs == 0 => {
                self.record_will(key, None);
                self.publish_will(w);
            }
            (WillAction::Publish, Some(w)) => {
                // Held until the delay passes or the session ends [MQTT-3.1.2-8], and
                // dropped if the client reconnects first [MQTT-3.1.2-26].
                // The WillSet record written at CONNECT stands for it.
                let due = self.now.plus_secs(u64::from(w.delay_secs));
                self.sessions[key].pending_will = Some(Box::new((due, w)));
                self.timers.schedule(due, Timer::WillDelay(key));
            }
            (WillAction::Discard, Some(_)) => self.record_will(key, None),
            (_, None) => {}
        }
        if fate == SessionFate::TakenOver {
            return;
        }
        if self.sessions[key].expiry != Expiry::OnDisconnect {
            self.hand_over_shared(key, false);
        }
        match self.sessions[key].expiry {
            // A clean session ends with its connection [MQTT-3.1.2-6] (3.1.1); so does an
            // MQTT 5 session with expiry interval 0 [MQTT-3.1.2-25] (5.0).
            Expiry::OnDisconnect => self.end_session(key),
            Expiry::After(secs) => {
                #[allow(unused_mut)]
                let mut at = self.now.plus_secs(u64::from(secs));
                #[cfg(feature = "sim-bugs")]
                if crate::bugs::planted(&self.config, crate::bugs::Bug::ExpireSessionEarly) {
                    at = self.now.plus_millis(u64::from(secs) * 500);
                }
                self.sessions[key].expire_at(at);
                self.timers.schedule(at, Timer::SessionExpiry(key));
            }
            // Kept until the client cleans it [MQTT-3.1.2-4] (3.1.1).
            Expiry::Never => {}
        }
    }

    /// Ends a session: its subscriptions and queued messages go, and a will still waiting for
    /// its delay is published now [MQTT-3.1.2-8] [MQTT-4.1.0-2] (5.0).
    pub(super) fn end_session(&mut self, key: SessionKey) {
        if !self.sessions.contains(key) {
            return;
        }
        self.hand_over_shared(key, true);
        let Some(session) = self.sessions.try_remove(key) else {
            return;
        };
        self.stats.sessions -= 1;
        self.session_index.remove(&*session.client_id);
        self.record_session_end(&session.client_id, session.persisted);
        for filter in &session.subscriptions {
            self.remove_subscription(filter, key);
        }
        let dropped = session.outbound.queue_len() + session.outbound.inflight_len();
        if dropped > 0 {
            tracing::debug!(client_id = %session.client_id, messages = dropped, "session ended with undelivered messages");
        }
        if let Some(pending) = session.pending_will {
            let (_, will) = *pending;
            self.publish_will(will);
        }
    }

    /// Publishes a will as if its client had published it.
    pub(super) fn publish_will(&mut self, will: Will) {
        // Its Message Expiry Interval counts from now (5.0, 3.1.3.2.4).
        let mut msg = Arc::unwrap_or_clone(will.msg);
        msg.expires_at = expiry_deadline(&msg.properties, self.now);
        self.accept_message(Arc::new(msg), None);
    }

    /// DISCONNECT from a client: no reply; the will is deleted unless MQTT 5 reason 0x04 asks for
    /// it [MQTT-3.14.4-3] (5.0, 3.14.2.1). An MQTT 5 client may change its session expiry
    /// here, but not from zero to non-zero (5.0, 3.14.2.2.2).
    pub(super) fn client_disconnect(&mut self, id: ConnId, key: SessionKey, d: Disconnect) {
        let Some(client) = self.conns.get(&id).and_then(|c| c.client()) else {
            return;
        };
        if let Some(secs) = d.properties.session_expiry_interval {
            if client.connect_session_expiry == 0 && secs != 0 {
                self.protocol_error(id, DisconnectReason::ProtocolError);
                return;
            }
            self.sessions[key].expiry = Expiry::from_interval(secs);
            self.record_session(key);
        }
        let will = if d.reason == DisconnectReason::DisconnectWithWillMessage {
            WillAction::Publish
        } else {
            WillAction::Discard
        };
        self.close_conn(id, None, will);
    }
}
