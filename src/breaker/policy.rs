//! When a circuit trips, for how long it stays open, and how it probes: the policy, its
//! defaults (compared with other libraries in the [module docs](super)), and the rolling window
//! of outcomes.

use std::time::Duration;

use tokio::time::Instant;

/// Default number of failures in a row that trips a circuit: 5 (the 5th failure trips).
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;

/// Default failure ratio over the [window](DEFAULT_WINDOW) that trips a circuit: 0.5.
///
/// Half of the calls failing is the point where resilience4j trips as well. .NET's 0.1 trips
/// on a host that still answers 90 % of calls, and retter's 0.66 over 5 calls trips on noise.
pub const DEFAULT_FAILURE_RATIO: f64 = 0.5;

/// Default minimum number of calls in the window before the ratio is looked at: 20.
///
/// Lower than resilience4j's and .NET's 100 because a breaker per host sees the traffic of one
/// host only; hosts with less traffic than that are guarded by the consecutive-failure rule.
pub const DEFAULT_MIN_CALLS: u32 = 20;

/// Default length of the rolling window of outcomes: 30 s (.NET's sampling duration), kept as
/// ten 3 s buckets.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

/// Default time a tripped circuit stays open before it lets a probe through: 10 s.
///
/// Between .NET's 5 s and the 60 s of gobreaker and resilience4j: long enough for a restarting
/// instance to come back, short enough that a blip does not cut a host off for a minute. One
/// probe per 10 s costs a dead host nothing; see [`Breaker::open_growth`](super::Breaker::open_growth)
/// to wait longer while failures go on.
pub const DEFAULT_OPEN_DURATION: Duration = Duration::from_secs(10);

/// Default number of probes let through in half-open: 1, as gobreaker and .NET.
pub const DEFAULT_HALF_OPEN_PROBES: u32 = 1;

/// Default time after which a probe that has not returned gives its slot to another: 30 s, the
/// backends' default timeout for one exchange.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// How many buckets the rolling window is cut into.
const BUCKETS: usize = 10;

/// The settings of one breaker's circuits.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) consecutive_failures: u32,
    pub(crate) failure_ratio: Option<f64>,
    pub(crate) min_calls: u32,
    pub(crate) window: Duration,
    pub(crate) open_duration: Duration,
    pub(crate) growth: Option<(f64, Duration)>,
    pub(crate) half_open_probes: u32,
    pub(crate) probe_timeout: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            failure_ratio: Some(DEFAULT_FAILURE_RATIO),
            min_calls: DEFAULT_MIN_CALLS,
            window: DEFAULT_WINDOW,
            open_duration: DEFAULT_OPEN_DURATION,
            growth: None,
            half_open_probes: DEFAULT_HALF_OPEN_PROBES,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }
}

impl Policy {
    /// Whether a closed circuit with these counts trips.
    pub(crate) fn should_trip(&self, consecutive: u32, ok: u64, failed: u64) -> bool {
        (self.consecutive_failures > 0 && consecutive >= self.consecutive_failures)
            || self.rate_trips(ok, failed)
    }

    /// Whether the failure rate alone trips a closed circuit with these window counts. Checked
    /// after every outcome, as resilience4j does: a success lowers the rate, but it can bring
    /// the window to its minimum of calls, and old successes leave the window as it rolls on.
    pub(crate) fn rate_trips(&self, ok: u64, failed: u64) -> bool {
        let Some(ratio) = self.failure_ratio else {
            return false;
        };
        let calls = ok + failed;
        // At least one call, so that a minimum of 0 cannot trip an idle circuit.
        calls >= u64::from(self.min_calls.max(1)) && failed as f64 >= ratio * calls as f64
    }

    /// Whether more successes, and nothing else, could still trip on the rate: only while the
    /// window is short of its minimum of calls and holds enough failures. False stays false as
    /// successes come, so the check can be skipped until a failure or the window rolls on.
    pub(crate) fn successes_may_trip(&self, ok: u64, failed: u64) -> bool {
        let short = u64::from(self.min_calls.max(1)).saturating_sub(ok.saturating_add(failed));
        self.rate_trips(ok.saturating_add(short.max(1)), failed)
    }

    /// How long to stay open after `reopens` failed half-open periods in a row.
    pub(crate) fn open_duration(&self, reopens: u32) -> Duration {
        let Some((factor, max)) = self.growth else {
            return self.open_duration;
        };
        let base = self.open_duration.as_secs_f64();
        let grown = base * factor.powi(reopens.min(64) as i32);
        if grown.is_finite() && grown < max.as_secs_f64() {
            Duration::from_secs_f64(grown).max(self.open_duration)
        } else {
            max.max(self.open_duration)
        }
    }
}

/// Verdict counts over a rolling time window, cut into buckets.
#[derive(Debug)]
pub(crate) struct Window {
    origin: Instant,
    bucket_nanos: u64,
    buckets: [Bucket; BUCKETS],
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    epoch: u64,
    ok: u64,
    failed: u64,
}

