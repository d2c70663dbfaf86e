//! Loopback calls: each backend against the raw library it wraps and against
//! reqwest-middleware, interleaved in one run, reported as medians over rounds with min-max.
//!
//! One loopback server (`loopback.rs`: hyper, HTTP/1.1 keep-alive, a 13-byte answer, on its
//! own thread), and every client on one current-thread runtime, one request at a time:
//!
//! | client | what it is |
//! |---|---|
//! | `reqwest raw` | the very `reqwest::Client` `ReqwestDoer::new()` built (its 30 s timeout, its pool): `get(url).send()`, `bytes()` |
//! | `ReqwestDoer::new()` | an `http::Request` per call, `execute`, `bytes()` |
//! | `reqwest-middleware` | `ClientWithMiddleware` without middleware over that same client |
//! | `reqwest raw, no timeout` | a client built alike but without a timeout: what the default 30 s costs |
//! | `ureq raw` | the very `ureq::Agent` `UreqDoer::new()` built (its 30 s timeout, its resolver), `run` + `read_to_vec` in `spawn_blocking`, as any async caller of ureq must |
//! | `UreqDoer::new()` | as `ReqwestDoer::new()` |
//! | `ureq raw, no timeout` | an agent with ureq's defaults (no timeout), statuses as responses |
//! | `ureq raw, 30 s, ureq's resolver` | an agent with UreqDoer's settings but ureq's own resolver, which starts a thread per call to bound each lookup (what `UreqDoer::new()` was) |
//! | `ureq raw direct, no timeout` | the no-timeout agent called on the runtime's thread, no hand-off: a reference only |
//! | `ureq raw direct (same agent)` | `UreqDoer::new()`'s agent called so: the hand-off to a blocking thread, which no async caller of ureq can avoid, is what the doer pays over it |
//!
//! Method (see README.md): run pinned, `taskset -c 0 cargo bench -p http-doer-benches --bench
//! backends`. A round runs every client `SLICES` times for `BATCH` calls, the order of clients
//! rotating every slice, so that a change of load on a shared machine hits all of them alike;
//! a ratio is computed per round, and the median over the rounds is printed with the min-max.
//! `BENCH_ROUNDS`, `BENCH_SLICES` and `BENCH_BATCH` change the defaults (7, 10, 200).

use std::hint::black_box;
use std::time::{Duration, Instant};

use http_doer::{Body, Doer, ReqwestDoer, UreqDoer};
use hyper::body::Bytes;

mod loopback;

/// The timeout both wrappers have by default; the raw clients that compare "with the same
/// settings" have it too.
const TIMEOUT: Duration = http_doer::backend::DEFAULT_TIMEOUT;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Client {
    RawReqwest,
    ReqwestDoer,
    Middleware,
    RawReqwestNoTimeout,
    RawUreq,
    UreqDoer,
    RawUreqNoTimeout,
    RawUreqThreadPerLookup,
    RawUreqDirect,
    RawUreqDirectSameAgent,
}

const CLIENTS: [(Client, &str); 10] = [
    (Client::RawReqwest, "reqwest raw (same client, 30 s)"),
    (Client::ReqwestDoer, "ReqwestDoer::new()"),
    (Client::Middleware, "reqwest-middleware (same client)"),
    (Client::RawReqwestNoTimeout, "reqwest raw, no timeout"),
    (Client::RawUreq, "ureq raw (same agent, 30 s)"),
    (Client::UreqDoer, "UreqDoer::new()"),
    (Client::RawUreqNoTimeout, "ureq raw, no timeout"),
    (
        Client::RawUreqThreadPerLookup,
        "ureq raw, 30 s, ureq's resolver",
    ),
    (Client::RawUreqDirect, "ureq raw direct, no timeout"),
    (
        Client::RawUreqDirectSameAgent,
        "ureq raw direct (same agent, 30 s)",
    ),
];

