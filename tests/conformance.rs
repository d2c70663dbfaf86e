//! The backend conformance suite: every case is written once, as a generic function over
//! [`Backend`], and run against both `ReqwestDoer` and `UreqDoer` over real loopback servers
//! (`support::server` for ordinary exchanges, `support::faults` for misbehaving peers).
//!
//! Each fault asserts one exact `ErrorKind`, so both backends must report it the same way.
//! The servers run on the test's own single-threaded runtime, so every `UreqDoer` case also
//! shows that its blocking I/O stays off the async thread: otherwise the server could not answer.

mod support;

use std::time::Duration;

use http::{HeaderValue, Method, header};
use http_doer::{Body, Doer, ErrorKind, Request, ReqwestDoer, Response, UreqDoer};
use support::faults::{self, Fault, refused_url};
use support::server::{self, GZIP_HELLO, pattern};

/// What the suite needs from a backend besides `Doer`: its constructor and the settings both
/// backends share.
trait Backend: Doer + Sized {
    fn new() -> Self;
    fn max_body_size(self, bytes: u64) -> Self;
    fn max_redirects(self, n: usize) -> Self;
    fn timeout(self, timeout: Option<Duration>) -> Self;
    fn max_response_headers(self, n: usize) -> Self;
}

impl Backend for ReqwestDoer {
    fn new() -> Self {
        ReqwestDoer::new()
    }
    fn max_body_size(self, bytes: u64) -> Self {
        self.max_body_size(bytes)
    }
    fn max_redirects(self, n: usize) -> Self {
        self.max_redirects(n)
    }
    fn timeout(self, timeout: Option<Duration>) -> Self {
        self.timeout(timeout)
    }
    fn max_response_headers(self, n: usize) -> Self {
        self.max_response_headers(n)
    }
}

impl Backend for UreqDoer {
    fn new() -> Self {
        UreqDoer::new()
    }
    fn max_body_size(self, bytes: u64) -> Self {
        self.max_body_size(bytes)
    }
    fn max_redirects(self, n: usize) -> Self {
        self.max_redirects(n)
    }
    fn timeout(self, timeout: Option<Duration>) -> Self {
        self.timeout(timeout)
    }
    fn max_response_headers(self, n: usize) -> Self {
        self.max_response_headers(n)
    }
}

