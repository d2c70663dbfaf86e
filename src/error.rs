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
/// `Display` and `Debug` never print credentials: a URL is shown without its userinfo and with
/// the values of secret-looking query parameters replaced by `REDACTED` (see
/// [`redact`](crate::redact)), and no header value is ever part of an error.
///
/// ```
/// use http_doer::{Error, ErrorKind};
///
/// let uri: http::Uri = "https://user:pw@api.test/v1?api_key=s3cr3t&page=2".parse().unwrap();
/// let err = Error::from(ErrorKind::Timeout).with_url(&uri);
/// assert!(err.is_timeout());
/// assert_eq!(err.to_string(), "timed out (https://api.test/v1?api_key=REDACTED&page=2)");
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
    /// An error of `kind` caused by `source`.
    pub fn new(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        let mut err = Error::from(kind);
        err.inner.source = Some(source.into());
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

    /// The same failure said again with `message`: the same kind, URL, attempts and wait, and
    /// `self` as the source, so its own message is kept in the chain.
    pub(crate) fn context(self, message: &'static str) -> Self {
        let mut out = Error::from(self.inner.kind).with_message(message);
        out.inner.url = self.inner.url.clone();
        out.inner.attempts = self.inner.attempts;
        out.inner.retry_after = self.inner.retry_after;
        out.inner.source = Some(Box::new(self));
        out
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
        if let Some(source) = &self.inner.source {
            // The root cause says most ("Connection refused"); the layers above it are often
            // generic ("error sending request"). Foreign errors may quote a URL: redact them.
            write!(f, ": {}", redact::text(&root_cause(&**source).to_string()))?;
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
        if let Some(source) = &self.inner.source {
            // Display, not Debug: a foreign Debug may print a whole request, headers included.
            let mut chain = Vec::new();
            let mut next: Option<&(dyn StdError + 'static)> = Some(&**source);
            while let Some(e) = next {
                chain.push(redact::text(&e.to_string()).into_owned());
                next = e.source();
            }
            d.field("source", &chain);
        }
        d.finish()
    }
}

fn root_cause<'a>(mut e: &'a (dyn StdError + 'static)) -> &'a (dyn StdError + 'static) {
    while let Some(next) = e.source() {
        e = next;
    }
    e
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
    fn display_shows_kind_message_url_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let uri: http::Uri = "http://127.0.0.1:1/x".parse().unwrap();
        let err = Error::new(ErrorKind::Connect, io)
            .with_message("dial")
            .with_url(&uri);
        assert_eq!(
            err.to_string(),
            "connect error: dial (http://127.0.0.1:1/x): refused"
        );
        assert!(err.is_connect() && !err.is_timeout());
    }

    #[test]
    fn display_shows_the_root_cause() {
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
        assert_eq!(err.to_string(), "connect error: Connection refused");
        let debug = format!("{err:?}");
        assert!(debug.contains("error sending request") && debug.contains("Connection refused"));
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
    fn secrets_quoted_by_a_source_error_are_redacted() {
        let source = "error sending request for url (http://bob:pw1@h.test/?password=pw2)";
        let err = Error::new(ErrorKind::Transport, source);
        for s in [err.to_string(), format!("{err:?}")] {
            assert!(
                !s.contains("pw1") && !s.contains("pw2") && !s.contains("bob"),
                "{s}"
            );
            assert!(s.contains("h.test"), "{s}");
        }
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
