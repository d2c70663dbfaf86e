//! [`PropagateContext`]: the current trace context on the wire, as W3C `traceparent` and
//! `tracestate` (or whatever the configured propagator writes).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{Doer, Error, Request, Response};

type Propagator = Arc<dyn TextMapPropagator + Send + Sync>;

/// Writes the current trace context into each request's headers, through an OpenTelemetry
/// propagator: by default the global one (`opentelemetry::global::set_text_map_propagator`,
/// usually `TraceContextPropagator`, which writes `traceparent` and `tracestate`).
///
/// The context is the current `tracing` span's, read through `tracing-opentelemetry`, or, when
/// that span has none, OpenTelemetry's current [`Context`]. With no valid span in either, the
/// request goes as it came (a `traceparent` the caller set is kept).
///
/// Put it directly under [`Telemetry`](super::Telemetry), which sits under `Retrying` and
/// `Hedging`: the current span is then the exchange's own client span, so every attempt and
/// every hedge copy carries its own span id, and the server's span is the child of that
/// attempt rather than of the whole call. Above `Signing`, so that a signature over all
/// headers covers `traceparent` too.
///
/// ```
/// use http_doer::{Body, Doer, DoerExt, testing::ScriptedDoer};
/// use opentelemetry_sdk::propagation::TraceContextPropagator;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let backend = ScriptedDoer::new().then_status(200);
/// let doer = backend.clone()
///     .propagate_context()
///     .propagator(TraceContextPropagator::new())
///     .telemetry()
///     .retrying();
/// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
/// doer.execute(req).await.unwrap();
/// // No span is being recorded here, so there is no context to send.
/// assert!(backend.requests()[0].headers().get("traceparent").is_none());
/// # });
/// ```
#[derive(Clone)]
pub struct PropagateContext<D> {
    inner: D,
    propagator: Option<Propagator>,
}

impl<D> PropagateContext<D> {
    /// Wraps `inner`, injecting with the global propagator.
    pub fn new(inner: D) -> Self {
        PropagateContext {
            inner,
            propagator: None,
        }
    }

    /// Injects with `propagator` instead of the global one (a `TraceContextPropagator`, a
    /// `TextMapCompositePropagator` adding baggage, a B3 propagator...).
    ///
    /// ```
    /// use http_doer::{DoerExt, testing::ScriptedDoer};
    /// use opentelemetry_sdk::propagation::TraceContextPropagator;
    ///
    /// let doer = ScriptedDoer::new().propagate_context().propagator(TraceContextPropagator::new());
    /// # let _ = doer;
    /// ```
    pub fn propagator<P>(mut self, propagator: P) -> Self
    where
        P: TextMapPropagator + Send + Sync + 'static,
    {
        self.propagator = Some(Arc::new(propagator));
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

    fn inject(&self, headers: &mut HeaderMap) {
        if !super::is_enabled() {
            return;
        }
        let mut cx = tracing::Span::current().context();
        if !cx.span().span_context().is_valid() {
            cx = Context::current();
            if !cx.span().span_context().is_valid() {
                return;
            }
        }
        let mut injector = HeaderInjector(headers);
        match &self.propagator {
            Some(p) => p.inject_context(&cx, &mut injector),
            None => opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&cx, &mut injector)
            }),
        }
    }
}

/// An OpenTelemetry [`Injector`] over `http` headers. A name or value the propagator writes
/// that is not a valid header is skipped, never a panic.
struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[async_trait]
impl<D: Doer> Doer for PropagateContext<D> {
    async fn execute(&self, mut req: Request) -> Result<Response, Error> {
        self.inject(req.headers_mut());
        self.inner.execute(req).await
    }
}

// The propagator is a trait object: only whether one was given is shown.
impl<D: fmt::Debug> fmt::Debug for PropagateContext<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PropagateContext")
            .field("inner", &self.inner)
            .field("custom_propagator", &self.propagator.is_some())
            .finish()
    }
}
