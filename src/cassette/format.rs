//! What a cassette holds ([`Interaction`]) and how it is written to and read from its file.
//!
//! The file is one pretty-printed JSON document: a version and an array of interactions, each
//! field on its own line, so a diff of a re-recorded cassette shows the very header, status or
//! body that changed. See [`Cassette`](super::Cassette#the-file) for the layout.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;

/// The version written in every cassette, and the only one read.
pub(crate) const FORMAT_VERSION: u64 = 1;

/// The key holding [`FORMAT_VERSION`]: it also tells a cassette from any other JSON file.
const VERSION_KEY: &str = "http_doer_cassette";

/// One recorded exchange: a request and the response it got, as written to the cassette
/// (secrets already redacted).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Interaction {
    /// The request, redacted.
    pub request: RecordedRequest,
    /// The response, redacted.
    pub response: RecordedResponse,
}

/// A recorded request: what a replayed request is matched against.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// The method.
    pub method: Method,
    /// The URL, without userinfo and with secret query values replaced by `REDACTED`.
    pub url: String,
    /// The headers, in the order they were sent, secret values replaced by `REDACTED`.
    pub headers: HeaderMap,
    /// The body, with secret JSON members and form fields replaced by `REDACTED`.
    pub body: Bytes,
}

/// A recorded response: what a matching request is answered with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordedResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers, in the order they came, secret values (`Set-Cookie`, ...) replaced by
    /// `REDACTED`.
    pub headers: HeaderMap,
    /// The body, with secret JSON members and form fields replaced by `REDACTED`.
    pub body: Bytes,
}

impl Interaction {
    /// An interaction of `request` and `response`.
    pub fn new(request: RecordedRequest, response: RecordedResponse) -> Self {
        Interaction { request, response }
    }
}

impl RecordedRequest {
    /// A recorded request with no headers and an empty body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        RecordedRequest {
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}

impl RecordedResponse {
    /// A recorded response with no headers and an empty body.
    pub fn new(status: StatusCode) -> Self {
        RecordedResponse {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}

/// The text of a cassette holding `interactions`.
pub(crate) fn write(interactions: &[Interaction]) -> String {
    let mut out = String::new();
    out.push_str("{\n");
    let _ = writeln!(out, "  {}: {FORMAT_VERSION},", quote(VERSION_KEY));
    if interactions.is_empty() {
        out.push_str("  \"interactions\": []\n}\n");
        return out;
    }
    out.push_str("  \"interactions\": [\n");
    for (i, it) in interactions.iter().enumerate() {
        out.push_str("    {\n      \"request\": {\n");
        let _ = writeln!(
            out,
            "        \"method\": {},",
            quote(it.request.method.as_str())
        );
        let _ = writeln!(out, "        \"url\": {},", quote(&it.request.url));
        write_headers(&mut out, &it.request.headers);
        write_body(&mut out, &it.request.body);
        out.push_str("      },\n      \"response\": {\n");
        let _ = writeln!(out, "        \"status\": {},", it.response.status.as_u16());
        write_headers(&mut out, &it.response.headers);
        write_body(&mut out, &it.response.body);
        out.push_str("      }\n    }");
        out.push_str(if i + 1 < interactions.len() {
            ",\n"
        } else {
            "\n"
        });
    }
    out.push_str("  ]\n}\n");
    out
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    // Serializing a `str` cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

/// `"headers": [...]`, one `"name: value"` per line; a value that is not visible ASCII is
/// written as `"name;base64: ..."`, so that every byte comes back.
fn write_headers(out: &mut String, headers: &HeaderMap) {
    if headers.is_empty() {
        out.push_str("        \"headers\": [],\n");
        return;
    }
    out.push_str("        \"headers\": [\n");
    let n = headers.len();
    for (i, (name, value)) in headers.iter().enumerate() {
        let line = match value.to_str() {
            Ok(text) => format!("{name}: {text}"),
            Err(_) => format!("{name};base64: {}", BASE64.encode(value.as_bytes())),
        };
        let sep = if i + 1 < n { "," } else { "" };
        let _ = writeln!(out, "          {}{sep}", quote(&line));
    }
    out.push_str("        ],\n");
}

/// `"body": "..."` for UTF-8 text, `"body_base64": "..."` for anything else.
fn write_body(out: &mut String, body: &[u8]) {
    match std::str::from_utf8(body) {
        Ok(text) => {
            let _ = writeln!(out, "        \"body\": {}", quote(text));
        }
        Err(_) => {
            let _ = writeln!(
                out,
                "        \"body_base64\": {}",
                quote(&BASE64.encode(body))
            );
        }
    }
}

/// The interactions of a cassette's text; the error says where and what is wrong.
pub(crate) fn read(text: &[u8]) -> Result<Vec<Interaction>, String> {
    let doc: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    match doc.get(VERSION_KEY).and_then(Value::as_u64) {
        Some(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(format!(
                "format version {v}; this http-doer reads version {FORMAT_VERSION}"
            ));
        }
        None => return Err(format!("no `{VERSION_KEY}` version number: not a cassette")),
    }
    let list = doc
        .get("interactions")
        .and_then(Value::as_array)
        .ok_or("no `interactions` array")?;
    list.iter()
        .enumerate()
        .map(|(i, it)| read_interaction(it).map_err(|e| format!("interaction #{i}: {e}")))
        .collect()
}

fn read_interaction(it: &Value) -> Result<Interaction, String> {
    let req = it.get("request").ok_or("no `request`")?;
    let resp = it.get("response").ok_or("no `response`")?;
    let method = str_field(req, "request.method")?;
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("request.method {method:?} is not a method"))?;
    let status = resp
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or("response.status is missing or not a status code")?;
    Ok(Interaction {
        request: RecordedRequest {
            method,
            url: str_field(req, "request.url")?.to_owned(),
            headers: read_headers(req, "request")?,
            body: read_body(req, "request")?,
        },
        response: RecordedResponse {
            status,
            headers: read_headers(resp, "response")?,
            body: read_body(resp, "response")?,
        },
    })
}

fn str_field<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    let key = path.rsplit('.').next().unwrap_or(path);
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{path} is missing or not a string"))
}

fn read_headers(v: &Value, side: &str) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    let Some(list) = v.get("headers") else {
        return Ok(map);
    };
    let list = list
        .as_array()
        .ok_or_else(|| format!("{side}.headers is not an array"))?;
    for line in list {
        let line = line
            .as_str()
            .ok_or_else(|| format!("{side}.headers holds a non-string"))?;
        let bad = || format!("{side}.headers: {line:?} is not `name: value`");
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        let value = value.strip_prefix(' ').unwrap_or(value);
        let (name, value) = match name.strip_suffix(";base64") {
            Some(name) => (name, BASE64.decode(value).map_err(|_| bad())?),
            None => (name, value.as_bytes().to_vec()),
        };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_bytes(&value).map_err(|_| bad())?;
        map.append(name, value);
    }
    Ok(map)
}

