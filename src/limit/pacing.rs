//! [`Pacing`]: how [`RateLimiting`](super::RateLimiting) turns the server's quota into waits.

use std::time::Duration;

use super::quota_headers::ServerQuota;

/// The share of the server's limit kept in reserve, unless set otherwise: 20 %. It covers calls
/// already in flight when an answer was sent, other clients of the same quota, and a server
/// whose window ends a little before its `reset` said.
pub const DEFAULT_SAFETY_MARGIN: f64 = 0.2;

/// Pacing starts once the remaining quota is at most this share of the limit, unless set
/// otherwise: half. Above it, calls go as fast as the local rate lets them.
pub const DEFAULT_SLOW_BELOW: f64 = 0.5;

/// The longest a server can pause a key, unless set otherwise: one hour (GitHub's window). A
/// longer `Retry-After` or reset is cut to it, so an absurd value cannot stop a client for good.
pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(3600);

/// How long a 429 with neither `Retry-After` nor a reset pauses its key: 1 s.
pub const DEFAULT_PAUSE_ON_429: Duration = Duration::from_secs(1);

/// How [`RateLimiting`](super::RateLimiting) follows the quota a server publishes.
///
/// * **A 429** pauses the key, for every caller at once, for the `Retry-After` time (or the
///   reset of the quota fields, or [`DEFAULT_PAUSE_ON_429`]), at most [`max_pause`](Self::max_pause).
/// * **Quota fields** (see [`quota_headers::parse`](super::quota_headers::parse)) with `r`
///   calls remaining, `t` until the reset, and a limit `L`: once `r ≤ slow_below × L` the quota
///   is nearly spent, and the key keeps `ceil(margin × L)` calls in reserve and spreads the
///   rest, `b = r − reserve`, evenly over `t`: one call every `t / b`. When `b ≤ 0` the key
///   pauses until the reset. A later answer with more room lifts the pacing, and it ends by
///   itself at the reset. Without a limit (only a remaining count) the quota is taken as
///   nearly spent, and the reserve is `ceil(margin × r)`. Without a reset there is nothing to
///   spread over, and only a 429 pauses.
///
/// For a quota of 50 calls per 10 s window and the defaults, a client calling flat out sends
/// the first 25 at once, then 15 more spread over the rest of the window (10 kept in reserve):
/// 39 or 40 a window (the last spread call can land after the reset; measured 39), and no 429.
///
/// ```
/// use std::time::Duration;
/// use http_doer::limit::{Pacing, Rate, RateLimiting};
/// use http_doer::testing::ScriptedDoer;
///
/// let doer = RateLimiting::new(ScriptedDoer::new(), Rate::per_second(100))
///     .pacing(Pacing::new().safety_margin(0.1).slow_below(0.25));
/// # drop(doer);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pacing {
    margin: f64,
    slow_below: f64,
    max_pause: Duration,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing::new()
    }
}

impl Pacing {
    /// The defaults: [`DEFAULT_SAFETY_MARGIN`], [`DEFAULT_SLOW_BELOW`], [`DEFAULT_MAX_PAUSE`].
    pub fn new() -> Self {
        Pacing {
            margin: DEFAULT_SAFETY_MARGIN,
            slow_below: DEFAULT_SLOW_BELOW,
            max_pause: DEFAULT_MAX_PAUSE,
        }
    }

    /// The share of the server's limit kept in reserve, from 0 to 0.99 (a value outside is
    /// brought to the nearest end; NaN is the default).
    pub fn safety_margin(mut self, share: f64) -> Self {
        self.margin = share_or(share, DEFAULT_SAFETY_MARGIN).min(0.99);
        self
    }

    /// Pacing starts once the remaining quota is at most this share of the limit, from 0 to 1:
    /// `1.0` paces as soon as a quota is known, `0.0` only once nothing is left but the reserve.
    pub fn slow_below(mut self, share: f64) -> Self {
        self.slow_below = share_or(share, DEFAULT_SLOW_BELOW);
        self
    }

    /// The longest a server's answer can pause a key.
    pub fn max_pause(mut self, max: Duration) -> Self {
        self.max_pause = max;
        self
    }

    /// What an answer with `status`, `quota` and `retry_after` asks of its key.
    pub(crate) fn plan(
        &self,
        status: u16,
        quota: Option<&ServerQuota>,
        retry_after: Option<Duration>,
    ) -> Plan {
        if status == 429 {
            let wait = retry_after
                .or_else(|| quota.and_then(|q| q.reset))
                .unwrap_or(DEFAULT_PAUSE_ON_429);
            return Plan::Pause(wait.min(self.max_pause));
        }
        let Some(q) = quota else {
            return Plan::Keep;
        };
        let Some(reset) = q.reset else {
            return Plan::Keep;
        };
        let limit = q.limit.unwrap_or(q.remaining);
        // u64 to f64 loses precision only past 2^53 calls, where a share is still right.
        let nearly_spent =
            q.limit.is_none() || q.remaining as f64 <= self.slow_below * limit as f64;
        if !nearly_spent {
            return Plan::Lift;
        }
        let reserve = (self.margin * limit as f64).ceil() as u64;
        match q.remaining.saturating_sub(reserve) {
            _ if reset.is_zero() => Plan::Lift,
            0 => Plan::Pause(reset.min(self.max_pause)),
            spendable => Plan::Pace {
                interval: reset / u32::try_from(spendable).unwrap_or(u32::MAX),
                until: reset.min(self.max_pause),
            },
        }
    }
}

