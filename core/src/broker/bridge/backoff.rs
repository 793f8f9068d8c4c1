//! How long a bridge waits before dialing again (Mosquitto's `restart_timeout`).
//!
//! `Constant` waits the same every time. `Jitter` is the "decorrelated jitter" Mosquitto uses
//! (from AWS's "Exponential Backoff And Jitter"): each wait is drawn uniformly between the base
//! and three times the previous wait, capped, and a link that comes up starts again from the
//! base. The draw comes from the broker's seeded generator, so a run is reproducible. Waits are
//! counted in milliseconds so that the jitter is not rounded to whole seconds.

use super::config::Backoff;
use rand_chacha::rand_core::Rng;

/// The shortest wait: a remote that refuses at once must not make the broker dial in a loop
/// that never lets time pass (a `restart_timeout` of 0).
pub(crate) const MIN_WAIT_MS: u64 = 100;

/// What a bridge remembers of its backoff: the last wait, the input of the next draw.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BackoffState {
    last_ms: Option<u64>,
}

impl BackoffState {
    /// The link came up: the next wait starts again from the base.
    pub(crate) fn reset(&mut self) {
        self.last_ms = None;
    }

    /// The wait before the next attempt, in milliseconds.
    pub(crate) fn next(&mut self, backoff: Backoff, rng: &mut impl Rng) -> u64 {
        let wait = match backoff {
            Backoff::Constant { secs } => u64::from(secs) * 1000,
            Backoff::Jitter {
                base_secs,
                cap_secs,
            } => {
                let base = u64::from(base_secs) * 1000;
                let cap = (u64::from(cap_secs) * 1000).max(base);
                match self.last_ms {
                    None => base,
                    Some(last) => {
                        let high = last.saturating_mul(3).max(base);
                        let span = high - base;
                        let drawn = if span == 0 {
                            base
                        } else {
                            base + rng.next_u64() % (span + 1)
                        };
                        drawn.min(cap)
                    }
                }
            }
        };
        let wait = wait.max(MIN_WAIT_MS);
        self.last_ms = Some(wait);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn constant_waits_the_same() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let mut s = BackoffState::default();
        for _ in 0..5 {
            assert_eq!(s.next(Backoff::Constant { secs: 7 }, &mut rng), 7000);
        }
        assert_eq!(s.next(Backoff::Constant { secs: 0 }, &mut rng), MIN_WAIT_MS);
    }

    #[test]
    fn jitter_stays_between_base_and_cap_and_grows_by_at_most_three() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let b = Backoff::Jitter {
            base_secs: 2,
            cap_secs: 60,
        };
        let mut s = BackoffState::default();
        let mut last = s.next(b, &mut rng);
        assert_eq!(last, 2000, "the first wait is the base");
        let mut seen_cap = false;
        for _ in 0..200 {
            let w = s.next(b, &mut rng);
            assert!((2000..=60_000).contains(&w), "{w}");
            assert!(w <= (last * 3).max(2000), "{w} after {last}");
            seen_cap |= w == 60_000;
            last = w;
        }
        assert!(seen_cap, "the waits reach the cap");
        s.reset();
        assert_eq!(s.next(b, &mut rng), 2000);
    }

    #[test]
    fn jitter_is_reproducible_from_the_seed() {
        let b = Backoff::Jitter {
            base_secs: 1,
            cap_secs: 30,
        };
        let run = || {
            let mut rng = ChaCha20Rng::from_seed([9; 32]);
            let mut s = BackoffState::default();
            (0..20).map(|_| s.next(b, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }
}
