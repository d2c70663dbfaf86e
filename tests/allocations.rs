//! The hot path's allocations, held to their counts in every test run: a call that a layer
//! passes straight through (a closed breaker, a first attempt that succeeds, a hedge whose
//! copy is not needed, a static token, a limit not reached) allocates no more than the layer's
//! own future, the request copy a layer able to resend must keep, and the report it adds to
//! the response. `benches/allocs.rs` prints the same counts; this test fails when one grows.
//!
//! The rows and the request are the benches' own (`benches/instant.rs`). Only this thread's
//! allocations are counted, on a current-thread runtime, so nothing else running in the
//! process can move a count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use http_doer::Doer;

#[path = "../benches/instant.rs"]
#[allow(dead_code)]
mod instant;

struct Counting;

thread_local! {
    /// Allocations made on this thread while `COUNTING` is set.
    static COUNT: Cell<u64> = const { Cell::new(0) };
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    // `try_with`: the allocator runs while thread-locals are torn down, too.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = COUNT.try_with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call goes to the system allocator unchanged; only a thread-local count is
// added, which itself never allocates (`const` thread-locals of `Cell`s).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations (reallocations included) per call of `doer`, the request's own left out,
/// averaged over `calls` calls after a warm-up (pools, per-host state, a budget's window).
async fn per_call(doer: &dyn Doer, calls: u32) -> f64 {
    for _ in 0..50 {
        let _ = doer.execute(instant::request_with(false)).await;
    }
    let mut total = 0;
    for _ in 0..calls {
        let req = instant::request_with(false);
        COUNT.with(|c| c.set(0));
        COUNTING.with(|c| c.set(true));
        let resp = doer.execute(req).await;
        drop(resp);
        COUNTING.with(|c| c.set(false));
        total += COUNT.with(Cell::get);
    }
    total as f64 / f64::from(calls)
}

/// The most allocations each row may add to the bare Doer's, by the start of its name: its
/// own boxed future (1) unless it hands back the inner one; a request copy (2, for the two
/// headers of `instant::request`); a report extension on the response (3: http's map, its
/// table, the value); a stored answer (1); a header map grown by one (a realloc).
const BOUNDS: &[(&str, f64)] = &[
    ("(floor) an empty", 1.0),
    ("(floor) + one request copy kept", 3.0),
    ("(floor) + one request copy + one response extension", 6.0),
    ("Retrying", 6.0),
    ("Hedging", 6.0),
    ("Signing (static Bearer)", 0.0),
    ("Breaker (closed)", 1.0),
    ("Breaker + serve-stale", 2.0),
    ("Logging (no subscriber)", 0.0),
    ("Timeout", 1.0),
    ("Arc<dyn Doer>", 0.0),
    ("Telemetry", 1.0),
    ("RateLimiting", 1.0),
    ("ConcurrencyLimit", 1.0),
    ("Logging > Retrying > Hedging > Breaker > Signing", 12.0),
    ("README stack to copy", 14.0),
    ("README stack + Telemetry", 15.0),
];

#[test]
fn a_call_passed_straight_through_allocates_only_what_its_layer_must() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut rows = instant::variants().into_iter();
        let (_, bare) = rows.next().expect("the bare Doer first");
        let base = per_call(bare.as_ref(), 200).await;
        assert_eq!(base, 1.0, "the bare Doer's own boxed future only");
        let mut checked = 0;
        let mut over = Vec::new();
        for (name, doer) in rows {
            let (_, bound) = BOUNDS
                .iter()
                .filter(|(prefix, _)| name.starts_with(prefix))
                .max_by_key(|(prefix, _)| prefix.len())
                .unwrap_or_else(|| panic!("no bound for the row {name:?}"));
            let added = per_call(doer.as_ref(), 200).await - base;
            // A budget's window rolling over allocates now and then: a fraction, never one
            // more a call.
            if added > bound + 0.1 {
                over.push(format!(
                    "{name}: {added:.2} allocations a call, at most {bound}"
                ));
            }
            checked += 1;
        }
        assert!(over.is_empty(), "{over:#?}");
        assert_eq!(
            checked,
            BOUNDS.len(),
            "every row has its bound, every bound its row"
        );
    });
}

/// Allocations made on this thread by `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    COUNT.with(Cell::get)
}

/// A quota field past its bounds (64 members, 32 parameters, inner lists included) is
/// refused as soon as a bound is passed: a hostile server's huge `RateLimit` costs no more
/// than one just past the bounds, not allocations in proportion to its size.
#[test]
fn a_quota_field_past_its_bounds_costs_no_more_than_one_just_past_them() {
    let cost = |value: String| {
        let mut headers = http::HeaderMap::new();
        headers.insert("ratelimit", value.parse().unwrap());
        let now = std::time::SystemTime::now();
        let mut quota = None;
        let n = allocations(|| quota = http_doer::limit::quota_headers::parse(&headers, now));
        assert_eq!(quota, None, "refused: {}", &value[..40.min(value.len())]);
        n
    };
    let members = |n| vec!["\"p\";r=1"; n].join(", ");
    let inner = |n| format!("({})", vec!["a;k=1;j=2"; n].join(" "));
    let params = |n| format!("\"p\"{}", ";r=1".repeat(n));
    let dictionary = |n| {
        (0..n)
            .map(|i| format!("k{i}=1"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (what, small, huge) in [
        ("members", cost(members(65)), cost(members(20_000))),
        ("an inner list", cost(inner(65)), cost(inner(20_000))),
        ("parameters", cost(params(33)), cost(params(20_000))),
        (
            "the drafts' dictionary",
            cost(dictionary(65)),
            cost(dictionary(20_000)),
        ),
    ] {
        assert!(
            huge <= 2 * small,
            "{what}: {huge} allocations, against {small} just past the bound"
        );
    }
}
