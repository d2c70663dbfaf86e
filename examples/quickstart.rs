//! The README's main command: `cargo run --example quickstart`.
//!
//! Starts a small HTTP server on a free loopback port, in this process, then:
//! 1. calls it through both backends, bare;
//! 2. calls it through the README's stack with the limits added, outermost first: Logging ->
//!    Retrying -> RateLimiting -> ConcurrencyLimit -> Hedging -> Breaker (serve-stale) ->
//!    Signing -> ReqwestDoer, and prints, per route, what the server saw and what each layer did.
//!
//! No internet needed; it ends in about three seconds (the quota route is paced on purpose).
//! `RUST_LOG=http_doer=debug` shows the Logging decorator's events too (one per call), through
//! `tracing-subscriber`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use http_doer::breaker::{ServeStale, StaleAnswer};
use http_doer::hedging::HedgeStats;
use http_doer::limit::{Rate, RateWait};
use http_doer::logging::KeepLog;
use http_doer::retrying::{Attempts, Backoff};
use http_doer::signing::Bearer;
use http_doer::{Body, Doer, DoerExt, ReqwestDoer, UreqDoer};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Silent unless RUST_LOG asks: the example prints its own account below.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("off"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let server = Server::start().await?;
    println!(
        "http-doer quickstart: local server on http://{}\n",
        server.addr
    );
    backends(&server).await?;
    full_stack(&server).await?;
    println!("done");
    Ok(())
}

/// Both backends, bare: same requests, same answers, same error kinds.
async fn backends(server: &Server) -> Result<(), BoxError> {
    let backends: [(&str, Box<dyn Doer>); 2] = [
        ("reqwest", ReqwestDoer::new().boxed()),
        ("ureq", UreqDoer::new().boxed()),
    ];
    for (name, doer) in &backends {
        println!("{name}, bare:");
        for (method, path, body) in [
            ("GET", "/hello", ""),
            ("POST", "/echo", "ping"),
            ("GET", "/missing", ""),
        ] {
            let req = http::Request::builder()
                .method(method)
                .uri(server.url(path))
                .body(Body::from(body))?;
            let started = Instant::now();
            let resp = doer.execute(req).await?;
            let status = resp.status();
            let text = resp.into_body().text().await?;
            println!(
                "  {method:<4} {path:<10} -> {status} {text:?} in {}",
                ms(started)
            );
        }
        let refused = http::Request::get("http://127.0.0.1:1/").body(Body::empty())?;
        let err = doer
            .execute(refused)
            .await
            .expect_err("nothing listens on port 1");
        println!(
            "  GET  127.0.0.1:1  -> error kind {:?}: {err:#}\n",
            err.kind()
        );
    }
    server.seen.lock().expect("not poisoned").clear();
    Ok(())
}

