//! The real backends, and what they share: URL checks, the body limit, redirects.
//!
//! Both backends switch their library's own redirect handling off and share one redirect
//! follower, so they follow redirects the same way and strip credentials the same way.

use std::error::Error as StdError;
use std::time::Duration;

use crate::{Error, ErrorKind};

#[cfg(feature = "ureq")]
mod lookup;
#[cfg(feature = "reqwest")]
pub(crate) mod reqwest;
#[cfg(feature = "reqwest")]
mod tls;
#[cfg(feature = "ureq")]
pub(crate) mod ureq;

#[cfg(any(feature = "reqwest", feature = "ureq"))]
mod prepare;
#[cfg(any(feature = "reqwest", feature = "ureq"))]
pub(crate) mod redirect;
#[cfg(any(feature = "reqwest", feature = "ureq"))]
pub(crate) mod uri;

/// The default limit on a buffered response body: 10 MiB.
///
/// It is ureq's own default, large enough for ordinary API payloads and small enough that a
/// hundred concurrent calls cannot hold more than about a gigabyte. Raise it with
/// `max_body_size` on either backend when you download files.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 10 * 1024 * 1024;

/// The default number of redirects followed before [`ErrorKind::Redirect`]: 10, as reqwest,
/// ureq and Go do.
pub const DEFAULT_MAX_REDIRECTS: usize = 10;

/// The default timeout for one exchange, from connecting until the whole body is read: 30 s.
///
/// A backend with no timeout can hang forever on a server that accepts and never answers, so
/// there is one by default; `timeout(None)` removes it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The default connect timeout: 10 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default limit on the number of header lines in a response: 100, hyper's own default.
///
/// Past it the call fails with [`ErrorKind::TooLarge`]. A server has no reason to send more;
/// an attacker does (each line costs the client memory and parsing time).
pub const DEFAULT_MAX_RESPONSE_HEADERS: usize = 100;

/// The most header lines either backend can read in one response: 128, the fixed size of
/// ureq's parser. `max_response_headers` is capped at it, so both backends keep one limit.
pub const MAX_RESPONSE_HEADERS_CEILING: usize = 128;

/// The `User-Agent` sent by the backends that `new()` builds, unless the request has one:
/// `http-doer/` and the crate's version. Some APIs (GitHub's among them) refuse requests
/// without one.
pub const USER_AGENT: &str = concat!("http-doer/", env!("CARGO_PKG_VERSION"));

/// How a backend hands over a response body: read whole (the default) or streamed.
///
/// Set it for every call with `response_mode` on [`ReqwestDoer`](crate::ReqwestDoer) or
/// [`UreqDoer`](crate::UreqDoer), or for one request by inserting it into the request's
/// extensions (which wins over the backend's):
///
/// ```
/// use http_doer::{Body, ResponseMode};
///
/// let mut req = http::Request::get("http://files.test/big.iso").body(Body::empty()).unwrap();
/// req.extensions_mut().insert(ResponseMode::Streamed);
/// ```
///
/// * **`Buffered`**: the backend reads the whole body, up to `max_body_size`, before `execute`
///   returns, so every decorator sees a complete answer, and a body that fails to arrive is an
///   error of the call (which a retry layer may retry).
/// * **`Streamed`**: `execute` returns once the head has arrived, and the body is read as the
///   caller reads it ([`Body::chunk`](crate::Body::chunk), a `Stream`, an `AsyncRead`). The
///   exchange's timeout still covers the whole body, so a server that stalls mid-body fails
///   the read with [`ErrorKind::Timeout`]; a connection cut mid-body fails it with
///   [`ErrorKind::Body`], never with a silently shorter body. `max_body_size` then limits only
///   [`Body::bytes`](crate::Body::bytes) and `text`. Dropping the body closes the connection
///   (it is not returned to the pool half read). On [`UreqDoer`](crate::UreqDoer), whose reads
///   block a thread, the connection closes, and the thread is freed, only when the server next
///   sends or the exchange's timeout passes: a silent feed dropped with `timeout(None)` holds
///   one blocking thread (of tokio's 512) until its server speaks, so keep a timeout there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ResponseMode {
    /// Read the whole body before returning the response.
    #[default]
    Buffered,
    /// Return the response once its head arrived; the body streams as it is read.
    Streamed,
}

