//! Logging: one `tracing` event per exchange, its fields, levels and target, the kept log, the
//! sink, and redaction, over test doubles and over a real loopback server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};
use http_doer::logging::{KeepLog, Outcome};
use http_doer::testing::{ScriptedDoer, doer_fn, response};
use http_doer::{Attempts, Body, Doer, DoerExt, Error, ErrorKind, Logging, Request, ReqwestDoer};
use tracing::Level;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, registry};

#[path = "support/capture.rs"]
mod capture;
#[path = "support/log_buffer.rs"]
mod log_buffer;
use capture::{Capture, Scoped, capture};
use log_buffer::Buffer;

fn get(url: &str) -> Request {
    http::Request::get(url).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn a_success_is_one_debug_event_with_its_fields() {
    let (cap, _g) = capture();
    let doer = ScriptedDoer::new()
        .then(Ok(response(200, "hello")))
        .logging();
    let req = http::Request::post("https://u:pw@api.test/v1/items?api_key=s3cr3t&page=2")
        .body(Body::from("payload!"))
        .unwrap();
    let resp = doer.execute(req).await.unwrap();
    assert_eq!(resp.status(), 200);

    let events = cap.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e.level, Level::DEBUG);
    assert_eq!(e.target, "http_doer::logging");
    assert_eq!(e.get("message"), Some("http response"));
    assert_eq!(e.get("method"), Some("POST"));
    assert_eq!(
        e.get("url"),
        Some("https://api.test/v1/items?api_key=REDACTED&page=2")
    );
    assert_eq!(e.get("status"), Some("200"));
    assert_eq!(e.get("request_bytes"), Some("8"));
    assert_eq!(e.get("response_bytes"), Some("5"));
    let ms: f64 = e.get("elapsed_ms").unwrap().parse().unwrap();
    assert!(ms >= 0.0);
    for absent in [
        "attempt",
        "error",
        "error_kind",
        "request_headers",
        "response_headers",
        "request_body",
        "response_body",
    ] {
        assert_eq!(e.get(absent), None, "{absent} in {e:?}");
    }
}

#[tokio::test]
async fn errors_and_5xx_are_warn_events_and_4xx_is_debug() {
    let (cap, _g) = capture();
    let doer = ScriptedDoer::new()
        .then_status(503)
        .then_error(ErrorKind::Connect)
        .then_status(404)
        .logging();
    assert_eq!(
        doer.execute(get("http://a.test/")).await.unwrap().status(),
        503
    );
    assert!(
        doer.execute(get("http://a.test/"))
            .await
            .unwrap_err()
            .is_connect()
    );
    assert_eq!(
        doer.execute(get("http://a.test/")).await.unwrap().status(),
        404
    );

    let events = cap.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].level, Level::WARN);
    assert_eq!(events[0].get("status"), Some("503"));
    assert_eq!(events[0].get("error_kind"), None);
    assert_eq!(events[1].level, Level::WARN);
    assert_eq!(events[1].get("message"), Some("http error"));
    assert_eq!(events[1].get("error_kind"), Some("Connect"));
    assert_eq!(events[1].get("error"), Some("connect error: scripted"));
    assert_eq!(events[1].get("status"), None);
    assert_eq!(events[1].get("response_bytes"), None);
    assert_eq!(events[2].level, Level::DEBUG);
    assert_eq!(events[2].get("status"), Some("404"));
}

#[tokio::test]
async fn levels_and_target_are_configurable_and_filterable() {
    let cap = Capture::default();
    let subscriber = registry()
        .with(EnvFilter::new("my_app::http=info"))
        .with(cap.clone());
    let _g = Scoped::new(subscriber);

    let custom = ScriptedDoer::new()
        .then_status(200)
        .then_status(500)
        .logging()
        .target("my_app::http")
        .success_level(Level::INFO)
        .failure_level(Level::ERROR);
    // Default target and levels: filtered out by the directive above.
    let default = ScriptedDoer::new().then_status(500).logging();
    custom.execute(get("http://a.test/ok")).await.unwrap();
    custom.execute(get("http://a.test/fail")).await.unwrap();
    default.execute(get("http://a.test/other")).await.unwrap();

    let events = cap.events();
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.target.as_str(), e.level, e.get("url").unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("my_app::http", Level::INFO, "http://a.test/ok"),
            ("my_app::http", Level::ERROR, "http://a.test/fail"),
        ]
    );

    // A success level below the filter's is filtered out while failures still pass.
    let quiet = ScriptedDoer::new()
        .then_status(200)
        .then_status(502)
        .logging()
        .target("my_app::http")
        .success_level(Level::TRACE);
    quiet.execute(get("http://a.test/q1")).await.unwrap();
    quiet.execute(get("http://a.test/q2")).await.unwrap();
    let events = cap.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].get("url"), Some("http://a.test/q2"));
    assert_eq!(events[2].level, Level::WARN);
}

