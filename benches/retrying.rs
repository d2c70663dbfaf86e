//! Retrying: per-call overhead over a doer that answers at once, against reqwest-retry's
//! middleware and tower's `Retry` + `TpsBudget` doing the same work; and the load a total
//! outage puts on the backend (backend requests / calls) with each one's default budget.
//!
//! Run with `cargo bench -p http-doer-benches --bench retrying` (pinned for the summary:
//! `taskset -c 0 target/release/deps/retrying-<hash> --bench`; `RETRYING_ROUNDS`, default 9,
//! sets its rounds). The overhead of each retrier is measured against its own bare stack (our
//! bare doer; reqwest-middleware with only the instant terminal; the bare tower service), so
//! the cost of building each library's request and response cancels out. Besides criterion's
//! report, a summary table is printed at the end.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use http::Extensions;
use http_doer::testing::{copy_request, response};
use http_doer::{Body, Doer, Error, Request, Response, Retrying};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use reqwest_retry::RetryTransientMiddleware;
use reqwest_retry::policies::ExponentialBackoff;
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Service, ServiceExt};

// ---------------------------------------------------------------------------------------------
// The backends: answer at once, counting requests.

#[derive(Clone, Default)]
struct Instant200 {
    status: u16,
    count: Arc<AtomicU64>,
}

impl Instant200 {
    fn new(status: u16) -> Self {
        Instant200 {
            status,
            count: Arc::default(),
        }
    }
}

#[async_trait::async_trait]
impl Doer for Instant200 {
    async fn execute(&self, _req: Request) -> Result<Response, Error> {
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(response(self.status, ""))
    }
}

/// reqwest-middleware's terminal: answers without calling `next`, so no network is involved.
struct InstantTerminal(Instant200);

#[async_trait::async_trait]
impl Middleware for InstantTerminal {
    async fn handle(
        &self,
        _req: reqwest::Request,
        _ext: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        self.0.count.fetch_add(1, Ordering::Relaxed);
        let resp = http::Response::builder()
            .status(self.0.status)
            .body(Vec::<u8>::new())
            .expect("a valid response");
        Ok(reqwest::Response::from(resp))
    }
}

// ---------------------------------------------------------------------------------------------
// tower: Retry + TpsBudget with a policy doing Retrying's work.

#[derive(Clone)]
struct TowerPolicy {
    budget: Arc<TpsBudget>,
    attempts: u32,
}

impl TowerPolicy {
    fn new() -> Self {
        TowerPolicy {
            budget: Arc::new(TpsBudget::default()),
            attempts: 0,
        }
    }
}

impl tower::retry::Policy<Request, Response, Error> for TowerPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request,
        result: &mut Result<Response, Error>,
    ) -> Option<Self::Future> {
        // Finagle's rule, as Retrying does: every first attempt earns part of a retry.
        if self.attempts == 0 {
            self.budget.deposit();
        }
        self.attempts += 1;
        let transient = match result {
            Ok(resp) => matches!(resp.status().as_u16(), 408 | 429 | 500 | 502 | 503 | 504),
            Err(err) => err.is_connect(),
        };
        let idempotent = http_doer::retrying::is_idempotent(req);
        if !transient || !idempotent || self.attempts > 3 || !self.budget.withdraw() {
            return None;
        }
        let wait = Duration::from_secs(1) * 2u32.pow(self.attempts - 1);
        Some(tokio::time::sleep(wait))
    }

    fn clone_request(&mut self, req: &Request) -> Option<Request> {
        Some(copy_request(req))
    }
}

fn tower_instant(
    backend: Instant200,
) -> impl Service<Request, Response = Response, Error = Error, Future: Send> + Clone {
    tower::service_fn(move |req: Request| {
        let backend = backend.clone();
        async move { backend.execute(req).await }
    })
}

// ---------------------------------------------------------------------------------------------
// Requests, the same shape for everyone: GET with two static headers (a header built from a
// `&str` costs one more allocation on its first clone, in every library alike).

struct Requests {
    uri: http::Uri,
    url: reqwest::Url,
}

impl Requests {
    fn new() -> Self {
        Requests {
            uri: "http://api.test/v1/items?page=2".parse().unwrap(),
            url: "http://api.test/v1/items?page=2".parse().unwrap(),
        }
    }

