//! [`Cassette`]: record real exchanges to a file once, replay them in tests with no network.

mod format;
mod matching;
mod scrub;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::HeaderName;

pub use format::{Interaction, RecordedRequest, RecordedResponse};
pub use matching::Order;

use matching::Matcher;
use scrub::Rules;

use crate::{Body, Doer, Error, ErrorKind, Request, Response};

/// The environment variable that chooses the [`RecordMode`] of every [`Cassette`] whose mode
/// was not set in code: `none` (or `replay`), `once`, `new` or `all`, in any case. Unset or
/// empty: [`RecordMode::Replay`].
///
/// Refreshing every cassette of a crate is then one command:
/// `HTTP_DOER_RECORD=all cargo test`.
pub const RECORD_ENV: &str = "HTTP_DOER_RECORD";

/// Default cap on a body recorded (request or response): 10 MiB, the backends' own default
/// response limit.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 10 * 1024 * 1024;

/// Whether a [`Cassette`] replays, records, or both; VCR's record modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordMode {
    /// Replay only (VCR's `:none`, the default): every request must match a recorded one, and
    /// the wrapped Doer is never called. A missing cassette file is an error. What CI runs.
    Replay,
    /// Record the whole cassette if its file does not exist yet, else replay only (VCR's
    /// `:once`).
    Once,
    /// Replay what matches; send every other request through the wrapped Doer and add it to
    /// the cassette (VCR's `:new_episodes`).
    New,
    /// Send every request through the wrapped Doer and write a new cassette with this run's
    /// exchanges only (VCR's `:all`), replacing the old file at the first exchange.
    All,
}

impl RecordMode {
    /// The mode [`RECORD_ENV`] asks for, or `None` when it is unset or empty.
    ///
    /// ```
    /// use http_doer::testing::RecordMode;
    ///
    /// // Tests run without the variable: replay only.
    /// let mode = RecordMode::from_env()?.unwrap_or(RecordMode::Replay);
    /// # let _ = mode;
    /// # Ok::<(), http_doer::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Other`] when the variable holds anything but `none`, `replay`, `once`,
    /// `new` or `all` (in any case), or is not Unicode: a typo must not silently replay.
    pub fn from_env() -> Result<Option<RecordMode>, Error> {
        let Some(value) = std::env::var_os(RECORD_ENV) else {
            return Ok(None);
        };
        let text = value.to_str().unwrap_or("\u{fffd}").trim();
        if text.is_empty() {
            return Ok(None);
        }
        let mode = match text.to_ascii_lowercase().as_str() {
            "none" | "replay" => RecordMode::Replay,
            "once" => RecordMode::Once,
            "new" => RecordMode::New,
            "all" => RecordMode::All,
            _ => {
                return Err(Error::from(ErrorKind::Other).with_message(format!(
                    "{RECORD_ENV}={text:?} is not one of none, once, new, all"
                )));
            }
        };
        Ok(Some(mode))
    }
}

/// A response extension on every replayed response: the index of the interaction in the
/// cassette that answered, so a test can tell a replay from a live answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Replayed(pub usize);

/// The Doer of [`Cassette::replay`]: it sends nothing, and fails every call (it is only
/// called if a cassette opened for replay were asked to record, which `replay` rules out).
#[derive(Clone, Copy, Debug, Default)]
pub struct Offline;

#[async_trait]
impl Doer for Offline {
    async fn execute(&self, req: Request) -> Result<Response, Error> {
        Err(Error::from(ErrorKind::InvalidRequest)
            .with_message("Offline sends nothing: this cassette can only replay")
            .with_url(req.uri()))
    }
}

