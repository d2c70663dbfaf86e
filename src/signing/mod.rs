//! [`Signing`]: sign or authenticate every request just before it is sent.
//!
//! A [`Signer`] gets the request as `&mut Request` right before each send and adds what the
//! server needs: a token, a password, a key, a signature. The signers here:
//!
//! | signer | what it adds |
//! |---|---|
//! | [`Bearer`] | `Authorization: Bearer <token>` from a static token or a cached, refreshing [`TokenSource`] |
//! | [`Basic`] | `Authorization: Basic <base64(user:password)>` (RFC 7617) |
//! | [`ApiKey`] | a key in a header or a query parameter |
//! | [`HttpSignature`] | `Signature-Input` and `Signature` (RFC 9421), hmac-sha256 or ed25519 (feature `ed25519`) |
//! | [`ContentDigest`] | `Content-Digest` (RFC 9530), sha-256 or sha-512 |
//! | `SigV4` | AWS Signature Version 4 through the official `aws-sigv4` crate (feature `aws-sigv4`) |
//!
//! A closure `Fn(&mut Request) -> Result<(), Error>` is a signer too, [`signer_fn`] wraps an
//! async one, and a pair `(A, B)` of signers runs `A` then `B` (for example a
//! [`ContentDigest`] then a custom signature over it).
//!
//! Every signer re-signs from scratch on every call and replaces what it set before, so a
//! `Retrying` or `Hedging` decorator placed *outside* `Signing` gets a fresh signature
//! (a new `created` time, a new nonce, a refreshed token) on every attempt.
//!
//! Secret header values (`Authorization`, API keys, signatures, session tokens) are marked
//! [sensitive](http::HeaderValue::set_sensitive), and no signer's `Debug` prints key material or
//! a token.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;

use crate::doer::Execute;
use crate::{Doer, Error, ErrorKind, Request, Response};

mod api_key;
mod basic;
mod bearer;
mod clock;
mod digest;
mod http_sig;
#[cfg(feature = "aws-sigv4")]
mod sigv4;
mod util;

pub use api_key::ApiKey;
pub use basic::Basic;
pub use bearer::{Bearer, DEFAULT_REFRESH_MARGIN, Token, TokenSource};
pub use clock::{Clock, SystemClock};
pub use digest::{ContentDigest, DigestAlgorithm};
pub use http_sig::{Component, DEFAULT_LABEL, HttpSignature};
#[cfg(feature = "aws-sigv4")]
pub use sigv4::SigV4;

/// Signs or authenticates a request just before it is sent.
///
/// [`Signing`] calls [`sign`](Signer::sign) once per send, with the request as it is about to
/// leave, so every attempt of a retried request is signed anew. Implementations must be
/// idempotent: signing an already signed request replaces what an earlier call added (the same
/// header, the same signature label) instead of adding a second copy.
///
/// A closure is a signer:
///
/// ```
/// use http_doer::{Request, signing::Signer};
///
/// let tenant = |req: &mut Request| {
///     req.headers_mut().insert("x-tenant", http::HeaderValue::from_static("acme"));
///     Ok(())
/// };
/// # fn is_signer<S: Signer>(_: &S) {}
/// # is_signer(&tenant);
/// ```
#[async_trait]
pub trait Signer: Send + Sync {
    /// Adds credentials or a signature to `req`.
    ///
    /// # Errors
    ///
    /// When the request cannot be signed (a token source that failed, a body that would have
    /// to be read twice, a configuration the signer refuses); [`Signing`] then does not send
    /// the request, and returns the error as an [`ErrorKind::Signing`] one.
    async fn sign(&self, req: &mut Request) -> Result<(), Error>;

