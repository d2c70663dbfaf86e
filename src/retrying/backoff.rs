//! [`Backoff`]: how long to wait before each retry, as a plain value.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

type DelayFn = dyn Fn(u32) -> Duration + Send + Sync;

/// How long to wait before each retry: a shape (constant, linear, exponential, decorrelated
/// jitter or a closure), an optional cap, and a [`Jitter`].
///
/// A `Backoff` is a plain value: [`delays`](Backoff::delays) turns it into an endless iterator
/// of waits, the first for retry 1, seeded so that a test can fix the random part.
///
/// ```
/// use std::time::Duration;
/// use http_doer::retrying::{Backoff, Jitter};
///
/// let secs = |v: Vec<Duration>| v.iter().map(|d| d.as_secs()).collect::<Vec<_>>();
///
/// // Exponential from 100 ms, doubled each retry, never above 1 s.
/// let exp = Backoff::exponential(Duration::from_millis(100)).max_delay(Duration::from_secs(1));
/// let waits: Vec<_> = exp.delays(0).take(6).collect();
/// assert_eq!(waits[0], Duration::from_millis(100));
/// assert_eq!(waits[3], Duration::from_millis(800));
/// assert_eq!(waits[5], Duration::from_secs(1));
///
/// // pester's ExponentialBackoff: 2 s, 4 s, 8 s.
/// assert_eq!(secs(Backoff::pester_exponential().delays(0).take(3).collect()), [2, 4, 8]);
///
/// // Full jitter: anywhere in [0, 1 s], the same for the same seed.
/// let full = Backoff::constant(Duration::from_secs(1)).jitter(Jitter::Full);
/// let a: Vec<_> = full.delays(7).take(5).collect();
/// assert_eq!(a, full.delays(7).take(5).collect::<Vec<_>>());
/// assert!(a.iter().all(|d| *d <= Duration::from_secs(1)));
/// ```
#[derive(Clone)]
pub struct Backoff {
    shape: Shape,
    max_delay: Duration,
    jitter: Jitter,
}

#[derive(Clone)]
enum Shape {
    Constant(Duration),
    Linear(Duration),
    Exponential(Duration),
    Decorrelated(Duration),
    Custom(Arc<DelayFn>),
}

/// Random spread applied to each wait of a [`Backoff`], so that clients that failed together do
/// not retry together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Jitter {
    /// The wait as computed.
    #[default]
    None,
    /// Uniform in `[0, d]` (AWS's "full jitter"): the best spread, sometimes no wait at all.
    Full,
    /// Uniform in `[d/2, d]` (AWS's "equal jitter"): spread, but never less than half.
    Equal,
    /// pester's `jitter`: `d ± d/3`, in whole milliseconds, uniform in `[d - d/3, d + d/3)`,
    /// never below 1 ms. Waits under 3 ms are left as they are (pester would panic there).
    Pester,
}

impl Backoff {
    /// The same wait before every retry.
    pub fn constant(delay: Duration) -> Self {
        Self::from_shape(Shape::Constant(delay))
    }

    /// `step` before retry 1, `2 × step` before retry 2, and so on.
    pub fn linear(step: Duration) -> Self {
        Self::from_shape(Shape::Linear(step))
    }

    /// `base` before retry 1, doubled before each next retry (`base × 2^(n-1)`), saturating
    /// instead of overflowing; cap it with [`max_delay`](Self::max_delay).
    pub fn exponential(base: Duration) -> Self {
        Self::from_shape(Shape::Exponential(base))
    }

    /// AWS's "decorrelated jitter": each wait is uniform in `[base, 3 × previous wait]`, starting
    /// from `base`, capped by [`max_delay`](Self::max_delay) (without a cap it grows about
    /// threefold per retry). The randomness is built in; [`jitter`](Self::jitter) adds more on
    /// top if set.
    pub fn decorrelated_jitter(base: Duration) -> Self {
        Self::from_shape(Shape::Decorrelated(base))
    }

    /// The wait before retry `n` (1 for the first retry) is `f(n)`, then capped and jittered
    /// like any other shape.
    pub fn custom(f: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        Self::from_shape(Shape::Custom(Arc::new(f)))
    }

    /// pester's `DefaultBackoff`: 1 s before every retry.
    pub fn pester_default() -> Self {
        Self::constant(Duration::from_secs(1))
    }

    /// pester's `LinearBackoff`: 1 s, 2 s, 3 s, ...
    pub fn pester_linear() -> Self {
        Self::linear(Duration::from_secs(1))
    }

    /// pester's `LinearJitterBackoff`: 1 s, 2 s, 3 s, ... each ± a third ([`Jitter::Pester`]).
    pub fn pester_linear_jitter() -> Self {
        Self::pester_linear().jitter(Jitter::Pester)
    }

    /// pester's `ExponentialBackoff`: 2 s, 4 s, 8 s, ... (`2^n` seconds before retry `n`).
    pub fn pester_exponential() -> Self {
        Self::exponential(Duration::from_secs(2))
    }