/// A [`Doer`] that records real exchanges to a file and replays them later, with no network:
/// Ruby's VCR, Python's vcrpy and Go's go-vcr, for any Doer.
///
/// Put it where the backend goes: under the decorators, so that a replay runs the whole stack
/// (retries of a recorded 503 included):
///
/// ```
/// use http_doer::{Body, Doer, DoerExt, testing::{Cassette, RecordMode, doer_fn, response}};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let path = std::env::temp_dir().join(format!("doc-cassette-{}.json", std::process::id()));
/// let get = || http::Request::get("https://api.test/items?page=2").body(Body::empty()).unwrap();
///
/// // Once, against the real service (here a closure stands in for `ReqwestDoer::new()`).
/// let real = doer_fn(|_req| async { Ok(response(200, "[1, 2]")) });
/// let recorder = Cassette::new(real, &path).mode(RecordMode::All).retrying().logging();
/// assert_eq!(recorder.execute(get()).await?.into_body().text().await?, "[1, 2]");
///
/// // In every test run after: from the file, with no network at all.
/// let replayer = Cassette::replay(&path).retrying().logging();
/// assert_eq!(replayer.execute(get()).await?.into_body().text().await?, "[1, 2]");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), http_doer::Error>(())
/// # }).unwrap();
/// ```
///
/// # Record modes
///
/// [`RecordMode::Replay`] (the default), [`Once`](RecordMode::Once),
/// [`New`](RecordMode::New) or [`All`](RecordMode::All), set in code with
/// [`mode`](Self::mode) or, when the code does not set one, by the [`RECORD_ENV`] environment
/// variable, so one command refreshes every cassette: `HTTP_DOER_RECORD=all cargo test`.
/// The file is read at the first call.
///
/// # Matching
///
/// A live request is matched on its method and URL (origin, path, and query pairs in any
/// order), after the same redaction as recorded requests, so a fresh token matches the
/// `REDACTED` one on file. [`match_body`](Self::match_body), [`match_header`](Self::match_header)
/// and [`match_with`](Self::match_with) add conditions; [`match_host`](Self::match_host)`(false)`
/// drops the origin (a cassette recorded from a server on a random loopback port). By default
/// any interaction may answer and each answers once, as VCR does; see [`order`](Self::order)
/// and [`repeatable`](Self::repeatable). A request that matches none fails with
/// [`ErrorKind::InvalidRequest`] (which [`Retrying`](crate::Retrying) does not retry and a
/// [`Breaker`](crate::Breaker) does not count), whose message names the nearest recorded
/// request and how it differs:
///
/// ```text
/// invalid request: cassette tests/data/cassettes/todo.json has no match for GET
/// http://todo.test/v1/todos/99; the nearest, #3 GET http://todo.test/v1/todos/2, differs:
/// path /v1/todos/2 recorded (record it with HTTP_DOER_RECORD=new)
/// ```
///
/// # Secrets
///
/// Nothing reaches the file unredacted by the rules of [`Logging`](crate::Logging): values of
/// secret headers (`Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`, ...; see
/// [`redact::is_secret_header`](crate::redact::is_secret_header)) and of sensitive header
/// values, URL userinfo, secret query values (`token`, `api_key`, `password`, ...; see
/// [`redact::is_secret_param`](crate::redact::is_secret_param)), including in header values
/// that are URLs (`Location`), and secret members of JSON bodies and fields of form bodies,
/// all replaced by `REDACTED`. Add your own with [`redact_header`](Self::redact_header),
/// [`redact_param`](Self::redact_param) and [`redact_with`](Self::redact_with); spare a
/// harmless name the rules would hide (an error body's `code`) with
/// [`keep_param`](Self::keep_param). Free text (XML, multipart) is not redacted field by field:
/// only the URLs in it are (by the same names); a JSON body that does not parse and a binary
/// body are recorded as they are. Use `redact_with` for anything else. A replayed response carries
/// the redacted values (`Set-Cookie: REDACTED`).
///
/// # Bodies
///
/// Bodies are recorded whole, up to [`max_body_size`](Self::max_body_size) (default
/// [`DEFAULT_MAX_BODY_SIZE`]). While recording, a streamed request body is read before it is
/// sent, and a streamed response body is read before the call returns: the caller gets it
/// buffered. A body over the cap fails the call with [`ErrorKind::TooLarge`] rather than
/// leave a cassette that cannot replay it. A replayed response is always buffered. Only
/// responses are recorded: a call that fails with an [`Error`] is returned as it is and leaves
/// nothing in the cassette.
///
/// # The file
///
/// One JSON document, pretty-printed one field per line, so a re-recorded cassette diffs well
/// in review and any JSON tool reads it (a JSON Lines file would put each exchange, bodies
/// included, on one long line, and its one advantage, appending, is lost anyway since every
/// write replaces the file):
///
/// ```text
/// {
///   "http_doer_cassette": 1,
///   "interactions": [
///     {
///       "request": {
///         "method": "POST",
///         "url": "https://api.test/login?token=REDACTED",
///         "headers": [
///           "authorization: REDACTED",
///           "content-type: application/json"
///         ],
///         "body": "{\"password\":\"REDACTED\",\"user\":\"ann\"}"
///       },
///       "response": {
///         "status": 200,
///         "headers": [
///           "set-cookie: REDACTED"
///         ],
///         "body_base64": "AJ+Slg=="
///       }
///     }
///   ]
/// }
/// ```
///
/// Headers keep their order, one `"name: value"` string each (`"name;base64: ..."` for a value
/// that is not visible ASCII). A body is `"body"`, text, when it is UTF-8, and `"body_base64"`
/// otherwise. A JSON body stays byte for byte as sent unless a member was redacted (it is then
/// written compact, members sorted). Each recorded exchange rewrites the file atomically (a
/// temporary file renamed over it), so a test that crashes leaves the previous cassette or
/// the new one, never half of one. Record each file with one `Cassette` (and its clones, which
/// share what they record): one that finds the file written by another since it read or
/// wrote it fails the call rather than write over the other's interactions.
///
/// A recorded answer keeps its `Content-Length` as sent when it can have no body (to a
/// `HEAD`, a 1xx, 204 or 304: the length is the resource's); any other gets its recorded
/// body's. With [`Order::InOrder`] and [`RecordMode::New`], a new request is recorded where it
/// came, before the recorded ones still to play.
pub struct Cassette<D> {
    inner: D,
    path: PathBuf,
    mode: Option<RecordMode>,
    order: Order,
    repeatable: bool,
    matcher: Matcher,
    rules: Rules,
    max_body_size: u64,
    shared: Arc<Mutex<Option<Tape>>>,
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// The interactions in play, once the file is read.
struct Tape {
    mode: RecordMode,
    interactions: Vec<Interaction>,
    plays: Vec<u32>,
    /// In order: the next interaction to play, and the one played last.
    next: usize,
    last: Option<usize>,
    /// A digest of the file as this cassette last read or wrote it (`None`: there was none),
    /// to tell when another writer changed it since.
    file: Option<u64>,
}

impl Tape {
    fn play(&mut self, i: usize) {
        self.plays[i] += 1;
        self.last = Some(i);
        self.next = self.next.max(i + 1);
    }
}

impl<D> Cassette<D> {
    /// A cassette at `path` over `inner`, the Doer it records from: replay only unless
    /// [`RECORD_ENV`] or [`mode`](Self::mode) says otherwise, method and URL matched, any
    /// order, each interaction played once, bodies up to [`DEFAULT_MAX_BODY_SIZE`].
    pub fn new(inner: D, path: impl AsRef<Path>) -> Self {
        Cassette {
            inner,
            path: path.as_ref().to_owned(),
            mode: None,
            order: Order::default(),
            repeatable: false,
            matcher: Matcher::default(),
            rules: Rules::default(),
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            shared: Arc::default(),
            writer: Arc::default(),
        }
    }

