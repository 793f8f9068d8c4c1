//! Rebuilding a broker from its durable state after a restart.

use super::connection::Will;
use super::message::{Delivery, Message};
use super::session::{Expiry, Session};
use super::subscribe::SubEntry;
use super::timers::Timer;
use super::{Broker, Config, Time};
use crate::codec::ProtocolVersion;
use crate::persist::{State, StoredMessage};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

impl Broker {
    /// A broker holding the durable state of a log, as after a restart at `now`: every session
    /// detached, with its subscriptions, queued and in-flight messages (resent with their packet
    /// ids when the client returns) and inbound QoS 2 packet ids; the retained messages; and the
    /// wills of clients that were connected when the broker stopped, due after their delay (their
    /// connection did not end with DISCONNECT). Expiry intervals count from `now`.
    pub fn recover(config: Config, state: &State, now: Time) -> Broker {
        let mut b = Broker::empty(config);
        b.now = now;
        b.outbox.now = now;
        let lsn = state.last_lsn();
        b.last_lsn = lsn;
        b.outbox.written(lsn);
        b.outbox.committed(lsn);
        b.outbox.durable(lsn, &mut b.conns);

        let messages: BTreeMap<u64, Arc<Message>> = state
            .messages
            .iter()
            .map(|(id, entry)| (*id, Arc::new(message(&entry.message, Some(*id)))))
            .collect();
        b.next_message_id = messages.keys().next_back().copied().unwrap_or(0);

        for (topic, id) in &state.retained {
            if let Some(msg) = messages.get(id) {
                b.retained.insert(topic, Arc::clone(msg));
                b.stats.retained_messages += 1;
                b.stats.retained_bytes += msg.payload.len() as u64;
            }
        }

        for (client_id, s) in &state.sessions {
            let expiry = Expiry::from_interval(s.expiry_secs);
            let mut session = Session::new(client_id.clone(), ProtocolVersion::V5, expiry);
            session.persisted = true;
            session.inbound_qos2 = s.inbound_qos2.clone();
            #[cfg(feature = "sim-bugs")]
            if crate::bugs::planted(&b.config, crate::bugs::Bug::ForgetInboundQos2) {
                session.inbound_qos2.clear();
            }
            for filter in s.subscriptions.keys() {
                session.subscriptions.insert(filter.clone());
            }
            let key = b.sessions.insert(session);
            b.session_index.insert(Box::from(&**client_id), key);
            b.stats.sessions += 1;
            for (filter, o) in &s.subscriptions {
                let entry = SubEntry {
                    qos: o.qos,
                    no_local: o.no_local,
                    retain_as_published: o.retain_as_published,
                    subscription_id: o.subscription_id,
                };
                b.restore_subscription(filter, key, entry);
            }
            for (delivery_id, d) in &s.deliveries {
                let Some(msg) = messages.get(&d.message_id) else {
                    continue;
                };
                let delivery = Delivery {
                    msg: Arc::clone(msg),
                    qos: d.qos,
                    retain: d.retain,
                    subscription_ids: d.subscription_ids.clone(),
                    id: *delivery_id,
                    recorded: true,
                    // Retained messages queued for a new subscription are the queued deliveries
                    // with RETAIN set (a forward keeps it only with Retain As Published): they
                    // count against `max_retained_messages` as before the restart, not against
                    // the queue limits, or each restart could add that many to the queue.
                    on_subscribe: d.retain && d.packet_id.is_none(),
                    // Which shared subscription chose it is not stored: after a restart it
                    // stays with the member it went to.
                    shared: None,
                };
                #[cfg(feature = "sim-bugs")]
                let d = &crate::persist::DeliveryState {
                    released: d.released
                        && !crate::bugs::planted(
                            &b.config,
                            crate::bugs::Bug::PublishInsteadOfPubrel,
                        ),
                    ..d.clone()
                };
                let outbound = &mut b.sessions[key].outbound;
                match d.packet_id {
                    Some(packet_id) => outbound.restore_in_flight(packet_id, delivery, d.released),
                    None => outbound.restore_queued(delivery),
                }
                b.next_delivery_id = b.next_delivery_id.max(*delivery_id);
            }
            if let Some(w) = &s.will {
                let due = now.plus_secs(u64::from(w.delay_secs));
                let will = Will {
                    msg: Arc::new(message(&w.message, None)),
                    delay_secs: w.delay_secs,
                };
                let session = &mut b.sessions[key];
                session.will_recorded = true;
                session.pending_will = Some(Box::new((due, will)));
                b.timers.schedule(due, Timer::WillDelay(key));
            }
            if let Expiry::After(secs) = expiry {
                let at = now.plus_secs(u64::from(secs));
                b.sessions[key].expire_at(at);
                b.timers.schedule(at, Timer::SessionExpiry(key));
            }
        }
        // After the sessions: a bridge adopts the local session it had before the restart.
        b.start_bridges();
        b
    }
}

fn message(m: &StoredMessage, id: Option<u64>) -> Message {
    let stored_id = OnceLock::new();
    if let Some(id) = id {
        let _ = stored_id.set(id);
    }
    Message {
        topic: m.topic.clone(),
        payload: m.payload.clone(),
        qos: m.qos,
        retain: m.retain,
        properties: m.properties.clone(),
        expires_at: m.expires_at.map(Time::from_millis),
        stored_id,
    }
}
