//! Deadlines, in one ordered set so the next wake-up is its first entry and expiry order is
//! deterministic. Entries are not removed when their subject changes: each one is checked against
//! the current state when it fires, and ignored if stale (a keep alive that was refreshed, a
//! session that reconnected). Every subject has at most one live entry per kind, so the set stays
//! proportional to connections and sessions.

use super::ConnId;
use super::session::SessionKey;
use super::time::Time;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A connection that must have sent CONNECT by now.
    ConnectTimeout(ConnId),
    /// A connection whose keep alive may have run out [MQTT-3.1.2-24].
    KeepAlive(ConnId),
    /// A detached session whose expiry interval may have passed.
    SessionExpiry(SessionKey),
    /// A detached session whose will delay may have passed.
    WillDelay(SessionKey),
    /// The `$SYS` tree is due for publication.
    Sys,
    /// A bridge's link may have been silent long enough to need a PINGREQ.
    BridgePing(ConnId),
    /// A bridge waiting out its backoff may dial again.
    BridgeRedial(super::bridge::BridgeId),
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    set: BTreeSet<(Time, Timer)>,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Time, timer: Timer) {
        self.set.insert((at, timer));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Time> {
        self.set.first().map(|(t, _)| *t)
    }

    /// Removes and returns the earliest entry due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<(Time, Timer)> {
        if self.set.first().is_some_and(|(t, _)| *t <= now) {
            self.set.pop_first()
        } else {
            None
        }
    }
}
