//! [`RetryBudget`]: retries limited to a share of first attempts, so an outage is not multiplied.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use tokio::time::Instant;

/// Balances are kept in thousandths of a token so that a 20 % deposit is an integer.
const MILLI: i64 = 1000;

/// A token bucket that caps retries at a share of recent first attempts, shared by every clone
/// (and by every [`Retrying`](crate::Retrying) given the same budget).
///
/// * Each first attempt deposits `ratio` of a token (0.2 by default: one retry per five calls).
/// * Tokens also trickle in at `min_per_sec` per second (10 by default), so a client that
///   makes few calls can still retry the odd failure.
/// * Each retry takes one whole token; with less than one left, the retry is not made and the
///   caller gets the last outcome as it is.
/// * The balance never exceeds the capacity (100 tokens by default), so a long healthy spell
///   cannot bank a storm of retries for the next outage: only recent calls count.
/// * A new budget starts with one second of the floor (`min_per_sec` tokens).
///
/// In a total outage each call makes its first attempt and, on average, `ratio` retries, so
/// the load on the failing server is multiplied by about `1 + ratio` (1.2) instead of
/// `1 + max_retries` (4 with three retries).
///
/// This is Finagle's `RetryBudget` and tower's `TpsBudget` idea, made cheaper: a deposit is one
/// relaxed atomic add with no clock read and no lock, and only a retry (already the slow path)
/// reads the clock, to add the floor's tokens earned since the last retry.
///
/// ```
/// use http_doer::retrying::RetryBudget;
///
/// let budget = RetryBudget::new(0.2, 0);
/// for _ in 0..10 {
///     budget.deposit(); // ten first attempts earn two retries
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
    /// Thousandths of a token; may pass `cap` by a few deposits racing, never by more.
    balance: AtomicI64,
    /// Microseconds after `epoch` up to which the floor has been paid in.
    paid_until_us: AtomicU64,
    epoch: Instant,
    deposit: i64,
    min_per_sec: i64,
    cap: i64,
}

impl RetryBudget {
    /// A budget that allows `ratio` retries per first attempt (0.2 = 20 %) plus `min_per_sec`
    /// retries per second, with a capacity of 100 tokens (or ten seconds of the floor, if more).
    ///
    /// `ratio` is clamped to `0.0..=1000.0`; NaN counts as 0.
    pub fn new(ratio: f64, min_per_sec: u32) -> Self {
        let min_per_sec = i64::from(min_per_sec);
        let capacity = (100 * MILLI).max(min_per_sec * 10 * MILLI);
        Self::build(ratio, min_per_sec, capacity)
    }

    /// A new budget like this one but holding at most `tokens` tokens.
    ///
    /// It is a new bucket: set the capacity before handing the budget to anything else.
    pub fn capacity(self, tokens: u32) -> Self {
        let inner = &self.inner;
        let ratio = inner.deposit as f64 / MILLI as f64;
        Self::build(ratio, inner.min_per_sec, i64::from(tokens) * MILLI)
    }

    fn build(ratio: f64, min_per_sec: i64, cap: i64) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1000.0)
        };
        let start = (min_per_sec * MILLI).min(cap);
        RetryBudget {
            inner: Arc::new(Inner {
                balance: AtomicI64::new(start),
                paid_until_us: AtomicU64::new(0),
                epoch: Instant::now(),
                deposit: (ratio * MILLI as f64).round() as i64,
                min_per_sec,
                cap,
            }),
        }
    }

    /// Records a first attempt: adds `ratio` of a token, unless the bucket is full.
    pub fn deposit(&self) {
        let inner = &*self.inner;
        if inner.deposit > 0 && inner.balance.load(Relaxed) < inner.cap {
            inner.balance.fetch_add(inner.deposit, Relaxed);
        }
    }

    /// Takes one token for a retry; `false` (and nothing taken) when less than one is left.
    pub fn try_withdraw(&self) -> bool {
        self.pay_floor();
        let inner = &*self.inner;
        inner
            .balance
            .fetch_update(Relaxed, Relaxed, |b| {
                let b = b.min(inner.cap);
                (b >= MILLI).then_some(b - MILLI)
            })
            .is_ok()
    }

    /// The tokens available now (whole retries are `floor()` of it).
    pub fn balance(&self) -> f64 {
        self.pay_floor();
        let inner = &*self.inner;
        inner.balance.load(Relaxed).min(inner.cap) as f64 / MILLI as f64
    }

    /// Adds the floor's tokens for the time since it was last paid.
    fn pay_floor(&self) {
        let inner = &*self.inner;
        if inner.min_per_sec == 0 {
            return;
        }
        let now_us = u64::try_from(inner.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        let paid = inner.paid_until_us.load(Relaxed);
        if now_us <= paid {
            return;
        }
        // Pay whole milliseconds only, and move `paid` by exactly those, so the remainder of a
        // millisecond is paid next time instead of lost.
        let whole_ms = (now_us - paid) / 1000;
        if whole_ms == 0 {
            return;
        }
        // min_per_sec tokens per second is min_per_sec thousandths per millisecond.
        let earned = whole_ms.saturating_mul(inner.min_per_sec as u64);
        let earned = i64::try_from(earned).unwrap_or(i64::MAX).min(inner.cap);
        // One caller pays for a given stretch of time; a loser of the race simply skips.
        if inner
            .paid_until_us
            .compare_exchange(paid, paid + whole_ms * 1000, Relaxed, Relaxed)
            .is_ok()
        {
            let _ = inner.balance.fetch_update(Relaxed, Relaxed, |b| {
                (b < inner.cap).then(|| b.saturating_add(earned).min(inner.cap))
            });
        }
    }
}

