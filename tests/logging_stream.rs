//! Logging and streamed bodies: sizes as they are known (unknown is absent, never 0), a
//! streamed response logged at its head and again at its end with a redacted preview of its
//! first bytes, never holding a chunk back; over test doubles and over real loopback servers.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::HeaderValue;
use http_doer::logging::{KeepLog, StreamedBody};
use http_doer::testing::doer_fn;
use http_doer::{Body, Doer, DoerExt, Error, ErrorKind, Request, ReqwestDoer, ResponseMode};
use http_doer::{Response, UreqDoer};
use tokio::sync::mpsc;
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, registry};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[path = "support/capture.rs"]
mod capture;
use capture::{Capture, Scoped};

/// Installs a subscriber on this thread that keeps only Logging's events, not those of the HTTP
/// libraries under it.
fn capture() -> (Capture, Scoped) {
    capture::scoped(Capture::of(http_doer::logging::DEFAULT_TARGET))
}

/// Feeds a one-shot stream, chunk by chunk.
type Feed = mpsc::UnboundedSender<Result<Bytes, Error>>;

fn channel() -> (Feed, Body) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let chunks = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (tx, Body::from_stream(chunks))
}

/// A Doer that answers every request with 200 and the next streamed body of `bodies`, with
/// `content_type`.
fn streaming(bodies: Vec<Body>, content_type: &'static str) -> impl Doer + Clone {
    let bodies = Arc::new(Mutex::new(bodies.into_iter()));
    doer_fn(move |_req: Request| {
        let body = bodies.lock().unwrap().next().expect("a body per call");
        async move {
            let mut resp = Response::new(body);
            resp.headers_mut()
                .insert("content-type", HeaderValue::from_static(content_type));
            Ok(resp)
        }
    })
}

