//! A bridge's local session: the session its `out` topics are subscribed in, and which its
//! link is attached to while it is up.
//!
//! With `local_clean_session` false the session lives from the broker's start, is persisted
//! like any persistent session (Session Expiry "never"), and keeps queueing while the link is
//! down, so nothing published here is lost across link failures or restarts of either broker.
//! With `local_clean_session` true it lives only while the link is up, as a clean session
//! lives with its connection: messages published while the link is down are not forwarded
//! (Mosquitto's behaviour), and nothing of it is persisted.

use super::{BridgeId, rename};
use crate::broker::Broker;
use crate::broker::message::{Delivery, Message};
use crate::broker::session::{Expiry, Session, SessionKey};
use crate::broker::subscribe::SubEntry;
use crate::codec::{ByteString, QoS, topic};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

impl Broker {
    /// Whether `client_id` is the local session of a bridge, which no client may use.
    pub(crate) fn is_bridge_client_id(&self, client_id: &str) -> bool {
        self.config
            .bridges
            .iter()
            .any(|b| b.local_clientid == client_id)
    }

    /// The bridge's local session, if it exists now.
    pub(super) fn bridge_session(&self, id: BridgeId) -> Option<SessionKey> {
        let cfg = self.config.bridges.get(id.index())?;
        self.session_index
            .get(cfg.local_clientid.as_str())
            .copied()
            .filter(|key| self.sessions[*key].bridge == Some(id))
    }

    /// The bridge's local session as the bridge starts (at the broker's start): a persistent
    /// one is created or adopted from what was recovered; a clean one is created when the link
    /// comes up, so what was recovered under its name (the configuration changed) ends.
    pub(super) fn prepare_bridge_session(&mut self, id: BridgeId) {
        let cfg = &self.config.bridges[id.index()];
        if cfg.local_clean_session {
            let existing = self.session_index.get(cfg.local_clientid.as_str()).copied();
            if let Some(key) = existing {
                self.end_session(key);
            }
            return;
        }
        self.adopt_bridge_session(id);
    }

    /// Creates the bridge's local session, or takes over the one of that client id, and sets
    /// its subscriptions to the `out` topics of the configuration, replacing whatever it had.
    pub(super) fn adopt_bridge_session(&mut self, id: BridgeId) -> SessionKey {
        let cfg = &self.config.bridges[id.index()];
        let client_id = ByteString::from(cfg.local_clientid.as_str());
        let expiry = if cfg.local_clean_session {
            Expiry::OnDisconnect
        } else {
            Expiry::Never
        };
        let version = cfg.protocol;
        // No local: what the bridge publishes here came from the remote and must not go back
        // [MQTT-3.8.3-3] (5.0). Retain as published: retained messages cross as retained.
        let mut wanted: BTreeMap<ByteString, SubEntry> = BTreeMap::new();
        for t in cfg.topics.iter().filter(|t| t.carries_out()) {
            let filter = t.local_filter();
            if !topic::is_valid_filter(&filter) || topic::is_shared(&filter) {
                tracing::warn!(bridge = %cfg.name, filter, "bridge topic is not a usable local filter, ignored");
                continue;
            }
            let entry = SubEntry {
                qos: t.qos,
                no_local: true,
                retain_as_published: true,
                subscription_id: None,
            };
            // Two lines with one filter: the higher QoS.
            wanted
                .entry(ByteString::from(filter))
                .and_modify(|e| e.qos = e.qos.max(t.qos))
                .or_insert(entry);
        }
        let key = match self.session_index.get(&*client_id).copied() {
            Some(key) => key,
            None => {
                // A bridge's session is configured, not asked for: `max_sessions` does not
                // refuse it.
                let key = self
                    .sessions
                    .insert(Session::new(client_id.clone(), version, expiry));
                self.session_index.insert(Box::from(&*client_id), key);
                self.stats.sessions += 1;
                key
            }
        };
        let session = &mut self.sessions[key];
        session.bridge = Some(id);
        session.version = version;
        if session.expiry != expiry || (expiry == Expiry::Never && !session.persisted) {
            session.expiry = expiry;
            self.record_session(key);
        }
        let old: Vec<ByteString> = self.sessions[key]
            .subscriptions
            .iter()
            .filter(|f| !wanted.contains_key(*f))
            .cloned()
            .collect();
        for filter in old {
            self.sessions[key].subscriptions.remove(&filter);
            self.remove_subscription(&filter, key);
            self.record_unsubscribe(key, &filter);
        }
        for (filter, entry) in wanted {
            let changed = self.router.insert(&filter, key, entry) != Some(entry);
            self.sessions[key].subscriptions.insert(filter.clone());
            if changed {
                self.record_subscribe(key, &filter, &entry);
            }
        }
        key
    }
}

