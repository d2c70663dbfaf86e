//! The layers that send a request more than once, over both real backends on loopback
//! sockets, counted at the server: a POST goes once whatever the socket does (a reset, a
//! truncated body, garbage, a redirect whose target refuses), a resent request equals the
//! first byte for byte, hedged losers' connections close, and the retry and hedge budgets
//! hold the load of an outage.
#![cfg(feature = "ureq")]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_doer::hedging::{HedgeBudget, HedgeReport};
use http_doer::retrying::{Attempts, Backoff};
use http_doer::{Body, Doer, DoerExt, ErrorKind, Hedging, Request, Retrying};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BOUND: Duration = Duration::from_secs(30);

/// What the server does with request `n`.
#[derive(Clone, Debug)]
#[allow(dead_code)]
enum Act {
    /// A full answer: status, extra header lines, body; then close.
    Reply(u16, String, String),
    /// Read the request, reset (RST) without a byte.
    ResetNow,
    /// Close cleanly (FIN) without a byte.
    CloseNow,
    /// Send these bytes, then reset.
    ResetAfter(Vec<u8>),
    /// Send these bytes, then close cleanly.
    CloseAfter(Vec<u8>),
    /// Send these bytes (maybe none), then hold the connection open until the client closes.
    Hold(Vec<u8>),
    /// Wait, then reply 200 with this body.
    Slow(Duration, String),
}

#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<Vec<u8>>>,
    accepted: AtomicUsize,
    closed_by_client: AtomicUsize,
}

impl Seen {
    fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    fn requests(&self) -> Vec<Vec<u8>> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(act: impl Fn(usize) -> Act + Send + Sync + 'static) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    let act = Arc::new(act);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen2.accepted.fetch_add(1, Ordering::SeqCst);
            let seen = seen2.clone();
            let act = act.clone();
            tokio::spawn(async move { connection(stream, seen, act).await });
        }
    });
    (addr, seen)
}

async fn connection(
    mut stream: TcpStream,
    seen: Arc<Seen>,
    act: Arc<dyn Fn(usize) -> Act + Send + Sync>,
) {
    let Some(req) = read_request(&mut stream).await else {
        return;
    };
    let n = {
        let mut r = seen.requests.lock().unwrap();
        r.push(req);
        r.len() - 1
    };
    match act(n) {
        Act::Reply(status, headers, body) => {
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
            hold(&mut stream, &seen).await;
        }
        Act::ResetNow => {
            let _ = stream.set_zero_linger();
        }
        Act::CloseNow => {
            let _ = stream.shutdown().await;
        }
        Act::ResetAfter(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = stream.set_zero_linger();
        }
        Act::CloseAfter(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
            hold(&mut stream, &seen).await;
        }
        Act::Hold(bytes) => {
            let _ = stream.write_all(&bytes).await;
            hold(&mut stream, &seen).await;
        }
        Act::Slow(wait, body) => {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = hold(&mut stream, &seen) => return,
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Waits (at most 20 s) until the client closes; counts the close.
async fn hold(stream: &mut TcpStream, seen: &Seen) {
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    seen.closed_by_client.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Ok(_) => {}
            }
        }
    })
    .await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let chunked = head.contains("transfer-encoding: chunked");
        while (chunked && !buf.ends_with(b"0\r\n\r\n")) || (!chunked && buf.len() < end + 4 + len) {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Some(buf);
    }
}

fn refused() -> SocketAddr {
    // Port 1 is privileged and nothing listens on it on loopback.
    "127.0.0.1:1".parse().unwrap()
}

fn backends() -> Vec<(&'static str, Arc<dyn Doer>)> {
    vec![
        (
            "reqwest",
            Arc::new(http_doer::ReqwestDoer::new().timeout(Duration::from_secs(3))),
        ),
        (
            "ureq",
            Arc::new(http_doer::UreqDoer::new().timeout(Duration::from_secs(3))),
        ),
    ]
}

fn quick<D>(d: Retrying<D>) -> Retrying<D> {
    d.backoff(Backoff::constant(Duration::from_millis(10)))
        .no_budget()
}

