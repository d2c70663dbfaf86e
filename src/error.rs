//! [`Error`] and [`ErrorKind`]: why there is no usable response.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::redact;

type BoxError = Box<dyn StdError + Send + Sync>;

/// What went wrong, in a form a program can match on.
///
/// New kinds may be added, so match with a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No connection could be made in time: refused, DNS failure, unreachable, connect timeout.
    /// The request never left, so it is safe to send again whatever its method.
    Connect,
    /// The TLS handshake failed: certificate rejected, handshake refused, or a server that does
    /// not speak TLS. The request never left, but sending it again fails the same way.
    Tls,
    /// A timeout passed: the backend's, a per-attempt timeout, or an overall deadline.
    Timeout,
    /// The connection failed after it was made and before a response head arrived: reset,
    /// closed early, or the peer did not speak HTTP. The server may have seen the request.
    Transport,
    /// The response head arrived but its body could not be read: reset, truncated, bad encoding.
    Body,
    /// The response body was larger than the configured limit.
    TooLarge,
    /// The request could not be sent as it is: relative URL, no host, bad header, unsupported
    /// scheme.
    InvalidRequest,
    /// A redirect could not be followed: too many of them, or a bad `Location`.
    Redirect,
    /// A circuit breaker is open for this host and had nothing to serve instead.
    BreakerOpen,
    /// A rate limiter refused the call: its place, or the server's quota, is further away
    /// than the limiter may wait. [`Error::retry_after`] says when a place is expected. The
    /// request was not sent.
    RateLimited,
    /// A concurrency limit (bulkhead) refused the call: every slot was taken and the queue was
    /// full, or no slot freed in time. The request was not sent.
    ConcurrencyLimited,
    /// A signer could not sign or authenticate the request.
    Signing,
    /// A body could not be decoded as asked: invalid UTF-8 or unexpected JSON.
    Decode,
    /// Anything else, including errors raised by test doubles.
    Other,
}

impl ErrorKind {
    /// A short, lower-case description, as used in [`Error`]'s `Display`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect error",
            ErrorKind::Tls => "TLS error",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Transport => "connection failed",
            ErrorKind::Body => "body error",
            ErrorKind::TooLarge => "body too large",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::Redirect => "redirect error",
            ErrorKind::BreakerOpen => "circuit breaker open",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::ConcurrencyLimited => "concurrency limit reached",
            ErrorKind::Signing => "signing failed",
            ErrorKind::Decode => "decode error",
            ErrorKind::Other => "error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a [`Doer`](crate::Doer) has no usable response for a request.
///
/// One opaque type for every backend and decorator: match on [`kind`](Error::kind), or use the
/// `is_*` helpers. The underlying error is kept as the [`source`](StdError::source).
///
/// # Display
///
/// `Display` says what failed, in this error's own words: the kind, a short message, the
/// redacted URL and the number of attempts, as in
/// `connect error (http://127.0.0.1:9/) after 3 attempts`. It does not repeat the cause, which
/// is the [`source`](StdError::source), as the Rust API guidelines ask (C-GOOD-ERR): a
/// reporter that walks the chain, such as `anyhow`'s `{:#}`, then prints each message once.
/// The alternate form, `{:#}`, prints the whole chain itself, for a log line without such a
/// reporter: `connect error (http://127.0.0.1:9/): ...: Connection refused (os error 111)`.
///
/// # Secrets
///
/// Neither `Display`, `Debug` nor any error of the source chain prints credentials: a URL is
/// shown without its userinfo and with the values of secret-looking query parameters replaced
/// by `REDACTED` (see [`redact`](crate::redact)), and no header value is ever part of an error.
/// A cause whose messages would print a secret (a library error quoting a full URL) is kept as
/// a redacted copy of its messages instead of the original error.
///
/// ```
/// use http_doer::{Error, ErrorKind};
///
/// let uri: http::Uri = "https://user:pw@api.test/v1?api_key=s3cr3t&page=2".parse().unwrap();
/// let err = Error::from(ErrorKind::Timeout).with_url(&uri);
/// assert!(err.is_timeout());
/// assert_eq!(err.to_string(), "timed out (https://api.test/v1?api_key=REDACTED&page=2)");
///
/// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
/// let err = Error::new(ErrorKind::Connect, refused).with_url(&uri);
/// assert_eq!(err.to_string(), "connect error (https://api.test/v1?api_key=REDACTED&page=2)");
/// assert_eq!(
///     format!("{err:#}"),
///     "connect error (https://api.test/v1?api_key=REDACTED&page=2): refused",
/// );
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    message: Option<Cow<'static, str>>,
    url: Option<String>,
    attempts: Option<u32>,
    retry_after: Option<Duration>,
    source: Option<BoxError>,
}

