//! When to send the next copy: a fixed delay, all at once, or [`AdaptiveDelay`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::window::LatencyWindow;

/// Default percentile of recent latencies an [`AdaptiveDelay`] waits for: 0.95 (p95), so about
/// 5 % of calls are hedged.
pub const DEFAULT_PERCENTILE: f64 = 0.95;

/// Default number of recent samples in an [`AdaptiveDelay`]'s window: about 200.
pub const DEFAULT_WINDOW_SAMPLES: u32 = 200;

/// Default age past which an [`AdaptiveDelay`]'s samples are dropped: 60 s.
pub const DEFAULT_WINDOW_PERIOD: Duration = Duration::from_secs(60);

/// Default number of samples an [`AdaptiveDelay`] needs before it trusts its percentile: 20.
pub const DEFAULT_WARM_UP_SAMPLES: u32 = 20;

/// Default delay an [`AdaptiveDelay`] waits until it is warm: 10 ms.
pub const DEFAULT_WARM_UP_DELAY: Duration = Duration::from_millis(10);

/// An adaptive hedge delay: a latency percentile of recent answers.
///
/// A copy is hedged when it has been pending longer than the `percentile` (default
/// [`DEFAULT_PERCENTILE`], p95) of the latencies in a rotating window (default: the last
/// [200](DEFAULT_WINDOW_SAMPLES) samples and at most the last [60 s](DEFAULT_WINDOW_PERIOD), in
/// two halves). Until the window holds a warm-up minimum of samples (default
/// [20](DEFAULT_WARM_UP_SAMPLES)), a fixed fallback delay (default
/// [10 ms](DEFAULT_WARM_UP_DELAY)) is used instead. Because the window fills by count,
/// a cold client starts using its own measurements after the first 20 answers, not after a
/// clock period; the window is lock-free, so recording costs a few atomic adds.
///
/// What is recorded: the latency of each copy that brings back an acceptable answer, from
/// that copy's own start. Cancelled copies gave no answer and are not recorded; neither are
/// errors and unacceptable answers. As with tower's hedge, this has a bias worth knowing: once
/// hedging cancels the slowest requests, the window sees mostly the fast ones, so the
/// percentile sits somewhat below the same percentile of all requests, and on a heavy tail
/// hedges can fire for up to about twice `1 - percentile` of calls. The [budget](crate::hedging::HedgeBudget)
/// caps that; raise the percentile to hedge less. (Counting a cancelled copy as the delay it
/// outlived keeps the rate exact, but it was measured to pin the delay wherever it stands when
/// the slow share is close to `1 - percentile`, which cost more tail latency than it saved.)
///
/// One window serves every request of a [`Hedging`](crate::Hedging) and its clones: use one
/// `Hedging` per endpoint when endpoints differ widely in latency. The window is made when the
/// settings are given to [`Hedging::adaptive_delay`](crate::Hedging::adaptive_delay) (or by
/// [`Hedging::new`](crate::Hedging::new)), not when an `AdaptiveDelay` is built: an
/// `AdaptiveDelay` is only settings.
///
/// ```
/// use std::time::Duration;
/// use http_doer::{Hedging, hedging::AdaptiveDelay, testing::ScriptedDoer};
///
/// let hedged = Hedging::new(ScriptedDoer::new()).adaptive_delay(
///     AdaptiveDelay::new()
///         .percentile(0.9)
///         .window(500, Duration::from_secs(30))
///         .warm_up(50, Duration::from_millis(100)),
/// );
/// # let _ = hedged;
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveDelay {
    percentile: f64,
    window_samples: u32,
    window_period: Duration,
    warm_up: u32,
    fallback: Duration,
}

impl AdaptiveDelay {
    /// p95 over the last 200 samples (and at most 60 s); 10 ms until 20 samples are in (the
    /// `DEFAULT_*` constants of this module).
    pub fn new() -> Self {
        AdaptiveDelay {
            percentile: DEFAULT_PERCENTILE,
            window_samples: DEFAULT_WINDOW_SAMPLES,
            window_period: DEFAULT_WINDOW_PERIOD,
            warm_up: DEFAULT_WARM_UP_SAMPLES,
            fallback: DEFAULT_WARM_UP_DELAY,
        }
    }

    /// Which percentile of recent latencies to wait for, as a fraction: 0.95 for p95 (default
    /// [`DEFAULT_PERCENTILE`]).
    ///
    /// Clamped to `0.01..=1.0`; NaN keeps the current value. A higher percentile sends fewer
    /// hedges (about `1 - percentile` of calls) and cuts less of the tail.
    pub fn percentile(mut self, q: f64) -> Self {
        if !q.is_nan() {
            self.percentile = q.clamp(0.01, 1.0);
        }
        self
    }

