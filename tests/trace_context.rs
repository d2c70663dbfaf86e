//! Trace context on the wire (feature `otel`): `PropagateContext` under `Telemetry`, itself
//! under `Hedging` and `Retrying`, gives every attempt and hedge copy a `traceparent` naming
//! its own client span, in the caller's trace.
#![cfg(feature = "otel")]

use std::time::Duration;

use http_doer::hedging::HedgeBudget;
use http_doer::retrying::Backoff;
use http_doer::testing::{ScriptedDoer, response};
use http_doer::{Body, Doer, DoerExt};
use opentelemetry::trace::{SpanKind, TraceContextExt as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

#[path = "support/capture.rs"]
mod capture;

#[path = "support/otel.rs"]
#[allow(dead_code)]
mod otel;

#[allow(dead_code)]
mod support;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `traceparent`'s trace id and parent (span) id, checked for the W3C shape.
fn parse(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00", "version");
    assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{traceparent}");
    assert_eq!(parts[3], "01", "sampled");
    (parts[1].to_owned(), parts[2].to_owned())
}

#[test]
fn every_attempt_and_hedge_copy_carries_its_own_span_id() {
    let backend = ScriptedDoer::new()
        .then_after(ms(10), Ok(response(503, "busy")))
        .then_after(ms(10), Ok(response(503, "busy")))
        .then_after(ms(1000), Ok(response(200, "slow")))
        .then_after(ms(5), Ok(response(200, "fast")));
    let (app_trace, spans) = otel::export(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(async {
                let stack = backend
                    .clone()
                    .propagate_context()
                    .propagator(TraceContextPropagator::new())
                    .telemetry()
                    .breaker()
                    .hedging()
                    .fixed_delay(ms(50))
                    .budget(HedgeBudget::unlimited())
                    .retrying()
                    .backoff(Backoff::constant(ms(100)))
                    .no_budget()
                    .logging();
                let handler = tracing::info_span!("handle_order");
                let trace_id = handler.context().span().span_context().trace_id();
                let req = http::Request::get("https://api.test/items")
                    .body(Body::empty())
                    .unwrap();
                let resp = stack.execute(req).instrument(handler).await.unwrap();
                assert_eq!(resp.into_body().text().await.unwrap(), "fast");
                trace_id
            })
    });

    let sent = backend.requests();
    assert_eq!(sent.len(), 4);
    let mut ids = Vec::new();
    for req in &sent {
        let header = req
            .headers()
            .get("traceparent")
            .expect("traceparent on every copy");
        let (trace, parent) = parse(header.to_str().unwrap());
        assert_eq!(trace, app_trace.to_string(), "the caller's trace");
        // The parent the server sees is the exchange's own client span.
        let span = otel::by_id(&spans, &parent);
        assert_eq!(span.span_kind, SpanKind::Client);
        ids.push(parent);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "each retry and hedge copy its own span id");
}

#[test]
fn no_span_no_header_and_the_callers_header_is_kept() {
    // Never alongside the other test, whose subscriber must not miss a callsite this one
    // registers first.
    let _serial = capture::serial();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            let backend = ScriptedDoer::new().then_status(200).then_status(200);
            let stack = backend
                .clone()
                .propagate_context()
                .propagator(TraceContextPropagator::new())
                .telemetry();
            let bare = http::Request::get("https://api.test/")
                .body(Body::empty())
                .unwrap();
            stack.execute(bare).await.unwrap();
            assert_eq!(backend.requests()[0].headers().get("traceparent"), None);
            assert_eq!(backend.requests()[0].headers().get("tracestate"), None);
            let theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            let req = http::Request::get("https://api.test/")
                .header("traceparent", theirs)
                .body(Body::empty())
                .unwrap();
            stack.execute(req).await.unwrap();
            assert_eq!(backend.requests()[1].headers()["traceparent"], theirs);
        });
}

#[test]
fn the_callers_tracestate_travels_with_the_new_traceparent() {
    use opentelemetry::propagation::TextMapPropagator as _;
    // What a server received from its own caller: a trace to continue, with vendor state.
    let incoming_parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let incoming_state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
    let mut incoming = std::collections::HashMap::new();
    incoming.insert("traceparent".to_owned(), incoming_parent.to_owned());
    incoming.insert("tracestate".to_owned(), incoming_state.to_owned());
    let remote = TraceContextPropagator::new().extract(&incoming);

    let backend = ScriptedDoer::new().then_status(200);
    let ((), spans) = otel::export(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let stack = backend
                    .clone()
                    .propagate_context()
                    .propagator(TraceContextPropagator::new())
                    .telemetry();
                let handler = tracing::info_span!("handle_request");
                let _ = handler.set_parent(remote);
                let req = http::Request::get("https://api.test/")
                    .body(Body::empty())
                    .unwrap();
                stack.execute(req).instrument(handler).await.unwrap();
            })
    });

    let sent = &backend.requests()[0];
    let (trace, parent) = parse(sent.headers()["traceparent"].to_str().unwrap());
    assert_eq!(
        trace, "0af7651916cd43dd8448eb211c80319c",
        "the caller's trace goes on"
    );
    let client = otel::by_id(&spans, &parent);
    assert_eq!(
        client.span_kind,
        SpanKind::Client,
        "under the exchange's own client span, not the caller's"
    );
    assert_eq!(
        sent.headers()["tracestate"],
        incoming_state,
        "the vendors' state passes through unchanged"
    );
}

/// On the wire, over both real backends: the `traceparent` a loopback server receives names
/// the exchange's exported client span, in the caller's trace.
#[test]
fn a_real_server_receives_the_exchanges_traceparent_on_both_backends() {
    let backends: [(&str, Box<dyn Doer>); 2] = [
        ("reqwest", Box::new(http_doer::ReqwestDoer::new())),
        ("ureq", Box::new(http_doer::UreqDoer::new())),
    ];
    for (name, backend) in backends {
        let ((app_trace, seen), spans) = otel::export(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let server = support::server::start().await;
                    let stack = backend
                        .propagate_context()
                        .propagator(TraceContextPropagator::new())
                        .telemetry()
                        .logging();
                    let handler = tracing::info_span!("handle_order");
                    let trace_id = handler.context().span().span_context().trace_id();
                    let req = http::Request::get(server.url("/echo"))
                        .body(Body::empty())
                        .unwrap();
                    let resp = stack.execute(req).instrument(handler).await.unwrap();
                    // `/echo` sends every request header back as `x-echo-<name>`.
                    let seen = resp.headers()["x-echo-traceparent"]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    (trace_id, seen)
                })
        });
        let (trace, parent) = parse(&seen);
        assert_eq!(trace, app_trace.to_string(), "{name}: the caller's trace");
        let span = otel::by_id(&spans, &parent);
        assert_eq!(span.span_kind, SpanKind::Client, "{name}");
    }
}