    /// pester's `ExponentialJitterBackoff`: 2 s, 4 s, 8 s, ... each ± a third
    /// ([`Jitter::Pester`]).
    pub fn pester_exponential_jitter() -> Self {
        Self::pester_exponential().jitter(Jitter::Pester)
    }

    fn from_shape(shape: Shape) -> Self {
        Backoff {
            shape,
            max_delay: Duration::MAX,
            jitter: Jitter::None,
        }
    }

    /// Caps every wait, before and after jitter. No cap by default.
    pub fn max_delay(mut self, cap: Duration) -> Self {
        self.max_delay = cap;
        self
    }

    /// Sets the random spread applied to each wait. [`Jitter::None`] by default.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The waits before retry 1, 2, 3, ..., endlessly, with randomness drawn from a generator
    /// seeded with `seed` (the same seed gives the same waits).
    pub fn delays(&self, seed: u64) -> Delays {
        Delays {
            backoff: self.clone(),
            rng: SmallRng::seed_from_u64(seed),
            retry: 0,
            prev: Duration::ZERO,
        }
    }

    fn raw(&self, retry: u32, prev: Duration, rng: &mut SmallRng) -> Duration {
        match &self.shape {
            Shape::Constant(d) => *d,
            Shape::Linear(step) => step.saturating_mul(retry),
            Shape::Exponential(base) => match 1u32.checked_shl(retry.saturating_sub(1)) {
                Some(factor) => base.saturating_mul(factor),
                None if base.is_zero() => Duration::ZERO,
                None => Duration::MAX,
            },
            Shape::Decorrelated(base) => {
                let low = *base;
                let high = prev.max(low).saturating_mul(3);
                uniform(rng, low, high)
            }
            Shape::Custom(f) => f(retry),
        }
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Backoff");
        match &self.shape {
            Shape::Constant(v) => d.field("constant", v),
            Shape::Linear(v) => d.field("linear", v),
            Shape::Exponential(v) => d.field("exponential", v),
            Shape::Decorrelated(v) => d.field("decorrelated_jitter", v),
            Shape::Custom(_) => d.field("custom", &"Fn(u32) -> Duration"),
        };
        if self.max_delay != Duration::MAX {
            d.field("max_delay", &self.max_delay);
        }
        d.field("jitter", &self.jitter).finish()
    }
}

/// The endless sequence of waits of a [`Backoff`]; see [`Backoff::delays`].
#[derive(Clone, Debug)]
pub struct Delays {
    backoff: Backoff,
    rng: SmallRng,
    retry: u32,
    prev: Duration,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.retry = self.retry.saturating_add(1);
        let cap = self.backoff.max_delay;
        let raw = self
            .backoff
            .raw(self.retry, self.prev, &mut self.rng)
            .min(cap);
        // Decorrelated jitter grows from the previous wait before extra jitter, as AWS's formula
        // does, so that jitter on top does not feed back into the growth.
        self.prev = raw;
        Some(apply_jitter(self.backoff.jitter, raw, &mut self.rng).min(cap))
    }
}

fn uniform(rng: &mut SmallRng, low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    let span = (high - low).as_nanos().min(u64::MAX as u128) as u64;
    low.saturating_add(Duration::from_nanos(rng.random_range(0..=span)))
}

