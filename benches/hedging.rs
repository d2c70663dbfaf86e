//! Hedging benchmark.
//!
//! 1. A tail-latency experiment, printed as a table: a loopback server whose latency has a
//!    seeded long tail (each request independently: 1-3 ms with probability 0.95, else 100 ms,
//!    drawn by arrival order from one seeded sequence, so every variant meets the same server),
//!    and N sequential GETs per variant through `ReqwestDoer`, each variant from a cold start.
//!    Latency distributions are not what criterion measures, so this part is a plain run.
//! 2. The decorator's own cost per call (criterion): `Hedging` around a Doer that answers at
//!    once, against that Doer alone.
//!
//! `HEDGE_BENCH_N=500 cargo bench -p http-doer-benches --bench hedging` for a quicker run (default
//! 3000 calls per variant), `HEDGE_BENCH_SEED=n` for another latency sequence. tower's warmed
//! variant always waits out tower's 10 s period first.
//!
//! `HEDGE_BENCH_RUNS=k` runs only the default adaptive variant, k times, each from a cold
//! start on its own seed (`HEDGE_BENCH_SEED`, +1, ...), and prints each run's p99 and extra
//! requests with their median and min-max: whether the tail is cut in every run, not in one.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use http_doer::hedging::HedgeBudget;
use http_doer::testing::{copy_request, doer_fn, response};
use http_doer::{Body, Doer, DoerExt, Error, Hedging, Request, ReqwestDoer, Response};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tower::{Service, ServiceExt};

/// The latency sequence's seed, unless `HEDGE_BENCH_SEED` says otherwise.
const SEED: u64 = 0x5EED;
/// Connections the server serves at once: a few live ones plus cancelled copies that are
/// still sleeping out their latency.
const SERVER_THREADS: usize = 64;

/// The server's latency for each arrival, and how many requests arrived.
struct Tail {
    schedule: Vec<Duration>,
    arrivals: AtomicUsize,
}

impl Tail {
    fn new(len: usize, seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let schedule = (0..len)
            .map(|_| {
                if rng.random_bool(0.95) {
                    Duration::from_micros(rng.random_range(1000..=3000))
                } else {
                    Duration::from_millis(100)
                }
            })
            .collect();
        Tail {
            schedule,
            arrivals: AtomicUsize::new(0),
        }
    }

    fn next(&self) -> Duration {
        let n = self.arrivals.fetch_add(1, Ordering::SeqCst);
        self.schedule[n % self.schedule.len()]
    }
}

/// A keep-alive HTTP/1.1 server on plain threads, so its sleeps are as precise as the OS
/// allows (a tokio timer would round each one up to the next millisecond). The threads are
/// started up front and take turns accepting, so a new connection (every hedge opens one)
/// does not wait for a thread to be spawned.
fn serve(tail: Arc<Tail>) -> String {
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").expect("bind loopback"));
    let url = format!("http://{}/item", listener.local_addr().unwrap());
    for _ in 0..SERVER_THREADS {
        let (listener, tail) = (listener.clone(), tail.clone());
        std::thread::spawn(move || {
            while let Ok((stream, _)) = listener.accept() {
                connection(stream, &tail);
            }
        });
    }
    url
}

fn connection(stream: TcpStream, tail: &Tail) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        // One request head per turn; the client sends GETs without a body.
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => {}
            }
        }
        std::thread::sleep(tail.next());
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

fn get(url: &str) -> Request {
    http::Request::get(url).body(Body::empty()).unwrap()
}

struct Row {
    name: &'static str,
    latencies: Vec<Duration>,
    extra: f64,
    note: String,
}

impl Row {
    fn pct(&self, q: f64) -> f64 {
        let n = self.latencies.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }
}

/// Runs `n` sequential calls through `call`; the row's extra requests are counted at the
/// server, so every variant, tower's too, is measured the same way.
async fn measure<F>(name: &'static str, tail: &Tail, n: usize, mut call: F) -> Row
where
    F: AsyncFnMut() -> Result<Response, Error>,
{
    let before = tail.arrivals.load(Ordering::SeqCst);
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let resp = call().await.expect("the loopback server answers");
        latencies.push(start.elapsed());
        assert_eq!(resp.status(), 200);
    }
    // Let cancelled copies that were already on the wire arrive before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = tail.arrivals.load(Ordering::SeqCst) - before;
    latencies.sort();
    Row {
        name,
        latencies,
        extra: (sent as f64 - n as f64) / n as f64 * 100.0,
        note: String::new(),
    }
}