fn get(url: &str) -> Request {
    http::Request::get(url).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_streamed_response_is_logged_at_its_head_then_at_its_end_with_its_preview() {
    let (cap, _g) = capture();
    let log = KeepLog::new(10);
    let (feed, body) = channel();
    let doer = streaming(vec![body], "text/plain")
        .logging()
        .bodies(8)
        .keep_log(log.clone());
    let resp = doer
        .execute(get("http://a.test/big?token=t0k"))
        .await
        .unwrap();

    // The head: one event, size unknown (absent), the preview promised for later.
    let events = cap.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let head = &events[0];
    assert_eq!(head.get("message"), Some("http response"));
    assert_eq!(head.get("status"), Some("200"));
    assert_eq!(head.get("response_bytes"), None);
    assert_eq!(
        head.get("response_body"),
        Some("[streamed body, previewed when it ends]")
    );
    let line = log.to_string();
    assert!(
        line.contains("big?token=REDACTED status=200") && line.contains("body=streaming"),
        "{line}"
    );
    assert!(!line.contains("response_bytes"), "{line}");
    assert_eq!(log.entries()[0].response_bytes, None);

    // Every chunk reaches the reader as soon as it is sent, before the preview's 8 bytes are
    // all in: nothing is held back.
    let mut body = resp.into_body();
    feed.send(Ok(Bytes::from_static(b"hello "))).unwrap();
    assert_eq!(body.chunk().await.unwrap().unwrap(), "hello ");
    feed.send(Ok(Bytes::from_static(b"world, "))).unwrap();
    assert_eq!(body.chunk().await.unwrap().unwrap(), "world, ");
    feed.send(Ok(Bytes::from_static(b"bye"))).unwrap();
    assert_eq!(body.chunk().await.unwrap().unwrap(), "bye");
    assert_eq!(cap.events().len(), 1, "nothing more until the end");
    drop(feed);
    assert!(body.chunk().await.unwrap().is_none());

    // The end: one more event, with the size read and the redacted preview.
    let events = cap.events();
    assert_eq!(events.len(), 2, "{events:?}");
    let end = &events[1];
    assert_eq!(end.level, Level::DEBUG);
    assert_eq!(end.get("message"), Some("http response body"));
    assert_eq!(end.get("url"), Some("http://a.test/big?token=REDACTED"));
    assert_eq!(end.get("status"), Some("200"));
    assert_eq!(end.get("response_bytes"), Some("16"));
    assert_eq!(
        end.get("response_body"),
        Some("hello wo... [16 bytes in all]")
    );
    assert_eq!(end.get("error_kind"), None);
    drop(body);
    assert_eq!(
        cap.events().len(),
        2,
        "a body that ended is not reported dropped"
    );

    // The kept line is brought up to date.
    let entry = &log.entries()[0];
    assert_eq!(entry.response_bytes, Some(16));
    assert_eq!(entry.streamed, Some(StreamedBody::Complete));
    let line = log.to_string();
    assert!(line.contains("response_bytes=16 body=complete"), "{line}");
}

#[tokio::test]
async fn a_failed_body_is_a_warn_event_and_a_dropped_one_is_reported() {
    let (cap, _g) = capture();
    let log = KeepLog::new(10);
    let (fail_feed, failing) = channel();
    let (drop_feed, dropped) = channel();
    let doer = streaming(vec![failing, dropped], "application/octet-stream")
        .logging()
        .keep_log(log.clone());

    let mut body = doer
        .execute(get("http://a.test/1"))
        .await
        .unwrap()
        .into_body();
    fail_feed.send(Ok(Bytes::from_static(b"abc"))).unwrap();
    fail_feed
        .send(Err(Error::from(ErrorKind::Timeout).with_message("stalled")))
        .unwrap();
    body.chunk().await.unwrap();
    assert!(body.chunk().await.unwrap_err().is_timeout());

    let mut body = doer
        .execute(get("http://a.test/2"))
        .await
        .unwrap()
        .into_body();
    drop_feed.send(Ok(Bytes::from_static(b"12345"))).unwrap();
    body.chunk().await.unwrap();
    drop(body);

    let events = cap.events();
    assert_eq!(events.len(), 4, "{events:?}");
    let failed = &events[1];
    assert_eq!(failed.level, Level::WARN);
    assert_eq!(failed.get("message"), Some("http response body error"));
    assert_eq!(failed.get("error_kind"), Some("Timeout"));
    assert_eq!(failed.get("response_bytes"), Some("3"));
    assert_eq!(failed.get("response_body"), None, "bodies are off");
    let dropped = &events[3];
    assert_eq!(dropped.level, Level::DEBUG);
    assert_eq!(dropped.get("message"), Some("http response body dropped"));
    assert_eq!(dropped.get("response_bytes"), Some("5"));

    let entries = log.entries();
    assert!(matches!(
        &entries[0].streamed,
        Some(StreamedBody::Failed { kind: ErrorKind::Timeout, message }) if message.contains("stalled")
    ));
    assert_eq!(entries[1].streamed, Some(StreamedBody::Dropped));
    assert_eq!(entries[1].response_bytes, Some(5));
    let text = log.to_string();
    assert!(
        text.contains("response_bytes=3 body=failed body_error=Timeout"),
        "{text}"
    );
    assert!(text.contains("response_bytes=5 body=dropped"), "{text}");
}

#[tokio::test]
async fn with_only_failures_listened_to_a_streamed_body_that_fails_is_still_logged() {
    let cap = Capture::of(http_doer::logging::DEFAULT_TARGET);
    let subscriber = registry().with(EnvFilter::new("warn")).with(cap.clone());
    let _g = Scoped::new(subscriber);
    let (feed, body) = channel();
    let doer = streaming(vec![body], "text/plain").logging();
    let mut body = doer
        .execute(get("http://a.test/"))
        .await
        .unwrap()
        .into_body();
    assert!(cap.events().is_empty(), "a 200 head is below the filter");
    feed.send(Err(Error::from(ErrorKind::Body).with_message("reset")))
        .unwrap();
    assert_eq!(body.chunk().await.unwrap_err().kind(), ErrorKind::Body);
    let events = cap.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].level, Level::WARN);
    assert_eq!(events[0].get("message"), Some("http response body error"));
    assert_eq!(events[0].get("url"), Some("http://a.test/"));
}

