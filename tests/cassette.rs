//! `testing::Cassette`: recording from real loopback servers through both backends and a
//! stack, replaying with the servers stopped, redaction, matching, order and record modes.

#[allow(dead_code)]
mod support;

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::HeaderName;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;

use http_doer::retrying::Backoff;
use http_doer::testing::{Cassette, Order, RecordMode, Replayed, doer_fn, response};
use http_doer::{
    Attempts, Body, Doer, DoerExt, Error, ErrorKind, Request, ReqwestDoer, Response, ResponseMode,
    UreqDoer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fresh path in cargo's scratch directory for integration tests (under `target/`), unique
/// to this test and process.
/// A fresh cassette path in a directory of its own, so that one test's check for leftover
/// temporary files never sees another test's write in progress.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cassette-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("cassette.json")
}

fn get(url: &str) -> Request {
    http::Request::get(url).body(Body::empty()).unwrap()
}

/// A hyper server on loopback for what tests/support's does not serve: secrets in answers,
/// a route that fails once, then succeeds.
async fn start_api() -> support::Loopback {
    let flaky = Arc::new(AtomicUsize::new(0));
    support::Loopback::serve(move |stream| {
        let flaky = flaky.clone();
        async move {
            let service = hyper::service::service_fn(move |req| api(flaky.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    })
    .await
}

async fn api(
    flaky: Arc<AtomicUsize>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let (status, ctype, body): (u16, &str, String) = match path.as_str() {
        "/flaky" if flaky.fetch_add(1, Ordering::SeqCst) == 0 => (503, "text/plain", "busy".into()),
        "/flaky" => (200, "text/plain", "fine".into()),
        "/notes" => (200, "text/plain", "note: planted-closure-S9".into()),
        _ => {
            let sent = req.into_body().collect().await.map(|b| b.to_bytes());
            let sent = String::from_utf8_lossy(&sent.unwrap_or_default()).into_owned();
            let answer = serde_json::json!({
                "access_token": "planted-resp-S5",
                "user": "ann",
                "sent_bytes": sent.len(),
            });
            (200, "application/json", answer.to_string())
        }
    };
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    let h = resp.headers_mut();
    h.insert("content-type", ctype.parse().unwrap());
    h.insert(
        "set-cookie",
        "sid=planted-cookie-S4; HttpOnly".parse().unwrap(),
    );
    h.insert(
        "content-location",
        "/login?token=planted-loc-S10&page=1".parse().unwrap(),
    );
    Ok(resp)
}

/// The requests of the secrets test, each with its planted secrets (`planted-*`), or other
/// values of the same secrets (`other-*`) for the replay.
fn secret_requests(base: &str, tag: &str) -> Vec<Request> {
    let login = http::Request::post(format!("{base}/login?token={tag}-query-S2&page=1"))
        .header("authorization", format!("Bearer {tag}-auth-S1"))
        .header("cookie", format!("sid={tag}-cookie-S11"))
        .header("x-tenant", format!("{tag}-tenant-S7"))
        .header("content-type", "application/json")
        .body(Body::from(format!(
            r#"{{"user":"ann","password":"{tag}-pw-S3"}}"#
        )))
        .unwrap();
    let form = http::Request::post(format!("{base}/form?acct={tag}-acct-S8"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("user=ann&client_secret={tag}-form-S6")))
        .unwrap();
    let notes = get(&format!("{base}/notes"));
    vec![login, form, notes]
}

fn with_rules<D>(cassette: Cassette<D>) -> Cassette<D> {
    cassette
        .redact_header(HeaderName::from_static("x-tenant"))
        .redact_param("acct")
        .redact_with(|it| {
            let body =
                String::from_utf8_lossy(&it.response.body).replace("planted-closure-S9", "S9");
            it.response.body = body.into();
        })
}

#[tokio::test]
async fn secrets_planted_through_a_loopback_server_never_reach_the_file() {
    let server = start_api().await;
    let base = server.url("");
    let path = scratch("secrets");
    let recorder = with_rules(Cassette::new(ReqwestDoer::new(), &path).mode(RecordMode::All));
    for req in secret_requests(&base, "planted") {
        let resp = recorder.execute(req).await.unwrap();
        // The caller gets the real answer; only the file is redacted.
        assert_eq!(
            resp.headers()["set-cookie"],
            "sid=planted-cookie-S4; HttpOnly"
        );
        resp.into_body().bytes().await.unwrap();
    }
    drop(server);

    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("planted"),
        "a secret reached the cassette:\n{text}"
    );
    for kept in [
        "\"authorization: REDACTED\"",
        "\"cookie: REDACTED\"",
        "\"x-tenant: REDACTED\"",
        "\"set-cookie: REDACTED\"",
        "login?token=REDACTED&page=1",
        "form?acct=REDACTED",
        r#"\"password\":\"REDACTED\""#,
        r#"\"access_token\":\"REDACTED\""#,
        r#"\"user\":\"ann\""#,
        "user=ann&client_secret=REDACTED",
        "\"content-location: /login?token=REDACTED&page=1\"",
        "note: S9",
    ] {
        assert!(text.contains(kept), "{kept} missing from\n{text}");
    }

    // Other secret values match the redacted ones on file, with no server.
    let replayer = with_rules(Cassette::replay(&path));
    for (i, req) in secret_requests(&base, "other").into_iter().enumerate() {
        let resp = replayer.execute(req).await.unwrap();
        assert_eq!(resp.extensions().get::<Replayed>(), Some(&Replayed(i)));
        assert_eq!(resp.headers()["set-cookie"], "REDACTED");
    }
    assert_eq!(replayer.unplayed(), Some(0));
}

/// What a test sees of one call: status, attempts, body.
async fn outcome(doer: &impl Doer, req: Request) -> (u16, u32, Bytes) {
    let resp = doer.execute(req).await.unwrap();
    let attempts = resp.extensions().get::<Attempts>().map_or(1, |a| a.0);
    let status = resp.status().as_u16();
    (status, attempts, resp.into_body().bytes().await.unwrap())
}

/// Every request the stack test sends: a retried 503, an echo with a streamed upload, a
/// binary body, a streamed download.
fn stack_requests(api: &str, files: &str) -> Vec<Request> {
    let upload =
        futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from("up")), Ok("load".into())]);
    let mut streamed = get(&format!("{files}/chunked/40000"));
    streamed.extensions_mut().insert(ResponseMode::Streamed);
    vec![
        get(&format!("{api}/flaky")),
        http::Request::post(format!("{files}/echo"))
            .body(Body::from_stream(upload))
            .unwrap(),
        get(&format!("{files}/bytes/300")),
        streamed,
    ]
}

