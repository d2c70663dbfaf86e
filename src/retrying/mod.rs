//! [`Retrying`]: resends a failed request after a backoff, only when that is safe, within one
//! deadline and a retry budget.
//!
//! The parts are plain values that can be used and tested alone: [`Backoff`] (with [`Jitter`])
//! yields the waits, [`default_classifier`] and [`Decision`] say what is retried,
//! [`retry_after::parse`] reads the server's `Retry-After`, and [`RetryBudget`] caps retries
//! at a share of recent calls.

mod backoff;
mod budget;
mod classify;
pub mod retry_after;

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use backoff::{Backoff, Delays, Jitter};
pub use budget::RetryBudget;
pub use classify::{Decision, IDEMPOTENCY_KEY, default_classifier, is_idempotent};

use crate::doer::copy_request;
use crate::{Doer, Error, ErrorKind, Request, Response};

/// Retries after the first attempt, unless set otherwise: 3 (so at most 4 attempts).
pub const DEFAULT_MAX_RETRIES: u32 = 3;

/// The longest wait between two attempts, unless set otherwise: 30 s. It caps both the backoff
/// and the server's `Retry-After`.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);

/// The first delay of the default backoff: 1 s, doubled each retry, with full jitter.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(1);

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

/// A [`Doer`] that sends a request again when an attempt fails in a way worth retrying.
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | [`max_retries`](Self::max_retries) | 3 retries after the first attempt ([`DEFAULT_MAX_RETRIES`]) |
/// | [`backoff`](Self::backoff) | exponential from 1 s, doubling, full jitter, capped at 30 s |
/// | [`max_delay`](Self::max_delay) | 30 s, for backoff and `Retry-After` alike ([`DEFAULT_MAX_DELAY`]) |
/// | what is retried | [`default_classifier`]: connect errors for any method; timeouts, resets, body errors and 408/429/500/502/503/504 only for idempotent methods or with `Idempotency-Key` |
/// | `Retry-After` | honoured on 429 and 503 (seconds or HTTP-date), capped by `max_delay` |
/// | [`attempt_timeout`](Self::attempt_timeout) | none (the backend's own timeout applies) |
/// | [`total_timeout`](Self::total_timeout) | none |
/// | [`budget`](Self::budget) | [`RetryBudget::default`]: retries at most 20 % of the first attempts counted in the current one-second window (at least 10 a window), shared by clones |
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
///   [`ErrorKind::Timeout`]; a wait that would end at or after it is not started, and the call
///   returns the last outcome at once instead of sleeping into the deadline. The clock starts
///   the first time the call has to wait for anything, so a call answered at once never reads
///   it.
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

/// Seeds for the jitter of each call: a base and a counter shared by clones, so a fixed seed
/// gives a fixed sequence of calls' waits without a lock.
struct Seeds {
    base: u64,
    next: AtomicU64,
}

impl Seeds {
    fn new(base: u64) -> Arc<Self> {
        Arc::new(Seeds {
            base,
            next: AtomicU64::new(0),
        })
    }

    fn take(&self) -> u64 {
        self.base.wrapping_add(self.next.fetch_add(1, Relaxed))
    }
}

impl<D> Retrying<D> {
    /// Wraps `inner` with the defaults listed above.
    pub fn new(inner: D) -> Self {
        Retrying {
            inner,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff: Backoff::exponential(DEFAULT_BASE_DELAY)
                .max_delay(DEFAULT_MAX_DELAY)
                .jitter(Jitter::Full),
            max_delay: DEFAULT_MAX_DELAY,
            attempt_timeout: None,
            total_timeout: None,
            honor_retry_after: true,
            classifier: None,
            budget: Some(RetryBudget::default()),
            seeds: Seeds::new(rand::random()),
        }
    }

    /// How many times to retry after the first attempt: `max_retries(2)` sends a request at
    /// most three times, `max_retries(0)` once. (pester's `MaxRetries` counts attempts; this
    /// counts retries.) A request can override it with a [`MaxRetries`] extension.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The waits between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest wait between two attempts, whether it comes from the backoff, a
    /// `Retry-After` header or a classifier's [`Decision::RetryAfter`].
    pub fn max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// A timeout for each attempt. An attempt that runs out fails with
    /// [`ErrorKind::Timeout`], which is then classified like any other timeout (retried for
    /// idempotent requests).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// One deadline for the whole call: every attempt and every wait. See the type's docs.
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = Some(timeout);
        self
    }

    /// Whether to wait as the server's `Retry-After` says on a 429 or 503 that is retried
    /// (true by default). A missing or malformed header falls back to the backoff.
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
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Removes the retry budget: every failed attempt may be retried up to `max_retries`
    /// times, multiplying the load on a failing server by up to `1 + max_retries`.
    pub fn no_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// Fixes the seed of the random jitter, so that the waits are the same on every run.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seeds = Seeds::new(seed);
        self
    }

    /// The wrapped Doer.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }

    /// The retry budget, if any.
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// Unwraps the inner Doer.
    pub fn into_inner(self) -> D {
        self.inner
    }
}

