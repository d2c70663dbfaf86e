//! `Timeout`: a deadline for one call, with paused time (and loopback servers, over both
//! backends, for a stalled head and the rule on streamed bodies).

#[allow(dead_code)]
mod support;

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_doer::retrying::Backoff;
use http_doer::testing::{ScriptedDoer, doer_fn, response};
use http_doer::{
    Body, Doer, DoerExt, ErrorKind, Request, ReqwestDoer, ResponseMode, Retrying, Timeout, UreqDoer,
};
use support::faults::{self, Fault};
use tokio::time::Instant;

fn get(url: &str) -> Request {
    http::Request::get(url).body(Body::empty()).unwrap()
}

/// A Doer that never answers and says when its call is dropped.
fn never_answers(dropped: Arc<AtomicBool>) -> impl Doer + Clone {
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    doer_fn(move |_req| {
        let guard = Guard(dropped.clone());
        async move {
            let _guard = guard;
            pending::<Result<http_doer::Response, http_doer::Error>>().await
        }
    })
}

#[tokio::test(start_paused = true)]
async fn it_fires_at_exactly_the_deadline_and_not_before() {
    let d = Duration::from_secs(2);
    let start = Instant::now();
    let err = never_answers(Arc::default())
        .timeout(d)
        .execute(get("https://api.test/"))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), d);
    assert_eq!(err.kind(), ErrorKind::Timeout);

    let just_in_time =
        ScriptedDoer::new().then_after(d - Duration::from_millis(1), Ok(response(200, "ok")));
    let start = Instant::now();
    let resp = just_in_time
        .timeout(d)
        .execute(get("https://api.test/"))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), d - Duration::from_millis(1));
    assert_eq!(resp.into_body().text().await.unwrap(), "ok");
}

#[derive(Clone, Debug, PartialEq)]
struct Marker(u32);

#[tokio::test(start_paused = true)]
async fn answers_in_time_pass_through_untouched() {
    let answer = || {
        let mut resp = response(201, "body");
        resp.headers_mut().insert("x-kept", "yes".parse().unwrap());
        resp.extensions_mut().insert(Marker(7));
        resp
    };
    let backend = ScriptedDoer::new()
        .then(Ok(answer()))
        .then_after(Duration::from_secs(1), Ok(answer()))
        .then_error(ErrorKind::Connect);
    let doer = backend.clone().timeout(Duration::from_secs(2));
    let start = Instant::now();
    for wait in [Duration::ZERO, Duration::from_secs(1)] {
        let resp = doer.execute(get("https://api.test/")).await.unwrap();
        assert_eq!(start.elapsed(), wait);
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.headers()["x-kept"], "yes");
        assert_eq!(resp.extensions().get::<Marker>(), Some(&Marker(7)));
        assert_eq!(resp.into_body().bytes().await.unwrap(), "body");
    }
    let err = doer.execute(get("https://api.test/")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Connect,
        "the inner error is kept as it is"
    );
    assert_eq!(backend.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_error_names_the_deadline_and_its_length_and_redacts_the_url() {
    let err = never_answers(Arc::default())
        .timeout(Duration::from_millis(1500))
        .execute(get("https://user:pw@api.test/v1?api_key=s3cr3t"))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(
        err.to_string(),
        "timed out: call timeout of 1.5s passed (https://api.test/v1?api_key=REDACTED)"
    );
}

#[tokio::test(start_paused = true)]
async fn the_inner_call_is_dropped_when_the_deadline_passes() {
    let dropped = Arc::new(AtomicBool::new(false));
    let doer = never_answers(dropped.clone()).timeout(Duration::from_secs(1));
    doer.execute(get("https://api.test/")).await.unwrap_err();
    assert!(dropped.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_frees_everything_and_no_task_is_spawned() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let tasks_before = metrics.num_alive_tasks();
    let dropped = Arc::new(AtomicBool::new(false));
    let doer = never_answers(dropped.clone()).timeout(Duration::from_secs(10));

    let mut call = doer.execute(get("https://api.test/"));
    // Poll the call for a while, short of its deadline, from this task only.
    let outer = tokio::time::timeout(Duration::from_secs(1), &mut call).await;
    assert!(outer.is_err(), "still waiting");
    assert_eq!(metrics.num_alive_tasks(), tasks_before, "no task spawned");
    assert!(!dropped.load(Ordering::SeqCst));

    drop(call);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the inner call went with it"
    );
}

#[tokio::test(start_paused = true)]
async fn none_sets_no_deadline() {
    let backend = ScriptedDoer::new().then_after(Duration::from_secs(3600), Ok(response(200, "")));
    let doer = Timeout::new(backend, None);
    assert_eq!(doer.duration(), None);
    let start = Instant::now();
    doer.execute(get("https://api.test/")).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3600));
}

