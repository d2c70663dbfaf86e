//! [`Logging`]: records each exchange as a `tracing` event, in a bounded in-memory log
//! ([`KeepLog`]), or through a closure of yours ([`Record`]), with every secret redacted.

mod callsite;
mod keep_log;
mod record;
mod stream;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderName;
use http::header::CONTENT_LENGTH;
use tracing::Level;
use tracing::field::{Value, debug, display};

use crate::doer::Execute;
use crate::{Attempts, Doer, Error, Request, Response, redact};
use callsite::{EventSite, Values};
use stream::{BodyWatch, Exchange};

pub use keep_log::{KeepLog, LogEntry, Outcome, StreamedBody};
pub use record::{Headers, Record};

/// The `tracing` target of exchange events unless [`Logging::target`] sets another.
pub const DEFAULT_TARGET: &str = "http_doer::logging";

/// The level of an exchange that got a response below 500, unless
/// [`Logging::success_level`] sets another: `DEBUG`, so a healthy client is quiet at `INFO`.
pub const DEFAULT_SUCCESS_LEVEL: Level = Level::DEBUG;

/// The level of an exchange that ended in an error or a 5xx response, unless
/// [`Logging::failure_level`] sets another: `WARN`.
pub const DEFAULT_FAILURE_LEVEL: Level = Level::WARN;

