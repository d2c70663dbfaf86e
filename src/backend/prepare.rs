//! The one place where both backends check and settle a request before their library sees it,
//! so that the two send the same bytes or refuse with the same [`ErrorKind`].
//!
//! The rules (the README's "What the backends send" repeats them for users):
//!
//! * **URL**: put into the normal form of [`uri`](super::uri), or refused as `InvalidRequest`.
//! * **Userinfo** (`http://alice:pw@host/`): becomes `Authorization: Basic` (percent-decoded,
//!   as curl and Go do), unless the request already has an `Authorization` header, which wins.
//!   It is always taken out of the URL, so no library below ever holds it in a URL, nor logs it.
//! * **Framing headers** are the backend's to write; a caller's value must agree with the body,
//!   or the request is `InvalidRequest` before anything is sent:
//!   - `Content-Length`: every value a plain decimal equal to the body's length (sent once);
//!     on a stream of unknown length it declares the length, which the stream is then held to;
//!   - `Transfer-Encoding`: only `chunked`, only on a stream of unknown length; a body of known
//!     length is sent with `Content-Length`. A stream gets its framing header here, whatever
//!     the method (`Content-Length` when its length is known, else `Transfer-Encoding:
//!     chunked`), so that both libraries send it alike;
//!   - `Host`: one value naming the URL's own authority (RFC 9112 section 3.2), or none;
//!   - `Connection: upgrade` and `Upgrade`: refused, a Doer does not switch protocols.
//! * **Methods**: any token, extension methods (`PURGE`, `PROPFIND`) included; `CONNECT` is
//!   refused (a Doer does not open tunnels); a body on `HEAD` or `TRACE` is refused.
//! * **Version**: the backend chooses (HTTP/1.1, or HTTP/2 where TLS negotiates it); the
//!   request's own version is not used.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Version};

use super::uri;
use crate::{Error, ErrorKind, Request};

/// Checks `req` and settles it by the rules above.
pub(crate) fn prepare(req: &mut Request) -> Result<(), Error> {
    let target = uri::normalize(req.uri()).map_err(|why| invalid(why, req))?;
    let basic = target
        .userinfo
        .filter(|_| !req.headers().contains_key(header::AUTHORIZATION))
        .map(basic_credentials);
    if let Some(uri) = target.uri {
        *req.uri_mut() = uri;
    }
    if let Some(basic) = basic {
        req.headers_mut().insert(header::AUTHORIZATION, basic);
    }
    if req.method() == Method::CONNECT {
        return Err(invalid(
            "CONNECT is not supported: a Doer does not open tunnels",
            req,
        ));
    }
    let body_len = req.body().len();
    if matches!(*req.method(), Method::HEAD | Method::TRACE) && body_len != Some(0) {
        return Err(invalid("a HEAD or TRACE request cannot carry a body", req));
    }
    if req.version() != Version::HTTP_11 {
        *req.version_mut() = Version::HTTP_11;
    }
    framing(req, body_len).map_err(|why| invalid(why, req))
}

fn invalid(why: &'static str, req: &Request) -> Error {
    Error::from(ErrorKind::InvalidRequest)
        .with_message(why)
        .with_url(req.uri())
}

/// `Authorization: Basic` from a URL's `user:password`, percent-decoded, marked sensitive.
fn basic_credentials(userinfo: &str) -> HeaderValue {
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(userinfo).collect();
    let mut value = b"Basic ".to_vec();
    value.extend_from_slice(STANDARD.encode(&decoded).as_bytes());
    let mut value = HeaderValue::from_bytes(&value).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

fn framing(req: &mut Request, body_len: Option<u64>) -> Result<(), &'static str> {
    let stream = req.body().is_stream();
    let headers = req.headers();
    // One pass decides whether any framing header is there at all: almost no request has one.
    let any = headers.contains_key(header::CONTENT_LENGTH)
        || headers.contains_key(header::TRANSFER_ENCODING)
        || headers.contains_key(header::HOST)
        || headers.contains_key(header::CONNECTION)
        || headers.contains_key(header::UPGRADE);
    if !any && !stream {
        return Ok(());
    }
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    if chunked {
        let only_chunked = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .all(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
        if !only_chunked || body_len.is_some() || headers.contains_key(header::CONTENT_LENGTH) {
            return Err("Transfer-Encoding is set by the backend from the body; remove it");
        }
    }
    if headers.contains_key(header::UPGRADE) || has_token(headers, header::CONNECTION, "upgrade") {
        return Err("protocol upgrades (Upgrade, Connection: upgrade) are not supported");
    }
    if headers.contains_key(header::HOST) {
        check_host(req)?;
        // The library writes Host from the URL, which is in normal form: the same bytes on
        // both backends.
        req.headers_mut().remove(header::HOST);
    }
    let mut lengths = req.headers().get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        let declared = decimal(first)?;
        for other in lengths {
            if decimal(other)? != declared {
                return Err("Content-Length has values that differ");
            }
        }
        match body_len {
            Some(len) if len != declared => {
                return Err("Content-Length does not match the body's length");
            }
            Some(_) => {}
            None => req.body_mut().declare_len(declared),
        }
        // Sent once, whatever the number of equal values given.
        req.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(declared));
    }
    if stream {
        // Written here rather than left to each library, so both frame a stream alike: hyper
        // would send a GET's stream of unknown length as no body at all, ureq chunked.
        let len = req.body().len();
        let headers = req.headers_mut();
        match len {
            _ if headers.contains_key(header::CONTENT_LENGTH) => {}
            Some(len) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            }
            None => {
                let chunked = HeaderValue::from_static("chunked");
                headers.insert(header::TRANSFER_ENCODING, chunked);
            }
        }
    }
    Ok(())
}

