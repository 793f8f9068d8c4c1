//! The checkers: what every client saw, against what MQTT and midge's durability promise say it
//! must see. Checked as it happens (nothing duplicated, nothing phantom, nothing above the QoS
//! granted, nothing out of order, retained messages no older than acknowledged) and at the end
//! of a run (every acknowledged message reached every entitled subscriber, or the broker counted
//! a drop for it; the retained store equals the reference model).
//!
//! Entitlement. An acknowledged QoS 1 or 2 message is owed to a session of a subscriber when, in
//! that session:
//! - a subscription with a matching filter and a granted QoS of 1 or 2 was acknowledged (SUBACK
//!   received) before the publisher first sent the message, so it was in place whenever the
//!   broker took the message in, and its acknowledgement promised it durable;
//! - the subscriber had not sent UNSUBSCRIBE for that filter before the message was
//!   acknowledged;
//! - the session never ended: no later CONNACK said session present 0 (the client asked for a
//!   clean start, or a clean session ended with its connection), and it is not a session with a
//!   finite expiry (whether it expired depends on when the broker saw the connection go, which
//!   no client can know; those sessions get every check but completeness);
//! - the message fits the subscriber's Maximum Packet Size (MQTT 5), or it is dropped for that
//!   client by rule.
//!
//! A QoS 2 message is held to exactly once, except one its publisher resent after a CONNACK
//! that may name a session started by an earlier attempt of its own whose CONNACK was lost,
//! after the old session expired (`Checker::may_repeat`): MQTT leaves the client unable to
//! tell, and the broker then rightly takes the resend in as a new message.
//!
//! An owed message that never arrives must be matched, one to one, by a drop the broker counted
//! (`dropped_queue_full`, summed over restarts) while the message was being taken in (between its
//! first send and its acknowledgement). Anything else is loss.
//!
//! Bridged runs. A message is published on its publisher's broker; on the other broker it has
//! the topic and at most the QoS the bridge's configuration gives it (`crossing.rs`), or it does
//! not reach it at all. Every check above holds with those: a subscriber on the far side is
//! owed a message (same rules) when, besides, the subscriptions the bridge forwards it by were
//! durable on the broker that holds them before the message was first sent (`bridge_ready`:
//! the bridge's session on A for `out` lines, its session on B for `in` lines), so that its
//! publisher's acknowledgement covered the copy for the bridge. The wire between the brokers is
//! checked too: no message goes back to the broker it came from (a loop), every one carries
//! the name and at most the QoS the model gives it (`World::tap`).

use crate::crossing::{Crossing, seen_at};
use crate::payload::{self, Kind, Tag};
use crate::trace::fmt_time;
use midge_core::codec::QoS;
use midge_core::codec::topic::{matches, parse_shared};
use std::collections::{BTreeMap, BTreeSet};

/// The first property a run violated.
#[derive(Debug, Clone)]
pub struct Failure {
    pub time: u64,
    pub property: &'static str,
    pub detail: String,
}

/// A message some client published (or a will it left).
#[derive(Debug, Clone)]
pub struct MsgInfo {
    pub kind: Kind,
    pub topic: String,
    pub qos: QoS,
    pub len: usize,
    /// When the publisher first wrote it to a connection (`u64::MAX` before that).
    pub first_sent: u64,
    pub transmissions: u32,
    /// When PUBACK or PUBREC reached the publisher.
    pub acked: Option<u64>,
    /// Resent into a session the publisher cannot know is its own (see `may_repeat`): it may
    /// be taken in twice, so it is held to QoS 1's promise only.
    pub repeatable: bool,
    /// Its MQTT 5 Message Expiry Interval, seconds: it may rightly expire before delivery.
    pub expiry: Option<u32>,
    /// The broker it was published on.
    pub host: usize,
}

#[derive(Debug, Clone)]
pub struct SubRec {
    pub filter: String,
    pub qos: QoS,
    pub acked_at: u64,
    pub unsub_sent: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Deliveries to the application (a QoS 2 repeat of a packet id held is not one).
    pub count: u32,
    pub qos2: u32,
    pub qos0: u32,
}

