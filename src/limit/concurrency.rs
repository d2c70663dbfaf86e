//! [`ConcurrencyLimit`]: a bulkhead per key.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::{DEFAULT_MAX_KEYS, KeyFn, QueueWait, key_of};
use crate::body::Tap;
use crate::doer::Execute;
use crate::{Doer, Error, ErrorKind, Request, Response};

/// Calls that may wait for a slot per key, unless set otherwise: 64. Past it, a call fails at
/// once: a queue longer than that only turns an overload into timeouts.
pub const DEFAULT_MAX_QUEUE: usize = 64;

/// The longest a call waits in the queue, unless set otherwise: 10 s.
pub const DEFAULT_MAX_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// A [`Doer`] that lets at most N calls per key (per host, by default) be in flight at once:
/// a bulkhead, so one slow host cannot take every connection, task and buffer of the process.
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | calls in flight per key | given to [`new`](Self::new) |
/// | [`max_queue`](Self::max_queue) | 64 calls waiting per key ([`DEFAULT_MAX_QUEUE`]) |
/// | [`max_wait`](Self::max_wait) | 10 s in the queue ([`DEFAULT_MAX_QUEUE_WAIT`]) |
/// | [`key_by`](Self::key_by) | the origin, as [`host_key`](crate::breaker::host_key) |
///
/// # Behaviour
///
/// * **Slots.** A call takes a slot of its key, or waits for one in a first-come first-served
///   queue. It fails at once with [`ErrorKind::ConcurrencyLimited`] when the queue is full,
///   and after [`max_wait`](Self::max_wait) when no slot freed in time. The error has no
///   [`retry_after`](Error::retry_after): nobody knows when a call in flight ends.
/// * **How long a slot is held: until the response body is done**, not until its head. With
///   the backends' default buffered responses that is when the call returns. A streamed body
///   ([`ResponseMode::Streamed`](crate::ResponseMode)) keeps the slot until it is read to its
///   end, fails, or is dropped: the exchange holds a connection and buffers until then, and
///   that is what a bulkhead bounds. Drop a streamed body you will not read.
/// * **Cancellation.** A slot is a tokio semaphore permit owned by the call (then by its
///   body): dropping the call's future, while it waits or while it runs, gives the slot back
///   or leaves the queue at once. No slot can leak. Over `UreqDoer`, a cancelled exchange runs
///   on in its blocking thread until the backend's timeout after its slot is given back, so
///   there the bulkhead bounds calls, not threads or connections.
/// * **Clones** share the slots and queues; settings are each clone's own.
///
/// ```
/// use std::time::Duration;
/// use http_doer::{Body, Doer, DoerExt, testing::{ScriptedDoer, response}};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let backend = ScriptedDoer::new();
/// for _ in 0..3 {
///     backend.push_after(Duration::from_secs(1), Ok(response(200, "")));
/// }
/// let doer = backend.concurrency_limit(2);
/// let get = || http::Request::get("https://api.test/").body(Body::empty()).unwrap();
/// let start = tokio::time::Instant::now();
/// let (a, b, c) = tokio::join!(doer.execute(get()), doer.execute(get()), doer.execute(get()));
/// assert!(a.is_ok() && b.is_ok() && c.is_ok());
/// assert_eq!(start.elapsed(), Duration::from_secs(2), "the third waited for a slot");
/// # });
/// ```
#[derive(Clone)]
pub struct ConcurrencyLimit<D> {
    inner: D,
    max_in_flight: usize,
    max_queue: usize,
    max_wait: Option<Duration>,
    key: Option<KeyFn>,
    bulkheads: Arc<Bulkheads>,
}

impl<D> ConcurrencyLimit<D> {
    /// Wraps `inner` so that at most `max_in_flight` calls per key are in flight at once (0 is
    /// taken as 1), with the defaults above. The slots are made here, once, and shared by
    /// clones.
    pub fn new(inner: D, max_in_flight: usize) -> Self {
        let max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        ConcurrencyLimit {
            inner,
            max_in_flight,
            max_queue: DEFAULT_MAX_QUEUE,
            max_wait: Some(DEFAULT_MAX_QUEUE_WAIT),
            key: None,
            bulkheads: Arc::new(Bulkheads::new(max_in_flight)),
        }
    }