fn decimal(value: &HeaderValue) -> Result<u64, &'static str> {
    let bytes = value.as_bytes();
    let bad = "Content-Length is not a decimal number";
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(bad)
}

/// Whether the comma-separated header `name` lists `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// A caller's `Host` must be one value naming the URL's authority (RFC 9112 section 3.2).
fn check_host(req: &Request) -> Result<(), &'static str> {
    let mismatch = "the Host header names another authority than the URL; put the host in the URL";
    let mut values = req.headers().get_all(header::HOST).iter();
    let value = values.next().ok_or(mismatch)?;
    if values.next().is_some() {
        return Err("Host is given more than once");
    }
    let value = value.to_str().map_err(|_| mismatch)?;
    if value.is_empty() || value.contains(['/', '?', '#', '@']) {
        return Err(mismatch);
    }
    let given: http::Uri = format!("{}://{value}/", req.uri().scheme_str().unwrap_or("http"))
        .parse()
        .map_err(|_| mismatch)?;
    let given = uri::normalize(&given).map_err(|_| mismatch)?;
    let own = req.uri().authority().map(|a| a.as_str());
    let given = given
        .uri
        .as_ref()
        .and_then(|u| u.authority())
        .map(|a| a.as_str());
    // `normalize` returned no new URL when the Host value was already in normal form.
    match given {
        Some(given) if Some(given) == own => Ok(()),
        Some(_) => Err(mismatch),
        None if Some(value) == own => Ok(()),
        None => Err(mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;

    fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &'static str) -> Request {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(Body::from(body)).unwrap()
    }

    fn refused(r: &mut Request) -> bool {
        prepare(r).is_err_and(|e| e.kind() == ErrorKind::InvalidRequest)
    }

    #[test]
    fn content_length_must_match_the_body() {
        let cl = |v: &str, body| req("POST", "http://h.test/", &[("content-length", v)], body);
        assert!(refused(&mut cl("5", "")));
        assert!(refused(&mut cl(
            "5",
            "forty bytes of body, more than five bytes"
        )));
        assert!(refused(&mut cl("+4", "body")));
        assert!(refused(&mut cl("4 ", "body")));
        assert!(refused(&mut cl("99999999999999999999999", "body")));
        let mut ok = cl("4", "body");
        prepare(&mut ok).unwrap();
        assert_eq!(ok.headers()["content-length"], "4");
        let mut doubled = req(
            "POST",
            "http://h.test/",
            &[("content-length", "4"), ("content-length", "4")],
            "body",
        );
        prepare(&mut doubled).unwrap();
        assert_eq!(
            doubled.headers().get_all("content-length").iter().count(),
            1
        );
        let mut differ = req(
            "POST",
            "http://h.test/",
            &[("content-length", "4"), ("content-length", "5")],
            "body",
        );
        assert!(refused(&mut differ));
    }

    #[test]
    fn transfer_encoding_upgrade_and_connect_are_refused() {
        for (name, value) in [
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
        ] {
            assert!(
                refused(&mut req("POST", "http://h.test/", &[(name, value)], "x")),
                "{name}"
            );
        }
        assert!(refused(&mut req("CONNECT", "http://h.test:443/", &[], "")));
        assert!(refused(&mut req("HEAD", "http://h.test/", &[], "x")));
        assert!(refused(&mut req("TRACE", "http://h.test/", &[], "x")));
        let mut close = req("GET", "http://h.test/", &[("connection", "close")], "");
        prepare(&mut close).unwrap();
    }

    #[test]
    fn host_must_name_the_urls_authority() {
        for ok in ["h.test:8080", "H.TEST:8080", "h.test:08080"] {
            let mut r = req("GET", "http://h.test:8080/", &[("host", ok)], "");
            prepare(&mut r).unwrap();
            assert!(r.headers().get("host").is_none(), "{ok}");
        }
        let mut default_port = req("GET", "http://h.test/", &[("host", "h.test:80")], "");
        prepare(&mut default_port).unwrap();
        for bad in [
            "other.test",
            "h.test",
            "h.test:8081",
            "u@h.test:8080",
            "h.test:8080/x",
        ] {
            let mut r = req("GET", "http://h.test:8080/", &[("host", bad)], "");
            assert!(refused(&mut r), "{bad}");
        }
        let mut twice = req(
            "GET",
            "http://h.test/",
            &[("host", "h.test"), ("host", "h.test")],
            "",
        );
        assert!(refused(&mut twice));
    }

    #[test]
    fn userinfo_becomes_basic_unless_authorization_is_set() {
        let mut r = req("GET", "http://alice:p%40ss@h.test/", &[], "");
        prepare(&mut r).unwrap();
        assert_eq!(r.uri().to_string(), "http://h.test/");
        let auth = &r.headers()["authorization"];
        assert_eq!(auth, &format!("Basic {}", STANDARD.encode("alice:p@ss")));
        assert!(auth.is_sensitive());
        let mut own = req(
            "GET",
            "http://alice:pw@h.test/",
            &[("authorization", "Bearer t")],
            "",
        );
        prepare(&mut own).unwrap();
        assert_eq!(own.headers()["authorization"], "Bearer t");
        assert_eq!(own.uri().to_string(), "http://h.test/");
    }

    #[test]
    fn extension_methods_pass_and_versions_are_the_backends() {
        let mut r = req("PURGE", "http://h.test/", &[], "");
        *r.version_mut() = Version::HTTP_10;
        prepare(&mut r).unwrap();
        assert_eq!(r.method().as_str(), "PURGE");
        assert_eq!(r.version(), Version::HTTP_11);
    }
}