/// Stamps every case below as one `#[tokio::test]` per backend.
macro_rules! for_each_backend {
    ($($case:ident),+ $(,)?) => {
        mod reqwest_backend {
            $(#[tokio::test] async fn $case() { super::$case::<http_doer::ReqwestDoer>().await })+
        }
        mod ureq_backend {
            $(#[tokio::test] async fn $case() { super::$case::<http_doer::UreqDoer>().await })+
        }
    };
}

for_each_backend!(
    every_common_method_reaches_the_server,
    head_returns_headers_without_a_body,
    error_statuses_are_responses,
    headers_round_trip_byte_for_byte,
    bodies_round_trip_byte_for_byte,
    encoded_bodies_come_back_as_sent,
    body_limit_holds_with_and_without_content_length,
    default_body_limit_is_ten_mib,
    connection_refused_is_connect,
    https_to_a_plain_server_is_tls,
    stalled_server_is_timeout,
    reset_mid_headers_is_transport,
    reset_mid_body_is_body,
    truncated_body_is_body,
    garbage_is_transport,
    relative_or_hostless_url_is_invalid_request,
    redirects_are_followed_up_to_the_limit,
    see_other_turns_post_into_get_and_307_keeps_it,
    zero_max_redirects_returns_the_redirect,
    credentials_stay_on_their_origin,
    framing_headers_that_disagree_with_the_body_are_invalid_request,
    out_of_range_ports_are_invalid_request,
    extension_methods_are_sent,
    url_userinfo_becomes_basic_and_never_reaches_the_library,
    a_locations_userinfo_never_becomes_credentials,
    relative_locations_resolve_by_rfc3986,
    redirects_to_other_schemes_are_redirect_errors,
    unresolvable_host_is_connect,
    response_header_lines_have_one_limit,
);

fn request(method: Method, url: &str, body: impl Into<Body>) -> Request {
    http::Request::builder()
        .method(method)
        .uri(url)
        .body(body.into())
        .expect("a valid request")
}

async fn get(doer: &impl Doer, url: &str) -> Response {
    let req = request(Method::GET, url, Body::empty());
    match doer.execute(req).await {
        Ok(resp) => resp,
        Err(e) => panic!("GET {url} failed: {e}"),
    }
}

/// The kind of the error a GET of `url` fails with; a response is a test failure.
async fn error_kind(doer: &impl Doer, url: &str) -> ErrorKind {
    match doer.execute(request(Method::GET, url, Body::empty())).await {
        Ok(resp) => panic!("GET {url}: expected an error, got {}", resp.status()),
        Err(e) => e.kind(),
    }
}

/// Asserts that `D::new()` fails with `want` against a server that misbehaves with `fault`.
async fn assert_fault<D: Backend>(fault: Fault, want: ErrorKind) {
    let server = faults::start(fault).await;
    let kind = error_kind(&D::new(), &server.url("/")).await;
    assert_eq!(kind, want, "{fault:?}");
}

async fn body_of(resp: Response) -> bytes::Bytes {
    resp.into_body().bytes().await.expect("a buffered body")
}

async fn every_common_method_reaches_the_server<D: Backend>() {
    let server = server::start().await;
    let doer = D::new();
    for method in [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        let sent = match method {
            Method::GET | Method::HEAD | Method::OPTIONS => String::new(),
            _ => format!("{method} payload"),
        };
        let req = request(method.clone(), &server.url("/echo"), sent.clone());
        let resp = doer.execute(req).await.expect("an answer");
        assert_eq!(resp.status(), 200, "{method}");
        assert_eq!(resp.headers()["x-echo-method"], method.as_str());
        // A body is framed by its length; a method without one sends no framing at all.
        let framing = resp.headers().get("x-echo-content-length");
        if sent.is_empty() {
            assert!(framing.is_none(), "{method}: {framing:?}");
        } else {
            assert_eq!(framing.unwrap(), sent.len().to_string().as_str());
        }
        assert_eq!(body_of(resp).await, sent.as_bytes(), "{method}");
    }
}

async fn head_returns_headers_without_a_body<D: Backend>() {
    let server = server::start().await;
    // The declared length is that of the GET body; it must not trip the body limit.
    let doer = D::new().max_body_size(10);
    let req = request(Method::HEAD, &server.url("/bytes/5000"), Body::empty());
    let resp = doer.execute(req).await.expect("a HEAD answer");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[header::CONTENT_LENGTH], "5000");
    assert!(body_of(resp).await.is_empty());
}

async fn error_statuses_are_responses<D: Backend>() {
    let server = server::start().await;
    let doer = D::new();
    for code in [200u16, 204, 404, 500, 503] {
        let resp = get(&doer, &server.url(&format!("/status/{code}"))).await;
        assert_eq!(resp.status(), code);
        let want = if code == 204 {
            String::new()
        } else {
            format!("status {code}")
        };
        assert_eq!(body_of(resp).await, want.as_bytes(), "{code}");
    }
}

async fn headers_round_trip_byte_for_byte<D: Backend>() {
    let server = server::start().await;
    let sent: Vec<(&str, HeaderValue)> = vec![
        ("x-plain", HeaderValue::from_static("hello")),
        ("x-inner-space", HeaderValue::from_static("a  b\tc")),
        (
            "x-punct",
            HeaderValue::from_static("!#$%&'*+-.^_`|~ \"q\" (c) <>@,;:/[]?={}"),
        ),
        (
            "x-opaque",
            HeaderValue::from_bytes(b"a\x80\xfe\xffz").expect("obs-text is allowed"),
        ),
        ("x-multi", HeaderValue::from_static("one")),
        ("x-multi", HeaderValue::from_static("two")),
        ("x-long", HeaderValue::from_str(&"v".repeat(4096)).unwrap()),
    ];
    let mut req = request(Method::GET, &server.url("/echo"), Body::empty());
    for (name, value) in &sent {
        req.headers_mut().append(*name, value.clone());
    }
    let resp = D::new().execute(req).await.expect("an answer");
    for name in [
        "x-plain",
        "x-inner-space",
        "x-punct",
        "x-opaque",
        "x-multi",
        "x-long",
    ] {
        let want: Vec<&[u8]> = sent
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_bytes())
            .collect();
        let got: Vec<&[u8]> = resp
            .headers()
            .get_all(format!("x-echo-{name}"))
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

async fn bodies_round_trip_byte_for_byte<D: Backend>() {
    let server = server::start().await;
    let doer = D::new();
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let five_mb = pattern(5 * 1024 * 1024);
    for sent in [every_byte, Vec::new(), five_mb] {
        let req = request(Method::POST, &server.url("/echo"), sent.clone());
        let resp = doer.execute(req).await.expect("an answer");
        assert_eq!(resp.status(), 200);
        let length = sent.len().to_string();
        assert_eq!(resp.headers()["x-echo-content-length"], length.as_str());
        let got = body_of(resp).await;
        assert!(got == sent, "{} bytes sent, {} back", sent.len(), got.len());
    }
    for path in ["/bytes/100000", "/chunked/100000"] {
        let got = body_of(get(&doer, &server.url(path)).await).await;
        assert!(got == pattern(100_000), "{path}: {} bytes", got.len());
    }
}

/// Neither backend asks for or decodes a `Content-Encoding` on its own: the caller gets the
/// bytes the server sent, with the headers that describe them.
async fn encoded_bodies_come_back_as_sent<D: Backend>() {
    let server = server::start().await;
    let doer = D::new();
    let echo = get(&doer, &server.url("/echo")).await;
    assert!(echo.headers().get("x-echo-accept-encoding").is_none());

    let resp = get(&doer, &server.url("/gzip")).await;
    assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
    let length = GZIP_HELLO.len().to_string();
    assert_eq!(resp.headers()[header::CONTENT_LENGTH], length.as_str());
    assert_eq!(body_of(resp).await, GZIP_HELLO);
}

async fn body_limit_holds_with_and_without_content_length<D: Backend>() {
    let server = server::start().await;
    let doer = D::new().max_body_size(1000);
    for path in ["/bytes/1000", "/chunked/1000"] {
        let resp = get(&doer, &server.url(path)).await;
        assert_eq!(body_of(resp).await.len(), 1000, "{path}");
    }
    for path in ["/bytes/1001", "/chunked/1001", "/chunked/100000"] {
        assert_eq!(
            error_kind(&doer, &server.url(path)).await,
            ErrorKind::TooLarge,
            "{path}"
        );
    }
}

async fn default_body_limit_is_ten_mib<D: Backend>() {
    let server = server::start().await;
    let exactly = get(
        &D::new(),
        &server.url(&format!("/chunked/{}", 10 * 1024 * 1024)),
    )
    .await;
    assert_eq!(body_of(exactly).await.len(), 10 * 1024 * 1024);
    let url = server.url(&format!("/chunked/{}", 10 * 1024 * 1024 + 1));
    assert_eq!(error_kind(&D::new(), &url).await, ErrorKind::TooLarge);
}

async fn connection_refused_is_connect<D: Backend>() {
    assert_eq!(
        error_kind(&D::new(), &refused_url()).await,
        ErrorKind::Connect
    );
}

async fn https_to_a_plain_server_is_tls<D: Backend>() {
    // A handshake that cannot succeed fails the same way every time: `Tls`, never `Connect`,
    // so no retry layer sends it again.
    let server = server::start().await;
    let url = server.url("/status/200").replacen("http://", "https://", 1);
    assert_eq!(error_kind(&D::new(), &url).await, ErrorKind::Tls);
}

async fn stalled_server_is_timeout<D: Backend>() {
    let doer = D::new().timeout(Some(Duration::from_millis(250)));
    for fault in [Fault::Stall, Fault::StallMidBody] {
        let server = faults::start(fault).await;
        let kind = error_kind(&doer, &server.url("/")).await;
        assert_eq!(kind, ErrorKind::Timeout, "{fault:?}");
    }
}

async fn reset_mid_headers_is_transport<D: Backend>() {
    assert_fault::<D>(Fault::ResetMidHeaders, ErrorKind::Transport).await;
}

async fn reset_mid_body_is_body<D: Backend>() {
    assert_fault::<D>(Fault::ResetMidBody, ErrorKind::Body).await;
}

async fn truncated_body_is_body<D: Backend>() {
    assert_fault::<D>(Fault::TruncatedBody, ErrorKind::Body).await;
}

async fn garbage_is_transport<D: Backend>() {
    assert_fault::<D>(Fault::Garbage, ErrorKind::Transport).await;
}

async fn relative_or_hostless_url_is_invalid_request<D: Backend>() {
    let doer = D::new();
    // `http::Uri` cannot hold a scheme without an authority, but it can hold an empty host.
    for url in [
        "/relative",
        "//h.test/no-scheme",
        "*",
        "h.test:80",
        "http://:80/",
        "http://user@:8080/x",
        "ftp://h.test/file",
        "mailto:a@h.test",
    ] {
        assert_eq!(
            error_kind(&doer, url).await,
            ErrorKind::InvalidRequest,
            "{url}"
        );
    }
}

async fn redirects_are_followed_up_to_the_limit<D: Backend>() {
    let server = server::start().await;
    let by_default = D::new();
    let resp = get(&by_default, &server.url("/redirect/10")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-echo-uri"], "/redirect/0");
    let kind = error_kind(&by_default, &server.url("/redirect/11")).await;
    assert_eq!(kind, ErrorKind::Redirect);

    let two = D::new().max_redirects(2);
    assert_eq!(get(&two, &server.url("/redirect/2")).await.status(), 200);
    let kind = error_kind(&two, &server.url("/redirect/3")).await;
    assert_eq!(kind, ErrorKind::Redirect);
}

async fn see_other_turns_post_into_get_and_307_keeps_it<D: Backend>() {
    let server = server::start().await;
    let doer = D::new();
    let post = |status: u16| {
        let mut req = request(
            Method::POST,
            &server.url(&format!("/to?status={status}&url=/echo")),
            "form=1",
        );
        req.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        req
    };

    let resp = doer.execute(post(303)).await.expect("an answer");
    assert_eq!(resp.headers()["x-echo-method"], "GET");
    assert!(resp.headers().get("x-echo-content-type").is_none());
    assert!(body_of(resp).await.is_empty());

    let resp = doer.execute(post(307)).await.expect("an answer");
    assert_eq!(resp.headers()["x-echo-method"], "POST");
    assert_eq!(body_of(resp).await, "form=1");
}

async fn zero_max_redirects_returns_the_redirect<D: Backend>() {
    let server = server::start().await;
    let resp = get(&D::new().max_redirects(0), &server.url("/redirect/1")).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()[header::LOCATION], "/redirect/0");
}

async fn credentials_stay_on_their_origin<D: Backend>() {
    const SECRETS: [&str; 3] = ["authorization", "cookie", "x-api-key"];
    let (a, b) = (server::start().await, server::start().await);
    let doer = D::new();
    let send = |method: Method, status: u16, target: String| {
        let url = a.url(&format!("/to?status={status}&url={target}"));
        let mut req = request(method, &url, Body::empty());
        let headers = req.headers_mut();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0k"),
        );
        headers.insert(header::COOKIE, HeaderValue::from_static("sid=c00k"));
        headers.insert("x-api-key", HeaderValue::from_static("k3y"));
        headers.insert("x-trace", HeaderValue::from_static("t-1"));
        doer.execute(req)
    };

    for (status, target) in [(302, "/echo".to_owned()), (307, a.url("/echo"))] {
        let resp = send(Method::GET, status, target).await.expect("an answer");
        for name in SECRETS {
            let echoed = resp.headers().get(format!("x-echo-{name}"));
            assert!(echoed.is_some(), "{name} dropped on a same-origin {status}");
        }
    }
    for (method, status) in [(Method::GET, 302), (Method::POST, 307), (Method::PUT, 308)] {
        let resp = send(method.clone(), status, b.url("/echo"))
            .await
            .expect("an answer");
        assert_eq!(resp.headers()["x-echo-method"], method.as_str());
        assert_eq!(resp.headers()["x-echo-x-trace"], "t-1");
        for name in SECRETS {
            let echoed = resp.headers().get(format!("x-echo-{name}"));
            assert!(
                echoed.is_none(),
                "{name} sent to another origin on {status}"
            );
        }
    }
}

/// Hardening #1: a caller's framing header that disagrees with the body is refused before
/// anything is sent, at once (not after the exchange timeout), on both backends alike.
async fn framing_headers_that_disagree_with_the_body_are_invalid_request<D: Backend>() {
    let server = server::start().await;
    let doer = D::new().timeout(Some(Duration::from_secs(30)));
    let send = |body: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let mut req = request(Method::POST, &server.url("/echo"), body);
        for (name, value) in headers {
            req.headers_mut()
                .append(*name, HeaderValue::from_static(value));
        }
        doer.execute(req)
    };
    let forty = "0123456789012345678901234567890123456789";
    for (body, headers) in [
        ("", &[("content-length", "5")][..]),
        (forty, &[("content-length", "5")]),
        ("body", &[("content-length", "4x")]),
        ("body", &[("content-length", "4"), ("content-length", "5")]),
        ("body", &[("transfer-encoding", "chunked")]),
        ("body", &[("host", "other.test")]),
        (
            "body",
            &[("connection", "upgrade"), ("upgrade", "websocket")],
        ),
    ] {
        let started = std::time::Instant::now();
        let err = send(body, headers).await.expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{headers:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{headers:?} waited"
        );
    }
    // Agreeing values are sent once.
    let resp = send("body", &[("content-length", "4"), ("content-length", "4")])
        .await
        .expect("an answer");
    assert_eq!(resp.headers()["x-echo-content-length"], "4");
    assert_eq!(
        resp.headers()
            .get_all("x-echo-content-length")
            .iter()
            .count(),
        1
    );
    assert_eq!(body_of(resp).await, "body");
}