    /// How many calls may wait for a slot per key; `max_queue(0)` fails a call at once when
    /// every slot is taken.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, limit::ConcurrencyLimit, testing::{ScriptedDoer, response}};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let backend = ScriptedDoer::new().then_after(Duration::from_secs(1), Ok(response(200, "")));
    /// let doer = ConcurrencyLimit::new(backend, 1).max_queue(0);
    /// let get = || http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// let (first, second) = tokio::join!(doer.execute(get()), doer.execute(get()));
    /// assert!(first.is_ok());
    /// assert!(second.unwrap_err().is_concurrency_limited());
    /// # });
    /// ```
    pub fn max_queue(mut self, n: usize) -> Self {
        self.max_queue = n;
        self
    }

    /// The longest a call waits in the queue (`None`: as long as it takes).
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Doer, limit::ConcurrencyLimit, testing::{ScriptedDoer, response}};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
    /// let backend = ScriptedDoer::new().then_after(Duration::from_secs(5), Ok(response(200, "")));
    /// let doer = ConcurrencyLimit::new(backend, 1).max_wait(Duration::from_secs(1));
    /// let get = || http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// let (_, second) = tokio::join!(doer.execute(get()), doer.execute(get()));
    /// let err = second.unwrap_err();
    /// assert!(err.is_concurrency_limited());
    /// assert!(err.to_string().contains("no slot freed within 1s"), "{err}");
    /// # });
    /// ```
    pub fn max_wait(mut self, max: impl Into<Option<Duration>>) -> Self {
        self.max_wait = max.into();
        self
    }

    /// Names the key of each request: calls with the same key share the slots. By default the
    /// origin, [`host_key`](crate::breaker::host_key). Keys made before are dropped (the
    /// calls in flight keep their slots).
    ///
    /// ```
    /// use http_doer::{limit::ConcurrencyLimit, testing::ScriptedDoer};
    ///
    /// // One bulkhead for everything.
    /// let doer = ConcurrencyLimit::new(ScriptedDoer::new(), 32).key_by(|_| String::new());
    /// # drop(doer);
    /// ```
    pub fn key_by<F>(mut self, key: F) -> Self
    where
        F: Fn(&Request) -> String + Send + Sync + 'static,
    {
        self.key = Some(Arc::new(key));
        self.bulkheads = Arc::new(Bulkheads::new(self.max_in_flight));
        self
    }

    /// How many calls per key may be in flight.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// How many calls of `req`'s key are in flight now.
    pub fn in_flight(&self, req: &Request) -> usize {
        let key = key_of(self.key.as_ref(), req);
        let bulkheads = lock(&self.bulkheads.keys);
        bulkheads.get(&*key).map_or(0, |b| {
            self.max_in_flight
                .saturating_sub(b.slots.available_permits())
        })
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

    /// A slot of `bulkhead`, taken at once or after queueing; how long it queued.
    async fn slot(
        &self,
        bulkhead: &Bulkhead,
        uri: &http::Uri,
    ) -> Result<(OwnedSemaphorePermit, Duration), Error> {
        if let Ok(permit) = bulkhead.slots.clone().try_acquire_owned() {
            return Ok((permit, Duration::ZERO));
        }
        let full = || {
            Error::from(ErrorKind::ConcurrencyLimited)
                .with_message(format!(
                    "{} calls in flight and {} waiting",
                    self.max_in_flight, self.max_queue
                ))
                .with_url(uri)
        };
        if self.max_wait.is_some_and(|w| w.is_zero()) {
            return Err(full());
        }
        let Some(_queued) = Queued::enter(&bulkhead.queued, self.max_queue) else {
            return Err(full());
        };
        let start = Instant::now();
        let acquire = bulkhead.slots.clone().acquire_owned();
        let permit = match self.max_wait {
            None => acquire.await,
            Some(max) => match tokio::time::timeout(max, acquire).await {
                Ok(permit) => permit,
                Err(_) => {
                    return Err(Error::from(ErrorKind::ConcurrencyLimited)
                        .with_message(format!("no slot freed within {max:?}"))
                        .with_url(uri));
                }
            },
        };
        // The semaphore is never closed; should it be, the call is refused, not failed.
        let permit = permit.map_err(|_| full())?;
        Ok((permit, start.elapsed()))
    }
}

