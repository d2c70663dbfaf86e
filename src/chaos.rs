//! [`Chaos`]: inject latency, faults and outcomes, to prove that a stack survives them.
//!
//! * [`Chaos`]: the decorator, with its builder.
//! * [`ChaosSwitch`]: turns injection on and off at run time, shared by every clone.
//! * [`Injected`]: the mark on every injected error (its source) and response (an extension).
//! * [`ChaosStats`]: counters, from [`Chaos::stats`].
//! * [`DEFAULT_ENABLED`]: whether a new switch starts on.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::seeds::Seeds;
use crate::{Body, Doer, Error, ErrorKind, Request, Response};

/// Whether a new [`ChaosSwitch`] (and so a new [`Chaos`]) starts on: yes, since a `Chaos` is
/// only built to inject; a staging build that keeps it compiled in starts it with
/// [`ChaosSwitch::disabled`] and turns it on when a drill begins.
pub const DEFAULT_ENABLED: bool = true;

type Filter = Arc<dyn Fn(&Request) -> bool + Send + Sync>;

/// The mark of an injection.
///
/// * On an injected error: its [`source`](StdError::source), whose `Display` says the request
///   was not sent (the error's own message says `injected by Chaos`);
/// * on an injected response: an extension, [`Injected::Outcome`];
/// * on a real response that was delayed: an extension, [`Injected::Latency`].
///
/// ```
/// use http_doer::chaos::Injected;
///
/// # fn check(err: &http_doer::Error) -> bool {
/// // Was this failure real?
/// Injected::of(err).is_none()
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Injected {
    /// The request waited this long before it went on.
    Latency(Duration),
    /// The request was not sent: it failed with this kind of error.
    Fault(ErrorKind),
    /// The request was not sent: it was answered with this status.
    Outcome(StatusCode),
}

impl Injected {
    /// The mark of an error injected by [`Chaos`], found anywhere in its source chain (a
    /// decorator above may have wrapped it).
    pub fn of(err: &Error) -> Option<&Injected> {
        crate::error::chain(err.source()).find_map(|e| e.downcast_ref::<Injected>())
    }
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Injected::Latency(d) => write!(f, "{d:?} of latency injected by Chaos"),
            Injected::Fault(_) => f.write_str("not a real failure: the request was not sent"),
            Injected::Outcome(s) => write!(f, "a {s} injected by Chaos; the request was not sent"),
        }
    }
}

impl StdError for Injected {}

/// A shared on/off switch for [`Chaos`]: every clone flips the same state, so a staging build
/// can keep chaos compiled in and turn it on for a drill (from an admin endpoint, a signal, a
/// config reload) without a restart.
///
/// ```
/// use http_doer::{DoerExt, ErrorKind, chaos::ChaosSwitch, testing::ScriptedDoer};
///
/// let switch = ChaosSwitch::disabled();
/// let doer = ScriptedDoer::new().chaos().fault(0.1, ErrorKind::Connect).switch(switch.clone());
/// assert!(!doer.current_switch().is_enabled());
/// switch.enable(); // the drill begins
/// assert!(doer.current_switch().is_enabled());
/// ```
#[derive(Clone, Debug)]
pub struct ChaosSwitch {
    on: Arc<AtomicBool>,
}

impl ChaosSwitch {
    /// A switch that starts as [`DEFAULT_ENABLED`] (on).
    pub fn new() -> Self {
        Self::starting(DEFAULT_ENABLED)
    }

    /// A switch that starts off.
    pub fn disabled() -> Self {
        Self::starting(false)
    }

    fn starting(on: bool) -> Self {
        ChaosSwitch {
            on: Arc::new(AtomicBool::new(on)),
        }
    }

    /// Turns injection on.
    pub fn enable(&self) {
        self.set(true);
    }

    /// Turns injection off: every request passes through untouched.
    pub fn disable(&self) {
        self.set(false);
    }

    /// Turns injection on or off.
    pub fn set(&self, on: bool) {
        self.on.store(on, Relaxed);
    }

