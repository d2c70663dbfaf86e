//! [`ReqwestDoer`]: the reqwest backend.

use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::redirect::{self, Exchange, Execute};
use super::{
    MAX_RESPONSE_HEADERS_CEILING, Settings, check_head, frame_empty_body, is_tls_failure,
    too_large, too_many_headers,
};
use crate::body::HttpBodyStream;
use crate::{Body, Doer, Error, ErrorKind, Request, Response, ResponseMode};

/// A [`Doer`] backed by a [`reqwest::Client`] (feature `reqwest`, on by default).
///
/// Response bodies are read whole, up to [`max_body_size`](Self::max_body_size) (default
/// [`DEFAULT_MAX_BODY_SIZE`](crate::backend::DEFAULT_MAX_BODY_SIZE), 10 MiB); past it the call
/// fails with [`ErrorKind::TooLarge`] without reading further. Redirects are followed by
/// http-doer, the same way as [`UreqDoer`](crate::UreqDoer) does (see
/// [`max_redirects`](Self::max_redirects)).
///
/// ```no_run
/// use http_doer::{Body, Doer, ReqwestDoer};
///
/// # async fn run() -> Result<(), http_doer::Error> {
/// let doer = ReqwestDoer::new();
/// let req = http::Request::get("https://example.com/").body(Body::empty()).unwrap();
/// let resp = doer.execute(req).await?;
/// println!("{} {}", resp.status(), resp.into_body().text().await?);
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
/// * [`ErrorKind::Timeout`]: the [`timeout`](Self::timeout) passed.
/// * [`ErrorKind::Transport`]: the connection failed before a response head arrived;
///   [`ErrorKind::Body`]: while the body was read.
/// * [`ErrorKind::TooLarge`]: the body is over [`max_body_size`](Self::max_body_size), or the
///   head over [`max_response_headers`](Self::max_response_headers).
/// * [`ErrorKind::InvalidRequest`]: the request cannot be sent as it is (a relative URL, an
///   unsupported scheme); a request body stream that fails ends the call with its own kind.
/// * [`ErrorKind::Redirect`]: a redirect could not be followed, or there were too many.
#[derive(Clone)]
pub struct ReqwestDoer {
    client: reqwest::Client,
    settings: Settings,
    /// The timeout the client applies to every request, when this backend built the client
    /// and so knows it: a request whose timeout is the same needs none of its own.
    client_timeout: Option<Option<Duration>>,
}

impl ReqwestDoer {
    /// A backend with a new client: redirects handled by http-doer, a
    /// [10 s connect timeout](crate::backend::DEFAULT_CONNECT_TIMEOUT) and a
    /// [30 s timeout](crate::backend::DEFAULT_TIMEOUT) per exchange.
    ///
    /// The timeout is the client's own (`reqwest::ClientBuilder::timeout`), so that a request
    /// does not carry one: in reqwest a request's own timeout costs three allocations a call.
    /// [`client`](Self::client) therefore hands out a client with that 30 s timeout.
    ///
    /// # Panics
    ///
    /// When the TLS backend cannot be initialised, as `reqwest::Client::new()` does; use
    /// [`with_client`](Self::with_client) to handle that error yourself.
    pub fn new() -> Self {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(super::DEFAULT_CONNECT_TIMEOUT)
            .timeout(super::DEFAULT_TIMEOUT)
            .user_agent(super::USER_AGENT)
            // reqwest turns decompression on by default whenever any crate in the build enables
            // its `gzip` (`brotli`, `deflate`, `zstd`) feature; the caller must get the bytes
            // the server sent, as from UreqDoer, whatever the rest of the build enables.
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .no_zstd()
            // ureq's parser takes at most this many; both read up to it, and
            // `max_response_headers` sets the limit both keep.
            .http1_max_headers(MAX_RESPONSE_HEADERS_CEILING);
        // reqwest is built without a crypto provider of its own (see `tls`).
        if let Some(tls) = super::tls::reqwest_config() {
            let tls = tls.expect("rustls could not load the platform's root certificates");
            builder = builder.tls_backend_preconfigured(tls);
        }
        let client = builder
            .build()
            // A fallback to `reqwest::Client::default()` would follow redirects itself, past
            // http-doer's rules, and panics for the same reasons anyway.
            .expect("reqwest could not build a client: its TLS backend failed to initialise");
        ReqwestDoer {
            client_timeout: Some(Some(super::DEFAULT_TIMEOUT)),
            ..Self::with_client(client)
        }
    }