    /// Sets the record mode, whatever [`RECORD_ENV`] says.
    ///
    /// ```
    /// use http_doer::testing::{Cassette, RecordMode, ScriptedDoer};
    ///
    /// // Record what is missing on a developer's machine, replay only in CI.
    /// let ci = std::env::var_os("CI").is_some();
    /// let mode = if ci { RecordMode::Replay } else { RecordMode::New };
    /// let doer = Cassette::new(ScriptedDoer::new(), "tests/data/cassettes/x.json").mode(mode);
    /// # let _ = doer;
    /// ```
    pub fn mode(mut self, mode: RecordMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Sets which interaction may answer next: any (the default) or the next in recorded
    /// order.
    ///
    /// ```
    /// use http_doer::testing::{Cassette, Order};
    ///
    /// // A workflow whose steps must come in the recorded order.
    /// let doer = Cassette::replay("tests/data/cassettes/x.json").order(Order::InOrder);
    /// # let _ = doer;
    /// ```
    pub fn order(mut self, order: Order) -> Self {
        self.order = order;
        self
    }

    /// Whether an interaction may answer more than once (default: no, each once, so a test
    /// that sends a request one time too many fails). With repeats, a request matching only
    /// played interactions gets the last recorded of them again; in order, the one played
    /// last may answer again before the next one is reached (polling).
    ///
    /// ```
    /// use http_doer::testing::Cassette;
    ///
    /// let doer = Cassette::replay("tests/data/cassettes/x.json").repeatable(true);
    /// # let _ = doer;
    /// ```
    pub fn repeatable(mut self, yes: bool) -> Self {
        self.repeatable = yes;
        self
    }

    /// Whether the origin (scheme, host, port) must match (default: yes). Turn it off for a
    /// cassette recorded from a server on a random port, or to replay one cassette against
    /// any base URL.
    ///
    /// ```
    /// use http_doer::testing::Cassette;
    ///
    /// let doer = Cassette::replay("tests/data/cassettes/x.json").match_host(false);
    /// # let _ = doer;
    /// ```
    pub fn match_host(mut self, yes: bool) -> Self {
        self.matcher.host = yes;
        self
    }

    /// Whether the body must match too, byte for byte after redaction (default: no).
    ///
    /// ```
    /// use http_doer::testing::Cassette;
    ///
    /// // Two POSTs to one URL told apart by what they send.
    /// let doer = Cassette::replay("tests/data/cassettes/x.json").match_body(true);
    /// # let _ = doer;
    /// ```
    pub fn match_body(mut self, yes: bool) -> Self {
        self.matcher.body = yes;
        self
    }

    /// Requires the values of header `name` to match too (after redaction: a secret header's
    /// value is `REDACTED` on both sides, so only its presence is compared).
    ///
    /// ```
    /// use http_doer::testing::Cassette;
    ///
    /// let doer = Cassette::replay("tests/data/cassettes/x.json")
    ///     .match_header(http::header::ACCEPT_LANGUAGE);
    /// # let _ = doer;
    /// ```
    pub fn match_header(mut self, name: HeaderName) -> Self {
        self.matcher.headers.push(name);
        self
    }

    /// Adds a condition of your own: `f` gets the live request (not redacted) and a recorded
    /// one, and says whether they match, on top of the other conditions.
    ///
    /// ```
    /// use http_doer::testing::Cassette;
    ///
    /// // Requests match only if both ask for the same API version.
    /// let version = |h: &http::HeaderMap| h.get("x-api-version").cloned();
    /// let doer = Cassette::replay("tests/data/cassettes/x.json")
    ///     .match_with(move |live, recorded| version(live.headers()) == version(&recorded.headers));
    /// # let _ = doer;
    /// ```
    pub fn match_with(
        mut self,
        f: impl Fn(&Request, &RecordedRequest) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.matcher.custom.push(Arc::new(f));
        self
    }

    /// Redacts the values of header `name` too, in requests and responses.
    ///
    /// ```
    /// use http_doer::testing::Cassette;
    ///
    /// let doer = Cassette::replay("tests/data/cassettes/x.json")
    ///     .redact_header(http::HeaderName::from_static("x-tenant"));
    /// # let _ = doer;
    /// ```
    pub fn redact_header(mut self, name: HeaderName) -> Self {
        self.rules.headers.push(name);
        self
    }

    /// Redacts the values named `name` too (ASCII case ignored): query parameters, form
    /// fields and JSON members at any depth.
    ///
    /// ```
    /// use http_doer::testing::Cassette;
    ///
    /// let doer = Cassette::replay("tests/data/cassettes/x.json").redact_param("account_number");
    /// # let _ = doer;
    /// ```
    pub fn redact_param(mut self, name: impl Into<String>) -> Self {
        self.rules.params.push(name.into());
        self
    }

    /// Keeps the values named `name` (ASCII case ignored) that Logging's rules would redact,
    /// because here they hold no secret: the `code` of an error body, a `key` that is an id.
    ///
    /// ```
    /// use http_doer::testing::Cassette;
    ///
    /// let doer = Cassette::replay("tests/data/cassettes/x.json").keep_param("code");
    /// # let _ = doer;
    /// ```
    pub fn keep_param(mut self, name: impl Into<String>) -> Self {
        self.rules.keep.push(name.into());
        self
    }

    /// Runs `f` over every interaction before it is written, after the other rules, to
    /// redact what they cannot see (a secret in free text). Live requests get the same pass
    /// (with an empty response) before they are matched, so write `f` to depend on the
    /// request alone when it changes the request. A `Content-Length` is set to the body's new
    /// length afterwards.
    ///
    /// ```
    /// use http_doer::testing::Cassette;
    ///
    /// let doer = Cassette::replay("tests/data/cassettes/x.json").redact_with(|it| {
    ///     let body = String::from_utf8_lossy(&it.response.body).replace("ACCT-123", "ACCT-XXX");
    ///     it.response.body = body.into();
    /// });
    /// # let _ = doer;
    /// ```
    pub fn redact_with(mut self, f: impl Fn(&mut Interaction) + Send + Sync + 'static) -> Self {
        self.rules.custom.push(Arc::new(f));
        self
    }

    /// Sets the largest body recorded, request or response (default
    /// [`DEFAULT_MAX_BODY_SIZE`]); a larger one fails the call with [`ErrorKind::TooLarge`].
    ///
    /// ```
    /// use http_doer::testing::Cassette;
    ///
    /// let doer = Cassette::replay("tests/data/cassettes/x.json").max_body_size(64 << 20);
    /// # let _ = doer;
    /// ```
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// The cassette's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many recorded interactions have not answered yet; `None` before the first call
    /// (the file is read then). A test can end with `assert_eq!(cassette.unplayed(), Some(0))`
    /// to check that the code under test sent every recorded request.
    pub fn unplayed(&self) -> Option<usize> {
        let tape = self.lock();
        tape.as_ref()
            .map(|t| t.plays.iter().filter(|n| **n == 0).count())
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

    fn lock(&self) -> MutexGuard<'_, Option<Tape>> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io_error(
        &self,
        what: &str,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::new(ErrorKind::Other, e)
            .with_message(format!("cassette {}: {what}", self.path.display()))
    }

    /// Reads the file at the first call; the mode in effect.
    async fn load(&self) -> Result<RecordMode, Error> {
        if let Some(tape) = &*self.lock() {
            return Ok(tape.mode);
        }
        let asked = match self.mode {
            Some(mode) => mode,
            None => RecordMode::from_env()?.unwrap_or(RecordMode::Replay),
        };
        let on_disk = match tokio::fs::read(&self.path).await {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            // A file `All` would replace anyway need not be readable.
            Err(_) if asked == RecordMode::All => None,
            Err(e) => return Err(self.io_error("cannot be read", e)),
        };
        let file = on_disk.as_deref().map(digest);
        let existing = on_disk.filter(|_| asked != RecordMode::All);
        let (mode, interactions) = match (asked, existing) {
            (RecordMode::Replay, None) => {
                return Err(Error::from(ErrorKind::Other).with_message(format!(
                    "cassette {} does not exist; record it with {RECORD_ENV}=new",
                    self.path.display()
                )));
            }
            (RecordMode::Once, Some(bytes)) => (RecordMode::Replay, self.parse(&bytes)?),
            (RecordMode::Once, None) => (RecordMode::All, Vec::new()),
            (mode, Some(bytes)) => (mode, self.parse(&bytes)?),
            (mode, None) => (mode, Vec::new()),
        };
        let mut tape = self.lock();
        // Two first calls at once both read the file; the first to get here wins.
        let tape = tape.get_or_insert_with(|| Tape {
            mode,
            plays: vec![0; interactions.len()],
            interactions,
            next: 0,
            last: None,
            file,
        });
        Ok(tape.mode)
    }

    fn parse(&self, bytes: &[u8]) -> Result<Vec<Interaction>, Error> {
        format::read(bytes).map_err(|why| {
            Error::from(ErrorKind::Other).with_message(format!(
                "cassette {} is not valid: {why}",
                self.path.display()
            ))
        })
    }

    /// The redacted view of a request: what is recorded, and what is matched.
    fn view(&self, req: &Request, body: Bytes) -> RecordedRequest {
        let mut view = RecordedRequest::new(req.method().clone(), self.rules.url(req.uri()));
        view.headers = self.rules.headers(req.headers());
        view.body = self.rules.body(req.headers(), &body);
        view
    }

    /// `view` as it would be recorded, the user's passes run on it: what a recorded request is
    /// matched against. A copy, so that a recorded interaction goes through the passes once.
    fn finished(&self, view: &RecordedRequest) -> RecordedRequest {
        let mut it = Interaction::new(view.clone(), RecordedResponse::new(http::StatusCode::OK));
        self.rules.finish(&mut it);
        it.request
    }

    /// The interaction that answers `req`, marked as played.
    fn find(
        &self,
        req: &Request,
        live: &RecordedRequest,
    ) -> Result<Option<(usize, RecordedResponse)>, String> {
        let mut guard = self.lock();
        let Some(tape) = guard.as_mut() else {
            return Ok(None);
        };
        let matches = |i: usize| {
            self.matcher
                .differences(req, live, &tape.interactions[i].request)
                .is_empty()
        };
        let n = tape.interactions.len();
        let found = match self.order {
            Order::AnyOrder => (0..n)
                .find(|&i| tape.plays[i] == 0 && matches(i))
                .or_else(|| {
                    self.repeatable
                        .then(|| (0..n).rev().find(|&i| matches(i)))
                        .flatten()
                }),
            Order::InOrder => (tape.next < n && matches(tape.next))
                .then_some(tape.next)
                .or_else(|| tape.last.filter(|&i| self.repeatable && matches(i))),
        };
        match found {
            Some(i) => {
                tape.play(i);
                Ok(Some((i, tape.interactions[i].response.clone())))
            }
            None if tape.mode == RecordMode::Replay => Err(self.no_match(tape, req, live)),
            None => Ok(None),
        }
    }

    /// Why nothing matched: the nearest recorded request and how it differs, or why a
    /// matching one may not answer.
    fn no_match(&self, tape: &Tape, req: &Request, live: &RecordedRequest) -> String {
        let mut msg = format!(
            "cassette {} has no match for {} {}",
            self.path.display(),
            live.method,
            live.url
        );
        let nearest = tape
            .interactions
            .iter()
            .enumerate()
            .map(|(i, it)| (i, self.matcher.differences(req, live, &it.request)))
            // Of two as near, the one sharing more of the URL: `/todos/2` for `/todos/9`.
            .min_by_key(|(i, d)| {
                let url = &tape.interactions[*i].request.url;
                let shared = url
                    .bytes()
                    .zip(live.url.bytes())
                    .take_while(|(a, b)| a == b);
                (d.len(), std::cmp::Reverse(shared.count()))
            });
        match nearest {
            None => msg.push_str("; it is empty"),
            Some((i, diffs)) => {
                let recorded = &tape.interactions[i].request;
                if diffs.is_empty() {
                    let why = match self.order {
                        Order::InOrder if tape.next < tape.interactions.len() => {
                            let next = &tape.interactions[tape.next].request;
                            format!(
                                "comes out of order: the next is #{} {} {}",
                                tape.next, next.method, next.url
                            )
                        }
                        _ => "was already played (allow repeats with `repeatable(true)`)".into(),
                    };
                    msg.push_str(&format!("; #{i}, which matches, {why}"));
                } else {
                    msg.push_str(&format!(
                        "; the nearest, #{i} {} {}, differs: {}",
                        recorded.method,
                        recorded.url,
                        diffs.join("; ")
                    ));
                }
            }
        }
        msg.push_str(&format!(" (record it with {RECORD_ENV}=new)"));
        msg
    }

    /// Writes every interaction to the file, atomically, unless another writer changed the
    /// file since this cassette read or wrote it: its interactions would be lost, so the call
    /// fails instead, saying so.
    async fn save(&self) -> Result<(), Error> {
        // One writer at a time among clones, each writing everything recorded so far: the
        // last write holds every interaction.
        let _writer = self.writer.lock().await;
        let (text, expected) = match &*self.lock() {
            Some(tape) => (format::write(&tape.interactions), tape.file),
            None => return Ok(()),
        };
        let now = match tokio::fs::read(&self.path).await {
            Ok(bytes) => Some(digest(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io_error("cannot be read", e)),
        };
        if now != expected {
            return Err(Error::from(ErrorKind::Other).with_message(format!(
                "cassette {} was written by another Cassette since this one read it: record \
                 each file with one Cassette (and its clones), or the interactions of one \
                 would overwrite the other's",
                self.path.display()
            )));
        }
        write_atomic(&self.path, text.as_bytes())
            .await
            .map_err(|e| self.io_error("cannot be written", e))?;
        if let Some(tape) = self.lock().as_mut() {
            tape.file = Some(digest(text.as_bytes()));
        }
        Ok(())
    }
}

impl Cassette<Offline> {
    /// A cassette at `path` that only replays, whatever [`RECORD_ENV`] says: with no Doer to
    /// record from, it never touches a network.
    pub fn replay(path: impl AsRef<Path>) -> Self {
        Cassette::new(Offline, path).mode(RecordMode::Replay)
    }

    /// The interactions of the cassette at `path`, as written (redacted).
    ///
    /// ```no_run
    /// use http_doer::testing::Cassette;
    ///
    /// let recorded = Cassette::read("tests/data/cassettes/todo.json")?;
    /// assert!(recorded.iter().all(|it| !it.request.headers.contains_key("authorization")
    ///     || it.request.headers["authorization"] == "REDACTED"));
    /// # Ok::<(), http_doer::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Other`] when the file cannot be read or is not a cassette.
    pub fn read(path: impl AsRef<Path>) -> Result<Vec<Interaction>, Error> {
        let cassette = Cassette::replay(path);
        let bytes =
            std::fs::read(&cassette.path).map_err(|e| cassette.io_error("cannot be read", e))?;
        cassette.parse(&bytes)
    }
}

impl<D: Clone> Clone for Cassette<D> {
    /// A clone shares the interactions played and recorded, and the file.
    fn clone(&self) -> Self {
        Cassette {
            inner: self.inner.clone(),
            path: self.path.clone(),
            mode: self.mode,
            order: self.order,
            repeatable: self.repeatable,
            matcher: self.matcher.clone(),
            rules: self.rules.clone(),
            max_body_size: self.max_body_size,
            shared: self.shared.clone(),
            writer: self.writer.clone(),
        }
    }
}

impl<D: fmt::Debug> fmt::Debug for Cassette<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cassette")
            .field("inner", &self.inner)
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("order", &self.order)
            .field("repeatable", &self.repeatable)
            .field("match_host", &self.matcher.host)
            .field("match_body", &self.matcher.body)
            .field("match_headers", &self.matcher.headers)
            .field("max_body_size", &self.max_body_size)
            .field("unplayed", &self.unplayed())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<D: Doer> Doer for Cassette<D> {
    async fn execute(&self, req: Request) -> Result<Response, Error> {
        let mode = self.load().await?;
        let (parts, body) = req.into_parts();
        // A stream is read only when its bytes are needed: to record it, or to match on it.
        let needs_body = mode != RecordMode::Replay || self.matcher.body;
        let (bytes, body) = match body.as_bytes() {
            Some(b) if needs_body && b.len() as u64 > self.max_body_size => {
                return Err(too_large("request", self.max_body_size));
            }
            Some(b) => (b.clone(), body),
            None if needs_body => {
                let b = read_capped(body, self.max_body_size, "request").await?;
                (b.clone(), Body::from(b))
            }
            None => (Bytes::new(), body),
        };
        let req = Request::from_parts(parts, body);
        let live = self.view(&req, bytes);

        if mode != RecordMode::All {
            match self.find(&req, &self.finished(&live)) {
                Ok(Some((i, recorded))) => return Ok(replayed(i, recorded)),
                Ok(None) => {}
                Err(msg) => {
                    return Err(Error::from(ErrorKind::InvalidRequest).with_message(msg));
                }
            }
        }

        let resp = self.inner.execute(req).await?;
        let (parts, body) = resp.into_parts();
        let bytes = read_capped(body, self.max_body_size, "response").await?;
        let mut recorded = RecordedResponse::new(parts.status);
        recorded.headers = self.rules.headers(&parts.headers);
        recorded.body = self.rules.body(&parts.headers, &bytes);
        let mut it = Interaction::new(live, recorded);
        self.rules.finish(&mut it);
        if let Some(tape) = self.lock().as_mut() {
            // In order, a new request goes where it came: before the recorded ones still to
            // play, which stay next (at the end in `All` mode, where nothing is left to play).
            let at = match self.order {
                Order::InOrder => tape.next.min(tape.interactions.len()),
                Order::AnyOrder => tape.interactions.len(),
            };
            tape.interactions.insert(at, it);
            tape.plays.insert(at, 0);
            tape.play(at);
        }
        self.save().await?;
        Ok(Response::from_parts(parts, Body::from(bytes)))
    }
}

/// The response of the recorded interaction `index`.
fn replayed(index: usize, recorded: RecordedResponse) -> Response {
    let mut resp = Response::new(Body::from(recorded.body));
    *resp.status_mut() = recorded.status;
    *resp.headers_mut() = recorded.headers;
    resp.extensions_mut().insert(Replayed(index));
    resp
}

/// A body read whole, failing past `cap` bytes.
async fn read_capped(mut body: Body, cap: u64, what: &str) -> Result<Bytes, Error> {
    if let Some(bytes) = body.as_bytes() {
        if bytes.len() as u64 > cap {
            return Err(too_large(what, cap));
        }
        return Ok(bytes.clone());
    }
    let mut out = BytesMut::new();
    while let Some(chunk) = body.chunk().await? {
        if (out.len() + chunk.len()) as u64 > cap {
            return Err(too_large(what, cap));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

fn too_large(what: &str, cap: u64) -> Error {
    Error::from(ErrorKind::TooLarge).with_message(format!(
        "a cassette records a {what} body of up to {cap} bytes (Cassette::max_body_size)"
    ))
}

/// A digest of a cassette file's bytes, to tell whether it changed.
fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: a reader,
/// or a test that crashed, sees the old file or the new one, never a part of one.
async fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let written = async {
        tokio::fs::write(&tmp, bytes).await?;
        // On disk before the rename, so a crash cannot leave the new name on an empty file.
        let file = tokio::fs::OpenOptions::new().write(true).open(&tmp).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    written
}
