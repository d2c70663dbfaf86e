//! Loopback requests per second: each backend against the raw library it wraps.
//!
//! One run, one loopback server (hyper, HTTP/1.1 keep-alive, a fixed 13-byte answer, on its
//! own thread and runtime), five clients on one current-thread client runtime:
//!
//! * `reqwest/doer`: `ReqwestDoer::new()`, an `http::Request` per call, then `bytes()`.
//! * `reqwest/raw`: that doer's own `reqwest::Client`, `get(url).timeout(30 s).send()`, then
//!   `bytes()`.
//! * `ureq/doer`: `UreqDoer::new()`, the same way.
//! * `ureq/raw`: that doer's own `ureq::Agent`, `get(url).call()` and `read_to_vec()`, run
//!   through `tokio::task::spawn_blocking`, as any async caller of ureq must.
//! * `ureq/raw_direct`: the same raw call on a plain blocking thread, for reference only.
//!
//! Fairness: each raw library is driven through the very client or agent that
//! `ReqwestDoer::new()` / `UreqDoer::new()` built (same configuration: redirects left to the
//! caller, 10 s connect timeout, 30 s timeout per exchange, statuses as responses; same
//! connection pool), every client builds its request from the URL string as a caller would
//! (an `http::Request` for the wrappers, the library's own builder for the raw side) and reads
//! the whole body. So a ratio measures everything the wrapper adds: building an
//! `http::Request`, the boxed `Doer` future, request conversion, the redirect check and the
//! body limit.
//!
//! Criterion reports each client's throughput. The ratios printed at the end come from a
//! separate paired phase: short batches of raw and wrapped requests alternate (order flipped
//! every round) and the median of the per-round ratios is reported with its interquartile
//! range, so that the load of a shared machine, which drifts over seconds, hits both sides
//! alike and its size is visible. `cargo bench -p http-doer-benches --bench backends -- none`
//! skips criterion (no benchmark is named `none`) and prints the ratios alone.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use http_body_util::Full;
use http_doer::{Body, Doer, ReqwestDoer, UreqDoer};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::runtime::Runtime;

/// The timeout each wrapper sets per exchange by default, set on the raw reqwest requests too
/// (ureq's agent carries it in its config).
const TIMEOUT: Duration = http_doer::backend::DEFAULT_TIMEOUT;

/// The clients compared: four on the async runtime, one on a plain blocking thread.
#[derive(Clone, Copy)]
enum Client {
    RawReqwest,
    ReqwestDoer,
    RawUreq,
    UreqDoer,
    RawUreqDirect,
}

struct Fixture {
    url: String,
    rt: Runtime,
    reqwest: reqwest::Client,
    reqwest_doer: ReqwestDoer,
    agent: ureq::Agent,
    ureq_doer: UreqDoer,
}

impl Fixture {
    fn new() -> Self {
        let url = format!("http://{}/", start_server());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a client runtime");
        // Each raw library gets the very client or agent its wrapper's `new()` built: same
        // configuration, same connection pool.
        let reqwest_doer = ReqwestDoer::new();
        let ureq_doer = UreqDoer::new();
        Fixture {
            url,
            rt,
            reqwest: reqwest_doer.client().clone(),
            reqwest_doer,
            agent: ureq_doer.agent().clone(),
            ureq_doer,
        }
    }

    async fn call(&self, client: Client) {
        let body = match client {
            Client::RawReqwest => {
                let resp = self.reqwest.get(&self.url).timeout(TIMEOUT).send().await;
                resp.expect("an answer").bytes().await.expect("a body")
            }
            Client::ReqwestDoer => self.through_doer(&self.reqwest_doer).await,
            Client::RawUreq => {
                let (agent, url) = (self.agent.clone(), self.url.clone());
                let body = tokio::task::spawn_blocking(move || raw_ureq(&agent, &url)).await;
                Bytes::from(body.expect("a blocking task"))
            }
            Client::UreqDoer => self.through_doer(&self.ureq_doer).await,
            Client::RawUreqDirect => unreachable!("timed by `time`, off the runtime"),
        };
        black_box(body);
    }

    async fn through_doer(&self, doer: &impl Doer) -> Bytes {
        let req = http::Request::get(&self.url).body(Body::empty());
        let resp = doer.execute(req.expect("a request")).await;
        resp.expect("an answer")
            .into_body()
            .bytes()
            .await
            .expect("a body")
    }

