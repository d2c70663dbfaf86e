//! What each decorator, and the README's stacks, add per call over a Doer that answers at once:
//! the decorator rows of the README's cost table (issue 17).
//!
//! Every variant is boxed (`Box<dyn Doer>`) and called the same way, so the only difference
//! between a row and `bare` is the layers. Rounds interleave the variants (each round runs
//! them all, in an order rotated from round to round), so a burst of load from another
//! process hits every row alike; the figure for a row is its per-call time less `bare`'s **in
//! the same round**, and the table gives the median over the rounds, with the min-max.
//!
//! Run it pinned to one CPU (see README.md here: idle virtual CPUs halt, and a loop that
//! hops between them measures the wake-ups):
//!
//! ```sh
//! cargo bench -p http-doer-benches --bench overhead --no-run
//! taskset -c 0 target/release/deps/overhead-*[!.d]
//! ```
//!
//! `OVERHEAD_ROUNDS` (default 9) and `OVERHEAD_CALLS` (calls per variant per round, default
//! 200 000) change the run; `OVERHEAD_ONLY=NAME` runs one variant alone in a loop (for `perf`
//! or `valgrind --tool=callgrind`, whose instruction counts do not depend on the load).
//!
//! The request is a GET with two headers (`Accept`, `User-Agent`, static values as in
//! `retrying.rs`; `OVERHEAD_DYNAMIC_HEADERS=1` makes them from text at run time) and a query
//! string, the answer a `200` with a two-byte buffered body and no headers: the path of a call that every
//! layer lets through (a closed breaker, a first attempt that succeeds, a hedge whose copy is
//! not needed, a static token, a limit not reached).

use std::hint::black_box;
use std::time::{Duration, Instant};

use http_doer::breaker::ServeStale;
use http_doer::limit::Rate;
use http_doer::signing::Bearer;
use http_doer::telemetry;
use http_doer::testing::copy_request;
use http_doer::{Body, Breaker, Doer, DoerExt, Error, Request, Response};

/// Answers `200 "ok"` at once.
#[derive(Clone, Copy)]
struct Instantly;

#[async_trait::async_trait]
impl Doer for Instantly {
    async fn execute(&self, _req: Request) -> Result<Response, Error> {
        Ok(http::Response::new(Body::from("ok")))
    }
}

/// Whether header values are made from text at run time (`OVERHEAD_DYNAMIC_HEADERS=1`)
/// rather than from static strings, as in `retrying.rs`. A run-time value's bytes are copied
/// into a buffer the first copy of the request must turn into a shared one (an allocation per
/// value, paid once per request by whichever layer copies it first).
fn dynamic_headers() -> bool {
    static DYNAMIC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DYNAMIC.get_or_init(|| std::env::var("OVERHEAD_DYNAMIC_HEADERS").is_ok_and(|v| v == "1"))
}

/// What any layer able to resend pays, to read the rows above against: an `#[async_trait]`
/// layer that does nothing, the same keeping one copy of the request (as a layer that may
/// resend must), and the same adding one response extension (as `Retrying` and `Hedging`
/// report what they did).
struct Floor {
    copy: bool,
    extension: bool,
}

/// A response extension, as `retrying::Attempts` is.
#[derive(Clone, Copy)]
struct Mark;

#[async_trait::async_trait]
impl Doer for Floor {
    async fn execute(&self, req: Request) -> Result<Response, Error> {
        let kept = self.copy.then(|| copy_request(&req));
        let mut resp = Instantly.execute(kept.unwrap_or(req)).await?;
        if self.extension {
            resp.extensions_mut().insert(Mark);
        }
        Ok(resp)
    }
}

fn request() -> Request {
    let builder = http::Request::get("https://api.test/v1/items?page=2");
    let builder = if dynamic_headers() {
        builder
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "bench/1.0")
    } else {
        builder
            .header(
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/json"),
            )
            .header(
                http::header::USER_AGENT,
                http::HeaderValue::from_static("bench/1.0"),
            )
    };
    builder.body(Body::empty()).expect("a valid request")
}

fn bearer() -> Bearer {
    Bearer::new("token-0123456789").expect("a valid token")
}

fn stale() -> ServeStale {
    ServeStale::new(Duration::from_secs(300))
}

/// The README's "stack to copy" over `doer`, as it is written there.
fn readme_stack(doer: impl Doer + 'static) -> Box<dyn Doer> {
    doer.signing(bearer())
        .breaker()
        .serve_stale(stale())
        .hedging()
        .retrying()
        .total_timeout(Duration::from_secs(10))
        .logging()
        .boxed()
}

