//! What `Logging` costs over a Doer that answers at once: with no subscriber (the common case in
//! production with logging filtered out), with the kept log on, and with a `fmt` subscriber that
//! formats every event into a sink.
//!
//! The machine this runs on may be shared and busy: read the figures as rough.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use http_doer::logging::KeepLog;
use http_doer::testing::{doer_fn, response};
use http_doer::{Body, Doer, DoerExt, Request};
use tokio::runtime::Runtime;

fn request() -> Request {
    http::Request::get("https://api.test/v1/items?api_key=s3cr3t&page=2")
        .body(Body::from("payload"))
        .expect("a valid request")
}

fn instant() -> impl Doer + Clone {
    doer_fn(|_req: Request| async { Ok(response(200, "ok")) })
}

fn rt() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A subscriber that formats every event at DEBUG and above and throws the text away.
fn fmt_subscriber() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::sink)
        .finish()
}

fn bench(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("logging");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);

    let bare = instant();
    g.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare.execute(request()).await) })
    });
    let quiet = instant().logging();
    g.bench_function("logging, no subscriber", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(quiet.execute(request()).await) })
    });
    let kept = instant().logging().keep_log(KeepLog::new(1000));
    g.bench_function("logging + keep log", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(kept.execute(request()).await) })
    });
    let guard = tracing::subscriber::set_default(fmt_subscriber());
    let loud = instant().logging();
    g.bench_function("logging, fmt subscriber", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(loud.execute(request()).await) })
    });
    g.finish();
    forget_subscriber(guard);
}

/// Drops a scoped subscriber and makes `tracing` forget it at once. Without the rebuild, the
/// interest it registered stays cached until the next subscriber comes, and later "no subscriber"
/// figures would measure the work done for a listener that is gone.
fn forget_subscriber(guard: tracing::subscriber::DefaultGuard) {
    drop(guard);
    tracing_core::callsite::rebuild_interest_cache();
}

/// Nanoseconds per call of `doer`, measured by a plain loop (the figure the summary prints).
fn per_call(rt: &Runtime, doer: &dyn Doer, calls: u32) -> f64 {
    rt.block_on(async {
        for _ in 0..calls / 10 {
            black_box(doer.execute(request()).await.ok());
        }
        let start = Instant::now();
        for _ in 0..calls {
            black_box(doer.execute(request()).await.ok());
        }
        start.elapsed().as_nanos() as f64 / f64::from(calls)
    })
}

fn summary() {
    const CALLS: u32 = 200_000;
    let rt = rt();
    let bare = per_call(&rt, &instant(), CALLS);
    let quiet = per_call(&rt, &instant().logging(), CALLS);
    let kept = per_call(
        &rt,
        &instant().logging().keep_log(KeepLog::new(1000)),
        CALLS,
    );
    let guard = tracing::subscriber::set_default(fmt_subscriber());
    let loud = per_call(&rt, &instant().logging(), CALLS);
    forget_subscriber(guard);
    println!("\nLogging overhead over an instant doer ({CALLS} calls each, noisy shared machine):");
    println!("  bare                     {bare:8.0} ns/call");
    for (name, ns) in [
        ("no subscriber", quiet),
        ("keep log (1000 lines)", kept),
        ("fmt subscriber to sink", loud),
    ] {
        println!(
            "  {name:<24} {ns:8.0} ns/call  (+{:.0} ns, x{:.2})",
            ns - bare,
            ns / bare
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
