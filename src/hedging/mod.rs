//! [`Hedging`]: send extra copies of a slow request; the first acceptable answer wins.
//!
//! A hedged request cuts tail latency: when a request has been pending longer than most
//! requests take, a second copy is sent, and whichever answers first (acceptably) wins. The
//! cost is a few percent of extra requests, bounded by a [`HedgeBudget`].
//!
//! * [`Hedging`]: the decorator, with its builder.
//! * [`AdaptiveDelay`]: the default delay, a latency percentile of recent answers.
//! * [`HedgeBudget`]: the limit on extra copies.
//! * [`Hedge`]: a request extension to opt one request in or out.
//! * [`HedgeReport`]: a response extension saying which copy won and how many were sent.
//! * [`HedgeStats`]: counters, from [`Hedging::stats`].
//! * the `DEFAULT_*` constants: every default, named.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use crate::doer::Execute;
use crate::{Doer, Error, Request, Response};

mod budget;
mod delay;
mod race;
mod report;
mod window;

pub use budget::{DEFAULT_HEDGE_BURST, DEFAULT_HEDGE_RATIO, HedgeBudget};
pub use delay::{
    AdaptiveDelay, DEFAULT_PERCENTILE, DEFAULT_WARM_UP_DELAY, DEFAULT_WARM_UP_SAMPLES,
    DEFAULT_WINDOW_PERIOD, DEFAULT_WINDOW_SAMPLES,
};
pub use report::{Hedge, HedgeReport, HedgeStats};

use budget::TokenBucket;
use delay::Delay;
use race::Race;
use report::{Counters, add};

type Acceptable = Arc<dyn Fn(&Response) -> bool + Send + Sync>;

/// Default number of copies per call, the original included: 2 (the original and one hedge).
pub const DEFAULT_MAX_COPIES: u32 = 2;

/// Default methods hedged without an opt-in: `GET` and `HEAD`, which are safe to send twice.
pub const DEFAULT_METHODS: [Method; 2] = [Method::GET, Method::HEAD];