impl Broker {
    /// Queues for the remote, as the link comes up and before it is attached, the retained
    /// messages that the bridge's `out` lines match, RETAIN set (retain as published), each once
    /// at the highest QoS of the lines matching it. This is what Mosquitto does when its bridge
    /// makes its local subscriptions (`retain__queue` after `sub__add`, at every connect), so a
    /// remote learns the retained states set before the bridge came up, or while it was down
    /// and not queued (QoS 0, a full queue). They go behind what was already queued, so a
    /// remote that gets both an older queued value and the retained one ends with the retained
    /// one. They count against `max_retained_messages`, as retained messages sent on subscribe
    /// do, and one already waiting for the remote is not queued again.
    ///
    /// Left out: expired messages; the bridge's own notification topic (its stale value would
    /// follow the "1" sent at once); and unlike Mosquitto, topics that also come in from the
    /// remote (`both` lines): the local copy may be one the remote sent and has since changed,
    /// and sending it back would overwrite the newer value there, while the remote's value
    /// comes here anyway on the SUBSCRIBE.
    pub(super) fn queue_retained_for_remote(&mut self, id: BridgeId, key: SessionKey) {
        let Some(cfg) = self.config.bridges.get(id.index()) else {
            return;
        };
        let own = cfg.notifications.then_some(cfg.notification_topic.as_str());
        let now = self.now;
        // A retained message already queued or in flight for the remote (published while the
        // link was down, or queued at an earlier connect and not sent yet) is not queued
        // twice: a link that keeps failing would fill the queue with copies. The set is only
        // asked whether it holds a message, never iterated.
        let waiting: BTreeSet<*const Message> = self.sessions[key]
            .outbound
            .messages()
            .map(Arc::as_ptr)
            .collect();
        let mut found: BTreeMap<ByteString, (QoS, Arc<Message>)> = BTreeMap::new();
        for line in cfg.topics.iter().filter(|t| t.carries_out()) {
            let filter = line.local_filter();
            // The local subscription was not made for these (see `adopt_bridge_session`).
            if !topic::is_valid_filter(&filter) || topic::is_shared(&filter) {
                continue;
            }
            self.retained.for_each_match(&filter, |name, msg| {
                if msg.expired(now) || Some(name) == own || waiting.contains(&Arc::as_ptr(msg)) {
                    return;
                }
                let remote = rename::outgoing(cfg, name);
                if rename::comes_in(cfg, remote.as_deref().unwrap_or(name)) {
                    return;
                }
                let qos = msg.qos.min(line.qos);
                found
                    .entry(ByteString::from(name))
                    .and_modify(|(q, _)| *q = (*q).max(qos))
                    .or_insert_with(|| (qos, Arc::clone(msg)));
            });
        }
        for (qos, msg) in found.into_values() {
            self.deliver(
                key,
                Delivery {
                    qos,
                    retain: true,
                    subscription_ids: Vec::new(),
                    id: 0,
                    recorded: false,
                    on_subscribe: true,
                    shared: None,
                    msg,
                },
            );
        }
    }
}
