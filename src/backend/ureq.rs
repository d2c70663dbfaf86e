//! [`UreqDoer`]: the ureq backend, run on tokio's blocking pool.

use std::io::{self, Read};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use super::redirect::{self, Exchange, Execute};
use super::{
    MAX_RESPONSE_HEADERS_CEILING, Settings, check_head, frame_empty_body, is_tls_failure,
    may_have_body, too_large, too_many_headers,
};
use crate::body::to_io;
use crate::{Body, Doer, Error, ErrorKind, Request, Response, ResponseMode};

/// A [`Doer`] backed by a [`ureq::Agent`] (feature `ureq`).
///
/// ureq is blocking, so every exchange runs on `tokio::task::spawn_blocking` and never blocks
/// an async worker thread. The agent's status-as-error behaviour is switched off for every
/// request (a 404 is a response, as with every Doer), its own redirect handling too (redirects
/// are followed by http-doer, exactly as for [`ReqwestDoer`](crate::ReqwestDoer)).
///
/// Dropping the future returned by `execute` cannot interrupt a blocking read already under way:
/// the blocking thread finishes the exchange (bounded by [`timeout`](Self::timeout)) and its
/// result is discarded.
///
/// ureq writes a request's whole body before it reads the answer. A server that refuses a
/// large upload at once (a `413`) without reading it, and keeps the connection open, is heard
/// on [`ReqwestDoer`](crate::ReqwestDoer) at once and here only as a [`ErrorKind::Timeout`]
/// once the socket's buffers are full and the timeout passes. A caller's
/// `Expect: 100-continue` is sent as it is, and the body follows at once, as on
/// `ReqwestDoer`.
///
/// ```no_run
/// use http_doer::{Body, Doer, UreqDoer};
///
/// # async fn run() -> Result<(), http_doer::Error> {
/// let doer = UreqDoer::new();
/// let req = http::Request::get("https://example.com/").body(Body::empty()).unwrap();
/// let resp = doer.execute(req).await?;
/// println!("{}", resp.status());
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// `execute` returns a response for any status, 4xx and 5xx included, and an [`Error`] only
/// when there is no usable response, of the kind a program can match on:
///
/// * [`ErrorKind::Connect`]: no connection could be made (refused, DNS failure, connect
///   timeout); the request never left. [`ErrorKind::Tls`]: the TLS handshake failed.
/// * [`ErrorKind::Timeout`]: the [`timeout`](Self::timeout) passed, a connect it cut short
///   included (as on `ReqwestDoer`).
/// * [`ErrorKind::Transport`]: the connection failed before a response head arrived;
///   [`ErrorKind::Body`]: while the body was read.
/// * [`ErrorKind::TooLarge`]: the body is over [`max_body_size`](Self::max_body_size), or the
///   head over [`max_response_headers`](Self::max_response_headers).
/// * [`ErrorKind::InvalidRequest`]: the request cannot be sent as it is (a relative URL, an
///   unsupported scheme); a request body stream that fails ends the call with its own kind.
/// * [`ErrorKind::Redirect`]: a redirect could not be followed, or there were too many.
#[derive(Clone)]
pub struct UreqDoer {
    agent: ureq::Agent,
    settings: Settings,
}

