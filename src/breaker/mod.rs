//! [`Breaker`]: a circuit breaker per host that can answer with the last good response.
//!
//! * [`State`]: closed, open, half-open, with generations; [`Snapshot`] and [`Counts`] to
//!   read them; [`StateChange`] for the hook;
//! * the policy: when to trip, how long to stay open, how to probe (the `DEFAULT_*` constants);
//! * [`Outcome`] and [`default_outcome`]: what counts as a failure;
//! * [`ServeStale`]: the fallback that answers with the last good response, marked
//!   [`ServedStale`];
//! * [`host_key`]: one circuit per origin, by default;
//! * request extensions: [`NoStale`] (steering), [`Probe`] (set on half-open probes).
//!
//! # Defaults, and how they compare
//!
//! | setting | http-doer | gobreaker | resilience4j | Polly / .NET | retter |
//! |---|---|---|---|---|---|
//! | trips on failures in a row | [5](DEFAULT_CONSECUTIVE_FAILURES) (the 5th) | more than 5 (the 6th) | - | - | more than 5 |
//! | failure ratio | [0.5](DEFAULT_FAILURE_RATIO) | - | 50 % | 0.1 | 0.66 |
//! | minimum calls for the ratio | [20](DEFAULT_MIN_CALLS) | - | 100 | 100 | 5 |
//! | window | [30 s](DEFAULT_WINDOW), rolling, 10 buckets | none: counts since the last change (`Interval` 0) | last 100 calls | 30 s | 10 s, fixed |
//! | open for | [10 s](DEFAULT_OPEN_DURATION), optional growth | 60 s | 60 s | 5 s | 60 s |
//! | half-open probes | [1](DEFAULT_HALF_OPEN_PROBES) | 1 | 10 | 1 | 1 |
//! | probe timeout | [30 s](DEFAULT_PROBE_TIMEOUT) | none | none (`maxWaitDurationInHalfOpenState` 0) | none | none |
//! | scope | per origin | per instance | per instance | per pipeline | per URL path |
//!
//! Why: five failures in a row is the common rule and catches a dead host in any traffic.
//! The ratio catches a host that fails every other call (half the instances behind a load
//! balancer down), which never produces five in a row; 0.5 is resilience4j's threshold, while
//! .NET's 0.1 cuts off a host that still serves 90 % of calls and retter's 0.66 over 5 calls
//! trips on noise. The minimum of 20 (not 100) is because a per-host breaker sees one host's
//! traffic only. 10 s open sits between .NET's 5 s and the 60 s of gobreaker and
//! resilience4j: a single probe every 10 s costs a dead host nothing, and a blip does not cut a
//! host off for a minute. One probe, as gobreaker and .NET, so a recovering host is not hit by
//! a burst. A probe timeout, which none of the others has by default, so that one hung probe
//! cannot keep the circuit half-open for ever.
//!
//! # What it does that the others do not
//!
//! * Every probe holds its slot until it returns, is dropped or times out, even across
//!   half-open periods, so the host sees no more than the allowed probes at once (a probe
//!   that timed out or was dropped frees its slot though the host may still be on it).
//! * A call dropped by its caller counts as neither success nor failure, and frees its probe
//!   slot at once (gobreaker counts a panic as a failure and has no notion of cancellation).
//! * The hook runs outside the circuit's lock, once per change and in order, and may read the
//!   breaker (gobreaker calls it under its mutex).
//! * The refusal says when to come back ([`Error::retry_after`]), as .NET's
//!   `BrokenCircuitException.RetryAfter` does.
//! * The serve-stale cache is keyed on the credentials (hashed), bounded, and never stores
//!   `Set-Cookie`; retter keys its cache on the path and three session-cookie names only, so
//!   two users with different `Authorization` headers share answers, and its maps of breakers
//!   and answers are unguarded and unbounded.

mod cache_control;
mod classify;
mod events;
mod key;
mod policy;
mod stale;
mod state;
mod tally;
mod watch;

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::{Doer, Error, ErrorKind, Request, Response};

pub use classify::{Outcome, default_outcome};
pub use events::StateChange;
pub use key::host_key;
pub use policy::{
    DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_FAILURE_RATIO, DEFAULT_HALF_OPEN_PROBES,
    DEFAULT_MIN_CALLS, DEFAULT_OPEN_DURATION, DEFAULT_PROBE_TIMEOUT, DEFAULT_WINDOW,
};
pub use stale::{
    DEFAULT_STALE_MAX_BYTES, DEFAULT_STALE_MAX_ENTRIES, NoStale, ServeStale, ServedStale,
    StaleReason,
};
pub use state::{Counts, Snapshot, State};

