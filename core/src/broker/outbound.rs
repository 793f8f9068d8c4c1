//! A session's outbound QoS 1 and 2 state: the messages in flight with their acknowledgement
//! state machines, and the queue of messages waiting for room in the window.
//!
//! In flight, each message is identified by the packet id it was sent with and remembers the
//! order it was first sent in, so a resumed session resends them in their original order
//! [MQTT-4.4.0-1] (3.1.1 and 5.0).

use super::inflight_table::InflightTable;
use super::message::{Delivery, Message};
use crate::codec::{ByteString, PacketId, QoS};
use std::collections::VecDeque;
use std::sync::Arc;

/// Where a message in flight stands in its QoS flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Sent at QoS 1, awaiting PUBACK.
    Qos1Sent(Delivery),
    /// Sent at QoS 2, awaiting PUBREC.
    Qos2Sent(Delivery),
    /// PUBREC received and PUBREL sent, awaiting PUBCOMP. The message itself is no longer
    /// needed, only its packet id (5.0, 4.3.3).
    Released,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Inflight {
    /// Order of first transmission.
    pub seq: u64,
    pub stage: Stage,
}

/// A message in flight to send again on a new connection.
#[derive(Debug)]
pub(crate) enum Resend {
    Publish(PacketId, Delivery),
    Release(PacketId),
}

/// A packet id no message in flight uses, taken for a delivery about to be sent: the delivery
/// can be written out under it first and then moved into flight with
/// [`Outbound::start`], instead of being copied to do both. Only `fresh_id` makes one, and
/// `start` consumes it, so an id is put in flight at most once.
#[derive(Debug)]
#[must_use]
pub(crate) struct FreshId(PacketId);

impl FreshId {
    pub(crate) fn get(&self) -> PacketId {
        self.0
    }
}

/// Why a message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueFull {
    Messages,
    Bytes,
    /// Too many retained messages sent on subscribe are waiting already.
    Retained,
}

/// A session's outbound state, made with the first message for it.
///
/// Every client has a session, and an idle one (or one that only publishes) never gets a
/// message: a pointer instead of the 130-odd bytes of empty maps, queues and counters halves
/// what such a session costs. Reading goes through `Deref` to the state, or to an empty one
/// when there is none; of the changes, those that add a message make the state, the others
/// do nothing without one.
#[derive(Debug, Default)]
pub(crate) struct Outbound(Option<Box<OutboundState>>);

/// What an `Outbound` without state reads as.
static EMPTY: OutboundState = OutboundState::new();

impl std::ops::Deref for Outbound {
    type Target = OutboundState;

