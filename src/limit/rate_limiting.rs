//! [`RateLimiting`]: the decorator.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::pacing::Plan;
use super::{KeyFn, LimitStore, MemoryStore, Pace, Pacing, Rate, RateWait, key_of, quota_headers};
use crate::doer::Execute;
use crate::retrying::retry_after;
use crate::{Doer, Error, ErrorKind, Request, Response};

/// The longest a call waits for its place, unless set otherwise: 30 s, as long as
/// [`Retrying`](crate::Retrying) waits at most for a server's `Retry-After`.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(30);

/// The shortest sleep between two asks for a place: a store that says "now" while refusing
/// must not make a call spin.
const MIN_SLEEP: Duration = Duration::from_micros(1);

/// The most times a call asks for its place: each ask follows a sleep, so this is never
/// reached by a call that the max wait bounds; it only keeps an unbounded wait finite.
const MAX_ROUNDS: u32 = 1 << 20;

/// A [`Doer`] that paces calls per key: to a local [`Rate`] (GCRA, by `governor`), and to the
/// quota the server publishes ([`Pacing`]).
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | the rate | given to [`new`](Self::new), with a burst of 1 ([`DEFAULT_BURST`](super::DEFAULT_BURST)) unless [`Rate::burst`] says more |
/// | [`key_by`](Self::key_by) | the origin, as [`host_key`](crate::breaker::host_key): one limit per host |
/// | [`max_wait`](Self::max_wait) | 30 s ([`DEFAULT_MAX_WAIT`]) |
/// | [`pacing`](Self::pacing) | on, [`Pacing::new`]: 429s pause the key; a nearly spent quota is spread over what is left of the window, 20 % kept in reserve |
/// | [`store`](Self::store) | a [`MemoryStore`] of the rate, keeping up to 4096 keys |
///
/// # Behaviour
///
/// * **Waiting.** A call whose place is not free waits for it, inside its own future (no task
///   is spawned), as long as the wait ends within [`max_wait`](Self::max_wait) of its arrival;
///   otherwise it fails at once, without sleeping, with [`ErrorKind::RateLimited`] and
///   [`Error::retry_after`] saying when a place is expected. A waiting call holds no place:
///   dropping it (a caller's timeout, a lost hedge) frees nothing because it took nothing,
///   and the calls behind it go on as before. Waiting calls are not queued in order: when a
///   place frees, the first to ask again takes it.
/// * **A caller's deadline.** An outer [`Timeout`](crate::Timeout) or
///   [`Retrying::total_timeout`](crate::Retrying::total_timeout) bounds the wait as it bounds
///   everything inside it: the waiting future is dropped when the deadline passes. Set
///   `max_wait` below the deadline to get a `RateLimited` error, with its `retry_after`,
///   rather than a timeout.
/// * **The server's quota.** After each answer the key follows what the server said (see
///   [`Pacing`]): a 429 pauses the key for every caller at once, including the calls already
///   waiting; a nearly spent quota spreads the rest of it over the rest of the window. The
///   answer itself, a 429 included, is returned as it is.
/// * **Errors** of the wrapped Doer pass through untouched; they tell nothing of the quota.
/// * **Clones** share the store, and so the limits; settings are each clone's own.
///
/// ```
/// use std::time::Duration;
/// use http_doer::{Body, Doer, DoerExt, limit::Rate, testing::ScriptedDoer};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let backend = ScriptedDoer::new();
/// for _ in 0..11 {
///     backend.push(Ok(http_doer::testing::response(200, "")));
/// }
/// let doer = backend.rate_limiting(Rate::per_second(10));
/// let start = tokio::time::Instant::now();
/// for _ in 0..11 {
///     let req = http::Request::get("https://api.test/items").body(Body::empty()).unwrap();
///     doer.execute(req).await.unwrap();
/// }
/// assert_eq!(start.elapsed(), Duration::from_secs(1), "one every 100 ms");
/// # });
/// ```
#[derive(Clone)]
pub struct RateLimiting<D> {
    inner: D,
    store: Arc<dyn LimitStore>,
    key: Option<KeyFn>,
    max_wait: Option<Duration>,
    pacing: Option<Pacing>,
}

