//! Odd values given to every builder and setter: no panic (building or on the first call), no
//! hang, and what the setter's doc promises. One table per decorator; time is paused and every
//! call is bounded.

use std::time::Duration;

use http_doer::breaker::{ServeStale, State};
use http_doer::hedging::{AdaptiveDelay, HedgeBudget};
use http_doer::limit::{ConcurrencyLimit, Rate, RateLimiting};
use http_doer::logging::KeepLog;
use http_doer::retrying::{Backoff, Jitter, RetryBudget};
use http_doer::testing::{ScriptedDoer, response};
use http_doer::{Body, Breaker, Chaos, Doer, ErrorKind, Hedging, Logging, Retrying, Timeout};

const BOUND: Duration = Duration::from_secs(86_400 * 365);

fn get() -> http_doer::Request {
    http::Request::get("https://api.test/x")
        .body(Body::empty())
        .unwrap()
}

/// Runs `call` with paused time, bounded (in paused time, so a far sleep ends it at once).
async fn bounded<F: std::future::Future>(name: &str, f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{name}: hung"))
}

/// As `bounded`, for a call whose settings ask for a wait of `Duration::MAX` (then a wait past
/// a year is what was asked for, not a hang); `None` when it was still waiting.
async fn bounded_or_asked<F: std::future::Future>(
    name: &str,
    far: bool,
    f: F,
) -> Option<F::Output> {
    match tokio::time::timeout(BOUND, f).await {
        Ok(out) => Some(out),
        Err(_) if far => None,
        Err(_) => panic!("{name}: hung"),
    }
}