/// One session of a client, from the CONNACK that said session present 0 to the next such.
#[derive(Debug, Clone, Default)]
pub struct Epoch {
    pub started: u64,
    pub ended: bool,
    /// Completeness is checked for this session (see the module docs).
    pub entitled: bool,
    /// Every filter of every SUBSCRIBE sent, with its QoS and time.
    pub sent_filters: Vec<(String, QoS, u64)>,
    pub subs: Vec<SubRec>,
    pub received: BTreeMap<Tag, Received>,
    /// Highest sequence first received per (publisher, topic, published QoS, delivered QoS).
    pub order: BTreeMap<(u16, String, u8, u8), u32>,
    /// Retained deliveries without DUP per topic.
    pub retained_sends: BTreeMap<String, u32>,
}

#[derive(Debug, Clone, Default)]
pub struct ClientView {
    pub epochs: Vec<Epoch>,
    /// Messages delivered at QoS 2 (at most once per client, whatever its sessions), and when.
    pub qos2_delivered: BTreeMap<Tag, u64>,
    pub qos0_delivered: BTreeMap<Tag, u64>,
    /// MQTT 5 Maximum Packet Size the client announces, with its version (for sizes).
    pub max_packet: Option<u32>,
    pub v5: bool,
    /// A member of the run's shared subscription group, subscribed to nothing else.
    pub worker: bool,
    /// The broker it connects to.
    pub host: usize,
}

/// A retained publish of a topic's owner: a message, or a clear (empty payload).
#[derive(Debug, Clone)]
pub struct RetOp {
    pub tag: Tag,
    pub clear: bool,
    pub acked: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Checker {
    pub msgs: BTreeMap<Tag, MsgInfo>,
    pub clients: Vec<ClientView>,
    /// Retained operations by topic, in the order the owner sent them (one at a time, so the
    /// order the broker applied them in).
    pub retained: BTreeMap<String, Vec<RetOp>>,
    /// Queue-full drops the broker counted, by time.
    pub drops: BTreeMap<u64, u64>,
    /// (client, message) deliveries the broker's log says it discarded.
    pub discards: BTreeSet<(usize, Tag)>,
    /// The worker each message reached at QoS 2 through the shared subscription group.
    pub group_qos2: BTreeMap<Tag, usize>,
    /// Retained deliveries the auditor received at the end, by topic.
    pub audit: BTreeMap<String, Vec<Tag>>,
    pub auditor: usize,
    pub failure: Option<Failure>,
    pub now: u64,
    pub counts: Counts,
    /// The run's bridge, in bridged runs.
    pub crossing: Option<Crossing>,
    /// (from, to) broker: since when the subscriptions that forward messages that way are
    /// durable.
    pub bridge_ready: BTreeMap<(usize, usize), u64>,
    /// How many times each message crossed the bridge (as the receiving broker read it).
    pub crossings: BTreeMap<Tag, u32>,
    /// When each message last crossed: the far broker took it in by then (an earlier copy it
    /// read may have been lost with a crash before it was durable and acknowledged).
    pub crossed_at: BTreeMap<Tag, u64>,
}

/// What the final checks covered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    /// (message, session) pairs owed.
    pub owed: u64,
    pub delivered: u64,
    /// Owed to a session that ended (clean start, clean session).
    pub ended: u64,
    /// Missing, and matched by a counted drop.
    pub dropped: u64,
    /// Of those owed, owed on the far side of a bridge.
    pub crossed: u64,
}

/// Whether a subscription's filter matches a topic; a shared subscription matches by the filter
/// after its Share Name.
fn filter_matches(filter: &str, topic: &str) -> bool {
    let inner = parse_shared(filter).map_or(filter, |(_, inner)| inner);
    matches(inner, topic)
}