impl Error {
    /// An error of `kind` caused by `source`, which becomes the
    /// [`source`](StdError::source) (not part of `Display`).
    ///
    /// `source` is kept as it is, so a caller can downcast it, unless one of the messages of its
    /// chain would print a secret (a URL with userinfo or a secret query value): then it is
    /// replaced by a copy of those messages with the secrets redacted.
    pub fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        let mut err = Error::from(kind);
        err.inner.source = Some(redacted_chain(source.into()));
        err
    }

    /// Adds a short human-readable context, shown after the kind.
    ///
    /// Keep secrets out of it: the message is printed as given.
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.inner.message = Some(message.into());
        self
    }

    /// Records the URL the error is about, redacted at once (userinfo dropped, secret query
    /// values replaced), so the secret is never stored in the error.
    pub fn with_url(mut self, uri: &http::Uri) -> Self {
        self.inner.url = Some(redact::uri(uri));
        self
    }

    /// The same failure said again with `message` in front of its own: the same kind, URL,
    /// attempts, wait and source.
    ///
    /// Not `self` as the source: its kind and URL would then print twice in a reporter that
    /// walks the chain, and they are the same failure's.
    pub(crate) fn context(mut self, message: &'static str) -> Self {
        let message = match self.inner.message.take() {
            Some(own) => Cow::Owned(format!("{message}: {own}")),
            None => Cow::Borrowed(message),
        };
        self.inner.message = Some(message);
        self
    }

    /// The same failure, of another kind.
    pub(crate) fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.inner.kind = kind;
        self
    }

    /// Records how many attempts were made before giving up (set by retrying decorators).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.inner.attempts = Some(attempts);
        self
    }

    /// Records how long the caller should wait before trying again (set, for example, by an
    /// open circuit breaker).
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.inner.retry_after = Some(wait);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The redacted URL of the request, when known.
    pub fn url(&self) -> Option<&str> {
        self.inner.url.as_deref()
    }

    /// How many attempts were made, when a retrying decorator was involved.
    pub fn attempts(&self) -> Option<u32> {
        self.inner.attempts
    }

    /// How long to wait before trying again, when the producer of the error knows.
    pub fn retry_after(&self) -> Option<Duration> {
        self.inner.retry_after
    }

    /// Whether no connection could be made ([`ErrorKind::Connect`]).
    pub fn is_connect(&self) -> bool {
        self.kind() == ErrorKind::Connect
    }

    /// Whether the TLS handshake failed ([`ErrorKind::Tls`]).
    pub fn is_tls(&self) -> bool {
        self.kind() == ErrorKind::Tls
    }

    /// Whether a timeout or deadline passed ([`ErrorKind::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    /// Whether the connection failed after it was made ([`ErrorKind::Transport`]).
    pub fn is_transport(&self) -> bool {
        self.kind() == ErrorKind::Transport
    }

    /// Whether the response body could not be read ([`ErrorKind::Body`]).
    pub fn is_body(&self) -> bool {
        self.kind() == ErrorKind::Body
    }

    /// Whether the response body was over the limit ([`ErrorKind::TooLarge`]).
    pub fn is_too_large(&self) -> bool {
        self.kind() == ErrorKind::TooLarge
    }

    /// Whether the request could not be sent as it is ([`ErrorKind::InvalidRequest`]).
    pub fn is_invalid_request(&self) -> bool {
        self.kind() == ErrorKind::InvalidRequest
    }

    /// Whether a circuit breaker refused the call ([`ErrorKind::BreakerOpen`]).
    pub fn is_breaker_open(&self) -> bool {
        self.kind() == ErrorKind::BreakerOpen
    }

    /// Whether a rate limiter refused the call ([`ErrorKind::RateLimited`]).
    pub fn is_rate_limited(&self) -> bool {
        self.kind() == ErrorKind::RateLimited
    }

    /// Whether a concurrency limit refused the call ([`ErrorKind::ConcurrencyLimited`]).
    pub fn is_concurrency_limited(&self) -> bool {
        self.kind() == ErrorKind::ConcurrencyLimited
    }

    /// Whether signing the request failed ([`ErrorKind::Signing`]).
    pub fn is_signing(&self) -> bool {
        self.kind() == ErrorKind::Signing
    }

    /// Whether a body could not be decoded ([`ErrorKind::Decode`]).
    pub fn is_decode(&self) -> bool {
        self.kind() == ErrorKind::Decode
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                message: None,
                url: None,
                attempts: None,
                retry_after: None,
                source: None,
            }),
        }
    }
}