#[tokio::test]
async fn request_sizes_are_logged_when_known_and_absent_when_not_and_streams_are_not_read() {
    let (cap, _g) = capture();
    let log = KeepLog::new(10);
    let sink_sizes = Arc::new(Mutex::new(Vec::new()));
    let sizes = sink_sizes.clone();
    // The server reads every body whole: logging must not have taken any of it.
    let doer = doer_fn(|req: Request| async move {
        let n = req.into_body().bytes().await?.len();
        Ok(http_doer::testing::response(200, n.to_string()))
    })
    .logging()
    .bodies(100)
    .keep_log(log.clone())
    .sink(move |r| sizes.lock().unwrap().push(r.request_bytes));

    let dir = std::env::temp_dir().join(format!("logging-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("upload.bin");
    std::fs::write(&file, b"0123456789").unwrap();
    let one_shot = || {
        let part = Ok::<_, std::io::Error>(Bytes::from_static(b"password=hunter2"));
        Body::from_stream(futures_util::stream::iter([part]))
    };
    let requests = [
        // A one-shot stream of unknown length.
        http::Request::post("http://a.test/1")
            .body(one_shot())
            .unwrap(),
        // The same, with a declared length.
        http::Request::post("http://a.test/2")
            .header("content-length", "16")
            .body(one_shot())
            .unwrap(),
        // A replayable stream: a file of known size, and a factory of unknown length.
        http::Request::put("http://a.test/3")
            .body(Body::from_file(&file).unwrap())
            .unwrap(),
        http::Request::put("http://a.test/4")
            .body(Body::replayable(|| {
                futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"abc"))])
            }))
            .unwrap(),
        // A buffered empty body is known to be empty: 0.
        get("http://a.test/5"),
    ];
    let mut answers = Vec::new();
    for req in requests {
        let resp = doer.execute(req).await.unwrap();
        answers.push(resp.into_body().text().await.unwrap());
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(answers, ["16", "16", "10", "3", "0"]);

    let expected = [None, Some(16), Some(10), None, Some(0)];
    let events = cap.events();
    let logged: Vec<Option<u64>> = events
        .iter()
        .map(|e| e.get("request_bytes").map(|n| n.parse().unwrap()))
        .collect();
    assert_eq!(logged, expected);
    let kept: Vec<_> = log.entries().iter().map(|e| e.request_bytes).collect();
    assert_eq!(kept, expected);
    assert_eq!(*sink_sizes.lock().unwrap(), expected);
    for e in &events[..4] {
        assert_eq!(
            e.get("request_body"),
            Some("[streamed body, not previewed]")
        );
    }
    let text = log.to_string();
    let first = text.lines().next().unwrap();
    assert!(!first.contains("request_bytes"), "{first}");
    assert!(!format!("{events:?}").contains("hunter2"));
}

