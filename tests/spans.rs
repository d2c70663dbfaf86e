//! Spans: one scripted call through the recommended stack, exported by tracing-opentelemetry
//! into the OpenTelemetry SDK's in-memory exporter. The call is one internal span; each
//! attempt and hedge copy that reached the network is its own client span under it, named and
//! attributed by the HTTP client semantic conventions; no secret is in any attribute.

use std::collections::HashSet;
use std::time::Duration;

use http_doer::hedging::HedgeBudget;
use http_doer::retrying::Backoff;
use http_doer::testing::{ScriptedDoer, response};
use http_doer::{Body, Doer, DoerExt, ErrorKind};
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;
use otel::{int, text};

#[path = "support/capture.rs"]
mod capture;

#[path = "support/otel.rs"]
#[allow(dead_code)]
mod otel;

#[allow(dead_code)]
mod support;

const SECRET_QUERY: &str = "s3cr3t-query";
const SECRET_HEADER: &str = "sekrit-bearer";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn paused(fut: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(fut);
}

#[test]
fn each_attempt_and_hedge_copy_is_a_client_span_under_the_call_span() {
    let ((), spans) = otel::export(|| {
        paused(async {
            let backend = ScriptedDoer::new()
                // Attempt 1: the original fails fast, its hedge goes at once and fails too.
                .then_after(ms(10), Ok(response(503, "busy")))
                .then_after(ms(10), Ok(response(503, "busy")))
                // Attempt 2: the original stalls; the hedge sent after 50 ms wins.
                .then_after(ms(1000), Ok(response(200, "slow")))
                .then_after(ms(5), Ok(response(200, "fast")));
            let stack = backend
                .telemetry()
                .breaker()
                .hedging()
                .fixed_delay(ms(50))
                .budget(HedgeBudget::unlimited())
                .retrying()
                .backoff(Backoff::constant(ms(100)))
                .no_budget()
                .logging();
            let req = http::Request::get(format!(
                "https://user:pw@api.test:8443/v1/items?token={SECRET_QUERY}"
            ))
            .header("authorization", format!("Bearer {SECRET_HEADER}"))
            .body(Body::empty())
            .unwrap();
            let resp = stack.execute(req).await.unwrap();
            assert_eq!(resp.into_body().text().await.unwrap(), "fast");
        })
    });

    let calls: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "http_doer.call")
        .collect();
    assert_eq!(calls.len(), 1, "{spans:#?}");
    let call = calls[0];
    assert_eq!(call.span_kind, SpanKind::Internal);
    assert_eq!(text(call, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(int(call, "http.response.status_code"), Some(200));
    assert_eq!(
        int(call, "http.request.resend_count"),
        Some(3),
        "four exchanges"
    );
    assert_eq!(call.status, Status::Unset);

    let mut exchanges: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    assert_eq!(exchanges.len(), 4, "two copies per attempt, two attempts");
    exchanges.sort_by_key(|s| int(s, "http.request.resend_count").unwrap_or(0));
    for (n, span) in exchanges.iter().enumerate() {
        assert_eq!(span.name, "GET");
        assert_eq!(
            span.parent_span_id,
            call.span_context.span_id(),
            "child of the call"
        );
        assert_eq!(span.span_context.trace_id(), call.span_context.trace_id());
        let resend = int(span, "http.request.resend_count");
        assert_eq!(
            resend,
            (n > 0).then_some(n as i64),
            "numbered across retries and hedges"
        );
        assert_eq!(text(span, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(text(span, "server.address").as_deref(), Some("api.test"));
        assert_eq!(int(span, "server.port"), Some(8443));
        assert_eq!(
            text(span, "url.full").as_deref(),
            Some("https://api.test:8443/v1/items?token=REDACTED")
        );
    }
    let ids: HashSet<_> = exchanges.iter().map(|s| s.span_context.span_id()).collect();
    assert_eq!(ids.len(), 4, "each exchange its own span id");

    // Outcomes: two 503s (errors by the conventions), the winner's 200, and the original of
    // attempt 2, cancelled when its hedge won, with no outcome at all.
    let statuses: Vec<Option<i64>> = exchanges
        .iter()
        .map(|s| int(s, "http.response.status_code"))
        .collect();
    assert_eq!(statuses, [Some(503), Some(503), None, Some(200)]);
    for failed in &exchanges[..2] {
        assert_eq!(text(failed, "error.type").as_deref(), Some("503"));
        assert!(matches!(failed.status, Status::Error { .. }));
    }
    assert_eq!(text(exchanges[3], "error.type"), None);
    assert_eq!(exchanges[3].status, Status::Unset);

    // No secret in any attribute or event of any span.
    for span in &spans {
        let mut texts: Vec<String> = span
            .attributes
            .iter()
            .map(|kv| kv.value.as_str().into_owned())
            .collect();
        for event in span.events.iter() {
            texts.push(event.name.to_string());
            texts.extend(
                event
                    .attributes
                    .iter()
                    .map(|kv| kv.value.as_str().into_owned()),
            );
        }
        for t in texts {
            for bad in [SECRET_QUERY, SECRET_HEADER, "user:pw", "Bearer"] {
                assert!(!t.contains(bad), "span {}: {t:?} leaks {bad}", span.name);
            }
        }
    }
}

#[test]
fn an_error_and_a_refusal_mark_the_spans_as_errors() {
    let ((), spans) = otel::export(|| {
        paused(async {
            let stack = ScriptedDoer::new()
                .then_error(ErrorKind::Connect)
                .telemetry()
                .breaker()
                .consecutive_failures(1)
                .logging();
            let get = || {
                http::Request::get("http://api.test/")
                    .body(Body::empty())
                    .unwrap()
            };
            assert!(stack.execute(get()).await.unwrap_err().is_connect());
            let refused = stack.execute(get()).await.unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::BreakerOpen);
        })
    });
    let clients: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    assert_eq!(clients.len(), 1, "the refused call sent nothing");
    assert_eq!(text(clients[0], "error.type").as_deref(), Some("connect"));
    assert_eq!(int(clients[0], "server.port"), Some(80));
    assert!(matches!(clients[0].status, Status::Error { .. }));
    let calls: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "http_doer.call")
        .collect();
    let kinds: Vec<Option<String>> = calls.iter().map(|s| text(s, "error.type")).collect();
    assert_eq!(
        kinds,
        [Some("connect".to_owned()), Some("breaker_open".to_owned())]
    );
    for call in calls {
        assert!(matches!(call.status, Status::Error { .. }), "{call:?}");
    }
}

/// A refused connection over both real backends: the client span is an error whose
/// description (the one free-text attribute) names the URL redacted, never its secrets.
#[test]
fn a_refused_connection_is_an_error_span_without_secrets_on_both_backends() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let backends: [(&str, Box<dyn Doer>); 2] = [
        ("reqwest", Box::new(http_doer::ReqwestDoer::new())),
        ("ureq", Box::new(http_doer::UreqDoer::new())),
    ];
    for (name, backend) in backends {
        let ((), spans) = otel::export(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let stack = backend.telemetry().logging();
                    let url = format!("http://user:pw@127.0.0.1:{port}/?token={SECRET_QUERY}");
                    let req = http::Request::get(url).body(Body::empty()).unwrap();
                    let err = stack.execute(req).await.unwrap_err();
                    assert!(err.is_connect(), "{name}: {err:#}");
                })
        });
        let client = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Client)
            .unwrap_or_else(|| panic!("{name}: no client span in {spans:#?}"));
        assert_eq!(
            text(client, "error.type").as_deref(),
            Some("connect"),
            "{name}"
        );
        let Status::Error { description } = &client.status else {
            panic!("{name}: {:?}", client.status);
        };
        assert!(description.contains("REDACTED"), "{name}: {description}");
        for span in &spans {
            let mut texts: Vec<String> = span
                .attributes
                .iter()
                .map(|kv| kv.value.as_str().into_owned())
                .collect();
            if let Status::Error { description } = &span.status {
                texts.push(description.to_string());
            }
            for t in texts {
                for bad in [SECRET_QUERY, "user:pw", "pw@"] {
                    assert!(
                        !t.contains(bad),
                        "{name}: span {}: {t:?} leaks {bad}",
                        span.name
                    );
                }
            }
        }
    }
}