    /// Signs `req` at once, without waiting, when this signer can do it by setting headers
    /// only (a static token, a fixed key): `Some` with what [`sign`](Signer::sign) would have
    /// returned, or `None` (the default) to have `sign` called instead.
    ///
    /// [`Signing`] tries this first, as soon as its `execute` is called (before the returned
    /// future is polled), so a signer that answers `Some` costs no boxed future, and
    /// no copy of the URL to keep secrets out of errors: an implementation must therefore
    /// never change the request's URI, and must leave `req` untouched when it returns `None`.
    ///
    /// # Errors
    ///
    /// `Some(Err(..))` as [`sign`](Signer::sign) would fail.
    ///
    /// ```
    /// use http_doer::{Body, Error, Request, signing::Signer};
    ///
    /// /// Adds a fixed tenant header: nothing to wait for.
    /// struct Tenant(http::HeaderValue);
    ///
    /// #[async_trait::async_trait]
    /// impl Signer for Tenant {
    ///     async fn sign(&self, req: &mut Request) -> Result<(), Error> {
    ///         req.headers_mut().insert("x-tenant", self.0.clone());
    ///         Ok(())
    ///     }
    ///
    ///     fn sign_now(&self, req: &mut Request) -> Option<Result<(), Error>> {
    ///         req.headers_mut().insert("x-tenant", self.0.clone());
    ///         Some(Ok(()))
    ///     }
    /// }
    ///
    /// let mut req = http::Request::get("https://api.test/").body(Body::empty()).unwrap();
    /// let tenant = Tenant(http::HeaderValue::from_static("acme"));
    /// assert!(tenant.sign_now(&mut req).unwrap().is_ok());
    /// assert_eq!(req.headers()["x-tenant"], "acme");
    /// ```
    fn sign_now(&self, req: &mut Request) -> Option<Result<(), Error>> {
        let _ = req;
        None
    }

    /// Whether this signer may ask, through [`rejected`](Signer::rejected), for a request to be
    /// signed again and resent once. When `false` (the default), [`Signing`] keeps no copy of
    /// the request and never calls `rejected`.
    fn resends(&self) -> bool {
        false
    }

    /// Called with the request as it was sent and the response to it, when
    /// [`resends`](Signer::resends) is `true`. Returning `true` means the server rejected the
    /// credentials (for example an expired token, now dropped from a cache): [`Signing`] signs
    /// the request again and sends it a second time, once.
    async fn rejected(&self, sent: &Request, response: &Response) -> bool {
        let _ = (sent, response);
        false
    }
}

// Closures are signers. `Fn` is a fundamental trait, so this blanket impl does not stop
// crates from implementing `Signer` for their own types.
#[async_trait]
impl<F> Signer for F
where
    F: Fn(&mut Request) -> Result<(), Error> + Send + Sync,
{
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        self(req)
    }
}

#[async_trait]
impl<S: Signer + ?Sized> Signer for Arc<S> {
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        (**self).sign(req).await
    }

    fn sign_now(&self, req: &mut Request) -> Option<Result<(), Error>> {
        (**self).sign_now(req)
    }

    fn resends(&self) -> bool {
        (**self).resends()
    }

    async fn rejected(&self, sent: &Request, response: &Response) -> bool {
        (**self).rejected(sent, response).await
    }
}

/// Two signers in a row: `A` signs first, then `B` (which can cover what `A` added).
#[async_trait]
impl<A: Signer, B: Signer> Signer for (A, B) {
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        self.0.sign(req).await?;
        self.1.sign(req).await
    }

    fn resends(&self) -> bool {
        self.0.resends() || self.1.resends()
    }

    async fn rejected(&self, sent: &Request, response: &Response) -> bool {
        // Both see the rejection, so each can drop what it cached.
        let a = self.0.resends() && self.0.rejected(sent, response).await;
        let b = self.1.resends() && self.1.rejected(sent, response).await;
        a || b
    }
}

/// The future an async signer closure returns: it may borrow the request.
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// A signer made from an async closure; see [`signer_fn`].
#[derive(Clone)]
pub struct FnSigner<F> {
    f: F,
}

impl<F> fmt::Debug for FnSigner<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnSigner")
    }
}

