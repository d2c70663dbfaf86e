//! Types across the boundary: any `http_body::Body` into a [`Body`], without a wrapper when it
//! already is one.

use std::any::Any;

use crate::Body;
use crate::body::BoxError;

/// Takes the value out of `slot` as a `U` when it is one, else leaves it there. The check
/// compares type ids, which the compiler folds away, so a `Body` (or an `Error`) crosses the
/// boundary at no cost and as it was: a replayable body stays replayable for the retries below.
pub(crate) fn take_as<T: 'static, U: 'static>(slot: &mut Option<T>) -> Option<U> {
    (slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
}

/// Whether `T` and `U` are the same type (folded away by the compiler as well).
pub(crate) fn same_type<T: ?Sized + 'static, U: ?Sized + 'static>() -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>()
}

/// Any request body as a [`Body`]: itself, or a one-shot stream of its data frames.
pub(crate) fn into_body<B>(body: B) -> Body
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut slot = Some(body);
    if let Some(ours) = take_as::<B, Body>(&mut slot) {
        return ours;
    }
    // Not empty: `take_as` empties the slot only when it returns the body.
    match slot {
        // A body with no data (hyper's `Incoming` of a GET, `Empty`, an empty `Full`) is the
        // buffered empty body, which retries and hedges resend, not a one-shot stream.
        Some(body) if body.is_end_stream() || body.size_hint().exact() == Some(0) => Body::empty(),
        Some(body) => Body::from_http_body(body),
        None => Body::empty(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn a_body_crosses_unwrapped_and_keeps_its_kind() {
        let chunks = || futures_util::stream::iter([Ok::<_, BoxError>(Bytes::from("x"))]);
        let body = into_body(Body::replayable(chunks));
        assert!(body.is_replayable() && body.is_stream());
        let buffered = into_body(Body::from("abc"));
        assert_eq!(buffered.as_bytes().map(|b| &b[..]), Some(&b"abc"[..]));
    }

    #[tokio::test]
    async fn a_foreign_body_becomes_a_one_shot_stream_of_its_length() {
        let body = into_body(http_body_util::Full::new(Bytes::from("hello")));
        assert!(body.is_stream() && !body.is_replayable());
        assert_eq!(body.len(), Some(5));
        assert_eq!(body.bytes().await.unwrap(), "hello");
    }

    #[test]
    fn take_as_leaves_another_type_in_place() {
        let mut slot = Some(5u32);
        assert_eq!(take_as::<u32, u64>(&mut slot), None);
        assert_eq!(slot, Some(5));
        assert_eq!(take_as::<u32, u32>(&mut slot), Some(5));
        assert!(same_type::<Body, Body>() && !same_type::<Body, u8>());
    }
}
