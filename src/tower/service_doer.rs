//! [`ServiceDoer`]: a `tower::Service` as a Doer.

use std::fmt;
use std::future::Future;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};

use super::body::{same_type, take_as};
use super::error;
use crate::backend::{DEFAULT_MAX_BODY_SIZE, too_large};
use crate::body::{BoxError, HttpBodyStream};
use crate::doer::Execute;
use crate::{Body, Doer, Error, ErrorKind, Request, Response, ResponseMode};

/// A `tower::Service<http::Request<Body>>` as a [`Doer`], so our decorators can wrap any tower
/// client (hyper-util's legacy `Client`, say) and any tower-http layers around it; made by
/// [`from_service`](super::from_service).
///
/// * **Calls.** `execute` takes `&self` and `Service::call` takes `&mut self`, so each call
///   drives a clone of the service (the tower convention: `poll_ready`, then `call`). The
///   service must be `Clone + Send + Sync`; a boxed one is `BoxCloneSyncService`. When the
///   clone is ready at once (hyper-util's client always is), `call` is made inside `execute`
///   and the returned future drives the service's own; otherwise that future waits for
///   readiness first, woken by the service.
/// * **Responses** are read as the backends read them: whole, up to
///   [`max_body_size`](Self::max_body_size) (past it, [`ErrorKind::TooLarge`]), unless
///   [`ResponseMode::Streamed`] is set here or in the request's extensions; a streamed body is
///   read as the caller reads it, and [`Body::bytes`] still keeps the limit. A response whose
///   body already is a [`Body`] (a [`DoerService`](super::DoerService) below) is passed on as
///   it is: the Doer that made it chose.
/// * **Errors** keep the service's error as their source, with the redacted URL (never a
///   header). An [`Error`] (from a Doer below, through tower layers) comes back unchanged.
///   Anything else is classified from its chain, so [`Retrying`](crate::Retrying) and
///   [`Breaker`](crate::Breaker) judge it as they judge a backend's error:
///
/// | the service's error | kind |
/// |---|---|
/// | hyper-util's `Connect` error, an `io::Error` of kind `ConnectionRefused`, `AddrNotAvailable`, `NetworkUnreachable`, `HostUnreachable`, `NetworkDown` | [`ErrorKind::Connect`] (even when a connect timeout is below it: the request never left) |
/// | tower's `Elapsed` (its `Timeout` layer), tokio's `Elapsed`, an `io::Error` of kind `TimedOut` or `WouldBlock` (a socket read timeout) | [`ErrorKind::Timeout`] |
/// | hyper-util's errors for an unsupported method or version, or a URI that is not absolute | [`ErrorKind::InvalidRequest`] |
/// | hyper-util's other errors (the connection failed under the request), any other `io::Error` | [`ErrorKind::Transport`] |
/// | a failed TLS handshake under `Connect` or `Transport`, on an `https` URL | [`ErrorKind::Tls`] |
/// | our own [`Error`] deeper in the chain (a request body's stream failed) | its kind |
/// | anything else | [`ErrorKind::Other`] |
///
/// [`ErrorKind::TooLarge`]: crate::ErrorKind::TooLarge
/// [`ErrorKind::Connect`]: crate::ErrorKind::Connect
/// [`ErrorKind::Timeout`]: crate::ErrorKind::Timeout
/// [`ErrorKind::InvalidRequest`]: crate::ErrorKind::InvalidRequest
/// [`ErrorKind::Transport`]: crate::ErrorKind::Transport
/// [`ErrorKind::Tls`]: crate::ErrorKind::Tls
/// [`ErrorKind::Other`]: crate::ErrorKind::Other
#[derive(Clone)]
pub struct ServiceDoer<S> {
    service: S,
    max_body_size: u64,
    response_mode: ResponseMode,
}

impl<S> ServiceDoer<S> {
    /// Drives `service` as a Doer, reading responses whole up to
    /// [`DEFAULT_MAX_BODY_SIZE`].
    pub fn new(service: S) -> Self {
        ServiceDoer {
            service,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            response_mode: ResponseMode::Buffered,
        }
    }

