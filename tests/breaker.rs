//! Breaker tests over doubles, with paused time: ports of gobreaker's cases, retter's scenario,
//! the serve-stale security cases, cancellation, probes and the hook.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderValue;
use http_doer::breaker::{
    Probe, ServeStale, StaleAnswer, StaleReason, State, StateChange, Verdict, default_verdict,
};
use http_doer::testing::{ScriptedDoer, response};
use http_doer::{Body, Breaker, Doer, DoerExt, Error, ErrorKind, Request, Response};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};

const HOST: &str = "https://api.test";

fn get(path: &str) -> Request {
    http::Request::get(format!("{HOST}{path}"))
        .body(Body::empty())
        .unwrap()
}

fn post(path: &str) -> Request {
    http::Request::post(format!("{HOST}{path}"))
        .body(Body::empty())
        .unwrap()
}

fn get_as(path: &str, header: &'static str, value: &'static str) -> Request {
    let mut req = get(path);
    req.headers_mut()
        .insert(header, HeaderValue::from_static(value));
    req
}

/// A host double: answers `200 "<path> for <authorization>"`, or 503 while `down`; the query
/// string asks for a delay (`delay=<ms>`), a `Set-Cookie`, or a `Cache-Control` value.
#[derive(Clone, Debug, Default)]
struct Host {
    down: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
    probes: Arc<AtomicUsize>,
}

impl Host {
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Doer for Host {
    async fn execute(&self, req: Request) -> Result<Response, Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if req.extensions().get::<Probe>().is_some() {
            self.probes.fetch_add(1, Ordering::SeqCst);
        }
        let query = req.uri().query().unwrap_or("").to_owned();
        for part in query.split('&') {
            if let Some(ms) = part.strip_prefix("delay=") {
                sleep(Duration::from_millis(ms.parse().unwrap())).await;
            }
        }
        if self.down.load(Ordering::SeqCst) {
            return Ok(response(503, "down"));
        }
        let who = req
            .headers()
            .get("authorization")
            .or(req.headers().get("cookie"))
            .map_or("anyone".to_owned(), |v| v.to_str().unwrap().to_owned());
        let mut resp = response(200, format!("{} for {who}", req.uri().path()));
        if query.contains("set-cookie") {
            resp.headers_mut()
                .insert("set-cookie", HeaderValue::from_static("sid=new"));
        }
        if query.contains("no-store") {
            resp.headers_mut()
                .insert("cache-control", HeaderValue::from_static("no-store"));
        }
        if query.contains("private") {
            resp.headers_mut().insert(
                "cache-control",
                HeaderValue::from_static("private, max-age=60"),
            );
        }
        Ok(resp)
    }
}

/// A host that is down, behind a breaker that trips on `n` failures in a row.
fn down_host(n: u32) -> (Host, Breaker<Host>) {
    let host = Host::default();
    host.set_down(true);
    let breaker = host.clone().breaker().consecutive_failures(n);
    (host, breaker)
}

/// Starts `req` through `breaker` on a task of its own, and lets it run until it waits.
async fn start<D: Doer + Clone + 'static>(
    breaker: &Breaker<D>,
    req: Request,
) -> JoinHandle<Result<Response, Error>> {
    let breaker = breaker.clone();
    let task = tokio::spawn(async move { breaker.execute(req).await });
    tokio::task::yield_now().await;
    task
}

/// One call while the host is down.
async fn fail_once(doer: &impl Doer, host: &Host) -> u16 {
    host.set_down(true);
    let code = status(doer, get("/")).await;
    host.set_down(false);
    code
}

/// Whether the breaker refused `req` itself; an answer fails the test.
async fn refused(doer: &impl Doer, req: Request) -> bool {
    doer.execute(req).await.unwrap_err().is_breaker_open()
}

async fn status(doer: &impl Doer, req: Request) -> u16 {
    doer.execute(req).await.unwrap().status().as_u16()
}

async fn text(resp: Response) -> String {
    resp.into_body().text().await.unwrap()
}

fn stale_reason(resp: &Response) -> Option<StaleReason> {
    resp.extensions().get::<StaleAnswer>().map(|s| s.reason)
}

/// Records every state change the hook sees.
fn recorder() -> (
    Arc<Mutex<Vec<StateChange>>>,
    impl Fn(&StateChange) + Send + Sync,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |change: &StateChange| {
        sink.lock().unwrap().push(change.clone())
    })
}

fn transitions(seen: &Mutex<Vec<StateChange>>) -> Vec<(State, State)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|c| (c.from, c.to))
        .collect()
}

// ---- gobreaker's cases -------------------------------------------------------------------------

