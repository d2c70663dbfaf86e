//! Secret flow over the whole dependency stack, not only the crate's own events.
//!
//! One global subscriber records everything at TRACE, from every target: `tracing` events and
//! spans (names and fields, from http-doer, hyper-util, hyper or h2 when they emit any) and,
//! through `tracing-subscriber`'s `init()` (which installs `tracing_log::LogTracer`), the `log`
//! records of reqwest, ureq, ureq-proto and rustls. ureq-proto dumps the bytes on the wire as hex
//! rows of 16 bytes at TRACE; the rows of each thread are joined again before searching, so a
//! secret cut across two rows is still found. Secrets are planted everywhere a caller or a server puts them
//! (URL userinfo, query, headers, bodies, `Set-Cookie`, a response token, a redirect's
//! `Location`), the README stack runs over both backends through normal exchanges and every
//! fault, and then no secret, in any form it takes on the way (raw, percent-encoded, base64 in a
//! `Basic` header), may appear in:
//!
//! * any captured record, whatever crate, level or target it came from;
//! * the `Display`, `Debug` and `{:#?}` of every `Error`, and of every error in its `source()`
//!   chain;
//! * the `Debug` of every layer of the stack, of the signer, of the backend, and the kept log.
//!
//! The rule for URL userinfo: it becomes `Authorization: Basic` on both backends unless the
//! caller (here, the `Signing` layer) set `Authorization`, and it never reaches reqwest or ureq
//! inside a URL, so no lower crate can log it.
//!
//! Everything runs in one test, because the subscriber is global (ureq runs on blocking
//! threads, hyper-util's pool logs from its own tasks): each captured line is tagged with the
//! phase (backend and scenario) running when it was recorded, so a failure names both.
//! `SECRET_FLOW_DUMP=/tmp/secret_flow.log` writes every captured record and printed output to a
//! file for reading.

#[allow(dead_code)]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{Method, header};
use http_body_util::{BodyExt, Full};
use http_doer::breaker::ServeStale;
use http_doer::breaker::StaleAnswer;
use http_doer::logging::KeepLog;
use http_doer::retrying::Backoff;
use http_doer::signing::Bearer;
use http_doer::{
    Attempts, Body, Breaker, Doer, DoerExt, Error, Hedging, Logging, Request, ReqwestDoer,
    Response, Retrying, Signing, UreqDoer,
};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::Loopback;
use support::faults::{self, Fault};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

// ---------------------------------------------------------------------------------------------
// The secrets. Every one is distinctive and made of unreserved characters only, so its core
// survives percent-encoding, JSON and `Debug` escaping unchanged; the forms that hide the core
// (base64 in `Basic`) are listed beside it.

const USER: &str = "alice";
/// The userinfo password as it is written in the URL (percent-encoded `/`) ...
const USERINFO_PW_IN_URL: &str = "S3CRET-USERINFO-PW%2Fx";
/// ... and decoded, as it travels in `Authorization: Basic`.
const USERINFO_PW: &str = "S3CRET-USERINFO-PW/x";
const QUERY_APIKEY: &str = "S3CRET-QUERY-APIKEY";
const QUERY_TOKEN: &str = "S3CRET-QUERY-TOKEN";
const BEARER: &str = "S3CRET-BEARER";
const COOKIE: &str = "S3CRET-COOKIE";
const APIKEY: &str = "S3CRET-APIKEY";
const PROXY_USER: &str = "proxyuser";
const PROXY_PW: &str = "S3CRET-PROXY-PW";
const BODY_JSON: &str = "S3CRET-BODY-JSON";
const BODY_FORM: &str = "S3CRET-BODY-FORM";
const SET_COOKIE: &str = "S3CRET-SETCOOKIE";
const RESP_TOKEN: &str = "S3CRET-RESP-TOKEN";
const RESP_BODY: &str = "S3CRET-RESP-BODY";
/// A server's redirect carries credentials of its own: `http://bob:<pw>@host/landing?token=..`.
const LOCATION_USER: &str = "bob";
const LOCATION_PW: &str = "S3CRET-LOCATION-PW";
const LOCATION_TOKEN: &str = "S3CRET-LOCATION-TOKEN";
/// What every secret starts with: a catch-all for a form nobody foresaw.
const MARK: &str = "S3CRET";

/// One form of one secret, as it could appear in a text.
struct Form {
    secret: &'static str,
    text: String,
    /// Case-insensitive for the cores (some code lower-cases authorities and header values);
    /// exact for base64.
    fold_case: bool,
}

fn b64(s: &str) -> String {
    BASE64.encode(s)
}

