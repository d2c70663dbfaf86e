//! The proxy: a hyper 1 server whose every request goes through one http-doer stack to the
//! backend.
//!
//! [`Proxy::bind`] opens the listener, [`Proxy::run`] serves until a shutdown future completes,
//! then lets in-flight requests finish within the grace period. Every answer carries
//! [`X_CIRCUIT`] and [`X_CACHE`]. The request and response rewriting ([`forward_request`],
//! [`client_response`], [`error_response`]) are plain functions so they are tested without a
//! network.
//!
//! Bodies stream through. A backend's answer is handed to the client as it arrives (the
//! stack's backend runs in [`ResponseMode::Streamed`]; a cacheable answer is copied for
//! serve-stale on its way, within the cache's entry limit). A request body of known length up
//! to [`BUFFERED_REQUEST_BODY`] is read whole first, so the stack may retry it; a larger one, or
//! one of unknown length, streams to the backend and is sent once.
//!
//! Memory per connection, at most: the buffered request body (64 KiB), hyper's read and write
//! buffers on each side (about 400 KiB at most each, 8-16 KiB in the usual case), one chunk in
//! flight, and for a cacheable GET the copy kept for serve-stale (up to the cache's limit,
//! `RETTER_CACHE_MAX_BYTES`). Not the size of any body.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use http_doer::{Body, Doer, Error, ErrorKind};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::Config;
use crate::stack::{Source, Stack};

/// What the proxy sends to its client: the backend's body streams through.
pub type ClientResponse = hyper::Response<Body>;

/// Request bodies of a known length up to this many bytes are read whole before they are
/// forwarded, so that the stack can retry them; longer ones, or of unknown length, stream to
/// the backend and are sent once.
pub const BUFFERED_REQUEST_BODY: u64 = 64 * 1024;

/// Says the state of the backend's circuit when the answer left: `closed`, `open`, `half-open`.
pub const X_CIRCUIT: HeaderName = HeaderName::from_static("x-circuit");

/// Says where the answer came from: `backend`, `stale` (the last good answer, served while the
/// circuit is open) or `none` (the proxy's own error page).
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Renders the metrics for `GET /metrics`.
type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// Where [`Proxy::serve_metrics`] answers, instead of forwarding.
pub const METRICS_PATH: &str = "/metrics";

/// A bound, not yet running proxy.
pub struct Proxy {
    listener: TcpListener,
    handler: Arc<Handler>,
    config: Arc<Config>,
}

/// How [`Proxy::run`] ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Connections still busy when the grace period ran out, closed without their answer.
    pub unfinished: usize,
}

/// A running proxy's stack, as [`Proxy::stack`] shows it.
#[allow(dead_code)] // `main` does not read it; tests/fleet_proxy.rs does
pub trait StackView: Send + Sync {
    /// The backend's circuit now: `closed`, `open` or `half-open`.
    fn circuit(&self) -> &'static str;
    /// How many answers the serve-stale cache holds now.
    fn stale_answers(&self) -> usize;
}

impl StackView for Handler {
    fn circuit(&self) -> &'static str {
        self.stack.circuit()
    }

    fn stale_answers(&self) -> usize {
        self.stack.stale_answers()
    }
}

/// Per-request work, shared by every connection.
struct Handler {
    stack: Stack,
    backend: Uri,
    read_timeout: Duration,
    write_timeout: Duration,
    max_request_body: u64,
    max_response_body: u64,
    metrics: Option<RenderMetrics>,
}

impl Proxy {
    /// Opens the listener on `config.listen` and builds the Doer stack.
    pub async fn bind(config: Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let handler = Arc::new(Handler {
            stack: Stack::new(&config),
            backend: config.backend.clone(),
            read_timeout: config.read_timeout,
            write_timeout: config.write_timeout,
            max_request_body: config.max_request_body,
            max_response_body: config.backend_max_body,
            metrics: None,
        });
        Ok(Proxy {
            listener,
            handler,
            config: Arc::new(config),
        })
    }