/// gobreaker `TestDefaultCircuitBreaker`, with our threshold: the 5th failure in a row trips
/// (gobreaker's default trips on the 6th).
#[tokio::test(start_paused = true)]
async fn default_breaker_trips_after_consecutive_failures_then_probes_and_closes() {
    let host = Host::default();
    let breaker = host.clone().breaker();
    host.set_down(true);
    for _ in 0..4 {
        assert_eq!(status(&breaker, get("/")).await, 503);
    }
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!((snap.state, snap.consecutive_failures), (State::Closed, 4));
    assert_eq!((snap.window_successes, snap.window_failures), (0, 4));

    host.set_down(false);
    assert_eq!(status(&breaker, get("/")).await, 200);
    assert_eq!(breaker.snapshot(HOST).unwrap().consecutive_failures, 0);

    host.set_down(true);
    assert_eq!(status(&breaker, get("/")).await, 503);
    assert_eq!(breaker.snapshot(HOST).unwrap().consecutive_failures, 1);
    for _ in 0..4 {
        assert_eq!(status(&breaker, get("/")).await, 503);
    }
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!(snap.state, State::Open);
    assert_eq!((snap.consecutive_failures, snap.window_failures), (0, 0));
    assert_eq!(snap.counts.failures, 9);
    assert_eq!(snap.counts.successes, 1);

    // Open: refused at once, without touching the host.
    let before = host.calls();
    for _ in 0..3 {
        let err = breaker.execute(get("/")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BreakerOpen);
    }
    assert_eq!(host.calls(), before);
    assert_eq!(breaker.snapshot(HOST).unwrap().counts.rejected, 3);

    sleep(Duration::from_millis(9_999)).await;
    assert_eq!(breaker.state(HOST), State::Open);
    sleep(Duration::from_millis(1)).await;
    assert_eq!(breaker.state(HOST), State::HalfOpen);

    // A failed probe opens it again.
    assert_eq!(status(&breaker, get("/")).await, 503);
    assert_eq!(breaker.state(HOST), State::Open);

    // A successful probe closes it, with fresh counts.
    sleep(Duration::from_secs(10)).await;
    assert_eq!(breaker.state(HOST), State::HalfOpen);
    host.set_down(false);
    assert_eq!(status(&breaker, get("/")).await, 200);
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!(snap.state, State::Closed);
    assert_eq!((snap.consecutive_failures, snap.window_failures), (0, 0));
    assert_eq!(snap.generation, 5);
}

