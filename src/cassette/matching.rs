//! Which recorded request a live one is: what is compared, and how the nearest one differs
//! when none matches.

use std::sync::Arc;

use http::HeaderName;

use super::format::RecordedRequest;
use crate::Request;

pub(crate) type MatchFn = Arc<dyn Fn(&Request, &RecordedRequest) -> bool + Send + Sync>;

/// In which order recorded interactions may answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Order {
    /// Any recorded interaction that matches answers, whatever its place (the default): an
    /// SDK that sends requests concurrently replays as well as one that sends them in turn.
    #[default]
    AnyOrder,
    /// Requests must come in the recorded order: each is matched against the next
    /// interaction only (or, when repeats are allowed, the one played last).
    InOrder,
}

/// What a live request is compared on.
#[derive(Clone)]
pub(crate) struct Matcher {
    pub(crate) host: bool,
    pub(crate) body: bool,
    pub(crate) headers: Vec<HeaderName>,
    pub(crate) custom: Vec<MatchFn>,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher {
            host: true,
            body: false,
            headers: Vec::new(),
            custom: Vec::new(),
        }
    }
}

/// A URL cut into what is compared: the origin, the path, and the query pairs sorted (their
/// order carries no meaning to most servers, and a map's order may change between runs).
struct Parts<'a> {
    origin: &'a str,
    path: &'a str,
    query: Vec<&'a str>,
}

fn parts(url: &str) -> Parts<'_> {
    let (origin, rest) = match url.find("://") {
        Some(i) => {
            let after = &url[i + 3..];
            let end = after.find(['/', '?']).map_or(url.len(), |j| i + 3 + j);
            (&url[..end], &url[end..])
        }
        None => ("", url),
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut query: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    query.sort_unstable();
    Parts {
        origin,
        path: if path.is_empty() { "/" } else { path },
        query,
    }
}

impl Matcher {
    /// How `live` (the redacted view of `req`) differs from `recorded`: nothing when they
    /// match. Each difference is a short phrase, without any value a secret could be in.
    pub(crate) fn differences(
        &self,
        req: &Request,
        live: &RecordedRequest,
        recorded: &RecordedRequest,
    ) -> Vec<String> {
        let mut diffs = Vec::new();
        if live.method != recorded.method {
            diffs.push(format!("method {} recorded", recorded.method));
        }
        let (a, b) = (parts(&live.url), parts(&recorded.url));
        if self.host && a.origin != b.origin {
            diffs.push(format!("origin {} recorded", b.origin));
        }
        if a.path != b.path {
            diffs.push(format!("path {} recorded", b.path));
        }
        if a.query != b.query {
            let sent: Vec<_> = a.query.iter().filter(|p| !b.query.contains(p)).collect();
            let kept: Vec<_> = b.query.iter().filter(|p| !a.query.contains(p)).collect();
            let list = |v: &[&&str]| {
                if v.is_empty() {
                    "nothing".to_owned()
                } else {
                    v.iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            diffs.push(format!(
                "query: {} recorded where {} was sent",
                list(&kept),
                list(&sent)
            ));
        }
        for name in &self.headers {
            let values = |r: &RecordedRequest| -> Vec<Vec<u8>> {
                r.headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.as_bytes().to_vec())
                    .collect()
            };
            if values(live) != values(recorded) {
                diffs.push(format!("header {name} differs"));
            }
        }
        if self.body && live.body != recorded.body {
            let at = live
                .body
                .iter()
                .zip(recorded.body.iter())
                .position(|(x, y)| x != y)
                .unwrap_or(live.body.len().min(recorded.body.len()));
            diffs.push(format!(
                "body differs from byte {at} ({} bytes recorded, {} sent)",
                recorded.body.len(),
                live.body.len()
            ));
        }
        if !self.custom.iter().all(|f| f(req, recorded)) {
            diffs.push("the match_with rule says no".to_owned());
        }
        diffs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;

    fn rec(method: http::Method, url: &str) -> RecordedRequest {
        RecordedRequest::new(method, url)
    }

    #[test]
    fn method_and_url_by_default_query_order_ignored() {
        let m = Matcher::default();
        let req = http::Request::get("http://a.test/")
            .body(Body::empty())
            .unwrap();
        let live = rec(http::Method::GET, "http://a.test/p?b=2&a=1");
        assert!(
            m.differences(
                &req,
                &live,
                &rec(http::Method::GET, "http://a.test/p?a=1&b=2")
            )
            .is_empty()
        );
        let d = m.differences(
            &req,
            &live,
            &rec(http::Method::POST, "http://b.test/q?a=1&b=3"),
        );
        assert_eq!(
            d,
            [
                "method POST recorded",
                "origin http://b.test recorded",
                "path /q recorded",
                "query: `b=3` recorded where `b=2` was sent"
            ]
        );
        let any_host = Matcher {
            host: false,
            ..Matcher::default()
        };
        assert!(
            any_host
                .differences(
                    &req,
                    &live,
                    &rec(http::Method::GET, "https://x.test:1/p?a=1&b=2")
                )
                .is_empty()
        );
    }

    #[test]
    fn body_headers_and_custom_when_asked() {
        let mut m = Matcher {
            body: true,
            headers: vec![HeaderName::from_static("x-v")],
            ..Matcher::default()
        };
        m.custom
            .push(Arc::new(|req: &Request, _: &RecordedRequest| {
                req.uri().path() == "/ok"
            }));
        let req = http::Request::get("http://a.test/no")
            .body(Body::empty())
            .unwrap();
        let mut live = rec(http::Method::GET, "http://a.test/");
        live.body = "abcd".into();
        live.headers
            .insert("x-v", http::HeaderValue::from_static("1"));
        let mut recorded = rec(http::Method::GET, "http://a.test/");
        recorded.body = "abXd".into();
        let d = m.differences(&req, &live, &recorded);
        assert_eq!(
            d,
            [
                "header x-v differs",
                "body differs from byte 2 (4 bytes recorded, 4 sent)",
                "the match_with rule says no"
            ]
        );
    }
}