    /// Whether injection is on.
    pub fn is_enabled(&self) -> bool {
        self.on.load(Relaxed)
    }
}

impl Default for ChaosSwitch {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`Chaos`] did, counted since it was built (shared by clones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChaosStats {
    /// Requests seen, selected or not.
    pub calls: u64,
    /// Requests delayed.
    pub delayed: u64,
    /// Requests failed with an injected error.
    pub faults: u64,
    /// Requests answered with an injected response.
    pub outcomes: u64,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    delayed: AtomicU64,
    faults: AtomicU64,
    outcomes: AtomicU64,
}

/// What replaces a call.
#[derive(Clone, Debug)]
enum Replace {
    Fault(ErrorKind),
    Outcome(StatusCode, Bytes),
}

/// A [`Doer`] that injects latency, faults and outcomes into a share of the requests it
/// passes on, to check that the layers above keep their promises when the network does not
/// (Polly's chaos strategies).
///
/// For each request the [filter](Self::filter) selects, while the [switch](ChaosSwitch) is on:
///
/// 1. each [latency](Self::latency) rule, drawn at its own rate, adds its delay (through
///    `tokio::time`, so tests run with paused time);
/// 2. one draw picks at most one [fault](Self::fault) or [outcome](Self::outcome), at their
///    rates (which add up: `fault(0.2, ..)` and `outcome(0.1, ..)` replace 30% of calls;
///    past 1 in all, the later rules are cut short). A fault fails the call with an error of
///    that kind; an outcome answers with that status and body. Either way the wrapped Doer is
///    not called.
///
/// Rates are clamped to 0..=1 (a NaN is 0). Every injection is marked, so nobody mistakes it
/// for a real one: an injected error says `injected by Chaos` and has an [`Injected`] source;
/// an injected or delayed response has an [`Injected`] extension.
///
/// Draws come from a small seeded generator, one stream per call (from the
/// [seed](Self::seed) and the call's number), so a run with the same seed and the same calls
/// in the same order injects the same things.
///
/// Place it directly over the backend (or the backend's double in a test), below everything
/// else, so every layer sees the faults as it would see the network's.
///
/// ```
/// use std::time::Duration;
/// use http_doer::{Body, Doer, DoerExt, ErrorKind, chaos::Injected, testing::doer_fn, testing::response};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap()
/// #     .block_on(async {
/// let backend = doer_fn(|_req| async { Ok(response(200, "ok")) });
/// let doer = backend
///     .chaos()
///     .fault(0.2, ErrorKind::Connect) // 20% refused,
///     .outcome(0.1, 503, "down") // 10% answered 503,
///     .latency(0.5, Duration::from_secs(2)) // half of them 2 s slower
///     .seed(1);
///
/// let mut injected = 0;
/// for _ in 0..100 {
///     let req = http::Request::get("http://api.test/").body(Body::empty()).unwrap();
///     match doer.execute(req).await {
///         Err(e) => {
///             assert!(e.to_string().contains("injected by Chaos"));
///             assert_eq!(Injected::of(&e), Some(&Injected::Fault(ErrorKind::Connect)));
///             injected += 1;
///         }
///         Ok(resp) if resp.status() == 503 => {
///             assert_eq!(resp.extensions().get(), Some(&Injected::Outcome(http::StatusCode::SERVICE_UNAVAILABLE)));
///             injected += 1;
///         }
///         Ok(_) => {}
///     }
/// }
/// let stats = doer.stats();
/// assert_eq!(stats.faults + stats.outcomes, injected);
/// assert!((20..=40).contains(&injected), "{injected}");
/// # });
/// ```
pub struct Chaos<D> {
    inner: D,
    latencies: Vec<(f64, Duration)>,
    replaces: Vec<(f64, Replace)>,
    filter: Option<Filter>,
    switch: ChaosSwitch,
    seeds: Arc<Seeds>,
    counters: Arc<Counters>,
}

/// A rate clamped to 0..=1; NaN is 0.
fn rate(r: f64) -> f64 {
    if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) }
}

