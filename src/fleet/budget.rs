//! The fleet retry budget: each replica's counts, exchanged every 100 ms, so that retries
//! across the fleet stay within the budget's share of the fleet's first attempts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;

use super::BudgetStore;
use crate::retrying::RetryBudget;

/// How often [`share_budget`] exchanges counts: 100 ms. Each exchange is one round trip per
/// replica; between two, a replica decides on its own counts and the fleet's last ones.
pub const DEFAULT_BUDGET_EXCHANGE: Duration = Duration::from_millis(100);

/// A replica's (or the fleet's) counts over the last second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetCounts {
    /// First attempts.
    pub firsts: u64,
    /// Retries granted.
    pub retries: u64,
}

/// Exchanges the counts of `budget` (named `name` in `store`, the same name on every replica)
/// every [`DEFAULT_BUDGET_EXCHANGE`], on a task of its own, until every clone of `budget` is
/// dropped. In between, `budget` grants a retry only if the retries of the whole fleet stay
/// within its ratio of the whole fleet's first attempts (and its floor is the fleet's, not each
/// replica's): retries, and first attempts, take no network call.
///
/// When the store cannot answer (its backend is down or slow), the budget counts this replica
/// alone, as if unshared, until the exchange works again. With [`RedisFleet`](super::RedisFleet)
/// each replica stamps its counts with its own wall clock: replicas whose clocks disagree by
/// more than 2 s leave each other out of their counts.
///
/// # Panics
///
/// Outside a tokio runtime (it spawns the task).
///
/// ```
/// use std::sync::Arc;
/// use http_doer::{Retrying, fleet::{BudgetCounts, BudgetStore, share_budget}, retrying::RetryBudget};
///
/// # #[derive(Debug)] struct Nobody;
/// # #[async_trait::async_trait]
/// # impl BudgetStore for Nobody {
/// #     async fn exchange(&self, _: &str, _: BudgetCounts) -> Option<BudgetCounts> { None }
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let store: Arc<dyn BudgetStore> = Arc::new(Nobody); // a `RedisFleet`, in a fleet
/// let budget = RetryBudget::default();
/// share_budget(&budget, store, "api.example");
/// let retrying = Retrying::new(http_doer::testing::ScriptedDoer::new()).budget(budget);
/// # let _ = retrying;
/// # });
/// ```
pub fn share_budget(budget: &RetryBudget, store: Arc<dyn BudgetStore>, name: &str) {
    let weak = budget.downgrade();
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(DEFAULT_BUDGET_EXCHANGE);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let slots = (Duration::from_secs(1).as_millis() / DEFAULT_BUDGET_EXCHANGE.as_millis())
            .max(1) as usize;
        let mut recent: VecDeque<BudgetCounts> = VecDeque::with_capacity(slots + 1);
        let mut last = BudgetCounts::default();
        loop {
            tick.tick().await;
            let Some(budget) = weak.upgrade() else { return };
            let now = budget.totals();
            // Totals only grow; one read that lags a window roll catches up at the next.
            let delta = BudgetCounts {
                firsts: now.firsts.saturating_sub(last.firsts),
                retries: now.retries.saturating_sub(last.retries),
            };
            last.firsts = last.firsts.max(now.firsts);
            last.retries = last.retries.max(now.retries);
            recent.push_back(delta);
            while recent.len() > slots {
                recent.pop_front();
            }
            let mine = recent
                .iter()
                .fold(BudgetCounts::default(), |a, c| BudgetCounts {
                    firsts: a.firsts + c.firsts,
                    retries: a.retries + c.retries,
                });
            drop(budget);
            let others = store.exchange(&name, mine).await;
            let Some(budget) = weak.upgrade() else { return };
            budget.set_fleet(others);
        }
    });
}
