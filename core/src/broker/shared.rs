//! Shared subscriptions, `$share/{ShareName}/{filter}` (5.0, 4.8.2): the sessions subscribed
//! with the same Share Name and filter form a group, and each message matching the filter goes
//! to one member of the group instead of to all of them. MQTT 3.1.1 clients may use them too,
//! as most brokers allow.
//!
//! Groups are matched with a router of their own, keyed by the filter after the Share Name, so
//! finding the groups of a topic costs what finding ordinary subscriptions does. The choice of
//! member lives in the broker (it depends on sessions and connections); the group remembers
//! who it chose last, so members take turns.

use super::message::{Delivery, Message};
use super::router::Router;
use super::session::SessionKey;
use super::subscribe::SubEntry;
use crate::codec::ByteString;
use slab::Slab;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub(crate) type GroupKey = usize;

#[derive(Debug)]
pub(crate) struct Group {
    /// The whole filter the members subscribed with, `$share/{ShareName}/{filter}`.
    pub full: ByteString,
    /// The members and the options each subscribed with.
    pub members: BTreeMap<SessionKey, SubEntry>,
    /// The member chosen last; the next choice starts after it.
    pub last: Option<SessionKey>,
}

impl Group {
    /// The members in the order the next choice considers them: after the last one chosen,
    /// wrapping around.
    pub(crate) fn in_turn(&self) -> impl Iterator<Item = (SessionKey, &SubEntry)> {
        let after = self.last.map_or(0, |k| k + 1);
        self.members
            .range(after..)
            .chain(self.members.range(..after))
            .map(|(k, e)| (*k, e))
    }
}

#[derive(Default)]
pub(crate) struct SharedSubscriptions {
    router: Router<GroupKey, ()>,
    groups: Slab<Group>,
    /// Groups by their whole filter.
    index: BTreeMap<ByteString, GroupKey>,
    /// Members of all groups together.
    len: usize,
}

impl std::fmt::Debug for SharedSubscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSubscriptions")
            .field("groups", &self.groups.len())
            .field("members", &self.len)
            .finish()
    }
}

impl SharedSubscriptions {
    /// Adds a member to the group of `full`, whose filter after the Share Name is `filter`, or
    /// replaces its options.
    pub(crate) fn insert(
        &mut self,
        full: &ByteString,
        filter: &str,
        key: SessionKey,
        entry: SubEntry,
    ) {
        let group = match self.index.get(full) {
            Some(g) => *g,
            None => {
                let g = self.groups.insert(Group {
                    full: full.clone(),
                    members: BTreeMap::new(),
                    last: None,
                });
                self.index.insert(full.clone(), g);
                self.router.insert(filter, g, ());
                g
            }
        };
        if self.groups[group].members.insert(key, entry).is_none() {
            self.len += 1;
        }
    }

    /// Removes a member; a group left empty goes. Returns whether it was a member.
    pub(crate) fn remove(&mut self, full: &str, filter: &str, key: SessionKey) -> bool {
        let Some(&group) = self.index.get(full) else {
            return false;
        };
        let members = &mut self.groups[group].members;
        if members.remove(&key).is_none() {
            return false;
        }
        self.len -= 1;
        if members.is_empty() {
            self.groups.remove(group);
            self.index.remove(full);
            self.router.remove(filter, group);
        }
        true
    }

    /// The groups whose filter matches `topic`.
    pub(crate) fn matching(&self, topic: &str) -> Vec<GroupKey> {
        let mut out = Vec::new();
        self.router.for_each_match(topic, |g, _, _| out.push(g));
        out
    }

    pub(crate) fn group(&self, key: GroupKey) -> &Group {
        &self.groups[key]
    }

    pub(crate) fn group_by_filter(&self, full: &str) -> Option<GroupKey> {
        self.index.get(full).copied()
    }

    pub(crate) fn set_last(&mut self, group: GroupKey, member: SessionKey) {
        self.groups[group].last = Some(member);
    }