fn apply_jitter(jitter: Jitter, d: Duration, rng: &mut SmallRng) -> Duration {
    match jitter {
        Jitter::None => d,
        Jitter::Full => uniform(rng, Duration::ZERO, d),
        Jitter::Equal => uniform(rng, d / 2, d),
        Jitter::Pester => {
            // pester: ms := i*1000; maxJitter := ms/3; ms += Intn(2*maxJitter) - maxJitter; ms <= 0 => 1.
            let ms = d.as_millis().min(i64::MAX as u128) as i64;
            let max_jitter = ms / 3;
            if max_jitter == 0 {
                return d;
            }
            // Saturating: a huge delay (an uncapped exponential late in a long run) must stay
            // huge, not wrap around to a tight retry loop.
            let ms = ms
                .saturating_add(rng.random_range(0..2 * max_jitter))
                .saturating_sub(max_jitter);
            Duration::from_millis(ms.max(1) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pester_jitter_on_a_huge_delay_stays_huge() {
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..100 {
            let d = apply_jitter(Jitter::Pester, Duration::MAX, &mut rng);
            assert!(d > Duration::from_secs(1 << 40), "{d:?}");
        }
    }

    fn first(b: &Backoff, n: usize) -> Vec<Duration> {
        b.delays(42).take(n).collect()
    }

    fn secs(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    #[test]
    fn pester_presets_have_pesters_exact_timings() {
        assert_eq!(first(&Backoff::pester_default(), 4), secs(&[1, 1, 1, 1]));
        assert_eq!(first(&Backoff::pester_linear(), 4), secs(&[1, 2, 3, 4]));
        assert_eq!(
            first(&Backoff::pester_exponential(), 4),
            secs(&[2, 4, 8, 16])
        );
    }

    #[test]
    fn pester_jitter_presets_stay_within_a_third() {
        for seed in 0..200 {
            let lin: Vec<_> = Backoff::pester_linear_jitter()
                .delays(seed)
                .take(5)
                .collect();
            let exp: Vec<_> = Backoff::pester_exponential_jitter()
                .delays(seed)
                .take(5)
                .collect();
            for (i, (l, e)) in lin.iter().zip(&exp).enumerate() {
                let n = i as u64 + 1;
                for (got, centre_ms) in [(l, n * 1000), (e, (1 << n) * 1000)] {
                    let third = centre_ms / 3;
                    let ms = got.as_millis() as u64;
                    assert!(
                        ms >= centre_ms - third && ms < centre_ms + third,
                        "retry {n}: {ms} ms not in [{}, {})",
                        centre_ms - third,
                        centre_ms + third
                    );
                    assert_eq!(got.subsec_nanos() % 1_000_000, 0, "whole milliseconds");
                }
            }
        }
    }

    #[test]
    fn pester_jitter_actually_spreads() {
        let waits: std::collections::HashSet<_> = (0..50)
            .map(|seed| Backoff::pester_linear_jitter().delays(seed).next().unwrap())
            .collect();
        assert!(waits.len() > 30, "only {} distinct waits", waits.len());
    }

    #[test]
    fn same_seed_same_waits_other_seed_other_waits() {
        let b = Backoff::exponential(Duration::from_millis(100)).jitter(Jitter::Full);
        let a: Vec<_> = b.delays(1).take(8).collect();
        assert_eq!(a, b.delays(1).take(8).collect::<Vec<_>>());
        assert_ne!(a, b.delays(2).take(8).collect::<Vec<_>>());
    }

    #[test]
    fn constant_linear_exponential() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        let c = Backoff::constant(Duration::from_millis(250));
        assert_eq!(first(&c, 3), ms(&[250, 250, 250]));
        let l = Backoff::linear(Duration::from_millis(100));
        assert_eq!(first(&l, 4), ms(&[100, 200, 300, 400]));
        let e = Backoff::exponential(Duration::from_millis(100)).max_delay(Duration::from_secs(1));
        assert_eq!(first(&e, 6), ms(&[100, 200, 400, 800, 1000, 1000]));
    }

    #[test]
    fn exponential_saturates_instead_of_overflowing() {
        let e = Backoff::exponential(Duration::from_secs(1)).max_delay(Duration::from_secs(30));
        let late = e.delays(0).nth(200).unwrap();
        assert_eq!(late, Duration::from_secs(30));
        let uncapped = Backoff::exponential(Duration::from_secs(1));
        assert_eq!(uncapped.delays(0).nth(100).unwrap(), Duration::MAX);
        let zero = Backoff::exponential(Duration::ZERO);
        assert_eq!(zero.delays(0).nth(100).unwrap(), Duration::ZERO);
    }

    #[test]
    fn full_and_equal_jitter_bounds() {
        let d = Duration::from_secs(2);
        for seed in 0..100 {
            let full = Backoff::constant(d).jitter(Jitter::Full);
            let equal = Backoff::constant(d).jitter(Jitter::Equal);
            for w in full.delays(seed).take(5) {
                assert!(w <= d);
            }
            for w in equal.delays(seed).take(5) {
                assert!(w >= d / 2 && w <= d, "{w:?}");
            }
        }
    }

    #[test]
    fn jitter_never_exceeds_the_cap() {
        let b = Backoff::constant(Duration::from_secs(10))
            .max_delay(Duration::from_secs(9))
            .jitter(Jitter::Pester);
        for seed in 0..100 {
            assert!(b.delays(seed).next().unwrap() <= Duration::from_secs(9));
        }
    }

    #[test]
    fn decorrelated_jitter_grows_within_bounds() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        for seed in 0..100 {
            let mut prev = base;
            for w in Backoff::decorrelated_jitter(base)
                .max_delay(cap)
                .delays(seed)
                .take(10)
            {
                assert!(
                    w >= base && w <= cap && w <= prev * 3,
                    "{w:?} after {prev:?}"
                );
                prev = w;
            }
        }
    }

    #[test]
    fn custom_sees_retry_numbers_from_one() {
        let b = Backoff::custom(|n| Duration::from_millis(u64::from(n) * 7));
        let ms: Vec<_> = b.delays(0).take(3).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [7, 14, 21]);
    }

    #[test]
    fn tiny_waits_with_pester_jitter_do_not_panic() {
        for d in [0, 1, 2, 3] {
            let b = Backoff::constant(Duration::from_millis(d)).jitter(Jitter::Pester);
            let w = b.delays(3).next().unwrap();
            assert!(w <= Duration::from_millis(4), "{w:?}");
        }
    }

    #[test]
    fn debug_names_the_shape() {
        let s = format!("{:?}", Backoff::pester_exponential_jitter());
        assert!(s.contains("exponential") && s.contains("Pester"), "{s}");
        let s = format!("{:?}", Backoff::custom(|_| Duration::ZERO));
        assert!(s.contains("custom"), "{s}");
    }
}
