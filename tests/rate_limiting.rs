//! RateLimiting: the local rate, the server's pacing, waits and refusals. Paused time
//! throughout, except the loopback test, which never waits.

#[allow(dead_code)]
mod support;

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http_doer::fleet::{PauseSink, PauseStore};
use http_doer::limit::{FleetStore, LimitStore, MemoryStore, Pacing, Rate, RateLimiting, RateWait};
use http_doer::testing::{doer_fn, response};
use http_doer::{Body, Doer, DoerExt, Error, ErrorKind, Request, ReqwestDoer, Response};
use tokio::time::Instant;

fn get(url: &str) -> Request {
    http::Request::get(url).body(Body::empty()).unwrap()
}

/// The URL of each request a double got, and when (from its making).
type Sent = Arc<Mutex<Vec<(String, Duration)>>>;

/// A Doer that answers 200 at once and records when each request reached it.
fn recording() -> (impl Doer + Clone, Sent) {
    let start = Instant::now();
    let seen: Sent = Arc::default();
    let log = seen.clone();
    let doer = doer_fn(move |req: Request| {
        log.lock()
            .unwrap()
            .push((req.uri().to_string(), start.elapsed()));
        async { Ok(response(200, "")) }
    });
    (Arc::new(doer), seen)
}

#[tokio::test(start_paused = true)]
async fn a_thousand_calls_at_100_a_second_take_ten_seconds() {
    let (backend, seen) = recording();
    let doer = backend.rate_limiting(Rate::per_second(100));
    let start = Instant::now();
    for _ in 0..1000 {
        doer.execute(get("https://api.test/x")).await.unwrap();
    }
    let took = start.elapsed().as_secs_f64();
    assert!((9.9..=10.1).contains(&took), "took {took} s");
    // The first goes at once, then one every 10 ms: 9.99 s.
    assert_eq!(start.elapsed(), Duration::from_millis(9990));
    assert_eq!(seen.lock().unwrap().len(), 1000);
}