use classify::Classifier;
use events::{Events, Hook};
use key::KeyFn;
use policy::Policy;
use stale::StaleCache;
use state::{Admission, Circuit};
use tally::{Handle, Handles};
use watch::{Count, Tee, Watch};

/// Default bound on the number of circuits kept: 4096, about 13 MiB at most (a circuit takes
/// about 3 KiB, mostly its per-thread stripes of counters, each on cache lines of its own). Past it, closed circuits with no
/// call in flight are dropped to make room (their counts start again from zero if the host
/// comes back); open and busy ones are kept, even past the bound.
pub const DEFAULT_MAX_CIRCUITS: usize = 4096;

/// Request extension set by the breaker on a half-open probe, so that inner layers (a logger,
/// a test double) can tell probes from ordinary calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Probe;

/// A circuit breaker: stops calling a failing host for a while, and can answer with the last
/// good response meanwhile.
///
/// Each host (origin: scheme, host and port; see [`host_key`] and [`key_by`](Self::key_by)) has
/// its own circuit:
///
/// * **Closed**: calls go through and their [outcomes](Outcome) are counted. The circuit
///   trips after [5 failures in a row](DEFAULT_CONSECUTIVE_FAILURES), or when at least
///   [half](DEFAULT_FAILURE_RATIO) of the calls of the last [30 s](DEFAULT_WINDOW) failed, with
///   at least [20 calls](DEFAULT_MIN_CALLS) in that window.
/// * **Open** for [10 s](DEFAULT_OPEN_DURATION) (optionally [growing](Self::open_growth) while
///   failures go on): calls fail at once with [`ErrorKind::BreakerOpen`], without touching the
///   host, and the error's [`retry_after`](Error::retry_after) says when the next probe is
///   allowed; or, with [`serve_stale`](Self::serve_stale), a `GET`/`HEAD` is answered with the
///   last good response.
/// * **Half-open**: [one probe](DEFAULT_HALF_OPEN_PROBES) goes through (the rest are refused
///   like in open); it carries the [`Probe`] extension. As many successful probes as allowed
///   close the circuit; a failed one opens it again. A probe that does not return within
///   [30 s](DEFAULT_PROBE_TIMEOUT) gives its slot to the next call.
///
/// A failure is, [by default](default_outcome), a connect, transport, body or timeout error, or
/// a 5xx; [`classify`](Self::classify) changes that. A call whose future is dropped by its
/// caller counts as neither success nor failure. Every change of state starts a new
/// generation, and outcomes of calls begun in an older generation are not counted (as in
/// gobreaker): a slow call that started before the circuit opened cannot close it.
///
/// # Bodies
///
/// * **Request bodies**, buffered, replayable or one-shot, make no difference: the breaker
///   sends each request at most once and never resends it, so it passes every kind through
///   untouched (a one-shot body included), and a refused call never reads its body.
/// * **Buffered responses** (the backends' default) are whole when the call returns: their
///   outcome is counted, and a serve-stale answer kept, at once.
/// * **Streamed responses** ([`ResponseMode::Streamed`](crate::ResponseMode), or any one-shot
///   body from the inner Doer) are returned as soon as their head arrives, and the breaker
///   watches the body go by without holding it back. A head that is a failure (a 5xx, by
///   default) is counted at once, as a buffered one. A good head is counted when its body
///   ends: as a success if it ends whole (or is dropped by its reader: the host did not fail),
///   as the classifier says of the body's error if it fails mid-stream (a
///   [`Body`](ErrorKind::Body) or [`Timeout`](ErrorKind::Timeout) error is, by default, a
///   failure), so a host whose bodies break trips the circuit as one whose calls fail would.
///   A half-open probe is the exception: its head's outcome is counted at once, so it frees
///   its slot, and can close the circuit, without waiting for a body of any size; a body
///   error after it then counts as one more failure, of the circuit the probe left (closed:
///   towards tripping again; still half-open: it reopens). An outcome counted at the body's
///   end, and any change of state (and call of the hook) it causes, happen on the task that
///   reads or drops the body. With
///   [`serve_stale`](Self::serve_stale), a good answer to a `GET`/`HEAD` is copied as it
///   streams, kept only if its body ends whole within the cache's per-answer bound
///   ([`ServeStale::max_bytes`]), and the copy is dropped as soon as the body would pass it
///   (the caller still gets the whole body); see [`ServeStale`].
///
/// A closed-state call takes no lock to be admitted and, when it succeeds, only a lock of its
/// own thread's stripe of counters to be counted, and holds its circuit through that stripe's
/// handle: threads calling one healthy host share no written memory, so they do not contend
/// (about 100 ns per call over an instant Doer, on one thread or two; see
/// `benches/breaker.rs`).
///
/// State changes go to the [hook](Self::on_state_change) and to `tracing` (target
/// `http_doer::breaker`); [`snapshot`](Self::snapshot) reads a circuit's state and counts.
///
/// Clones share circuits and the stale cache. Configure before cloning: each builder call
/// starts from fresh state.
///
/// ```
/// use std::time::Duration;
/// use http_doer::{Body, Doer, DoerExt, ErrorKind, testing::{ScriptedDoer, response}};
/// use http_doer::breaker::{ServeStale, ServedStale, State};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let backend = ScriptedDoer::new()
///     .then(Ok(response(200, "v1")))
///     .then_status(503)
///     .then_status(503);
/// let doer = backend
///     .clone()
///     .breaker()
///     .consecutive_failures(2)
///     .serve_stale(ServeStale::new(Duration::from_secs(300)));
/// let get = |path: &str| {
///     http::Request::get(format!("https://api.test{path}")).body(Body::empty()).unwrap()
/// };
///
/// assert_eq!(doer.execute(get("/item")).await.unwrap().status(), 200);
/// assert_eq!(doer.execute(get("/item")).await.unwrap().status(), 503);
/// assert_eq!(doer.execute(get("/item")).await.unwrap().status(), 503); // trips
/// assert_eq!(doer.state("https://api.test"), State::Open);
///
/// // Open: the last good answer, marked stale, without calling the host.
/// let stale = doer.execute(get("/item")).await.unwrap();
/// assert!(stale.extensions().get::<ServedStale>().is_some());
/// assert_eq!(stale.into_body().text().await.unwrap(), "v1");
///
/// // Nothing to serve: refused at once, with the time until the next probe.
/// let err = doer.execute(get("/other")).await.unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::BreakerOpen);
/// assert!(err.retry_after().unwrap() <= Duration::from_secs(10));
/// assert_eq!(backend.calls(), 3);
/// # });
/// ```
pub struct Breaker<D> {
    inner: D,
    shared: Arc<Shared>,
}

