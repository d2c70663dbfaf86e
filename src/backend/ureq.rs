//! [`UreqDoer`]: the ureq backend, run on tokio's blocking pool.

use std::io;
use std::time::Duration;

use bytes::Bytes;

use super::redirect::{self, Exchange, Execute};
use super::{
    MAX_RESPONSE_HEADERS_CEILING, Settings, check_head, frame_empty_body, is_tls_failure,
    may_have_body, too_large, too_many_headers,
};
use crate::{Body, Doer, Error, ErrorKind, Request, Response};

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
#[derive(Clone, Debug)]
pub struct UreqDoer {
    agent: ureq::Agent,
    settings: Settings,
}

impl UreqDoer {
    /// A backend with a new agent, a [10 s connect
    /// timeout](crate::backend::DEFAULT_CONNECT_TIMEOUT) and a [30 s
    /// timeout](crate::backend::DEFAULT_TIMEOUT) per exchange.
    pub fn new() -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            // `PURGE`, `PROPFIND` and other extension methods, which reqwest sends too.
            .allow_non_standard_methods(true)
            .user_agent(super::USER_AGENT)
            // hyper's limit on a response head (its read buffer), so both refuse alike.
            .max_response_header_size(HYPER_MAX_HEAD_BYTES)
            .timeout_connect(Some(super::DEFAULT_CONNECT_TIMEOUT))
            // The same as the per-exchange default, so requests need no config of their own.
            .timeout_global(Some(super::DEFAULT_TIMEOUT))
            .build();
        Self::with_agent(ureq::Agent::new_with_config(config))
    }

    /// A backend around the caller's agent, which keeps its TLS, proxy and pool settings.
    /// Status-as-error and redirects are overridden per request, as described above, and so is
    /// the agent's global timeout, by this backend's [`timeout`](Self::timeout) (30 s unless
    /// changed; `timeout(None)` removes it).
    pub fn with_agent(agent: ureq::Agent) -> Self {
        UreqDoer {
            agent,
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

    /// The most header lines accepted in a response (default
    /// [`DEFAULT_MAX_RESPONSE_HEADERS`](crate::backend::DEFAULT_MAX_RESPONSE_HEADERS), 100); past
    /// it the call fails with [`ErrorKind::TooLarge`]. Capped at
    /// [`MAX_RESPONSE_HEADERS_CEILING`](crate::backend::MAX_RESPONSE_HEADERS_CEILING) (128), the
    /// size of ureq's parser.
    pub fn max_response_headers(mut self, n: usize) -> Self {
        self.settings.max_response_headers = n.min(MAX_RESPONSE_HEADERS_CEILING);
        self
    }

    /// The wrapped agent.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
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

fn blocking_send(
    agent: &ureq::Agent,
    settings: &Settings,
    req: http::Request<Bytes>,
) -> Result<Response, Error> {
    let uri = req.uri().clone();
    let (mut parts, bytes) = req.into_parts();
    let method = parts.method.clone();
    frame_empty_body(&parts.method, &mut parts.headers, bytes.is_empty());
    // ureq frames an empty slice with `Content-Length: 0` even on a GET; `()` sends no framing,
    // and `frame_empty_body` has already added the header where it belongs.
    let result = if bytes.is_empty() {
        run(agent, settings, http::Request::from_parts(parts, ()))
    } else {
        run(
            agent,
            settings,
            http::Request::from_parts(parts, &bytes[..]),
        )
    };
    let mut resp = result.map_err(|e| map_error(e, &uri, Stage::Send))?;
    check_head(resp.headers(), settings.max_response_headers, &uri)?;

    let limit = settings.max_body_size;
    let declared = resp
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) && may_have_body(&method, resp.status()) {
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
    let mut out = http::Response::new(Body::from(body));
    *out.status_mut() = resp.status();
    *out.version_mut() = resp.version();
    *out.headers_mut() = std::mem::take(resp.headers_mut());
    Ok(out)
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
    {
        return agent.run(req);
    }
    let req = agent
        .configure_request(req)
        .http_status_as_error(false)
        .max_redirects(0)
        .allow_non_standard_methods(true)
        .timeout_global(settings.timeout)
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
        U::Io(io) => match io.kind() {
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
                if stage == Stage::Send =>
            {
                ErrorKind::Connect
            }
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
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
    async fn exchange(&self, req: &Request) -> Result<Response, Error> {
        // The blocking task needs its own request: the parts ureq reads, the body shared.
        let mut owned = http::Request::new(req.body().as_bytes().cloned().unwrap_or_default());
        *owned.method_mut() = req.method().clone();
        *owned.uri_mut() = req.uri().clone();
        *owned.version_mut() = req.version();
        *owned.headers_mut() = req.headers().clone();
        let agent = self.agent.clone();
        let settings = self.settings.clone();
        let task = tokio::task::spawn_blocking(move || blocking_send(&agent, &settings, owned));
        match task.await {
            Ok(result) => result,
            Err(join) => Err(Error::new(ErrorKind::Other, join)
                .with_message("ureq task failed")
                .with_url(req.uri())),
        }
    }
}

// Written out rather than with `#[async_trait]`: see `redirect::Execute`.
impl Doer for UreqDoer {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(redirect::follow(self, req, self.settings.max_redirects))
    }
}
