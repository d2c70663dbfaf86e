//! Observability: OpenTelemetry-shaped spans and metrics from every layer, and (feature
//! `otel`) W3C trace context on the wire.
//!
//! Three questions, three answers:
//!
//! | question | answer |
//! |---|---|
//! | how slow are my calls? | the histogram [`http.client.request.duration`](names::HTTP_CLIENT_REQUEST_DURATION) (feature `metrics`), one sample per exchange, by method, server, status and `error.type` |
//! | what did the resilience layers do? | the counter [`http_doer.resilience.events`](names::RESILIENCE_EVENTS) (feature `metrics`), by `event.name`: retries (by reason), budgets exhausted, hedges sent and won, breaker changes, rejections, stale answers, limiter waits and rejections |
//! | which server call belongs to which trace? | `tracing` spans named and attributed by the OpenTelemetry HTTP client conventions, exported by `tracing-opentelemetry`; [`PropagateContext`] (feature `otel`) puts each exchange's span in the request's `traceparent` |
//!
//! # Where the spans come from
//!
//! * **The call span** (`http_doer.call`, `otel.kind = "internal"`) is made by
//!   [`Logging`](crate::Logging), the outermost layer of the recommended stack: one per call,
//!   over all its attempts and copies, carrying the final status or `error.type` and how many
//!   times the request was resent. The Logging event is sent inside it. (Logging with
//!   `.tracing(false)` still makes it: the span answers to the subscriber's filter on
//!   [`names::TARGET`], not to Logging's settings.)
//! * **The exchange spans** (`http.client.request`, `otel.kind = "client"`, named by the
//!   method as the conventions say) are made by [`Telemetry`], one per request that passes
//!   through it. Put it *under* `Retrying` and `Hedging` (and the breaker), so that every
//!   attempt and every hedge copy is its own client span, a child of the call span, numbered by
//!   `http.request.resend_count`. That is the conventions' model: a client span per physical
//!   request, resends included. A call the breaker refuses sends nothing and so makes no client
//!   span; the call span says `error.type = breaker_open`.
//!
//! The spans' level is `INFO` and their target [`names::TARGET`]. With no subscriber, or one
//! whose filter turns them away, a span costs a check of a static: field values (the redacted
//! URL above all) are computed only for a span that someone records.
//!
//! The recommended stack with every piece, outermost last:
//!
//! ```no_run
//! use std::time::Duration;
//! use http_doer::{DoerExt, ReqwestDoer, breaker::ServeStale, signing::Bearer};
//!
//! # fn main() -> Result<(), http_doer::Error> {
//! let http = ReqwestDoer::new()
//!     .signing(Bearer::new("token")?)
//!     // .propagate_context()               // feature `otel`: traceparent of the span above
//!     .telemetry()                          // a client span and a duration per exchange
//!     .breaker()
//!     .serve_stale(ServeStale::new(Duration::from_secs(300)))
//!     .hedging()
//!     .retrying()
//!     .total_timeout(Duration::from_secs(10))
//!     .logging()                            // the call span, and one event per call
//!     .shared();
//! # let _ = http;
//! # Ok(()) }
//! ```
//!
//! # Metrics and cardinality
//!
//! Metrics go through the [`metrics`](https://docs.rs/metrics) facade: install any recorder
//! (`metrics-exporter-prometheus`, or `metrics-exporter-opentelemetry` to reach an
//! OpenTelemetry meter provider), then call [`describe_metrics`] so it learns the units. Every
//! attribute set is bounded: methods outside the conventions' list become `_OTHER`, status
//! codes and error types are small sets, and no URL path, query or user data is ever an
//! attribute. The one open-ended attribute is `server.address` (with `server.port`), as the
//! conventions ask; a client that talks to an unbounded set of hosts turns it off with
//! [`Telemetry::server_attributes`]. The conventions' bucket bounds for the duration are
//! [`names::DURATION_BUCKETS`]; the facade leaves buckets to the exporter.
//!
//! # Turning it all off
//!
//! [`set_enabled(false)`](set_enabled) stops every span and metric of this crate at once, and
//! `PropagateContext` then writes no trace context (the [`Logging`](crate::Logging) events are
//! not affected).

mod metrics;
pub mod names;
#[cfg(feature = "otel")]
mod propagate;
pub(crate) mod spans;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tracing::Instrument;

use crate::doer::Execute;
use crate::{Doer, Error, ErrorKind, Request, Response};

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use self::metrics::describe_metrics;
pub(crate) use self::metrics::{breaker_state, event, limit_wait, retry};
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub use propagate::PropagateContext;

/// Whether [`Telemetry`] records `server.address` and `server.port` on its duration metric,
/// unless set otherwise: yes, as the semantic conventions ask.
pub const DEFAULT_SERVER_ATTRIBUTES: bool = true;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns every span and metric of http-doer on or off, process-wide (on by default). Off, the
/// layers skip them entirely and `PropagateContext` writes no trace context; the
/// [`Logging`](crate::Logging) events are not affected.
///
/// ```
/// http_doer::telemetry::set_enabled(false);
/// assert!(!http_doer::telemetry::is_enabled());
/// http_doer::telemetry::set_enabled(true);
/// ```
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Relaxed);
}

