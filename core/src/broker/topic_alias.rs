//! MQTT 5 Topic Aliases (5.0, 3.3.2.3.4): small integers that stand for topic names on one
//! network connection, in each direction separately. Mappings never outlive their connection
//! [MQTT-3.3.2-7] (5.0), so they live with the connection, not the session.

use crate::codec::{ByteString, DisconnectReason, ProtocolVersion, Publish};
use std::collections::BTreeMap;
use std::num::NonZeroU16;

/// The aliases a client set for the topics it publishes to, at most as many as the broker
/// announced in CONNACK.
///
/// Every MQTT 5 connection has one, and most never use an alias: the map is boxed and made on
/// the first alias, so that an idle connection pays for a pointer, not an empty map.
#[derive(Debug, Default)]
pub(crate) struct InboundAliases {
    max: u16,
    // Boxed on purpose: a pointer (8 bytes) instead of an empty map (24) in every connection.
    #[allow(clippy::box_collection)]
    topics: Option<Box<BTreeMap<u16, ByteString>>>,
}

impl InboundAliases {
    pub(crate) fn new(max: u16) -> InboundAliases {
        InboundAliases { max, topics: None }
    }

    /// The topic a PUBLISH is for: its topic name, which an alias beside it now stands for, or
    /// the topic its alias stands for when the name is empty.
    pub(crate) fn resolve(
        &mut self,
        topic: ByteString,
        alias: Option<NonZeroU16>,
    ) -> Result<ByteString, DisconnectReason> {
        let Some(alias) = alias else {
            return Ok(topic);
        };
        // Aliases 1 to the maximum announced are accepted [MQTT-3.3.2-12]; beyond it the
        // client broke [MQTT-3.3.2-9] (5.0). With no maximum announced there are none.
        if alias.get() > self.max {
            return Err(DisconnectReason::TopicAliasInvalid);
        }
        if topic.is_empty() {
            // An alias that stands for nothing yet is a Protocol Error (5.0, 3.3.2.3.4).
            return self
                .topics
                .as_ref()
                .and_then(|topics| topics.get(&alias.get()))
                .cloned()
                .ok_or(DisconnectReason::ProtocolError);
        }
        self.topics
            .get_or_insert_default()
            .insert(alias.get(), topic.clone());
        Ok(topic)
    }
}

/// How a PUBLISH to a client names its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasUse {
    /// The topic name alone: aliases are off for this client.
    None,
    /// The topic name with an alias, which stands for it from now on.
    Set(NonZeroU16),
    /// The alias alone, with an empty topic name.
    Reuse(NonZeroU16),
}

/// The aliases the broker chose for topics it sends to a client: at most the smaller of the
/// client's Topic Alias Maximum and the broker's own limit, and when all are taken the alias
/// of the topic least recently sent is given to the new one.
///
/// The table is boxed and made on the first alias sent, as for `InboundAliases`.
#[derive(Debug, Default)]
pub(crate) struct OutboundAliases {
    max: u16,
    table: Option<Box<OutboundTable>>,
}

#[derive(Debug, Default)]
struct OutboundTable {
    /// Topic -> (alias, when last used).
    by_topic: BTreeMap<ByteString, (NonZeroU16, u64)>,
    /// When last used -> topic, oldest first.
    by_use: BTreeMap<u64, ByteString>,
    uses: u64,
}

impl OutboundAliases {
    pub(crate) fn new(max: u16) -> OutboundAliases {
        OutboundAliases { max, table: None }
    }

    /// The alias to send `topic` with, without taking it yet (see `commit`). Never 0
    /// [MQTT-3.3.2-8] nor above the client's Topic Alias Maximum [MQTT-3.3.2-11] (5.0).
    pub(crate) fn plan(&self, topic: &ByteString) -> AliasUse {
        if self.max == 0 || topic.is_empty() {
            return AliasUse::None;
        }
        let Some(t) = self.table.as_deref() else {
            // Nothing sent with an alias yet: the first one.
            return AliasUse::Set(NonZeroU16::MIN);
        };
        if let Some((alias, _)) = t.by_topic.get(topic) {
            return AliasUse::Reuse(*alias);
        }
        let alias = if t.by_topic.len() < usize::from(self.max) {
            // The next unused number: aliases are handed out from 1 and never freed.
            NonZeroU16::new(t.by_topic.len() as u16 + 1)
        } else {
            // The alias of the topic least recently sent.
            t.by_use
                .first_key_value()
                .and_then(|(_, old)| t.by_topic.get(old))
                .map(|(alias, _)| *alias)
        };
        alias.map_or(AliasUse::None, AliasUse::Set)
    }