/// The README's stack against routes that misbehave on purpose.
async fn full_stack(server: &Server) -> Result<(), BoxError> {
    let log = KeepLog::new(50);
    let stack = ReqwestDoer::new()
        .signing(Bearer::new("demo-token")?)
        .breaker()
        .consecutive_failures(3)
        .serve_stale(ServeStale::new(Duration::from_secs(60)))
        .on_state_change(|c| println!("    breaker: {} went {} -> {}", c.key, c.from, c.to))
        .hedging()
        .fixed_delay(Duration::from_millis(20))
        .concurrency_limit(16)
        .rate_limiting(Rate::per_second(50).burst(10))
        .retrying()
        .max_retries(3)
        .backoff(Backoff::exponential(Duration::from_millis(5)))
        .logging()
        .keep_log(log.clone());
    // Hedging, reached through the stack for its counters:
    // Logging -> Retrying -> RateLimiting -> ConcurrencyLimit -> Hedging.
    let hedging = stack.get_ref().get_ref().get_ref().get_ref();

    println!(
        "full stack: Logging -> Retrying -> RateLimiting -> ConcurrencyLimit -> Hedging -> Breaker -> Signing -> ReqwestDoer"
    );
    let routes = [
        ("/flaky", "fails twice with 503, then answers"),
        (
            "/private",
            "answers 401 without the Bearer token that Signing adds",
        ),
        ("/slow-once", "stalls its first answer for 2 s"),
        ("/quota", ""),
        (
            "/status",
            "answers twice, then the host goes down (503 for good)",
        ),
        ("/status", ""),
        ("/status", ""),
        ("/status", ""),
    ];
    for (path, what) in routes {
        if path == "/quota" {
            // Before `/status` takes the host down: the breaker's circuit is per host.
            quota(server, &stack).await?;
            continue;
        }
        if !what.is_empty() {
            println!("\n  {path}: {what}");
        }
        let before = hedging.stats();
        let req = http::Request::get(server.url(path)).body(Body::empty())?;
        let started = Instant::now();
        let result = stack.execute(req).await;
        let took = ms(started);
        let hedged = Delta(before, hedging.stats());
        match result {
            Ok(resp) => {
                let attempts = resp.extensions().get::<Attempts>().map_or(1, |a| a.0);
                let stale = resp.extensions().get::<StaleAnswer>().cloned();
                let status = resp.status();
                let text = resp.into_body().text().await?;
                println!("    GET {path} -> {status} {text:?} in {took}");
                println!("    server saw: {}", server.take_seen());
                println!("    Retrying: {}", retries(attempts));
                println!("    Hedging: {hedged}");
                if let Some(stale) = stale {
                    println!(
                        "    Breaker: circuit open, answered from the last good response ({} ms old)",
                        stale.age.as_millis()
                    );
                }
            }
            Err(err) => {
                println!(
                    "    GET {path} -> error {:?}: {err:#} in {took}",
                    err.kind()
                );
                println!("    server saw: {}", server.take_seen());
            }
        }
    }
    println!("\nLogging kept one entry per call (bounded, secrets redacted):\n{log}");
    Ok(())
}

/// `/quota` publishes a quota of 10 calls a second (the IETF `RateLimit` fields) and answers 429
/// past it. RateLimiting reads the fields and spreads the calls so that none runs into a 429.
async fn quota(server: &Server, stack: &impl Doer) -> Result<(), BoxError> {
    println!("\n  /quota: publishes a quota of {QUOTA} calls a second, 429 past it");
    let started = Instant::now();
    let mut waited = Duration::ZERO;
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let req = http::Request::get(server.url("/quota")).body(Body::empty())?;
        let resp = stack.execute(req).await?;
        waited += resp
            .extensions()
            .get::<RateWait>()
            .map_or(Duration::ZERO, |w| w.0);
        statuses.push(resp.status().as_u16());
    }
    let too_many = statuses.iter().filter(|s| **s == 429).count();
    println!(
        "    15 calls in {}: {} answered 200, {too_many} answered 429",
        ms(started),
        statuses.len() - too_many
    );
    println!(
        "    RateLimiting: paced to the server's quota, waiting {} ms in all",
        waited.as_millis()
    );
    println!("    server saw: {}", server.take_seen());
    Ok(())
}

fn retries(attempts: u32) -> String {
    match attempts {
        1 => "1 attempt, no retry".to_owned(),
        2 => "2 attempts (1 retry)".to_owned(),
        n => format!("{n} attempts ({} retries)", n - 1),
    }
}

/// What Hedging did during one call: the difference of its counters.
struct Delta(HedgeStats, HedgeStats);

impl std::fmt::Display for Delta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, b) = (&self.0, &self.1);
        let copies = b.copies_sent - a.copies_sent;
        let calls = b.calls - a.calls;
        let extra = copies.saturating_sub(calls);
        // Copies go down the stack: the breaker below may answer some without the host.
        write!(f, "{copies} request(s) sent down for {calls} attempt(s)")?;
        if extra > 0 {
            write!(f, ", {extra} of them extra copies")?;
        }
        if b.hedge_wins > a.hedge_wins {
            write!(f, ", a copy won")?;
        }
        let failed = b.failed_copies - a.failed_copies;
        if failed > 0 {
            write!(f, ", {failed} answered unacceptably")?;
        }
        let cancelled = b.cancelled_copies - a.cancelled_copies;
        if cancelled > 0 {
            write!(f, ", {cancelled} dropped unanswered")?;
        }
        Ok(())
    }
}

