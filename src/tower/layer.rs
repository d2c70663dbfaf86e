//! [`DoerLayer`]: our decorators as a `tower::Layer`.

use std::fmt;

use super::{DoerService, ServiceDoer};

/// A `tower::Layer` that puts Doer decorators around a tower service: it wraps the service as
/// a [`ServiceDoer`], hands it to its closure, and offers the closure's Doer as a
/// [`DoerService`]. Made by [`layer`](super::layer).
///
/// ```
/// use std::convert::Infallible;
/// use http_doer::{Body, DoerExt, Retrying};
/// use http_doer::tower::{DoerLayer, ServiceDoer};
/// use tower::{Layer, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let client = tower::service_fn(|_req: http::Request<Body>| async {
///     Ok::<_, Infallible>(http::Response::new(Body::from("hi")))
/// });
/// let layer = DoerLayer::new(|doer: ServiceDoer<_>| doer.retrying());
/// let svc = layer.layer(client);
/// let _: &Retrying<ServiceDoer<_>> = svc.get_ref();
/// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
/// assert_eq!(svc.oneshot(req).await?.into_body().text().await?, "hi");
/// # Ok::<(), http_doer::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct DoerLayer<F> {
    make: F,
}

impl<F> DoerLayer<F> {
    /// A layer that builds its Doer with `make`.
    pub fn new(make: F) -> Self {
        DoerLayer { make }
    }
}

impl<S, F, D> tower_layer::Layer<S> for DoerLayer<F>
where
    F: Fn(ServiceDoer<S>) -> D,
{
    type Service = DoerService<D>;

    fn layer(&self, inner: S) -> DoerService<D> {
        DoerService::new((self.make)(ServiceDoer::new(inner)))
    }
}

impl<F> fmt::Debug for DoerLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoerLayer").finish_non_exhaustive()
    }
}
