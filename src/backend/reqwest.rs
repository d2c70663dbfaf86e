//! [`ReqwestDoer`]: the reqwest backend.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{Settings, check_uri, frame_empty_body, redirect, too_large};
use crate::{Body, Doer, Error, ErrorKind, Request, Response};

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
#[derive(Clone, Debug)]
pub struct ReqwestDoer {
    client: reqwest::Client,
    settings: Settings,
}

impl ReqwestDoer {
    /// A backend with a new client: redirects handled by http-doer, a
    /// [10 s connect timeout](crate::backend::DEFAULT_CONNECT_TIMEOUT) and a
    /// [30 s timeout](crate::backend::DEFAULT_TIMEOUT) per exchange.
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(super::DEFAULT_CONNECT_TIMEOUT)
            .build()
            // Only a broken TLS backend or system configuration makes this fail; fall back to
            // reqwest's defaults rather than panic, keeping redirects ours via the loop below.
            .unwrap_or_default();
        Self::with_client(client)
    }

    /// A backend around the caller's client, which keeps its own TLS, proxy, pool and
    /// timeout settings.
    ///
    /// Build it with `redirect(reqwest::redirect::Policy::none())` so that http-doer's
    /// redirect rules apply; a client that follows redirects itself hides them from http-doer.
    pub fn with_client(client: reqwest::Client) -> Self {
        ReqwestDoer {
            client,
            settings: Settings::default(),
        }
    }

    /// The largest response body accepted, in bytes.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.settings.max_body_size = bytes;
        self
    }

    /// How many redirects to follow; 0 returns 3xx responses as they are.
    pub fn max_redirects(mut self, n: usize) -> Self {
        self.settings.max_redirects = n;
        self
    }

    /// The timeout for one exchange (each redirect hop), from connecting until the whole body
    /// is read; `None` for none.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// The wrapped client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    async fn send_once(&self, req: Request) -> Result<Response, Error> {
        let uri = req.uri().clone();
        check_uri(&uri)?;
        let (mut parts, body) = req.into_parts();
        let bytes = body.as_bytes().cloned().unwrap_or_default();
        frame_empty_body(&mut parts, bytes.is_empty());
        let mut rreq = reqwest::Request::try_from(http::Request::from_parts(parts, bytes))
            .map_err(|e| map_error(e, &uri))?;
        if let Some(t) = self.settings.timeout {
            *rreq.timeout_mut() = Some(t);
        }
        let mut resp = self
            .client
            .execute(rreq)
            .await
            .map_err(|e| map_error(e, &uri))?;
        let limit = self.settings.max_body_size;
        if resp.content_length().is_some_and(|len| len > limit) {
            return Err(too_large(limit, &uri));
        }

        let mut out = http::Response::new(Body::empty());
        *out.status_mut() = resp.status();
        *out.version_mut() = resp.version();
        *out.headers_mut() = std::mem::take(resp.headers_mut());
        *out.body_mut() = Body::from(read_body(&mut resp, limit, &uri).await?);
        Ok(out)
    }
}

impl Default for ReqwestDoer {
    fn default() -> Self {
        Self::new()
    }
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
    // reqwest's message quotes the full URL; the redacted one is kept beside it instead.
    Error::new(kind, e.without_url()).with_url(uri)
}

#[async_trait]
impl Doer for ReqwestDoer {
    async fn execute(&self, req: Request) -> Result<Response, Error> {
        redirect::follow(req, self.settings.max_redirects, |r| self.send_once(r)).await
    }
}
