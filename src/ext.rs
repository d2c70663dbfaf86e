//! [`DoerExt`]: adapters that make a stack of decorators read top-down.

use std::sync::Arc;

use crate::Doer;
use crate::signing::{Signer, Signing};

/// Adapters for every [`Doer`]: one per decorator, plus [`boxed`](DoerExt::boxed) and
/// [`shared`](DoerExt::shared).
///
/// Each adapter wraps the Doer it is called on, so a chain starts at the network and each
/// call adds the next layer *outside*: the last adapter in the chain is the first to see a
/// request. The recommended stack, written in that order:
///
/// ```
/// use std::sync::Arc;
/// use http_doer::{Doer, DoerExt, signing::Bearer, testing::ScriptedDoer};
///
/// # fn main() -> Result<(), http_doer::Error> {
/// let backend = ScriptedDoer::new(); // `ReqwestDoer::new()` in production
/// let stack: Arc<dyn Doer> = backend
///     .signing(Bearer::new("token")?) // innermost: every attempt signed anew
///     .breaker() // per host, sees every copy and attempt
///     .hedging() // copies of slow GETs
///     .retrying() // under one deadline
///     .logging() // outermost: one event per call
///     .shared();
/// # let _ = stack;
/// # Ok(()) }
/// ```
pub trait DoerExt: Doer + Sized {
    /// Boxes this Doer as a trait object.
    fn boxed(self) -> Box<dyn Doer>
    where
        Self: 'static,
    {
        Box::new(self)
    }

    /// Puts this Doer behind an `Arc`, to share one stack between many clients.
    fn shared(self) -> Arc<dyn Doer>
    where
        Self: 'static,
    {
        Arc::new(self)
    }

    /// Wraps this Doer in a [`Logging`](crate::Logging) with its defaults: one `tracing` event
    /// per exchange, secrets redacted.
    fn logging(self) -> crate::Logging<Self> {
        crate::Logging::new(self)
    }

    /// Wraps this Doer in [`Retrying`](crate::Retrying) with its defaults: up to 3 retries of
    /// what is safe to repeat, exponential backoff with jitter, `Retry-After` honoured, and a
    /// retry budget of 20 % of recent calls.
    fn retrying(self) -> crate::Retrying<Self> {
        crate::Retrying::new(self)
    }

    /// Wraps this Doer in [`Hedging`](crate::Hedging): slow `GET`/`HEAD` requests get an extra
    /// copy after an adaptive delay, and the first acceptable answer wins.
    fn hedging(self) -> crate::Hedging<Self> {
        crate::Hedging::new(self)
    }

    /// Wraps this Doer in a [`Breaker`](crate::Breaker) with its defaults: one circuit per
    /// host, tripping on 5 failures in a row or a 50 % failure rate, open for 10 s.
    fn breaker(self) -> crate::Breaker<Self> {
        crate::Breaker::new(self)
    }

    /// Signs or authenticates every request with `signer` before it is sent; see [`Signing`].
    fn signing<S: Signer>(self, signer: S) -> Signing<Self, S> {
        Signing::new(self, signer)
    }

    /// Wraps this Doer in a [`Timeout`](crate::Timeout): each call fails with
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) when no answer came within `timeout`
    /// (`None`: no deadline). A streamed response's body is not covered; see `Timeout`.
    ///
    /// On `ReqwestDoer` and `UreqDoer`, `.timeout(d)` is the backend's own setter (an inherent
    /// method wins over a trait's): wrap a backend with `Timeout::new(backend, d)`, or call
    /// this after another adapter.
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::{DoerExt, testing::ScriptedDoer};
    ///
    /// let doer = ScriptedDoer::new().timeout(Duration::from_secs(5)).retrying();
    /// assert_eq!(doer.get_ref().duration(), Some(Duration::from_secs(5)));
    /// ```
    fn timeout(self, timeout: impl Into<Option<std::time::Duration>>) -> crate::Timeout<Self> {
        crate::Timeout::new(self, timeout)
    }

    /// Wraps this Doer in [`Chaos`](crate::Chaos), which injects nothing until told what to
    /// inject (latency, faults, outcomes) and at what rate. Put it directly over the backend.
    ///
    /// ```
    /// use http_doer::{DoerExt, ErrorKind, testing::ScriptedDoer};
    ///
    /// let doer = ScriptedDoer::new().chaos().fault(0.3, ErrorKind::Connect).seed(7).retrying();
    /// # let _ = doer;
    /// ```
    fn chaos(self) -> crate::Chaos<Self> {
        crate::Chaos::new(self)
    }

    /// Wraps this Doer in [`RateLimiting`](crate::RateLimiting): at most `rate` calls per host,
    /// waiting up to 30 s for a place, and paced to the quota the server publishes (429 +
    /// `Retry-After`, `RateLimit`, `X-RateLimit-*`). Put it inside `retrying()`, so that it
    /// paces attempts, which is what a server's quota counts.
    ///
    /// ```
    /// use http_doer::{DoerExt, limit::Rate, testing::ScriptedDoer};
    ///
    /// let doer = ScriptedDoer::new().rate_limiting(Rate::per_second(10).burst(5)).retrying();
    /// # let _ = doer;
    /// ```
    fn rate_limiting(self, rate: crate::limit::Rate) -> crate::RateLimiting<Self> {
        crate::RateLimiting::new(self, rate)
    }

    /// Wraps this Doer in a [`ConcurrencyLimit`](crate::ConcurrencyLimit): at most
    /// `max_in_flight` calls per host at once, up to 64 more waiting at most 10 s for a slot.
    /// Put it inside `retrying()`, so that a call sleeping out its backoff holds no slot.
    ///
    /// ```
    /// use http_doer::{DoerExt, testing::ScriptedDoer};
    ///
    /// let doer = ScriptedDoer::new().concurrency_limit(16);
    /// assert_eq!(doer.max_in_flight(), 16);
    /// let stack = doer.retrying();
    /// # let _ = stack;
    /// ```
    fn concurrency_limit(self, max_in_flight: usize) -> crate::ConcurrencyLimit<Self> {
        crate::ConcurrencyLimit::new(self, max_in_flight)
    }

    /// Wraps this Doer in [`Telemetry`](crate::Telemetry): one OpenTelemetry client span per
    /// exchange, and (feature `metrics`) its duration. Put it under `retrying()` and
    /// `hedging()`, so that every attempt and hedge copy is its own span.
    ///
    /// ```
    /// use http_doer::{DoerExt, testing::ScriptedDoer};
    ///
    /// let doer = ScriptedDoer::new().telemetry().breaker().hedging().retrying().logging();
    /// # let _ = doer;
    /// ```
    fn telemetry(self) -> crate::Telemetry<Self> {
        crate::Telemetry::new(self)
    }

    /// Wraps this Doer in [`PropagateContext`](crate::telemetry::PropagateContext), which
    /// writes the current trace context (`traceparent`, `tracestate`) into each request. Put
    /// it directly under `telemetry()`.
    ///
    /// ```
    /// use http_doer::{DoerExt, testing::ScriptedDoer};
    ///
    /// let doer = ScriptedDoer::new().propagate_context().telemetry().hedging().retrying();
    /// # let _ = doer;
    /// ```
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    fn propagate_context(self) -> crate::telemetry::PropagateContext<Self> {
        crate::telemetry::PropagateContext::new(self)
    }
}

impl<D: Doer> DoerExt for D {}