/// Turns an async closure into a [`Signer`]: the closure gets `&mut Request` and returns a
/// boxed future that may borrow it.
///
/// ```
/// use http_doer::{Doer, DoerExt, Request, signing::signer_fn, testing::ScriptedDoer};
///
/// async fn lookup_tenant() -> &'static str {
///     "acme"
/// }
///
/// let signer = signer_fn(|req: &mut Request| {
///     Box::pin(async move {
///         let tenant = lookup_tenant().await;
///         req.headers_mut().insert("x-tenant", http::HeaderValue::from_static(tenant));
///         Ok(())
///     })
/// });
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let server = ScriptedDoer::new().then_status(200);
/// let doer = server.clone().signing(signer);
/// doer.execute(http::Request::get("http://api.test/").body(().into()).unwrap()).await.unwrap();
/// assert_eq!(server.requests()[0].headers()["x-tenant"], "acme");
/// # });
/// ```
pub fn signer_fn<F>(f: F) -> FnSigner<F>
where
    F: for<'a> Fn(&'a mut Request) -> SignFuture<'a> + Send + Sync,
{
    FnSigner { f }
}

#[async_trait]
impl<F> Signer for FnSigner<F>
where
    F: for<'a> Fn(&'a mut Request) -> SignFuture<'a> + Send + Sync,
{
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        (self.f)(req).await
    }
}

/// Response extension: the server rejected the first signed request, the signer asked for a
/// resend (see [`Signer::resends`] and [`Signer::rejected`]), and this response answers the
/// second send, signed again.
///
/// Formerly `Resigned`, which read as "gave up".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resent;

/// The old name of [`Resent`].
#[deprecated(note = "renamed `Resent`")]
pub type Resigned = Resent;

/// The old name of [`Resent`], as a value (`insert(Resigned)`).
#[deprecated(note = "renamed `Resent`")]
#[allow(non_upper_case_globals)]
pub const Resigned: Resent = Resent;

/// A decorator that signs or authenticates every request with a [`Signer`] before passing it
/// to the inner [`Doer`].
///
/// Defaults: every request is signed on every call, nothing is cached by `Signing` itself
/// (caching, such as a [`Bearer`] token cache, lives in the signer). A signer error becomes an
/// [`ErrorKind::Signing`] error and the request is not sent. If the signer
/// [resends](Signer::resends) (a [`Bearer`] with
/// [`resend_on_invalid_token`](Bearer::resend_on_invalid_token)), a rejected request is signed
/// again and sent once more, and the response carries [`Resent`].
///
/// Place `Signing` *inside* `Retrying` and `Hedging`, next to the backend, so that every
/// attempt is signed with a fresh timestamp, nonce and token.
///
/// # Settings and shared state
///
/// `Signing` has no settings of its own: they are the signer's. Clones share the signer (one
/// `Arc`), and with it any state the signer keeps, such as a [`Bearer`] token cache, so every
/// clone uses, and refreshes, the same token.
///
/// # Bodies
///
/// Most signers never look at the body. Those that hash it must send the hash before the body,
/// so they read the whole body before it is sent, and what they can do depends on its kind:
///
/// | signer | buffered | replayable stream ([`Body::from_file`](crate::Body::from_file), [`Body::replayable`](crate::Body::replayable)) | one-shot stream |
/// |---|---|---|---|
/// | [`Bearer`], [`Basic`], [`ApiKey`], [`HttpSignature`] without a digest | not read | not read | not read |
/// | [`ContentDigest`], [`HttpSignature::content_digest`] | hashed in memory | read once ahead, chunk by chunk into the hash (never gathered in memory), then sent from its start | refused: an [`ErrorKind::Signing`] error says it would have to be read twice; nothing is sent |
/// | `SigV4` (feature `aws-sigv4`) | hashed in memory | read ahead the same way; its hash is signed | signed as `UNSIGNED-PAYLOAD`, which S3 accepts and most other services do not (see `SigV4`) |
///
/// The read-ahead happens on every signing, inside the async [`Signer::sign`], so with
/// `Signing` inside `Retrying` a replayable body is read twice per attempt, and its content
/// must be the same every time it is opened.
///
/// A signer that [resends](Signer::resends) after a rejection resends a buffered or
/// replayable body from its start; a one-shot body was taken by the first send, so the
/// rejection is returned as it is (the signer has still dropped its stale token, so the
/// caller's next request gets a fresh one).
///
/// ```
/// use http_doer::{Body, Doer, DoerExt, Signing, signing::Bearer, testing::ScriptedDoer};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let server = ScriptedDoer::new().then_status(200);
/// let doer = Signing::new(server.clone(), Bearer::new("s3cr3t-token")?);
/// // Or, reading top-down: `server.clone().signing(Bearer::new("s3cr3t-token")?)`.
///
/// let req = http::Request::get("https://api.test/me").body(Body::empty()).unwrap();
/// assert_eq!(doer.execute(req).await?.status(), 200);
///
/// let sent = &server.requests()[0];
/// assert_eq!(sent.headers()["authorization"], "Bearer s3cr3t-token");
/// assert!(sent.headers()["authorization"].is_sensitive());
/// assert!(!format!("{:?}", doer.signer()).contains("s3cr3t"));
/// # Ok::<(), http_doer::Error>(())
/// # }).unwrap();
/// ```
pub struct Signing<D, S> {
    inner: D,
    signer: Arc<S>,
}

