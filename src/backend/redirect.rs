//! Redirect following shared by both backends.
//!
//! Rules (those of reqwest and browsers):
//! * 301, 302, 303, 307 and 308 with a `Location` are followed, up to a limit; past it the call
//!   fails with [`ErrorKind::Redirect`]. A 3xx without `Location` is returned as it is.
//! * 303 turns any method but HEAD into GET; 301 and 302 turn POST into GET. A request turned
//!   into GET loses its body and the headers that described it. 307 and 308 keep both.
//! * When the next hop is on another origin (scheme, host or port), every header that
//!   [`redact::is_secret_header`](crate::redact::is_secret_header) names is dropped:
//!   `Authorization`, `Proxy-Authorization`, `Cookie`, API-key and token headers, and every
//!   header with a value marked sensitive (`HeaderValue::set_sensitive`).

use std::future::Future;

use http::header::{self, HeaderMap};
use http::{Method, StatusCode, Uri};

use super::prepare::prepare;
use super::uri;
use crate::{Body, Error, ErrorKind, Request, Response, redact};

/// One exchange, redirects not followed: what each backend gives [`follow`].
pub(crate) trait Exchange: Sync {
    /// Sends `req` once, with `body` as its body, and returns whatever answer comes back, a
    /// redirect included.
    ///
    /// The request is lent, not given: a backend copies only what its library needs, and
    /// [`follow`] keeps the request to build the next hop without copying it first. The body
    /// is given (a stream is read by the library); `req`'s own is what is left for the next
    /// hop.
    fn exchange(
        &self,
        req: &Request,
        body: Body,
    ) -> impl Future<Output = Result<Response, Error>> + Send;
}

// Both backends write their `Doer` impl out by hand and box [`follow`]'s future directly
// (`Execute`): the macro's wrapper future would hold the request a second time, and past 1 KiB
// a boxed future misses glibc's per-thread cache of freed blocks (measured: about 500
// instructions a call).
pub(crate) use crate::doer::Execute;

/// Sends `req` through `backend`, following up to `max` redirects.
///
/// Every hop is settled by [`prepare`] first, so a backend's `exchange` only ever sees a URL in
/// normal form, without userinfo.
pub(crate) async fn follow(
    backend: &impl Exchange,
    mut req: Request,
    max: usize,
) -> Result<Response, Error> {
    prepare(&mut req)?;
    let mut hops = 0;
    loop {
        // A buffered or replayable body is shared with the next hop (O(1)); a one-shot stream
        // goes, and a redirect that would resend it is not followed (see `next_hop`).
        // (With no redirect to follow, the body simply goes.)
        let (body, one_shot_sent) = match req.body().try_clone() {
            Some(body) if max > 0 => (body, false),
            _ => (std::mem::take(req.body_mut()), true),
        };
        // Neither library reads a stream framed `Content-Length: 0`: it is read here, so a
        // stream that is not empty after all (a file that grew) fails as a longer one does.
        let body = if body.is_stream() && body.len() == Some(0) {
            Body::from(body.bytes().await.map_err(|e| e.with_url(req.uri()))?)
        } else {
            body
        };
        let resp = match backend.exchange(&req, body).await {
            Ok(resp) => resp,
            // Past the first hop the request has left: the first server took it and answered
            // with a redirect. `Connect` says "never left", which a retry layer resends for any
            // method, so a later hop that cannot connect fails as the transport failure it is.
            Err(e) if hops > 0 && e.kind() == ErrorKind::Connect => {
                return Err(e.with_kind(ErrorKind::Transport).context(
                    "the request was sent, but its redirect's target could not be reached",
                ));
            }
            Err(e) => return Err(e),
        };
        // Checked by reference first: most answers are not redirects, and then the request
        // is simply dropped rather than moved into `next_hop` and back.
        if max == 0 || !is_redirect(&resp) {
            return Ok(resp);
        }
        let Some(next) = next_hop(req, &resp, one_shot_sent)? else {
            return Ok(resp);
        };
        if hops == max {
            return Err(Error::from(ErrorKind::Redirect)
                .with_message(format!("stopped after {max} redirects"))
                .with_url(next.uri()));
        }
        hops += 1;
        req = next;
    }
}