impl UreqDoer {
    /// A backend with a new agent, a [10 s connect
    /// timeout](crate::backend::DEFAULT_CONNECT_TIMEOUT) and a [30 s
    /// timeout](crate::backend::DEFAULT_TIMEOUT) per exchange.
    ///
    /// The agent resolves names without ureq's thread per call: an IP literal is not looked
    /// up at all, and a name is looked up, within the connect timeout, on a thread kept for the
    /// next lookup (up to 64 such threads, which concurrent callers share; past that, on the
    /// calling thread).
    pub fn new() -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            // `PURGE`, `PROPFIND` and other extension methods, which reqwest sends too.
            .allow_non_standard_methods(true)
            .user_agent(super::USER_AGENT)
            // hyper's limit on a response head (its read buffer), so both refuse alike.
            .max_response_header_size(HYPER_MAX_HEAD_BYTES)
            // One read of a streamed body can then hand over a whole `STREAM_CHUNK`.
            .input_buffer_size(STREAM_CHUNK)
            .timeout_connect(Some(super::DEFAULT_CONNECT_TIMEOUT))
            // A name lookup is part of connecting, as reqwest's connect timeout counts it: a
            // lookup that hangs fails as `Connect` (retried for any method) on both backends.
            .timeout_resolve(Some(super::DEFAULT_CONNECT_TIMEOUT))
            // The same as the per-exchange default, so requests need no config of their own.
            .timeout_global(Some(super::DEFAULT_TIMEOUT))
            // A caller's `Expect: 100-continue` is sent, and the body after it at once, as
            // hyper does: ureq's wait for the 100 loses an early final answer (a 413 on a
            // connection kept open) until the timeout.
            .timeout_await_100(Some(Duration::ZERO))
            .build();
        // ureq's own resolver would start a thread per call to bound each lookup by the
        // timeout above (see `lookup`).
        let connector = ureq::unversioned::transport::DefaultConnector::default();
        let agent = ureq::Agent::with_parts(config, connector, super::lookup::Lookup);
        Self::with_agent(agent)
    }

    /// A backend around the caller's agent, which keeps its TLS, proxy and pool settings.
    /// Status-as-error and redirects are overridden per request, as described above, and so is
    /// the agent's global timeout, by this backend's [`timeout`](Self::timeout) (30 s unless
    /// changed; `timeout(None)` removes it).
    ///
    /// The agent keeps its own resolver too. ureq's default one starts a thread for every
    /// call whenever a timeout is set, even for an IP address on a pooled connection, which
    /// triples the cost of a fast call; [`new`](Self::new) builds an agent without that cost.
    pub fn with_agent(agent: ureq::Agent) -> Self {
        UreqDoer {
            agent,
            settings: Settings::default(),
        }
    }

    /// The largest response body accepted, in bytes (default
    /// [`DEFAULT_MAX_BODY_SIZE`](crate::backend::DEFAULT_MAX_BODY_SIZE), 10 MiB). Past it the
    /// call fails with [`ErrorKind::TooLarge`], without reading further; a streamed body is held
    /// to it when gathered by [`Body::bytes`] or [`Body::text`].
    ///
    /// ```
    /// use http_doer::UreqDoer;
    ///
    /// // Downloads of up to 1 GiB.
    /// let doer = UreqDoer::new().max_body_size(1 << 30);
    /// # let _ = doer;
    /// ```
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.settings.max_body_size = bytes;
        self
    }

    /// How many redirects to follow (default
    /// [`DEFAULT_MAX_REDIRECTS`](crate::backend::DEFAULT_MAX_REDIRECTS), 10); one more fails the
    /// call with [`ErrorKind::Redirect`]. 0 returns 3xx responses as they are.
    ///
    /// ```
    /// use http_doer::UreqDoer;
    ///
    /// // See the 3xx itself, as a response.
    /// let doer = UreqDoer::new().max_redirects(0);
    /// # let _ = doer;
    /// ```
    pub fn max_redirects(mut self, n: usize) -> Self {
        self.settings.max_redirects = n;
        self
    }

    /// The timeout for one exchange (each redirect hop), from connecting until the whole body
    /// is read (default [`DEFAULT_TIMEOUT`](crate::backend::DEFAULT_TIMEOUT), 30 s); `None` for
    /// none. Past it the call fails with [`ErrorKind::Timeout`]; a streamed body's read past it
    /// fails the same way.
    ///
    /// Takes a [`Duration`], `Some(duration)` or `None`:
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::UreqDoer;
    ///
    /// let quick = UreqDoer::new().timeout(Duration::from_secs(5));
    /// let patient = UreqDoer::new().timeout(None);
    /// # let _ = (quick, patient);
    /// ```
    pub fn timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.settings.timeout = super::longest(timeout.into());
        self
    }

    /// The most header lines accepted in a response (default
    /// [`DEFAULT_MAX_RESPONSE_HEADERS`](crate::backend::DEFAULT_MAX_RESPONSE_HEADERS), 100); past
    /// it the call fails with [`ErrorKind::TooLarge`]. Capped at
    /// [`MAX_RESPONSE_HEADERS_CEILING`](crate::backend::MAX_RESPONSE_HEADERS_CEILING) (128), the
    /// size of ureq's parser.
    ///
    /// ```
    /// use http_doer::UreqDoer;
    ///
    /// let doer = UreqDoer::new().max_response_headers(50);
    /// # let _ = doer;
    /// ```
    pub fn max_response_headers(mut self, n: usize) -> Self {
        self.settings.max_response_headers = n.min(MAX_RESPONSE_HEADERS_CEILING);
        self
    }

    /// Whether response bodies are read whole before `execute` returns (the default) or
    /// streamed as the caller reads them; a request's own [`ResponseMode`] extension wins.
    ///
    /// A streamed body is read by a thread of tokio's blocking pool, which hands chunks of up
    /// to 512 KiB to the caller through a channel of two: a slow reader slows the socket rather
    /// than filling memory (about 1.5 MiB in flight at most), and the thread is held until the
    /// body is read or dropped.
    ///
    /// ```
    /// use http_doer::{UreqDoer, ResponseMode};
    ///
    /// // Every body streams; `Body::chunk` reads it piece by piece.
    /// let doer = UreqDoer::new().response_mode(ResponseMode::Streamed);
    /// # let _ = doer;
    /// ```
    pub fn response_mode(mut self, mode: ResponseMode) -> Self {
        self.settings.response_mode = mode;
        self
    }

    /// The wrapped agent.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }
}

