//! [`Rate`]: how many calls a key may make, and how many at once.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

/// Calls that may go at once before the rate applies, unless set otherwise: 1, so calls are
/// spread evenly from the first (a rate of 100 a second lets one go every 10 ms). A rate
/// finer than a millisecond (over 1000 a second) has at least one millisecond's calls as its
/// burst: waiting calls wake on tokio's timer, which ticks once a millisecond, so a burst of 1
/// would cut such a rate to 1000 a second.
pub const DEFAULT_BURST: u32 = 1;

/// The resolution of tokio's timers, which the waiting calls sleep on.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// The longest period a rate can have: 100 years (governor counts time in `u64` nanoseconds,
/// 584 years at most).
const MAX_PERIOD: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A local limit: `calls` every `per`, spread evenly (GCRA), with a burst.
///
/// ```
/// use std::time::Duration;
/// use http_doer::limit::Rate;
///
/// let smooth = Rate::per_second(100); // one call every 10 ms
/// let bursty = Rate::per_minute(600).burst(20); // 20 at once, then one every 100 ms
/// let odd = Rate::new(5, Duration::from_millis(1500)); // one every 300 ms
/// assert_eq!(odd.interval(), Some(Duration::from_millis(300)));
/// assert_eq!(Rate::unlimited().interval(), None);
/// # let _ = (smooth, bursty);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    calls: u32,
    per: Duration,
    burst: u32,
}

impl Rate {
    /// `calls` every `per`. A count of 0 is taken as 1; a zero period sets no limit, as
    /// [`unlimited`](Self::unlimited) does; a period past 100 years is cut to it.
    pub fn new(calls: u32, per: Duration) -> Self {
        Rate {
            calls: calls.max(1),
            per: per.min(MAX_PERIOD),
            burst: DEFAULT_BURST,
        }
    }

    /// `calls` a second.
    pub fn per_second(calls: u32) -> Self {
        Rate::new(calls, Duration::from_secs(1))
    }

    /// `calls` a minute.
    pub fn per_minute(calls: u32) -> Self {
        Rate::new(calls, Duration::from_secs(60))
    }

    /// `calls` an hour.
    pub fn per_hour(calls: u32) -> Self {
        Rate::new(calls, Duration::from_secs(3600))
    }

    /// No local limit: only the server's quota paces calls (see [`Pacing`](super::Pacing)).
    pub fn unlimited() -> Self {
        Rate::new(1, Duration::ZERO)
    }

    /// How many calls may go at once after a quiet spell (at least 1, the default
    /// [`DEFAULT_BURST`]). The average stays `calls` per `per`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, limit::{Rate, RateLimiting}, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let backend = ScriptedDoer::new();
    /// for _ in 0..4 {
    ///     backend.push(Ok(http_doer::testing::response(200, "")));
    /// }
    /// let doer = RateLimiting::new(backend, Rate::per_second(10).burst(3));
    /// let start = tokio::time::Instant::now();
    /// for _ in 0..4 {
    ///     let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    ///     doer.execute(req).await.unwrap();
    /// }
    /// // Three at once, the fourth one interval (100 ms) later.
    /// assert_eq!(start.elapsed(), Duration::from_millis(100));
    /// # });
    /// ```
    pub fn burst(mut self, calls: u32) -> Self {
        self.burst = calls.max(1);
        self
    }

    /// The time between two calls at this rate; `None` when there is no limit.
    pub fn interval(&self) -> Option<Duration> {
        if self.per.is_zero() {
            return None;
        }
        Some((self.per / self.calls).max(Duration::from_nanos(1)))
    }

    /// The burst.
    pub fn burst_size(&self) -> u32 {
        self.burst
    }

    /// The governor quota; `None` when there is no limit.
    pub(crate) fn quota(&self) -> Option<Quota> {
        let interval = self.interval()?;
        // governor multiplies the interval by the burst in u64 nanoseconds: keep it in range.
        let room = u64::MAX
            / 2
            / u64::try_from(interval.as_nanos())
                .unwrap_or(u64::MAX)
                .max(1);
        // tokio's timers tick once a millisecond: a waiting call wakes on a tick, so a rate
        // finer than that needs the places of one tick at once, or it is cut to 1000 a second.
        let per_tick = u64::try_from(TIMER_TICK.as_nanos().div_ceil(interval.as_nanos().max(1)))
            .unwrap_or(u64::MAX);
        let burst = u64::from(self.burst).max(per_tick).min(room).max(1);
        let burst = NonZeroU32::new(u32::try_from(burst).unwrap_or(u32::MAX))?;
        Some(Quota::with_period(interval)?.allow_burst(burst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_values_are_brought_into_range() {
        assert_eq!(Rate::per_second(0).interval(), Some(Duration::from_secs(1)));
        assert_eq!(Rate::per_second(100).burst(0).burst_size(), 1);
        assert_eq!(
            Rate::new(u32::MAX, Duration::from_nanos(1)).interval(),
            Some(Duration::from_nanos(1))
        );
        let slow = Rate::new(1, Duration::MAX).burst(u32::MAX);
        assert_eq!(slow.interval(), Some(MAX_PERIOD));
        let quota = slow.quota().unwrap();
        assert!(quota.burst_size().get() >= 1);
        assert!(Rate::unlimited().quota().is_none());
    }
}