    /// The largest response body read whole, or gathered by [`Body::bytes`] from a streamed
    /// one (default [`DEFAULT_MAX_BODY_SIZE`], 10 MiB); past it the call, or the read, fails
    /// with [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge).
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http_doer::{Body, Doer, ErrorKind};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let svc = tower::service_fn(|_req: http::Request<Body>| async {
    ///     Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from("0123456789"))))
    /// });
    /// let doer = http_doer::tower::from_service(svc).max_body_size(4);
    /// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// assert_eq!(doer.execute(req).await.unwrap_err().kind(), ErrorKind::TooLarge);
    /// # });
    /// ```
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// Whether responses are read whole before `execute` returns (the default) or streamed;
    /// a request's own [`ResponseMode`] extension wins over it.
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http_doer::{Body, Doer, ResponseMode};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let svc = tower::service_fn(|_req: http::Request<Body>| async {
    ///     Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from("big"))))
    /// });
    /// let doer = http_doer::tower::from_service(svc).response_mode(ResponseMode::Streamed);
    /// let req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// let body = doer.execute(req).await.unwrap().into_body();
    /// assert!(body.is_stream());
    /// assert_eq!(body.bytes().await.unwrap(), "big");
    /// # });
    /// ```
    pub fn response_mode(mut self, mode: ResponseMode) -> Self {
        self.response_mode = mode;
        self
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.service
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.service
    }

    /// The wrapped service.
    pub fn into_inner(self) -> S {
        self.service
    }
}

impl<S: fmt::Debug> fmt::Debug for ServiceDoer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceDoer")
            .field("service", &self.service)
            .field("max_body_size", &self.max_body_size)
            .field("response_mode", &self.response_mode)
            .finish()
    }
}

// Written out rather than with `#[async_trait]`: most services are ready at once, and then
// the call is made before boxing, so the one box holds the service's future alone rather than
// the request, a clone of the service and every state in between.
impl<S, RB> Doer for ServiceDoer<S>
where
    S: tower_service::Service<Request, Response = http::Response<RB>> + Clone + Send + Sync,
    S::Future: Send,
    S::Error: Into<BoxError> + 'static,
    RB: http_body::Body + Send + 'static,
    RB::Error: Into<BoxError>,
{
    fn execute<'a, 'b>(&'a self, req: Request) -> Execute<'b>
    where
        'a: 'b,
        Self: 'b,
    {
        // A service that speaks our types (a DoerService, under tower layers or not) has
        // errors that pass unchanged and bodies that are ours: it needs no URL, no mode.
        let ours = same_type::<S::Error, Error>() && same_type::<RB, Body>();
        let uri = (!ours).then(|| req.uri().clone());
        let mode = ResponseMode::of(&req, self.response_mode);
        let limit = self.max_body_size;
        let mut service = self.service.clone();
        // Readiness polled once here with a waker that drops the wake-up: if the service is
        // not ready, the future below polls it again with the caller's waker.
        let ready = service.poll_ready(&mut Context::from_waker(Waker::noop()));
        let call = match ready {
            Poll::Ready(Ok(())) => service.call(req),
            Poll::Ready(Err(e)) => {
                return Box::pin(std::future::ready(Err(map_error(e, uri.as_ref()))));
            }
            Poll::Pending => {
                return Box::pin(async move {
                    std::future::poll_fn(|cx| service.poll_ready(cx))
                        .await
                        .map_err(|e| map_error(e, uri.as_ref()))?;
                    let call = service.call(req);
                    finish(call, uri, mode, limit).await
                });
            }
        };
        if ours {
            return Box::pin(async move {
                let resp = call.await.map_err(|e| map_error(e, None))?;
                Ok(resp.map(ours_body))
            });
        }
        Box::pin(finish(call, uri, mode, limit))
    }
}

/// The answer to a call: the service's error or response, its body read as `mode` says.
async fn finish<F, E, RB>(
    call: F,
    uri: Option<http::Uri>,
    mode: ResponseMode,
    limit: u64,
) -> Result<Response, Error>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: Into<BoxError> + 'static,
    RB: http_body::Body + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let resp = call.await.map_err(|e| map_error(e, uri.as_ref()))?;
    let (parts, body) = resp.into_parts();
    let mut slot = Some(body);
    let body = match (take_as::<RB, Body>(&mut slot), slot, uri) {
        (Some(ours), _, _) => ours,
        (None, Some(theirs), Some(uri)) => read(theirs, uri, mode, limit).await?,
        // Not reached: a body that is not ours comes with its URL (see `execute`).
        _ => Body::empty(),
    };
    Ok(http::Response::from_parts(parts, body))
}

/// The service's error as an [`Error`]: ours unchanged, else classified (see [`ServiceDoer`]),
/// with the URL when one was kept.
fn map_error<E: Into<BoxError> + 'static>(e: E, uri: Option<&http::Uri>) -> Error {
    let mut slot = Some(e);
    match (take_as::<E, Error>(&mut slot), slot, uri) {
        (Some(ours), _, _) => ours,
        (None, Some(other), Some(uri)) => error::from_service(other.into(), uri),
        // Not reached: an error that is not ours comes with its URL (see `execute`).
        (None, other, _) => match other {
            Some(other) => Error::new(ErrorKind::Other, other),
            None => Error::from(ErrorKind::Other),
        },
    }
}

/// The response body, known to be a [`Body`].
fn ours_body<B: 'static>(body: B) -> Body {
    take_as::<B, Body>(&mut Some(body)).unwrap_or_default()
}

/// A foreign response body as a [`Body`]: read whole up to `limit`, or streamed (and gathered
/// by [`Body::bytes`] up to `limit`).
async fn read<B>(body: B, uri: http::Uri, mode: ResponseMode, limit: u64) -> Result<Body, Error>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let len = http_body::Body::size_hint(&body).exact();
    if mode == ResponseMode::Buffered && len.is_some_and(|len| len > limit) {
        return Err(too_large(limit, &uri));
    }
    let err_uri = uri.clone();
    let chunks = HttpBodyStream::new(Box::pin(body), move |e: B::Error| {
        error::from_body(e.into(), &err_uri)
    });
    let mut body = Body::streamed(Box::pin(chunks), len, Some(limit));
    if mode == ResponseMode::Streamed {
        return Ok(body);
    }
    // Kept as it came when it is one chunk, as the backends do.
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut total: u64 = 0;
    while let Some(chunk) = body.chunk().await? {
        total += chunk.len() as u64;
        if total > limit {
            return Err(too_large(limit, &uri));
        }
        match first.take() {
            None if rest.is_empty() => first = Some(chunk),
            prev => {
                if let Some(prev) = prev {
                    rest.extend_from_slice(&prev);
                }
                rest.extend_from_slice(&chunk);
            }
        }
    }
    Ok(Body::from(first.unwrap_or_else(|| rest.freeze())))
}
