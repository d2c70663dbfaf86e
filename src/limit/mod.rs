//! Limits: [`RateLimiting`], a client that paces itself to a local rate and to the quota the
//! server publishes, and [`ConcurrencyLimit`], a bulkhead per host.
//!
//! * [`Rate`]: the local limit (GCRA, by `governor`), with a burst;
//! * [`Pacing`]: how the server's 429s and quota fields ([`quota_headers`]) slow a key down;
//! * [`LimitStore`]: the seam the limiter's state goes through, and [`MemoryStore`], the
//!   in-process store; [`FleetStore`], the same with the server's pauses shared by a fleet;
//! * response extensions: [`RateWait`] and [`QueueWait`], how long a call waited;
//! * errors: [`ErrorKind::RateLimited`](crate::ErrorKind::RateLimited) and
//!   [`ErrorKind::ConcurrencyLimited`](crate::ErrorKind::ConcurrencyLimited).
//!
//! # Where they sit
//!
//! Outermost first: `Logging → Retrying → RateLimiting → ConcurrencyLimit → Hedging → Breaker
//! → Signing → backend`.
//!
//! * Outside [`Retrying`](crate::Retrying), a rate limiter paces *calls*: a call and all its
//!   retries take one place, so the rate is what the application asks for (a budget of
//!   operations). Inside it, the limiter paces *attempts*: every retry takes a place too, so
//!   the rate is what the server receives, every 429 is seen (and pauses the retry that
//!   follows), and `Retrying`'s total deadline bounds the wait. A server's quota counts
//!   attempts, so [`RateLimiting`] belongs inside `Retrying`.
//! * Outside [`Hedging`](crate::Hedging): a wait for a place below `Hedging` would look like a
//!   slow server to it and fire extra copies into the same queue. Copies still count, through
//!   the server's own numbers, which the pacing follows.
//! * [`ConcurrencyLimit`] bounds calls in flight (connections, buffers), so it sits inside
//!   `Retrying` too (outside `Hedging`, a slot is a call: its hedge copy runs in the same slot,
//!   up to `hedging::DEFAULT_MAX_COPIES` exchanges a slot): a call sleeping out its backoff holds no slot, and each attempt queues
//!   anew. Inside `RateLimiting`, so a call waiting for its rate place holds no slot either.
//! * Neither refusal is retried by [`default_classifier`](crate::retrying::default_classifier)
//!   nor counted by the breaker's [`default_verdict`](crate::breaker::default_verdict): they
//!   say nothing of the server.

mod clock;
mod concurrency;
mod fleet_store;
mod pacing;
pub mod quota_headers;
mod rate;
mod rate_limiting;
mod store;
mod structured;

use std::sync::Arc;
use std::time::Duration;

pub use concurrency::{ConcurrencyLimit, DEFAULT_MAX_QUEUE, DEFAULT_MAX_QUEUE_WAIT};
pub use fleet_store::FleetStore;
pub use pacing::{
    DEFAULT_MAX_PAUSE, DEFAULT_PAUSE_ON_429, DEFAULT_SAFETY_MARGIN, DEFAULT_SLOW_BELOW, Pacing,
};
pub use quota_headers::ServerQuota;
pub use rate::{DEFAULT_BURST, Rate};
pub use rate_limiting::{DEFAULT_MAX_WAIT, RateLimiting};
pub use store::{DEFAULT_MAX_KEYS, LimitStore, MemoryStore, Pace};

use crate::Request;

/// Response extension: how long [`RateLimiting`] held the call before sending it. Set only
/// when it waited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RateWait(pub Duration);

/// Response extension: how long [`ConcurrencyLimit`] queued the call before a slot freed. Set
/// only when it queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueWait(pub Duration);

/// A function that names the key of a request.
type KeyFn = Arc<dyn Fn(&Request) -> String + Send + Sync>;

/// The last origin key made on this thread, with the scheme and authority it was made from.
struct LastOrigin {
    scheme: String,
    authority: String,
    key: Option<Arc<str>>,
}

thread_local! {
    static LAST_ORIGIN: std::cell::RefCell<LastOrigin> = const {
        std::cell::RefCell::new(LastOrigin {
            scheme: String::new(),
            authority: String::new(),
            key: None,
        })
    };
}

/// A request's key: the caller's own, or its origin's, shared with the calls before it.
enum LimitKey {
    Own(String),
    Origin(Arc<str>),
}

impl std::ops::Deref for LimitKey {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            LimitKey::Own(key) => key,
            LimitKey::Origin(key) => key,
        }
    }
}

/// The key of `req`: `key`'s, or its origin ([`host_key`](crate::breaker::host_key)).
fn key_of(key: Option<&KeyFn>, req: &Request) -> LimitKey {
    match key {
        Some(key) => LimitKey::Own(key(req)),
        None => LimitKey::Origin(origin_key(req.uri())),
    }
}

/// [`host_key`](crate::breaker::host_key) of `uri`, remembered per thread for its scheme and
/// authority as written: a thread mostly calls one host, and the key costs a few hundred
/// instructions and an allocation or two to make. An authority with userinfo (a credential)
/// is not remembered.
fn origin_key(uri: &http::Uri) -> Arc<str> {
    let scheme = uri.scheme_str().unwrap_or("");
    let authority = uri.authority().map_or("", |a| a.as_str());
    LAST_ORIGIN.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return Arc::from(crate::breaker::host_key(uri));
        };
        if let Some(key) = &last.key
            && last.scheme == scheme
            && last.authority == authority
        {
            return key.clone();
        }
        let key: Arc<str> = Arc::from(crate::breaker::host_key(uri));
        if authority.contains('@') {
            return key;
        }
        let last = &mut *last;
        last.scheme.clear();
        last.scheme.push_str(scheme);
        last.authority.clear();
        last.authority.push_str(authority);
        last.key = Some(key.clone());
        key
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remembered_origin_key_is_the_host_key_of_each_uri() {
        let uris = [
            "https://api.test/a",
            "https://api.test/b?q=1",
            "HTTPS://API.test:443/c",
            "http://api.test/",
            "http://api.test:8080/",
            "https://u:secret@api.test/",
            "https://api.test/again",
            "http://[::1]:8080/",
            "/relative",
        ];
        // Twice through, in order, so each URI is met both cached and not.
        for uri in uris.iter().chain(uris.iter()) {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(&*origin_key(&uri), crate::breaker::host_key(&uri), "{uri}");
            if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
                LAST_ORIGIN.with(|last| {
                    let last = last.borrow();
                    assert!(!last.authority.contains("secret"), "a credential was kept");
                });
            }
        }
    }
}
