//! What the tower adapters cost per call, over a Doer that answers at once (a static 200 with an
//! empty body), on a current-thread runtime:
//!
//! * `direct`: the Doer called directly;
//! * `DoerService`: the Doer as a `tower::Service` (`ready`, then `call`);
//! * `ServiceDoer(DoerService)`: that Service driven as a Doer again (both adapters).
//!
//! Criterion measures each; a summary printed at the end gives the added nanoseconds per call
//! over `direct`, as the median and the range of paired rounds (each round times all three
//! back to back, so a busy moment on a shared machine lands on all three alike).
//!
//! `TOWER_BENCH_ROUNDS=n` sets the number of rounds (default 15), `TOWER_BENCH_CALLS=n` the calls
//! per round (default 200000). Pin it for steadier figures:
//! `taskset -c 0 cargo bench -p http-doer-benches --bench tower`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use http_doer::testing::{doer_fn, response};
use http_doer::tower::{from_service, service};
use http_doer::{Body, Doer, Request};
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

fn request() -> Request {
    http::Request::get("http://api.test/items")
        .body(Body::empty())
        .expect("a valid request")
}

fn instant() -> impl Doer + Clone + 'static {
    doer_fn(|_req: Request| async { Ok(response(200, Body::empty())) })
}

fn rt() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn bench(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("tower");

    let direct = instant();
    g.bench_function("direct", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(direct.execute(request()).await.ok()) })
    });
    let mut svc = service(instant());
    g.bench_function("DoerService", |b| {
        b.to_async(&rt).iter(|| {
            // Always ready: `poll_ready` is skipped here (the summary's loop includes it).
            let call = Service::<Request>::call(&mut svc, request());
            async move { black_box(call.await.ok()) }
        })
    });
    let both = from_service(service(instant()));
    g.bench_function("ServiceDoer(DoerService)", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(both.execute(request()).await.ok()) })
    });
    g.finish();
}

/// The three ways of making one call, as the summary times them.
#[derive(Clone, Copy)]
enum Way {
    Direct,
    Service,
    Both,
}

/// Nanoseconds per call made `way`, over `calls` calls (after a tenth as many to warm up).
fn per_call(rt: &Runtime, way: Way, calls: u32) -> f64 {
    let direct = instant();
    let mut svc = service(instant());
    let both = from_service(service(instant()));
    rt.block_on(async {
        let mut run = async |n: u32| {
            for _ in 0..n {
                let resp = match way {
                    Way::Direct => direct.execute(request()).await,
                    Way::Service => match ServiceExt::<Request>::ready(&mut svc).await {
                        Ok(ready) => ready.call(request()).await,
                        Err(e) => Err(e),
                    },
                    Way::Both => both.execute(request()).await,
                };
                black_box(resp.ok());
            }
        };
        run(calls / 10).await;
        let start = Instant::now();
        run(calls).await;
        start.elapsed().as_nanos() as f64 / f64::from(calls)
    })
}

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Median, min and max.
fn spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

fn summary() {
    let rounds = env("TOWER_BENCH_ROUNDS", 15);
    let calls = env("TOWER_BENCH_CALLS", 200_000);
    let rt = rt();
    let (mut direct, mut service, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let base = per_call(&rt, Way::Direct, calls);
        direct.push(base);
        service.push(per_call(&rt, Way::Service, calls) - base);
        both.push(per_call(&rt, Way::Both, calls) - base);
    }
    let (base, base_min, base_max) = spread(direct);
    println!("\ntower adapters over an instant Doer ({rounds} paired rounds of {calls} calls):");
    println!("  direct                      {base:6.0} ns/call  ({base_min:.0}-{base_max:.0})");
    for (name, added) in [("DoerService", service), ("ServiceDoer(DoerService)", both)] {
        let (med, min, max) = spread(added);
        println!(
            "  {name:<26}  +{med:5.0} ns/call  ({min:+.0} to {max:+.0}), x{:.2}",
            (base + med) / base
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args()
        .final_summary();
    summary();
}
