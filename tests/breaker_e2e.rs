//! Breaker tests on real threads and a real loopback server (real time, short bounded waits),
//! and its `tracing` events.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use http_doer::breaker::{Probe, ServeStale, StaleAnswer, StaleReason, State, StateChange};
use http_doer::{Body, Breaker, Doer, DoerExt, Error, ErrorKind, Request, ReqwestDoer, Response};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// ---- tracing -----------------------------------------------------------------------------------

/// The log lines about the `traced.test` host, from a process-wide subscriber.
///
/// Process-wide because a thread-local one (`set_default`) is flaky when tests run in
/// parallel: another thread can register a callsite, and cache its interest as "never", before
/// the thread-local subscriber exists. Every test in this file calls this first, so no
/// callsite of the breaker is registered before the subscriber.
fn traced_logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: Arc<Mutex<Vec<u8>>> = Arc::default();
        let writer = Captured(logs.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

#[derive(Clone)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // One call per event line; keep only the lines of the tracing test's host.
        if String::from_utf8_lossy(buf).contains("traced.test") {
            self.0.lock().unwrap().extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Down;

#[async_trait]
impl Doer for Down {
    async fn execute(&self, _req: Request) -> Result<Response, Error> {
        Ok(http_doer::testing::response(503, ""))
    }
}

#[tokio::test]
async fn state_changes_and_refusals_are_traced_without_secrets() {
    let logs = traced_logs();
    let breaker = Down.breaker().consecutive_failures(1);
    let req = http::Request::get("https://user:pw@traced.test/?token=t0k")
        .body(Body::empty())
        .unwrap();
    assert_eq!(breaker.execute(req).await.unwrap().status(), 503);
    let req = http::Request::get("https://traced.test/")
        .body(Body::empty())
        .unwrap();
    assert!(breaker.execute(req).await.is_err());
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("circuit opened"), "{logs}");
    assert!(logs.contains("key=\"https://traced.test\""), "{logs}");
    assert!(
        logs.contains("from=\"closed\" to=\"open\" generation=1"),
        "{logs}"
    );
    assert!(logs.contains("circuit refused the call"), "{logs}");
    for secret in ["pw", "t0k", "user"] {
        assert!(!logs.contains(secret), "{secret} leaked: {logs}");
    }
}

// ---- concurrency stress ------------------------------------------------------------------------

/// A flaky host: time comes in phases of 25 ms, in which calls alternately fail 90 % and 5 %
/// of the time, with a random short latency. It counts the half-open probes in flight on its
/// own, from the `Probe` extension, and remembers the most it ever saw at once.
struct Flaky {
    calls: AtomicUsize,
    probes_in_flight: AtomicUsize,
    max_probes_in_flight: AtomicUsize,
}

struct ProbeGuard<'a>(&'a AtomicUsize);

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Doer for Flaky {
    async fn execute(&self, req: Request) -> Result<Response, Error> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) as u64;
        let _probe = req.extensions().get::<Probe>().map(|_| {
            let now = self.probes_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_probes_in_flight.fetch_max(now, Ordering::SeqCst);
            ProbeGuard(&self.probes_in_flight)
        });
        let mut rng = SmallRng::seed_from_u64(n);
        for _ in 0..rng.random_range(0..4) {
            tokio::task::yield_now().await;
        }
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(5)).await;
        } else if rng.random_bool(0.1) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Phases by call count, not by the clock, so a loaded machine sees the same pattern:
        // 60 calls mostly failing, then 60 mostly succeeding, and so on. Short phases: while
        // the circuit is open few calls reach the host, and the test must see two failing
        // phases whatever the scheduling.
        let phase = n / 60;
        let fail_rate = if phase.is_multiple_of(2) { 0.9 } else { 0.05 };
        let status = if rng.random_bool(fail_rate) { 503 } else { 200 };
        Ok(http_doer::testing::response(status, ""))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_shows_only_legal_transitions_and_at_most_k_probes() {
    traced_logs();
    const K: usize = 3;
    const TASKS: usize = 16;
    const CALLS: usize = 400;
    let flaky = Arc::new(Flaky {
        calls: AtomicUsize::new(0),
        probes_in_flight: AtomicUsize::new(0),
        max_probes_in_flight: AtomicUsize::new(0),
    });
    let changes: Arc<Mutex<Vec<StateChange>>> = Arc::default();
    let breaker = Breaker::new(flaky.clone())
        .consecutive_failures(3)
        .failure_rate(0.5, 10)
        .window(Duration::from_millis(100))
        .open_duration(Duration::from_millis(2))
        .half_open_probes(K as u32)
        .on_state_change({
            let changes = changes.clone();
            move |c: &StateChange| changes.lock().unwrap().push(c.clone())
        });

    let run = async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let breaker = breaker.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..CALLS {
                    let give_up = (t + i).is_multiple_of(10);
                    let path = if give_up { "/slow" } else { "/" };
                    let req = http::Request::get(format!("http://flaky.test{path}"))
                        .body(Body::empty())
                        .unwrap();
                    if give_up {
                        // Some callers give up on a slow call: it counts as neither.
                        let _ =
                            tokio::time::timeout(Duration::from_millis(1), breaker.execute(req))
                                .await;
                    } else {
                        match breaker.execute(req).await {
                            Ok(_) => {}
                            Err(e) => assert_eq!(e.kind(), ErrorKind::BreakerOpen),
                        }
                    }
                    if i.is_multiple_of(5) {
                        // Pace the callers so the run spans several phases.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the stress run finishes within 60 s");

    assert!(
        flaky.max_probes_in_flight.load(Ordering::SeqCst) <= K,
        "saw {} probes at once",
        flaky.max_probes_in_flight.load(Ordering::SeqCst)
    );

    use State::*;
    // A copy: `breaker.snapshot` below may deliver a state change to the hook, which takes
    // this lock; holding it here would deadlock.
    let changes = changes.lock().unwrap().clone();
    let legal = [
        (Closed, Open),
        (Open, HalfOpen),
        (HalfOpen, Open),
        (HalfOpen, Closed),
    ];
    let mut prev = Closed;
    for (i, c) in changes.iter().enumerate() {
        assert!(legal.contains(&(c.from, c.to)), "illegal {c:?}");
        assert_eq!(
            c.from, prev,
            "change {i} does not follow the previous one: {c:?}"
        );
        assert_eq!(c.generation, i as u64 + 1, "generations go up by one");
        prev = c.to;
    }
    let trips = changes.iter().filter(|c| c.from == Closed).count();
    let closes = changes.iter().filter(|c| c.to == Closed).count();
    assert!(trips >= 2 && closes >= 1, "trips {trips}, closes {closes}");

    // Every call was either refused, or reached the host and was counted exactly once.
    let snap = breaker.snapshot("http://flaky.test").unwrap();
    let c = snap.counts;
    let reached = flaky.calls.load(Ordering::SeqCst) as u64;
    assert_eq!((TASKS * CALLS) as u64, reached + c.rejected);
    assert_eq!(
        reached,
        c.successes + c.failures + c.ignored + c.late + c.cancelled,
        "{c:?}"
    );
    assert!(
        c.cancelled > 0 && c.rejected > 0 && c.late <= reached,
        "{c:?}"
    );
}

// ---- a real loopback server that goes down and comes back --------------------------------------

/// A tiny HTTP/1.1 server on 127.0.0.1 that can be stopped (connections refused) and
/// restarted on the same port. It answers `200 "hello <n>"` with `Connection: close`.
struct Server {
    port: u16,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(port: u16, hits: Arc<AtomicUsize>) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn({
            let hits = hits.clone();
            async move {
                loop {
                    let Ok((mut sock, _)) = listener.accept().await else {
                        continue;
                    };
                    let hits = hits.clone();
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 1024];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                            match tokio::time::timeout(
                                Duration::from_secs(5),
                                sock.read(&mut chunk),
                            )
                            .await
                            {
                                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                                _ => return,
                            }
                        }
                        let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                        let body = format!("hello {n}");
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                        let _ = sock.write_all(body.as_bytes()).await;
                        let _ = sock.shutdown().await;
                    });
                }
            }
        });
        Server { port, hits, task }
    }

    /// Stops listening; returns once the port refuses connections.
    async fn stop(self) -> (u16, Arc<AtomicUsize>) {
        self.task.abort();
        let _ = self.task.await;
        (self.port, self.hits)
    }
}