    fn doer(&self) -> Request {
        http::Request::builder()
            .uri(self.uri.clone())
            .header("accept", http::HeaderValue::from_static("application/json"))
            .header("user-agent", http::HeaderValue::from_static("bench"))
            .body(Body::empty())
            .unwrap()
    }

    fn reqwest(&self) -> reqwest::Request {
        let mut req = reqwest::Request::new(reqwest::Method::GET, self.url.clone());
        let h = req.headers_mut();
        h.insert("accept", http::HeaderValue::from_static("application/json"));
        h.insert("user-agent", http::HeaderValue::from_static("bench"));
        req
    }
}

fn reqwest_stack(backend: Instant200, retry: bool) -> ClientWithMiddleware {
    // reqwest as http-doer builds it: it has no crypto provider of its own, so
    // `reqwest::Client::new()` would panic. The terminal middleware answers before it is used.
    let client = http_doer::ReqwestDoer::new().client().clone();
    let mut builder = ClientBuilder::new(client);
    if retry {
        let policy = ExponentialBackoff::builder().build_with_max_retries(3);
        builder = builder.with(RetryTransientMiddleware::new_with_policy(policy));
    }
    builder.with(InstantTerminal(backend)).build()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Per-call overhead

/// The contenders, each one call at a time.
struct Contenders {
    reqs: Requests,
    bare: Instant200,
    retrying: Retrying<Instant200>,
    rm_bare: ClientWithMiddleware,
    rm_retry: ClientWithMiddleware,
    tower_bare: tower::util::BoxCloneService<Request, Response, Error>,
    tower_retry: tower::util::BoxCloneService<Request, Response, Error>,
}

impl Contenders {
    fn new() -> Self {
        let backend = Instant200::new(200);
        Contenders {
            reqs: Requests::new(),
            bare: backend.clone(),
            retrying: Retrying::new(backend.clone()),
            rm_bare: reqwest_stack(backend.clone(), false),
            rm_retry: reqwest_stack(backend.clone(), true),
            tower_bare: tower::util::BoxCloneService::new(tower_instant(backend.clone())),
            tower_retry: tower::util::BoxCloneService::new(tower::retry::Retry::new(
                TowerPolicy::new(),
                tower_instant(backend),
            )),
        }
    }

    async fn call(&self, which: usize) {
        match which {
            0 => drop(black_box(self.bare.execute(self.reqs.doer()).await)),
            1 => drop(black_box(self.retrying.execute(self.reqs.doer()).await)),
            2 => drop(black_box(self.rm_bare.execute(self.reqs.reqwest()).await)),
            3 => drop(black_box(self.rm_retry.execute(self.reqs.reqwest()).await)),
            4 => {
                let svc = self.tower_bare.clone();
                drop(black_box(svc.oneshot(self.reqs.doer()).await));
            }
            5 => {
                let svc = self.tower_retry.clone();
                drop(black_box(svc.oneshot(self.reqs.doer()).await));
            }
            _ => {
                // What every retrier must do at least: keep the request, send a copy.
                let req = self.reqs.doer();
                drop(black_box(self.bare.execute(copy_request(&req)).await));
                drop(black_box(req));
            }
        }
    }
}

/// Each contender's name and the bare stack its overhead is measured against.
const CONTENDERS: [(&str, usize); 7] = [
    ("http-doer bare", 0),
    ("http-doer Retrying (budget on)", 0),
    ("reqwest-middleware bare", 2),
    ("reqwest-retry middleware", 2),
    ("tower bare service", 4),
    ("tower Retry + TpsBudget", 4),
    ("bare + one request copy", 0),
];
const N: usize = CONTENDERS.len();

fn overhead(c: &mut Criterion) {
    let rt = rt();
    let contenders = Contenders::new();
    let mut group = c.benchmark_group("retrying_overhead");
    for (i, (name, _)) in CONTENDERS.iter().enumerate() {
        group.bench_function(*name, |b| {
            b.to_async(&rt).iter(|| contenders.call(i));
        });
    }
    group.finish();
}

/// Each contender's per-call time less its bare stack's, **within each round** (rounds
/// interleave the contenders, in an order rotated from round to round, so a burst of load from
/// another process hits all alike), as the median over the rounds with the min-max; and each
/// contender's own median ns per call. Run pinned (`taskset -c 0`, see README.md here).
fn summary_overhead() -> [(f64, f64, f64, f64); N] {
    let rt = rt();
    let contenders = Contenders::new();
    let rounds: usize = std::env::var("RETRYING_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9)
        .max(1);
    const CALLS: u32 = 100_000;
    let mut times: [Vec<f64>; N] = Default::default();
    let mut extras: [Vec<f64>; N] = Default::default();
    rt.block_on(async {
        for which in 0..N {
            for _ in 0..CALLS / 10 {
                contenders.call(which).await;
            }
        }
        for round in 0..rounds {
            let mut ns = [0.0; N];
            for k in 0..N {
                let which = (k + round) % N;
                let start = Instant::now();
                for _ in 0..CALLS {
                    contenders.call(which).await;
                }
                ns[which] = start.elapsed().as_nanos() as f64 / f64::from(CALLS);
            }
            for (i, (_, base)) in CONTENDERS.iter().enumerate() {
                times[i].push(ns[i]);
                extras[i].push(ns[i] - ns[*base]);
            }
        }
    });
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    std::array::from_fn(|i| {
        let (extra, lo, hi) = median(std::mem::take(&mut extras[i]));
        (median(std::mem::take(&mut times[i])).0, extra, lo, hi)
    })
}

// ---------------------------------------------------------------------------------------------
// Amplification under a total outage (paused time: backoffs take no real time)

/// Calls arrive at `per_sec` for `secs` seconds, each on its own task; the backend always
/// answers 503. Returns backend requests / calls.
fn amplification(contender: usize, per_sec: u64, secs: u64) -> f64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let backend = Instant200::new(503);
    let calls = per_sec * secs;
    let gap = Duration::from_nanos(1_000_000_000 / per_sec);
    rt.block_on(async {
        let reqs = Arc::new(Requests::new());
        let mut tasks = tokio::task::JoinSet::new();
        match contender {
            0 => {
                // Retrying's defaults: 3 retries, exponential backoff with full jitter, budget.
                let doer = Retrying::new(backend.clone()).seed(1);
                for _ in 0..calls {
                    let (doer, reqs) = (doer.clone(), reqs.clone());
                    tasks.spawn(async move { drop(doer.execute(reqs.doer()).await) });
                    tokio::time::sleep(gap).await;
                }
            }
            1 => {
                let client = reqwest_stack(backend.clone(), true);
                for _ in 0..calls {
                    let (client, reqs) = (client.clone(), reqs.clone());
                    tasks.spawn(async move { drop(client.execute(reqs.reqwest()).await) });
                    tokio::time::sleep(gap).await;
                }
            }
            _ => {
                let svc =
                    tower::retry::Retry::new(TowerPolicy::new(), tower_instant(backend.clone()));
                for _ in 0..calls {
                    let (svc, reqs) = (svc.clone(), reqs.clone());
                    tasks.spawn(async move { drop(svc.oneshot(reqs.doer()).await) });
                    tokio::time::sleep(gap).await;
                }
            }
        }
        while tasks.join_next().await.is_some() {}
    });
    backend.count.load(Ordering::Relaxed) as f64 / calls as f64
}

fn report() {
    let rows = summary_overhead();
    println!();
    println!(
        "Per-call cost over a doer that answers at once: interleaved rounds of 100 000 calls; \
         medians (min-max) over the rounds, each overhead taken within its round"
    );
    println!("{:<34} {:>10} {:>24}", "stack", "ns/call", "overhead");
    for (i, (name, base)) in CONTENDERS.iter().enumerate() {
        let (ns, extra, lo, hi) = rows[i];
        let extra = if i == *base {
            "-".to_owned()
        } else {
            format!("{extra:+.0} ns ({lo:+.0}..{hi:+.0})")
        };
        println!("{name:<34} {ns:>10.0} {extra:>24}");
    }
    println!();
    println!("Amplification under a total outage (backend requests / calls), default budgets");
    println!(
        "{:<34} {:>12} {:>12}",
        "retrier", "100 calls/s", "1000 calls/s"
    );
    let who = [
        "http-doer Retrying",
        "reqwest-retry (3 retries)",
        "tower Retry + TpsBudget",
    ];
    for (i, name) in who.iter().enumerate() {
        let slow = amplification(i, 100, 20);
        let fast = amplification(i, 1000, 10);
        println!("{name:<34} {slow:>12.3} {fast:>12.3}");
    }
    println!();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = overhead
}

fn main() {
    benches();
    report();
    Criterion::default().configure_from_args().final_summary();
}
