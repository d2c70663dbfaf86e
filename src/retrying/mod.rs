//! [`Retrying`]: resends a failed request after a backoff, only when that is safe, within one
//! deadline and a retry budget.
//!
//! The parts are plain values that can be used and tested alone: [`Backoff`] (with [`Jitter`])
//! yields the waits, [`default_classifier`] and [`Decision`] say what is retried,
//! [`retry_after::parse`] reads the server's `Retry-After`, and [`RetryBudget`] caps retries
//! at a share of recent calls. The timeouts run on the same code as [`Timeout`](crate::Timeout).

mod backoff;
mod budget;
mod call;
mod classify;
pub mod retry_after;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use backoff::{Backoff, Delays, Jitter};
pub use budget::{DEFAULT_BUDGET_MIN_PER_SEC, DEFAULT_BUDGET_RATIO, RetryBudget};
pub use classify::{Decision, IDEMPOTENCY_KEY, default_classifier, is_idempotent};

use crate::seeds::Seeds;
use crate::{Error, Request, Response};

/// Retries after the first attempt, unless set otherwise: 3 (so at most 4 attempts).
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// The longest wait between two attempts, unless set otherwise: 30 s. It caps both the backoff
/// and the server's `Retry-After`.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);

/// The first delay of the default backoff: 1 s, doubled each retry, with [`DEFAULT_JITTER`].
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(1);

/// The jitter of the default backoff: [`Jitter::Full`], so clients that failed together do
/// not retry together.
pub const DEFAULT_JITTER: Jitter = Jitter::Full;

/// Whether a server's `Retry-After` is honoured, unless set otherwise: yes.
pub const DEFAULT_HONOR_RETRY_AFTER: bool = true;

/// How many attempts a [`Retrying`] made: inserted into the extensions of every response it
/// returns (1 when the first attempt was kept). Errors carry the same count in
/// [`Error::attempts`]. It is the core [`crate::Attempts`], so any layer above (such as
/// [`Logging`](crate::Logging)) reads it without knowing about retries.
pub use crate::Attempts;

/// Request extension: the most retries for this one request, overriding
/// [`Retrying::max_retries`]. `MaxRetries(0)` sends it once.
///
/// ```
/// use http_doer::{Body, retrying::MaxRetries};
///
/// let mut req = http::Request::get("https://api.test/poll").body(Body::empty()).unwrap();
/// req.extensions_mut().insert(MaxRetries(0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxRetries(pub u32);

type ClassifyFn = dyn Fn(&Request, u32, Result<&Response, &Error>) -> Decision + Send + Sync;

