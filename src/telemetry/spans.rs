//! The spans: one per call (made by [`Logging`](crate::Logging)) and one per exchange, that
//! is per attempt and per hedge copy (made by [`Telemetry`](super::Telemetry)).
//!
//! Integers are recorded as `i64`: tracing-opentelemetry turns a `u64` into a string
//! attribute, and the conventions type these attributes as integers.
//!
//! Every span is made with `tracing`'s macros, which evaluate field values only when a
//! subscriber wants the span: with none, making one is a check of a static and
//! [`Span::none`], and the redacted URL is never built.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use http::{Method, Uri};
use tracing::field::Empty;
use tracing::{Instrument, Level, Span};

use super::names::{
    ERROR_TYPE, HTTP_REQUEST_RESEND_COUNT, HTTP_RESPONSE_STATUS_CODE, NETWORK_PROTOCOL_VERSION,
    TARGET,
};
use crate::{Error, Request, Response, redact};

/// Request extension: how many exchanges one call has sent so far. Made where the call starts
/// and shared by every copy of the request below (a copy clones the extensions, so the `Arc`),
/// so each exchange takes the next number, whichever layer made its copy.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sends(Arc<AtomicU32>);

/// Whether exchange spans are wanted, so a call should count its sends: a check of a static
/// when no subscriber listens.
fn exchange_spans_wanted() -> bool {
    super::is_enabled()
        && tracing::enabled!(kind: tracing::metadata::Kind::SPAN, target: TARGET, Level::INFO)
}

/// Gives `req` a send counter unless it has one; called by the layers that make copies
/// (`Retrying`, `Hedging`), so the exchanges below are numbered across retries and hedges.
pub(crate) fn count_sends(req: &mut Request) {
    if exchange_spans_wanted() && req.extensions().get::<Sends>().is_none() {
        req.extensions_mut().insert(Sends::default());
    }
}

/// The number of this exchange within its call: 0 for the first, 1 for the first resend.
fn take_send(req: &Request) -> u32 {
    req.extensions()
        .get::<Sends>()
        .map_or(0, |s| s.0.fetch_add(1, Relaxed))
}

/// The semantic-convention method name: one of the nine (ten with `QUERY`) it lists, else
/// `_OTHER`.
pub(crate) fn method_name(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        "QUERY" => "QUERY",
        _ => "_OTHER",
    }
}

/// The span name the conventions give a client span: the method, or `HTTP` for `_OTHER`.
fn span_name(method: &'static str) -> &'static str {
    if method == "_OTHER" { "HTTP" } else { method }
}

/// The host, without the brackets of an IPv6 literal; never userinfo.
pub(crate) fn server_address(uri: &Uri) -> Option<&str> {
    let host = uri.host()?;
    Some(host.trim_start_matches('[').trim_end_matches(']'))
}

/// The port: the URI's, else the scheme's default.
pub(crate) fn server_port(uri: &Uri) -> Option<u16> {
    uri.port_u16().or(match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })
}

/// An INFO span of this module called `$name`, with the fields given first, then the HTTP
/// attributes the call and exchange spans share (of `$req`, its `$method` name and `$uri`).
/// Field values are evaluated only when a subscriber wants the span.
macro_rules! http_span {
    ($name:literal, $req:ident, $method:ident, $uri:ident, $($own:tt)*) => {
        tracing::info_span!(
            target: TARGET,
            $name,
            $($own)*
            otel.status_code = Empty,
            otel.status_description = Empty,
            http.request.method = $method,
            http.request.method_original = ($method == "_OTHER").then(|| $req.method().as_str()),
            server.address = server_address($uri),
            server.port = server_port($uri).map(i64::from),
            url.full = %redact::uri($uri),
            http.request.resend_count = Empty,
            http.response.status_code = Empty,
            network.protocol.version = Empty,
            "error.type" = Empty,
        )
    };
}

/// The span of one exchange: an OpenTelemetry client span (`otel.kind = "client"`).
pub(crate) fn exchange(req: &Request) -> Span {
    if !super::is_enabled() {
        return Span::none();
    }
    let method = method_name(req.method());
    let uri = req.uri();
    let span = http_span!(
        "http.client.request",
        req,
        method,
        uri,
        otel.name = span_name(method),
        otel.kind = "client",
    );
    if !span.is_disabled() {
        let n = take_send(req);
        if n > 0 {
            span.record(HTTP_REQUEST_RESEND_COUNT, i64::from(n));
        }
    }
    span
}

/// A call's span and its send counter.
pub(crate) struct CallSpan {
    span: Span,
    sends: Option<Sends>,
}

/// The span of one call, over all its attempts and copies: an internal span, the parent of
/// the exchange spans. It gives `req` the send counter the exchanges below number themselves
/// with.
pub(crate) fn call(req: &mut Request) -> CallSpan {
    if !super::is_enabled() {
        return CallSpan {
            span: Span::none(),
            sends: None,
        };
    }
    let method = method_name(req.method());
    let uri = req.uri();
    let span = http_span!("http_doer.call", req, method, uri, otel.kind = "internal",);
    let sends = (!span.is_disabled()).then(|| {
        let sends = req.extensions().get::<Sends>().cloned().unwrap_or_default();
        req.extensions_mut().insert(sends.clone());
        sends
    });
    CallSpan { span, sends }
}

/// Runs `fut` inside the call's span, then records its outcome on it.
pub(crate) async fn within<F>(call: CallSpan, fut: F) -> Result<Response, Error>
where
    F: Future<Output = Result<Response, Error>>,
{
    if call.span.is_disabled() {
        return fut.await;
    }
    let result = fut.instrument(call.span.clone()).await;
    record(&call.span, result.as_ref());
    let resends = call
        .sends
        .map_or(0, |s| s.0.load(Relaxed))
        .saturating_sub(1);
    if resends > 0 {
        call.span
            .record(HTTP_REQUEST_RESEND_COUNT, i64::from(resends));
    }
    result
}

/// Records an outcome on a span: the status code, and for an error or a status of 400 or
/// more (a client span's error, by the conventions) `error.type` and an error status.
pub(crate) fn record(span: &Span, outcome: Result<&Response, &Error>) {
    if span.is_disabled() {
        return;
    }
    match outcome {
        Ok(resp) => {
            let status = resp.status();
            span.record(HTTP_RESPONSE_STATUS_CODE, i64::from(status.as_u16()));
            if let Some(version) = protocol_version(resp.version()) {
                span.record(NETWORK_PROTOCOL_VERSION, version);
            }
            if status.as_u16() >= 400 {
                span.record(ERROR_TYPE, status.as_str());
                span.record("otel.status_code", "ERROR");
            }
        }
        Err(err) => {
            span.record(ERROR_TYPE, super::error_type(err.kind()));
            span.record("otel.status_code", "ERROR");
            // The error's Display never holds a credential (see `Error`).
            span.record("otel.status_description", tracing::field::display(err));
        }
    }
}

/// An HTTP version as the conventions write it; `None` for one they do not name.
fn protocol_version(version: http::Version) -> Option<&'static str> {
    Some(match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => return None,
    })
}
