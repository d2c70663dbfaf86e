//! # http-doer
//!
//! One tiny trait, [`Doer`]: send one [`http::Request`], get one [`http::Response`], like Go's
//! `Client.Do`. Two real backends implement it ([`ReqwestDoer`], [`UreqDoer`]), decorators wrap
//! one Doer in another to add behaviour, and test doubles ([`testing`]) stand in for the network.
//!
//! Libraries that call HTTP APIs accept `impl Doer` (or `Arc<dyn Doer>`), so their users decide
//! the client, timeouts, retries, logging and authentication, and their tests need no network:
//!
//! ```
//! use http_doer::{Body, Doer, Error, testing::{ScriptedDoer, response}};
//!
//! /// An SDK client that works with any Doer.
//! struct Weather<D> {
//!     doer: D,
//! }
//!
//! impl<D: Doer> Weather<D> {
//!     fn new(doer: D) -> Self {
//!         Weather { doer }
//!     }
//!
//!     async fn today(&self, city: &str) -> Result<String, Error> {
//!         // `?` turns a URL the city made invalid into an `InvalidRequest` error.
//!         let req = http::Request::get(format!("https://weather.test/today/{city}"))
//!             .body(Body::empty())?;
//!         self.doer.execute(req).await?.into_body().text().await
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! // In a test, a scripted double answers and records what was sent.
//! let doer = ScriptedDoer::new().then(Ok(response(200, "sunny")));
//! let sdk = Weather::new(doer.clone());
//! assert_eq!(sdk.today("paris").await.unwrap(), "sunny");
//! assert_eq!(doer.requests()[0].uri().path(), "/today/paris");
//! # });
//! ```
//!
//! In production the same client takes a real backend: `Weather::new(ReqwestDoer::new())`.
//!
//! ## The stack to copy
//!
//! Each adapter of [`DoerExt`] wraps what comes before it, so a chain reads from the network
//! outward and the last adapter is the first to see a request:
//!
//! ```no_run
//! use std::time::Duration;
//! use http_doer::{Doer, DoerExt, ReqwestDoer, breaker::ServeStale, signing::Bearer};
//!
//! # fn main() -> Result<(), http_doer::Error> {
//! let http = ReqwestDoer::new()                 // the network: 30 s per exchange, 10 MiB bodies
//!     .signing(Bearer::new("token")?)           // every attempt and copy signed anew
//!     .breaker()                                // per host: fail fast while it is down...
//!     .serve_stale(ServeStale::new(Duration::from_secs(300))) // ...answering from the last good
//!     .hedging()                                // a second copy of a GET slower than the p95
//!     .retrying()                               // safe retries, within a retry budget,
//!     .total_timeout(Duration::from_secs(10))   // under one deadline
//!     .logging()                                // one event per call, secrets redacted
//!     .shared();                                // an Arc<dyn Doer> to hand to SDK clients
//! # let _ = http;
//! # Ok(()) }
//! ```
//!
//! The README explains why each layer sits where it does, and what moving it changes.
//!
//! ## Modules
//!
//! | module | what it holds |
//! |---|---|
//! | crate root | [`Doer`], [`Request`], [`Response`], [`Body`], [`Error`]/[`ErrorKind`], [`DoerExt`], [`ResponseMode`] |
//! | [`backend`] | the two backends, [`ReqwestDoer`] and [`UreqDoer`], and what they share (limits, redirects) |
//! | [`retrying`] | [`Retrying`]: backoff, `Retry-After`, deadlines, the retry budget |
//! | [`hedging`] | [`Hedging`]: extra copies of slow requests, adaptive delay, hedge budget |
//! | [`limit`] | [`RateLimiting`] (a local rate and the server's quota) and [`ConcurrencyLimit`] (a bulkhead per host) |
//! | [`breaker`] | [`Breaker`]: a circuit per host, serve-stale fallback, state-change hook |
//! | [`fleet`] | state shared by the replicas of a fleet (circuits, stale answers, the retry budget, servers' pauses): the store traits, and `RedisFleet` (feature `redis`) |
//! | [`signing`] | [`Signing`] and its signers: Bearer, Basic, API key, RFC 9421, AWS SigV4 |
//! | [`logging`] | [`Logging`]: `tracing` events, a bounded in-memory log |
//! | [`timeout`] | [`Timeout`]: a deadline for one call |
//! | [`telemetry`] | [`Telemetry`]: OpenTelemetry-shaped spans and metrics; trace context on the wire (`otel`) |
//! | [`redact`] | the rules that keep credentials out of logs and errors |
//! | [`testing`] | doubles for tests: a closure Doer, a scripted Doer, `MockDoer`, record/replay cassettes |
//! | [`chaos`] | [`Chaos`]: seeded faults, latency and outcomes, switchable at run time, to prove a stack |
//! | `tower` (feature `tower`) | any Doer as a `tower::Service`, any `Service` as a Doer |
//! | `blocking` (feature `blocking`) | a client for code without an async runtime |
//!
//! ## Bodies of any size
//!
//! A [`Body`] is buffered, a replayable stream ([`Body::from_file`], [`Body::replayable`]:
//! retried and hedged by streaming it again from its start) or a one-shot stream
//! ([`Body::from_stream`], [`Body::from_reader`]: sent once). Responses are read whole up to a
//! limit, unless the request or the backend asks for [`ResponseMode::Streamed`]; then the body
//! reads chunk by chunk, in bounded memory, whatever its size.
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `reqwest` | yes | [`ReqwestDoer`] |
//! | `ureq` | no | [`UreqDoer`] |
//! | `mock` | no | [`MockDoer`], generated by `mockall` |
//! | `json` | yes | [`Body::from_json`], [`Body::json`], `testing::json_response` and record/replay cassettes |
//! | `ed25519` | no | ed25519 keys for RFC 9421 signatures ([`signing::HttpSignature`]) |
//! | `tower` | no | `tower`: any Doer as a `tower::Service`, any `Service` as a Doer |
//! | `blocking` | no | `blocking::Client`: a client for code without an async runtime |
//! | `aws-sigv4` | no | AWS Signature Version 4 (`signing::SigV4`), through the official `aws-sigv4` crate |
//! | `metrics` | no | metrics through the `metrics` facade: `http.client.request.duration` and resilience events ([`telemetry`]) |
//! | `otel` | no | `telemetry::PropagateContext`: W3C trace context in every attempt, through OpenTelemetry's propagator API |
//! | `redis` | no | `fleet::RedisFleet`: circuits, stale answers (encrypted), the retry budget and servers' pauses shared by replicas through Redis |
#![deny(missing_docs)]
// One audited exception: the tower adapter's response future (src/tower/service.rs).
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod attempts;
pub mod backend;
#[cfg(feature = "blocking")]
#[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
pub mod blocking;
mod body;
pub mod breaker;
#[cfg(feature = "json")]
mod cassette;
pub mod chaos;
mod doer;
mod error;
mod ext;
pub mod fleet;
pub mod hedging;
pub mod limit;
pub mod logging;
pub mod redact;
pub mod retrying;
mod seeds;
mod sf;
pub mod signing;
pub mod telemetry;
pub mod testing;
pub mod timeout;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

pub use attempts::Attempts;
pub use backend::ResponseMode;
pub use body::Body;
pub use breaker::Breaker;
pub use chaos::Chaos;
pub use doer::{Doer, Request, Response};
pub use error::{Error, ErrorKind};
pub use ext::DoerExt;
pub use hedging::Hedging;
pub use limit::{ConcurrencyLimit, RateLimiting};
pub use logging::Logging;
pub use retrying::Retrying;
pub use signing::Signing;
pub use telemetry::Telemetry;
pub use timeout::Timeout;

#[cfg(feature = "reqwest")]
pub use backend::reqwest::ReqwestDoer;
#[cfg(feature = "ureq")]
pub use backend::ureq::UreqDoer;
#[cfg(feature = "mock")]
pub use doer::MockDoer;
