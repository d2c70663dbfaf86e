//! Streamed answers: counting their outcome when the body ends, and keeping a copy for the
//! stale cache as the body goes by, without holding the stream back.
//!
//! A buffered answer is whole when the inner Doer returns it, so the breaker counts it and
//! keeps it at once. A streamed one (a one-shot body, such as a backend's
//! [`ResponseMode::Streamed`](crate::ResponseMode) answer) is only known to be good once its
//! body has ended, which happens later, as the caller reads it. [`Watch`] is told of each chunk
//! and of the end (through [`Body::tap`](crate::Body)), and then:
//!
//! * **counts** the call when its head was a success: a closed-state call's outcome is only
//!   recorded then (a success, or what the classifier says of the body's error, by default a
//!   failure), so that a host whose heads arrive and whose bodies break trips the circuit as a
//!   host whose calls fail would. A half-open probe's outcome is recorded from its head, so the
//!   probe frees its slot (and can close the circuit) without waiting for a body of any size;
//!   a body error after it is then recorded as one more failure, in the generation the probe
//!   left the circuit in (see [`Circuit::record_failure_after`]). A body dropped by its
//!   reader before its end counts as the success its head was: the host did not fail.
//! * **tees** the body into a copy for the stale cache while the copy stays within the
//!   cache's per-answer bound, drops it and gives up as soon as it would not, and hands it to
//!   the cache only if the body ended whole ([`StaleCache::finish`]).

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::Shared;
use super::classify::Verdict;
use super::stale::Pending;
use super::state::Ticket;
use super::tally::Handle;
use crate::body::Tap;
use crate::{Error, Response};

/// How the body's end counts towards its circuit.
pub(super) enum Count {
    /// A closed-state call whose (successful) outcome waits for its body's end.
    Deferred(Ticket),
    /// A call whose outcome was counted from its head, leaving the circuit in this generation:
    /// a body error is one more failure.
    After(u64),
}

/// The most a copy reserves before its bytes arrive.
const MAX_UP_FRONT: usize = 1 << 20;

/// The copy of a streamed body being kept for the stale cache. Its buffer never grows past
/// the room the cache has for the answer's body, whatever the body's size.
pub(super) struct Tee {
    pending: Pending,
    copy: Vec<u8>,
    /// Past the cache's bound: the copy was dropped.
    over: bool,
}

impl Tee {
    /// A tee for `pending`, whose body declared `len` bytes (if it did).
    pub(super) fn new(pending: Pending, len: Option<u64>) -> Self {
        let room = pending.room();
        let over = len.is_some_and(|len| len > room as u64);
        // The declared length, when it fits, is the copy's size; else it grows as it goes.
        // Only a hint (a server's `Content-Length`): never reserved past 1 MiB up front, since
        // the room can be as large as the caller's `max_bytes` (`usize::MAX`: no bound).
        let reserve = match len {
            Some(len) if !over => (len as usize).min(MAX_UP_FRONT),
            _ => 0,
        };
        Tee {
            pending,
            copy: Vec::with_capacity(reserve),
            over,
        }
    }

    fn chunk(&mut self, chunk: &[u8]) {
        if self.over {
            return;
        }
        let room = self.pending.room();
        let needed = self.copy.len().saturating_add(chunk.len());
        if needed > room {
            // Give up at once, and free the copy.
            self.over = true;
            self.copy = Vec::new();
            return;
        }
        if needed > self.copy.capacity() {
            // Doubling, as a `Vec` does, but never past the room.
            let grown = self.copy.capacity().saturating_mul(2).clamp(needed, room);
            self.copy.reserve_exact(grown - self.copy.len());
        }
        self.copy.extend_from_slice(chunk);
    }

    /// The copy, if the body fitted, without spare capacity (the cache counts its length).
    fn into_copy(self) -> (Pending, Option<Bytes>) {
        let Tee {
            pending,
            mut copy,
            over,
        } = self;
        if over {
            return (pending, None);
        }
        copy.shrink_to_fit();
        (pending, Some(Bytes::from(copy)))
    }
}

/// Watches a streamed answer's body for the breaker; see the module docs.
pub(super) struct Watch {
    shared: Arc<Shared>,
    circuit: Arc<Handle>,
    count: Option<Count>,
    tee: Option<Tee>,
}

impl Watch {
    pub(super) fn new(
        shared: Arc<Shared>,
        circuit: Arc<Handle>,
        count: Option<Count>,
        tee: Option<Tee>,
    ) -> Self {
        Watch {
            shared,
            circuit,
            count,
            tee,
        }
    }

