//! Fleet benchmark: the cost of a closed-circuit call through a `Breaker` shared through Redis
//! (`RedisFleet`), against the same breaker alone, over an instant Doer. The bound is
//! 100 ns more per call, and no network round trip: a healthy call only reads one atomic more.
//!
//! Needs a Redis: `HTTP_DOER_REDIS_URL`, or `redis-server` on PATH (started on a free port).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group};
use http_doer::fleet::RedisFleet;
use http_doer::{Body, Breaker, Doer, Error, Request, Response};

struct Instantly;

#[async_trait]
impl Doer for Instantly {
    async fn execute(&self, _req: Request) -> Result<Response, Error> {
        Ok(http::Response::new(Body::empty()))
    }
}

#[path = "../tests/support/redis.rs"]
mod redis_support;

fn closed_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The tests' own server, stopped when this guard drops (a panic included).
    let (url, _redis) = redis_support::shared_url();
    let fleet = rt.block_on(async { RedisFleet::builder(url).prefix("bench").connect().unwrap() });
    rt.block_on(async {
        for _ in 0..500 {
            if fleet.is_up() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(fleet.is_up(), "Redis did not answer");
    let alone = Breaker::new(Instantly);
    let shared = Breaker::new(Instantly).fleet(Arc::new(fleet.clone()));
    let uri: http::Uri = "https://api.test/item".parse().unwrap();
    let mut group = c.benchmark_group("fleet/closed_call");
    for (name, breaker) in [("alone", &alone), ("redis", &shared)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let mut req = http::Request::new(Body::empty());
                *req.uri_mut() = uri.clone();
                black_box(breaker.execute(req).await.unwrap());
            })
        });
    }
    group.finish();
    let stats = fleet.stats();
    println!(
        "Redis commands during the healthy calls: {} (only the fleet's pings)",
        stats.ok
    );
}

criterion_group!(benches, closed_call);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
