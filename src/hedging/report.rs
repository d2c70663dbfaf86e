//! Per-request steering ([`Hedge`]), per-response reports ([`HedgeReport`]) and counters
//! ([`HedgeStats`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A request extension that overrides, for one request, whether it may be hedged.
///
/// ```
/// use http_doer::{Body, hedging::Hedge};
///
/// // This POST is safe to send twice (say, a search): let it be hedged.
/// let mut search = http::Request::post("https://api.test/search").body(Body::from("q=x")).unwrap();
/// search.extensions_mut().insert(Hedge::OptIn);
///
/// // This GET must reach the server once only (it counts views): never hedge it.
/// let mut view = http::Request::get("https://api.test/count-view").body(Body::empty()).unwrap();
/// view.extensions_mut().insert(Hedge::OptOut);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hedge {
    /// Hedge this request even if its method is not in the decorator's list.
    OptIn,
    /// Never hedge this request: it passes through untouched, as one copy.
    OptOut,
}

/// A response extension: what hedging did for the call that produced this response.
///
/// Present on every response of a call that was eligible for hedging, the winner's or, when
/// every copy failed, the failure that was returned. Requests that passed through untouched
/// (a method that is not hedged, [`Hedge::OptOut`]) get no report.
///
/// ```
/// use http_doer::{Body, Doer, Hedging, hedging::HedgeReport, testing::ScriptedDoer};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let hedged = Hedging::new(ScriptedDoer::new().then_status(200));
/// let req = http::Request::get("http://api.test/").body(Body::empty()).unwrap();
/// let resp = hedged.execute(req).await.unwrap();
/// let report = resp.extensions().get::<HedgeReport>().unwrap();
/// assert_eq!((report.copies_sent, report.winner), (1, 0));
/// # });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgeReport {
    /// How many copies were sent, the original included.
    pub copies_sent: u32,
    /// Which copy this response came from: 0 for the original, 1 for the first hedge, ...
    pub winner: u32,
    /// The delay this call waited between copies (zero when all were sent at once).
    pub delay: Duration,
}

impl HedgeReport {
    /// Whether a hedge, not the original, brought this response.
    pub fn hedge_won(&self) -> bool {
        self.winner > 0
    }
}

/// Counters of a [`Hedging`](crate::Hedging) and all its clones, since it was built: a
/// snapshot from [`Hedging::stats`](crate::Hedging::stats).
///
/// `copies_sent - calls` is the number of extra requests hedging caused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgeStats {
    /// Calls made through the decorator, hedged or not.
    pub calls: u64,
    /// Calls passed through untouched: a method that is not hedged, or [`Hedge::OptOut`].
    pub passed_through: u64,
    /// Requests sent to the inner Doer, every copy and every passed-through call included.
    pub copies_sent: u64,
    /// Calls won by the original request.
    pub original_wins: u64,
    /// Calls won by a hedge.
    pub hedge_wins: u64,
    /// Copies dropped while pending because another copy won or the caller went away.
    pub cancelled_copies: u64,
    /// Copies that answered with an error or an unacceptable response.
    pub failed_copies: u64,
    /// Hedges the budget refused.
    pub budget_denied: u64,
    /// Calls the caller dropped before an answer.
    pub caller_cancelled: u64,
}

/// The live counters behind [`HedgeStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) calls: AtomicU64,
    pub(crate) passed_through: AtomicU64,
    pub(crate) copies_sent: AtomicU64,
    pub(crate) original_wins: AtomicU64,
    pub(crate) hedge_wins: AtomicU64,
    pub(crate) cancelled_copies: AtomicU64,
    pub(crate) failed_copies: AtomicU64,
    pub(crate) budget_denied: AtomicU64,
    pub(crate) caller_cancelled: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> HedgeStats {
        HedgeStats {
            calls: self.calls.load(Relaxed),
            passed_through: self.passed_through.load(Relaxed),
            copies_sent: self.copies_sent.load(Relaxed),
            original_wins: self.original_wins.load(Relaxed),
            hedge_wins: self.hedge_wins.load(Relaxed),
            cancelled_copies: self.cancelled_copies.load(Relaxed),
            failed_copies: self.failed_copies.load(Relaxed),
            budget_denied: self.budget_denied.load(Relaxed),
            caller_cancelled: self.caller_cancelled.load(Relaxed),
        }
    }
}