/// Everything the builder sets; cheap to clone.
#[derive(Clone)]
struct Config {
    policy: Policy,
    classify: Classifier,
    key_fn: Option<KeyFn>,
    hook: Option<Hook>,
    stale: Option<ServeStale>,
    max_circuits: usize,
}

struct Shared {
    /// Unique per `Shared`, for the per-thread circuit cache.
    id: u64,
    config: Config,
    events: Events,
    stale: Option<StaleCache>,
    circuits: RwLock<HashMap<Arc<str>, Handles>>,
}

impl Shared {
    fn new(config: Config) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            events: Events::new(config.hook.clone()),
            stale: config.stale.clone().map(StaleCache::new),
            circuits: RwLock::new(HashMap::new()),
            config,
        }
    }

    fn key_for(&self, req: &Request) -> String {
        match &self.config.key_fn {
            Some(f) => f(req),
            None => host_key(req.uri()),
        }
    }

    fn find(&self, key: &str) -> Option<Arc<Handle>> {
        let map = self.circuits.read().unwrap_or_else(|p| p.into_inner());
        map.get(key).map(Handles::mine)
    }

    /// The circuit of `req`, created if needed.
    fn circuit_for(&self, req: &Request) -> Arc<Handle> {
        if self.config.key_fn.is_some() {
            let key = self.key_for(req);
            return self.find(&key).unwrap_or_else(|| self.insert(key));
        }
        // The last circuit this thread used, and the scheme and authority, as written, of the
        // request that found it. A thread usually calls the same host again, and then neither
        // the key, nor the shared map's lock, nor a SipHash of the key is needed. The cached
        // handle keeps the circuit in the map (only circuits nobody else holds are evicted), so
        // the cache cannot go stale. An authority with userinfo (a credential) is not cached.
        struct Last {
            breaker: u64,
            scheme: String,
            authority: String,
            circuit: Option<Arc<Handle>>,
        }
        thread_local! {
            static LAST: RefCell<Last> = const {
                RefCell::new(Last {
                    breaker: 0,
                    scheme: String::new(),
                    authority: String::new(),
                    circuit: None,
                })
            };
        }
        let uri = req.uri();
        let scheme = uri.scheme_str().unwrap_or("");
        let authority = uri.authority().map_or("", |a| a.as_str());
        LAST.with(|last| {
            let Ok(mut last) = last.try_borrow_mut() else {
                // Not reachable (nothing runs while it is borrowed), but never worth a panic.
                let key = host_key(uri);
                return self.find(&key).unwrap_or_else(|| self.insert(key));
            };
            if let Some(circuit) = &last.circuit
                && last.breaker == self.id
                && last.scheme == scheme
                && last.authority == authority
            {
                return circuit.clone();
            }
            let key = host_key(uri);
            let circuit = self.find(&key).unwrap_or_else(|| self.insert(key));
            let last = &mut *last;
            last.circuit = (!authority.contains('@')).then(|| circuit.clone());
            last.breaker = self.id;
            last.scheme.clear();
            last.scheme.push_str(scheme);
            last.authority.clear();
            last.authority.push_str(authority);
            circuit
        })
    }

    fn insert(&self, key: String) -> Arc<Handle> {
        let mut map = self.circuits.write().unwrap_or_else(|p| p.into_inner());
        if let Some(handles) = map.get(key.as_str()) {
            return handles.mine();
        }
        if map.len() >= self.config.max_circuits {
            // Only the map holds an idle circuit; a closed one loses little when dropped.
            map.retain(|_, h| h.in_use() || h.circuit().quick_state() != State::Closed);
        }
        let key: Arc<str> = Arc::from(key);
        let handles = Handles::new(Circuit::new(
            key.clone(),
            Instant::now(),
            &self.config.policy,
        ));
        let mine = handles.mine();
        map.insert(key, handles);
        mine
    }

    fn circuits(&self) -> Vec<Arc<Handle>> {
        let map = self.circuits.read().unwrap_or_else(|p| p.into_inner());
        map.values().map(Handles::mine).collect()
    }
}