fn ms(started: Instant) -> String {
    format!("{:.1} ms", started.elapsed().as_secs_f64() * 1e3)
}

/// A tiny hyper server with a few routes that behave and a few that misbehave on purpose. It
/// notes what it answers, so the example can show what really reached the host.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start() -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let routes = Arc::new(Routes {
            seen: Arc::clone(&seen),
            ..Routes::default()
        });
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let routes = Arc::clone(&routes);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let routes = Arc::clone(&routes);
                        async move { Ok::<_, Infallible>(routes.answer(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = conn.await;
                });
            }
        });
        Ok(Server { addr, seen })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the server answered since the last call, in order.
    fn take_seen(&self) -> String {
        let seen = std::mem::take(&mut *self.seen.lock().expect("not poisoned"));
        match seen.len() {
            0 => "nothing (no request reached the host)".to_owned(),
            n => format!("{n} request(s): {}", seen.join(", ")),
        }
    }
}

/// Calls a second that `/quota` allows.
const QUOTA: u32 = 10;

#[derive(Default)]
struct Routes {
    started: OnceLock<Instant>,
    /// The current one-second window of `/quota`, and the calls served in it.
    quota: Mutex<(u64, u32)>,
    flaky: AtomicUsize,
    slow_once: AtomicUsize,
    status: AtomicUsize,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Routes {
    async fn answer(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
    ) -> hyper::Response<Full<Bytes>> {
        let authorized = req
            .headers()
            .get("authorization")
            .is_some_and(|v| v == "Bearer demo-token");
        let (status, body): (u16, Bytes) = match req.uri().path() {
            "/quota" => return self.quota(),
            "/hello" => (200, "hello from the local server".into()),
            "/echo" => (
                200,
                req.into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default(),
            ),
            "/flaky" if self.flaky.fetch_add(1, Ordering::SeqCst) < 2 => (503, "busy".into()),
            "/flaky" => (200, "third time lucky".into()),
            "/slow-once" => {
                if self.slow_once.fetch_add(1, Ordering::SeqCst) == 0 {
                    self.note("stalled 2 s (its caller had moved on)".to_owned());
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    return reply(200, "too late".into());
                }
                (200, "fast enough".into())
            }
            "/private" if authorized => (200, "welcome, token holder".into()),
            "/private" => (401, "who are you?".into()),
            "/status" if self.status.fetch_add(1, Ordering::SeqCst) < 2 => (200, "all good".into()),
            "/status" => (503, "down".into()),
            _ => (404, "not here".into()),
        };
        self.note(status.to_string());
        reply(status, body)
    }

    /// A quota of `QUOTA` calls a one-second window, published as the IETF fields; 429 past it.
    fn quota(&self) -> hyper::Response<Full<Bytes>> {
        let window = self.started.get_or_init(Instant::now).elapsed().as_secs();
        let mut q = self.quota.lock().expect("not poisoned");
        if q.0 != window {
            *q = (window, 0);
        }
        let over = q.1 >= QUOTA;
        if !over {
            q.1 += 1;
        }
        self.note(if over { "429" } else { "200" }.to_owned());
        let mut resp = hyper::Response::builder()
            .status(if over { 429 } else { 200 })
            .header("ratelimit-policy", format!("\"default\";q={QUOTA};w=1"))
            .header("ratelimit", format!("\"default\";r={};t=1", QUOTA - q.1));
        if over {
            resp = resp.header("retry-after", "1");
        }
        resp.body(Full::new(Bytes::from_static(b"quota")))
            .expect("a valid response")
    }

    fn note(&self, what: String) {
        self.seen.lock().expect("not poisoned").push(what);
    }
}

fn reply(status: u16, body: Bytes) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .body(Full::new(body))
        .expect("a valid response")
}