    /// Records that `topic` was sent as `plan` said.
    pub(crate) fn commit(&mut self, topic: &ByteString, plan: AliasUse) {
        let alias = match plan {
            AliasUse::None => return,
            AliasUse::Set(a) | AliasUse::Reuse(a) => a,
        };
        let t = self.table.get_or_insert_default();
        t.uses += 1;
        let now = t.uses;
        if let AliasUse::Set(_) = plan {
            // The alias leaves the topic it stood for, if any.
            let old = t
                .by_topic
                .iter()
                .find(|(_, (a, _))| *a == alias)
                .map(|(topic, (_, used))| (topic.clone(), *used));
            if let Some((old, used)) = old {
                t.by_topic.remove(&old);
                t.by_use.remove(&used);
            }
        }
        if let Some((_, used)) = t.by_topic.insert(topic.clone(), (alias, now)) {
            t.by_use.remove(&used);
        }
        t.by_use.insert(now, topic.clone());
    }

    /// Gives `publish` the alias `plan` gives, taken, unless the alias property would make it
    /// larger than the client's Maximum Packet Size (it can, for a short topic), which the
    /// message fits without it: then it keeps the topic name alone.
    pub(crate) fn apply(
        &mut self,
        publish: &mut Publish,
        version: ProtocolVersion,
        max_packet_size: u32,
    ) {
        let plan = self.plan(&publish.topic);
        let (AliasUse::Set(alias) | AliasUse::Reuse(alias)) = plan else {
            return;
        };
        let topic = publish.topic.clone();
        publish.properties.topic_alias = Some(alias);
        if let AliasUse::Reuse(_) = plan {
            publish.topic = ByteString::default();
        }
        if publish
            .encoded_len(version)
            .is_ok_and(|len| len <= max_packet_size as usize)
        {
            self.commit(&topic, plan);
            return;
        }
        publish.topic = topic;
        publish.properties.topic_alias = None;
    }

    /// `plan` and `commit` in one step.
    #[cfg(test)]
    pub(crate) fn assign(&mut self, topic: &ByteString) -> AliasUse {
        let plan = self.plan(topic);
        self.commit(topic, plan);
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(n: u16) -> NonZeroU16 {
        NonZeroU16::new(n).expect("not 0")
    }

    #[test]
    fn inbound_aliases_map_and_resolve() {
        let mut a = InboundAliases::new(2);
        let t = ByteString::from("a/b");
        assert_eq!(a.resolve(t.clone(), Some(alias(1))), Ok(t.clone()));
        assert_eq!(a.resolve(ByteString::from(""), Some(alias(1))), Ok(t));
        assert_eq!(
            a.resolve(ByteString::from(""), Some(alias(2))),
            Err(DisconnectReason::ProtocolError)
        );
        assert_eq!(
            a.resolve(ByteString::from("x"), Some(alias(3))),
            Err(DisconnectReason::TopicAliasInvalid)
        );
    }

    #[test]
    fn outbound_aliases_reuse_the_least_recently_used() {
        let mut a = OutboundAliases::new(2);
        let (x, y, z) = (
            ByteString::from("x"),
            ByteString::from("y"),
            ByteString::from("z"),
        );
        assert_eq!(a.assign(&x), AliasUse::Set(alias(1)));
        assert_eq!(a.assign(&y), AliasUse::Set(alias(2)));
        assert_eq!(a.assign(&x), AliasUse::Reuse(alias(1)));
        // y is the least recently used: z takes its alias.
        assert_eq!(a.assign(&z), AliasUse::Set(alias(2)));
        assert_eq!(a.assign(&x), AliasUse::Reuse(alias(1)));
        assert_eq!(a.assign(&y), AliasUse::Set(alias(2)));
        assert_eq!(OutboundAliases::new(0).assign(&x), AliasUse::None);
    }
}
