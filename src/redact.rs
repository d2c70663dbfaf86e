//! Redaction of secrets in URLs, headers and free text.
//!
//! Every place where http-doer prints a request (errors, logs) goes through these functions, and
//! they are public so that custom logging can use the same rules.
//!
//! ```
//! use http_doer::redact;
//!
//! let uri: http::Uri = "https://me:pw@api.test/items?api_key=abc&limit=10".parse().unwrap();
//! assert_eq!(redact::uri(&uri), "https://api.test/items?api_key=REDACTED&limit=10");
//! assert!(redact::is_secret_header(&http::header::AUTHORIZATION));
//! ```

use std::borrow::Cow;

use http::HeaderName;

/// What replaces a secret value.
pub const REDACTED: &str = "REDACTED";

/// Whether a query parameter's value should never be printed.
///
/// Case-insensitive, `-` and `_` alike. Matches `key` and any name ending in `key` (`api_key`,
/// `apikey`, `access_key`), and any name containing `token`, `secret`, `passw`, `pwd`,
/// `signature`, `credential`, `auth` or `session`, plus `sig` and `code`. Over-redacting a
/// harmless parameter costs a little clarity in a log; under-redacting leaks a credential.
pub fn is_secret_param(name: &str) -> bool {
    // Runs for every query pair of every logged URL, so it compares bytes in place instead of
    // building a lower-cased copy.
    const CONTAINS: [&[u8]; 8] = [
        b"token",
        b"secret",
        b"passw",
        b"pwd",
        b"signature",
        b"credential",
        b"auth",
        b"session",
    ];
    let name = name.as_bytes();
    let same =
        |a: &[u8], b: &[u8]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == *y);
    let contains = |needle: &[u8]| name.windows(needle.len()).any(|w| same(w, needle));
    (name.len() >= 3 && same(&name[name.len() - 3..], b"key"))
        || same(name, b"sig")
        || same(name, b"code")
        || CONTAINS.iter().any(|needle| contains(needle))
}

/// ASCII lower case, with `-` folded into `_`.
fn fold(b: u8) -> u8 {
    if b == b'-' {
        b'_'
    } else {
        b.to_ascii_lowercase()
    }
}

/// Whether a header's value should never be printed.
///
/// `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie`, any header whose name ends
/// in `-key` or `key` (`X-Api-Key`, `Ocp-Apim-Subscription-Key`, `X-Functions-Key`), and any
/// whose name contains `auth`, `token`, `secret`, `password` or `session` (`X-Auth-Token`,
/// `X-Authorization`, `X-Amz-Security-Token`, ...).
pub fn is_secret_header(name: &HeaderName) -> bool {
    use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, SET_COOKIE};
    if [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE, SET_COOKIE].contains(name) {
        return true;
    }
    // Header names are already lower-case in `http`.
    let n = name.as_str();
    n.ends_with("key")
        || ["auth", "token", "secret", "password", "session"]
            .iter()
            .any(|needle| n.contains(needle))
}

/// A URI as text, without userinfo and with secret query values replaced by [`REDACTED`].
pub fn uri(uri: &http::Uri) -> String {
    let mut out = String::new();
    if let Some(scheme) = uri.scheme_str() {
        out.push_str(scheme);
        out.push_str("://");
    }
    if let Some(host) = uri.host() {
        out.push_str(host);
        if let Some(port) = uri.port() {
            out.push(':');
            out.push_str(port.as_str());
        }
    }
    out.push_str(uri.path());
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(&query(q));
    }
    out
}

/// A query string (without the `?`) with the values of secret parameters replaced.
pub fn query(q: &str) -> Cow<'_, str> {
    let secret = |pair: &str| match pair.split_once('=') {
        Some((name, _)) if name.contains('%') => {
            is_secret_param(&percent_encoding::percent_decode_str(name).decode_utf8_lossy())
        }
        Some((name, _)) => is_secret_param(name),
        None => false,
    };
    if !q.split('&').any(secret) {
        return Cow::Borrowed(q);
    }
    let parts: Vec<String> = q
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(pair) => format!("{name}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect();
    Cow::Owned(parts.join("&"))
}

/// Free text (for example another library's error message) with every URL in it redacted as
/// [`uri`] does. A URL that cannot be parsed is replaced whole.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.contains("://") {
        return Cow::Borrowed(s);
    }
    let is_scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    let ends_url =
        |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '(' | ')' | '`');
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("://") {
        let start = rest[..pos]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_scheme_char(c))
            .last()
            .map_or(pos, |(i, _)| i);
        let end = rest[pos..].find(ends_url).map_or(rest.len(), |i| pos + i);
        out.push_str(&rest[..start]);
        let candidate = &rest[start..end];
        match candidate.parse::<http::Uri>() {
            Ok(u) if u.host().is_some() => out.push_str(&uri(&u)),
            _ => out.push_str("[url redacted]"),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_params() {
        for name in [
            "api_key",
            "API-KEY",
            "apikey",
            "key",
            "token",
            "access_token",
            "refresh_token",
            "secret",
            "client_secret",
            "password",
            "passwd",
            "signature",
            "X-Amz-Signature",
            "X-Amz-Credential",
            "sig",
            "auth",
            "session_id",
            "code",
        ] {
            assert!(is_secret_param(name), "{name}");
        }
        for name in ["page", "limit", "q", "sort", "id", "user"] {
            assert!(!is_secret_param(name), "{name}");
        }
    }

    #[test]
    fn secret_headers() {
        for name in [
            "authorization",
            "proxy-authorization",
            "cookie",
            "set-cookie",
            "x-api-key",
            "x-auth-token",
            "x-amz-security-token",
            "x-session-id",
            "x-auth-key",
            "ocp-apim-subscription-key",
            "x-functions-key",
            "x-authorization",
        ] {
            assert!(is_secret_header(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["content-type", "accept", "user-agent", "x-request-id"] {
            assert!(!is_secret_header(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn uri_drops_userinfo_and_masks_values() {
        let u: http::Uri = "http://u:p@h.test:8080/a/b?x=1&token=t&%61pi_key=z&flag"
            .parse()
            .unwrap();
        assert_eq!(
            uri(&u),
            "http://h.test:8080/a/b?x=1&token=REDACTED&%61pi_key=REDACTED&flag"
        );
        let plain: http::Uri = "/only/path?q=1".parse().unwrap();
        assert_eq!(uri(&plain), "/only/path?q=1");
    }

    #[test]
    fn query_without_secrets_is_borrowed() {
        assert!(matches!(query("a=1&b=2"), Cow::Borrowed(_)));
    }

    #[test]
    fn text_redacts_embedded_urls() {
        let s = "error for url (https://a:b@h.test/p?secret=x) and http://[bad";
        let r = text(s);
        assert_eq!(
            r,
            "error for url (https://h.test/p?secret=REDACTED) and [url redacted]"
        );
        assert_eq!(text("no url here"), "no url here");
    }
}
