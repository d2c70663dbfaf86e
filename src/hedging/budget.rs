//! [`HedgeBudget`]: how many extra copies may be sent, as a share of calls.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

/// Milli-tokens per token: the balance is an integer so it can live in one atomic.
const MILLI: i64 = 1000;

/// Default share of hedged calls that may send an extra copy: 0.1 (10 %).
pub const DEFAULT_HEDGE_RATIO: f64 = 0.1;

/// Default number of unspent tokens a [`HedgeBudget`] saves up, and starts with: 10.
pub const DEFAULT_HEDGE_BURST: u32 = 10;

/// A limit on extra copies, so that hedging cannot flood a backend that is already slow.
///
/// Every hedged call earns `ratio` of a token; every extra copy (a hedge) spends one. Unspent
/// tokens accumulate up to `burst`, and the budget starts full, so the first calls of a cold
/// start can hedge at once. The default, `HedgeBudget::new(0.1)` with a burst of 10, keeps extra
/// copies under about 10% of calls however slow the backend gets: when every request is slow,
/// hedging would otherwise double the load exactly when the backend can least take it.
///
/// One budget is shared by all clones of a [`Hedging`](crate::Hedging). Its balance is made
/// when it is given to [`Hedging::budget`](crate::Hedging::budget) (or by
/// [`Hedging::new`](crate::Hedging::new)): a `HedgeBudget` itself is only settings.
///
/// ```
/// use http_doer::{Hedging, hedging::HedgeBudget, testing::ScriptedDoer};
///
/// // At most one extra copy for every five calls, and no saving up beyond 3.
/// let hedged = Hedging::new(ScriptedDoer::new()).budget(HedgeBudget::new(0.2).burst(3));
/// // Two copies of every call, as pester's `Concurrency` does: lift the limit.
/// let racing = Hedging::new(ScriptedDoer::new()).all_at_once().budget(HedgeBudget::unlimited());
/// # let _ = (hedged, racing);
/// ```
#[derive(Clone, Copy, PartialEq)]
pub struct HedgeBudget {
    ratio: f64,
    burst: u32,
    unlimited: bool,
}

impl HedgeBudget {
    /// Extra copies limited to `ratio` of calls (0.1 = 10%), with a burst of
    /// [`DEFAULT_HEDGE_BURST`].
    ///
    /// A negative or NaN ratio counts as 0: no hedging beyond the initial burst.
    pub fn new(ratio: f64) -> Self {
        HedgeBudget {
            ratio: if ratio.is_finite() && ratio > 0.0 {
                ratio
            } else if ratio == f64::INFINITY {
                f64::MAX
            } else {
                0.0
            },
            burst: DEFAULT_HEDGE_BURST,
            unlimited: false,
        }
    }

    /// No limit at all: every copy the delay calls for is sent.
    pub fn unlimited() -> Self {
        HedgeBudget {
            ratio: f64::MAX,
            burst: u32::MAX,
            unlimited: true,
        }
    }

    /// How many unspent tokens may be saved up, and the starting balance (at least 1, since
    /// a copy costs a whole token). Default [`DEFAULT_HEDGE_BURST`].
    pub fn burst(mut self, tokens: u32) -> Self {
        self.burst = tokens;
        self
    }

    /// The share of calls that may send an extra copy.
    pub fn ratio(&self) -> f64 {
        self.ratio
    }

    pub(crate) fn bucket(&self) -> Option<TokenBucket> {
        (!self.unlimited).then(|| TokenBucket::new(self))
    }
}

impl Default for HedgeBudget {
    /// [`DEFAULT_HEDGE_RATIO`] of calls, burst of [`DEFAULT_HEDGE_BURST`].
    fn default() -> Self {
        HedgeBudget::new(DEFAULT_HEDGE_RATIO)
    }
}

impl fmt::Debug for HedgeBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unlimited {
            f.write_str("HedgeBudget(unlimited)")
        } else {
            f.debug_struct("HedgeBudget")
                .field("ratio", &self.ratio)
                .field("burst", &self.burst)
                .finish()
        }
    }
}

/// The shared balance of a [`HedgeBudget`], lock-free.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    balance: AtomicI64,
    deposit: i64,
    cap: i64,
}

impl TokenBucket {
    fn new(budget: &HedgeBudget) -> Self {
        let cap = i64::from(budget.burst.max(1)).saturating_mul(MILLI);
        // f64 -> i64 saturates; a tiny positive ratio still earns something.
        let mut deposit = (budget.ratio * MILLI as f64).round() as i64;
        if budget.ratio > 0.0 {
            deposit = deposit.max(1);
        }
        TokenBucket {
            balance: AtomicI64::new(cap),
            deposit: deposit.min(cap),
            cap,
        }
    }

    /// A call came in: earn its share.
    pub(crate) fn deposit(&self) {
        let _ = self.balance.fetch_update(Relaxed, Relaxed, |b| {
            (b < self.cap).then(|| b.saturating_add(self.deposit).min(self.cap))
        });
    }

    /// Spends one token for an extra copy; false when the budget is spent.
    pub(crate) fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Relaxed, Relaxed, |b| (b >= MILLI).then(|| b - MILLI))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_full_then_allows_the_ratio() {
        let bucket = HedgeBudget::new(0.1).burst(2).bucket().unwrap();
        assert!(bucket.try_withdraw());
        assert!(bucket.try_withdraw());
        assert!(!bucket.try_withdraw(), "burst spent");
        let mut granted = 0;
        for _ in 0..100 {
            bucket.deposit();
            if bucket.try_withdraw() {
                granted += 1;
            }
        }
        assert_eq!(granted, 10, "10% of 100 calls");
    }

    #[test]
    fn savings_are_capped_by_the_burst() {
        let bucket = HedgeBudget::new(0.5).burst(3).bucket().unwrap();
        for _ in 0..1000 {
            bucket.deposit();
        }
        let spent = (0..10).filter(|_| bucket.try_withdraw()).count();
        assert_eq!(spent, 3);
    }

    #[test]
    fn odd_ratios_do_not_panic() {
        for r in [f64::NAN, -1.0, 0.0, 1e-9, 5.0, f64::INFINITY, f64::MAX] {
            let bucket = HedgeBudget::new(r).bucket().unwrap();
            for _ in 0..20 {
                bucket.deposit();
                bucket.try_withdraw();
            }
        }
        let once = HedgeBudget::new(f64::NAN).burst(0).bucket().unwrap();
        once.deposit();
        assert!(once.try_withdraw(), "the burst is at least one token");
        once.deposit();
        assert!(!once.try_withdraw(), "a zero ratio earns nothing");
        assert!(HedgeBudget::unlimited().bucket().is_none());
    }
}
