//! Decorators composed into the stacks users build: what holds only when they meet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use http_doer::logging::KeepLog;
use http_doer::retrying::{Attempts, Backoff};
use http_doer::signing::{ApiKey, Basic, Bearer, HttpSignature, Signer};
use http_doer::testing::ScriptedDoer;
use http_doer::{Body, Doer, DoerExt, Request, ReqwestDoer};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

#[path = "support/capture.rs"]
mod capture;
#[path = "support/log_buffer.rs"]
mod log_buffer;
use log_buffer::Buffer;

const SECRETS: [&str; 7] = [
    "tok-Sx1",          // Bearer token
    "key-Sx2",          // API key in a header
    "qk-Sx3",           // API key in the query
    "ck-Sx4",           // the caller's cookie
    "pw-Sx5",           // Basic password (and in the JSON body)
    "YWxpY2U6cHctU3g1", // the Basic credentials as they travel: base64 of "alice:pw-Sx5"
    "srv-Sx6",          // a cookie the server sets
];

/// Logging (outer, per call) -> Retrying -> Signing -> Logging (inner, per attempt, after
/// signing, headers and bodies on) -> ReqwestDoer: the layout that would leak if anything did.
fn stack<S: Signer + 'static>(signer: S, outer: KeepLog, inner: KeepLog) -> impl Doer {
    ReqwestDoer::new()
        .timeout(Some(Duration::from_secs(5)))
        .logging()
        .headers(true)
        .bodies(4096)
        .keep_log(inner)
        .signing(ApiKey::query("api_key", "qk-Sx3").unwrap())
        .signing(signer)
        .retrying()
        .max_retries(2)
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .logging()
        .headers(true)
        .keep_log(outer)
}

fn get(url: &str) -> Request {
    http::Request::get(url)
        .header(http::header::COOKIE, "session=ck-Sx4")
        .body(Body::from(r#"{"password":"pw-Sx5","note":"hi"}"#))
        .unwrap()
}

#[tokio::test]
async fn no_secret_reaches_a_log_an_error_or_a_debug_print() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(503).insert_header("set-cookie", "srv=srv-Sx6"))
        .mount(&server)
        .await;

    let buffer = Buffer::default();
    let writer = buffer.clone();
    // Everything from DEBUG up, so that successes are printed too.
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_filter(LevelFilter::DEBUG),
    );
    // Serialized with the global dispatcher of `capture::serial`, so that no other test's
    // thread caches one of Logging's callsites as "never" while this subscriber is being set.
    let _guard = capture::Scoped::new(subscriber);

    let (outer, inner) = (KeepLog::new(100), KeepLog::new(100));
    let bearer = stack(
        (
            Bearer::new("tok-Sx1").unwrap(),
            ApiKey::header("x-api-key", "key-Sx2").unwrap(),
        ),
        outer.clone(),
        inner.clone(),
    );
    let basic = stack(
        Basic::new("alice", "pw-Sx5").unwrap(),
        outer.clone(),
        inner.clone(),
    );

    let mut printed = Vec::new();
    for doer in [&bearer as &dyn Doer, &basic] {
        // A server that keeps failing: the last 503 comes back after every retry.
        let resp = doer
            .execute(get(&format!("{}/items?page=2", server.uri())))
            .await
            .unwrap();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.extensions().get::<Attempts>(), Some(&Attempts(3)));
        // Nothing listens on port 1: an error after every retry.
        let err = doer
            .execute(get("http://127.0.0.1:1/items"))
            .await
            .unwrap_err();
        assert!(err.is_connect(), "{err}");
        printed.extend([err.to_string(), format!("{err:?}"), format!("{err:#?}")]);
    }
    printed.extend([buffer.text(), outer.to_string(), inner.to_string()]);
    printed.push(format!("{:?}", inner.entries()));

    // The secrets did travel: the test would prove nothing otherwise.
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 6, "3 attempts for each of the two stacks");
    let sent = format!(
        "{:?}",
        received
            .iter()
            .map(|r| (&r.url, &r.headers))
            .collect::<Vec<_>>()
    );
    for secret in ["tok-Sx1", "key-Sx2", "qk-Sx3", "ck-Sx4", "YWxpY2U6cHctU3g1"] {
        assert!(sent.contains(secret), "{secret} never reached the server");
    }
    assert!(
        buffer.text().contains("REDACTED"),
        "headers were logged, redacted"
    );
    assert_eq!(inner.len(), 12, "one inner line per attempt");

    for text in &printed {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} leaked into:\n{text}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn signing_inside_retrying_signs_every_attempt_anew() {
    // A clock one second further at each reading: a reused signature would repeat `created`.
    let tick = Arc::new(AtomicU64::new(1_700_000_000));
    let clock = {
        let tick = Arc::clone(&tick);
        move || UNIX_EPOCH + Duration::from_secs(tick.fetch_add(1, Ordering::SeqCst))
    };
    let server = ScriptedDoer::new()
        .then_status(503)
        .then_status(503)
        .then_status(200);
    let doer = server
        .clone()
        .signing(
            HttpSignature::hmac_sha256(b"shared-secret")
                .key_id("k1")
                .clock(clock),
        )
        .retrying()
        .backoff(Backoff::constant(Duration::from_millis(100)));

    let req = http::Request::get("https://api.test/items")
        .body(Body::empty())
        .unwrap();
    let resp = doer.execute(req).await.unwrap();
    assert_eq!(resp.status(), 200);

    let sent = server.requests();
    assert_eq!(sent.len(), 3);
    let header = |r: &Request, name: &str| r.headers()[name].to_str().unwrap().to_owned();
    let created: Vec<_> = sent
        .iter()
        .map(|r| {
            header(r, "signature-input")
                .split("created=")
                .nth(1)
                .unwrap()[..10]
                .to_owned()
        })
        .collect();
    assert_eq!(created, ["1700000000", "1700000001", "1700000002"]);
    let signatures: std::collections::HashSet<_> =
        sent.iter().map(|r| header(r, "signature")).collect();
    assert_eq!(
        signatures.len(),
        3,
        "each attempt carries its own signature"
    );
    // One label only: re-signing replaced its own entry instead of piling up.
    assert!(sent.iter().all(|r| !header(r, "signature").contains(", ")));
}

#[tokio::test]
async fn a_query_key_under_a_name_redaction_cannot_know_stays_out_of_errors() {
    // `appid` is not a name `redact` treats as secret; Signing reports errors against the URL
    // as the caller sent it, so the key it added never reaches the error.
    let doer = ReqwestDoer::new().signing(ApiKey::query("appid", "qk-Sx7").unwrap());
    let req = http::Request::get("http://127.0.0.1:1/items?page=2")
        .body(Body::empty())
        .unwrap();
    let err = doer.execute(req).await.unwrap_err();
    assert!(err.is_connect(), "{err}");
    assert_eq!(err.url(), Some("http://127.0.0.1:1/items?page=2"));
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("qk-Sx7"), "the key leaked into: {text}");
    }
}
