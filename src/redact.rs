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
/// `signature`, `credential`, `auth`, `session`, `jwt` or `assertion` (OAuth's
/// `client_assertion`), plus `sig`, `sid` and `code`. Over-redacting a
/// harmless parameter costs a little clarity in a log; under-redacting leaks a credential.
pub fn is_secret_param(name: &str) -> bool {
    // Runs for every query pair of every logged URL, so it compares bytes in place instead of
    // building a lower-cased copy.
    const CONTAINS: [&[u8]; 10] = [
        b"token",
        b"secret",
        b"passw",
        b"pwd",
        b"signature",
        b"credential",
        b"auth",
        b"session",
        b"jwt",
        b"assertion",
    ];
    let name = name.as_bytes();
    let same =
        |a: &[u8], b: &[u8]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == *y);
    let contains = |needle: &[u8]| name.windows(needle.len()).any(|w| same(w, needle));
    (name.len() >= 3 && same(&name[name.len() - 3..], b"key"))
        || same(name, b"sig")
        || same(name, b"sid")
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
    let n = name.as_str().as_bytes();
    // One pass, dispatched on the first letter of each needle: five `str::contains` cost
    // ~700 instructions a header, and the serve-stale cache asks for every header of a call.
    n.ends_with(b"key")
        || (0..n.len()).any(|i| {
            let rest = &n[i..];
            match rest[0] {
                b'a' => rest.starts_with(b"auth"),
                b't' => rest.starts_with(b"token"),
                b's' => rest.starts_with(b"secret") || rest.starts_with(b"session"),
                b'p' => rest.starts_with(b"password"),
                _ => false,
            }
        })
}

/// A URI as text, without userinfo and with the values of secret query parameters and path
/// parameters (`/app;jsessionid=…`) replaced by [`REDACTED`].
pub fn uri(uri: &http::Uri) -> String {
    uri_with(uri, &is_secret_param)
}

/// Which query parameter names are secret, given their percent-decoded name: Logging's
/// [`is_secret_param`], or a cassette's rules.
pub(crate) type SecretName<'a> = &'a dyn Fn(&str) -> bool;

/// [`uri`], with `secret` saying which parameters are secret.
pub(crate) fn uri_with(uri: &http::Uri, secret: SecretName<'_>) -> String {
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
    out.push_str(&path_with(uri.path(), secret));
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(&query_with(q, secret));
    }
    out
}

/// A path with the values of secret path parameters replaced (`/app;jsessionid=abc/x` keeps
/// `jsessionid` and loses `abc`): servlet containers and others put a session there.
fn path_with<'p>(path: &'p str, secret: SecretName<'_>) -> Cow<'p, str> {
    if !path.contains(';') {
        return Cow::Borrowed(path);
    }
    let mut changed = false;
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| {
            let mut parts = segment.split(';');
            let mut out = parts.next().unwrap_or("").to_owned();
            for param in parts {
                out.push(';');
                match param.split_once('=') {
                    Some((name, value))
                        if value != REDACTED
                            && secret(
                                &percent_encoding::percent_decode_str(name).decode_utf8_lossy(),
                            ) =>
                    {
                        changed = true;
                        out.push_str(name);
                        out.push('=');
                        out.push_str(REDACTED);
                    }
                    _ => out.push_str(param),
                }
            }
            out
        })
        .collect();
    match changed {
        true => Cow::Owned(segments.join("/")),
        false => Cow::Borrowed(path),
    }
}