impl<D> Chaos<D> {
    /// Wraps `inner` with nothing to inject yet, every request selected, a switch of its own
    /// that starts [on](DEFAULT_ENABLED), and a random seed.
    pub fn new(inner: D) -> Self {
        Chaos {
            inner,
            latencies: Vec::new(),
            replaces: Vec::new(),
            filter: None,
            switch: ChaosSwitch::new(),
            seeds: Arc::new(Seeds::new(rand::random())),
            counters: Arc::default(),
        }
    }

    /// Delays `rate` of the selected requests (0.0 to 1.0) by `delay` before they go on.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{DoerExt, testing::ScriptedDoer};
    ///
    /// // One request in ten takes 3 s longer: does the hedge fire, does the deadline hold?
    /// let doer = ScriptedDoer::new().chaos().latency(0.1, Duration::from_secs(3));
    /// # let _ = doer;
    /// ```
    pub fn latency(mut self, rate: f64, delay: Duration) -> Self {
        self.latencies.push((self::rate(rate), delay));
        self
    }

    /// Fails `rate` of the selected requests (0.0 to 1.0) with an error of `kind`, without
    /// sending them.
    ///
    /// ```
    /// use http_doer::{DoerExt, ErrorKind, testing::ScriptedDoer};
    ///
    /// let doer = ScriptedDoer::new()
    ///     .chaos()
    ///     .fault(0.05, ErrorKind::Connect)
    ///     .fault(0.05, ErrorKind::Timeout);
    /// # let _ = doer;
    /// ```
    pub fn fault(mut self, rate: f64, kind: ErrorKind) -> Self {
        self.replaces.push((self::rate(rate), Replace::Fault(kind)));
        self
    }

    /// Answers `rate` of the selected requests (0.0 to 1.0) with `status` and `body`, without
    /// sending them. A status that is not one (outside 100..=999) is a 500.
    ///
    /// ```
    /// use http_doer::{DoerExt, testing::ScriptedDoer};
    ///
    /// let doer = ScriptedDoer::new().chaos().outcome(0.1, 429, r#"{"error":"slow down"}"#);
    /// # let _ = doer;
    /// ```
    pub fn outcome(mut self, rate: f64, status: u16, body: impl Into<Bytes>) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.replaces
            .push((self::rate(rate), Replace::Outcome(status, body.into())));
        self
    }

    /// Injects only into the requests `f` selects (default: all).
    ///
    /// ```
    /// use http_doer::{DoerExt, ErrorKind, testing::ScriptedDoer};
    ///
    /// // Only the payments API fails.
    /// let doer = ScriptedDoer::new()
    ///     .chaos()
    ///     .fault(0.3, ErrorKind::Transport)
    ///     .filter(|req| req.uri().host() == Some("payments.internal"));
    /// # let _ = doer;
    /// ```
    pub fn filter(mut self, f: impl Fn(&Request) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(f));
        self
    }

    /// Follows `switch` instead of a switch of its own.
    ///
    /// ```
    /// use http_doer::{DoerExt, ErrorKind, chaos::ChaosSwitch, testing::ScriptedDoer};
    ///
    /// let switch = ChaosSwitch::disabled(); // kept by the admin endpoint that flips it
    /// let doer = ScriptedDoer::new().chaos().fault(0.1, ErrorKind::Connect).switch(switch);
    /// # let _ = doer;
    /// ```
    pub fn switch(mut self, switch: ChaosSwitch) -> Self {
        self.switch = switch;
        self
    }

    /// Fixes the seed of the draws, so a run repeats (call numbers start again from 0).
    ///
    /// ```
    /// use http_doer::{DoerExt, ErrorKind, testing::ScriptedDoer};
    ///
    /// let doer = ScriptedDoer::new().chaos().fault(0.3, ErrorKind::Connect).seed(42);
    /// # let _ = doer;
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seeds = Arc::new(Seeds::new(seed));
        self
    }

    /// The switch this Chaos follows (a handle on the shared state: flipping it flips this).
    pub fn current_switch(&self) -> &ChaosSwitch {
        &self.switch
    }

    /// What was injected so far.
    pub fn stats(&self) -> ChaosStats {
        let c = &self.counters;
        ChaosStats {
            calls: c.calls.load(Relaxed),
            delayed: c.delayed.load(Relaxed),
            faults: c.faults.load(Relaxed),
            outcomes: c.outcomes.load(Relaxed),
        }
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

    /// What to do to one call: the delay, and what replaces it.
    fn draw(&self) -> (Duration, Option<&Replace>) {
        let mut rng = SmallRng::seed_from_u64(self.seeds.take());
        let mut delay = Duration::ZERO;
        for (rate, d) in &self.latencies {
            if rng.random::<f64>() < *rate {
                delay = delay.saturating_add(*d);
            }
        }
        let roll = rng.random::<f64>();
        let mut upto = 0.0;
        let replace = self.replaces.iter().find_map(|(rate, what)| {
            upto += rate;
            (roll < upto).then_some(what)
        });
        (delay, replace)
    }
}

