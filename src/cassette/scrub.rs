//! Redaction before anything reaches a cassette: Logging's rules (see
//! [`redact`](crate::redact)) for headers, query values, JSON members and form fields, plus the
//! rules a user adds.
//!
//! The same functions make the view of a live request that is matched against the recorded
//! ones, so a request carrying a fresh token still matches the one recorded with `REDACTED`.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::format::Interaction;
use crate::redact::{self, BodyShape, REDACTED};

pub(crate) type Custom = Arc<dyn Fn(&mut Interaction) + Send + Sync>;

/// What is redacted, besides Logging's rules.
#[derive(Clone, Default)]
pub(crate) struct Rules {
    /// More secret headers.
    pub(crate) headers: Vec<HeaderName>,
    /// More secret query parameters, form fields and JSON members (ASCII case ignored).
    pub(crate) params: Vec<String>,
    /// Names Logging's rules would redact that hold no secret here (`code`, `key`).
    pub(crate) keep: Vec<String>,
    /// The user's own pass over each interaction, last.
    pub(crate) custom: Vec<Custom>,
}

impl Rules {
    fn secret_param(&self, name: &str) -> bool {
        let listed = |list: &[String]| list.iter().any(|n| n.eq_ignore_ascii_case(name));
        !listed(&self.keep) && (redact::is_secret_param(name) || listed(&self.params))
    }

    fn secret_header(&self, name: &HeaderName, value: &HeaderValue) -> bool {
        value.is_sensitive() || redact::is_secret_header(name) || self.headers.contains(name)
    }

    /// A URL without userinfo, with secret query values replaced: Logging's rules with this
    /// cassette's names added and kept.
    pub(crate) fn url(&self, uri: &http::Uri) -> String {
        redact::uri_with(uri, &|name| self.secret_param(name))
    }

    /// A query string or a form body with secret values replaced, by the same rules.
    fn query<'a>(&self, q: &'a str) -> Cow<'a, str> {
        redact::query_with(q, &|name| self.secret_param(name))
    }

    /// Free text with every URL in it redacted, by the same rules.
    fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        redact::text_with(text, &|name| self.secret_param(name))
    }

    /// The headers to record: secret values replaced, and URL values (`Location`, an echo of
    /// the request line) with secret query values replaced.
    pub(crate) fn headers(&self, headers: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(headers.len());
        for (name, value) in headers {
            let shown = if self.secret_header(name, value) {
                HeaderValue::from_static(REDACTED)
            } else {
                self.header_value(value)
            };
            out.append(name.clone(), shown);
        }
        out
    }

    /// A header value with the URL it holds (`Location`, `Link`, `Content-Location`)
    /// redacted, as Logging shows it, by this cassette's names.
    fn header_value(&self, value: &HeaderValue) -> HeaderValue {
        let Ok(text) = value.to_str() else {
            return value.clone();
        };
        match redact::header_value_with(text, &|name| self.secret_param(name)) {
            Cow::Borrowed(_) => value.clone(),
            Cow::Owned(t) => HeaderValue::from_str(&t).unwrap_or_else(|_| value.clone()),
        }
    }

    /// A body to record: JSON members and form fields redacted as Logging does, free text
    /// with the URLs in it redacted, binary as it is.
    pub(crate) fn body(&self, headers: &HeaderMap, body: &Bytes) -> Bytes {
        let Ok(text) = std::str::from_utf8(body) else {
            return body.clone();
        };
        // The shapes Logging judges bodies by, with this cassette's own secret names.
        let redacted = match redact::body_shape(&redact::media_type(headers), text, false) {
            BodyShape::Form => self.query(text),
            BodyShape::Json => self.json(text),
            BodyShape::Text => self.text(text),
        };
        match redacted {
            Cow::Borrowed(_) => body.clone(),
            Cow::Owned(t) => Bytes::from(t),
        }
    }

    /// JSON with secret members replaced at any depth; kept byte for byte when it holds none,
    /// and as it is when it is not JSON (it cannot be redacted member by member).
    fn json<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
            return Cow::Borrowed(text);
        };
        if redact::json_members(&mut value, &|name| self.secret_param(name)) {
            Cow::Owned(value.to_string())
        } else {
            Cow::Borrowed(text)
        }
    }

    /// `interaction` as it is written: the user's passes run, and a `Content-Length` that
    /// redaction made wrong set to the body's new length.
    pub(crate) fn finish(&self, interaction: &mut Interaction) {
        for custom in &self.custom {
            custom(interaction);
        }
        fix_length(
            &mut interaction.request.headers,
            interaction.request.body.len(),
        );
        // A response that never has content (to a HEAD, a 1xx, 204 or 304) keeps its
        // `Content-Length`: it states the size of the resource, not of this empty body.
        let status = interaction.response.status.as_u16();
        let bodiless = interaction.request.method == http::Method::HEAD
            || matches!(status, 100..=199 | 204 | 304);
        if !bodiless {
            fix_length(
                &mut interaction.response.headers,
                interaction.response.body.len(),
            );
        }
    }
}

