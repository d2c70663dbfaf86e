//! Two instances of `examples/proxy` in front of one backend, sharing one real Redis
//! (`RETTER_REDIS_URL`, `RETTER_FLEET_KEY`): a circuit one opens is open in the other, which
//! then refuses without calling the backend, and serves the stale answers the first one kept.
//!
//! Time is real (real sockets and Redis pub/sub): every wait is bounded, and no duration is
//! asserted.
#![cfg(all(feature = "redis", feature = "reqwest"))]

#[path = "../examples/proxy/config.rs"]
#[allow(dead_code)] // shared with the example binary, which uses items these tests do not
mod config;

#[path = "../examples/proxy/app.rs"]
#[allow(dead_code)]
mod app;

#[path = "../examples/proxy/stack.rs"]
#[allow(dead_code)]
mod stack;

#[allow(dead_code)]
mod support;

#[path = "support/redis.rs"]
mod redis_support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every wait in these tests ends by this bound at the latest.
const BOUND: Duration = Duration::from_secs(15);

/// The page only one proxy fetches before the outage.
const PAGE: &str = "the page, v1";

#[derive(Default)]
struct Backend {
    down: AtomicBool,
    hits: AtomicUsize,
}

/// A backend on loopback: `/page` answers [`PAGE`], or 503 while down.
async fn start_backend(state: Arc<Backend>) -> support::Loopback {
    support::Loopback::serve(move |stream| {
        let state = state.clone();
        async move {
            let service = service_fn(move |_req: hyper::Request<Incoming>| {
                let state = state.clone();
                async move {
                    state.hits.fetch_add(1, Ordering::SeqCst);
                    let resp = if state.down.load(Ordering::SeqCst) {
                        let mut r = hyper::Response::new(Full::new(Bytes::from("down")));
                        *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                        r
                    } else {
                        hyper::Response::new(Full::new(Bytes::from(PAGE)))
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await
}

struct Running {
    addr: SocketAddr,
    stack: Arc<dyn app::StackView>,
    _stop: oneshot::Sender<()>,
    _task: JoinHandle<app::Stopped>,
}

/// Starts one proxy instance in this process, as `main` would with these variables.
async fn start_proxy(vars: &BTreeMap<&str, String>) -> Running {
    let config = config::Config::from_lookup(|name| vars.get(name).cloned()).expect("settings");
    let proxy = app::Proxy::bind(config).await.expect("bind the proxy");
    let addr = proxy.local_addr();
    let stack = proxy.stack();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(proxy.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stack,
        _stop: stop,
        _task: task,
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    circuit: String,
    cache: String,
    body: String,
}

async fn get(client: &reqwest::Client, proxy: &Running, path: &str) -> Answer {
    let resp = client
        .get(format!("http://{}{path}", proxy.addr))
        // The replicas' one public name, as a load balancer in front of them passes it on.
        .header("host", "shop.test")
        .send()
        .await
        .expect("the proxy answers");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (circuit, cache) = (header("x-circuit"), header("x-cache"));
    Answer {
        status: resp.status().as_u16(),
        circuit,
        cache,
        body: resp.text().await.unwrap(),
    }
}

/// Polls `f` every 10 ms until it holds, for at most [`BOUND`].
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let reached = tokio::time::timeout(BOUND, async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{what} within {BOUND:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_one_proxy_opens_is_open_in_the_other_which_serves_its_stale_answers() {
    let (url, _redis) = redis_support::shared_url();
    let prefix = redis_support::prefix("proxy");
    let state = Arc::new(Backend::default());
    let backend = start_backend(state.clone()).await;
    let vars = BTreeMap::from([
        ("RETTER_SERVER_LISTEN", "127.0.0.1:0".to_owned()),
        ("RETTER_BACKEND_BASEURL", backend.url("")),
        ("RETTER_RETRY_MAX", "0".to_owned()),
        ("RETTER_BREAKER_CONSECUTIVE_FAIL", "2".to_owned()),
        ("RETTER_BREAKER_OPEN_DURATION", "60s".to_owned()),
        ("RETTER_REDIS_URL", url.clone()),
        ("RETTER_REDIS_PREFIX", prefix.clone()),
        ("RETTER_FLEET_KEY", "c0ffee".repeat(10) + "c0ff"),
    ]);
    let (a, b) = (start_proxy(&vars).await, start_proxy(&vars).await);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(BOUND)
        .build()
        .unwrap();

    // Both instances listen to the fleet's channel before anything happens.
    let redis = redis::Client::open(url.as_str()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let channel = format!("{prefix}:circuits");
    until("both proxies subscribed", || {
        let (mut conn, channel) = (conn.clone(), channel.clone());
        async move {
            let subs: redis::RedisResult<(String, u64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&channel)
                .query_async(&mut conn)
                .await;
            subs.is_ok_and(|(_, n)| n >= 2)
        }
    })
    .await;

    // Only A fetches the page: it keeps it, in memory and (sealed) in Redis.
    let first = get(&client, &a, "/page").await;
    assert_eq!((first.status, first.body.as_str()), (200, PAGE));

    state.down.store(true, Ordering::SeqCst);
    assert_eq!(get(&client, &a, "/page").await.status, 503);
    let tripped = get(&client, &a, "/other").await;
    assert_eq!((tripped.status, tripped.circuit.as_str()), (503, "open"));
    let hits = state.hits.load(Ordering::SeqCst);
    assert_eq!(hits, 3);

    // A stored the open circuit in Redis, and published it in the same transaction.
    let stored = format!(
        "{prefix}:state:{}",
        http_doer::breaker::host_key(&backend.url("").parse().unwrap())
    );
    until("the open circuit stored in Redis", || {
        let (mut conn, stored) = (conn.clone(), stored.clone());
        async move {
            let v: redis::RedisResult<Option<String>> =
                redis::cmd("GET").arg(&stored).query_async(&mut conn).await;
            v.is_ok_and(|v| v.is_some())
        }
    })
    .await;
    // B's listener reads the message published with it, and fetches the circuit's answers:
    // waited for by their effects on B, not by time.
    until("B's circuit open, and A's answer fetched", || {
        let ready = b.stack.circuit() == "open" && b.stack.stale_answers() > 0;
        async move { ready }
    })
    .await;

    let refused = get(&client, &b, "/other").await;
    assert_eq!(
        (
            refused.status,
            refused.circuit.as_str(),
            refused.cache.as_str()
        ),
        (503, "open", "none"),
        "{refused:?}"
    );
    let stale = get(&client, &b, "/page").await;
    assert_eq!(
        (stale.status, stale.cache.as_str(), stale.body.as_str()),
        (200, "stale", PAGE),
        "B serves the answer A kept: {stale:?}"
    );
    assert_eq!(
        state.hits.load(Ordering::SeqCst),
        hits,
        "B never called the down backend"
    );

    // Nothing in Redis holds the page in clear.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    for key in keys {
        let dumped: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let dumped = dumped.unwrap_or_default();
        assert!(
            !dumped.windows(8).any(|w| w == &PAGE.as_bytes()[..8]),
            "{key} holds the page in clear"
        );
    }
}
