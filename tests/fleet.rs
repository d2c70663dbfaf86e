//! Breaker circuits and retry budgets shared by replicas through a real Redis (feature
//! `redis`). Each "replica" is a `RedisFleet` and a `Breaker` of its own, as in separate
//! processes; they meet only through Redis. Real time, because Redis's pub/sub is real: every
//! wait is a bounded poll, and the one latency bound asserted (50 ms for an open circuit to
//! reach every replica) is the issue's own, taken as the best of three tries.
#![cfg(feature = "redis")]

#[path = "support/redis.rs"]
mod redis_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_doer::breaker::{ServeStale, StaleAnswer, State};
use http_doer::fleet::{BudgetStore, FleetKey, RedisFleet, share_budget};
use http_doer::retrying::RetryBudget;
use http_doer::testing::{FnDoer, doer_fn, response};
use http_doer::{Body, Breaker, Doer, Error, ErrorKind, Response};
use redis_support::{Mode, Proxy, RedisServer, prefix, shared_url};

const HOST: &str = "https://api.test";

/// A host shared by every replica: up or down, and how many calls reached it.
#[derive(Clone, Default)]
struct Host {
    down: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

type HostDoer = FnDoer<
    Box<dyn Fn(http_doer::Request) -> std::future::Ready<Result<Response, Error>> + Send + Sync>,
>;

impl Host {
    fn doer(&self) -> HostDoer {
        let host = self.clone();
        doer_fn(Box::new(move |_req| {
            host.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(match host.down.load(Ordering::SeqCst) {
                true => Ok(response(503, "down")),
                false => Ok(response(200, "ok")),
            })
        }))
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn replica(
    url: &str,
    prefix: &str,
    host: &Host,
    threshold: u32,
    open: Duration,
) -> (RedisFleet, Breaker<HostDoer>) {
    let fleet = RedisFleet::builder(url).prefix(prefix).connect().unwrap();
    let breaker = Breaker::new(host.doer())
        .consecutive_failures(threshold)
        .failure_rate(0.0, 0)
        .open_duration(open)
        .fleet(Arc::new(fleet.clone()));
    (fleet, breaker)
}

async fn call(b: &Breaker<HostDoer>) -> Result<Response, Error> {
    let req = http::Request::get(format!("{HOST}/x"))
        .body(Body::empty())
        .unwrap();
    b.execute(req).await
}

/// Polls `f` every millisecond until it holds, for at most `limit`; the time it took.
async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// Waits (bounded) until `fleets`, all of prefix `p`, reach Redis and listen on its channel.
async fn all_up(url: &str, p: &str, fleets: &[&RedisFleet]) {
    let up = until(Duration::from_secs(10), || fleets.iter().all(|f| f.is_up())).await;
    assert!(up.is_some(), "the fleets did not reach Redis");
    subscribed(url, p, fleets.len()).await;
}

/// Waits (bounded) until at least `n` listeners are subscribed to the channel of prefix `p`,
/// as Redis counts them.
async fn subscribed(url: &str, p: &str, n: usize) {
    let mut conn = redis_conn(url).await;
    let channel = format!("{p}:circuits");
    let start = Instant::now();
    loop {
        let (_, count): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut conn)
            .await
            .unwrap();
        if count >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{count} of {n} listeners subscribed"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_reaches_every_replica_within_50_ms() {
    let (url, _redis) = shared_url();
    let mut took = Vec::new();
    for attempt in 0..3 {
        let p = prefix(&format!("open{attempt}"));
        let host = Host::default();
        let (fa, a) = replica(&url, &p, &host, 2, Duration::from_secs(30));
        let (fb, b) = replica(&url, &p, &host, 2, Duration::from_secs(30));
        let (fc, c) = replica(&url, &p, &host, 2, Duration::from_secs(30));
        all_up(&url, &p, &[&fa, &fb, &fc]).await;
        host.down.store(true, Ordering::SeqCst);
        call(&a).await.unwrap();
        call(&a).await.unwrap();
        assert_eq!(a.state(HOST), State::Open, "replica A trips on its own");
        let t = until(Duration::from_secs(5), || {
            b.state(HOST) == State::Open && c.state(HOST) == State::Open
        })
        .await
        .expect("the other replicas opened");
        took.push(t);
        let refused = call(&b).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::BreakerOpen);
        assert_eq!(host.calls(), 2, "B and C never called the down host");
    }
    eprintln!("open propagated to every replica in {took:?}");
    assert!(
        took.iter().min().unwrap() <= &Duration::from_millis(50),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_during_an_outage_opens_at_once() {
    let (url, _redis) = shared_url();
    let p = prefix("late");
    let host = Host::default();
    let (fa, a) = replica(&url, &p, &host, 1, Duration::from_secs(30));
    all_up(&url, &p, &[&fa]).await;
    host.down.store(true, Ordering::SeqCst);
    call(&a).await.unwrap();
    assert_eq!(a.state(HOST), State::Open);
    // A's open is stored before the late replica starts.
    let mut conn = redis_conn(&url).await;
    let start = Instant::now();
    while keys(&mut conn, &format!("{p}:state:*")).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "A's open stored");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (_fl, late) = replica(&url, &p, &host, 1, Duration::from_secs(30));
    until(Duration::from_secs(5), || late.state(HOST) == State::Open)
        .await
        .expect("the late replica read the stored state");
    assert_eq!(
        call(&late).await.unwrap_err().kind(),
        ErrorKind::BreakerOpen
    );
    assert_eq!(host.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_in_a_row_are_counted_fleet_wide() {
    let (url, _redis) = shared_url();
    let p = prefix("count");
    let host = Host::default();
    let replicas: Vec<_> = (0..4)
        .map(|_| replica(&url, &p, &host, 4, Duration::from_secs(30)))
        .collect();
    all_up(&url, &p, &replicas.iter().map(|r| &r.0).collect::<Vec<_>>()).await;
    host.down.store(true, Ordering::SeqCst);
    for (_, b) in &replicas {
        call(b).await.unwrap(); // one failure each: none trips alone
    }
    until(Duration::from_secs(5), || {
        replicas.iter().all(|(_, b)| b.state(HOST) == State::Open)
    })
    .await
    .expect("four failures across the fleet opened every replica");
    assert_eq!(host.calls(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_and_closing_are_fleet_wide() {
    let (url, _redis) = shared_url();
    let p = prefix("probe");
    let host = Host::default();
    let open = Duration::from_millis(400);
    let replicas: Vec<_> = (0..3).map(|_| replica(&url, &p, &host, 1, open)).collect();
    all_up(&url, &p, &replicas.iter().map(|r| &r.0).collect::<Vec<_>>()).await;
    host.down.store(true, Ordering::SeqCst);
    call(&replicas[0].1).await.unwrap();
    until(Duration::from_secs(5), || {
        replicas.iter().all(|(_, b)| b.state(HOST) == State::Open)
    })
    .await
    .expect("open everywhere");
    let before = host.calls();
    // Every replica keeps calling through the open period and past it (the host still down):
    // only the lease holder's probe may reach it in each interval.
    let start = Instant::now();
    while start.elapsed() < open + Duration::from_millis(200) {
        for (_, b) in &replicas {
            let _ = call(b).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let probes = host.calls() - before;
    assert!(
        probes <= 1,
        "{probes} probes reached the host in one interval"
    );
    // The host is back: the next probe (one replica) closes the circuit everywhere.
    host.down.store(false, Ordering::SeqCst);
    let start = Instant::now();
    let mut closed = None;
    while start.elapsed() < Duration::from_secs(10) {
        for (_, b) in &replicas {
            let _ = call(b).await;
        }
        if replicas.iter().all(|(_, b)| b.state(HOST) == State::Closed) {
            closed = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        closed.is_some(),
        "every replica closed after one replica's probe"
    );
}

/// Calls `b` `n` times against a host that answers at once: the slowest call.
async fn slowest_call(b: &Breaker<HostDoer>, n: usize) -> Duration {
    let mut worst = Duration::ZERO;
    for _ in 0..n {
        let t = Instant::now();
        let _ = call(b).await;
        worst = worst.max(t.elapsed());
    }
    worst
}

/// A replica whose Redis misbehaves: its calls keep the local breaker's behaviour and speed.
async fn acts_alone(b: &Breaker<HostDoer>, host: &Host) {
    host.down.store(false, Ordering::SeqCst);
    let worst = slowest_call(b, 50).await;
    // A call that waited on Redis would take its timeout (250 ms); the bound leaves a loaded
    // machine room without letting such a wait pass.
    assert!(
        worst < Duration::from_millis(150),
        "a healthy call took {worst:?}"
    );
    host.down.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        call(b).await.unwrap();
    }
    assert_eq!(
        b.state(HOST),
        State::Open,
        "the local breaker trips by itself"
    );
    let t = Instant::now();
    assert_eq!(call(b).await.unwrap_err().kind(), ErrorKind::BreakerOpen);
    // Refused at once: not after a wait on Redis (250 ms), with room for a loaded machine.
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    host.down.store(false, Ordering::SeqCst);
}

/// Sharing works again: A trips, B opens.
async fn shares_again(url: &str, p: &str) {
    let host = Host::default();
    let (fa, a) = replica(url, p, &host, 1, Duration::from_secs(30));
    let (fb, b) = replica(url, p, &host, 1, Duration::from_secs(30));
    all_up(url, p, &[&fa, &fb]).await;
    host.down.store(true, Ordering::SeqCst);
    call(&a).await.unwrap();
    until(Duration::from_secs(5), || b.state(HOST) == State::Open)
        .await
        .expect("sharing resumed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_then_started() {
    let port = redis_support::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let p = prefix("down");
    let host = Host::default();
    let (fleet, b) = replica(&url, &p, &host, 2, Duration::from_secs(30));
    acts_alone(&b, &host).await;
    assert!(!fleet.is_up());
    let _server = RedisServer::on(port);
    until(Duration::from_secs(10), || fleet.is_up())
        .await
        .expect("the fleet found Redis once it started");
    shares_again(&url, &prefix("down2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted() {
    let mut server = RedisServer::start();
    let url = server.url();
    let p = prefix("restart");
    let host = Host::default();
    let (fa, a) = replica(&url, &p, &host, 2, Duration::from_secs(30));
    let (fb, b) = replica(&url, &p, &host, 2, Duration::from_secs(30));
    all_up(&url, &p, &[&fa, &fb]).await;
    server.stop();
    acts_alone(&a, &host).await;
    until(Duration::from_secs(10), || !fa.is_up() && !fb.is_up())
        .await
        .expect("both replicas noticed Redis had stopped");
    server.restart();
    until(Duration::from_secs(10), || fa.is_up() && fb.is_up())
        .await
        .expect("both replicas reconnected");
    // The same two replicas share again, with nothing done to them.
    let host2 = Host::default();
    drop(b);
    let b = Breaker::new(host2.doer()).fleet(Arc::new(fb.clone()));
    subscribed(&url, &p, 2).await;
    let (_, a2) = (
        fa.clone(),
        Breaker::new(host2.doer())
            .consecutive_failures(1)
            .fleet(Arc::new(fa.clone())),
    );
    host2.down.store(true, Ordering::SeqCst);
    call(&a2).await.unwrap();
    until(Duration::from_secs(5), || b.state(HOST) == State::Open)
        .await
        .expect("sharing resumed after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_slow_then_partitioned_then_healed() {
    let server = RedisServer::start();
    let proxy = Proxy::to(server.port()).await;
    let url = proxy.url();
    let host = Host::default();
    let p = prefix("slow");
    let (fa, a) = replica(&url, &p, &host, 2, Duration::from_secs(30));
    all_up(&url, &p, &[&fa]).await;

    proxy.set(Mode::Slow);
    acts_alone(&a, &host).await;
    // Replies 500 ms late are past the 250 ms timeout: the fleet counts Redis as out of reach.
    until(Duration::from_secs(10), || !fa.is_up())
        .await
        .expect("the fleet found Redis too slow");
    // A fresh breaker on the same (slow) fleet: still local behaviour, still fast.
    let b = Breaker::new(host.doer())
        .consecutive_failures(2)
        .fleet(Arc::new(fa.clone()));
    acts_alone(&b, &host).await;

    proxy.set(Mode::Blackhole);
    let c = Breaker::new(host.doer())
        .consecutive_failures(2)
        .fleet(Arc::new(fa.clone()));
    acts_alone(&c, &host).await;
    until(Duration::from_secs(10), || !fa.is_up())
        .await
        .expect("the fleet noticed the partition");

    proxy.set(Mode::Pass);
    until(Duration::from_secs(15), || fa.is_up())
        .await
        .expect("the fleet found Redis again");
    shares_again(&url, &prefix("slow2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_is_the_fleets() {
    let (url, _redis) = shared_url();
    let p = prefix("budget");
    let fa = RedisFleet::builder(&url).prefix(&p).connect().unwrap();
    let fb = RedisFleet::builder(&url).prefix(&p).connect().unwrap();
    let (a, b) = (RetryBudget::new(0.2, 0), RetryBudget::new(0.2, 0));
    share_budget(&a, Arc::new(fa.clone()) as Arc<dyn BudgetStore>, "api");
    share_budget(&b, Arc::new(fb.clone()) as Arc<dyn BudgetStore>, "api");
    // A's 200 first attempts allow the fleet 40 retries, and A takes 20 of them at once.
    for _ in 0..200 {
        a.deposit();
    }
    let granted = (0..20).filter(|_| a.try_withdraw()).count();
    assert_eq!(granted, 20);
    // Only both counts crossing gives B exactly 20: without A's retries it would see 40, and
    // with nothing shared (or A's counts aged out of the window) 0.
    until(Duration::from_secs(5), || b.remaining() == 20)
        .await
        .expect("B sees A's first attempts and A's retries");
    let granted = (0..30).filter(|_| b.try_withdraw()).count();
    assert_eq!(
        granted, 20,
        "the fleet's retries stay within 20 % of its first attempts"
    );
}

// ---------------------------------------------------------------------------------------------
// Shared stale answers (point 3).

/// The fleet's key in these tests.
const KEY: [u8; 32] = [0x5a; 32];
/// Planted in the body, the URL and the `Authorization` header: none may reach Redis in clear.
const PLAIN_BODY: &str = "BODY-PLAINTEXT-4c1d: alice's balance is 1234";
const URL_TOKEN: &str = "TOKEN-IN-URL-9f3a";
const AUTH_VALUE: &str = "Bearer AUTH-VALUE-77e1";

impl Host {
    /// Answers `PLAIN_BODY` and the path, or 503 while down.
    fn page_doer(&self) -> HostDoer {
        let host = self.clone();
        doer_fn(Box::new(move |req: http_doer::Request| {
            host.calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(match host.down.load(Ordering::SeqCst) {
                true => Ok(response(503, "down")),
                false => Ok(response(
                    200,
                    format!("{PLAIN_BODY} at {}", req.uri().path()),
                )),
            })
        }))
    }
}

/// A replica that shares circuits and stale answers, sealed with [`KEY`].
fn stale_replica(url: &str, prefix: &str, host: &Host) -> (RedisFleet, Breaker<HostDoer>) {
    let fleet = RedisFleet::builder(url)
        .prefix(prefix)
        .key(FleetKey::from_bytes(KEY))
        .connect()
        .unwrap();
    let stale = ServeStale::new(Duration::from_secs(300)).share(Arc::new(fleet.clone()));
    let breaker = Breaker::new(host.page_doer())
        .consecutive_failures(1)
        .failure_rate(0.0, 0)
        .open_duration(Duration::from_secs(30))
        .serve_stale(stale)
        .fleet(Arc::new(fleet.clone()));
    (fleet, breaker)
}

fn page(path: &str, auth: &str) -> http_doer::Request {
    http::Request::get(format!("{HOST}{path}?access_token={URL_TOKEN}"))
        .header("authorization", auth)
        .body(Body::empty())
        .unwrap()
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn keys(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .unwrap()
}

/// Waits (bounded) until `n` answers are kept in Redis under `prefix`.
async fn stored(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, n: usize) {
    let start = Instant::now();
    while keys(conn, &format!("{prefix}:stale:*")).await.len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{n} answers stored in Redis"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Calls `b` with `req()` until it answers stale (bounded); the answer's body.
async fn until_stale(b: &Breaker<HostDoer>, req: impl Fn() -> http_doer::Request) -> String {
    let start = Instant::now();
    loop {
        if let Ok(resp) = b.execute(req()).await
            && resp.extensions().get::<StaleAnswer>().is_some()
        {
            return resp.into_body().text().await.unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "served stale in time"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every key under `prefix`, with everything it holds (names, members, values), raw.
async fn dump(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for key in keys(conn, &format!("{prefix}*")).await {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .unwrap();
        let held: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(&key).query_async(conn).await.unwrap()],
            "set" => redis::cmd("SMEMBERS")
                .arg(&key)
                .query_async(conn)
                .await
                .unwrap(),
            "zset" => redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query_async(conn)
                .await
                .unwrap(),
            "hash" => redis::cmd("HGETALL")
                .arg(&key)
                .query_async(conn)
                .await
                .unwrap(),
            other => panic!("{key}: unexpected type {other}"),
        };
        out.push(key.into_bytes());
        out.extend(held);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_during_an_outage_serves_what_another_stored_and_redis_holds_no_plaintext()
 {
    let (url, _redis) = shared_url();
    let p = prefix("stale");
    let host = Host::default();
    let (fa, a) = stale_replica(&url, &p, &host);
    all_up(&url, &p, &[&fa]).await;
    let mine = || page("/account", AUTH_VALUE);
    let fresh = a.execute(mine()).await.unwrap();
    assert_eq!(
        fresh.into_body().text().await.unwrap(),
        format!("{PLAIN_BODY} at /account")
    );
    let mut conn = redis_conn(&url).await;
    stored(&mut conn, &p, 1).await;

    host.down.store(true, Ordering::SeqCst);
    assert_eq!(
        a.execute(page("/other", AUTH_VALUE))
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(a.state(HOST), State::Open);
    let calls = host.calls();

    // A replica that starts now has never seen the page: it opens from the stored state,
    // fetches the circuit's answers, and serves A's.
    let (_fl, late) = stale_replica(&url, &p, &host);
    until(Duration::from_secs(5), || late.state(HOST) == State::Open)
        .await
        .expect("the late replica read the stored state");
    let body = until_stale(&late, mine).await;
    assert_eq!(body, format!("{PLAIN_BODY} at /account"));
    assert_eq!(late.state(HOST), State::Open);
    // Same keys as in one process: another user's request is not answered with it.
    let theirs = late.execute(page("/account", "Bearer someone-else")).await;
    assert_eq!(theirs.unwrap_err().kind(), ErrorKind::BreakerOpen);
    assert_eq!(
        host.calls(),
        calls,
        "the late replica never called the down host"
    );

    // A dump of Redis shows no body, no URL token and no credential.
    let dumped = dump(&mut conn, &p).await;
    assert!(dumped.len() > 3, "the dump holds the fleet's keys");
    for plant in [
        "BODY-PLAINTEXT",
        "alice",
        URL_TOKEN,
        "AUTH-VALUE",
        "/account",
    ] {
        for held in &dumped {
            assert!(
                !held.windows(plant.len()).any(|w| w == plant.as_bytes()),
                "{plant:?} in Redis: {}",
                String::from_utf8_lossy(held)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_answer_in_redis_is_refused_not_served() {
    let (url, _redis) = shared_url();
    let p = prefix("tamper");
    let host = Host::default();
    let (fa, a) = stale_replica(&url, &p, &host);
    all_up(&url, &p, &[&fa]).await;
    let mut conn = redis_conn(&url).await;
    a.execute(page("/bad", AUTH_VALUE)).await.unwrap();
    stored(&mut conn, &p, 1).await;
    // Flip one byte of the only answer stored so far: /bad's.
    let slot = keys(&mut conn, &format!("{p}:stale:*")).await.remove(0);
    let mut blob: Vec<u8> = redis::cmd("GET")
        .arg(&slot)
        .query_async(&mut conn)
        .await
        .unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 0x01;
    let _: () = redis::cmd("SET")
        .arg(&slot)
        .arg(blob)
        .arg("KEEPTTL")
        .query_async(&mut conn)
        .await
        .unwrap();
    // And a member of the circuit's index whose name is not text: skipped, not a failed fetch.
    let index = keys(&mut conn, &format!("{p}:stale-idx:*")).await.remove(0);
    let junk: &[u8] = b"\xff\xfe not text";
    let _: () = redis::cmd("SET")
        .arg(junk)
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg(&index)
        .arg(junk)
        .query_async(&mut conn)
        .await
        .unwrap();
    a.execute(page("/good", AUTH_VALUE)).await.unwrap();
    stored(&mut conn, &p, 2).await;

    host.down.store(true, Ordering::SeqCst);
    a.execute(page("/x", AUTH_VALUE)).await.unwrap();
    assert_eq!(a.state(HOST), State::Open);
    let (_fl, late) = stale_replica(&url, &p, &host);
    until(Duration::from_secs(5), || late.state(HOST) == State::Open)
        .await
        .expect("the late replica read the stored state");
    // Both answers come in one fetch: once /good is served, /bad was read, and refused.
    let good = until_stale(&late, || page("/good", AUTH_VALUE)).await;
    assert_eq!(good, format!("{PLAIN_BODY} at /good"));
    let bad = late.execute(page("/bad", AUTH_VALUE)).await;
    assert_eq!(bad.unwrap_err().kind(), ErrorKind::BreakerOpen);
    assert_eq!(
        late.stale_usage().0,
        1,
        "only the intact answer was adopted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_heard_by_one_replica_pauses_the_key_on_every_replica() {
    use http_doer::limit::{FleetStore, LimitStore, MemoryStore, Rate, RateLimiting};

    let (url, _redis) = shared_url();
    let p = prefix("pause");
    let fa = RedisFleet::builder(&url).prefix(&p).connect().unwrap();
    let fb = RedisFleet::builder(&url).prefix(&p).connect().unwrap();
    all_up(&url, &p, &[&fa, &fb]).await;
    // Replica A's host is out of quota; replica B's would answer, but is the same server.
    let told = doer_fn(|_req| async {
        Ok(http::Response::builder()
            .status(429)
            .header("retry-after", "30")
            .body(Body::empty())
            .unwrap())
    });
    let host = Host::default();
    let store_a = FleetStore::new(MemoryStore::new(Rate::unlimited()), Arc::new(fa.clone()));
    let a = RateLimiting::new(told, Rate::unlimited()).store(store_a.clone());
    let b = RateLimiting::new(host.doer(), Rate::unlimited())
        .max_wait(Duration::ZERO)
        .store(FleetStore::new(
            MemoryStore::new(Rate::unlimited()),
            Arc::new(fb.clone()),
        ));
    let get = || {
        http::Request::get(format!("{HOST}/x"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(b.execute(get()).await.unwrap().status(), 200);
    // B's listener is subscribed once it hears anything: a pause of another key, sent until
    // it does (a message published before the subscription is lost, as pub/sub is).
    let heard = until(Duration::from_secs(5), || {
        store_a.refused("https://warm-up.test", Duration::from_millis(1));
        fb.stats().received > 0
    })
    .await;
    assert!(heard.is_some(), "B's listener never heard A");

    // A hears its 429, and pauses itself; B holds too, once the news has crossed Redis.
    assert_eq!(a.execute(get()).await.unwrap().status(), 429);
    let start = Instant::now();
    let refused = loop {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "B never paused: A {:?}, B {:?}",
            fa.stats(),
            fb.stats()
        );
        match b.execute(get()).await {
            Err(e) => break e,
            Ok(resp) => assert_eq!(resp.status(), 200),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(refused.kind(), ErrorKind::RateLimited, "{refused:#}");
    let wait = refused.retry_after().expect("how long B holds");
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "the server's 30 s, less the trip: {wait:?}"
    );
    let calls = host.calls();
    for _ in 0..5 {
        assert!(b.execute(get()).await.is_err(), "B holds the key");
    }
    assert_eq!(host.calls(), calls, "nothing more reached B's host");
    let other = http::Request::get("https://other.test/x")
        .body(Body::empty())
        .unwrap();
    assert!(b.execute(other).await.is_ok(), "other keys go on");
}

/// Waits (bounded) until the answer named `name` is kept in Redis under `prefix`.
async fn kept(conn: &mut redis::aio::MultiplexedConnection, prefix: &str, name: u128) {
    let start = Instant::now();
    let pattern = format!("{prefix}:stale:*:{name:032x}");
    while keys(conn, &pattern).await.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "answer {name} kept"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The names of the answers kept in Redis under `prefix`, in order.
async fn names(conn: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<u128> {
    let mut names: Vec<u128> = keys(conn, &format!("{prefix}:stale:*"))
        .await
        .iter()
        .map(|k| u128::from_str_radix(k.rsplit(':').next().unwrap(), 16).unwrap())
        .collect();
    names.sort_unstable();
    names
}

/// The fleet-wide bound on stale answers holds whichever replica stores them: past
/// `max_entries`, or past `max_bytes` of sealed answers, the least recently stored leave
/// Redis, and the bound's own books (recency, sizes, total) agree with what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stale_bound_evicts_the_least_recently_stored_fleet_wide() {
    use http_doer::fleet::{StaleBound, StaleStore};

    let (url, _redis) = shared_url();
    let mut conn = redis_conn(&url).await;
    let answer = bytes::Bytes::from(vec![b'x'; 100]);
    let minute = Duration::from_secs(60);
    for (what, bound, left) in [
        (
            "entries",
            StaleBound {
                max_entries: 3,
                max_bytes: 1 << 20,
            },
            3,
        ),
        // A sealed answer of 100 bytes takes about 150 (its TTL, nonce and tag): 400 hold two.
        (
            "bytes",
            StaleBound {
                max_entries: 100,
                max_bytes: 400,
            },
            2,
        ),
    ] {
        let p = prefix(&format!("bound-{what}"));
        let fleet = |_| {
            RedisFleet::builder(&url)
                .prefix(&p)
                .key(FleetKey::from_bytes(KEY))
                .stale_bound(bound)
                .connect()
                .unwrap()
        };
        let (fa, fb) = (fleet(0), fleet(1));
        all_up(&url, &p, &[&fa, &fb]).await;
        for name in 0..6u128 {
            // Each replica stores in turn, one after the other (the order is the recency).
            let by = if name % 2 == 0 { &fa } else { &fb };
            by.put("https://h.test", name, answer.clone(), minute);
            kept(&mut conn, &p, name).await;
        }
        let expect: Vec<u128> = (6 - left as u128..6).collect();
        assert_eq!(
            names(&mut conn, &p).await,
            expect,
            "{what}: the newest kept"
        );
        let lru: usize = redis::cmd("ZCARD")
            .arg(format!("{p}:stale-lru"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let sizes: usize = redis::cmd("HLEN")
            .arg(format!("{p}:stale-size"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let one = keys(&mut conn, &format!("{p}:stale:*")).await.remove(0);
        let size: usize = redis::cmd("STRLEN")
            .arg(&one)
            .query_async(&mut conn)
            .await
            .unwrap();
        let total: usize = redis::cmd("GET")
            .arg(format!("{p}:stale-bytes"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!((lru, sizes, total), (left, left, size * left), "{what}");
    }
}

/// Only a replica with calls for the host asks for the probe lease. Replicas that hold the
/// circuit but have no calls now (here, the one that tripped it, whose callers went away)
/// never take it: were they to ask when the open period ends, as every replica once did, the
/// one that tripped would ask first and win, and the host would wait a whole lease (one open
/// period) for the busy replica's probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_replica_never_holds_up_the_probe() {
    let (url, _redis) = shared_url();
    let p = prefix("idle");
    let host = Host::default();
    let open = Duration::from_secs(2);
    let idle: Vec<_> = (0..5).map(|_| replica(&url, &p, &host, 1, open)).collect();
    let (fb, busy) = replica(&url, &p, &host, 1, open);
    let fleets: Vec<&RedisFleet> = idle.iter().map(|r| &r.0).chain([&fb]).collect();
    all_up(&url, &p, &fleets).await;
    host.down.store(true, Ordering::SeqCst);
    call(&idle[0].1).await.unwrap();
    let tripped = Instant::now();
    until(Duration::from_secs(5), || {
        idle.iter().all(|(_, b)| b.state(HOST) == State::Open) && busy.state(HOST) == State::Open
    })
    .await
    .expect("open everywhere");
    let before = host.calls();
    let mut probed = None;
    while tripped.elapsed() < open * 3 {
        let _ = call(&busy).await;
        if host.calls() > before {
            probed = Some(tripped.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let probed = probed.expect("the busy replica probed");
    // Its probe goes once it has asked for the lease and been given it (a round trip to
    // Redis); an idle holder would have kept it back until the lease ran out, a whole period
    // later (4 s). The bound leaves a loaded machine 1.5 s.
    assert!(
        probed >= open && probed < open + Duration::from_millis(1_500),
        "probed {probed:?} after the trip"
    );
}

/// The listener's pings (one a second) keep the link up: none fails, so the subscription is
/// never dropped and remade, nor the stored states read again, while Redis is healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_link_stays_up_through_its_pings() {
    let (url, _redis) = shared_url();
    let p = prefix("ping");
    let host = Host::default();
    let (fa, _a) = replica(&url, &p, &host, 1, Duration::from_secs(1));
    all_up(&url, &p, &[&fa]).await;
    let after_up = fa.stats().ok;
    // Each answered ping counts as a success: wait for two.
    let mut flapped = false;
    let pinged = until(Duration::from_secs(10), || {
        flapped |= !fa.is_up() || fa.stats().failed > 0;
        flapped || fa.stats().ok >= after_up + 2
    })
    .await;
    assert!(pinged.is_some(), "two pings answered: {:?}", fa.stats());
    assert!(!flapped, "the link went down: {:?}", fa.stats());
    assert_eq!(fa.stats().failed, 0);
}

/// A replica that starts during an outage reads the open circuits through their index, not by
/// scanning the database: with 100,000 other keys in Redis (a scan of the whole database
/// read at most about 20,000), it still opens at once; and a circuit that closed leaves the
/// index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_in_a_crowded_redis_finds_the_open_circuits() {
    let server = RedisServer::start();
    let url = server.url();
    let mut conn = redis_conn(&url).await;
    for batch in 0..20 {
        let mut pipe = redis::pipe();
        for i in 0..5_000 {
            pipe.set(format!("other:{batch}:{i}"), "x").ignore();
        }
        let _: () = pipe.query_async(&mut conn).await.unwrap();
    }
    let p = prefix("crowded");
    let host = Host::default();
    let (fa, a) = replica(&url, &p, &host, 1, Duration::from_secs(30));
    all_up(&url, &p, &[&fa]).await;
    host.down.store(true, Ordering::SeqCst);
    call(&a).await.unwrap();
    assert_eq!(a.state(HOST), State::Open);
    let index = format!("{p}:open");
    let start = Instant::now();
    loop {
        let named: bool = redis::cmd("SISMEMBER")
            .arg(&index)
            .arg(HOST)
            .query_async(&mut conn)
            .await
            .unwrap();
        if named {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "A's open indexed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (_fl, late) = replica(&url, &p, &host, 1, Duration::from_secs(30));
    until(Duration::from_secs(10), || late.state(HOST) == State::Open)
        .await
        .expect("the late replica read the stored state");
    assert_eq!(host.calls(), 1);

    // A circuit that closes leaves the index; one whose state expired leaves it when a
    // replica next reads it.
    let member = |key: &'static str| {
        let (url, index) = (url.clone(), index.clone());
        async move {
            let mut conn = redis_conn(&url).await;
            redis::cmd("SISMEMBER")
                .arg(&index)
                .arg(key)
                .query_async::<bool>(&mut conn)
                .await
                .unwrap()
        }
    };
    http_doer::fleet::CircuitStore::closed(&fa, 0, HOST);
    let _: () = redis::cmd("SADD")
        .arg(&index)
        .arg("https://gone.test")
        .query_async(&mut conn)
        .await
        .unwrap();
    let (_fl2, _later) = replica(&url, &p, &host, 1, Duration::from_secs(30));
    let start = Instant::now();
    while member(HOST).await || member("https://gone.test").await {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "both left the index"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Answers that expire on their own leave the bound's books at the next store, so they do not
/// hold places that live answers need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_answers_leave_the_stale_bound() {
    use http_doer::fleet::{StaleBound, StaleStore};

    let (url, _redis) = shared_url();
    let mut conn = redis_conn(&url).await;
    let p = prefix("expired");
    let fleet = RedisFleet::builder(&url)
        .prefix(&p)
        .key(FleetKey::from_bytes(KEY))
        .stale_bound(StaleBound {
            max_entries: 3,
            max_bytes: 1 << 20,
        })
        .connect()
        .unwrap();
    all_up(&url, &p, &[&fleet]).await;
    let answer = bytes::Bytes::from(vec![b'x'; 100]);
    for name in 0..3u128 {
        fleet.put(
            "https://h.test",
            name,
            answer.clone(),
            Duration::from_millis(50),
        );
        kept(&mut conn, &p, name).await;
    }
    // Redis expires them (a real clock: polled, bounded).
    let start = Instant::now();
    while !names(&mut conn, &p).await.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(5), "expired in Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    fleet.put("https://h.test", 9, answer.clone(), Duration::from_secs(60));
    kept(&mut conn, &p, 9).await;
    let lru: usize = redis::cmd("ZCARD")
        .arg(format!("{p}:stale-lru"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let sizes: usize = redis::cmd("HLEN")
        .arg(format!("{p}:stale-size"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((lru, sizes), (1, 1), "only the live answer is counted");
}

/// A replica that learns of an open circuit late in its period takes the probe lease for the
/// whole period, as the replica that tripped it would: the lease of one that read the state
/// with 2 s left of 60 s lasted 2 s, and could run out while its probe was still at the host,
/// so another replica could probe too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_replicas_probe_lease_lasts_the_whole_open_period() {
    let (url, _redis) = shared_url();
    let p = prefix("late-lease");
    let mut conn = redis_conn(&url).await;
    let host = Host::default();
    host.down.store(true, Ordering::SeqCst);
    let (fc, c) = replica(&url, &p, &host, 1, Duration::from_secs(60));
    all_up(&url, &p, &[&fc]).await;
    // As a replica that tripped the circuit 58 s ago, for 60 s, left it.
    let _: () = redis::cmd("SET")
        .arg(format!("{p}:state:{HOST}"))
        .arg(60_000)
        .arg("PX")
        .arg(2_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg(format!("{p}:open"))
        .arg(HOST)
        .query_async(&mut conn)
        .await
        .unwrap();
    // A breaker attached now makes C's fleet read the stored states, as one that starts does.
    let _another = Breaker::new(host.doer()).fleet(Arc::new(fc.clone()));
    until(Duration::from_secs(2), || c.state(HOST) == State::Open)
        .await
        .expect("C read the stored state");
    // Past the period, C's calls ask for the lease, and its probe goes.
    let start = Instant::now();
    while host.calls() == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "C probed");
        let _ = call(&c).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lease_ms: i64 = redis::cmd("PTTL")
        .arg(format!("{p}:lease:{HOST}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        lease_ms > 30_000,
        "C's lease has {lease_ms} ms left, of a 60 s period"
    );
}

/// A budget's hash forgets the replicas that are gone: each exchange drops the entries
/// silent for as long as the hash lives unrenewed (5 s), which the live replicas' exchanges
/// otherwise kept for good, one more with each deploy or restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_hash_forgets_replicas_that_are_gone() {
    use http_doer::fleet::BudgetCounts;

    let (url, _redis) = shared_url();
    let p = prefix("budget-gone");
    let mut conn = redis_conn(&url).await;
    let hash = format!("{p}:budget:api");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // 50 replicas that last reported 10 s ago, and one that reported just now.
    let mut pipe = redis::pipe();
    for id in 0..50u64 {
        pipe.hset(&hash, 1_000 + id, format!("5 1 {}", now_ms - 10_000))
            .ignore();
    }
    pipe.hset(&hash, 7, format!("5 1 {now_ms}")).ignore();
    let _: () = pipe.query_async(&mut conn).await.unwrap();

    let live = RedisFleet::builder(&url).prefix(&p).connect().unwrap();
    all_up(&url, &p, &[&live]).await;
    let others = live
        .exchange("api", BudgetCounts::default())
        .await
        .expect("an answer");
    assert_eq!(
        (others.firsts, others.retries),
        (5, 1),
        "only the live one counts"
    );
    let fields: usize = redis::cmd("HLEN")
        .arg(&hash)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(fields, 2, "the live replica and this one are kept");
}