impl<D, S> Signing<D, S> {
    /// Signs every request sent through `inner` with `signer`.
    pub fn new(inner: D, signer: S) -> Self {
        Signing {
            inner,
            signer: Arc::new(signer),
        }
    }

    /// The signer, for example to [invalidate](Bearer::invalidate) a cached token.
    pub fn signer(&self) -> &S {
        &self.signer
    }

    /// The wrapped Doer.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }

    /// The wrapped Doer, mutably.
    pub fn get_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Unwraps the inner Doer.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// The wrapped Doer.
    #[deprecated(note = "use `get_ref`, the name every decorator uses")]
    pub fn inner(&self) -> &D {
        &self.inner
    }
}

impl<D: Clone, S> Clone for Signing<D, S> {
    fn clone(&self) -> Self {
        Signing {
            inner: self.inner.clone(),
            signer: Arc::clone(&self.signer),
        }
    }
}

impl<D: fmt::Debug, S: fmt::Debug> fmt::Debug for Signing<D, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signing")
            .field("inner", &self.inner)
            .field("signer", &self.signer)
            .finish()
    }
}

impl<D: Doer, S: Signer> Signing<D, S> {
    /// Signs `req`; an error names `unsigned`, the URL as the caller sent it.
    async fn sign(&self, req: &mut Request, unsigned: &http::Uri) -> Result<(), Error> {
        // The signer itself, not its `Arc`: the `Arc`'s `sign` would box a second future.
        S::sign(&self.signer, req)
            .await
            .map_err(|err| signing_failed(err, unsigned))
    }
}

/// A signer's error as this layer returns it, naming `unsigned`, the URL as the caller sent it.
fn signing_failed(err: Error, unsigned: &http::Uri) -> Error {
    // A token source that could not connect is still a signing failure for the request: it
    // never left, and the caller should see why it was not sent.
    let err = if err.kind() == ErrorKind::Signing {
        err
    } else {
        Error::new(ErrorKind::Signing, err).with_message("signer failed")
    };
    err.with_url(unsigned)
}

/// Errors from below name the URL as the caller sent it: a signer may have added a secret to
/// the query (an API key under a name the redaction rules cannot know), and the error is
/// printed above this layer.
fn unsigned_url(err: Error, unsigned: &http::Uri) -> Error {
    if err.url().is_some() {
        err.with_url(unsigned)
    } else {
        err
    }
}

// Written out rather than with `#[async_trait]`: a request signed at once (`sign_now`) is
// handed the inner Doer's own future, with no future of this layer around it.
impl<D: Doer, S: Signer> Doer for Signing<D, S> {
    fn execute<'life0, 'async_trait>(&'life0 self, mut req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let signer: &S = &self.signer;
        if !signer.resends()
            && let Some(signed) = signer.sign_now(&mut req)
        {
            // Headers only (`sign_now`'s contract): the URL is the caller's, nothing to scrub.
            return match signed {
                Ok(()) => self.inner.execute(req),
                Err(err) => Box::pin(std::future::ready(Err(signing_failed(err, req.uri())))),
            };
        }
        Box::pin(self.call(req))
    }
}

