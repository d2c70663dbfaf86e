//! What `RateLimiting` and `ConcurrencyLimit` cost per call when under their limits, over a
//! Doer that answers at once: the time to find the key (the origin), take a GCRA cell or a
//! semaphore permit, and look at the answer's headers.
//!
//! * `bare`: the instant Doer alone;
//! * `rate limiting`: a rate it never reaches (1 ns between calls), pacing on;
//! * `rate limiting, quota headers`: the same, with an answer that carries `RateLimit` fields
//!   with plenty left (parsed on every call);
//! * `rate limiting, unlimited`: no local rate, only the server's pacing;
//! * `concurrency limit`: 64 slots per host, one call at a time.
//!
//! The machine this runs on may be shared and busy: read the figures as rough. Run pinned for
//! steadier ones: `taskset -c 0 cargo bench -p http-doer-benches --bench limits`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use http_doer::limit::Rate;
use http_doer::testing::{doer_fn, response};
use http_doer::{Body, Doer, DoerExt, Request, Response};
use tokio::runtime::Runtime;

fn request() -> Request {
    http::Request::get("https://api.test/v1/items?page=2")
        .body(Body::empty())
        .expect("a valid request")
}

fn instant() -> impl Doer + Clone {
    doer_fn(|_req: Request| async { Ok(response(200, "ok")) })
}

/// Answers at once with the IETF quota fields: 900 of 1000 left.
fn instant_with_quota() -> impl Doer + Clone {
    doer_fn(|_req: Request| async {
        let resp: Response = http::Response::builder()
            .header("ratelimit-policy", "\"default\";q=1000;w=60")
            .header("ratelimit", "\"default\";r=900;t=30")
            .body(Body::from("ok"))
            .expect("a valid response");
        Ok(resp)
    })
}

/// A local rate no benchmark loop reaches: one call every nanosecond.
fn never_reached() -> Rate {
    Rate::new(u32::MAX, Duration::from_secs(1))
}

fn rt() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

type Cases = Vec<(&'static str, Box<dyn Doer>)>;

fn cases() -> Cases {
    vec![
        ("bare", Box::new(instant())),
        (
            "rate limiting",
            Box::new(instant().rate_limiting(never_reached())),
        ),
        ("bare, quota headers", Box::new(instant_with_quota())),
        (
            "rate limiting, quota headers",
            Box::new(instant_with_quota().rate_limiting(never_reached())),
        ),
        (
            "rate limiting, unlimited",
            Box::new(instant().rate_limiting(Rate::unlimited())),
        ),
        (
            "concurrency limit",
            Box::new(instant().concurrency_limit(64)),
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("limits");
    for (name, doer) in cases() {
        g.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(doer.execute(request()).await.is_ok()) })
        });
    }
    g.finish();
}

/// Nanoseconds per call of `doer`, measured by a plain loop, in `rounds` rounds.
fn per_call(rt: &Runtime, doer: &dyn Doer, calls: u32, rounds: usize) -> Vec<f64> {
    rt.block_on(async {
        for _ in 0..calls / 10 {
            black_box(doer.execute(request()).await.is_ok());
        }
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let start = Instant::now();
            for _ in 0..calls {
                black_box(doer.execute(request()).await.is_ok());
            }
            times.push(start.elapsed().as_nanos() as f64 / f64::from(calls));
        }
        times
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The median of several rounds of each case, after a warm-up.
fn summary() {
    const CALLS: u32 = 100_000;
    const ROUNDS: usize = 9;
    let rt = rt();
    let cases = cases();
    let bare = median(per_call(&rt, &*cases[0].1, CALLS, ROUNDS));
    let bare_quota = median(per_call(&rt, &*cases[2].1, CALLS, ROUNDS));
    println!("\nLimits over an instant doer ({ROUNDS} rounds of {CALLS} calls, medians):");
    for (name, doer) in &cases {
        let ns = median(per_call(&rt, &**doer, CALLS, ROUNDS));
        let base = if name.contains("quota") {
            bare_quota
        } else {
            bare
        };
        println!("  {name:<30} {ns:8.0} ns/call  ({:+.0} ns)", ns - base);
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