/// Whether spans and metrics are on; see [`set_enabled`].
pub fn is_enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// The `error.type` of an error: a short, stable, low-cardinality name of its kind, as the
/// semantic conventions ask (`timeout`, `connect`, `breaker_open`...), `_OTHER` for the rest.
///
/// ```
/// use http_doer::{ErrorKind, telemetry::error_type};
///
/// assert_eq!(error_type(ErrorKind::Timeout), "timeout");
/// assert_eq!(error_type(ErrorKind::BreakerOpen), "breaker_open");
/// ```
pub fn error_type(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Connect => "connect",
        ErrorKind::Tls => "tls",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Transport => "transport",
        ErrorKind::Body => "body",
        ErrorKind::TooLarge => "too_large",
        ErrorKind::InvalidRequest => "invalid_request",
        ErrorKind::Redirect => "redirect",
        ErrorKind::BreakerOpen => "breaker_open",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::ConcurrencyLimited => "concurrency_limited",
        ErrorKind::Signing => "signing",
        ErrorKind::Decode => "decode",
        // Named, not `_`: a new kind must choose its own value.
        ErrorKind::Other => "_OTHER",
    }
}

/// Makes one OpenTelemetry client span per exchange that passes through it, and (feature
/// `metrics`) records its duration in `http.client.request.duration`.
///
/// Put it under `Retrying` and `Hedging` (see [the module](self)): each attempt and each hedge
/// copy is then its own span, with `http.request.resend_count` saying which resend it was.
///
/// # Span fields
///
/// `otel.name` (the method, `HTTP` for another), `otel.kind = "client"`, `otel.status_code`
/// (`ERROR` for an error or a status of 400 or more), `otel.status_description` (the error's
/// redacted text), `http.request.method`, `http.request.method_original` (for `_OTHER`),
/// `server.address`, `server.port`, `url.full` (redacted by [`redact::uri`](crate::redact::uri):
/// no userinfo, secret query values replaced), `http.request.resend_count` (from 1),
/// `http.response.status_code`, `network.protocol.version` (the answer's: `1.1`, `2`),
/// `error.type` (see [`error_type`]). Headers are never recorded.
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | [`server_attributes`](Self::server_attributes) | on ([`DEFAULT_SERVER_ATTRIBUTES`]) |
///
/// ```
/// use http_doer::{Body, Doer, DoerExt, testing::ScriptedDoer};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let doer = ScriptedDoer::new().then_status(503).then_status(200)
///     .telemetry() // one client span per attempt
///     .retrying()
///     .logging(); // the call span
/// let req = http::Request::get("https://api.test/items").body(Body::empty()).unwrap();
/// assert_eq!(doer.execute(req).await.unwrap().status(), 200);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Telemetry<D> {
    inner: D,
    server_attributes: bool,
}

impl<D> Telemetry<D> {
    /// Wraps `inner` with the defaults above.
    pub fn new(inner: D) -> Self {
        Telemetry {
            inner,
            server_attributes: DEFAULT_SERVER_ATTRIBUTES,
        }
    }

    /// Whether the duration metric carries `server.address` and `server.port` (on by
    /// default). Turn it off in a client that calls an open-ended set of hosts (a crawler, a
    /// webhook sender), whose every host would be a new time series. Spans keep both either
    /// way: a span is one request, not a series.
    ///
    /// ```
    /// use http_doer::{DoerExt, testing::ScriptedDoer};
    ///
    /// let doer = ScriptedDoer::new().telemetry().server_attributes(false);
    /// # let _ = doer;
    /// ```
    pub fn server_attributes(mut self, on: bool) -> Self {
        self.server_attributes = on;
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
}

// Written out rather than with `#[async_trait]`: switched off, the layer hands over the inner
// Doer's own future, with no future of its own around it; with no span possible (no subscriber
// takes INFO), its future holds only what the duration needs, not the request.
impl<D: Doer> Doer for Telemetry<D> {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        if !is_enabled() {
            return self.inner.execute(req);
        }
        // The exchange span is at INFO: when no subscriber takes INFO it would be disabled.
        if tracing::level_enabled!(tracing::Level::INFO) {
            return Box::pin(self.call(req));
        }
        // Without the `metrics` feature, nothing is left to do.
        if !cfg!(feature = "metrics") {
            return self.inner.execute(req);
        }
        let labels = self::metrics::prepare(req.method(), req.uri(), self.server_attributes);
        let call = self.inner.execute(req);
        Box::pin(async move {
            // Timed from the first poll, as `call` does.
            let timing = self::metrics::begin(labels);
            let result = call.await;
            self::metrics::finish(timing, result.as_ref());
            result
        })
    }
}

impl<D: Doer> Telemetry<D> {
    async fn call(&self, req: Request) -> Result<Response, Error> {
        let timing = self::metrics::start(req.method(), req.uri(), self.server_attributes);
        let span = spans::exchange(&req);
        let result = if span.is_disabled() {
            self.inner.execute(req).await
        } else {
            self.inner.execute(req).instrument(span.clone()).await
        };
        spans::record(&span, result.as_ref());
        self::metrics::finish(timing, result.as_ref());
        result
    }
}

/// Gives a request the send counter that numbers its exchanges, unless it has one; for the
/// layers that copy a request (`Retrying`, `Hedging`).
pub(crate) use spans::count_sends;