/// A [`Doer`] that sends extra copies of a slow request and returns the first acceptable answer.
///
/// How a call goes:
///
/// 1. The original is sent. If it has not answered after the *delay*, a copy (a hedge) is sent,
///    and so on one delay apart, up to [`max_copies`](Self::max_copies) copies in all
///    (default [`DEFAULT_MAX_COPIES`], 2: the original and one hedge).
/// 2. The first *acceptable* answer wins: by default a response that is neither 5xx nor 429
///    (see [`acceptable`](Self::acceptable)). A 503 that comes back fast does not beat a 200
///    that is still on its way.
/// 3. A copy that fails (an error or an unacceptable response) does not end the call while
///    another copy is pending, and it sends the next copy at once rather than waiting out the
///    delay. When every copy has failed, the best failure is returned, a response before an
///    error; the response carries a [`HedgeReport`], the error
///    [`attempts`](crate::Error::attempts), so either way says how many copies were sent.
///    Errors that no copy can fix (invalid request, body too large, redirect loop, breaker
///    open, signing) stop further copies.
/// 4. The moment a copy wins, the others are dropped, which cancels them. Copies are futures
///    polled inside the call's own future, never spawned tasks, so nothing outlives the call;
///    dropping the call (a timeout around it, say) cancels every copy too.
///
/// The delay is one of:
///
/// * adaptive (the default): a percentile (p95) of recent latencies over a rotating window,
///   with a warm-up fallback; see [`AdaptiveDelay`];
/// * fixed: [`fixed_delay`](Self::fixed_delay);
/// * none: [`all_at_once`](Self::all_at_once) sends every copy at once (pester's
///   `Concurrency`).
///
/// Safety first: only `GET` and `HEAD` are hedged by default, since a copy is a real second
/// request. Other methods pass through untouched, as one request, unless opted in with
/// [`methods`](Self::methods) or per request with [`Hedge::OptIn`]; any request can opt out
/// with [`Hedge::OptOut`]. Extra copies are limited by a [`HedgeBudget`] (default: 10% of
/// calls), shared by all clones, so a slow backend is not hit with twice its load.
///
/// Bodies: copies are made only of a request whose body can be sent again: a buffered one (the
/// copies share its bytes) or a replayable stream ([`Body::from_file`](crate::Body::from_file),
/// [`Body::replayable`](crate::Body::replayable)), which every copy opens and streams from its
/// start. A one-shot stream passes through as one request. A streamed response
/// ([`ResponseMode::Streamed`](crate::ResponseMode)) wins as soon as its head has arrived and is
/// acceptable; the other copies are dropped, and with them any streamed body they held, so
/// their connections close rather than being read to the end.
///
/// # Settings and shared state
///
/// Builder methods set the settings of the value they are called on. The state is made once,
/// by [`new`](Self::new): the [counters](Self::stats), the budget's balance and the adaptive
/// delay's latency window. Clones share it. Two builder methods make a piece of it afresh,
/// since they change what it is made from: [`budget`](Self::budget) a new balance, and
/// [`adaptive_delay`](Self::adaptive_delay) a new, empty window; clones made before the call
/// keep the old one, clones made after share the new one. So configure first, then clone.
///
/// ```
/// use std::time::Duration;
/// use http_doer::{Body, Doer, DoerExt, hedging::HedgeReport, testing::{ScriptedDoer, response}};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap()
/// #     .block_on(async {
/// let backend = ScriptedDoer::new()
///     .then_after(Duration::from_secs(2), Ok(response(200, "slow"))) // the original stalls
///     .then_after(Duration::from_millis(5), Ok(response(200, "fast"))); // its hedge does not
/// let hedged = backend.clone().hedging().fixed_delay(Duration::from_millis(50));
///
/// let req = http::Request::get("http://api.test/items").body(Body::empty()).unwrap();
/// let resp = hedged.execute(req).await?;
/// let report = *resp.extensions().get::<HedgeReport>().unwrap();
/// assert_eq!(resp.into_body().text().await?, "fast");
/// assert_eq!((report.winner, report.copies_sent), (1, 2));
/// assert_eq!(hedged.stats().hedge_wins, 1);
/// assert_eq!(backend.calls(), 2);
/// # Ok::<(), http_doer::Error>(())
/// # }).unwrap();
/// ```
pub struct Hedging<D> {
    inner: D,
    config: Config,
    counters: Arc<Counters>,
}

/// What every call of one `Hedging` (and its clones) follows.
#[derive(Clone)]
struct Config {
    delay: Delay,
    max_copies: u32,
    acceptable: Acceptable,
    methods: Vec<Method>,
    budget: HedgeBudget,
    bucket: Option<Arc<TokenBucket>>,
}

/// The default acceptability rule: no server error, no rate limit.
fn not_5xx_or_429(resp: &Response) -> bool {
    let status = resp.status();
    !status.is_server_error() && status != http::StatusCode::TOO_MANY_REQUESTS
}

impl<D> Hedging<D> {
    /// Hedges `inner` with the defaults: an [`AdaptiveDelay`] (p95 of the last 200 samples,
    /// 10 ms until 20 are in), [2 copies](DEFAULT_MAX_COPIES), [`GET` and `HEAD`
    /// only](DEFAULT_METHODS), acceptable = neither 5xx nor 429, a budget of
    /// [10%](DEFAULT_HEDGE_RATIO) extra copies.
    pub fn new(inner: D) -> Self {
        let budget = HedgeBudget::default();
        Hedging {
            inner,
            config: Config {
                delay: Delay::adaptive(AdaptiveDelay::new()),
                max_copies: DEFAULT_MAX_COPIES,
                acceptable: Arc::new(not_5xx_or_429),
                methods: DEFAULT_METHODS.to_vec(),
                bucket: budget.bucket().map(Arc::new),
                budget,
            },
            counters: Arc::default(),
        }
    }

