//! Breaker and streamed response bodies: serve-stale keeps a streamed answer only when its body
//! ends whole within the cache's bound (a tee that gives up past it, without holding the stream
//! back), and a body that fails while it streams counts as a failure of its host.
//!
//! Over doubles whose bodies are one-shot streams, with paused time; and over real loopback
//! servers with `ReqwestDoer` set to stream responses.

#[allow(dead_code)]
mod support;

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use http_doer::breaker::{ServeStale, StaleAnswer, StaleReason, State, Verdict, default_verdict};
use http_doer::testing::{doer_fn, response};
use http_doer::{
    Body, Breaker, Doer, DoerExt, Error, ErrorKind, Request, ReqwestDoer, Response, ResponseMode,
};
use tokio::sync::mpsc;

use support::faults::{self, Fault};

const HOST: &str = "https://api.test";

fn get(path: &str) -> Request {
    http::Request::get(format!("{HOST}{path}"))
        .body(Body::empty())
        .unwrap()
}

/// A stream fed by the test, chunk by chunk, through a channel.
struct Rx(mpsc::Receiver<io::Result<Bytes>>);

impl Stream for Rx {
    type Item = io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// A streamed body of `parts`, then its end.
fn streamed(parts: &[&[u8]]) -> Body {
    let items: Vec<io::Result<Bytes>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    Body::from_stream(futures_util::stream::iter(items))
}

/// A streamed body that yields `first`, then fails.
fn breaking(first: &'static [u8]) -> Body {
    let items = vec![
        Ok(Bytes::from_static(first)),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "reset mid-body",
        )),
    ];
    Body::from_stream(futures_util::stream::iter(items))
}

/// What the host double answers next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// 200, its body streamed whole.
    Whole,
    /// 200, its body fails after its first chunk.
    Breaks,
    /// 503.
    Down,
}

/// A host double whose 200 answers stream: `<path> v<n>` in two chunks, `n` counting the
/// calls; `/big` answers [`Host::set_size`] bytes of `x` in chunks of 100.
#[derive(Clone)]
struct Host {
    mode: Arc<Mutex<Mode>>,
    calls: Arc<AtomicUsize>,
    size: Arc<AtomicUsize>,
}

impl Host {
    fn new() -> Self {
        Host {
            mode: Arc::new(Mutex::new(Mode::Whole)),
            calls: Arc::default(),
            size: Arc::default(),
        }
    }