/// An [`ErrorKind::InvalidRequest`] error for a request (or response) that `http`'s builders
/// refused, so an SDK can build its requests with `?`:
///
/// ```
/// use http_doer::{Body, Error, Request};
///
/// fn request(base: &str, token: &str) -> Result<Request, Error> {
///     Ok(http::Request::get(format!("{base}/items"))
///         .header("authorization", format!("Bearer {token}"))
///         .body(Body::empty())?)
/// }
///
/// let err = request("https://api.test", "tok\nen").unwrap_err();
/// assert!(err.is_invalid_request());
/// assert_eq!(err.to_string(), "invalid request: a header value is not valid");
/// assert!(request("not a url", "tok").unwrap_err().is_invalid_request());
/// ```
///
/// The message names what was refused (the URL, a header name or value, the method), never
/// its content: an invalid header value may be a credential. `http`'s own error is the source,
/// and does not quote the content either.
impl From<http::Error> for Error {
    fn from(e: http::Error) -> Self {
        let what = if e.is::<http::uri::InvalidUri>() || e.is::<http::uri::InvalidUriParts>() {
            "the URL is not valid"
        } else if e.is::<http::header::InvalidHeaderName>() {
            "a header name is not valid"
        } else if e.is::<http::header::InvalidHeaderValue>() {
            "a header value is not valid"
        } else if e.is::<http::method::InvalidMethod>() {
            "the method is not valid"
        } else if e.is::<http::status::InvalidStatusCode>() {
            "the status code is not valid"
        } else if e.is::<http::header::MaxSizeReached>() {
            "too many headers"
        } else {
            "the request could not be built"
        };
        Error::new(ErrorKind::InvalidRequest, e).with_message(what)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.inner.kind.as_str())?;
        if let Some(msg) = &self.inner.message {
            write!(f, ": {msg}")?;
        }
        if let Some(url) = &self.inner.url {
            write!(f, " ({url})")?;
        }
        if let Some(n) = self.inner.attempts {
            write!(f, " after {n} attempt{}", if n == 1 { "" } else { "s" })?;
        }
        if f.alternate() {
            for cause in chain(self.source()) {
                write!(f, ": {}", redact::text(&cause.to_string()))?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        if let Some(msg) = &self.inner.message {
            d.field("message", msg);
        }
        if let Some(url) = &self.inner.url {
            d.field("url", url);
        }
        if let Some(n) = &self.inner.attempts {
            d.field("attempts", n);
        }
        if let Some(w) = &self.inner.retry_after {
            d.field("retry_after", w);
        }
        if self.inner.source.is_some() {
            // Display, not Debug: a foreign Debug may print a whole request, headers included.
            let chain: Vec<_> = chain(self.source())
                .map(|e| redact::text(&e.to_string()).into_owned())
                .collect();
            d.field("source", &chain);
        }
        d.finish()
    }
}

/// The most links of a source chain that are walked: a chain is a handful of links, and a
/// foreign `source()` that returned itself must not hang a formatter.
const MAX_CHAIN: usize = 32;

/// `first` and the sources after it, at most [`MAX_CHAIN`] of them.
pub(crate) fn chain<'a>(
    first: Option<&'a (dyn StdError + 'static)>,
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(first, |e: &&'a (dyn StdError + 'static)| (*e).source()).take(MAX_CHAIN)
}

