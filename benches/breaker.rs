//! Breaker benchmarks.
//!
//! 1. Closed-state overhead over an instant Doer: bare vs `Breaker`, on one thread and on two
//!    threads calling the same host at once (lock contention would show as a higher cost per
//!    call on two threads).
//! 2. A loopback backend that is down (503, or connection refused), with many concurrent
//!    callers: how many requests reach it, and the latency callers see, with no breaker, with a
//!    breaker, and with a breaker that serves stale answers.
//!
//! Criterion measures single calls; a report printed at the end gives the figures under load.
//! Figures on a shared 2-core machine are noisy. `BREAKER_BENCH_ONLY=bare|breaker` runs
//! `BREAKER_BENCH_CALLS` (default 1,000,000) closed-state calls alone, for a profiler.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use criterion::{Criterion, criterion_group};
use http_doer::breaker::{ServeStale, StaleAnswer};
use http_doer::{Body, Breaker, Doer, DoerExt, Error, Request, ReqwestDoer, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

// ---- 1. closed-state overhead ------------------------------------------------------------------

/// Answers `200` at once.
struct Instantly;

#[async_trait]
impl Doer for Instantly {
    async fn execute(&self, _req: Request) -> Result<Response, Error> {
        Ok(http::Response::new(Body::empty()))
    }
}

fn request(uri: &http::Uri) -> Request {
    let mut req = http::Request::new(Body::empty());
    *req.uri_mut() = uri.clone();
    req
}

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Time for each of `threads` threads to make `iters` calls at the same time (the slowest).
fn run_threads(doer: &Arc<dyn Doer>, uri: &http::Uri, threads: usize, iters: u64) -> Duration {
    run_threads_on(doer, &vec![uri.clone(); threads], iters)
}

/// As [`run_threads`], one thread per URI.
fn run_threads_on(doer: &Arc<dyn Doer>, uris: &[http::Uri], iters: u64) -> Duration {
    let barrier = Barrier::new(uris.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = uris
            .iter()
            .map(|uri| {
                let barrier = &barrier;
                s.spawn(move || {
                    let rt = current_thread();
                    barrier.wait();
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            let resp = doer.execute(request(uri)).await;
                            black_box(resp.is_ok());
                        }
                        start.elapsed()
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

fn closed_overhead(c: &mut Criterion) {
    let uri: http::Uri = "http://api.test/items".parse().unwrap();
    let doers: [(&str, Arc<dyn Doer>); 2] = [
        ("bare", Arc::new(Instantly)),
        ("breaker", Arc::new(Instantly.breaker())),
    ];
    let mut group = c.benchmark_group("closed_overhead");
    for (name, doer) in &doers {
        for threads in [1, 2] {
            group.bench_function(format!("{name}/{threads}_thread"), |b| {
                b.iter_custom(|iters| run_threads(doer, &uri, threads, iters))
            });
        }
    }
    group.finish();
}

// ---- 2. a down backend -------------------------------------------------------------------------

/// A loopback HTTP/1.1 server (keep-alive) that answers `200 "good"` while `up`, else `503`,
/// and counts the requests that reach it.
struct Backend {
    port: u16,
    up: Arc<AtomicBool>,
    hits: Arc<AtomicUsize>,
}

impl Backend {
    async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let hits = Arc::new(AtomicUsize::new(0));
        let (up2, hits2) = (up.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(sock, up2.clone(), hits2.clone()));
            }
        });
        Backend { port, up, hits }
    }
}

async fn serve(mut sock: tokio::net::TcpStream, up: Arc<AtomicBool>, hits: Arc<AtomicUsize>) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            hits.fetch_add(1, Ordering::Relaxed);
            let reply: &[u8] = if up.load(Ordering::Relaxed) {
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood"
            } else {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
            };
            if sock.write_all(reply).await.is_err() {
                return;
            }
        }
        match sock.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
}

/// A port on 127.0.0.1 where nothing listens.
fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn multi_thread() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The three stacks compared, over the same backend.
fn stacks() -> [(&'static str, Arc<dyn Doer>); 3] {
    // A long open period, so the whole measurement happens while open.
    let open = Duration::from_secs(600);
    [
        ("no breaker", Arc::new(ReqwestDoer::new())),
        (
            "breaker",
            Arc::new(ReqwestDoer::new().breaker().open_duration(open)),
        ),
        (
            "breaker+stale",
            Arc::new(
                Breaker::new(ReqwestDoer::new())
                    .open_duration(open)
                    .serve_stale(ServeStale::new(Duration::from_secs(3600))),
            ),
        ),
    ]
}

fn uri_of(port: u16) -> http::Uri {
    format!("http://127.0.0.1:{port}/item").parse().unwrap()
}

/// Warms the stale cache with a good answer, then takes the backend down and trips.
async fn prepare(doer: &Arc<dyn Doer>, backend: &Backend, uri: &http::Uri) {
    backend.up.store(true, Ordering::SeqCst);
    let _ = doer.execute(request(uri)).await;
    backend.up.store(false, Ordering::SeqCst);
    for _ in 0..5 {
        let _ = doer.execute(request(uri)).await;
    }
}

fn down_backend(c: &mut Criterion) {
    let rt = multi_thread();
    let backend = rt.block_on(Backend::start());
    let uri = uri_of(backend.port);
    let refused = uri_of(refused_port());
    let mut group = c.benchmark_group("down_backend_one_call");
    for (name, doer) in stacks() {
        rt.block_on(prepare(&doer, &backend, &uri));
        group.bench_function(format!("503/{name}"), |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(doer.execute(request(&uri)).await.is_ok()) })
        });
        if name != "breaker+stale" {
            rt.block_on(async {
                for _ in 0..5 {
                    let _ = doer.execute(request(&refused)).await;
                }
            });
            group.bench_function(format!("refused/{name}"), |b| {
                b.to_async(&rt)
                    .iter(|| async { black_box(doer.execute(request(&refused)).await.is_ok()) })
            });
        }
    }
    group.finish();
}