impl<D> RateLimiting<D> {
    /// Wraps `inner` so that each key makes at most `rate` calls, with the defaults above. The
    /// state (a [`MemoryStore`]) is made here, once, and shared by clones.
    pub fn new(inner: D, rate: Rate) -> Self {
        RateLimiting {
            inner,
            store: Arc::new(MemoryStore::new(rate)),
            key: None,
            max_wait: Some(DEFAULT_MAX_WAIT),
            pacing: Some(Pacing::new()),
        }
    }

    /// Keeps the state in `store` instead, whose own rate then applies (the rate given to
    /// [`new`](Self::new) is dropped with the store made for it). Hand the same `Arc` to
    /// several decorators to give them one limit.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use http_doer::{DoerExt, limit::{MemoryStore, Rate, RateLimiting}, testing::ScriptedDoer};
    ///
    /// // Two stacks, one limit of 5 calls a second per host between them.
    /// let store = Arc::new(MemoryStore::new(Rate::per_second(5)));
    /// let a = ScriptedDoer::new().rate_limiting(Rate::unlimited()).store(store.clone());
    /// let b = RateLimiting::new(ScriptedDoer::new(), Rate::unlimited()).store(store);
    /// # let _ = (a, b);
    /// ```
    pub fn store<S: LimitStore>(mut self, store: Arc<S>) -> Self {
        self.store = store;
        self
    }

    /// Names the key of each request: calls with the same key share one limit (and one server
    /// quota). By default the origin, [`host_key`](crate::breaker::host_key). A key appears in
    /// no log or error, but it is kept in memory: name an API key by a hash, not itself.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, limit::{Rate, RateLimiting}, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let backend = ScriptedDoer::new().then_status(200).then_status(200);
    /// // One limit per first path segment: /search and /items do not wait for each other.
    /// let doer = RateLimiting::new(backend, Rate::per_minute(1)).key_by(|req| {
    ///     req.uri().path().split('/').nth(1).unwrap_or("").to_owned()
    /// });
    /// let start = tokio::time::Instant::now();
    /// for path in ["/search?q=a", "/items/7"] {
    ///     let req = http::Request::get(format!("https://api.test{path}")).body(Body::empty()).unwrap();
    ///     doer.execute(req).await.unwrap();
    /// }
    /// assert_eq!(start.elapsed(), Duration::ZERO);
    /// # });
    /// ```
    pub fn key_by<F>(mut self, key: F) -> Self
    where
        F: Fn(&Request) -> String + Send + Sync + 'static,
    {
        self.key = Some(Arc::new(key));
        self
    }

    /// The longest a call waits for its place (`None`: as long as it takes). A call whose
    /// place is further away fails at once with [`ErrorKind::RateLimited`];
    /// `max_wait(Duration::ZERO)` never waits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, limit::{Rate, RateLimiting}, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let backend = ScriptedDoer::new().then_status(200);
    /// let doer = RateLimiting::new(backend, Rate::per_second(2)).max_wait(Duration::ZERO);
    /// let get = || http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// assert!(doer.execute(get()).await.is_ok());
    /// let err = doer.execute(get()).await.unwrap_err();
    /// assert!(err.is_rate_limited());
    /// assert_eq!(err.retry_after(), Some(Duration::from_millis(500)));
    /// # });
    /// ```
    pub fn max_wait(mut self, max: impl Into<Option<Duration>>) -> Self {
        self.max_wait = max.into();
        self
    }

    /// How the key follows the server's quota (`None`: it does not; only the local rate
    /// applies). See [`Pacing`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, limit::{Rate, RateLimiting}, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let busy = http::Response::builder().status(429).header("retry-after", "2");
    /// let backend = ScriptedDoer::new().then(Ok(busy.body(Body::empty()).unwrap())).then_status(200);
    /// let doer = RateLimiting::new(backend, Rate::unlimited()).pacing(None);
    /// let start = tokio::time::Instant::now();
    /// for _ in 0..2 {
    ///     let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    ///     doer.execute(req).await.unwrap();
    /// }
    /// assert_eq!(start.elapsed(), Duration::ZERO, "the 429 paused nothing");
    /// # });
    /// ```
    pub fn pacing(mut self, pacing: impl Into<Option<Pacing>>) -> Self {
        self.pacing = pacing.into();
        self
    }

