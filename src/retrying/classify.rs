//! What is worth retrying: [`Decision`] and the [`default_classifier`].

use std::error::Error as StdError;
use std::time::Duration;

use http::Method;

use crate::{Error, ErrorKind, Request, Response};

/// What a classifier says about one attempt's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try again after the usual wait: the server's `Retry-After` on a 429 or 503 when it sent
    /// a valid one, otherwise the next backoff delay.
    Retry,
    /// Try again after exactly this wait (still capped by
    /// [`Retrying::max_delay`](crate::Retrying::max_delay)).
    RetryAfter(Duration),
    /// Return this outcome to the caller.
    Stop,
}

/// The `Idempotency-Key` header (IETF draft `httpapi-idempotency-key-header`): a request that
/// carries it may be sent again whatever its method, because the server deduplicates it.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether sending `req` twice has the same effect as sending it once: its method is GET,
/// HEAD, OPTIONS, TRACE, PUT or DELETE (RFC 9110, section 9.2.2), or it carries an
/// `Idempotency-Key` header.
pub fn is_idempotent(req: &Request) -> bool {
    matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    ) || req.headers().contains_key(IDEMPOTENCY_KEY)
}

/// The classification [`Retrying`](crate::Retrying) uses unless given another; a custom
/// classifier can call it for the cases it does not handle itself.
///
/// | outcome | GET, HEAD, OPTIONS, TRACE, PUT, DELETE, or `Idempotency-Key` | other methods (POST, PATCH, ...) |
/// |---|---|---|
/// | [`ErrorKind::Connect`] (the request never left) | retry | retry |
/// | [`ErrorKind::Timeout`], [`ErrorKind::Transport`] (reset, closed early), [`ErrorKind::Body`] | retry | stop |
/// | status 408, 429, 500, 502, 503, 504 | retry | stop |
/// | any other status (2xx, 3xx, other 4xx, 501, 505, ...) | stop | stop |
/// | a TLS failure, [`ErrorKind::InvalidRequest`], [`ErrorKind::TooLarge`], any other error | stop | stop |
///
/// A TLS failure (certificate rejected, handshake refused, a server that does not speak TLS) is
/// not retried: it fails the same way every time. The backends report it as
/// [`ErrorKind::Connect`] (reqwest) or [`ErrorKind::Transport`] (ureq), so it is recognised in
/// the error's source chain: an I/O error of kind `InvalidData`, or a message in the words
/// rustls, OpenSSL and native-tls use (TLS, SSL, certificate, handshake, alert, corrupt
/// message, peer incompatible or misbehaved).
pub fn default_classifier(
    req: &Request,
    _attempt: u32,
    outcome: Result<&Response, &Error>,
) -> Decision {
    let retryable = match outcome {
        Ok(resp) => matches!(resp.status().as_u16(), 408 | 429 | 500 | 502 | 503 | 504),
        Err(err) => match err.kind() {
            ErrorKind::Connect | ErrorKind::Transport if is_tls_failure(err) => false,
            ErrorKind::Connect => return Decision::Retry,
            ErrorKind::Timeout | ErrorKind::Transport | ErrorKind::Body => true,
            _ => false,
        },
    };
    if retryable && is_idempotent(req) {
        Decision::Retry
    } else {
        Decision::Stop
    }
}

/// Words of TLS failures in the messages of rustls ("invalid peer certificate", "received
/// fatal alert", "received corrupt message", "peer is incompatible", "peer misbehaved"),
/// OpenSSL ("SSL routines", "certificate verify failed") and native-tls.
const TLS_WORDS: [&str; 8] = [
    "tls",
    "ssl",
    "certificate",
    "handshake",
    "fatal alert",
    "corrupt message",
    "peer is incompatible",
    "peer misbehaved",
];