/// The ratios printed: (what, numerator, denominator, target).
const RATIOS: [(&str, Client, Client, Option<f64>); 8] = [
    (
        "ReqwestDoer::new() / reqwest raw, same client",
        Client::ReqwestDoer,
        Client::RawReqwest,
        Some(1.02),
    ),
    (
        "reqwest-middleware / reqwest raw (rival)",
        Client::Middleware,
        Client::RawReqwest,
        None,
    ),
    (
        "ReqwestDoer::new() / reqwest raw, no timeout",
        Client::ReqwestDoer,
        Client::RawReqwestNoTimeout,
        None,
    ),
    (
        "UreqDoer::new() / ureq raw, same agent",
        Client::UreqDoer,
        Client::RawUreq,
        Some(1.15),
    ),
    (
        "UreqDoer::new() / ureq raw, no timeout",
        Client::UreqDoer,
        Client::RawUreqNoTimeout,
        Some(1.15),
    ),
    (
        "ureq raw, ureq's resolver / ureq raw, no timeout",
        Client::RawUreqThreadPerLookup,
        Client::RawUreqNoTimeout,
        None,
    ),
    (
        "ureq raw direct, same agent / no timeout",
        Client::RawUreqDirectSameAgent,
        Client::RawUreqDirect,
        None,
    ),
    (
        "UreqDoer::new() / ureq raw direct, same agent (hand-off)",
        Client::UreqDoer,
        Client::RawUreqDirectSameAgent,
        None,
    ),
];

struct Fixture {
    url: String,
    reqwest: reqwest::Client,
    reqwest_no_timeout: reqwest::Client,
    reqwest_doer: ReqwestDoer,
    middleware: reqwest_middleware::ClientWithMiddleware,
    agent: ureq::Agent,
    agent_no_timeout: ureq::Agent,
    agent_thread_per_lookup: ureq::Agent,
    ureq_doer: UreqDoer,
}

impl Fixture {
    fn new() -> Self {
        let url = format!("http://{}/", loopback::start(|| {}));
        let reqwest_doer = ReqwestDoer::new();
        let ureq_doer = UreqDoer::new();
        let reqwest = reqwest_doer.client().clone();
        let no_timeout = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build();
        // UreqDoer::new()'s settings, with ureq's own resolver.
        let thread_per_lookup = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .allow_non_standard_methods(true)
            .timeout_connect(Some(http_doer::backend::DEFAULT_CONNECT_TIMEOUT))
            .timeout_global(Some(TIMEOUT))
            .build();
        Fixture {
            url,
            middleware: reqwest_middleware::ClientBuilder::new(reqwest.clone()).build(),
            reqwest,
            reqwest_no_timeout: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(http_doer::backend::DEFAULT_CONNECT_TIMEOUT)
                .tls_backend_preconfigured(ring_tls())
                .build()
                .expect("a client"),
            reqwest_doer,
            agent: ureq_doer.agent().clone(),
            agent_no_timeout: ureq::Agent::new_with_config(no_timeout),
            agent_thread_per_lookup: ureq::Agent::new_with_config(thread_per_lookup),
            ureq_doer,
        }
    }

    async fn call(&self, client: Client) {
        let body = match client {
            Client::RawReqwest => raw_reqwest(&self.reqwest, &self.url).await,
            Client::RawReqwestNoTimeout => raw_reqwest(&self.reqwest_no_timeout, &self.url).await,
            Client::Middleware => {
                let resp = self.middleware.get(&self.url).send().await;
                resp.expect("an answer").bytes().await.expect("a body")
            }
            Client::ReqwestDoer => self.through_doer(&self.reqwest_doer).await,
            Client::UreqDoer => self.through_doer(&self.ureq_doer).await,
            Client::RawUreq => self.raw_ureq_blocking(&self.agent).await,
            Client::RawUreqNoTimeout => self.raw_ureq_blocking(&self.agent_no_timeout).await,
            Client::RawUreqThreadPerLookup => {
                self.raw_ureq_blocking(&self.agent_thread_per_lookup).await
            }
            Client::RawUreqDirect => Bytes::from(raw_ureq(&self.agent_no_timeout, &self.url)),
            Client::RawUreqDirectSameAgent => Bytes::from(raw_ureq(&self.agent, &self.url)),
        };
        black_box(body);
    }