/// gobreaker `TestCustomCircuitBreaker`: a custom failure ratio over a window, with 3 probes.
#[tokio::test(start_paused = true)]
async fn custom_ratio_trips_and_three_probes_close() {
    let host = Host::default();
    let (seen, hook) = recorder();
    let breaker = Breaker::new(host.clone())
        .consecutive_failures(0)
        .failure_rate(0.6, 3)
        .window(Duration::from_secs(30))
        .open_duration(Duration::from_secs(90))
        .half_open_probes(3)
        .on_state_change(hook);
    for _ in 0..5 {
        assert_eq!(status(&breaker, get("/")).await, 200);
        assert_eq!(fail_once(&breaker, &host).await, 503);
    }
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!(snap.state, State::Closed); // 5 of 10 = 0.5 < 0.6
    assert_eq!((snap.window_successes, snap.window_failures), (5, 5));

    sleep(Duration::from_secs(29)).await;
    assert_eq!(status(&breaker, get("/")).await, 200);
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!((snap.window_successes, snap.window_failures), (6, 5));

    // At 45 s the calls made at 0 s have left the window; the one made at 29 s has not.
    sleep(Duration::from_secs(16)).await;
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!((snap.window_successes, snap.window_failures), (1, 0));
    fail_once(&breaker, &host).await;
    assert_eq!(status(&breaker, get("/")).await, 200);
    fail_once(&breaker, &host).await;
    assert_eq!(breaker.state(HOST), State::Closed); // 2 of 4 = 0.5
    fail_once(&breaker, &host).await; // 3 of 5 = 0.6: trips
    assert_eq!(breaker.state(HOST), State::Open);
    assert_eq!(transitions(&seen), [(State::Closed, State::Open)]);

    sleep(Duration::from_secs(90)).await;
    assert_eq!(breaker.state(HOST), State::HalfOpen);
    assert_eq!(
        transitions(&seen).last(),
        Some(&(State::Open, State::HalfOpen))
    );
    assert_eq!(status(&breaker, get("/")).await, 200);
    assert_eq!(status(&breaker, get("/")).await, 200);
    assert_eq!(breaker.state(HOST), State::HalfOpen);

    // The third probe is slow; while it is in flight a fourth call is over the cap.
    let slow = start(&breaker, get("/?delay=100")).await;
    assert_eq!(breaker.snapshot(HOST).unwrap().probes_in_flight, 1);
    let err = breaker.execute(get("/")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BreakerOpen);
    assert!(err.to_string().contains("probe slots are taken"), "{err}");
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    assert_eq!(breaker.state(HOST), State::Closed);
    assert_eq!(
        transitions(&seen),
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
    assert_eq!(host.probes.load(Ordering::SeqCst), 3);
}

/// gobreaker `TestGeneration`: outcomes of calls started before a state change are ignored.
#[tokio::test(start_paused = true)]
async fn outcomes_from_an_older_generation_are_ignored() {
    let backend = ScriptedDoer::new()
        .then_after(Duration::from_secs(15), Ok(response(503, ""))) // A: slow, started closed
        .then_after(Duration::from_secs(25), Ok(response(503, ""))) // Z: slower, started closed
        .then_status(503) // B
        .then_status(503) // C: trips
        .then_after(Duration::from_secs(10), Ok(response(200, ""))) // D: probe
        .then_after(Duration::from_secs(5), Ok(response(200, ""))); // F: closed, slow
    let breaker = backend.clone().breaker().consecutive_failures(2);

    let a = start(&breaker, get("/a")).await;
    let z = start(&breaker, get("/z")).await; // A and Z are admitted in generation 0
    assert_eq!(status(&breaker, get("/b")).await, 503);
    assert_eq!(status(&breaker, get("/c")).await, 503);
    assert_eq!(breaker.state(HOST), State::Open);

    sleep(Duration::from_secs(10)).await;
    let d = start(&breaker, get("/d")).await; // D is the probe of generation 2
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!((snap.state, snap.probes_in_flight), (State::HalfOpen, 1));

    // A's failure arrives while half-open: it must not reopen the circuit.
    sleep(Duration::from_secs(6)).await;
    assert_eq!(a.await.unwrap().unwrap().status(), 503);
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!(snap.state, State::HalfOpen);
    assert_eq!(snap.counts.late, 1);
    assert_eq!(snap.counts.failures, 2);

    sleep(Duration::from_secs(5)).await;
    assert_eq!(d.await.unwrap().unwrap().status(), 200);
    assert_eq!(breaker.state(HOST), State::Closed);

    // Z's failure arrives in a later closed period (generation 3): it is not counted there.
    sleep(Duration::from_secs(5)).await;
    assert_eq!(z.await.unwrap().unwrap().status(), 503);
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!((snap.state, snap.generation), (State::Closed, 3));
    assert_eq!((snap.consecutive_failures, snap.window_failures), (0, 0));
    assert_eq!(snap.counts.late, 2);

    // And a success that began before a trip cannot close the circuit it finds open.
    let f = start(&breaker, get("/f")).await;
    backend.push(Ok(response(503, "")));
    backend.push(Ok(response(503, "")));
    assert_eq!(status(&breaker, get("/g")).await, 503);
    assert_eq!(status(&breaker, get("/h")).await, 503);
    assert_eq!(breaker.state(HOST), State::Open);
    assert_eq!(f.await.unwrap().unwrap().status(), 200);
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!(snap.state, State::Open);
    assert_eq!(snap.counts.late, 3);
}

/// gobreaker `TestCustomIsSuccessful`: what counts as failure is the classifier's call.
#[tokio::test(start_paused = true)]
async fn classifier_decides_what_counts() {
    let host = Host::default();
    host.set_down(true);
    let lenient = Breaker::new(host.clone()).classify(|_| Verdict::Success);
    for _ in 0..10 {
        assert_eq!(status(&lenient, get("/")).await, 503);
    }
    assert_eq!(lenient.state(HOST), State::Closed);
    assert_eq!(lenient.snapshot(HOST).unwrap().counts.successes, 10);

    // 429 as a failure, 5xx as usual; an ignored outcome counts for nothing.
    let backend = ScriptedDoer::new()
        .then_status(429)
        .then_error(ErrorKind::InvalidRequest)
        .then_status(429);
    let strict = Breaker::new(backend)
        .consecutive_failures(2)
        .classify(|r| match r {
            Ok(resp) if resp.status() == 429 => Verdict::Failure,
            other => default_verdict(other),
        });
    assert_eq!(status(&strict, get("/")).await, 429);
    let err = strict.execute(get("/")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    let snap = strict.snapshot(HOST).unwrap();
    assert_eq!((snap.consecutive_failures, snap.counts.ignored), (1, 1));
    assert_eq!(status(&strict, get("/")).await, 429);
    assert_eq!(strict.state(HOST), State::Open);
}

/// resilience4j looks at the failure rate after every outcome: a success that brings the
/// window to its minimum of calls trips the circuit when the rate is over the threshold.
#[tokio::test(start_paused = true)]
async fn failure_rate_is_checked_after_successes_too() {
    let backend = ScriptedDoer::new()
        .then_status(503)
        .then_status(503)
        .then_status(503)
        .then_status(200)
        .then_status(200)
        .then_status(200);
    let breaker = backend.clone().breaker().failure_rate(0.5, 5);
    for want in [503, 503, 503, 200] {
        assert_eq!(status(&breaker, get("/")).await, want);
        assert_eq!(breaker.state(HOST), State::Closed);
    }
    assert_eq!(status(&breaker, get("/")).await, 200); // 3 of 5 failed
    assert_eq!(breaker.state(HOST), State::Open);
    let err = breaker.execute(get("/")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BreakerOpen);
    assert_eq!(backend.calls(), 5);
}

/// Old successes leave the rolling window: the rate rises without a new failure, and the next
/// success sees it.
#[tokio::test(start_paused = true)]
async fn failure_rate_trips_on_a_success_once_old_successes_leave_the_window() {
    let host = Host::default();
    let breaker = host
        .clone()
        .breaker()
        .consecutive_failures(0)
        .failure_rate(0.5, 3)
        .window(Duration::from_secs(30));
    for _ in 0..4 {
        assert_eq!(status(&breaker, get("/")).await, 200);
    }
    sleep(Duration::from_secs(20)).await;
    for _ in 0..3 {
        assert_eq!(fail_once(&breaker, &host).await, 503);
    }
    assert_eq!(status(&breaker, get("/")).await, 200); // 3 of 8
    assert_eq!(breaker.state(HOST), State::Closed);

    sleep(Duration::from_secs(11)).await; // the calls of 0 s have left: with this one, 3 of 5
    assert_eq!(status(&breaker, get("/")).await, 200);
    assert_eq!(breaker.state(HOST), State::Open);
    assert!(refused(&breaker, get("/")).await);
    assert_eq!(host.calls(), 9);
}

// ---- refusals, probes, cancellation ------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn open_with_nothing_to_serve_refuses_at_once_and_says_when_to_come_back() {
    let (host, breaker) = down_host(1);
    assert_eq!(status(&breaker, get("/")).await, 503);
    sleep(Duration::from_millis(2_500)).await;

    let started = Instant::now();
    let req = http::Request::get("https://me:pw@api.test/x?api_key=s3cret&page=2")
        .body(Body::empty())
        .unwrap();
    let err = breaker.execute(req).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(host.calls(), 1);
    assert!(err.is_breaker_open());
    assert_eq!(err.retry_after(), Some(Duration::from_millis(7_500)));
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("next probe allowed in 7.5 s"), "{shown}");
    assert!(shown.contains("page=2"), "{shown}");
    for secret in ["s3cret", "pw"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}

#[tokio::test(start_paused = true)]
async fn only_probes_carry_the_probe_extension_and_the_rest_wait() {
    let (host, breaker) = down_host(1);
    assert_eq!(status(&breaker, get("/")).await, 503);
    assert_eq!(host.probes.load(Ordering::SeqCst), 0);
    sleep(Duration::from_secs(10)).await;
    host.set_down(false);

    let probe = start(&breaker, get("/?delay=500")).await;
    let err = breaker.execute(get("/")).await.unwrap_err();
    assert!(err.is_breaker_open());
    // The slot frees at the latest when the probe times out (30 s by default).
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(probe.await.unwrap().unwrap().status(), 200);
    assert_eq!(host.probes.load(Ordering::SeqCst), 1);
    assert_eq!(status(&breaker, get("/")).await, 200);
    assert_eq!(host.probes.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_never_returns_frees_its_slot_after_the_probe_timeout() {
    let (host, breaker) = down_host(1);
    let breaker = breaker.probe_timeout(Duration::from_secs(5));
    assert_eq!(status(&breaker, get("/")).await, 503);
    sleep(Duration::from_secs(10)).await;

    // This probe hangs for an hour.
    let hung = start(&breaker, get("/?delay=3600000")).await;
    sleep(Duration::from_millis(4_999)).await;
    assert!(refused(&breaker, get("/")).await);

    sleep(Duration::from_millis(1)).await;
    host.set_down(false);
    assert_eq!(status(&breaker, get("/")).await, 200);
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!(snap.state, State::Closed);
    assert_eq!(snap.counts.abandoned_probes, 1);
    assert_eq!(host.probes.load(Ordering::SeqCst), 2);
    hung.abort();
}

#[tokio::test(start_paused = true)]
async fn a_probe_from_an_earlier_half_open_period_keeps_its_slot_but_not_its_vote() {
    let (host, breaker) = down_host(1);
    let breaker = breaker.half_open_probes(2);
    assert_eq!(status(&breaker, get("/")).await, 503);
    sleep(Duration::from_secs(10)).await;

    // Probe A is slow; probe B fails fast and reopens the circuit.
    let a = start(&breaker, get("/?delay=10500")).await;
    assert_eq!(status(&breaker, get("/")).await, 503);
    assert_eq!(breaker.state(HOST), State::Open);

    // Next half-open period: A still holds a slot, so only one more probe (C) goes out.
    sleep(Duration::from_secs(10)).await;
    let c = start(&breaker, get("/?delay=1000")).await;
    assert!(refused(&breaker, get("/")).await);
    assert_eq!(breaker.snapshot(HOST).unwrap().probes_in_flight, 2);
    assert_eq!(host.probes.load(Ordering::SeqCst), 3);

    // A fails during this half-open period: it frees its slot but does not reopen the circuit.
    sleep(Duration::from_millis(600)).await;
    assert_eq!(a.await.unwrap().unwrap().status(), 503);
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!((snap.state, snap.probes_in_flight), (State::HalfOpen, 1));
    assert_eq!(snap.counts.late, 1);

    // C succeeds; one more successful probe closes the circuit.
    host.set_down(false);
    sleep(Duration::from_millis(500)).await;
    assert_eq!(c.await.unwrap().unwrap().status(), 200);
    assert_eq!(breaker.state(HOST), State::HalfOpen);
    assert_eq!(status(&breaker, get("/")).await, 200);
    assert_eq!(breaker.state(HOST), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_counts_as_neither_and_frees_its_probe_slot() {
    let (host, breaker) = down_host(2);
    assert_eq!(status(&breaker, get("/")).await, 503);

    // Closed: a call dropped by its caller changes nothing.
    let dropped =
        tokio::time::timeout(Duration::from_secs(1), breaker.execute(get("/?delay=5000")));
    assert!(dropped.await.is_err());
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!((snap.state, snap.consecutive_failures), (State::Closed, 1));
    assert_eq!(snap.counts.cancelled, 1);

    assert_eq!(status(&breaker, get("/")).await, 503);
    assert_eq!(breaker.state(HOST), State::Open);
    sleep(Duration::from_secs(10)).await;

    // Half-open: a cancelled probe gives its slot to the next call at once.
    let dropped =
        tokio::time::timeout(Duration::from_secs(1), breaker.execute(get("/?delay=5000")));
    assert!(dropped.await.is_err());
    let snap = breaker.snapshot(HOST).unwrap();
    assert_eq!((snap.state, snap.probes_in_flight), (State::HalfOpen, 0));
    host.set_down(false);
    assert_eq!(status(&breaker, get("/")).await, 200);
    assert_eq!(breaker.state(HOST), State::Closed);
    assert_eq!(breaker.snapshot(HOST).unwrap().counts.cancelled, 2);
}

#[tokio::test(start_paused = true)]
async fn open_period_grows_while_probes_fail_and_resets_on_close() {
    let (host, breaker) = down_host(1);
    let breaker = breaker
        .open_duration(Duration::from_secs(1))
        .open_growth(2.0, Duration::from_secs(5));
    assert_eq!(status(&breaker, get("/")).await, 503);
    let mut waits = Vec::new();
    for _ in 0..5 {
        let wait = breaker
            .execute(get("/"))
            .await
            .unwrap_err()
            .retry_after()
            .unwrap();
        waits.push(wait.as_secs());
        sleep(wait).await;
        assert_eq!(status(&breaker, get("/")).await, 503); // failed probe
    }
    assert_eq!(waits, [1, 2, 4, 5, 5]);
    sleep(Duration::from_secs(5)).await;
    host.set_down(false);
    assert_eq!(status(&breaker, get("/")).await, 200);
    host.set_down(true);
    assert_eq!(status(&breaker, get("/")).await, 503);
    let wait = breaker.execute(get("/")).await.unwrap_err().retry_after();
    assert_eq!(wait, Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn one_circuit_per_origin_by_default_or_per_custom_key() {
    let (host, breaker) = down_host(1);
    let url = |u: &str| http::Request::get(u).body(Body::empty()).unwrap();
    assert_eq!(status(&breaker, url("https://a.test/x")).await, 503);
    assert_eq!(breaker.state("https://a.test"), State::Open);
    // Same origin, other path and spelling: refused. Other origins: untouched.
    let err = breaker
        .execute(url("HTTPS://A.test:443/y"))
        .await
        .unwrap_err();
    assert!(err.is_breaker_open());
    host.set_down(false);
    assert_eq!(status(&breaker, url("https://b.test/x")).await, 200);
    assert_eq!(status(&breaker, url("http://a.test/x")).await, 200);
    assert_eq!(status(&breaker, url("https://a.test:8443/x")).await, 200);
    let keys: Vec<String> = breaker
        .snapshots()
        .iter()
        .map(|s| s.key.to_string())
        .collect();
    assert_eq!(
        keys,
        [
            "http://a.test",
            "https://a.test",
            "https://a.test:8443",
            "https://b.test"
        ]
    );

    let by_api = Breaker::new(host.clone())
        .consecutive_failures(1)
        .key_by(|req| req.uri().path().split('/').nth(1).unwrap_or("").to_owned());
    host.set_down(true);
    assert_eq!(status(&by_api, get("/orders/1")).await, 503);
    host.set_down(false);
    assert!(by_api.execute(get("/orders/2")).await.is_err());
    assert_eq!(status(&by_api, get("/users/1")).await, 200);
    assert_eq!(by_api.key_for(&get("/orders/9")), "orders");
    assert_eq!(by_api.state("orders"), State::Open);
}

#[tokio::test(start_paused = true)]
async fn circuits_never_mix_between_breakers_hosts_or_spellings_on_one_thread() {
    let host = Host::default();
    let one = host.clone().breaker().consecutive_failures(1);
    let two = host.clone().breaker().consecutive_failures(1);
    let url = |u: &str| http::Request::get(u).body(Body::empty()).unwrap();
    host.set_down(true);
    // Alternate breakers and hosts on this one thread.
    assert_eq!(status(&one, url("https://a.test/")).await, 503);
    assert_eq!(status(&two, url("https://b.test/")).await, 503);
    host.set_down(false);
    assert_eq!(status(&one, url("https://b.test/")).await, 200);
    assert_eq!(status(&two, url("https://a.test/")).await, 200);
    assert!(one.execute(url("https://a.test/")).await.is_err());
    assert!(two.execute(url("https://b.test/")).await.is_err());
    // Other spellings of an origin, userinfo included, find the same circuit.
    for spelling in [
        "https://A.TEST:443/x",
        "https://u:pw@a.test/",
        "https://a.test/",
    ] {
        let err = one.execute(url(spelling)).await.unwrap_err();
        assert!(err.is_breaker_open(), "{spelling}");
    }
    assert_eq!(one.state("https://a.test"), State::Open);
    assert_eq!(one.state("https://b.test"), State::Closed);
    assert_eq!(two.state("https://a.test"), State::Closed);
    assert_eq!(two.state("https://b.test"), State::Open);
    assert_eq!(one.snapshot("https://a.test").unwrap().counts.rejected, 4);
}

#[tokio::test(start_paused = true)]
async fn max_circuits_drops_idle_closed_circuits_and_keeps_open_ones() {
    let (host, breaker) = down_host(1);
    let breaker = breaker.max_circuits(2);
    let url = |h: &str| {
        http::Request::get(format!("https://{h}.test/"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(status(&breaker, url("a")).await, 503); // a: open
    host.set_down(false);
    for h in ["b", "c", "d", "e"] {
        assert_eq!(status(&breaker, url(h)).await, 200);
    }
    let keys: Vec<String> = breaker
        .snapshots()
        .iter()
        .map(|s| s.key.to_string())
        .collect();
    // At each new host over the bound, idle closed circuits go. The open one stays, and so does
    // the one a call still holds (here this thread's last-used circuit, which it keeps at hand),
    // so the map is over the bound by one: [a, d, e] after e.
    assert_eq!(keys, ["https://a.test", "https://d.test", "https://e.test"]);
    assert_eq!(breaker.state("https://a.test"), State::Open);
}

// ---- hook and tracing --------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn hook_sees_each_change_once_in_order_and_may_read_the_breaker() {
    let host = Host::default();
    let handle: Arc<OnceLock<Breaker<Host>>> = Arc::new(OnceLock::new());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let breaker = host
        .clone()
        .breaker()
        .consecutive_failures(1)
        .on_state_change({
            let (handle, seen) = (handle.clone(), seen.clone());
            move |change: &StateChange| {
                // Reading the breaker from the hook must not deadlock.
                let now = handle.get().map(|b| b.state(&change.key));
                seen.lock()
                    .unwrap()
                    .push((change.from, change.to, change.generation, now));
            }
        });
    handle.set(breaker.clone()).ok().unwrap();
    host.set_down(true);
    assert_eq!(status(&breaker, get("/")).await, 503);
    sleep(Duration::from_secs(10)).await;
    host.set_down(false);
    assert_eq!(status(&breaker, get("/")).await, 200);
    use State::*;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Closed, Open, 1, Some(Open)),
            (Open, HalfOpen, 2, Some(HalfOpen)),
            (HalfOpen, Closed, 3, Some(Closed)),
        ]
    );
}

// ---- retter's scenario and serve-stale ---------------------------------------------------------

/// retter's `TestRetterHTTPHandler_ServeHTTP`: success; failures answered from the cache while
/// closed; trip; answers from the cache while open, without calling the host; recovery.
#[tokio::test(start_paused = true)]
async fn retter_scenario_serves_the_last_good_answer_then_recovers() {
    let host = Host::default();
    let breaker = host
        .clone()
        .breaker()
        .consecutive_failures(3)
        .serve_stale(ServeStale::new(Duration::from_secs(60)).on_failure(true));

    let fresh = breaker.execute(get("/test/path")).await.unwrap();
    assert_eq!(stale_reason(&fresh), None);
    assert_eq!(text(fresh).await, "/test/path for anyone");

    host.set_down(true);
    for i in 1..=3 {
        sleep(Duration::from_secs(1)).await;
        let resp = breaker.execute(get("/test/path")).await.unwrap();
        assert_eq!(resp.status(), 200, "failure #{i}");
        assert_eq!(stale_reason(&resp), Some(StaleReason::Failed));
        assert_eq!(resp.headers()["age"], i.to_string().as_str());
        assert_eq!(text(resp).await, "/test/path for anyone");
    }
    assert_eq!(breaker.state(HOST), State::Open);
    assert_eq!(host.calls(), 4);

    let resp = breaker.execute(get("/test/path")).await.unwrap();
    assert_eq!(stale_reason(&resp), Some(StaleReason::Rejected));
    assert_eq!(text(resp).await, "/test/path for anyone");
    assert_eq!(host.calls(), 4);

    // The host recovers; after the open period the probe goes through and closes the circuit.
    host.set_down(false);
    sleep(Duration::from_secs(10)).await;
    let resp = breaker.execute(get("/test/path")).await.unwrap();
    assert_eq!(stale_reason(&resp), None);
    assert_eq!(breaker.state(HOST), State::Closed);
    assert_eq!(host.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn failures_are_not_hidden_unless_on_failure_is_set() {
    let host = Host::default();
    let breaker = host
        .clone()
        .breaker()
        .consecutive_failures(2)
        .serve_stale(ServeStale::new(Duration::from_secs(60)));
    assert_eq!(status(&breaker, get("/")).await, 200);
    host.set_down(true);
    assert_eq!(status(&breaker, get("/")).await, 503);
    assert_eq!(status(&breaker, get("/")).await, 503);
    let resp = breaker.execute(get("/")).await.unwrap();
    assert_eq!(stale_reason(&resp), Some(StaleReason::Rejected));
}

/// Trips the breaker's circuit for HOST with calls that are never stored.
async fn trip(breaker: &impl Doer, host: &Host) {
    host.set_down(true);
    for _ in 0..5 {
        let _ = breaker.execute(post("/trip")).await;
    }
}

#[tokio::test(start_paused = true)]
async fn two_users_never_see_each_others_answer() {
    let host = Host::default();
    let breaker = host
        .clone()
        .breaker()
        .serve_stale(ServeStale::new(Duration::from_secs(300)));
    let alice = || get_as("/me", "authorization", "Bearer alice");
    let bob = || get_as("/me", "authorization", "Bearer bob");
    let carol = || get_as("/me", "cookie", "sid=carol");
    let dave = || get_as("/me", "cookie", "sid=dave");
    for req in [alice(), carol()] {
        assert_eq!(status(&breaker, req).await, 200);
    }
    trip(&breaker, &host).await;
    assert_eq!(breaker.state(HOST), State::Open);

    let resp = breaker.execute(alice()).await.unwrap();
    assert_eq!(text(resp).await, "/me for Bearer alice");
    let resp = breaker.execute(carol()).await.unwrap();
    assert_eq!(text(resp).await, "/me for sid=carol");
    for other in [bob(), dave(), get("/me")] {
        let err = breaker.execute(other).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BreakerOpen);
    }
}

#[tokio::test(start_paused = true)]
async fn set_cookie_no_store_and_private_answers_are_never_served_stale() {
    let host = Host::default();
    let breaker = host
        .clone()
        .breaker()
        .serve_stale(ServeStale::new(Duration::from_secs(300)));
    let paths = ["/a?set-cookie", "/b?no-store", "/c?private", "/d"];
    for p in paths {
        assert_eq!(status(&breaker, get(p)).await, 200);
    }
    assert_eq!(breaker.stale_usage().0, 1);
    trip(&breaker, &host).await;
    for p in &paths[..3] {
        let err = breaker.execute(get(p)).await.unwrap_err();
        assert!(err.is_breaker_open(), "{p}");
    }
    assert!(breaker.execute(get("/d")).await.is_ok());

    // Told to ignore Cache-Control, it keeps no-store and private, but never Set-Cookie.
    let host = Host::default();
    let breaker = host
        .clone()
        .breaker()
        .serve_stale(ServeStale::new(Duration::from_secs(300)).ignore_cache_control(true));
    for p in paths {
        assert_eq!(status(&breaker, get(p)).await, 200);
    }
    trip(&breaker, &host).await;
    assert!(breaker.execute(get("/a?set-cookie")).await.is_err());
    for p in &paths[1..] {
        let resp = breaker.execute(get(p)).await.unwrap();
        assert_eq!(stale_reason(&resp), Some(StaleReason::Rejected), "{p}");
    }
}

/// A field serve-stale cannot read means "do not store": skipping it would hide a `no-store`,
/// or the header an answer varies on.
#[tokio::test(start_paused = true)]
async fn answers_with_unreadable_cache_control_or_vary_are_never_served_stale() {
    let answer = |name: &'static str, value: &[u8], body: &'static str| {
        let mut resp = response(200, body);
        resp.headers_mut()
            .insert(name, HeaderValue::from_bytes(value).unwrap());
        Ok(resp)
    };
    let backend = ScriptedDoer::new()
        .then(answer(
            "cache-control",
            b"no-store, x-ext=\"caf\xe9\"",
            "secret",
        ))
        .then(answer(
            "cache-control",
            b"max-age=60, x-ext=caf\xe9",
            "secret",
        ))
        .then(answer("vary", b"accept language", "English"))
        .then(answer("vary", b"accept-language", "English"))
        .then_status(503);
    let breaker = backend
        .clone()
        .breaker()
        .consecutive_failures(1)
        .serve_stale(ServeStale::new(Duration::from_secs(300)));
    let english = |path| get_as(path, "accept-language", "en");
    let french = |path| get_as(path, "accept-language", "fr");
    for path in ["/no-store", "/unreadable", "/bad-vary", "/vary"] {
        assert_eq!(status(&breaker, english(path)).await, 200);
    }
    assert_eq!(breaker.stale_usage().0, 1);
    assert_eq!(status(&breaker, post("/trip")).await, 503);
    assert_eq!(breaker.state(HOST), State::Open);

    for req in [
        english("/no-store"),
        english("/unreadable"),
        english("/bad-vary"),
        french("/bad-vary"),
        french("/vary"),
    ] {
        let uri = req.uri().clone();
        let err = breaker.execute(req).await.unwrap_err();
        assert!(err.is_breaker_open(), "{uri}");
    }
    // The readable Vary is honoured: the English answer still goes to English requests.
    let resp = breaker.execute(english("/vary")).await.unwrap();
    assert_eq!(stale_reason(&resp), Some(StaleReason::Rejected));
    assert_eq!(text(resp).await, "English");
    assert_eq!(backend.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn stale_answers_respect_max_age_method_and_opt_out() {
    let host = Host::default();
    let breaker = host
        .clone()
        .breaker()
        .open_duration(Duration::from_secs(60))
        .serve_stale(ServeStale::new(Duration::from_secs(30)));
    assert_eq!(status(&breaker, get("/old")).await, 200);
    sleep(Duration::from_secs(20)).await;
    assert_eq!(status(&breaker, get("/new")).await, 200);
    let head = http::Request::head(format!("{HOST}/new"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(status(&breaker, head).await, 200);
    trip(&breaker, &host).await;
    sleep(Duration::from_secs(11)).await;
    // Expired.
    assert!(refused(&breaker, get("/old")).await);
    // Young enough; the GET and the HEAD each get their own.
    let resp = breaker.execute(get("/new")).await.unwrap();
    assert_eq!(resp.headers()["age"], "11");
    assert_eq!(text(resp).await, "/new for anyone");
    let head = http::Request::head(format!("{HOST}/new"))
        .body(Body::empty())
        .unwrap();
    assert!(breaker.execute(head).await.is_ok());
    // Never for other methods, nor when the request opts out.
    assert!(refused(&breaker, post("/new")).await);
    let mut opted_out = get("/new");
    opted_out
        .extensions_mut()
        .insert(http_doer::breaker::NoStale);
    assert!(refused(&breaker, opted_out).await);
}

#[tokio::test]
async fn breaker_is_a_doer_behind_dyn_and_clones_share_circuits() {
    let (_, breaker) = down_host(1);
    let shared: Arc<dyn Doer> = breaker.clone().shared();
    assert_eq!(shared.execute(get("/")).await.unwrap().status(), 503);
    assert_eq!(breaker.state(HOST), State::Open);
    assert_eq!(breaker.get_ref().calls(), 1);
    let debug = format!("{breaker:?}");
    assert!(debug.contains("consecutive_failures: 1"), "{debug}");
}

#[tokio::test(start_paused = true)]
async fn builder_calls_keep_the_state_until_the_breaker_is_cloned() {
    let (host, breaker) = down_host(1);
    assert_eq!(status(&breaker, get("/")).await, 503);
    // Not shared yet: the settings change in place, and the tripped circuit stays.
    let breaker = breaker
        .open_duration(Duration::from_secs(60))
        .half_open_probes(2)
        .max_circuits(8)
        .classify(default_verdict)
        .on_state_change(|_| {})
        .serve_stale(ServeStale::new(Duration::from_secs(1)));
    assert_eq!(breaker.state(HOST), State::Open);

    // A clone shares the state; a builder call on a shared breaker gives it state of its own
    // and leaves the others' settings and circuits alone.
    let handle = breaker.clone();
    let other = breaker.clone().consecutive_failures(3);
    assert_eq!(handle.state(HOST), State::Open);
    assert_eq!(other.state(HOST), State::Closed);
    host.set_down(false);
    assert_eq!(status(&other, get("/")).await, 200);
    assert!(refused(&breaker, get("/")).await);
    assert!(format!("{other:?}").contains("consecutive_failures: 3"));
    assert!(format!("{handle:?}").contains("consecutive_failures: 1"));
}

#[tokio::test(start_paused = true)]
async fn a_new_window_or_key_drops_the_circuits_made_before() {
    for reshape in [
        (|b: Breaker<Host>| b.window(Duration::from_secs(5))) as fn(Breaker<Host>) -> _,
        |b: Breaker<Host>| b.key_by(|req| req.uri().path().to_owned()),
    ] {
        let (host, breaker) = down_host(1);
        assert_eq!(status(&breaker, get("/")).await, 503);
        // The thread's cached circuit must not outlive the change either.
        let breaker = reshape(breaker);
        assert!(breaker.snapshots().is_empty());
        host.set_down(false);
        assert_eq!(status(&breaker, get("/")).await, 200);
        assert_eq!(host.calls(), 2);
    }
}

#[tokio::test]
async fn accessors_and_old_names() {
    let mut breaker = Breaker::new(ScriptedDoer::new().then_status(204));
    let inner: &mut ScriptedDoer = breaker.get_mut();
    assert_eq!(inner.calls(), 0);
    assert_eq!(breaker.get_ref().calls(), 0);
    let backend = breaker.into_inner();
    #[allow(deprecated)]
    {
        use http_doer::breaker::{Outcome, ServedStale, default_outcome};
        let doer = backend.breaker().classify(|r| match default_outcome(r) {
            Outcome::Failure => Outcome::Failure,
            other => other,
        });
        let resp = doer.execute(get("/")).await.unwrap();
        assert_eq!(resp.status(), 204);
        assert!(resp.extensions().get::<ServedStale>().is_none());
    }
}

/// Counts what a breaker tells its fleet store.
#[derive(Debug, Default)]
struct CountingStore {
    told: Mutex<Vec<String>>,
}

impl http_doer::fleet::CircuitStore for CountingStore {
    fn attach(&self, _sink: std::sync::Weak<dyn http_doer::fleet::CircuitSink>) -> u64 {
        1
    }
    fn opened(&self, _from: u64, key: &str, _open_for: Duration) {
        self.told.lock().unwrap().push(format!("opened {key}"));
    }
    fn closed(&self, _from: u64, key: &str) {
        self.told.lock().unwrap().push(format!("closed {key}"));
    }
    fn failed(&self, _from: u64, key: &str, _trip: http_doer::fleet::Trip) {
        self.told.lock().unwrap().push(format!("failed {key}"));
    }
    fn recovered(&self, _from: u64, key: &str) {
        self.told.lock().unwrap().push(format!("recovered {key}"));
    }
    fn probe(&self, _key: &str) -> http_doer::fleet::ProbeLease {
        http_doer::fleet::ProbeLease::Local
    }
}

#[tokio::test(start_paused = true)]
async fn a_healthy_call_tells_the_fleet_nothing_even_while_another_host_is_down() {
    let store = Arc::new(CountingStore::default());
    let backend = http_doer::testing::doer_fn(|req: Request| async move {
        let down = req.uri().host() == Some("down.test");
        Ok(response(if down { 503 } else { 200 }, ""))
    });
    let breaker = Breaker::new(backend)
        .consecutive_failures(100)
        .failure_rate(0.0, 0)
        .fleet(store.clone());
    let get = |host: &str| {
        http::Request::get(format!("https://{host}/"))
            .body(Body::empty())
            .unwrap()
    };
    breaker.execute(get("down.test")).await.unwrap();
    breaker.execute(get("down.test")).await.unwrap();
    for _ in 0..10 {
        breaker.execute(get("up.test")).await.unwrap();
    }
    assert_eq!(
        *store.told.lock().unwrap(),
        ["failed https://down.test", "failed https://down.test"],
        "the healthy host's calls told the fleet nothing"
    );
    // A success after its failures starts the fleet's count again, once.
    let back = Breaker::new(
        ScriptedDoer::new()
            .then_status(503)
            .then_status(200)
            .then_status(200),
    )
    .fleet(store.clone());
    for _ in 0..3 {
        back.execute(get("flaky.test")).await.unwrap();
    }
    let told = store.told.lock().unwrap();
    assert_eq!(
        told[2..],
        ["failed https://flaky.test", "recovered https://flaky.test"]
    );
}

/// Keeps the sink a breaker attaches, so a test can speak for the fleet.
#[derive(Default)]
struct SinkStore {
    sink: Mutex<Option<std::sync::Weak<dyn http_doer::fleet::CircuitSink>>>,
}

impl std::fmt::Debug for SinkStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkStore")
    }
}

impl SinkStore {
    fn sink(&self) -> Arc<dyn http_doer::fleet::CircuitSink> {
        let sink = self.sink.lock().unwrap();
        sink.as_ref().and_then(|s| s.upgrade()).expect("attached")
    }
}

impl http_doer::fleet::CircuitStore for SinkStore {
    fn attach(&self, sink: std::sync::Weak<dyn http_doer::fleet::CircuitSink>) -> u64 {
        *self.sink.lock().unwrap() = Some(sink);
        1
    }
    fn opened(&self, _from: u64, _key: &str, _open_for: Duration) {}
    fn closed(&self, _from: u64, _key: &str) {}
    fn failed(&self, _from: u64, _key: &str, _trip: http_doer::fleet::Trip) {}
    fn recovered(&self, _from: u64, _key: &str) {}
    fn probe(&self, _key: &str) -> http_doer::fleet::ProbeLease {
        http_doer::fleet::ProbeLease::Local
    }
}

/// Anyone who can publish on the fleet's channel can name any host: news of open circuits
/// for hosts this replica never called makes circuits only within `max_circuits`, while the
/// replica's own calls, and news for its own hosts, are never refused a circuit.
#[tokio::test(start_paused = true)]
async fn news_from_the_fleet_makes_no_circuit_past_the_bound() {
    let store = Arc::new(SinkStore::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let backend = http_doer::testing::doer_fn(move |_req: Request| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok(response(200, "")) }
    });
    let breaker = Breaker::new(backend).max_circuits(8).fleet(store.clone());
    let get = |host: &str| {
        http::Request::get(format!("https://{host}/"))
            .body(Body::empty())
            .unwrap()
    };
    breaker.execute(get("mine.test")).await.unwrap();
    let sink = store.sink();
    let hour = Duration::from_secs(3600);
    for i in 0..1_000 {
        sink.opened(&format!("https://flood{i}.test"), hour);
    }
    assert_eq!(
        breaker.snapshots().len(),
        8,
        "the flood stopped at the bound"
    );
    assert_eq!(breaker.state("https://flood6.test"), State::Open);
    assert_eq!(
        breaker.state("https://flood7.test"),
        State::Closed,
        "not kept"
    );

    sink.opened("https://mine.test", Duration::from_secs(60));
    assert_eq!(
        breaker.state("https://mine.test"),
        State::Open,
        "its own host"
    );
    let refused = breaker.execute(get("flood0.test")).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::BreakerOpen);
    breaker.execute(get("new.test")).await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "its own new host got a circuit"
    );

    // Past their open period, the flood's circuits make room for new news.
    tokio::time::advance(hour + Duration::from_secs(1)).await;
    for i in 0..100 {
        sink.opened(&format!("https://later{i}.test"), hour);
    }
    assert_eq!(breaker.state("https://later0.test"), State::Open);
    assert!(
        breaker.snapshots().len() <= 8,
        "{}",
        breaker.snapshots().len()
    );
}