async fn hedged(
    name: &'static str,
    tail: &Tail,
    url: &str,
    n: usize,
    h: Hedging<ReqwestDoer>,
) -> Row {
    tail.arrivals.store(0, Ordering::SeqCst);
    let mut row = measure(name, tail, n, async || h.execute(get(url)).await).await;
    let s = h.stats();
    row.note = format!(
        "hedge wins {}, cancelled {}, budget denied {}, delay at end {:.2} ms",
        s.hedge_wins,
        s.cancelled_copies,
        s.budget_denied,
        h.current_delay().as_secs_f64() * 1000.0
    );
    row
}

#[derive(Clone)]
struct CloneAny;

impl tower::hedge::Policy<Request> for CloneAny {
    fn clone_request(&self, req: &Request) -> Option<Request> {
        Some(copy_request(req))
    }

    fn can_retry(&self, _req: &Request) -> bool {
        true
    }
}

type TowerHedge =
    tower::hedge::Hedge<tower::util::BoxCloneSyncService<Request, Response, Error>, CloneAny>;

/// tower's hedge as the issue configures it: p95, 20 data points, 10 s period.
fn tower_hedge() -> TowerHedge {
    let doer = ReqwestDoer::new();
    let svc = tower::service_fn(move |req: Request| {
        let doer = doer.clone();
        async move { doer.execute(req).await }
    });
    tower::hedge::Hedge::new::<Request>(
        tower::util::BoxCloneSyncService::new(svc),
        CloneAny,
        20,
        0.95,
        Duration::from_secs(10),
    )
}

async fn tower_call(h: &mut TowerHedge, url: &str) -> Result<Response, Error> {
    let svc = h.ready().await.map_err(tower_error)?;
    svc.call(get(url)).await.map_err(tower_error)
}

fn tower_error(e: tower::BoxError) -> Error {
    Error::new(http_doer::ErrorKind::Other, e)
}

async fn tail_table(n: usize, seed: u64) {
    let tail = Arc::new(Tail::new(1 << 16, seed));
    let url = serve(tail.clone());
    let mut rows = Vec::new();

    tail.arrivals.store(0, Ordering::SeqCst);
    let plain = ReqwestDoer::new();
    rows.push(
        measure("no hedging", &tail, n, async || {
            plain.execute(get(&url)).await
        })
        .await,
    );

    let fixed = ReqwestDoer::new()
        .hedging()
        .fixed_delay(Duration::from_millis(10));
    rows.push(hedged("fixed 10 ms", &tail, &url, n, fixed).await);

    let adaptive = ReqwestDoer::new().hedging();
    rows.push(hedged("adaptive (p95, defaults)", &tail, &url, n, adaptive).await);

    let race = ReqwestDoer::new()
        .hedging()
        .all_at_once()
        .budget(HedgeBudget::unlimited());
    rows.push(hedged("all at once, 2 copies", &tail, &url, n, race).await);

    let three = ReqwestDoer::new().hedging().max_copies(3);
    rows.push(hedged("adaptive, 3 copies", &tail, &url, n, three).await);

    tail.arrivals.store(0, Ordering::SeqCst);
    let mut cold = tower_hedge();
    rows.push(
        measure("tower hedge, cold", &tail, n, async || {
            tower_call(&mut cold, &url).await
        })
        .await,
    );

    // tower learns nothing until its first 10 s period has passed: warm it up that long, on
    // the same seeded sequence.
    tail.arrivals.store(0, Ordering::SeqCst);
    let mut warm = tower_hedge();
    let created = Instant::now();
    let mut warm_calls = 0;
    while created.elapsed() < Duration::from_millis(10_200) {
        tower_call(&mut warm, &url).await.expect("warm-up call");
        warm_calls += 1;
    }
    tail.arrivals.store(0, Ordering::SeqCst);
    rows.push(
        measure("tower hedge, warmed 10 s", &tail, n, async || {
            tower_call(&mut warm, &url).await
        })
        .await,
    );

    println!("\nTail latency, {n} sequential GETs per variant over loopback (ms; cold start");
    println!("unless stated; server: 1-3 ms with p=0.95 else 100 ms by arrival, seed {seed}):\n");
    println!(
        "| {:<26} | {:>6} | {:>6} | {:>6} | {:>6} | {:>6} |",
        "variant", "p50", "p95", "p99", "p99.9", "extra"
    );
    println!(
        "|{:-<28}|{:->8}|{:->8}|{:->8}|{:->8}|{:->8}|",
        "", "", "", "", "", ""
    );
    for r in &rows {
        println!(
            "| {:<26} | {:>6.2} | {:>6.2} | {:>6.2} | {:>6.2} | {:>5.1}% |",
            r.name,
            r.pct(0.5),
            r.pct(0.95),
            r.pct(0.99),
            r.pct(0.999),
            r.extra
        );
    }
    let slow_share = |k: usize| {
        let slow = tail.schedule[..k].iter().filter(|d| d.as_millis() >= 100);
        slow.count() as f64 / k.max(1) as f64 * 100.0
    };
    println!(
        "\nslow share of the first {n} arrivals: {:.2}%; of the {warm_calls} in tower's warm-up: {:.2}%",
        slow_share(n),
        slow_share(warm_calls)
    );
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        println!("{}: {}", r.name, r.note);
    }
    println!();
}