/// Hardening #2: `http::Uri` accepts `:99999`; neither backend sends it anywhere.
async fn out_of_range_ports_are_invalid_request<D: Backend>() {
    for url in ["http://127.0.0.1:99999/", "http://127.0.0.1:0/"] {
        let mut req = request(Method::GET, url, Body::empty());
        req.headers_mut()
            .insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        let err = D::new().execute(req).await.expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{url}");
    }
}

/// Hardening #3: extension methods are sent, never a host failure.
async fn extension_methods_are_sent<D: Backend>() {
    let server = server::start().await;
    for method in ["PURGE", "PROPFIND", "REPORT", "M-SEARCH"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let resp = D::new()
            .execute(request(method.clone(), &server.url("/echo"), Body::empty()))
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(resp.headers()["x-echo-method"], method.as_str());
    }
}

/// Hardening #4: userinfo is sent as `Authorization: Basic` (percent-decoded) by both, unless
/// the caller set `Authorization`; the URL that reaches the server has none.
async fn url_userinfo_becomes_basic_and_never_reaches_the_library<D: Backend>() {
    let server = server::start().await;
    let url = server
        .url("/echo")
        .replace("http://", "http://al%40ce:p%3Aw@");
    let resp = get(&D::new(), &url).await;
    // base64("al@ce:p:w")
    assert_eq!(resp.headers()["x-echo-authorization"], "Basic YWxAY2U6cDp3");
    assert_eq!(resp.headers()["x-echo-uri"], "/echo");
    let mut req = request(Method::GET, &url, Body::empty());
    req.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer mine"),
    );
    let resp = D::new().execute(req).await.expect("an answer");
    assert_eq!(resp.headers()["x-echo-authorization"], "Bearer mine");
}