    /// Answers `GET /metrics` itself with what `render` returns (Prometheus text), rather than
    /// forwarding it: the backend's own `/metrics`, if any, is then out of the proxy's reach.
    pub fn serve_metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Self {
        // Nothing else holds the handler before `run`.
        if let Some(handler) = Arc::get_mut(&mut self.handler) {
            handler.metrics = Some(Arc::new(render));
        }
        self
    }

    /// What the proxy's stack holds, readable while it runs: for tests that wait on the
    /// circuit rather than on time.
    #[allow(dead_code)] // `main` does not read it; tests/fleet_proxy.rs does
    pub fn stack(&self) -> Arc<dyn StackView> {
        self.handler.clone()
    }

    /// The address the proxy listens on (useful when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has a local address")
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// for up to the grace period, and closes what is left.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Stopped {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let handler = self.handler.clone();
                        let config = self.config.clone();
                        let stop = stop_rx.clone();
                        connections.spawn(serve_connection(stream, peer, handler, config, stop));
                    }
                    Err(e) => {
                        // Out of file descriptors, most likely: back off instead of spinning.
                        tracing::warn!(target: "proxy", error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(self.listener);
        let busy = connections.len();
        tracing::info!(target: "proxy", connections = busy, grace = ?self.config.grace, "shutting down");
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(self.config.grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        let unfinished = if drained.is_ok() {
            0
        } else {
            let left = connections.len();
            connections.shutdown().await;
            left
        };
        Stopped { unfinished }
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    config: Arc<Config>,
    mut stop: watch::Receiver<bool>,
) {
    // Formatted once per connection rather than once per request.
    let peer = forwarded_for(peer.ip());
    let service = service_fn(move |req| {
        let handler = handler.clone();
        let peer = peer.clone();
        async move { Ok::<_, Infallible>(handler.handle(req, &peer).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stopping = async move {
        // An error means the sender is gone, which also means shutting down.
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopping => {
            // Finishes the request in flight, if any, then closes; an idle connection closes now.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

impl Handler {
    async fn handle(&self, req: hyper::Request<Incoming>, peer: &HeaderValue) -> ClientResponse {
        if let Some(render) = &self.metrics
            && req.method() == Method::GET
            && req.uri().path() == METRICS_PATH
        {
            return metrics_response(render());
        }
        let started = Instant::now();
        let method = req.method().clone();
        // Redacted and formatted only when the line will be written: at WARN (the production
        // level) the proxy pays nothing for it.
        let target = tracing::enabled!(target: "proxy", tracing::Level::INFO)
            .then(|| logged_target(req.uri()))
            .unwrap_or_default();
        let answer = tokio::time::timeout(self.write_timeout, self.answer(req, peer)).await;
        let (mut resp, source) = answer.unwrap_or_else(|_| {
            let text = "no answer within RETTER_SERVER_TIMEOUT_WRITE";
            (plain(StatusCode::GATEWAY_TIMEOUT, text), Source::None)
        });
        // Read after the call, so an answer that tripped the circuit already says "open".
        let circuit = self.stack.circuit();
        // Set, not appended: a backend's own X-Cache (from a CDN, say) would mislead.
        let headers = resp.headers_mut();
        headers.insert(X_CIRCUIT, HeaderValue::from_static(circuit));
        headers.insert(X_CACHE, HeaderValue::from_static(source.as_str()));
        tracing::info!(
            target: "proxy",
            %method,
            target = %target,
            status = resp.status().as_u16(),
            %circuit,
            cache = %source.as_str(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        );
        resp
    }

    async fn answer(
        &self,
        req: hyper::Request<Incoming>,
        peer: &HeaderValue,
    ) -> (ClientResponse, Source) {
        let (parts, body) = req.into_parts();
        let (body, fault) = match self.request_body(&parts.headers, body).await {
            Ok(body) => body,
            Err(resp) => return (resp, Source::None),
        };
        let head = parts.method == Method::HEAD;
        // RFC 9112 3.2: more than one Host is a 400 (which one would the backend believe?).
        if parts.headers.get_all(header::HOST).iter().count() > 1 {
            let resp = plain(
                StatusCode::BAD_REQUEST,
                "the request has more than one Host",
            );
            return (resp, Source::None);
        }
        let Some(out) = forward_request(parts, body, peer, &self.backend) else {
            let resp = plain(StatusCode::BAD_REQUEST, "the request target must be a path");
            return (resp, Source::None);
        };
        match self.stack.doer.execute(out).await {
            Ok(resp) => {
                let source = Source::of(&resp);
                (client_response(resp, head, self.max_response_body), source)
            }
            // A request body that failed on its way says so, rather than the backend's error.
            Err(err) => match fault.as_ref().and_then(|fault| fault.get()) {
                Some(fault) => (fault.response(), Source::None),
                None => (error_response(&err), Source::None),
            },
        }
    }

    /// The request body for the backend, within the size limit and the read timeout: read
    /// whole when it is short and of known length, else a stream that fails past the limit or
    /// the timeout, and records why in the cell returned with it.
    async fn request_body(
        &self,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Result<(Body, Option<Arc<OnceLock<BodyFault>>>), ClientResponse> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_request_body) {
            return Err(BodyFault::TooLarge.response());
        }
        if body.is_end_stream() {
            return Ok((Body::empty(), None));
        }
        if declared.is_some_and(|len| len <= BUFFERED_REQUEST_BODY) {
            return self.read_body(body).await.map(|b| (Body::from(b), None));
        }
        let fault = Arc::new(OnceLock::new());
        let stream = RequestStream {
            body,
            left: self.max_request_body,
            deadline: Box::pin(tokio::time::sleep(self.read_timeout)),
            fault: fault.clone(),
        };
        Ok((Body::from_stream(stream), Some(fault)))
    }

    /// The whole request body, within the size limit and the read timeout.
    async fn read_body(&self, body: Incoming) -> Result<Bytes, ClientResponse> {
        let too_large = || BodyFault::TooLarge.response();
        let limit = usize::try_from(self.max_request_body).unwrap_or(usize::MAX);
        let collect = Limited::new(body, limit).collect();
        match tokio::time::timeout(self.read_timeout, collect).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Ok(Err(_)) => Err(BodyFault::Unreadable.response()),
            Err(_) => Err(BodyFault::TimedOut.response()),
        }
    }
}

/// Why a client's request body could not be forwarded.
#[derive(Clone, Copy, Debug)]
enum BodyFault {
    TooLarge,
    TimedOut,
    Unreadable,
}

impl BodyFault {
    fn response(self) -> ClientResponse {
        match self {
            BodyFault::TooLarge => plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is over RETTER_SERVER_MAX_BODY",
            ),
            BodyFault::TimedOut => plain(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive within RETTER_SERVER_TIMEOUT_READ",
            ),
            BodyFault::Unreadable => plain(
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            ),
        }
    }

    fn error(self) -> Error {
        let kind = match self {
            BodyFault::TooLarge => ErrorKind::TooLarge,
            BodyFault::TimedOut => ErrorKind::Timeout,
            BodyFault::Unreadable => ErrorKind::Body,
        };
        Error::from(kind).with_message("the client's request body failed")
    }
}

/// A client's request body streaming to the backend: it fails past the size limit, or when the
/// whole body has not arrived within the read timeout, and records why.
struct RequestStream {
    body: Incoming,
    left: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    fault: Arc<OnceLock<BodyFault>>,
}

impl RequestStream {
    fn fail(&self, fault: BodyFault) -> Poll<Option<Result<Bytes, Error>>> {
        let _ = self.fault.set(fault);
        Poll::Ready(Some(Err(fault.error())))
    }
}

impl futures_core::Stream for RequestStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return self.fail(BodyFault::TimedOut);
        }
        loop {
            let frame = match std::task::ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                None => return Poll::Ready(None),
                Some(Err(_)) => return self.fail(BodyFault::Unreadable),
                Some(Ok(frame)) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers are not forwarded
            };
            match self.left.checked_sub(data.len() as u64) {
                Some(left) => self.left = left,
                None => return self.fail(BodyFault::TooLarge),
            }
            return Poll::Ready(Some(Ok(data)));
        }
    }
}

/// The request for the backend: same method, path (under the backend's base path), query,
/// end-to-end headers and body; hop-by-hop headers dropped; `X-Forwarded-For` extended with the
/// client's address, `X-Forwarded-Host` and `X-Forwarded-Proto` set. `None` when the request
/// target is not a path (`OPTIONS *`). `peer` is the client's address as [`forwarded_for`]
/// writes it.
pub fn forward_request(
    parts: http::request::Parts,
    body: Body,
    peer: &HeaderValue,
    backend: &Uri,
) -> Option<http_doer::Request> {
    let path_and_query = parts.uri.path_and_query()?;
    if !path_and_query.as_str().starts_with('/') {
        return None;
    }
    // A dot segment (`..`, `%2e%2e`, ...) would be resolved by the backend client's URL parser
    // after the base path is prepended, climbing out of it: refused, as the target is no path
    // under the base.
    if parts.uri.path().split('/').any(is_dot_segment) {
        return None;
    }
    let base = backend.path().trim_end_matches('/');
    let uri = Uri::builder()
        .scheme(backend.scheme()?.clone())
        .authority(backend.authority()?.clone())
        .path_and_query(format!("{base}{path_and_query}"))
        .build()
        .ok()?;

    // Moved, not cloned: the client's request is not needed once forwarded.
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    let original_host = headers.remove(header::HOST);
    // The backend client frames the body from what it knows of its length; there is nothing
    // left to "continue" (hyper already answered any `Expect: 100-continue`).
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::EXPECT);
    append_forwarded_for(&mut headers, peer);
    // An absolute-form target names the host itself, and then `Host` is ignored (RFC 9112
    // 3.2.2): the one the client asked for is the target's.
    let target_host = parts
        .uri
        .authority()
        .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok());
    let host = target_host.or(original_host);
    if let Some(host) = host {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("http"),
    );

    let mut req = http::Request::new(body);
    *req.method_mut() = parts.method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    Some(req)
}

/// `.` or `..`, each dot possibly percent-encoded (RFC 3986, 6.2.2.3; the URL Standard).
fn is_dot_segment(segment: &str) -> bool {
    let rest = segment.as_bytes();
    let dot = |s: &[u8]| -> Option<usize> {
        if s.first() == Some(&b'.') {
            Some(1)
        } else if s.len() >= 3 && s[0] == b'%' && s[1] == b'2' && s[2].eq_ignore_ascii_case(&b'e') {
            Some(3)
        } else {
            None
        }
    };
    match dot(rest) {
        None => false,
        Some(n) if n == rest.len() => true,
        Some(n) => dot(&rest[n..]).is_some_and(|m| n + m == rest.len()),
    }
}

/// The backend's answer for the client: status and end-to-end headers, and the body, which
/// streams through as it arrives.
///
/// `Content-Length` is written by the server from the body's known length (or the body is sent
/// chunked), except for an answer to HEAD (or a 304), whose length describes a body that is
/// not sent. An answer declared longer than `max_body` is a 502 at once; one of unknown length
/// is cut (its connection aborted, never silently shortened) once it passes `max_body`.
pub fn client_response(resp: http_doer::Response, head: bool, max_body: u64) -> ClientResponse {
    let (mut parts, body) = resp.into_parts();
    if !head && body.len().is_some_and(|len| len > max_body) {
        return error_response(&Error::from(ErrorKind::TooLarge));
    }
    strip_hop_by_hop(&mut parts.headers);
    if !head && parts.status != StatusCode::NOT_MODIFIED {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    // A Doer's extensions are reports for Rust callers, not for the client.
    parts.extensions.clear();
    parts.version = http::Version::HTTP_11;
    let body = match body.len() {
        Some(_) => body,
        None => Body::from_stream(CappedBody {
            body,
            left: max_body,
        }),
    };
    hyper::Response::from_parts(parts, body)
}

/// A backend body of unknown length, cut with an error once it passes the limit.
struct CappedBody {
    body: Body,
    left: u64,
}

impl futures_core::Stream for CappedBody {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(Pin::new(&mut self.body).poll_next(cx));
        if let Some(Ok(chunk)) = &item {
            match self.left.checked_sub(chunk.len() as u64) {
                Some(left) => self.left = left,
                None => {
                    let over = Error::from(ErrorKind::TooLarge)
                        .with_message("the backend's answer is over RETTER_BACKEND_MAX_BODY");
                    return Poll::Ready(Some(Err(over)));
                }
            }
        }
        Poll::Ready(item)
    }
}

/// The answer when the stack has no response: 503 with `Retry-After` when the circuit is open,
/// 504 on a timeout, 502 otherwise. The text names the kind of failure only: the error itself
/// may name internal hosts, so it goes to the log (the stack's `Logging`), not to the client.
pub fn error_response(err: &Error) -> ClientResponse {
    match err.kind() {
        ErrorKind::BreakerOpen => {
            let mut resp = plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the backend is failing; the circuit is open",
            );
            let wait = err.retry_after().unwrap_or(Duration::from_secs(1));
            // Whole seconds, rounded up, so a client that obeys never arrives early.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            resp
        }
        ErrorKind::Timeout => plain(StatusCode::GATEWAY_TIMEOUT, "the backend timed out"),
        ErrorKind::TooLarge => plain(
            StatusCode::BAD_GATEWAY,
            "the backend's answer is over RETTER_BACKEND_MAX_BODY",
        ),
        kind => plain(
            StatusCode::BAD_GATEWAY,
            &format!("the backend could not answer: {kind}"),
        ),
    }
}