/// Whether a connect or transport error came from TLS rather than from the network.
fn is_tls_failure(err: &Error) -> bool {
    // Start below the Error itself: its Display carries the URL, and a host named
    // "tls.example" must not make a refused connection look like a TLS failure.
    let mut cur = err.source();
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return true;
        }
        let text = e.to_string().to_ascii_lowercase();
        if TLS_WORDS.iter().any(|word| text.contains(word)) {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::response;
    use crate::{Body, ErrorKind};

    fn req(method: &str) -> Request {
        http::Request::builder()
            .method(method)
            .uri("http://tls.example/")
            .body(Body::empty())
            .unwrap()
    }

    fn classify_status(method: &str, status: u16) -> Decision {
        default_classifier(&req(method), 1, Ok(&response(status, "")))
    }

    fn classify_error(method: &str, err: &Error) -> Decision {
        default_classifier(&req(method), 1, Err(err))
    }

    const SAFE: [&str; 6] = ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"];
    const UNSAFE: [&str; 3] = ["POST", "PATCH", "CONNECT"];

    #[test]
    fn transient_statuses_retry_only_idempotent_methods() {
        for status in [408, 429, 500, 502, 503, 504] {
            for m in SAFE {
                assert_eq!(classify_status(m, status), Decision::Retry, "{m} {status}");
            }
            for m in UNSAFE {
                assert_eq!(classify_status(m, status), Decision::Stop, "{m} {status}");
            }
        }
    }

    #[test]
    fn other_statuses_never_retry() {
        for status in [
            200, 201, 204, 301, 304, 400, 401, 403, 404, 405, 409, 410, 412, 422, 425, 431, 501,
            505, 507, 511, 599,
        ] {
            for m in SAFE.iter().chain(&UNSAFE) {
                assert_eq!(classify_status(m, status), Decision::Stop, "{m} {status}");
            }
        }
    }

    #[test]
    fn connect_errors_retry_for_any_method() {
        let err = Error::from(ErrorKind::Connect).with_message("refused");
        for m in SAFE.iter().chain(&UNSAFE) {
            assert_eq!(classify_error(m, &err), Decision::Retry, "{m}");
        }
    }

    #[test]
    fn timeouts_resets_and_body_errors_retry_only_idempotent() {
        for kind in [ErrorKind::Timeout, ErrorKind::Transport, ErrorKind::Body] {
            let err = Error::from(kind);
            for m in SAFE {
                assert_eq!(classify_error(m, &err), Decision::Retry, "{m} {kind:?}");
            }
            for m in UNSAFE {
                assert_eq!(classify_error(m, &err), Decision::Stop, "{m} {kind:?}");
            }
        }
    }

    #[test]
    fn other_errors_never_retry() {
        for kind in [
            ErrorKind::InvalidRequest,
            ErrorKind::TooLarge,
            ErrorKind::Redirect,
            ErrorKind::BreakerOpen,
            ErrorKind::Signing,
            ErrorKind::Decode,
            ErrorKind::Other,
        ] {
            for m in SAFE {
                assert_eq!(
                    classify_error(m, &Error::from(kind)),
                    Decision::Stop,
                    "{kind:?}"
                );
            }
        }
    }

    #[test]
    fn idempotency_key_makes_post_retryable() {
        let mut post = req("POST");
        post.headers_mut()
            .insert("Idempotency-Key", "8e03978e".parse().unwrap());
        assert!(is_idempotent(&post));
        let resp = response(503, "");
        assert_eq!(default_classifier(&post, 1, Ok(&resp)), Decision::Retry);
        let err = Error::from(ErrorKind::Timeout);
        assert_eq!(default_classifier(&post, 1, Err(&err)), Decision::Retry);
        assert!(!is_idempotent(&req("POST")));
    }

    #[test]
    fn tls_failures_are_not_retried() {
        let rustls_like = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        );
        let err = Error::new(ErrorKind::Connect, rustls_like);
        assert_eq!(classify_error("GET", &err), Decision::Stop);

        let openssl_like = Error::new(
            ErrorKind::Connect,
            "error:0A000086:SSL routines::certificate verify failed",
        );
        assert_eq!(classify_error("GET", &openssl_like), Decision::Stop);

        // What reqwest (rustls) and ureq report for an https request to a plain-HTTP server.
        let corrupt = std::io::Error::other("received corrupt message of type InvalidContentType");
        for kind in [ErrorKind::Connect, ErrorKind::Transport] {
            let err = Error::new(kind, std::io::Error::other(corrupt.to_string()));
            assert_eq!(classify_error("GET", &err), Decision::Stop, "{kind:?}");
        }

        // A refused connection to a host whose name mentions TLS is still retried.
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let uri: http::Uri = "https://tls.example/".parse().unwrap();
        let err = Error::new(ErrorKind::Connect, refused).with_url(&uri);
        assert_eq!(classify_error("GET", &err), Decision::Retry);
    }
}