impl ResponseMode {
    /// The mode for `req`: its own extension, else `default`.
    #[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
    pub(crate) fn of(req: &crate::Request, default: ResponseMode) -> ResponseMode {
        req.extensions()
            .get::<ResponseMode>()
            .copied()
            .unwrap_or(default)
    }
}

/// Settings both backends share.
#[derive(Clone, Debug)]
#[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
pub(crate) struct Settings {
    pub(crate) max_body_size: u64,
    pub(crate) max_redirects: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_response_headers: usize,
    pub(crate) response_mode: ResponseMode,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            timeout: Some(DEFAULT_TIMEOUT),
            max_response_headers: DEFAULT_MAX_RESPONSE_HEADERS,
            response_mode: ResponseMode::Buffered,
        }
    }
}

/// Refuses a response head with more header lines than the limit, as [`ErrorKind::TooLarge`].
#[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
pub(crate) fn check_head(
    headers: &http::HeaderMap,
    limit: usize,
    uri: &http::Uri,
) -> Result<(), Error> {
    // `len` counts every value, so a name sent on ten lines counts ten.
    if headers.len() > limit {
        return Err(too_many_headers(limit, uri));
    }
    Ok(())
}

/// The error for a response head over the header-line limit.
#[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
pub(crate) fn too_many_headers(limit: usize, uri: &http::Uri) -> Error {
    Error::from(ErrorKind::TooLarge)
        .with_message(format!(
            "response head is over the {limit}-line header limit"
        ))
        .with_url(uri)
}

/// Frames an empty POST, PUT or PATCH with `Content-Length: 0` when the caller set no framing.
///
/// RFC 9110 section 8.6 asks a client to send a length for a method that defines content, even
/// a zero one; Go and curl do, and some servers answer `411 Length Required` without it.
/// Neither reqwest nor ureq does it on its own, and both backends must send the same thing.
#[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
pub(crate) fn frame_empty_body(
    method: &http::Method,
    headers: &mut http::HeaderMap,
    body_is_empty: bool,
) {
    use http::{Method, header};
    if body_is_empty
        && matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING)
    {
        headers.insert(header::CONTENT_LENGTH, http::HeaderValue::from_static("0"));
    }
}

/// Whether a response to `method` with `status` can carry a body (RFC 9110 section 6.4.1).
///
/// A `Content-Length` on a HEAD, 1xx, 204 or 304 response describes another representation,
/// so it must not trip the body limit.
#[cfg_attr(not(feature = "ureq"), allow(dead_code))]
pub(crate) fn may_have_body(method: &http::Method, status: http::StatusCode) -> bool {
    method != http::Method::HEAD
        && !status.is_informational()
        && status != http::StatusCode::NO_CONTENT
        && status != http::StatusCode::NOT_MODIFIED
}

/// Whether a connect or transport failure of a request to `uri` came from TLS rather than from
/// the network: an I/O error of kind `InvalidData` (how rustls reports a failed handshake
/// through I/O), or a message in the words rustls, OpenSSL and native-tls use. Only `https`
/// requests are judged, so a plain-HTTP server answering garbage is never taken for TLS.
#[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
pub(crate) fn is_tls_failure(uri: &http::Uri, err: &(dyn StdError + 'static)) -> bool {
    // rustls: "invalid peer certificate", "received fatal alert", "received corrupt message",
    // "peer is incompatible", "peer misbehaved"; OpenSSL: "SSL routines", "certificate verify
    // failed". Not a bare "tls": rustls's "peer closed connection without sending TLS
    // close_notify" is a connection cut short, not a failed handshake.
    const WORDS: [&str; 8] = [
        "ssl routines",
        "tls handshake",
        "certificate",
        "handshake",
        "fatal alert",
        "corrupt message",
        "peer is incompatible",
        "peer misbehaved",
    ];
    if !uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    {
        return false;
    }
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return true;
        }
        let text = e.to_string().to_ascii_lowercase();
        if WORDS.iter().any(|word| text.contains(word)) {
            return true;
        }
        cur = e.source();
    }
    false
}