#[tokio::test]
async fn secrets_in_a_streamed_preview_are_redacted_as_in_a_buffered_one() {
    let (cap, _g) = capture();
    let chunked = |parts: &[&'static [u8]]| {
        let (feed, body) = channel();
        for part in parts {
            feed.send(Ok(Bytes::from_static(part))).unwrap();
        }
        body
    };
    let form = [&b"user=ann&pass"[..], b"word=hunter2&client_secret=s3c"];
    // The same form, streamed within the cap, streamed past it, and buffered.
    let doer = streaming(
        vec![chunked(&form), chunked(&form)],
        "application/x-www-form-urlencoded",
    );
    let logged = |cap_bytes: usize| {
        let doer = doer.clone().logging().bodies(cap_bytes);
        async move {
            let resp = doer.execute(get("http://a.test/")).await.unwrap();
            resp.into_body().bytes().await.unwrap()
        }
    };
    assert_eq!(
        logged(100).await,
        "user=ann&password=hunter2&client_secret=s3c"
    );
    assert_eq!(
        logged(20).await,
        "user=ann&password=hunter2&client_secret=s3c"
    );
    let buffered = streaming(
        vec![Body::from("user=ann&password=hunter2&client_secret=s3c")],
        "application/x-www-form-urlencoded",
    )
    .logging()
    .bodies(100);
    buffered.execute(get("http://a.test/")).await.unwrap();

    let previews: Vec<String> = cap
        .events()
        .iter()
        .filter_map(|e| e.get("response_body").map(str::to_owned))
        .filter(|p| !p.starts_with("[streamed"))
        .collect();
    assert_eq!(
        previews,
        [
            "user=ann&password=REDACTED&client_secret=REDACTED",
            "user=ann&password=RE... [43 bytes in all]",
            "user=ann&password=REDACTED&client_secret=REDACTED",
        ]
    );
    assert!(!format!("{:?}", cap.events()).contains("hunter2"));
}

#[tokio::test]
async fn over_loopback_both_backends_log_a_streamed_download_at_its_head_and_end() {
    let server = MockServer::start().await;
    let payload: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/plain")
                .set_body_bytes(payload.clone()),
        )
        .mount(&server)
        .await;
    let backends: [(&str, Arc<dyn Doer>); 2] = [
        ("reqwest", Arc::new(ReqwestDoer::new())),
        ("ureq", Arc::new(UreqDoer::new())),
    ];
    for (name, backend) in backends {
        let (cap, _g) = capture();
        let log = KeepLog::new(4);
        let doer = backend.logging().bodies(16).keep_log(log.clone());
        let mut req = get(&format!("{}/big?api_key=k3y", server.uri()));
        req.extensions_mut().insert(ResponseMode::Streamed);
        let resp = doer.execute(req).await.unwrap();
        assert_eq!(cap.events().len(), 1, "{name}");
        assert_eq!(
            cap.events()[0].get("response_bytes"),
            Some("100000"),
            "{name}: the declared length"
        );
        let got = resp.into_body().bytes().await.unwrap();
        assert_eq!(got.len(), payload.len(), "{name}");

        let events = cap.events();
        assert_eq!(events.len(), 2, "{name}: {events:?}");
        let end = &events[1];
        assert_eq!(end.get("message"), Some("http response body"), "{name}");
        assert_eq!(end.get("response_bytes"), Some("100000"), "{name}");
        assert_eq!(
            end.get("response_body"),
            Some("abcdefghijklmnop... [100000 bytes in all]"),
            "{name}"
        );
        assert!(!format!("{events:?}").contains("k3y"), "{name}");
        let entry = &log.entries()[0];
        assert_eq!(entry.response_bytes, Some(100_000), "{name}");
        assert_eq!(entry.streamed, Some(StreamedBody::Complete), "{name}");
    }
}

#[tokio::test]
async fn the_sink_hears_a_streamed_body_twice_head_then_end() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink_seen = seen.clone();
    let (feed, body) = channel();
    let doer = streaming(vec![body], "text/plain")
        .logging()
        .tracing(false)
        .bodies(4)
        .sink(move |r| {
            sink_seen.lock().unwrap().push((
                r.streamed.clone(),
                r.response_bytes,
                r.response_body.map(str::to_owned),
            ));
        });
    let body = doer
        .execute(get("http://a.test/"))
        .await
        .unwrap()
        .into_body();
    feed.send(Ok(Bytes::from_static(b"hello"))).unwrap();
    drop(feed);
    assert_eq!(body.bytes().await.unwrap(), "hello");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (
                Some(StreamedBody::Reading),
                None,
                Some("[streamed body, previewed when it ends]".to_owned())
            ),
            (
                Some(StreamedBody::Complete),
                Some(5),
                Some("hell... [5 bytes in all]".to_owned())
            ),
        ]
    );
}
