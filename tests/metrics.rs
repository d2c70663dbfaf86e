//! Metrics (feature `metrics`): names, units, attributes and counts of one scripted run with
//! retries, hedges, a breaker opening, a stale answer and a refusal, recorded by metrics-util's
//! `DebuggingRecorder`; and no secret in any attribute.
#![cfg(feature = "metrics")]

use std::collections::BTreeMap;
use std::time::Duration;

use http_doer::breaker::{ServeStale, StaleAnswer};
use http_doer::hedging::HedgeBudget;
use http_doer::retrying::{Backoff, RetryBudget};
use http_doer::telemetry::{self, names};
use http_doer::testing::{ScriptedDoer, response};
use http_doer::{Body, Doer, DoerExt, ErrorKind, Request};
use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[allow(dead_code)]
mod support;

const SECRET_QUERY: &str = "s3cr3t-query";
const SECRET_HEADER: &str = "sekrit-bearer";

fn get(path: &str) -> Request {
    http::Request::get(format!("https://api.test{path}?token={SECRET_QUERY}"))
        .header("authorization", format!("Bearer {SECRET_HEADER}"))
        .body(Body::empty())
        .unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type Labels = Vec<(String, String)>;

/// One recorded series: its unit and value.
struct Series {
    unit: Option<Unit>,
    value: DebugValue,
}

/// Every recorded series, by name and sorted attributes.
type Recorded = BTreeMap<(String, Labels), Series>;

/// Runs `run` on a paused current-thread runtime under a local `DebuggingRecorder`; returns
/// every series it recorded.
fn record(run: impl Future<Output = ()>) -> Recorded {
    record_on(true, run)
}

/// [`record`], on a runtime whose clock is paused or real (for real sockets).
fn record_on(paused: bool, run: impl Future<Output = ()>) -> Recorded {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(paused)
            .build()
            .unwrap()
            .block_on(run);
    });
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, unit, _help, value)| {
            let (_kind, key) = key.into_parts();
            let mut labels: Labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.name().to_owned(), labels), Series { unit, value })
        })
        .collect()
}

async fn scripted_run() {
    let backend = ScriptedDoer::new()
        // Call A: both copies of attempt 1 fail fast (a hedge sent at once), attempt 2's
        // original stalls and its hedge wins.
        .then_after(ms(10), Ok(response(503, "busy")))
        .then_after(ms(10), Ok(response(503, "busy")))
        .then_after(ms(1000), Ok(response(200, "slow")))
        .then_after(ms(5), Ok(response(200, "fast")))
        // Call B: three failures in a row open the circuit; the hedge of attempt 2 is refused
        // and answered from the stale cache.
        .then_after(ms(10), Ok(response(503, "busy")))
        .then_after(ms(10), Ok(response(503, "busy")))
        .then_after(ms(10), Ok(response(503, "busy")));
    let stack = backend
        .clone()
        .telemetry()
        .breaker()
        .consecutive_failures(3)
        .serve_stale(ServeStale::new(Duration::from_secs(300)))
        .hedging()
        .fixed_delay(ms(50))
        .budget(HedgeBudget::unlimited())
        .retrying()
        .max_retries(1)
        .backoff(Backoff::constant(ms(100)))
        .no_budget()
        .logging();

    let a = stack.execute(get("/items")).await.unwrap();
    assert_eq!(a.into_body().text().await.unwrap(), "fast");

    let b = stack.execute(get("/items")).await.unwrap();
    assert!(
        b.extensions().get::<StaleAnswer>().is_some(),
        "served stale"
    );
    assert_eq!(b.into_body().text().await.unwrap(), "fast");

    // Call C: nothing cached for this path, so the open circuit refuses it.
    let c = stack.execute(get("/other")).await.unwrap_err();
    assert_eq!(c.kind(), ErrorKind::BreakerOpen);
    assert_eq!(backend.remaining(), 0);

    // Call D: a retry budget of nothing refuses the retry.
    let d = ScriptedDoer::new()
        .then_status(503)
        .retrying()
        .budget(RetryBudget::new(0.0, 0));
    assert_eq!(d.execute(get("/items")).await.unwrap().status(), 503);
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    let mut v: Labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

fn counter(series: &Recorded, name: &str, l: &[(&str, &str)]) -> u64 {
    match series.get(&(name.to_owned(), labels(l))).map(|s| &s.value) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        Some(other) => panic!("{name} {l:?} is not a counter: {other:?}"),
    }
}