// Not derived: the agent's Debug prints its whole config (proxy, resolver, pool), which is long
// and not this backend's to show; the settings are, as for `ReqwestDoer`.
impl std::fmt::Debug for UreqDoer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UreqDoer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// hyper's default read buffer, the most a response head may take on `ReqwestDoer`: 8 KiB
/// plus 100 times 4 KiB.
const HYPER_MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

impl Default for UreqDoer {
    fn default() -> Self {
        Self::new()
    }
}

/// What a blocking exchange hands back: the whole response, or (streamed) its head and a
/// channel the blocking thread fills with the body's chunks as the caller takes them.
type Head = (
    http::response::Parts,
    Option<u64>,
    mpsc::Receiver<Result<Bytes, Error>>,
);

/// The most a streamed response's chunk holds: one read of the blocking thread. Large, because
/// each chunk costs a hand-off between threads (a wake-up and a context switch): on one pinned
/// core, 64 KiB chunks ran at 0.79x raw ureq's throughput, 512 KiB ones (with the agent's input
/// buffer as large) at 0.89x (`benches/streaming.rs`).
/// A read returns what has arrived, so a slow stream is not held back to fill it.
const STREAM_CHUNK: usize = 512 * 1024;

/// How many chunks a streamed body may hold between the blocking thread and the caller: at
/// most about 1.5 MiB per response (two in the channel, one being read), after which the
/// thread waits for the reader, and so does the socket.
const CHANNEL_CHUNKS: usize = 2;

/// Sends `req` and returns the response with its head read; the body is left to the caller.
fn send(
    agent: &ureq::Agent,
    settings: &Settings,
    req: http::Request<Body>,
    runtime: &Handle,
) -> Result<http::Response<ureq::Body>, Error> {
    let uri = req.uri().clone();
    let (mut parts, body) = req.into_parts();
    let result = match body.into_bytes() {
        Ok(bytes) => {
            frame_empty_body(&parts.method, &mut parts.headers, bytes.is_empty());
            // ureq frames an empty slice with `Content-Length: 0` even on a GET; `()` sends no
            // framing, and `frame_empty_body` has already added the header where it belongs.
            if bytes.is_empty() {
                run(agent, settings, http::Request::from_parts(parts, ()))
            } else {
                run(
                    agent,
                    settings,
                    http::Request::from_parts(parts, &bytes[..]),
                )
            }
        }
        // Framed by `prepare`: `Content-Length` when the length is known, else chunked.
        Err(stream) => {
            let reader = BlockingReader {
                body: stream,
                runtime: runtime.clone(),
                pending: Bytes::new(),
                deadline: settings.timeout.map(|t| std::time::Instant::now() + t),
            };
            let body = ureq::SendBody::from_owned_reader(reader);
            run(agent, settings, http::Request::from_parts(parts, body))
        }
    };
    let resp = result.map_err(|e| match e {
        // A connect (or lookup) cut short by the exchange's own timeout, no longer than the
        // connect timeout: `Timeout`, as reqwest reports it (its exchange timeout names no
        // phase). ureq calls it `Connect` or `Timeout` depending on a millisecond's rounding.
        ureq::Error::Timeout(phase @ (ureq::Timeout::Connect | ureq::Timeout::Resolve))
            if settings.timeout.is_some_and(|t| {
                let timeouts = agent.config().timeouts();
                let own = if phase == ureq::Timeout::Connect {
                    timeouts.connect
                } else {
                    timeouts.resolve
                };
                own.is_none_or(|own| t <= own)
            }) =>
        {
            Error::new(ErrorKind::Timeout, e).with_url(&uri)
        }
        e => map_error(e, &uri, Stage::Send),
    })?;
    check_head(resp.headers(), settings.max_response_headers, &uri)?;
    Ok(resp)
}