fn read_body(v: &Value, side: &str) -> Result<Bytes, String> {
    if let Some(text) = v.get("body") {
        let text = text
            .as_str()
            .ok_or_else(|| format!("{side}.body is not a string"))?;
        return Ok(Bytes::copy_from_slice(text.as_bytes()));
    }
    if let Some(b64) = v.get("body_base64") {
        let b64 = b64
            .as_str()
            .ok_or_else(|| format!("{side}.body_base64 is not a string"))?;
        let bytes = BASE64
            .decode(b64)
            .map_err(|e| format!("{side}.body_base64 is not base64: {e}"))?;
        return Ok(Bytes::from(bytes));
    }
    Ok(Bytes::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Interaction> {
        let mut req = RecordedRequest::new(Method::POST, "http://api.test/x?q=1");
        req.headers
            .append("accept", HeaderValue::from_static("*/*"));
        req.headers.append("x-multi", HeaderValue::from_static("a"));
        req.headers.append("x-multi", HeaderValue::from_static("b"));
        req.headers
            .append("x-bin", HeaderValue::from_bytes(b"\xfe\xff").unwrap());
        req.body = Bytes::from_static(b"{\"a\":\"\\u00e9\\n\"}");
        let mut resp = RecordedResponse::new(StatusCode::CREATED);
        resp.body = Bytes::from_static(&[0, 159, 146, 150]);
        vec![
            Interaction::new(req, resp),
            Interaction::new(
                RecordedRequest::new(Method::GET, "http://api.test/"),
                RecordedResponse::new(StatusCode::NO_CONTENT),
            ),
        ]
    }

    #[test]
    fn round_trips_every_byte_and_reads_as_plain_json() {
        let text = write(&sample());
        assert_eq!(read(text.as_bytes()).unwrap(), sample());
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc["interactions"][0]["request"]["headers"][1],
            "x-multi: a"
        );
        assert_eq!(
            doc["interactions"][0]["request"]["headers"][3],
            "x-bin;base64: /v8="
        );
        assert_eq!(
            doc["interactions"][0]["response"]["body_base64"],
            "AJ+Slg=="
        );
        assert!(text.contains("\n        \"status\": 201,\n"), "{text}");
        assert_eq!(read(write(&[]).as_bytes()).unwrap(), []);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("[]", "not a cassette"),
            ("{", "not JSON"),
            (
                r#"{"http_doer_cassette": 9, "interactions": []}"#,
                "version 9",
            ),
            (r#"{"http_doer_cassette": 1}"#, "no `interactions`"),
            (
                r#"{"http_doer_cassette": 1, "interactions": [{"request": {"method": "GET", "url": "/"}, "response": {"status": 1000}}]}"#,
                "interaction #0: response.status",
            ),
            (
                r#"{"http_doer_cassette": 1, "interactions": [{"request": {"method": "GET", "url": "/", "headers": ["nocolon"]}, "response": {"status": 200}}]}"#,
                "is not `name: value`",
            ),
        ];
        for (text, want) in cases {
            let err = read(text.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// A JSON value of any shape, cassette keys and field names likelier than chance, so
        /// that generated documents get past the version check and into the fields.
        fn json() -> impl Strategy<Value = Value> {
            let key = prop_oneof![
                Just(VERSION_KEY.to_owned()),
                "interactions|request|response|method|url|status|headers|body|body_base64"
                    .prop_map(|s| s.to_owned()),
                "\\PC{0,6}",
            ];
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                Just(Value::from(1)),
                "\\PC{0,12}|[a-z-]{1,8}(;base64)?: ?\\PC{0,8}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, move |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::vec((key.clone(), inner), 0..6)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
                ]
            })
        }

        /// A cassette whose every field is one of the generated values.
        fn cassette() -> impl Strategy<Value = Value> {
            let side = || {
                (json(), json(), json(), json(), json()).prop_map(|(a, b, c, d, e)| {
                    serde_json::json!({"method": a, "url": b, "status": c, "headers": d, "body": e})
                })
            };
            prop::collection::vec((side(), side()), 0..4).prop_map(|its| {
                let its: Vec<Value> = its
                    .into_iter()
                    .map(|(request, response)| serde_json::json!({"request": request, "response": response}))
                    .collect();
                serde_json::json!({ VERSION_KEY: 1, "interactions": its })
            })
        }

        fn header_map() -> impl Strategy<Value = HeaderMap> {
            let value = prop::collection::vec(any::<u8>(), 0..12)
                .prop_filter_map("a header value", |b| HeaderValue::from_bytes(&b).ok());
            prop::collection::vec(("[a-z][a-z0-9-]{0,10}", value), 0..5).prop_map(|pairs| {
                let mut map = HeaderMap::new();
                for (name, value) in pairs {
                    map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), value);
                }
                map
            })
        }

        fn interaction() -> impl Strategy<Value = Interaction> {
            let method = "[A-Z]{1,8}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap());
            let body = prop_oneof![
                "\\PC{0,24}".prop_map(Bytes::from),
                prop::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from),
            ];
            (
                method,
                "\\PC{0,30}",
                header_map(),
                body.clone(),
                100u16..1000,
                header_map(),
                body,
            )
                .prop_map(|(method, url, rh, rb, status, sh, sb)| {
                    let mut request = RecordedRequest::new(method, url);
                    request.headers = rh;
                    request.body = rb;
                    let mut response = RecordedResponse::new(StatusCode::from_u16(status).unwrap());
                    response.headers = sh;
                    response.body = sb;
                    Interaction::new(request, response)
                })
        }

        proptest! {
            // A cassette file is text anyone can edit: reading it never panics.
            #[test]
            fn read_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                let _ = read(&bytes);
            }

            #[test]
            fn read_never_panics_on_json(doc in json()) {
                let _ = read(doc.to_string().as_bytes());
            }

            #[test]
            fn read_never_panics_on_cassette_shaped_json(doc in cassette()) {
                let _ = read(doc.to_string().as_bytes());
            }

            #[test]
            fn read_never_panics_on_a_cut_or_edited_cassette(
                its in prop::collection::vec(interaction(), 1..3),
                at in any::<prop::sample::Index>(),
                byte in any::<u8>(),
            ) {
                let mut text = write(&its).into_bytes();
                let i = at.index(text.len());
                let _ = read(&text[..i]);
                text[i] = byte;
                let _ = read(&text);
            }

            // Whatever is recorded comes back byte for byte.
            #[test]
            fn write_then_read_round_trips(its in prop::collection::vec(interaction(), 0..3)) {
                prop_assert_eq!(read(write(&its).as_bytes()).unwrap(), its);
            }
        }
    }
}