    /// A backend around the caller's client, which keeps its own TLS, proxy, pool and
    /// connect-timeout settings.
    ///
    /// This backend's own [`timeout`](Self::timeout) (30 s unless changed) is set on every
    /// request and wins over the client's; call `timeout(None)` to leave timing to the client
    /// (whose own timeout, when it has one, then costs nothing more per call).
    ///
    /// Build it with `redirect(reqwest::redirect::Policy::none())` so that http-doer's
    /// redirect rules apply; a client that follows redirects itself hides them from http-doer.
    ///
    /// http-doer compiles reqwest with one TLS crypto provider, ring, shared with ureq, and
    /// without reqwest's own (aws-lc-rs, the default `rustls` feature). Unless your own reqwest
    /// dependency keeps that feature, install a provider before building the client, or
    /// reqwest panics: `rustls::crypto::ring::default_provider().install_default()`.
    pub fn with_client(client: reqwest::Client) -> Self {
        ReqwestDoer {
            client,
            settings: Settings::default(),
            client_timeout: None,
        }
    }

    /// The largest response body accepted, in bytes (default
    /// [`DEFAULT_MAX_BODY_SIZE`](crate::backend::DEFAULT_MAX_BODY_SIZE), 10 MiB). Past it the
    /// call fails with [`ErrorKind::TooLarge`], without reading further; a streamed body is held
    /// to it when gathered by [`Body::bytes`] or [`Body::text`].
    ///
    /// ```
    /// use http_doer::ReqwestDoer;
    ///
    /// // Downloads of up to 1 GiB.
    /// let doer = ReqwestDoer::new().max_body_size(1 << 30);
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
    /// use http_doer::ReqwestDoer;
    ///
    /// // See the 3xx itself, as a response.
    /// let doer = ReqwestDoer::new().max_redirects(0);
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
    /// use http_doer::ReqwestDoer;
    ///
    /// let quick = ReqwestDoer::new().timeout(Duration::from_secs(5));
    /// let patient = ReqwestDoer::new().timeout(None);
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
    /// most ureq can read, so that both backends keep the same limit. A client given to
    /// [`with_client`](Self::with_client) keeps its own parser limit (hyper's default is 100)
    /// unless it was built with `http1_max_headers`.
    ///
    /// ```
    /// use http_doer::ReqwestDoer;
    ///
    /// let doer = ReqwestDoer::new().max_response_headers(50);
    /// # let _ = doer;
    /// ```
    pub fn max_response_headers(mut self, n: usize) -> Self {
        self.settings.max_response_headers = n.min(MAX_RESPONSE_HEADERS_CEILING);
        self
    }

    /// Whether response bodies are read whole before `execute` returns (the default) or
    /// streamed as the caller reads them; a request's own [`ResponseMode`] extension wins.
    ///
    /// ```
    /// use http_doer::{ReqwestDoer, ResponseMode};
    ///
    /// // Every body streams; `Body::chunk` reads it piece by piece.
    /// let doer = ReqwestDoer::new().response_mode(ResponseMode::Streamed);
    /// # let _ = doer;
    /// ```
    pub fn response_mode(mut self, mode: ResponseMode) -> Self {
        self.settings.response_mode = mode;
        self
    }

