//! Application messages as the broker keeps them, and one delivery of a message to a session.

use super::Time;
use super::subscribe::SubEntry;
use crate::codec::{ByteString, PacketId, Publish, PublishProperties, QoS, QosPid};
use bytes::Bytes;
use std::sync::{Arc, OnceLock};

/// A message as published, shared by every session it is delivered to and by the retained
/// store. Topic and payload share the memory of the packet it arrived in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
    /// The QoS it was published with, the most any subscriber receives it with.
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 properties forwarded to subscribers. Topic Alias and Subscription Identifiers
    /// belong to one hop and are never stored here; the Message Expiry Interval here is the
    /// one it was published with, and each PUBLISH sent carries what is left of it.
    pub properties: PublishProperties,
    /// When the Message Expiry Interval runs out: a copy not yet on its way to a subscriber
    /// is deleted then [MQTT-3.3.2-5] (5.0). A deadline on the driver's clock, which is why it
    /// persists across restarts only as well as the driver's clock does (see `Time`).
    pub expires_at: Option<Time>,
    /// The id the log knows the message by, once it is stored.
    pub stored_id: OnceLock<u64>,
}

impl Message {
    /// Takes the message out of a PUBLISH received at `now`, dropping per-hop properties.
    pub(crate) fn from_publish(p: Publish, now: Time) -> Message {
        let mut properties = p.properties;
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos_pid.qos(),
            retain: p.retain,
            expires_at: expiry_deadline(&properties, now),
            properties,
            stored_id: OnceLock::new(),
        }
    }

    /// True once the Message Expiry Interval has passed.
    pub(crate) fn expired(&self, now: Time) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whole seconds of the Message Expiry Interval left at `now`, rounded up so that a message
    /// not yet expired never says 0.
    pub(crate) fn remaining_secs(&self, now: Time) -> Option<u32> {
        self.expires_at.map(|at| {
            let ms = at.as_millis().saturating_sub(now.as_millis());
            u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }
}

/// When a message with these properties, accepted at `now`, expires.
pub(crate) fn expiry_deadline(properties: &PublishProperties, now: Time) -> Option<Time> {
    properties
        .message_expiry_interval
        .map(|secs| now.plus_secs(u64::from(secs)))
}

/// One message on its way to one session: the QoS and RETAIN flag this subscriber gets and the
/// identifiers of its subscriptions that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub msg: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// The delivery's id in the log (when `recorded`), which orders a session's deliveries.
    pub id: u64,
    /// An Enqueue record was written for it.
    pub recorded: bool,
    /// A retained message sent because a subscription was made: not counted against the
    /// session's queue limits (see `Config::max_retained_messages`).
    pub on_subscribe: bool,
    /// The shared subscription (`$share/...` filter) it was chosen for, if any: another member
    /// of the group may take it over while it is unacknowledged.
    pub shared: Option<ByteString>,
}

impl Delivery {
    /// A delivery of `msg` through a subscription with these options (`shared`: the shared
    /// subscription it was chosen for): at most the granted QoS, RETAIN kept only with Retain
    /// As Published [MQTT-3.3.1-9] (3.1.1) (5.0, 3.3.1.3).
    pub(crate) fn through(
        msg: Arc<Message>,
        entry: &SubEntry,
        shared: Option<ByteString>,
    ) -> Delivery {
        Delivery {
            qos: entry.qos.min(msg.qos),
            retain: msg.retain && entry.retain_as_published,
            subscription_ids: entry.subscription_id.into_iter().collect(),
            id: 0,
            recorded: false,
            on_subscribe: false,
            shared,
            msg,
        }
    }

    /// Bytes counted against a session's `max_queued_bytes`: the payload, as Mosquitto counts.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.msg.payload.len()
    }

    /// The PUBLISH packet for this delivery, sent at `now`: with the Message Expiry Interval
    /// less the time the message has waited in the broker [MQTT-3.3.2-6] (5.0).
    pub(crate) fn to_publish(&self, packet_id: Option<PacketId>, dup: bool, now: Time) -> Publish {
        let qos_pid = match packet_id {
            Some(id) => QosPid::new(self.qos, id),
            None => QosPid::AtMostOnce,
        };
        let mut properties = self.msg.properties.clone();
        properties.subscription_identifiers = self.subscription_ids.clone();
        if let Some(left) = self.msg.remaining_secs(now) {
            properties.message_expiry_interval = Some(left);
        }
        Publish {
            dup,
            qos_pid,
            retain: self.retain,
            topic: self.msg.topic.clone(),
            properties,
            payload: self.msg.payload.clone(),
        }
    }
}