    /// The store of the limits.
    pub fn limit_store(&self) -> &Arc<dyn LimitStore> {
        &self.store
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

    /// Waits for a place for `key`; how long it waited, or the refusal.
    async fn admit(&self, key: &str, uri: &http::Uri) -> Result<Duration, Error> {
        let Err(mut wait) = self.store.acquire(key) else {
            return Ok(Duration::ZERO);
        };
        let start = Instant::now();
        for _ in 0..MAX_ROUNDS {
            if let Some(max) = self.max_wait {
                let ends = start.elapsed().saturating_add(wait);
                if ends > max {
                    return Err(refused(wait, max, uri));
                }
            }
            tokio::time::sleep(wait.max(MIN_SLEEP)).await;
            match self.store.acquire(key) {
                Ok(()) => return Ok(start.elapsed()),
                Err(next) => wait = next,
            }
        }
        Err(refused(wait, start.elapsed(), uri))
    }

    /// Applies what `resp` says of the quota of `key`.
    fn follow(&self, key: &str, resp: &Response) {
        let Some(pacing) = &self.pacing else {
            return;
        };
        let status = resp.status().as_u16();
        if status != 429 && resp.headers().is_empty() {
            return;
        }
        let now = SystemTime::now();
        let quota = quota_headers::parse(resp.headers(), now);
        let retry_after = (status == 429)
            .then(|| retry_after::parse(resp.headers(), now))
            .flatten();
        match pacing.plan(status, quota.as_ref(), retry_after) {
            Plan::Keep => {}
            Plan::Lift => self.store.pace(key, None),
            Plan::Pause(wait) if status == 429 => {
                tracing::debug!(
                    ?wait,
                    status,
                    "the server refused a call and paused the rest"
                );
                self.store.refused(key, wait);
            }
            Plan::Pause(wait) => {
                tracing::debug!(?wait, status, "the quota is spent until its reset");
                self.store.pause(key, wait);
            }
            Plan::Pace { interval, until } => {
                self.store.pace(key, Some(Pace { interval, until }));
            }
        }
    }
}

/// The error of a call whose place is `wait` away, past `max`.
fn refused(wait: Duration, max: Duration, uri: &http::Uri) -> Error {
    Error::from(ErrorKind::RateLimited)
        .with_message(format!("no place within {max:?}, the next in {wait:?}"))
        .with_url(uri)
        .with_retry_after(wait)
}

impl<D: Doer> RateLimiting<D> {
    async fn call(&self, req: Request) -> Result<Response, Error> {
        let key = key_of(self.key.as_ref(), &req);
        let waited = self.admit(&key, req.uri()).await.inspect_err(|_| {
            crate::telemetry::event(crate::telemetry::names::EVENT_RATE_LIMIT_REJECTED)
        })?;
        crate::telemetry::limit_wait(crate::telemetry::names::EVENT_RATE_LIMIT_WAIT, waited);
        let mut resp = self.inner.execute(req).await?;
        self.follow(&key, &resp);
        if !waited.is_zero() {
            resp.extensions_mut().insert(RateWait(waited));
        }
        Ok(resp)
    }
}

// Written out rather than with `#[async_trait]`, whose wrapper would hold the request twice.
impl<D: Doer> Doer for RateLimiting<D> {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.call(req))
    }
}

impl<D: fmt::Debug> fmt::Debug for RateLimiting<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiting")
            .field("inner", &self.inner)
            .field("store", &self.store)
            .field("custom_key", &self.key.is_some())
            .field("max_wait", &self.max_wait)
            .field("pacing", &self.pacing)
            .finish()
    }
}
