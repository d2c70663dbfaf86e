//! The README's main command: `cargo run --example quickstart`.
//!
//! Starts a small HTTP server on a free loopback port, in this process, then:
//! 1. calls it through both backends, bare;
//! 2. calls it through the full recommended stack, outermost first:
//!    Logging -> Retrying -> Breaker (serve-stale) -> Signing -> ReqwestDoer,
//!    and prints what each layer did.
//!
//! No internet needed; it ends in about a second.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use http_doer::breaker::{ServeStale, ServedStale};
use http_doer::logging::KeepLog;
use http_doer::retrying::{Attempts, Backoff};
use http_doer::signing::Bearer;
use http_doer::{Body, Doer, DoerExt, ReqwestDoer, Response, UreqDoer};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let addr = start_server().await?;
    println!("http-doer quickstart: local server on http://{addr}\n");
    backends(addr).await?;
    full_stack(addr).await?;
    println!("done");
    Ok(())
}

/// Both backends, bare: same requests, same answers, same error kinds.
async fn backends(addr: SocketAddr) -> Result<(), BoxError> {
    let backends: [(&str, Box<dyn Doer>); 2] = [
        ("reqwest", ReqwestDoer::new().boxed()),
        ("ureq", UreqDoer::new().boxed()),
    ];
    for (name, doer) in &backends {
        println!("{name}:");
        for (method, path, body) in [
            ("GET", "/hello", ""),
            ("POST", "/echo", "ping"),
            ("GET", "/missing", ""),
        ] {
            let req = http::Request::builder()
                .method(method)
                .uri(format!("http://{addr}{path}"))
                .body(Body::from(body))?;
            let started = Instant::now();
            let resp = doer.execute(req).await?;
            let status = resp.status();
            let text = resp.into_body().text().await?;
            println!(
                "  {method:<4} {path:<9} -> {status} {text:?} in {}",
                ms(started)
            );
        }
        let refused = http::Request::get("http://127.0.0.1:1/").body(Body::empty())?;
        let err = doer
            .execute(refused)
            .await
            .expect_err("nothing listens on port 1");
        println!(
            "  GET  127.0.0.1:1  -> error kind {:?}: {err}\n",
            err.kind()
        );
    }
    Ok(())
}

/// The recommended stack against routes that misbehave on purpose.
async fn full_stack(addr: SocketAddr) -> Result<(), BoxError> {
    let log = KeepLog::new(50);
    let stack = ReqwestDoer::new()
        .signing(Bearer::new("demo-token")?)
        .breaker()
        .consecutive_failures(3)
        .serve_stale(ServeStale::new(Duration::from_secs(60)))
        .on_state_change(|c| println!("  [breaker] {}: {} -> {}", c.key, c.from, c.to))
        .retrying()
        .max_retries(3)
        .backoff(Backoff::exponential(Duration::from_millis(5)))
        .logging()
        .keep_log(log.clone());

    println!("full stack: Logging -> Retrying -> Breaker -> Signing -> ReqwestDoer");
    // `/flaky` fails twice with 503, then answers: Retrying absorbs the failures.
    // `/private` answers 401 without the Bearer token that Signing adds.
    // `/status` answers twice, then the host "goes down" (503 for good): the breaker opens and
    // answers GETs with the last good response, marked stale, without calling the host.
    for path in [
        "/flaky", "/private", "/status", "/status", "/status", "/status", "/status",
    ] {
        let req = http::Request::get(format!("http://{addr}{path}")).body(Body::empty())?;
        let started = Instant::now();
        match stack.execute(req).await {
            Ok(resp) => println!(
                "  GET {path:<9} -> {} in {}",
                describe(resp).await?,
                ms(started)
            ),
            Err(err) => println!("  GET {path:<9} -> error: {err}"),
        }
    }
    println!("\nkept log (Logging's bounded in-memory log, secrets redacted):\n{log}");
    Ok(())
}

async fn describe(resp: Response) -> Result<String, BoxError> {
    let attempts = resp.extensions().get::<Attempts>().map_or(1, |a| a.0);
    let stale = resp.extensions().get::<ServedStale>().map(|s| s.age);
    let status = resp.status();
    let text = resp.into_body().text().await?;
    let mut out = format!("{status} {text:?}, {attempts} attempt(s)");
    if let Some(age) = stale {
        out.push_str(&format!(
            ", served stale ({} ms old) by the open breaker",
            age.as_millis()
        ));
    }
    Ok(out)
}

fn ms(started: Instant) -> String {
    format!("{:.1} ms", started.elapsed().as_secs_f64() * 1e3)
}

/// Counts calls per misbehaving route.
#[derive(Default)]
struct Counters {
    flaky: AtomicUsize,
    status: AtomicUsize,
}

/// A tiny hyper server with a few routes that behave, and a few that misbehave on purpose.
async fn start_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counters = Arc::new(Counters::default());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counters = Arc::clone(&counters);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let counters = Arc::clone(&counters);
                    async move { Ok::<_, Infallible>(route(req, &counters).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let _ = conn.await;
            });
        }
    });
    Ok(addr)
}

async fn route(
    req: hyper::Request<hyper::body::Incoming>,
    counters: &Counters,
) -> hyper::Response<Full<Bytes>> {
    let authorized = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v == "Bearer demo-token");
    let (status, body): (u16, Bytes) = match req.uri().path() {
        "/hello" => (200, "hello from the local server".into()),
        "/echo" => (
            200,
            req.into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default(),
        ),
        "/flaky" if counters.flaky.fetch_add(1, Ordering::SeqCst) < 2 => (503, "busy".into()),
        "/flaky" => (200, "third time lucky".into()),
        "/private" if authorized => (200, "welcome, token holder".into()),
        "/private" => (401, "who are you?".into()),
        "/status" if counters.status.fetch_add(1, Ordering::SeqCst) < 2 => (200, "all good".into()),
        "/status" => (503, "down".into()),
        _ => (404, "not here".into()),
    };
    let resp = hyper::Response::builder()
        .status(status)
        .body(Full::new(body));
    resp.expect("a valid response")
}
