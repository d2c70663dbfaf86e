//! The [`Doer`] trait: send one request, get one response.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Body, Error};

/// An HTTP request whose body is a buffered [`Body`].
pub type Request = http::Request<Body>;

/// An HTTP response whose body is a buffered [`Body`].
pub type Response = http::Response<Body>;

/// Sends one HTTP request and returns one HTTP response: Go's `Client.Do`.
///
/// Backends ([`ReqwestDoer`](crate::ReqwestDoer), [`UreqDoer`](crate::UreqDoer)) implement it by
/// talking to the network; decorators implement it by wrapping another `Doer`; tests implement
/// it with a closure or a script ([`testing`](crate::testing)). Code that only needs to *make*
/// requests should accept `impl Doer` (or `Arc<dyn Doer>`) and let its caller choose the rest.
///
/// # Contract
///
/// * A response with any status, 4xx and 5xx included, is `Ok`. An [`Error`] means there is no
///   usable response: the connection failed, a timeout passed, the body could not be read or
///   was too large, the request was invalid, or a decorator refused to send it.
/// * The method is named `execute` because `do` is a reserved word; it mirrors
///   `reqwest::Client::execute`.
/// * The trait is dyn-compatible, and `&D`, `Box<D>` and `Arc<D>` of any `Doer` (including
///   `dyn Doer`) are Doers too.
///
/// # Example
///
/// ```
/// use http_doer::{Body, Doer, Error, Request, Response};
///
/// /// A Doer that answers every request with `204 No Content`.
/// struct NoContent;
///
/// #[async_trait::async_trait]
/// impl Doer for NoContent {
///     async fn execute(&self, _req: Request) -> Result<Response, Error> {
///         Ok(http::Response::builder().status(204).body(Body::empty()).unwrap())
///     }
/// }
///
/// # tokio_test_block_on(async {
/// let req = http::Request::get("http://example.test/").body(Body::empty()).unwrap();
/// let resp = NoContent.execute(req).await.unwrap();
/// assert_eq!(resp.status(), 204);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Doer: Send + Sync {
    /// Sends `req` and returns the response, whatever its status.
    ///
    /// # Errors
    ///
    /// When there is no usable response: the connection could not be made or failed, a
    /// timeout passed, the body could not be read or was too large, the request was invalid,
    /// or a decorator refused to send it. [`Error::kind`] says which; a 4xx or 5xx status is
    /// a response, not an error.
    async fn execute(&self, req: Request) -> Result<Response, Error>;
}

// The forwarding impls hand back the inner Doer's own future rather than wrapping it in a
// future of their own (what `#[async_trait]` would write): no second allocation per call, and
// the request is not held twice. An `Arc<dyn Doer>` costs a call nothing over the Doer in it.
impl<D: Doer + ?Sized> Doer for &D {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        (**self).execute(req)
    }
}

impl<D: Doer + ?Sized> Doer for Box<D> {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        (**self).execute(req)
    }
}

impl<D: Doer + ?Sized> Doer for Arc<D> {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        (**self).execute(req)
    }
}

/// The future [`Doer::execute`] returns, as `#[async_trait]` writes it.
pub(crate) type Execute<'a> = Pin<Box<dyn Future<Output = Result<Response, Error>> + Send + 'a>>;

/// Copies a request for another send: method, URI, version, headers, extensions, and the body
/// shared ([`Body::share`]: O(1) for a buffered or replayable body, the same slot for a
/// one-shot stream). The layers that resend (Retrying, Hedging, Signing) keep one such copy.
pub(crate) fn copy_request(req: &Request) -> Request {
    let mut copy = http::Request::new(req.body().share());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}
