//! Application messages as the broker keeps them, and one delivery of a message to a session.

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
    /// belong to one hop and are never stored here.
    pub properties: PublishProperties,
    /// The id the log knows the message by, once it is stored.
    pub stored_id: OnceLock<u64>,
}

impl Message {
    /// Takes the message out of a received PUBLISH, dropping per-hop properties.
    pub(crate) fn from_publish(p: Publish) -> Message {
        let mut properties = p.properties;
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos_pid.qos(),
            retain: p.retain,
            properties,
            stored_id: OnceLock::new(),
        }
    }
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
}

impl Delivery {
    /// Bytes counted against a session's `max_queued_bytes`: the payload, as Mosquitto counts.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.msg.payload.len()
    }

    /// The PUBLISH packet for this delivery.
    pub(crate) fn to_publish(&self, packet_id: Option<PacketId>, dup: bool) -> Publish {
        let qos_pid = match packet_id {
            Some(id) => QosPid::new(self.qos, id),
            None => QosPid::AtMostOnce,
        };
        let mut properties = self.msg.properties.clone();
        properties.subscription_identifiers = self.subscription_ids.clone();
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
