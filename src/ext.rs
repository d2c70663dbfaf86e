//! [`DoerExt`]: adapters that make a stack of decorators read top-down.

use std::sync::Arc;

use crate::Doer;

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

    /// Wraps this Doer in [`Hedging`](crate::Hedging): slow `GET`/`HEAD` requests get an extra
    /// copy after an adaptive delay, and the first acceptable answer wins.
    fn hedging(self) -> crate::Hedging<Self> {
        crate::Hedging::new(self)
    }
}

impl<D: Doer> DoerExt for D {}
