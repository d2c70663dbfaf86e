//! [`Breaker`]: a circuit breaker per host that can answer with the last good response.
//!
//! * [`State`]: closed, open, half-open, with generations; [`Snapshot`] and [`Counts`] to
//!   read them; [`StateChange`] for the hook;
//! * the policy: when to trip, how long to stay open, how to probe (the `DEFAULT_*` constants);
//! * [`Verdict`] and [`default_verdict`]: what counts as a failure;
//! * [`ServeStale`]: the fallback that answers with the last good response, marked
//!   [`StaleAnswer`];
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
mod fleet;
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

pub use classify::{Verdict, default_verdict};
pub use events::StateChange;
pub use key::host_key;
pub use policy::{
    DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_FAILURE_RATIO, DEFAULT_HALF_OPEN_PROBES,
    DEFAULT_MIN_CALLS, DEFAULT_OPEN_DURATION, DEFAULT_PROBE_TIMEOUT, DEFAULT_WINDOW,
};
pub use stale::{
    DEFAULT_STALE_MAX_BYTES, DEFAULT_STALE_MAX_ENTRIES, NoStale, ServeStale, StaleAnswer,
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
/// about 3 KiB, mostly its per-thread stripes of counters, each on cache lines of its own).
/// Past it, circuits with no call in flight that are not refusing calls (closed, or past their
/// open period) are dropped to make room: their counts start again from zero if the host comes
/// back. Circuits refusing calls and busy ones are kept, even past the bound, for this
/// replica's own calls; news from a [fleet](crate::fleet) makes no circuit past it.
pub const DEFAULT_MAX_CIRCUITS: usize = 4096;

/// The old name of [`Verdict`].
#[deprecated(note = "renamed `Verdict` (`logging::Outcome` is another idea)")]
pub type Outcome = Verdict;

/// The old name of [`default_verdict`].
#[deprecated(note = "renamed `default_verdict`")]
pub fn default_outcome(result: &Result<Response, Error>) -> Verdict {
    default_verdict(result)
}

/// The old name of [`StaleAnswer`].
#[deprecated(note = "renamed `StaleAnswer` (`ServeStale` is the setting)")]
pub type ServedStale = StaleAnswer;

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
/// * **Closed**: calls go through and each is counted by its [verdict](Verdict). The circuit
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
/// A failure is, [by default](default_verdict), a connect, transport, body or timeout error, or
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
/// # Settings and shared state
///
/// Builder methods set the settings; [`new`](Self::new) makes the state, once: the circuits,
/// the serve-stale cache, and the queue that keeps hook calls in order. Clones share that
/// state (a clone is another handle on the same breaker, as with `Hedging`'s counters or a
/// `reqwest::Client`), so configure first, then clone:
///
/// * on a breaker nobody else shares, a builder method changes the settings in place and
///   keeps the state, so a chain of builder calls still makes one state. Circuits that calls
///   have already made keep their counts, except after [`window`](Self::window) or
///   [`key_by`](Self::key_by), which drop them (their window length, or their keys, no longer
///   fit); [`serve_stale`](Self::serve_stale) starts an empty cache and
///   [`on_state_change`](Self::on_state_change) swaps the hook.
/// * on a breaker that has been cloned (or whose streamed answer is still being read), the
///   settings its clones use cannot change under them: the builder method returns a breaker
///   with the new settings and **fresh state of its own**, and the clones keep theirs.
///
/// ```
/// use http_doer::{Breaker, testing::ScriptedDoer};
///
/// let breaker = Breaker::new(ScriptedDoer::new()).consecutive_failures(3).max_circuits(64);
/// let handle = breaker.clone(); // shares circuits and cache with `breaker`
/// let other = handle.clone().consecutive_failures(10); // its own state from here on
/// # let _ = (breaker, other);
/// ```
///
/// ```
/// use std::time::Duration;
/// use http_doer::{Body, Doer, DoerExt, ErrorKind, testing::{ScriptedDoer, response}};
/// use http_doer::breaker::{ServeStale, StaleAnswer, State};
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
/// assert!(stale.extensions().get::<StaleAnswer>().is_some());
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
    /// The fleet's store, when circuits are shared.
    fleet: Option<Arc<dyn crate::fleet::CircuitStore>>,
}

struct Shared {
    /// Unique per `Shared`, for the per-thread circuit cache.
    id: u64,
    config: Config,
    events: Events,
    stale: Option<Arc<StaleCache>>,
    circuits: RwLock<HashMap<Arc<str>, Handles>>,
    link: Option<fleet::Link>,
}