    /// The time `n` sequential requests of `client` take.
    fn time(&self, client: Client, n: u64) -> Duration {
        match client {
            Client::RawUreqDirect => self.time_direct(n),
            _ => self.rt.block_on(self.time_async(client, n)),
        }
    }

    async fn time_async(&self, client: Client, n: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            self.call(client).await;
        }
        start.elapsed()
    }

    fn time_direct(&self, n: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            black_box(raw_ureq(&self.agent, &self.url));
        }
        start.elapsed()
    }
}

fn raw_ureq(agent: &ureq::Agent, url: &str) -> Vec<u8> {
    let mut resp = agent.get(url).call().expect("an answer");
    resp.body_mut().read_to_vec().expect("a body")
}

/// Starts the loopback server on its own thread and runtime; returns its address.
fn start_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"hello, world\n"),
                    )))
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::spawn(conn);
            }
        });
    });
    addr
}

fn criterion_benches(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("backends");
    group.throughput(Throughput::Elements(1));
    for (name, client) in [
        ("reqwest/raw", Client::RawReqwest),
        ("reqwest/doer", Client::ReqwestDoer),
        ("ureq/raw", Client::RawUreq),
        ("ureq/doer", Client::UreqDoer),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&f.rt)
                .iter_custom(|iters| f.time_async(client, iters))
        });
    }
    group.bench_function("ureq/raw_direct", |b| b.iter(|| raw_ureq(&f.agent, &f.url)));
    group.finish();
}

/// The outcome of a paired comparison.
struct Paired {
    /// Quartiles of the per-round ratios of wrapped to raw throughput.
    q1: f64,
    median: f64,
    q3: f64,
    /// Throughput over all rounds, requests per second.
    raw_per_sec: f64,
    wrapped_per_sec: f64,
}

/// Paired comparison of `raw` and `wrapped`: `rounds` rounds of `batch` requests on each side,
/// alternating which side goes first, so that a change of load on the machine hits both alike.
fn paired(f: &Fixture, rounds: usize, batch: u64, raw: Client, wrapped: Client) -> Paired {
    let (mut raw_total, mut wrapped_total) = (Duration::ZERO, Duration::ZERO);
    let mut ratios = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (r, w) = if round % 2 == 0 {
            let r = f.time(raw, batch);
            (r, f.time(wrapped, batch))
        } else {
            let w = f.time(wrapped, batch);
            (f.time(raw, batch), w)
        };
        raw_total += r;
        wrapped_total += w;
        ratios.push(r.as_secs_f64() / w.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let per_sec = |total: Duration| (rounds as u64 * batch) as f64 / total.as_secs_f64();
    Paired {
        q1: ratios[rounds / 4],
        median: ratios[rounds / 2],
        q3: ratios[rounds * 3 / 4],
        raw_per_sec: per_sec(raw_total),
        wrapped_per_sec: per_sec(wrapped_total),
    }
}

fn print_ratios(f: &Fixture) {
    const ROUNDS: usize = 101;
    const BATCH: u64 = 100;
    // Warm every connection pool first.
    for client in [Client::RawReqwest, Client::RawUreq] {
        f.time(client, BATCH);
    }
    println!();
    println!("wrapper/raw throughput, median of {ROUNDS} paired rounds of {BATCH} requests each:");
    for (label, raw, wrapped) in [
        (
            "ReqwestDoer / reqwest::Client",
            Client::RawReqwest,
            Client::ReqwestDoer,
        ),
        (
            "UreqDoer / ureq::Agent via spawn_blocking",
            Client::RawUreq,
            Client::UreqDoer,
        ),
        (
            "UreqDoer / ureq::Agent direct (reference)",
            Client::RawUreqDirect,
            Client::UreqDoer,
        ),
    ] {
        let p = paired(f, ROUNDS, BATCH, raw, wrapped);
        println!(
            "  {label:<44} {:.3}  (IQR {:.3}-{:.3}; {:.0} vs {:.0} req/s)",
            p.median, p.q1, p.q3, p.wrapped_per_sec, p.raw_per_sec
        );
    }
    println!("target: the first two at 0.970 or above");
}

fn main() {
    let fixture = Fixture::new();
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    criterion_benches(&mut c, &fixture);
    c.final_summary();
    print_ratios(&fixture);
}