/// The rule for streamed responses: the deadline covers the head; the body, read after the
/// call returned, is not cut by it.
#[tokio::test(start_paused = true)]
async fn a_streamed_body_is_read_past_the_deadline() {
    let backend = doer_fn(|_req| async {
        let slow_tail = futures_util::stream::unfold(0, |n| async move {
            match n {
                0 => Some((Ok::<_, std::io::Error>(Bytes::from("head of body, ")), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Some((Ok(Bytes::from("tail")), 2))
                }
                _ => None,
            }
        });
        Ok(response(200, Body::from_stream(slow_tail)))
    });
    let start = Instant::now();
    let resp = backend
        .timeout(Duration::from_secs(1))
        .execute(get("https://api.test/big"))
        .await
        .unwrap();
    let text = resp.into_body().text().await.unwrap();
    assert_eq!(text, "head of body, tail");
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

/// Both backends, each with `timeout` as its own timeout and `mode` as its response mode.
fn backends(timeout: Duration, mode: ResponseMode) -> [(&'static str, Arc<dyn Doer>); 2] {
    [
        (
            "ReqwestDoer",
            Arc::new(ReqwestDoer::new().timeout(timeout).response_mode(mode)),
        ),
        (
            "UreqDoer",
            Arc::new(UreqDoer::new().timeout(timeout).response_mode(mode)),
        ),
    ]
}

/// Over a real backend: a head that never comes is cut at the deadline, and the connection is
/// dropped with the call.
#[tokio::test]
async fn loopback_a_stalled_head_is_cut_at_the_deadline() {
    let server = faults::start(Fault::Stall).await;
    for (name, backend) in backends(Duration::from_secs(30), ResponseMode::Buffered) {
        let doer = Timeout::new(backend, Duration::from_millis(200));
        let start = std::time::Instant::now();
        let err = doer.execute(get(&server.url("/"))).await.unwrap_err();
        let took = start.elapsed();
        assert!(
            err.is_timeout() && err.to_string().contains("call timeout"),
            "{name}: {err}"
        );
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(10),
            "{name}: {took:?}"
        );
    }
}

/// Over a real backend, streamed: the head comes at once, so the call is within its deadline;
/// a body that stalls afterwards is cut by the backend's own timeout, which covers the body.
#[tokio::test]
async fn loopback_a_body_stall_is_left_to_the_backend_timeout() {
    let server = faults::start(Fault::StallMidBody).await;
    // Generous: on a loaded machine a ureq head (a blocking thread, a lookup, a connect) may
    // take well over 100 ms; only the order of the two deadlines matters here.
    for (name, backend) in backends(Duration::from_secs(2), ResponseMode::Streamed) {
        let doer = Timeout::new(backend, Duration::from_secs(1));
        let resp = doer.execute(get(&server.url("/"))).await.unwrap();
        let err = resp.into_body().bytes().await.unwrap_err();
        assert!(err.is_timeout(), "{name}: {err}");
        assert!(
            !err.to_string().contains("call timeout"),
            "{name}: the backend's: {err}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_outside_retrying_and_total_timeout_fail_alike() {
    let d = Duration::from_secs(2);
    let outside = Retrying::new(never_answers(Arc::default())).timeout(d);
    let start = Instant::now();
    let a = outside.execute(get("https://api.test/")).await.unwrap_err();
    assert_eq!(start.elapsed(), d);

    let inside = Retrying::new(never_answers(Arc::default())).total_timeout(d);
    let start = Instant::now();
    let b = inside.execute(get("https://api.test/")).await.unwrap_err();
    assert_eq!(start.elapsed(), d);

    assert_eq!(
        (a.kind(), b.kind()),
        (ErrorKind::Timeout, ErrorKind::Timeout)
    );
    assert!(a.is_timeout() && b.is_timeout());
    assert!(a.to_string().contains("call timeout of 2s"), "{a}");
    assert!(b.to_string().contains("total timeout of 2s"), "{b}");
}

#[tokio::test(start_paused = true)]
async fn under_retrying_a_timed_out_get_is_retried() {
    let backend = ScriptedDoer::new()
        .then_after(Duration::from_secs(60), Ok(response(200, "stuck")))
        .then_status(200);
    let doer = backend
        .clone()
        .timeout(Duration::from_secs(1))
        .retrying()
        .backoff(Backoff::constant(Duration::ZERO));
    let start = Instant::now();
    let resp = doer.execute(get("https://api.test/")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert_eq!(backend.calls(), 2);
}

#[test]
fn accessors_debug_and_clone() {
    let mut doer = ScriptedDoer::new()
        .then_status(204)
        .timeout(Duration::from_secs(3));
    assert_eq!(doer.duration(), Some(Duration::from_secs(3)));
    assert_eq!(doer.get_ref().remaining(), 1);
    doer.get_mut().push(Ok(response(200, "")));
    let copy = doer.clone();
    assert_eq!(copy.get_ref().remaining(), 2, "clones share the script");
    let debug = format!("{doer:?}");
    assert!(
        debug.starts_with("Timeout {") && debug.contains("3s"),
        "{debug}"
    );
    assert_eq!(doer.into_inner().remaining(), 2);
}

/// "As long as it takes" is a timeout both backends keep, a streamed upload included (an
/// instant plus `Duration::MAX` would overflow).
#[tokio::test]
async fn loopback_the_longest_timeout_is_kept_on_both_backends() {
    let server = support::server::start().await;
    for (name, backend) in backends(Duration::MAX, ResponseMode::Buffered) {
        let chunks = [
            Ok::<_, http_doer::Error>(Bytes::from_static(b"up")),
            Ok(Bytes::from_static(b"load")),
        ];
        let req = http::Request::post(server.url("/echo"))
            .body(Body::from_stream(futures_util::stream::iter(chunks)))
            .unwrap();
        let resp = backend
            .execute(req)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(resp.status(), 200, "{name}");
        assert_eq!(resp.into_body().text().await.unwrap(), "upload", "{name}");
    }
}