    /// `resp` with its body watched.
    pub(super) fn attach(self, mut resp: Response) -> Response {
        let body = std::mem::take(resp.body_mut());
        *resp.body_mut() = body.tap(self);
        resp
    }

    /// The body ended (`Some`), or was dropped before its end (`None`). Runs once.
    fn finish(&mut self, ended: Option<Result<(), &Error>>) {
        let shared = &*self.shared;
        let policy = &shared.config.policy;
        let events = &shared.events;
        // What the body's error says of the host, by the breaker's classifier: an error like
        // it, of its kind (the classifier takes an owned result, and an `Error` is not `Clone`).
        let failed = match ended {
            Some(Err(e)) => {
                let like = Error::from(e.kind())
                    .with_message("the response body failed while it was streamed");
                (shared.config.classify)(&Err(like))
            }
            _ => Verdict::Success,
        };
        let counted = match self.count.take() {
            Some(Count::Deferred(ticket)) => {
                let now = Instant::now();
                self.circuit.record(ticket, failed, now, policy, events);
                true
            }
            Some(Count::After(generation)) if failed == Verdict::Failure => {
                let now = Instant::now();
                self.circuit
                    .record_failure_after(generation, now, policy, events);
                true
            }
            Some(Count::After(_)) | None => false,
        };
        if counted && failed == Verdict::Failure {
            tracing::debug!(
                target: "http_doer::breaker",
                key = &**self.circuit.key(),
                "a streamed response body failed; counted as a failure"
            );
        }
        // Only a body that ended whole is kept; a dropped or failed one leaves the cache as it
        // was (as a buffered call that failed or was dropped while its body was read would).
        if let (Some(tee), Some(Ok(()))) = (self.tee.take(), ended)
            && let Some(cache) = &shared.stale
        {
            let (pending, copy) = tee.into_copy();
            if copy.is_none() {
                tracing::debug!(
                    target: "http_doer::breaker",
                    key = &**self.circuit.key(),
                    "a streamed answer was larger than the stale cache keeps; not kept"
                );
            }
            cache.finish(pending, copy);
        }
    }
}

impl Tap for Watch {
    fn chunk(&mut self, chunk: &Bytes) {
        if let Some(tee) = &mut self.tee {
            tee.chunk(chunk);
        }
    }

    fn end(&mut self, result: Result<(), &Error>) {
        self.finish(Some(result));
    }
}

impl Drop for Watch {
    /// Dropped before the end (with the body, or not attached to one): the body did not end
    /// whole, so nothing is kept; a deferred outcome is counted as the head's success.
    fn drop(&mut self) {
        if self.count.is_some() || self.tee.is_some() {
            self.finish(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Body;
    use crate::breaker::ServeStale;
    use crate::breaker::stale::StaleCache;
    use crate::testing::response;

    fn tee(max_bytes: usize, len: Option<u64>) -> (StaleCache, Tee) {
        let cache = StaleCache::new(ServeStale::new(Duration::from_secs(60)).max_bytes(max_bytes));
        let req = http::Request::get("http://h.test/")
            .body(Body::empty())
            .unwrap();
        let lookup = cache.lookup(&req).unwrap();
        let pending = cache
            .begin(lookup, &response(200, ""), Instant::now())
            .unwrap();
        (cache, Tee::new(pending, len))
    }

    #[test]
    fn the_copy_never_grows_past_the_room_and_is_dropped_past_it() {
        let (_cache, mut tee) = tee(1_000, None);
        let room = tee.pending.room();
        assert!(room > 0 && room < 1_000);
        let chunk = vec![1u8; 7];
        while tee.copy.len() + chunk.len() <= room {
            tee.chunk(&chunk);
            assert!(
                tee.copy.capacity() <= room,
                "{} > {room}",
                tee.copy.capacity()
            );
        }
        assert!(!tee.over);
        tee.chunk(&chunk);
        assert!(tee.over);
        assert_eq!(tee.copy.capacity(), 0);
        tee.chunk(&chunk);
        assert_eq!(tee.copy.capacity(), 0);
        assert!(tee.into_copy().1.is_none());
    }

    #[test]
    fn a_declared_length_decides_at_once() {
        let (_cache, tee_over) = tee(1_000, Some(1_000));
        assert!(tee_over.over);
        let (_cache, mut fits) = tee(1_000, Some(10));
        assert!(!fits.over && fits.copy.capacity() >= 10);
        fits.chunk(b"0123456789");
        assert_eq!(fits.into_copy().1.unwrap(), "0123456789");
    }
}
