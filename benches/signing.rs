//! The cost of each signer on one small request (target: RFC 9421 hmac-sha256 under 5 µs).
//!
//! Run: `cargo bench -p http-doer-benches --bench signing --all-features` (ed25519 and SigV4
//! need their features).
//! Criterion measures each signer; a short summary table with the median per request follows,
//! so the figures can be read without criterion's report.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion};
use http::header::{CONTENT_TYPE, DATE};
use http_doer::signing::{
    ApiKey, Basic, Bearer, Component, ContentDigest, DigestAlgorithm, HttpSignature, Signer, Token,
};
use http_doer::testing::{doer_fn, response};
use http_doer::{Body, Doer, DoerExt, Request};

/// A small JSON API call: 6 headers at most after signing, a 64-byte body.
fn small_request() -> Request {
    http::Request::post("https://api.example.com/v1/orders?page=2&limit=10")
        .header(CONTENT_TYPE, "application/json")
        .header(DATE, "Tue, 20 Apr 2021 02:07:55 GMT")
        .header("content-length", "64")
        .body(Body::from(
            r#"{"item":"0123456789","quantity":12,"note":"bench body, 64 bytes"}"#,
        ))
        .unwrap()
}

/// Every signer here finishes without waiting, so one poll runs it to completion without a
/// runtime's scheduling in the figures.
fn now<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a benchmarked signer waited"),
    }
}

fn components(names: &[&str]) -> Vec<Component> {
    names.iter().map(|n| n.parse().unwrap()).collect()
}

const SIX: [&str; 6] = [
    "@method",
    "@authority",
    "@path",
    "@query",
    "content-type",
    "date",
];

fn signers() -> Vec<(&'static str, Box<dyn Signer>)> {
    let clock = || std::time::UNIX_EPOCH + Duration::from_secs(1_618_884_473);
    let hmac = || {
        HttpSignature::hmac_sha256([7u8; 64])
            .key_id("bench")
            .clock(clock)
    };
    let cached = Bearer::from_source(|| async {
        Ok(Token::new("cached-token-value").expires_in(Duration::from_secs(3600)))
    });
    now(cached.sign(&mut small_request())).unwrap(); // fill the cache
    #[allow(unused_mut)] // only the optional features push more
    let mut all: Vec<(&'static str, Box<dyn Signer>)> = vec![
        (
            "bearer static",
            Box::new(Bearer::new("static-token-value").unwrap()),
        ),
        ("bearer cached source", Box::new(cached)),
        ("basic", Box::new(Basic::new("user", "password").unwrap())),
        (
            "api key header",
            Box::new(ApiKey::header("x-api-key", "k-123456").unwrap()),
        ),
        (
            "api key query",
            Box::new(ApiKey::query("api_key", "k-123456").unwrap()),
        ),
        ("content-digest sha-256", Box::new(ContentDigest::sha256())),
        ("content-digest sha-512", Box::new(ContentDigest::sha512())),
        (
            "rfc9421 hmac-sha256, 3 components",
            Box::new(hmac().components(components(&["@method", "@authority", "@path"]))),
        ),
        (
            "rfc9421 hmac-sha256, 6 components",
            Box::new(hmac().components(components(&SIX))),
        ),
        (
            "rfc9421 hmac-sha256, 6 + content-digest",
            Box::new(
                hmac()
                    .components(components(&SIX))
                    .content_digest(DigestAlgorithm::Sha256),
            ),
        ),
    ];
    #[cfg(feature = "ed25519")]
    all.push((
        "rfc9421 ed25519, 6 components",
        Box::new(
            HttpSignature::ed25519([9u8; 32])
                .components(components(&SIX))
                .clock(clock),
        ),
    ));
    #[cfg(feature = "aws-sigv4")]
    all.push((
        "aws sigv4 (session token)",
        Box::new(
            http_doer::signing::SigV4::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "us-east-1",
                "service",
            )
            .session_token("session-token-value")
            .clock(clock),
        ),
    ));
    all
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("sign one small request");
    for (name, signer) in signers() {
        group.bench_function(name, |b| {
            b.iter_batched(
                small_request,
                |mut req| {
                    now(signer.sign(&mut req)).unwrap();
                    req
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    // The whole decorator around a Doer that answers at once: signer plus Signing's own cost.
    let noop = doer_fn(|_req: Request| async { Ok(response(200, Body::empty())) });
    let doer = noop.signing(
        HttpSignature::hmac_sha256([7u8; 64])
            .key_id("bench")
            .components(components(&SIX)),
    );
    c.bench_function("Signing<_, hmac-sha256 6> execute", |b| {
        b.iter_batched(
            small_request,
            |req| now(doer.execute(req)).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

/// Median time per request over `rounds` rounds of `per_round` fresh requests.
fn median_per_request(signer: &dyn Signer, rounds: usize, per_round: usize) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let mut reqs: Vec<Request> = (0..per_round).map(|_| small_request()).collect();
            let start = Instant::now();
            for req in &mut reqs {
                now(signer.sign(black_box(req))).unwrap();
            }
            start.elapsed() / per_round as u32
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

fn summary() {
    println!("\nmedian cost per small request (11 rounds x 2000 requests; shared machine, noisy):");
    println!("{:<42} {:>10}", "signer", "per req");
    let mut hmac_figures = Vec::new();
    for (name, signer) in signers() {
        let t = median_per_request(signer.as_ref(), 11, 2000);
        println!("{name:<42} {:>8.2} µs", t.as_secs_f64() * 1e6);
        if name.starts_with("rfc9421 hmac") {
            hmac_figures.push((name, t));
        }
    }
    for (name, t) in hmac_figures {
        let verdict = if t < Duration::from_micros(5) {
            "meets"
        } else {
            "MISSES"
        };
        println!("{name}: {verdict} the 5 µs target");
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30)
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
}