/// The variants, `bare` first.
fn variants() -> Vec<(&'static str, Box<dyn Doer>)> {
    vec![
        ("bare", Instantly.boxed()),
        (
            "(floor) an empty #[async_trait] layer",
            Floor {
                copy: false,
                extension: false,
            }
            .boxed(),
        ),
        (
            "(floor) + one request copy kept",
            Floor {
                copy: true,
                extension: false,
            }
            .boxed(),
        ),
        (
            "(floor) + one request copy + one response extension",
            Floor {
                copy: true,
                extension: true,
            }
            .boxed(),
        ),
        (
            "Retrying (defaults, budget on)",
            Instantly.retrying().boxed(),
        ),
        ("Hedging (no copy sent)", Instantly.hedging().boxed()),
        (
            "Signing (static Bearer)",
            Instantly.signing(bearer()).boxed(),
        ),
        ("Breaker (closed)", Instantly.breaker().boxed()),
        (
            "Breaker + serve-stale (stores the answer)",
            Breaker::new(Instantly).serve_stale(stale()).boxed(),
        ),
        ("Logging (no subscriber)", Instantly.logging().boxed()),
        (
            "Arc<dyn Doer> of it (as an SDK keeps one)",
            Box::new(std::sync::Arc::new(Instantly) as std::sync::Arc<dyn Doer>),
        ),
        (
            "Telemetry (nobody listening)",
            Instantly.telemetry().boxed(),
        ),
        (
            "RateLimiting (under its rate)",
            Instantly
                .rate_limiting(Rate::new(u32::MAX, Duration::from_secs(1)))
                .boxed(),
        ),
        (
            "ConcurrencyLimit (under its limit)",
            Instantly.concurrency_limit(64).boxed(),
        ),
        (
            "Logging > Retrying > Hedging > Breaker > Signing",
            Instantly
                .signing(bearer())
                .breaker()
                .hedging()
                .retrying()
                .logging()
                .boxed(),
        ),
        ("README stack to copy", readme_stack(Instantly)),
        (
            "README stack + Telemetry (nobody listening)",
            readme_stack(Instantly.telemetry()),
        ),
    ]
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn ns_per_call(doer: &dyn Doer, calls: u64) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        black_box(doer.execute(request()).await.is_ok());
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

/// The median and the extremes.
fn spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants it quick.
    let quick = !std::env::args().any(|a| a == "--bench")
        && std::env::var("OVERHEAD_ROUNDS").is_err()
        && std::env::var("OVERHEAD_ONLY").is_err();
    let rounds = if quick {
        1
    } else {
        env("OVERHEAD_ROUNDS", 9).max(1) as usize
    };
    let calls = if quick {
        1_000
    } else {
        env("OVERHEAD_CALLS", 200_000).max(1)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    telemetry::set_enabled(true);
    let variants = variants();

    if let Ok(only) = std::env::var("OVERHEAD_ONLY") {
        let (name, doer) = variants
            .iter()
            .find(|(name, _)| name.to_lowercase().starts_with(&only.to_lowercase()))
            .expect("OVERHEAD_ONLY names a variant (the start of its name)");
        let ns = rt.block_on(ns_per_call(&**doer, calls));
        println!("{name}: {ns:.0} ns/call");
        return;
    }

    // Warm every variant (caches, the breaker's circuit, the hedge's histogram).
    rt.block_on(async {
        for (_, doer) in &variants {
            ns_per_call(&**doer, calls / 10 + 1).await;
        }
    });
    let mut per_round: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); variants.len()];
    for round in 0..rounds {
        let mut times = vec![0.0; variants.len()];
        for k in 0..variants.len() {
            let i = (k + round) % variants.len();
            times[i] = rt.block_on(ns_per_call(&*variants[i].1, calls));
        }
        for (i, t) in times.iter().enumerate() {
            per_round[i].push(if i == 0 { *t } else { t - times[0] });
        }
    }
    println!(
        "\nper-call cost over an instant Doer: {rounds} interleaved rounds of {calls} calls per \
         variant; median (min-max)"
    );
    for (i, (name, _)) in variants.iter().enumerate() {
        let (med, lo, hi) = spread(per_round[i].clone());
        let sign = if i == 0 { "" } else { "+" };
        println!("  {name:<50} {sign}{med:>5.0} ns  ({lo:.0} to {hi:.0})");
    }
}