impl<D: Clone> Clone for Chaos<D> {
    /// A clone shares the switch, the counters and the sequence of draws.
    fn clone(&self) -> Self {
        Chaos {
            inner: self.inner.clone(),
            latencies: self.latencies.clone(),
            replaces: self.replaces.clone(),
            filter: self.filter.clone(),
            switch: self.switch.clone(),
            seeds: self.seeds.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<D: fmt::Debug> fmt::Debug for Chaos<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("inner", &self.inner)
            .field("enabled", &self.switch.is_enabled())
            .field("latencies", &self.latencies)
            .field("replaces", &self.replaces)
            .field("filtered", &self.filter.is_some())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<D: Doer> Doer for Chaos<D> {
    /// # Errors
    ///
    /// An injected fault: an [`Error`] of the configured kind, marked [`Injected`]; otherwise
    /// whatever the wrapped Doer returns.
    async fn execute(&self, req: Request) -> Result<Response, Error> {
        self.counters.calls.fetch_add(1, Relaxed);
        let selected = self.switch.is_enabled() && self.filter.as_ref().is_none_or(|f| f(&req));
        if !selected {
            return self.inner.execute(req).await;
        }
        let (delay, replace) = self.draw();
        if !delay.is_zero() {
            self.counters.delayed.fetch_add(1, Relaxed);
            tokio::time::sleep(delay).await;
        }
        match replace {
            Some(Replace::Fault(kind)) => {
                self.counters.faults.fetch_add(1, Relaxed);
                Err(Error::new(*kind, Injected::Fault(*kind))
                    .with_message("injected by Chaos")
                    .with_url(req.uri()))
            }
            Some(Replace::Outcome(status, body)) => {
                self.counters.outcomes.fetch_add(1, Relaxed);
                let mut resp = Response::new(Body::from(body.clone()));
                *resp.status_mut() = *status;
                resp.extensions_mut().insert(Injected::Outcome(*status));
                Ok(resp)
            }
            None => {
                let mut resp = self.inner.execute(req).await?;
                if !delay.is_zero() {
                    resp.extensions_mut().insert(Injected::Latency(delay));
                }
                Ok(resp)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DoerExt;
    use crate::testing::{ScriptedDoer, doer_fn, response};

    fn get(path: &str) -> Request {
        http::Request::get(format!("http://c.test{path}"))
            .body(Body::empty())
            .unwrap()
    }

    fn ok() -> impl Doer + Clone + fmt::Debug {
        doer_fn(|_req: Request| async { Ok(response(200, "real")) })
    }

    /// What each of `n` calls got: `E` error, `O` outcome, `R` real.
    async fn run<D: Doer>(doer: &D, n: usize) -> String {
        let mut out = String::new();
        for _ in 0..n {
            out.push(match doer.execute(get("/")).await {
                Err(_) => 'E',
                Ok(r) if r.extensions().get::<Injected>().is_some() => 'O',
                Ok(_) => 'R',
            });
        }
        out
    }

    #[tokio::test]
    async fn the_same_seed_injects_the_same_things_and_rates_hold() {
        let make = |seed| {
            ok().chaos()
                .fault(0.2, ErrorKind::Connect)
                .outcome(0.1, 503, "x")
                .seed(seed)
        };
        let a = run(&make(1), 1000).await;
        assert_eq!(a, run(&make(1), 1000).await);
        assert_ne!(a, run(&make(2), 1000).await);
        let faults = a.matches('E').count();
        let outcomes = a.matches('O').count();
        assert!((150..=250).contains(&faults), "{faults}");
        assert!((60..=140).contains(&outcomes), "{outcomes}");
    }

    #[tokio::test]
    async fn a_fault_is_marked_and_never_sent() {
        let backend = ScriptedDoer::new();
        let doer = backend
            .clone()
            .chaos()
            .fault(1.0, ErrorKind::Timeout)
            .seed(0);
        let err = doer.execute(get("/x?token=t0k")).await.unwrap_err();
        assert!(err.is_timeout());
        assert_eq!(
            err.to_string(),
            "timed out: injected by Chaos (http://c.test/x?token=REDACTED)"
        );
        assert!(format!("{err:#}").ends_with("not a real failure: the request was not sent"));
        assert_eq!(
            Injected::of(&err),
            Some(&Injected::Fault(ErrorKind::Timeout))
        );
        assert_eq!(backend.calls(), 0);
        let real = Error::from(ErrorKind::Timeout);
        assert_eq!(Injected::of(&real), None);
    }

    #[tokio::test]
    async fn an_outcome_answers_with_its_status_and_body() {
        let doer = ScriptedDoer::new()
            .chaos()
            .outcome(1.0, 429, "slow down")
            .seed(0);
        let resp = doer.execute(get("/")).await.unwrap();
        assert_eq!(resp.status(), 429);
        assert_eq!(
            resp.extensions().get::<Injected>(),
            Some(&Injected::Outcome(StatusCode::TOO_MANY_REQUESTS))
        );
        assert_eq!(resp.into_body().text().await.unwrap(), "slow down");
        let bad = ScriptedDoer::new().chaos().outcome(1.0, 7, "").seed(0);
        assert_eq!(bad.execute(get("/")).await.unwrap().status(), 500);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_uses_tokio_time_and_marks_the_real_response() {
        let doer = ok().chaos().latency(1.0, Duration::from_secs(5)).seed(0);
        let start = tokio::time::Instant::now();
        let resp = doer.execute(get("/")).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(
            resp.extensions().get::<Injected>(),
            Some(&Injected::Latency(Duration::from_secs(5)))
        );
        assert_eq!(doer.stats().delayed, 1);
    }

    #[tokio::test]
    async fn the_switch_and_the_filter_pick_what_is_touched() {
        let switch = ChaosSwitch::disabled();
        let doer = ok()
            .chaos()
            .fault(1.0, ErrorKind::Connect)
            .filter(|req| req.uri().path() == "/flaky")
            .switch(switch.clone());
        assert!(doer.execute(get("/flaky")).await.is_ok());
        switch.enable();
        assert!(doer.execute(get("/flaky")).await.is_err());
        assert!(doer.execute(get("/solid")).await.is_ok());
        let clone = doer.clone();
        switch.disable();
        assert!(clone.execute(get("/flaky")).await.is_ok());
        let stats = doer.stats();
        assert_eq!((stats.calls, stats.faults), (4, 1));
    }

    #[test]
    fn rates_are_clamped_and_debug_shows_the_settings() {
        let doer = ok()
            .chaos()
            .fault(f64::NAN, ErrorKind::Connect)
            .outcome(7.0, 503, "");
        assert_eq!(doer.replaces[0].0, 0.0);
        assert_eq!(doer.replaces[1].0, 1.0);
        let debug = format!("{doer:?}");
        assert!(debug.starts_with("Chaos { inner: FnDoer"), "{debug}");
        assert!(debug.contains("enabled: true"), "{debug}");
        let mut doer = doer;
        let _: &mut _ = doer.get_mut();
        let _ = doer.into_inner();
    }
}