    /// The rotating window: about `samples` recent samples, none older than `period`.
    ///
    /// The window is two halves; when the newer half holds `samples / 2` samples or is
    /// `period / 2` old, the older half is dropped. A smaller window adapts faster and is
    /// noisier. Defaults: [`DEFAULT_WINDOW_SAMPLES`], [`DEFAULT_WINDOW_PERIOD`].
    pub fn window(mut self, samples: u32, period: Duration) -> Self {
        self.window_samples = samples.max(2);
        self.window_period = period;
        self
    }

    /// Below `samples` samples in the window, wait `fallback` instead of the percentile
    /// (defaults [`DEFAULT_WARM_UP_SAMPLES`], [`DEFAULT_WARM_UP_DELAY`]).
    pub fn warm_up(mut self, samples: u32, fallback: Duration) -> Self {
        self.warm_up = samples.max(1);
        self.fallback = fallback;
        self
    }
}

impl Default for AdaptiveDelay {
    fn default() -> Self {
        Self::new()
    }
}

/// The shortest delay the adaptive policy waits once warm.
const MIN_ADAPTIVE_DELAY: Duration = Duration::from_millis(1);

/// The delay policy of one [`Hedging`](crate::Hedging), with its window when adaptive.
#[derive(Clone)]
pub(crate) enum Delay {
    /// The same delay every time; zero sends every copy at once.
    Fixed(Duration),
    Adaptive {
        config: AdaptiveDelay,
        window: Arc<LatencyWindow>,
    },
}

impl Delay {
    pub(crate) fn adaptive(config: AdaptiveDelay) -> Self {
        let window = LatencyWindow::new(config.window_samples, config.window_period);
        Delay::Adaptive {
            config,
            window: Arc::new(window),
        }
    }

    /// The delay for a call starting now.
    pub(crate) fn current(&self) -> Duration {
        match self {
            Delay::Fixed(d) => *d,
            Delay::Adaptive { .. } => self.current_at(tokio::time::Instant::now()),
        }
    }

    /// As [`current`](Self::current), with the time already read.
    pub(crate) fn current_at(&self, now: tokio::time::Instant) -> Duration {
        match self {
            Delay::Fixed(d) => *d,
            // Never below 1 ms, tokio's timer resolution: answers faster than that (a cache
            // below) would give a zero delay, hedging every call not ready on its first poll.
            Delay::Adaptive { config, window } => window
                .percentile_at(config.percentile, u64::from(config.warm_up), now)
                .map_or(config.fallback, |d| d.max(MIN_ADAPTIVE_DELAY)),
        }
    }

    /// The window to record latencies into, when the delay learns from them.
    pub(crate) fn window(&self) -> Option<&LatencyWindow> {
        match self {
            Delay::Fixed(_) => None,
            Delay::Adaptive { window, .. } => Some(window),
        }
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delay::Fixed(d) if d.is_zero() => f.write_str("AllAtOnce"),
            Delay::Fixed(d) => f.debug_tuple("Fixed").field(d).finish(),
            Delay::Adaptive { config, window } => f
                .debug_struct("Adaptive")
                .field("config", config)
                .field("samples", &window.len())
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn adaptive_uses_the_fallback_until_warm() {
        let delay = Delay::adaptive(AdaptiveDelay::new().warm_up(5, Duration::from_millis(40)));
        let window = delay.window().unwrap();
        for _ in 0..4 {
            window.record(Duration::from_millis(3));
            assert_eq!(delay.current(), Duration::from_millis(40));
        }
        window.record(Duration::from_millis(3));
        let d = delay.current();
        assert!(
            d >= Duration::from_millis(3) && d < Duration::from_micros(3100),
            "{d:?}"
        );
    }

    #[test]
    fn builder_clamps() {
        let a = AdaptiveDelay::new()
            .percentile(f64::NAN)
            .window(0, Duration::ZERO)
            .warm_up(0, Duration::ZERO);
        assert_eq!(a.percentile, 0.95);
        assert_eq!(a.window_samples, 2);
        assert_eq!(a.warm_up, 1);
        assert_eq!(AdaptiveDelay::new().percentile(7.0).percentile, 1.0);
        assert_eq!(AdaptiveDelay::new().percentile(-1.0).percentile, 0.01);
        assert_eq!(format!("{:?}", Delay::Fixed(Duration::ZERO)), "AllAtOnce");
        assert!(Delay::Fixed(Duration::from_millis(1)).window().is_none());
    }
}
