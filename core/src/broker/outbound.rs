//! A session's outbound QoS 1 and 2 state: the messages in flight with their acknowledgement
//! state machines, and the queue of messages waiting for room in the window.
//!
//! In flight, each message is identified by the packet id it was sent with and remembers the
//! order it was first sent in, so a resumed session resends them in their original order
//! [MQTT-4.4.0-1] (3.1.1 and 5.0).

use super::message::Delivery;
use crate::codec::{PacketId, QoS};
use std::collections::{BTreeMap, VecDeque};

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

/// Why a message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueFull {
    Messages,
    Bytes,
    /// Too many retained messages sent on subscribe are waiting already.
    Retained,
}

#[derive(Debug, Default)]
pub(crate) struct Outbound {
    inflight: BTreeMap<PacketId, Inflight>,
    queue: VecDeque<Delivery>,
    /// Payload bytes of the queued deliveries the queue limits count.
    queued_bytes: usize,
    /// Queued retained messages sent because of a new subscription, which the queue limits do
    /// not count.
    queued_on_subscribe: usize,
    last_packet_id: u16,
    next_seq: u64,
}

impl Outbound {
    pub(crate) fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    pub(crate) fn queue_len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn queue_is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// True when the window has room for another message in flight.
    pub(crate) fn has_room(&self, window: usize) -> bool {
        self.inflight.len() < window
    }

    /// A packet id not in use by another message in flight. The window is at most 65,535, so
    /// one is always free when there is room.
    fn allocate_packet_id(&mut self) -> Option<PacketId> {
        for _ in 0..=u16::MAX {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if let Some(id) = PacketId::new(self.last_packet_id)
                && !self.inflight.contains_key(&id)
            {
                return Some(id);
            }
        }
        None
    }

    /// Puts a QoS 1 or 2 delivery in flight and returns its packet id.
    pub(crate) fn start(&mut self, delivery: Delivery) -> Option<PacketId> {
        let id = self.allocate_packet_id()?;
        let stage = match delivery.qos {
            QoS::ExactlyOnce => Stage::Qos2Sent(delivery),
            _ => Stage::Qos1Sent(delivery),
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight.insert(id, Inflight { seq, stage });
        Some(id)
    }

    /// PUBACK: ends a QoS 1 flow. False if no QoS 1 message awaits it.
    pub(crate) fn puback(&mut self, id: PacketId) -> bool {
        self.remove_if(id, |s| matches!(s, Stage::Qos1Sent(_)))
    }

    /// PUBREC: a QoS 2 message moves to awaiting PUBCOMP. Returns whether PUBREL should be
    /// sent: true for the first PUBREC and for a repeated one (the PUBREL may have been lost).
    pub(crate) fn pubrec(&mut self, id: PacketId) -> bool {
        match self.inflight.get_mut(&id) {
            Some(entry) => match entry.stage {
                Stage::Qos2Sent(_) | Stage::Released => {
                    entry.stage = Stage::Released;
                    true
                }
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
        if self.inflight.get(&id).is_some_and(|e| want(&e.stage)) {
            self.inflight.remove(&id);
            true
        } else {
            false
        }
    }

    /// Messages in flight in the order they were first sent, for redelivery on resume.
    pub(crate) fn inflight_in_order(&self) -> Vec<(PacketId, &Stage)> {
        let mut all: Vec<_> = self
            .inflight
            .iter()
            .map(|(id, e)| (e.seq, *id, &e.stage))
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
    ) -> Result<(), QueueFull> {
        if delivery.on_subscribe {
            if self.queued_on_subscribe >= max_retained {
                return Err(QueueFull::Retained);
            }
            self.queued_on_subscribe += 1;
            self.queue.push_back(delivery);
            return Ok(());
        }
        if max_messages != 0 && self.queue.len() - self.queued_on_subscribe >= max_messages {
            return Err(QueueFull::Messages);
        }
        let size = delivery.queued_bytes();
        if max_bytes != 0 && self.queued_bytes + size > max_bytes {
            return Err(QueueFull::Bytes);
        }
        self.queued_bytes += size;
        self.queue.push_back(delivery);
        Ok(())
    }

    /// The oldest queued delivery.
    pub(crate) fn dequeue(&mut self) -> Option<Delivery> {
        let d = self.queue.pop_front()?;
        if d.on_subscribe {
            self.queued_on_subscribe -= 1;
        } else {
            self.queued_bytes -= d.queued_bytes();
        }
        Some(d)
    }

    /// The QoS of the oldest queued delivery.
    pub(crate) fn next_queued_qos(&self) -> Option<QoS> {
        self.queue.front().map(|d| d.qos)
    }
}