impl<D: Doer> ConcurrencyLimit<D> {
    async fn call(&self, req: Request) -> Result<Response, Error> {
        let bulkhead = self.bulkheads.get(&key_of(self.key.as_ref(), &req));
        let (permit, queued) = self.slot(&bulkhead, req.uri()).await.inspect_err(|_| {
            crate::telemetry::event(crate::telemetry::names::EVENT_CONCURRENCY_LIMIT_REJECTED)
        })?;
        crate::telemetry::limit_wait(
            crate::telemetry::names::EVENT_CONCURRENCY_LIMIT_WAIT,
            queued,
        );
        drop(bulkhead);
        let resp = self.inner.execute(req).await?;
        let mut resp = resp.map(|body| body.tap(Slot(Some(permit))));
        if !queued.is_zero() {
            resp.extensions_mut().insert(QueueWait(queued));
        }
        Ok(resp)
    }
}

// Written out rather than with `#[async_trait]`, whose wrapper would hold the request twice.
impl<D: Doer> Doer for ConcurrencyLimit<D> {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.call(req))
    }
}

impl<D: fmt::Debug> fmt::Debug for ConcurrencyLimit<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimit")
            .field("inner", &self.inner)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_queue", &self.max_queue)
            .field("max_wait", &self.max_wait)
            .field("custom_key", &self.key.is_some())
            .field("keys", &lock(&self.bulkheads.keys).len())
            .finish()
    }
}

/// A response body's hold on its slot, given back when the body ends or is dropped.
struct Slot(Option<OwnedSemaphorePermit>);

impl Tap for Slot {
    fn end(&mut self, _result: Result<(), &Error>) {
        self.0 = None;
    }

    fn dropped(&mut self) {
        self.0 = None;
    }
}

/// The bulkheads, one per key.
struct Bulkheads {
    max_in_flight: usize,
    keys: Mutex<HashMap<String, Arc<Bulkhead>>>,
}

struct Bulkhead {
    slots: Arc<Semaphore>,
    queued: AtomicUsize,
}

impl Bulkheads {
    fn new(max_in_flight: usize) -> Self {
        Bulkheads {
            max_in_flight,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The bulkhead of `key`; past [`DEFAULT_MAX_KEYS`], unused ones make room first (a
    /// bulkhead with every slot free and nobody waiting is the same as a new one).
    fn get(&self, key: &str) -> Arc<Bulkhead> {
        let mut keys = lock(&self.keys);
        if let Some(b) = keys.get(key) {
            return b.clone();
        }
        if keys.len() >= DEFAULT_MAX_KEYS {
            keys.retain(|_, b| {
                Arc::strong_count(b) > 1
                    || b.slots.available_permits() < self.max_in_flight
                    || b.queued.load(Ordering::Acquire) > 0
            });
        }
        let b = Arc::new(Bulkhead {
            slots: Arc::new(Semaphore::new(self.max_in_flight)),
            queued: AtomicUsize::new(0),
        });
        keys.insert(key.to_owned(), b.clone());
        b
    }
}

/// A place in a queue, left when dropped (the call got its slot, gave up, or was dropped).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    /// Joins the queue counted by `queued` unless `max` are waiting.
    fn enter(queued: &'a AtomicUsize, max: usize) -> Option<Self> {
        queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Queued(queued))
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_count_is_bounded_and_given_back() {
        let n = AtomicUsize::new(0);
        let a = Queued::enter(&n, 2).unwrap();
        let b = Queued::enter(&n, 2).unwrap();
        assert!(Queued::enter(&n, 2).is_none());
        drop(a);
        assert_eq!(n.load(Ordering::Acquire), 1);
        drop(b);
        assert_eq!(n.load(Ordering::Acquire), 0);
        assert!(Queued::enter(&n, 0).is_none());
    }

    #[test]
    fn unused_bulkheads_make_room() {
        let bulkheads = Bulkheads::new(1);
        let held = bulkheads
            .get("held")
            .slots
            .clone()
            .try_acquire_owned()
            .unwrap();
        for i in 0..DEFAULT_MAX_KEYS + 10 {
            bulkheads.get(&format!("k{i}"));
        }
        let keys = lock(&bulkheads.keys);
        assert!(keys.len() <= DEFAULT_MAX_KEYS);
        assert!(keys.contains_key("held"), "a bulkhead in use is kept");
        drop(held);
    }
}
