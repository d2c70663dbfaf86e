//! Hedging: behaviour with doubles under paused time (ports of hedgedhttp's tests among them),
//! and one end-to-end run over a real loopback server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_doer::hedging::{AdaptiveDelay, Hedge, HedgeBudget, HedgeReport, HedgeStats};
use http_doer::testing::{ScriptedDoer, doer_fn, response};
use http_doer::{Body, Doer, DoerExt, Error, ErrorKind, Hedging, Request, Response};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

const HOUR: Duration = Duration::from_secs(3600);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn get() -> Request {
    http::Request::get("http://api.test/items")
        .body(Body::empty())
        .unwrap()
}

fn request(method: &str) -> Request {
    http::Request::builder()
        .method(method)
        .uri("http://api.test/items")
        .body(Body::from("payload"))
        .unwrap()
}

fn ok_after(delay: Duration, body: &'static str) -> (Duration, Result<Response, Error>) {
    (delay, Ok(response(200, body)))
}

fn script(steps: impl IntoIterator<Item = (Duration, Result<Response, Error>)>) -> ScriptedDoer {
    let doer = ScriptedDoer::new();
    for (delay, outcome) in steps {
        doer.push_after(delay, outcome);
    }
    doer
}

fn error(kind: ErrorKind) -> Result<Response, Error> {
    Err(Error::from(kind).with_message("scripted"))
}

fn report(resp: &Response) -> HedgeReport {
    *resp
        .extensions()
        .get::<HedgeReport>()
        .expect("a hedged call's response carries a report")
}

/// Counts how many of the futures it travels in were dropped.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A double whose `n`th call answers `200` after `latency(n)`; it counts its calls, and every
/// copy dropped, finished or not.
fn counting(
    latency: impl Fn(usize) -> Duration + Send + Sync + 'static,
) -> (impl Doer + Clone, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (c, d) = (calls.clone(), dropped.clone());
    let doer = Arc::new(doer_fn(move |_req: Request| {
        let wait = latency(c.fetch_add(1, Ordering::SeqCst));
        let guard = DropCount(d.clone());
        async move {
            let _guard = guard;
            tokio::time::sleep(wait).await;
            Ok(response(200, ""))
        }
    }));
    (doer, calls, dropped)
}

// ---- ports of hedgedhttp's hedged_test.go ----

/// hedgedhttp TestUpto / TestUptoWithInstrumentation: when every copy is slow, all are sent.
#[tokio::test(start_paused = true)]
async fn all_copies_are_sent_when_all_are_slow() {
    let backend = script((0..7).map(|_| ok_after(ms(100), "slow")));
    let hedged = backend.clone().hedging().fixed_delay(ms(10)).max_copies(7);
    let start = Instant::now();
    let resp = hedged.execute(get()).await.unwrap();
    assert_eq!(
        start.elapsed(),
        ms(100),
        "the original answers first, at 100 ms"
    );
    assert_eq!(backend.calls(), 7);
    assert_eq!(report(&resp).copies_sent, 7);
    let stats = hedged.stats();
    assert_eq!((stats.calls, stats.copies_sent), (1, 7));
    assert_eq!((stats.original_wins, stats.hedge_wins), (1, 0));
    assert_eq!(stats.cancelled_copies, 6);
    assert_eq!((stats.failed_copies, stats.caller_cancelled), (0, 0));
}

/// hedgedhttp TestNoTimeout: a zero delay sends every copy at once.
#[tokio::test(start_paused = true)]
async fn all_at_once_sends_every_copy_immediately() {
    let backend = script((0..10).map(|_| ok_after(ms(10), "ok")));
    let hedged = Hedging::new(backend.clone())
        .all_at_once()
        .max_copies(10)
        .budget(HedgeBudget::unlimited());
    let start = Instant::now();
    let resp = hedged.execute(get()).await.unwrap();
    assert_eq!(start.elapsed(), ms(10), "no copy waited for another");
    assert_eq!(backend.calls(), 10);
    assert_eq!(report(&resp).delay, Duration::ZERO);
    assert_eq!(hedged.stats().copies_sent, 10);
}

