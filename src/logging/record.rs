//! [`Record`]: one exchange as a custom sink sees it, and the redacted views it holds.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method, StatusCode};
use tracing::Level;

use super::StreamedBody;
use crate::redact::BodyShape;
use crate::{Body, Error, redact};

/// One exchange, as a [`Logging`](super::Logging) sink receives it.
///
/// A sink gets one record per exchange, and a second one for a streamed response, when its
/// body ends: that one has [`streamed`](Self::streamed) set to how it ended, the bytes read
/// in `response_bytes`, the body's error (if it failed) in `error`, and the preview in
/// `response_body` (see [`Logging`](super::Logging#bodies-by-kind)).
///
/// Everything in it is already safe to print: the URL is redacted, [`Error`]'s `Display` and
/// `Debug` are redacted, header values go through a redacting view ([`Headers`]), and bodies are
/// rendered as [`Logging::bodies`](super::Logging::bodies) describes.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Record<'a> {
    /// Wall-clock time at which the exchange started.
    pub time: SystemTime,
    /// The level the exchange is logged at: the success or the failure level.
    pub level: Level,
    /// The request method.
    pub method: &'a Method,
    /// The request URL, redacted ([`redact::uri`]).
    pub url: &'a str,
    /// The number of the attempt that produced this outcome, when the layers below told (see
    /// [`Logging`](super::Logging#attempt-numbers)).
    pub attempt: Option<u32>,
    /// The response status, when there is a response.
    pub status: Option<StatusCode>,
    /// The error, when there is no usable response.
    pub error: Option<&'a Error>,
    /// How long the exchange took: until the response (its head, for a streamed one), or, in
    /// the record of a streamed body's end, until that end.
    pub elapsed: Duration,
    /// The request body's size in bytes, when known: `None` for a stream of unknown length
    /// (never `0`), and in the record of a streamed body's end.
    pub request_bytes: Option<u64>,
    /// The response body's size in bytes, when there is a response and its size is known; in
    /// the record of a streamed body's end, the bytes its reader took.
    pub response_bytes: Option<u64>,
    /// The request headers, redacted; `None` unless [`Logging::headers`](super::Logging::headers)
    /// is on.
    pub request_headers: Option<Headers<'a>>,
    /// The response headers, redacted; `None` when headers are off or there is no response.
    pub response_headers: Option<Headers<'a>>,
    /// The request body, rendered; `None` unless [`Logging::bodies`](super::Logging::bodies) is
    /// set and the body is not empty.
    pub request_body: Option<&'a str>,
    /// The response body, rendered; `None` when bodies are off or there is no non-empty one.
    pub response_body: Option<&'a str>,
    /// `None` for a buffered response (or no response); for a streamed one,
    /// [`Reading`](StreamedBody::Reading) in the record made when its head arrived, and how
    /// its body ended in the record made at that end.
    pub streamed: Option<StreamedBody>,
}

/// A redacting view of a header map: values of secret headers read as
/// [`REDACTED`](redact::REDACTED), and values that hold a URL (`Location`,
/// `Content-Location`, `Link`) as the URL field shows one: no userinfo, secret query values
/// replaced.
///
/// A value is secret when [`redact::is_secret_header`] names its header (`Authorization`,
/// `Proxy-Authorization`, `Cookie`, `Set-Cookie`, `X-Api-Key`, ...), when the header is one of
/// the names given to [`Logging::redact_header`](super::Logging::redact_header), or when the
/// value is marked sensitive ([`http::HeaderValue::set_sensitive`]). `Debug` and `Display` print
/// the map with the redacted values.
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    map: &'a HeaderMap,
    extra: &'a [HeaderName],
}

impl<'a> Headers<'a> {
    pub(crate) fn new(map: &'a HeaderMap, extra: &'a [HeaderName]) -> Self {
        Headers { map, extra }
    }