/// The README's stack to copy over `doer` (a cassette, here), with no wait between retries
/// and hedges only past 10 s, so that a slow test machine never records an extra copy.
fn readme_stack(doer: impl Doer + 'static) -> impl Doer {
    doer.signing(http_doer::signing::Bearer::new("fresh-token-each-run").unwrap())
        .breaker()
        .serve_stale(http_doer::breaker::ServeStale::new(Duration::from_secs(
            300,
        )))
        .hedging()
        .fixed_delay(Duration::from_secs(10))
        .retrying()
        .backoff(Backoff::constant(Duration::ZERO))
        .total_timeout(Duration::from_secs(30))
        .logging()
}

async fn record_then_replay<D: Doer + 'static>(backend: D, name: &str) {
    let (api, files) = (start_api().await, support::server::start().await);
    let (api_url, files_url) = (api.url(""), files.url(""));
    let path = scratch(name);
    let stack = |doer| readme_stack(Cassette::new(doer, &path).mode(RecordMode::All));
    let recorder = stack(Arc::new(backend) as Arc<dyn Doer>);
    let mut live = Vec::new();
    for req in stack_requests(&api_url, &files_url) {
        live.push(outcome(&recorder, req).await);
    }
    drop((api, files));

    // The 503 is resent at once by Hedging (a failed copy calls the next one), within the
    // first attempt: both exchanges are recorded, and replayed alike.
    assert_eq!(
        (live[0].0, live[0].1, &live[0].2[..]),
        (200, 1, &b"fine"[..])
    );
    assert_eq!(&live[1].2[..], b"upload");
    assert_eq!(live[2].2, support::server::pattern(300));
    assert_eq!(live[3].2.len(), 40000);
    let recorded = Cassette::read(&path).unwrap();
    let statuses: Vec<u16> = recorded
        .iter()
        .map(|it| it.response.status.as_u16())
        .collect();
    assert_eq!(statuses, [503, 200, 200, 200, 200]);
    assert_eq!(recorded[2].request.body, "upload");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"body_base64\""), "binary bodies are base64");
    assert!(
        !text.contains("fresh-token-each-run"),
        "the signed token is redacted"
    );

    // The servers are gone: the same stack over a replaying cassette gives the same answers,
    // the 503 retried as before.
    let cassette = Arc::new(Cassette::replay(&path));
    let replayer = readme_stack(cassette.clone());
    for (req, want) in stack_requests(&api_url, &files_url).into_iter().zip(&live) {
        assert_eq!(&outcome(&replayer, req).await, want);
    }
    assert_eq!(cassette.unplayed(), Some(0));
}

