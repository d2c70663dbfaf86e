//! [`Bearer`]: `Authorization: Bearer <token>` from a static token or a refreshing source.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderValue;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use tokio::time::Instant;

use super::Signer;
use super::util::{sensitive, signing_error, split_outside_quotes};
use crate::{Error, ErrorKind, Request, Response};

/// How long before its expiry a cached token is refreshed, unless set with
/// [`Bearer::refresh_margin`]: 30 seconds, enough for a request to reach a server with a
/// slightly fast clock, short enough not to waste much of a typical one-hour token.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// An access token and how long it stays valid, as fetched by a [`TokenSource`].
///
/// `Debug` does not show the token.
#[derive(Clone)]
pub struct Token {
    value: String,
    expires_in: Option<Duration>,
}

impl Token {
    /// A token that never expires (until [invalidated](Bearer::invalidate)).
    pub fn new(value: impl Into<String>) -> Self {
        Token {
            value: value.into(),
            expires_in: None,
        }
    }

    /// How long the token is valid from the moment it was asked for (an OAuth 2
    /// `expires_in`).
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in = Some(lifetime);
        self
    }

    /// The token itself. Never log it.
    pub fn secret(&self) -> &str {
        &self.value
    }

    /// The lifetime set with [`expires_in`](Self::expires_in).
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_in
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &crate::redact::REDACTED)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Fetches a fresh access token: an OAuth 2 client-credentials call, a cloud metadata
/// endpoint, a file a sidecar rewrites.
///
/// [`Bearer::from_source`] caches what it returns, so `fetch` is called only when no valid
/// token is cached. An async closure returning `Result<Token, Error>` is a token source:
///
/// ```
/// use std::time::Duration;
/// use http_doer::signing::{Bearer, Token};
///
/// let bearer = Bearer::from_source(|| async {
///     // Call the identity provider here.
///     Ok(Token::new("fresh-token").expires_in(Duration::from_secs(3600)))
/// });
/// # let _ = bearer;
/// ```
#[async_trait]
pub trait TokenSource: Send + Sync {
    /// Fetches a new token.
    ///
    /// # Errors
    ///
    /// When no token could be had (the identity provider is down or refused the client).
    /// [`Bearer`] keeps using a cached token that has not expired yet, and otherwise fails the
    /// signing with this error as its source, so the request is not sent.
    async fn fetch(&self) -> Result<Token, Error>;
}

#[async_trait]
impl<F, Fut> TokenSource for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<Token, Error>> + Send,
{
    async fn fetch(&self) -> Result<Token, Error> {
        self().await
    }
}

/// Sets `Authorization: Bearer <token>` (RFC 6750), from a static token or from a
/// [`TokenSource`] through a cache.
///
/// With a source, the token is cached and refreshed [a margin](Self::refresh_margin) before it
/// expires (or at half its lifetime, for tokens shorter than twice the margin). Refreshing is
/// single-flight: concurrent requests that find no valid token wait for one fetch and share
/// its result, token or error. If a refresh fails while the cached token has not yet expired,
/// the cached token is used and the next request tries again. [`invalidate`](Self::invalidate)
/// drops the cached token. With [`resend_on_invalid_token`](Self::resend_on_invalid_token), a
/// `401` whose `WWW-Authenticate` carries `Bearer error="invalid_token"` invalidates the token
/// that was sent and has [`Signing`](crate::Signing) send the request once more with a new one.
///
/// Clones share the cache. The header value is marked sensitive, and `Debug` shows no token.
///
/// ```
/// use std::time::Duration;
/// use http_doer::{Doer, DoerExt, signing::{Bearer, Token}, testing::ScriptedDoer};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let server = ScriptedDoer::new().then_status(200).then_status(200);
/// let fetches = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
/// let counter = fetches.clone();
/// let bearer = Bearer::from_source(move || {
///     let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
///     async move { Ok(Token::new(format!("token-{n}")).expires_in(Duration::from_secs(3600))) }
/// });
/// let doer = server.clone().signing(bearer);
/// let get = || http::Request::get("https://api.test/").body(().into()).unwrap();
/// doer.execute(get()).await?;
/// doer.execute(get()).await?;
/// assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1, "cached");
/// assert_eq!(server.requests()[1].headers()["authorization"], "Bearer token-1");
/// # Ok::<(), http_doer::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Bearer {
    kind: Kind,
    margin: Duration,
    resend: bool,
}