/// Frees a probe slot, and counts a cancellation, if the call is dropped before it returns.
struct Permit<'a> {
    circuit: &'a Circuit,
    ticket: Option<state::Ticket>,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.circuit.cancel(ticket);
        }
    }
}

impl<D> Breaker<D> {
    /// A breaker with the defaults above and no serve-stale fallback.
    pub fn new(inner: D) -> Self {
        let config = Config {
            policy: Policy::default(),
            classify: Arc::new(default_outcome),
            key_fn: None,
            hook: None,
            stale: None,
            max_circuits: DEFAULT_MAX_CIRCUITS,
        };
        Breaker {
            inner,
            shared: Arc::new(Shared::new(config)),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        f(&mut config);
        self.shared = Arc::new(Shared::new(config));
        self
    }

    /// Trips after `n` failures in a row (default [5](DEFAULT_CONSECUTIVE_FAILURES)); 0 turns
    /// this rule off.
    pub fn consecutive_failures(self, n: u32) -> Self {
        self.configure(|c| c.policy.consecutive_failures = n)
    }

    /// Trips when at least `ratio` of the calls in the [window](Self::window) failed, once the
    /// window holds at least `min_calls` calls (defaults [0.5](DEFAULT_FAILURE_RATIO) and
    /// [20](DEFAULT_MIN_CALLS)). A ratio that is not in `(0, 1]` (or NaN) turns this rule off.
    pub fn failure_rate(self, ratio: f64, min_calls: u32) -> Self {
        let ratio = (ratio > 0.0 && ratio <= 1.0).then_some(ratio);
        self.configure(|c| {
            c.policy.failure_ratio = ratio;
            c.policy.min_calls = min_calls;
        })
    }

    /// The length of the rolling window the failure rate is measured over (default
    /// [30 s](DEFAULT_WINDOW)), kept as ten buckets.
    pub fn window(self, length: Duration) -> Self {
        self.configure(|c| c.policy.window = length)
    }

    /// How long a tripped circuit stays open before it lets a probe through (default
    /// [10 s](DEFAULT_OPEN_DURATION)).
    pub fn open_duration(self, d: Duration) -> Self {
        self.configure(|c| c.policy.open_duration = d)
    }

    /// Makes the open period grow while failures go on: each failed half-open period
    /// multiplies it by `factor`, up to `max`; closing the circuit resets it. Off by default.
    pub fn open_growth(self, factor: f64, max: Duration) -> Self {
        self.configure(|c| c.policy.growth = Some((factor, max)))
    }

    /// How many probes a half-open circuit lets through, and how many must succeed to close it
    /// (default [1](DEFAULT_HALF_OPEN_PROBES); 0 is taken as 1).
    pub fn half_open_probes(self, k: u32) -> Self {
        self.configure(|c| c.policy.half_open_probes = k.max(1))
    }

    /// After how long a probe that has not returned gives its slot to the next call (default
    /// [30 s](DEFAULT_PROBE_TIMEOUT)). Its outcome, when it comes, is not counted.
    pub fn probe_timeout(self, d: Duration) -> Self {
        self.configure(|c| c.policy.probe_timeout = d)
    }

    /// Decides what counts as a failure (default: [`default_outcome`]).
    ///
    /// ```
    /// use http_doer::{Breaker, breaker::{Outcome, default_outcome}, testing::ScriptedDoer};
    ///
    /// // Count 429 Too Many Requests as a failure too.
    /// let breaker = Breaker::new(ScriptedDoer::new()).classify(|result| match result {
    ///     Ok(resp) if resp.status() == 429 => Outcome::Failure,
    ///     other => default_outcome(other),
    /// });
    /// # let _ = breaker;
    /// ```
    pub fn classify(
        self,
        f: impl Fn(&Result<Response, Error>) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        self.configure(|c| c.classify = Arc::new(f))
    }

    /// Names the circuit of each request (default: [`host_key`], one circuit per origin).
    ///
    /// Keys appear in `tracing` events and in [`StateChange`]s: keep secrets out of them.
    ///
    /// ```
    /// use http_doer::{Breaker, breaker::host_key, testing::ScriptedDoer};
    ///
    /// // One circuit per origin and first path segment (per API, on a shared gateway).
    /// let breaker = Breaker::new(ScriptedDoer::new()).key_by(|req| {
    ///     let first = req.uri().path().split('/').nth(1).unwrap_or("");
    ///     format!("{}/{first}", host_key(req.uri()))
    /// });
    /// # let _ = breaker;
    /// ```
    pub fn key_by(self, f: impl Fn(&Request) -> String + Send + Sync + 'static) -> Self {
        self.configure(|c| c.key_fn = Some(Arc::new(f)))
    }

    /// Calls `f` at every change of state, once per change, in order, never two at a time,
    /// and outside the circuit's lock (so `f` may read the breaker). Keep it short: it runs on
    /// the task whose call caused the change.
    pub fn on_state_change(self, f: impl Fn(&StateChange) + Send + Sync + 'static) -> Self {
        self.configure(|c| c.hook = Some(Arc::new(f)))
    }

    /// Turns on the serve-stale fallback; see [`ServeStale`].
    pub fn serve_stale(self, settings: ServeStale) -> Self {
        self.configure(|c| c.stale = Some(settings))
    }

    /// Bounds the number of circuits kept (default [`DEFAULT_MAX_CIRCUITS`]).
    pub fn max_circuits(self, n: usize) -> Self {
        self.configure(|c| c.max_circuits = n.max(1))
    }

    /// The wrapped Doer.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }

    /// The key of the circuit `req` goes through.
    pub fn key_for(&self, req: &Request) -> String {
        self.shared.key_for(req)
    }

    /// The state of the circuit named `key` now ([`Closed`](State::Closed) for a circuit that
    /// has seen no call).
    pub fn state(&self, key: &str) -> State {
        match self.shared.find(key) {
            Some(c) => c.state(
                Instant::now(),
                &self.shared.config.policy,
                &self.shared.events,
            ),
            None => State::Closed,
        }
    }

    /// The state and counts of the circuit named `key`, if it has seen a call.
    pub fn snapshot(&self, key: &str) -> Option<Snapshot> {
        let circuit = self.shared.find(key)?;
        Some(circuit.snapshot(
            Instant::now(),
            &self.shared.config.policy,
            &self.shared.events,
        ))
    }

    /// Snapshots of every circuit, sorted by key.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        let now = Instant::now();
        let shared = &*self.shared;
        let mut all: Vec<Snapshot> = shared
            .circuits()
            .iter()
            .map(|c| c.snapshot(now, &shared.config.policy, &shared.events))
            .collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// How many answers the serve-stale cache holds, and their size in bytes (`(0, 0)` without
    /// [`serve_stale`](Self::serve_stale)).
    pub fn stale_usage(&self) -> (usize, usize) {
        self.shared.stale.as_ref().map_or((0, 0), StaleCache::usage)
    }
}

fn refused(req: &Request, state: State, wait: Duration) -> Error {
    let what = match state {
        State::HalfOpen => "circuit half-open and its probe slots are taken",
        _ => "circuit open",
    };
    Error::from(ErrorKind::BreakerOpen)
        .with_message(format!(
            "{what}; next probe allowed in {:.1} s",
            wait.as_secs_f64()
        ))
        .with_url(req.uri())
        .with_retry_after(wait)
}

#[async_trait]
impl<D: Doer> Doer for Breaker<D> {
    async fn execute(&self, mut req: Request) -> Result<Response, Error> {
        let shared = &*self.shared;
        let policy = &shared.config.policy;
        let circuit = shared.circuit_for(&req);
        let lookup = shared.stale.as_ref().and_then(|s| s.lookup(&req));
        let ticket = match circuit.admit(policy, &shared.events) {
            Admission::Admitted(ticket) => ticket,
            Admission::Rejected(wait) => {
                if let (Some(cache), Some(lookup)) = (&shared.stale, &lookup)
                    && let Some(resp) = cache.get(lookup, Instant::now(), StaleReason::Rejected)
                {
                    tracing::debug!(
                        target: "http_doer::breaker",
                        key = &**circuit.key(),
                        "circuit refused the call; served a stale answer"
                    );
                    return Ok(resp);
                }
                tracing::debug!(
                    target: "http_doer::breaker",
                    key = &**circuit.key(),
                    retry_after_ms = wait.as_millis() as u64,
                    "circuit refused the call"
                );
                return Err(refused(&req, circuit.quick_state(), wait));
            }
        };
        if ticket.is_probe() {
            req.extensions_mut().insert(Probe);
        }
        let mut permit = Permit {
            circuit: &circuit,
            ticket: Some(ticket),
        };
        let result = self.inner.execute(req).await;
        let outcome = (shared.config.classify)(&result);
        let done = Instant::now();
        // A good head whose body streams: the call is only known to be good once the body has
        // ended (see `watch`). A replayable response body (a test double's) is not tapped, and
        // is counted and cached as today: at once, and never kept.
        let streamed = matches!(
            (&result, outcome),
            (Ok(resp), Outcome::Success) if resp.body().is_stream() && !resp.body().is_replayable()
        );
        let mut count = None;
        if let Some(ticket) = permit.ticket.take() {
            if streamed && !ticket.is_probe() {
                count = Some(Count::Deferred(ticket));
            } else {
                let left = circuit.record(ticket, outcome, done, policy, &shared.events);
                count = left.filter(|_| streamed).map(Count::After);
            }
        }
        let mut tee = None;
        if let (Some(cache), Some(lookup)) = (&shared.stale, lookup) {
            match (&result, outcome) {
                (Ok(resp), Outcome::Success) if streamed => {
                    tee = cache
                        .begin(lookup, resp, done)
                        .map(|pending| Tee::new(pending, resp.body().len()));
                }
                (Ok(resp), Outcome::Success) => cache.store(lookup, resp, done),
                (_, Outcome::Failure) if cache.on_failure() => {
                    if let Some(resp) = cache.get(&lookup, done, StaleReason::Failed) {
                        tracing::debug!(
                            target: "http_doer::breaker",
                            key = &**circuit.key(),
                            "call failed; served a stale answer"
                        );
                        return Ok(resp);
                    }
                }
                _ => {}
            }
        }
        // Only a streamed answer is watched: a buffered call clones no shared `Arc`.
        match result {
            Ok(resp) if count.is_some() || tee.is_some() => {
                let watch = Watch::new(self.shared.clone(), circuit.clone(), count, tee);
                Ok(watch.attach(resp))
            }
            other => other,
        }
    }
}

impl<D: Clone> Clone for Breaker<D> {
    fn clone(&self) -> Self {
        Breaker {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<D: fmt::Debug> fmt::Debug for Breaker<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.shared.config;
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("policy", &config.policy)
            .field("serve_stale", &config.stale)
            .field("custom_key", &config.key_fn.is_some())
            .field("max_circuits", &config.max_circuits)
            .finish()
    }
}