impl Window {
    pub(crate) fn new(origin: Instant, length: Duration) -> Self {
        // A zero window would divide by zero; one microsecond per bucket is the floor.
        let per_bucket = length.as_nanos() / BUCKETS as u128;
        let bucket_nanos = u64::try_from(per_bucket).unwrap_or(u64::MAX).max(1_000);
        Window {
            origin,
            bucket_nanos,
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    /// The bucket `now` falls in, counted from the origin; the window's content only changes
    /// within one by what is recorded.
    fn epoch(&self, now: Instant) -> u64 {
        // u64 nanoseconds cover 584 years, and a u64 division is much cheaper than a u128 one.
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since).unwrap_or(u64::MAX) / self.bucket_nanos
    }

    /// Counts one outcome at `now`; returns its bucket.
    pub(crate) fn record(&mut self, now: Instant, failed: bool) -> u64 {
        let epoch = self.epoch(now);
        let bucket = &mut self.buckets[(epoch % BUCKETS as u64) as usize];
        if bucket.epoch != epoch {
            *bucket = Bucket {
                epoch,
                ok: 0,
                failed: 0,
            };
        }
        if failed {
            bucket.failed = bucket.failed.saturating_add(1);
        } else {
            bucket.ok = bucket.ok.saturating_add(1);
        }
        epoch
    }

    /// Successes and failures within the window that ends at `now`.
    pub(crate) fn totals(&self, now: Instant) -> (u64, u64) {
        let epoch = self.epoch(now);
        let oldest = epoch.saturating_sub(BUCKETS as u64 - 1);
        self.buckets
            .iter()
            .filter(|b| b.epoch >= oldest && b.epoch <= epoch)
            .fold((0, 0), |(ok, failed), b| (ok + b.ok, failed + b.failed))
    }

    pub(crate) fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_rule_trips_at_the_threshold() {
        let p = Policy::default();
        assert!(!p.should_trip(4, 0, 4));
        assert!(p.should_trip(5, 0, 5));
        let off = Policy {
            consecutive_failures: 0,
            failure_ratio: None,
            ..Policy::default()
        };
        assert!(!off.should_trip(1000, 0, 1000));
    }

    #[test]
    fn ratio_rule_needs_the_minimum_of_calls() {
        let p = Policy {
            consecutive_failures: 0,
            ..Policy::default()
        };
        assert!(!p.should_trip(0, 9, 10)); // 19 calls < 20
        assert!(p.should_trip(0, 10, 10)); // 20 calls, 0.5
        assert!(!p.should_trip(0, 11, 10)); // 21 calls, 0.48
        let zero_min = Policy {
            min_calls: 0,
            ..p.clone()
        };
        assert!(!zero_min.should_trip(0, 0, 0));
    }

    #[test]
    fn ratio_rule_is_the_same_whatever_the_last_outcome() {
        let p = Policy {
            failure_ratio: Some(0.5),
            min_calls: 5,
            ..Policy::default()
        };
        // fail, fail, fail, ok, ok: the fifth call, a success, brings the window to its minimum.
        assert!(!p.should_trip(0, 1, 3));
        assert!(p.should_trip(0, 2, 3));
        assert!(p.rate_trips(2, 3));
    }

    #[test]
    fn successes_may_trip_only_while_short_of_the_minimum() {
        let p = Policy {
            failure_ratio: Some(0.5),
            min_calls: 5,
            ..Policy::default()
        };
        assert!(p.successes_may_trip(0, 3)); // two more successes: 3 of 5
        assert!(p.successes_may_trip(1, 3));
        assert!(!p.successes_may_trip(0, 2)); // at 5 calls: 2 of 5
        assert!(!p.successes_may_trip(3, 3)); // at the minimum: successes only lower it
        assert!(!p.successes_may_trip(100, 0));
        let off = Policy {
            failure_ratio: None,
            ..p.clone()
        };
        assert!(!off.successes_may_trip(0, 3));
        // Monotone: once false, more successes keep it false.
        for failed in 0..12 {
            let mut was = true;
            for ok in 0..12 {
                let now = p.successes_may_trip(ok, failed);
                assert!(was || !now, "ok {ok} failed {failed}");
                was = now;
            }
        }
    }

    #[test]
    fn open_duration_grows_and_is_capped() {
        let p = Policy {
            open_duration: Duration::from_secs(2),
            growth: Some((2.0, Duration::from_secs(10))),
            ..Policy::default()
        };
        let got: Vec<u64> = (0..5).map(|n| p.open_duration(n).as_secs()).collect();
        assert_eq!(got, [2, 4, 8, 10, 10]);
        assert_eq!(p.open_duration(u32::MAX), Duration::from_secs(10));
        let flat = Policy::default();
        assert_eq!(flat.open_duration(7), DEFAULT_OPEN_DURATION);
        let shrinking = Policy {
            growth: Some((0.1, Duration::from_secs(60))),
            ..Policy::default()
        };
        assert_eq!(shrinking.open_duration(3), DEFAULT_OPEN_DURATION);
    }

    #[test]
    fn window_forgets_what_is_older_than_its_length() {
        let t0 = Instant::now();
        let mut w = Window::new(t0, Duration::from_secs(30));
        w.record(t0, true);
        w.record(t0 + Duration::from_secs(1), false);
        w.record(t0 + Duration::from_secs(10), true);
        assert_eq!(w.totals(t0 + Duration::from_secs(10)), (1, 2));
        // Bucket 0 (0 s..3 s) leaves the window once bucket 10 (30 s..33 s) begins.
        assert_eq!(w.totals(t0 + Duration::from_millis(29_999)), (1, 2));
        assert_eq!(w.totals(t0 + Duration::from_secs(30)), (0, 1));
        // A bucket reused for a later epoch starts again from zero.
        w.record(t0 + Duration::from_secs(31), false);
        assert_eq!(w.totals(t0 + Duration::from_secs(31)), (1, 1));
        assert_eq!(w.totals(t0 + Duration::from_secs(100)), (0, 0));
        w.clear();
        assert_eq!(w.totals(t0 + Duration::from_secs(31)), (0, 0));
    }
}
