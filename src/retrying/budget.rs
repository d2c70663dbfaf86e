//! [`RetryBudget`]: retries limited to a share of recent first attempts, so an outage is not
//! multiplied.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use tokio::time::Instant;

/// The span over which first attempts and retries are counted.
const WINDOW_MS: u64 = 1000;

/// The share of first attempts that [`RetryBudget::default`] allows as retries: 0.2 (20 %).
pub const DEFAULT_BUDGET_RATIO: f64 = 0.2;

/// The retries [`RetryBudget::default`] allows in any second, however few the first attempts:
/// 10.
pub const DEFAULT_BUDGET_MIN_PER_SEC: u32 = 10;

/// Caps retries at a share of recent first attempts, with a small floor per second; shared by
/// every clone (and by every [`Retrying`](crate::Retrying) given the same budget).
///
/// Within each one-second window, the retries granted never exceed
/// `max(ratio × first attempts in the window, min_per_sec)`. A retry that would pass that
/// is not made, and the caller gets the last outcome as it is.
///
/// * In a total outage each call makes its first attempt and `ratio` retries on average, so
///   the failing server sees about `1 + ratio` (1.2) times the load instead of
///   `1 + max_retries` (4 with three retries).
/// * The floor is a minimum, not an addition: it only matters when traffic is too low for
///   `ratio` to allow anything (under 50 calls a second with the defaults), so a client that
///   makes few calls can still retry the odd failure.
/// * Only recent calls count: first attempts from a healthy spell older than the window are
///   forgotten, so they cannot bank a storm of retries for the next outage.
///
/// This is the idea of Finagle's `RetryBudget` and tower's `TpsBudget`, made cheaper: counting
/// a first attempt is one relaxed atomic add, with no clock read and no lock; only a retry
/// (already the slow path) reads the clock, to roll the window.
///
/// ```
/// use http_doer::retrying::RetryBudget;
///
/// let budget = RetryBudget::new(0.2, 0);
/// for _ in 0..10 {
///     budget.deposit(); // ten first attempts allow two retries
/// }
/// assert!(budget.try_withdraw());
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw());
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    epoch: Instant,
    /// Milliseconds after `epoch` at which the current window began.
    window_start_ms: AtomicU64,
    firsts: AtomicU64,
    retries: AtomicU64,
    /// `ratio` in thousandths, so the arithmetic stays in integers.
    ratio_milli: u64,
    min_per_sec: u64,
    /// Counts of the windows rolled so far, so a fleet exchange can tell what happened since
    /// its last look (see `totals`).
    rolled_firsts: AtomicU64,
    rolled_retries: AtomicU64,
    /// The other replicas' counts over the last second, when the budget is shared
    /// ([`share_budget`](crate::fleet::share_budget)); 0 otherwise.
    fleet_firsts: AtomicU64,
    fleet_retries: AtomicU64,
}

impl RetryBudget {
    /// A budget that allows `ratio` retries per first attempt (0.2 = 20 %), and at least
    /// `min_per_sec` retries in any second.
    ///
    /// `ratio` is clamped to `0.0..=1000.0`; NaN counts as 0.
    pub fn new(ratio: f64, min_per_sec: u32) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1000.0)
        };
        RetryBudget {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                window_start_ms: AtomicU64::new(0),
                firsts: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                ratio_milli: (ratio * 1000.0).round() as u64,
                min_per_sec: u64::from(min_per_sec),
                rolled_firsts: AtomicU64::new(0),
                rolled_retries: AtomicU64::new(0),
                fleet_firsts: AtomicU64::new(0),
                fleet_retries: AtomicU64::new(0),
            }),
        }
    }

    /// Records a first attempt.
    pub fn deposit(&self) {
        self.inner.firsts.fetch_add(1, Relaxed);
    }

    /// Takes the right to one retry; `false` when the budget is spent.
    pub fn try_withdraw(&self) -> bool {
        self.roll();
        let inner = &*self.inner;
        // Shared by a fleet: the others' retries take their part of the allowance too.
        let allowed = inner
            .allowed()
            .saturating_sub(inner.fleet_retries.load(Relaxed));
        let granted = inner
            .retries
            .fetch_update(Relaxed, Relaxed, |r| (r < allowed).then_some(r + 1))
            .is_ok();
        if !granted {
            crate::telemetry::event(crate::telemetry::names::EVENT_RETRY_BUDGET_EXHAUSTED);
        }
        granted
    }

    /// How many more retries the budget would grant now.
    pub fn remaining(&self) -> u64 {
        self.roll();
        let inner = &*self.inner;
        inner
            .allowed()
            .saturating_sub(inner.fleet_retries.load(Relaxed))
            .saturating_sub(inner.retries.load(Relaxed))
    }

    /// First attempts and retries since the budget was made (the exchange of a shared budget
    /// sends the difference between two looks). A look that lags a window roll reads less
    /// than the truth, never more, and the next look catches up.
    pub(crate) fn totals(&self) -> crate::fleet::BudgetCounts {
        let inner = &*self.inner;
        crate::fleet::BudgetCounts {
            firsts: inner.rolled_firsts.load(Relaxed) + inner.firsts.load(Relaxed),
            retries: inner.rolled_retries.load(Relaxed) + inner.retries.load(Relaxed),
        }
    }

    /// The other replicas' counts over the last second, or `None` to count this one alone.
    pub(crate) fn set_fleet(&self, others: Option<crate::fleet::BudgetCounts>) {
        let others = others.unwrap_or_default();
        self.inner.fleet_firsts.store(others.firsts, Relaxed);
        self.inner.fleet_retries.store(others.retries, Relaxed);
    }

    /// A handle that does not keep the budget alive (the fleet exchange stops with it).
    pub(crate) fn downgrade(&self) -> WeakBudget {
        WeakBudget(Arc::downgrade(&self.inner))
    }

    /// Starts a new window when the current one is over.
    fn roll(&self) {
        let inner = &*self.inner;
        let now_ms = u64::try_from(inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let start = inner.window_start_ms.load(Relaxed);
        if now_ms.saturating_sub(start) < WINDOW_MS {
            return;
        }
        // One caller rolls a given window. First attempts counted by others between the swap
        // and the resets are forgotten, which can only make the budget stricter.
        if inner
            .window_start_ms
            .compare_exchange(start, now_ms, Relaxed, Relaxed)
            .is_ok()
        {
            let firsts = inner.firsts.swap(0, Relaxed);
            let retries = inner.retries.swap(0, Relaxed);
            inner.rolled_firsts.fetch_add(firsts, Relaxed);
            inner.rolled_retries.fetch_add(retries, Relaxed);
        }
    }
}