/// Removes the headers that describe one connection, not the message (RFC 9110, 7.6.1):
/// `Connection` and every header it names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`,
/// `Transfer-Encoding` and `Upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    let fixed = [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ];
    for name in named.into_iter().chain(proxy).chain(fixed) {
        headers.remove(name);
    }
}

/// The client's address as `X-Forwarded-For` gives it: an IPv4 client reaching an IPv6
/// socket (`::ffff:a.b.c.d`) is written `a.b.c.d`.
pub fn forwarded_for(peer: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.to_canonical().to_string()).expect("an IP is a header value")
}

fn append_forwarded_for(headers: &mut HeaderMap, peer: &HeaderValue) {
    let name = HeaderName::from_static("x-forwarded-for");
    if !headers.contains_key(&name) {
        headers.insert(name, peer.clone());
        return;
    }
    let mut value: Vec<u8> = Vec::new();
    for prior in headers.get_all(&name) {
        value.extend_from_slice(prior.as_bytes());
        value.extend_from_slice(b", ");
    }
    value.extend_from_slice(peer.as_bytes());
    // Prior values were header values, and so is what joins them.
    let value = HeaderValue::from_bytes(&value).unwrap_or_else(|_| peer.clone());
    headers.insert(name, value);
}

/// The request target as logged: the path, and the query with secret values redacted.
fn logged_target(uri: &Uri) -> String {
    match uri.query() {
        Some(q) => format!("{}?{}", uri.path(), http_doer::redact::query(q)),
        None => uri.path().to_owned(),
    }
}

