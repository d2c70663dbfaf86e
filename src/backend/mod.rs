//! The real backends, and what they share: URL checks, the body limit, redirects.
//!
//! Both backends switch their library's own redirect handling off and use `redirect`, so
//! they follow redirects the same way and strip credentials the same way.

use std::time::Duration;

use crate::{Error, ErrorKind};

#[cfg(feature = "reqwest")]
pub(crate) mod reqwest;
#[cfg(feature = "ureq")]
pub(crate) mod ureq;

#[cfg(any(feature = "reqwest", feature = "ureq"))]
pub(crate) mod redirect;

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

/// Settings both backends share.
#[derive(Clone, Debug)]
#[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
pub(crate) struct Settings {
    pub(crate) max_body_size: u64,
    pub(crate) max_redirects: usize,
    pub(crate) timeout: Option<Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            timeout: Some(DEFAULT_TIMEOUT),
        }
    }
}

/// Refuses what no backend can send: a URL without an http(s) scheme or without a host.
#[cfg_attr(not(any(feature = "reqwest", feature = "ureq")), allow(dead_code))]
pub(crate) fn check_uri(uri: &http::Uri) -> Result<(), Error> {
    let problem = match (uri.scheme_str(), uri.host()) {
        (None, _) => "URL is relative: it needs a scheme and a host",
        (Some(s), _) if !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https") => {
            "URL scheme must be http or https"
        }
        (_, None) | (_, Some("")) => "URL has no host",
        _ => return Ok(()),
    };
    Err(Error::from(ErrorKind::InvalidRequest)
        .with_message(problem)
        .with_url(uri))
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
    fn check_uri_refuses_what_cannot_be_sent() {
        for bad in ["/relative", "ftp://h.test/x", "mailto:x@y.test"] {
            let uri: http::Uri = bad.parse().unwrap();
            assert_eq!(
                check_uri(&uri).unwrap_err().kind(),
                ErrorKind::InvalidRequest,
                "{bad}"
            );
        }
        for good in ["http://h.test/", "HTTPS://h.test:8443/x?y"] {
            check_uri(&good.parse().unwrap()).unwrap();
        }
    }
}