type Sink = Arc<dyn Fn(&Record<'_>) + Send + Sync>;

/// Records each exchange that goes through it, then passes the outcome on unchanged.
///
/// One exchange (one call to [`execute`](Doer::execute)) makes one `tracing` event, and, when
/// asked, one line in a [`KeepLog`] and one call to a sink closure. A streamed response makes
/// one more event and sink call when its body ends (see [Bodies by kind](Logging#bodies-by-kind)).
///
/// # Defaults
///
/// | setting | default | builder |
/// |---|---|---|
/// | `tracing` events | on | [`tracing`](Logging::tracing) |
/// | event target | [`DEFAULT_TARGET`] (`http_doer::logging`) | [`target`](Logging::target) |
/// | level of a response below 500 | [`DEBUG`](DEFAULT_SUCCESS_LEVEL) | [`success_level`](Logging::success_level) |
/// | level of an error or a 5xx response | [`WARN`](DEFAULT_FAILURE_LEVEL) | [`failure_level`](Logging::failure_level) |
/// | headers | off | [`headers`](Logging::headers), [`redact_header`](Logging::redact_header) |
/// | bodies | off | [`bodies`](Logging::bodies) |
/// | in-memory log | none | [`keep_log`](Logging::keep_log) |
/// | sink | none | [`sink`](Logging::sink) |
///
/// # Settings and shared state
///
/// Builder methods set the settings of the value they are called on; clones made before a
/// builder call keep theirs (the settings are shared by clones and copied on the first change).
/// `Logging` itself keeps no state: what clones share is the [`KeepLog`] given to
/// [`keep_log`](Logging::keep_log) (a `KeepLog`'s clones are one log) and the
/// [`sink`](Logging::sink) closure.
///
/// # Event fields
///
/// `message` (`"http response"` or `"http error"`), `method`, `url` (redacted by
/// [`redact::uri`]: no userinfo, secret query values replaced), `status`, `elapsed_ms` (a float,
/// microsecond resolution), `attempt`, `request_bytes`, `response_bytes`, `error_kind` (the
/// [`ErrorKind`](crate::ErrorKind) variant name, such as `Timeout`), `error` (the error's
/// redacted `Display`), and, when turned on, `request_headers`, `response_headers`,
/// `request_body`, `response_body`. A field with nothing to say is left out: a size that is not
/// known (a stream of unknown length) is absent, never `0`, so the field keeps one type (an
/// integer) for the tools that index it.
///
/// # Bodies by kind
///
/// Sizes are logged as they are known, and bodies (with [`bodies`](Logging::bodies)) are
/// previewed where that costs the exchange nothing:
///
/// | body | size (`request_bytes`, `response_bytes`) | preview (`request_body`, `response_body`) |
/// |---|---|---|
/// | buffered request or response | its length | the body, redacted and cut to `max` bytes |
/// | streamed request, replayable or one-shot | its length when known (a file's size, a `Content-Length` header), else absent | never: `[streamed body, not previewed]` |
/// | streamed response ([`ResponseMode::Streamed`](crate::ResponseMode)) | its declared length, if any, in the exchange event; the bytes read in the event at its end | in the event at its end |
///
/// A streamed request body is not previewed because reading it for the log would take it: a
/// one-shot body would be consumed before it is sent, and a replayable one would be opened
/// and read one more time (a file read twice) for every attempt.
///
/// A streamed response is logged twice. The exchange event comes when its head arrives, as
/// for any response (`response_body` then reads `[streamed body, previewed when it ends]`).
/// The body is then watched as its reader takes it, chunk by chunk, with nothing held back,
/// and when it ends a second event follows, with the same `method`, `url`, `status` and
/// `attempt`, `response_bytes` the bytes read, `elapsed_ms` measured to the body's end, and
/// `response_body` the preview, when bodies are on. Its `message` tells how the body ended:
///
/// | `message` | the body | level |
/// |---|---|---|
/// | `"http response body"` | was read to its end | as the exchange's |
/// | `"http response body error"` | failed (cut, timed out, longer or shorter than declared); `error_kind` and `error` say why | the failure level |
/// | `"http response body dropped"` | was dropped by its reader before its end | as the exchange's |
///
/// The [`KeepLog`] line is written with the head (`body=streaming`) and updated at the body's
/// end, and the [`sink`](Logging::sink) is called again, with [`Record::streamed`] saying how
/// the body ended. The second event is sent from where the body is read (so within the
/// reader's current span), or dropped. A body that is never read nor dropped (leaked) is
/// never reported.
///
/// # Target
///
/// `tracing`'s macros need the target as a compile-time constant, so a target chosen at run
/// time cannot go through them. Rather than offer a fixed menu of targets, `Logging` registers
/// its own callsite for each `&'static str` target and level it is given (once per distinct
/// pair, for the life of the program), so subscribers filter these events by target exactly as
/// they filter macro events (`RUST_LOG=my_app::http=debug`). One consequence: these events do not
/// fall back to the `log` crate when no `tracing` subscriber is installed (`tracing`'s `log`
/// feature only works through its macros); use a `tracing-log`-style bridge or a
/// [`sink`](Logging::sink) for that.
///
/// # Attempt numbers
///
/// `Logging` does not know which layers are below it. It reads the attempt number from what
/// they report: the [`Attempts`] extension of a response, or [`Error::attempts`]. Placed above a
/// retrying decorator (the recommended order), it logs one event per call, with the number of
/// the attempt that produced the outcome (which is also how many attempts were made). Placed
/// below it, it logs every attempt, without a number.
///
/// # Secrets
///
/// The URL is always redacted; header values are redacted by name and by the `sensitive` flag
/// (see [`Headers`]); the error's `Display` is redacted by [`Error`]. Bodies are the weak spot:
/// see [`bodies`](Logging::bodies) before turning them on.
///
/// A call whose future is dropped before it finishes (a caller's timeout, a lost hedge) is not
/// logged: there is no outcome to report.
///
/// # Example
///
/// ```
/// use http_doer::{Body, Doer, DoerExt, logging::KeepLog, testing::ScriptedDoer};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let log = KeepLog::new(100);
/// let doer = ScriptedDoer::new()
///     .then_status(503)
///     .logging()
///     .target("my_app::http")
///     .keep_log(log.clone())
///     .sink(|r| assert_eq!(r.status.map(|s| s.as_u16()), Some(503)));
///
/// let req = http::Request::get("https://api.test/v1?api_key=s3cr3t").body(Body::empty()).unwrap();
/// let resp = doer.execute(req).await.unwrap();
/// assert_eq!(resp.status(), 503);
///
/// let text = log.to_string();
/// assert!(text.contains("GET https://api.test/v1?api_key=REDACTED status=503"), "{text}");
/// assert!(!text.contains("s3cr3t"));
/// # });
/// ```
#[derive(Clone)]
pub struct Logging<D> {
    inner: D,
    config: Arc<Config>,
}

// The sink is a closure: it is left out (`..`).
impl<D: fmt::Debug> fmt::Debug for Logging<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &*self.config;
        f.debug_struct("Logging")
            .field("inner", &self.inner)
            .field("tracing", &c.tracing)
            .field("target", &c.target)
            .field("success_level", &c.success.level())
            .field("failure_level", &c.failure.level())
            .field("headers", &c.headers)
            .field("redact", &c.redact)
            .field("bodies", &c.body_cap)
            .field("keep_log", &c.keep)
            .field("sink", &c.sink.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Config {
    tracing: bool,
    target: &'static str,
    success: &'static EventSite,
    failure: &'static EventSite,
    headers: bool,
    redact: Vec<HeaderName>,
    body_cap: Option<usize>,
    keep: Option<KeepLog>,
    sink: Option<Sink>,
}

impl<D> Logging<D> {
    /// Wraps `inner` with the defaults in the [table above](Logging#defaults).
    pub fn new(inner: D) -> Self {
        Logging {
            inner,
            config: Arc::new(Config {
                tracing: true,
                target: DEFAULT_TARGET,
                success: EventSite::get(DEFAULT_TARGET, DEFAULT_SUCCESS_LEVEL),
                failure: EventSite::get(DEFAULT_TARGET, DEFAULT_FAILURE_LEVEL),
                headers: false,
                redact: Vec::new(),
                body_cap: None,
                keep: None,
                sink: None,
            }),
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Turns `tracing` events on or off (on by default); off is for callers who log only
    /// through a [`sink`](Logging::sink) or a [`KeepLog`].
    ///
    /// ```
    /// use http_doer::{Logging, logging::KeepLog, testing::ScriptedDoer};
    ///
    /// // Only the in-memory log, no events.
    /// let log = KeepLog::new(50);
    /// let doer = Logging::new(ScriptedDoer::new()).tracing(false).keep_log(log.clone());
    /// # let _ = doer;
    /// ```
    pub fn tracing(mut self, on: bool) -> Self {
        self.config().tracing = on;
        self
    }

    /// Sets the `tracing` target of the events (default [`DEFAULT_TARGET`]); see
    /// [Target](Logging#target) for how a run-time target works.
    ///
    /// ```
    /// use http_doer::{Logging, testing::ScriptedDoer};
    ///
    /// // Filter these with `RUST_LOG=billing::http=debug`.
    /// let doer = Logging::new(ScriptedDoer::new()).target("billing::http");
    /// # let _ = doer;
    /// ```
    pub fn target(mut self, target: &'static str) -> Self {
        let c = self.config();
        c.target = target;
        c.success = EventSite::get(target, c.success.level());
        c.failure = EventSite::get(target, c.failure.level());
        self
    }

    /// Sets the level of an exchange that got a response with a status below 500 (default
    /// [`DEFAULT_SUCCESS_LEVEL`], `DEBUG`).
    ///
    /// ```
    /// use http_doer::{Logging, testing::ScriptedDoer};
    /// use tracing::Level;
    ///
    /// // Every exchange shows at the usual `INFO` filter; failures stand out at `ERROR`.
    /// let doer = Logging::new(ScriptedDoer::new())
    ///     .success_level(Level::INFO)
    ///     .failure_level(Level::ERROR);
    /// # let _ = doer;
    /// ```
    pub fn success_level(mut self, level: Level) -> Self {
        let c = self.config();
        c.success = EventSite::get(c.target, level);
        self
    }

    /// Sets the level of an exchange that ended in an error or a 5xx response (default
    /// [`DEFAULT_FAILURE_LEVEL`], `WARN`); see [`success_level`](Logging::success_level) for
    /// an example.
    pub fn failure_level(mut self, level: Level) -> Self {
        let c = self.config();
        c.failure = EventSite::get(c.target, level);
        self
    }

    /// Logs request and response headers (off by default), with secret values redacted (see
    /// [`Headers`]).
    ///
    /// ```
    /// use http_doer::{Body, Doer, Logging, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let doer = Logging::new(ScriptedDoer::new().then_status(200))
    ///     .headers(true)
    ///     .sink(|r| {
    ///         let sent = r.request_headers.as_ref().unwrap().to_string();
    ///         assert!(sent.contains(r#""authorization": "REDACTED""#), "{sent}");
    ///     });
    /// let req = http::Request::get("https://api.test/")
    ///     .header("authorization", "Bearer s3cr3t")
    ///     .body(Body::empty())
    ///     .unwrap();
    /// doer.execute(req).await.unwrap();
    /// # });
    /// ```
    pub fn headers(mut self, on: bool) -> Self {
        self.config().headers = on;
        self
    }

    /// Also redacts the values of header `name`, on top of those [`Headers`] always redacts.
    /// None by default.
    ///
    /// ```
    /// use http::HeaderName;
    /// use http_doer::{Logging, testing::ScriptedDoer};
    ///
    /// let doer = Logging::new(ScriptedDoer::new())
    ///     .headers(true)
    ///     .redact_header(HeaderName::from_static("x-customer-email"));
    /// # let _ = doer;
    /// ```
    pub fn redact_header(mut self, name: HeaderName) -> Self {
        self.config().redact.push(name);
        self
    }

    /// Logs request and response bodies, each cut to at most `max_bytes` (off by default). A
    /// streamed request body is not shown; a streamed response body is previewed from its
    /// first `max_bytes`, in an event at its end (see [Bodies by kind](Logging#bodies-by-kind)).
    ///
    /// <div class="warning">
    ///
    /// Bodies often carry secrets: a password in a login form, a token in an OAuth response,
    /// personal data. Turn this on to debug, not in production.
    ///
    /// </div>
    ///
    /// What is redacted: in a form body (`application/x-www-form-urlencoded`), the value of
    /// every field named like a secret, by the same rules as query parameters
    /// ([`redact::is_secret_param`]); in a JSON body (`application/json`, `*/*+json`), the value
    /// of every object member named like a secret, at any depth, which needs the `json`
    /// feature (the document is re-serialized compactly, and members may come out in another
    /// order; without the feature, or when the body is not valid JSON or is over 1 MiB, the body
    /// is not shown at all, only its size). A body with no `Content-Type`, `text/plain` or
    /// `application/octet-stream` is judged by its look: one that starts like JSON gets the
    /// JSON rules, one shaped like `a=1&b=2` the form rules. Any other text is not shown at all
    /// when it mentions a secret-like word (`password`, `token`, `secret`, `cookie`, ...), and
    /// is otherwise shown with its URLs redacted ([`redact::text`]). A body that is not UTF-8
    /// shows as its size.
    ///
    /// A streamed response body gets the same rules, applied to its first `max_bytes` (never
    /// more are kept) and to what is learned of the rest as it goes by: free text that names
    /// a secret-like word anywhere is not shown, whitespace anywhere means it is not a form,
    /// and bytes that are not UTF-8 anywhere show it as its size. A JSON body longer than
    /// `max_bytes` cannot be parsed from its first bytes, so it is not shown; raise `max_bytes`
    /// to see it. Watching a streamed body this way costs one pass over its bytes.
    ///
    /// ```
    /// use http_doer::{Body, Doer, Logging, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let doer = Logging::new(ScriptedDoer::new().then_status(204)).bodies(256).sink(|r| {
    ///     assert_eq!(r.request_body, Some("user=ann&password=REDACTED"));
    /// });
    /// let req = http::Request::post("https://api.test/login")
    ///     .header("content-type", "application/x-www-form-urlencoded")
    ///     .body(Body::from("user=ann&password=hunter2"))
    ///     .unwrap();
    /// doer.execute(req).await.unwrap();
    /// # });
    /// ```
    pub fn bodies(mut self, max_bytes: usize) -> Self {
        self.config().body_cap = Some(max_bytes);
        self
    }

    /// Keeps a line per exchange in `log` (see [`KeepLog`]; none by default). Keep a clone of
    /// `log` to read it; the [type-level example](Logging#example) shows one.
    pub fn keep_log(mut self, log: KeepLog) -> Self {
        self.config().keep = Some(log);
        self
    }

    /// Calls `sink` with a [`Record`] of each exchange, for callers who log elsewhere.
    ///
    /// It runs on the caller's task before the outcome is returned, so keep it quick: hand the
    /// record's data to a channel rather than doing I/O in it. None by default.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use http_doer::{Body, Doer, Logging, testing::ScriptedDoer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let (tx, rx) = mpsc::channel();
    /// let doer = Logging::new(ScriptedDoer::new().then_status(404))
    ///     .sink(move |r| tx.send((r.url.to_owned(), r.status)).unwrap());
    /// let req = http::Request::get("https://api.test/x?token=t0k").body(Body::empty()).unwrap();
    /// doer.execute(req).await.unwrap();
    /// let (url, status) = rx.recv().unwrap();
    /// assert_eq!(url, "https://api.test/x?token=REDACTED");
    /// assert_eq!(status, Some(http::StatusCode::NOT_FOUND));
    /// # });
    /// ```
    pub fn sink(mut self, sink: impl Fn(&Record<'_>) + Send + Sync + 'static) -> Self {
        self.config().sink = Some(Arc::new(sink));
        self
    }

    /// The log given to [`keep_log`](Logging::keep_log), if any.
    pub fn kept_log(&self) -> Option<&KeepLog> {
        self.config.keep.as_ref()
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

    /// The wrapped Doer.
    #[deprecated(note = "use `get_ref`, the name every decorator uses")]
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Whether anything may want to hear about an exchange; when not, `execute` only passes the
    /// call on.
    fn listening(&self) -> bool {
        let c = &*self.config;
        c.keep.is_some()
            || c.sink.is_some()
            || (c.tracing && (c.success.enabled() || c.failure.enabled()))
    }
}

// Written out rather than with `#[async_trait]`: a call with nothing to log and no span to
// open is handed the inner Doer's own future, with no future of this layer around it (whose
// state, large for the record it may build, would be allocated and moved on every call).
impl<D: Doer> Doer for Logging<D> {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        // Both checks are a static's load with no subscriber. The call span is at INFO: when
        // no subscriber takes INFO at all, it would be disabled, and the event sites below
        // are asked themselves.
        let span_possible = crate::telemetry::is_enabled() && tracing::level_enabled!(Level::INFO);
        if !span_possible && !self.listening() {
            return self.inner.execute(req);
        }
        Box::pin(self.call(req))
    }
}

impl<D: Doer> Logging<D> {
    async fn call(&self, mut req: Request) -> Result<Response, Error> {
        // The call span (see `telemetry`): the exchange event below is sent inside it.
        let span = crate::telemetry::spans::call(&mut req);
        crate::telemetry::spans::within(span, self.log(req)).await
    }
}

impl<D: Doer> Logging<D> {
    async fn log(&self, req: Request) -> Result<Response, Error> {
        if !self.listening() {
            return self.inner.execute(req).await;
        }
        let c = &*self.config;
        let method = req.method().clone();
        let uri = req.uri().clone();
        let request_bytes = body_len(&req);
        let request_headers = c.headers.then(|| req.headers().clone());
        let request_body = c
            .body_cap
            .and_then(|cap| record::render_body(req.headers(), req.body(), cap));
        let time = SystemTime::now();
        let start = tokio::time::Instant::now();

        let mut result = self.inner.execute(req).await;

        let elapsed = start.elapsed();
        let resp = result.as_ref().ok();
        let error = result.as_ref().err();
        let failed = resp.is_none_or(|r| r.status().as_u16() >= 500);
        let site = if failed { c.failure } else { c.success };
        let to_tracing = c.tracing && site.enabled();
        let streamed = resp.is_some_and(|r| r.body().is_stream());
        // With only failures listened to (a WARN filter), a success stops here, before the
        // costly part: redacting the URL. A streamed body may still fail, which is a failure.
        if !to_tracing && c.keep.is_none() && c.sink.is_none() {
            if streamed && c.tracing && c.failure.enabled() {
                let exchange = Exchange {
                    time,
                    start,
                    method,
                    uri,
                    url: None,
                    status: resp.map(|r| r.status()).unwrap_or_default(),
                    attempt: resp.and_then(|r| r.extensions().get::<Attempts>().map(|a| a.0)),
                    kept: None,
                };
                watch(&mut result, &self.config, exchange);
            }
            return result;
        }
        let url = redact::uri(&uri);
        let response_body = match (resp, c.body_cap) {
            (Some(_), Some(_)) if streamed => Some(record::STREAMED_RESPONSE.to_owned()),
            (Some(r), Some(cap)) => record::render_body(r.headers(), r.body(), cap),
            _ => None,
        };
        let record = Record {
            time,
            level: site.level(),
            method: &method,
            url: &url,
            attempt: match &result {
                Ok(r) => r.extensions().get::<Attempts>().map(|a| a.0),
                Err(e) => e.attempts(),
            },
            status: resp.map(|r| r.status()),
            error,
            elapsed,
            request_bytes,
            response_bytes: resp.and_then(|r| r.body().len()),
            request_headers: request_headers.as_ref().map(|h| Headers::new(h, &c.redact)),
            response_headers: resp
                .filter(|_| c.headers)
                .map(|r| Headers::new(r.headers(), &c.redact)),
            request_body: request_body.as_deref(),
            response_body: response_body.as_deref(),
            streamed: streamed.then_some(StreamedBody::Reading),
        };
        if to_tracing {
            emit(site, &record);
        }
        if let Some(sink) = &c.sink {
            sink(&record);
        }
        let attempt = record.attempt;
        let response_bytes = record.response_bytes;
        let status = record.status;
        let kept = c.keep.as_ref().map(|log| {
            let outcome = match &result {
                Ok(r) => Outcome::Status(r.status()),
                Err(e) => Outcome::Error {
                    kind: e.kind(),
                    message: format!("{e:#}"),
                },
            };
            log.push(LogEntry {
                time,
                method: method.clone(),
                url: url.clone(),
                attempt,
                outcome,
                elapsed,
                request_bytes,
                response_bytes,
                streamed: streamed.then_some(StreamedBody::Reading),
            })
        });
        if let (true, Some(status)) = (streamed, status) {
            let exchange = Exchange {
                time,
                start,
                method,
                uri,
                url: Some(url),
                status,
                attempt,
                kept,
            };
            watch(&mut result, &self.config, exchange);
        }
        result
    }
}

/// The request body's length: its own, or, for a stream, the `Content-Length` it will be sent
/// with.
fn body_len(req: &Request) -> Option<u64> {
    let body = req.body();
    body.len().or_else(|| {
        let declared = req.headers().get(CONTENT_LENGTH)?.to_str().ok()?;
        body.is_stream()
            .then(|| declared.trim().parse().ok())
            .flatten()
    })
}

/// Wraps the streamed body of the response in `result` with a [`BodyWatch`], which logs its
/// end.
fn watch(result: &mut Result<Response, Error>, config: &Arc<Config>, exchange: Exchange) {
    let Ok(resp) = result else { return };
    // Only a preview needs the body's type.
    let media = match config.body_cap {
        Some(_) => record::media_type(resp.headers()),
        None => String::new(),
    };
    let body = std::mem::take(resp.body_mut());
    let watcher = BodyWatch::new(config.clone(), exchange, media);
    *resp.body_mut() = body.tap(watcher);
}

/// Sends `record` as one event at `site`.
fn emit(site: &'static EventSite, r: &Record<'_>) {
    fn opt<T: Value>(v: &Option<T>) -> Option<&dyn Value> {
        v.as_ref().map(|v| v as &dyn Value)
    }
    let message = match (&r.streamed, r.error) {
        (None | Some(StreamedBody::Reading), Some(_)) => "http error",
        (None | Some(StreamedBody::Reading), None) => "http response",
        (Some(StreamedBody::Failed { .. }), _) => "http response body error",
        (Some(StreamedBody::Dropped), _) => "http response body dropped",
        (Some(_), _) => "http response body",
    };
    let method = r.method.as_str();
    let status = r.status.map(|s| u64::from(s.as_u16()));
    // Whole microseconds, so a fast exchange does not print as `0` nor with float noise.
    let elapsed_ms = r.elapsed.as_micros() as f64 / 1000.0;
    let attempt = r.attempt.map(u64::from);
    let error_kind = r.error.map(|e| debug(e.kind()));
    // `{:#}`: the error and its causes, each once (its `Display` alone stops at its own words).
    let error = r.error.map(|e| display(format!("{e:#}")));
    let request_headers = r.request_headers.map(display);
    let response_headers = r.response_headers.map(display);
    let values: Values<'_> = [
        Some(&message),
        Some(&method),
        Some(&r.url),
        opt(&status),
        Some(&elapsed_ms),
        opt(&attempt),
        opt(&r.request_bytes),
        opt(&r.response_bytes),
        opt(&error_kind),
        opt(&error),
        opt(&request_headers),
        opt(&response_headers),
        opt(&r.request_body),
        opt(&r.response_body),
    ];
    site.emit(&values);
}
