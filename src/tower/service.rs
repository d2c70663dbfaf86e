//! [`DoerService`]: a Doer as a `tower::Service`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::body::BoxError;
use crate::doer::Execute;
use crate::{Doer, Error, Response};

/// A [`Doer`] as a `tower::Service<http::Request<B>>`, for any request body `B` that is an
/// `http_body::Body`; made by [`service`](super::service).
///
/// * The request body is handed to the Doer as a [`Body`](crate::Body): unchanged when it is
///   one, else as a one-shot stream of its data frames (sent once, never buffered whole).
/// * The response is `http::Response<Body>`, whatever its status; `Body` is an
///   `http_body::Body` with [`Error`] as its error.
/// * `poll_ready` is always ready: a Doer takes calls at any time (put a tower `ConcurrencyLimit`
///   or our decorators in front to bound them).
/// * Clones share the Doer, which sits behind an `Arc` (a Doer's future borrows the Doer, a
///   Service's future must not borrow the service). A stack already behind an
///   `Arc<dyn Doer>` (from [`DoerExt::shared`](crate::DoerExt::shared)) goes in as it is with
///   [`from_arc`](Self::from_arc) or `From`.
///
/// ```
/// use std::sync::Arc;
/// use http_doer::{Body, Doer, DoerExt, testing::{ScriptedDoer, response}};
/// use http_doer::tower::DoerService;
/// use tower::ServiceExt;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let stack: Arc<dyn Doer> = ScriptedDoer::new().then(Ok(response(201, ""))).logging().shared();
/// let svc = DoerService::from(stack);
/// let req = http::Request::post("https://api.test/items").body(Body::from("{}")).unwrap();
/// assert_eq!(svc.oneshot(req).await?.status(), 201);
/// # Ok::<(), http_doer::Error>(())
/// # }).unwrap();
/// ```
pub struct DoerService<D: ?Sized> {
    doer: Arc<D>,
}

impl<D> DoerService<D> {
    /// Offers `doer` as a Service.
    pub fn new(doer: D) -> Self {
        DoerService {
            doer: Arc::new(doer),
        }
    }
}

impl<D: ?Sized> DoerService<D> {
    /// Offers a Doer already behind an `Arc` (an `Arc<dyn Doer>` too) as a Service, without a
    /// second `Arc`.
    pub fn from_arc(doer: Arc<D>) -> Self {
        DoerService { doer }
    }

    /// The wrapped Doer.
    pub fn get_ref(&self) -> &D {
        &self.doer
    }

    /// The wrapped Doer, mutably: `None` while it is shared, by a clone of this service or by
    /// a call in flight.
    pub fn get_mut(&mut self) -> Option<&mut D> {
        Arc::get_mut(&mut self.doer)
    }

    /// The wrapped Doer, in the `Arc` that clones of this service share.
    pub fn into_inner(self) -> Arc<D> {
        self.doer
    }
}

impl<D: ?Sized> Clone for DoerService<D> {
    fn clone(&self) -> Self {
        DoerService {
            doer: self.doer.clone(),
        }
    }
}

impl<D: ?Sized> From<Arc<D>> for DoerService<D> {
    fn from(doer: Arc<D>) -> Self {
        DoerService::from_arc(doer)
    }
}

impl<D: ?Sized + fmt::Debug> fmt::Debug for DoerService<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoerService")
            .field("doer", &&*self.doer)
            .finish()
    }
}

impl<D, B> tower_service::Service<http::Request<B>> for DoerService<D>
where
    D: Doer + ?Sized + 'static,
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Error;
    type Future = ResponseFuture<D>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> ResponseFuture<D> {
        ResponseFuture::new(self.doer.clone(), req.map(super::body::into_body))
    }
}

/// The future of a [`DoerService`] call: the Doer's own future, and the `Arc` that keeps the
/// Doer it borrows alive.
pub struct ResponseFuture<D: ?Sized> {
    // Declared before `doer`, so it is dropped first: it borrows the Doer `doer` keeps alive.
    inner: Execute<'static>,
    doer: Arc<D>,
}

impl<D: Doer + ?Sized + 'static> ResponseFuture<D> {
    /// Starts `doer`'s call and keeps the `Arc`. The Doer's future is the only box: wrapping it
    /// in an `async move` that owns the `Arc` would box it a second time, which costs more than
    /// the rest of the adapter together.
    #[allow(unsafe_code)]
    fn new(doer: Arc<D>, req: crate::Request) -> Self {
        // SAFETY: the reference points into the `Arc`'s allocation, not at the `Arc` itself,
        // so moving the `Arc` (into `Self`) does not move what it points to. That allocation
        // lives as long as `self.doer` does, which outlives `self.inner` (fields drop in
        // declaration order), the only holder of the future that borrows it; the future is
        // private, and its output (`Response`, `Error`) borrows nothing. `D: Sync` (every Doer
        // is), so the borrow may travel with the future to another thread.
        let borrowed: &'static D = unsafe { &*Arc::as_ptr(&doer) };
        ResponseFuture {
            inner: borrowed.execute(req),
            doer,
        }
    }
}

impl<D: ?Sized> Future for ResponseFuture<D> {
    type Output = Result<Response, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<D: ?Sized> fmt::Debug for ResponseFuture<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let _ = &self.doer;
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
