//! Application messages as the broker keeps them, and one delivery of a message to a session.

use super::Time;
use super::subscribe::SubEntry;
use crate::codec::{
    ByteString, PacketId, ProtocolVersion, Publish, PublishProperties, QoS, QosPid,
};
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
        own_properties(&mut properties);
        // The decoded topic and payload are slices of the buffer the packet was read into,
        // which other packets of the same read share. A message can outlive its read by days
        // (retained, or queued for an offline session): copied into allocations of their own,
        // it holds its own bytes and no more, so that the retained and queue limits bound
        // memory, and the read buffer is free to be reused at once.
        let (topic, payload) = own_topic_and_payload(&p.topic, &p.payload);
        Message {
            topic,
            payload,
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

/// Copies a topic and a payload into one allocation of their own (see
/// [`Message::from_publish`]): one allocation rather than two, and the clones each delivery
/// takes only count references to it.
fn own_topic_and_payload(topic: &str, payload: &[u8]) -> (ByteString, Bytes) {
    let mut buf = bytes::BytesMut::with_capacity(topic.len() + payload.len());
    buf.extend_from_slice(topic.as_bytes());
    buf.extend_from_slice(payload);
    let buf = buf.freeze();
    let split = topic.len();
    let topic =
        ByteString::try_from(buf.slice(..split)).expect("a copy of a valid topic is valid UTF-8");
    (topic, buf.slice(split..))
}

/// Copies the strings and bytes of the properties out of the read buffer (see
/// [`Message::from_publish`]).
fn own_properties(p: &mut PublishProperties) {
    let own = |s: &mut ByteString| *s = ByteString::from(&**s);
    if let Some(t) = &mut p.response_topic {
        own(t);
    }
    if let Some(t) = &mut p.content_type {
        own(t);
    }
    if let Some(d) = &mut p.correlation_data {
        *d = Bytes::copy_from_slice(d);
    }
    for (k, v) in &mut p.user_properties {
        own(k);
        own(v);
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

    /// The PUBLISH packet for this delivery to a client of `version`, sent at `now`: with the
    /// Message Expiry Interval less the time the message has waited in the broker
    /// [MQTT-3.3.2-6] (5.0).
    pub(crate) fn to_publish(
        &self,
        packet_id: Option<PacketId>,
        dup: bool,
        now: Time,
        version: ProtocolVersion,
    ) -> Publish {
        let qos_pid = match packet_id {
            Some(id) => QosPid::new(self.qos, id),
            None => QosPid::AtMostOnce,
        };
        // Only MQTT 5 encodes properties: for the others they are not copied just to be left out.
        let properties = if version.is_v5() {
            let mut properties = self.msg.properties.clone();
            properties.subscription_identifiers = self.subscription_ids.clone();
            if let Some(left) = self.msg.remaining_secs(now) {
                properties.message_expiry_interval = Some(left);
            }
            properties
        } else {
            PublishProperties::default()
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Packet, ProtocolVersion, decode};

    /// A message keeps none of the buffer its PUBLISH was read from: not its topic, payload or
    /// properties, so a retained or queued message holds only its own bytes.
    #[test]
    fn a_message_owns_its_bytes() {
        let mut publish = Publish {
            dup: false,
            qos_pid: QosPid::AtMostOnce,
            retain: true,
            topic: ByteString::from("sensors/1"),
            properties: PublishProperties::default(),
            payload: Bytes::from_static(b"21.5"),
        };
        publish.properties.response_topic = Some(ByteString::from("reply"));
        publish.properties.content_type = Some(ByteString::from("text/plain"));
        publish.properties.correlation_data = Some(Bytes::from_static(b"c"));
        publish.properties.user_properties = vec![("k".into(), "v".into())];
        let mut buf = bytes::BytesMut::new();
        Packet::Publish(publish)
            .encode(ProtocolVersion::V5, &mut buf)
            .unwrap();
        // Other packets of the same read after it.
        buf.extend_from_slice(&[0u8; 4096]);
        let read = buf.freeze();
        let Some((Packet::Publish(p), _)) = decode(&read, ProtocolVersion::V5, u32::MAX).unwrap()
        else {
            panic!("not a PUBLISH");
        };
        let range = read.as_ptr_range();
        let inside = |b: &[u8]| range.contains(&b.as_ptr());
        assert!(
            inside(&p.payload),
            "the decoded payload is a slice of the read"
        );
        let m = Message::from_publish(p, Time::ZERO);
        let props = &m.properties;
        let fields: [(&str, &[u8]); 6] = [
            ("topic", m.topic.as_bytes()),
            ("payload", &m.payload),
            (
                "response topic",
                props.response_topic.as_ref().unwrap().as_bytes(),
            ),
            (
                "content type",
                props.content_type.as_ref().unwrap().as_bytes(),
            ),
            ("correlation data", props.correlation_data.as_ref().unwrap()),
            ("user property", props.user_properties[0].1.as_bytes()),
        ];
        for (name, bytes) in fields {
            assert!(!inside(bytes), "{name} still points into the read buffer");
        }
        assert_eq!(&m.topic[..], "sensors/1");
        assert_eq!(&m.payload[..], b"21.5");
    }
}
