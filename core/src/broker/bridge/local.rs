//! A bridge's local session: the session its `out` topics are subscribed in, and which its
//! link is attached to while it is up.
//!
//! With `local_clean_session` false the session lives from the broker's start, is persisted
//! like any persistent session (Session Expiry "never"), and keeps queueing while the link is
//! down, so nothing published here is lost across link failures or restarts of either broker.
//! With `local_clean_session` true it lives only while the link is up, as a clean session
//! lives with its connection: messages published while the link is down are not forwarded
//! (Mosquitto's behaviour), and nothing of it is persisted.

use super::BridgeId;
use crate::broker::Broker;
use crate::broker::session::{Expiry, Session, SessionKey};
use crate::broker::subscribe::SubEntry;
use crate::codec::{ByteString, topic};
use std::collections::BTreeMap;

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
        let key = match self.session_index.get(&client_id).copied() {
            Some(key) => key,
            None => {
                // A bridge's session is configured, not asked for: `max_sessions` does not
                // refuse it.
                let key = self
                    .sessions
                    .insert(Session::new(client_id.clone(), version, expiry));
                self.session_index.insert(client_id, key);
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
