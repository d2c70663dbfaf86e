//! Adapters between [`Doer`](crate::Doer) and `tower::Service` (work in progress).