#[tokio::test]
async fn attempt_is_read_from_the_response_extension_or_the_error() {
    let (cap, _g) = capture();
    let log = KeepLog::new(10);
    let doer = doer_fn(|req: Request| async move {
        match req.uri().path() {
            "/retried" => {
                let mut resp = response(200, "");
                resp.extensions_mut().insert(Attempts(3));
                Ok(resp)
            }
            "/gave-up" => Err(Error::from(ErrorKind::Timeout).with_attempts(4)),
            _ => Ok(response(204, "")),
        }
    })
    .logging()
    .keep_log(log.clone());
    let resp = doer.execute(get("http://a.test/retried")).await.unwrap();
    assert_eq!(resp.extensions().get::<Attempts>(), Some(&Attempts(3)));
    doer.execute(get("http://a.test/gave-up"))
        .await
        .unwrap_err();
    doer.execute(get("http://a.test/plain")).await.unwrap();

    let attempts: Vec<_> = cap
        .events()
        .iter()
        .map(|e| e.get("attempt").map(str::to_owned))
        .collect();
    assert_eq!(attempts, [Some("3".to_owned()), Some("4".to_owned()), None]);
    let kept: Vec<_> = log.entries().iter().map(|e| e.attempt).collect();
    assert_eq!(kept, [Some(3), Some(4), None]);
    let text = log.to_string();
    assert!(text.contains("/retried attempt=3 status=200"), "{text}");
    assert!(text.contains("/gave-up attempt=4 error=Timeout"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn elapsed_is_measured_with_tokio_time() {
    let (cap, _g) = capture();
    let log = KeepLog::new(10);
    let doer = ScriptedDoer::new()
        .then_after(Duration::from_millis(1500), Ok(response(200, "")))
        .logging()
        .keep_log(log.clone());
    doer.execute(get("http://a.test/")).await.unwrap();
    assert_eq!(cap.events()[0].get("elapsed_ms"), Some("1500.0"));
    assert_eq!(log.entries()[0].elapsed, Duration::from_millis(1500));
    assert!(log.to_string().contains("elapsed=1.5s"), "{log}");
}

#[tokio::test]
async fn headers_are_off_by_default_and_redacted_when_on() {
    let (cap, _g) = capture();
    let reply = || {
        let mut resp = response(200, "");
        resp.headers_mut()
            .insert("set-cookie", HeaderValue::from_static("sid=setc00kie"));
        resp.headers_mut()
            .insert("x-request-id", HeaderValue::from_static("r-1"));
        Ok(resp)
    };
    let doer = ScriptedDoer::new().then(reply()).then(reply());
    let mut signed = HeaderValue::from_static("sig=s1gned");
    signed.set_sensitive(true);
    let req = || {
        let mut req = http::Request::get("http://a.test/")
            .header("authorization", "Bearer b3arer")
            .header("proxy-authorization", "Basic cHJveHk6cHc=")
            .header("cookie", "sid=c00kie")
            .header("x-api-key", "ap1key")
            .header("x-tenant", "t3nant")
            .header("accept", "application/json")
            .body(Body::empty())
            .unwrap();
        req.headers_mut().insert("signature", signed.clone());
        req
    };

    doer.clone().logging().execute(req()).await.unwrap();
    let off = &cap.events()[0];
    assert_eq!(off.get("request_headers"), None);
    assert_eq!(off.get("response_headers"), None);

    doer.logging()
        .headers(true)
        .redact_header(HeaderName::from_static("x-tenant"))
        .execute(req())
        .await
        .unwrap();
    let on = &cap.events()[1];
    let sent = on.get("request_headers").unwrap();
    let got = on.get("response_headers").unwrap();
    for secret in [
        "b3arer",
        "cHJveHk6cHc=",
        "c00kie",
        "ap1key",
        "t3nant",
        "s1gned",
        "setc00kie",
    ] {
        assert!(!sent.contains(secret) && !got.contains(secret), "{secret}");
    }
    assert!(sent.contains(r#""authorization": "REDACTED""#), "{sent}");
    assert!(sent.contains(r#""x-tenant": "REDACTED""#), "{sent}");
    assert!(sent.contains(r#""accept": "application/json""#), "{sent}");
    assert!(got.contains(r#""set-cookie": "REDACTED""#), "{got}");
    assert!(got.contains(r#""x-request-id": "r-1""#), "{got}");
}

#[tokio::test]
async fn bodies_are_off_by_default_then_capped_and_redacted() {
    let (cap, _g) = capture();
    let reply = || {
        let mut resp = response(200, r#"{"access_token":"t0ken","expires_in":3600}"#);
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        Ok(resp)
    };
    let doer = ScriptedDoer::new().then(reply()).then(reply());
    let req = || {
        http::Request::post("http://a.test/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(
                "grant_type=password&username=ann&password=hunter2",
            ))
            .unwrap()
    };
    doer.clone().logging().execute(req()).await.unwrap();
    assert_eq!(cap.events()[0].get("request_body"), None);
    assert_eq!(cap.events()[0].get("response_body"), None);

    doer.logging().bodies(40).execute(req()).await.unwrap();
    let e = &cap.events()[1];
    assert_eq!(
        e.get("request_body"),
        Some("grant_type=password&username=ann&passwor... [49 bytes in all]")
    );
    assert_eq!(
        e.get("response_body"),
        Some(r#"{"access_token":"REDACTED","expires_in":... [42 bytes in all]"#)
    );
    assert!(!format!("{e:?}").contains("hunter2") && !format!("{e:?}").contains("t0ken"));
}

#[tokio::test]
async fn the_sink_gets_a_structured_record_even_with_tracing_off() {
    let (cap, _g) = capture();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink_seen = seen.clone();
    let log = KeepLog::new(4);
    let doer = ScriptedDoer::new()
        .then_status(201)
        .then(Err(Error::from(ErrorKind::Timeout).with_attempts(2)))
        .logging()
        .tracing(false)
        .keep_log(log.clone())
        .sink(move |r| {
            sink_seen.lock().unwrap().push((
                r.level,
                r.method.to_string(),
                r.url.to_owned(),
                r.status,
                r.error.map(|e| e.kind()),
                r.attempt,
                r.request_bytes,
                format!("{r:?}"),
            ));
        });
    doer.execute(get("http://a.test/x?token=t0k"))
        .await
        .unwrap();
    doer.execute(get("http://a.test/y")).await.unwrap_err();

    assert!(cap.events().is_empty(), "tracing is off");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, Level::DEBUG);
    assert_eq!(seen[0].1, "GET");
    assert_eq!(seen[0].2, "http://a.test/x?token=REDACTED");
    assert_eq!(seen[0].3, Some(StatusCode::CREATED));
    assert_eq!(seen[0].6, Some(0));
    assert!(!seen[0].7.contains("t0k"), "{}", seen[0].7);
    assert_eq!(seen[1].0, Level::WARN);
    assert_eq!(seen[1].4, Some(ErrorKind::Timeout));
    assert_eq!(seen[1].5, Some(2));
    assert_eq!(log.len(), 2, "the kept log does not depend on tracing");
}

#[tokio::test]
async fn clones_share_the_kept_log_and_outcomes_pass_through_unchanged() {
    let log = KeepLog::new(10);
    let script = ScriptedDoer::new();
    let mut resp = response(418, "teapot");
    resp.extensions_mut().insert(7u8);
    script.push(Ok(resp));
    script.push(Err(Error::from(ErrorKind::TooLarge).with_message("big")));
    let a = Logging::new(script).keep_log(log.clone());
    let b = a.clone();
    assert_eq!(b.kept_log().map(KeepLog::len), Some(0));

    let resp = a.execute(get("http://a.test/1")).await.unwrap();
    assert_eq!(resp.status(), 418);
    assert_eq!(resp.extensions().get::<u8>(), Some(&7));
    assert_eq!(resp.into_body().text().await.unwrap(), "teapot");
    let err = b.execute(get("http://a.test/2")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert_eq!(err.to_string(), "body too large: big");

    let entries = log.entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].outcome, Outcome::Status(StatusCode::IM_A_TEAPOT));
    assert_eq!(
        entries[1].outcome,
        Outcome::Error {
            kind: ErrorKind::TooLarge,
            message: "body too large: big".into()
        }
    );
    assert_eq!(a.kept_log().unwrap().len(), 2);
    assert_eq!(a.get_ref().calls(), 2);
}

#[tokio::test]
async fn without_any_listener_logging_only_passes_the_call_on() {
    let no_subscriber = tracing::Dispatch::none();
    let _g = Scoped::new(no_subscriber);
    let doer = ScriptedDoer::new().then_status(200).logging();
    assert_eq!(
        doer.execute(get("http://a.test/")).await.unwrap().status(),
        200
    );
    assert_eq!(doer.get_ref().calls(), 1);
}

/// Sends a Bearer token, a Basic password, an API key in a header and in the query, and a
/// cookie through Logging (headers and bodies on) to real loopback servers that fail in three
/// ways, and looks for them in every tracing line, kept-log line, sink record, error `Display`
/// and `Debug`.
#[tokio::test]
async fn no_secret_reaches_any_output_over_a_failing_loopback_server() {
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const BEARER: &str = "b3arerT0ken";
    const BASIC_USER: &str = "ann";
    const BASIC_PASSWORD: &str = "hunt3rPassw0rd";
    const API_KEY_HEADER: &str = "h3aderApiKey";
    const API_KEY_QUERY: &str = "qu3ryApiKey";
    const COOKIE: &str = "c00kieSession";
    const SERVER_COOKIE: &str = "s3rverCookie";
    const SERVER_TOKEN: &str = "s3rverT0ken";
    let basic = "YW5uOmh1bnQzclBhc3N3MHJk"; // base64("ann:hunt3rPassw0rd")
    let secrets = [
        BEARER,
        BASIC_PASSWORD,
        basic,
        API_KEY_HEADER,
        API_KEY_QUERY,
        COOKIE,
        SERVER_COOKIE,
        SERVER_TOKEN,
    ];

    // A server that answers 500 with a secret cookie and a secret in a JSON body.
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header(
                    "set-cookie",
                    format!("sid={SERVER_COOKIE}; HttpOnly").as_str(),
                )
                .set_body_raw(
                    format!(r#"{{"error":"boom","refresh_token":"{SERVER_TOKEN}"}}"#),
                    "application/json",
                ),
        )
        .mount(&server)
        .await;
    // A server that accepts and closes at once, and a port where nobody listens.
    let closer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closer_addr = closer.local_addr().unwrap();
    let closer_task = tokio::spawn(async move {
        for _ in 0..8 {
            let Ok(Ok((sock, _))) =
                tokio::time::timeout(Duration::from_secs(10), closer.accept()).await
            else {
                return;
            };
            drop(sock);
        }
    });
    let refused_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };

    let buffer = Buffer::default();
    let cap = Capture::default();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer({
            let b = buffer.clone();
            move || b.clone()
        });
    let subscriber = registry()
        .with(EnvFilter::new("http_doer=trace"))
        .with(cap.clone())
        .with(fmt);
    let _g = Scoped::new(subscriber);

    let log = KeepLog::new(16);
    let records = Arc::new(Mutex::new(Vec::new()));
    let sink_records = records.clone();
    let doer = ReqwestDoer::new()
        .logging()
        .headers(true)
        .bodies(4096)
        .keep_log(log.clone())
        .sink(move |r| sink_records.lock().unwrap().push(format!("{r:?}")));

    let targets = [
        server.uri(),
        format!("http://{closer_addr}"),
        format!("http://{refused_addr}"),
    ];
    let mut outputs = Vec::new();
    for base in &targets {
        for auth in [format!("Bearer {BEARER}"), format!("Basic {basic}")] {
            let url = format!(
                "{}/v1/things?api_key={API_KEY_QUERY}&page=1",
                base.replacen(
                    "http://",
                    &format!("http://{BASIC_USER}:{BASIC_PASSWORD}@"),
                    1
                )
            );
            let req = http::Request::post(url)
                .header("authorization", auth)
                .header("x-api-key", API_KEY_HEADER)
                .header("cookie", format!("session={COOKIE}"))
                .header("content-type", "application/json")
                .body(Body::from(format!(
                    r#"{{"password":"{BASIC_PASSWORD}","api_key":"{API_KEY_HEADER}"}}"#
                )))
                .unwrap();
            match tokio::time::timeout(Duration::from_secs(20), doer.execute(req))
                .await
                .expect("a loopback exchange ends within 20 s")
            {
                // http's own `Debug` of a response prints header values, so it is not checked.
                Ok(resp) => assert_eq!(resp.status(), 500),
                Err(err) => {
                    assert!(
                        matches!(err.kind(), ErrorKind::Connect | ErrorKind::Transport),
                        "{err:?}"
                    );
                    outputs.push(err.to_string());
                    outputs.push(format!("{err:?}"));
                    outputs.push(format!("{err:#?}"));
                }
            }
        }
    }
    closer_task.abort();

    let events = cap.events();
    let ours: Vec<_> = events
        .iter()
        .filter(|e| e.target == "http_doer::logging")
        .collect();
    assert_eq!(ours.len(), 6, "{events:#?}");
    assert!(ours.iter().all(|e| e.level == Level::WARN));
    assert_eq!(
        ours.iter()
            .filter(|e| e.get("status") == Some("500"))
            .count(),
        2
    );
    assert_eq!(ours.iter().filter(|e| e.get("error").is_some()).count(), 4);
    assert_eq!(log.len(), 6);
    assert_eq!(records.lock().unwrap().len(), 6);

    let fmt_text = buffer.text();
    assert!(fmt_text.lines().count() >= 6, "{fmt_text}");
    assert!(fmt_text.contains("api_key=REDACTED&page=1"), "{fmt_text}");
    assert!(
        fmt_text.contains(r#"refresh_token\":\"REDACTED"#),
        "{fmt_text}"
    );
    outputs.push(fmt_text);
    outputs.push(log.to_string());
    outputs.extend(log.entries().iter().map(|e| format!("{e:?}")));
    outputs.extend(records.lock().unwrap().iter().cloned());
    outputs.extend(events.iter().map(|e| format!("{e:?}")));
    for out in &outputs {
        for secret in secrets {
            assert!(!out.contains(secret), "{secret} leaked in: {out}");
        }
    }
}

#[tokio::test]
async fn accessors_and_debug_follow_the_decorator_shape() {
    let log = KeepLog::new(3);
    let mut doer = ScriptedDoer::new()
        .then_status(200)
        .logging()
        .target("my_app::http")
        .success_level(Level::INFO)
        .headers(true)
        .redact_header(HeaderName::from_static("x-customer"))
        .bodies(64)
        .keep_log(log.clone())
        .sink(|_| {});
    assert_eq!(doer.get_mut().calls(), 0);
    let debug = format!("{doer:?}");
    for part in [
        "Logging { inner: ScriptedDoer",
        "target: \"my_app::http\"",
        "success_level: Level(Info)",
        "failure_level: Level(Warn)",
        "headers: true",
        "\"x-customer\"",
        "bodies: Some(64)",
        "keep_log: Some(KeepLog",
        "sink: true",
        ".. }",
    ] {
        assert!(debug.contains(part), "{part} in {debug}");
    }

    doer.execute(get("http://a.test/")).await.unwrap();
    #[allow(deprecated)]
    let calls = doer.inner().calls();
    assert_eq!(calls, 1);
    assert_eq!(log.len(), 1);
    assert_eq!(doer.into_inner().calls(), 1);
}

/// With headers on, a header that holds a URL (`Location`, `Content-Location`, `Link`) is
/// shown as the URL field is: no userinfo, secret query values replaced, in the event, in the
/// sink's records and in the kept log alike. A server answering `201 Created` with a
/// pre-signed upload URL put its token in the log.
#[tokio::test]
async fn header_values_that_hold_urls_are_redacted_like_the_url() {
    let (cap, _g) = capture();
    let mut created = response(201, "");
    let headers = created.headers_mut();
    headers.insert(
        http::header::LOCATION,
        HeaderValue::from_static(
            "https://bob:S3CRET-PW@files.test/upload?token=S3CRET-TOKEN&part=1",
        ),
    );
    headers.insert(
        http::header::CONTENT_LOCATION,
        HeaderValue::from_static("/upload?access_token=S3CRET-CL"),
    );
    headers.insert(
        http::header::LINK,
        HeaderValue::from_static("<https://files.test/next?sig=S3CRET-SIG>; rel=\"next\""),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let log = KeepLog::new(4);
    let doer = ScriptedDoer::new()
        .then(Ok(created))
        .logging()
        .headers(true)
        .keep_log(log.clone())
        .sink(move |r| {
            let shown = r.response_headers.as_ref().unwrap();
            let pairs: Vec<String> = shown.iter().map(|(n, v)| format!("{n}: {v}")).collect();
            sink.lock().unwrap().push((format!("{shown}"), pairs));
        });
    let req = http::Request::post("https://files.test/upload")
        .body(Body::from("x"))
        .unwrap();
    doer.execute(req).await.unwrap();

    let seen = seen.lock().unwrap();
    let (shown, pairs) = &seen[0];
    assert!(
        pairs.contains(&"location: https://files.test/upload?token=REDACTED&part=1".to_owned()),
        "{pairs:?}"
    );
    assert!(
        pairs.contains(&"content-location: /upload?access_token=REDACTED".to_owned()),
        "{pairs:?}"
    );
    let events = format!("{:?}", cap.events());
    let kept = log.to_string();
    for text in [shown.as_str(), &pairs.join("\n"), &events, &kept] {
        assert!(!text.contains("S3CRET"), "a secret reached the log: {text}");
    }
    assert!(events.contains("files.test/upload"), "{events}");
}