#[derive(Clone)]
enum Kind {
    Static(HeaderValue),
    Cached(Arc<Cache>),
}

impl Bearer {
    /// A static token, sent as it is on every request.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Signing`](crate::ErrorKind::Signing) error when `token` is empty or
    /// cannot be a header value (a control character, a newline).
    pub fn new(token: impl AsRef<str>) -> Result<Self, Error> {
        Ok(Bearer {
            kind: Kind::Static(header_value(token.as_ref())?),
            margin: DEFAULT_REFRESH_MARGIN,
            resend: false,
        })
    }

    /// Tokens fetched from `source`, cached and refreshed before they expire.
    pub fn from_source(source: impl TokenSource + 'static) -> Self {
        Bearer {
            kind: Kind::Cached(Arc::new(Cache {
                source: Box::new(source),
                state: Mutex::new(State::default()),
                refresh: tokio::sync::Mutex::new(()),
            })),
            margin: DEFAULT_REFRESH_MARGIN,
            resend: false,
        }
    }

    /// How long before expiry a cached token is replaced; default
    /// [`DEFAULT_REFRESH_MARGIN`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use http_doer::signing::{Bearer, Token};
    ///
    /// // Tokens live an hour; get a new one 5 minutes before, not 30 s.
    /// let bearer = Bearer::from_source(|| async {
    ///     Ok(Token::new("t").expires_in(Duration::from_secs(3600)))
    /// })
    /// .refresh_margin(Duration::from_secs(300));
    /// # let _ = bearer;
    /// ```
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// Whether a `401` with `WWW-Authenticate: Bearer error="invalid_token"` drops the token
    /// and resends the request once with a new one; default `false`. Only tokens from a
    /// [source](Self::from_source) can be renewed, so a static token never resends.
    ///
    /// The resend is safe for any method: the server refused the credentials and so did not
    /// act on the request. The response to the second send carries
    /// [`Resent`](super::Resent).
    ///
    /// ```
    /// use http_doer::signing::{Bearer, Token};
    ///
    /// let bearer = Bearer::from_source(|| async { Ok(Token::new("t")) }).resend_on_invalid_token(true);
    /// # let _ = bearer;
    /// ```
    pub fn resend_on_invalid_token(mut self, on: bool) -> Self {
        self.resend = on;
        self
    }

    /// Drops the cached token, so the next request fetches a new one. Does nothing for a
    /// static token.
    pub fn invalidate(&self) {
        if let Kind::Cached(cache) = &self.kind {
            cache.lock().token = None;
        }
    }

    async fn header(&self) -> Result<HeaderValue, Error> {
        match &self.kind {
            Kind::Static(value) => Ok(value.clone()),
            Kind::Cached(cache) => cache.token(self.margin).await,
        }
    }
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Static(_) => f.write_str("Bearer { token: .. }"),
            Kind::Cached(_) => f
                .debug_struct("Bearer")
                .field("source", &"refreshing")
                .field("refresh_margin", &self.margin)
                .field("resend_on_invalid_token", &self.resend)
                .finish(),
        }
    }
}