#[test]
fn a_scripted_run_records_durations_and_resilience_events() {
    let series = record(async {
        telemetry::describe_metrics();
        scripted_run().await;
    });

    // Resilience events, one counter by `event.name`.
    let event = |name: &str| {
        counter(
            &series,
            names::RESILIENCE_EVENTS,
            &[(names::EVENT_NAME, name)],
        )
    };
    let retries_503 = counter(
        &series,
        names::RESILIENCE_EVENTS,
        &[
            (names::EVENT_NAME, names::EVENT_RETRY),
            (names::ERROR_TYPE, "503"),
        ],
    );
    assert_eq!(
        retries_503, 2,
        "one retry in call A, one in call B, both after a 503"
    );
    assert_eq!(
        event(names::EVENT_HEDGE_SENT),
        4,
        "two hedges in each of A and B"
    );
    assert_eq!(
        event(names::EVENT_HEDGE_WON),
        2,
        "A's second attempt, B's stale hedge"
    );
    assert_eq!(event(names::EVENT_BREAKER_OPENED), 1);
    assert_eq!(event(names::EVENT_STALE_ANSWER), 1);
    assert_eq!(event(names::EVENT_BREAKER_REJECTED), 1, "call C");
    assert_eq!(event(names::EVENT_RETRY_BUDGET_EXHAUSTED), 1, "call D");
    assert_eq!(event(names::EVENT_HEDGE_BUDGET_EXHAUSTED), 0);
    let events = series
        .get(&(
            names::RESILIENCE_EVENTS.to_owned(),
            labels(&[
                (names::EVENT_NAME, names::EVENT_RETRY),
                (names::ERROR_TYPE, "503"),
            ]),
        ))
        .unwrap();
    assert_eq!(events.unit, Some(Unit::Count));

    // The duration: one sample per exchange that reached the network (not the copy that
    // lost and was cancelled, nor what the breaker answered itself).
    let base = [
        (names::HTTP_REQUEST_METHOD, "GET"),
        (names::SERVER_ADDRESS, "api.test"),
        (names::SERVER_PORT, "443"),
    ];
    let duration = |extra: &[(&str, &str)]| {
        let l: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
        match series.get(&(names::HTTP_CLIENT_REQUEST_DURATION.to_owned(), labels(&l))) {
            Some(Series {
                unit,
                value: DebugValue::Histogram(v),
            }) => {
                assert_eq!(*unit, Some(Unit::Seconds));
                v.iter().map(|f| f.into_inner()).collect::<Vec<_>>()
            }
            other => panic!("no duration for {l:?}: {:?}", other.map(|s| &s.value)),
        }
    };
    let ok = duration(&[(names::HTTP_RESPONSE_STATUS_CODE, "200")]);
    assert_eq!(
        ok,
        vec![0.005],
        "the hedge that won call A, 5 ms of paused time"
    );
    let failed = duration(&[
        (names::HTTP_RESPONSE_STATUS_CODE, "503"),
        (names::ERROR_TYPE, "503"),
    ]);
    assert_eq!(
        failed,
        vec![0.01; 5],
        "two in A, three in B (call D has no Telemetry)"
    );

    // Bounded attributes, and no secret anywhere: no path, no query, no header value.
    for (name, l) in series.keys() {
        for (k, v) in l {
            assert!(
                [
                    names::EVENT_NAME,
                    names::ERROR_TYPE,
                    names::HTTP_REQUEST_METHOD,
                    names::SERVER_ADDRESS,
                    names::SERVER_PORT,
                    names::HTTP_RESPONSE_STATUS_CODE,
                ]
                .contains(&k.as_str()),
                "{name}: unexpected attribute {k}"
            );
            for bad in [SECRET_QUERY, SECRET_HEADER, "/items", "/other", "token"] {
                assert!(!v.contains(bad), "{name}: {k}={v} leaks {bad}");
            }
        }
    }
}

#[test]
fn server_attributes_can_be_turned_off() {
    let series = record(async {
        let doer = ScriptedDoer::new()
            .then_error(ErrorKind::Timeout)
            .telemetry()
            .server_attributes(false);
        assert!(doer.execute(get("/x")).await.unwrap_err().is_timeout());
    });
    let keys: Vec<&Labels> = series.keys().map(|(_name, l)| l).collect();
    assert_eq!(
        keys,
        vec![&labels(&[
            (names::HTTP_REQUEST_METHOD, "GET"),
            (names::ERROR_TYPE, "timeout")
        ])]
    );
}