#[tokio::test(start_paused = true)]
async fn four_concurrent_callers_share_one_keys_limit() {
    let (backend, seen) = recording();
    let doer = Arc::new(backend.rate_limiting(Rate::per_second(10).burst(2)));
    let start = Instant::now();
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let doer = doer.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    doer.execute(get("https://shared.test/")).await.unwrap();
                }
            })
        })
        .collect();
    // Another host is not held up by the shared one: with the callers well into their queue,
    // a call to it goes at once.
    tokio::time::sleep(Duration::from_millis(250)).await;
    doer.execute(get("https://other.test/")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    for caller in callers {
        caller.await.unwrap();
    }
    // 40 calls: 2 at once, then one every 100 ms.
    assert_eq!(start.elapsed(), Duration::from_millis(3800));
    let times: Vec<Duration> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(url, _)| url.contains("shared"))
        .map(|(_, t)| *t)
        .collect();
    assert_eq!(times.len(), 40);
    for (i, t) in times.iter().enumerate().skip(2) {
        // Never more than the burst plus one per 100 ms, whichever caller sent it.
        assert!(
            *t >= Duration::from_millis(100) * (i as u32 - 1),
            "call {i} at {t:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_pauses_every_caller_of_the_key_for_two_seconds() {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let sent: Sent = Arc::default();
    let log = sent.clone();
    // The second call is answered 429 with `Retry-After: 2`, 300 ms after it was sent.
    let backend = doer_fn(move |req: Request| {
        log.lock()
            .unwrap()
            .push((req.uri().to_string(), start.elapsed()));
        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            if n == 1 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let resp = http::Response::builder()
                    .status(429)
                    .header("retry-after", "2");
                return Ok(resp.body(Body::empty()).unwrap());
            }
            Ok(response(200, ""))
        }
    });
    // A local rate of 1 a second with a burst of 2: the first two go at once, and the four
    // callers below are already waiting for their places (at 1 s) when the 429 comes.
    let doer = Arc::new(RateLimiting::new(backend, Rate::per_second(1).burst(2)));
    doer.execute(get("https://api.test/first")).await.unwrap();
    let busy = {
        let doer = doer.clone();
        tokio::spawn(async move { doer.execute(get("https://api.test/busy")).await })
    };
    let callers: Vec<_> = (0..4)
        .map(|i| {
            let doer = doer.clone();
            tokio::spawn(async move {
                let resp = doer
                    .execute(get(&format!("https://api.test/{i}")))
                    .await
                    .unwrap();
                resp.extensions().get::<RateWait>().copied()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    doer.execute(get("https://elsewhere.test/")).await.unwrap();
    assert_eq!(
        busy.await.unwrap().unwrap().status(),
        429,
        "returned as it is"
    );
    let mut waits = Vec::new();
    for caller in callers {
        waits.push(caller.await.unwrap());
    }
    let sent = sent.lock().unwrap();
    let ms = Duration::from_millis;
    let at = |path: &str| sent.iter().find(|(u, _)| u.ends_with(path)).unwrap().1;
    assert_eq!(at("/first"), ms(0));
    assert_eq!(at("/busy"), ms(0));
    assert_eq!(at("elsewhere.test/"), ms(500), "another host is not paused");
    let mut paused: Vec<Duration> = sent
        .iter()
        .filter(|(u, _)| u.contains("api.test/") && !u.ends_with("first") && !u.ends_with("busy"))
        .map(|(_, t)| *t)
        .collect();
    paused.sort();
    // Nobody went during the 2 s after the 429 (at 300 ms); then the local rate again, its
    // burst of 2 refilled meanwhile.
    assert_eq!(paused, [ms(2300), ms(2300), ms(3300), ms(4300)]);
    assert!(
        waits
            .iter()
            .all(|w| w.is_some_and(|RateWait(w)| w >= ms(2300)))
    );
}

#[tokio::test(start_paused = true)]
async fn a_pause_past_the_max_wait_fails_at_once_with_when_to_come_back() {
    let busy = http::Response::builder()
        .status(429)
        .header("retry-after", "120");
    let backend =
        http_doer::testing::ScriptedDoer::new().then(Ok(busy.body(Body::empty()).unwrap()));
    let doer = backend.clone().rate_limiting(Rate::per_second(100));
    doer.execute(get("https://api.test/")).await.unwrap();
    let start = Instant::now();
    let err = doer
        .execute(get("https://u:p@api.test/?token=s3cr3t"))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::ZERO, "no sleep into a refusal");
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)));
    let text = format!("{err} {err:?}");
    assert!(!text.contains("s3cr3t") && !text.contains("u:p"), "{text}");
    assert!(text.contains("the next in 120s"), "{text}");
    assert_eq!(backend.calls(), 1, "the refused request was not sent");
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_call_takes_no_place() {
    let (backend, seen) = recording();
    let doer = backend.rate_limiting(Rate::per_second(1));
    doer.execute(get("https://api.test/0")).await.unwrap();
    for _ in 0..5 {
        // Each waits for the place at 1 s, and is dropped 20 ms after it began.
        let waiting = doer.execute(get("https://api.test/dropped"));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), waiting)
                .await
                .is_err()
        );
    }
    tokio::time::sleep_until(Instant::now() + Duration::from_millis(900)).await;
    doer.execute(get("https://api.test/1")).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "no dropped call was sent");
    assert_eq!(
        seen[1].1,
        Duration::from_secs(1),
        "nobody took the place at 1 s"
    );
}