#[async_trait]
impl Signer for Bearer {
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        let value = self.header().await?;
        req.headers_mut().insert(AUTHORIZATION, value);
        Ok(())
    }

    fn sign_now(&self, req: &mut Request) -> Option<Result<(), Error>> {
        let Kind::Static(value) = &self.kind else {
            return None;
        };
        req.headers_mut().insert(AUTHORIZATION, value.clone());
        Some(Ok(()))
    }

    fn resends(&self) -> bool {
        self.resend && matches!(self.kind, Kind::Cached(_))
    }

    async fn rejected(&self, sent: &Request, response: &Response) -> bool {
        let Kind::Cached(cache) = &self.kind else {
            return false;
        };
        if response.status() != http::StatusCode::UNAUTHORIZED || !invalid_token(response) {
            return false;
        }
        // Drop the token only if it is still the one this request carried: a concurrent
        // request may already have replaced it, and dropping the new one would cost a fetch.
        let mut state = cache.lock();
        if let (Some(cached), Some(used)) = (&state.token, sent.headers().get(AUTHORIZATION))
            && cached.value == used
        {
            state.token = None;
        }
        true
    }
}

fn header_value(token: &str) -> Result<HeaderValue, Error> {
    if token.is_empty() {
        return Err(signing_error("the bearer token is empty"));
    }
    let mut value = Vec::with_capacity(7 + token.len());
    value.extend_from_slice(b"Bearer ");
    value.extend_from_slice(token.as_bytes());
    sensitive(&value, "the bearer token")
}

struct Cache {
    source: Box<dyn TokenSource>,
    state: Mutex<State>,
    // Held by the one caller that fetches; the others wait on it, then read `state`.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    token: Option<Cached>,
    // Counts finished fetches, so a waiter can tell that one completed while it waited.
    fetches: u64,
    last_error: Option<String>,
}

struct Cached {
    value: HeaderValue,
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
}

impl Cached {
    fn fresh(&self, now: Instant) -> bool {
        self.refresh_at.is_none_or(|at| now < at)
    }

    fn usable(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

impl Cache {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn token(&self, margin: Duration) -> Result<HeaderValue, Error> {
        let seen = {
            let state = self.lock();
            if let Some(t) = state.token.as_ref().filter(|t| t.fresh(Instant::now())) {
                return Ok(t.value.clone());
            }
            state.fetches
        };
        let _refreshing = match self.refresh.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Another caller is refreshing: a token that has not expired yet is used
                // meanwhile, so a slow or hung fetch holds back only those that need it.
                if let Some(t) = self
                    .lock()
                    .token
                    .as_ref()
                    .filter(|t| t.usable(Instant::now()))
                {
                    return Ok(t.value.clone());
                }
                self.refresh.lock().await
            }
        };
        {
            let state = self.lock();
            let now = Instant::now();
            if let Some(t) = state.token.as_ref().filter(|t| t.fresh(now)) {
                return Ok(t.value.clone());
            }
            if state.fetches != seen {
                // A fetch finished while this caller waited: share its outcome.
                if let Some(t) = state.token.as_ref().filter(|t| t.usable(now)) {
                    return Ok(t.value.clone());
                }
                if let Some(message) = &state.last_error {
                    return Err(signing_error(format!("token source failed: {message}")));
                }
            }
        }
        let started = Instant::now();
        let fetched = self
            .source
            .fetch()
            .await
            .and_then(|token| Ok((header_value(&token.value)?, token.expires_in)));
        let mut state = self.lock();
        state.fetches += 1;
        match fetched {
            Ok((value, lifetime)) => {
                let refresh_in = lifetime.map(|l| l.saturating_sub(margin).max(l / 2));
                state.token = Some(Cached {
                    value: value.clone(),
                    refresh_at: refresh_in.and_then(|d| started.checked_add(d)),
                    expires_at: lifetime.and_then(|d| started.checked_add(d)),
                });
                state.last_error = None;
                Ok(value)
            }
            Err(err) => {
                state.last_error = Some(err.to_string());
                if let Some(t) = state.token.as_ref().filter(|t| t.usable(Instant::now())) {
                    tracing::warn!(error = %err, "token refresh failed; using the cached token until it expires");
                    return Ok(t.value.clone());
                }
                Err(if err.kind() == ErrorKind::Signing {
                    err
                } else {
                    Error::new(ErrorKind::Signing, err).with_message("token source failed")
                })
            }
        }
    }
}