/// Hardening #5: credentials a server writes into a `Location` are never sent.
async fn a_locations_userinfo_never_becomes_credentials<D: Backend>() {
    let (a, b) = (server::start().await, server::start().await);
    let evil = b.url("/echo").replace("http://", "http://evil:pw@");
    let resp = get(&D::new(), &a.url(&format!("/to?status=302&url={evil}"))).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-echo-authorization").is_none());
}

/// Hardening #6: `Location` references resolve by RFC 3986 section 5.2 on both backends.
async fn relative_locations_resolve_by_rfc3986<D: Backend>() {
    let server = server::start().await;
    // The server's /to route sends `Location: <url>`; /echo names the path it was asked for.
    for (from, location, want) in [
        ("/to/a/b/x", "../../../echo/c", "/echo/c"),
        ("/to/a/b/x", "../../../echo/./d/../e", "/echo/e"),
        ("/to/x", "/echo/%2e%2E/echo/f", "/echo/f"),
        ("/to/x", "//HOST/echo/g", "/echo/g"),
    ] {
        let location = location.replace("HOST", &server.url("").replace("http://", ""));
        let url = server.url(&format!("{from}?status=302&url={location}"));
        let resp = get(&D::new(), &url).await;
        assert_eq!(resp.headers()["x-echo-uri"], want, "{from} + {location}");
    }
    // An empty Location is the current URL: a 302 to itself, twice, hits the redirect limit
    // with the same URL, not `/`.
    let url = server.url("/to?status=302&url=");
    let err = D::new()
        .max_redirects(2)
        .execute(request(Method::GET, &url, Body::empty()))
        .await
        .expect_err("a loop");
    assert_eq!(err.kind(), ErrorKind::Redirect);
    assert!(err.to_string().contains("/to?status=302&url="), "{err}");
}

