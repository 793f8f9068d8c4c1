//! Bridge state notifications (Mosquitto's `notifications`): a retained "1" on the
//! notification topic when the link comes up and "0" when it goes down, published here and,
//! unless `notifications_local_only`, on the remote broker, where the link's will ("0",
//! retained) reports a link that died without a word.

use super::BridgeId;
use super::config::BridgeConfig;
use crate::broker::message::Message;
use crate::broker::{Broker, ConnId};
use crate::codec::{
    ByteString, LastWill, Packet, Publish, PublishProperties, QoS, QosPid, WillProperties, topic,
};
use bytes::Bytes;
use std::sync::Arc;

fn payload(up: bool) -> Bytes {
    Bytes::from_static(if up { b"1" } else { b"0" })
}

/// The notification topic, when notifications are on and it is a valid topic name.
fn notification_topic(cfg: &BridgeConfig) -> Option<ByteString> {
    if !cfg.notifications {
        return None;
    }
    if !topic::is_valid_name(&cfg.notification_topic) {
        tracing::warn!(bridge = %cfg.name, topic = %cfg.notification_topic, "notification topic is not a valid topic name, no notifications");
        return None;
    }
    Some(ByteString::from(cfg.notification_topic.as_str()))
}

/// Whether the remote broker gets notifications too.
fn remote(cfg: &BridgeConfig) -> Option<ByteString> {
    notification_topic(cfg).filter(|_| !cfg.notifications_local_only)
}

/// The will the link's CONNECT carries: "0", retained, at QoS 1 as Mosquitto's.
pub(super) fn will(cfg: &BridgeConfig) -> Option<LastWill> {
    remote(cfg).map(|topic| LastWill {
        topic,
        payload: payload(false),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties::default(),
    })
}

impl Broker {
    /// Publishes the bridge's state here. It is published as from the bridge's local session,
    /// so that its no local keeps it off the link when an `out` topic matches it.
    pub(super) fn notify_local(&mut self, id: BridgeId, up: bool) {
        let Some(topic) = notification_topic(&self.config.bridges[id.index()]) else {
            return;
        };
        let msg = Message {
            topic,
            payload: payload(up),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: PublishProperties::default(),
            expires_at: None,
            stored_id: Default::default(),
        };
        let origin = self.bridge_session(id);
        self.accept_message(Arc::new(msg), origin);
    }

    /// Publishes the bridge's state on the remote broker, on the link `conn`. It goes at QoS 0:
    /// a retained value needs no acknowledgement to be in order, and if the link fails before
    /// it arrives, the will says "0" anyway.
    pub(super) fn notify_remote(&mut self, id: BridgeId, conn: ConnId, up: bool) {
        let Some(topic) = remote(&self.config.bridges[id.index()]) else {
            return;
        };
        let publish = Publish {
            dup: false,
            qos_pid: QosPid::AtMostOnce,
            retain: self.bridges[id.index()].remote_retain,
            topic,
            properties: PublishProperties::default(),
            payload: payload(up),
        };
        self.reply(conn, &Packet::Publish(publish));
    }
}