/// A query string (without the `?`) with the values of secret parameters replaced.
///
/// Pairs are split on `&`. A pair whose name [`is_secret_param`] (after percent-decoding, so
/// `api%5Fkey` and `%61pi_key` are found) keeps its name and loses its whole value, up to the
/// next `&`, even when the value holds `=`, `;` or `#`. Inside any other pair, `;` (the old
/// HTML 4 separator, which some servers still split on) and `#` (a fragment left in the text,
/// which may hold a token, as OAuth's implicit flow does) also start a pair, so `a=1;token=x`
/// and `a=1#access_token=x` lose `x`. A pair with no `=` has no value to hide. Everything
/// else is kept byte for byte, and redacting twice is the same as once.
///
/// ```
/// use http_doer::redact;
///
/// assert_eq!(redact::query("q=rust&api_key=abc"), "q=rust&api_key=REDACTED");
/// assert_eq!(redact::query("q=rust;token=abc"), "q=rust;token=REDACTED");
/// ```
pub fn query(q: &str) -> Cow<'_, str> {
    query_with(q, &is_secret_param)
}

/// [`query`], with `secret` saying which parameters are secret.
pub(crate) fn query_with<'q>(q: &'q str, secret: SecretName<'_>) -> Cow<'q, str> {
    if !q.split('&').any(|pair| has_secret(pair, secret)) {
        return Cow::Borrowed(q);
    }
    let mut out = String::with_capacity(q.len());
    for (i, pair) in q.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        if let Some(name) = secret_name(pair, secret) {
            push_redacted(&mut out, name);
            continue;
        }
        for piece in pair.split_inclusive([';', '#']) {
            let (inner, sep) = match piece.strip_suffix([';', '#']) {
                Some(inner) => (inner, &piece[inner.len()..]),
                None => (piece, ""),
            };
            match secret_name(inner, secret) {
                Some(name) => push_redacted(&mut out, name),
                None => out.push_str(inner),
            }
            out.push_str(sep);
        }
    }
    Cow::Owned(out)
}

/// Whether [`query`] changes the `&`-separated `pair`.
fn has_secret(pair: &str, secret: SecretName<'_>) -> bool {
    secret_name(pair, secret).is_some()
        || pair
            .split([';', '#'])
            .any(|p| secret_name(p, secret).is_some())
}

/// The name of `pair` (`name=value`) if it has a value and the name is secret.
fn secret_name<'p>(pair: &'p str, secret: SecretName<'_>) -> Option<&'p str> {
    let (name, _) = pair.split_once('=')?;
    let hidden = if name.contains('%') {
        secret(&percent_encoding::percent_decode_str(name).decode_utf8_lossy())
    } else {
        secret(name)
    };
    hidden.then_some(name)
}

fn push_redacted(out: &mut String, name: &str) {
    out.push_str(name);
    out.push('=');
    out.push_str(REDACTED);
}

/// Free text (for example another library's error message) with every URL in it redacted as
/// [`uri`] does. A URL that cannot be parsed is replaced whole.
///
/// A URL ends at whitespace or at a character no URL holds (`"`, `<`, `>`, `` ` ``). Quotes
/// and brackets (`'`, `(`, `)`, `[`, `]`) are URL characters, so a secret may hold them; the
/// URL keeps them, except the closers of the openers just before it, so `(https://h.test/p)`
/// stays as it was, and trailing punctuation (`.`, `,`, `)`, ...) unless the last query pair
/// is secret (then it is hidden with the value). Everything before the last `@` of the
/// authority (up to the first `/`, `?`, `#` or whitespace) is userinfo and is dropped,
/// whatever it holds.
///
/// ```
/// use http_doer::redact;
///
/// assert_eq!(
///     redact::text("failed: (https://u:p@api.test/x?token=a'b) at 12:00"),
///     "failed: (https://api.test/x?token=REDACTED) at 12:00",
/// );
/// ```
pub fn text(s: &str) -> Cow<'_, str> {
    text_with(s, &is_secret_param)
}