#[test]
fn limiters_count_their_waits_and_refusals() {
    use http_doer::limit::Rate;

    let series = record(async {
        // One call a second, no wait longer than 500 ms.
        let paced = ScriptedDoer::new()
            .then_status(200)
            .then_status(200)
            .rate_limiting(Rate::per_second(1).burst(1))
            .max_wait(ms(500));
        paced.execute(get("/a")).await.unwrap();
        let refused = paced.execute(get("/a")).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::RateLimited);
        tokio::time::sleep(ms(600)).await;
        paced.execute(get("/a")).await.unwrap();

        // One slot, one place in the queue: of three calls at once, one runs, one
        // queues, one is refused.
        let backend = ScriptedDoer::new()
            .then_after(ms(100), Ok(response(200, "")))
            .then_after(ms(100), Ok(response(200, "")));
        let bulkhead = backend.concurrency_limit(1).max_queue(1);
        let call = || async { bulkhead.execute(get("/b")).await.map(|r| r.status()) };
        let (a, b, c) = tokio::join!(call(), call(), call());
        let refused = [a, b, c].into_iter().filter(|r| r.is_err()).count();
        assert_eq!(refused, 1);
    });
    let get = |name: &str, event: &str| {
        series
            .get(&(name.to_owned(), labels(&[(names::EVENT_NAME, event)])))
            .map(|s| &s.value)
    };
    for (event, waited) in [
        (names::EVENT_RATE_LIMIT_WAIT, 0.4),
        (names::EVENT_CONCURRENCY_LIMIT_WAIT, 0.1),
    ] {
        assert_eq!(
            get(names::RESILIENCE_EVENTS, event),
            Some(&DebugValue::Counter(1)),
            "{event}"
        );
        match get(names::LIMIT_WAIT_DURATION, event) {
            Some(DebugValue::Histogram(v)) => {
                assert_eq!(v.len(), 1);
                assert!((v[0].into_inner() - waited).abs() < 0.01, "{event}: {v:?}");
            }
            other => panic!("{event}: {other:?}"),
        }
    }
    for event in [
        names::EVENT_RATE_LIMIT_REJECTED,
        names::EVENT_CONCURRENCY_LIMIT_REJECTED,
    ] {
        assert_eq!(
            get(names::RESILIENCE_EVENTS, event),
            Some(&DebugValue::Counter(1)),
            "{event}"
        );
    }
}

#[test]
fn a_breaker_counts_every_state_it_enters() {
    let series = record(async {
        let breaker = ScriptedDoer::new()
            .then_status(503)
            .then_status(200)
            .telemetry()
            .breaker()
            .consecutive_failures(1)
            .half_open_probes(1);
        assert_eq!(breaker.execute(get("/a")).await.unwrap().status(), 503);
        tokio::time::sleep(http_doer::breaker::DEFAULT_OPEN_DURATION).await;
        // The probe: half-open on its way out, closed by its answer.
        assert_eq!(breaker.execute(get("/a")).await.unwrap().status(), 200);
    });
    for event in [
        names::EVENT_BREAKER_OPENED,
        names::EVENT_BREAKER_HALF_OPENED,
        names::EVENT_BREAKER_CLOSED,
    ] {
        let n = counter(
            &series,
            names::RESILIENCE_EVENTS,
            &[(names::EVENT_NAME, event)],
        );
        assert_eq!(n, 1, "{event}");
    }
}

/// Over both real backends on loopback: one duration sample per exchange, under the
/// server's address and port and the status it sent, and no secret of the URL or the
/// headers in any attribute.
#[test]
fn durations_are_recorded_over_both_backends() {
    let backends: Vec<(&str, Box<dyn Doer>)> = vec![
        ("reqwest", Box::new(http_doer::ReqwestDoer::new())),
        #[cfg(feature = "ureq")]
        ("ureq", Box::new(http_doer::UreqDoer::new())),
    ];
    for (name, backend) in backends {
        let mut port = String::new();
        let series = record_on(false, async {
            let server = support::server::start().await;
            let stack = backend.telemetry();
            for code in [200, 503, 200] {
                let url = server.url(&format!("/status/{code}?token={SECRET_QUERY}"));
                port = url::Url::parse(&url).unwrap().port().unwrap().to_string();
                let req = http::Request::get(url)
                    .header("authorization", format!("Bearer {SECRET_HEADER}"))
                    .body(Body::empty())
                    .unwrap();
                let resp = stack.execute(req).await.unwrap();
                assert_eq!(resp.status(), code, "{name}");
            }
        });
        let samples = |extra: &[(&str, &str)]| {
            let mut l = vec![
                (names::HTTP_REQUEST_METHOD, "GET"),
                (names::SERVER_ADDRESS, "127.0.0.1"),
                (names::SERVER_PORT, port.as_str()),
            ];
            l.extend_from_slice(extra);
            match series.get(&(names::HTTP_CLIENT_REQUEST_DURATION.to_owned(), labels(&l))) {
                Some(Series {
                    value: DebugValue::Histogram(v),
                    ..
                }) => v.len(),
                other => panic!(
                    "{name}: no duration for {l:?}: {:?}",
                    other.map(|s| &s.value)
                ),
            }
        };
        assert_eq!(
            samples(&[(names::HTTP_RESPONSE_STATUS_CODE, "200")]),
            2,
            "{name}"
        );
        assert_eq!(
            samples(&[
                (names::HTTP_RESPONSE_STATUS_CODE, "503"),
                (names::ERROR_TYPE, "503"),
            ]),
            1,
            "{name}"
        );
        for (metric, l) in series.keys() {
            for (k, v) in l {
                for bad in [SECRET_QUERY, SECRET_HEADER, "/status", "token"] {
                    assert!(!v.contains(bad), "{name}: {metric}: {k}={v} leaks {bad}");
                }
            }
        }
    }
}