impl Inner {
    /// Retries allowed in the window: the ratio of every first attempt (this replica's and,
    /// when shared, the fleet's), and the floor once for the whole fleet.
    fn allowed(&self) -> u64 {
        let firsts = self.firsts.load(Relaxed) + self.fleet_firsts.load(Relaxed);
        let by_ratio = firsts.saturating_mul(self.ratio_milli) / 1000;
        by_ratio.max(self.min_per_sec)
    }
}

/// A [`RetryBudget`] that may be gone.
pub(crate) struct WeakBudget(Weak<Inner>);

impl WeakBudget {
    pub(crate) fn upgrade(&self) -> Option<RetryBudget> {
        Some(RetryBudget {
            inner: self.0.upgrade()?,
        })
    }
}

impl Default for RetryBudget {
    /// 20 % of first attempts, and at least 10 retries a second ([`DEFAULT_BUDGET_RATIO`],
    /// [`DEFAULT_BUDGET_MIN_PER_SEC`]).
    fn default() -> Self {
        RetryBudget::new(DEFAULT_BUDGET_RATIO, DEFAULT_BUDGET_MIN_PER_SEC)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("RetryBudget")
            .field("ratio", &(inner.ratio_milli as f64 / 1000.0))
            .field("min_per_sec", &inner.min_per_sec)
            .field("firsts_in_window", &inner.firsts.load(Relaxed))
            .field("retries_in_window", &inner.retries.load(Relaxed))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Sends `calls` always-failing calls, `gap` apart, each retried up to 3 times within the
    /// budget; returns attempts per call.
    async fn outage(budget: &RetryBudget, calls: u64, gap: Duration) -> f64 {
        let mut sent = 0u64;
        for _ in 0..calls {
            budget.deposit();
            sent += 1;
            for _ in 0..3 {
                if !budget.try_withdraw() {
                    break;
                }
                sent += 1;
            }
            tokio::time::advance(gap).await;
        }
        sent as f64 / calls as f64
    }

    #[test]
    fn ratio_of_first_attempts_without_floor() {
        let b = RetryBudget::new(0.2, 0);
        assert!(!b.try_withdraw(), "nothing before any first attempt");
        for _ in 0..100 {
            b.deposit();
        }
        assert_eq!(b.remaining(), 20);
        let granted = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn clones_share_one_budget() {
        let a = RetryBudget::new(1.0, 0);
        let b = a.clone();
        a.deposit();
        assert!(b.try_withdraw());
        assert!(!a.try_withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn total_outage_amplification_is_one_plus_ratio() {
        // 1000 calls a second for 10 s.
        let amp = outage(&RetryBudget::default(), 10_000, Duration::from_millis(1)).await;
        assert!((1.19..=1.201).contains(&amp), "amplification {amp}");
        // All at once.
        let amp = outage(&RetryBudget::default(), 10_000, Duration::ZERO).await;
        assert!((1.19..=1.201).contains(&amp), "amplification {amp}");
    }

    #[tokio::test(start_paused = true)]
    async fn floor_is_a_minimum_not_an_addition() {
        // 100 calls a second: 20 % is 20 retries a second, above the floor of 10.
        let amp = outage(&RetryBudget::default(), 2_000, Duration::from_millis(10)).await;
        assert!((1.19..=1.201).contains(&amp), "amplification {amp}");
        // 4 calls a second: 20 % allows nothing, the floor allows 10 a second.
        let amp = outage(&RetryBudget::default(), 40, Duration::from_millis(250)).await;
        assert!((3.4..=3.6).contains(&amp), "amplification {amp}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_healthy_spell_is_forgotten() {
        let b = RetryBudget::new(0.2, 0);
        for _ in 0..10_000 {
            b.deposit();
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(
            !b.try_withdraw(),
            "deposits from 5 s ago must not fund retries"
        );
        b.deposit();
        for _ in 0..4 {
            b.deposit();
        }
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let b = RetryBudget::new(0.5, 0);
        for _ in 0..1000 {
            b.deposit();
        }
        let granted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..400).filter(|_| b.try_withdraw()).count()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 500);
    }

    #[test]
    fn odd_ratios_are_clamped() {
        assert_eq!(RetryBudget::new(f64::NAN, 0).inner.ratio_milli, 0);
        assert_eq!(RetryBudget::new(-1.0, 0).inner.ratio_milli, 0);
        assert_eq!(RetryBudget::new(5000.0, 0).inner.ratio_milli, 1_000_000);
        let s = format!("{:?}", RetryBudget::default());
        assert!(
            s.contains("ratio: 0.2") && s.contains("min_per_sec: 10"),
            "{s}"
        );
    }
}