/// Whether a response carries a `Bearer` challenge with `error="invalid_token"` (RFC 6750
/// section 3), among any number of challenges and header lines.
fn invalid_token(response: &Response) -> bool {
    response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(bearer_invalid_token)
}

fn bearer_invalid_token(field: &str) -> bool {
    let mut in_bearer = false;
    for item in split_outside_quotes(field) {
        let item = item.trim();
        let name_end = item.find([' ', '\t', '=']).unwrap_or(item.len());
        let after = item[name_end..].trim_start();
        let param = if after.starts_with('=') {
            // `name = value`: a parameter of the current challenge.
            item
        } else {
            // `scheme [param]`: a new challenge.
            in_bearer = item[..name_end].eq_ignore_ascii_case("bearer");
            after
        };
        if !in_bearer {
            continue;
        }
        if let Some((name, value)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("error")
            && unquote(value.trim()) == "invalid_token"
        {
            return true;
        }
    }
    false
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    out.extend(chars.next());
                } else {
                    out.push(c);
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn get() -> Request {
        http::Request::get("https://api.test/")
            .body(Body::empty())
            .unwrap()
    }

    async fn auth(bearer: &Bearer) -> String {
        let mut req = get();
        bearer.sign(&mut req).await.unwrap();
        req.headers()[AUTHORIZATION].to_str().unwrap().to_owned()
    }

    /// A source that counts fetches and hands out `t1`, `t2`, ... valid for `lifetime`.
    fn counting(lifetime: Duration) -> (Arc<AtomicU32>, impl TokenSource) {
        let n = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&n);
        let source = move || {
            let i = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(Token::new(format!("t{i}")).expires_in(lifetime))
            }
        };
        (n, source)
    }

    #[test]
    fn challenge_parsing() {
        for yes in [
            r#"Bearer error="invalid_token""#,
            r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
            r#"Basic realm="x", Bearer realm="y",error=invalid_token"#,
            r#"bearer ERROR = "invalid_token""#,
            r#"Bearer error="invalid_token", Basic realm="a, error=nope""#,
        ] {
            assert!(bearer_invalid_token(yes), "{yes}");
        }
        for no in [
            "Bearer",
            r#"Bearer realm="example""#,
            r#"Bearer error="insufficient_scope""#,
            r#"Basic realm="x", error="invalid_token""#,
            r#"Bearer realm="error=\"invalid_token\"""#,
            r#"Basic abc==, Newauth realm="x", error="invalid_token""#,
            "",
        ] {
            assert!(!bearer_invalid_token(no), "{no}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn cached_until_the_margin_then_refreshed() {
        let (fetches, source) = counting(Duration::from_secs(100));
        let bearer = Bearer::from_source(source).refresh_margin(Duration::from_secs(30));
        assert_eq!(auth(&bearer).await, "Bearer t1");
        // Fetched at t=0, so refreshed from t=70 s; 100 ms went by in the fetch.
        tokio::time::advance(Duration::from_millis(69_800)).await;
        assert_eq!(auth(&bearer).await, "Bearer t1");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(auth(&bearer).await, "Bearer t2");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn short_tokens_are_refreshed_at_half_life() {
        let (fetches, source) = counting(Duration::from_secs(40));
        let bearer = Bearer::from_source(source).refresh_margin(Duration::from_secs(30));
        auth(&bearer).await;
        tokio::time::advance(Duration::from_millis(19_800)).await;
        assert_eq!(auth(&bearer).await, "Bearer t1");
        tokio::time::advance(Duration::from_millis(200)).await;
        assert_eq!(auth(&bearer).await, "Bearer t2");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_refresh() {
        let (fetches, source) = counting(Duration::from_secs(3600));
        let bearer = Bearer::from_source(source);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let b = bearer.clone();
                tokio::spawn(async move { auth(&b).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), "Bearer t1");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_failure() {
        let fetches = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&fetches);
        let bearer = Bearer::from_source(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err::<Token, _>(Error::from(ErrorKind::Connect).with_message("idp down"))
            }
        });
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let b = bearer.clone();
                tokio::spawn(async move { b.sign(&mut get()).await.unwrap_err() })
            })
            .collect();
        for t in tasks {
            let err = t.await.unwrap();
            assert_eq!(err.kind(), ErrorKind::Signing);
            assert!(format!("{err:#}").contains("idp down"), "{err:#}");
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // A later call tries again.
        assert!(bearer.sign(&mut get()).await.is_err());
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_using_an_unexpired_token() {
        let fetches = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&fetches);
        let bearer = Bearer::from_source(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Ok(Token::new("t1").expires_in(Duration::from_secs(100))),
                    _ => Err(Error::from(ErrorKind::Timeout)),
                }
            }
        });
        assert_eq!(auth(&bearer).await, "Bearer t1");
        tokio::time::advance(Duration::from_secs(80)).await;
        assert_eq!(auth(&bearer).await, "Bearer t1");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(bearer.sign(&mut get()).await.unwrap_err().is_signing());
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_forces_a_fetch() {
        let (fetches, source) = counting(Duration::from_secs(3600));
        let bearer = Bearer::from_source(source);
        assert_eq!(auth(&bearer).await, "Bearer t1");
        bearer.clone().invalidate();
        assert_eq!(auth(&bearer).await, "Bearer t2");
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        Bearer::new("static").unwrap().invalidate();
    }

    #[tokio::test]
    async fn a_token_that_is_not_a_header_value_is_a_signing_error() {
        let bearer = Bearer::from_source(|| async { Ok(Token::new("bad\ntoken")) });
        let err = bearer.sign(&mut get()).await.unwrap_err();
        assert!(err.is_signing());
        assert!(!err.to_string().contains("bad"), "{err}");
        assert!(Bearer::new("").unwrap_err().is_signing());
        assert!(Bearer::new("a\rb").unwrap_err().is_signing());
    }

    #[tokio::test]
    async fn huge_lifetimes_do_not_overflow() {
        let bearer =
            Bearer::from_source(|| async { Ok(Token::new("t").expires_in(Duration::MAX)) });
        assert_eq!(auth(&bearer).await, "Bearer t");
        assert_eq!(auth(&bearer).await, "Bearer t");
    }

    #[tokio::test(start_paused = true)]
    async fn rejected_only_drops_the_token_that_was_sent() {
        let (_, source) = counting(Duration::from_secs(3600));
        let bearer = Bearer::from_source(source).resend_on_invalid_token(true);
        assert!(bearer.resends());
        let mut sent = get();
        bearer.sign(&mut sent).await.unwrap();
        let mut resp = crate::testing::response(401, "");
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
        let mut stale = get();
        stale
            .headers_mut()
            .insert(AUTHORIZATION, HeaderValue::from_static("Bearer t0"));
        assert!(bearer.rejected(&stale, &resp).await);
        assert_eq!(auth(&bearer).await, "Bearer t1", "t1 kept");
        assert!(bearer.rejected(&sent, &resp).await);
        assert_eq!(auth(&bearer).await, "Bearer t2", "t1 dropped");

        let forbidden = crate::testing::response(403, "");
        assert!(!bearer.rejected(&sent, &forbidden).await);
        assert!(
            !Bearer::new("s")
                .unwrap()
                .resend_on_invalid_token(true)
                .resends()
        );
    }

    #[test]
    fn debug_prints_no_token() {
        let s = format!("{:?}", Bearer::new("s3cr3t").unwrap());
        assert!(!s.contains("s3cr3t"), "{s}");
        let t = format!(
            "{:?}",
            Token::new("s3cr3t").expires_in(Duration::from_secs(1))
        );
        assert!(!t.contains("s3cr3t") && t.contains("REDACTED"), "{t}");
        let src = format!(
            "{:?}",
            Bearer::from_source(|| async { Ok(Token::new("x")) })
        );
        assert!(src.contains("refreshing"), "{src}");
    }
}