impl<D: Doer, S: Signer> Signing<D, S> {
    async fn call(&self, mut req: Request) -> Result<Response, Error> {
        let signer: &S = &self.signer;
        let unsigned = req.uri().clone();
        self.sign(&mut req, &unsigned).await?;
        let query_changed = req.uri().query() != unsigned.query();
        let scrub = |err: Error| {
            if query_changed {
                unsigned_url(err, &unsigned)
            } else {
                err
            }
        };
        // A streamed body's errors come after this layer returned: they are scrubbed too.
        let scrub_body = |resp: Response| {
            if !query_changed || !resp.body().is_stream() {
                return resp;
            }
            let unsigned = unsigned.clone();
            resp.map(|body| body.map_err(move |e| unsigned_url(e, &unsigned)))
        };
        if !signer.resends() {
            return self.inner.execute(req).await.map_err(scrub).map(scrub_body);
        }
        let sent = crate::doer::copy_request(&req);
        let resp = self.inner.execute(req).await.map_err(scrub)?;
        // A one-shot body the first send took cannot be sent again.
        if !S::rejected(signer, &sent, &resp).await || !sent.body().can_resend() {
            return Ok(scrub_body(resp));
        }
        drop(resp);
        let mut again = sent;
        *again.uri_mut() = unsigned.clone();
        self.sign(&mut again, &unsigned).await?;
        let mut resp = self.inner.execute(again).await.map_err(scrub)?;
        resp.extensions_mut().insert(Resent);
        Ok(scrub_body(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ScriptedDoer, doer_fn, response};
    use crate::{Body, DoerExt};
    use http::HeaderValue;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn get() -> Request {
        http::Request::get("https://api.test/x")
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn closure_signer_runs_before_every_send() {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = Arc::clone(&calls);
        let signer = move |req: &mut Request| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            req.headers_mut().insert("x-n", HeaderValue::from(n));
            Ok(())
        };
        let server = ScriptedDoer::new().then_status(200).then_status(200);
        let doer = server.clone().signing(signer);
        doer.execute(get()).await.unwrap();
        doer.execute(get()).await.unwrap();
        let seen: Vec<_> = server
            .requests()
            .iter()
            .map(|r| r.headers()["x-n"].to_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen, ["1", "2"]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn signer_error_is_a_signing_error_and_nothing_is_sent() {
        let server = ScriptedDoer::new().then_status(200);
        let failing = |_: &mut Request| Err(Error::from(ErrorKind::Connect).with_message("idp"));
        let doer = Signing::new(server.clone(), failing);
        let err = doer.execute(get()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Signing);
        assert_eq!(err.url(), Some("https://api.test/x"));
        assert!(format!("{err:#}").contains("idp"), "{err:#}");
        assert_eq!(server.calls(), 0);
    }

    /// Counts which of its two ways of signing ran; `sign_now` fails when told to.
    struct Both {
        now: AtomicU32,
        later: AtomicU32,
        fail_now: bool,
    }

    #[async_trait]
    impl Signer for Both {
        async fn sign(&self, req: &mut Request) -> Result<(), Error> {
            self.later.fetch_add(1, Ordering::SeqCst);
            req.headers_mut()
                .insert("x-way", HeaderValue::from_static("later"));
            Ok(())
        }

        fn sign_now(&self, req: &mut Request) -> Option<Result<(), Error>> {
            self.now.fetch_add(1, Ordering::SeqCst);
            if self.fail_now {
                return Some(Err(Error::from(ErrorKind::Other).with_message("bad key")));
            }
            req.headers_mut()
                .insert("x-way", HeaderValue::from_static("now"));
            Some(Ok(()))
        }
    }

    #[tokio::test]
    async fn sign_now_is_tried_first_and_its_error_is_a_signing_error() {
        let server = ScriptedDoer::new().then_status(200);
        let signer = Both {
            now: AtomicU32::new(0),
            later: AtomicU32::new(0),
            fail_now: false,
        };
        let doer = Signing::new(server.clone(), signer);
        doer.execute(get()).await.unwrap();
        assert_eq!(server.requests()[0].headers()["x-way"], "now");
        assert_eq!(doer.signer().now.load(Ordering::SeqCst), 1);
        assert_eq!(doer.signer().later.load(Ordering::SeqCst), 0);

        let failing = Signing::new(
            server.clone(),
            Both {
                now: AtomicU32::new(0),
                later: AtomicU32::new(0),
                fail_now: true,
            },
        );
        let err = failing.execute(get()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Signing);
        assert_eq!(err.url(), Some("https://api.test/x"));
        assert!(format!("{err:#}").contains("bad key"), "{err:#}");
        assert_eq!(server.calls(), 1, "the failed request was not sent");
        assert_eq!(failing.signer().later.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn async_closure_signer_can_borrow_the_request() {
        let signer = signer_fn(|req: &mut Request| {
            Box::pin(async move {
                tokio::task::yield_now().await;
                let path = req.uri().path().to_owned();
                req.headers_mut()
                    .insert("x-path", HeaderValue::from_str(&path).unwrap());
                Ok(())
            })
        });
        let server = ScriptedDoer::new().then_status(204);
        let doer = Signing::new(server.clone(), signer);
        assert_eq!(doer.execute(get()).await.unwrap().status(), 204);
        assert_eq!(server.requests()[0].headers()["x-path"], "/x");
    }

    #[tokio::test]
    async fn a_pair_signs_in_order() {
        let first = |req: &mut Request| {
            req.headers_mut()
                .insert("x-order", HeaderValue::from_static("a"));
            Ok(())
        };
        let second = |req: &mut Request| {
            let before = req.headers()["x-order"].to_str().unwrap().to_owned();
            req.headers_mut()
                .insert("x-order", HeaderValue::from_str(&(before + "b")).unwrap());
            Ok(())
        };
        let server = ScriptedDoer::new().then_status(200);
        let doer = Signing::new(server.clone(), (first, second));
        doer.execute(get()).await.unwrap();
        assert_eq!(server.requests()[0].headers()["x-order"], "ab");
    }

    struct RejectOnce {
        signed: AtomicU32,
    }

    #[async_trait]
    impl Signer for RejectOnce {
        async fn sign(&self, req: &mut Request) -> Result<(), Error> {
            let n = self.signed.fetch_add(1, Ordering::SeqCst) + 1;
            req.headers_mut().insert("x-sig", HeaderValue::from(n));
            Ok(())
        }
        fn resends(&self) -> bool {
            true
        }
        async fn rejected(&self, sent: &Request, response: &Response) -> bool {
            response.status() == 401 && sent.headers()["x-sig"] == "1"
        }
    }

    #[tokio::test]
    async fn a_rejection_is_signed_again_and_resent_once() {
        let server = ScriptedDoer::new()
            .then_status(401)
            .then_status(200)
            .then_status(401)
            .then_status(401);
        let doer = Signing::new(
            server.clone(),
            RejectOnce {
                signed: AtomicU32::new(0),
            },
        );
        let resp = doer.execute(get()).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.extensions().get::<Resent>().is_some());
        let sigs: Vec<_> = server
            .requests()
            .iter()
            .map(|r| r.headers()["x-sig"].clone())
            .collect();
        assert_eq!(sigs, ["1", "2"]);

        // The signer says sig 3 is not a rejection worth resending: one send, no Resent.
        let resp = doer.execute(get()).await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.extensions().get::<Resent>().is_none());
        assert_eq!(server.calls(), 3);
    }

    #[tokio::test]
    async fn arc_dyn_signer_works_and_clones_share_it() {
        let signer: Arc<dyn Signer> = Arc::new(|req: &mut Request| {
            req.headers_mut()
                .insert("x-a", HeaderValue::from_static("1"));
            Ok(())
        });
        let doer = doer_fn(|req: Request| async move {
            Ok(response(
                200,
                req.headers()["x-a"].to_str().unwrap().to_owned(),
            ))
        })
        .signing(signer);
        let clone = doer.clone();
        let body = clone.execute(get()).await.unwrap().into_body();
        assert_eq!(body.text().await.unwrap(), "1");
        assert!(Arc::ptr_eq(&doer.signer, &clone.signer));
    }
}
