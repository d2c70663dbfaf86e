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
//! taskset -c 0 target/release/deps/overhead-*[!.d] --bench
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
use std::time::Instant;

use http_doer::{Doer, telemetry};

mod instant;

use instant::{request, variants};

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
        let med = if i == 0 {
            format!("{med:.0}")
        } else {
            format!("{med:+.0}")
        };
        println!("  {name:<50} {med:>6} ns  ({lo:.0} to {hi:.0})");
    }
}