#[tokio::test]
async fn reqwest_records_under_the_stack_and_replays_with_the_servers_stopped() {
    record_then_replay(ReqwestDoer::new(), "stack-reqwest").await;
}

#[tokio::test]
async fn ureq_records_under_the_stack_and_replays_with_the_servers_stopped() {
    record_then_replay(UreqDoer::new(), "stack-ureq").await;
}

/// A recorder that answers every request with its path, counting calls.
fn echo_path(calls: Arc<AtomicUsize>) -> impl Doer + Clone {
    doer_fn(move |req: Request| {
        let calls = calls.clone();
        async move {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let q = req
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            Ok(response(200, format!("{}{q} #{n}", req.uri().path())))
        }
    })
}

async fn text(doer: &impl Doer, req: Request) -> Result<String, Error> {
    doer.execute(req).await?.into_body().text().await
}

/// Records `urls` (GETs) to a fresh cassette `name`.
async fn record(name: &str, urls: &[&str]) -> PathBuf {
    let path = scratch(name);
    let recorder = Cassette::new(echo_path(Arc::default()), &path).mode(RecordMode::All);
    for url in urls {
        text(&recorder, get(url)).await.unwrap();
    }
    path
}

#[tokio::test]
async fn a_request_with_no_match_names_the_nearest_and_how_it_differs() {
    let path = scratch("nearest");
    let recorder = Cassette::new(echo_path(Arc::default()), &path).mode(RecordMode::All);
    text(&recorder, get("http://api.test/items?page=1&sort=asc"))
        .await
        .unwrap();
    let post = http::Request::post("http://api.test/items")
        .header("authorization", "Bearer tok-S1")
        .body(Body::from("{}"))
        .unwrap();
    text(&recorder, post).await.unwrap();

    let replayer = Cassette::replay(&path);
    let err = text(
        &replayer,
        get("http://api.test/items?sort=asc&page=2&token=tok-S2"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    let msg = err.to_string();
    assert!(
        msg.contains("has no match for GET http://api.test/items?sort=asc&page=2&token=REDACTED"),
        "{msg}"
    );
    assert!(
        msg.contains("the nearest, #0 GET http://api.test/items?page=1&sort=asc, differs"),
        "{msg}"
    );
    assert!(
        msg.contains("query: `page=1` recorded where `page=2`, `token=REDACTED` was sent"),
        "{msg}"
    );
    assert!(msg.contains("HTTP_DOER_RECORD=new"), "{msg}");
    assert!(!format!("{err:?}").contains("tok-S2"), "{err:?}");

    let by_header = Cassette::replay(&path).match_header(http::header::AUTHORIZATION);
    let err = text(
        &by_header,
        http::Request::post("http://api.test/items")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("#1 POST http://api.test/items, differs: header authorization differs"),
        "{msg}"
    );

    let by_body = Cassette::replay(&path).match_body(true);
    let err = text(
        &by_body,
        http::Request::post("http://other.test/items")
            .body(Body::from("{ }"))
            .unwrap(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(
            "origin http://api.test recorded; body differs from byte 1 (2 bytes recorded, 3 sent)"
        ),
        "{msg}"
    );

    let anywhere = Cassette::replay(&path).match_host(false);
    assert!(
        text(
            &anywhere,
            http::Request::post("http://other.test/items")
                .body(Body::empty())
                .unwrap()
        )
        .await
        .is_ok()
    );

    let custom = Cassette::replay(&path).match_with(|live, _| live.headers().contains_key("x-v"));
    let err = text(&custom, get("http://api.test/items?page=1&sort=asc"))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("the match_with rule says no"),
        "{err}"
    );

    let empty = scratch("empty");
    std::fs::write(&empty, "{\"http_doer_cassette\": 1, \"interactions\": []}").unwrap();
    let err = text(&Cassette::replay(&empty), get("http://api.test/"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("; it is empty"), "{err}");
}

#[tokio::test]
async fn any_order_plays_each_once_unless_repeatable() {
    let path = record(
        "any-order",
        &["http://a.test/a", "http://a.test/b", "http://a.test/a"],
    )
    .await;
    let once = Cassette::replay(&path);
    assert_eq!(text(&once, get("http://a.test/b")).await.unwrap(), "/b #1");
    assert_eq!(text(&once, get("http://a.test/a")).await.unwrap(), "/a #0");
    assert_eq!(text(&once, get("http://a.test/a")).await.unwrap(), "/a #2");
    let err = text(&once, get("http://a.test/a")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("#0, which matches, was already played"),
        "{err}"
    );

    let repeat = Cassette::replay(&path).repeatable(true);
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(text(&repeat, get("http://a.test/a")).await.unwrap());
    }
    assert_eq!(seen, ["/a #0", "/a #2", "/a #2", "/a #2"]);
    assert_eq!(repeat.unplayed(), Some(1));
}

#[tokio::test]
async fn in_order_follows_the_recording_and_repeats_the_last_when_allowed() {
    let path = record(
        "in-order",
        &["http://a.test/a", "http://a.test/b", "http://a.test/a"],
    )
    .await;
    let strict = Cassette::replay(&path).order(Order::InOrder);
    let err = text(&strict, get("http://a.test/b")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("comes out of order: the next is #0 GET http://a.test/a"),
        "{err}"
    );
    for want in ["/a #0", "/b #1", "/a #2"] {
        let url = format!("http://a.test{}", &want[..2]);
        assert_eq!(text(&strict, get(&url)).await.unwrap(), want);
    }

    let polling = Cassette::replay(&path)
        .order(Order::InOrder)
        .repeatable(true);
    for (url, want) in [
        ("/a", "/a #0"),
        ("/a", "/a #0"),
        ("/b", "/b #1"),
        ("/b", "/b #1"),
        ("/a", "/a #2"),
    ] {
        let got = text(&polling, get(&format!("http://a.test{url}")))
            .await
            .unwrap();
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn record_new_replays_what_matches_and_all_starts_afresh() {
    let path = record("modes", &["http://a.test/a"]).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let new = Cassette::new(echo_path(calls.clone()), &path).mode(RecordMode::New);
    assert_eq!(text(&new, get("http://a.test/a")).await.unwrap(), "/a #0");
    assert_eq!(text(&new, get("http://a.test/b")).await.unwrap(), "/b #0");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "only /b went out");
    let urls = |p: &PathBuf| -> Vec<String> {
        Cassette::read(p)
            .unwrap()
            .into_iter()
            .map(|it| it.request.url)
            .collect()
    };
    assert_eq!(urls(&path), ["http://a.test/a", "http://a.test/b"]);

    let all = Cassette::new(echo_path(calls.clone()), &path).mode(RecordMode::All);
    assert_eq!(text(&all, get("http://a.test/c")).await.unwrap(), "/c #1");
    assert_eq!(urls(&path), ["http://a.test/c"]);

    let once_path = scratch("once");
    let once = Cassette::new(echo_path(calls.clone()), &once_path).mode(RecordMode::Once);
    text(&once, get("http://a.test/o")).await.unwrap();
    let again = Cassette::new(echo_path(calls.clone()), &once_path).mode(RecordMode::Once);
    let err = text(&again, get("http://a.test/p")).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::InvalidRequest,
        "once replays an existing file only"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Atomic writes leave nothing beside the cassettes.
    let dir = path.parent().unwrap();
    let temps: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

#[tokio::test]
async fn missing_and_broken_files_and_oversized_bodies_fail_clearly() {
    let missing = scratch("missing");
    let err = text(&Cassette::replay(&missing), get("http://a.test/"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Other);
    assert!(
        err.to_string()
            .contains("does not exist; record it with HTTP_DOER_RECORD=new"),
        "{err}"
    );

    let broken = scratch("broken");
    std::fs::write(
        &broken,
        "{\"http_doer_cassette\": 1, \"interactions\": [{}]}",
    )
    .unwrap();
    let err = text(&Cassette::replay(&broken), get("http://a.test/"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("is not valid: interaction #0: no `request`"),
        "{err}"
    );

    let capped = scratch("capped");
    let big = doer_fn(|_req: Request| async { Ok(response(200, vec![7u8; 2000])) });
    let recorder = Cassette::new(big, &capped)
        .mode(RecordMode::All)
        .max_body_size(1000);
    let err = recorder.execute(get("http://a.test/")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert!(
        !capped.exists(),
        "nothing is written for a call that failed"
    );
    // A request body over the cap, buffered or streamed, fails before the inner Doer is
    // called (its answer would be small: the request is what is too large).
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let small = doer_fn(move |_req: Request| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Ok(response(200, "")) }
    });
    let recorder = Cassette::new(small, &capped)
        .mode(RecordMode::All)
        .max_body_size(1000);
    let bodies = [
        Body::from(vec![1u8; 1001]),
        Body::from_stream(futures_util::stream::iter([Ok::<_, Error>(
            bytes::Bytes::from(vec![1u8; 1001]),
        )])),
    ];
    for body in bodies {
        let post = http::Request::post("http://a.test/").body(body).unwrap();
        let err = recorder.execute(post).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge);
        assert!(err.to_string().contains("request body"), "{err}");
    }
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!capped.exists());
}

/// Run by `the_environment_chooses_the_mode` in a child process with `HTTP_DOER_RECORD` set,
/// so that no test of this process has its environment changed under it.
#[tokio::test]
#[ignore = "run by the_environment_chooses_the_mode"]
async fn env_child() {
    let path = PathBuf::from(std::env::var_os("CASSETTE_CHILD_PATH").unwrap());
    let want = std::env::var("CASSETTE_CHILD_WANT").unwrap();
    let cassette = Cassette::new(echo_path(Arc::default()), &path);
    let got = match cassette.execute(get("http://a.test/env")).await {
        Ok(r) if r.extensions().get::<Replayed>().is_some() => "replayed".to_owned(),
        Ok(_) => "recorded".to_owned(),
        Err(e) => format!("{:?}", e.kind()),
    };
    assert_eq!(got, want);
}

#[test]
fn the_environment_chooses_the_mode() {
    let path = scratch("env");
    let run = |mode: Option<&str>, want: &str| {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child
            .args(["--ignored", "--exact", "env_child", "--test-threads=1"])
            .env("CASSETTE_CHILD_PATH", &path)
            .env("CASSETTE_CHILD_WANT", want);
        match mode {
            Some(m) => child.env("HTTP_DOER_RECORD", m),
            None => child.env_remove("HTTP_DOER_RECORD"),
        };
        let out = child.output().unwrap();
        assert!(
            out.status.success(),
            "{mode:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    };
    run(None, "Other"); // replay only by default: the file does not exist
    run(Some("NEW"), "recorded");
    assert_eq!(Cassette::read(&path).unwrap().len(), 1);
    run(Some(""), "replayed"); // empty is unset
    run(Some("none"), "replayed");
    // With the file there, only the variable can make these fail or record.
    run(Some("bogus"), "Other");
    run(Some("All"), "recorded");
    assert_eq!(Cassette::read(&path).unwrap().len(), 1);
}

/// The user's pass runs once on what is recorded (matching runs it on a copy), so a pass that
/// adds something adds it once.
#[tokio::test]
async fn a_redact_with_pass_runs_once_on_a_recorded_interaction() {
    let path = scratch("pass-once");
    let pass = |it: &mut http_doer::testing::Interaction| {
        it.request
            .headers
            .append("x-pass", http::HeaderValue::from_static("1"));
    };
    let recorder = Cassette::new(
        doer_fn(|_req: Request| async { Ok(response(200, "ok")) }),
        &path,
    )
    .mode(RecordMode::Once)
    .redact_with(pass);
    recorder.execute(get("http://a.test/x")).await.unwrap();
    let recorded = Cassette::read(&path).unwrap();
    assert_eq!(
        recorded[0].request.headers.get_all("x-pass").iter().count(),
        1
    );
    let replayer = Cassette::replay(&path).redact_with(pass);
    let resp = replayer.execute(get("http://a.test/x")).await.unwrap();
    assert_eq!(resp.into_body().text().await.unwrap(), "ok");
}

/// A loopback server that answers every request (here: one HEAD) like a file server does:
/// `Content-Length` is the size of the resource, the HEAD response has no body.
async fn head_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..4 {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 12345\r\netag: \"v1\"\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    format!("http://{addr}/big.bin")
}

/// An SDK asks a HEAD for an object's size (S3's `HeadObject`, a download's progress bar).
/// The real answer says `content-length: 12345`; the cassette writes `content-length: 0`,
/// and the replayed answer says the object is empty.
#[tokio::test]
async fn a_head_response_keeps_its_content_length_through_a_cassette() {
    let url = head_server().await;
    let path = scratch("head");
    let head = || http::Request::head(&url).body(Body::empty()).unwrap();

    let recorder = Cassette::new(ReqwestDoer::new(), &path).mode(RecordMode::All);
    let live = recorder.execute(head()).await.unwrap();
    assert_eq!(live.headers()["content-length"], "12345", "the live answer");

    let replayer = Cassette::replay(&path);
    let replayed = replayer.execute(head()).await.unwrap();
    assert_eq!(replayed.extensions().get::<Replayed>(), Some(&Replayed(0)));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        replayed.headers()["content-length"],
        "12345",
        "the replayed HEAD lost the resource's size; the file:\n{text}"
    );
}

/// The same for a 304 Not Modified that states the representation's length (RFC 9110
/// 8.6 allows it), and a doer_fn stand-in for the backend.
#[tokio::test]
async fn a_304_keeps_its_content_length_through_a_cassette() {
    let path = scratch("not-modified");
    let real = doer_fn(|_req| async {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = http::StatusCode::NOT_MODIFIED;
        resp.headers_mut()
            .insert("content-length", http::HeaderValue::from_static("512"));
        Ok(resp)
    });
    let get = || {
        http::Request::get("http://api.test/doc")
            .body(Body::empty())
            .unwrap()
    };
    Cassette::new(real, &path)
        .mode(RecordMode::All)
        .execute(get())
        .await
        .unwrap();
    let replayed = Cassette::replay(&path).execute(get()).await.unwrap();
    assert_eq!(replayed.status(), 304);
    assert_eq!(replayed.headers()["content-length"], "512");
}

/// Two independent cassettes recording one file would each write their own interactions over
/// the other's: one that finds the file changed by another since it read or wrote it is
/// refused with an error that says why, and nothing recorded is lost. Clones of one cassette
/// share what they record, and write together.
#[tokio::test]
async fn a_second_recorder_of_one_file_is_refused_not_silently_lost() {
    let path = scratch("two-writers");
    let real =
        || doer_fn(|req: Request| async move { Ok(response(200, req.uri().path().to_owned())) });
    let get = |p: &str| {
        http::Request::get(format!("http://api.test{p}"))
            .body(Body::empty())
            .unwrap()
    };
    std::fs::write(&path, "{\"http_doer_cassette\": 1, \"interactions\": []}").unwrap();
    let a = Cassette::new(real(), &path).mode(RecordMode::New);
    a.execute(get("/a1")).await.unwrap();
    a.clone().execute(get("/a2")).await.unwrap();
    // B reads the file at its first call, A's two included, and adds its own.
    let b = Cassette::new(real(), &path).mode(RecordMode::New);
    b.execute(get("/b1")).await.unwrap();
    // A's next write would drop B's: refused.
    let err = a.execute(get("/a3")).await.unwrap_err();
    assert!(err.to_string().contains("another Cassette"), "{err}");
    let urls: Vec<String> = Cassette::read(&path)
        .unwrap()
        .into_iter()
        .map(|it| it.request.url)
        .collect();
    assert_eq!(
        urls,
        [
            "http://api.test/a1",
            "http://api.test/a2",
            "http://api.test/b1"
        ]
    );
}

/// `Order::InOrder` with `RecordMode::New` (what the no-match message tells one to run): a
/// workflow that gained one request in the middle (A, X, B, C over a cassette of A, B, C).
/// X is recorded at the end and the cassette then thinks B and C come out of order: they are
/// sent live again and recorded twice, and the cassette written cannot replay the very run
/// that recorded it.
#[tokio::test]
async fn in_order_new_records_a_new_request_where_it_came() {
    use http_doer::testing::Order;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let path = scratch("in-order-new");
    let live_calls = Arc::new(AtomicUsize::new(0));
    let real = {
        let live_calls = live_calls.clone();
        move || {
            let live_calls = live_calls.clone();
            doer_fn(move |req: http_doer::Request| {
                live_calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok(http_doer::testing::response(
                        200,
                        req.uri().path().to_owned(),
                    ))
                }
            })
        }
    };
    let get = |p: &str| {
        http::Request::get(format!("http://api.test{p}"))
            .body(Body::empty())
            .unwrap()
    };
    // The first recording: A, B, C.
    let first = Cassette::new(real(), &path)
        .mode(RecordMode::All)
        .order(Order::InOrder);
    for p in ["/a", "/b", "/c"] {
        first.execute(get(p)).await.unwrap();
    }
    live_calls.store(0, Ordering::SeqCst);

    // The workflow now sends X after A: record what is new.
    let update = Cassette::new(real(), &path)
        .mode(RecordMode::New)
        .order(Order::InOrder);
    for p in ["/a", "/x", "/b", "/c"] {
        update.execute(get(p)).await.unwrap();
    }
    let urls: Vec<String> = Cassette::read(&path)
        .unwrap()
        .into_iter()
        .map(|it| it.request.url)
        .collect();
    assert_eq!(
        live_calls.load(Ordering::SeqCst),
        1,
        "only X is new, but the server was called again; the file: {urls:?}"
    );

    // CI replays the same workflow.
    let replay = Cassette::replay(&path).order(Order::InOrder);
    for p in ["/a", "/x", "/b", "/c"] {
        let body = replay.execute(get(p)).await.map(|_| ());
        assert!(
            body.is_ok(),
            "{p}: {:?}; the file: {urls:?}",
            body.unwrap_err().to_string()
        );
    }
}
