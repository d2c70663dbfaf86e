//! End-to-end tests of `examples/proxy`: a real backend on loopback that can be switched up and
//! down, the proxy running in this process on 127.0.0.1:0, and real HTTP clients.
//!
//! Time is real here (real sockets), so every wait is bounded and no test asserts a duration.

#[path = "../examples/proxy/config.rs"]
#[allow(dead_code)] // shared with the example binary, which uses items these tests do not
mod config;

#[path = "../examples/proxy/app.rs"]
#[allow(dead_code)]
mod app;

#[path = "../examples/proxy/stack.rs"]
#[allow(dead_code)]
mod stack;

#[path = "../examples/proxy/metrics.rs"]
mod metrics;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Mutex, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// Every wait in these tests ends by this bound at the latest.
const BOUND: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// The backend: a hyper server on loopback that can refuse connections, fail, or answer.
// ---------------------------------------------------------------------------------------------

/// What the backend answers.
///
/// * `/echo`: JSON with the method, path, query, headers and (UTF-8) body it received, plus
///   hop-by-hop response headers that the proxy must remove.
/// * `/raw`: the request body, byte for byte.
/// * `/page`: `page v{N} for {who}`, `who` being the `session` cookie or the `Authorization`
///   value; N is bumped by [`Backend::bump`].
/// * `/big`: 300,000 bytes of a fixed pattern.
/// * `/status/{code}`: that status (a `Location` header for 3xx).
/// * `/slow/{ms}`: waits, then answers `slow done`.
struct Backend {
    addr: SocketAddr,
    state: Arc<BackendState>,
    server: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct BackendState {
    /// Requests received.
    hits: AtomicUsize,
    /// The version served by `/page`.
    version: AtomicUsize,
    /// When not 0, every request is answered with this status.
    failing: AtomicU16,
    /// How many of the next requests are answered with a 500.
    fail_next: AtomicUsize,
    /// When set, about half the requests, picked at random (seeded by arrival order), are
    /// answered with a 503.
    fail_half: AtomicBool,
}

/// A well-mixed bit of `n` (splitmix64's finaliser), for failures "at random" that every run
/// repeats.
fn coin(n: usize) -> bool {
    let mut z = (n as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & 1 == 1
}

const BIG_LEN: usize = 300_000;

fn big_body() -> Bytes {
    (0..BIG_LEN).map(|i| (i * 7 % 251) as u8).collect()
}

impl Backend {
    async fn start() -> Arc<Backend> {
        let listener = listen("127.0.0.1:0".parse().unwrap()).expect("bind the backend");
        let addr = listener.local_addr().unwrap();
        let backend = Arc::new(Backend {
            addr,
            state: Arc::new(BackendState::default()),
            server: Mutex::new(None),
        });
        *backend.server.lock().await = Some(backend.spawn(listener));
        backend
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until the backend has received `n` requests.
    async fn wait_for_hits(&self, n: usize) {
        let reached = tokio::time::timeout(BOUND, async {
            while self.hits() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "the backend got {n} requests within the bound"
        );
    }

    /// Changes what `/page` serves, so a test can tell a fresh answer from a stale one.
    fn bump(&self) {
        self.state.version.fetch_add(1, Ordering::SeqCst);
    }

    /// Answers the next `n` requests with a 500.
    fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Fails about half the requests, at random, with a 503 (or stops doing so).
    fn fail_half(&self, on: bool) {
        self.state.fail_half.store(on, Ordering::SeqCst);
    }

    /// Answers every request with `status` (0: answer normally again).
    fn fail_with(&self, status: u16) {
        self.state.failing.store(status, Ordering::SeqCst);
    }

    /// Closes the listener and every open connection: new connections are refused.
    async fn down(&self) {
        if let Some(server) = self.server.lock().await.take() {
            server.abort();
            let _ = server.await;
        }
    }

    /// Listens again on the same port.
    async fn up(&self) {
        let mut server = self.server.lock().await;
        if server.is_none() {
            let listener = listen(self.addr).expect("re-bind the backend's port");
            *server = Some(self.spawn(listener));
        }
    }

    /// The accept loop; aborting it drops the listener and, with the `JoinSet`, every
    /// connection task.
    fn spawn(&self, listener: tokio::net::TcpListener) -> JoinHandle<()> {
        let state = self.state.clone();
        tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let state = state.clone();
                        connections.spawn(async move {
                            let service = service_fn(move |req| {
                                let state = state.clone();
                                async move { Ok::<_, Infallible>(backend_answer(&state, req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        })
    }
}

/// A listener with `SO_REUSEADDR`, so the backend can come back on its port at once.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn backend_answer(
    state: &BackendState,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let arrival = state.hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reply = |status: u16, body: Bytes| {
        hyper::Response::builder()
            .status(status)
            .body(Full::new(body))
            .unwrap()
    };
    let failing = state.failing.load(Ordering::SeqCst);
    let fail_next = state
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if fail_next {
        return reply(500, Bytes::from_static(b"failing this once"));
    }
    if failing != 0 {
        return reply(failing, Bytes::from(format!("failing with {failing}")));
    }
    if state.fail_half.load(Ordering::SeqCst) && coin(arrival) {
        return reply(503, Bytes::from_static(b"failing at random"));
    }
    let path = parts.uri.path();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["echo"] => {
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, value) in &parts.headers {
                headers
                    .entry(name.as_str().to_owned())
                    .or_default()
                    .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
            }
            let json = serde_json::json!({
                "method": parts.method.as_str(),
                "path": path,
                "query": parts.uri.query(),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            });
            hyper::Response::builder()
                .header("content-type", "application/json")
                .header("connection", "X-Hop")
                .header("x-hop", "must not pass")
                .header("keep-alive", "timeout=5")
                .header("proxy-authenticate", "Basic realm=\"inner\"")
                .header("x-kept", "yes")
                .header("set-cookie", "seen=1; HttpOnly")
                .body(Full::new(Bytes::from(json.to_string())))
                .unwrap()
        }
        ["raw"] => reply(200, body),
        ["page"] => {
            let who = session_of(&parts.headers);
            let version = state.version.load(Ordering::SeqCst);
            reply(200, Bytes::from(format!("page v{version} for {who}")))
        }
        ["big"] => reply(200, big_body()),
        ["status", code] => {
            let code: u16 = code.parse().unwrap_or(400);
            let mut resp = reply(code, Bytes::from(format!("status {code}")));
            if (300..400).contains(&code) {
                resp.headers_mut()
                    .insert("location", "/elsewhere".parse().unwrap());
            }
            resp
        }
        ["slow", ms] => {
            let ms: u64 = ms.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            reply(200, Bytes::from_static(b"slow done"))
        }
        _ => reply(404, Bytes::from_static(b"no such page")),
    }
}

fn session_of(headers: &http::HeaderMap) -> String {
    let cookie = headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("session=").map(str::to_owned));
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    cookie.or(auth).unwrap_or_else(|| "anonymous".to_owned())
}

// ---------------------------------------------------------------------------------------------
// The proxy, in this process.
// ---------------------------------------------------------------------------------------------

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<app::Stopped>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends the shutdown signal and waits (bounded) for the proxy to stop.
    async fn stop(mut self) -> app::Stopped {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(BOUND, self.task)
            .await
            .expect("the proxy stops within the bound")
            .expect("the proxy task does not panic")
    }
}

/// Starts the proxy in front of `backend`, with `settings` over the defaults.
async fn start_proxy(backend: &Backend, settings: &[(&str, &str)]) -> Running {
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    vars.insert("RETTER_SERVER_LISTEN".into(), "127.0.0.1:0".into());
    vars.insert("RETTER_BACKEND_BASEURL".into(), backend.url());
    for (k, v) in settings {
        vars.insert((*k).into(), (*v).into());
    }
    let config =
        config::Config::from_lookup(|name| vars.get(name).cloned()).expect("valid settings");
    let proxy = app::Proxy::bind(config).await.expect("bind the proxy");
    let addr = proxy.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(proxy.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        task,
    }
}

/// A client like a browser's: no system proxy, no redirects followed, a bounded timeout.
fn client() -> reqwest::Client {
    // http-doer builds reqwest without a crypto provider of its own (ring is shared with ureq).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(BOUND)
        .build()
        .unwrap()
}

/// Sends raw bytes and reads the whole answer (the request must ask for `Connection: close`).
async fn raw_exchange(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        answer
    };
    let answer = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("the proxy answers and closes within the bound");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8(answer[..split].to_vec()).unwrap();
    (head, answer[split + 4..].to_vec())
}

fn head_has(head: &str, name: &str) -> bool {
    head.lines().any(|line| {
        line.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    })
}

/// One answer of the proxy, with the headers the breaker tests look at.
#[derive(Debug)]
struct Answer {
    status: u16,
    circuit: String,
    cache: String,
    retry_after: Option<String>,
    age: Option<String>,
    body: Bytes,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.expect("the proxy answers");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let circuit = header("x-circuit").expect("every answer says X-Circuit");
    let cache = header("x-cache").expect("every answer says X-Cache");
    let (retry_after, age) = (header("retry-after"), header("age"));
    Answer {
        status: resp.status().as_u16(),
        circuit,
        cache,
        retry_after,
        age,
        body: resp.bytes().await.unwrap(),
    }
}

/// A GET of `path` as the user whose `session` cookie is `who`.
async fn get_as(client: &reqwest::Client, proxy: &Running, path: &str, who: &str) -> Answer {
    send(
        client
            .get(proxy.url(path))
            .header("cookie", format!("session={who}")),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Forwarding
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn get_and_post_are_forwarded_with_cookies_headers_and_bodies() {
    let backend = Backend::start().await;
    let proxy = start_proxy(&backend, &[]).await;
    let client = client();

    let resp = client
        .get(proxy.url("/echo?x=1&y=two%20words"))
        .header("cookie", "session=alice; theme=dark")
        .header("authorization", "Bearer alice-token")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-custom", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-kept"], "yes");
    assert_eq!(resp.headers()["set-cookie"], "seen=1; HttpOnly");
    let seen: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(seen["method"], "GET");
    assert_eq!(seen["path"], "/echo");
    assert_eq!(seen["query"], "x=1&y=two%20words");
    let h = &seen["headers"];
    assert_eq!(h["cookie"][0], "session=alice; theme=dark");
    assert_eq!(h["authorization"][0], "Bearer alice-token");
    assert_eq!(h["x-custom"][0], "kept");
    assert_eq!(h["x-forwarded-for"][0], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-host"][0], proxy.addr.to_string());
    assert_eq!(h["host"][0], backend.addr.to_string());

    let resp = client
        .post(proxy.url("/echo"))
        .header("cookie", "session=bob")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=bob&note=hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["body"], "name=bob&note=hello");
    assert_eq!(seen["headers"]["cookie"][0], "session=bob");
    assert_eq!(
        seen["headers"]["content-type"][0],
        "application/x-www-form-urlencoded"
    );

    // Binary, larger than any single read: byte for byte both ways.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    let resp = client
        .post(proxy.url("/raw"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), payload);

    let resp = client.get(proxy.url("/big")).send().await.unwrap();
    assert_eq!(resp.bytes().await.unwrap(), big_body());
    proxy.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_both_ways() {
    let backend = Backend::start().await;
    let proxy = start_proxy(&backend, &[]).await;
    let request = "GET /echo HTTP/1.1\r\n\
                   Host: proxy.test\r\n\
                   Connection: close, X-Hop-Req\r\n\
                   X-Hop-Req: private\r\n\
                   Keep-Alive: timeout=9\r\n\
                   Proxy-Authorization: Basic cHJveHk6c2VjcmV0\r\n\
                   TE: trailers\r\n\
                   Upgrade: websocket\r\n\
                   X-End-To-End: kept\r\n\
                   \r\n";
    let (head, body) = raw_exchange(proxy.addr, request).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let sent = seen["headers"].as_object().unwrap();
    for gone in [
        "x-hop-req",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
    ] {
        assert!(!sent.contains_key(gone), "{gone} reached the backend");
    }
    assert_eq!(seen["headers"]["x-end-to-end"][0], "kept");
    assert_eq!(seen["headers"]["x-forwarded-host"][0], "proxy.test");
    // The backend's own hop-by-hop headers stop at the proxy.
    for gone in ["x-hop", "keep-alive", "proxy-authenticate"] {
        assert!(!head_has(&head, gone), "{gone} reached the client:\n{head}");
    }
    assert!(head_has(&head, "x-kept"), "{head}");
    proxy.stop().await;
}

#[tokio::test]
async fn statuses_redirects_and_head_pass_through_unchanged() {
    let backend = Backend::start().await;
    let proxy = start_proxy(&backend, &[]).await;
    let client = client();

    let resp = client.get(proxy.url("/status/404")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.text().await.unwrap(), "status 404");

    let resp = client.get(proxy.url("/status/302")).send().await.unwrap();
    assert_eq!(resp.status(), 302, "a redirect is the client's to follow");
    assert_eq!(resp.headers()["location"], "/elsewhere");

    let resp = client.head(proxy.url("/big")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], BIG_LEN.to_string());
    assert!(resp.bytes().await.unwrap().is_empty());
    proxy.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limits_are_refused() {
    let backend = Backend::start().await;
    let limits = [
        ("RETTER_SERVER_MAX_BODY", "1000"),
        ("RETTER_BACKEND_MAX_BODY", "1000"),
    ];
    let proxy = start_proxy(&backend, &limits).await;
    let client = client();

    let over = send(client.post(proxy.url("/raw")).body(vec![b'x'; 1001])).await;
    assert_eq!((over.status, over.cache.as_str()), (413, "none"));
    assert_eq!(
        backend.hits(),
        0,
        "an oversized request never reaches the backend"
    );

    let at_limit = send(client.post(proxy.url("/raw")).body(vec![b'x'; 1000])).await;
    assert_eq!((at_limit.status, at_limit.cache.as_str()), (200, "backend"));

    let big = send(client.get(proxy.url("/big"))).await;
    assert_eq!(
        big.status, 502,
        "a backend answer over the limit is a bad gateway"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_gets_request_timeout() {
    let backend = Backend::start().await;
    let proxy = start_proxy(&backend, &[("RETTER_SERVER_TIMEOUT_READ", "300ms")]).await;
    // Ten bytes announced, four sent, then silence.
    let request = "POST /raw HTTP/1.1\r\n\
                   Host: proxy.test\r\n\
                   Connection: close\r\n\
                   Content-Length: 10\r\n\
                   \r\n\
                   half";
    let (head, _) = raw_exchange(proxy.addr, request).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("x-cache: none"),
        "{head}"
    );
    assert_eq!(backend.hits(), 0);
    proxy.stop().await;
}

#[tokio::test]
async fn a_slow_backend_gets_a_gateway_timeout() {
    let backend = Backend::start().await;
    let settings = [
        ("RETTER_SERVER_TIMEOUT_WRITE", "300ms"),
        ("RETTER_RETRY_MAX", "0"),
    ];
    let proxy = start_proxy(&backend, &settings).await;
    let slow = send(client().get(proxy.url("/slow/5000"))).await;
    assert_eq!((slow.status, slow.cache.as_str()), (504, "none"));
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_refuses_new_ones() {
    let backend = Backend::start().await;
    let proxy = start_proxy(&backend, &[("RETTER_SERVER_TIMEOUT_GRACESHUT", "10s")]).await;
    let addr = proxy.addr;
    let in_flight = tokio::spawn(client().get(proxy.url("/slow/400")).send());
    // The request must be at the backend before the signal, or it would be a new request.
    backend.wait_for_hits(1).await;

    let stopped = proxy.stop().await;
    assert_eq!(stopped, app::Stopped { unfinished: 0 });
    let resp = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "slow done");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a stopped proxy accepts no connection"
    );
}

#[tokio::test]
async fn shutdown_closes_what_is_left_after_the_grace_period() {
    let backend = Backend::start().await;
    let proxy = start_proxy(&backend, &[("RETTER_SERVER_TIMEOUT_GRACESHUT", "200ms")]).await;
    let in_flight = tokio::spawn(client().get(proxy.url("/slow/60000")).send());
    backend.wait_for_hits(1).await;

    let stopped = proxy.stop().await;
    assert_eq!(stopped, app::Stopped { unfinished: 1 });
    let outcome = tokio::time::timeout(BOUND, in_flight)
        .await
        .expect("the client hears the connection close")
        .unwrap();
    assert!(
        outcome.is_err(),
        "the unfinished request got no answer: {outcome:?}"
    );
}

#[tokio::test]
async fn a_refusing_backend_gets_bad_gateway_until_it_is_back() {
    let backend = Backend::start().await;
    let proxy = start_proxy(&backend, &[("RETTER_RETRY_MAX", "0")]).await;
    let client = client();
    assert_eq!(
        client
            .get(proxy.url("/page"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    backend.down().await;
    let resp = client.get(proxy.url("/page")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.unwrap().contains("connect error"));

    backend.up().await;
    let resp = client.get(proxy.url("/page")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Breaker, retries and stale answers
// ---------------------------------------------------------------------------------------------

/// Settings that make the breaker's behaviour countable: no retries, three failures in a row
/// trip, and the circuit stays open for the whole test unless a test says otherwise.
const COUNTABLE: [(&str, &str); 3] = [
    ("RETTER_RETRY_MAX", "0"),
    ("RETTER_BREAKER_CONSECUTIVE_FAIL", "3"),
    ("RETTER_BREAKER_OPEN_DURATION", "60s"),
];

#[tokio::test]
async fn an_open_circuit_answers_gets_stale_in_full_and_refuses_posts() {
    let backend = Backend::start().await;
    let proxy = start_proxy(&backend, &COUNTABLE).await;
    let client = client();

    let fresh = get_as(&client, &proxy, "/page", "alice").await;
    assert_eq!(
        (fresh.status, fresh.text()),
        (200, "page v0 for alice".into())
    );
    assert_eq!(
        (fresh.circuit.as_str(), fresh.cache.as_str()),
        ("closed", "backend")
    );
    let big = send(client.get(proxy.url("/big"))).await;
    assert_eq!(big.body, big_body());

    backend.fail_with(500);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let failed = send(client.get(proxy.url("/status/200"))).await;
        assert_eq!((failed.status, failed.cache.as_str()), (500, "backend"));
        seen.push(failed.circuit);
    }
    assert_eq!(
        seen,
        ["closed", "closed", "open"],
        "the third failure in a row trips"
    );
    let hits = backend.hits();

    let stale = get_as(&client, &proxy, "/page", "alice").await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.text(), "page v0 for alice");
    assert_eq!(
        (stale.circuit.as_str(), stale.cache.as_str()),
        ("open", "stale")
    );
    assert!(stale.age.is_some(), "a stale answer says its age");

    let big = send(client.get(proxy.url("/big"))).await;
    assert_eq!((big.status, big.cache.as_str()), (200, "stale"));
    assert_eq!(big.body.len(), BIG_LEN);
    assert_eq!(big.body, big_body(), "a stale answer has its full body");

    let post = send(client.post(proxy.url("/raw")).body("order #1")).await;
    assert_eq!(post.status, 503);
    assert_eq!(
        (post.circuit.as_str(), post.cache.as_str()),
        ("open", "none")
    );
    let wait: u64 = post.retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");

    let unseen = send(client.get(proxy.url("/never-fetched"))).await;
    assert_eq!((unseen.status, unseen.cache.as_str()), (503, "none"));
    assert!(unseen.retry_after.is_some());

    assert_eq!(
        backend.hits(),
        hits,
        "an open circuit does not call the backend"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn one_users_cached_page_never_reaches_another() {
    let backend = Backend::start().await;
    let proxy = start_proxy(&backend, &COUNTABLE).await;
    let client = client();
    let bearer = |token: &str| {
        client
            .get(proxy.url("/page"))
            .header("authorization", format!("Bearer {token}"))
    };

    for who in ["alice", "bob"] {
        assert_eq!(
            get_as(&client, &proxy, "/page", who).await.text(),
            format!("page v0 for {who}")
        );
    }
    assert_eq!(
        send(bearer("carol")).await.text(),
        "page v0 for Bearer carol"
    );

    backend.down().await;
    for _ in 0..3 {
        send(client.get(proxy.url("/trip"))).await;
    }

    for who in ["alice", "bob"] {
        let stale = get_as(&client, &proxy, "/page", who).await;
        assert_eq!(
            (stale.status, stale.cache.as_str()),
            (200, "stale"),
            "{who}"
        );
        assert_eq!(stale.text(), format!("page v0 for {who}"));
    }
    let carol = send(bearer("carol")).await;
    assert_eq!(
        (carol.cache.as_str(), carol.text()),
        ("stale", "page v0 for Bearer carol".into())
    );

    // Whoever did not fetch the page before gets no one else's copy.
    let strangers = [
        get_as(&client, &proxy, "/page", "mallory").await,
        send(client.get(proxy.url("/page"))).await,
        send(bearer("dave")).await,
        send(
            client
                .get(proxy.url("/page"))
                .header("cookie", "session=alice")
                .header("authorization", "Bearer carol"),
        )
        .await,
    ];
    for answer in strangers {
        assert_eq!(
            (answer.status, answer.cache.as_str()),
            (503, "none"),
            "{answer:?}"
        );
        assert!(!answer.text().contains("page v0"), "{answer:?}");
    }
    proxy.stop().await;
}

#[tokio::test]
async fn the_circuit_probes_then_closes_when_the_backend_is_back() {
    let backend = Backend::start().await;
    let settings = [
        ("RETTER_RETRY_MAX", "0"),
        ("RETTER_BREAKER_CONSECUTIVE_FAIL", "3"),
        ("RETTER_BREAKER_OPEN_DURATION", "300ms"),
    ];
    let proxy = start_proxy(&backend, &settings).await;
    let client = client();
    get_as(&client, &proxy, "/page", "alice").await;

    backend.down().await;
    for _ in 0..3 {
        send(client.get(proxy.url("/trip"))).await;
    }
    let stale = get_as(&client, &proxy, "/page", "alice").await;
    assert_eq!(
        (stale.circuit.as_str(), stale.cache.as_str()),
        ("open", "stale")
    );

    backend.bump();
    backend.up().await;
    // Past the open period the next call is the one probe; while it is at the backend, the
    // circuit is half-open and everyone else is answered as if open.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let hits = backend.hits();
    let probe = tokio::spawn(send(client.get(proxy.url("/slow/700"))));
    backend.wait_for_hits(hits + 1).await;
    let during = get_as(&client, &proxy, "/page", "alice").await;
    assert_eq!(
        (during.circuit.as_str(), during.cache.as_str()),
        ("half-open", "stale")
    );
    assert_eq!(during.text(), "page v0 for alice");

    let probe = probe.await.unwrap();
    assert_eq!((probe.status, probe.cache.as_str()), (200, "backend"));
    assert_eq!(
        probe.circuit, "closed",
        "a successful probe closes the circuit"
    );

    let fresh = get_as(&client, &proxy, "/page", "alice").await;
    assert_eq!(
        (fresh.circuit.as_str(), fresh.cache.as_str()),
        ("closed", "backend")
    );
    assert_eq!(fresh.text(), "page v1 for alice");
    proxy.stop().await;
}

#[tokio::test]
async fn with_cache_on_failure_a_failed_get_is_answered_stale_while_closed() {
    let backend = Backend::start().await;
    let settings = [
        ("RETTER_RETRY_MAX", "0"),
        ("RETTER_CACHE_ON_FAILURE", "true"),
    ];
    let proxy = start_proxy(&backend, &settings).await;
    let client = client();
    get_as(&client, &proxy, "/page", "alice").await;

    backend.fail_with(503);
    let stale = get_as(&client, &proxy, "/page", "alice").await;
    assert_eq!(
        (stale.status, stale.text()),
        (200, "page v0 for alice".into())
    );
    assert_eq!(
        (stale.circuit.as_str(), stale.cache.as_str()),
        ("closed", "stale")
    );
    let other = get_as(&client, &proxy, "/page", "bob").await;
    assert_eq!(
        (other.status, other.cache.as_str()),
        (503, "backend"),
        "bob has no copy"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn safe_requests_are_retried_and_posts_are_not() {
    let backend = Backend::start().await;
    // Four failures in five calls would trip the default rate rule: keep the circuit out of it.
    let settings = [
        ("RETTER_RETRY_MAX", "2"),
        ("RETTER_BREAKER_MIN_CALLS", "100"),
    ];
    let proxy = start_proxy(&backend, &settings).await;
    let client = client();

    backend.fail_next(2);
    let get = get_as(&client, &proxy, "/page", "alice").await;
    assert_eq!((get.status, get.text()), (200, "page v0 for alice".into()));
    assert_eq!(backend.hits(), 3, "two failures, then the answer");

    backend.fail_next(1);
    let post = send(client.post(proxy.url("/raw")).body("pay 10")).await;
    assert_eq!(
        post.status, 500,
        "a POST that reached the backend is not sent again"
    );
    assert_eq!(backend.hits(), 4);

    backend.fail_next(1);
    let keyed = send(
        client
            .post(proxy.url("/raw"))
            .header("idempotency-key", "pay-10-once")
            .body("pay 10"),
    )
    .await;
    assert_eq!((keyed.status, keyed.text()), (200, "pay 10".into()));
    assert_eq!(backend.hits(), 6, "a POST with Idempotency-Key is retried");
    proxy.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

/// What one load-test client saw.
#[derive(Default)]
struct Tally {
    by_status: BTreeMap<u16, usize>,
    by_source: BTreeMap<String, usize>,
    bad_headers: Vec<String>,
    unanswered: Vec<String>,
    wrong_page: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_with_a_flapping_backend_every_request_is_answered() {
    const CLIENTS: usize = 24;
    const FLIPS: usize = 16;
    const FLIP_EVERY: Duration = Duration::from_millis(150);

    let backend = Backend::start().await;
    let proxy = start_proxy(
        &backend,
        &[
            ("RETTER_BREAKER_OPEN_DURATION", "200ms"),
            ("RETTER_BACKEND_TIMEOUT", "2s"),
            ("RETTER_SERVER_TIMEOUT_WRITE", "5s"),
        ],
    )
    .await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let flipper = {
        let backend = backend.clone();
        let done = done.clone();
        tokio::spawn(async move {
            for flip in 0..FLIPS {
                match flip % 3 {
                    0 => backend.down().await,
                    1 => {
                        backend.up().await;
                        backend.fail_with(500);
                    }
                    _ => {
                        backend.up().await;
                        backend.fail_with(0);
                    }
                }
                tokio::time::sleep(FLIP_EVERY).await;
            }
            backend.up().await;
            backend.fail_with(0);
            done.store(true, Ordering::SeqCst);
        })
    };

    let mut clients = JoinSet::new();
    for id in 0..CLIENTS {
        let url = proxy.url("");
        let done = done.clone();
        clients.spawn(async move {
            let client = client();
            let mut tally = Tally::default();
            let session = format!("client-{id}");
            // Bounded by the flipper's end, and by a count in case the flipper stalls.
            for n in 0..10_000usize {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let req = match n % 3 {
                    0 => client
                        .get(format!("{url}/page"))
                        .header("cookie", format!("session={session}")),
                    1 => client.get(format!("{url}/big")),
                    _ => client.post(format!("{url}/raw")).body(session.clone()),
                };
                match req.send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        *tally.by_status.entry(status).or_default() += 1;
                        let header = |name| {
                            let value = resp.headers().get(name)?;
                            Some(value.to_str().ok()?.to_owned())
                        };
                        let (circuit, cache) = (header("x-circuit"), header("x-cache"));
                        let circuit_ok = circuit
                            .as_deref()
                            .is_some_and(|c| ["closed", "open", "half-open"].contains(&c));
                        let cache_ok = cache
                            .as_deref()
                            .is_some_and(|c| ["backend", "stale", "none"].contains(&c));
                        if !circuit_ok || !cache_ok {
                            tally.bad_headers.push(format!("{circuit:?} {cache:?}"));
                        }
                        *tally
                            .by_source
                            .entry(cache.unwrap_or_default())
                            .or_default() += 1;
                        let body = resp.bytes().await;
                        if status == 200 && n % 3 == 0 {
                            let page = String::from_utf8_lossy(body.as_deref().unwrap_or_default())
                                .into_owned();
                            if !page.ends_with(&format!("for {session}")) {
                                tally.wrong_page.push(page);
                            }
                        }
                    }
                    Err(e) => tally.unanswered.push(e.to_string()),
                }
            }
            tally
        });
    }

    let mut total = Tally::default();
    let all = tokio::time::timeout(BOUND * 2, async {
        while let Some(tally) = clients.join_next().await {
            let tally = tally.expect("a client task does not panic");
            for (status, n) in tally.by_status {
                *total.by_status.entry(status).or_default() += n;
            }
            for (source, n) in tally.by_source {
                *total.by_source.entry(source).or_default() += n;
            }
            total.bad_headers.extend(tally.bad_headers);
            total.unanswered.extend(tally.unanswered);
            total.wrong_page.extend(tally.wrong_page);
        }
    })
    .await;
    assert!(all.is_ok(), "every client finished within the bound");
    tokio::time::timeout(BOUND, flipper)
        .await
        .expect("the flipper ends")
        .unwrap();

    let answered: usize = total.by_status.values().sum();
    println!(
        "load: {answered} answers; by status {:?}; by X-Cache {:?}",
        total.by_status, total.by_source
    );
    assert!(
        total.bad_headers.is_empty(),
        "bad X-Circuit/X-Cache: {:?}",
        total.bad_headers
    );
    assert!(
        total.unanswered.is_empty(),
        "requests without an answer: {:?}",
        total.unanswered
    );
    assert!(
        total.wrong_page.is_empty(),
        "pages of another session: {:?}",
        total.wrong_page
    );
    assert!(answered >= CLIENTS, "the clients made progress");
    for status in total.by_status.keys() {
        assert!(
            [200, 500, 502, 503, 504].contains(status),
            "unexpected status {status}"
        );
    }
    // The proxy survived: once the backend is steady, it answers again (bounded poll).
    let client = client();
    let mut recovered = false;
    for _ in 0..100 {
        let resp = client.get(proxy.url("/page")).send().await.unwrap();
        if resp.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the proxy answers 200 once the backend is back");
    proxy.stop().await;
}

/// A chunked body of `len` bytes sent in 16 KiB pieces, so its length is unknown to the proxy.
fn chunked_upload(len: usize) -> reqwest::Body {
    let piece = Bytes::from(vec![b'u'; 16 * 1024]);
    let mut left = len;
    let pieces = std::iter::from_fn(move || {
        let n = left.min(piece.len());
        left -= n;
        (n > 0).then(|| Ok::<_, Infallible>(piece.slice(..n)))
    });
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

#[tokio::test]
async fn request_bodies_of_unknown_length_stream_through_within_the_limit() {
    let backend = Backend::start().await;
    let proxy = start_proxy(&backend, &[("RETTER_SERVER_MAX_BODY", "3000000")]).await;
    let client = client();

    // Larger than the part the proxy would buffer, of unknown length: streamed to the backend.
    let len = 2_000_000;
    let resp = client
        .post(proxy.url("/raw"))
        .body(chunked_upload(len))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-cache"], "backend");
    let echoed = resp.bytes().await.unwrap();
    assert_eq!(echoed.len(), len);
    assert!(echoed.iter().all(|&b| b == b'u'));

    // Past the limit while streaming: refused with 413, whatever reached the backend.
    let over = send(
        client
            .post(proxy.url("/raw"))
            .body(chunked_upload(3_500_000)),
    )
    .await;
    assert_eq!((over.status, over.cache.as_str()), (413, "none"));
    proxy.stop().await;
}

#[tokio::test]
async fn metrics_are_served_with_the_semantic_conventions_buckets() {
    // The one test of this binary that installs a recorder: the process's only one.
    let prometheus = metrics::install().expect("no other recorder in this test binary");
    let backend = Backend::start().await;
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    vars.insert("RETTER_SERVER_LISTEN".into(), "127.0.0.1:0".into());
    vars.insert("RETTER_BACKEND_BASEURL".into(), backend.url());
    let config = config::Config::from_lookup(|name| vars.get(name).cloned()).unwrap();
    let proxy = app::Proxy::bind(config)
        .await
        .unwrap()
        .serve_metrics(move || prometheus.render());
    let addr = proxy.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(proxy.run(async move {
        let _ = stopped.await;
    }));
    let running = Running {
        addr,
        stop: Some(stop),
        task,
    };
    let client = client();

    let forwarded = send(client.get(running.url("/echo"))).await;
    assert_eq!(forwarded.status, 200);
    let resp = client.get(running.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    // The backend's own /metrics is not asked: the proxy answered.
    assert_eq!(backend.hits(), 1, "only /echo reached the backend");

    let buckets: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_client_request_duration_seconds_bucket{"))
        .filter(|l| l.contains("http_response_status_code=\"200\""))
        .collect();
    assert!(!buckets.is_empty(), "no duration histogram in:\n{text}");
    // Every bound the semantic conventions recommend, and no other, on one series.
    let first_series = buckets[0].split(",le=").next().unwrap();
    let bounds: Vec<String> = buckets
        .iter()
        .filter(|l| l.starts_with(first_series))
        .filter_map(|l| {
            l.split("le=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .collect();
    let mut expected: Vec<String> = http_doer::telemetry::names::DURATION_BUCKETS
        .iter()
        .map(f64::to_string)
        .collect();
    expected.push("+Inf".to_owned());
    assert_eq!(bounds, expected, "bucket bounds of {first_series}");
    assert!(
        text.contains("# HELP http_client_request_duration_seconds"),
        "described: {text}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_backend_failing_half_at_random_opens_the_circuit_and_gets_are_served_stale() {
    // The breaker's own defaults (5 failures in a row, or a 66 % failure rate); no retries, so
    // that each GET is one request and the run is short.
    let backend = Backend::start().await;
    let proxy = start_proxy(&backend, &[("RETTER_RETRY_MAX", "0")]).await;
    let client = client();
    let fresh = get_as(&client, &proxy, "/page", "alice").await;
    assert_eq!((fresh.status, fresh.cache.as_str()), (200, "backend"));

    backend.fail_half(true);
    let mut answers = Vec::new();
    for _ in 0..300 {
        let got = get_as(&client, &proxy, "/page", "alice").await;
        let open = got.circuit == "open";
        answers.push((got.status, got.cache));
        if open {
            break;
        }
    }
    let failed = answers.iter().filter(|(status, _)| *status == 503).count();
    assert!(
        answers.len() < 300,
        "five failures in a row never came in 300 calls failing half the time"
    );
    assert!(failed >= 5, "{answers:?}");
    // The call that tripped the circuit was itself a failure, answered as it came.
    let (status, cache) = answers.last().unwrap();
    assert_eq!((*status, cache.as_str()), (503, "backend"), "{answers:?}");

    let hits = backend.hits();
    for _ in 0..20 {
        let stale = get_as(&client, &proxy, "/page", "alice").await;
        assert_eq!(
            (stale.status, stale.circuit.as_str(), stale.cache.as_str()),
            (200, "open", "stale")
        );
        assert_eq!(stale.text(), "page v0 for alice");
    }
    assert_eq!(
        backend.hits(),
        hits,
        "an open circuit does not call the backend"
    );
    proxy.stop().await;
}
