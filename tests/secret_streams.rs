//! Secrets a signer adds to the query must not come back in errors or logs, including the
//! errors of a streamed response body read after `Signing` returned.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use http_doer::logging::KeepLog;
use http_doer::signing::ApiKey;
use http_doer::{Body, Doer, DoerExt, Request, ReqwestDoer, ResponseMode, UreqDoer};
use support::faults::{self, Fault};

/// An API key under a parameter name the redaction rules do not know (as many APIs name it:
/// `appid`, `client`, `k`...): `Signing` promises that errors coming back through it name the
/// URL without the key.
const KEY: &str = "S3CRET-APPID-KEY";

fn get(url: &str) -> Request {
    http::Request::get(url).body(Body::empty()).unwrap()
}

/// Every printed form of `err` and of its source chain.
fn printed(err: &http_doer::Error) -> String {
    let mut out = format!("{err}\n{err:#}\n{err:?}\n{err:#?}\n");
    let mut next = std::error::Error::source(err);
    for _ in 0..32 {
        let Some(e) = next else { break };
        out.push_str(&format!("{e}\n{e:?}\n"));
        next = e.source();
    }
    out
}

async fn streamed_body_error_after_signing<B: Doer + 'static>(name: &str, backend: B) {
    let reset = faults::start(Fault::ResetMidBody).await;
    let log = KeepLog::new(10);
    let doer = backend
        .signing(ApiKey::query("appid", KEY).unwrap())
        .logging()
        .keep_log(log.clone());

    let resp = doer
        .execute(get(&reset.url("/data?page=2")))
        .await
        .unwrap_or_else(|e| panic!("{name}: the head arrives: {e:#}"));
    let err = tokio::time::timeout(Duration::from_secs(10), resp.into_body().bytes())
        .await
        .expect("the body read ends in time")
        .expect_err("the body is cut");
    let text = printed(&err);
    let kept = format!("{log}\n{:?}", log.entries());
    assert!(
        !text.contains(KEY) && !kept.contains(KEY),
        "{name}: the API key a signer added leaks:\nerror: {text}\nkept log: {kept}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_streamed_body_error_does_not_name_the_signed_url() {
    let backend = ReqwestDoer::new()
        .timeout(Some(Duration::from_secs(5)))
        .response_mode(ResponseMode::Streamed);
    streamed_body_error_after_signing("reqwest", backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ureq_streamed_body_error_does_not_name_the_signed_url() {
    let backend = UreqDoer::new()
        .timeout(Some(Duration::from_secs(5)))
        .response_mode(ResponseMode::Streamed);
    streamed_body_error_after_signing("ureq", backend).await;
}

/// The buffered case, for comparison: the error comes back through `Signing`, which scrubs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_body_error_does_not_name_the_signed_url() {
    for (name, backend) in [
        (
            "reqwest",
            Box::new(ReqwestDoer::new().timeout(Some(Duration::from_secs(5)))) as Box<dyn Doer>,
        ),
        (
            "ureq",
            Box::new(UreqDoer::new().timeout(Some(Duration::from_secs(5)))) as Box<dyn Doer>,
        ),
    ] {
        let reset = faults::start(Fault::ResetMidBody).await;
        let doer = backend.signing(ApiKey::query("appid", KEY).unwrap());
        let err = doer
            .execute(get(&reset.url("/data?page=2")))
            .await
            .expect_err("the body is cut");
        let text = printed(&err);
        assert!(!text.contains(KEY), "{name}: {text}");
    }
}

/// TLS failures (not in tests/secret_flow.rs): an https URL with userinfo and a secret query
/// to a plain-HTTP server and to a server that resets; no printed form names a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_print_no_secret() {
    let plain = support::server::start().await;
    let reset = faults::start(Fault::Garbage).await;
    for (name, backend) in [
        (
            "reqwest",
            Box::new(ReqwestDoer::new().timeout(Some(Duration::from_secs(5)))) as Box<dyn Doer>,
        ),
        (
            "ureq",
            Box::new(UreqDoer::new().timeout(Some(Duration::from_secs(5)))) as Box<dyn Doer>,
        ),
    ] {
        for base in [plain.url(""), reset.url("")] {
            let host = base.trim_start_matches("http://").trim_end_matches('/');
            let url = format!(
                "https://alice:S3CRET-PW@{host}/x?access_token=S3CRET-TOK&api_key=S3CRET-K"
            );
            let err = backend.execute(get(&url)).await.expect_err("no TLS there");
            let text = printed(&err);
            assert!(!text.contains("S3CRET"), "{name} {:?}: {text}", err.kind());
            let signed = (&*backend).signing(ApiKey::query("appid", KEY).unwrap());
            let err = signed.execute(get(&url)).await.expect_err("no TLS there");
            let text = printed(&err);
            assert!(
                !text.contains("S3CRET"),
                "{name} signed {:?}: {text}",
                err.kind()
            );
        }
    }
}
