//! What the telemetry costs when nobody listens: the README stack over a Doer that answers at
//! once, with no `tracing` subscriber and no `metrics` recorder installed, against the same
//! stack with every span and metric switched off (`telemetry::set_enabled(false)`), against the
//! stack as it was before there was any telemetry (no `Telemetry` layer, switched off), and
//! against the bare Doer. Built with the `metrics` feature, so the metric calls are compiled in.
//!
//! The figure the issue asks for: "stack + telemetry, no listener" minus "stack before
//! telemetry". The machine this runs on may be shared and busy: read the figures as rough.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http_doer::telemetry;
use http_doer::{Body, Doer, DoerExt, Request};

#[allow(dead_code)]
mod instant;

fn request() -> Request {
    http::Request::get("https://api.test/v1/items?api_key=s3cr3t&page=2")
        .body(Body::empty())
        .expect("a valid request")
}

/// The README stack, with or without the `Telemetry` layer.
fn stack(with_telemetry: bool) -> Box<dyn Doer> {
    if with_telemetry {
        instant::readme_stack_with_telemetry(instant::Instantly)
    } else {
        instant::readme_stack(instant::Instantly)
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut g = c.benchmark_group("telemetry");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);

    let bare = instant::Instantly;
    g.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(bare.execute(request()).await) })
    });

    // Both stacks are measured boxed, so the extra layer is the only difference in shape.
    let before = stack(false);
    let with = stack(true);
    telemetry::set_enabled(false);
    g.bench_function("stack before telemetry", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(before.execute(request()).await) })
    });
    g.bench_function("stack + telemetry, switched off", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(with.execute(request()).await) })
    });
    telemetry::set_enabled(true);
    g.bench_function("stack + telemetry, no listener", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(with.execute(request()).await) })
    });
    // The layer alone: its box, its span check, its recorder check.
    let layer = instant::Instantly.telemetry();
    g.bench_function("bare + Telemetry layer, no listener", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(layer.execute(request()).await) })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
