//! The proxy example against what a hostile client or operator sends: request targets with
//! dot segments (which must not climb out of the backend's base path), a chosen `Host` (whose
//! stale page must not reach another site's visitors), a setting too large for a clock, and a
//! backend URL's password, never shown in the settings' `Debug` nor in an error.

#[path = "../examples/proxy/config.rs"]
#[allow(dead_code)]
mod config;

#[path = "../examples/proxy/app.rs"]
#[allow(dead_code)]
mod app;

#[path = "../examples/proxy/stack.rs"]
#[allow(dead_code)]
mod stack;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const BOUND: Duration = Duration::from_secs(10);

/// A raw backend: each request head goes to `answer`, whose text is sent back; heads recorded.
async fn backend(
    answer: impl Fn(&str) -> String + Send + Sync + 'static,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let answer = Arc::new(answer);
    let s = seen.clone();
    tokio::spawn(async move {
        for _ in 0..100 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (answer, s) = (answer.clone(), s.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tokio::time::timeout(BOUND, stream.read(&mut chunk)).await {
                        Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&buf).into_owned();
                let out = answer(&head);
                s.lock().unwrap().push(head);
                let _ = stream.write_all(out.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, seen)
}

fn reply(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn settings(backend: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    vars.insert("RETTER_SERVER_LISTEN".to_owned(), "127.0.0.1:0".to_owned());
    vars.insert("RETTER_BACKEND_BASEURL".to_owned(), backend.to_owned());
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

async fn start(config: config::Config) -> (SocketAddr, oneshot::Sender<()>) {
    let proxy = app::Proxy::bind(config).await.unwrap();
    let addr = proxy.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(proxy.run(async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn start_proxy(backend: &str, extra: &[(&str, &str)]) -> (SocketAddr, oneshot::Sender<()>) {
    let vars = settings(backend, extra);
    start(config::Config::from_lookup(|n| vars.get(n).cloned()).expect("valid settings")).await
}

/// Sends `request` (which asks for `Connection: close`) and reads the whole answer.
async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        answer
    };
    let answer = tokio::time::timeout(BOUND, exchange)
        .await
        .expect("bounded");
    String::from_utf8_lossy(&answer).into_owned()
}

/// README: "Method, path (under the backend's base path), query ... go to the backend". A
/// client's dot segments must not climb out of the base path to the rest of the backend.
#[tokio::test]
async fn a_client_cannot_reach_backend_paths_outside_the_base_path() {
    let (addr, seen) = backend(|_| reply("200 OK", "ok")).await;
    let (proxy, _stop) = start_proxy(&format!("http://{addr}/api"), &[]).await;
    for target in [
        "/../admin",
        "/%2e%2e/admin",
        "/public/../../admin",
        "/.%2E/admin",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(proxy, &req).await;
        let status = answer.lines().next().unwrap_or("").to_owned();
        let reached = seen
            .lock()
            .unwrap()
            .drain(..)
            .map(|h| h.lines().next().unwrap().to_owned())
            .collect::<Vec<_>>();
        for line in &reached {
            let path = line.split(' ').nth(1).unwrap();
            assert!(
                path.starts_with("/api/") || path == "/api",
                "GET {target} reached {line:?} on the backend, outside /api (client got {status})"
            );
        }
    }
}

/// README: stale answers are "keyed by the URL and the (hashed) Cookie and Authorization
/// values, so one user's page never reaches another". The proxy forwards the client's Host as
/// X-Forwarded-Host, so a backend serving several sites renders a page per Host: one site's
/// page must not be served, stale, to a visitor of another (nor a Host an attacker chose to
/// everyone).
#[tokio::test]
async fn a_stale_page_of_one_host_never_reaches_a_visitor_of_another() {
    let down = Arc::new(AtomicBool::new(false));
    let d = down.clone();
    let (addr, _) = backend(move |head| {
        if d.load(Ordering::SeqCst) {
            return reply("503 Service Unavailable", "down");
        }
        let host = head
            .lines()
            .find_map(|l| l.strip_prefix("x-forwarded-host: "))
            .unwrap_or("?")
            .to_owned();
        reply("200 OK", &format!("home page of {host}"))
    })
    .await;
    let (proxy, _stop) = start_proxy(
        &format!("http://{addr}"),
        &[
            ("RETTER_BREAKER_CONSECUTIVE_FAIL", "1"),
            ("RETTER_RETRY_MAX", "0"),
        ],
    )
    .await;
    let get = |host: &str| format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let a = raw_exchange(proxy, &get("shop-a.test")).await;
    assert!(a.ends_with("home page of shop-a.test"), "{a}");
    down.store(true, Ordering::SeqCst);
    let tripping = raw_exchange(proxy, &get("shop-b.test")).await;
    assert!(tripping.contains("x-circuit: open"), "{tripping}");
    let b = raw_exchange(proxy, &get("shop-b.test")).await;
    assert!(
        !b.contains("shop-a.test"),
        "a visitor of shop-b.test got shop-a.test's page:\n{b}"
    );
}

/// README: "A bad value stops it at once with exit status 2". A read timeout too long for an
/// `Instant` is taken, and then every connection panics in hyper (`Instant + Duration`
/// overflows) and is dropped without an answer.
#[tokio::test]
async fn a_huge_read_timeout_is_refused_or_served_never_a_panic_per_connection() {
    let (addr, _) = backend(|_| reply("200 OK", "ok")).await;
    let vars = settings(
        &format!("http://{addr}"),
        &[("RETTER_SERVER_TIMEOUT_READ", "10000000000000000000")],
    );
    let config = match config::Config::from_lookup(|n| vars.get(n).cloned()) {
        Err(e) => {
            assert_eq!(e.var, "RETTER_SERVER_TIMEOUT_READ", "{e}");
            return;
        }
        Ok(config) => config,
    };
    let (proxy, _stop) = start(config).await;
    let answer = raw_exchange(
        proxy,
        "GET / HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the proxy answered {answer:?}"
    );
}

const PW: &str = "S3CRET-BACKEND-PW";

fn settings_of(vars: &[(&str, &str)]) -> Result<config::Config, config::ConfigError> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::Config::from_lookup(|name| vars.get(name).cloned())
}

/// A password with a character that must be percent-encoded in a URL (a space, `"`) is
/// what an operator pastes; http::Uri refuses the URL, and the error echoes it as written.
#[test]
fn a_backend_url_that_does_not_parse_is_not_echoed_with_its_password() {
    for url in [
        format!("https://svc:{PW} 1@api.test"),
        format!("https://svc:{PW}\"1@api.test/v1"),
    ] {
        let err = settings_of(&[("RETTER_BACKEND_BASEURL", &url)]).unwrap_err();
        let text = format!("{err} {err:?} {}", err.value);
        assert!(!text.contains(PW), "{url}: {text}");
    }
}

/// A backend URL with userinfo is a valid setting (the proxy sends it as Basic): the
/// settings' `Debug` must not print it, as it does not print the Redis password.
#[test]
fn the_settings_debug_hides_the_backend_password() {
    let c = settings_of(&[
        (
            "RETTER_BACKEND_BASEURL",
            &format!("https://svc:{PW}@api.test/v1"),
        ),
        ("RETTER_REDIS_URL", "redis://:hunter2@redis.test:6380/2"),
    ])
    .expect("valid settings");
    let shown = format!("{}\n{c:?}", c.describe(|_| true));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains(PW), "{shown}");
}

/// RFC 9112: a request with two `Host` lines is refused with 400; with an absolute-form
/// target, the target's host is the one forwarded (and keyed), not the `Host` line.
#[tokio::test]
async fn two_hosts_are_refused_and_an_absolute_target_names_the_host() {
    let (addr, seen) = backend(|_| reply("200 OK", "ok")).await;
    let (proxy, _stop) = start_proxy(&format!("http://{addr}"), &[]).await;
    let two = "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(proxy, two).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the backend"
    );

    let absolute =
        "GET http://target.test/x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(proxy, absolute).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let head = seen.lock().unwrap().pop().expect("forwarded");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-forwarded-host: target.test"),
        "{head}"
    );
}

mod dot_segments {
    use super::app;
    use proptest::prelude::*;

    /// A path segment: a dot segment (`.`, `..`, each dot possibly `%2e`/`%2E`) or not.
    fn segment() -> impl Strategy<Value = String> {
        proptest::sample::select(vec![
            "a",
            ".",
            "..",
            "%2e",
            "%2E",
            "%2e%2e",
            ".%2E",
            "%2e.",
            "...",
            ".a",
            "a.",
            "%2e%2e%2e",
            "%2",
            "%2f",
            "",
        ])
        .prop_map(str::to_owned)
    }

    /// What the backend client's URL parser would take for `.` or `..`.
    fn is_dot(segment: &str) -> bool {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    }

    proptest! {
        /// A target is forwarded exactly when none of its segments is a dot segment, in any
        /// encoding; one that is refused never reaches the backend.
        #[test]
        fn a_target_is_forwarded_only_without_dot_segments(
            segments in proptest::collection::vec(segment(), 1..5),
        ) {
            let path: String = segments.iter().map(|s| format!("/{s}")).collect();
            let Ok(req) = http::Request::get(path.as_str()).body(()) else {
                return Ok(());
            };
            let (parts, ()) = req.into_parts();
            let peer = http::HeaderValue::from_static("127.0.0.1");
            let backend: http::Uri = "http://backend.test/api".parse().unwrap();
            let forwarded =
                app::forward_request(parts, http_doer::Body::empty(), &peer, &backend);
            let dotted = segments.iter().any(|s| is_dot(s));
            prop_assert_eq!(forwarded.is_none(), dotted, "{}", path);
            if let Some(req) = forwarded {
                prop_assert!(req.uri().path().starts_with("/api/"), "{}", req.uri());
            }
        }
    }
}
