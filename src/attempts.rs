//! [`Attempts`]: how many tries it took to get a response.

/// A response extension: how many attempts the layers below made to get this response, the
/// first one included (so `Attempts(1)` means no retry).
///
/// A retrying decorator inserts it into the response it returns; anything above it (a
/// [`Logging`](crate::Logging), the caller) reads it. It is the response-side twin of
/// [`Error::attempts`](crate::Error::attempts), and it lives in the core so that the two sides
/// meet without knowing each other: a retry layer of your own can report the same way.
///
/// ```
/// use http_doer::{Attempts, testing::response};
///
/// let mut resp = response(200, "ok");
/// resp.extensions_mut().insert(Attempts(3));
/// assert_eq!(resp.extensions().get::<Attempts>(), Some(&Attempts(3)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempts(pub u32);