    /// Every header as a name and a printable value: `REDACTED` for a secret, `[binary]` for a
    /// value that is not visible ASCII, and a value holding a URL (`Location`,
    /// `Content-Location`, `Link`) redacted as [`redact::uri`] redacts one.
    pub fn iter(&self) -> impl Iterator<Item = (&'a HeaderName, Cow<'a, str>)> + 'a {
        let extra = self.extra;
        self.map.iter().map(move |(name, value)| {
            let secret =
                value.is_sensitive() || redact::is_secret_header(name) || extra.contains(name);
            let shown = if secret {
                Cow::Borrowed(redact::REDACTED)
            } else {
                match value.to_str() {
                    Ok(text) => redact::header_value_with(text, &redact::is_secret_param),
                    Err(_) => Cow::Borrowed("[binary]"),
                }
            };
            (name, shown)
        })
    }
}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl fmt::Display for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What a log shows for a request's streamed body: it is never read for the log (see
/// [`Logging::bodies`](super::Logging::bodies)).
pub(crate) const STREAMED_REQUEST: &str = "[streamed body, not previewed]";

/// What the exchange event shows for a streamed response body: its preview comes in the event
/// that follows when the body ends.
pub(crate) const STREAMED_RESPONSE: &str = "[streamed body, previewed when it ends]";

/// A body as a log shows it, or `None` when it is empty; see [`Logging::bodies`](super::Logging::bodies).
pub(crate) fn render_body(headers: &HeaderMap, body: &Body, cap: usize) -> Option<String> {
    let Some(bytes) = body.as_bytes() else {
        return Some(STREAMED_REQUEST.to_owned());
    };
    render_bytes(&media_type(headers), bytes, cap, None)
}

pub(crate) use redact::media_type;

/// What a streamed body's watcher learned of the bytes it did not keep, past the first `cap`
/// ones (see [`super::stream`]): enough to apply to a preview the same rules a whole body gets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rest {
    /// Bytes in the body, the kept ones included (or read, when it did not end whole).
    pub(crate) total: u64,
    /// Whether the body was read to its end.
    pub(crate) whole: bool,
    /// Whether the bytes past the kept ones were all UTF-8.
    pub(crate) utf8: bool,
    /// Whether they hold whitespace (a body with whitespace does not look like a form).
    pub(crate) whitespace: bool,
    /// Whether they (or the seam with the kept bytes) name a secret-like word.
    pub(crate) secret_word: bool,
}

/// The rules of [`Logging::bodies`](super::Logging::bodies), the one place they are written:
/// `bytes` is the whole body when `rest` is `None`, else the first bytes of a longer streamed
/// body, of which `rest` tells the rest.
pub(crate) fn render_bytes(
    media: &str,
    bytes: &[u8],
    cap: usize,
    rest: Option<&Rest>,
) -> Option<String> {
    if bytes.is_empty() && rest.is_none() {
        return None;
    }
    let total = rest.map_or(bytes.len() as u64, |r| r.total);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        // The kept bytes of a longer body may end inside a character.
        Err(e) if rest.is_some() && e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid up to there")
        }
        Err(_) => return Some(format!("[{total} bytes of binary]")),
    };
    if rest.is_some_and(|r| !r.utf8) {
        return Some(format!("[{total} bytes of binary]"));
    }
    let shape = redact::body_shape(media, text, rest.is_some_and(|r| r.whitespace));
    let shown: Cow<'_, str> = if shape == BodyShape::Form {
        // A form body has the same shape as a query string, so the query rules apply as is
        // (to the first bytes of a longer one: a value cut short is still a value).
        redact::query(text)
    } else if shape == BodyShape::Json {
        if rest.is_some() {
            // A JSON document cut short cannot be parsed, so its secrets cannot be found.
            return Some(format!(
                "[{total}-byte JSON body not shown: only its first {cap} bytes were kept, and JSON \
                 cut short cannot be redacted]"
            ));
        }
        match redact_json(text) {
            Ok(redacted) => Cow::Owned(redacted),
            Err(why) => return Some(format!("[{total}-byte JSON body not shown: {why}]")),
        }
    } else if mentions_secret(text) || rest.is_some_and(|r| r.secret_word) {
        // Free text (XML, multipart, prose) cannot be redacted field by field.
        return Some(format!(
            "[{total}-byte body not shown: it may hold a secret]"
        ));
    } else {
        redact::text(text)
    };
    Some(match rest {
        None => truncate(&shown, cap, total as usize),
        Some(rest) => cut(&shown, cap, total, rest.whole),
    })
}

/// The words that make free text unfit to show, matched in any case.
pub(crate) const SECRET_WORDS: [&str; 10] = [
    "passw",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "authorization",
    "cookie",
    "credential",
    "private",
];

