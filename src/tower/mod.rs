//! tower, both ways: any [`Doer`](crate::Doer) as a `tower::Service`, any `tower::Service` as a
//! Doer, and our decorators as a `tower::Layer`.
//!
//! | you have | you want | use |
//! |---|---|---|
//! | a Doer (a backend, a stack of decorators) | a `Service<http::Request<B>>` for tower, axum, tower-http | [`service`] → [`DoerService`] |
//! | a `Service<http::Request<Body>>` (hyper-util's client, tower-http layers) | a Doer, under our decorators | [`from_service`] → [`ServiceDoer`] |
//! | a tower client | our decorators as one layer of a `ServiceBuilder` | [`layer`] → [`DoerLayer`] |
//!
//! The feature depends only on `tower-service` and `tower-layer`, tower's own two trait crates,
//! so it adds no runtime code; tower itself is needed only by code that uses its middleware.
//!
//! # A Doer as a Service
//!
//! [`DoerService`] takes any request body (`http_body::Body`: hyper's `Incoming`, axum's body,
//! `http_body_util::Full`, or our [`Body`](crate::Body), passed on without wrapping) and
//! answers with `http::Response<Body>` (`Body` is an `http_body::Body`) or an
//! [`Error`](crate::Error). It is always ready, and cheap to clone: the Doer sits behind an
//! `Arc`, as a Doer's future borrows it and a Service's future may not.
//!
//! ```
//! use http_doer::{Body, DoerExt, testing::{ScriptedDoer, response}};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http::set_header::SetRequestHeaderLayer;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let backend = ScriptedDoer::new().then(Ok(response(200, "hello")));
//! let stack = backend.clone().retrying().logging(); // `ReqwestDoer::new()...` in production
//!
//! // A tower-http layer over our stack.
//! let svc = ServiceBuilder::new()
//!     .layer(SetRequestHeaderLayer::overriding(
//!         http::header::USER_AGENT,
//!         http::HeaderValue::from_static("my-app/1.0"),
//!     ))
//!     .service(http_doer::tower::service(stack));
//!
//! // Any `http_body::Body` goes in; the answer's body is a `Body`.
//! let req = http::Request::get("https://api.test/hello")
//!     .body(http_body_util::Full::new(bytes::Bytes::from("hi")))
//!     .unwrap();
//! let resp = svc.oneshot(req).await?;
//! assert_eq!(resp.into_body().text().await?, "hello");
//! assert_eq!(backend.requests()[0].headers()["user-agent"], "my-app/1.0");
//! # Ok::<(), http_doer::Error>(())
//! # }).unwrap();
//! ```
//!
//! # A Service as a Doer
//!
//! [`ServiceDoer`] drives any `Service<http::Request<Body>>` whose response body is an
//! `http_body::Body`, such as hyper-util's legacy `Client` with tower-http layers around it,
//! so our decorators can wrap it. It reads the answer as the backends do: whole, up to
//! [`DEFAULT_MAX_BODY_SIZE`](crate::backend::DEFAULT_MAX_BODY_SIZE), unless
//! [`ResponseMode::Streamed`](crate::ResponseMode) is asked for. The service's errors become
//! [`Error`](crate::Error)s of the kind our decorators classify by (see [`ServiceDoer`]).
//!
//! ```
//! use std::convert::Infallible;
//! use std::time::Duration;
//! use http_doer::{Body, Doer, DoerExt, retrying::{Attempts, Backoff}};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! // Any tower service; in production, hyper-util's `Client` under tower-http layers.
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let counter = calls.clone();
//! let svc = tower::service_fn(move |_req: http::Request<Body>| {
//!     let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     let status = if n == 0 { 503 } else { 200 };
//!     let body = http_body_util::Full::new(bytes::Bytes::from("ok"));
//!     async move { Ok::<_, Infallible>(http::Response::builder().status(status).body(body).unwrap()) }
//! });
//!
//! let doer = http_doer::tower::from_service(svc)
//!     .retrying()
//!     .backoff(Backoff::constant(Duration::from_millis(10)));
//! let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
//! let resp = doer.execute(req).await?;
//! assert_eq!(resp.status(), 200);
//! assert_eq!(resp.extensions().get::<Attempts>(), Some(&Attempts(2)));
//! assert_eq!(resp.into_body().text().await?, "ok");
//! # Ok::<(), http_doer::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Our decorators as a Layer
//!
//! [`layer`] wraps the service below it as a Doer, hands it to a closure that adds decorators,
//! and offers the result as a Service again:
//!
//! ```
//! use std::convert::Infallible;
//! use http_doer::{Body, DoerExt};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = tower::service_fn(|_req: http::Request<Body>| async {
//!     Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from("hi"))))
//! }); // hyper-util's `Client` in production
//! let svc = ServiceBuilder::new()
//!     .layer(http_doer::tower::layer(|doer| doer.retrying().breaker()))
//!     .service(client);
//! let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
//! let resp = svc.oneshot(req).await?;
//! assert_eq!(resp.into_body().text().await?, "hi");
//! # Ok::<(), http_doer::Error>(())
//! # }).unwrap();
//! ```

mod body;
mod error;
mod layer;
mod service;
mod service_doer;

pub use layer::DoerLayer;
pub use service::{DoerService, ResponseFuture};
pub use service_doer::ServiceDoer;

/// Offers `doer` as a `tower::Service<http::Request<B>>`; see [`DoerService`].
pub fn service<D: crate::Doer>(doer: D) -> DoerService<D> {
    DoerService::new(doer)
}

/// Offers the tower service `service` as a [`Doer`](crate::Doer); see [`ServiceDoer`].
pub fn from_service<S>(service: S) -> ServiceDoer<S> {
    ServiceDoer::new(service)
}

/// A `tower::Layer` that wraps the service below it as a [`ServiceDoer`], hands it to `make`
/// (which adds decorators) and offers what `make` returns as a [`DoerService`].
///
/// ```
/// use http_doer::DoerExt;
///
/// let layer = http_doer::tower::layer(|doer| doer.retrying().logging());
/// # let _ = tower::ServiceBuilder::new().layer(layer).service(tower::service_fn(
/// #     |_req: http::Request<http_doer::Body>| async {
/// #         Ok::<_, std::convert::Infallible>(http::Response::new(http_doer::Body::empty()))
/// #     },
/// # ));
/// ```
pub fn layer<S, F, D>(make: F) -> DoerLayer<F>
where
    F: Fn(ServiceDoer<S>) -> D,
{
    DoerLayer::new(make)
}