#[tokio::test(start_paused = true)]
async fn an_outer_deadline_bounds_the_wait() {
    let (backend, _) = recording();
    let doer = backend
        .rate_limiting(Rate::per_minute(1))
        .max_wait(None)
        .timeout(Duration::from_secs(2));
    doer.execute(get("https://api.test/")).await.unwrap();
    let start = Instant::now();
    let err = doer.execute(get("https://api.test/")).await.unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn errors_of_the_inner_doer_pass_through_and_keys_can_be_named() {
    let backend = doer_fn(|req: Request| async move {
        if req.uri().path() == "/fail" {
            return Err(Error::from(ErrorKind::Connect));
        }
        Ok(response(200, ""))
    });
    let doer = backend
        .rate_limiting(Rate::per_second(1))
        .key_by(|req| {
            req.headers()
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        })
        .max_wait(Duration::ZERO);
    let err = doer
        .execute(get("https://api.test/fail"))
        .await
        .unwrap_err();
    assert!(err.is_connect());
    let tenant = |t: &str| {
        let mut req = get("https://api.test/");
        req.headers_mut().insert("x-tenant", t.parse().unwrap());
        req
    };
    assert!(doer.execute(tenant("a")).await.is_ok());
    assert!(doer.execute(tenant("b")).await.is_ok());
    assert!(
        doer.execute(tenant("a"))
            .await
            .unwrap_err()
            .is_rate_limited()
    );
    assert!(format!("{doer:?}").contains("custom_key: true"));
}

// ---- the server's quota ------------------------------------------------------------------------

/// The quota fields a simulated server sends.
#[derive(Clone, Copy, Debug)]
enum Fields {
    Ietf,
    XRateLimit,
}

/// What a simulated server saw: calls served and refused per window.
#[derive(Debug, Default)]
struct Tally {
    served: Vec<u32>,
    refused: u32,
}

/// A server with a quota of `limit` calls per fixed `window`, on tokio's clock, answering after
/// `latency`, with its quota in `fields`, and 429 past the quota.
fn quota_server(
    limit: u32,
    window: Duration,
    latency: Duration,
    fields: Fields,
) -> (impl Doer, Arc<Mutex<Tally>>) {
    let start = Instant::now();
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let t = tally.clone();
    let doer = doer_fn(move |_req: Request| {
        let t = t.clone();
        async move {
            tokio::time::sleep(latency).await;
            let elapsed = start.elapsed();
            let n = (elapsed.as_nanos() / window.as_nanos()) as usize;
            let reset =
                window - Duration::from_nanos((elapsed.as_nanos() % window.as_nanos()) as u64);
            let reset = reset.as_secs_f64().ceil() as u64;
            let mut tally = t.lock().unwrap();
            if tally.served.len() <= n {
                tally.served.resize(n + 1, 0);
            }
            let used = tally.served[n];
            let mut resp = http::Response::builder();
            if used >= limit {
                tally.refused += 1;
                resp = resp.status(429).header("retry-after", reset.to_string());
            } else {
                tally.served[n] += 1;
            }
            let remaining = limit - tally.served[n];
            let w = window.as_secs();
            resp = match fields {
                Fields::Ietf => resp
                    .header("ratelimit-policy", format!("\"default\";q={limit};w={w}"))
                    .header("ratelimit", format!("\"default\";r={remaining};t={reset}")),
                Fields::XRateLimit => resp
                    .header("x-ratelimit-limit", limit.to_string())
                    .header("x-ratelimit-remaining", remaining.to_string())
                    .header("x-ratelimit-reset", reset.to_string()),
            };
            Ok::<Response, Error>(resp.body(Body::empty()).unwrap())
        }
    });
    (doer, tally)
}

/// Four callers calling flat out for three windows of a 50-per-10-s quota, through a limiter
/// with no local rate and a 20 % margin: the server's tally.
async fn flat_out(fields: Fields) -> Tally {
    let window = Duration::from_secs(10);
    let (server, tally) = quota_server(50, window, Duration::from_millis(20), fields);
    let doer = Arc::new(
        server
            .rate_limiting(Rate::unlimited())
            .pacing(Pacing::new().safety_margin(0.2)),
    );
    let end = Instant::now() + window * 3;
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let doer = doer.clone();
            tokio::spawn(async move {
                for _ in 0..1_000 {
                    if Instant::now() >= end {
                        break;
                    }
                    let resp = doer.execute(get("https://quota.test/")).await.unwrap();
                    assert_ne!(resp.status(), 429);
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.unwrap();
    }
    std::mem::take(&mut *tally.lock().unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_quota_of_50_a_window_with_a_20_percent_margin_gives_no_429_over_three_windows() {
    for fields in [Fields::Ietf, Fields::XRateLimit] {
        let tally = flat_out(fields).await;
        println!(
            "{fields:?}: served per window {:?}, 429s {}",
            tally.served, tally.refused
        );
        assert_eq!(tally.refused, 0, "{fields:?}: {tally:?}");
        assert!(tally.served.len() >= 3, "{tally:?}");
        for served in &tally.served[..3] {
            // The margin keeps 10 in reserve; the pacing still uses most of the rest.
            assert!((35..=40).contains(served), "{fields:?}: {tally:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn without_pacing_one_caller_flat_out_runs_into_429s() {
    let window = Duration::from_secs(10);
    let (server, tally) = quota_server(50, window, Duration::from_millis(20), Fields::Ietf);
    let doer = server.rate_limiting(Rate::unlimited()).pacing(None);
    let mut refused = 0;
    for _ in 0..100 {
        if doer
            .execute(get("https://quota.test/"))
            .await
            .unwrap()
            .status()
            == 429
        {
            refused += 1;
        }
    }
    assert_eq!(refused, 50);
    assert_eq!(tally.lock().unwrap().refused, 50);
}

// ---- a real server ------------------------------------------------------------------------------

/// A loopback server: `/quota` publishes a quota of 10 a minute with 2 left (no more than the
/// 20 % reserve), `/busy` answers 429 with `Retry-After: 3`, anything else 200.
async fn loopback() -> support::Loopback {
    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    async fn route(
        req: hyper::Request<Incoming>,
    ) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
        let mut resp = hyper::Response::builder();
        resp = match req.uri().path() {
            "/quota" => resp
                .header("ratelimit-policy", "\"default\";q=10;w=60")
                .header("ratelimit", "\"default\";r=2;t=5"),
            "/busy" => resp.status(429).header("retry-after", "3"),
            _ => resp,
        };
        Ok(resp.body(Full::new(Bytes::from_static(b"ok"))).unwrap())
    }

    support::Loopback::serve(|stream| async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service_fn(route))
            .await;
    })
    .await
}

/// Over both backends alike: ureq must hand a 429 over as an answer, and the quota fields as
/// the server wrote them.
#[tokio::test]
async fn the_quota_fields_of_a_real_answer_are_read_end_to_end() {
    let server = loopback().await;
    let backends = || -> [(&str, Box<dyn Doer>); 2] {
        [
            ("reqwest", ReqwestDoer::new().boxed()),
            ("ureq", http_doer::UreqDoer::new().boxed()),
        ]
    };
    for (name, backend) in backends() {
        let doer = backend
            .rate_limiting(Rate::per_second(1000))
            .max_wait(Duration::ZERO);
        let resp = doer.execute(get(&server.url("/quota"))).await.unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        assert_eq!(resp.into_body().text().await.unwrap(), "ok", "{name}");
        // 2 left is the reserve: the key waits for the reset, 5 s, and refuses at once.
        let err = doer.execute(get(&server.url("/x"))).await.unwrap_err();
        assert!(err.is_rate_limited(), "{name}: {err:#}");
        let wait = err.retry_after().unwrap();
        assert!(
            wait > Duration::from_secs(4) && wait <= Duration::from_secs(5),
            "{name}: {wait:?}"
        );
    }
    for (name, backend) in backends() {
        let doer = backend
            .rate_limiting(Rate::per_second(1000))
            .max_wait(Duration::ZERO);
        let busy = doer.execute(get(&server.url("/busy"))).await.unwrap();
        assert_eq!(busy.status(), 429, "{name}");
        let err = doer.execute(get(&server.url("/x"))).await.unwrap_err();
        let wait = err.retry_after().unwrap();
        assert!(
            wait > Duration::from_secs(2) && wait <= Duration::from_secs(3),
            "{name}: {wait:?}"
        );
    }
}

/// A store that records which of `refused` and `pause` the limiter called.
#[derive(Debug)]
struct Recording {
    local: http_doer::limit::MemoryStore,
    calls: Mutex<Vec<(&'static str, Duration)>>,
}

impl http_doer::limit::LimitStore for Recording {
    fn acquire(&self, key: &str) -> Result<(), Duration> {
        self.local.acquire(key)
    }
    fn pause(&self, key: &str, wait: Duration) {
        self.calls.lock().unwrap().push(("pause", wait));
        self.local.pause(key, wait);
    }
    fn refused(&self, key: &str, wait: Duration) {
        self.calls.lock().unwrap().push(("refused", wait));
        self.local.pause(key, wait);
    }
    fn pace(&self, key: &str, pace: Option<http_doer::limit::Pace>) {
        self.local.pace(key, pace);
    }
}

#[tokio::test(start_paused = true)]
async fn a_429_is_a_refusal_and_a_spent_quota_a_pause() {
    let store = Arc::new(Recording {
        local: http_doer::limit::MemoryStore::new(Rate::unlimited()),
        calls: Mutex::new(Vec::new()),
    });
    let backend = http_doer::testing::ScriptedDoer::new()
        .then(Ok(http::Response::builder()
            .status(429)
            .header("retry-after", "7")
            .body(Body::empty())
            .unwrap()))
        .then(Ok(http::Response::builder()
            .status(200)
            .header("ratelimit-policy", "\"default\";q=50;w=60")
            .header("ratelimit", "\"default\";r=0;t=4")
            .body(Body::empty())
            .unwrap()));
    let limited = RateLimiting::new(backend, Rate::unlimited()).store(store.clone());
    let get = || {
        http::Request::get("https://api.test/")
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(limited.execute(get()).await.unwrap().status(), 429);
    tokio::time::advance(Duration::from_secs(7)).await;
    assert_eq!(limited.execute(get()).await.unwrap().status(), 200);
    assert_eq!(
        store.calls.lock().unwrap().as_slice(),
        [
            ("refused", Duration::from_secs(7)),
            ("pause", Duration::from_secs(4))
        ]
    );
}

/// A 429 with `Retry-After: 1` for every tenant's first call: after the pauses have all
/// ended, the keys are idle ("no pause or pacing from the server") and must be dropped
/// past the bound.
#[tokio::test(start_paused = true)]
async fn keys_whose_server_pause_has_ended_are_dropped_past_the_bound() {
    let backend = doer_fn(|_req: Request| async {
        let resp = http::Response::builder()
            .status(429)
            .header("retry-after", "1");
        Ok(resp.body(Body::empty()).unwrap())
    });
    let store = Arc::new(MemoryStore::new(Rate::unlimited()).max_keys(16));
    let doer = RateLimiting::new(backend, Rate::unlimited())
        .store(store.clone())
        .key_by(|req| req.uri().path().to_owned());
    for i in 0..1000 {
        let resp = doer
            .execute(get(&format!("https://api.test/tenant-{i}")))
            .await
            .unwrap();
        assert_eq!(resp.status(), 429);
    }
    // Every pause (1 s) has long ended.
    tokio::time::sleep(Duration::from_secs(60)).await;
    store.acquire("one more").unwrap();
    assert!(
        store.len() <= 17,
        "{} keys kept, the bound is 16",
        store.len()
    );
}

/// The same through the store alone, for a server's pacing (a nearly spent quota) too.
#[tokio::test(start_paused = true)]
async fn keys_whose_pace_has_ended_are_dropped_past_the_bound() {
    let store = MemoryStore::new(Rate::unlimited()).max_keys(16);
    for i in 0..1000 {
        let key = format!("k{i}");
        store.acquire(&key).unwrap();
        store.pace(
            &key,
            Some(http_doer::limit::Pace {
                interval: Duration::from_millis(1),
                until: Duration::from_millis(1),
            }),
        );
        tokio::time::advance(Duration::from_millis(2)).await;
    }
    store.acquire("one more").unwrap();
    assert!(
        store.len() <= 17,
        "{} keys kept, the bound is 16",
        store.len()
    );
}

/// A fleet in one process, delivering to every sink.
#[derive(Debug, Default)]
struct Room {
    sinks: Mutex<Vec<Weak<dyn PauseSink>>>,
}

impl PauseStore for Room {
    fn attach_pauses(&self, sink: Weak<dyn PauseSink>) -> u64 {
        self.sinks.lock().unwrap().push(sink);
        7
    }
    fn paused(&self, _from: u64, _key: &str, _wait: Duration) {}
}

impl Room {
    fn publish(&self, key: &str, wait: Duration) {
        for sink in self.sinks.lock().unwrap().iter() {
            if let Some(sink) = sink.upgrade() {
                sink.paused(key, wait);
            }
        }
    }
}

/// Pauses heard from the fleet end; a full store must still take a later pause of a new
/// key once the earlier ones are over (they are idle keys, which make room).
#[tokio::test(start_paused = true)]
async fn a_fleet_store_keeps_hearing_pauses_after_old_ones_end() {
    let room = Arc::new(Room::default());
    let store = FleetStore::new(
        MemoryStore::new(Rate::unlimited()).max_keys(16),
        room.clone(),
    );
    for i in 0..16 {
        room.publish(&format!("old-{i}"), Duration::from_secs(1));
    }
    tokio::time::sleep(Duration::from_secs(3600)).await;
    room.publish("https://new.test", Duration::from_secs(30));
    assert!(
        store.acquire("https://new.test").is_err(),
        "the fleet's pause of a new key was dropped: {} stale keys fill the store",
        store.local().len()
    );
}

/// A quota whose reset is far away (hostile or mistaken: 999 999 999 s, read as seconds from
/// now) paces the key for at most `max_pause` (1 h): a call that waits must not sleep past the
/// pace's end.
#[tokio::test(start_paused = true)]
async fn a_far_reset_never_holds_a_call_past_max_pause() {
    let backend = doer_fn(|_req: Request| async {
        let resp = http::Response::builder()
            .status(200)
            .header("x-ratelimit-remaining", "10")
            .header("x-ratelimit-reset", "999999999");
        Ok(resp.body(Body::empty()).unwrap())
    });
    let doer = RateLimiting::new(backend, Rate::unlimited()).max_wait(None);
    doer.execute(get("https://api.test/")).await.unwrap();
    doer.execute(get("https://api.test/")).await.unwrap();
    let start = Instant::now();
    let third = tokio::time::timeout(
        Duration::from_secs(86_400),
        doer.execute(get("https://api.test/")),
    )
    .await;
    assert!(
        third.is_ok(),
        "still waiting after a day (max_pause is 1 h); elapsed {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() <= Duration::from_secs(3600),
        "{:?}",
        start.elapsed()
    );
}

/// With the default max wait, the same call is refused at once; its `retry_after` must say
/// when a place is expected: when the pace ends, at most 1 h away.
#[tokio::test(start_paused = true)]
async fn a_far_reset_refusal_says_when_the_pace_ends() {
    let backend = doer_fn(|_req: Request| async {
        let resp = http::Response::builder()
            .status(200)
            .header("x-ratelimit-remaining", "10")
            .header("x-ratelimit-reset", "999999999");
        Ok(resp.body(Body::empty()).unwrap())
    });
    let doer = RateLimiting::new(backend, Rate::unlimited());
    doer.execute(get("https://api.test/")).await.unwrap();
    doer.execute(get("https://api.test/")).await.unwrap();
    let err = doer.execute(get("https://api.test/")).await.unwrap_err();
    assert!(err.is_rate_limited());
    let after = err.retry_after().unwrap();
    assert!(after <= Duration::from_secs(3600), "retry_after {after:?}");
}

/// `Rate::per_second(5000)`: "5000 calls every second, spread evenly". One caller calling flat
/// out for 1000 calls should take about 0.2 s.
#[tokio::test(start_paused = true)]
async fn a_rate_above_a_thousand_a_second_is_kept() {
    let backend = doer_fn(|_req: Request| async { Ok(response(200, "")) });
    let doer = RateLimiting::new(backend, Rate::per_second(5000));
    let start = Instant::now();
    for _ in 0..1000 {
        doer.execute(get("https://api.test/")).await.unwrap();
    }
    let took = start.elapsed();
    assert!(
        (Duration::from_millis(190)..=Duration::from_millis(250)).contains(&took),
        "1000 calls at 5000/s took {took:?}"
    );
}

/// The same with eight callers at once: still 5000 a second between them.
#[tokio::test(start_paused = true)]
async fn a_rate_above_a_thousand_a_second_is_kept_by_many_callers() {
    let backend = doer_fn(|_req: Request| async { Ok(response(200, "")) });
    let doer = Arc::new(RateLimiting::new(backend, Rate::per_second(5000)));
    let start = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let doer = doer.clone();
            tokio::spawn(async move {
                for _ in 0..125 {
                    doer.execute(get("https://api.test/")).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let took = start.elapsed();
    assert!(
        (Duration::from_millis(190)..=Duration::from_millis(250)).contains(&took),
        "1000 calls at 5000/s took {took:?}"
    );
}