/// `source` itself when no message of its chain prints a secret; otherwise a copy of the
/// chain's messages, redacted. A reporter such as anyhow prints each link's `Display` as it is,
/// so a secret must not be in any link, not only in ours.
fn redacted_chain(source: BoxError) -> BoxError {
    let leaks = chain(Some(&*source))
        // Our own errors are redacted when made, and so is their chain.
        .take_while(|e| !e.is::<Error>())
        .any(|e| {
            let text = e.to_string();
            matches!(redact::text(&text), Cow::Owned(r) if r != text)
        });
    if !leaks {
        return source;
    }
    let messages: Vec<String> = chain(Some(&*source))
        .map(|e| redact::text(&e.to_string()).into_owned())
        .collect();
    let mut copy = None;
    for message in messages.into_iter().rev() {
        copy = Some(Redacted {
            message,
            source: copy.map(Box::new),
        });
    }
    match copy {
        Some(copy) => Box::new(copy),
        None => source,
    }
}

/// A link of a source chain whose message was redacted; see [`redacted_chain`].
#[derive(Debug)]
struct Redacted {
    message: String,
    source: Option<Box<Redacted>>,
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Redacted {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|e| &**e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn error_is_send_sync_static_and_small() {
        assert_send_sync::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn display_shows_kind_message_and_url_and_the_alternate_form_the_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let uri: http::Uri = "http://127.0.0.1:1/x".parse().unwrap();
        let err = Error::new(ErrorKind::Connect, io)
            .with_message("dial")
            .with_url(&uri);
        assert_eq!(
            err.to_string(),
            "connect error: dial (http://127.0.0.1:1/x)"
        );
        assert_eq!(
            format!("{err:#}"),
            "connect error: dial (http://127.0.0.1:1/x): refused"
        );
        assert_eq!(err.source().unwrap().to_string(), "refused");
        assert!(err.is_connect() && !err.is_timeout());
    }

    #[test]
    fn the_cause_is_in_the_source_chain_not_in_display() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let err = Error::new(ErrorKind::Connect, Outer(io));
        assert_eq!(err.to_string(), "connect error");
        assert_eq!(
            format!("{err:#}"),
            "connect error: error sending request: Connection refused"
        );
        let debug = format!("{err:?}");
        assert!(debug.contains("error sending request") && debug.contains("Connection refused"));
    }

