//! A tower service's error as an [`Error`] of the kind our decorators classify by.
//!
//! tower errors are type-erased (`Box<dyn Error>`), and this crate links neither hyper nor
//! tower, so the chain is read through what std offers: our own [`Error`] wherever it is,
//! `io::Error` kinds, tokio's `Elapsed`, and the fixed texts of hyper-util's client errors
//! and tower's `Elapsed` (tests/tower.rs holds the `Connect` and `Elapsed` texts to it).

use std::error::Error as StdError;
use std::io;

use crate::backend::{io_error_kind, is_tls_failure, our_kind};
use crate::body::BoxError;
use crate::{Error, ErrorKind};

/// How hyper-util's legacy client prints its error kinds: `client error ({kind:?})`.
const HYPER_UTIL_CONNECT: &str = "client error (Connect)";
const HYPER_UTIL_PREFIX: &str = "client error (";
const HYPER_UTIL_INVALID: [&str; 3] = [
    "client error (UserUnsupportedRequestMethod)",
    "client error (UserUnsupportedVersion)",
    "client error (UserAbsoluteUriRequired)",
];
/// How `tower::timeout::error::Elapsed` prints itself.
const TOWER_ELAPSED: &str = "request timed out";

/// The service's error for a request to `uri`: an [`Error`] passed through unchanged (so one
/// made by a Doer below a tower layer comes back as it was), anything else classified and
/// kept as the source, with the redacted URL.
pub(crate) fn from_service(e: BoxError, uri: &http::Uri) -> Error {
    let e = match e.downcast::<Error>() {
        Ok(ours) => return *ours,
        Err(e) => e,
    };
    let kind = match ours_inside(&*e) {
        Some(kind) => kind,
        None => match classify(&*e) {
            ErrorKind::Connect | ErrorKind::Transport if is_tls_failure(uri, &*e) => ErrorKind::Tls,
            kind => kind,
        },
    };
    Error::new(kind, e).with_url(uri)
}

/// An error of a response body's stream: ours unchanged, a timeout as such, else
/// [`ErrorKind::Body`].
pub(crate) fn from_body(e: BoxError, uri: &http::Uri) -> Error {
    let e = match e.downcast::<Error>() {
        Ok(ours) => return *ours,
        Err(e) => e,
    };
    let kind = match ours_inside(&*e).unwrap_or_else(|| classify(&*e)) {
        ErrorKind::Timeout => ErrorKind::Timeout,
        _ => ErrorKind::Body,
    };
    Error::new(kind, e)
        .with_message("the response body failed")
        .with_url(uri)
}

