//! How an [`Error`] reads in the reporter most applications use: anyhow's `{:#}` prints an
//! error and then every source, so each message must be said once, by one link of the chain
//! (the Rust API guidelines' C-GOOD-ERR). Real failures over loopback, on both backends, and
//! the errors the crate builds itself; and no secret of a URL in any link.

#[allow(dead_code)]
mod support;

use std::error::Error as StdError;
use std::time::Duration;

use http_doer::retrying::Backoff;
use http_doer::testing::doer_fn;
use http_doer::{Body, Doer, Error, ErrorKind, Request, ReqwestDoer, Retrying, UreqDoer};
use support::faults::{self, Fault, refused_url};

/// The `Display` of `err` and of each of its sources, in order.
fn links(err: &(dyn StdError + 'static)) -> Vec<String> {
    let mut said = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next.filter(|_| said.len() < 32) {
        said.push(e.to_string());
        next = e.source();
    }
    said
}

/// Reports `err` through anyhow and checks that no link repeats what its source says, so the
/// report says each message once; returns the report.
fn report_once(err: Error) -> String {
    let said = links(&err);
    for pair in said.windows(2) {
        assert!(
            !pair[0].contains(&pair[1]),
            "{:?} repeats its source {:?}",
            pair[0],
            pair[1]
        );
    }
    let report = format!("{:#}", anyhow::Error::from(err));
    assert_eq!(report, said.join(": "));
    report
}

fn get(url: &str) -> Request {
    http::Request::get(url).body(Body::empty()).unwrap()
}

async fn refused<D: Doer>(doer: D) {
    let url = refused_url();
    let err = doer.execute(get(&url)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err:#}");
    assert_eq!(err.to_string(), format!("connect error ({url})"));
    let report = report_once(err);
    // "connect error (" and not "connect error": hyper's own link says "tcp connect error".
    assert_eq!(report.matches("connect error (").count(), 1, "{report}");
    assert_eq!(report.matches(url.as_str()).count(), 1, "{report}");
    assert_eq!(
        report.to_lowercase().matches("refused").count(),
        1,
        "{report}"
    );
}

#[tokio::test]
async fn a_refused_connection_says_each_message_once_over_reqwest() {
    refused(ReqwestDoer::new()).await;
}

#[tokio::test]
async fn a_refused_connection_says_each_message_once_over_ureq() {
    refused(UreqDoer::new()).await;
}

/// A bounded real wait: the server stalls on loopback, and the backend's own timer ends it.
async fn stalled<D: Doer>(doer: D) {
    let server = faults::start(Fault::Stall).await;
    let url = server.url("/slow");
    let err = doer.execute(get(&url)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:#}");
    let report = report_once(err);
    assert!(
        report.starts_with(&format!("timed out ({url})")),
        "{report}"
    );
    assert_eq!(report.matches("timed out (").count(), 1, "{report}");
}

#[tokio::test]
async fn a_timeout_says_each_message_once_over_reqwest() {
    stalled(ReqwestDoer::new().timeout(Duration::from_millis(200))).await;
}

#[tokio::test]
async fn a_timeout_says_each_message_once_over_ureq() {
    stalled(UreqDoer::new().timeout(Duration::from_millis(200))).await;
}

#[tokio::test]
async fn an_error_not_retried_says_why_once_and_keeps_the_cause() {
    let doer = Retrying::new(doer_fn(|req: Request| async move {
        // Takes a chunk of the one-shot body, then fails as a reset would.
        let uri = req.uri().clone();
        let _ = req.into_body().chunk().await;
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        Err(Error::new(ErrorKind::Transport, reset).with_url(&uri))
    }))
    .backoff(Backoff::constant(Duration::ZERO));
    let once = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("x"))]);
    let req = http::Request::put("http://api.test/upload")
        .body(Body::from_stream(once))
        .unwrap();
    let err = doer.execute(req).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.attempts()),
        (ErrorKind::Transport, Some(1))
    );
    let report = report_once(err);
    for said_once in [
        "connection failed",
        "not retried",
        "http://api.test/upload",
        "after 1 attempt",
        "reset by peer",
    ] {
        assert_eq!(report.matches(said_once).count(), 1, "{report}");
    }
    assert!(report.ends_with(": reset by peer"), "{report}");
}

/// Every way the error can be shown, including each source on its own.
fn every_rendering(err: &Error) -> Vec<String> {
    let mut shown = vec![
        err.to_string(),
        format!("{err:#}"),
        format!("{err:?}"),
        format!("{err:#?}"),
        format!("{:#}", anyhow::anyhow!(err.to_string())),
    ];
    let mut next = err.source();
    for _ in 0..32 {
        let Some(e) = next else { break };
        shown.push(format!("{e} {e:?} {e:#?}"));
        next = e.source();
    }
    shown
}

async fn secret_url<D: Doer>(doer: D) {
    let port = refused_url()
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .to_owned();
    let url = format!("http://alice:pw-1@127.0.0.1:{port}/x?api_key=k-2&page=3");
    let err = doer.execute(get(&url)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err:#}");
    let mut shown = every_rendering(&err);
    shown.push(report_once(err));
    for s in &shown {
        for secret in ["alice", "pw-1", "k-2"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
    }
    assert!(shown[1].contains("api_key=REDACTED&page=3"), "{}", shown[1]);
}

#[tokio::test]
async fn no_link_of_a_connect_error_shows_a_secret_of_the_url_over_reqwest() {
    secret_url(ReqwestDoer::new()).await;
}

#[tokio::test]
async fn no_link_of_a_connect_error_shows_a_secret_of_the_url_over_ureq() {
    secret_url(UreqDoer::new()).await;
}

#[test]
fn a_cause_that_quotes_a_secret_url_is_redacted_in_its_own_link() {
    #[derive(Debug)]
    struct Quoting;
    impl std::fmt::Display for Quoting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("request to https://bob:pw-3@h.test/?token=t-4 failed")
        }
    }
    impl StdError for Quoting {}
    let err = Error::new(ErrorKind::Transport, Quoting);
    for s in every_rendering(&err) {
        for secret in ["bob", "pw-3", "t-4"] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
    }
    assert_eq!(
        report_once(err),
        "connection failed: request to https://h.test/?token=REDACTED failed"
    );
}

#[test]
fn a_request_http_refused_reads_once_and_hides_the_value() {
    fn build(token: &str) -> Result<Request, Error> {
        Ok(http::Request::get("https://api.test/me")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())?)
    }
    let err = build("t0ken\n").unwrap_err();
    assert!(err.is_invalid_request());
    let mut shown = every_rendering(&err);
    let report = report_once(err);
    assert_eq!(
        report,
        "invalid request: a header value is not valid: failed to parse header value"
    );
    shown.push(report);
    assert!(shown.iter().all(|s| !s.contains("t0ken")), "{shown:?}");
}
