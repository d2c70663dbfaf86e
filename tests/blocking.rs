//! `blocking::Client` over both backends and a real stack, against loopback servers that run
//! on a runtime of their own threads, so each `#[test]` thread is plain sync code.

#[allow(dead_code)]
mod support;

use std::future::Future;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_doer::blocking::Client;
use http_doer::retrying::Backoff;
use http_doer::{
    Attempts, Body, Doer, DoerExt, Error, ErrorKind, ReqwestDoer, ResponseMode, UreqDoer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::faults::{self, Fault};
use support::{Loopback, server};

/// A loopback server on a runtime of its own, which keeps serving after `start` returns.
struct Served {
    loopback: Option<Loopback>,
    // Dropped after the server: its tasks need the runtime to stop.
    _rt: tokio::runtime::Runtime,
}

impl Served {
    fn start<Fut: Future<Output = Loopback>>(start: impl FnOnce() -> Fut) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a server runtime");
        let loopback = rt.block_on(start());
        Served {
            loopback: Some(loopback),
            _rt: rt,
        }
    }

    fn url(&self, path: &str) -> String {
        self.loopback.as_ref().expect("serving").url(path)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.loopback.take();
    }
}

/// The two backends, each answering in `mode`, with a limit on buffered bodies of `limit`.
fn backends(mode: ResponseMode, limit: u64) -> [(&'static str, Arc<dyn Doer>); 2] {
    [
        (
            "reqwest",
            Arc::new(ReqwestDoer::new().response_mode(mode).max_body_size(limit)),
        ),
        (
            "ureq",
            Arc::new(UreqDoer::new().response_mode(mode).max_body_size(limit)),
        ),
    ]
}

fn buffered() -> [(&'static str, Arc<dyn Doer>); 2] {
    backends(
        ResponseMode::Buffered,
        http_doer::backend::DEFAULT_MAX_BODY_SIZE,
    )
}

// ---------------------------------------------------------------------------------------------
// Reading answers

#[test]
fn buffered_answers_read_as_bytes_text_and_json() {
    let served = Served::start(server::start);
    for (name, doer) in buffered() {
        let client = Client::new(doer).unwrap();

        let resp = client.get(served.url("/bytes/1000")).unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        assert_eq!(
            resp.into_body().bytes().unwrap(),
            server::pattern(1000),
            "{name}"
        );

        let missing = client.get(served.url("/status/404")).unwrap();
        assert_eq!(missing.status(), 404, "{name}: a status is a response");
        assert_eq!(missing.into_body().text().unwrap(), "status 404", "{name}");

        let req = http::Request::post(served.url("/echo"))
            .body(Body::from(r#"{"city":"paris","days":3}"#))
            .unwrap();
        let echoed: serde_json::Value = client.execute(req).unwrap().into_body().json().unwrap();
        assert_eq!(echoed["city"], "paris", "{name}");
        assert_eq!(echoed["days"], 3, "{name}");

        let not_json = client.get(served.url("/status/200")).unwrap().into_body();
        let err = not_json.json::<serde_json::Value>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{name}");
    }
}

const MIB: usize = 1024 * 1024;

#[test]
fn streamed_answers_read_through_io_read_in_bounded_memory() {
    let served = Served::start(server::start);
    let size = 4 * MIB;
    let expected = server::pattern(size);
    // A 1 MiB limit on whole bodies: a 4 MiB answer that reads through is never held whole.
    for (name, doer) in backends(ResponseMode::Streamed, MIB as u64) {
        let client = Client::new(doer).unwrap();
        for path in [format!("/chunked/{size}"), format!("/bytes/{size}")] {
            let mut body = client.get(served.url(&path)).unwrap().into_body();
            let mut buf = vec![0u8; 64 * 1024];
            let mut read = 0;
            // Bounded: each read but the last moves at least one byte of a finite body.
            for _ in 0..=size {
                let n = body.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                assert_eq!(
                    buf[..n],
                    expected[read..read + n],
                    "{name} {path} at {read}"
                );
                read += n;
            }
            assert_eq!(read, size, "{name} {path}");
        }

        let mut body = client.get(served.url(&format!("/chunked/{size}"))).unwrap();
        let mut largest = 0;
        let mut total = 0;
        while let Some(chunk) = body.body_mut().chunk().unwrap() {
            largest = largest.max(chunk.len());
            total += chunk.len();
        }
        assert_eq!(total, size, "{name}");
        assert!(largest <= 512 * 1024, "{name}: a chunk of {largest} bytes");

        let whole = client.get(served.url(&format!("/bytes/{size}"))).unwrap();
        let err = whole.into_body().bytes().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge, "{name}: {err}");
    }
}

#[test]
fn a_body_read_in_part_then_whole_keeps_every_byte() {
    let served = Served::start(server::start);
    for (name, doer) in backends(ResponseMode::Streamed, 10 * MIB as u64) {
        let client = Client::new(doer).unwrap();
        let mut body = client
            .get(served.url("/chunked/100000"))
            .unwrap()
            .into_body();
        let mut head = [0u8; 10];
        body.read_exact(&mut head).unwrap();
        let rest = body.bytes().unwrap();
        let mut all = head.to_vec();
        all.extend_from_slice(&rest);
        assert_eq!(all, server::pattern(100_000), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Through a stack

/// Reads a request head (at most 64 KiB), then answers 503 to the first request and 200 "ok"
/// to the others, closing each connection.
async fn busy_once(mut stream: TcpStream, hits: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let answer: &[u8] = if hits.fetch_add(1, Ordering::SeqCst) == 0 {
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
    } else {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    };
    let _ = stream.write_all(answer).await;
    let _ = stream.shutdown().await;
}

#[test]
fn a_503_is_retried_through_the_stack() {
    for (name, doer) in buffered() {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let served =
            Served::start(|| Loopback::serve(move |stream| busy_once(stream, counter.clone())));
        let stack = doer
            .breaker()
            .retrying()
            // No real waiting in a test.
            .backoff(Backoff::constant(Duration::ZERO))
            .no_budget();
        let client = Client::new(stack).unwrap();
        let resp = client.get(served.url("/flaky")).unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        assert_eq!(
            resp.extensions().get::<Attempts>(),
            Some(&Attempts(2)),
            "{name}"
        );
        assert_eq!(resp.into_body().text().unwrap(), "ok", "{name}");
        assert_eq!(hits.load(Ordering::SeqCst), 2, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Failures

#[test]
fn a_refused_connection_is_a_connect_error() {
    for (name, doer) in buffered() {
        let client = Client::new(doer).unwrap();
        let err = client.get(faults::refused_url()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Connect, "{name}: {err}");
    }
}

#[test]
fn a_bad_uri_is_an_invalid_request() {
    let client = Client::new(UreqDoer::new()).unwrap();
    let err = client.get("http://bad host/").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
}

/// A bound far above the 200 ms timeout, so a slow shared machine never fails the test, and
/// far below the backends' 30 s default, so a timeout that was not applied does.
const GENEROUS: Duration = Duration::from_secs(10);

#[test]
fn a_stalled_server_times_out() {
    let served = Served::start(|| faults::start(Fault::Stall));
    let quick: [(&str, Arc<dyn Doer>); 2] = [
        (
            "reqwest",
            Arc::new(ReqwestDoer::new().timeout(Duration::from_millis(200))),
        ),
        (
            "ureq",
            Arc::new(UreqDoer::new().timeout(Duration::from_millis(200))),
        ),
    ];
    for (name, doer) in quick {
        let client = Client::new(doer).unwrap();
        let started = Instant::now();
        let err = client.get(served.url("/")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{name}: {err}");
        assert!(
            started.elapsed() < GENEROUS,
            "{name}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_stream_that_stalls_mid_body_fails_the_read_as_timed_out() {
    let served = Served::start(|| faults::start(Fault::StallMidBody));
    let quick: [(&str, Arc<dyn Doer>); 2] = [
        (
            "reqwest",
            Arc::new(
                ReqwestDoer::new()
                    .response_mode(ResponseMode::Streamed)
                    .timeout(Duration::from_secs(1)),
            ),
        ),
        (
            "ureq",
            Arc::new(
                UreqDoer::new()
                    .response_mode(ResponseMode::Streamed)
                    .timeout(Duration::from_secs(1)),
            ),
        ),
    ];
    for (name, doer) in quick {
        let client = Client::new(doer).unwrap();
        let started = Instant::now();
        let mut body = client.get(served.url("/")).unwrap().into_body();
        let mut got = Vec::new();
        let err = body.read_to_end(&mut got).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{name}: {err}");
        let ours = err.get_ref().and_then(|e| e.downcast_ref::<Error>());
        assert!(ours.is_some_and(Error::is_timeout), "{name}: {err:?}");
        assert_eq!(got.len(), 100, "{name}: the bytes before the stall");
        assert!(
            started.elapsed() < GENEROUS,
            "{name}: {:?}",
            started.elapsed()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Async contexts

#[tokio::test]
async fn a_call_inside_a_runtime_is_an_error_not_a_panic() {
    let served = server::start().await;
    let client = Client::new(UreqDoer::new()).unwrap();
    let err = client.get(served.url("/echo")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other, "{err}");
    assert!(err.to_string().contains("async Doer"), "{err}");
    let err = client.block_on(async { 1 }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other, "{err}");
    // The async side of the same client works here.
    let req = http::Request::get(served.url("/echo"))
        .body(Body::empty())
        .unwrap();
    let resp = client.get_ref().execute(req).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_inside_a_spawned_task_is_an_error_not_a_panic() {
    let client = Client::new(ReqwestDoer::new()).unwrap();
    let task = tokio::spawn(async move { client.get("http://127.0.0.1:9/").map(|_| ()) });
    let err = task.await.expect("no panic").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other, "{err}");
}

#[tokio::test]
async fn calls_from_spawn_blocking_work() {
    let served = server::start().await;
    let url = served.url("/bytes/10");
    for (name, doer) in buffered() {
        let url = url.clone();
        let body = tokio::task::spawn_blocking(move || {
            let client = Client::new(doer)?;
            client.get(url)?.into_body().bytes()
        })
        .await
        .expect("no panic")
        .unwrap();
        assert_eq!(body, server::pattern(10), "{name}");
    }
}

#[tokio::test]
async fn making_and_dropping_a_client_inside_a_runtime_does_not_panic() {
    for (_, doer) in buffered() {
        let client = Client::new(doer).unwrap();
        let clone = client.clone();
        drop(client);
        drop(clone);
    }
}

#[test]
fn a_client_with_a_body_being_streamed_can_be_dropped_inside_a_runtime() {
    let served = Served::start(server::start);
    for (name, doer) in backends(ResponseMode::Streamed, MIB as u64) {
        let client = Client::new(doer).unwrap();
        // A half-read 4 MiB answer: ureq's blocking thread is still sending chunks.
        let mut body = client
            .get(served.url(&format!("/chunked/{}", 4 * MIB)))
            .unwrap()
            .into_body();
        let mut first = [0u8; 1024];
        body.read_exact(&mut first).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move {
            drop(client);
            drop(body);
        });
        assert_eq!(first[..], server::pattern(1024)[..], "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Threads

#[test]
fn four_threads_share_one_client() {
    const THREADS: usize = 4;
    const CALLS: usize = 10;
    let served = Served::start(server::start);
    for (name, doer) in buffered() {
        let client = Client::new(doer).unwrap();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let client = client.clone();
                    let served = &served;
                    scope.spawn(move || {
                        for i in 0..CALLS {
                            let n = 100 + t * CALLS + i;
                            let resp = client.get(served.url(&format!("/bytes/{n}"))).unwrap();
                            assert_eq!(resp.into_body().bytes().unwrap(), server::pattern(n));
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker
                    .join()
                    .unwrap_or_else(|_| panic!("{name}: a thread failed"));
            }
        });
    }
}

#[test]
fn the_client_is_send_sync_clone_and_debug() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    check::<Client>();
    fn send<T: Send>() {}
    send::<http_doer::blocking::Response>();
}

#[test]
fn a_doer_that_starts_work_in_execute_gets_the_clients_runtime() {
    // A tower service whose `call` sets a timer at once, as tower's `Timeout` does: it needs a
    // runtime when `execute` is called, not only when its future is polled.
    let service = tower::service_fn(|_req: http::Request<Body>| {
        let timer = tokio::time::sleep(Duration::from_millis(1));
        async move {
            timer.await;
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("timed")))
        }
    });
    let client = Client::new(http_doer::tower::ServiceDoer::new(service)).expect("a client");
    let resp = client.get("http://api.test/").expect("an answer");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().text().unwrap(), "timed");
}