/// The declared length of a response's body, when it may have one: the length ureq frames the
/// body by, not the raw `Content-Length` (which `Transfer-Encoding` overrides, RFC 9112 6.3).
fn declared_len(method: &http::Method, resp: &http::Response<ureq::Body>) -> Option<u64> {
    if !may_have_body(method, resp.status()) {
        return Some(0);
    }
    resp.body().content_length()
}

/// One buffered exchange: the whole body read, up to the limit.
fn blocking_send(
    agent: &ureq::Agent,
    settings: &Settings,
    req: http::Request<Body>,
    runtime: &Handle,
) -> Result<Response, Error> {
    let uri = req.uri().clone();
    let method = req.method().clone();
    let mut resp = send(agent, settings, req, runtime)?;
    let limit = settings.max_body_size;
    if declared_len(&method, &resp).is_some_and(|len| len > limit) {
        return Err(too_large(limit, &uri));
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(_) => too_large(limit, &uri),
            e => map_error(e, &uri, Stage::Body),
        })?;
    // Status, version and headers only: ureq's extensions (its config, the final URI) mean
    // nothing to callers of a Doer.
    let (parts, _) = head(resp);
    Ok(http::Response::from_parts(parts, Body::from(body)))
}

/// One streamed exchange: the head goes back through `head_tx` as soon as it is read, then the
/// body's chunks through a bounded channel, until the end, an error, or the caller dropping
/// the body (the blocking thread then stops, and the half-read connection is closed).
fn blocking_stream(
    agent: &ureq::Agent,
    settings: &Settings,
    req: http::Request<Body>,
    runtime: &Handle,
    head_tx: oneshot::Sender<Result<Head, Error>>,
) {
    let uri = req.uri().clone();
    let method = req.method().clone();
    let resp = match send(agent, settings, req, runtime) {
        Ok(resp) => resp,
        Err(e) => {
            let _ = head_tx.send(Err(e));
            return;
        }
    };
    let len = declared_len(&method, &resp);
    let (parts, body) = head(resp);
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    if head_tx.send(Ok((parts, len, rx))).is_err() {
        return;
    }
    let mut reader = body.into_reader();
    // Each chunk is split off one buffer, without a copy; its memory is reused once the
    // reader has dropped the chunk.
    let mut buf = BytesMut::new();
    loop {
        buf.resize(STREAM_CHUNK, 0);
        let item = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => Ok(buf.split_to(n).freeze()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(read_error(e, &uri)),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            return;
        }
    }
}

/// The head of a ureq response (status, version, headers; not ureq's extensions) and its body.
fn head(resp: http::Response<ureq::Body>) -> (http::response::Parts, ureq::Body) {
    let (parts, body) = resp.into_parts();
    let mut out = http::Response::new(()).into_parts().0;
    out.status = parts.status;
    out.version = parts.version;
    out.headers = parts.headers;
    (out, body)
}

/// An error from reading a streamed body: ureq's own error when it is inside, as for a
/// buffered read.
fn read_error(e: io::Error, uri: &http::Uri) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
        let inner = e.into_inner().expect("checked above");
        if let Ok(ue) = inner.downcast::<ureq::Error>() {
            return map_error(*ue, uri, Stage::Body);
        }
        return Error::from(ErrorKind::Body).with_url(uri);
    }
    map_error(ureq::Error::Io(e), uri, Stage::Body)
}