/// The kind of one of our errors deeper in the chain: a Doer's error that a tower layer
/// wrapped, or our request body's own error that hyper reports as its own.
fn ours_inside(e: &(dyn StdError + 'static)) -> Option<ErrorKind> {
    chain(e).find_map(our_kind)
}

/// The kind for a foreign error, from the most telling link of its chain: a failed connection
/// (the request never left, so any method may be retried) wins over a timeout (a connect
/// timeout is both), which wins over an invalid request, then a broken exchange.
fn classify(e: &(dyn StdError + 'static)) -> ErrorKind {
    let mut found = ErrorKind::Other;
    for link in chain(e) {
        let kind = link_kind(link);
        if rank(kind) < rank(found) {
            found = kind;
        }
    }
    found
}

fn link_kind(e: &(dyn StdError + 'static)) -> ErrorKind {
    if let Some(io) = e.downcast_ref::<io::Error>() {
        return io_error_kind(io).unwrap_or(ErrorKind::Transport);
    }
    if e.is::<tokio::time::error::Elapsed>() {
        return ErrorKind::Timeout;
    }
    let text = e.to_string();
    if text == HYPER_UTIL_CONNECT {
        ErrorKind::Connect
    } else if text == TOWER_ELAPSED {
        ErrorKind::Timeout
    } else if HYPER_UTIL_INVALID.contains(&text.as_str()) {
        ErrorKind::InvalidRequest
    } else if text.starts_with(HYPER_UTIL_PREFIX) {
        // SendRequest, Canceled, ChannelClosed: the connection failed under the request.
        ErrorKind::Transport
    } else {
        ErrorKind::Other
    }
}

fn rank(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Connect => 0,
        ErrorKind::Timeout => 1,
        ErrorKind::InvalidRequest => 2,
        ErrorKind::Transport => 3,
        _ => 4,
    }
}

fn chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |&e| e.source())
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    /// An error that prints `text` and has `source` below it, as foreign errors do.
    #[derive(Debug)]
    struct Foreign {
        text: &'static str,
        source: Option<BoxError>,
    }

    impl fmt::Display for Foreign {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.text)
        }
    }

    impl StdError for Foreign {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.source.as_deref().map(|e| e as _)
        }
    }

    fn foreign(text: &'static str, source: Option<BoxError>) -> BoxError {
        Box::new(Foreign { text, source })
    }

    fn io(kind: io::ErrorKind) -> BoxError {
        Box::new(io::Error::new(kind, "io"))
    }

    fn uri() -> http::Uri {
        "http://api.test/v1?token=s3cr3t".parse().unwrap()
    }

    #[test]
    fn our_error_passes_unchanged() {
        let ours = Error::from(ErrorKind::BreakerOpen).with_message("open");
        let out = from_service(Box::new(ours), &uri());
        assert_eq!(out.kind(), ErrorKind::BreakerOpen);
        assert_eq!(out.to_string(), "circuit breaker open: open");
    }

    #[test]
    fn our_error_inside_a_foreign_one_keeps_its_kind() {
        let inner: BoxError = Box::new(Error::from(ErrorKind::Signing));
        let out = from_service(foreign("layer failed", Some(inner)), &uri());
        assert_eq!(out.kind(), ErrorKind::Signing);
        let wrapped = io::Error::other(Error::from(ErrorKind::Body));
        let out = from_service(
            foreign("client error (SendRequest)", Some(wrapped.into())),
            &uri(),
        );
        assert_eq!(out.kind(), ErrorKind::Body);
    }

    #[test]
    fn foreign_errors_are_classified() {
        let cases: Vec<(BoxError, ErrorKind)> = vec![
            (
                foreign(
                    HYPER_UTIL_CONNECT,
                    Some(foreign(
                        "tcp connect error",
                        Some(io(io::ErrorKind::TimedOut)),
                    )),
                ),
                ErrorKind::Connect,
            ),
            (io(io::ErrorKind::ConnectionRefused), ErrorKind::Connect),
            (foreign(TOWER_ELAPSED, None), ErrorKind::Timeout),
            (Box::new(tokio_elapsed()), ErrorKind::Timeout),
            (io(io::ErrorKind::TimedOut), ErrorKind::Timeout),
            (
                foreign("client error (UserAbsoluteUriRequired)", None),
                ErrorKind::InvalidRequest,
            ),
            (
                foreign(
                    "client error (SendRequest)",
                    Some(foreign(
                        "connection closed",
                        Some(io(io::ErrorKind::ConnectionReset)),
                    )),
                ),
                ErrorKind::Transport,
            ),
            (
                foreign("client error (Canceled)", None),
                ErrorKind::Transport,
            ),
            (foreign("something else", None), ErrorKind::Other),
        ];
        for (e, kind) in cases {
            let text = e.to_string();
            assert_eq!(from_service(e, &uri()).kind(), kind, "{text}");
        }
    }

    #[test]
    fn tls_failures_over_https_are_tls() {
        let https: http::Uri = "https://api.test/".parse().unwrap();
        let e = foreign(HYPER_UTIL_CONNECT, Some(io(io::ErrorKind::InvalidData)));
        assert_eq!(from_service(e, &https).kind(), ErrorKind::Tls);
    }

    #[test]
    fn the_url_is_redacted() {
        let out = from_service(foreign("boom", None), &uri());
        let text = format!("{out} {out:?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(text.contains("api.test/v1"), "{text}");
    }

    #[test]
    fn body_errors_are_body_or_timeout() {
        assert_eq!(
            from_body(foreign("reset", None), &uri()).kind(),
            ErrorKind::Body
        );
        assert_eq!(
            from_body(io(io::ErrorKind::TimedOut), &uri()).kind(),
            ErrorKind::Timeout
        );
        let ours: BoxError = Box::new(Error::from(ErrorKind::TooLarge));
        assert_eq!(from_body(ours, &uri()).kind(), ErrorKind::TooLarge);
    }

    fn tokio_elapsed() -> tokio::time::error::Elapsed {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let pending = std::future::pending::<()>();
            tokio::time::timeout(std::time::Duration::from_millis(1), pending).await
        })
        .unwrap_err()
    }
}