type Attempt<'a> = Pin<Box<dyn Future<Output = Result<Response, Error>> + Send + 'a>>;

/// An attempt handed to the inner Doer, and the URI to name in a timeout's error.
struct Started<'a> {
    fut: Attempt<'a>,
    uri: Option<http::Uri>,
}

impl<D: Doer> Retrying<D> {
    // The first attempt runs inline and most calls end with it, so this future is kept small
    // (a large future costs a large allocation and a large copy on every call): the retry loop
    // and the timers live in futures boxed only when needed.
    async fn call(&self, req: Request) -> Result<Response, Error> {
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        let max_retries = req
            .extensions()
            .get::<MaxRetries>()
            .map_or(self.max_retries, |m| m.0);
        if self.attempt_timeout.is_some() || self.total_timeout.is_some() {
            return Box::pin(self.call_timed(req, max_retries)).await;
        }
        if max_retries == 0 {
            return finish(self.inner.execute(req).await, 1);
        }
        let outcome = self.inner.execute(copy_request(&req)).await;
        match self.classify(&req, 1, &outcome) {
            Decision::Stop => finish(outcome, 1),
            decision => Box::pin(self.retry(req, outcome, decision, max_retries, None)).await,
        }
    }

    /// [`call`](Self::call) when a timeout is set.
    async fn call_timed(&self, req: Request, max_retries: u32) -> Result<Response, Error> {
        let mut clock: Option<Instant> = None;
        if max_retries == 0 {
            let (outcome, _) = self.wait(self.start(req), 1, &mut clock).await;
            return finish(outcome, 1);
        }
        let (outcome, deadline_passed) = self
            .wait(self.start(copy_request(&req)), 1, &mut clock)
            .await;
        if deadline_passed {
            return finish(outcome, 1);
        }
        match self.classify(&req, 1, &outcome) {
            Decision::Stop => finish(outcome, 1),
            decision => Box::pin(self.retry(req, outcome, decision, max_retries, clock)).await,
        }
    }

    /// The retry loop, entered after attempt 1 produced `outcome` and `decision` said retry.
    async fn retry(
        &self,
        req: Request,
        mut outcome: Result<Response, Error>,
        mut decision: Decision,
        max_retries: u32,
        mut clock: Option<Instant>,
    ) -> Result<Response, Error> {
        let mut delays: Option<Delays> = None;
        let mut attempt: u32 = 1;
        loop {
            if !req.body().can_resend() {
                tracing::debug!(attempt, "not retrying: the one-shot request body was sent");
                return finish(outcome.map_err(not_resent), attempt);
            }
            // Retry n always takes the n-th backoff delay, even when another wait is used, so
            // the backoff keeps growing with the number of retries.
            let backoff = delays
                .get_or_insert_with(|| self.backoff.delays(self.seeds.take()))
                .next()
                .unwrap_or_default();
            let wait = match decision {
                Decision::RetryAfter(wait) => wait,
                _ => self.server_wait(&outcome).unwrap_or(backoff),
            }
            .min(self.max_delay);
            if self.past_deadline(wait, &mut clock)
                || self.budget.as_ref().is_some_and(|b| !b.try_withdraw())
            {
                return finish(outcome, attempt);
            }
            match &outcome {
                Ok(resp) => {
                    tracing::debug!(attempt, status = resp.status().as_u16(), ?wait, "retrying")
                }
                Err(err) => tracing::debug!(attempt, error = %err.kind(), ?wait, "retrying"),
            }
            // Free the failed response before waiting.
            drop(outcome);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            attempt = attempt.saturating_add(1);
            if attempt > max_retries {
                // No retry can follow, so the request itself goes, without a copy.
                let (last, _) = self.wait(self.start(req), attempt, &mut clock).await;
                return finish(last, attempt);
            }
            let (next, deadline_passed) = self
                .wait(self.start(copy_request(&req)), attempt, &mut clock)
                .await;
            decision = if deadline_passed {
                Decision::Stop
            } else {
                self.classify(&req, attempt, &next)
            };
            if decision == Decision::Stop {
                return finish(next, attempt);
            }
            outcome = next;
        }
    }