/// A request body stream read from ureq's blocking thread, one chunk at a time, by blocking on
/// the runtime that made the call.
struct BlockingReader {
    body: Body,
    runtime: Handle,
    pending: Bytes,
    /// The exchange's timeout: ureq cannot time out a read of ours, so a stream that stalls is
    /// cut here, as reqwest's timeout cuts it.
    deadline: Option<std::time::Instant>,
}

impl Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            let next = self.body.chunk();
            let deadline = self.deadline;
            let chunk = self.runtime.block_on(async move {
                match deadline {
                    Some(at) => tokio::time::timeout_at(at.into(), next).await,
                    None => Ok(next.await),
                }
            });
            match chunk {
                Ok(Ok(Some(chunk))) => self.pending = chunk,
                Ok(Ok(None)) => return Ok(0),
                Ok(Err(e)) => return Err(to_io(e)),
                Err(_elapsed) => {
                    let timeout = Error::from(ErrorKind::Timeout)
                        .with_message("the request body stalled past the exchange's timeout");
                    return Err(to_io(timeout));
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.advance(n);
        Ok(n)
    }
}

/// A streamed body's chunks, as they arrive from the blocking thread.
struct Received(mpsc::Receiver<Result<Bytes, Error>>);

impl futures_core::Stream for Received {
    type Item = Result<Bytes, Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

fn run<S: ureq::AsSendBody>(
    agent: &ureq::Agent,
    settings: &Settings,
    req: http::Request<S>,
) -> Result<http::Response<ureq::Body>, ureq::Error> {
    // A request of its own config copies the agent's whole config; skip that when the agent
    // already has what the Doer needs, as the one `UreqDoer::new()` builds does.
    let config = agent.config();
    if !config.http_status_as_error()
        && config.max_redirects() == 0
        && config.allow_non_standard_methods()
        && config.timeouts().global == settings.timeout
        && config.timeouts().await_100 == Some(Duration::ZERO)
    {
        return agent.run(req);
    }
    let req = agent
        .configure_request(req)
        .http_status_as_error(false)
        .max_redirects(0)
        .allow_non_standard_methods(true)
        .timeout_global(settings.timeout)
        .timeout_await_100(Some(Duration::ZERO))
        .build();
    agent.run(req)
}

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Send,
    Body,
}

fn map_error(e: ureq::Error, uri: &http::Uri, stage: Stage) -> Error {
    use ureq::Error as U;
    // The request body's own stream failed: its error, kept as the source, says why.
    let ours = match &e {
        U::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Error>())
            .map(Error::kind),
        e => super::body_error_kind(e),
    };
    if stage == Stage::Send
        && let Some(kind) = ours
    {
        // ureq's `Error::Io` has no `source`, so the body's own error is taken out of it: its
        // cause stays in the chain, as on `ReqwestDoer`.
        let source: crate::body::BoxError = match e {
            U::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<Error>()) => {
                let kind = io.kind();
                io.into_inner()
                    .unwrap_or_else(|| Box::new(std::io::Error::from(kind)))
            }
            e => Box::new(e),
        };
        return Error::new(kind, source)
            .with_message("the request body failed")
            .with_url(uri);
    }
    let after_connect = if stage == Stage::Body {
        ErrorKind::Body
    } else {
        ErrorKind::Transport
    };
    let kind = match &e {
        // A connection that could not be made in time never carried the request: `Connect`,
        // as reqwest reports it, so both backends agree and a retry layer may resend it.
        U::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => ErrorKind::Connect,
        U::Timeout(_) => ErrorKind::Timeout,
        U::Tls(_) | U::TlsRequired | U::Rustls(_) => ErrorKind::Tls,
        U::HostNotFound | U::ConnectionFailed | U::ConnectProxyFailed(_) => ErrorKind::Connect,
        // std's words for a failed `getaddrinfo`: the name could not be resolved, so nothing
        // was sent (reqwest reports the same as a connect error).
        U::Io(io) if stage == Stage::Send && is_lookup_failure(io) => ErrorKind::Connect,
        U::Io(io) => match super::io_error_kind(io) {
            Some(ErrorKind::Connect) if stage == Stage::Send => ErrorKind::Connect,
            Some(ErrorKind::Timeout) => ErrorKind::Timeout,
            _ => after_connect,
        },
        U::BodyExceedsLimit(_) => ErrorKind::TooLarge,
        // ureq does not export its protocol error type; its words name the case.
        U::LargeResponseHeader(..) => return too_many_headers(MAX_RESPONSE_HEADERS_CEILING, uri),
        U::Protocol(p) if p.to_string().contains("too many headers") => {
            return too_many_headers(MAX_RESPONSE_HEADERS_CEILING, uri);
        }
        U::BadUri(_) | U::Http(_) | U::RequireHttpsOnly(_) | U::InvalidProxyUrl => {
            // These quote the URL; keep only our redacted copy.
            return Error::from(ErrorKind::InvalidRequest)
                .with_message("ureq refused the URL or request")
                .with_url(uri);
        }
        U::TooManyRedirects | U::RedirectFailed => ErrorKind::Redirect,
        U::Protocol(_) => after_connect,
        U::BodyStalled => ErrorKind::Body,
        _ => ErrorKind::Other,
    };
    let kind = match kind {
        ErrorKind::Connect | ErrorKind::Transport
            if stage == Stage::Send && is_tls_failure(uri, &e) =>
        {
            ErrorKind::Tls
        }
        kind => kind,
    };
    Error::new(kind, e).with_url(uri)
}

