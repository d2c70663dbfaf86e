//! What is worth retrying: [`Decision`] and the [`default_classifier`].

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
/// | [`ErrorKind::Tls`], [`ErrorKind::InvalidRequest`], [`ErrorKind::TooLarge`], any other error | stop | stop |
///
/// A TLS failure (certificate rejected, handshake refused, a server that does not speak TLS) is
/// not retried: it fails the same way every time.
///
/// Nor is a refusal by a limit below ([`ErrorKind::RateLimited`],
/// [`ErrorKind::ConcurrencyLimited`]): the limiter already waited as long as it was allowed to,
/// so a retry would only wait again, in a second queue, and spend the retry budget (which is
/// there to protect the server) on calls the server never saw. The error's
/// [`retry_after`](Error::retry_after) goes to the caller, who knows whether it can wait that
/// long.
pub fn default_classifier(
    req: &Request,
    _attempt: u32,
    outcome: Result<&Response, &Error>,
) -> Decision {
    let retryable = match outcome {
        Ok(resp) => matches!(resp.status().as_u16(), 408 | 429 | 500 | 502 | 503 | 504),
        Err(err) => match err.kind() {
            ErrorKind::Connect => return Decision::Retry,
            ErrorKind::Timeout | ErrorKind::Transport | ErrorKind::Body => true,
            ErrorKind::RateLimited | ErrorKind::ConcurrencyLimited => false,
            _ => false,
        },
    };
    if retryable && is_idempotent(req) {
        Decision::Retry
    } else {
        Decision::Stop
    }
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
            ErrorKind::RateLimited,
            ErrorKind::ConcurrencyLimited,
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
        let err = Error::from(ErrorKind::Tls).with_message("invalid peer certificate");
        assert_eq!(classify_error("GET", &err), Decision::Stop);
        assert_eq!(classify_error("POST", &err), Decision::Stop);
    }
}
