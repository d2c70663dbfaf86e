//! Heap allocations per call: the bare backends over loopback, beside the raw libraries, and
//! each decorator over a Doer that answers at once.
//!
//! A counting global allocator counts every `alloc` and `alloc_zeroed` (and, apart, every
//! `realloc`) made by any thread but the loopback server's, from just before `execute` until
//! the response is dropped; the request is built before the count starts, as a caller builds
//! it. Each row is warmed first (pools, per-host state), then averaged over many calls, so a
//! figure below 1 is an allocation made now and then (a window of the retry budget rolling
//! over, say).
//!
//! Reading it: the bare instant Doer's own count (its `#[async_trait]` box, nothing else) is
//! the baseline. A layer over it adds the box of its own `execute` future unless it hands back
//! the inner Doer's (Logging with nothing listening, Telemetry switched off, Signing with a
//! `sign_now` signer, `Arc<dyn Doer>`); a layer able to resend (Retrying, Hedging) keeps one
//! copy of the request (two allocations for the two headers of `instant::request`) and boxes
//! its report extension (three: http's extension map, its table, the value). The floor rows
//! show those costs alone. Anything more on a call the layer passes straight through is a cost
//! to remove. No `tracing` subscriber and no `metrics` recorder are installed.
//!
//! `cargo bench -p http-doer-benches --bench allocs` (`ALLOCS_CALLS`, default 2000, sets the
//! calls counted per row); the counts do not depend on the machine's load, so this needs no
//! pinning.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use http_doer::{Body, Doer, Request, ReqwestDoer, UreqDoer};

mod instant;
mod loopback;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set on the loopback server's thread: its allocations are not the client's.
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

fn counted() -> bool {
    !EXCLUDED.try_with(Cell::get).unwrap_or(true)
}

// SAFETY: every call is passed on to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counted() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            REALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy, Default)]
struct Count {
    allocs: u64,
    reallocs: u64,
    bytes: u64,
}

fn now() -> Count {
    Count {
        allocs: ALLOCS.load(Ordering::Relaxed),
        reallocs: REALLOCS.load(Ordering::Relaxed),
        bytes: BYTES.load(Ordering::Relaxed),
    }
}

impl std::ops::Sub for Count {
    type Output = Count;
    fn sub(self, o: Count) -> Count {
        Count {
            allocs: self.allocs - o.allocs,
            reallocs: self.reallocs - o.reallocs,
            bytes: self.bytes - o.bytes,
        }
    }
}

/// Per-call averages over `calls` calls.
struct PerCall {
    allocs: f64,
    reallocs: f64,
    bytes: f64,
}

const WARM_UP: u64 = 200;

fn calls() -> u64 {
    std::env::var("ALLOCS_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

/// Counts `call`'s allocations, `make`'s left out: `make` builds what one call takes.
async fn measure<T, F, Fut>(calls: u64, make: impl Fn() -> T, call: F) -> PerCall
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..WARM_UP {
        call(make()).await;
    }
    let mut total = Count::default();
    for _ in 0..calls {
        let input = make();
        let before = now();
        call(input).await;
        let d = now() - before;
        total.allocs += d.allocs;
        total.reallocs += d.reallocs;
        total.bytes += d.bytes;
    }
    let n = calls as f64;
    PerCall {
        allocs: total.allocs as f64 / n,
        reallocs: total.reallocs as f64 / n,
        bytes: total.bytes as f64 / n,
    }
}

async fn through(doer: &dyn Doer, req: Request) {
    let resp = doer.execute(req).await.expect("an answer");
    black_box(resp.into_body().bytes().await.expect("a body"));
}

fn get(uri: &str) -> Request {
    http::Request::get(uri)
        .body(Body::empty())
        .expect("a valid request")
}

fn row(label: &str, p: &PerCall, baseline: Option<f64>) {
    let over = baseline.map_or(String::from("-"), |b| format!("{:+.2}", p.allocs - b));
    println!(
        "| {label} | {:.2} | {over} | {:.2} | {:.0} |",
        p.allocs, p.reallocs, p.bytes
    );
}

fn main() {
    let calls = if std::env::args().any(|a| a == "--bench") {
        calls()
    } else {
        // `cargo test --benches`: a quick run that only checks it works.
        20
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let url = format!("http://{}/", loopback::start(|| EXCLUDED.set(true)));
    rt.block_on(async {
        println!("allocations per call, {calls} calls after {WARM_UP} to warm up");
        println!();
        println!("| over loopback | allocs | over raw | reallocs | bytes |");
        println!("|---|---|---|---|---|");
        backends(calls, &url).await;
        println!();
        println!("| over an instant Doer | allocs | over bare | reallocs | bytes |");
        println!("|---|---|---|---|---|");
        decorators(calls).await;
    });
}

async fn backends(calls: u64, url: &str) {
    // The client `ReqwestDoer::new()` built, which applies its 30 s timeout itself.
    let reqwest_doer = ReqwestDoer::new();
    let client = reqwest_doer.client().clone();
    let make_raw = || client.get(url).build().expect("a request");
    let raw = measure(calls, make_raw, |req| async {
        let resp = client.execute(req).await.expect("an answer");
        black_box(resp.bytes().await.expect("a body"));
    })
    .await;
    row("raw reqwest (same client, its 30 s timeout)", &raw, None);
    let middleware = reqwest_middleware::ClientBuilder::new(client.clone()).build();
    let rival = measure(calls, make_raw, |req| async {
        let resp = middleware.execute(req).await.expect("an answer");
        black_box(resp.bytes().await.expect("a body"));
    })
    .await;
    row(
        "reqwest-middleware, no middleware",
        &rival,
        Some(raw.allocs),
    );
    let doer = measure(calls, || get(url), |req| through(&reqwest_doer, req)).await;
    row("`ReqwestDoer::new()`", &doer, Some(raw.allocs));

    let ureq_doer = UreqDoer::new();
    let agent = ureq_doer.agent().clone();
    let make_ureq = || http::Request::get(url).body(()).expect("a request");
    let raw = measure(calls, make_ureq, |req| {
        let agent = agent.clone();
        async move {
            let body = tokio::task::spawn_blocking(move || {
                let mut resp = agent.run(req).expect("an answer");
                resp.body_mut().read_to_vec().expect("a body")
            });
            black_box(body.await.expect("a blocking task"));
        }
    })
    .await;
    row("raw ureq via `spawn_blocking`, same agent", &raw, None);
    let doer = measure(calls, || get(url), |req| through(&ureq_doer, req)).await;
    row("`UreqDoer::new()`", &doer, Some(raw.allocs));
}

async fn decorators(calls: u64) {
    let mut rows = instant::variants().into_iter();
    let (_, bare) = rows.next().expect("the bare Doer first");
    let base = measure(calls, instant::request, |req| through(bare.as_ref(), req)).await;
    row("bare instant Doer", &base, None);
    for (label, doer) in rows {
        let p = measure(calls, instant::request, |req| through(doer.as_ref(), req)).await;
        row(label, &p, Some(base.allocs));
    }
}