/// The part of a [`Shared`] that a settings change invalidates.
#[derive(Clone, Copy)]
enum Reshape {
    /// Read on every call: nothing to remake.
    Nothing,
    /// Fixed in each circuit when it is made (its window), or how circuits are found (keys).
    Circuits,
    /// The hook.
    Events,
    /// The serve-stale cache's settings.
    Stale,
}

fn next_id() -> u64 {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

impl Shared {
    /// The state for `config`, attached to its fleet store if it has one (the store holds it
    /// weakly: a breaker dropped is forgotten).
    fn new(config: Config) -> Arc<Self> {
        let link = config.fleet.clone().map(fleet::FleetLink::new);
        Arc::new_cyclic(|me: &std::sync::Weak<Shared>| {
            if let Some(link) = &link {
                link.attach(me.clone());
            }
            let stale = config.stale.clone().map(|s| Arc::new(StaleCache::new(s)));
            Shared {
                id: next_id(),
                events: Events::new(config.hook.clone(), link.clone())
                    .on_open(StaleCache::fetcher(stale.as_ref())),
                stale,
                circuits: RwLock::new(HashMap::new()),
                link,
                config,
            }
        })
    }

    /// Remakes what a change of the settings in `part` left out of date; only called while
    /// nothing else holds this state, so no call is in flight.
    fn reshape(&mut self, part: Reshape) {
        match part {
            Reshape::Nothing => {}
            Reshape::Circuits => {
                let circuits = self.circuits.get_mut().unwrap_or_else(|p| p.into_inner());
                if !circuits.is_empty() {
                    circuits.clear();
                    // Threads cache their last circuit by breaker id: a new id makes them miss.
                    self.id = next_id();
                }
            }
            Reshape::Events => self.remake_events(),
            Reshape::Stale => {
                self.stale = self
                    .config
                    .stale
                    .clone()
                    .map(|s| Arc::new(StaleCache::new(s)));
                // A shared cache is fetched into when a circuit opens: the new one.
                self.remake_events();
            }
        }
    }

    fn remake_events(&mut self) {
        self.events = Events::new(self.config.hook.clone(), self.link.clone())
            .on_open(StaleCache::fetcher(self.stale.as_ref()));
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
        self.insert_within(key, false)
            .expect("an unbounded insert always makes a circuit")
    }

    /// Makes the circuit `key` if there is room for it within `max_circuits` (after dropping
    /// idle circuits), or always when not `bounded`: a call of this replica's own needs its
    /// circuit, while news from the fleet for a host this replica has no circuit for can be
    /// let go (anyone who can publish on the fleet's channel could otherwise grow the map).
    fn insert_within(&self, key: String, bounded: bool) -> Option<Arc<Handle>> {
        let mut map = self.circuits.write().unwrap_or_else(|p| p.into_inner());
        if let Some(handles) = map.get(key.as_str()) {
            return Some(handles.mine());
        }
        if map.len() >= self.config.max_circuits {
            // Only the map holds an idle circuit. One that is not refusing calls loses little
            // when dropped: a closed one its counts, one past its open period a probe.
            let now = Instant::now();
            map.retain(|_, h| h.in_use() || h.circuit().holds_calls_back(now));
            if bounded && map.len() >= self.config.max_circuits {
                return None;
            }
        }
        let key: Arc<str> = Arc::from(key);
        let handles = Handles::new(Circuit::new(
            key.clone(),
            Instant::now(),
            &self.config.policy,
        ));
        let mine = handles.mine();
        map.insert(key, handles);
        Some(mine)
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
    /// A breaker with the defaults above and no serve-stale fallback. Its state (circuits,
    /// cache) is made here, once, and shared by its clones.
    pub fn new(inner: D) -> Self {
        let config = Config {
            policy: Policy::default(),
            classify: Arc::new(default_verdict),
            key_fn: None,
            hook: None,
            stale: None,
            max_circuits: DEFAULT_MAX_CIRCUITS,
            fleet: None,
        };
        Breaker {
            inner,
            shared: Shared::new(config),
        }
    }

    /// Changes the settings; see [Settings and shared state](Self#settings-and-shared-state).
    fn configure(mut self, part: Reshape, f: impl FnOnce(&mut Config)) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => {
                f(&mut shared.config);
                shared.reshape(part);
            }
            // Clones use these settings: they keep them, and this breaker starts its own state.
            None => {
                let mut config = self.shared.config.clone();
                f(&mut config);
                self.shared = Shared::new(config);
            }
        }
        self
    }

    /// Trips after `n` failures in a row (default [`DEFAULT_CONSECUTIVE_FAILURES`], 5); 0 turns
    /// this rule off.
    ///
    /// ```
    /// use http_doer::{Body, Breaker, Doer, breaker::State, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
    /// let host = ScriptedDoer::new().then_status(500).then_status(500);
    /// let breaker = Breaker::new(host).consecutive_failures(2);
    /// for _ in 0..2 {
    ///     let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    ///     assert_eq!(breaker.execute(req).await.unwrap().status(), 500);
    /// }
    /// assert_eq!(breaker.state("https://api.test"), State::Open);
    /// # });
    /// ```
    pub fn consecutive_failures(self, n: u32) -> Self {
        self.configure(Reshape::Nothing, |c| c.policy.consecutive_failures = n)
    }

    /// Trips when at least `ratio` of the calls in the [window](Self::window) failed, once the
    /// window holds at least `min_calls` calls (defaults [`DEFAULT_FAILURE_RATIO`], 0.5, and
    /// [`DEFAULT_MIN_CALLS`], 20). A ratio that is not in `(0, 1]` (or NaN) turns this rule off.
    ///
    /// ```
    /// use http_doer::{Breaker, testing::ScriptedDoer};
    ///
    /// // A host behind a load balancer: trip when a quarter of 50 or more calls fail, even if
    /// // never 5 in a row.
    /// let breaker = Breaker::new(ScriptedDoer::new()).failure_rate(0.25, 50);
    /// // Only the run of consecutive failures trips this one.
    /// let simple = Breaker::new(ScriptedDoer::new()).failure_rate(0.0, 0);
    /// # let _ = (breaker, simple);
    /// ```
    pub fn failure_rate(self, ratio: f64, min_calls: u32) -> Self {
        let ratio = (ratio > 0.0 && ratio <= 1.0).then_some(ratio);
        self.configure(Reshape::Nothing, |c| {
            c.policy.failure_ratio = ratio;
            c.policy.min_calls = min_calls;
        })
    }

    /// The length of the rolling window the failure rate is measured over (default
    /// [`DEFAULT_WINDOW`], 30 s), kept as ten buckets.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Breaker, testing::ScriptedDoer};
    ///
    /// // Judge the failure rate on the last 2 minutes, for a host with little traffic.
    /// let breaker = Breaker::new(ScriptedDoer::new())
    ///     .window(Duration::from_secs(120))
    ///     .failure_rate(0.5, 10);
    /// # let _ = breaker;
    /// ```
    pub fn window(self, length: Duration) -> Self {
        self.configure(Reshape::Circuits, |c| c.policy.window = length)
    }

    /// How long a tripped circuit stays open before it lets a probe through (default
    /// [`DEFAULT_OPEN_DURATION`], 10 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Body, Breaker, Doer, ErrorKind, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
    /// let host = ScriptedDoer::new().then_status(503).then_status(200);
    /// let breaker = Breaker::new(host)
    ///     .consecutive_failures(1)
    ///     .open_duration(Duration::from_secs(2));
    /// let get = || http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    ///
    /// breaker.execute(get()).await.unwrap(); // 503: trips
    /// let refused = breaker.execute(get()).await.unwrap_err();
    /// assert_eq!(refused.kind(), ErrorKind::BreakerOpen);
    /// assert_eq!(refused.retry_after(), Some(Duration::from_secs(2)));
    ///
    /// tokio::time::advance(Duration::from_secs(2)).await;
    /// assert_eq!(breaker.execute(get()).await.unwrap().status(), 200); // the probe
    /// # });
    /// ```
    pub fn open_duration(self, d: Duration) -> Self {
        self.configure(Reshape::Nothing, |c| c.policy.open_duration = d)
    }

    /// Makes the open period grow while failures go on: each failed half-open period
    /// multiplies it by `factor`, up to `max`; closing the circuit resets it. Off by default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Breaker, testing::ScriptedDoer};
    ///
    /// // 10 s, then 20 s, 40 s, ... up to 5 minutes while the host stays down.
    /// let breaker = Breaker::new(ScriptedDoer::new()).open_growth(2.0, Duration::from_secs(300));
    /// # let _ = breaker;
    /// ```
    pub fn open_growth(self, factor: f64, max: Duration) -> Self {
        self.configure(Reshape::Nothing, |c| c.policy.growth = Some((factor, max)))
    }

    /// How many probes a half-open circuit lets through, and how many must succeed to close it
    /// (default [`DEFAULT_HALF_OPEN_PROBES`], 1; 0 is taken as 1).
    ///
    /// ```
    /// use http_doer::{Breaker, testing::ScriptedDoer};
    ///
    /// // Three good probes in a row before the host gets its full traffic back.
    /// let breaker = Breaker::new(ScriptedDoer::new()).half_open_probes(3);
    /// # let _ = breaker;
    /// ```
    pub fn half_open_probes(self, k: u32) -> Self {
        self.configure(Reshape::Nothing, |c| c.policy.half_open_probes = k.max(1))
    }

    /// After how long a probe that has not returned gives its slot to the next call (default
    /// [`DEFAULT_PROBE_TIMEOUT`], 30 s). Its verdict, when it comes, is not counted.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Breaker, testing::ScriptedDoer};
    ///
    /// // Calls through this breaker take at most 5 s: a probe silent for longer is hung.
    /// let breaker = Breaker::new(ScriptedDoer::new()).probe_timeout(Duration::from_secs(5));
    /// # let _ = breaker;
    /// ```
    pub fn probe_timeout(self, d: Duration) -> Self {
        self.configure(Reshape::Nothing, |c| c.policy.probe_timeout = d)
    }

    /// Decides what counts as a failure (default: [`default_verdict`]).
    ///
    /// ```
    /// use http_doer::{Breaker, breaker::{Verdict, default_verdict}, testing::ScriptedDoer};
    ///
    /// // Count 429 Too Many Requests as a failure too.
    /// let breaker = Breaker::new(ScriptedDoer::new()).classify(|result| match result {
    ///     Ok(resp) if resp.status() == 429 => Verdict::Failure,
    ///     other => default_verdict(other),
    /// });
    /// # let _ = breaker;
    /// ```
    pub fn classify(
        self,
        f: impl Fn(&Result<Response, Error>) -> Verdict + Send + Sync + 'static,
    ) -> Self {
        self.configure(Reshape::Nothing, |c| c.classify = Arc::new(f))
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
        self.configure(Reshape::Circuits, |c| c.key_fn = Some(Arc::new(f)))
    }

    /// Calls `f` at every change of state, once per change, in order, never two at a time,
    /// and outside the circuit's lock (so `f` may read the breaker). Keep it short: it runs on
    /// the task whose call caused the change. None by default (changes still go to
    /// `tracing`).
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use http_doer::{Body, Breaker, Doer, breaker::State, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let breaker = Breaker::new(ScriptedDoer::new().then_status(503))
    ///     .consecutive_failures(1)
    ///     .on_state_change(move |change| log.lock().unwrap().push((change.from, change.to)));
    ///
    /// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// breaker.execute(req).await.unwrap();
    /// assert_eq!(*seen.lock().unwrap(), [(State::Closed, State::Open)]);
    /// # });
    /// ```
    pub fn on_state_change(self, f: impl Fn(&StateChange) + Send + Sync + 'static) -> Self {
        self.configure(Reshape::Events, |c| c.hook = Some(Arc::new(f)))
    }

    /// Turns on the serve-stale fallback (off by default); see [`ServeStale`], and
    /// [`StaleAnswer`] for the mark on what it serves.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{Breaker, breaker::ServeStale, testing::ScriptedDoer};
    ///
    /// // While the host is refused, answer GETs with what it said in the last 5 minutes.
    /// let breaker = Breaker::new(ScriptedDoer::new())
    ///     .serve_stale(ServeStale::new(Duration::from_secs(300)).max_entries(500));
    /// # let _ = breaker;
    /// ```
    pub fn serve_stale(self, settings: ServeStale) -> Self {
        self.configure(Reshape::Stale, |c| c.stale = Some(settings))
    }

    /// Bounds the number of circuits kept (default [`DEFAULT_MAX_CIRCUITS`], 4096; 0 is taken
    /// as 1).
    ///
    /// ```
    /// use http_doer::{Breaker, testing::ScriptedDoer};
    ///
    /// // A client that talks to a handful of hosts needs few circuits.
    /// let breaker = Breaker::new(ScriptedDoer::new()).max_circuits(16);
    /// # let _ = breaker;
    /// ```
    pub fn max_circuits(self, n: usize) -> Self {
        self.configure(Reshape::Nothing, |c| c.max_circuits = n.max(1))
    }

    /// Shares this breaker's circuits with the other replicas of a fleet through `store`
    /// (such as a [`RedisFleet`](crate::fleet::RedisFleet), feature `redis`); see
    /// [`fleet`](crate::fleet) for what is shared. Off by default. It gives the breaker fresh
    /// state of its own, attached to the store.
    ///
    /// A call never waits on the store: a closed circuit admits and counts its calls as
    /// without one; failures and changes of state are queued for the store; and what the
    /// fleet decides is applied to the circuits as it arrives. When the store cannot reach its
    /// backend, the breaker acts alone.
    ///
    /// ```
    /// use std::sync::{Arc, Weak};
    /// use std::time::Duration;
    /// use http_doer::{Breaker, fleet::{CircuitSink, CircuitStore, ProbeLease, Trip}, testing::ScriptedDoer};
    ///
    /// /// A store that shares nothing: the breaker behaves as it would alone.
    /// #[derive(Debug)]
    /// struct Alone;
    /// impl CircuitStore for Alone {
    ///     fn attach(&self, _: Weak<dyn CircuitSink>) -> u64 { 1 }
    ///     fn opened(&self, _: u64, _: &str, _: Duration) {}
    ///     fn closed(&self, _: u64, _: &str) {}
    ///     fn failed(&self, _: u64, _: &str, _: Trip) {}
    ///     fn recovered(&self, _: u64, _: &str) {}
    ///     fn probe(&self, _: &str) -> ProbeLease { ProbeLease::Local }
    /// }
    ///
    /// let breaker = Breaker::new(ScriptedDoer::new()).fleet(Arc::new(Alone));
    /// # let _ = breaker;
    /// ```
    pub fn fleet(mut self, store: Arc<dyn crate::fleet::CircuitStore>) -> Self {
        let mut config = self.shared.config.clone();
        config.fleet = Some(store);
        self.shared = Shared::new(config);
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

    /// Unwraps the inner Doer. Clones of this breaker keep the state they share.
    pub fn into_inner(self) -> D {
        self.inner
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
        self.shared.stale.as_ref().map_or((0, 0), |s| s.usage())
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
        let mut admission = circuit.admit(policy, &shared.events);
        // A half-open probe goes through only if this replica holds the fleet's probe lease.
        if let (Admission::Admitted(ticket), Some(link)) = (&admission, &shared.link)
            && ticket.is_probe()
            && let crate::fleet::ProbeLease::Elsewhere(wait) = link.probe(circuit.key())
        {
            circuit.unadmit(*ticket);
            admission = Admission::Rejected(wait);
        }
        let ticket = match admission {
            Admission::Admitted(ticket) => ticket,
            Admission::Rejected(wait) => {
                if let (Some(cache), Some(lookup)) = (&shared.stale, &lookup)
                    && let Some(resp) = cache.get(lookup, Instant::now(), StaleReason::Rejected)
                {
                    crate::telemetry::event(crate::telemetry::names::EVENT_STALE_ANSWER);
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
                crate::telemetry::event(crate::telemetry::names::EVENT_BREAKER_REJECTED);
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
            (Ok(resp), Verdict::Success) if resp.body().is_stream() && !resp.body().is_replayable()
        );
        if let Some(link) = &shared.link {
            match outcome {
                Verdict::Failure => link.failed(&circuit, fleet::trip(policy)),
                Verdict::Success => link.succeeded(&circuit),
                Verdict::Ignored => {}
            }
        }
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
                (Ok(resp), Verdict::Success) if streamed => {
                    tee = cache
                        .begin_in(lookup, resp, done, circuit.key())
                        .map(|pending| Tee::new(pending, resp.body().len()));
                }
                (Ok(resp), Verdict::Success) => cache.store_in(lookup, resp, done, circuit.key()),
                (_, Verdict::Failure) if cache.on_failure() => {
                    if let Some(resp) = cache.get(&lookup, done, StaleReason::Failed) {
                        crate::telemetry::event(crate::telemetry::names::EVENT_STALE_ANSWER);
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

// The classifier and the hook are closures: they are left out (`..`).
impl<D: fmt::Debug> fmt::Debug for Breaker<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.shared.config;
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("policy", &config.policy)
            .field("serve_stale", &config.stale)
            .field("custom_key", &config.key_fn.is_some())
            .field("max_circuits", &config.max_circuits)
            .finish_non_exhaustive()
    }
}
