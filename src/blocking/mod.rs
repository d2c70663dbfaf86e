//! A blocking client, for code without an async runtime (feature `blocking`), like
//! `reqwest::blocking`.
//!
//! [`Client`] wraps any [`Doer`], a whole stack of decorators included, and makes each call
//! block the calling thread until the answer is there. The stack is the same one async code
//! uses, so a synchronous SDK or program gets the same retries, breaker, logging and signing,
//! and tests stay free of the network with the same doubles.
//!
//! ```
//! use http_doer::blocking::Client;
//! use http_doer::testing::{ScriptedDoer, response};
//!
//! # fn main() -> Result<(), http_doer::Error> {
//! // In production: `Client::new(UreqDoer::new().retrying())?`.
//! let doer = ScriptedDoer::new().then(Ok(response(200, "sunny")));
//! let client = Client::new(doer.clone())?;
//!
//! let resp = client.get("https://weather.test/today/paris")?;
//! assert_eq!(resp.status(), 200);
//! assert_eq!(resp.into_body().text()?, "sunny");
//! assert_eq!(doer.requests()[0].uri().path(), "/today/paris");
//! # Ok(()) }
//! ```
//!
//! ## What runs where
//!
//! Each client owns a small current-thread tokio runtime, made once, when the client is built,
//! and shared by its clones. It has no thread of its own: a thread that calls the client
//! drives the runtime while it waits (the stack's timers, reqwest's connections), and several
//! threads calling at once take turns driving it. [`UreqDoer`](crate::UreqDoer) runs each
//! exchange on the runtime's blocking pool, so a client over it is ureq with the crate's
//! decorators, and no second HTTP stack; a client over [`ReqwestDoer`](crate::ReqwestDoer)
//! keeps reqwest's pooled connections on the client's runtime between calls. Dropping the last
//! clone (and the last streamed body) shuts the runtime down without waiting for it.
//!
//! Timeouts are the stack's: the backend's (30 s unless changed), a
//! [`Timeout`](crate::Timeout), or [`Retrying`](crate::Retrying)'s deadlines.
//!
//! ## Inside an async runtime
//!
//! Blocking inside an async task stalls every other task of its thread, and tokio refuses it
//! with a panic. This client never panics there: a call made while a tokio task (or a
//! `#[tokio::test]` body) is being polled fails at once with [`ErrorKind::Other`] and a message
//! that points to the async [`Doer`]. Calls from `tokio::task::spawn_blocking` work (each one,
//! and each read of a streamed body, then drives the client's runtime from a short-lived thread
//! of its own, since tokio cannot say whether the caller may block), and so does making and
//! dropping a client anywhere. One case cannot be told apart from `spawn_blocking`: a call
//! inside `tokio::task::unconstrained(...)` on a runtime worker. It is not refused; it blocks
//! that worker until the call ends, as any blocking code there would.
//!
//! ## Responses
//!
//! A [`Response`] is an `http::Response<`[`blocking::Body`](Body)`>`: status, headers and the
//! decorators' reports in the extensions ([`Attempts`](crate::Attempts), a breaker's stale
//! mark) are read as on an async [`Response`](crate::Response), and only the body differs; it
//! is read whole, chunk by chunk, or through [`std::io::Read`]. A wrapper type with its own
//! `status()` and `text()`, as `reqwest::blocking` has, was weighed and not taken: reqwest needs
//! one because its async side has its own type too, while here the same SDK code then reads
//! the same with or without `.await`, and every `http`-based helper takes the response as is.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

#[cfg(doc)]
use crate::ErrorKind;
use crate::{Doer, Error, Request};

mod body;
mod runtime;

pub use body::Body;

use runtime::Runtime;

/// A response whose body is read without an async runtime.
pub type Response = http::Response<Body>;

/// A blocking client over any [`Doer`]; see the [module docs](self) for what runs where.
///
/// Cheap to clone (an `Arc` inside), and `Send + Sync`: clones share one runtime and one
/// stack, and may be used from many threads at once.
///
/// ```no_run
/// use http_doer::blocking::Client;
/// use http_doer::{DoerExt, UreqDoer};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::new(UreqDoer::new().breaker().retrying())?;
/// let resp = client.get("https://example.com/")?;
/// println!("{}: {}", resp.status(), resp.into_body().text()?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    // Dropped first: the stack goes while the runtime its connections belong to still runs.
    doer: Box<dyn Doer>,
    runtime: Runtime,
}

impl Client {
    /// A client over `doer`, with a runtime of its own.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Other`] when the runtime cannot be made (the OS refuses it a file
    /// descriptor).
    pub fn new<D: Doer + 'static>(doer: D) -> Result<Self, Error> {
        Ok(Client {
            shared: Arc::new(Shared {
                doer: Box::new(doer),
                runtime: Runtime::new()?,
            }),
        })
    }

    /// Sends `req` through the stack and waits for the response.
    ///
    /// A non-2xx status is a response, as for every [`Doer`].
    ///
    /// # Errors
    ///
    /// The stack's error when there is no usable response (see [`ErrorKind`]); and
    /// [`ErrorKind::Other`] when called from inside an async task, where blocking is not
    /// allowed (use [`get_ref`](Self::get_ref)`().execute(req).await` there).
    pub fn execute(&self, req: Request) -> Result<Response, Error> {
        let doer: &dyn Doer = &*self.shared.doer;
        // `execute` is called inside the runtime, not only awaited there: a Doer may start work
        // in `execute` itself (a tower service's `call` setting a timer, say).
        let resp = self.block_on(async move { doer.execute(req).await })??;
        Ok(resp.map(|body| Body::new(body, self.clone())))
    }

    /// Sends a `GET` of `uri` with an empty body.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when `uri` is not a valid URI; otherwise those of
    /// [`execute`](Self::execute).
    pub fn get<U>(&self, uri: U) -> Result<Response, Error>
    where
        http::Uri: TryFrom<U>,
        <http::Uri as TryFrom<U>>::Error: Into<http::Error>,
    {
        self.execute(http::Request::get(uri).body(crate::Body::empty())?)
    }

    /// Runs `fut` on the client's runtime and waits for its output: the way to call async
    /// code written on a [`Doer`] (an async SDK over [`get_ref`](Self::get_ref)) from sync code.
    ///
    /// ```
    /// use http_doer::blocking::Client;
    /// use http_doer::testing::{ScriptedDoer, response};
    /// use http_doer::{Body, Doer};
    ///
    /// # fn main() -> Result<(), http_doer::Error> {
    /// let client = Client::new(ScriptedDoer::new().then(Ok(response(200, "ok"))))?;
    /// let text = client.block_on(async {
    ///     let req = http::Request::get("http://api.test/").body(Body::empty()).unwrap();
    ///     client.get_ref().execute(req).await?.into_body().text().await
    /// })??;
    /// assert_eq!(text, "ok");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Other`] when called from inside an async task, where blocking is not
    /// allowed; `fut` is then dropped unpolled.
    pub fn block_on<F>(&self, fut: F) -> Result<F::Output, Error>
    where
        F: Future + Send,
        F::Output: Send,
    {
        self.shared.runtime.block_on(fut)
    }

    /// The wrapped stack, to call it from async code.
    pub fn get_ref(&self) -> &dyn Doer {
        &*self.shared.doer
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("runtime", &"current_thread")
            .finish_non_exhaustive()
    }
}
