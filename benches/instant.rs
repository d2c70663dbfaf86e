//! What `overhead` (time) and `allocs` (allocations) both measure: a Doer that answers at once,
//! the floor layers to read the decorators against, the request every row sends, and the
//! rows themselves, so that the two tables are of the same calls. `tests/allocations.rs` holds
//! the same rows to their allocation counts in every test run.

use std::time::Duration;

use http_doer::breaker::ServeStale;
use http_doer::limit::Rate;
use http_doer::signing::Bearer;
use http_doer::testing::copy_request;
use http_doer::{Body, Breaker, Doer, DoerExt, Error, Request, Response};

/// Answers `200 "ok"` at once.
#[derive(Clone, Copy)]
pub struct Instantly;

#[async_trait::async_trait]
impl Doer for Instantly {
    async fn execute(&self, _req: Request) -> Result<Response, Error> {
        Ok(http::Response::new(Body::from("ok")))
    }
}

/// Whether header values are made from text at run time (`OVERHEAD_DYNAMIC_HEADERS=1`)
/// rather than from static strings, as in `retrying.rs`. A run-time value's bytes are copied
/// into a buffer the first copy of the request must turn into a shared one (an allocation per
/// value, paid once per request by whichever layer copies it first).
pub fn dynamic_headers() -> bool {
    static DYNAMIC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DYNAMIC.get_or_init(|| std::env::var("OVERHEAD_DYNAMIC_HEADERS").is_ok_and(|v| v == "1"))
}

/// What any layer able to resend pays, to read the rows above against: an `#[async_trait]`
/// layer that does nothing, the same keeping one copy of the request (as a layer that may
/// resend must), and the same adding one response extension (as `Retrying` and `Hedging`
/// report what they did).
pub struct Floor {
    /// Keeps a copy of the request while the inner Doer answers.
    pub copy: bool,
    /// Adds a [`Mark`] to the response.
    pub extension: bool,
}

/// A response extension the size of `retrying::Attempts`: a zero-sized one would cost no
/// allocation of its own, and the floor would read low.
#[derive(Clone, Copy)]
pub struct Mark(#[allow(dead_code)] pub u32); // only its size matters

#[async_trait::async_trait]
impl Doer for Floor {
    async fn execute(&self, req: Request) -> Result<Response, Error> {
        // Kept while the inner Doer answers, as a layer that may resend keeps it.
        let kept = self.copy.then(|| copy_request(&req));
        let mut resp = Instantly.execute(req).await?;
        drop(kept);
        if self.extension {
            resp.extensions_mut().insert(Mark(1));
        }
        Ok(resp)
    }
}

/// The request every row sends: a GET with a query and two headers (see
/// [`dynamic_headers`]).
pub fn request() -> Request {
    request_with(dynamic_headers())
}

/// [`request`], with header values made from text at run time or not, whatever the
/// environment says (the allocation test holds counts for static ones).
pub fn request_with(dynamic: bool) -> Request {
    let builder = http::Request::get("https://api.test/v1/items?page=2");
    let builder = if dynamic {
        builder
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "bench/1.0")
    } else {
        builder
            .header(
                http::header::ACCEPT,
                http::HeaderValue::from_static("application/json"),
            )
            .header(
                http::header::USER_AGENT,
                http::HeaderValue::from_static("bench/1.0"),
            )
    };
    builder.body(Body::empty()).expect("a valid request")
}

fn bearer() -> Bearer {
    Bearer::new("token-0123456789").expect("a valid token")
}

fn stale() -> ServeStale {
    ServeStale::new(Duration::from_secs(300))
}

/// The README's "stack to copy" over `doer`, as it is written there.
pub fn readme_stack(doer: impl Doer + 'static) -> Box<dyn Doer> {
    above_signing(doer.signing(bearer()))
}

/// The same with `Telemetry` where the README's observability section puts it: between
/// `Signing` and the `Breaker`.
pub fn readme_stack_with_telemetry(doer: impl Doer + 'static) -> Box<dyn Doer> {
    above_signing(doer.signing(bearer()).telemetry())
}

/// The layers of the README stack above `Signing`.
fn above_signing(signed: impl Doer + 'static) -> Box<dyn Doer> {
    signed
        .breaker()
        .serve_stale(stale())
        .hedging()
        .retrying()
        .total_timeout(Duration::from_secs(10))
        .logging()
        .boxed()
}

/// The variants, `bare` first.
pub fn variants() -> Vec<(&'static str, Box<dyn Doer>)> {
    vec![
        ("bare", Instantly.boxed()),
        (
            "(floor) an empty #[async_trait] layer",
            Floor {
                copy: false,
                extension: false,
            }
            .boxed(),
        ),
        (
            "(floor) + one request copy kept",
            Floor {
                copy: true,
                extension: false,
            }
            .boxed(),
        ),
        (
            "(floor) + one request copy + one response extension",
            Floor {
                copy: true,
                extension: true,
            }
            .boxed(),
        ),
        (
            "Retrying (defaults, budget on)",
            Instantly.retrying().boxed(),
        ),
        ("Hedging (no copy sent)", Instantly.hedging().boxed()),
        (
            "Signing (static Bearer)",
            Instantly.signing(bearer()).boxed(),
        ),
        ("Breaker (closed)", Instantly.breaker().boxed()),
        (
            "Breaker + serve-stale (stores the answer)",
            Breaker::new(Instantly).serve_stale(stale()).boxed(),
        ),
        ("Logging (no subscriber)", Instantly.logging().boxed()),
        (
            "Timeout (10 s)",
            Instantly.timeout(Duration::from_secs(10)).boxed(),
        ),
        (
            "Arc<dyn Doer> of it (as an SDK keeps one)",
            Box::new(std::sync::Arc::new(Instantly) as std::sync::Arc<dyn Doer>),
        ),
        (
            "Telemetry (nobody listening)",
            Instantly.telemetry().boxed(),
        ),
        (
            "RateLimiting (under its rate)",
            Instantly
                .rate_limiting(Rate::new(u32::MAX, Duration::from_secs(1)))
                .boxed(),
        ),
        (
            "ConcurrencyLimit (under its limit)",
            Instantly.concurrency_limit(64).boxed(),
        ),
        (
            "Logging > Retrying > Hedging > Breaker > Signing",
            Instantly
                .signing(bearer())
                .breaker()
                .hedging()
                .retrying()
                .logging()
                .boxed(),
        ),
        ("README stack to copy", readme_stack(Instantly)),
        (
            "README stack + Telemetry (nobody listening)",
            readme_stack_with_telemetry(Instantly),
        ),
    ]
}