    fn set_size(&self, size: usize) {
        self.size.store(size, Ordering::SeqCst);
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn doer(&self) -> impl Doer + use<> {
        let host = self.clone();
        doer_fn(move |req: Request| {
            let host = host.clone();
            async move {
                let n = host.calls.fetch_add(1, Ordering::SeqCst) + 1;
                let path = req.uri().path().to_owned();
                let mode = *host.mode.lock().unwrap();
                let body = match mode {
                    Mode::Down => return Ok(response(503, "down")),
                    Mode::Breaks => breaking(b"partial "),
                    Mode::Whole => match path.as_str() {
                        "/big" => {
                            let len = host.size.load(Ordering::SeqCst);
                            let chunk = [b'x'; 100];
                            let parts: Vec<&[u8]> = (0..len / 100).map(|_| &chunk[..]).collect();
                            streamed(&parts)
                        }
                        _ => {
                            let second = format!(" v{n}");
                            streamed(&[path.as_bytes(), second.as_bytes()])
                        }
                    },
                };
                Ok(response(200, body))
            }
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_streamed_answer_within_the_bound_is_kept_when_it_ends_and_served_stale() {
    let host = Host::new();
    let doer = host
        .doer()
        .breaker()
        .consecutive_failures(2)
        .serve_stale(ServeStale::new(Duration::from_secs(300)));

    let resp = doer.execute(get("/item")).await.unwrap();
    assert!(resp.body().is_stream());
    // Decided from the head, kept only once the body has ended.
    assert_eq!(doer.stale_usage().0, 0);
    assert_eq!(resp.into_body().text().await.unwrap(), "/item v1");
    assert_eq!(doer.stale_usage().0, 1);

    host.set(Mode::Down);
    for _ in 0..2 {
        assert_eq!(doer.execute(get("/item")).await.unwrap().status(), 503);
    }
    assert_eq!(doer.state(HOST), State::Open);
    let stale = doer.execute(get("/item")).await.unwrap();
    let marker = stale.extensions().get::<StaleAnswer>().copied().unwrap();
    assert_eq!(marker.reason, StaleReason::Rejected);
    assert_eq!(stale.into_body().text().await.unwrap(), "/item v1");
    assert_eq!(host.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_newer_streamed_answer_replaces_the_older_one_only_when_it_ends() {
    let host = Host::new();
    let doer = host
        .doer()
        .breaker()
        .serve_stale(ServeStale::new(Duration::from_secs(300)).on_failure(true));
    let v1 = doer.execute(get("/item")).await.unwrap();
    assert_eq!(v1.into_body().text().await.unwrap(), "/item v1");
    let v2 = doer.execute(get("/item")).await.unwrap();
    // The old answer stays until the new body has ended.
    host.set(Mode::Down);
    let served = doer.execute(get("/item")).await.unwrap();
    assert_eq!(served.into_body().text().await.unwrap(), "/item v1");
    assert_eq!(v2.into_body().text().await.unwrap(), "/item v2");
    let served = doer.execute(get("/item")).await.unwrap();
    assert!(served.extensions().get::<StaleAnswer>().is_some());
    assert_eq!(served.into_body().text().await.unwrap(), "/item v2");
}

#[tokio::test(start_paused = true)]
async fn an_answer_over_the_bound_is_not_kept_and_still_streams_whole() {
    let host = Host::new();
    let doer = host
        .doer()
        .breaker()
        .consecutive_failures(1)
        .serve_stale(ServeStale::new(Duration::from_secs(300)).max_bytes(2_000));

    // Within the bound: kept.
    host.set_size(1000);
    let small = doer.execute(get("/big")).await.unwrap();
    assert_eq!(small.into_body().bytes().await.unwrap().len(), 1000);
    assert_eq!(doer.stale_usage().0, 1);

    // Past it: the caller reads every byte, the copy is given up, and the older answer for
    // the same key goes, as a buffered answer too large to keep would remove it.
    host.set_size(50_000);
    let mut body = doer.execute(get("/big")).await.unwrap().into_body();
    let mut read = 0;
    while let Some(chunk) = body.chunk().await.unwrap() {
        assert!(chunk.iter().all(|&b| b == b'x'));
        read += chunk.len();
    }
    assert_eq!(read, 50_000);
    drop(body);
    assert_eq!(doer.stale_usage().0, 0);
    let whole = doer.execute(get("/big")).await.unwrap();
    assert_eq!(whole.into_body().bytes().await.unwrap().len(), 50_000);
    assert_eq!(doer.stale_usage(), (0, 0));

    // Nothing to serve once the circuit opens.
    host.set(Mode::Down);
    assert_eq!(doer.execute(get("/big")).await.unwrap().status(), 503);
    let err = doer.execute(get("/big")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BreakerOpen);
}

#[tokio::test(start_paused = true)]
async fn a_declared_length_over_the_bound_is_given_up_at_once() {
    let doer = doer_fn(|_req: Request| async {
        // A one-shot body of a known length, as a response with a `Content-Length`.
        let full = http_body_util::Full::new(Bytes::from(vec![7u8; 3000]));
        let body = Body::from_http_body(full);
        assert_eq!(body.len(), Some(3000));
        Ok(response(200, body))
    })
    .breaker()
    .serve_stale(ServeStale::new(Duration::from_secs(300)).max_bytes(1_000));
    let resp = doer.execute(get("/declared")).await.unwrap();
    assert_eq!(resp.into_body().bytes().await.unwrap().len(), 3000);
    assert_eq!(doer.stale_usage(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_half_read_body_keeps_nothing_and_removes_nothing() {
    let senders: Fed = Arc::default();
    let doer = fed_by_the_test(senders.clone())
        .breaker()
        .serve_stale(ServeStale::new(Duration::from_secs(300)).on_failure(true));
    let next_sender = || senders.lock().unwrap().pop().unwrap();

    let old = doer.execute(get("/feed")).await.unwrap().into_body();
    let tx = next_sender();
    tx.send(Ok(Bytes::from_static(b"old"))).await.unwrap();
    drop(tx);
    assert_eq!(old.text().await.unwrap(), "old");
    let (entries, old_bytes) = doer.stale_usage();
    assert_eq!(entries, 1);

    let mut body = doer.execute(get("/feed")).await.unwrap().into_body();
    let tx = next_sender();
    tx.send(Ok(Bytes::from_static(b"new, first half")))
        .await
        .unwrap();
    assert_eq!(body.chunk().await.unwrap().unwrap(), "new, first half");
    drop(body);
    // The reader is gone: the feeder sees it, and the cache still holds the old answer.
    assert!(tx.send(Ok(Bytes::from_static(b"rest"))).await.is_err());
    assert_eq!(doer.stale_usage(), (1, old_bytes));
    // The drop counts as the success its head was.
    let counts = doer.snapshot(HOST).unwrap().counts;
    assert_eq!((counts.successes, counts.failures), (2, 0));
    let served = doer.execute(down(get("/feed"))).await.unwrap();
    assert_eq!(served.into_body().text().await.unwrap(), "old");
}

/// The senders [`fed_by_the_test`] leaves, one per call.
type Fed = Arc<Mutex<Vec<mpsc::Sender<io::Result<Bytes>>>>>;

/// `req`, with the header that makes [`fed_by_the_test`] answer 503.
fn down(mut req: Request) -> Request {
    req.headers_mut()
        .insert("x-down", http::HeaderValue::from_static("1"));
    req
}

/// A Doer whose answers are 200s fed by the test through the sender it leaves in `fed`, or a
/// 503 to a request with an `x-down` header (not part of the stale key).
fn fed_by_the_test(fed: Fed) -> impl Doer + use<> {
    doer_fn(move |req: Request| {
        let fed = fed.clone();
        async move {
            if req.headers().contains_key("x-down") {
                return Ok(response(503, "down"));
            }
            let (tx, rx) = mpsc::channel(4);
            fed.lock().unwrap().push(tx);
            Ok(response(200, Body::from_stream(Rx(rx))))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn of_two_bodies_ending_out_of_order_the_later_answer_stays() {
    let senders: Fed = Arc::default();
    let doer = fed_by_the_test(senders.clone())
        .breaker()
        .serve_stale(ServeStale::new(Duration::from_secs(300)).on_failure(true));
    let earlier = doer.execute(get("/race")).await.unwrap().into_body();
    tokio::time::advance(Duration::from_secs(1)).await;
    let later = doer.execute(get("/race")).await.unwrap().into_body();
    let (tx_earlier, tx_later) = {
        let mut fed = senders.lock().unwrap();
        (fed.remove(0), fed.remove(0))
    };
    tx_later
        .send(Ok(Bytes::from_static(b"later")))
        .await
        .unwrap();
    drop(tx_later);
    assert_eq!(later.text().await.unwrap(), "later");
    tx_earlier
        .send(Ok(Bytes::from_static(b"earlier")))
        .await
        .unwrap();
    drop(tx_earlier);
    assert_eq!(earlier.text().await.unwrap(), "earlier");
    assert_eq!(doer.stale_usage().0, 1);

    // The host fails the next call: the answer served is the one whose head came later.
    let served = doer.execute(down(get("/race"))).await.unwrap();
    assert_eq!(
        served.extensions().get::<StaleAnswer>().unwrap().reason,
        StaleReason::Failed
    );
    assert_eq!(served.into_body().text().await.unwrap(), "later");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_fails_while_streaming_counts_as_a_failure_and_opens_the_circuit() {
    let host = Host::new();
    let doer = host
        .doer()
        .breaker()
        .consecutive_failures(3)
        .serve_stale(ServeStale::new(Duration::from_secs(300)));
    host.set(Mode::Breaks);
    for n in 1..=3 {
        let resp = doer.execute(get("/item")).await.unwrap();
        assert_eq!(resp.status(), 200);
        // Counted when the body ends, not from its head.
        assert_eq!(doer.snapshot(HOST).unwrap().consecutive_failures, n - 1);
        let err = resp.into_body().bytes().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Body);
        // A failed body keeps nothing.
        assert_eq!(doer.stale_usage().0, 0);
    }
    let snap = doer.snapshot(HOST).unwrap();
    assert_eq!(snap.state, State::Open);
    assert_eq!((snap.counts.successes, snap.counts.failures), (0, 3));
    let err = doer.execute(get("/item")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BreakerOpen);
    assert_eq!(host.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn failing_bodies_trip_on_the_failure_rate_too() {
    let host = Host::new();
    let doer = host
        .doer()
        .breaker()
        .consecutive_failures(0)
        .failure_rate(0.5, 4);
    // Whole, broken, whole, broken: half of four calls failed.
    for mode in [Mode::Whole, Mode::Breaks, Mode::Whole, Mode::Breaks] {
        host.set(mode);
        let body = doer.execute(get("/item")).await.unwrap().into_body();
        assert_eq!(body.bytes().await.is_ok(), mode == Mode::Whole);
    }
    let snap = doer.snapshot(HOST).unwrap();
    assert_eq!((snap.window_successes, snap.window_failures), (0, 0));
    assert_eq!(snap.state, State::Open);
    assert_eq!((snap.counts.successes, snap.counts.failures), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn the_classifier_decides_what_a_body_error_counts_as() {
    let host = Host::new();
    let doer = host.doer().breaker().consecutive_failures(1).classify(
        |result: &Result<Response, Error>| match result {
            Err(e) if e.kind() == ErrorKind::Body => Verdict::Ignored,
            other => default_verdict(other),
        },
    );
    host.set(Mode::Breaks);
    for _ in 0..3 {
        let body = doer.execute(get("/item")).await.unwrap().into_body();
        assert!(body.bytes().await.is_err());
    }
    let snap = doer.snapshot(HOST).unwrap();
    assert_eq!(snap.state, State::Closed);
    assert_eq!(snap.counts.ignored, 3);
}

#[tokio::test(start_paused = true)]
async fn a_probe_counts_its_head_and_a_body_error_after_it_is_one_more_failure() {
    // One probe: its head closes the circuit; its failing body then counts in the closed one.
    let host = Host::new();
    let doer = host
        .doer()
        .breaker()
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(10));
    host.set(Mode::Down);
    for _ in 0..2 {
        let _ = doer.execute(get("/item")).await.unwrap();
    }
    assert_eq!(doer.state(HOST), State::Open);
    tokio::time::advance(Duration::from_secs(10)).await;
    host.set(Mode::Breaks);
    let probe = doer.execute(get("/item")).await.unwrap();
    assert_eq!(doer.state(HOST), State::Closed);
    assert!(probe.into_body().bytes().await.is_err());
    let snap = doer.snapshot(HOST).unwrap();
    assert_eq!((snap.state, snap.consecutive_failures), (State::Closed, 1));
    let body = doer.execute(get("/item")).await.unwrap().into_body();
    assert!(body.bytes().await.is_err());
    assert_eq!(doer.state(HOST), State::Open);

    // Two probes: the first one's head leaves the circuit half-open, and its failing body
    // opens it again, as a failed probe does.
    let host = Host::new();
    let doer = host
        .doer()
        .breaker()
        .consecutive_failures(1)
        .half_open_probes(2)
        .open_duration(Duration::from_secs(10));
    host.set(Mode::Down);
    let _ = doer.execute(get("/item")).await.unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    host.set(Mode::Breaks);
    let probe = doer.execute(get("/item")).await.unwrap();
    assert_eq!(doer.state(HOST), State::HalfOpen);
    assert!(probe.into_body().bytes().await.is_err());
    assert_eq!(doer.state(HOST), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_buffered_answer_is_still_counted_and_kept_at_once() {
    let doer = doer_fn(|_req: Request| async { Ok(response(200, "buffered")) })
        .breaker()
        .serve_stale(ServeStale::new(Duration::from_secs(300)));
    let resp = doer.execute(get("/b")).await.unwrap();
    assert!(!resp.body().is_stream());
    assert_eq!(doer.stale_usage().0, 1);
    assert_eq!(doer.snapshot(HOST).unwrap().counts.successes, 1);
    drop(resp);
}

// ---- over loopback -----------------------------------------------------------------------------

#[tokio::test]
async fn over_loopback_a_streamed_answer_is_kept_and_served_while_open() {
    let server = support::server::start().await;
    let backend = ReqwestDoer::new().response_mode(ResponseMode::Streamed);
    let doer = Breaker::new(backend)
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(60))
        .serve_stale(ServeStale::new(Duration::from_secs(300)));
    let url = server.url("/chunked/100000");
    let req = || {
        http::Request::get(url.as_str())
            .body(Body::empty())
            .unwrap()
    };
    let resp = doer.execute(req()).await.unwrap();
    assert!(resp.body().is_stream());
    let body = resp.into_body().bytes().await.unwrap();
    assert_eq!(&body[..], &support::server::pattern(100_000)[..]);
    assert_eq!(doer.stale_usage().0, 1);

    // A 5xx from the same origin opens its circuit.
    let down = http::Request::get(server.url("/status/503"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(doer.execute(down).await.unwrap().status(), 503);
    let stale = doer.execute(req()).await.unwrap();
    assert!(stale.extensions().get::<StaleAnswer>().is_some());
    assert_eq!(stale.into_body().bytes().await.unwrap(), body);
}

#[tokio::test]
async fn over_loopback_a_truncated_body_counts_as_a_failure() {
    let server = faults::start(Fault::TruncatedBody).await;
    let backend = ReqwestDoer::new()
        .response_mode(ResponseMode::Streamed)
        .timeout(Some(Duration::from_secs(10)));
    let doer = Breaker::new(backend)
        .consecutive_failures(2)
        .serve_stale(ServeStale::new(Duration::from_secs(300)));
    let key = doer.key_for(
        &http::Request::get(server.url("/"))
            .body(Body::empty())
            .unwrap(),
    );
    for _ in 0..2 {
        let req = http::Request::get(server.url("/"))
            .body(Body::empty())
            .unwrap();
        let resp = doer.execute(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let err = resp.into_body().bytes().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Body, "{err}");
    }
    assert_eq!(doer.state(&key), State::Open);
    assert_eq!(doer.stale_usage().0, 0);
}