/// [`text`], with `secret` saying which parameters are secret.
pub(crate) fn text_with<'s>(s: &'s str, secret: SecretName<'_>) -> Cow<'s, str> {
    if !s.contains("://") {
        return Cow::Borrowed(s);
    }
    let is_scheme_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.');
    let ends_url = |c: char| c.is_whitespace() || matches!(c, '"' | '<' | '>' | '`');
    let ends_authority = |c: char| c.is_whitespace() || matches!(c, '/' | '?' | '#');
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find("://") {
        let start = rest[..pos]
            .char_indices()
            .rev()
            .take_while(|&(_, c)| is_scheme_char(c))
            .last()
            .map_or(pos, |(i, _)| i);
        let after = pos + 3;
        let authority_end = rest[after..]
            .find(ends_authority)
            .map_or(rest.len(), |i| after + i);
        let host = rest[after..authority_end]
            .rfind('@')
            .map_or(after, |at| after + at + 1);
        let mut end = rest[host..].find(ends_url).map_or(rest.len(), |i| host + i);
        let closer = |opener: char| match opener {
            '(' => Some(')'),
            '[' => Some(']'),
            '\'' => Some('\''),
            _ => None,
        };
        // The closers of the openers just before the URL, outermost first, as they come at its
        // end: `')` for `('https://...')`.
        let closers: Vec<char> = rest[..start].chars().rev().map_while(closer).collect();
        for c in closers.into_iter().rev() {
            if !rest[host..end].ends_with(c) {
                break;
            }
            end -= 1;
        }
        // Punctuation that ends a sentence or a clause is not part of the URL
        // (`see https://h.test.`), unless it may end a secret value: then it goes with it.
        let tail = &rest[host..end];
        let last_pair = tail
            .find(['?', '#'])
            .map(|i| tail[i + 1..].rsplit('&').next().unwrap_or_default());
        if !last_pair.is_some_and(|pair| has_secret(pair, secret)) {
            let punctuation = ['.', ',', ';', ':', '!', '?', ')', ']', '\''];
            end = host + tail.trim_end_matches(punctuation).len();
        }
        out.push_str(&rest[..start]);
        let candidate = format!("{}{}", &rest[start..after], &rest[host..end]);
        match candidate.parse::<http::Uri>() {
            Ok(u) if u.host().is_some() => out.push_str(&uri_with(&u, secret)),
            _ => out.push_str("[url redacted]"),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A header value that holds a URL (`Location`), a URL in prose (`Link: <https://...>`) or a
/// path and query (`Content-Location`), with userinfo dropped and secret query values replaced
/// by the rules of `secret`; any other value as it is.
pub(crate) fn header_value_with<'v>(text: &'v str, secret: SecretName<'_>) -> Cow<'v, str> {
    match text.parse::<http::Uri>() {
        Ok(uri) if uri.scheme().is_some() => match uri_with(&uri, secret) {
            url if url == text => Cow::Borrowed(text),
            url => Cow::Owned(url),
        },
        _ if text.contains("://") => text_with(text, secret),
        _ => {
            let looks_like_url = text.starts_with('/');
            match text.split_once('?') {
                Some((before, q)) if looks_like_url && !text.contains(char::is_whitespace) => {
                    match query_with(q, secret) {
                        Cow::Borrowed(_) => Cow::Borrowed(text),
                        Cow::Owned(q) => Cow::Owned(format!("{before}?{q}")),
                    }
                }
                _ => Cow::Borrowed(text),
            }
        }
    }
}

/// How a body is redacted, as Logging shows it and a cassette records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyShape {
    /// `application/x-www-form-urlencoded`, or an untyped body that looks like one: the query
    /// rules apply as they are.
    Form,
    /// JSON (`application/json`, `+json`), or an untyped body that looks like it: secret
    /// members are redacted at any depth.
    Json,
    /// Anything else: free text, or binary.
    Text,
}

/// The shape of a body of media type `media` (see [`media_type`]) whose text starts with
/// `text`; `more_whitespace` says whether bytes past `text`, not seen here, hold whitespace.
///
/// Callers often omit `Content-Type`, so a body is also judged by its look: a missing or
/// generic type must not turn redaction off.
pub(crate) fn body_shape(media: &str, text: &str, more_whitespace: bool) -> BodyShape {
    let untyped = media.is_empty() || media == "text/plain" || media == "application/octet-stream";
    let trimmed = text.trim_start();
    let looks_json = untyped && (trimmed.starts_with('{') || trimmed.starts_with('['));
    let whitespace = more_whitespace || text.contains(char::is_whitespace);
    let looks_form = untyped && !whitespace && text.contains('=');
    if media == "application/x-www-form-urlencoded" || looks_form {
        BodyShape::Form
    } else if media == "application/json" || media.ends_with("+json") || looks_json {
        BodyShape::Json
    } else {
        BodyShape::Text
    }
}

/// The media type of a `Content-Type`, lowercased, without parameters (`""` when there is
/// none).
pub(crate) fn media_type(headers: &http::HeaderMap) -> String {
    let value = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Replaces with [`REDACTED`] the value of every object member of `value`, at any depth,
/// whose name `secret` says is secret; whether anything changed.
#[cfg(feature = "json")]
pub(crate) fn json_members(value: &mut serde_json::Value, secret: &dyn Fn(&str) -> bool) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let mut changed = false;
            for (name, member) in map.iter_mut() {
                if secret(name) {
                    let redacted = serde_json::Value::String(REDACTED.to_owned());
                    changed |= *member != redacted;
                    *member = redacted;
                } else {
                    changed |= json_members(member, secret);
                }
            }
            changed
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| json_members(item, secret) | changed),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
            "jwt",
            "id_jwt",
            "client_assertion",
            "sid",
        ] {
            assert!(is_secret_param(name), "{name}");
        }
        for name in ["page", "limit", "q", "sort", "id", "user", "side", "sider"] {
            assert!(!is_secret_param(name), "{name}");
        }
    }

    #[test]
    fn secret_path_parameters() {
        let shown = |u: &str| uri(&u.parse::<http::Uri>().unwrap());
        assert_eq!(
            shown("https://a.test/app;jsessionid=ABC123/items;v=2?page=1"),
            "https://a.test/app;jsessionid=REDACTED/items;v=2?page=1"
        );
        assert_eq!(
            shown("https://a.test/x;token=t;mode=ro/y"),
            "https://a.test/x;token=REDACTED;mode=ro/y"
        );
        assert_eq!(shown("https://a.test/a;b=1/c"), "https://a.test/a;b=1/c");
        let once = shown("https://a.test/app;JSESSIONID=abc");
        assert_eq!(once, "https://a.test/app;JSESSIONID=REDACTED");
        assert_eq!(shown(&once), once, "redacting twice is the same as once");
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

    /// The odd forms a query takes in the wild.
    #[test]
    fn odd_query_forms() {
        let cases = [
            // No `=`: no value to hide. Empty names and values.
            ("token", "token"),
            ("=S3CR3T&a=", "=S3CR3T&a="),
            ("token=", "token=REDACTED"),
            ("&&token=S3CR3T&", "&&token=REDACTED&"),
            // `;` as a separator, before and after a secret.
            ("a=1;token=S3CR3T", "a=1;token=REDACTED"),
            ("a=1;token=S3CR3T;b=2", "a=1;token=REDACTED;b=2"),
            ("flag;sig=S3CR3T", "flag;sig=REDACTED"),
            // A secret's value runs to the next `&`, whatever it holds.
            ("token=S3CR3T;b=2&c=3", "token=REDACTED&c=3"),
            ("token=S3CR3T=x=y&c=3", "token=REDACTED&c=3"),
            ("token=a#S3CR3T", "token=REDACTED"),
            // `+` stays a byte of the name or value.
            ("q=a+b&api+key=S3CR3T", "q=a+b&api+key=REDACTED"),
            // Repeated names: every one.
            (
                "key=S3CR3T1&key=S3CR3T2&Key=S3CR3T3",
                "key=REDACTED&key=REDACTED&Key=REDACTED",
            ),
            // Percent-encoded names.
            ("api%5Fkey=S3CR3T", "api%5Fkey=REDACTED"),
            ("%61pi_key=S3CR3T", "%61pi_key=REDACTED"),
            ("%74%6F%6b%65%6E=S3CR3T", "%74%6F%6b%65%6E=REDACTED"),
            ("api%2Dkey=S3CR3T", "api%2Dkey=REDACTED"),
            ("bad%zzkey=S3CR3T", "bad%zzkey=REDACTED"),
            ("q=%E9&key%FF=x", "q=%E9&key%FF=x"),
            // A fragment left in the text, as OAuth's implicit flow returns a token.
            (
                "state=1#access_token=S3CR3T&x=1",
                "state=1#access_token=REDACTED&x=1",
            ),
            (
                "state=1#access_token=S3CR3T",
                "state=1#access_token=REDACTED",
            ),
            ("q=C#", "q=C#"),
        ];
        for (q, want) in cases {
            assert_eq!(query(q), want, "{q:?}");
        }
    }

    #[test]
    fn quotes_and_brackets_in_prose() {
        let cases = [
            // A quote inside a secret value or a password is part of it.
            (
                "see http://h.test/?token=ab'cd now",
                "see http://h.test/?token=REDACTED now",
            ),
            ("at http://u:pa'ss@h.test/x", "at http://h.test/x"),
            ("at http://u:pa(s)s@h.test/x", "at http://h.test/x"),
            ("at http://u:pa\"ss@h.test/x", "at http://h.test/x"),
            // Openers before a URL take their closers back.
            ("(http://h.test)", "(http://h.test/)"),
            ("('http://h.test/?q=1')", "('http://h.test/?q=1')"),
            (
                "('http://h.test/?key=a'b')",
                "('http://h.test/?key=REDACTED')",
            ),
            ("[http://[::1]:8/]", "[http://[::1]:8/]"),
            // Without an opener, quotes and brackets stay in the URL, and so in the output.
            ("it's http://h.test/x's page", "it's http://h.test/x's page"),
            ("see http://h.test/p).", "see http://h.test/p)."),
            // Trailing punctuation is prose, unless a secret may end with it.
            ("(see http://h.test) now", "(see http://h.test/) now"),
            ("ends http://h.test.", "ends http://h.test/."),
            (
                "at http://h.test:8080, then",
                "at http://h.test:8080/, then",
            ),
            ("x http://h.test/?q=1).", "x http://h.test/?q=1)."),
            (
                "x http://h.test/?token=ab).",
                "x http://h.test/?token=REDACTED",
            ),
            ("x http://h.test/#access_token=ab).", "x http://h.test/"),
        ];
        for (prose, want) in cases {
            assert_eq!(text(prose), want, "{prose:?}");
        }
    }

    /// What a reader of the output could take for a secret value: every piece between `&`,
    /// `;` and `#` that has a value and a secret name (percent-decoded). None may survive.
    fn leaked(out: &str) -> Option<&str> {
        out.split(['&', ';', '#']).find(|piece| {
            piece.split_once('=').is_some_and(|(name, value)| {
                let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
                is_secret_param(&name) && value != REDACTED
            })
        })
    }

    /// Secret names of the documented list, in any case, with `-` or `_`, some bytes
    /// percent-encoded (in either case of hex digit).
    fn secret_name() -> impl Strategy<Value = String> {
        let names = [
            "api_key",
            "apikey",
            "key",
            "access_key",
            "x-api-key",
            "token",
            "access_token",
            "refresh_token",
            "id_token",
            "secret",
            "client_secret",
            "password",
            "passwd",
            "pwd",
            "signature",
            "x-amz-signature",
            "x-amz-credential",
            "credentials",
            "auth",
            "oauth_verifier",
            "session",
            "session_id",
            "sig",
            "code",
        ];
        (
            proptest::sample::select(names.to_vec()),
            proptest::collection::vec((any::<bool>(), any::<bool>(), 0..6u8), 32),
        )
            .prop_map(|(name, coins)| {
                let mut out = String::new();
                for (c, (upper, swap, encode)) in name.chars().zip(coins) {
                    let c = match c {
                        '-' | '_' if swap => ['-', '_'][usize::from(c == '-')],
                        c if upper => c.to_ascii_uppercase(),
                        c => c,
                    };
                    match encode {
                        0 => out.push_str(&format!("%{:02X}", c as u32)),
                        1 => out.push_str(&format!("%{:02x}", c as u32)),
                        _ => out.push(c),
                    }
                }
                out
            })
    }

    /// Names of the pairs that are not secret, in any case, and the empty name.
    fn plain_name() -> impl Strategy<Value = String> {
        let names = [
            "page", "limit", "q", "sort", "id", "user", "lang", "format", "",
        ];
        (proptest::sample::select(names.to_vec()), any::<bool>()).prop_map(|(n, upper)| {
            if upper {
                n.to_ascii_uppercase()
            } else {
                n.to_owned()
            }
        })
    }

    /// A query pair: a secret one with a distinctive value (`S3CR3T...`, sometimes with `=`
    /// in it), or a plain one with or without a value.
    #[derive(Clone, Debug)]
    struct Pair {
        name: String,
        value: Option<String>,
        secret: bool,
    }

    impl Pair {
        fn text(&self) -> String {
            match &self.value {
                Some(v) => format!("{}={v}", self.name),
                None => self.name.clone(),
            }
        }
    }

    fn pair() -> impl Strategy<Value = Pair> {
        prop_oneof![
            (
                secret_name(),
                "S3CR3T[A-Za-z0-9'()!*~.]{1,8}(=[A-Za-z0-9]{0,4})?"
            )
                .prop_map(|(name, value)| Pair {
                    name,
                    value: Some(value),
                    secret: true
                }),
            (
                plain_name(),
                proptest::option::of("[a-z0-9._~+-]{0,8}|%2[0-9a-f]")
            )
                .prop_map(|(name, value)| Pair {
                    name,
                    value,
                    secret: false
                }),
        ]
    }

    /// A user and, maybe, a password.
    type UserInfo = Option<(String, Option<String>)>;

    /// Userinfo: a distinctive user and, maybe, password, with sub-delimiters and
    /// percent-encoded bytes.
    fn userinfo() -> impl Strategy<Value = UserInfo> {
        proptest::option::of((
            "U5ER([A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-F]{2}){0,8}",
            proptest::option::of("PA55W0RD([A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-F]{2}){0,8}"),
        ))
    }

    /// `scheme://[user[:password]@]host[:port]/path` and the pairs of its query.
    fn url() -> impl Strategy<Value = (String, UserInfo, Vec<Pair>)> {
        (
            prop_oneof![Just("http"), Just("https")],
            "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}",
            proptest::option::of(any::<u16>()),
            "(/[a-z0-9._~-]{0,8}){1,3}",
            userinfo(),
            proptest::collection::vec(pair(), 0..8),
        )
            .prop_map(|(scheme, host, port, path, userinfo, pairs)| {
                let mut base = format!("{scheme}://{host}");
                if let Some(port) = port {
                    base.push_str(&format!(":{port}"));
                }
                base.push_str(&path);
                (base, userinfo, pairs)
            })
    }

    fn with_userinfo(base: &str, userinfo: &UserInfo) -> String {
        let Some((user, password)) = userinfo else {
            return base.to_owned();
        };
        let (scheme, rest) = base.split_once("://").unwrap();
        match password {
            Some(pw) => format!("{scheme}://{user}:{pw}@{rest}"),
            None => format!("{scheme}://{user}@{rest}"),
        }
    }

    fn assert_no_leak(out: &str, userinfo: &UserInfo, pairs: &[Pair]) {
        if let Some((user, password)) = userinfo {
            assert!(!out.contains(user.as_str()), "user in {out}");
            if let Some(pw) = password {
                assert!(!out.contains(pw.as_str()), "password in {out}");
            }
            assert!(!out.contains("U5ER") && !out.contains("PA55W0RD"), "{out}");
        }
        for p in pairs.iter().filter(|p| p.secret) {
            let value = p.value.as_deref().unwrap();
            assert!(!out.contains(value), "{value} in {out}");
        }
        assert!(!out.contains("S3CR3T"), "{out}");
    }

    /// A path segment: plain, or with path parameters (`seg;name=value`), secret ones holding
    /// a distinctive value.
    fn path_segment() -> impl Strategy<Value = (String, bool)> {
        let param = prop_oneof![
            (secret_name(), "S3CR3T[A-Za-z0-9]{1,8}").prop_map(|(n, v)| (format!("{n}={v}"), true)),
            (plain_name(), "[a-z0-9]{0,6}").prop_map(|(n, v)| (format!("{n}={v}"), false)),
            "[a-z]{0,4}".prop_map(|flag| (flag, false)),
        ];
        ("[a-z0-9._-]{0,6}", proptest::collection::vec(param, 0..3)).prop_map(|(head, params)| {
            let secret = params.iter().any(|(_, s)| *s);
            let text = std::iter::once(head)
                .chain(params.into_iter().map(|(p, _)| p))
                .collect::<Vec<_>>()
                .join(";");
            (text, secret)
        })
    }

    proptest! {
        /// No secret path parameter's value survives, plain ones are kept byte for byte, and
        /// redacting twice is the same as once.
        #[test]
        fn secret_path_parameters_never_survive(
            segments in proptest::collection::vec(path_segment(), 1..5),
        ) {
            let path: String = segments.iter().map(|(s, _)| format!("/{s}")).collect();
            let Ok(parsed) = format!("https://a.test{path}").parse::<http::Uri>() else {
                return Ok(());
            };
            let shown = uri(&parsed);
            prop_assert!(!shown.contains("S3CR3T"), "{} -> {}", path, shown);
            if !segments.iter().any(|(_, secret)| *secret) {
                prop_assert_eq!(&shown, &format!("https://a.test{path}"));
            }
            let again = uri(&shown.parse::<http::Uri>().unwrap());
            prop_assert_eq!(again, shown);
        }

        /// Any path a `Uri` holds is shown without a panic.
        #[test]
        fn any_path_is_shown(path in "/[ -~]{0,40}") {
            if let Ok(parsed) = format!("https://a.test{path}").parse::<http::Uri>() {
                let _ = uri(&parsed);
            }
        }

        /// No user, password or secret value survives `uri`, and the rest of the URL is
        /// kept as it was: with `&` between pairs, the output is exactly the input with each
        /// secret value replaced.
        #[test]
        fn uri_hides_every_secret((base, userinfo, pairs) in url()) {
            let q: Vec<String> = pairs.iter().map(Pair::text).collect();
            let mut text = with_userinfo(&base, &userinfo);
            if !pairs.is_empty() {
                text.push('?');
                text.push_str(&q.join("&"));
            }
            let parsed: http::Uri = match text.parse() {
                Ok(parsed) => parsed,
                Err(e) => panic!("{text:?}: {e}"),
            };
            let out = uri(&parsed);
            assert_no_leak(&out, &userinfo, &pairs);
            prop_assert_eq!(leaked(&out), None);

            let expected_query: Vec<String> = pairs
                .iter()
                .map(|p| if p.secret { format!("{}={REDACTED}", p.name) } else { p.text() })
                .collect();
            let mut expected = base.clone();
            if !pairs.is_empty() {
                expected.push('?');
                expected.push_str(&expected_query.join("&"));
            }
            prop_assert_eq!(out, expected);
        }

        /// With `;` as well as `&` between pairs: no secret survives, every plain pair before
        /// the first secret of its `&` group is kept, and redacting again changes nothing.
        #[test]
        fn semicolons_and_fragments_hide_secrets_too(
            pairs in proptest::collection::vec(pair(), 1..8),
            seps in proptest::collection::vec(
                prop_oneof![Just('&'), Just(';'), Just('#')], 8),
        ) {
            let mut q = String::new();
            for (i, p) in pairs.iter().enumerate() {
                if i > 0 {
                    q.push(seps[i]);
                }
                q.push_str(&p.text());
            }
            let out = query(&q);
            assert_no_leak(&out, &None, &pairs);
            prop_assert_eq!(leaked(&out), None);
            prop_assert_eq!(query(&out), out.clone());
            let mut secret_seen = false;
            for (i, p) in pairs.iter().enumerate() {
                if i > 0 && seps[i] == '&' {
                    secret_seen = false;
                }
                secret_seen |= p.secret;
                if !secret_seen {
                    prop_assert!(out.contains(&p.text()), "{:?} lost from {}", p.text(), out);
                }
            }
        }

        /// Any text: no panic, no secret left (by the rule of `leaked`), idempotent, and
        /// borrowed only when nothing changed.
        #[test]
        fn query_is_total_and_idempotent(
            q in prop_oneof![
                any::<String>(),
                proptest::collection::vec(
                    prop_oneof![
                        Just("token"), Just("api%5Fkey"), Just("%61pi_key"), Just("KEY"),
                        Just("sig"), Just("="), Just("&"), Just(";"), Just("#"), Just("%"),
                        Just("%6"), Just("%ff"), Just("+"), Just("S3CR3T"), Just("a"),
                        Just("\u{e9}"), Just("REDACTED"),
                    ],
                    0..16,
                )
                .prop_map(|p| p.concat()),
            ],
        ) {
            let once = query(&q);
            prop_assert_eq!(leaked(&once), None, "{}", once);
            if matches!(once, Cow::Borrowed(_)) {
                prop_assert_eq!(&once, &q);
            }
            prop_assert_eq!(query(&once), once.clone());
        }

        /// `is_secret_param` ignores ASCII case and does not tell `-` from `_`.
        #[test]
        fn secret_param_ignores_case_and_separators(name in "[A-Za-z_-]{0,12}|\\PC{0,12}") {
            let want = is_secret_param(&name);
            prop_assert_eq!(is_secret_param(&name.to_ascii_uppercase()), want);
            prop_assert_eq!(is_secret_param(&name.to_ascii_lowercase()), want);
            prop_assert_eq!(is_secret_param(&name.replace('-', "_")), want);
            prop_assert_eq!(is_secret_param(&name.replace('_', "-")), want);
        }

        /// Every documented secret name is found in any case and with either separator.
        #[test]
        fn documented_names_are_secret(name in secret_name()) {
            let decoded = percent_encoding::percent_decode_str(&name).decode_utf8_lossy();
            prop_assert!(is_secret_param(&decoded), "{}", decoded);
        }

        /// URLs inside free text are redacted as `uri` does; any text is safe to pass.
        #[test]
        fn text_hides_urls_in_prose(
            (base, userinfo, pairs) in url(),
            before in "[a-z ]{0,10}",
            after in "([ )\"'][a-z ]{0,10})?",
            noise in any::<String>(),
        ) {
            let q: Vec<String> = pairs.iter().map(Pair::text).collect();
            let mut link = with_userinfo(&base, &userinfo);
            if !pairs.is_empty() {
                link.push('?');
                link.push_str(&q.join("&"));
            }
            let prose = format!("{before} {link}{after}");
            let out = text(&prose);
            assert_no_leak(&out, &userinfo, &pairs);
            let _ = text(&noise);
        }
    }
}
