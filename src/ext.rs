//! [`DoerExt`]: adapters that make a stack of decorators read top-down.

use std::sync::Arc;

use crate::Doer;
use crate::signing::{Signer, Signing};

/// Adapters for every [`Doer`].
///
/// ```
/// use std::sync::Arc;
/// use http_doer::{Doer, DoerExt, testing::ScriptedDoer};
///
/// let shared: Arc<dyn Doer> = ScriptedDoer::new().shared();
/// let boxed: Box<dyn Doer> = ScriptedDoer::new().boxed();
/// # let _ = (shared, boxed);
/// ```
pub trait DoerExt: Doer + Sized {
    /// Boxes this Doer as a trait object.
    fn boxed(self) -> Box<dyn Doer>
    where
        Self: 'static,
    {
        Box::new(self)
    }

    /// Puts this Doer behind an `Arc`, to share one stack between many clients.
    fn shared(self) -> Arc<dyn Doer>
    where
        Self: 'static,
    {
        Arc::new(self)
    }

    /// Wraps this Doer in a [`Logging`](crate::Logging) with its defaults: one `tracing` event
    /// per exchange, secrets redacted.
    fn logging(self) -> crate::Logging<Self> {
        crate::Logging::new(self)
    }

    /// Signs or authenticates every request with `signer` before it is sent; see [`Signing`].
    fn signing<S: Signer>(self, signer: S) -> Signing<Self, S> {
        Signing::new(self, signer)
    }

    /// Wraps this Doer in [`Retrying`](crate::Retrying) with its defaults: up to 3 retries of
    /// what is safe to repeat, exponential backoff with jitter, `Retry-After` honoured, and a
    /// retry budget of 20 % of recent calls.
    fn retrying(self) -> crate::Retrying<Self> {
        crate::Retrying::new(self)
    }

    /// Wraps this Doer in a [`Breaker`](crate::Breaker) with its defaults: one circuit per
    /// host, tripping on 5 failures in a row or a 50 % failure rate, open for 10 s.
    fn breaker(self) -> crate::Breaker<Self> {
        crate::Breaker::new(self)
    }
}

impl<D: Doer> DoerExt for D {}