fn is_lookup_failure(io: &io::Error) -> bool {
    io.to_string().contains("failed to lookup address")
}

impl Exchange for UreqDoer {
    async fn exchange(&self, req: &Request, body: Body) -> Result<Response, Error> {
        // The blocking task needs its own request: the parts ureq reads, and the body.
        let mut owned = http::Request::new(body);
        *owned.method_mut() = req.method().clone();
        *owned.uri_mut() = req.uri().clone();
        *owned.version_mut() = req.version();
        *owned.headers_mut() = req.headers().clone();
        let agent = self.agent.clone();
        let settings = self.settings.clone();
        let runtime = Handle::current();
        let failed = |join: tokio::task::JoinError| {
            Error::new(ErrorKind::Other, join)
                .with_message("ureq task failed")
                .with_url(req.uri())
        };
        if ResponseMode::of(req, self.settings.response_mode) == ResponseMode::Buffered {
            let task = tokio::task::spawn_blocking(move || {
                blocking_send(&agent, &settings, owned, &runtime)
            });
            return task.await.unwrap_or_else(|join| Err(failed(join)));
        }
        let (head_tx, head_rx) = oneshot::channel();
        let task = tokio::task::spawn_blocking(move || {
            blocking_stream(&agent, &settings, owned, &runtime, head_tx);
        });
        let Ok(head) = head_rx.await else {
            // The thread ended without a head: it panicked.
            return Err(match task.await {
                Err(join) => failed(join),
                Ok(()) => Error::from(ErrorKind::Other)
                    .with_message("ureq task ended without a response")
                    .with_url(req.uri()),
            });
        };
        let (parts, len, rx) = head?;
        let body = Body::streamed(
            Box::pin(Received(rx)),
            len,
            Some(self.settings.max_body_size),
        );
        Ok(http::Response::from_parts(parts, body))
    }
}

// Written out rather than with `#[async_trait]`: see `redirect.rs` on `Execute`.
impl Doer for UreqDoer {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(redirect::follow(self, req, self.settings.max_redirects))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_settings_not_the_agent() {
        let proxy = ureq::Proxy::new("http://alice:pw-dbg@proxy.test:3128").unwrap();
        let config = ureq::Agent::config_builder().proxy(Some(proxy)).build();
        let doer = UreqDoer::with_agent(ureq::Agent::new_with_config(config)).max_redirects(3);
        let shown = format!("{doer:?}");
        assert!(
            !shown.contains("pw-dbg") && !shown.contains("alice"),
            "{shown}"
        );
        assert!(shown.contains("max_redirects: 3"), "{shown}");
    }
}