fn forms() -> Vec<Form> {
    let core = |secret: &'static str, text: &str| Form {
        secret,
        text: text.to_owned(),
        fold_case: true,
    };
    let exact = |secret: &'static str, text: String| Form {
        secret,
        text,
        fold_case: false,
    };
    vec![
        core("userinfo password", "S3CRET-USERINFO-PW"),
        exact(
            "userinfo password as Basic (decoded)",
            b64(&format!("{USER}:{USERINFO_PW}")),
        ),
        exact(
            "userinfo password as Basic (as written)",
            b64(&format!("{USER}:{USERINFO_PW_IN_URL}")),
        ),
        core("query api_key", QUERY_APIKEY),
        core("query token", QUERY_TOKEN),
        core("bearer token", BEARER),
        core("cookie", COOKIE),
        core("x-api-key", APIKEY),
        core("proxy password", PROXY_PW),
        exact(
            "proxy password as Basic",
            b64(&format!("{PROXY_USER}:{PROXY_PW}")),
        ),
        core("JSON body password", BODY_JSON),
        core("form body password", BODY_FORM),
        core("response Set-Cookie", SET_COOKIE),
        core("response token header", RESP_TOKEN),
        core("response body token", RESP_BODY),
        core("Location password", LOCATION_PW),
        exact(
            "Location password as Basic",
            b64(&format!("{LOCATION_USER}:{LOCATION_PW}")),
        ),
        core("Location token", LOCATION_TOKEN),
    ]
}

/// Where in `text` each secret form appears (its first match), or, failing any, the catch-all
/// mark.
fn find_secrets<'f>(text: &str, forms: &'f [Form]) -> Vec<(&'f str, usize)> {
    let upper = text.to_ascii_uppercase();
    let mut found: Vec<(&str, usize)> = forms
        .iter()
        .filter_map(|form| {
            let at = if form.fold_case {
                upper.find(&form.text.to_ascii_uppercase())
            } else {
                text.find(&form.text)
            };
            at.map(|at| (form.secret, at))
        })
        .collect();
    if found.is_empty() {
        found.extend(upper.find(MARK).map(|at| ("unlisted form", at)));
    }
    found
}

/// At most 90 characters on either side of `at`, on one line.
fn excerpt(text: &str, at: usize) -> String {
    let mut start = at.saturating_sub(90);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + 110).min(text.len());
    while !text.is_char_boundary(end) {
        end += 1;
    }
    let cut = text[start..end].replace(['\n', '\r'], "⏎");
    format!(
        "{}{cut}{}",
        if start > 0 { "…" } else { "" },
        if end < text.len() { "…" } else { "" }
    )
}

// ---------------------------------------------------------------------------------------------
// The global capture: every span, span record and event, from `tracing` and from `log`.

/// One captured record.
struct Line {
    /// The phase (backend/scenario) running when it was recorded.
    phase: String,
    level: Level,
    /// The real target: for a `log` record, its `log.target`, not `log`.
    target: String,
    /// `true` when it came through the `log` bridge.
    from_log: bool,
    /// The thread it was recorded on, to put split records back together in order.
    thread: std::thread::ThreadId,
    /// The `message` field alone.
    message: String,
    text: String,
}

static LINES: Mutex<Vec<Line>> = Mutex::new(Vec::new());
static PHASE: Mutex<String> = Mutex::new(String::new());

fn set_phase(phase: impl Into<String>) {
    *PHASE.lock().unwrap() = phase.into();
}

fn phase() -> String {
    PHASE.lock().unwrap().clone()
}

/// Every field as text: `str` fields raw, the rest with `Debug`, errors with their whole
/// `source()` chain in both `Display` and `Debug`.
#[derive(Default)]
struct Fields {
    out: String,
    message: String,
    log_target: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "log.target" => self.log_target = Some(value.to_owned()),
            "message" => self.message = value.to_owned(),
            _ => {}
        }
        let _ = write!(self.out, " {}={value}", field.name());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn StdError + 'static)) {
        let _ = write!(self.out, " {}={value} [{value:?}]", field.name());
        let mut next = value.source();
        for _ in 0..32 {
            let Some(e) = next else { break };
            let _ = write!(self.out, " <- {e} [{e:?}]");
            next = e.source();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
        let _ = write!(self.out, " {}={value:?}", field.name());
    }
}

struct Capture;

impl Capture {
    fn push(meta: &Metadata<'_>, what: String, fields: Fields) {
        let from_log = fields.log_target.is_some();
        let line = Line {
            phase: phase(),
            level: *meta.level(),
            target: fields
                .log_target
                .unwrap_or_else(|| meta.target().to_owned()),
            from_log,
            thread: std::thread::current().id(),
            message: fields.message,
            text: format!("{what}{}", fields.out),
        };
        LINES.lock().unwrap().push(line);
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let what = format!("span {} #{}", attrs.metadata().name(), id.into_u64());
        Capture::push(attrs.metadata(), what, fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(meta) = ctx.metadata(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        let what = format!("span-record {} #{}", meta.name(), id.into_u64());
        Capture::push(meta, what, fields);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let scope = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .from_root()
                    .map(|span| span.name())
                    .collect::<Vec<_>>()
                    .join(">")
            })
            .unwrap_or_default();
        Capture::push(event.metadata(), format!("event [{scope}]"), fields);
    }
}

