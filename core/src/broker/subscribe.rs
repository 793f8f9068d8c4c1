//! SUBSCRIBE and UNSUBSCRIBE, and the retained messages a new subscription receives.

use super::message::Delivery;
use super::problem;
use super::session::SessionKey;
use super::{Broker, ConnId};
use crate::auth::Access;
use crate::codec::topic;
use crate::codec::{
    AckProperties, ByteString, Packet, QoS, RetainHandling, SubAck, SubAckReason, Subscribe,
    UnsubAck, UnsubAckReason, Unsubscribe,
};
use std::sync::Arc;

/// What the router keeps for one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubEntry {
    /// The maximum QoS granted.
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// The MQTT 5 Subscription Identifier given with the SUBSCRIBE, if any.
    pub subscription_id: Option<u32>,
}

impl Broker {
    /// Each filter is handled as if it came in a SUBSCRIBE of its own [MQTT-3.8.4-4] (3.1.1)
    /// [MQTT-3.8.4-5] (5.0); the SUBACK carries one reason per filter, in order
    /// [MQTT-3.8.4-5] (3.1.1) [MQTT-3.8.4-6] (5.0), and precedes the retained messages.
    pub(super) fn subscribe(&mut self, id: ConnId, key: SessionKey, s: Subscribe) {
        let subscription_id = s.properties.subscription_identifier;
        let Some(listener) = self.conns.get(&id).map(|c| c.listener) else {
            return;
        };
        let max_qos = self.config.max_qos(listener);
        // A client that announced itself as a bridge gets no local and retain as published on
        // every subscription, as Mosquitto gives its `is_bridge` clients: a 3.1.1 bridge cannot
        // ask for them, and without them a topic bridged both ways would loop.
        let from_bridge = self
            .conns
            .get(&id)
            .and_then(|c| c.client())
            .is_some_and(|c| c.is_bridge);
        let mut reasons = Vec::with_capacity(s.subscriptions.len());
        let mut retained = Vec::new();
        let mut expired = Vec::new();
        for sub in s.subscriptions {
            // A shared subscription's access is decided on the filter after its Share Name.
            let shared = if topic::is_shared(&sub.filter) {
                match topic::parse_shared(&sub.filter) {
                    Some((_, inner)) => Some(inner),
                    None => {
                        reasons.push(SubAckReason::TopicFilterInvalid);
                        continue;
                    }
                }
            } else {
                None
            };
            if !self.allowed(key, Access::Subscribe, shared.unwrap_or(&sub.filter)) {
                tracing::debug!(client_id = %self.sessions[key].client_id, filter = %sub.filter, "subscription not authorized");
                reasons.push(SubAckReason::NotAuthorized);
                continue;
            }
            let session = &mut self.sessions[key];
            let is_new = !session.subscriptions.contains(&sub.filter);
            if is_new && session.subscriptions.len() >= self.config.max_subscriptions_per_session {
                tracing::warn!(client_id = %session.client_id, "max_subscriptions_per_session reached");
                reasons.push(SubAckReason::QuotaExceeded);
                continue;
            }
            // At most the listener's maximum QoS: the subscription is accepted whatever QoS it
            // asks for [MQTT-3.2.2-10] (5.0), and granted the lower one (3.9.3).
            let granted = sub.options.qos.min(max_qos);
            let entry = SubEntry {
                qos: granted,
                no_local: sub.options.no_local || from_bridge,
                retain_as_published: sub.options.retain_as_published || from_bridge,
                subscription_id,
            };
            // An identical filter replaces the subscription [MQTT-3.8.4-3].
            session.subscriptions.insert(sub.filter.clone());
            self.record_subscribe(key, &sub.filter, &entry);
            reasons.push(SubAckReason::granted(granted));
            if let Some(inner) = shared {
                self.shared.insert(&sub.filter, inner, key, entry);
                // No retained messages for a shared subscription (5.0, 4.8.2).
                continue;
            }
            self.router.insert(&sub.filter, key, entry);

            // Retained messages for the new subscription [MQTT-3.3.1-6] (3.1.1); in MQTT 5 as
            // Retain Handling says [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11].
            let send_retained = match sub.options.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscribe => is_new,
                RetainHandling::Never => false,
            };
            if send_retained {
                let now = self.now;
                self.retained.for_each_match(&sub.filter, |topic, msg| {
                    // An expired retained message is not sent, and goes (5.0, 3.3.2.3.3).
                    if msg.expired(now) {
                        expired.push(msg.topic.clone());
                        return;
                    }
                    if !self.allowed(key, Access::Receive, topic) {
                        return;
                    }
                    retained.push(Delivery {
                        // The lower of the message's QoS and the granted QoS [MQTT-3.8.4-6]
                        // (3.1.1) [MQTT-3.8.4-8] (5.0).
                        qos: msg.qos.min(granted),
                        // Sent because of a new subscription: RETAIN set [MQTT-3.3.1-8]
                        // (3.1.1) (5.0, 3.3.1.3).
                        retain: true,
                        subscription_ids: subscription_id.into_iter().collect(),
                        id: 0,
                        recorded: false,
                        on_subscribe: true,
                        shared: None,
                        msg: Arc::clone(msg),
                    });
                });
            }
        }
        for topic in expired {
            self.remove_retained(&topic);
            self.stats.dropped_expired += 1;
        }
        let reason_string = if self.problem_info(id) {
            problem::subscribe(&reasons)
        } else {
            None
        };
        let suback = Packet::SubAck(SubAck {
            // [MQTT-3.8.4-1] [MQTT-3.8.4-2]
            packet_id: s.packet_id,
            properties: AckProperties {
                reason_string,
                ..AckProperties::default()
            },
            reasons,
        });
        self.reply(id, &suback);
        #[cfg(feature = "sim-bugs")]
        if crate::bugs::planted(&self.config, crate::bugs::Bug::RetainedTwice)
            && let Some(first) = retained.first().cloned()
        {
            retained.push(first);
        }
        for d in retained {
            self.deliver(key, d);
        }
    }

    /// Takes a session's subscription out of the router or its shared subscription group.
    pub(super) fn remove_subscription(&mut self, filter: &str, key: SessionKey) {
        match topic::parse_shared(filter) {
            Some((_, inner)) => {
                self.shared.remove(filter, inner, key);
            }
            None => {
                self.router.remove(filter, key);
            }
        }
    }

    /// Adds a subscription of a recovered session to the router or its group.
    pub(super) fn restore_subscription(
        &mut self,
        filter: &ByteString,
        key: SessionKey,
        entry: SubEntry,
    ) {
        match topic::parse_shared(filter) {
            Some((_, inner)) => self.shared.insert(filter, inner, key, entry),
            None => {
                self.router.insert(filter, key, entry);
            }
        }
    }

    /// Filters are compared character by character [MQTT-3.10.4-1]; messages already in flight
    /// complete [MQTT-3.10.4-3]; UNSUBACK is sent even if nothing was removed
    /// [MQTT-3.10.4-4] [MQTT-3.10.4-5].
    pub(super) fn unsubscribe(&mut self, id: ConnId, key: SessionKey, u: Unsubscribe) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        for filter in &u.filters {
            if self.sessions[key].subscriptions.remove(filter) {
                self.remove_subscription(filter, key);
                self.record_unsubscribe(key, filter);
                reasons.push(UnsubAckReason::Success);
            } else {
                reasons.push(UnsubAckReason::NoSubscriptionExisted);
            }
        }
        let unsuback = Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: AckProperties::default(),
            reasons,
        });
        self.reply(id, &unsuback);
    }
}