/// Hardening #7: a redirect to a scheme a Doer cannot follow is `Redirect`, not the caller's
/// `InvalidRequest`.
async fn redirects_to_other_schemes_are_redirect_errors<D: Backend>() {
    let server = server::start().await;
    for target in [
        "ftp://127.0.0.1/f",
        "gopher://127.0.0.1/",
        "javascript:x",
        "file:///etc/passwd",
        "data:,x",
    ] {
        let url = server.url(&format!("/to?status=302&url={target}"));
        assert_eq!(
            error_kind(&D::new(), &url).await,
            ErrorKind::Redirect,
            "{target}"
        );
    }
}

/// Hardening #8: a name that cannot be resolved is `Connect` on both backends, so a retry layer
/// treats it alike. `x..y` has an empty label, which the system resolver refuses on the spot,
/// so no query leaves the machine.
async fn unresolvable_host_is_connect<D: Backend>() {
    assert_eq!(
        error_kind(&D::new(), "http://x..y/").await,
        ErrorKind::Connect
    );
}

/// Hardening #9: one documented limit on response header lines, one error kind.
async fn response_header_lines_have_one_limit<D: Backend>() {
    let server = server::start().await;
    let lines = |n: usize| server.url(&format!("/headers/{n}"));
    // hyper adds a `date` line too: 100 in all is the default limit.
    assert_eq!(get(&D::new(), &lines(99)).await.status(), 200);
    assert_eq!(
        error_kind(&D::new(), &lines(101)).await,
        ErrorKind::TooLarge
    );
    assert_eq!(
        error_kind(&D::new(), &lines(200)).await,
        ErrorKind::TooLarge
    );
    let raised = D::new().max_response_headers(128);
    assert_eq!(get(&raised, &lines(120)).await.status(), 200);
    assert_eq!(error_kind(&raised, &lines(140)).await, ErrorKind::TooLarge);
    let lowered = D::new().max_response_headers(10);
    assert_eq!(error_kind(&lowered, &lines(20)).await, ErrorKind::TooLarge);
}

/// `UreqDoer::with_agent` overrides, per request, the two agent settings that would break the
/// Doer contract: ureq's defaults turn a 4xx/5xx into an error and follow redirects themselves.
#[tokio::test]
async fn ureq_agent_with_defaults_still_keeps_the_contract() {
    let server = server::start().await;
    let doer = UreqDoer::with_agent(ureq::Agent::new_with_defaults());
    assert_eq!(get(&doer, &server.url("/status/500")).await.status(), 500);
    let zero = doer.clone().max_redirects(0);
    assert_eq!(get(&zero, &server.url("/redirect/1")).await.status(), 302);
}