/// Installs the one global subscriber: everything, at every level, but for ureq's own two
/// targets at DEBUG. `init()` also installs `tracing_log::LogTracer` with the subscriber's max
/// level (TRACE), which sets `log::max_level()` to `Trace`, so reqwest, ureq and rustls
/// records come through.
///
/// Why not ureq at TRACE: ureq hex-dumps every request and response head (credentials
/// included) at TRACE under `ureq_proto`, and stops masking URLs and `Location` in its DEBUG
/// lines once TRACE is on, on purpose, as a wire debugger. No caller of ureq can redact that;
/// the README says to keep `ureq` and `ureq_proto` at DEBUG or below. At DEBUG ureq masks them
/// itself, which this test holds it to.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::new("trace,ureq=debug,ureq_proto=debug");
        tracing_subscriber::registry()
            .with(filter)
            .with(Capture)
            .init()
    });
}

// ---------------------------------------------------------------------------------------------
// A hyper server whose routes carry secrets of their own and record what they received.

#[derive(Debug, Clone)]
struct Received {
    phase: String,
    method: String,
    uri: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct SrvState {
    hits: Mutex<BTreeMap<String, u32>>,
    seen: Mutex<Vec<Received>>,
}

/// Routes:
/// * `/ok`, `/landing`: 200, `Set-Cookie`, `X-Auth-Token`, a JSON body with `access_token`.
/// * `/flaky`: 503 (`Retry-After: 0`) for the first two hits, then as `/ok`.
/// * `/cross/{code}/{port}`: `code` to `http://bob:<pw>@127.0.0.1:{port}/landing?token=..`.
/// * `/same`: 302 to `/ok`.
/// * `/stale`: 200 (cacheable, no cookie) for the first hit, then 500.
struct Srv {
    lb: Loopback,
    state: Arc<SrvState>,
}

impl Srv {
    async fn start() -> Srv {
        let state = Arc::new(SrvState::default());
        let shared = Arc::clone(&state);
        let lb = Loopback::serve(move |stream| {
            let state = Arc::clone(&shared);
            async move {
                let service = service_fn(move |req| route(Arc::clone(&state), req));
                // An error only means the client went away, which the faults do on purpose.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        })
        .await;
        Srv { lb, state }
    }

    fn host(&self) -> String {
        host_of(&self.lb.url(""))
    }

    fn seen(&self) -> Vec<Received> {
        self.state.seen.lock().unwrap().clone()
    }
}

/// `127.0.0.1:port` of a loopback URL.
fn host_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http URL");
    rest.split('/').next().unwrap().to_owned()
}

type SrvBody = Full<Bytes>;

fn reply(status: u16) -> http::response::Builder {
    hyper::Response::builder().status(status)
}

fn ok_with_secrets() -> hyper::Response<SrvBody> {
    reply(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::SET_COOKIE,
            format!("sid={SET_COOKIE}; Path=/; HttpOnly"),
        )
        .header("x-auth-token", RESP_TOKEN)
        .body(Full::new(Bytes::from(format!(
            r#"{{"access_token":"{RESP_BODY}","ok":true}}"#
        ))))
        .unwrap()
}

fn plain(status: u16, text: &'static str) -> hyper::Response<SrvBody> {
    reply(status)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(Bytes::from_static(text.as_bytes())))
        .unwrap()
}

fn redirect(status: u16, location: &str) -> hyper::Response<SrvBody> {
    reply(status)
        .header(header::LOCATION, location)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn route(
    state: Arc<SrvState>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<SrvBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let hit = {
        let mut hits = state.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    state.seen.lock().unwrap().push(Received {
        phase: phase(),
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_owned(), v)
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let resp = match segments.as_slice() {
        ["ok"] | ["landing"] => ok_with_secrets(),
        ["flaky"] if hit <= 2 => {
            let mut resp = plain(503, "try again");
            resp.headers_mut()
                .insert(header::RETRY_AFTER, http::HeaderValue::from_static("0"));
            resp
        }
        ["flaky"] => ok_with_secrets(),
        ["cross", code, port] => redirect(
            code.parse().unwrap_or(302),
            &format!(
                "http://{LOCATION_USER}:{LOCATION_PW}@127.0.0.1:{port}/landing?token={LOCATION_TOKEN}"
            ),
        ),
        ["same"] => redirect(302, "/ok"),
        ["stale"] if hit == 1 => plain(200, "a fresh page"),
        ["stale"] => plain(500, "down"),
        _ => plain(404, "no such route"),
    };
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------
// Requests with every caller-side secret planted.

/// `http://alice:<pw>@{host}{path}?api_key=..&token=..&page=2`.
fn secret_url(host: &str, path: &str) -> String {
    format!(
        "http://{USER}:{USERINFO_PW_IN_URL}@{host}{path}?api_key={QUERY_APIKEY}&token={QUERY_TOKEN}&page=2"
    )
}

#[derive(Clone, Copy)]
enum Payload {
    None,
    Json,
    Form,
}

fn request(method: Method, url: &str, payload: Payload) -> Request {
    let builder = http::Request::builder()
        .method(method)
        .uri(url)
        .header(header::COOKIE, format!("session={COOKIE}; theme=dark"))
        .header("x-api-key", APIKEY)
        .header(
            header::PROXY_AUTHORIZATION,
            format!("Basic {}", b64(&format!("{PROXY_USER}:{PROXY_PW}"))),
        );
    let (builder, body) = match payload {
        Payload::None => (builder, Body::empty()),
        Payload::Json => (
            builder
                .header(header::CONTENT_TYPE, "application/json")
                .header("idempotency-key", "k-1"),
            Body::from(format!(r#"{{"password":"{BODY_JSON}","user":"{USER}"}}"#)),
        ),
        Payload::Form => (
            builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            Body::from(format!("password={BODY_FORM}&user={USER}")),
        ),
    };
    builder.body(body).expect("a valid request")
}

// ---------------------------------------------------------------------------------------------
// The README stack, and one run of every scenario over it.

type Stack<B> = Logging<Retrying<Hedging<Breaker<Signing<B, Bearer>>>>>;

/// Logging (headers and bodies on) -> Retrying -> Hedging -> Breaker (serve-stale) -> Signing
/// (Bearer) -> backend, as in the README, with quick backoffs so the test stays short.
fn stack<B: Doer + 'static>(
    backend: B,
    log: KeepLog,
    changes: Arc<Mutex<Vec<String>>>,
) -> Stack<B> {
    backend
        .signing(Bearer::new(BEARER).expect("a valid token"))
        .breaker()
        .serve_stale(ServeStale::new(Duration::from_secs(300)))
        .on_state_change(move |c| changes.lock().unwrap().push(format!("{c:?}")))
        .hedging()
        .retrying()
        .max_retries(2)
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .total_timeout(Duration::from_secs(5))
        .logging()
        .headers(true)
        .bodies(4096)
        .keep_log(log)
}

/// What the run produced besides the captured records.
#[derive(Default)]
struct Report {
    /// Texts the crate prints for a caller: (where, text).
    outputs: Vec<(String, String)>,
    /// Expectations that did not hold (a path not exercised, a secret that did not travel).
    problems: Vec<String>,
}

impl Report {
    fn expect(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(what());
        }
    }

    /// Every printed form of `err` and of each error of its `source()` chain.
    fn error(&mut self, label: &str, err: &Error) {
        self.outputs
            .push((format!("{label}: Error Display"), err.to_string()));
        self.outputs
            .push((format!("{label}: Error Debug"), format!("{err:?}")));
        self.outputs
            .push((format!("{label}: Error {{:#?}}"), format!("{err:#?}")));
        let mut next = err.source();
        for depth in 1..=32 {
            let Some(e) = next else { break };
            self.outputs
                .push((format!("{label}: source #{depth} Display"), e.to_string()));
            self.outputs
                .push((format!("{label}: source #{depth} Debug"), format!("{e:?}")));
            self.outputs.push((
                format!("{label}: source #{depth} {{:#?}}"),
                format!("{e:#?}"),
            ));
            next = e.source();
        }
    }

    fn debug(&mut self, label: String, value: &dyn fmt::Debug) {
        self.outputs
            .push((format!("{label} Debug"), format!("{value:?}")));
        self.outputs
            .push((format!("{label} {{:#?}}"), format!("{value:#?}")));
    }
}

/// Runs `req` through `doer` under phase `label`, recording every printed form of an error.
async fn exec(
    report: &mut Report,
    label: &str,
    doer: &dyn Doer,
    req: Request,
) -> Result<Response, Error> {
    set_phase(label);
    let out = doer.execute(req).await;
    if let Err(err) = &out {
        report.error(label, err);
    }
    out
}

fn status(out: &Result<Response, Error>) -> String {
    match out {
        Ok(resp) => format!("status {}", resp.status()),
        Err(e) => format!("error {:?}", e.kind()),
    }
}

/// A loopback port that was bound, then released: nothing listens on it.
fn refused_host() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    addr.to_string()
}

const LIMIT: u64 = 64 * 1024;

/// Every scenario over one backend: under the README stack, then a few over the bare backend
/// (no `Signing`, so the userinfo rule turns the URL's credentials into `Basic`).
async fn run<B: Doer + Clone + fmt::Debug + 'static>(report: &mut Report, name: &str, backend: B) {
    let srv = Srv::start().await;
    let other = Srv::start().await;
    let stale = Srv::start().await;
    let bulk = support::server::start().await;
    let reset = faults::start(Fault::ResetMidBody).await;
    let stall = faults::start(Fault::Stall).await;
    let (host, other_host) = (srv.host(), other.host());
    let other_port = other_host.rsplit(':').next().unwrap().to_owned();

    let log = KeepLog::new(500);
    let changes = Arc::new(Mutex::new(Vec::new()));
    let doer = stack(backend.clone(), log.clone(), Arc::clone(&changes));
    let p = |s: &str| format!("{name}/{s}");

    // First, while the retry budget is fresh: a 503 that is retried, then a 200.
    let label = p("503-retried");
    let out = exec(
        report,
        &label,
        &doer,
        request(Method::GET, &secret_url(&host, "/flaky"), Payload::None),
    )
    .await;
    let attempts = out
        .as_ref()
        .ok()
        .and_then(|r| r.extensions().get::<Attempts>().copied());
    report.expect(
        matches!(&out, Ok(r) if r.status() == 200) && attempts.is_some_and(|a| a.0 >= 2),
        || {
            format!(
                "{label}: expected 200 after a retry, got {} {attempts:?}",
                status(&out)
            )
        },
    );

    for (what, method, payload) in [
        ("200-get", Method::GET, Payload::None),
        ("200-post-json", Method::POST, Payload::Json),
        ("200-post-form", Method::POST, Payload::Form),
    ] {
        let label = p(what);
        let req = request(method, &secret_url(&host, "/ok"), payload);
        let out = exec(report, &label, &doer, req).await;
        report.expect(matches!(&out, Ok(r) if r.status() == 200), || {
            format!("{label}: expected 200, got {}", status(&out))
        });
        if let Ok(resp) = out {
            // Reading the body goes through the same code paths a caller's would.
            let _ = resp.into_body().text().await;
        }
    }

    let refused = refused_host();
    for (what, method, payload) in [
        ("refused-get", Method::GET, Payload::None),
        ("refused-post-form", Method::POST, Payload::Form),
    ] {
        let label = p(what);
        let req = request(method, &secret_url(&refused, "/x"), payload);
        let out = exec(report, &label, &doer, req).await;
        report.expect(
            matches!(&out, Err(e) if e.is_connect() || e.is_breaker_open()),
            || format!("{label}: expected Connect, got {}", status(&out)),
        );
    }

    for (what, code, method, payload) in [
        ("redirect-cross-302-get", 302, Method::GET, Payload::None),
        (
            "redirect-cross-307-post-json",
            307,
            Method::POST,
            Payload::Json,
        ),
    ] {
        let label = p(what);
        let path = format!("/cross/{code}/{other_port}");
        let req = request(method, &secret_url(&host, &path), payload);
        let out = exec(report, &label, &doer, req).await;
        report.expect(matches!(&out, Ok(r) if r.status() == 200), || {
            format!(
                "{label}: expected 200 from the other origin, got {}",
                status(&out)
            )
        });
    }

    let label = p("redirect-same-origin");
    let req = request(Method::GET, &secret_url(&host, "/same"), Payload::None);
    let out = exec(report, &label, &doer, req).await;
    report.expect(matches!(&out, Ok(r) if r.status() == 200), || {
        format!("{label}: expected 200, got {}", status(&out))
    });

    let label = p("reset-mid-body");
    let req = request(
        Method::GET,
        &secret_url(&host_of(&reset.url("")), "/x"),
        Payload::None,
    );
    let out = exec(report, &label, &doer, req).await;
    report.expect(out.is_err(), || {
        format!("{label}: expected an error, got {}", status(&out))
    });

    let label = p("stall-timeout");
    let req = request(
        Method::GET,
        &secret_url(&host_of(&stall.url("")), "/x"),
        Payload::None,
    );
    let out = exec(report, &label, &doer, req).await;
    report.expect(out.is_err(), || {
        format!("{label}: expected a timeout, got {}", status(&out))
    });

    for (what, path) in [
        ("too-large-content-length", "/bytes/100000"),
        ("too-large-chunked", "/chunked/100000"),
    ] {
        let label = p(what);
        let req = request(
            Method::GET,
            &secret_url(&host_of(&bulk.url("")), path),
            Payload::None,
        );
        let out = exec(report, &label, &doer, req).await;
        report.expect(matches!(&out, Err(e) if e.is_too_large()), || {
            format!("{label}: expected TooLarge, got {}", status(&out))
        });
    }

    for (what, url) in [
        (
            "refused-request-port-99999",
            secret_url("127.0.0.1:99999", "/x"),
        ),
        (
            "refused-request-ftp-scheme",
            secret_url("127.0.0.1", "/x").replacen("http:", "ftp:", 1),
        ),
    ] {
        let label = p(what);
        let req = request(Method::GET, &url, Payload::None);
        let out = exec(report, &label, &doer, req).await;
        report.expect(matches!(&out, Err(e) if e.is_invalid_request()), || {
            format!("{label}: expected InvalidRequest, got {}", status(&out))
        });
    }

    // The breaker opens on a host that started failing, and serves the last good answer.
    let label = p("breaker-serve-stale");
    let url = secret_url(&stale.host(), "/stale");
    let first = exec(
        report,
        &label,
        &doer,
        request(Method::GET, &url, Payload::None),
    )
    .await;
    let mut served_stale = false;
    for _ in 0..10 {
        let out = exec(
            report,
            &label,
            &doer,
            request(Method::GET, &url, Payload::None),
        )
        .await;
        if let Ok(resp) = &out
            && resp.extensions().get::<StaleAnswer>().is_some()
        {
            served_stale = true;
            break;
        }
    }
    report.expect(
        matches!(&first, Ok(r) if r.status() == 200) && served_stale,
        || format!("{label}: expected a fresh 200, then a stale answer once the circuit opened"),
    );

    // The bare backend: no signer, so the URL's userinfo is the only credential.
    let bare_ok = p("bare-200-get");
    let out = exec(
        report,
        &bare_ok,
        &backend,
        request(Method::GET, &secret_url(&host, "/ok"), Payload::None),
    )
    .await;
    report.expect(matches!(&out, Ok(r) if r.status() == 200), || {
        format!("{bare_ok}: expected 200, got {}", status(&out))
    });
    let label = p("bare-refused");
    let out = exec(
        report,
        &label,
        &backend,
        request(Method::GET, &secret_url(&refused, "/x"), Payload::None),
    )
    .await;
    report.expect(matches!(&out, Err(e) if e.is_connect()), || {
        format!("{label}: expected Connect, got {}", status(&out))
    });
    let label = p("bare-refused-request-port-99999");
    let req = request(
        Method::GET,
        &secret_url("127.0.0.1:99999", "/x"),
        Payload::None,
    );
    let out = exec(report, &label, &backend, req).await;
    report.expect(matches!(&out, Err(e) if e.is_invalid_request()), || {
        format!("{label}: expected InvalidRequest, got {}", status(&out))
    });

    // The Debug of every layer (Logging has none; its kept log is printed instead).
    set_phase(p("debug-prints"));
    let retrying = doer.get_ref();
    let hedging = retrying.get_ref();
    let breaker = hedging.get_ref();
    let signing = breaker.get_ref();
    report.debug(p("Retrying"), retrying);
    report.debug(p("Hedging"), hedging);
    report.debug(p("Breaker"), breaker);
    report.debug(p("Breaker snapshots"), &breaker.snapshots());
    report.debug(p("Signing"), signing);
    report.debug(p("Bearer signer"), signing.signer());
    report.debug(p("backend"), signing.get_ref());
    report.debug(p("bare backend"), &backend);
    report.debug(p("KeepLog"), &log);
    report.debug(p("KeepLog entries"), &log.entries());
    report.outputs.push((p("KeepLog Display"), log.to_string()));
    report.outputs.push((
        p("breaker state changes"),
        changes.lock().unwrap().join("\n"),
    ));
    report.expect(!log.is_empty(), || format!("{name}: the kept log is empty"));

    // The secrets did travel: without that the test would prove nothing.
    let seen = srv.seen();
    let ok_get = seen
        .iter()
        .find(|r| r.phase == p("200-get") && r.method == "GET");
    report.expect(
        ok_get.is_some_and(|r| {
            r.header("authorization") == Some(&format!("Bearer {BEARER}"))
                && r.header("cookie").is_some_and(|c| c.contains(COOKIE))
                && r.header("x-api-key") == Some(APIKEY)
                && r.header("proxy-authorization").is_some()
                && r.uri.contains(QUERY_APIKEY)
                && r.uri.contains(QUERY_TOKEN)
        }),
        || format!("{name}: the 200 GET did not carry every secret to the server: {ok_get:?}"),
    );
    for (what, secret) in [("200-post-json", BODY_JSON), ("200-post-form", BODY_FORM)] {
        report.expect(
            seen.iter()
                .any(|r| r.phase == p(what) && r.body.contains(secret)),
            || format!("{name}: {what}: the body secret never reached the server"),
        );
    }
    // The rule: the URL's userinfo arrives as `Authorization: Basic` when no one set it.
    let bare = seen.iter().find(|r| r.phase == bare_ok);
    let basic = [
        format!("Basic {}", b64(&format!("{USER}:{USERINFO_PW}"))),
        format!("Basic {}", b64(&format!("{USER}:{USERINFO_PW_IN_URL}"))),
    ];
    report.expect(
        bare.and_then(|r| r.header("authorization"))
            .is_some_and(|a| basic.iter().any(|b| b == a)),
        || {
            format!(
                "{name}: bare-200-get: URL userinfo did not arrive as Authorization: Basic \
                 (server saw authorization={:?})",
                bare.map(|r| r.header("authorization"))
            )
        },
    );
    // A hop to another origin carries none of the caller's credentials.
    for r in other.seen() {
        let carried: Vec<&str> = [
            (
                "authorization: Bearer",
                r.header("authorization")
                    .is_some_and(|a| a.contains(BEARER)),
            ),
            ("cookie", r.header("cookie").is_some()),
            ("x-api-key", r.header("x-api-key").is_some()),
            (
                "proxy-authorization",
                r.header("proxy-authorization").is_some(),
            ),
            ("caller's query", r.uri.contains(QUERY_APIKEY)),
        ]
        .into_iter()
        .filter_map(|(what, yes)| yes.then_some(what))
        .collect();
        report.expect(carried.is_empty(), || {
            format!("{}: the cross-origin hop carried {carried:?}", r.phase)
        });
    }
    report.expect(other.seen().len() >= 2, || {
        format!("{name}: the cross-origin redirects never reached the other server")
    });
}

/// Leaks by (backend, where, secret): how many, in which scenarios, and the first excerpt.
#[derive(Default)]
struct Leaks(BTreeMap<LeakKey, Leak>);

/// (backend, where, secret).
type LeakKey = (String, String, String);
/// (how many, in which scenarios, the first excerpt).
type Leak = (usize, BTreeSet<String>, String);

impl Leaks {
    fn add(&mut self, phase: &str, place: String, secret: &str, text: impl FnOnce() -> String) {
        let (backend, scenario) = phase.split_once('/').unwrap_or((phase, ""));
        let key = (backend.to_owned(), place, secret.to_owned());
        let entry = self
            .0
            .entry(key)
            .or_insert_with(|| (0, BTreeSet::new(), text()));
        entry.0 += 1;
        entry.1.insert(scenario.to_owned());
    }
}

/// ureq-proto logs every byte it sends and receives at TRACE, as hex rows of 16 bytes
/// (`4745 5420 2f6f 6b3f ...  GET /ok?...`), which cuts a secret across rows: the bytes of each
/// thread's rows, in order, put back together per phase.
fn hex_streams(lines: &[Line]) -> BTreeMap<(String, String), Vec<u8>> {
    let mut streams: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.target.starts_with("ureq_proto")) {
        if let Some(bytes) = hex_row(&line.message) {
            let key = (line.phase.clone(), format!("{:?}", line.thread));
            streams.entry(key).or_default().extend(bytes);
        }
    }
    streams
}

/// The bytes of one hex row: 8 groups of 4 hex digits (`--` past the end of the data).
fn hex_row(message: &str) -> Option<Vec<u8>> {
    let groups: Vec<&str> = message.split(' ').take(8).collect();
    if groups.len() != 8 {
        return None;
    }
    let mut out = Vec::with_capacity(16);
    for group in groups {
        if group.len() != 4 || !group.is_ascii() {
            return None;
        }
        for pair in [&group[..2], &group[2..]] {
            if pair != "--" {
                out.push(u8::from_str_radix(pair, 16).ok()?);
            }
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn no_secret_reaches_any_record_of_any_crate_nor_any_error_or_debug_print() {
    install();
    // `init()` hands this level to `LogTracer`, which sets `log::max_level()` from it (the
    // `log` crate is not a dependency of this test, so it cannot be read here; the TRACE
    // records from ureq checked below prove it).
    assert_eq!(
        tracing::level_filters::LevelFilter::current(),
        tracing::level_filters::LevelFilter::TRACE
    );

    // The layer records spans and their later fields, not only events.
    let probe = tracing::info_span!(
        "secret_flow_probe",
        probe = "visible",
        late = tracing::field::Empty
    );
    probe.record("late", "recorded");
    drop(probe);

    let mut report = Report::default();
    // Long enough that a loaded debug build still answers in time, short enough for the stall.
    let per_exchange = Some(Duration::from_secs(1));
    let reqwest = ReqwestDoer::new()
        .timeout(per_exchange)
        .max_body_size(LIMIT);
    let ureq = UreqDoer::new().timeout(per_exchange).max_body_size(LIMIT);
    let bound = Duration::from_secs(30);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        tokio::time::timeout(bound, run(&mut report, "reqwest", reqwest))
            .await
            .expect("the reqwest run ends in time");
        tokio::time::timeout(bound, run(&mut report, "ureq", ureq))
            .await
            .expect("the ureq run ends in time");
    });
    set_phase("end");
    // Blocking ureq threads of cancelled hedges may still be inside a stalled exchange, and
    // will log when it ends: shutting the runtime down waits for them (no fixed sleep, which
    // could end before they do), bounded. It drops the async tasks (the fault servers among
    // them) first, so such an exchange ends on a closed socket rather than its own timeout.
    runtime.shutdown_timeout(Duration::from_secs(10));

    let lines = std::mem::take(&mut *LINES.lock().unwrap());
    let forms = forms();

    // Which crates were heard, and at which levels: proof that the lower crates are captured.
    let mut heard: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in &lines {
        let krate = line.target.split("::").next().unwrap_or("").to_owned();
        let via = if line.from_log { "log" } else { "tracing" };
        heard
            .entry(krate)
            .or_default()
            .insert(format!("{}/{via}", line.level));
    }
    eprintln!("captured {} records; crates heard:", lines.len());
    for (krate, levels) in &heard {
        eprintln!("  {krate}: {levels:?}");
    }
    if let Some(path) = std::env::var_os("SECRET_FLOW_DUMP") {
        // Every captured record, one a line, for a person to read: SECRET_FLOW_DUMP=/tmp/x.log
        let mut all = String::new();
        for l in &lines {
            let _ = writeln!(all, "[{}] {} {} {}", l.phase, l.level, l.target, l.text);
        }
        for (place, text) in &report.outputs {
            let _ = writeln!(all, "[output] {place}: {text}");
        }
        std::fs::write(path, all).expect("write the dump");
    }
    let errors = report
        .outputs
        .iter()
        .filter(|(p, _)| p.ends_with("Error Display"));
    let sources = report
        .outputs
        .iter()
        .filter(|(p, _)| p.contains("source #"));
    eprintln!(
        "checked {} printed outputs: {} errors, {} source-chain prints",
        report.outputs.len(),
        errors.count(),
        sources.count()
    );
    let heard_any = |prefix: &str| heard.keys().any(|k| k.starts_with(prefix));
    let mut problems = std::mem::take(&mut report.problems);
    if !report.outputs.iter().any(|(p, _)| p.contains("source #2")) {
        problems.push("no error had a source chain two deep: the chains were not walked".into());
    }
    let own = |needle: &str| {
        lines
            .iter()
            .any(|l| l.target == module_path!() && l.text.contains(needle))
    };
    if !(own("span secret_flow_probe") && own("probe=visible") && own("late=recorded")) {
        problems.push("the capture layer missed this test's own probe span".into());
    }
    if !(heard_any("hyper_util") || heard_any("reqwest")) {
        problems.push("no record from hyper_util nor reqwest was captured".into());
    }
    if !heard_any("ureq") {
        problems.push("no record from ureq (through the log bridge) was captured".into());
    }
    if !lines.iter().any(|l| l.from_log && l.level == Level::TRACE) {
        problems
            .push("no TRACE record through the log bridge: log::max_level() is not Trace".into());
    }
    if !heard_any("http_doer") {
        problems.push("no record from http_doer itself was captured".into());
    }

    // Leaks, grouped by (backend, where, secret): count, phases, first excerpt.
    let mut leaks = Leaks::default();
    for line in &lines {
        if line.target.starts_with("ureq_proto") && hex_row(&line.message).is_some() {
            continue; // checked below, rows joined
        }
        for (secret, at) in find_secrets(&line.text, &forms) {
            let place = format!("record {} {}", line.level, line.target);
            leaks.add(&line.phase, place, secret, || excerpt(&line.text, at));
        }
    }
    for ((phase, _thread), bytes) in hex_streams(&lines) {
        let text = String::from_utf8_lossy(&bytes);
        for (secret, at) in find_secrets(&text, &forms) {
            let place = "record TRACE ureq_proto::util, hex rows joined".to_owned();
            leaks.add(&phase, place, secret, || excerpt(&text, at));
        }
    }
    for (place, text) in &report.outputs {
        for (secret, at) in find_secrets(text, &forms) {
            let phase = place.split(':').next().unwrap_or("");
            let place = format!("output {place}");
            leaks.add(phase, place, secret, || excerpt(text, at));
        }
    }
    let leaks = leaks.0;

    if problems.is_empty() && leaks.is_empty() {
        return;
    }
    let mut msg = String::new();
    if !leaks.is_empty() {
        let _ = writeln!(msg, "{} kind(s) of leak:", leaks.len());
        for ((backend, place, secret), (count, phases, text)) in leaks.iter().take(60) {
            let phases: Vec<&str> = phases.iter().map(String::as_str).collect();
            let _ = writeln!(
                msg,
                "- [{backend}] {place}: {secret} (x{count}; in {})\n    {text}",
                phases.join(", ")
            );
        }
        if leaks.len() > 60 {
            let _ = writeln!(msg, "... and {} more", leaks.len() - 60);
        }
    }
    if !problems.is_empty() {
        let _ = writeln!(msg, "{} expectation(s) failed:", problems.len());
        for p in &problems {
            let _ = writeln!(msg, "- {p}");
        }
    }
    panic!("{msg}");
}