    /// Members of all groups together.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl super::Broker {
    /// Hands the unacknowledged messages a member got through shared subscriptions to other
    /// members: when its connection is gone, to members connected now (otherwise they wait for
    /// it to come back); when its session ends, to any member, so they are not lost. Queued
    /// messages move; QoS 1 messages in flight are copied, once, and also resent to the member
    /// if it comes back (at least once, and their packet ids stay in use until acknowledged).
    /// QoS 2 messages already sent stay with it [MQTT-4.8.2-4], and go nowhere else if its
    /// session ends [MQTT-4.8.2-5] (5.0).
    pub(super) fn hand_over_shared(&mut self, key: SessionKey, session_ends: bool) {
        if self.shared.len() == 0 {
            return;
        }
        // The groups with another member that can take the messages now.
        let takers: BTreeSet<ByteString> =
            self.sessions[key]
                .outbound
                .shared_filters()
                .into_iter()
                .filter(|full| {
                    self.shared.group_by_filter(full).is_some_and(|g| {
                        self.shared.group(g).members.keys().any(|&m| {
                            m != key && (session_ends || self.sessions[m].conn().is_some())
                        })
                    })
                })
                .collect();
        if takers.is_empty() {
            return;
        }
        let moved = self.sessions[key].outbound.take_shared(
            |full| takers.contains(full),
            #[cfg(feature = "sim-bugs")]
            crate::bugs::planted(&self.config, crate::bugs::Bug::SharedCopyQos2),
        );
        let mut stay = Vec::new();
        for (in_flight, d) in moved {
            let member = d
                .shared
                .as_ref()
                .and_then(|full| self.shared.group_by_filter(full))
                .and_then(|g| {
                    self.hand_over_to(g, &d.msg, key, session_ends)
                        .map(|m| (g, m))
                });
            let Some((group, (member, entry))) = member else {
                // Nobody can take it without dropping it: it stays where it was.
                if in_flight.is_none() {
                    stay.push(d);
                }
                continue;
            };
            match in_flight {
                Some(id) => self.sessions[key].outbound.copied_to_another(id),
                None => self.record_discarded(key, &d),
            }
            #[cfg(feature = "sim-bugs")]
            if in_flight.is_none()
                && crate::bugs::planted(&self.config, crate::bugs::Bug::SharedLoseOnHandOver)
            {
                continue;
            }
            self.stats.shared_handed_over += 1;
            self.shared.set_last(group, member);
            self.deliver(member, Delivery::through(d.msg, &entry, d.shared));
        }
        for d in stay {
            self.sessions[key].outbound.restore_queued(d);
        }
    }

    /// The member a message a member `from` gives up goes to: one that can take it without
    /// dropping it (connected with room in its window, or with room in its queue), connected
    /// unless `from`'s session ends, allowed to receive it and not too small for it; taking
    /// turns as routing does.
    fn hand_over_to(
        &self,
        group: GroupKey,
        msg: &Arc<Message>,
        from: SessionKey,
        any_member: bool,
    ) -> Option<(SessionKey, SubEntry)> {
        let (max_msgs, max_bytes) = (
            self.config.max_queued_messages,
            self.config.max_queued_bytes,
        );
        let mut queueing = None;
        for (key, entry) in self.shared.group(group).in_turn() {
            if key == from || !self.allowed(key, crate::auth::Access::Receive, &msg.topic) {
                continue;
            }
            let session = &self.sessions[key];
            let connected = session.conn().is_some();
            if !connected && !any_member {
                continue;
            }
            if connected && !self.fits_member(key, msg, entry) {
                continue;
            }
            let outbound = &session.outbound;
            if connected
                && !outbound.has_resend()
                && outbound.queue_is_empty()
                && outbound.has_room(self.window(key))
            {
                return Some((key, *entry));
            }
            if queueing.is_none() && outbound.has_queue_room(msg.payload.len(), max_msgs, max_bytes)
            {
                queueing = Some((key, *entry));
            }
        }
        queueing
    }
}