fn share_or(share: f64, default: f64) -> f64 {
    if share.is_nan() {
        default
    } else {
        share.clamp(0.0, 1.0)
    }
}

/// What an answer asks of its key; see [`Pacing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing new: keep what the key had.
    Keep,
    /// The quota has room: end any pacing now.
    Lift,
    /// Nobody goes for this long.
    Pause(Duration),
    /// One call every `interval`, for `until`.
    Pace { interval: Duration, until: Duration },
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever numbers a server sends: no panic, a pause or pace never past `max_pause`,
        /// and a pace that spends what is left no faster than the reset allows.
        #[test]
        fn any_quota_gives_a_bounded_plan(
            status in proptest::prop_oneof![proptest::strategy::Just(200u16), proptest::strategy::Just(429u16), 100u16..600],
            limit in proptest::option::of(proptest::num::u64::ANY),
            remaining in proptest::num::u64::ANY,
            reset_ms in proptest::option::of(proptest::num::u64::ANY),
            retry_ms in proptest::option::of(proptest::num::u64::ANY),
        ) {
            let pacing = Pacing::new();
            let quota = ServerQuota {
                limit,
                remaining,
                reset: reset_ms.map(Duration::from_millis),
                window: None,
            };
            let plan = pacing.plan(status, Some(&quota), retry_ms.map(Duration::from_millis));
            match plan {
                Plan::Pause(wait) => proptest::prop_assert!(wait <= DEFAULT_MAX_PAUSE),
                Plan::Pace { interval, until } => {
                    proptest::prop_assert!(until <= DEFAULT_MAX_PAUSE);
                    let reset = quota.reset.unwrap();
                    proptest::prop_assert!(interval <= reset);
                }
                Plan::Keep | Plan::Lift => {}
            }
        }
    }

    fn quota(limit: Option<u64>, remaining: u64, reset: u64) -> ServerQuota {
        ServerQuota {
            limit,
            remaining,
            reset: Some(Duration::from_secs(reset)),
            window: None,
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_429_pauses_for_retry_after_then_the_reset_then_a_second() {
        let p = Pacing::new();
        let q = quota(Some(50), 0, 7);
        assert_eq!(
            p.plan(429, Some(&q), Some(secs(2.0))),
            Plan::Pause(secs(2.0))
        );
        assert_eq!(p.plan(429, Some(&q), None), Plan::Pause(secs(7.0)));
        assert_eq!(p.plan(429, None, None), Plan::Pause(DEFAULT_PAUSE_ON_429));
        assert_eq!(
            p.plan(429, None, Some(secs(1e9))),
            Plan::Pause(DEFAULT_MAX_PAUSE)
        );
    }

    #[test]
    fn plenty_lifts_nearly_spent_spreads_what_is_above_the_reserve() {
        let p = Pacing::new();
        assert_eq!(p.plan(200, Some(&quota(Some(50), 26, 8)), None), Plan::Lift);
        // 25 left of 50, 10 in reserve: 15 calls over 9 s.
        assert_eq!(
            p.plan(200, Some(&quota(Some(50), 25, 9)), None),
            Plan::Pace {
                interval: secs(0.6),
                until: secs(9.0)
            }
        );
        assert_eq!(
            p.plan(200, Some(&quota(Some(50), 10, 4)), None),
            Plan::Pause(secs(4.0))
        );
        assert_eq!(
            p.plan(200, Some(&quota(Some(50), 3, 0)), None),
            Plan::Lift,
            "resets now"
        );
    }

    #[test]
    fn without_a_limit_or_a_reset() {
        let p = Pacing::new();
        // Nearly spent by assumption; the reserve is 20 % of the 10 left.
        assert_eq!(
            p.plan(200, Some(&quota(None, 10, 4)), None),
            Plan::Pace {
                interval: secs(0.5),
                until: secs(4.0)
            }
        );
        let no_reset = ServerQuota {
            remaining: 0,
            ..Default::default()
        };
        assert_eq!(p.plan(200, Some(&no_reset), None), Plan::Keep);
        assert_eq!(p.plan(503, None, Some(secs(3.0))), Plan::Keep);
    }

    #[test]
    fn settings_are_kept_in_range() {
        let p = Pacing::new()
            .safety_margin(f64::NAN)
            .slow_below(7.0)
            .max_pause(secs(5.0));
        assert_eq!(p.margin, DEFAULT_SAFETY_MARGIN);
        assert_eq!(p.slow_below, 1.0);
        assert_eq!(Pacing::new().safety_margin(1.0).margin, 0.99);
        assert_eq!(Pacing::new().safety_margin(-1.0).margin, 0.0);
        assert_eq!(
            p.plan(200, Some(&quota(Some(u64::MAX), u64::MAX, u64::MAX)), None),
            Plan::Pace {
                interval: Duration::from_secs(u64::MAX) / u32::MAX,
                until: secs(5.0)
            },
            "huge numbers neither panic nor overflow"
        );
    }
}