/// A [`Doer`](crate::Doer) that sends a request again when an attempt fails in a way worth
/// retrying.
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | [`max_retries`](Self::max_retries) | 3 retries after the first attempt ([`DEFAULT_MAX_RETRIES`]) |
/// | [`backoff`](Self::backoff) | exponential from 1 s ([`DEFAULT_BASE_DELAY`]), doubling, full jitter ([`DEFAULT_JITTER`]), capped at 30 s |
/// | [`max_delay`](Self::max_delay) | 30 s, for backoff and `Retry-After` alike ([`DEFAULT_MAX_DELAY`]) |
/// | what is retried | [`default_classifier`]: connect errors for any method; timeouts, resets, body errors and 408/429/500/502/503/504 only for idempotent methods or with `Idempotency-Key` |
/// | [`honor_retry_after`](Self::honor_retry_after) | yes, on 429 and 503 (seconds or HTTP-date), capped by `max_delay` ([`DEFAULT_HONOR_RETRY_AFTER`]) |
/// | [`attempt_timeout`](Self::attempt_timeout) | none (the backend's own timeout applies) |
/// | [`total_timeout`](Self::total_timeout) | none |
/// | [`budget`](Self::budget) | [`RetryBudget::default`]: retries at most 20 % of the first attempts counted in the current one-second window, at least 10 a window ([`DEFAULT_BUDGET_RATIO`], [`DEFAULT_BUDGET_MIN_PER_SEC`]), shared by clones |
///
/// # Behaviour
///
/// * **Outcome.** When no retry is left (attempts, budget or time), the last outcome is
///   returned as it is: a final 503 is an `Ok` response, not an error. Every response carries
///   [`Attempts`] in its extensions and every error [`Error::attempts`].
/// * **Same bytes.** Each attempt sends a copy of the original request (method, URI, headers,
///   extensions, and the same body bytes, shared, not copied). A replayable stream
///   ([`Body::from_file`](crate::Body::from_file), [`Body::replayable`](crate::Body::replayable))
///   is streamed again from its start by each attempt.
/// * **One-shot bodies** ([`Body::from_stream`](crate::Body::from_stream) and the like) are
///   sent once: an attempt that fails before the backend took a byte of the body (a connect
///   error) is retried as usual, but once any of it was taken no retry follows, whatever the
///   classifier says. The attempt's response is returned as it is; its error keeps its kind
///   and says "not retried: the one-shot request body was already sent".
/// * **Dropped, not read.** The response of an attempt that will be retried is dropped without
///   reading it: a streamed one closes its connection.
/// * **One deadline.** [`total_timeout`](Self::total_timeout) covers every attempt and every
///   wait. An attempt still running when it passes is dropped and the call fails at once with
///   [`ErrorKind::Timeout`](crate::ErrorKind::Timeout); a wait that would end at or after it
///   is not started, and the call returns the last outcome at once instead of sleeping into
///   the deadline. The clock starts the first time the call has to wait for anything, so a
///   call answered at once never reads it. Both timeouts run on [`Timeout`](crate::Timeout)'s
///   code and follow its rule: a streamed response's body, read after the call has returned,
///   is not covered (the backend's own timeout is).
/// * **Cancellation.** Everything runs inside the caller's future: no task is spawned, so
///   dropping the future stops the attempt in flight or the wait at once.
/// * **Clones** share the budget and the random sequence; each clone's settings are its own.
///
/// ```
/// use std::time::Duration;
/// use http_doer::{Body, Doer, Retrying, retrying::{Attempts, Backoff}, testing::ScriptedDoer};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let backend = ScriptedDoer::new().then_status(503).then_status(502).then_status(200);
/// let doer = Retrying::new(backend.clone())
///     .backoff(Backoff::exponential(Duration::from_millis(100)))
///     .total_timeout(Duration::from_secs(10));
///
/// let req = http::Request::get("https://api.test/items").body(Body::empty()).unwrap();
/// let resp = doer.execute(req).await.unwrap();
/// assert_eq!(resp.status(), 200);
/// assert_eq!(resp.extensions().get::<Attempts>(), Some(&Attempts(3)));
/// assert_eq!(backend.calls(), 3);
/// # });
/// ```
#[derive(Clone)]
pub struct Retrying<D> {
    inner: D,
    max_retries: u32,
    backoff: Backoff,
    max_delay: Duration,
    attempt_timeout: Option<Duration>,
    total_timeout: Option<Duration>,
    honor_retry_after: bool,
    classifier: Option<Arc<ClassifyFn>>,
    budget: Option<RetryBudget>,
    seeds: Arc<Seeds>,
}

impl<D> Retrying<D> {
    /// Wraps `inner` with the defaults listed above.
    pub fn new(inner: D) -> Self {
        Retrying {
            inner,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff: Backoff::exponential(DEFAULT_BASE_DELAY)
                .max_delay(DEFAULT_MAX_DELAY)
                .jitter(DEFAULT_JITTER),
            max_delay: DEFAULT_MAX_DELAY,
            attempt_timeout: None,
            total_timeout: None,
            honor_retry_after: DEFAULT_HONOR_RETRY_AFTER,
            classifier: None,
            budget: Some(RetryBudget::default()),
            seeds: Arc::new(Seeds::new(rand::random())),
        }
    }