    /// Waits the same `delay` before each extra copy, instead of the default
    /// [`AdaptiveDelay`].
    ///
    /// A zero delay is [`all_at_once`](Self::all_at_once).
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Hedging, testing::ScriptedDoer};
    ///
    /// // The service's SLO is 200 ms: a call still pending after it gets a second copy.
    /// let hedged = Hedging::new(ScriptedDoer::new()).fixed_delay(Duration::from_millis(200));
    /// assert_eq!(hedged.current_delay(), Duration::from_millis(200));
    /// ```
    pub fn fixed_delay(mut self, delay: Duration) -> Self {
        self.config.delay = Delay::Fixed(delay);
        self
    }

    /// Waits a percentile of recent latencies before each extra copy (the default, with
    /// [`AdaptiveDelay::new`]'s settings).
    ///
    /// This starts a fresh, empty latency window; clones made before this call keep theirs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Hedging, hedging::AdaptiveDelay, testing::ScriptedDoer};
    ///
    /// // Hedge about 1 % of calls; wait 50 ms until 100 latencies are known.
    /// let adaptive = AdaptiveDelay::new().percentile(0.99).warm_up(100, Duration::from_millis(50));
    /// let hedged = Hedging::new(ScriptedDoer::new()).adaptive_delay(adaptive);
    /// assert_eq!(hedged.current_delay(), Duration::from_millis(50));
    /// ```
    pub fn adaptive_delay(mut self, adaptive: AdaptiveDelay) -> Self {
        self.config.delay = Delay::adaptive(adaptive);
        self
    }

    /// Sends every copy at once, as pester's `Concurrency` does: the fastest wins, at the
    /// price of `max_copies - 1` extra requests per call.
    ///
    /// The budget still applies (10% of calls by default), so pair this with
    /// [`HedgeBudget::unlimited`] or a ratio of `max_copies - 1` to race every call.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, Hedging, hedging::{HedgeBudget, HedgeReport}};
    /// use http_doer::testing::{ScriptedDoer, response};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
    /// let replicas = ScriptedDoer::new()
    ///     .then_after(Duration::from_millis(80), Ok(response(200, "a")))
    ///     .then_after(Duration::from_millis(20), Ok(response(200, "b")))
    ///     .then_after(Duration::from_millis(50), Ok(response(200, "c")));
    /// let racing = Hedging::new(replicas)
    ///     .all_at_once()
    ///     .max_copies(3)
    ///     .budget(HedgeBudget::unlimited());
    /// let req = http::Request::get("http://api.test/").body(Body::empty()).unwrap();
    /// let resp = racing.execute(req).await.unwrap();
    /// assert_eq!(resp.extensions().get::<HedgeReport>().unwrap().copies_sent, 3);
    /// assert_eq!(resp.into_body().text().await.unwrap(), "b");
    /// # });
    /// ```
    pub fn all_at_once(self) -> Self {
        self.fixed_delay(Duration::ZERO)
    }

    /// The most copies per call, the original included (default [`DEFAULT_MAX_COPIES`], 2; at
    /// least 1, which turns hedging off while keeping reports and counters).
    ///
    /// ```
    /// use http_doer::{Hedging, testing::ScriptedDoer};
    ///
    /// // Up to two hedges for a call whose first copy and first hedge are both slow.
    /// let hedged = Hedging::new(ScriptedDoer::new()).max_copies(3);
    /// # let _ = hedged;
    /// ```
    pub fn max_copies(mut self, copies: u32) -> Self {
        self.config.max_copies = copies.max(1);
        self
    }

    /// Which responses win a call: `accept` returns true for an acceptable one.
    ///
    /// The default accepts anything but 5xx and 429. Errors are never acceptable.
    ///
    /// ```
    /// use http_doer::{Hedging, testing::ScriptedDoer};
    ///
    /// // Only a success wins; a 404 from one replica waits for the others.
    /// let hedged = Hedging::new(ScriptedDoer::new()).acceptable(|resp| resp.status().is_success());
    /// # let _ = hedged;
    /// ```
    pub fn acceptable<F>(mut self, accept: F) -> Self
    where
        F: Fn(&Response) -> bool + Send + Sync + 'static,
    {
        self.config.acceptable = Arc::new(accept);
        self
    }

    /// The methods hedged without an opt-in (default [`DEFAULT_METHODS`], `GET` and `HEAD`).
    ///
    /// Add a method only when sending it twice is harmless: `PUT` and `DELETE` are idempotent
    /// by definition, but a server may still count both copies.
    ///
    /// ```
    /// use http::Method;
    /// use http_doer::{Hedging, testing::ScriptedDoer};
    ///
    /// // This API's PUTs are idempotent and cheap: hedge them too.
    /// let hedged = Hedging::new(ScriptedDoer::new()).methods([Method::GET, Method::HEAD, Method::PUT]);
    /// # let _ = hedged;
    /// ```
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.config.methods = methods.into_iter().collect();
        self
    }

    /// Limits extra copies (default [`HedgeBudget::default()`]: [10%](DEFAULT_HEDGE_RATIO) of
    /// calls, a burst of [10](DEFAULT_HEDGE_BURST)). This starts a fresh balance: clones made
    /// before this call keep the old one, clones made after share the new one.
    ///
    /// ```
    /// use http_doer::{Hedging, hedging::HedgeBudget, testing::ScriptedDoer};
    ///
    /// // A backend that cannot take more than 2 % extra load.
    /// let hedged = Hedging::new(ScriptedDoer::new()).budget(HedgeBudget::new(0.02));
    /// # let _ = hedged;
    /// ```
    pub fn budget(mut self, budget: HedgeBudget) -> Self {
        self.config.bucket = budget.bucket().map(Arc::new);
        self.config.budget = budget;
        self
    }

    /// A snapshot of the counters, shared by all clones.
    pub fn stats(&self) -> HedgeStats {
        self.counters.snapshot()
    }

    /// The delay a call starting now would wait before its first hedge.
    pub fn current_delay(&self) -> Duration {
        self.config.delay.current()
    }

    /// The wrapped Doer.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }

    /// The wrapped Doer, mutably.
    pub fn get_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Unwraps the inner Doer.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// The wrapped Doer.
    #[deprecated(note = "use `get_ref`, the name every decorator uses")]
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Whether this request may be sent more than once.
    fn hedgeable(&self, req: &Request) -> bool {
        let allowed = match req.extensions().get::<Hedge>() {
            Some(Hedge::OptOut) => false,
            Some(Hedge::OptIn) => true,
            None => self.config.methods.contains(req.method()),
        };
        // A body that is not buffered could not be sent twice.
        allowed && req.body().is_replayable()
    }
}