/// Whether free text names something secret, in any case.
fn mentions_secret(text: &str) -> bool {
    has_secret_word(text.as_bytes())
}

/// Whether `bytes` hold one of [`SECRET_WORDS`], in any ASCII case.
pub(crate) fn has_secret_word(bytes: &[u8]) -> bool {
    (0..bytes.len()).any(|i| {
        // Every word starts with one of these letters: most bytes are passed over at once.
        matches!(
            bytes[i].to_ascii_lowercase(),
            b'a' | b'c' | b'p' | b's' | b't'
        ) && SECRET_WORDS.iter().any(|w| {
            bytes
                .get(i..i + w.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(w.as_bytes()))
        })
    })
}

/// Which facts about the bytes past `head`, the first bytes of a longer body of type `media`,
/// can still change how [`render_bytes`] shows it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Watch {
    /// Whether they are UTF-8 (else the body shows as its size).
    pub(crate) utf8: bool,
    /// Whether they hold whitespace (else the body may look like a form).
    pub(crate) whitespace: bool,
    /// Whether they name a secret-like word (else free text may be shown).
    pub(crate) secret_word: bool,
}

pub(crate) fn what_to_watch(media: &str, head: &[u8]) -> Watch {
    const NOTHING: Watch = Watch {
        utf8: false,
        whitespace: false,
        secret_word: false,
    };
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).expect("valid up to there")
        }
        // Binary already: shown as its size, whatever follows.
        Err(_) => return NOTHING,
    };
    let untyped = media.is_empty() || media == "text/plain" || media == "application/octet-stream";
    let trimmed = text.trim_start();
    let looks_json = untyped && (trimmed.starts_with('{') || trimmed.starts_with('['));
    if media == "application/json" || media.ends_with("+json") || looks_json {
        // Not shown when cut short, whatever follows.
        return NOTHING;
    }
    Watch {
        utf8: true,
        whitespace: untyped && !text.contains(char::is_whitespace) && text.contains('='),
        // Form rules do not look for words; free text already naming one is not shown.
        secret_word: media != "application/x-www-form-urlencoded" && !mentions_secret(text),
    }
}

/// `s` cut to at most `cap` bytes on a character boundary, with a note of the full size.
fn truncate(s: &str, cap: usize, total: usize) -> String {
    if s.len() <= cap {
        return s.to_owned();
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [{total} bytes in all]", &s[..end])
}

/// The first bytes of a longer streamed body, cut to at most `cap` bytes as [`truncate`] does,
/// always with a note of the size: in all when it was read `whole`, else read so far.
fn cut(s: &str, cap: usize, total: u64, whole: bool) -> String {
    let mut end = cap.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let what = if whole { "in all" } else { "read" };
    format!("{}... [{total} bytes {what}]", &s[..end])
}

/// The JSON document `text` with the value of every object member whose name looks secret
/// ([`redact::is_secret_param`]) replaced by `"REDACTED"`, at any depth.
#[cfg(feature = "json")]
fn redact_json(text: &str) -> Result<String, &'static str> {
    // Redacting needs the whole document parsed, and a log line is not worth parsing megabytes.
    const MAX_JSON_TO_REDACT: usize = 1 << 20;
    if text.len() > MAX_JSON_TO_REDACT {
        return Err("too large to redact");
    }
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "not valid JSON, so it cannot be redacted")?;
    redact::json_members(&mut value, &redact::is_secret_param);
    Ok(value.to_string())
}

