//! A latency histogram with bounded relative error and fixed memory: log-linear buckets (each
//! power of two of nanoseconds split into 32 linear sub-buckets, so a value is known to within
//! about 3%). Recording is a few integer operations, cheap enough for every delivery.

/// Sub-buckets per power of two.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values up to 2^40 ns (about 18 minutes) are kept; larger ones count in the last bucket.
const MAX_POWER: u32 = 40;
const BUCKETS: usize = ((MAX_POWER - SUB_BITS + 1) as usize + 1) * SUB as usize;

/// Counts of nanosecond values.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn bucket(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let power = 63 - value.leading_zeros(); // >= SUB_BITS
    if power > MAX_POWER {
        return BUCKETS - 1;
    }
    let shift = power - SUB_BITS;
    let sub = (value >> shift) & (SUB - 1);
    ((shift as usize + 1) << SUB_BITS) + sub as usize
}

/// The smallest value that falls in bucket `i`.
fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i >> SUB_BITS) - 1;
    let sub = i & (SUB - 1);
    (SUB + sub) << shift
}

impl Histogram {
    pub fn record(&mut self, nanos: u64) {
        self.counts[bucket(nanos)] += 1;
        self.total += 1;
        self.max = self.max.max(nanos);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0..=1): the lower bound of the bucket holding it, so the true
    /// value is at most about 3% higher. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(lower_bound(i).min(self.max));
            }
        }
        Some(self.max)
    }

    /// (lower bound in ns, count) of every non-empty bucket, for plotting a distribution.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (lower_bound(i), *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bounds_round_trip() {
        let mut last = 0;
        for i in 0..BUCKETS - 1 {
            let lo = lower_bound(i);
            assert!(i == 0 || lo > last, "bucket {i}");
            assert_eq!(bucket(lo), i, "bucket {i} lower bound {lo}");
            last = lo;
        }
    }

    #[test]
    fn relative_error_is_small() {
        for v in [1u64, 31, 32, 33, 1000, 12_345, 9_999_999, 1 << 39] {
            let lo = lower_bound(bucket(v));
            assert!(lo <= v && (v - lo) as f64 <= v as f64 / 30.0, "{v} -> {lo}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!((484_000..=500_000).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99).unwrap();
        assert!((960_000..=990_000).contains(&p99), "{p99}");
        assert_eq!(
            h.quantile(1.0).unwrap(),
            h.max().min(lower_bound(bucket(1_000_000)))
        );
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