/// Size of the PUBLISH the broker would send for a message at QoS 1 or 2 in this version.
fn publish_size(topic: &str, payload_len: usize, v5: bool) -> usize {
    let mut rem = 2 + topic.len() + 2 + payload_len;
    if v5 {
        rem += 1;
    }
    let varint = match rem {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + varint + rem
}

impl Checker {
    pub fn new(clients: usize) -> Checker {
        Checker {
            clients: vec![ClientView::default(); clients],
            auditor: clients - 1,
            ..Checker::default()
        }
    }

    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    pub fn fail(&mut self, property: &'static str, detail: String) {
        if self.failure.is_none() {
            self.failure = Some(Failure {
                time: self.now,
                property,
                detail,
            });
        }
    }

    // --- What publishers do ----------------------------------------------------------------

    pub fn register(
        &mut self,
        tag: Tag,
        kind: Kind,
        topic: &str,
        qos: QoS,
        len: usize,
        expiry: Option<u32>,
    ) {
        let host = self.clients.get(usize::from(tag.0)).map_or(0, |v| v.host);
        self.msgs.insert(
            tag,
            MsgInfo {
                kind,
                topic: topic.to_owned(),
                qos,
                len,
                first_sent: u64::MAX,
                transmissions: 0,
                acked: None,
                expiry,
                repeatable: false,
                host,
            },
        );
    }

    pub fn retained_op(&mut self, topic: &str, tag: Tag, clear: bool) {
        self.retained
            .entry(topic.to_owned())
            .or_default()
            .push(RetOp {
                tag,
                clear,
                acked: None,
            });
    }

    pub fn sent(&mut self, tag: Tag) {
        if let Some(m) = self.msgs.get_mut(&tag) {
            m.first_sent = m.first_sent.min(self.now);
            m.transmissions += 1;
        }
    }

    /// The publisher resends `tag` after a CONNACK with session present 1 that may name a
    /// session an earlier connection attempt started after its own expired (that attempt's
    /// CONNACK never arrived). MQTT gives the client no way to tell, so the broker may rightly
    /// take the message in a second time.
    pub fn may_repeat(&mut self, tag: Tag) {
        if let Some(m) = self.msgs.get_mut(&tag) {
            m.repeatable = true;
        }
    }

    pub fn acked(&mut self, tag: Tag, topic: &str) {
        let now = self.now;
        if let Some(m) = self.msgs.get_mut(&tag)
            && m.acked.is_none()
        {
            m.acked = Some(now);
        }
        if let Some(ops) = self.retained.get_mut(topic)
            && let Some(op) = ops.iter_mut().find(|o| o.tag == tag)
            && op.acked.is_none()
        {
            op.acked = Some(now);
        }
    }

    // --- Sessions and subscriptions ----------------------------------------------------------

    /// A CONNACK with session present 0: the client's earlier session is over.
    pub fn new_epoch(&mut self, c: usize, entitled: bool) -> u32 {
        let now = self.now;
        if c == self.auditor {
            // Only the auditor's last session reads the final retained store.
            self.audit.clear();
        }
        let view = &mut self.clients[c];
        if let Some(last) = view.epochs.last_mut() {
            last.ended = true;
        }
        view.epochs.push(Epoch {
            started: now,
            entitled,
            ..Epoch::default()
        });
        (view.epochs.len() - 1) as u32
    }

    fn epoch(&mut self, c: usize) -> Option<&mut Epoch> {
        self.clients[c].epochs.last_mut()
    }

    pub fn subscribe_sent(&mut self, c: usize, filter: &str, qos: QoS) {
        let now = self.now;
        if let Some(e) = self.epoch(c) {
            e.sent_filters.push((filter.to_owned(), qos, now));
        }
    }

    pub fn sub_acked(&mut self, c: usize, filter: &str, qos: QoS) {
        let now = self.now;
        if let Some(e) = self.epoch(c) {
            e.subs.push(SubRec {
                filter: filter.to_owned(),
                qos,
                acked_at: now,
                unsub_sent: None,
            });
        }
    }

    pub fn unsubscribe_sent(&mut self, c: usize, filter: &str) {
        let now = self.now;
        if let Some(e) = self.epoch(c) {
            for s in &mut e.subs {
                if s.filter == filter && s.unsub_sent.is_none() {
                    s.unsub_sent = Some(now);
                }
            }
        }
    }

    // --- What subscribers receive ------------------------------------------------------------

    /// A PUBLISH reached client `c`; `accepted` when it went to the application (not a QoS 2
    /// repeat of a packet id the client holds).
    #[allow(clippy::too_many_arguments)]
    pub fn received(
        &mut self,
        c: usize,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        dup: bool,
        retain: bool,
        accepted: bool,
        expiry: Option<u32>,
    ) {
        let now = self.now;
        if payload.is_empty() {
            // Only the forward of a retained clear carries no payload.
            let known = self
                .retained
                .get(topic)
                .is_some_and(|ops| ops.iter().any(|o| o.clear));
            if retain || !known {
                self.fail(
                    "no phantom messages",
                    format!("c{c} received an empty payload on {topic} (retain {retain})"),
                );
            }
            return;
        }
        let (kind, tag) = match payload::parse(payload) {
            Ok(x) => x,
            Err(e) => {
                return self.fail(
                    "payload integrity",
                    format!("c{c} received on {topic}: {e}"),
                );
            }
        };
        let Some(msg) = self.msgs.get(&tag).cloned() else {
            return self.fail(
                "no phantom messages",
                format!(
                    "c{c} received c{}#{} that was never published",
                    tag.0, tag.1
                ),
            );
        };
        let host = self.clients[c].host;
        let Some((seen_topic, seen_qos)) =
            seen_at(self.crossing.as_ref(), msg.host, &msg.topic, msg.qos, host)
        else {
            return self.fail(
                "no phantom messages",
                format!(
                    "c{c} on broker {host} received c{}#{} on {topic}, published on broker {} on {}, which does not cross to it",
                    tag.0, tag.1, msg.host, msg.topic
                ),
            );
        };
        if msg.kind != kind || seen_topic != topic || msg.len != payload.len() {
            return self.fail(
                "payload integrity",
                format!(
                    "c{c} received c{}#{} on {topic}, published on {} ({:?}, {} bytes), so {seen_topic} here",
                    tag.0, tag.1, msg.topic, msg.kind, msg.len
                ),
            );
        }
        // On the far side of a bridge a message is at most at the QoS it crossed with.
        let published_qos = seen_qos;
        let crossed = host != msg.host;
        // What is forwarded carries what is left of the Message Expiry Interval, never more
        // [MQTT-3.3.2-6] (5.0); a message without one gets none.
        // An MQTT 3.1.1 bridge carries no properties: across it the interval is gone.
        let sent_expiry = match &self.crossing {
            Some(x) if !x.v5 && self.clients[c].host != msg.host => None,
            _ => msg.expiry,
        };
        if self.clients[c].v5 {
            let ok = match (sent_expiry, expiry) {
                (None, None) => true,
                (Some(sent), Some(left)) => left <= sent,
                _ => false,
            };
            if !ok {
                return self.fail(
                    "message expiry interval forwarded",
                    format!(
                        "c{c} received c{}#{} with Message Expiry Interval {expiry:?}, published with {:?}",
                        tag.0, tag.1, msg.expiry
                    ),
                );
            }
        }
        if qos > published_qos {
            return self.fail(
                "QoS never above the published QoS",
                format!(
                    "c{c} received c{}#{} at {qos:?}, published at {:?}{}",
                    tag.0,
                    tag.1,
                    msg.qos,
                    if crossed {
                        ", crossed at most at that"
                    } else {
                        ""
                    }
                ),
            );
        }
        // A group gives each message to one member: at QoS 2 never to a second one.
        if accepted
            && !retain
            && qos == QoS::ExactlyOnce
            && self.clients[c].worker
            && !msg.repeatable
        {
            let worker = *self.group_qos2.entry(tag).or_insert(c);
            if worker != c {
                return self.fail(
                    "shared subscription: one member per message",
                    format!(
                        "c{c} received c{}#{} ({topic}) at QoS 2 through the shared subscription, which c{worker} received it through",
                        tag.0, tag.1
                    ),
                );
            }
        }
        let auditor = self.auditor;
        let view = &mut self.clients[c];
        let Some(e) = view.epochs.last_mut() else {
            return self.fail(
                "protocol",
                format!("c{c} received a PUBLISH before any CONNACK"),
            );
        };
        // Only what a SUBSCRIBE of this session asked for, at most at the QoS it asked for.
        let granted = e
            .sent_filters
            .iter()
            .filter(|(f, _, _)| filter_matches(f, topic))
            .map(|(_, q, _)| *q)
            .max();
        match granted {
            None => {
                return self.fail(
                    "deliveries only for subscriptions",
                    format!(
                        "c{c} received c{}#{} on {topic}, which it never subscribed to in this session",
                        tag.0, tag.1
                    ),
                );
            }
            Some(g) if qos > g => {
                return self.fail(
                    "QoS never above the granted QoS",
                    format!(
                        "c{c} received c{}#{} at {qos:?}, subscribed at most at {g:?}",
                        tag.0, tag.1
                    ),
                );
            }
            Some(_) => {}
        }
        if retain {
            if kind != Kind::Retained {
                return self.fail(
                    "retained messages",
                    format!(
                        "c{c} received c{}#{} with RETAIN, never published retained",
                        tag.0, tag.1
                    ),
                );
            }
            // No older than the last retained message acknowledged before the subscription.
            let earliest_sub = e
                .sent_filters
                .iter()
                .filter(|(f, _, _)| filter_matches(f, topic))
                .map(|(_, _, t)| *t)
                .min()
                .unwrap_or(0);
            if !dup {
                let sends = e.retained_sends.entry(topic.to_owned()).or_default();
                *sends += 1;
                let subscribes = e
                    .sent_filters
                    .iter()
                    .filter(|(f, _, _)| filter_matches(f, topic))
                    .count() as u32;
                if *sends > subscribes {
                    let n = *sends;
                    return self.fail(
                        "retained message once per subscription",
                        format!(
                            "c{c} received the retained message of {topic} {n} times (c{}#{}) for {subscribes} matching subscriptions",
                            tag.0, tag.1
                        ),
                    );
                }
            }
            if c == auditor {
                self.audit.entry(topic.to_owned()).or_default().push(tag);
            }
            let ops = self.retained.get(topic).cloned().unwrap_or_default();
            let floor = ops
                .iter()
                .rposition(|o| o.acked.is_some_and(|t| t < earliest_sub));
            let at = ops.iter().position(|o| o.tag == tag);
            match (at, floor) {
                (None, _) => self.fail(
                    "retained messages",
                    format!("c{c} received c{}#{} as retained on {topic}", tag.0, tag.1),
                ),
                (Some(i), Some(f)) if i < f => self.fail(
                    "retained messages",
                    format!(
                        "c{c} received c{}#{} as the retained message of {topic}, older than c{}#{} acknowledged before it subscribed",
                        tag.0, tag.1, ops[f].tag.0, ops[f].tag.1
                    ),
                ),
                _ => {}
            }
            return;
        }
        if !accepted {
            return;
        }
        let rec = e.received.entry(tag).or_default();
        let first = rec.count == 0;
        rec.count += 1;
        match qos {
            QoS::ExactlyOnce => rec.qos2 += 1,
            QoS::AtMostOnce => rec.qos0 += 1,
            QoS::AtLeastOnce => {}
        }
        if qos == QoS::ExactlyOnce
            && let Some(first) = view.qos2_delivered.insert(tag, now)
            && !msg.repeatable
        {
            return self.fail(
                "QoS 2 exactly once",
                format!(
                    "c{c} received c{}#{} ({topic}) at QoS 2 a second time, first at {}",
                    tag.0,
                    tag.1,
                    fmt_time(first).trim()
                ),
            );
        }
        // A QoS 0 or 2 message is taken in once, so each session gets it once at most.
        if qos == QoS::AtMostOnce
            && published_qos != QoS::AtLeastOnce
            && let Some(first) = view.qos0_delivered.insert(tag, now)
            && !msg.repeatable
        {
            return self.fail(
                "QoS 0 at most once",
                format!(
                    "c{c} received c{}#{} ({topic}) at QoS 0 a second time, first at {}",
                    tag.0,
                    tag.1,
                    fmt_time(first).trim()
                ),
            );
        }
        // Shared subscriptions have no order: a member's unacknowledged messages go to another.
        if first && kind != Kind::Will && !view.worker {
            let key = (tag.0, topic.to_owned(), published_qos as u8, qos as u8);
            let last = e.order.entry(key).or_insert(0);
            // A QoS 1 message sent twice by its publisher is taken in twice: the second copy
            // may rightly come after later messages.
            // Likewise one the bridge sent across twice at QoS 1.
            let bridge_sent = if crossed {
                self.crossings.get(&tag).copied().unwrap_or(0)
            } else {
                1
            };
            let single = (published_qos != QoS::AtLeastOnce
                || msg.transmissions == 1 && bridge_sent <= 1)
                && !msg.repeatable;
            if tag.1 < *last && single {
                let last = *last;
                return self.fail(
                    "ordering",
                    format!(
                        "c{c} received c{}#{} after c{}#{} (topic {topic}, published at {:?}, received at {qos:?})",
                        tag.0, tag.1, tag.0, last, msg.qos
                    ),
                );
            }
            *last = (*last).max(tag.1);
        }
    }

    /// The broker counted `n` more queue-full drops at this time.
    pub fn dropped(&mut self, n: u64) {
        *self.drops.entry(self.now).or_default() += n;
    }

    // --- The end of a run ----------------------------------------------------------------------

    /// Completeness and the retained store, once everything is quiet.
    pub fn final_check(&mut self) {
        if self.failed() {
            return;
        }
        self.check_completeness();
        if self.failed() {
            return;
        }
        self.check_retained();
    }

    fn check_completeness(&mut self) {
        struct Missing {
            /// The broker's log has a `Discarded` record for it.
            logged: bool,
            from: u64,
            to: u64,
            what: String,
        }
        let mut missing = Vec::new();
        let mut counts = Counts::default();
        // The shared subscription group is owed each message once, when every member asked for
        // QoS 1 or 2 (a member at QoS 0 may be chosen, and QoS 0 may be dropped).
        let workers: Vec<usize> = (0..self.clients.len())
            .filter(|&c| self.clients[c].worker)
            .collect();
        let group_reliable = workers.iter().all(|&w| {
            self.clients[w]
                .epochs
                .iter()
                .all(|e| e.sent_filters.iter().all(|(_, q, _)| *q != QoS::AtMostOnce))
        });
        for (tag, m) in &self.msgs {
            let Some(acked) = m.acked else { continue };
            // A message with an expiry interval may rightly expire before it is delivered.
            if m.qos == QoS::AtMostOnce || m.kind == Kind::Will || m.expiry.is_some() {
                continue;
            }
            // Its topic on `host`, when it is owed there: published there, or it crossed by
            // subscriptions durable before it was sent.
            let owed_at = |host: usize| {
                if host != m.host
                    && self
                        .bridge_ready
                        .get(&(m.host, host))
                        .is_none_or(|t| *t >= m.first_sent)
                {
                    return None;
                }
                seen_at(self.crossing.as_ref(), m.host, &m.topic, m.qos, host).map(|(t, _)| t)
            };
            let group_owed = group_reliable
                && workers.iter().any(|&w| {
                    let Some(topic) = owed_at(self.clients[w].host) else {
                        return false;
                    };
                    self.clients[w].epochs.iter().any(|e| {
                        e.entitled
                            && e.subs.iter().any(|s| {
                                s.acked_at < m.first_sent && filter_matches(&s.filter, &topic)
                            })
                    })
                });
            if group_owed {
                counts.owed += 1;
                let got = workers.iter().any(|&w| {
                    self.clients[w]
                        .epochs
                        .iter()
                        .any(|e| e.received.get(tag).is_some_and(|r| r.count > 0))
                });
                if got {
                    counts.delivered += 1;
                } else {
                    missing.push(Missing {
                        logged: workers.iter().any(|&w| self.discards.contains(&(w, *tag))),
                        from: m.first_sent,
                        to: acked,
                        what: format!(
                            "c{}#{} ({}, {:?}, sent at {}, acknowledged at {}) never reached a member of the shared subscription group",
                            tag.0,
                            tag.1,
                            m.topic,
                            m.qos,
                            fmt_time(m.first_sent).trim(),
                            fmt_time(acked).trim()
                        ),
                    });
                }
            }
            for (c, view) in self.clients.iter().enumerate() {
                if c == self.auditor {
                    continue;
                }
                let Some(topic) = owed_at(view.host) else {
                    continue;
                };
                if let Some(max) = view.max_packet
                    && publish_size(&topic, m.len, view.v5) > max as usize
                {
                    continue;
                }
                for (n, e) in view.epochs.iter().enumerate() {
                    if !e.entitled {
                        continue;
                    }
                    // Across a bridge, the far broker takes the message in when it crosses
                    // (after its acknowledgement, if the bridge was down; again, if it lost
                    // the first copy in a crash): an UNSUBSCRIBE sent before its last crossing
                    // may rightly come first.
                    let taken_in = if view.host == m.host {
                        acked
                    } else {
                        self.crossed_at.get(tag).copied().unwrap_or(u64::MAX)
                    };
                    let owed = e.subs.iter().any(|s| {
                        s.qos != QoS::AtMostOnce
                            && s.acked_at < m.first_sent
                            && s.unsub_sent.is_none_or(|t| t > taken_in)
                            && matches(&s.filter, &topic)
                    });
                    if !owed {
                        continue;
                    }
                    counts.owed += 1;
                    if view.host != m.host {
                        counts.crossed += 1;
                    }
                    let got = e.received.get(tag).map_or(0, |r| r.count);
                    if got > 0 {
                        counts.delivered += 1;
                    } else if e.ended {
                        counts.ended += 1;
                    } else {
                        missing.push(Missing {
                            logged: self.discards.contains(&(c, *tag)),
                            from: m.first_sent,
                            to: acked,
                            what: format!(
                                "c{}#{} ({}, {:?}, sent at {}, acknowledged at {}) never reached c{c} (session #{n}){}",
                                tag.0,
                                tag.1,
                                m.topic,
                                m.qos,
                                fmt_time(m.first_sent).trim(),
                                fmt_time(acked).trim(),
                                if view.host == m.host {
                                    String::new()
                                } else {
                                    format!(" on broker {} as {topic}, across the bridge", view.host)
                                }
                            ),
                        });
                    }
                }
            }
        }
        // Match each missing delivery to a distinct counted drop within its window: earliest
        // deadline first, each taking the earliest drop it can.
        missing.sort_by_key(|m| (m.to, m.from));
        let mut drops = self.drops.clone();
        let mut unmatched = Vec::new();
        for m in missing {
            if !m.logged {
                unmatched.push(format!("{} and the broker never discarded it", m.what));
                continue;
            }
            let unit = drops.range(m.from..=m.to).next().map(|(t, _)| *t);
            match unit {
                Some(t) => {
                    counts.dropped += 1;
                    let n = drops.get_mut(&t).expect("unit");
                    *n -= 1;
                    if *n == 0 {
                        drops.remove(&t);
                    }
                }
                None => unmatched.push(format!(
                    "{}; the broker discarded it without counting a drop",
                    m.what
                )),
            }
        }
        self.counts = counts;
        if !unmatched.is_empty() {
            let n = unmatched.len();
            let mut detail = unmatched
                .into_iter()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n  ");
            if n > 5 {
                detail.push_str(&format!("\n  ... {} more", n - 5));
            }
            self.fail(
                "nothing acknowledged is lost (every owed delivery arrives or is a counted drop)",
                format!("{n} owed deliveries missing, not matched by counted drops:\n  {detail}"),
            );
        }
    }

    fn check_retained(&mut self) {
        let audit = std::mem::take(&mut self.audit);
        for topic in audit.keys() {
            if !self.retained.contains_key(topic) {
                return self.fail(
                    "retained store equals the model",
                    format!("the auditor got a retained message on {topic}, never retained"),
                );
            }
        }
        let retained = self.retained.clone();
        for (topic, ops) in &retained {
            let seen = audit.get(topic).cloned().unwrap_or_default();
            if seen.len() > 1 {
                return self.fail(
                    "retained store equals the model",
                    format!(
                        "the auditor got {} retained messages for {topic}: {seen:?}",
                        seen.len()
                    ),
                );
            }
            let floor = ops.iter().rposition(|o| o.acked.is_some());
            let from = floor.unwrap_or(0);
            let absent_ok = floor.is_none() || ops[from..].iter().any(|o| o.clear);
            let describe = |ops: &[RetOp]| {
                ops.iter()
                    .map(|o| {
                        format!(
                            "c{}#{}{}{}",
                            o.tag.0,
                            o.tag.1,
                            if o.clear { " (clear)" } else { "" },
                            if o.acked.is_some() { " acked" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            match seen.first() {
                None if !absent_ok => {
                    return self.fail(
                        "retained store equals the model",
                        format!(
                            "{topic} has no retained message; its publishes: {}",
                            describe(ops)
                        ),
                    );
                }
                None => {}
                Some(tag) => {
                    let ok = ops[from..].iter().any(|o| o.tag == *tag && !o.clear);
                    if !ok {
                        return self.fail(
                            "retained store equals the model",
                            format!(
                                "{topic} retains c{}#{}; its publishes: {}",
                                tag.0,
                                tag.1,
                                describe(ops)
                            ),
                        );
                    }
                }
            }
        }
    }
}
