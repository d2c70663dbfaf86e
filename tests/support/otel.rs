//! Spans exported by tracing-opentelemetry into the OpenTelemetry SDK's in-memory exporter, for
//! the tests of spans and trace context (feature `otel`), and the readers of their attributes.
//! The including test crate also includes `support/capture.rs` as `capture`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt;

/// Runs `f` with a subscriber that exports every span into memory, one such test at a time
/// (see `capture::serial`); returns what `f` returned and every finished span.
pub fn export<T>(f: impl FnOnce() -> T) -> (T, Vec<SpanData>) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let serial = crate::capture::serial();
    let out = tracing::subscriber::with_default(subscriber, f);
    drop(serial);
    provider.force_flush().unwrap();
    (out, exporter.get_finished_spans().unwrap())
}

/// The span whose id is `id`, as `traceparent` writes it (16 hex digits).
pub fn by_id<'a>(spans: &'a [SpanData], id: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.span_context.span_id().to_string() == id)
        .unwrap_or_else(|| panic!("no exported span {id}"))
}

pub fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::from(key.to_owned()))
        .map(|kv| &kv.value)
}

pub fn int(span: &SpanData, key: &str) -> Option<i64> {
    match attr(span, key)? {
        Value::I64(n) => Some(*n),
        other => panic!("{key} is not an integer: {other:?}"),
    }
}

pub fn text(span: &SpanData, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.as_str().into_owned())
}