fn post(addr: SocketAddr, body: &'static str) -> Request {
    http::Request::post(format!("http://{addr}/orders"))
        .header("content-type", "text/plain")
        .body(Body::from(body))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------

/// A POST that reached the server, was answered with a redirect, and whose next hop could not
/// connect: the request did leave (the server processed it), so it must not be sent again.
#[tokio::test]
async fn a_post_whose_redirect_hop_is_refused_is_not_sent_again() {
    tokio::time::timeout(BOUND, async {
        let mut problems = Vec::new();
        for (name, backend) in backends() {
            for status in [303u16, 307] {
                let to = refused();
                let (addr, seen) = serve(move |_| {
                    Act::Reply(status, format!("location: http://{to}/receipt\r\n"), String::new())
                })
                .await;
                let doer = quick(Retrying::new(backend.clone()));
                let err = doer.execute(post(addr, "pay 10")).await.unwrap_err();
                if seen.count() != 1 {
                    problems.push(format!(
                        "{name} {status}: the POST reached the server {} times (kind {:?}, attempts {:?})",
                        seen.count(),
                        err.kind(),
                        err.attempts()
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    })
    .await
    .unwrap();
}

/// Every way a real socket can fail after the request left: a POST goes once.
#[tokio::test]
async fn a_post_goes_once_whatever_the_socket_does() {
    tokio::time::timeout(BOUND, async {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
        let mut mid = head.clone();
        mid.extend_from_slice(&[b'x'; 100]);
        let faults: Vec<(&str, Act)> = vec![
            ("reset before any byte", Act::ResetNow),
            ("close before any byte", Act::CloseNow),
            ("reset after the head", Act::ResetAfter(head.clone())),
            ("reset mid-body", Act::ResetAfter(mid.clone())),
            ("truncated body", Act::CloseAfter(mid.clone())),
            (
                "garbage",
                Act::CloseAfter(b"\x00\x01 not http\r\n\r\n".to_vec()),
            ),
            (
                "half head then reset",
                Act::ResetAfter(b"HTTP/1.1 200 OK\r\nContent-Ty".to_vec()),
            ),
        ];
        let mut problems = Vec::new();
        for (name, backend) in backends() {
            for (what, act) in &faults {
                let act = act.clone();
                let (addr, seen) = serve(move |_| act.clone()).await;
                let doer = quick(Retrying::new(backend.clone()));
                let out = doer.execute(post(addr, "pay 10")).await;
                let desc = match &out {
                    Ok(r) => format!("Ok {}", r.status()),
                    Err(e) => format!("Err {:?} attempts {:?}", e.kind(), e.attempts()),
                };
                if seen.count() != 1 {
                    problems.push(format!("{name} {what}: {} sends ({desc})", seen.count()));
                }
                // The same for an idempotent GET: retried (4 attempts).
                let act2 = {
                    let (a, s) = (addr, seen.clone());
                    let _ = a;
                    s
                };
                let before = act2.count();
                let get = http::Request::get(format!("http://{addr}/x"))
                    .body(Body::empty())
                    .unwrap();
                let out = doer.execute(get).await;
                let desc = match &out {
                    Ok(r) => format!("Ok {}", r.status()),
                    Err(e) => format!("Err {:?} attempts {:?}", e.kind(), e.attempts()),
                };
                if act2.count() - before != 4 {
                    problems.push(format!(
                        "{name} {what} GET: {} sends ({desc})",
                        act2.count() - before
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    })
    .await
    .unwrap();
}

/// A 4xx is never retried; a 503 on GET is, and the retried request equals the first.
#[tokio::test]
async fn the_second_request_equals_the_first() {
    tokio::time::timeout(BOUND, async {
        for (name, backend) in backends() {
            let (addr, seen) = serve(|n| {
                if n == 0 {
                    Act::Reply(503, String::new(), "busy".into())
                } else {
                    Act::Reply(200, String::new(), "ok".into())
                }
            })
            .await;
            let doer = quick(Retrying::new(backend.clone()));
            let req = http::Request::put(format!("http://{addr}/doc?v=1"))
                .header("x-one", "a")
                .header("x-two", "b")
                .header("idempotency-key", "k1")
                .body(Body::from(vec![7u8; 70_000]))
                .unwrap();
            let resp = doer.execute(req).await.unwrap();
            assert_eq!(
                resp.extensions().get::<Attempts>(),
                Some(&Attempts(2)),
                "{name}"
            );
            let reqs = seen.requests();
            assert_eq!(reqs.len(), 2, "{name}");
            assert_eq!(reqs[0], reqs[1], "{name}: the resent request differs");

            let (addr, seen) = serve(|_| Act::Reply(404, String::new(), "no".into())).await;
            let get = http::Request::get(format!("http://{addr}/x"))
                .body(Body::empty())
                .unwrap();
            let resp = doer.execute(get).await.unwrap();
            assert_eq!((resp.status().as_u16(), seen.count()), (404, 1), "{name}");
        }
    })
    .await
    .unwrap();
}

/// Hedging over reqwest: the losers' connections close; a hedged PUT sends the same body.
#[tokio::test]
async fn hedged_losers_close_and_bodies_match() {
    tokio::time::timeout(BOUND, async {
        let (addr, seen) = serve(|n| {
            if n == 0 {
                Act::Slow(Duration::from_secs(10), "slow".into())
            } else {
                Act::Reply(200, String::new(), "fast".into())
            }
        })
        .await;
        let doer = Hedging::new(http_doer::ReqwestDoer::new())
            .fixed_delay(Duration::from_millis(100))
            .methods([http::Method::GET, http::Method::PUT])
            .budget(HedgeBudget::unlimited());
        let req = http::Request::put(format!("http://{addr}/doc"))
            .body(Body::from("same bytes".repeat(1000)))
            .unwrap();
        let resp = doer.execute(req).await.unwrap();
        let report = *resp.extensions().get::<HedgeReport>().unwrap();
        assert_eq!((report.winner, report.copies_sent), (1, 2));
        assert_eq!(resp.into_body().text().await.unwrap(), "fast");
        let reqs = seen.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0], reqs[1]);
        // The loser's connection is closed within a short while.
        let t = std::time::Instant::now();
        while seen.closed_by_client.load(Ordering::SeqCst) < 2
            && t.elapsed() < Duration::from_secs(3)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(seen.closed_by_client.load(Ordering::SeqCst), 2);
        assert_eq!(seen.accepted.load(Ordering::SeqCst), 2);
    })
    .await
    .unwrap();
}

/// Under an outage, the retry budget caps what the server sees.
#[tokio::test]
async fn retry_budget_caps_the_load_of_an_outage() {
    tokio::time::timeout(BOUND, async {
        let (addr, seen) = serve(|_| Act::Reply(503, String::new(), String::new())).await;
        let doer = Retrying::new(http_doer::ReqwestDoer::new())
            .backoff(Backoff::constant(Duration::from_millis(5)))
            .budget(http_doer::retrying::RetryBudget::new(0.2, 0));
        let calls = 200;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..calls {
            let doer = doer.clone();
            let url = format!("http://{addr}/x");
            set.spawn(async move {
                let get = http::Request::get(url).body(Body::empty()).unwrap();
                let r = doer.execute(get).await.unwrap();
                r.extensions().get::<Attempts>().unwrap().0 as usize
            });
        }
        let mut attempts = 0;
        while let Some(a) = set.join_next().await {
            attempts += a.unwrap();
        }
        let sent = seen.count();
        assert_eq!(attempts, sent, "Attempts agree with the server");
        assert!(
            sent <= calls * 12 / 10 + 1,
            "{sent} requests for {calls} calls"
        );
    })
    .await
    .unwrap();
}

#[allow(dead_code)]
fn _unused(_: ErrorKind) {}
#[allow(dead_code)]
fn _ext<D: DoerExt>(_: D) {}

fn replayable_body() -> Body {
    Body::replayable(|| {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..5u8)
            .map(|i| Ok(bytes::Bytes::from(vec![b'a' + i; 3000])))
            .collect();
        futures_util::stream::iter(chunks)
    })
}

/// A replayable stream resent by a retry, and hedged: the server sees the same bytes each time.
#[tokio::test]
async fn replayable_bodies_are_resent_identically() {
    tokio::time::timeout(BOUND, async {
        for (name, backend) in backends() {
            let (addr, seen) = serve(|n| {
                if n == 0 {
                    Act::Reply(503, String::new(), String::new())
                } else {
                    Act::Reply(200, String::new(), "ok".into())
                }
            })
            .await;
            let doer = quick(Retrying::new(backend.clone()));
            let req = http::Request::put(format!("http://{addr}/doc"))
                .body(replayable_body())
                .unwrap();
            let resp = doer.execute(req).await.unwrap();
            assert_eq!(resp.status(), 200, "{name}");
            let reqs = seen.requests();
            assert_eq!(reqs.len(), 2, "{name}");
            assert!(reqs[0].len() > 15_000, "{name}");
            assert_eq!(reqs[0], reqs[1], "{name}: retry");

            let (addr, seen) = serve(|n| {
                if n == 0 {
                    Act::Slow(Duration::from_secs(5), "slow".into())
                } else {
                    Act::Reply(200, String::new(), "fast".into())
                }
            })
            .await;
            let doer = Hedging::new(backend.clone())
                .fixed_delay(Duration::from_millis(100))
                .methods([http::Method::PUT])
                .budget(HedgeBudget::unlimited());
            let req = http::Request::put(format!("http://{addr}/doc"))
                .body(replayable_body())
                .unwrap();
            let resp = doer.execute(req).await.unwrap();
            assert_eq!(resp.into_body().text().await.unwrap(), "fast", "{name}");
            let reqs = seen.requests();
            assert_eq!(reqs.len(), 2, "{name}");
            assert_eq!(reqs[0], reqs[1], "{name}: hedge");
        }
    })
    .await
    .unwrap();
}

/// A one-shot upload whose first attempt is refused by a real backend is retried, whole.
#[tokio::test]
async fn a_one_shot_upload_refused_by_a_real_backend_is_retried() {
    tokio::time::timeout(BOUND, async {
        for (name, backend) in backends() {
            let (addr, seen) = serve(|_| Act::Reply(200, String::new(), "ok".into())).await;
            let calls = Arc::new(AtomicUsize::new(0));
            let first_refused = {
                let calls = calls.clone();
                let backend = backend.clone();
                http_doer::testing::doer_fn(move |mut req: Request| {
                    let backend = backend.clone();
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        *req.uri_mut() = format!("http://{}/doc", refused()).parse().unwrap();
                    }
                    async move { backend.execute(req).await }
                })
            };
            let doer = quick(Retrying::new(first_refused));
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                Ok(bytes::Bytes::from_static(b"hello ")),
                Ok(bytes::Bytes::from_static(b"world")),
            ];
            let req = http::Request::post(format!("http://{addr}/doc"))
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .unwrap();
            let out = doer.execute(req).await;
            let desc = match &out {
                Ok(r) => format!("Ok {} {:?}", r.status(), r.extensions().get::<Attempts>()),
                Err(e) => format!("{e:?}"),
            };
            assert_eq!(seen.count(), 1, "{name}: {desc}");
            let req = String::from_utf8_lossy(&seen.requests()[0]).to_string();
            assert!(
                req.contains("hello ") && req.contains("world"),
                "{name}: {req}"
            );
        }
    })
    .await
    .unwrap();
}

/// The hedge budget holds under concurrent load against a slow server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedge_budget_holds_under_load() {
    tokio::time::timeout(BOUND, async {
        let (addr, seen) = serve(|_| Act::Slow(Duration::from_millis(400), "ok".into())).await;
        let doer =
            Hedging::new(http_doer::ReqwestDoer::new()).fixed_delay(Duration::from_millis(20));
        let calls = 100;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..calls {
            let doer = doer.clone();
            let url = format!("http://{addr}/x");
            set.spawn(async move {
                let get = http::Request::get(url).body(Body::empty()).unwrap();
                let r = doer.execute(get).await.unwrap();
                r.extensions().get::<HedgeReport>().unwrap().copies_sent as usize
            });
        }
        let mut copies = 0;
        while let Some(c) = set.join_next().await {
            copies += c.unwrap();
        }
        let stats = doer.stats();
        assert_eq!(copies, seen.count(), "reports vs server; {stats:?}");
        assert!(
            seen.count() <= calls + 10 + 10,
            "{} requests for {calls} calls; {stats:?}",
            seen.count()
        );
    })
    .await
    .unwrap();
}

/// A keep-alive server that closes idle connections after 50 ms: a POST sent after that, on
/// what the client's pool still holds, must not be lost.
#[tokio::test]
async fn a_post_after_an_idle_close_is_not_lost() {
    tokio::time::timeout(BOUND, async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = s2.clone();
                tokio::spawn(async move {
                    loop {
                        let idle = tokio::time::timeout(
                            Duration::from_millis(50),
                            read_request(&mut stream),
                        )
                        .await;
                        let Ok(Some(_)) = idle else { return };
                        seen.fetch_add(1, Ordering::SeqCst);
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                });
            }
        });
        for (name, backend) in backends() {
            let doer = Retrying::new(backend.clone());
            let mut failures = Vec::new();
            for i in 0..5 {
                let out = doer.execute(post(addr, "pay")).await;
                if let Err(e) = out {
                    failures.push(format!("{i}: {e:?}"));
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            assert!(failures.is_empty(), "{name}: {failures:#?}");
        }
        let _ = seen;
    })
    .await
    .unwrap();
}
