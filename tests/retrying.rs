//! Retrying: every point of its contract, with doubles under paused time, and end to end over
//! real loopback servers (real time, short bounded waits).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http_doer::retrying::{
    Attempts, Backoff, Decision, Jitter, MaxRetries, RetryBudget, default_classifier,
};
use http_doer::testing::{ScriptedDoer, doer_fn, response};
use http_doer::{Body, Doer, DoerExt, Error, ErrorKind, Request, Response, Retrying};
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// Doubles

/// What a fake backend saw: when each request arrived (since the fake was made) and its body.
#[derive(Clone, Default)]
struct Probe {
    seen: Arc<Mutex<Vec<(Duration, Request)>>>,
}

impl Probe {
    fn calls(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Arrival times, in whole milliseconds since the fake was made.
    fn times_ms(&self) -> Vec<u128> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|(t, _)| t.as_millis()).collect()
    }

    fn bodies(&self) -> Vec<bytes::Bytes> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .map(|(_, r)| r.body().as_bytes().unwrap().clone())
            .collect()
    }
}

/// A backend that answers call `n` (from 0) with `answer(n)`: a delay, then an outcome.
fn fake<F>(answer: F) -> (impl Doer + Clone + 'static, Probe)
where
    F: Fn(usize) -> (Duration, Result<Response, Error>) + Send + Sync + 'static,
{
    let probe = Probe::default();
    let seen = probe.seen.clone();
    let start = Instant::now();
    let answer = Arc::new(answer);
    let doer = doer_fn(move |req: Request| {
        let n = {
            let mut seen = seen.lock().unwrap();
            seen.push((start.elapsed(), req));
            seen.len() - 1
        };
        let (delay, outcome) = answer(n);
        async move {
            tokio::time::sleep(delay).await;
            outcome
        }
    });
    (Arc::new(doer), probe)
}

/// A backend that always answers `status` at once.
fn always(status: u16) -> (impl Doer + Clone + 'static, Probe) {
    fake(move |_| (Duration::ZERO, Ok(response(status, ""))))
}

fn status_then_ok(failures: usize, status: u16) -> (impl Doer + Clone + 'static, Probe) {
    fake(move |n| {
        let code = if n < failures { status } else { 200 };
        (Duration::ZERO, Ok(response(code, "")))
    })
}

fn error(kind: ErrorKind, msg: &'static str) -> Error {
    Error::from(kind).with_message(msg)
}

fn get() -> Request {
    http::Request::get("http://api.test/items")
        .body(Body::empty())
        .unwrap()
}

fn request(method: &str, body: &'static str) -> Request {
    http::Request::builder()
        .method(method)
        .uri("http://api.test/orders")
        .body(Body::from(body))
        .unwrap()
}

fn attempts(resp: &Response) -> u32 {
    resp.extensions().get::<Attempts>().expect("Attempts set").0
}

/// Waits that never add randomness or real time to a test.
fn zero_backoff<D>(d: Retrying<D>) -> Retrying<D> {
    d.backoff(Backoff::constant(Duration::ZERO)).no_budget()
}

// ---------------------------------------------------------------------------------------------
// 1. Attempts

#[tokio::test(start_paused = true)]
async fn max_retries_counts_retries_after_the_first_attempt() {
    for n in 0..=4u32 {
        let (backend, probe) = always(503);
        let doer = zero_backoff(Retrying::new(backend)).max_retries(n);
        let resp = doer.execute(get()).await.unwrap();
        assert_eq!(probe.calls(), n as usize + 1, "max_retries({n})");
        assert_eq!(attempts(&resp), n + 1);
    }
}

#[tokio::test(start_paused = true)]
async fn default_is_three_retries() {
    let (backend, probe) = always(503);
    let resp = zero_backoff(backend.retrying())
        .execute(get())
        .await
        .unwrap();
    assert_eq!(probe.calls(), 4);
    assert_eq!(attempts(&resp), 4);
}

#[tokio::test(start_paused = true)]
async fn per_request_max_retries_overrides_the_setting() {
    let (backend, probe) = always(503);
    let doer = zero_backoff(Retrying::new(backend)).max_retries(5);
    let mut req = get();
    req.extensions_mut().insert(MaxRetries(1));
    doer.execute(req).await.unwrap();
    assert_eq!(probe.calls(), 2);
}

/// pester: `MaxRetries = 0` still makes one attempt (TestConcurrent2Retry0), and
/// `MaxRetries = 5` makes five (TestCustomLogHook). Here the same attempt counts take 0 and 4
/// retries, because `max_retries` counts retries.
#[tokio::test(start_paused = true)]
async fn pester_attempt_counts_ported() {
    for (pester_max_retries, our_max_retries) in [(0usize, 0u32), (1, 0), (3, 2), (5, 4)] {
        let (backend, probe) = fake(|_| (Duration::ZERO, Err(error(ErrorKind::Connect, "dial"))));
        let doer = Retrying::new(backend)
            .max_retries(our_max_retries)
            .backoff(Backoff::custom(|_| Duration::from_micros(10)))
            .no_budget();
        let err = doer.execute(get()).await.unwrap_err();
        assert_eq!(probe.calls(), pester_max_retries.max(1));
        assert_eq!(err.attempts(), Some(pester_max_retries.max(1) as u32));
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Backoff timings

/// pester's TestDefaultBackoff, TestExponentialBackoff and TestLinearJitterBackoff: the attempts
/// of a failing call land at these offsets.
#[tokio::test(start_paused = true)]
async fn pester_backoff_timings_ported() {
    let cases: [(Backoff, u32, &[u128]); 3] = [
        // DefaultBackoff, pester MaxRetries 3: 1 s apart.
        (Backoff::pester_default(), 2, &[0, 1000, 2000]),
        // ExponentialBackoff, pester MaxRetries 4: +2, +4, +8 s.
        (Backoff::pester_exponential(), 3, &[0, 2000, 6000, 14000]),
        // LinearBackoff: +1, +2, +3 s.
        (Backoff::pester_linear(), 3, &[0, 1000, 3000, 6000]),
    ];
    for (backoff, retries, want) in cases {
        let (backend, probe) = fake(|_| (Duration::ZERO, Err(error(ErrorKind::Connect, "dial"))));
        let doer = Retrying::new(backend)
            .backoff(backoff.clone())
            .max_retries(retries)
            .no_budget();
        doer.execute(get()).await.unwrap_err();
        assert_eq!(probe.times_ms(), want, "{backoff:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn pester_jitter_timings_stay_within_a_third() {
    for seed in 0..20 {
        let (backend, probe) = always(503);
        let doer = Retrying::new(backend)
            .backoff(Backoff::pester_exponential_jitter())
            .max_retries(3)
            .seed(seed)
            .no_budget();
        doer.execute(get()).await.unwrap();
        let t = probe.times_ms();
        for (i, centre) in [2000u128, 4000, 8000].into_iter().enumerate() {
            let gap = t[i + 1] - t[i];
            let third = centre / 3;
            assert!(
                gap >= centre - third && gap < centre + third,
                "seed {seed}: gap {gap}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn default_backoff_is_exponential_with_full_jitter() {
    let mut firsts = std::collections::HashSet::new();
    for seed in 0..30 {
        let (backend, probe) = always(503);
        Retrying::new(backend)
            .seed(seed)
            .no_budget()
            .execute(get())
            .await
            .unwrap();
        let t = probe.times_ms();
        for (i, cap) in [1000u128, 2000, 4000].into_iter().enumerate() {
            assert!(t[i + 1] - t[i] <= cap, "seed {seed}: {t:?}");
        }
        firsts.insert(t[1]);
    }
    assert!(firsts.len() > 20, "jitter spreads the first wait");
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_waits() {
    let run = |seed| async move {
        let (backend, probe) = always(503);
        let doer = Retrying::new(backend)
            .backoff(Backoff::exponential(Duration::from_millis(100)).jitter(Jitter::Full))
            .seed(seed)
            .no_budget();
        for _ in 0..3 {
            doer.execute(get()).await.unwrap();
        }
        probe.times_ms()
    };
    assert_eq!(run(11).await, run(11).await);
    assert_ne!(run(11).await, run(12).await);
}

#[tokio::test(start_paused = true)]
async fn neighbouring_seeds_are_not_the_same_run_shifted_by_one_call() {
    // Each call's waits, for the first four calls of a Retrying seeded `seed`.
    let waits = |seed| async move {
        let (backend, probe) = always(503);
        let doer = Retrying::new(backend)
            .backoff(Backoff::exponential(Duration::from_millis(100)).jitter(Jitter::Full))
            .max_retries(1)
            .seed(seed)
            .no_budget();
        for _ in 0..4 {
            doer.execute(get()).await.unwrap();
        }
        let t = probe.times_ms();
        t.chunks(2).map(|c| c[1] - c[0]).collect::<Vec<_>>()
    };
    let (a, b) = (waits(11).await, waits(12).await);
    assert_ne!(
        a[1..],
        b[..3],
        "seed 12 replays seed 11 one call later: {a:?} {b:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. What is retried

#[tokio::test(start_paused = true)]
async fn transient_statuses_are_retried_for_get() {
    for status in [408, 429, 500, 502, 503, 504] {
        let (backend, probe) = status_then_ok(1, status);
        let resp = zero_backoff(Retrying::new(backend))
            .execute(get())
            .await
            .unwrap();
        assert_eq!(
            (resp.status().as_u16(), probe.calls()),
            (200, 2),
            "{status}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn other_statuses_are_returned_at_once() {
    for status in [400, 401, 403, 404, 409, 422, 501, 505] {
        let (backend, probe) = always(status);
        let resp = zero_backoff(Retrying::new(backend))
            .execute(get())
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!((probe.calls(), attempts(&resp)), (1, 1), "{status}");
    }
}

#[tokio::test(start_paused = true)]
async fn post_is_not_retried_by_default() {
    let outcomes: Vec<Result<Response, Error>> = vec![
        Ok(response(503, "")),
        Ok(response(429, "")),
        Err(error(ErrorKind::Timeout, "slow")),
        Err(error(ErrorKind::Transport, "reset")),
        Err(error(ErrorKind::Body, "truncated")),
    ];
    for outcome in outcomes {
        let label = format!("{:?}", outcome.as_ref().map(|r| r.status()));
        let outcome = Arc::new(Mutex::new(Some(outcome)));
        let (backend, probe) = fake(move |_| {
            let next = outcome.lock().unwrap().take();
            (Duration::ZERO, next.unwrap_or(Ok(response(200, ""))))
        });
        let doer = zero_backoff(Retrying::new(backend));
        let _ = doer.execute(request("POST", "{\"amount\":10}")).await;
        assert_eq!(probe.calls(), 1, "{label}");
    }
}

#[tokio::test(start_paused = true)]
async fn post_is_retried_after_a_connect_error() {
    let (backend, probe) = fake(|n| {
        let out = if n < 2 {
            Err(error(ErrorKind::Connect, "refused"))
        } else {
            Ok(response(201, ""))
        };
        (Duration::ZERO, out)
    });
    let resp = zero_backoff(Retrying::new(backend))
        .execute(request("POST", "{\"amount\":10}"))
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), probe.calls()), (201, 3));
}

/// rehttp's TestClientRetryWithBody, made safe: the POST is retried only because it carries an
/// Idempotency-Key, and every attempt sends the very same bytes.
#[tokio::test(start_paused = true)]
async fn post_with_idempotency_key_is_retried_with_the_same_body() {
    let (backend, probe) = status_then_ok(2, 503);
    let mut req = request("POST", "{\"amount\":10}");
    req.headers_mut()
        .insert("Idempotency-Key", "5b3c7a9e".parse().unwrap());
    let original = req.body().as_bytes().unwrap().clone();
    let resp = zero_backoff(Retrying::new(backend))
        .execute(req)
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), attempts(&resp)), (200, 3));
    let bodies = probe.bodies();
    assert_eq!(bodies.len(), 3);
    for body in &bodies {
        assert_eq!(body, &original);
        assert_eq!(body.as_ptr(), original.as_ptr(), "shared, not copied");
    }
    let seen = probe.seen.lock().unwrap();
    assert!(
        seen.iter()
            .all(|(_, r)| r.headers()["idempotency-key"] == "5b3c7a9e")
    );
}

#[tokio::test(start_paused = true)]
async fn put_and_delete_are_retried_like_get() {
    for method in ["PUT", "DELETE", "HEAD", "OPTIONS"] {
        let (backend, probe) = status_then_ok(1, 502);
        zero_backoff(Retrying::new(backend))
            .execute(request(method, "x"))
            .await
            .unwrap();
        assert_eq!(probe.calls(), 2, "{method}");
    }
}

#[tokio::test(start_paused = true)]
async fn invalid_requests_and_other_errors_are_not_retried() {
    for kind in [
        ErrorKind::InvalidRequest,
        ErrorKind::TooLarge,
        ErrorKind::Redirect,
        ErrorKind::Other,
    ] {
        let (backend, probe) = fake(move |_| (Duration::ZERO, Err(error(kind, "no"))));
        let err = zero_backoff(Retrying::new(backend))
            .execute(get())
            .await
            .unwrap_err();
        assert_eq!((err.kind(), probe.calls()), (kind, 1));
        assert_eq!(err.attempts(), Some(1));
    }
}

#[tokio::test(start_paused = true)]
async fn a_tls_failure_is_not_retried() {
    // The backends report a failed handshake as `Tls` (see the conformance suite); a connect
    // error is retried for any method, a TLS one for none.
    let (backend, probe) = fake(|_| {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        );
        (Duration::ZERO, Err(Error::new(ErrorKind::Tls, io)))
    });
    let err = zero_backoff(Retrying::new(backend))
        .execute(get())
        .await
        .unwrap_err();
    assert_eq!((err.kind(), probe.calls()), (ErrorKind::Tls, 1));
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_sees_request_attempt_and_outcome() {
    let (backend, probe) = fake(|n| match n {
        0 => (Duration::ZERO, Ok(response(409, ""))),
        1 => (Duration::ZERO, Err(error(ErrorKind::Other, "odd"))),
        _ => (Duration::ZERO, Ok(response(409, ""))),
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let doer = Retrying::new(backend)
        .no_budget()
        .classifier(move |req, attempt, outcome| {
            let what = match outcome {
                Ok(resp) => resp.status().to_string(),
                Err(err) => format!("{:?}", err.kind()),
            };
            log.lock()
                .unwrap()
                .push((req.method().to_string(), attempt, what));
            match attempt {
                1 => Decision::RetryAfter(Duration::from_secs(3)),
                2 => Decision::RetryAfter(Duration::from_millis(1500)),
                _ => Decision::Stop,
            }
        });
    let resp = doer.execute(request("POST", "b")).await.unwrap();
    assert_eq!((resp.status().as_u16(), attempts(&resp)), (409, 3));
    assert_eq!(probe.times_ms(), [0, 3000, 4500]);
    let seen = seen.lock().unwrap();
    let row = |attempt: u32, what: &str| (String::from("POST"), attempt, String::from(what));
    assert_eq!(
        *seen,
        [
            row(1, "409 Conflict"),
            row(2, "Other"),
            row(3, "409 Conflict")
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_can_stop_what_the_default_retries() {
    let (backend, probe) = always(503);
    let doer =
        Retrying::new(backend)
            .no_budget()
            .classifier(|req, attempt, outcome| match outcome {
                Ok(resp) if resp.status() == 503 && req.uri().path() == "/items" => Decision::Stop,
                _ => default_classifier(req, attempt, outcome),
            });
    doer.execute(get()).await.unwrap();
    assert_eq!(probe.calls(), 1);
}

// ---------------------------------------------------------------------------------------------
// 4. Retry-After

fn with_retry_after(status: u16, value: &str) -> Response {
    let mut resp = response(status, "");
    resp.headers_mut()
        .insert("retry-after", value.parse().unwrap());
    resp
}

/// A backend answering `first` once, then 200; the doer's own backoff is a constant 2 s.
async fn wait_before_second_attempt(first: Response, max_delay: Duration) -> Option<u128> {
    let first = Arc::new(Mutex::new(Some(first)));
    let (backend, probe) = fake(move |_| {
        let next = first.lock().unwrap().take();
        (
            Duration::ZERO,
            Ok(next.unwrap_or_else(|| response(200, ""))),
        )
    });
    Retrying::new(backend)
        .backoff(Backoff::constant(Duration::from_secs(2)))
        .max_delay(max_delay)
        .no_budget()
        .execute(get())
        .await
        .unwrap();
    probe.times_ms().get(1).copied()
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_on_429_and_503_is_honoured() {
    for status in [429, 503] {
        let first = with_retry_after(status, "7");
        assert_eq!(
            wait_before_second_attempt(first, Duration::from_secs(30)).await,
            Some(7000)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_http_date_is_honoured() {
    let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(20));
    let waited = wait_before_second_attempt(with_retry_after(503, &when), Duration::from_secs(30))
        .await
        .unwrap();
    // HTTP-dates have whole seconds, so up to one second is lost in formatting, and the wall
    // clock (which paused tokio time does not stop) moves on before the header is read.
    assert!((18_000..=20_000).contains(&waited), "{waited}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_clamped_to_max_delay() {
    let first = with_retry_after(429, "3600");
    assert_eq!(
        wait_before_second_attempt(first, Duration::from_secs(5)).await,
        Some(5000)
    );
}

/// go-retryablehttp's table, through the decorator: a bad header means the backoff (2 s), a
/// past date means now, two headers mean the first.
#[tokio::test(start_paused = true)]
async fn retry_after_table_through_the_decorator() {
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
    let cases: [(&str, u128); 7] = [
        ("2", 2000),
        ("", 2000),
        ("-2", 2000),
        ("Fri, 32 Dec 1999 23:59:59 GMT", 2000),
        ("badbadbad", 2000),
        (&past, 0),
        ("0", 0),
    ];
    for (value, want) in cases {
        let first = if value.is_empty() {
            let mut r = response(503, "");
            r.headers_mut()
                .insert("retry-after", http::HeaderValue::from_static(""));
            r
        } else {
            with_retry_after(503, value)
        };
        let got = wait_before_second_attempt(first, Duration::from_secs(30)).await;
        assert_eq!(got, Some(want), "{value:?}");
    }
    let mut two = response(429, "");
    two.headers_mut()
        .append("retry-after", "5".parse().unwrap());
    two.headers_mut()
        .append("retry-after", "9".parse().unwrap());
    assert_eq!(
        wait_before_second_attempt(two, Duration::from_secs(30)).await,
        Some(5000)
    );
    // Missing header: the backoff.
    assert_eq!(
        wait_before_second_attempt(response(503, ""), Duration::from_secs(30)).await,
        Some(2000)
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_counts_only_on_429_and_503() {
    for status in [500, 502, 504, 408] {
        let first = with_retry_after(status, "9");
        assert_eq!(
            wait_before_second_attempt(first, Duration::from_secs(30)).await,
            Some(2000),
            "{status}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_can_be_ignored() {
    let (backend, probe) = fake(|n| {
        let r = if n == 0 {
            with_retry_after(503, "9")
        } else {
            response(200, "")
        };
        (Duration::ZERO, Ok(r))
    });
    Retrying::new(backend)
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .honor_retry_after(false)
        .execute(get())
        .await
        .unwrap();
    assert_eq!(probe.times_ms(), [0, 1000]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_stops_at_once() {
    let (backend, probe) = fake(|_| (Duration::ZERO, Ok(with_retry_after(503, "30"))));
    let start = Instant::now();
    let resp = Retrying::new(backend)
        .total_timeout(Duration::from_secs(10))
        .execute(get())
        .await
        .unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "no sleep into the deadline"
    );
    assert_eq!((resp.status().as_u16(), attempts(&resp)), (503, 1));
    assert_eq!(resp.headers()["retry-after"], "30", "the caller sees why");
    assert_eq!(probe.calls(), 1);
}

// ---------------------------------------------------------------------------------------------
// 5. Deadlines

/// rehttp's TestTransport_RoundTripOverallTimeout: each attempt would take 2 s, the attempt
/// timeout is 1 s, the whole call 1.5 s: two attempts, then a timeout at 1.5 s sharp.
#[tokio::test(start_paused = true)]
async fn rehttp_deadline_during_an_attempt() {
    let (backend, probe) = fake(|_| (Duration::from_secs(2), Ok(response(429, ""))));
    let start = Instant::now();
    let err = zero_backoff(Retrying::new(backend))
        .attempt_timeout(Duration::from_secs(1))
        .total_timeout(Duration::from_millis(1500))
        .execute(get())
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("total timeout"), "{err}");
    assert_eq!((probe.calls(), err.attempts()), (2, Some(2)));
}

/// rehttp's TestTransport_RoundTripTimeouts: a 100 ms server with a 10 ms attempt timeout fails
/// all four attempts with a timeout; with a 1 s attempt timeout the four 429s come back and
/// the last one is returned.
#[tokio::test(start_paused = true)]
async fn rehttp_per_attempt_timeouts() {
    let (backend, probe) = fake(|_| (Duration::from_millis(100), Ok(response(429, ""))));
    let err = zero_backoff(Retrying::new(backend.clone()))
        .attempt_timeout(Duration::from_millis(10))
        .execute(get())
        .await
        .unwrap_err();
    assert!(err.is_timeout() && err.to_string().contains("attempt timeout"));
    assert_eq!((probe.calls(), err.attempts()), (4, Some(4)));

    let resp = zero_backoff(Retrying::new(backend))
        .attempt_timeout(Duration::from_secs(1))
        .execute(get())
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), attempts(&resp)), (429, 4));
    assert_eq!(probe.calls(), 8);
}

/// rehttp's deadline during a wait: a 1 s backoff with a 1.5 s deadline. The second wait would
/// end past the deadline, so the call ends right after the second attempt, with its outcome,
/// instead of sleeping into the deadline.
#[tokio::test(start_paused = true)]
async fn rehttp_deadline_during_a_wait() {
    let (backend, probe) = always(503);
    let start = Instant::now();
    let resp = Retrying::new(backend)
        .backoff(Backoff::constant(Duration::from_secs(1)))
        .total_timeout(Duration::from_millis(1500))
        .no_budget()
        .execute(get())
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(probe.times_ms(), [0, 1000]);
    assert_eq!((resp.status().as_u16(), attempts(&resp)), (503, 2));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_after_an_error_returns_that_error_at_once() {
    let (backend, _) = fake(|_| (Duration::ZERO, Err(error(ErrorKind::Connect, "refused"))));
    let start = Instant::now();
    let err = Retrying::new(backend)
        .backoff(Backoff::constant(Duration::from_secs(5)))
        .total_timeout(Duration::from_secs(7))
        .no_budget()
        .execute(get())
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!((err.kind(), err.attempts()), (ErrorKind::Connect, Some(2)));
}

#[tokio::test(start_paused = true)]
async fn total_timeout_cuts_a_slow_first_attempt() {
    let (backend, probe) = fake(|_| (Duration::from_secs(60), Ok(response(200, ""))));
    let start = Instant::now();
    let err = Retrying::new(backend)
        .total_timeout(Duration::from_secs(5))
        .execute(get())
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert!(err.is_timeout());
    assert_eq!((probe.calls(), err.attempts()), (1, Some(1)));
    assert!(err.to_string().contains("api.test"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_on_post_is_not_retried() {
    let (backend, probe) = fake(|_| (Duration::from_secs(60), Ok(response(200, ""))));
    let err = Retrying::new(backend)
        .attempt_timeout(Duration::from_secs(2))
        .execute(request("POST", "x"))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(probe.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn quick_answers_under_a_deadline_are_untouched() {
    let (backend, probe) = fake(|_| (Duration::from_millis(20), Ok(response(200, "ok"))));
    let doer = Retrying::new(backend)
        .attempt_timeout(Duration::from_secs(1))
        .total_timeout(Duration::from_secs(2));
    for _ in 0..5 {
        let resp = doer.execute(get()).await.unwrap();
        assert_eq!(resp.into_body().text().await.unwrap(), "ok");
    }
    assert_eq!(probe.calls(), 5);
}

/// `None` turns a timeout off again: the setters take `impl Into<Option<Duration>>`.
#[tokio::test(start_paused = true)]
async fn a_timeout_set_to_none_is_off() {
    let (backend, probe) = fake(|_| (Duration::from_secs(60), Ok(response(200, ""))));
    let start = Instant::now();
    let resp = Retrying::new(backend)
        .attempt_timeout(Duration::from_secs(1))
        .total_timeout(Some(Duration::from_secs(2)))
        .attempt_timeout(None)
        .total_timeout(None)
        .execute(get())
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), attempts(&resp)), (200, 1));
    assert_eq!(start.elapsed(), Duration::from_secs(60));
    assert_eq!(probe.calls(), 1);
}

/// The total deadline keeps running across attempts and waits: the third attempt is cut when
/// the deadline started at the first one passes, and its error says which deadline it was.
#[tokio::test(start_paused = true)]
async fn the_total_deadline_spans_attempts_and_waits() {
    let (backend, probe) = fake(|n| match n {
        0 | 1 => (Duration::from_millis(400), Ok(response(503, ""))),
        _ => (Duration::from_secs(60), Ok(response(200, ""))),
    });
    let start = Instant::now();
    let err = Retrying::new(backend)
        .backoff(Backoff::constant(Duration::from_millis(100)))
        .no_budget()
        .total_timeout(Duration::from_millis(1500))
        .execute(get())
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(1500));
    assert_eq!(probe.times_ms(), [0, 500, 1000]);
    assert_eq!(err.attempts(), Some(3));
    assert_eq!(
        err.to_string(),
        "timed out: total timeout of 1.5s passed (http://api.test/items) after 3 attempts"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Retry budget

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_clones_and_a_spent_budget_returns_the_outcome() {
    let backend = ScriptedDoer::new()
        .then_status(503)
        .then_status(503)
        .then_status(200);
    let a = Retrying::new(backend.clone())
        .backoff(Backoff::constant(Duration::ZERO))
        .budget(RetryBudget::new(0.5, 0));
    let b = a.clone();
    // First call: half a retry earned, not enough; the 503 comes back as it is.
    let resp = a.execute(get()).await.unwrap();
    assert_eq!((resp.status().as_u16(), attempts(&resp)), (503, 1));
    // Second call, on the clone: one whole retry now.
    let resp = b.execute(get()).await.unwrap();
    assert_eq!((resp.status().as_u16(), attempts(&resp)), (200, 2));
    assert_eq!(backend.calls(), 3);
    assert_eq!(a.retry_budget().unwrap().remaining(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_total_outage_is_amplified_about_1_2_times() {
    let (backend, probe) = always(503);
    let doer = Retrying::new(backend).backoff(Backoff::constant(Duration::ZERO));
    let calls = 2000;
    for _ in 0..calls {
        let resp = doer.execute(get()).await.unwrap();
        assert_eq!(resp.status(), 503);
    }
    let amplification = probe.calls() as f64 / calls as f64;
    assert!(
        (1.19..=1.201).contains(&amplification),
        "amplification {amplification}"
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_budget_an_outage_is_amplified_fully() {
    let (backend, probe) = always(503);
    let doer = Retrying::new(backend)
        .backoff(Backoff::constant(Duration::ZERO))
        .no_budget();
    for _ in 0..100 {
        doer.execute(get()).await.unwrap();
    }
    assert_eq!(probe.calls(), 400);
}

// ---------------------------------------------------------------------------------------------
// 7. Outcomes and attempts

#[tokio::test(start_paused = true)]
async fn success_after_failures_reports_attempts() {
    let (backend, _) = status_then_ok(2, 500);
    let resp = zero_backoff(Retrying::new(backend))
        .execute(get())
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), attempts(&resp)), (200, 3));
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_success_reports_one_attempt() {
    let (backend, _) = always(200);
    let resp = Retrying::new(backend).execute(get()).await.unwrap();
    assert_eq!(attempts(&resp), 1);
}

#[tokio::test(start_paused = true)]
async fn the_last_error_is_returned_after_errors() {
    let (backend, _) = fake(|n| {
        let msg = ["first", "second", "third", "fourth"][n.min(3)];
        (Duration::ZERO, Err(error(ErrorKind::Connect, msg)))
    });
    let err = zero_backoff(Retrying::new(backend))
        .execute(get())
        .await
        .unwrap_err();
    assert_eq!((err.kind(), err.attempts()), (ErrorKind::Connect, Some(4)));
    assert!(err.to_string().contains("fourth"), "{err}");
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_final_503_is_a_response_not_an_error() {
    let (backend, _) = fake(|_| (Duration::ZERO, Ok(response(503, "down for maintenance"))));
    let resp = zero_backoff(Retrying::new(backend))
        .max_retries(2)
        .execute(get())
        .await
        .unwrap();
    assert_eq!((resp.status().as_u16(), attempts(&resp)), (503, 3));
    assert_eq!(
        resp.into_body().text().await.unwrap(),
        "down for maintenance"
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Cancellation

struct SetOnDrop(Arc<AtomicUsize>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_mid_attempt_drops_the_attempt() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (d, c) = (dropped.clone(), calls.clone());
    let backend = doer_fn(move |_req: Request| {
        c.fetch_add(1, Ordering::SeqCst);
        let guard = SetOnDrop(d.clone());
        async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(guard);
            Ok(response(200, ""))
        }
    });
    let doer = Retrying::new(backend).attempt_timeout(Duration::from_secs(30));
    let cut = tokio::time::timeout(Duration::from_secs(1), doer.execute(get())).await;
    assert!(cut.is_err());
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the attempt's future was dropped"
    );
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let metrics = tokio::runtime::Handle::current().metrics();
    assert_eq!(metrics.num_alive_tasks(), 0, "no task was spawned");
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_mid_wait_stops_the_retries() {
    let (backend, probe) = always(503);
    let doer = Retrying::new(backend)
        .backoff(Backoff::constant(Duration::from_secs(10)))
        .no_budget();
    let cut = tokio::time::timeout(Duration::from_secs(1), doer.execute(get())).await;
    assert!(cut.is_err());
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(probe.calls(), 1);
    let metrics = tokio::runtime::Handle::current().metrics();
    assert_eq!(metrics.num_alive_tasks(), 0);
}

// ---------------------------------------------------------------------------------------------
// Shape

#[test]
fn retrying_is_a_cloneable_shareable_doer() {
    fn doer<D: Doer + Clone + Send + Sync + 'static>(_: &D) {}
    let r = Retrying::new(ScriptedDoer::new());
    doer(&r);
    let shared: Arc<dyn Doer> = r.clone().shared();
    drop(shared);
    let s = format!("{:?}", Retrying::new(()).max_retries(2));
    assert!(s.contains("max_retries: 2") && s.contains("budget"), "{s}");
}

#[test]
fn the_wrapped_doer_is_reached_with_get_ref_get_mut_and_into_inner() {
    let mut r = Retrying::new(ScriptedDoer::new().then_status(200));
    assert_eq!(r.get_ref().remaining(), 1);
    r.get_mut().push(Ok(response(204, "")));
    assert_eq!(r.into_inner().remaining(), 2);
}

// ---------------------------------------------------------------------------------------------
// End to end over real loopback servers (real time; each test bounded)

mod loopback {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Clone, Copy, Debug)]
    pub enum Reply {
        Status(u16),
        /// Read the request, then close with SO_LINGER 0: the client gets a TCP RST.
        Reset,
    }

    /// A tiny HTTP/1.1 server on 127.0.0.1: request `n` (from 0) gets `reply(n)`; every
    /// exchange closes its connection. Returns the address and the request counter.
    pub async fn serve(
        reply: impl Fn(usize) -> Reply + Send + Sync + 'static,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let reply = Arc::new(reply);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let reply = reply.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut stream = stream;
                    if read_request(&mut stream).await.is_none() {
                        return;
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    match reply(n) {
                        Reply::Status(code) => {
                            let body = format!("reply {n}");
                            let head = format!(
                                "HTTP/1.1 {code} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                                body.len()
                            );
                            let _ = stream.write_all(head.as_bytes()).await;
                            let _ = stream.write_all(body.as_bytes()).await;
                            let _ = stream.shutdown().await;
                        }
                        Reply::Reset => {
                            let _ = stream.set_zero_linger();
                            drop(stream);
                        }
                    }
                });
            }
        });
        (addr, count)
    }

    /// Reads one request (head and Content-Length body); `None` if the peer went away first.
    async fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if !buf[0].is_ascii_uppercase() {
                // Not HTTP (a TLS ClientHello, say): answer at once so the client fails fast.
                return Some(buf);
            }
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                if buf.len() > 64 * 1024 {
                    return None;
                }
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf);
        }
    }
}

use loopback::{Reply, serve};

const BOUND: Duration = Duration::from_secs(20);

fn quick<D>(d: Retrying<D>) -> Retrying<D> {
    d.backoff(Backoff::constant(Duration::from_millis(10)))
        .no_budget()
}

fn url(addr: std::net::SocketAddr, scheme: &str) -> String {
    format!("{scheme}://{addr}/resource")
}

#[tokio::test]
async fn loopback_fails_twice_then_succeeds() {
    tokio::time::timeout(BOUND, async {
        let (addr, count) = serve(|n| Reply::Status(if n < 2 { 503 } else { 200 })).await;
        let doer = quick(http_doer::ReqwestDoer::new().retrying());
        let req = http::Request::get(url(addr, "http"))
            .body(Body::empty())
            .unwrap();
        let resp = doer.execute(req).await.unwrap();
        assert_eq!((resp.status().as_u16(), attempts(&resp)), (200, 3));
        assert_eq!(resp.into_body().text().await.unwrap(), "reply 2");
        assert_eq!(count.load(Ordering::SeqCst), 3);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn loopback_with_ureq_fails_twice_then_succeeds() {
    tokio::time::timeout(BOUND, async {
        let (addr, count) = serve(|n| Reply::Status(if n < 2 { 502 } else { 200 })).await;
        let doer = quick(Retrying::new(http_doer::UreqDoer::new()));
        let req = http::Request::get(url(addr, "http"))
            .body(Body::empty())
            .unwrap();
        let resp = doer.execute(req).await.unwrap();
        assert_eq!((resp.status().as_u16(), attempts(&resp)), (200, 3));
        assert_eq!(count.load(Ordering::SeqCst), 3);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn loopback_reset_is_retried_for_get_but_not_for_post() {
    tokio::time::timeout(BOUND, async {
        let (addr, count) = serve(|n| {
            if n < 2 {
                Reply::Reset
            } else {
                Reply::Status(200)
            }
        })
        .await;
        let doer = quick(http_doer::ReqwestDoer::new().retrying());
        let req = http::Request::get(url(addr, "http"))
            .body(Body::empty())
            .unwrap();
        let resp = doer.execute(req).await.unwrap();
        assert_eq!((resp.status().as_u16(), attempts(&resp)), (200, 3));
        assert_eq!(count.load(Ordering::SeqCst), 3);

        let (addr, count) = serve(|_| Reply::Reset).await;
        let req = http::Request::post(url(addr, "http"))
            .body(Body::from("pay 10"))
            .unwrap();
        let err = doer.execute(req).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Transport | ErrorKind::Body),
            "{err:?}"
        );
        assert_eq!(err.attempts(), Some(1));
        assert_eq!(count.load(Ordering::SeqCst), 1, "the POST went once");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn loopback_refused_connection_is_retried_even_for_post() {
    tokio::time::timeout(BOUND, async {
        // Port 1 (tcpmux) is privileged and unused on loopback: a released ephemeral port could
        // be taken by another test's server in this binary.
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let doer = quick(http_doer::ReqwestDoer::new().retrying()).max_retries(2);
        let req = http::Request::post(url(addr, "http"))
            .body(Body::from("pay 10"))
            .unwrap();
        let err = doer.execute(req).await.unwrap_err();
        assert_eq!((err.kind(), err.attempts()), (ErrorKind::Connect, Some(3)));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn loopback_tls_failure_is_not_retried() {
    tokio::time::timeout(BOUND, async {
        // An https request to a plain-HTTP server fails in the TLS handshake.
        let backends: [Box<dyn Doer>; 2] = [
            Box::new(http_doer::ReqwestDoer::new()),
            Box::new(http_doer::UreqDoer::new()),
        ];
        for backend in backends {
            let (addr, count) = serve(|_| Reply::Status(200)).await;
            let doer = quick(backend.retrying());
            let req = http::Request::get(url(addr, "https"))
                .body(Body::empty())
                .unwrap();
            let err = doer.execute(req).await.unwrap_err();
            assert_eq!(err.attempts(), Some(1), "{err:?}");
            assert_eq!(count.load(Ordering::SeqCst), 1, "one handshake, not four");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn loopback_total_timeout_ends_a_stalled_exchange() {
    tokio::time::timeout(BOUND, async {
        let listener = TcpListenerHold::bind().await;
        let doer = http_doer::ReqwestDoer::new()
            .retrying()
            .total_timeout(Duration::from_millis(300));
        let req = http::Request::get(url(listener.addr, "http"))
            .body(Body::empty())
            .unwrap();
        let start = std::time::Instant::now();
        let err = doer.execute(req).await.unwrap_err();
        let took = start.elapsed();
        assert!(err.is_timeout(), "{err:?}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{took:?}"
        );
    })
    .await
    .unwrap();
}

/// A server that accepts connections and never answers.
struct TcpListenerHold {
    addr: std::net::SocketAddr,
}

impl TcpListenerHold {
    async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        TcpListenerHold { addr }
    }
}