/// The default adaptive variant, `runs` times from a cold start, each on its own seed.
async fn adaptive_runs(n: usize, seed: u64, runs: u64) {
    let mut p99s = Vec::new();
    let mut extras = Vec::new();
    println!("\nadaptive (p95, defaults), {n} sequential GETs per run, each run cold:\n");
    for run in 0..runs {
        let seed = seed.wrapping_add(run);
        let tail = Arc::new(Tail::new(1 << 16, seed));
        let url = serve(tail.clone());
        let row = hedged(
            "adaptive (p95, defaults)",
            &tail,
            &url,
            n,
            ReqwestDoer::new().hedging(),
        )
        .await;
        println!(
            "  seed {:>6}: p50 {:>5.2} ms, p99 {:>6.2} ms, p99.9 {:>6.2} ms, extra {:>4.1}%",
            seed,
            row.pct(0.5),
            row.pct(0.99),
            row.pct(0.999),
            row.extra
        );
        p99s.push(row.pct(0.99));
        extras.push(row.extra);
    }
    let spread = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (p99, p99_lo, p99_hi) = spread(p99s);
    let (extra, extra_lo, extra_hi) = spread(extras);
    println!(
        "\n{runs} runs: p99 {p99:.2} ms ({p99_lo:.2}-{p99_hi:.2}), extra {extra:.1}% \
         ({extra_lo:.1}-{extra_hi:.1}); medians (min-max)\n"
    );
}

fn overhead(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let instant = Arc::new(doer_fn(|_req: Request| async { Ok(response(200, "")) }));
    let hedged = instant.clone().hedging();
    let fixed = instant
        .clone()
        .hedging()
        .fixed_delay(Duration::from_millis(5));
    let mut group = c.benchmark_group("hedging overhead per call");
    group.bench_function("bare doer", |b| {
        b.to_async(rt)
            .iter(|| instant.execute(get("http://a.test/")))
    });
    group.bench_function("Hedging, adaptive", |b| {
        b.to_async(rt)
            .iter(|| hedged.execute(get("http://a.test/")))
    });
    group.bench_function("Hedging, fixed", |b| {
        b.to_async(rt).iter(|| fixed.execute(get("http://a.test/")))
    });
    group.finish();
}

fn main() {
    let n = std::env::var("HEDGE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000usize)
        .max(10);
    let seed = std::env::var("HEDGE_BENCH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SEED);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(runs) = std::env::var("HEDGE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        rt.block_on(adaptive_runs(n, seed, runs.max(1)));
        return;
    }
    rt.block_on(tail_table(n, seed));

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    overhead(&mut c, &rt);
    c.final_summary();
}
