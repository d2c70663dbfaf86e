//! Which circuit a request belongs to.

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
    let mut key = String::new();
    write_host_key(uri, &mut key);
    key
}

/// Writes [`host_key`] of `uri` to `out`.
///
/// Works on the bytes of the authority, which `http` has already validated (ASCII, at most
/// one port): its own `host()` and `port_u16()` parse it again on every call and cost several
/// times more than the rest of a closed-state call.
fn write_host_key(uri: &http::Uri, out: &mut String) {
    let Some(authority) = uri.authority() else {
        return;
    };
    let raw = authority.as_str();
    let host_port = match raw.bytes().rposition(|b| b == b'@') {
        Some(at) => &raw[at + 1..],
        None => raw,
    };
    // The port follows the last ':' unless that ':' is inside an IPv6 literal.
    let (host, port) = match host_port.bytes().rposition(|b| b == b':') {
        Some(at) if !host_port[at..].contains(']') => (&host_port[..at], &host_port[at + 1..]),
        _ => (host_port, ""),
    };
    if host.is_empty() {
        return;
    }
    let scheme = uri.scheme_str().unwrap_or("");
    push_lower(out, scheme);
    out.push_str("://");
    push_lower(out, host);
    let Some(port) = parse_port(port) else {
        return;
    };
    let default = if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else {
        None
    };
    if default != Some(port) {
        out.push(':');
        // By hand: the formatting machinery costs more than the rest of the key.
        let mut digits = [0u8; 5];
        let mut n = port;
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend(digits[at..].iter().map(|&d| char::from(d)));
    }
}

/// A port's digits as a number (`080` is 80); `None` when there is no port.
fn parse_port(digits: &str) -> Option<u16> {
    if digits.is_empty() {
        return None;
    }
    digits.bytes().try_fold(0u16, |n, b| {
        b.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u16::from(b - b'0')))
            .flatten()
    })
}

fn push_lower(out: &mut String, s: &str) {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        out.extend(s.chars().map(|c| c.to_ascii_lowercase()));
    } else {
        out.push_str(s);
    }
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
    fn odd_but_valid_ports() {
        assert_eq!(key("http://h.test:080/"), "http://h.test");
        assert_eq!(key("http://h.test:0/"), "http://h.test:0");
        assert_eq!(key("http://h.test:/"), "http://h.test");
        assert_eq!(key("https://[::1]:443/"), "https://[::1]");
        assert_eq!(key("https://[::1]/"), "https://[::1]");
        assert_eq!(key("ftp://h.test:21/"), "ftp://h.test:21");
        assert_eq!(
            key("http://u:p@h.test:8080@x/"),
            key("http://h.test:8080@x/")
        );
    }

    #[test]
    fn relative_uri_has_the_empty_key() {
        assert_eq!(key("/only/a/path"), "");
    }
}