    #[test]
    fn a_source_that_is_its_own_source_does_not_hang_a_formatter() {
        #[derive(Debug)]
        struct Loop;
        impl fmt::Display for Loop {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("again")
            }
        }
        impl StdError for Loop {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(self)
            }
        }
        let err = Error::new(ErrorKind::Other, Loop);
        assert_eq!(format!("{err:#}").matches("again").count(), MAX_CHAIN);
        assert_eq!(format!("{err:?}").matches("again").count(), MAX_CHAIN);
    }

    #[test]
    fn context_puts_its_message_first_and_keeps_the_rest() {
        let uri: http::Uri = "http://h.test/p".parse().unwrap();
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let err = Error::new(ErrorKind::Transport, io)
            .with_message("mid-body")
            .with_url(&uri)
            .with_retry_after(Duration::from_secs(2))
            .context("not retried");
        assert_eq!(
            err.to_string(),
            "connection failed: not retried: mid-body (http://h.test/p)"
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
        let io = err.source().unwrap().downcast_ref::<std::io::Error>();
        assert_eq!(io.unwrap().kind(), std::io::ErrorKind::ConnectionReset);
        let bare = Error::from(ErrorKind::Body).context("not retried");
        assert_eq!(bare.to_string(), "body error: not retried");
    }

    #[test]
    fn http_errors_are_invalid_requests_that_never_show_the_value() {
        let err: Error = http::Request::get("http://h.test/")
            .header("authorization", "Bearer s3cr3t\n")
            .body(())
            .map(drop)
            .unwrap_err()
            .into();
        assert!(err.is_invalid_request());
        assert_eq!(
            err.to_string(),
            "invalid request: a header value is not valid"
        );
        for s in [format!("{err:#}"), format!("{err:?}"), format!("{err:#?}")] {
            assert!(!s.contains("s3cr3t"), "{s}");
        }
        let err: Error = http::Request::get("http://h.test/ x")
            .body(())
            .map(drop)
            .unwrap_err()
            .into();
        assert_eq!(err.to_string(), "invalid request: the URL is not valid");
        assert!(err.source().unwrap().is::<http::Error>());
        let err: Error = http::Request::builder()
            .method("BAD METHOD")
            .body(())
            .map(drop)
            .unwrap_err()
            .into();
        assert_eq!(err.to_string(), "invalid request: the method is not valid");
        let err: Error = http::Request::get("http://h.test/")
            .header("bad name", "v")
            .body(())
            .map(drop)
            .unwrap_err()
            .into();
        assert_eq!(
            err.to_string(),
            "invalid request: a header name is not valid"
        );
    }

    #[test]
    fn source_chain_is_kept_and_downcastable() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        let err = Error::new(ErrorKind::Timeout, io);
        let src = err.source().unwrap();
        assert_eq!(
            src.downcast_ref::<std::io::Error>().unwrap().kind(),
            std::io::ErrorKind::TimedOut
        );
    }

    #[test]
    fn userinfo_and_secret_query_values_never_print() {
        let uri: http::Uri =
            "https://alice:hunter2@api.test/p?access_token=tok123&key=k456&page=2&Signature=sig789"
                .parse()
                .unwrap();
        let err = Error::new(ErrorKind::Other, "boom")
            .with_url(&uri)
            .with_attempts(3);
        for s in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
            for secret in ["alice", "hunter2", "tok123", "k456", "sig789"] {
                assert!(!s.contains(secret), "{secret} leaked in {s}");
            }
            assert!(s.contains("page=2"), "{s}");
        }
        assert_eq!(err.attempts(), Some(3));
    }

    #[test]
    fn secrets_quoted_by_a_source_error_are_redacted_in_every_link() {
        #[derive(Debug)]
        struct Quoting(std::io::Error);
        impl fmt::Display for Quoting {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("error sending request for url (http://bob:pw1@h.test/?password=pw2)")
            }
        }
        impl StdError for Quoting {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::other("reset by https://h.test/?token=pw3");
        let err = Error::new(ErrorKind::Transport, Quoting(io));
        let mut shown = vec![err.to_string(), format!("{err:#}"), format!("{err:?}")];
        shown.extend(chain(err.source()).map(|e| format!("{e} {e:?}")));
        assert_eq!(shown.len(), 5, "both links are kept");
        for s in shown {
            for secret in ["pw1", "pw2", "pw3", "bob"] {
                assert!(!s.contains(secret), "{secret} in {s}");
            }
        }
        assert!(format!("{err:#}").contains("h.test/?password=REDACTED"));
        assert!(format!("{err:#}").contains("reset by https://h.test/?token=REDACTED"));
    }

    #[test]
    fn a_source_without_secrets_is_kept_as_it_is() {
        let err = Error::new(ErrorKind::Transport, "see https://h.test/?page=2");
        assert_eq!(
            err.source().unwrap().to_string(),
            "see https://h.test/?page=2"
        );
        let io = std::io::Error::other("plain");
        assert!(
            Error::new(ErrorKind::Body, io)
                .source()
                .unwrap()
                .is::<std::io::Error>()
        );
    }

    #[test]
    fn every_kind_has_a_description() {
        let kinds = [
            ErrorKind::Connect,
            ErrorKind::Tls,
            ErrorKind::Timeout,
            ErrorKind::Transport,
            ErrorKind::Body,
            ErrorKind::TooLarge,
            ErrorKind::InvalidRequest,
            ErrorKind::Redirect,
            ErrorKind::BreakerOpen,
            ErrorKind::RateLimited,
            ErrorKind::ConcurrencyLimited,
            ErrorKind::Signing,
            ErrorKind::Decode,
            ErrorKind::Other,
        ];
        let mut seen = std::collections::HashSet::new();
        for k in kinds {
            assert!(seen.insert(k.as_str()), "duplicate description for {k:?}");
            assert_eq!(Error::from(k).to_string(), k.as_str());
        }
    }
}