fn get(port: u16, path: &str) -> Request {
    http::Request::get(format!("http://127.0.0.1:{port}{path}"))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn end_to_end_host_goes_down_and_comes_back() {
    traced_logs();
    let server = Server::start(0, Arc::default()).await;
    let port = server.port;
    let key = format!("http://127.0.0.1:{port}");
    let breaker = ReqwestDoer::new()
        .breaker()
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(1))
        .serve_stale(ServeStale::new(Duration::from_secs(60)));

    let resp = breaker.execute(get(port, "/data")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().text().await.unwrap(), "hello 1");

    // Down: connections are refused; two failures trip the circuit.
    let (port, hits) = server.stop().await;
    for path in ["/data", "/other"] {
        let err = breaker.execute(get(port, path)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    }
    assert_eq!(breaker.state(&key), State::Open);

    // Open: the last good answer for /data, marked stale; nothing for /other.
    let resp = breaker.execute(get(port, "/data")).await.unwrap();
    let served = *resp.extensions().get::<StaleAnswer>().unwrap();
    assert_eq!(served.reason, StaleReason::Rejected);
    assert!(resp.headers().contains_key("age"));
    assert_eq!(resp.into_body().text().await.unwrap(), "hello 1");

    // Back up on the same port: still open, so the host is not touched yet.
    let server = Server::start(port, hits.clone()).await;
    let err = breaker.execute(get(port, "/other")).await.unwrap_err();
    assert!(err.is_breaker_open(), "{err}");
    let wait = err.retry_after().unwrap();
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // After the open period the probe goes through and closes the circuit.
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    let resp = breaker.execute(get(port, "/data")).await.unwrap();
    assert!(resp.extensions().get::<StaleAnswer>().is_none());
    assert_eq!(resp.into_body().text().await.unwrap(), "hello 2");
    assert_eq!(breaker.state(&key), State::Closed);
    let resp = breaker.execute(get(port, "/other")).await.unwrap();
    assert_eq!(resp.into_body().text().await.unwrap(), "hello 3");
    server.stop().await;
}