/// hedgedhttp TestFirstIsOK: a fast first answer sends exactly one request.
#[tokio::test(start_paused = true)]
async fn a_fast_first_answer_sends_exactly_one() {
    let backend = ScriptedDoer::new().then(Ok(response(200, "ok")));
    let hedged = backend.clone().hedging().fixed_delay(ms(10)).max_copies(10);
    let resp = hedged.execute(get()).await.unwrap();
    let r = report(&resp);
    assert_eq!((r.copies_sent, r.winner, r.hedge_won()), (1, 0, false));
    assert_eq!(resp.into_body().text().await.unwrap(), "ok");
    assert_eq!(backend.calls(), 1);
    let stats = hedged.stats();
    assert_eq!(
        (stats.calls, stats.copies_sent, stats.original_wins),
        (1, 1, 1)
    );
    let untouched = HedgeStats::default();
    assert_eq!(stats.hedge_wins, untouched.hedge_wins);
    assert_eq!(
        (
            stats.cancelled_copies,
            stats.failed_copies,
            stats.budget_denied
        ),
        (0, 0, 0)
    );
}

/// hedgedhttp TestBestResponse: the fastest copy wins, whichever it is.
#[tokio::test(start_paused = true)]
async fn the_fastest_copy_wins() {
    let backend = script([600, 100, 20, 20, 20].map(|t| ok_after(ms(t), "")));
    let hedged = backend.clone().hedging().fixed_delay(ms(10)).max_copies(5);
    let start = Instant::now();
    let resp = hedged.execute(get()).await.unwrap();
    // Copies start at 0, 10, 20, 30 ms; the third (started at 20 ms) answers at 40 ms.
    assert_eq!(start.elapsed(), ms(40));
    assert_eq!(report(&resp).winner, 2);
    let stats = hedged.stats();
    assert!((4..=5).contains(&stats.copies_sent), "{stats:?}");
    assert_eq!(stats.hedge_wins, 1);
    assert_eq!(stats.cancelled_copies, stats.copies_sent - 1);
}