/// Without a JSON parser, a JSON body cannot be redacted, so it is not shown.
#[cfg(not(feature = "json"))]
fn redact_json(_text: &str) -> Result<String, &'static str> {
    Err("enable the `json` feature to log JSON bodies redacted")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::CONTENT_TYPE;

    fn with_type(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn headers_view_redacts_secret_configured_and_sensitive_values() {
        let mut map = HeaderMap::new();
        map.insert("authorization", HeaderValue::from_static("Bearer t0k"));
        map.insert(
            "proxy-authorization",
            HeaderValue::from_static("Basic cHc="),
        );
        map.insert("cookie", HeaderValue::from_static("sid=c00k"));
        map.insert("set-cookie", HeaderValue::from_static("sid=c00k2"));
        map.insert("x-api-key", HeaderValue::from_static("k3y"));
        map.insert("x-tenant", HeaderValue::from_static("t3nant"));
        let mut marked = HeaderValue::from_static("s1gned");
        marked.set_sensitive(true);
        map.insert("signature", marked);
        map.insert("accept", HeaderValue::from_static("*/*"));
        map.insert("x-bin", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let extra = [HeaderName::from_static("x-tenant")];
        let view = Headers::new(&map, &extra);
        let shown = format!("{view}");
        for secret in ["t0k", "cHc=", "c00k", "c00k2", "k3y", "t3nant", "s1gned"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains(r#""accept": "*/*""#), "{shown}");
        assert!(shown.contains(r#""x-bin": "[binary]""#), "{shown}");
        assert_eq!(
            view.iter().filter(|(_, v)| *v == redact::REDACTED).count(),
            7
        );
        assert_eq!(format!("{view:?}"), shown);
    }

    #[test]
    fn form_bodies_are_redacted_like_queries() {
        let body = Body::from("user=ann&password=hunter2&client_secret=s3c");
        let shown = render_body(&with_type("application/x-www-form-urlencoded"), &body, 1000);
        assert_eq!(
            shown.as_deref(),
            Some("user=ann&password=REDACTED&client_secret=REDACTED")
        );
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_bodies_are_redacted_at_any_depth() {
        let body = Body::from(
            r#"{"user":"ann","password":"hunter2","nested":[{"access_token":"t0k","n":1}],"auth":{"k":"v"}}"#,
        );
        let shown =
            render_body(&with_type("application/json; charset=utf-8"), &body, 1000).unwrap();
        for secret in ["hunter2", "t0k", r#""k":"v""#] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains(r#""user":"ann""#), "{shown}");
        assert!(shown.contains(r#""n":1"#), "{shown}");
        let problem = render_body(
            &with_type("application/problem+json"),
            &Body::from(r#"{"token":"x1"}"#),
            1000,
        );
        assert_eq!(problem.as_deref(), Some(r#"{"token":"REDACTED"}"#));
    }

    #[test]
    fn untyped_bodies_are_judged_by_their_look() {
        let none = HeaderMap::new();
        let json = Body::from(r#"{"password":"pw1","page":2}"#);
        let shown = render_body(&none, &json, 1000).unwrap();
        assert!(!shown.contains("pw1") && shown.contains("page"), "{shown}");
        let form = Body::from("user=al&password=pw2");
        let shown = render_body(&none, &form, 1000).unwrap();
        assert_eq!(shown, "user=al&password=REDACTED");
        let xml = Body::from("<login><Password>pw3</Password></login>");
        let shown = render_body(&with_type("application/xml"), &xml, 1000).unwrap();
        assert!(!shown.contains("pw3"), "{shown}");
        let prose = Body::from("hello world");
        assert_eq!(render_body(&none, &prose, 1000).unwrap(), "hello world");
    }

    #[test]
    fn unparseable_json_is_not_shown() {
        let body = Body::from(r#"{"password":"hunter2""#);
        let shown = render_body(&with_type("application/json"), &body, 1000).unwrap();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.starts_with("[21-byte JSON body not shown"), "{shown}");
    }

    #[test]
    fn bodies_are_capped_on_a_char_boundary() {
        let body = Body::from("héllo wörld");
        let shown = render_body(&HeaderMap::new(), &body, 2).unwrap();
        assert_eq!(shown, "h... [13 bytes in all]");
        assert_eq!(
            render_body(&HeaderMap::new(), &body, 13).unwrap(),
            "héllo wörld"
        );
    }

    #[test]
    fn empty_binary_and_url_bearing_bodies() {
        assert_eq!(render_body(&HeaderMap::new(), &Body::empty(), 10), None);
        let bin = Body::from(vec![0xffu8, 0, 1]);
        assert_eq!(
            render_body(&HeaderMap::new(), &bin, 10).as_deref(),
            Some("[3 bytes of binary]")
        );
        let text = Body::from("see https://u:pw@h.test/?page=2");
        let shown = render_body(&with_type("text/plain"), &text, 100).unwrap();
        assert_eq!(shown, "see https://h.test/?page=2");
        // Text that names a secret is not shown at all, URL or not.
        let text = Body::from("see https://h.test/?token=t0k");
        let shown = render_body(&with_type("text/plain"), &text, 100).unwrap();
        assert!(!shown.contains("t0k"), "{shown}");
    }
}