/// The request to send after `resp`, or `None` when `resp` is not a redirect to follow: a
/// redirect that keeps the body (307, 308) is returned as it is when the body was a one-shot
/// stream, already sent, as reqwest does.
fn next_hop(
    mut req: Request,
    resp: &Response,
    one_shot_sent: bool,
) -> Result<Option<Request>, Error> {
    let status = resp.status();
    let location = match resp.headers().get(header::LOCATION) {
        Some(location) if is_redirect(resp) => location,
        _ => return Ok(None),
    };
    let refuse = |why: &'static str, uri: &Uri| {
        Error::from(ErrorKind::Redirect)
            .with_message(why)
            .with_url(uri)
    };
    let next = target(req.uri(), location.as_bytes()).map_err(|why| refuse(why, req.uri()))?;

    let to_get = match status {
        StatusCode::SEE_OTHER => req.method() != Method::HEAD,
        StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND => req.method() == Method::POST,
        _ => false,
    };
    if one_shot_sent && !to_get {
        return Ok(None);
    }
    if to_get {
        *req.method_mut() = Method::GET;
        *req.body_mut() = Body::empty();
        // RFC 9110 section 15.4: the content-specific fields, and the digests of RFC 9530
        // and RFC 3230 (which `Signing` adds).
        for h in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::CONTENT_LANGUAGE,
            header::CONTENT_LOCATION,
            header::TRANSFER_ENCODING,
            header::LAST_MODIFIED,
        ] {
            req.headers_mut().remove(h);
        }
        for h in ["content-digest", "repr-digest", "digest"] {
            req.headers_mut().remove(h);
        }
    }
    if !same_origin(req.uri(), &next) {
        strip_secrets(req.headers_mut());
        req.headers_mut().remove(header::HOST);
    }
    *req.uri_mut() = next;
    // The server chose this URL: what cannot be sent is the redirect's fault, not the caller's.
    prepare(&mut req).map_err(|e| {
        Error::new(ErrorKind::Redirect, e)
            .with_message("the redirect's target cannot be sent")
            .with_url(req.uri())
    })?;
    Ok(Some(req))
}

/// The URL a `Location` value points to from `base`: resolved by RFC 3986 section 5.2, its
/// fragment dropped (it is never sent), and its userinfo dropped: credentials a server wrote
/// into a `Location` never become credentials.
fn target(base: &Uri, location: &[u8]) -> Result<Uri, &'static str> {
    let location = location.trim_ascii();
    if location.iter().any(|b| b.is_ascii_control()) {
        return Err("the Location header has control characters");
    }
    // Browsers send a Location's spaces and non-ASCII bytes percent-encoded; so do we, so that
    // such a Location resolves instead of failing.
    let mut text = String::with_capacity(location.len());
    for &b in location {
        if b == b' ' || b >= 0x80 {
            text.push_str(&format!("%{b:02X}"));
        } else {
            text.push(b as char);
        }
    }
    let resolved = uri::resolve(&base.to_string(), &text);
    let resolved = resolved.split('#').next().unwrap_or_default();
    let scheme = resolved.split(':').next().unwrap_or_default();
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err("the redirect goes to a scheme other than http or https");
    }
    let uri: Uri = resolved
        .parse()
        .map_err(|_| "the Location header is not a valid URL")?;
    let Some(authority) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err("the Location header names no host");
    };
    match authority.as_str().rsplit_once('@') {
        None => Ok(uri),
        Some((_, host_port)) => {
            let mut parts = uri.clone().into_parts();
            parts.authority = Some(
                host_port
                    .parse()
                    .map_err(|_| "the Location header is not a valid URL")?,
            );
            Uri::from_parts(parts).map_err(|_| "the Location header is not a valid URL")
        }
    }
}

/// Whether `resp` is a redirect to follow: one of the five statuses, with a `Location`.
fn is_redirect(resp: &Response) -> bool {
    matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308)
        && resp.headers().contains_key(header::LOCATION)
}

fn strip_secrets(headers: &mut HeaderMap) {
    // By name, and by value: a value marked sensitive (as `Signing` marks every credential it
    // adds, whatever the header's name) is a credential too.
    let mut secret: Vec<_> = headers
        .iter()
        .filter(|(name, value)| value.is_sensitive() || redact::is_secret_header(name))
        .map(|(name, _)| name.clone())
        .collect();
    secret.dedup();
    for name in secret {
        headers.remove(name);
    }
}

fn origin(uri: &Uri) -> (String, String, u16) {
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    let default = if scheme == "https" { 443 } else { 80 };
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    (scheme, host, uri.port_u16().unwrap_or(default))
}