    async fn raw_ureq_blocking(&self, agent: &ureq::Agent) -> Bytes {
        let (agent, url) = (agent.clone(), self.url.clone());
        let body = tokio::task::spawn_blocking(move || raw_ureq(&agent, &url)).await;
        Bytes::from(body.expect("a blocking task"))
    }

    async fn through_doer(&self, doer: &impl Doer) -> Bytes {
        let req = http::Request::get(&self.url).body(Body::empty());
        let resp = doer.execute(req.expect("a request")).await;
        resp.expect("an answer")
            .into_body()
            .bytes()
            .await
            .expect("a body")
    }

    async fn time(&self, client: Client, n: u64) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            self.call(client).await;
        }
        start.elapsed()
    }
}

/// reqwest is built without a crypto provider (as in http-doer), so a client of our own is
/// handed a TLS setup, as `ReqwestDoer::new()` does: ring, no roots (the server is plain HTTP).
fn ring_tls() -> rustls::ClientConfig {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

async fn raw_reqwest(client: &reqwest::Client, url: &str) -> Bytes {
    let resp = client.get(url).send().await.expect("an answer");
    resp.bytes().await.expect("a body")
}

fn raw_ureq(agent: &ureq::Agent, url: &str) -> Vec<u8> {
    let mut resp = agent.get(url).call().expect("an answer");
    resp.body_mut().read_to_vec().expect("a body")
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `(median, min, max)` of `values`.
fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

fn main() {
    // `cargo test --benches` runs this without `--bench`: a quick pass that checks it works.
    let quick = !std::env::args().any(|a| a == "--bench");
    let (rounds, slices, batch) = if quick {
        (1, 1, 5)
    } else {
        (
            env("BENCH_ROUNDS", 7) as usize,
            env("BENCH_SLICES", 10),
            env("BENCH_BATCH", 200),
        )
    };
    let f = Fixture::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a client runtime");
    // µs per call, per round, per client.
    let mut per_call: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); CLIENTS.len()];
    rt.block_on(async {
        // Warm every pool and the blocking pool's thread.
        for (client, _) in CLIENTS {
            f.time(client, batch).await;
        }
        for round in 0..rounds {
            let mut totals = [Duration::ZERO; CLIENTS.len()];
            for slice in 0..slices as usize {
                for k in 0..CLIENTS.len() {
                    let i = (k + slice + round) % CLIENTS.len();
                    totals[i] += f.time(CLIENTS[i].0, batch).await;
                }
            }
            for (i, total) in totals.iter().enumerate() {
                let calls = (slices * batch) as f64;
                per_call[i].push(total.as_secs_f64() * 1e6 / calls);
            }
        }
    });
    let index = |c: Client| CLIENTS.iter().position(|(k, _)| *k == c).expect("listed");
    println!();
    println!(
        "{rounds} rounds of {slices} interleaved slices of {batch} calls per client; \
         medians (min-max over rounds)"
    );
    println!();
    println!("| client | µs per call |");
    println!("|---|---|");
    for (i, (_, label)) in CLIENTS.iter().enumerate() {
        let (m, lo, hi) = spread(&mut per_call[i].clone());
        println!("| {label} | {m:.1} ({lo:.1}-{hi:.1}) |");
    }
    println!();
    println!("| ratio of times | median (min-max) | target |");
    println!("|---|---|---|");
    for (label, num, den, target) in RATIOS {
        let (n, d) = (&per_call[index(num)], &per_call[index(den)]);
        let mut ratios: Vec<f64> = n.iter().zip(d).map(|(a, b)| a / b).collect();
        let (m, lo, hi) = spread(&mut ratios);
        let target = target.map_or(String::from("-"), |t| format!("≤ {t:.2}"));
        println!("| {label} | {m:.3} ({lo:.3}-{hi:.3}) | {target} |");
    }
}
