//! The simulator's only source of randomness: ChaCha8 streams derived from the run's seed.
//! Each subsystem draws from its own stream, so a change in how often one of them draws (a
//! client that publishes more) does not reshuffle the others (the fault schedule).

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};

#[derive(Debug, Clone)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// A new independent stream, seeded from this one.
    pub fn fork(&mut self) -> Rng {
        Rng::new(self.u64())
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `lo..=hi`, as a usize.
    pub fn range_usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as u64, hi as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        let unit = (self.u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }

    /// Roughly log-uniform in `lo..=hi` (both above 0): small values as likely as large ones.
    pub fn log_range(&mut self, lo: u64, hi: u64) -> u64 {
        let (l, h) = ((lo.max(1) as f64).ln(), (hi.max(1) as f64).ln());
        let unit = (self.u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((l + (h - l) * unit).exp() as u64).clamp(lo, hi)
    }

    /// Exponentially distributed with the given mean, at least 1.
    pub fn exp(&mut self, mean: u64) -> u64 {
        let unit = ((self.u64() >> 11) as f64 + 1.0) / ((1u64 << 53) as f64 + 1.0);
        ((-unit.ln()) * mean as f64)
            .max(1.0)
            .min(mean as f64 * 20.0) as u64
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// An index chosen with the given weights.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < u64::from(*w) {
                return i;
            }
            x -= u64::from(*w);
        }
        weights.len() - 1
    }
}