/// Over the real backends on loopback (not a scripted double): each exchange is one client
/// span with the server's address and port, the status, and the URL without its secret.
#[test]
fn a_real_exchange_is_a_client_span_on_both_backends() {
    let backends: [(&str, Box<dyn Doer>); 2] = [
        ("reqwest", Box::new(http_doer::ReqwestDoer::new())),
        ("ureq", Box::new(http_doer::UreqDoer::new())),
    ];
    for (name, backend) in backends {
        let mut port = 0;
        let ((), spans) = otel::export(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let server = support::server::start().await;
                    let url = server.url(&format!("/status/404?token={SECRET_QUERY}"));
                    port = url::Url::parse(&url).unwrap().port().unwrap();
                    let stack = backend.telemetry().logging();
                    let req = http::Request::get(url).body(Body::empty()).unwrap();
                    let resp = stack.execute(req).await.unwrap();
                    assert_eq!(resp.status(), 404, "{name}");
                })
        });
        let exchanges: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.span_kind == SpanKind::Client)
            .collect();
        assert_eq!(exchanges.len(), 1, "{name}: {spans:#?}");
        let span = exchanges[0];
        assert_eq!(span.name, "GET", "{name}");
        assert_eq!(
            text(span, "server.address").as_deref(),
            Some("127.0.0.1"),
            "{name}"
        );
        assert_eq!(int(span, "server.port"), Some(i64::from(port)), "{name}");
        assert_eq!(int(span, "http.response.status_code"), Some(404), "{name}");
        assert_eq!(
            text(span, "network.protocol.version").as_deref(),
            Some("1.1"),
            "{name}"
        );
        assert_eq!(text(span, "error.type").as_deref(), Some("404"), "{name}");
        assert_eq!(
            text(span, "url.full"),
            Some(format!("http://127.0.0.1:{port}/status/404?token=REDACTED")),
            "{name}"
        );
        let call = spans
            .iter()
            .find(|s| s.name == "http_doer.call")
            .expect("the call span");
        assert_eq!(span.parent_span_id, call.span_context.span_id(), "{name}");
    }
}
