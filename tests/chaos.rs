//! `Chaos` under the README's stack: with 30% of attempts failing on purpose, the stack keeps
//! its promises. Paused time and fixed seeds, so every run is the same run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_doer::breaker::{ServeStale, StaleAnswer, State};
use http_doer::chaos::{ChaosSwitch, Injected};
use http_doer::hedging::DEFAULT_MAX_COPIES;
use http_doer::retrying::DEFAULT_MAX_RETRIES;
use http_doer::signing::Bearer;
use http_doer::testing::{doer_fn, response};
use http_doer::{Attempts, Body, Doer, DoerExt, ErrorKind, Request};
use tokio::time::Instant;

const SEED: u64 = 2024;
const DEADLINE: Duration = Duration::from_secs(10);
const CALLS: usize = 300;

/// What one scenario saw, call by call and in sum.
#[derive(Debug, Default, PartialEq)]
struct Run {
    /// One word per call: `ok`, `stale`, or the error kind.
    trace: Vec<String>,
    /// The most backend requests (copies and attempts) one call made.
    max_sent: u64,
    /// The most attempts `Retrying` reported for one call.
    max_attempts: u32,
    /// The longest call.
    max_elapsed: Duration,
    /// Times a circuit opened.
    opened: usize,
    /// Backend requests, and how many of them Chaos failed or answered itself.
    sent: u64,
    injected: u64,
}