impl Default for RetryBudget {
    /// 20 % of first attempts plus 10 per second, up to 100 tokens.
    fn default() -> Self {
        RetryBudget::new(0.2, 10)
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("RetryBudget")
            .field("ratio", &(inner.deposit as f64 / MILLI as f64))
            .field("min_per_sec", &inner.min_per_sec)
            .field("capacity", &(inner.cap / MILLI))
            .field(
                "balance",
                &(inner.balance.load(Relaxed).min(inner.cap) as f64 / MILLI as f64),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ratio_of_first_attempts_without_floor() {
        let b = RetryBudget::new(0.2, 0);
        assert!(!b.try_withdraw(), "starts empty without a floor");
        for _ in 0..100 {
            b.deposit();
        }
        let granted = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn clones_share_one_bucket() {
        let a = RetryBudget::new(1.0, 0);
        let b = a.clone();
        a.deposit();
        assert!(b.try_withdraw());
        assert!(!a.try_withdraw());
    }

    #[test]
    fn capacity_bounds_what_a_healthy_spell_banks() {
        let b = RetryBudget::new(0.5, 0).capacity(3);
        for _ in 0..1000 {
            b.deposit();
        }
        assert_eq!(b.balance(), 3.0);
        assert_eq!((0..10).filter(|_| b.try_withdraw()).count(), 3);
    }

    #[test]
    fn total_outage_amplification_is_about_one_plus_ratio() {
        let b = RetryBudget::default();
        let calls = 100_000u64;
        let mut sent = 0u64;
        for _ in 0..calls {
            b.deposit();
            sent += 1;
            for _ in 0..3 {
                if !b.try_withdraw() {
                    break;
                }
                sent += 1;
            }
        }
        let amp = sent as f64 / calls as f64;
        assert!(amp <= 1.21, "amplification {amp}");
        assert!(amp >= 1.19, "amplification {amp}");
    }

    #[tokio::test(start_paused = true)]
    async fn floor_refills_with_time_up_to_capacity() {
        let b = RetryBudget::new(0.0, 10);
        assert_eq!(b.balance(), 10.0, "one second of floor to start");
        assert_eq!((0..20).filter(|_| b.try_withdraw()).count(), 10);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!((0..20).filter(|_| b.try_withdraw()).count(), 5);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(b.balance(), 100.0, "capped at 100 tokens");
    }

    #[tokio::test(start_paused = true)]
    async fn sub_millisecond_calls_do_not_lose_floor_time() {
        let b = RetryBudget::new(0.0, 1000).capacity(1000);
        while b.try_withdraw() {}
        for _ in 0..10 {
            tokio::time::advance(Duration::from_micros(400)).await;
            b.balance();
        }
        // 4 ms at 1000 tokens/s = 4 tokens, although each step was under a millisecond.
        assert_eq!(b.balance().floor(), 4.0);
    }

    #[test]
    fn concurrent_withdrawals_never_overdraw() {
        let b = RetryBudget::new(1.0, 0).capacity(1000);
        for _ in 0..500 {
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
        assert_eq!(RetryBudget::new(f64::NAN, 0).inner.deposit, 0);
        assert_eq!(RetryBudget::new(-1.0, 0).inner.deposit, 0);
        assert_eq!(RetryBudget::new(5000.0, 0).inner.deposit, 1_000_000);
        let s = format!("{:?}", RetryBudget::default());
        assert!(
            s.contains("ratio: 0.2") && s.contains("min_per_sec: 10"),
            "{s}"
        );
    }
}