    fn deref(&self) -> &OutboundState {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl Outbound {
    fn made(&mut self) -> &mut OutboundState {
        self.0.get_or_insert_with(|| Box::new(OutboundState::new()))
    }

    fn existing(&mut self) -> Option<&mut OutboundState> {
        self.0.as_deref_mut()
    }

    pub(crate) fn resume(&mut self) {
        if let Some(o) = self.existing() {
            o.resume();
        }
    }

    #[cfg(feature = "sim-bugs")]
    pub(crate) fn skip_qos1_resends(&mut self) {
        if let Some(o) = self.existing() {
            o.skip_qos1_resends();
        }
    }

    pub(crate) fn next_resend(&mut self, window: usize) -> Option<Resend> {
        self.existing()?.next_resend(window)
    }

    pub(crate) fn abandon(&mut self, id: PacketId) {
        if let Some(o) = self.existing() {
            o.abandon(id);
        }
    }

    pub(crate) fn fresh_id(&mut self) -> Option<FreshId> {
        self.made().fresh_id()
    }

    pub(crate) fn start(&mut self, id: FreshId, delivery: Delivery) {
        self.made().start(id, delivery);
    }

    pub(crate) fn restore_in_flight(&mut self, id: PacketId, delivery: Delivery, released: bool) {
        self.made().restore_in_flight(id, delivery, released);
    }

    pub(crate) fn restore_queued(&mut self, delivery: Delivery) {
        self.made().restore_queued(delivery);
    }

    pub(crate) fn unrecord(&mut self) {
        if let Some(o) = self.existing() {
            o.unrecord();
        }
    }

    pub(crate) fn puback(&mut self, id: PacketId) -> bool {
        self.existing().is_some_and(|o| o.puback(id))
    }

    pub(crate) fn pubrec(&mut self, id: PacketId) -> bool {
        self.existing().is_some_and(|o| o.pubrec(id))
    }

    pub(crate) fn pubrec_refused(&mut self, id: PacketId) -> bool {
        self.existing().is_some_and(|o| o.pubrec_refused(id))
    }

    pub(crate) fn pubcomp(&mut self, id: PacketId) -> bool {
        self.existing().is_some_and(|o| o.pubcomp(id))
    }

    pub(crate) fn enqueue(
        &mut self,
        delivery: Delivery,
        max_messages: usize,
        max_bytes: usize,
        max_retained: usize,
    ) -> Result<(), (QueueFull, Delivery)> {
        self.made()
            .enqueue(delivery, max_messages, max_bytes, max_retained)
    }

    pub(crate) fn dequeue(&mut self) -> Option<Delivery> {
        self.existing()?.dequeue()
    }

    pub(crate) fn take_shared(
        &mut self,
        take: impl FnMut(&ByteString) -> bool,
        #[cfg(feature = "sim-bugs")] copy_qos2: bool,
    ) -> Vec<(Option<PacketId>, Delivery)> {
        match self.existing() {
            Some(o) => o.take_shared(
                take,
                #[cfg(feature = "sim-bugs")]
                copy_qos2,
            ),
            None => Vec::new(),
        }
    }

    pub(crate) fn copied_to_another(&mut self, id: PacketId) {
        if let Some(o) = self.existing() {
            o.copied_to_another(id);
        }
    }

    /// Counts a message the full queue refused, and returns how many it had refused before
    /// since the last report: the first one is logged, the rest are counted.
    pub(crate) fn count_dropped(&mut self) -> u64 {
        let o = self.made();
        o.dropped_unreported += 1;
        o.dropped_unreported - 1
    }

    /// How many messages the queue refused since it last accepted one, now reported.
    pub(crate) fn take_dropped(&mut self) -> u64 {
        self.existing()
            .map_or(0, |o| std::mem::take(&mut o.dropped_unreported))
    }

    pub(crate) fn remove_expired(&mut self, now: super::Time) -> Vec<Delivery> {
        self.existing()
            .map(|o| o.remove_expired(now))
            .unwrap_or_default()
    }

    pub(crate) fn reserve_packet_id(&mut self) -> Option<PacketId> {
        self.made().reserve_packet_id()
    }

    pub(crate) fn release_reserved(&mut self, id: PacketId) -> bool {
        self.existing().is_some_and(|o| o.release_reserved(id))
    }

    pub(crate) fn clear_reserved(&mut self) {
        if let Some(o) = self.existing() {
            o.clear_reserved();
        }
    }

    pub(crate) fn downgrade(&mut self, id: PacketId, max: QoS) {
        if let Some(o) = self.existing() {
            o.downgrade(id, max);
        }
    }
}

#[derive(Debug)]
pub(crate) struct OutboundState {
    inflight: InflightTable<Inflight>,
    queue: VecDeque<Delivery>,
    /// Payload bytes of the queued deliveries the queue limits count.
    queued_bytes: usize,
    /// Queued retained messages sent because of a new subscription, which the queue limits do
    /// not count.
    queued_on_subscribe: usize,
    /// Queued QoS 0 deliveries: a new QoS 0 message may skip the window, but not these.
    queued_qos0: usize,
    /// Messages in flight from an earlier connection, in their original order, still to be
    /// sent again on this one.
    resend: VecDeque<PacketId>,
    /// How many of `resend` are PUBLISHes, which wait for room in the new window.
    waiting_publishes: usize,
    last_packet_id: u16,
    next_seq: u64,
    /// A packet id the session's bridge uses for its SUBSCRIBE to the remote broker until the
    /// SUBACK: the client's packets share one id space [MQTT-2.3.1-2] (3.1.1) [MQTT-2.2.1-3]
    /// (5.0), so no PUBLISH may take it meanwhile.
    reserved: Option<PacketId>,
    /// Messages the full queue refused since the last report, for rate-limited logging.
    dropped_unreported: u64,
}

impl OutboundState {
    const fn new() -> OutboundState {
        OutboundState {
            inflight: InflightTable::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            queued_on_subscribe: 0,
            queued_qos0: 0,
            resend: VecDeque::new(),
            waiting_publishes: 0,
            last_packet_id: 0,
            next_seq: 0,
            reserved: None,
            dropped_unreported: 0,
        }
    }

    pub(crate) fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn queue_is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The messages held for the client: queued, and in flight until acknowledged (at QoS 2,
    /// until PUBREC).
    pub(crate) fn messages(&self) -> impl Iterator<Item = &Arc<Message>> {
        let inflight = self.inflight.values().filter_map(|e| match &e.stage {
            Stage::Qos1Sent(d) | Stage::Qos2Sent(d) => Some(&d.msg),
            Stage::Released => None,
        });
        self.queue.iter().map(|d| &d.msg).chain(inflight)
    }

    /// True when the window has room for another message in flight. Messages waiting to be
    /// published again after a reconnect are not in the new connection's window yet.
    pub(crate) fn has_room(&self, window: usize) -> bool {
        self.inflight.len() - self.waiting_publishes < window
    }

    /// True when a queued QoS 0 message waits.
    pub(crate) fn has_queued_qos0(&self) -> bool {
        self.queued_qos0 > 0
    }

    /// The session left the log (it ends with its connection now): its deliveries are no
    /// longer there, so nothing that happens to them from now on may be written.
    pub(crate) fn unrecord(&mut self) {
        for d in &mut self.queue {
            d.recorded = false;
        }
        for f in self.inflight.values_mut() {
            if let Stage::Qos1Sent(d) | Stage::Qos2Sent(d) = &mut f.stage {
                d.recorded = false;
            }
        }
    }

    /// Prepares for a new connection of the session: every message in flight must be sent
    /// again, PUBLISH or PUBREL, in the order first sent [MQTT-4.4.0-1]; `next_resend` hands
    /// them out.
    pub(crate) fn resume(&mut self) {
        let order: Vec<(PacketId, bool)> = self
            .inflight_in_order()
            .into_iter()
            .map(|(id, stage)| (id, !matches!(stage, Stage::Released)))
            .collect();
        self.waiting_publishes = order.iter().filter(|(_, publish)| *publish).count();
        self.resend = order.into_iter().map(|(id, _)| id).collect();
    }

    /// The planted bug `SkipQos1Resend`: QoS 1 messages in flight are not sent again.
    #[cfg(feature = "sim-bugs")]
    pub(crate) fn skip_qos1_resends(&mut self) {
        let before = self.resend.len();
        let inflight = &self.inflight;
        self.resend.retain(|id| {
            !matches!(
                inflight.get(*id).map(|e| &e.stage),
                Some(Stage::Qos1Sent(_))
            )
        });
        self.waiting_publishes -= before - self.resend.len();
    }

    /// True while messages from an earlier connection wait to be sent again; they go before
    /// anything queued.
    pub(crate) fn has_resend(&self) -> bool {
        !self.resend.is_empty()
    }

    /// The next message in flight to send again: a PUBREL at once (the client holds that
    /// message already), a PUBLISH when the window has room. `None` when nothing more may be
    /// sent now.
    pub(crate) fn next_resend(&mut self, window: usize) -> Option<Resend> {
        loop {
            let id = *self.resend.front()?;
            match self.inflight.get(id).map(|e| &e.stage) {
                None => {
                    self.resend.pop_front();
                }
                Some(Stage::Released) => {
                    self.resend.pop_front();
                    return Some(Resend::Release(id));
                }
                Some(Stage::Qos1Sent(d) | Stage::Qos2Sent(d)) => {
                    if !self.has_room(window) {
                        return None;
                    }
                    let d = d.clone();
                    self.resend.pop_front();
                    self.waiting_publishes -= 1;
                    return Some(Resend::Publish(id, d));
                }
            }
        }
    }

    /// Moves a QoS 2 message in flight, not yet acknowledged, to QoS 1: it is sent again to a
    /// peer that takes QoS 1 at most, which answers with PUBACK.
    pub(crate) fn downgrade(&mut self, id: PacketId, qos: QoS) {
        if qos != QoS::AtLeastOnce {
            return;
        }
        if let Some(entry) = self.inflight.get_mut(id)
            && matches!(entry.stage, Stage::Qos2Sent(_))
            && let Stage::Qos2Sent(mut d) = std::mem::replace(&mut entry.stage, Stage::Released)
        {
            d.qos = qos;
            entry.stage = Stage::Qos1Sent(d);
        }
    }

    /// Gives up a message in flight that can no longer be sent (too large for the client).
    pub(crate) fn abandon(&mut self, id: PacketId) {
        self.remove(id);
    }

    /// A packet id not in use by another message in flight. The window is at most 65,535, so
    /// one is always free when there is room.
    fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..=u16::MAX {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if let Some(id) = PacketId::new(self.last_packet_id)
                && !self.inflight.contains(id)
                && self.reserved != Some(id)
            {
                return Some(id);
            }
        }
        None
    }

    /// Takes a packet id out of use for PUBLISH until [`Outbound::release_reserved`], for a
    /// bridge's SUBSCRIBE.
    pub(crate) fn reserve_packet_id(&mut self) -> Option<PacketId> {
        self.reserved = None;
        let id = self.allocate_packet_id()?;
        self.reserved = Some(id);
        Some(id)
    }

    /// The SUBACK for the reserved id arrived, or the link it was sent on is gone. False when
    /// `id` was not reserved.
    pub(crate) fn release_reserved(&mut self, id: PacketId) -> bool {
        if self.reserved == Some(id) {
            self.reserved = None;
            true
        } else {
            false
        }
    }

    /// Forgets the reserved id: the link its SUBSCRIBE went on is gone.
    pub(crate) fn clear_reserved(&mut self) {
        self.reserved = None;
    }

    /// A packet id for a QoS 1 or 2 delivery, to be put in flight with `start` before any
    /// other id is taken.
    pub(crate) fn fresh_id(&mut self) -> Option<FreshId> {
        self.allocate_packet_id().map(FreshId)
    }

    /// Puts a QoS 1 or 2 delivery in flight under the id `fresh_id` gave.
    pub(crate) fn start(&mut self, id: FreshId, delivery: Delivery) {
        let stage = match delivery.qos {
            QoS::ExactlyOnce => Stage::Qos2Sent(delivery),
            _ => Stage::Qos1Sent(delivery),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight.insert(id.0, Inflight { seq, stage });
    }

    /// Puts back a message that was in flight when the broker stopped, with its packet id;
    /// `released` when PUBREC had arrived. Call in the order the messages were first sent.
    pub(crate) fn restore_in_flight(&mut self, id: PacketId, delivery: Delivery, released: bool) {
        let stage = match (delivery.qos, released) {
            (_, true) => Stage::Released,
            (QoS::ExactlyOnce, false) => Stage::Qos2Sent(delivery),
            _ => Stage::Qos1Sent(delivery),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight.insert(id, Inflight { seq, stage });
        self.last_packet_id = self.last_packet_id.max(id.get());
    }

    /// Puts back a queued message, whatever the queue limits say: it was accepted before.
    pub(crate) fn restore_queued(&mut self, delivery: Delivery) {
        if delivery.on_subscribe {
            self.queued_on_subscribe += 1;
        } else {
            self.queued_bytes += delivery.queued_bytes();
        }
        self.push(delivery);
    }

    /// PUBACK: ends a QoS 1 flow. False if no QoS 1 message awaits it.
    pub(crate) fn puback(&mut self, id: PacketId) -> bool {
        self.remove_if(id, |s| matches!(s, Stage::Qos1Sent(_)))
    }

    /// PUBREC: a QoS 2 message moves to awaiting PUBCOMP. Returns whether PUBREL should be
    /// sent: true for the first PUBREC and for a repeated one (the PUBREL may have been lost).
    pub(crate) fn pubrec(&mut self, id: PacketId) -> bool {
        match self.inflight.get_mut(id) {
            Some(entry) => match entry.stage {
                Stage::Qos2Sent(_) => {
                    let stage = std::mem::replace(&mut entry.stage, Stage::Released);
                    self.forget_resend(id, &stage);
                    true
                }
                Stage::Released => true,
                Stage::Qos1Sent(_) => false,
            },
            None => false,
        }
    }

    /// A PUBREC with an error reason ends the QoS 2 flow without PUBREL (5.0, 4.3.3).
    pub(crate) fn pubrec_refused(&mut self, id: PacketId) -> bool {
        self.remove_if(id, |s| matches!(s, Stage::Qos2Sent(_)))
    }

    /// PUBCOMP: ends a QoS 2 flow.
    pub(crate) fn pubcomp(&mut self, id: PacketId) -> bool {
        self.remove_if(id, |s| matches!(s, Stage::Released))
    }

    fn remove_if(&mut self, id: PacketId, want: impl Fn(&Stage) -> bool) -> bool {
        if self.inflight.get(id).is_some_and(|e| want(&e.stage)) {
            self.remove(id);
            true
        } else {
            false
        }
    }

    fn remove(&mut self, id: PacketId) {
        if let Some(entry) = self.inflight.remove(id) {
            self.forget_resend(id, &entry.stage);
        }
    }

    /// Takes a message off the resend list, when it is there, because it was acknowledged or
    /// moved on before it could be sent again.
    fn forget_resend(&mut self, id: PacketId, stage: &Stage) {
        if self.resend.contains(&id) {
            self.resend.retain(|r| *r != id);
            if !matches!(stage, Stage::Released) {
                self.waiting_publishes -= 1;
            }
        }
    }

    /// Messages in flight in the order they were first sent.
    fn inflight_in_order(&self) -> Vec<(PacketId, &Stage)> {
        let mut all: Vec<_> = self
            .inflight
            .iter()
            .map(|(id, e)| (e.seq, id, &e.stage))
            .collect();
        all.sort_unstable_by_key(|(seq, _, _)| *seq);
        all.into_iter().map(|(_, id, stage)| (id, stage)).collect()
    }

    /// Queues a delivery behind the others, unless a limit (0 = none) forbids it. Retained
    /// messages sent because of a new subscription are not counted against `max_messages` and
    /// `max_bytes`, so that a subscription matching many of them gets them all; at most
    /// `max_retained` of them wait at a time.
    pub(crate) fn enqueue(
        &mut self,
        delivery: Delivery,
        max_messages: usize,
        max_bytes: usize,
        max_retained: usize,
    ) -> Result<(), (QueueFull, Delivery)> {
        if delivery.on_subscribe {
            if self.queued_on_subscribe >= max_retained {
                return Err((QueueFull::Retained, delivery));
            }
            self.queued_on_subscribe += 1;
            self.push(delivery);
            return Ok(());
        }
        if max_messages != 0 && self.queue.len() - self.queued_on_subscribe >= max_messages {
            return Err((QueueFull::Messages, delivery));
        }
        let size = delivery.queued_bytes();
        if max_bytes != 0 && self.queued_bytes + size > max_bytes {
            return Err((QueueFull::Bytes, delivery));
        }
        self.queued_bytes += size;
        self.push(delivery);
        Ok(())
    }

    fn push(&mut self, delivery: Delivery) {
        if delivery.qos == QoS::AtMostOnce {
            self.queued_qos0 += 1;
        }
        self.queue.push_back(delivery);
    }

    /// The oldest queued delivery.
    pub(crate) fn dequeue(&mut self) -> Option<Delivery> {
        let d = self.queue.pop_front()?;
        if d.qos == QoS::AtMostOnce {
            self.queued_qos0 -= 1;
        }
        if d.on_subscribe {
            self.queued_on_subscribe -= 1;
        } else {
            self.queued_bytes -= d.queued_bytes();
        }
        Some(d)
    }

    /// The shared subscriptions that deliveries waiting here were chosen for.
    pub(crate) fn shared_filters(&self) -> std::collections::BTreeSet<ByteString> {
        let inflight = self.inflight.values().filter_map(|e| match &e.stage {
            Stage::Qos1Sent(d) => d.shared.clone(),
            _ => None,
        });
        self.queue
            .iter()
            .filter_map(|d| d.shared.clone())
            .chain(inflight)
            .collect()
    }

    /// The deliveries chosen for a shared subscription that `take` accepts and that no client
    /// has acknowledged receiving: copies of the QoS 1 messages in flight, in the order first
    /// sent, then the queued ones, taken out. A QoS 1 message in flight stays too, with its
    /// packet id: the id may not be reused before its PUBACK [MQTT-2.2.1-3] (5.0), and at least
    /// once allows the copy; it is copied once only. QoS 2 messages in flight stay and are not
    /// copied: that flow completes with the client it started with [MQTT-4.8.2-4] (5.0).
    pub(crate) fn take_shared(
        &mut self,
        mut take: impl FnMut(&ByteString) -> bool,
        #[cfg(feature = "sim-bugs")] copy_qos2: bool,
    ) -> Vec<(Option<PacketId>, Delivery)> {
        #[cfg(not(feature = "sim-bugs"))]
        let copy_qos2 = false;
        let mut out = Vec::new();
        let mut inflight: Vec<(u64, PacketId, &Delivery)> = self
            .inflight
            .iter()
            .filter_map(|(id, e)| match &e.stage {
                Stage::Qos1Sent(d) if d.shared.as_ref().is_some_and(&mut take) => {
                    Some((e.seq, id, d))
                }
                Stage::Qos2Sent(d) if copy_qos2 && d.shared.as_ref().is_some_and(&mut take) => {
                    Some((e.seq, id, d))
                }
                _ => None,
            })
            .collect();
        inflight.sort_unstable_by_key(|(seq, _, _)| *seq);
        for (_, id, d) in inflight {
            let mut copy = d.clone();
            copy.recorded = false;
            copy.id = 0;
            out.push((Some(id), copy));
        }
        if self.queue.iter().any(|d| d.shared.is_some()) {
            let mut kept = VecDeque::with_capacity(self.queue.len());
            while let Some(d) = self.dequeue() {
                if d.shared.as_ref().is_some_and(&mut take) {
                    out.push((None, d));
                } else {
                    kept.push_back(d);
                }
            }
            for d in kept {
                self.restore_queued(d);
            }
        }
        out
    }

    /// A QoS 1 message in flight was copied to another member of its shared subscription: it
    /// is not copied again.
    pub(crate) fn copied_to_another(&mut self, id: PacketId) {
        if let Some(Inflight {
            stage: Stage::Qos1Sent(d) | Stage::Qos2Sent(d),
            ..
        }) = self.inflight.get_mut(id)
        {
            d.shared = None;
        }
    }

    /// Whether the queue has room for a delivery of `payload` bytes under the limits (0 = none).
    pub(crate) fn has_queue_room(
        &self,
        payload: usize,
        max_messages: usize,
        max_bytes: usize,
    ) -> bool {
        (max_messages == 0 || self.queue.len() - self.queued_on_subscribe < max_messages)
            && (max_bytes == 0 || self.queued_bytes + payload <= max_bytes)
    }

    /// Takes every queued delivery whose message has expired off the queue and returns them.
    pub(crate) fn remove_expired(&mut self, now: super::Time) -> Vec<Delivery> {
        if !self.queue.iter().any(|d| d.msg.expired(now)) {
            return Vec::new();
        }
        let (expired, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.queue)
            .into_iter()
            .partition(|d| d.msg.expired(now));
        self.queue = kept;
        for d in &expired {
            if d.qos == QoS::AtMostOnce {
                self.queued_qos0 -= 1;
            }
            if d.on_subscribe {
                self.queued_on_subscribe -= 1;
            } else {
                self.queued_bytes -= d.queued_bytes();
            }
        }
        expired.into()
    }

    /// The QoS of the oldest queued delivery.
    pub(crate) fn next_queued_qos(&self) -> Option<QoS> {
        self.queue.front().map(|d| d.qos)
    }
}