#[tokio::test(start_paused = true)]
async fn retrying_odd_settings() {
    let backoffs: Vec<(&str, Backoff)> = vec![
        ("const zero", Backoff::constant(Duration::ZERO)),
        (
            "const max",
            Backoff::constant(Duration::MAX).jitter(Jitter::Full),
        ),
        (
            "linear max",
            Backoff::linear(Duration::MAX).jitter(Jitter::Equal),
        ),
        (
            "exp max",
            Backoff::exponential(Duration::MAX).jitter(Jitter::Pester),
        ),
        (
            "exp zero",
            Backoff::exponential(Duration::ZERO).jitter(Jitter::Pester),
        ),
        (
            "decorr max",
            Backoff::decorrelated_jitter(Duration::MAX).jitter(Jitter::Full),
        ),
        (
            "decorr zero cap",
            Backoff::decorrelated_jitter(Duration::from_secs(1)).max_delay(Duration::ZERO),
        ),
        (
            "custom max",
            Backoff::custom(|_| Duration::MAX).jitter(Jitter::Pester),
        ),
    ];
    for (name, b) in &backoffs {
        // The iterator itself, far out.
        let v: Vec<_> = b.delays(1).take(100).collect();
        assert_eq!(v.len(), 100, "{name}");
    }
    for (name, b) in backoffs {
        for max_delay in [Duration::ZERO, Duration::from_secs(1), Duration::MAX] {
            for (max_retries, total, attempt) in [
                (0, None, None),
                (3, Some(Duration::ZERO), None),
                (3, None, Some(Duration::ZERO)),
                (3, Some(Duration::MAX), Some(Duration::MAX)),
                (u32::MAX, Some(Duration::from_secs(10)), None),
            ] {
                let backend = ScriptedDoer::new()
                    .then_status(503)
                    .then_status(503)
                    .then_status(200);
                let doer = Retrying::new(backend.clone())
                    .backoff(b.clone())
                    .max_delay(max_delay)
                    .max_retries(max_retries)
                    .total_timeout(total)
                    .attempt_timeout(attempt)
                    .budget(RetryBudget::new(f64::NAN, u32::MAX))
                    .seed(3);
                let far = max_delay == Duration::MAX
                    && total.is_none_or(|t| t == Duration::MAX)
                    && name.contains("max");
                let Some(out) = bounded_or_asked(name, far, doer.execute(get())).await else {
                    continue;
                };
                if let Ok(resp) = &out {
                    assert!([503, 200].contains(&resp.status().as_u16()), "{name}");
                }
                assert!(backend.calls() <= 3 && backend.calls() >= 1, "{name}");
            }
        }
    }
    for r in [f64::NAN, -1.0, 0.0, f64::INFINITY, f64::MAX] {
        let doer = Retrying::new(ScriptedDoer::new().then_status(503).then_status(200))
            .budget(RetryBudget::new(r, 0))
            .backoff(Backoff::constant(Duration::ZERO));
        bounded("budget", doer.execute(get())).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn hedging_odd_settings() {
    let adaptive = [
        AdaptiveDelay::new().percentile(f64::NAN),
        AdaptiveDelay::new().percentile(0.0),
        AdaptiveDelay::new().percentile(1.0),
        AdaptiveDelay::new().percentile(7.0),
        AdaptiveDelay::new()
            .window(0, Duration::ZERO)
            .warm_up(0, Duration::ZERO),
        AdaptiveDelay::new()
            .window(1, Duration::MAX)
            .warm_up(u32::MAX, Duration::MAX),
    ];
    for copies in [0, 1, 2, 1000] {
        for fixed in [Some(Duration::ZERO), Some(Duration::MAX), None] {
            for (i, a) in adaptive.iter().enumerate() {
                let backend = ScriptedDoer::new()
                    .then_after(Duration::from_millis(50), Ok(response(200, "a")))
                    .then_after(Duration::from_millis(5), Ok(response(200, "b")));
                let mut h = Hedging::new(backend.clone())
                    .adaptive_delay(*a)
                    .max_copies(copies)
                    .budget(HedgeBudget::new(f64::NAN).burst(0));
                if let Some(d) = fixed {
                    h = h.fixed_delay(d);
                }
                let _ = h.current_delay();
                let name = format!("copies {copies} fixed {fixed:?} adaptive {i}");
                for _ in 0..2 {
                    let _ = bounded(&name, h.execute(get())).await;
                }
                assert!(backend.calls() <= 4, "{name}: {}", backend.calls());
                if copies <= 1 {
                    assert!(
                        h.stats().copies_sent <= 2,
                        "{name}: max_copies {copies} hedged"
                    );
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn breaker_odd_settings() {
    for (name, b) in [
        ("consecutive 0, rate off", |d| {
            Breaker::new(d).consecutive_failures(0).failure_rate(0.0, 0)
        }),
        ("rate nan", |d| Breaker::new(d).failure_rate(f64::NAN, 0)),
        ("rate 1 min 0", |d| Breaker::new(d).failure_rate(1.0, 0)),
        ("rate >1", |d| Breaker::new(d).failure_rate(7.0, 0)),
        ("open zero", |d| {
            Breaker::new(d)
                .consecutive_failures(1)
                .open_duration(Duration::ZERO)
        }),
        ("open max", |d| {
            Breaker::new(d)
                .consecutive_failures(1)
                .open_duration(Duration::MAX)
        }),
        ("growth nan", |d| {
            Breaker::new(d)
                .consecutive_failures(1)
                .open_growth(f64::NAN, Duration::MAX)
        }),
        ("growth huge", |d| {
            Breaker::new(d)
                .consecutive_failures(1)
                .open_duration(Duration::from_secs(1))
                .open_growth(f64::MAX, Duration::MAX)
        }),
        ("probes 0", |d| {
            Breaker::new(d).consecutive_failures(1).half_open_probes(0)
        }),
        ("probe timeout 0", |d| {
            Breaker::new(d)
                .consecutive_failures(1)
                .open_duration(Duration::ZERO)
                .probe_timeout(Duration::ZERO)
        }),
        ("window 0", |d| {
            Breaker::new(d).window(Duration::ZERO).failure_rate(0.5, 1)
        }),
        ("window max", |d| {
            Breaker::new(d).window(Duration::MAX).failure_rate(0.5, 1)
        }),
        ("circuits 0", |d| Breaker::new(d).max_circuits(0)),
        ("stale zero", |d| {
            Breaker::new(d)
                .consecutive_failures(1)
                .serve_stale(ServeStale::new(Duration::ZERO).max_entries(0).max_bytes(0))
        }),
        ("stale max", |d| {
            Breaker::new(d)
                .consecutive_failures(1)
                .serve_stale(ServeStale::new(Duration::MAX))
        }),
    ] as [(&str, fn(ScriptedDoer) -> Breaker<ScriptedDoer>); 15]
    {
        let backend = ScriptedDoer::new()
            .then_status(200)
            .then_status(500)
            .then_status(500)
            .then_status(200)
            .then_status(200);
        let breaker = b(backend.clone());
        for _ in 0..5 {
            let _ = bounded(name, breaker.execute(get())).await;
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        let _ = breaker.state("https://api.test");
        let _ = breaker.snapshots();
        if name.starts_with("consecutive 0")
            || name.starts_with("rate nan")
            || name.starts_with("rate >1")
        {
            assert_eq!(breaker.state("https://api.test"), State::Closed, "{name}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn rate_and_concurrency_odd_settings() {
    for rate in [
        Rate::new(0, Duration::from_secs(1)),
        Rate::new(1, Duration::ZERO),
        Rate::new(1, Duration::MAX),
        Rate::new(u32::MAX, Duration::from_nanos(1)).burst(u32::MAX),
        Rate::new(1, Duration::MAX).burst(0),
        Rate::new(3, Duration::from_secs(1)).burst(u32::MAX),
    ] {
        for max_wait in [Some(Duration::ZERO), Some(Duration::MAX), None] {
            let backend = ScriptedDoer::new().then_status(200).then_status(200);
            let doer = RateLimiting::new(backend, rate).max_wait(max_wait);
            let name = format!("{rate:?} {max_wait:?}");
            for _ in 0..2 {
                let far =
                    max_wait != Some(Duration::ZERO) && rate.interval().is_some_and(|i| i > BOUND);
                let Some(out) = bounded_or_asked(&name, far, doer.execute(get())).await else {
                    continue;
                };
                if let Err(e) = out {
                    assert_eq!(e.kind(), ErrorKind::RateLimited, "{name}: {e}");
                }
            }
        }
    }
    for n in [0, 1, usize::MAX] {
        for q in [0, usize::MAX] {
            for w in [Some(Duration::ZERO), Some(Duration::MAX), None] {
                let backend = ScriptedDoer::new()
                    .then_after(Duration::from_secs(1), Ok(response(200, "")))
                    .then_after(Duration::from_secs(1), Ok(response(200, "")));
                let doer = ConcurrencyLimit::new(backend, n).max_queue(q).max_wait(w);
                assert!(doer.max_in_flight() >= 1);
                let (a, b) = bounded("cl", async {
                    tokio::join!(doer.execute(get()), doer.execute(get()))
                })
                .await;
                assert!(a.is_ok());
                if let Err(e) = b {
                    assert!(e.is_concurrency_limited(), "{e}");
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_chaos_logging_odd_settings() {
    for t in [Some(Duration::ZERO), Some(Duration::MAX), None] {
        let now = Timeout::new(ScriptedDoer::new().then_status(200), t);
        assert_eq!(
            bounded("t", now.execute(get())).await.unwrap().status(),
            200,
            "{t:?}: a ready answer"
        );
        let slow = Timeout::new(
            ScriptedDoer::new().then_after(Duration::from_secs(1), Ok(response(200, ""))),
            t,
        );
        let out = bounded("t", slow.execute(get())).await;
        assert_eq!(out.is_err(), t == Some(Duration::ZERO), "{t:?}");
    }
    for r in [
        f64::NAN,
        -1.0,
        0.0,
        1.0,
        2.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        let backend = http_doer::testing::doer_fn(|_| async { Ok(response(200, "ok")) });
        let chaos = Chaos::new(backend)
            .latency(r, Duration::from_secs(3600))
            .fault(r, ErrorKind::Connect)
            .outcome(r, 0, "x")
            .seed(1);
        for _ in 0..3 {
            let _ = bounded("chaos", chaos.execute(get())).await;
        }
        let s = chaos.stats();
        let on = !r.is_nan() && r > 0.0;
        assert_eq!(s.faults, if on { 3 } else { 0 }, "rate {r}");
        assert_eq!(s.delayed, if on { 3 } else { 0 }, "rate {r}");
    }
    for cap in [0, 1, usize::MAX] {
        for keep in [0, usize::MAX] {
            let log = KeepLog::new(keep);
            let doer = Logging::new(ScriptedDoer::new().then(Ok(response(200, "héllo token=x"))))
                .bodies(cap)
                .keep_log(log.clone())
                .sink(|_| {});
            let req = http::Request::post("https://api.test/x")
                .body(Body::from("é=1"))
                .unwrap();
            let resp = bounded("log", doer.execute(req)).await.unwrap();
            assert_eq!(resp.into_body().text().await.unwrap(), "héllo token=x");
            assert_eq!(
                log.len() + log.dropped() as usize,
                1,
                "cap {cap} keep {keep}"
            );
        }
    }
}