/// The kind of the request body's own error, when one is in `err`'s source chain: a backend's
/// library reports a failed body stream as its own error, with ours inside.
#[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
pub(crate) fn body_error_kind(err: &(dyn StdError + 'static)) -> Option<ErrorKind> {
    std::iter::successors(err.source(), |&e| e.source()).find_map(our_kind)
}

/// The kind of `link` when it is one of our errors, bare or wrapped in an `io::Error`.
pub(crate) fn our_kind(link: &(dyn StdError + 'static)) -> Option<ErrorKind> {
    link.downcast_ref::<Error>().map(Error::kind).or_else(|| {
        // `io::Error::source` skips the error it wraps, so that one is looked at here.
        link.downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Error>())
            .map(Error::kind)
    })
}

/// The longest timeout a backend keeps: 30 years, as tokio does. A longer one (`Duration::MAX`,
/// "as long as it takes") cannot be added to an instant, which both libraries do.
#[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
pub(crate) fn longest(timeout: Option<Duration>) -> Option<Duration> {
    const LONGEST: Duration = Duration::from_secs(86_400 * 365 * 30);
    timeout.map(|t| t.min(LONGEST))
}

/// What an `io::Error`'s kind says on its own: [`ErrorKind::Connect`] for the kinds of a
/// connection that could not be made (meant only while connecting), [`ErrorKind::Timeout`]
/// for a socket timeout (`WouldBlock` is what a read timeout gives on some systems).
#[cfg_attr(not(any(feature = "ureq", feature = "tower")), allow(dead_code))]
pub(crate) fn io_error_kind(io: &std::io::Error) -> Option<ErrorKind> {
    use std::io::ErrorKind as Io;
    match io.kind() {
        Io::ConnectionRefused
        | Io::AddrNotAvailable
        | Io::NetworkUnreachable
        | Io::HostUnreachable
        | Io::NetworkDown => Some(ErrorKind::Connect),
        Io::TimedOut | Io::WouldBlock => Some(ErrorKind::Timeout),
        _ => None,
    }
}

/// The error for a body over `limit`.
#[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
pub(crate) fn too_large(limit: u64, uri: &http::Uri) -> Error {
    Error::from(ErrorKind::TooLarge)
        .with_message(format!("response body is over the {limit}-byte limit"))
        .with_url(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_post_put_and_patch_get_a_zero_length() {
        let framed = |method: &str, body_is_empty: bool, preset: Option<(&str, &str)>| {
            let mut req = http::Request::builder()
                .method(method)
                .uri("http://h.test/");
            if let Some((name, value)) = preset {
                req = req.header(name, value);
            }
            let (mut parts, ()) = req.body(()).unwrap().into_parts();
            frame_empty_body(&parts.method, &mut parts.headers, body_is_empty);
            parts.headers.get(http::header::CONTENT_LENGTH).cloned()
        };
        for method in ["POST", "PUT", "PATCH"] {
            assert_eq!(framed(method, true, None).unwrap(), "0", "{method}");
        }
        for method in ["GET", "HEAD", "DELETE", "OPTIONS"] {
            assert!(framed(method, true, None).is_none(), "{method}");
        }
        assert!(framed("POST", false, None).is_none());
        assert!(framed("POST", true, Some(("transfer-encoding", "chunked"))).is_none());
        assert_eq!(
            framed("POST", true, Some(("content-length", "7"))).unwrap(),
            "7"
        );
    }

    #[test]
    fn only_some_responses_have_a_body() {
        use http::{Method, StatusCode};
        assert!(may_have_body(&Method::GET, StatusCode::OK));
        assert!(may_have_body(&Method::POST, StatusCode::NOT_FOUND));
        assert!(!may_have_body(&Method::HEAD, StatusCode::OK));
        for status in [100, 204, 304] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(!may_have_body(&Method::GET, status), "{status}");
        }
    }

    #[test]
    fn tls_failures_are_told_from_connections_cut_short() {
        let https: http::Uri = "https://h.test/".parse().unwrap();
        let http: http::Uri = "http://h.test/".parse().unwrap();
        let corrupt = std::io::Error::other("received corrupt message of type InvalidContentType");
        assert!(is_tls_failure(&https, &corrupt));
        assert!(!is_tls_failure(&http, &corrupt), "plain HTTP is never TLS");
        let cut = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "peer closed connection without sending TLS close_notify",
        );
        assert!(!is_tls_failure(&https, &cut));
        let cert = std::io::Error::other("invalid peer certificate: UnknownIssuer");
        assert!(is_tls_failure(&https, &cert));
    }
}