/// hedgedhttp TestGetSuccessEvenWithErrorsPresent: resets on earlier copies do not end the
/// call, and each failure sends the next copy at once.
#[tokio::test(start_paused = true)]
async fn success_despite_resets_on_earlier_copies() {
    let mut steps: Vec<_> = (0..4)
        .map(|_| (ms(1), error(ErrorKind::Transport)))
        .collect();
    steps.push(ok_after(ms(1), "success"));
    let backend = script(steps);
    let hedged = backend.clone().hedging().fixed_delay(ms(10)).max_copies(5);
    let start = Instant::now();
    let resp = hedged.execute(get()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(report(&resp).winner, 4);
    assert_eq!(resp.into_body().text().await.unwrap(), "success");
    // Five copies one after the other, none waiting for the 10 ms delay.
    assert_eq!(start.elapsed(), ms(5));
    let stats = hedged.stats();
    assert_eq!((stats.copies_sent, stats.failed_copies), (5, 4));
    assert_eq!(stats.hedge_wins, 1);
}

/// hedgedhttp TestGetFailureAfterAllRetries: when every copy fails, the error says how many
/// were sent.
#[tokio::test(start_paused = true)]
async fn failure_after_all_copies_fail() {
    let backend = script((0..5).map(|_| (ms(1), error(ErrorKind::Transport))));
    let hedged = backend.clone().hedging().fixed_delay(ms(1)).max_copies(5);
    let err = hedged.execute(get()).await.unwrap_err();
    assert!(err.is_transport(), "{err}");
    assert_eq!(err.attempts(), Some(5));
    assert!(err.to_string().contains("after 5 attempts"), "{err}");
    let stats = hedged.stats();
    assert_eq!((stats.copies_sent, stats.failed_copies), (5, 5));
    assert_eq!((stats.original_wins, stats.hedge_wins), (0, 0));
    assert_eq!(backend.calls(), 5);
}

/// hedgedhttp TestHangAllExceptLast: hanging copies do not block the one that answers, and
/// are cancelled when it does.
#[tokio::test(start_paused = true)]
async fn hang_all_except_last() {
    let (backend, calls, dropped) = counting(|n| if n == 4 { ms(100) } else { HOUR });
    let hedged = backend.hedging().fixed_delay(ms(10)).max_copies(5);
    let start = Instant::now();
    let resp = hedged.execute(get()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(start.elapsed(), ms(140));
    assert_eq!(report(&resp).winner, 4);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    // The four hanging copies were dropped (cancelled), and the winner finished: 5 drops.
    assert_eq!(dropped.load(Ordering::SeqCst), 5);
    assert_eq!(hedged.stats().cancelled_copies, 4);
}

/// hedgedhttp TestCancelByClient: the caller giving up cancels every copy.
#[tokio::test(start_paused = true)]
async fn the_caller_cancels() {
    let (backend, calls, dropped) = counting(|_| HOUR);
    let hedged = backend.hedging().fixed_delay(ms(10)).max_copies(5);
    let outcome = tokio::time::timeout(ms(50), hedged.execute(get())).await;
    assert!(outcome.is_err(), "the caller's timeout ends the call");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "copies at 0, 10, 20, 30, 40 ms"
    );
    assert_eq!(dropped.load(Ordering::SeqCst), 5, "every copy was dropped");
    let stats = hedged.stats();
    assert_eq!((stats.caller_cancelled, stats.cancelled_copies), (1, 5));
    assert_eq!((stats.original_wins, stats.hedge_wins), (0, 0));
}

// ---- the issue's own points ----

#[tokio::test(start_paused = true)]
async fn a_fast_503_does_not_beat_a_slower_200() {
    let backend = script([ok_after(ms(30), "good"), (ms(0), Ok(response(503, "busy")))]);
    let hedged = backend.clone().hedging().fixed_delay(ms(10));
    let start = Instant::now();
    let resp = hedged.execute(get()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(start.elapsed(), ms(30), "waited for the pending original");
    assert_eq!(report(&resp).winner, 0);
    let stats = hedged.stats();
    assert_eq!((stats.failed_copies, stats.original_wins), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_429_is_not_acceptable_by_default_but_can_be() {
    let steps = || script([ok_after(ms(30), "good"), (ms(0), Ok(response(429, "")))]);
    let resp = steps().hedging().fixed_delay(ms(10)).execute(get()).await;
    assert_eq!(resp.unwrap().status(), 200);

    let accept_all = steps().hedging().fixed_delay(ms(10)).acceptable(|_| true);
    let resp = accept_all.execute(get()).await.unwrap();
    assert_eq!((resp.status().as_u16(), report(&resp).winner), (429, 1));

    let strict = script([ok_after(ms(30), "good"), (ms(0), Ok(response(404, "")))])
        .hedging()
        .fixed_delay(ms(10))
        .acceptable(|r| r.status().is_success());
    assert_eq!(strict.execute(get()).await.unwrap().status(), 200);
}

#[tokio::test(start_paused = true)]
async fn a_failed_copy_starts_the_next_at_once() {
    let backend = script([
        (ms(1), error(ErrorKind::Connect)),
        ok_after(ms(5), "second"),
    ]);
    let hedged = backend
        .clone()
        .hedging()
        .fixed_delay(Duration::from_secs(1));
    let start = Instant::now();
    let resp = hedged.execute(get()).await.unwrap();
    assert_eq!(
        start.elapsed(),
        ms(6),
        "not 1 s: the failure did not wait out the delay"
    );
    assert_eq!(report(&resp).winner, 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_copy_with_another_pending_waits_for_it() {
    // The original is slow but good; the hedge fails fast; no third copy is allowed.
    let backend = script([
        ok_after(ms(50), "original"),
        (ms(1), error(ErrorKind::Transport)),
    ]);
    let hedged = backend.clone().hedging().fixed_delay(ms(10));
    let resp = hedged.execute(get()).await.unwrap();
    assert_eq!(resp.into_body().text().await.unwrap(), "original");
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn copies_start_one_delay_apart() {
    let origin = Instant::now();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let s = starts.clone();
    let backend = doer_fn(move |_req: Request| {
        s.lock().unwrap().push(origin.elapsed());
        async {
            tokio::time::sleep(HOUR).await;
            Ok(response(200, ""))
        }
    });
    let hedged = backend.hedging().fixed_delay(ms(25)).max_copies(3);
    let _ = tokio::time::timeout(ms(200), hedged.execute(get())).await;
    assert_eq!(*starts.lock().unwrap(), [ms(0), ms(25), ms(50)]);
}

#[tokio::test(start_paused = true)]
async fn when_all_fail_a_response_beats_an_error() {
    for steps in [
        [
            (ms(1), Ok(response(503, "a"))),
            (ms(1), error(ErrorKind::Timeout)),
        ],
        [
            (ms(1), error(ErrorKind::Timeout)),
            (ms(1), Ok(response(503, "b"))),
        ],
    ] {
        let hedged = script(steps).hedging().fixed_delay(ms(10));
        let resp = hedged.execute(get()).await.unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(report(&resp).copies_sent, 2);
        assert_eq!(hedged.stats().failed_copies, 2);
    }
}

#[tokio::test(start_paused = true)]
async fn an_error_no_copy_can_fix_sends_no_more_copies() {
    let backend = script([
        (ms(1), error(ErrorKind::InvalidRequest)),
        ok_after(ms(1), ""),
    ]);
    let hedged = backend.clone().hedging().fixed_delay(ms(10)).max_copies(3);
    let err = hedged.execute(get()).await.unwrap_err();
    assert!(err.is_invalid_request());
    assert_eq!(err.attempts(), Some(1));
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn losers_are_dropped_the_moment_a_winner_arrives() {
    let (backend, _calls, dropped) = counting(|n| if n == 0 { HOUR } else { ms(3) });
    let hedged = backend.hedging().fixed_delay(ms(10));
    let resp = hedged.execute(get()).await.unwrap();
    // Both futures are gone when execute returns: the loser was not left running anywhere.
    assert_eq!(dropped.load(Ordering::SeqCst), 2);
    assert_eq!(report(&resp).winner, 1);
    assert_eq!(hedged.stats().cancelled_copies, 1);
}

#[tokio::test(start_paused = true)]
async fn only_get_and_head_are_hedged_by_default() {
    for method in ["GET", "HEAD"] {
        let backend = script([ok_after(HOUR, ""), ok_after(ms(1), "")]);
        let hedged = backend.clone().hedging().fixed_delay(ms(10));
        let resp = hedged.execute(request(method)).await.unwrap();
        assert_eq!(report(&resp).winner, 1, "{method}");
    }
    for method in ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let backend = script([ok_after(ms(50), "only")]);
        let hedged = backend.clone().hedging().fixed_delay(ms(10));
        let resp = hedged.execute(request(method)).await.unwrap();
        assert_eq!(backend.calls(), 1, "{method} was sent once");
        assert!(
            resp.extensions().get::<HedgeReport>().is_none(),
            "untouched"
        );
        let stats = hedged.stats();
        assert_eq!((stats.passed_through, stats.copies_sent), (1, 1));
        // The request reached the inner Doer as it was sent.
        let seen = &backend.requests()[0];
        assert_eq!(seen.method().as_str(), method);
        assert_eq!(seen.body().as_bytes().unwrap(), "payload");
    }
}

#[tokio::test(start_paused = true)]
async fn other_methods_can_opt_in_per_request_or_on_the_decorator() {
    let mut post = request("POST");
    post.extensions_mut().insert(Hedge::OptIn);
    let backend = script([ok_after(HOUR, ""), ok_after(ms(1), "")]);
    let hedged = backend.clone().hedging().fixed_delay(ms(10));
    let resp = hedged.execute(post).await.unwrap();
    assert_eq!(report(&resp).winner, 1);
    let copies = backend.requests();
    assert_eq!(copies.len(), 2);
    for copy in &copies {
        assert_eq!(copy.method(), "POST");
        assert_eq!(
            copy.body().as_bytes().unwrap(),
            "payload",
            "same bytes resent"
        );
    }

    let backend = script([ok_after(HOUR, ""), ok_after(ms(1), "")]);
    let hedged = backend
        .clone()
        .hedging()
        .fixed_delay(ms(10))
        .methods([http::Method::GET, http::Method::PUT]);
    let resp = hedged.execute(request("PUT")).await.unwrap();
    assert_eq!(report(&resp).winner, 1);
}

#[tokio::test(start_paused = true)]
async fn any_request_can_opt_out() {
    let mut req = get();
    req.extensions_mut().insert(Hedge::OptOut);
    let backend = script([ok_after(ms(500), "once")]);
    let hedged = backend.clone().hedging().fixed_delay(ms(10));
    let resp = hedged.execute(req).await.unwrap();
    assert_eq!(backend.calls(), 1);
    assert!(resp.extensions().get::<HedgeReport>().is_none());
    assert_eq!(hedged.stats().passed_through, 1);
}

#[tokio::test(start_paused = true)]
async fn the_budget_limits_extra_copies_across_clones() {
    // Every request is slow: without a budget, every call would send a hedge.
    let backend = doer_fn(|_req: Request| async {
        tokio::time::sleep(ms(100)).await;
        Ok(response(200, ""))
    });
    let a = Arc::new(backend)
        .hedging()
        .fixed_delay(ms(10))
        .budget(HedgeBudget::new(0.1).burst(1));
    let b = a.clone();
    for i in 0..21 {
        let hedged = if i % 2 == 0 { &a } else { &b };
        hedged.execute(get()).await.unwrap();
    }
    let stats = a.stats();
    assert_eq!(stats, b.stats(), "clones share counters");
    assert_eq!(stats.calls, 21);
    // One token to start with (spent by the first call), then 0.1 per later call: 1 + 2.
    assert_eq!(stats.copies_sent - stats.calls, 3, "{stats:?}");
    assert_eq!(stats.budget_denied, 18);
}

#[tokio::test(start_paused = true)]
async fn max_copies_one_never_hedges() {
    let backend = script([ok_after(ms(500), "")]);
    let hedged = backend.clone().hedging().fixed_delay(ms(1)).max_copies(1);
    let resp = hedged.execute(get()).await.unwrap();
    assert_eq!(report(&resp).copies_sent, 1);
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn adaptive_delay_warms_up_then_learns_from_answers() {
    let backend = ScriptedDoer::new();
    let hedged = backend
        .clone()
        .hedging()
        .adaptive_delay(AdaptiveDelay::new().warm_up(5, ms(100)));
    for i in 0..5 {
        backend.push_after(ms(2), Ok(response(200, "")));
        assert_eq!(hedged.current_delay(), ms(100), "before answer {i}");
        let resp = hedged.execute(get()).await.unwrap();
        assert_eq!(report(&resp).delay, ms(100));
    }
    // Five answers of 2 ms: the p95 is 2 ms (the top of its histogram bucket).
    let learned = hedged.current_delay();
    assert!(
        learned >= ms(2) && learned <= ms(2) * 33 / 32,
        "{learned:?}"
    );
    // A stalled original is now hedged after about 2 ms, not after the 100 ms fallback.
    backend.push_after(HOUR, Ok(response(200, "")));
    backend.push_after(ms(2), Ok(response(200, "")));
    let start = Instant::now();
    let resp = hedged.execute(get()).await.unwrap();
    assert_eq!(report(&resp).delay, learned);
    assert!(start.elapsed() <= ms(5), "{:?}", start.elapsed());
    assert_eq!(report(&resp).winner, 1);
}

#[tokio::test(start_paused = true)]
async fn adaptive_delay_follows_a_slowdown() {
    let backend = ScriptedDoer::new();
    let hedged = backend.clone().hedging().adaptive_delay(
        AdaptiveDelay::new()
            .warm_up(10, ms(1000))
            .window(40, Duration::from_secs(60)),
    );
    for _ in 0..40 {
        backend.push_after(ms(2), Ok(response(200, "")));
        hedged.execute(get()).await.unwrap();
    }
    assert!(hedged.current_delay() < ms(3));
    // The backend now takes 50 ms for everything: originals outlive the delay, hedges fire
    // (until the budget runs dry), and the originals still answer first, so their real
    // latencies fill the window and the delay rises to match.
    for _ in 0..200 {
        backend.push_after(ms(50), Ok(response(200, "")));
    }
    for _ in 0..60 {
        hedged.execute(get()).await.unwrap();
    }
    let d = hedged.current_delay();
    assert!(d >= ms(50) && d <= ms(52), "{d:?}");
}

/// The benchmark's long-tail backend, as a double under paused time: the adaptive delay must
/// meet the targets from a cold start.
#[tokio::test(start_paused = true)]
async fn adaptive_meets_the_tail_targets_from_a_cold_start() {
    for (copies, n) in [(2u32, 3000usize), (3, 3000)] {
        let rng = Arc::new(Mutex::new(SmallRng::seed_from_u64(7)));
        let backend = doer_fn(move |_req: Request| {
            let fast = rng.lock().unwrap().random_bool(0.95);
            let micros = if fast {
                rng.lock().unwrap().random_range(1000..=3000)
            } else {
                100_000
            };
            async move {
                tokio::time::sleep(Duration::from_micros(micros)).await;
                Ok(response(200, ""))
            }
        });
        let hedged = backend.hedging().max_copies(copies);
        let mut latencies = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            hedged.execute(get()).await.unwrap();
            latencies.push(start.elapsed());
        }
        latencies.sort();
        let pct = |q: f64| latencies[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        let stats = hedged.stats();
        let extra = (stats.copies_sent - stats.calls) as f64 / n as f64;
        if copies == 2 {
            assert!(pct(0.99) <= ms(8), "p99 {:?}", pct(0.99));
            assert!(extra <= 0.07, "extra {extra}");
        } else {
            assert!(pct(0.999) <= ms(20), "p99.9 {:?}", pct(0.999));
            assert!(extra <= 0.08, "extra {extra}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_timer_that_fires_when_no_copy_is_left_does_not_spin() {
    // Budget of one token, spent by the first call: the second call's timer fires but no hedge
    // may go, and the call simply waits for its original.
    let backend = script([
        ok_after(ms(50), ""),
        ok_after(ms(1), ""),
        ok_after(ms(50), "original"),
    ]);
    let hedged = backend
        .clone()
        .hedging()
        .fixed_delay(ms(10))
        .budget(HedgeBudget::new(0.0).burst(1));
    hedged.execute(get()).await.unwrap();
    let start = Instant::now();
    let resp = hedged.execute(get()).await.unwrap();
    assert_eq!(start.elapsed(), ms(50));
    assert_eq!(resp.into_body().text().await.unwrap(), "original");
    assert_eq!(hedged.stats().budget_denied, 1);
}

#[tokio::test]
async fn stacks_as_a_trait_object_and_debug_prints_no_secret() {
    let hedged = ScriptedDoer::new().then_status(200).hedging();
    let shared = hedged.clone().shared();
    let req = http::Request::get("http://user:pw@api.test/?token=abc")
        .body(Body::empty())
        .unwrap();
    assert_eq!(shared.execute(req).await.unwrap().status(), 200);
    assert_eq!(
        hedged.stats().calls,
        1,
        "the shared clone counts into the same stats"
    );
    let debug = format!("{hedged:?}");
    assert!(
        debug.contains("Hedging") && debug.contains("max_copies: 2"),
        "{debug}"
    );
    for secret in ["pw", "abc"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

// ---- end to end over loopback ----

/// A real backend over a real socket: the first request stalls, its hedge answers, and the
/// stalled copy is counted as cancelled (its connection closing is shown by the leak test,
/// `tests/hedging_leak.rs`, which counts file descriptors).
#[tokio::test]
async fn end_to_end_over_loopback() {
    use wiremock::{Mock, MockServer, Respond, ResponseTemplate, matchers::method};

    struct FirstStalls(AtomicUsize);
    impl Respond for FirstStalls {
        fn respond(&self, _req: &wiremock::Request) -> ResponseTemplate {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                ResponseTemplate::new(200)
                    .set_body_string("stalled")
                    .set_delay(Duration::from_secs(10))
            } else {
                ResponseTemplate::new(200).set_body_string("hedge")
            }
        }
    }

    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(FirstStalls(AtomicUsize::new(0)))
        .mount(&server)
        .await;
    let hedged = http_doer::ReqwestDoer::new().hedging().fixed_delay(ms(50));
    let req = http::Request::get(format!("{}/x", server.uri()))
        .body(Body::empty())
        .unwrap();
    let start = std::time::Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(5), hedged.execute(req))
        .await
        .expect("the hedge answers long before the stalled original")
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(report(&resp).winner, 1);
    assert_eq!(resp.into_body().text().await.unwrap(), "hedge");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    let stats = hedged.stats();
    assert_eq!((stats.hedge_wins, stats.cancelled_copies), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_delay_too_long_for_a_timer_means_never_hedge() {
    let backend = script([ok_after(ms(50), "original")]);
    let hedged = Hedging::new(backend.clone()).fixed_delay(Duration::MAX);
    let resp = hedged.execute(get()).await.unwrap();
    assert_eq!(resp.into_body().text().await.unwrap(), "original");
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn accessors_debug_and_defaults_follow_the_decorator_shape() {
    use http_doer::hedging::{DEFAULT_MAX_COPIES, DEFAULT_METHODS};
    let mut hedged = ScriptedDoer::new().then_status(200).hedging();
    assert_eq!(hedged.get_mut().calls(), 0);
    let debug = format!("{hedged:?}");
    assert!(debug.contains("inner: ScriptedDoer"), "{debug}");
    assert!(
        debug.contains(&format!("max_copies: {DEFAULT_MAX_COPIES}")),
        "{debug}"
    );
    assert!(debug.contains(&format!("{DEFAULT_METHODS:?}")), "{debug}");
    assert!(debug.ends_with(".. }"), "{debug}");

    // Clones share the counters; the old accessor still answers, with a warning.
    let clone = hedged.clone();
    assert_eq!(clone.execute(get()).await.unwrap().status(), 200);
    assert_eq!(hedged.stats().calls, 1);
    #[allow(deprecated)]
    let calls = hedged.inner().calls();
    assert_eq!(calls, 1);
    assert_eq!(hedged.get_ref().calls(), 1);
    assert_eq!(hedged.into_inner().calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn all_at_once_keeps_to_the_default_budget() {
    // Every answer takes 10 ms; with no budget, each call would send its second copy at once.
    let backend = doer_fn(|_req: Request| async {
        tokio::time::sleep(ms(10)).await;
        Ok(response(200, ""))
    });
    let hedged = Arc::new(backend).hedging().all_at_once();
    for _ in 0..100 {
        hedged.execute(get()).await.unwrap();
    }
    let stats = hedged.stats();
    assert_eq!(stats.calls, 100);
    // The default budget: a burst of 10 tokens, then 0.1 per call. 100% extra is the
    // unlimited budget's, never the default's.
    let extra = stats.copies_sent - stats.calls;
    assert!((19..=21).contains(&extra), "{stats:?}");
    assert_eq!(stats.budget_denied, 100 - extra, "{stats:?}");
}