// ---- report --------------------------------------------------------------------------------------

fn per_call_ns(doer: Arc<dyn Doer>, uris: &[&str], calls: u64) -> f64 {
    let uris: Vec<http::Uri> = uris.iter().map(|u| u.parse().unwrap()).collect();
    // Best of five, to see through other processes on a shared machine.
    (0..5)
        .map(|_| run_threads_on(&doer, &uris, calls).as_nanos() as f64 / calls as f64)
        .fold(f64::INFINITY, f64::min)
}

struct Load {
    hits: usize,
    served_stale: usize,
    p50: Duration,
    p99: Duration,
    wall: Duration,
}

/// `callers` tasks make `each` calls each to a down backend; what reaches it, and what they see.
async fn load(doer: Arc<dyn Doer>, backend: &Backend, callers: usize, each: usize) -> Load {
    let uri = uri_of(backend.port);
    prepare(&doer, backend, &uri).await;
    let before = backend.hits.load(Ordering::SeqCst);
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (doer, uri) = (doer.clone(), uri.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(each);
                let mut stale = 0;
                for _ in 0..each {
                    let t = Instant::now();
                    let r = doer.execute(request(&uri)).await;
                    lat.push(t.elapsed());
                    if let Ok(resp) = r {
                        stale += usize::from(resp.extensions().get::<StaleAnswer>().is_some());
                    }
                }
                (lat, stale)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(callers * each);
    let mut served_stale = 0;
    for t in tasks {
        let (lat, stale) = t.await.unwrap();
        all.extend(lat);
        served_stale += stale;
    }
    let wall = start.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Load {
        hits: backend.hits.load(Ordering::SeqCst) - before,
        served_stale,
        p50: pct(0.50),
        p99: pct(0.99),
        wall,
    }
}

fn report() {
    println!("\n=== breaker report (2 shared cores: noisy) ===");
    println!("closed-state cost per call over an instant Doer (best of 5 runs of 200k calls):");
    let calls = 200_000;
    let (a, b) = ("http://a.test/items", "http://b.test/items");
    for (what, uris) in [
        ("1 thread", &[a][..]),
        ("2 threads, same host", &[a, a][..]),
        ("2 threads, one host each", &[a, b][..]),
    ] {
        let bare = per_call_ns(Arc::new(Instantly), uris, calls);
        let breaker = per_call_ns(Arc::new(Instantly.breaker()), uris, calls);
        println!(
            "  {what:<25} bare {bare:>4.0} ns, breaker {breaker:>4.0} ns: \
             overhead {:>4.0} ns/call ({:.2}x)",
            breaker - bare,
            breaker / bare
        );
    }

    let rt = multi_thread();
    let backend = rt.block_on(Backend::start());
    let (callers, each) = (64, 100);
    println!(
        "down backend (503 on loopback), {callers} concurrent callers x {each} calls, \
         after the trip:"
    );
    for (name, doer) in stacks() {
        let l = rt.block_on(load(doer, &backend, callers, each));
        println!(
            "  {name:<14} reached backend {:>5} of {:>5}; served stale {:>5}; \
             latency p50 {:>9.1?} p99 {:>9.1?}; wall {:>8.1?}",
            l.hits,
            callers * each,
            l.served_stale,
            l.p50,
            l.p99,
            l.wall
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = closed_overhead, down_backend
}

fn main() {
    // `BREAKER_BENCH_ONLY=bare|breaker` makes `BREAKER_BENCH_CALLS` (default a million)
    // closed-state calls on one thread and nothing else, for a profiler or an instruction
    // counter such as `valgrind --tool=callgrind`, whose figures do not depend on the load.
    if let Ok(which) = std::env::var("BREAKER_BENCH_ONLY") {
        let doer: Arc<dyn Doer> = match which.as_str() {
            "bare" => Arc::new(Instantly),
            _ => Arc::new(Instantly.breaker()),
        };
        let uri: http::Uri = "http://api.test/items".parse().unwrap();
        let calls = std::env::var("BREAKER_BENCH_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1_000_000u64);
        let took = run_threads(&doer, &uri, 1, calls);
        println!(
            "{which}: {:.0} ns/call",
            took.as_nanos() as f64 / calls as f64
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
}
