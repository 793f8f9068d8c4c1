//! Time as the broker sees it: a millisecond count on the driver's monotonic clock. The broker
//! never reads a clock; every input carries the current time, so a simulator can run it in
//! virtual time.

/// A point on the driver's monotonic clock, in milliseconds since an origin of the driver's
/// choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(u64);

impl Time {
    /// The clock's origin.
    pub const ZERO: Time = Time(0);

    /// The time `ms` milliseconds after the origin.
    pub const fn from_millis(ms: u64) -> Time {
        Time(ms)
    }

    /// Milliseconds since the origin.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This time plus `ms` milliseconds, saturating.
    pub const fn plus_millis(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }

    /// This time plus `s` seconds, saturating.
    pub const fn plus_secs(self, s: u64) -> Time {
        self.plus_millis(s.saturating_mul(1000))
    }
}