    /// The wrapped client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

// Not derived: `reqwest::Client`'s Debug prints its default headers, which may hold a token.
impl std::fmt::Debug for ReqwestDoer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReqwestDoer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Default for ReqwestDoer {
    fn default() -> Self {
        Self::new()
    }
}

/// A deadline past any exchange: reqwest has no way to lift a client's timeout for one
/// request, so `timeout(None)` over a client with a timeout sets this one instead.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The timeout to set on each request, when the client does not already apply the one wanted.
fn request_timeout(wanted: Option<Duration>, client: Option<Option<Duration>>) -> Option<Duration> {
    match (wanted, client) {
        (wanted, Some(client)) if wanted == client => None,
        (None, Some(Some(_))) => Some(FAR_FUTURE),
        (wanted, _) => wanted,
    }
}

/// The reqwest request for `req` and its `body`, built from a borrow: headers are copied, the
/// URL is parsed once, and the caller keeps `req` to build a redirect's next hop.
fn to_reqwest(
    req: &Request,
    body: Body,
    timeout: Option<Duration>,
) -> Result<reqwest::Request, Error> {
    let url = reqwest::Url::parse(&url_string(req.uri())).map_err(|e| {
        Error::new(ErrorKind::InvalidRequest, e)
            .with_message("reqwest does not accept the URL")
            .with_url(req.uri())
    })?;
    let mut rreq = reqwest::Request::new(req.method().clone(), url);
    *rreq.version_mut() = req.version();
    if let Some(t) = timeout {
        *rreq.timeout_mut() = Some(t);
    }
    let headers = rreq.headers_mut();
    *headers = req.headers().clone();
    match body.into_bytes() {
        Ok(bytes) => {
            frame_empty_body(req.method(), headers, bytes.is_empty());
            if !bytes.is_empty() {
                *rreq.body_mut() = Some(bytes.into());
            }
        }
        // Framed by `prepare`: `Content-Length` when the length is known, else chunked.
        Err(stream) => *rreq.body_mut() = Some(reqwest::Body::wrap(stream)),
    }
    Ok(rreq)
}

/// `uri` as a string for `Url::parse`, in one allocation of the right size (`to_string` grows
/// its buffer two or three times on the way).
fn url_string(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or_default();
    let authority = uri.authority().map_or("", |a| a.as_str());
    let (path, query) = (uri.path(), uri.query());
    let capacity =
        scheme.len() + 3 + authority.len() + path.len() + query.map_or(0, |q| q.len() + 1);
    let mut url = String::with_capacity(capacity);
    for part in [scheme, "://", authority, path] {
        url.push_str(part);
    }
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// Reads the body up to `limit` bytes. A body in one chunk is kept as it came, without a copy.
async fn read_body(
    resp: &mut reqwest::Response,
    limit: u64,
    uri: &http::Uri,
) -> Result<Bytes, Error> {
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut total: u64 = 0;
    while let Some(chunk) = resp.chunk().await.map_err(|e| map_error(e, uri))? {
        total += chunk.len() as u64;
        if total > limit {
            return Err(too_large(limit, uri));
        }
        match first.take() {
            None if rest.is_empty() => first = Some(chunk),
            prev => {
                if let Some(prev) = prev {
                    rest.extend_from_slice(&prev);
                }
                rest.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

fn map_error(e: reqwest::Error, uri: &http::Uri) -> Error {
    // A connect timeout is both; it is `Connect`: the request never left.
    if is_head_too_large(&e) {
        return too_many_headers(MAX_RESPONSE_HEADERS_CEILING, uri);
    }
    // The request body's own stream failed: its error, kept as the source, says why.
    if let Some(kind) = super::body_error_kind(&e) {
        return Error::new(kind, e.without_url())
            .with_message("the request body failed")
            .with_url(uri);
    }
    let kind = if e.is_connect() {
        ErrorKind::Connect
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_builder() {
        ErrorKind::InvalidRequest
    } else if e.is_redirect() {
        ErrorKind::Redirect
    } else if e.is_body() || e.is_decode() {
        ErrorKind::Body
    } else if e.is_request() {
        ErrorKind::Transport
    } else {
        ErrorKind::Other
    };
    let e = e.without_url();
    let kind = match kind {
        ErrorKind::Connect | ErrorKind::Transport if is_tls_failure(uri, &e) => ErrorKind::Tls,
        kind => kind,
    };
    // reqwest's message quotes the full URL; the redacted one is kept beside it instead.
    Error::new(kind, e).with_url(uri)
}

/// Whether hyper refused the response head as too large: more header lines than its limit, or
/// more bytes than its buffer. hyper's `is_parse_too_large` exists only with its server
/// feature, so its words are matched (a conformance test holds them to it).
fn is_head_too_large(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.to_string().contains("message head is too large") {
            return true;
        }
        cur = err.source();
    }
    false
}

impl Exchange for ReqwestDoer {
    async fn exchange(&self, req: &Request, body: Body) -> Result<Response, Error> {
        let uri = req.uri();
        let timeout = request_timeout(self.settings.timeout, self.client_timeout);
        let rreq = to_reqwest(req, body, timeout)?;
        let mut resp = self
            .client
            .execute(rreq)
            .await
            .map_err(|e| map_error(e, uri))?;
        check_head(resp.headers(), self.settings.max_response_headers, uri)?;
        let limit = self.settings.max_body_size;
        if ResponseMode::of(req, self.settings.response_mode) == ResponseMode::Streamed {
            let len = resp.content_length();
            let mut out = http::Response::new(Body::empty());
            *out.status_mut() = resp.status();
            *out.version_mut() = resp.version();
            *out.headers_mut() = std::mem::take(resp.headers_mut());
            let uri = uri.clone();
            let chunks =
                HttpBodyStream::new(reqwest::Body::from(resp), move |e| map_error(e, &uri));
            *out.body_mut() = Body::streamed(Box::pin(chunks), len, Some(limit));
            return Ok(out);
        }
        if resp.content_length().is_some_and(|len| len > limit) {
            return Err(too_large(limit, uri));
        }

        let body = read_body(&mut resp, limit, uri).await?;
        let mut out = http::Response::new(Body::from(body));
        *out.status_mut() = resp.status();
        *out.version_mut() = resp.version();
        *out.headers_mut() = std::mem::take(resp.headers_mut());
        Ok(out)
    }
}

// Written out rather than with `#[async_trait]`: see `redirect.rs` on `Execute`.
impl Doer for ReqwestDoer {
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
    fn debug_hides_the_clients_default_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", "Bearer tok-dbg".parse().unwrap());
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .tls_backend_preconfigured(crate::backend::tls::ring_config().unwrap())
            .build()
            .unwrap();
        let shown = format!("{:?}", ReqwestDoer::with_client(client));
        assert!(!shown.contains("tok-dbg"), "{shown}");
    }

    #[test]
    fn a_request_carries_a_timeout_only_when_the_client_lacks_it() {
        let (t30, t5) = (Some(Duration::from_secs(30)), Some(Duration::from_secs(5)));
        // Built by `new()`: the client's own 30 s.
        assert_eq!(request_timeout(t30, Some(t30)), None);
        assert_eq!(request_timeout(t5, Some(t30)), t5);
        assert_eq!(request_timeout(None, Some(t30)), Some(FAR_FUTURE));
        // A caller's client, whose timeout is unknown.
        assert_eq!(request_timeout(t30, None), t30);
        assert_eq!(request_timeout(None, None), None);
        assert_eq!(request_timeout(None, Some(None)), None);
        assert_eq!(ReqwestDoer::new().client_timeout, Some(t30));
    }

    #[test]
    fn url_string_matches_display() {
        for s in [
            "http://h.test/",
            "https://u:p@h.test:8443/a/b?c=d&e",
            "http://h.test?q=1",
            "http://[::1]:80/x",
        ] {
            let uri: http::Uri = s.parse().unwrap();
            assert_eq!(url_string(&uri), uri.to_string(), "{s}");
        }
    }
}