    fn classify(&self, req: &Request, attempt: u32, outcome: &Result<Response, Error>) -> Decision {
        match &self.classifier {
            Some(classify) => classify(req, attempt, outcome.as_ref()),
            None => default_classifier(req, attempt, outcome.as_ref()),
        }
    }

    /// The server's `Retry-After`, on the statuses it is meant for.
    fn server_wait(&self, outcome: &Result<Response, Error>) -> Option<Duration> {
        match outcome {
            Ok(resp) if self.honor_retry_after && matches!(resp.status().as_u16(), 429 | 503) => {
                retry_after::parse(resp.headers(), SystemTime::now())
            }
            _ => None,
        }
    }

    /// Whether waiting `wait` would reach the total deadline.
    fn past_deadline(&self, wait: Duration, clock: &mut Option<Instant>) -> bool {
        let Some(total) = self.total_timeout else {
            return false;
        };
        let now = Instant::now();
        let start = *clock.get_or_insert(now);
        match (start.checked_add(total), now.checked_add(wait)) {
            (Some(deadline), Some(wake)) => wake >= deadline,
            (None, _) => false,
            (Some(_), None) => true,
        }
    }

    /// Hands `req` to the inner Doer. The URI is kept for a timeout's error only when a timeout
    /// is set.
    fn start(&self, req: Request) -> Started<'_> {
        let timed = self.attempt_timeout.is_some() || self.total_timeout.is_some();
        let uri = timed.then(|| req.uri().clone());
        Started {
            fut: self.inner.execute(req),
            uri,
        }
    }

    /// Awaits one attempt within the attempt timeout and the total deadline. The flag says the
    /// total deadline passed during it.
    async fn wait(
        &self,
        started: Started<'_>,
        attempt: u32,
        clock: &mut Option<Instant>,
    ) -> (Result<Response, Error>, bool) {
        let mut started = started;
        if started.uri.is_none() {
            return (started.fut.await, false);
        }
        // An answer ready on the first poll needs no timer and no clock read.
        if let Poll::Ready(out) = poll_once(&mut started.fut).await {
            return (out, false);
        }
        Box::pin(self.finish_timed(started, attempt, clock)).await
    }

    /// Waits for an attempt that did not answer at once, racing the timeouts.
    async fn finish_timed(
        &self,
        started: Started<'_>,
        attempt: u32,
        clock: &mut Option<Instant>,
    ) -> (Result<Response, Error>, bool) {
        let now = Instant::now();
        let start = *clock.get_or_insert(now);
        let total_end = self.total_timeout.and_then(|t| start.checked_add(t));
        let attempt_end = self.attempt_timeout.and_then(|t| now.checked_add(t));
        let (until, is_total, limit) = match (total_end, attempt_end) {
            (Some(t), Some(a)) if t <= a => (t, true, self.total_timeout),
            (_, Some(a)) => (a, false, self.attempt_timeout),
            (Some(t), None) => (t, true, self.total_timeout),
            (None, None) => return (started.fut.await, false),
        };
        match tokio::time::timeout_at(until, started.fut).await {
            Ok(out) => (out, false),
            Err(_) => {
                let what = if is_total { "total" } else { "attempt" };
                let limit = limit.unwrap_or_default();
                let err = Error::from(ErrorKind::Timeout)
                    .with_message(format!(
                        "{what} timeout of {limit:?} passed during attempt {attempt}"
                    ))
                    .with_url(started.uri.as_ref().unwrap_or(&http::Uri::default()));
                (Err(err), is_total)
            }
        }
    }
}

/// Polls `fut` once, in the caller's task, and reports what it said.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> impl Future<Output = Poll<F::Output>> + '_ {
    poll_fn(move |cx| Poll::Ready(Pin::new(&mut *fut).poll(cx)))
}

/// Labels the outcome with the number of attempts made.
/// The error of an attempt that would have been retried but for its one-shot body.
fn not_resent(err: Error) -> Error {
    err.context("not retried: the one-shot request body was already sent")
}

fn finish(outcome: Result<Response, Error>, attempts: u32) -> Result<Response, Error> {
    match outcome {
        Ok(mut resp) => {
            resp.extensions_mut().insert(Attempts(attempts));
            Ok(resp)
        }
        Err(err) => Err(err.with_attempts(attempts)),
    }
}

// Written out rather than with `#[async_trait]`, whose wrapper future would hold the request
// twice (once captured, once as a local), making every call's allocation larger.
impl<D: Doer> Doer for Retrying<D> {
    fn execute<'life0, 'async_trait>(
        &'life0 self,
        req: Request,
    ) -> Pin<Box<dyn Future<Output = Result<Response, Error>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.call(req))
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