/// The metrics in the Prometheus text format.
fn metrics_response(text: String) -> ClientResponse {
    let mut resp = hyper::Response::new(Body::from(text));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

fn plain(status: StatusCode, text: &str) -> ClientResponse {
    let body = format!(
        "{} {}: {text}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut resp = hyper::Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::Request<()>) -> http::request::Parts {
        req.into_parts().0
    }

    fn backend() -> Uri {
        "http://10.1.2.3:8088/api".parse().unwrap()
    }

    #[test]
    fn forwards_method_path_query_and_end_to_end_headers() {
        let incoming = parts(
            http::Request::post("/items/7?full=1&q=a%20b")
                .header("host", "proxy.test:8089")
                .header("cookie", "session=abc")
                .header("authorization", "Bearer t0k")
                .header("content-type", "application/json")
                .header("content-length", "2")
                .header("expect", "100-continue")
                .body(())
                .unwrap(),
        );
        let peer = forwarded_for("192.0.2.9".parse().unwrap());
        let out = forward_request(incoming, Body::from("{}"), &peer, &backend()).unwrap();
        assert_eq!(out.method(), Method::POST);
        assert_eq!(out.uri(), "http://10.1.2.3:8088/api/items/7?full=1&q=a%20b");
        let h = out.headers();
        assert_eq!(h["cookie"], "session=abc");
        assert_eq!(h["authorization"], "Bearer t0k");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(h["x-forwarded-for"], "192.0.2.9");
        assert_eq!(h["x-forwarded-host"], "proxy.test:8089");
        assert_eq!(h["x-forwarded-proto"], "http");
        for gone in ["host", "content-length", "expect"] {
            assert!(!h.contains_key(gone), "{gone} forwarded");
        }
        assert_eq!(out.body().as_bytes().unwrap(), "{}");
    }

    #[test]
    fn extends_an_existing_forwarded_for_chain() {
        let incoming = parts(
            http::Request::get("/")
                .header("x-forwarded-for", "203.0.113.1")
                .header("x-forwarded-for", "198.51.100.2, 10.0.0.1")
                .body(())
                .unwrap(),
        );
        let peer = forwarded_for("::ffff:127.0.0.1".parse().unwrap());
        let out = forward_request(incoming, Body::empty(), &peer, &backend()).unwrap();
        let all: Vec<_> = out.headers().get_all("x-forwarded-for").iter().collect();
        assert_eq!(all, ["203.0.113.1, 198.51.100.2, 10.0.0.1, 127.0.0.1"]);
    }

    #[test]
    fn a_root_backend_does_not_double_the_slash() {
        let incoming = parts(http::Request::get("/x").body(()).unwrap());
        let root: Uri = "http://b.test/".parse().unwrap();
        let out = forward_request(
            incoming,
            Body::empty(),
            &forwarded_for("127.0.0.1".parse().unwrap()),
            &root,
        );
        assert_eq!(out.unwrap().uri(), "http://b.test/x");
    }

    #[test]
    fn an_asterisk_target_is_refused() {
        let mut incoming = parts(http::Request::options("/").body(()).unwrap());
        incoming.uri = "*".parse().unwrap();
        let out = forward_request(
            incoming,
            Body::empty(),
            &forwarded_for("127.0.0.1".parse().unwrap()),
            &backend(),
        );
        assert!(out.is_none());
    }

    #[test]
    fn hop_by_hop_headers_are_stripped_both_ways() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Private"),
            ("connection", "x-other"),
            ("x-private", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("proxy-authenticate", "Basic"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-sum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
            ("set-cookie", "a=b"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["set-cookie", "x-kept"]);
    }

    #[tokio::test]
    async fn client_response_keeps_status_headers_and_body() {
        let resp = http::Response::builder()
            .status(201)
            .header("content-length", "999")
            .header("connection", "x-hop")
            .header("x-hop", "1")
            .header("x-kept", "yes")
            .body(Body::from("created"))
            .unwrap();
        let out = client_response(resp, false, 1000);
        assert_eq!(out.status(), 201);
        assert_eq!(out.headers()["x-kept"], "yes");
        assert!(!out.headers().contains_key("x-hop"));
        assert!(!out.headers().contains_key("content-length"));
        let body = out.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "created");
    }

    #[tokio::test]
    async fn an_answer_to_head_keeps_its_length() {
        let resp = http::Response::builder()
            .header("content-length", "1234")
            .body(Body::empty())
            .unwrap();
        let out = client_response(resp, true, 1000);
        assert_eq!(out.headers()["content-length"], "1234");
    }

    #[test]
    fn errors_map_to_gateway_statuses() {
        let open =
            Error::from(ErrorKind::BreakerOpen).with_retry_after(Duration::from_millis(2500));
        let resp = error_response(&open);
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["retry-after"], "3");
        assert_eq!(
            error_response(&Error::from(ErrorKind::Timeout)).status(),
            504
        );
        assert_eq!(
            error_response(&Error::from(ErrorKind::Connect)).status(),
            502
        );
        assert_eq!(
            error_response(&Error::from(ErrorKind::TooLarge)).status(),
            502
        );
    }

    #[test]
    fn a_logged_target_hides_secret_query_values() {
        let uri: Uri = "/login?user=ann&password=hunter2".parse().unwrap();
        assert_eq!(logged_target(&uri), "/login?user=ann&password=REDACTED");
    }
}