fn same_origin(a: &Uri, b: &Uri) -> bool {
    origin(a) == origin(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::response;

    fn redirect(status: u16, location: &str) -> Response {
        let mut r = response(status, "");
        r.headers_mut()
            .insert(header::LOCATION, location.parse().unwrap());
        r
    }

    fn post(uri: &str) -> Request {
        http::Request::post(uri)
            .header(header::AUTHORIZATION, "Bearer t")
            .header(header::COOKIE, "sid=1")
            .header("x-api-key", "k")
            .header(header::PROXY_AUTHORIZATION, "Basic p")
            .header("x-auth-token", "t")
            .header("ocp-apim-subscription-key", "s")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("data"))
            .unwrap()
    }

    fn to(base: &str, location: &[u8]) -> Result<String, &'static str> {
        target(&base.parse().unwrap(), location).map(|u| u.to_string())
    }

    #[test]
    fn resolves_every_location_form() {
        let base = "http://h.test:8080/a/b/x?q=1";
        let cases: [(&[u8], &str); 10] = [
            (b"https://o.test/x", "https://o.test/x"),
            (b"//o.test/y", "http://o.test/y"),
            (b"/z?k=v", "http://h.test:8080/z?k=v"),
            (b"c", "http://h.test:8080/a/b/c"),
            (b"../c", "http://h.test:8080/a/c"),
            (b"?p=2", "http://h.test:8080/a/b/x?p=2"),
            // An empty reference is the current URL, without a fragment (RFC 3986 5.2.2).
            (b"", "http://h.test:8080/a/b/x?q=1"),
            (b"#frag", "http://h.test:8080/a/b/x?q=1"),
            (b"/caf\xc3\xa9 x", "http://h.test:8080/caf%C3%A9%20x"),
            (b"  /trimmed  ", "http://h.test:8080/trimmed"),
        ];
        for (loc, want) in cases {
            assert_eq!(
                to(base, loc).unwrap(),
                want,
                "{}",
                String::from_utf8_lossy(loc)
            );
        }
        assert!(to(base, b"http://[bad").is_err());
        assert!(to(base, b"/a\tb").is_err());
    }

    #[test]
    fn a_locations_userinfo_never_becomes_credentials() {
        let next = next_hop(
            http::Request::get("http://h.test/")
                .body(Body::empty())
                .unwrap(),
            &redirect(302, "http://evil:pw@other.test/x"),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(next.uri().to_string(), "http://other.test/x");
        assert!(next.headers().get(header::AUTHORIZATION).is_none());
    }

    #[test]
    fn other_schemes_and_unsendable_targets_are_redirect_errors() {
        for loc in [
            "ftp://h.test/x",
            "gopher://h.test/",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "data:text/plain,hi",
            "http:g",
            "http://h.test:99999/",
            "http://0x7f.1/",
        ] {
            let err = next_hop(post("http://h.test/a"), &redirect(302, loc), false).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Redirect, "{loc}");
        }
    }

    #[test]
    fn see_other_turns_post_into_bodyless_get() {
        let next = next_hop(post("http://h.test/a"), &redirect(303, "/b"), false)
            .unwrap()
            .unwrap();
        assert_eq!(next.method(), Method::GET);
        assert_eq!(next.body().is_empty(), Some(true));
        assert!(next.headers().get(header::CONTENT_TYPE).is_none());
        // Same origin: credentials stay.
        assert_eq!(next.headers()[header::AUTHORIZATION], "Bearer t");
    }

    #[test]
    fn temporary_redirect_keeps_method_and_body() {
        let next = next_hop(post("http://h.test/a"), &redirect(307, "/b"), false)
            .unwrap()
            .unwrap();
        assert_eq!(next.method(), Method::POST);
        assert_eq!(next.body().as_bytes().unwrap(), "data");
    }

    #[test]
    fn cross_origin_drops_every_secret_header() {
        for loc in [
            "http://other.test/b",
            "https://h.test/b",
            "http://h.test:81/b",
        ] {
            let next = next_hop(post("http://h.test/a"), &redirect(308, loc), false)
                .unwrap()
                .unwrap();
            for h in [
                "authorization",
                "proxy-authorization",
                "cookie",
                "x-api-key",
                "x-auth-token",
                "ocp-apim-subscription-key",
            ] {
                assert!(next.headers().get(h).is_none(), "{h} forwarded to {loc}");
            }
            assert_eq!(next.headers()[header::CONTENT_TYPE], "text/plain");
        }
    }

    #[test]
    fn not_a_redirect_or_no_location_stops() {
        assert!(
            next_hop(post("http://h.test/"), &response(200, ""), false)
                .unwrap()
                .is_none()
        );
        assert!(
            next_hop(post("http://h.test/"), &response(302, ""), false)
                .unwrap()
                .is_none()
        );
        assert!(
            next_hop(post("http://h.test/"), &response(304, ""), false)
                .unwrap()
                .is_none()
        );
        let err =
            next_hop(post("http://h.test/"), &redirect(302, "http://[bad"), false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Redirect);
    }

    /// Answers every request with a redirect to `/again`, counting calls.
    struct Loop(std::sync::atomic::AtomicUsize);

    impl Exchange for Loop {
        async fn exchange(&self, _req: &Request, _body: Body) -> Result<Response, Error> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(redirect(302, "/again"))
        }
    }

    #[tokio::test]
    async fn follow_stops_at_the_limit() {
        let backend = Loop(Default::default());
        let get = || {
            http::Request::get("http://h.test/")
                .body(Body::empty())
                .unwrap()
        };
        let err = follow(&backend, get(), 3).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Redirect);
        assert_eq!(backend.0.load(std::sync::atomic::Ordering::SeqCst), 4);
        // With no redirects allowed, the first answer comes back as it is.
        let resp = follow(&backend, get(), 0).await.unwrap();
        assert_eq!(resp.status(), 302);
    }
}