    /// How many times to retry after the first attempt: `max_retries(2)` sends a request at
    /// most three times, `max_retries(0)` once. (pester's `MaxRetries` counts attempts; this
    /// counts retries.) A request can override it with a [`MaxRetries`] extension.
    ///
    /// ```
    /// use http_doer::{Body, Doer, Retrying, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let backend = ScriptedDoer::new().then_status(503).then_status(503).then_status(200);
    /// let doer = Retrying::new(backend.clone()).max_retries(1);
    /// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// assert_eq!(doer.execute(req).await.unwrap().status(), 503, "the second 503, kept");
    /// assert_eq!(backend.calls(), 2);
    /// # });
    /// ```
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The waits between attempts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, Retrying, retrying::Backoff, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let backend = ScriptedDoer::new().then_status(503).then_status(200);
    /// let doer = Retrying::new(backend).backoff(Backoff::constant(Duration::from_millis(250)));
    /// let start = tokio::time::Instant::now();
    /// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// assert_eq!(doer.execute(req).await.unwrap().status(), 200);
    /// assert_eq!(start.elapsed(), Duration::from_millis(250));
    /// # });
    /// ```
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest wait between two attempts, whether it comes from the backoff, a
    /// `Retry-After` header or a classifier's [`Decision::RetryAfter`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, Retrying, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let busy = http::Response::builder().status(503).header("retry-after", "120");
    /// let backend = ScriptedDoer::new().then(Ok(busy.body(Body::empty()).unwrap())).then_status(200);
    /// let doer = Retrying::new(backend).max_delay(Duration::from_secs(5));
    /// let start = tokio::time::Instant::now();
    /// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// assert_eq!(doer.execute(req).await.unwrap().status(), 200);
    /// assert_eq!(start.elapsed(), Duration::from_secs(5), "not the 120 s asked for");
    /// # });
    /// ```
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// A timeout for each attempt (`None`: none, the default). An attempt that runs out fails
    /// with [`ErrorKind::Timeout`](crate::ErrorKind::Timeout), which is then classified like
    /// any other timeout (retried for idempotent requests).
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, Retrying, retrying::{Attempts, Backoff}};
    /// use http_doer::testing::{ScriptedDoer, response};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let backend = ScriptedDoer::new()
    ///     .then_after(Duration::from_secs(60), Ok(response(200, "stuck")))
    ///     .then_status(200);
    /// let doer = Retrying::new(backend)
    ///     .backoff(Backoff::constant(Duration::ZERO))
    ///     .attempt_timeout(Duration::from_secs(2));
    /// let start = tokio::time::Instant::now();
    /// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// let resp = doer.execute(req).await.unwrap();
    /// assert_eq!(resp.extensions().get::<Attempts>(), Some(&Attempts(2)));
    /// assert_eq!(start.elapsed(), Duration::from_secs(2));
    /// # });
    /// ```
    pub fn attempt_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.attempt_timeout = timeout.into();
        self
    }

    /// One deadline for the whole call, every attempt and every wait (`None`: none, the
    /// default). See the type's docs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, Retrying, testing::{ScriptedDoer, response}};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let backend = ScriptedDoer::new().then_after(Duration::from_secs(60), Ok(response(200, "")));
    /// let doer = Retrying::new(backend).total_timeout(Duration::from_secs(10));
    /// let start = tokio::time::Instant::now();
    /// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// let err = doer.execute(req).await.unwrap_err();
    /// assert!(err.is_timeout());
    /// assert_eq!(start.elapsed(), Duration::from_secs(10));
    /// # });
    /// ```
    pub fn total_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.total_timeout = timeout.into();
        self
    }

    /// Whether to wait as the server's `Retry-After` says on a 429 or 503 that is retried
    /// (true by default). A missing or malformed header falls back to the backoff.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, Retrying, retrying::Backoff, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let busy = http::Response::builder().status(429).header("retry-after", "20");
    /// let backend = ScriptedDoer::new().then(Ok(busy.body(Body::empty()).unwrap())).then_status(200);
    /// let doer = Retrying::new(backend)
    ///     .backoff(Backoff::constant(Duration::from_secs(1)))
    ///     .honor_retry_after(false);
    /// let start = tokio::time::Instant::now();
    /// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// assert_eq!(doer.execute(req).await.unwrap().status(), 200);
    /// assert_eq!(start.elapsed(), Duration::from_secs(1), "the backoff, not the 20 s");
    /// # });
    /// ```
    pub fn honor_retry_after(mut self, yes: bool) -> Self {
        self.honor_retry_after = yes;
        self
    }

    /// Decides, after each attempt that could still be retried, whether to retry: it gets the
    /// request, the attempt number (1 for the first) and the response or error.
    ///
    /// It replaces [`default_classifier`] and is trusted: a classifier that retries a POST
    /// makes the POST be sent again. Call `default_classifier` for the cases it leaves alone.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Retrying, retrying::{Decision, default_classifier}, testing::ScriptedDoer};
    ///
    /// // Also retry 409 Conflict on GET, after 250 ms.
    /// let doer = Retrying::new(ScriptedDoer::new()).classifier(|req, attempt, outcome| {
    ///     match outcome {
    ///         Ok(resp) if resp.status() == 409 && req.method() == "GET" => {
    ///             Decision::RetryAfter(Duration::from_millis(250))
    ///         }
    ///         _ => default_classifier(req, attempt, outcome),
    ///     }
    /// });
    /// # drop(doer);
    /// ```
    pub fn classifier<F>(mut self, classify: F) -> Self
    where
        F: Fn(&Request, u32, Result<&Response, &Error>) -> Decision + Send + Sync + 'static,
    {
        self.classifier = Some(Arc::new(classify));
        self
    }

    /// Uses `budget` to cap retries; pass the same budget (it is shared by clones) to several
    /// decorators to give them one cap.
    ///
    /// ```
    /// use http_doer::{Body, Doer, Retrying, retrying::RetryBudget, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// // No retry at all: no share of first attempts, no floor.
    /// let backend = ScriptedDoer::new().then_status(503).then_status(200);
    /// let doer = Retrying::new(backend.clone()).budget(RetryBudget::new(0.0, 0));
    /// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// assert_eq!(doer.execute(req).await.unwrap().status(), 503);
    /// assert_eq!(backend.calls(), 1);
    /// # });
    /// ```
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Removes the retry budget: every failed attempt may be retried up to `max_retries`
    /// times, multiplying the load on a failing server by up to `1 + max_retries`.
    ///
    /// ```
    /// use http_doer::{Retrying, testing::ScriptedDoer};
    ///
    /// let doer = Retrying::new(ScriptedDoer::new()).no_budget();
    /// assert!(doer.retry_budget().is_none());
    /// ```
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// Fixes the seed of the random jitter, so that the waits are the same on every run.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, Retrying, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let mut waits = Vec::new();
    /// for _ in 0..2 {
    ///     let backend = ScriptedDoer::new().then_status(503).then_status(200);
    ///     let doer = Retrying::new(backend).seed(7);
    ///     let start = tokio::time::Instant::now();
    ///     let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    ///     doer.execute(req).await.unwrap();
    ///     waits.push(start.elapsed());
    /// }
    /// assert_eq!(waits[0], waits[1]);
    /// # });
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seeds = Arc::new(Seeds::new(seed));
        self
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

    /// The retry budget, if any.
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }
}

impl<D: fmt::Debug> fmt::Debug for Retrying<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retrying")
            .field("inner", &self.inner)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("max_delay", &self.max_delay)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("honor_retry_after", &self.honor_retry_after)
            .field("custom_classifier", &self.classifier.is_some())
            .field("budget", &self.budget)
            .finish()
    }
}