fn fix_length(headers: &mut HeaderMap, len: usize) {
    if headers.contains_key(CONTENT_LENGTH) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            headers: vec![HeaderName::from_static("x-tenant")],
            params: vec!["acct".into()],
            keep: vec!["code".into()],
            custom: Vec::new(),
        }
    }

    #[test]
    fn urls_lose_userinfo_and_secret_query_values() {
        let uri: http::Uri = "https://u:pw@api.test:8443/p?token=t1&acct=a1&code=E1&q=x"
            .parse()
            .unwrap();
        assert_eq!(
            rules().url(&uri),
            "https://api.test:8443/p?token=REDACTED&acct=REDACTED&code=E1&q=x"
        );
        // A kept or plain pair does not shelter a secret after `;` or `#`.
        let semi: http::Uri = "http://api.test/p?code=E1;token=t2&a=1;acct=a3#sig=s4"
            .parse()
            .unwrap();
        assert_eq!(
            rules().url(&semi),
            "http://api.test/p?code=E1;token=REDACTED&a=1;acct=REDACTED"
        );
        let plain: http::Uri = "http://api.test/p?q=1".parse().unwrap();
        assert_eq!(rules().url(&plain), "http://api.test/p?q=1");
    }

    #[test]
    fn headers_by_name_by_rule_and_by_url_value() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer t1"));
        h.insert("x-tenant", HeaderValue::from_static("t2"));
        h.insert(
            "location",
            HeaderValue::from_static("https://u:p@h.test/cb?code=c3&sig=s3"),
        );
        h.insert(
            "content-location",
            HeaderValue::from_static("/x?acct=a4&page=2"),
        );
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.insert(
            "link",
            HeaderValue::from_static("<https://h.test/p?acct=a5&code=c5>; rel=next"),
        );
        let out = rules().headers(&h);
        assert_eq!(
            out["link"], "<https://h.test/p?acct=REDACTED&code=c5>; rel=next",
            "a URL in prose, by the cassette's names (added and kept) too"
        );
        assert_eq!(out["authorization"], REDACTED);
        assert_eq!(out["x-tenant"], REDACTED);
        assert_eq!(out["location"], "https://h.test/cb?code=c3&sig=REDACTED");
        assert_eq!(out["content-location"], "/x?acct=REDACTED&page=2");
        assert_eq!(out["accept"], "*/*");
    }

    #[test]
    fn bodies_json_form_text_and_binary() {
        let json_type = {
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static("application/json"));
            h
        };
        let body =
            Bytes::from_static(br#"{"user":"ann","password":"p1","n":[{"acct":"a2","code":"E"}]}"#);
        let out = rules().body(&json_type, &body);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["password"], REDACTED);
        assert_eq!(v["n"][0]["acct"], REDACTED);
        assert_eq!(v["n"][0]["code"], "E");
        assert_eq!(v["user"], "ann");
        let clean = Bytes::from_static(b"{ \"user\" : \"ann\" }");
        assert_eq!(rules().body(&json_type, &clean), clean);
        let form = Bytes::from_static(b"user=ann&client_secret=s1&acct=a1");
        assert_eq!(
            rules().body(&HeaderMap::new(), &form),
            "user=ann&client_secret=REDACTED&acct=REDACTED"
        );
        let text = Bytes::from_static(b"see https://u:p@h.test/?acct=a6 now");
        assert_eq!(
            rules().body(&HeaderMap::new(), &text),
            "see https://h.test/?acct=REDACTED now"
        );
        let bin = Bytes::from_static(&[0xff, 0x00, b'=']);
        assert_eq!(rules().body(&HeaderMap::new(), &bin), bin);
    }

    #[test]
    fn finish_runs_custom_passes_and_fixes_the_length() {
        use super::super::format::{RecordedRequest, RecordedResponse};
        let mut rules = rules();
        rules.custom.push(Arc::new(|it: &mut Interaction| {
            it.response.body = Bytes::from_static(b"short");
        }));
        let mut resp = RecordedResponse::new(http::StatusCode::OK);
        resp.headers.insert(CONTENT_LENGTH, HeaderValue::from(100));
        let mut it = Interaction::new(RecordedRequest::new(http::Method::GET, "/"), resp);
        rules.finish(&mut it);
        assert_eq!(it.response.headers[CONTENT_LENGTH], "5");
        assert!(!it.request.headers.contains_key(CONTENT_LENGTH));
    }
}