/// The README's stack over a backend double, with Chaos directly over the double (below
/// `Signing`): 15% refused connections, 5% timeouts, 10% injected 503s, and 5% of requests
/// stalled 30 s (past the deadline). `CALLS` GETs over five URLs, 200 ms apart.
async fn scenario(seed: u64, switch: ChaosSwitch) -> Run {
    let backend = doer_fn(|req: Request| async move {
        // A real service takes a little time, which the hedging delay learns.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(response(200, format!("fresh {}", req.uri().path())))
    });
    let chaos = backend
        .chaos()
        .fault(0.15, ErrorKind::Connect)
        .fault(0.05, ErrorKind::Timeout)
        .outcome(0.10, 503, "injected")
        .latency(0.05, Duration::from_secs(30))
        .switch(switch)
        .seed(seed);
    let probe = chaos.clone();
    let opened = Arc::new(AtomicUsize::new(0));
    let count = opened.clone();
    let stack = chaos
        .signing(Bearer::new("tok").unwrap())
        .breaker()
        // Trips on a quarter of failures over 20 calls: 30% injected is enough.
        .failure_rate(0.25, 20)
        .on_state_change(move |c| {
            if c.to == State::Open {
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
        .serve_stale(ServeStale::new(Duration::from_secs(300)))
        .hedging()
        .retrying()
        .seed(seed)
        .total_timeout(DEADLINE)
        .logging();

    let mut run = Run::default();
    for i in 0..CALLS {
        let req = http::Request::get(format!("https://api.test/items/{}", i % 5))
            .body(Body::empty())
            .unwrap();
        let (before, start) = (probe.stats().calls, Instant::now());
        let result = stack.execute(req).await;
        run.max_elapsed = run.max_elapsed.max(start.elapsed());
        run.max_sent = run.max_sent.max(probe.stats().calls - before);
        let (word, attempts) = match result {
            Ok(resp) => {
                let attempts = resp.extensions().get::<Attempts>().map_or(1, |a| a.0);
                let stale = resp.extensions().get::<StaleAnswer>().is_some();
                (if stale { "stale" } else { "ok" }.to_owned(), attempts)
            }
            Err(e) => (format!("{:?}", e.kind()), e.attempts().unwrap_or(1)),
        };
        run.trace.push(word);
        run.max_attempts = run.max_attempts.max(attempts);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stats = probe.stats();
    run.opened = opened.load(Ordering::SeqCst);
    run.sent = stats.calls;
    run.injected = stats.faults + stats.outcomes;
    run
}

fn count(run: &Run, word: &str) -> usize {
    run.trace.iter().filter(|w| *w == word).count()
}

#[tokio::test(start_paused = true)]
async fn the_readme_stack_keeps_its_promises_under_30_percent_faults() {
    let run = scenario(SEED, ChaosSwitch::new()).await;

    // The faults were there: about 30% of what reached the backend.
    let rate = run.injected as f64 / run.sent as f64;
    assert!(
        (0.15..=0.45).contains(&rate),
        "injected {rate:.2} of {}",
        run.sent
    );

    // Bounded attempts: never more than max retries + 1 per call, and no more backend
    // requests than that many attempts of at most `DEFAULT_MAX_COPIES` copies each.
    assert!(run.max_attempts <= DEFAULT_MAX_RETRIES + 1, "{run:?}");
    let most = u64::from((DEFAULT_MAX_RETRIES + 1) * DEFAULT_MAX_COPIES);
    assert!(run.max_sent <= most, "{} > {most}", run.max_sent);

    // The deadline held, stalled requests included.
    // Some call did stall into the deadline, and none went past it.
    assert_eq!(run.max_elapsed, DEADLINE);

    // The breaker opened on the injected failure rate, and stale answers were served.
    assert!(run.opened >= 1, "{run:?}");
    assert!(count(&run, "stale") >= 1, "{:?}", run.trace);

    // And most calls still got an answer.
    let answered = count(&run, "ok") + count(&run, "stale");
    assert!(
        answered * 10 >= CALLS * 8,
        "{answered} of {CALLS}: {:?}",
        run.trace
    );
}

#[tokio::test(start_paused = true)]
async fn a_seeded_run_repeats_and_a_switched_off_one_is_clean() {
    let first = scenario(SEED, ChaosSwitch::new()).await;
    let second = scenario(SEED, ChaosSwitch::new()).await;
    assert_eq!(first, second);

    let off = scenario(SEED, ChaosSwitch::disabled()).await;
    assert_eq!(off.injected, 0);
    assert_eq!(count(&off, "ok"), CALLS, "{:?}", off.trace);
    assert_eq!(off.opened, 0);
}

#[tokio::test(start_paused = true)]
async fn a_switch_flipped_at_run_time_starts_and_stops_injection() {
    let switch = ChaosSwitch::disabled();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let doer = doer_fn(|_req: Request| async { Ok(response(200, "real")) })
        .chaos()
        .fault(1.0, ErrorKind::Transport)
        .switch(switch.clone())
        .seed(SEED);
    let get = || {
        http::Request::get("https://api.test/")
            .body(Body::empty())
            .unwrap()
    };
    for on in [false, true, false] {
        switch.set(on);
        let result = doer.execute(get()).await;
        let mark = result.as_ref().err().and_then(Injected::of).copied();
        seen.lock().unwrap().push(mark);
    }
    assert_eq!(
        *seen.lock().unwrap(),
        [None, Some(Injected::Fault(ErrorKind::Transport)), None]
    );
}

#[allow(dead_code)]
mod support;

/// Over both real backends on loopback: an injected fault never reaches the server and is
/// judged as the real fault is (a refused connection is `Connect` either way, and retried), a
/// delayed answer is the server's own, marked.
#[tokio::test]
async fn over_a_real_backend_injected_faults_send_nothing_and_judge_alike() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let server = support::Loopback::serve(move |stream| {
        let counted = counted.clone();
        async move {
            let service = hyper::service::service_fn(move |_req| {
                counted.fetch_add(1, Ordering::SeqCst);
                async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"real")),
                    ))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        }
    })
    .await;
    let refused_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let get = |url: String| http::Request::get(url).body(Body::empty()).unwrap();
    let backends = || -> [(&str, Box<dyn Doer>); 2] {
        [
            ("reqwest", Box::new(http_doer::ReqwestDoer::new())),
            ("ureq", Box::new(http_doer::UreqDoer::new())),
        ]
    };
    for (name, backend) in backends() {
        let before = hits.load(Ordering::SeqCst);
        let faulty = backend.chaos().fault(1.0, ErrorKind::Connect).seed(SEED);
        let injected = faulty.execute(get(server.url("/"))).await.unwrap_err();
        assert_eq!(
            hits.load(Ordering::SeqCst),
            before,
            "{name}: nothing reached the server"
        );
        assert!(Injected::of(&injected).is_some(), "{name}: {injected:#}");
        // The real fault, from a closed loopback port, is the same kind.
        let real = faulty
            .get_ref()
            .execute(get(format!("http://127.0.0.1:{refused_port}/")))
            .await
            .unwrap_err();
        assert_eq!(real.kind(), injected.kind(), "{name}: {real:#}");
        assert!(Injected::of(&real).is_none(), "{name}");
    }
    for (name, backend) in backends() {
        // Retrying resends an injected refusal as it would a real one; the second attempt
        // reaches the server.
        let retried = backend
            .chaos()
            .fault(0.5, ErrorKind::Connect)
            .seed(SEED)
            .retrying()
            .backoff(http_doer::retrying::Backoff::constant(Duration::ZERO));
        let mut resent = 0;
        for _ in 0..10 {
            match retried.execute(get(server.url("/"))).await {
                Ok(resp) => {
                    assert_eq!(resp.status(), 200, "{name}");
                    let attempts = resp.extensions().get::<Attempts>().unwrap().0;
                    resent += usize::from(attempts > 1);
                }
                // Every attempt drawn a refusal: retried to the end, as a real one would be.
                Err(err) => {
                    assert!(Injected::of(&err).is_some(), "{name}: {err:#}");
                    assert_eq!(err.attempts(), Some(DEFAULT_MAX_RETRIES + 1), "{name}");
                }
            }
        }
        assert!(
            resent > 0,
            "{name}: an injected refusal was retried into an answer"
        );
    }
    for (name, backend) in backends() {
        let before = hits.load(Ordering::SeqCst);
        let slow = backend
            .chaos()
            .latency(1.0, Duration::from_millis(1))
            .seed(SEED);
        let resp = slow.execute(get(server.url("/"))).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), before + 1, "{name}");
        assert_eq!(
            resp.extensions().get::<Injected>(),
            Some(&Injected::Latency(Duration::from_millis(1))),
            "{name}"
        );
        assert_eq!(resp.into_body().text().await.unwrap(), "real", "{name}");
    }
}
