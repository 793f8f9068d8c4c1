//! The broker's clock: milliseconds since the Unix epoch, read when the daemon starts and then
//! advanced by the monotonic clock.
//!
//! The core keeps deadlines (message expiry) in the log as points on this clock, so they mean
//! the same after a restart; within one run it never goes backwards, whatever happens to the
//! system time.

use midge_core::broker::Time;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    origin_ms: u64,
}

impl Clock {
    /// A clock reading the system time now.
    pub fn start() -> Clock {
        let origin_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Clock {
            start: Instant::now(),
            origin_ms,
        }
    }

    pub fn now(&self) -> Time {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Time::from_millis(self.origin_ms.saturating_add(elapsed))
    }
}
