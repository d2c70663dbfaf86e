//! Which circuit a request belongs to.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::Request;

/// A function that names the circuit of a request; see [`Breaker::key_by`](super::Breaker::key_by).
pub(crate) type KeyFn = Arc<dyn Fn(&Request) -> String + Send + Sync>;

/// The default circuit key of a URI: its origin, `scheme://host[:port]`, in lower case.
///
/// Userinfo is left out (it is a credential and keys appear in logs), and a port equal to the
/// scheme's default is dropped, so `http://API.test:80/a` and `http://api.test/b` share one
/// circuit. A URI without a host (a relative one) gets the empty key.
///
/// ```
/// use http_doer::breaker::host_key;
///
/// let uri: http::Uri = "HTTPS://user:pw@Api.Test:443/v1?x=1".parse().unwrap();
/// assert_eq!(host_key(&uri), "https://api.test");
/// let uri: http::Uri = "http://api.test:8080/".parse().unwrap();
/// assert_eq!(host_key(&uri), "http://api.test:8080");
/// ```
pub fn host_key(uri: &http::Uri) -> String {
    let Some(host) = uri.host() else {
        return String::new();
    };
    let scheme = uri.scheme_str().unwrap_or("");
    let mut key = String::with_capacity(scheme.len() + 3 + host.len() + 6);
    for c in scheme.chars() {
        key.push(c.to_ascii_lowercase());
    }
    key.push_str("://");
    for c in host.chars() {
        key.push(c.to_ascii_lowercase());
    }
    if let Some(port) = uri.port_u16() {
        let default = if scheme.eq_ignore_ascii_case("http") {
            Some(80)
        } else if scheme.eq_ignore_ascii_case("https") {
            Some(443)
        } else {
            None
        };
        if default != Some(port) {
            // Writing to a String cannot fail.
            let _ = write!(key, ":{port}");
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> String {
        host_key(&s.parse().unwrap())
    }

    #[test]
    fn origin_is_lower_case_without_userinfo_path_or_default_port() {
        assert_eq!(
            key("HTTP://Alice:secret@Example.TEST:80/p?q=1"),
            "http://example.test"
        );
        assert_eq!(key("https://h.test:443"), "https://h.test");
        assert_eq!(key("https://h.test:80/"), "https://h.test:80");
        assert_eq!(key("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080");
        assert_eq!(key("http://[::1]:9/"), "http://[::1]:9");
    }

    #[test]
    fn schemes_and_ports_make_different_circuits() {
        assert_ne!(key("http://h.test/"), key("https://h.test/"));
        assert_ne!(key("http://h.test:1/"), key("http://h.test:2/"));
    }

    #[test]
    fn relative_uri_has_the_empty_key() {
        assert_eq!(key("/only/a/path"), "");
    }
}