// Written out rather than with `#[async_trait]`, whose wrapper future would hold the request
// twice (once captured, once as a local), making every call's allocation larger.
impl<D: Doer> Doer for Hedging<D> {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.call(req))
    }
}

impl<D: Doer> Hedging<D> {
    async fn call(&self, mut req: Request) -> Result<Response, Error> {
        add(&self.counters.calls, 1);
        crate::telemetry::count_sends(&mut req);
        if !self.hedgeable(&req) {
            add(&self.counters.passed_through, 1);
            add(&self.counters.copies_sent, 1);
            return self.inner.execute(req).await;
        }
        if let Some(bucket) = &self.config.bucket {
            bucket.deposit();
        }
        // Polled where it lies: the race (the request among it) is not moved again.
        let mut race = Race::new(&self.inner, &self.config, &self.counters, req);
        std::future::poll_fn(|cx| race.poll_race(cx)).await
    }
}

impl<D: Clone> Clone for Hedging<D> {
    fn clone(&self) -> Self {
        Hedging {
            inner: self.inner.clone(),
            config: self.config.clone(),
            counters: self.counters.clone(),
        }
    }
}

// The acceptability rule is a closure: it is left out (`..`).
impl<D: fmt::Debug> fmt::Debug for Hedging<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedging")
            .field("inner", &self.inner)
            .field("delay", &self.config.delay)
            .field("max_copies", &self.config.max_copies)
            .field("methods", &self.config.methods)
            .field("budget", &self.config.budget)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
