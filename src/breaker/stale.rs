//! Serve-stale: the last good answer to a safe request, kept to answer with while the host is
//! unavailable.
//!
//! The cache is private to one [`Breaker`](super::Breaker) but shared by all its callers, so
//! its key carries everything that can make two users' answers differ: the method, the full
//! URL, and the values of the credential headers (`Authorization`, `Proxy-Authorization`,
//! `Cookie`, and any header [`redact::is_secret_header`] flags, such as `X-Api-Key`) plus the
//! headers the caller names, hashed with a per-process random key (two SipHash-1-3 keys, 128
//! bits) so no credential is kept in memory. The key is that hash alone (of the method, the
//! URL and the credentials): neither the URL nor a credential is kept in clear, and a good
//! answer stores without formatting, redacting or rehashing a URL. The response's own `Vary`
//! is honoured too, from a digest of the request's headers (their values hashed with the same
//! keys), so the request's headers need not be copied either.
//!
//! What may be stored and served follows what a shared cache may do (RFC 9111), read by the
//! parsers of [`cache_control`](super::cache_control): a field that does not parse forbids
//! caching, as if it said the strictest thing it could.
//!
//! [Shared](ServeStale::share) with a fleet's [`StaleStore`], the hashes are keyed from the
//! store's naming key instead, so that every replica names an answer alike; a good answer is
//! also handed to the store (encoded by [`fleet::answer`](crate::fleet::answer), never with its
//! URL or credentials), and a circuit that opens fetches the answers the fleet kept for it.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AGE, CACHE_CONTROL, PRAGMA, RANGE, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use tokio::time::Instant;

use super::cache_control;
use crate::fleet::answer::{self, AnswerRef};
use crate::fleet::{StaleHasher, StaleSink, StaleStore};
use crate::{Body, Request, Response, redact};

/// One kept answer's key: a 128-bit keyed hash of the method, the full URL and the
/// credential and key headers; see the module's documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct StaleKey(u128);

/// Hashes a [`StaleKey`] to its low 64 bits: it is already a keyed hash, so hashing it again
/// (SipHash, in `HashMap`'s default) only costs time.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used by `StaleKey`; this keeps any other input well mixed.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0 ^ u64::from_le_bytes(word)).rotate_left(29);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 ^= n as u64;
    }
}

type KeyMap<V> = HashMap<StaleKey, V, BuildHasherDefault<KeyHasher>>;

/// The request's headers as `Vary` needs them, without copying their values: each name with
/// a keyed hash of its value, in the request's order.
type VaryDigest = Vec<(HeaderName, u64)>;

/// Default bound on the number of answers kept: 1024.
pub const DEFAULT_STALE_MAX_ENTRIES: usize = 1024;

/// Default bound on the bytes kept (bodies, headers and URLs): 16 MiB.
pub const DEFAULT_STALE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// A shared cache hands one answer (one key) to its store at most once in this many seconds
/// (by the second of its clock): a busy resource costs the fleet's store about one write a
/// second per replica, not one per call.
const SHARE_EVERY_SECS: u32 = 1;

/// Settings of the serve-stale fallback; see [`Breaker::serve_stale`](super::Breaker::serve_stale).
///
/// The fallback remembers the last good (2xx) answer to each `GET` and `HEAD` request and, while
/// the circuit refuses calls (and, with [`on_failure`](Self::on_failure), when a call fails),
/// answers with it if it is younger than the max age (its `Age` when it arrived included). What
/// it never does:
///
/// * store a response with `Set-Cookie` (it would hand one user's session to another);
/// * store a response whose `Cache-Control` says `no-store`, `private` or `no-cache` (with or
///   without an argument: a shared cache may not serve those without asking the host, and the
///   host is down), or cannot be read; nor serve one marked `must-revalidate`,
///   `proxy-revalidate` or `s-maxage` once it is stale by its `s-maxage`, or else its `max-age`
///   (RFC 9111 4.2.4), unless [`ignore_cache_control`](Self::ignore_cache_control) says so;
/// * store a `206 Partial Content`, an answer to a `Range` request, one with `Vary: *`, or one
///   whose `Vary` or `Age` cannot be read (a `Vary` it cannot read could name the header that
///   tells two answers apart; an `Age` it cannot read could hide how old the answer is);
/// * store, or answer, a request whose `Cache-Control` says `no-store`, `no-cache` or
///   `min-fresh` or cannot be read, one with `Pragma: no-cache` and no `Cache-Control`, or one
///   carrying the [`NoStale`] extension;
/// * answer a request with an answer older than its `Cache-Control: max-age`;
/// * answer a request whose credential headers (or configured key headers, or the headers the
///   stored response's `Vary` names) differ from the stored one's.
///
/// A good answer that may not be stored (or a non-2xx success, such as a 404) removes the one
/// kept for the same key: an older copy must not outlive a newer answer.
///
/// A streamed answer (a one-shot body, such as a
/// [`ResponseMode::Streamed`](crate::ResponseMode) response) is decided on from its head when
/// the call returns, by the same rules, and copied as the caller reads it: it is kept when its
/// body ends whole, its age counted from when its head arrived. The copy never grows past
/// [`max_bytes`](Self::max_bytes) (less the entry's headers and URL): past that it is dropped
/// at once and the answer is not kept, while the caller still reads the whole body; such an
/// answer that ends whole removes the older one kept for its key, as a buffered answer too
/// large to keep does. A body that fails, or that its reader drops before its end, keeps
/// nothing and removes nothing. Of two answers for one key whose bodies end out of order, the
/// one whose head came later stays.
///
/// A served copy carries the whole stored body, an `Age` header (seconds since it was received,
/// plus the `Age` it came with), and the [`StaleAnswer`] extension.
///
/// The key is made from the request as it reaches the breaker. Credentials added by a layer
/// *inside* the breaker (a `Signing` decorator placed after it) are not part of it:
/// that is fine when the stack acts for one identity, as an SDK client usually does. If one
/// stack signs for several identities, put the signer outside the breaker, or name a header
/// that tells them apart with [`key_header`](Self::key_header), or do not use serve-stale.
///
/// ```
/// use std::time::Duration;
/// use http_doer::breaker::ServeStale;
///
/// let stale = ServeStale::new(Duration::from_secs(300))
///     .max_entries(10_000)
///     .max_bytes(64 << 20)
///     .on_failure(true)
///     .key_header(http::header::ACCEPT_LANGUAGE);
/// # let _ = stale;
/// ```
#[derive(Clone, Debug)]
pub struct ServeStale {
    max_age: Duration,
    max_entries: usize,
    max_bytes: usize,
    on_failure: bool,
    ignore_cache_control: bool,
    key_headers: Vec<HeaderName>,
    share: Option<Arc<dyn StaleStore>>,
}

impl ServeStale {
    /// Serves answers up to `max_age` old, keeping at most
    /// [`DEFAULT_STALE_MAX_ENTRIES`] answers and [`DEFAULT_STALE_MAX_BYTES`] bytes, only while the
    /// circuit refuses calls.
    ///
    /// There is no default age: how old an answer may be is a property of the data.
    pub fn new(max_age: Duration) -> Self {
        ServeStale {
            max_age,
            max_entries: DEFAULT_STALE_MAX_ENTRIES,
            max_bytes: DEFAULT_STALE_MAX_BYTES,
            on_failure: false,
            ignore_cache_control: false,
            key_headers: Vec::new(),
            share: None,
        }
    }

    /// The most answers kept (default [`DEFAULT_STALE_MAX_ENTRIES`]); the least recently used
    /// go first.
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// The most bytes kept (bodies, headers and URLs; default [`DEFAULT_STALE_MAX_BYTES`]); the
    /// least recently used go first, and an answer larger than this is never kept.
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }

    /// Also answer from the cache when a call that went through fails (an error or a 5xx, by
    /// the breaker's classifier), as retter does. Off by default: the caller sees the failure.
    pub fn on_failure(mut self, yes: bool) -> Self {
        self.on_failure = yes;
        self
    }

    /// Disregard responses' `Cache-Control`: also store, and serve at any age up to the max age,
    /// responses whose `Cache-Control` forbids it or cannot be read. Off by default. Responses
    /// with `Set-Cookie` are still never stored, and requests' `Cache-Control` is still
    /// honoured. With [`share`](Self::share), what is kept only because of this setting stays
    /// in this process: it is never handed to the fleet's store.
    pub fn ignore_cache_control(mut self, yes: bool) -> Self {
        self.ignore_cache_control = yes;
        self
    }

    /// Adds a request header whose value is part of the key (hashed), for answers that depend
    /// on it, such as `Accept`, `Accept-Language` or a tenant header. None by default: the key
    /// is the method, the URL and the credential headers.
    pub fn key_header(mut self, name: HeaderName) -> Self {
        if !self.key_headers.contains(&name) {
            self.key_headers.push(name);
        }
        self
    }

    /// Shares the answers with the other replicas of a fleet through `store` (such as a
    /// [`RedisFleet`](crate::fleet::RedisFleet) given a [key](crate::fleet::RedisFleetBuilder::key),
    /// feature `redis`): each good answer kept here is kept there too, and a circuit that
    /// opens fetches what every replica kept for it, so a replica that never saw a page, or
    /// started during the outage, can serve it. Off by default.
    ///
    /// The rules do not change: what may be kept, the key (method, URL, credentials), `Vary`,
    /// the max age (each replica checks its own, and its own reading of `Cache-Control`, on
    /// what it fetches). The key's hashes are keyed from the store's
    /// [naming key](StaleStore::naming_key), the same on every replica, so names in the store
    /// reveal neither URLs nor credentials. The store receives the answer's status, headers
    /// and body with its age and `Vary` digest, never its URL or the request's credentials;
    /// a store that leaves the process seals them (`RedisFleet` encrypts and authenticates
    /// them with its key).
    ///
    /// Nothing waits on the store. A good answer is handed to it without waiting, at most
    /// once a second per answer (in between, the fleet's copy may be up to a second older
    /// than this replica's); the answers of an opening circuit arrive in the background. An
    /// answer that may no longer be kept (a newer one may not be) removes the fleet's copy
    /// when this replica held one; a copy only other replicas held lives out its max age.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::sync::{Arc, Mutex, Weak};
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use http_doer::{Body, Breaker, Doer, breaker::{ServeStale, StaleAnswer}};
    /// use http_doer::fleet::{StaleSink, StaleStore};
    /// use http_doer::testing::{ScriptedDoer, response};
    ///
    /// /// A store for replicas in one process; a fleet's would be a `RedisFleet`.
    /// #[derive(Debug, Default)]
    /// struct Memory(Mutex<HashMap<u128, (String, Bytes)>>);
    ///
    /// impl StaleStore for Memory {
    ///     fn naming_key(&self) -> [u64; 4] { [1, 2, 3, 4] } // derived from a secret, really
    ///     fn put(&self, circuit: &str, name: u128, answer: Bytes, _ttl: Duration) {
    ///         self.0.lock().unwrap().insert(name, (circuit.to_owned(), answer));
    ///     }
    ///     fn remove(&self, _circuit: &str, name: u128) {
    ///         self.0.lock().unwrap().remove(&name);
    ///     }
    ///     fn fetch(&self, circuit: &str, sink: Weak<dyn StaleSink>) {
    ///         let Some(sink) = sink.upgrade() else { return };
    ///         for (name, (kept_for, answer)) in self.0.lock().unwrap().iter() {
    ///             if kept_for == circuit {
    ///                 sink.adopt(circuit, *name, answer, Duration::ZERO);
    ///             }
    ///         }
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
    /// let store = Arc::new(Memory::default());
    /// let replica = |host: ScriptedDoer| {
    ///     Breaker::new(host)
    ///         .consecutive_failures(1)
    ///         .serve_stale(ServeStale::new(Duration::from_secs(60)).share(store.clone()))
    /// };
    /// let get = || http::Request::get("https://api.test/item").body(Body::empty()).unwrap();
    ///
    /// let a = replica(ScriptedDoer::new().then(Ok(response(200, "v1"))));
    /// a.execute(get()).await.unwrap(); // A keeps "v1", and shares it
    ///
    /// let b = replica(ScriptedDoer::new().then_status(503));
    /// b.execute(get()).await.unwrap(); // B's call fails: its circuit opens and fetches
    /// let resp = b.execute(get()).await.unwrap();
    /// assert!(resp.extensions().get::<StaleAnswer>().is_some());
    /// assert_eq!(resp.into_body().text().await.unwrap(), "v1");
    /// # });
    /// ```
    pub fn share(mut self, store: Arc<dyn StaleStore>) -> Self {
        self.share = Some(store);
        self
    }
}

/// Response extension: this answer came from the serve-stale cache, not from the host.
///
/// [`ServeStale`] is the setting, `StaleAnswer` the mark on what it served (formerly
/// `ServedStale`, a name one letter away from the setting's).
///
/// ```
/// use std::time::Duration;
/// use http_doer::{Body, Doer, DoerExt, breaker::{ServeStale, StaleAnswer, StaleReason}};
/// use http_doer::testing::{ScriptedDoer, response};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
/// let host = ScriptedDoer::new().then(Ok(response(200, "v1"))).then_status(503);
/// let doer = host
///     .breaker()
///     .serve_stale(ServeStale::new(Duration::from_secs(60)).on_failure(true));
/// let get = || http::Request::get("https://api.test/item").body(Body::empty()).unwrap();
///
/// assert!(doer.execute(get()).await.unwrap().extensions().get::<StaleAnswer>().is_none());
/// let resp = doer.execute(get()).await.unwrap(); // the host answers 503
/// let mark = resp.extensions().get::<StaleAnswer>().unwrap();
/// assert_eq!(mark.reason, StaleReason::Failed);
/// assert_eq!(resp.into_body().text().await.unwrap(), "v1");
/// # });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StaleAnswer {
    /// How long it was kept here; its `Age` header adds the age it arrived with.
    pub age: Duration,
    /// Why it was served.
    pub reason: StaleReason,
}

/// Why a stale answer was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StaleReason {
    /// The circuit refused the call (open, or half-open with its probe slots taken); the host
    /// was not called.
    Rejected,
    /// The call went through and failed ([`ServeStale::on_failure`]).
    Failed,
}

/// Request extension: never answer this request from the stale cache, nor store its answer.
///
/// ```
/// use http_doer::{Body, breaker::NoStale};
///
/// let mut req = http::Request::get("https://api.test/balance").body(Body::empty()).unwrap();
/// req.extensions_mut().insert(NoStale);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NoStale;

/// What a request needs to find, or store, its answer.
pub(crate) struct Lookup {
    key: StaleKey,
    /// The length of the URL, counted in an entry's size in its stead.
    url_len: usize,
    /// The request's headers, for the stored response's `Vary`.
    headers: VaryDigest,
    ranged: bool,
    /// The oldest answer the request accepts, in seconds.
    max_age: u64,
}

struct Entry {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
    stored_at: Instant,
    /// The `Age` the response came with, in seconds.
    base_age: u64,
    /// The age, in seconds, from which it may no longer be served (`u64::MAX`: none).
    lifetime: u64,
    vary: Vec<HeaderName>,
    vary_hash: u128,
    size: usize,
    tick: u64,
    /// When this replica last handed the answer for its key to the fleet's store, or adopted
    /// it from there, as a [`StaleCache::stamp`] (0: never, or the cache is not shared). A
    /// `u32` fits where the fields before leave room: an `Entry` is moved on every store.
    shared_at: u32,
}

impl Entry {
    /// Gives a bodiless entry (see [`StaleCache::head`]) its body; `None`, and the entry left
    /// as it was, when that makes it larger than `max_bytes`.
    fn with_body(&mut self, body: Bytes, max_bytes: usize) -> Option<()> {
        let size = self.size.checked_add(body.len())?;
        if size > max_bytes {
            return None;
        }
        self.size = size;
        self.body = body;
        Some(())
    }
}

/// An answer whose head may be kept, waiting for its streamed body; see
/// [`StaleCache::begin`].
pub(crate) struct Pending {
    key: StaleKey,
    /// Without its body yet.
    entry: Entry,
    /// The most body bytes it may have: the cache's byte bound less the rest of the entry.
    room: usize,
    /// Its circuit, when the cache is shared.
    circuit: Option<Box<str>>,
    url_len: usize,
}

impl Pending {
    /// The most body bytes the answer may have and still be kept.
    pub(crate) fn room(&self) -> usize {
        self.room
    }
}

pub(crate) struct StaleCache {
    config: ServeStale,
    hashers: Hashers,
    lru: Mutex<Lru>,
    /// The start of [`stamp`](Self::stamp)'s count.
    epoch: Instant,
}

impl StaleCache {
    pub(crate) fn new(config: ServeStale) -> Self {
        StaleCache {
            hashers: match &config.share {
                Some(store) => {
                    let (a, b) = StaleHasher::pair(store.naming_key());
                    Hashers::Keyed(a, b)
                }
                None => Hashers::Random(RandomState::new(), RandomState::new()),
            },
            config,
            lru: Mutex::new(Lru::default()),
            epoch: Instant::now(),
        }
    }

    /// `now` in whole seconds since the cache was made, plus one (0 means never).
    fn stamp(&self, now: Instant) -> u32 {
        let secs = now.saturating_duration_since(self.epoch).as_secs();
        u32::try_from(secs)
            .unwrap_or(u32::MAX - 1)
            .saturating_add(1)
    }

    /// What a circuit that opens does when `cache` is shared: fetches the fleet's answers for
    /// it, which arrive in the background.
    pub(crate) fn fetcher(cache: Option<&Arc<StaleCache>>) -> Option<super::events::OnOpen> {
        let cache = cache?;
        let store = cache.config.share.clone()?;
        let weak = Arc::downgrade(cache);
        Some(Arc::new(move |circuit: &str| {
            let sink: Weak<dyn StaleSink> = weak.clone();
            store.fetch(circuit, sink);
        }))
    }

    pub(crate) fn on_failure(&self) -> bool {
        self.config.on_failure
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // No user code runs under this lock; recover from a poisoned one.
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lookup for `req`, or `None` when its answer may be neither stored nor served.
    pub(crate) fn lookup(&self, req: &Request) -> Option<Lookup> {
        let method = req.method();
        if (method != Method::GET && method != Method::HEAD)
            || req.extensions().get::<NoStale>().is_some()
        {
            return None;
        }
        let headers = req.headers();
        let max_age = request_max_age(headers)?;
        let key_headers = &self.config.key_headers;
        let mut digest = VaryDigest::with_capacity(headers.len());
        let mut credentials = false;
        for (name, value) in headers {
            credentials |= redact::is_secret_header(name) || key_headers.contains(name);
            digest.push((name.clone(), self.hashers.low(value.as_bytes())));
        }
        let picked = credentials.then(|| {
            self.picked(headers, |name| {
                redact::is_secret_header(name) || key_headers.contains(name)
            })
        });
        let uri = req.uri();
        // Two URLs that differ only in a secret (userinfo, a token in the query) get two
        // entries: the whole URL goes into the key, and only through the hash.
        let pieces = [
            method.as_str(),
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str()),
            uri.path_and_query().map_or("", |p| p.as_str()),
        ];
        // One `write` of the pieces joined (each hashed `write` has a fixed cost); `0xff`
        // never occurs in a method or a parsed URI, so the joined text is unambiguous. An
        // origin-form URI (no scheme, no authority) joins to the same text as one with empty
        // ones, which `http` cannot build.
        let mut joined = [0u8; 256];
        let mut len = 0;
        for piece in pieces {
            let end = len + piece.len() + 1;
            if end > joined.len() {
                len = usize::MAX;
                break;
            }
            joined[len..end - 1].copy_from_slice(piece.as_bytes());
            joined[end - 1] = 0xff;
            len = end;
        }
        let text = joined.get(..len);
        let (high, low) = self.hashers.key(text, &pieces, &picked);
        Some(Lookup {
            key: StaleKey(u128::from(high) << 64 | u128::from(low)),
            url_len: uri_len(uri),
            headers: digest,
            ranged: headers.contains_key(RANGE),
            max_age,
        })
    }

    /// The picked headers, by name then in order of appearance.
    fn picked<'a>(
        &self,
        headers: &'a HeaderMap,
        pick: impl Fn(&HeaderName) -> bool,
    ) -> Vec<(&'a str, &'a [u8])> {
        let mut picked: Vec<(&str, &[u8])> = headers
            .iter()
            .filter(|(name, _)| pick(name))
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        // Stable: values of one header keep their order, which can matter.
        picked.sort_by(|a, b| a.0.cmp(b.0));
        picked
    }

    /// A 128-bit keyed hash of the request's headers named in `vary`, by name then in order
    /// of appearance.
    fn vary_hash(&self, digest: &VaryDigest, vary: &[HeaderName]) -> u128 {
        let mut picked: Vec<(&str, u64)> = digest
            .iter()
            .filter(|(name, _)| vary.contains(name))
            .map(|(name, value)| (name.as_str(), *value))
            .collect();
        picked.sort_by(|a, b| a.0.cmp(b.0));
        let (high, low) = self.hashers.both(&picked);
        u128::from(high) << 64 | u128::from(low)
    }

    /// The kept answer for `lookup`, if there is one young enough.
    pub(crate) fn get(
        &self,
        lookup: &Lookup,
        now: Instant,
        reason: StaleReason,
    ) -> Option<Response> {
        let mut lru = self.lock();
        let entry = lru.get(&lookup.key)?;
        let held = now.saturating_duration_since(entry.stored_at);
        // The age it arrived with counts: an answer that came old is no younger for it.
        let age_secs = entry.base_age.saturating_add(held.as_secs());
        let age = Duration::from_secs(entry.base_age).saturating_add(held);
        if age > self.config.max_age || age_secs >= entry.lifetime {
            lru.remove(&lookup.key);
            return None;
        }
        if age_secs > lookup.max_age {
            return None;
        }
        if !entry.vary.is_empty() {
            let vary = &entry.vary;
            if self.vary_hash(&lookup.headers, vary) != entry.vary_hash {
                return None;
            }
        }
        let mut resp = http::Response::new(Body::from(entry.body.clone()));
        *resp.status_mut() = entry.status;
        *resp.version_mut() = entry.version;
        *resp.headers_mut() = entry.headers.clone();
        resp.headers_mut().insert(AGE, HeaderValue::from(age_secs));
        resp.extensions_mut()
            .insert(StaleAnswer { age: held, reason });
        Some(resp)
    }

    /// As [`store_in`](Self::store_in), for a circuit without a name (unit tests).
    #[cfg(test)]
    pub(crate) fn store(&self, lookup: Lookup, resp: &Response, now: Instant) {
        self.store_in(lookup, resp, now, "")
    }

    /// Keeps `resp`, the successful answer to the request of `lookup` through circuit
    /// `circuit`, if it may be kept, and otherwise forgets any older answer for the same key
    /// (and, shared, the fleet's copy, if this replica held one).
    pub(crate) fn store_in(&self, lookup: Lookup, resp: &Response, now: Instant, circuit: &str) {
        let entry = self.head(&lookup, resp, now).and_then(|mut entry| {
            let body = resp.body().as_bytes()?;
            entry.with_body(body.clone(), self.config.max_bytes)?;
            Some(entry)
        });
        if self.config.share.is_some() {
            return self.store_shared(lookup, entry, now, circuit);
        }
        let mut lru = self.lock();
        match entry {
            Some(entry) => lru.insert(
                lookup.key,
                entry,
                self.config.max_entries,
                self.config.max_bytes,
            ),
            None => {
                lru.remove(&lookup.key);
                lru.forgotten_at(lookup.key, now, self.config.max_entries);
            }
        }
    }

    /// What [`store_in`](Self::store_in) does when the cache is shared: the same, and the
    /// fleet's copy kept or removed too. Apart, so that an unshared cache's store stays as
    /// short as it was.
    #[inline(never)]
    fn store_shared(&self, lookup: Lookup, entry: Option<Entry>, now: Instant, circuit: &str) {
        let mut lru = self.lock();
        match entry {
            Some(mut entry) => {
                // An answer its server forbade storing (`no-store`, `private`, unreadable) is
                // kept here only because this replica ignores `Cache-Control`; it never
                // leaves the process, and replaces whatever the fleet kept for its key.
                let forbidden =
                    self.config.ignore_cache_control && response_lifetime(&entry.headers).is_none();
                let shared = match forbidden {
                    true => None,
                    false => self.for_fleet(&lru, lookup.key, &mut entry, now, lookup.url_len),
                };
                let withdraw = forbidden
                    && lru
                        .map
                        .get(&lookup.key)
                        .is_some_and(|held| held.shared_at != 0);
                lru.insert(
                    lookup.key,
                    entry,
                    self.config.max_entries,
                    self.config.max_bytes,
                );
                drop(lru);
                if let Some((blob, ttl)) = shared {
                    self.put(circuit, lookup.key, blob, ttl);
                }
                if withdraw {
                    self.forget(circuit, lookup.key);
                }
            }
            None => {
                let had = lru.take(&lookup.key);
                lru.forgotten_at(lookup.key, now, self.config.max_entries);
                drop(lru);
                if had {
                    self.forget(circuit, lookup.key);
                }
            }
        }
    }

    /// The encoded answer and its time to live, when `entry` (about to replace what `lru`
    /// holds for `key`) is due to go to the fleet's store: not sent in the last
    /// [`SHARE_EVERY_SECS`]. Carries the time it was last sent over to `entry`.
    fn for_fleet(
        &self,
        lru: &Lru,
        key: StaleKey,
        entry: &mut Entry,
        now: Instant,
        url_len: usize,
    ) -> Option<(Bytes, Duration)> {
        let stamp = self.stamp(now);
        if let Some(at) = lru.map.get(&key).map(|e| e.shared_at)
            && at != 0
            && stamp.saturating_sub(at) < SHARE_EVERY_SECS
        {
            entry.shared_at = at;
            return None;
        }
        // Servable for the rest of the max age, and of its freshness lifetime when it must
        // not be served stale past it.
        let ttl = self
            .config
            .max_age
            .saturating_sub(Duration::from_secs(entry.base_age))
            .min(Duration::from_secs(
                entry.lifetime.saturating_sub(entry.base_age),
            ));
        if ttl.is_zero() {
            return None;
        }
        let blob = answer::encode(&AnswerRef {
            status: entry.status,
            version: entry.version,
            headers: &entry.headers,
            body: &entry.body,
            base_age: entry.base_age,
            lifetime: entry.lifetime,
            vary: &entry.vary,
            vary_hash: entry.vary_hash,
            url_len,
        })?;
        entry.shared_at = stamp;
        Some((Bytes::from(blob), ttl))
    }

    /// Forgets the answer kept for `key`; whether the fleet's copy must go too (shared, and
    /// this replica held one).
    fn unkeep(&self, lru: &mut Lru, key: &StaleKey) -> bool {
        match self.config.share {
            Some(_) => lru.take(key),
            None => {
                lru.remove(key);
                false
            }
        }
    }

    fn put(&self, circuit: &str, key: StaleKey, blob: Bytes, ttl: Duration) {
        if let Some(store) = &self.config.share {
            store.put(circuit, key.0, blob, ttl);
        }
    }

    fn forget(&self, circuit: &str, key: StaleKey) {
        if let Some(store) = &self.config.share {
            store.remove(circuit, key.0);
        }
    }

    /// Starts keeping `resp`, the successful answer to the request of `lookup`, whose body is
    /// a stream: decides from its head, now, whether it may be kept, and returns what
    /// [`finish`](Self::finish) needs once the body has ended, with the most body bytes it may
    /// have. An answer whose head forbids keeping it forgets any older answer at once, as
    /// [`store`](Self::store) does.
    #[cfg(test)]
    pub(crate) fn begin(&self, lookup: Lookup, resp: &Response, now: Instant) -> Option<Pending> {
        self.begin_in(lookup, resp, now, "")
    }

    /// As [`begin`](Self::begin), for an answer through circuit `circuit`.
    pub(crate) fn begin_in(
        &self,
        lookup: Lookup,
        resp: &Response,
        now: Instant,
        circuit: &str,
    ) -> Option<Pending> {
        match self.head(&lookup, resp, now) {
            Some(entry) => Some(Pending {
                room: self.config.max_bytes.saturating_sub(entry.size),
                key: lookup.key,
                entry,
                circuit: self.config.share.as_ref().map(|_| circuit.into()),
                url_len: lookup.url_len,
            }),
            None => {
                let mut lru = self.lock();
                let had = self.unkeep(&mut lru, &lookup.key);
                lru.forgotten_at(lookup.key, now, self.config.max_entries);
                drop(lru);
                if had {
                    self.forget(circuit, lookup.key);
                }
                None
            }
        }
    }

    /// Ends what [`begin`](Self::begin) started, once the body ended whole: keeps the answer
    /// with `body`, or, when the body was larger than the cache may hold (`None`), forgets any
    /// older answer for the same key, as [`store`](Self::store) does with an answer it may not
    /// keep. Either leaves alone an answer that was received after this one's head (two calls
    /// for one resource whose bodies end out of order).
    pub(crate) fn finish(&self, pending: Pending, body: Option<Bytes>) {
        let Pending {
            key,
            mut entry,
            circuit,
            url_len,
            ..
        } = pending;
        let kept = body.and_then(|body| entry.with_body(body, self.config.max_bytes));
        let mut lru = self.lock();
        if lru
            .map
            .get(&key)
            .is_some_and(|newer| newer.stored_at > entry.stored_at)
            || lru.forgotten_since(&key, entry.stored_at)
        {
            return;
        }
        let circuit = circuit.as_deref().unwrap_or("");
        match kept {
            Some(()) => {
                let shared = match self.config.share {
                    Some(_) => self.for_fleet(&lru, key, &mut entry, Instant::now(), url_len),
                    None => None,
                };
                lru.insert(key, entry, self.config.max_entries, self.config.max_bytes);
                drop(lru);
                if let Some((blob, ttl)) = shared {
                    self.put(circuit, key, blob, ttl);
                }
            }
            None => {
                let had = self.unkeep(&mut lru, &key);
                lru.forgotten_at(key, entry.stored_at, self.config.max_entries);
                drop(lru);
                if had {
                    self.forget(circuit, key);
                }
            }
        }
    }

    /// The entry for `resp` without its body (its size counts all but the body), or `None`
    /// when its head says it may not be kept.
    fn head(&self, lookup: &Lookup, resp: &Response, now: Instant) -> Option<Entry> {
        let status = resp.status();
        let headers = resp.headers();
        if !status.is_success()
            || status == StatusCode::PARTIAL_CONTENT
            || lookup.ranged
            || headers.contains_key(SET_COOKIE)
        {
            return None;
        }
        let lifetime = match self.config.ignore_cache_control {
            true => u64::MAX,
            false => response_lifetime(headers)?,
        };
        let base_age = match headers.contains_key(AGE) {
            true => cache_control::age(headers.get_all(AGE))?,
            false => 0,
        };
        if base_age >= lifetime || Duration::from_secs(base_age) > self.config.max_age {
            return None;
        }
        let vary = cache_control::vary(headers.get_all(VARY))?;
        let header_bytes: usize = headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        // A rough fixed overhead per entry, so that many empty answers are still bounded.
        let size = header_bytes + lookup.url_len + 128;
        if size > self.config.max_bytes {
            return None;
        }
        let vary_hash = if vary.is_empty() {
            0
        } else {
            self.vary_hash(&lookup.headers, &vary)
        };
        Some(Entry {
            status,
            version: resp.version(),
            headers: headers.clone(),
            body: Bytes::new(),
            stored_at: now,
            base_age,
            lifetime,
            vary,
            vary_hash,
            size,
            tick: 0,
            shared_at: 0,
        })
    }

    /// Answers kept, and their size in bytes.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let lru = self.lock();
        (lru.map.len(), lru.bytes)
    }
}

impl StaleSink for StaleCache {
    /// Takes in an answer another replica kept, if this replica's own rules would keep and
    /// still serve it, unless the answer kept here for the same key is as new or newer.
    fn adopt(&self, _circuit: &str, name: u128, bytes: &[u8], age: Duration) {
        let Some(a) = answer::decode(bytes) else {
            tracing::warn!(
                target: "http_doer::breaker",
                "a shared stale answer could not be read: skipped"
            );
            return;
        };
        // This replica's own reading of the answer's `Cache-Control` and `Vary` (another may
        // ignore `Cache-Control`, or read it otherwise).
        let lifetime = match self.config.ignore_cache_control {
            true => a.lifetime,
            false => match response_lifetime(&a.headers) {
                Some(lifetime) => lifetime.min(a.lifetime),
                None => return,
            },
        };
        if cache_control::vary(a.headers.get_all(VARY)).as_deref() != Some(&a.vary[..]) {
            return;
        }
        let age_secs = a.base_age.saturating_add(age.as_secs());
        if Duration::from_secs(a.base_age).saturating_add(age) > self.config.max_age
            || age_secs >= lifetime
        {
            return;
        }
        let header_bytes: usize = a
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len())
            .sum();
        let size = header_bytes
            .saturating_add(a.url_len)
            .saturating_add(128)
            .saturating_add(a.body.len());
        if size > self.config.max_bytes {
            return;
        }
        let now = Instant::now();
        let stored_at = now.checked_sub(age).unwrap_or(now);
        let key = StaleKey(name);
        let entry = Entry {
            status: a.status,
            version: a.version,
            headers: a.headers,
            body: a.body,
            stored_at,
            base_age: a.base_age,
            lifetime,
            vary: a.vary,
            vary_hash: a.vary_hash,
            size,
            tick: 0,
            shared_at: self.stamp(now),
        };
        let mut lru = self.lock();
        if lru
            .map
            .get(&key)
            .is_some_and(|mine| mine.stored_at >= stored_at)
        {
            return;
        }
        lru.insert(key, entry, self.config.max_entries, self.config.max_bytes);
    }
}

/// The two hashers of a [`StaleKey`] (and of the `Vary` digests): std's per-process random
/// SipHash-1-3, or, shared with a fleet, SipHash keyed from the store's naming key, the same
/// on every replica. One branch per hash, so the unshared path hashes as it always has.
enum Hashers {
    Random(RandomState, RandomState),
    Keyed(StaleHasher, StaleHasher),
}

impl Hashers {
    /// Both halves of a 128-bit hash of `value`.
    #[inline]
    fn both<T: Hash + ?Sized>(&self, value: &T) -> (u64, u64) {
        match self {
            Hashers::Random(a, b) => (a.hash_one(value), b.hash_one(value)),
            Hashers::Keyed(a, b) => (a.hash_one(value), b.hash_one(value)),
        }
    }

    /// The low half only: a request header's value in a `Vary` digest.
    #[inline]
    fn low<T: Hash + ?Sized>(&self, value: &T) -> u64 {
        match self {
            Hashers::Random(_, b) => b.hash_one(value),
            Hashers::Keyed(_, b) => b.hash_one(value),
        }
    }

    /// Both halves of a [`StaleKey`]; see [`key_hash`].
    #[inline]
    fn key(
        &self,
        joined: Option<&[u8]>,
        pieces: &[&str; 4],
        picked: &Option<Vec<(&str, &[u8])>>,
    ) -> (u64, u64) {
        match self {
            Hashers::Random(a, b) => (
                key_hash(a, joined, pieces, picked),
                key_hash(b, joined, pieces, picked),
            ),
            Hashers::Keyed(a, b) => (
                key_hash(a, joined, pieces, picked),
                key_hash(b, joined, pieces, picked),
            ),
        }
    }
}

/// One half of a [`StaleKey`]: the method and URL `joined` (or their `pieces`, when too long
/// to join), then the picked credentials.
fn key_hash<S: BuildHasher>(
    hasher: &S,
    joined: Option<&[u8]>,
    pieces: &[&str; 4],
    picked: &Option<Vec<(&str, &[u8])>>,
) -> u64 {
    let mut h = hasher.build_hasher();
    match joined {
        Some(text) => h.write(text),
        None => pieces.hash(&mut h),
    }
    if let Some(picked) = picked {
        picked.hash(&mut h);
    }
    h.finish()
}

/// The length of `uri` as text, without formatting it.
fn uri_len(uri: &Uri) -> usize {
    let scheme = uri.scheme_str().map_or(0, |s| s.len() + 3);
    let authority = uri.authority().map_or(0, |a| a.as_str().len());
    let path = uri.path_and_query().map_or(0, |p| p.as_str().len());
    scheme + authority + path
}

/// The oldest answer, in seconds, a request accepts from the cache; `None` when it takes none
/// and its answer must not be stored either (see [`ServeStale`]).
fn request_max_age(headers: &HeaderMap) -> Option<u64> {
    if !headers.contains_key(CACHE_CONTROL) {
        // RFC 9111 5.4: `Pragma: no-cache` means `Cache-Control: no-cache`, but only without one.
        let pragma = cache_control::directives(headers.get_all(PRAGMA))?;
        return (!pragma.iter().any(|d| d.name == "no-cache")).then_some(u64::MAX);
    }
    let mut oldest = u64::MAX;
    for d in cache_control::directives(headers.get_all(CACHE_CONTROL))? {
        match d.name.as_str() {
            // `min-fresh`: an answer served because the host is down is taken as stale.
            "no-store" | "no-cache" | "min-fresh" => return None,
            "max-age" => oldest = oldest.min(d.seconds()?),
            _ => {}
        }
    }
    Some(oldest)
}

/// The age, in seconds, from which a response may no longer be served (`u64::MAX`: none), by
/// its `Cache-Control`; `None` when it must not be stored (see [`ServeStale`]).
///
/// Repeated or conflicting values count at their strictest (RFC 9111 4.2.1), and a freshness
/// lifetime is only taken from `s-maxage` or `max-age`: without one, a response that must not
/// be served stale is stale at once.
fn response_lifetime(headers: &HeaderMap) -> Option<u64> {
    let mut revalidate = false;
    let (mut s_maxage, mut max_age) = (None, None);
    for d in cache_control::directives(headers.get_all(CACHE_CONTROL))? {
        let strictest = |seen: Option<u64>| Some(d.seconds()?.min(seen.unwrap_or(u64::MAX)));
        match d.name.as_str() {
            "no-store" | "private" | "no-cache" => return None,
            "must-revalidate" | "proxy-revalidate" => revalidate = true,
            // A shared cache reads `s-maxage` as `proxy-revalidate` too (RFC 9111 5.2.2.10).
            "s-maxage" => {
                revalidate = true;
                s_maxage = Some(strictest(s_maxage)?);
            }
            "max-age" => max_age = Some(strictest(max_age)?),
            _ => {}
        }
    }
    Some(match revalidate {
        true => s_maxage.or(max_age).unwrap_or(0),
        false => u64::MAX,
    })
}

/// A map bounded by entries and bytes that evicts the least recently used first.
#[derive(Default)]
struct Lru {
    map: KeyMap<Entry>,
    /// Recency: tick of last use to key; the first is the least recently used.
    order: BTreeMap<u64, StaleKey>,
    next_tick: u64,
    bytes: usize,
    /// When an answer that may not be kept made the cache forget each key: a streamed answer
    /// whose head came before must not bring an older copy back when its body ends. At most
    /// `max_entries` of them; past that they are folded into `floor`.
    forgotten: KeyMap<Instant>,
    /// Answers whose head came before this may have been superseded by a forgetting no longer
    /// remembered one by one.
    floor: Option<Instant>,
}

impl Lru {
    /// Notes that an answer at `at` made the cache forget `key`; past `cap` keys, those
    /// noted are folded into `floor`, which only makes the cache more careful.
    fn forgotten_at(&mut self, key: StaleKey, at: Instant, cap: usize) {
        if self.forgotten.len() >= cap.max(1) && !self.forgotten.contains_key(&key) {
            let newest = self.forgotten.values().copied().max();
            self.floor = self.floor.max(newest);
            self.forgotten.clear();
        }
        let t = self.forgotten.entry(key).or_insert(at);
        *t = (*t).max(at);
    }

    /// Whether `key` was forgotten, because of a newer answer, at or after `head`.
    fn forgotten_since(&self, key: &StaleKey, head: Instant) -> bool {
        self.floor.is_some_and(|f| f >= head) || self.forgotten.get(key).is_some_and(|&t| t >= head)
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    fn get(&mut self, key: &StaleKey) -> Option<&Entry> {
        let tick = self.tick();
        let entry = self.map.get_mut(key)?;
        let old = std::mem::replace(&mut entry.tick, tick);
        self.order.remove(&old);
        self.order.insert(tick, *key);
        Some(entry)
    }

    fn remove(&mut self, key: &StaleKey) {
        if let Some(entry) = self.map.remove(key) {
            self.order.remove(&entry.tick);
            self.bytes -= entry.size;
        }
    }

    /// As [`remove`](Self::remove); whether there was an entry. Only a shared cache needs to
    /// know (to remove the fleet's copy too): the others keep `remove` as it was.
    fn take(&mut self, key: &StaleKey) -> bool {
        let had = self.map.contains_key(key);
        self.remove(key);
        had
    }

    fn insert(&mut self, key: StaleKey, mut entry: Entry, max_entries: usize, max_bytes: usize) {
        self.remove(&key);
        if max_entries == 0 {
            return;
        }
        entry.tick = self.tick();
        self.bytes += entry.size;
        self.order.insert(entry.tick, key);
        self.map.insert(key, entry);
        while self.map.len() > max_entries || self.bytes > max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(gone) = self.map.remove(&oldest) {
                self.bytes -= gone.size;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::response;

    fn get(url: &str) -> Request {
        http::Request::get(url).body(Body::empty()).unwrap()
    }

    fn with(mut req: Request, name: &'static str, value: &'static str) -> Request {
        req.headers_mut()
            .append(name, HeaderValue::from_static(value));
        req
    }

    fn ok(body: &'static str) -> Response {
        response(200, body)
    }

    fn cache(config: ServeStale) -> StaleCache {
        StaleCache::new(config)
    }

    async fn body(resp: Response) -> String {
        resp.into_body().text().await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn stores_and_serves_with_age_and_marker() {
        let c = cache(ServeStale::new(Duration::from_secs(60)));
        let t0 = Instant::now();
        let mut resp = ok("hello");
        resp.headers_mut().insert(AGE, HeaderValue::from(5u64));
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("text/plain"));
        c.store(c.lookup(&get("http://h.test/a?x=1")).unwrap(), &resp, t0);
        let later = t0 + Duration::from_secs(7);
        let served = c
            .get(
                &c.lookup(&get("http://h.test/a?x=1")).unwrap(),
                later,
                StaleReason::Rejected,
            )
            .unwrap();
        assert_eq!(served.status(), 200);
        assert_eq!(served.headers()[AGE], "12");
        assert_eq!(served.headers()["content-type"], "text/plain");
        assert_eq!(
            served.extensions().get::<StaleAnswer>(),
            Some(&StaleAnswer {
                age: Duration::from_secs(7),
                reason: StaleReason::Rejected
            })
        );
        assert_eq!(body(served).await, "hello");
        // Another query string is another resource.
        assert!(
            c.get(
                &c.lookup(&get("http://h.test/a?x=2")).unwrap(),
                later,
                StaleReason::Rejected
            )
            .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn urls_that_differ_only_in_a_secret_stay_apart_and_the_secret_is_not_kept() {
        let c = cache(ServeStale::new(Duration::from_secs(60)));
        let t0 = Instant::now();
        let alice = c
            .lookup(&get("http://al:pw1@h.test/a?token=t-alice"))
            .unwrap();
        assert!(!format!("{:?}", alice.key).contains("t-alice"));
        assert!(!format!("{:?}", alice.key).contains("pw1"));
        c.store(alice, &ok("alice's page"), t0);
        let bob = c.lookup(&get("http://h.test/a?token=t-bob")).unwrap();
        assert!(c.get(&bob, t0, StaleReason::Rejected).is_none());
        let again = c
            .lookup(&get("http://al:pw1@h.test/a?token=t-alice"))
            .unwrap();
        let served = c.get(&again, t0, StaleReason::Rejected).unwrap();
        assert_eq!(body(served).await, "alice's page");
    }

    #[tokio::test(start_paused = true)]
    async fn too_old_is_not_served_and_is_dropped() {
        let c = cache(ServeStale::new(Duration::from_secs(10)));
        let t0 = Instant::now();
        let l = || c.lookup(&get("http://h.test/")).unwrap();
        c.store(l(), &ok("x"), t0);
        assert!(
            c.get(&l(), t0 + Duration::from_secs(10), StaleReason::Failed)
                .is_some()
        );
        assert!(
            c.get(&l(), t0 + Duration::from_secs(11), StaleReason::Failed)
                .is_none()
        );
        assert_eq!(c.usage().0, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn credentials_and_key_headers_separate_users() {
        let c = cache(ServeStale::new(Duration::from_secs(60)).key_header(http::header::ACCEPT));
        let now = Instant::now();
        let alice = || with(get("http://h.test/me"), "authorization", "Bearer alice");
        let bob = || with(get("http://h.test/me"), "authorization", "Bearer bob");
        c.store(c.lookup(&alice()).unwrap(), &ok("alice's"), now);
        let found = |req: Request| {
            c.get(&c.lookup(&req).unwrap(), now, StaleReason::Rejected)
                .is_some()
        };
        assert!(found(alice()));
        assert!(!found(bob()));
        assert!(!found(get("http://h.test/me")));
        // Cookies, API-key headers and configured headers are part of the key as well.
        let cookie = || with(get("http://h.test/c"), "cookie", "sid=1");
        c.store(c.lookup(&cookie()).unwrap(), &ok("c"), now);
        assert!(found(cookie()));
        assert!(!found(with(get("http://h.test/c"), "cookie", "sid=2")));
        let api = || with(get("http://h.test/k"), "x-api-key", "k1");
        c.store(c.lookup(&api()).unwrap(), &ok("k"), now);
        assert!(found(api()));
        assert!(!found(with(get("http://h.test/k"), "x-api-key", "k2")));
        let json = || with(get("http://h.test/j"), "accept", "application/json");
        c.store(c.lookup(&json()).unwrap(), &ok("{}"), now);
        assert!(found(json()));
        assert!(!found(with(get("http://h.test/j"), "accept", "text/html")));
        // Headers outside the key do not matter.
        assert!(found(with(alice(), "user-agent", "other")));
    }

    #[test]
    fn key_keeps_no_credential_in_clear() {
        let c = cache(ServeStale::new(Duration::from_secs(60)));
        let l = c
            .lookup(&with(
                get("http://h.test/"),
                "authorization",
                "Bearer s3cr3t",
            ))
            .unwrap();
        assert!(!format!("{:?}", l.key).contains("s3cr3t"));
    }

    #[tokio::test(start_paused = true)]
    async fn never_stores_what_it_must_not() {
        let c = cache(ServeStale::new(Duration::from_secs(60)));
        let now = Instant::now();
        let resp_with = |name: &'static str, value: &'static str| {
            let mut r = ok("x");
            r.headers_mut()
                .append(name, HeaderValue::from_static(value));
            r
        };
        for resp in [
            resp_with("set-cookie", "sid=1"),
            resp_with("cache-control", "max-age=60, no-store"),
            resp_with("cache-control", "Private"),
            resp_with("cache-control", "private=\"set-cookie\""),
            resp_with("vary", "*"),
            response(206, "part"),
            response(500, "down"),
            response(404, "gone"),
        ] {
            c.store(c.lookup(&get("http://h.test/")).unwrap(), &resp, now);
        }
        assert_eq!(c.usage().0, 0);
        let ranged = with(get("http://h.test/r"), "range", "bytes=0-1");
        c.store(c.lookup(&ranged).unwrap(), &ok("x"), now);
        assert_eq!(c.usage().0, 0);
        // Requests that refuse caches are neither stored nor served.
        assert!(
            c.lookup(&with(get("http://h.test/"), "cache-control", "no-cache"))
                .is_none()
        );
        let mut opted_out = get("http://h.test/");
        opted_out.extensions_mut().insert(NoStale);
        assert!(c.lookup(&opted_out).is_none());
        let post = http::Request::post("http://h.test/")
            .body(Body::empty())
            .unwrap();
        assert!(c.lookup(&post).is_none());
    }

    fn ok_with(headers: &[(&'static str, &[u8])]) -> Response {
        let mut r = ok("x");
        for &(name, value) in headers {
            r.headers_mut()
                .append(name, HeaderValue::from_bytes(value).unwrap());
        }
        r
    }

    /// Whether `resp` is kept for a plain GET.
    fn kept(c: &StaleCache, resp: &Response) -> bool {
        let l = || c.lookup(&get("http://h.test/")).unwrap();
        c.store(l(), resp, Instant::now());
        let found = c.get(&l(), Instant::now(), StaleReason::Rejected).is_some();
        c.store(l(), &response(404, ""), Instant::now());
        found
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_control_that_cannot_be_read_forbids_storing() {
        let c = cache(ServeStale::new(Duration::from_secs(60)));
        for cc in [
            // Valid (obs-text is allowed in a quoted string), and says no-store.
            &b"no-store, x-ext=\"caf\xe9\""[..],
            // Not valid: each could hide a no-store.
            b"max-age=60, x-ext=caf\xe9",
            b"max-age=60, no store",
            b"max-age = 60",
            b"max-age=60; no-store",
            b"max-age=\"60",
            b"max-age=soon",
            // Arguments do not hide the directive; no-cache needs the host, which is down.
            b"private=\"Set-Cookie\"",
            b"No-Cache=\"x\"",
            b"no-cache",
            b",, max-age=60 ,\tNO-STORE,",
        ] {
            let resp = ok_with(&[("cache-control", cc)]);
            assert!(!kept(&c, &resp), "{}", String::from_utf8_lossy(cc));
        }
        // Several lines make one list.
        let resp = ok_with(&[
            ("cache-control", b"max-age=60"),
            ("cache-control", b"no-store"),
        ]);
        assert!(!kept(&c, &resp));
        for cc in [
            &b"max-age=60, public"[..],
            b"",
            b" , ",
            b"x-ext=\"caf\xe9\"",
        ] {
            let resp = ok_with(&[("cache-control", cc)]);
            assert!(kept(&c, &resp), "{}", String::from_utf8_lossy(cc));
        }
        let c = cache(ServeStale::new(Duration::from_secs(60)).ignore_cache_control(true));
        let resp = ok_with(&[("cache-control", b"no-store, x=caf\xe9")]);
        assert!(kept(&c, &resp));
    }

    #[tokio::test(start_paused = true)]
    async fn a_vary_that_cannot_be_read_forbids_storing() {
        let c = cache(ServeStale::new(Duration::from_secs(60)));
        for vary in [
            &b"accept language"[..],
            b"accept-language, *",
            b"accept-\xe9",
            b"accept;q=1",
            b"\"accept\"",
        ] {
            let resp = ok_with(&[("vary", vary)]);
            assert!(!kept(&c, &resp), "{}", String::from_utf8_lossy(vary));
        }
        let resp = ok_with(&[("vary", b"accept"), ("vary", b"*")]);
        assert!(!kept(&c, &resp));
        // Empty elements are allowed, and the names listed are honoured.
        let now = Instant::now();
        let resp = ok_with(&[("vary", b" accept,, Accept-Language ,")]);
        let en = || with(get("http://h.test/"), "accept-language", "en");
        c.store(c.lookup(&en()).unwrap(), &resp, now);
        assert!(
            c.get(&c.lookup(&en()).unwrap(), now, StaleReason::Rejected)
                .is_some()
        );
        let fr = with(get("http://h.test/"), "accept-language", "fr");
        assert!(
            c.get(&c.lookup(&fr).unwrap(), now, StaleReason::Rejected)
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn age_counts_and_an_unreadable_one_forbids_storing() {
        let c = cache(ServeStale::new(Duration::from_secs(60)));
        for age in [
            &b"99999999999999999999999"[..], // older than any max age, never zero
            b"abc",
            b"-5",
            b"1.5",
            b"",
            b"61",
            b"61, 0", // the first member counts
        ] {
            let resp = ok_with(&[("age", age)]);
            assert!(!kept(&c, &resp), "{}", String::from_utf8_lossy(age));
        }
        // The age it arrived with counts against the max age.
        let t0 = Instant::now();
        let l = || c.lookup(&get("http://h.test/")).unwrap();
        c.store(l(), &ok_with(&[("age", b"50, 1")]), t0);
        let at = |s| t0 + Duration::from_secs(s);
        let served = c.get(&l(), at(10), StaleReason::Rejected).unwrap();
        assert_eq!(served.headers()[AGE], "60");
        assert!(c.get(&l(), at(11), StaleReason::Rejected).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn must_revalidate_and_s_maxage_are_served_only_while_fresh() {
        let c = cache(ServeStale::new(Duration::from_secs(60)));
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let l = || c.lookup(&get("http://h.test/")).unwrap();
        for (cc, age, fresh_for) in [
            (&b"max-age=10, must-revalidate"[..], &b"0"[..], 10),
            (b"proxy-revalidate, max-age=10", b"4", 6),
            (b"s-maxage=5, max-age=30", b"0", 5),
            (b"max-age=30, s-maxage=\"20\", s-maxage=8", b"0", 8),
        ] {
            c.store(l(), &ok_with(&[("cache-control", cc), ("age", age)]), t0);
            let what = String::from_utf8_lossy(cc);
            assert!(
                c.get(&l(), at(fresh_for - 1), StaleReason::Rejected)
                    .is_some(),
                "{what}"
            );
            assert!(
                c.get(&l(), at(fresh_for), StaleReason::Rejected).is_none(),
                "{what}"
            );
        }
        // Without a freshness lifetime, or already stale when it arrives: never kept.
        for (cc, age) in [
            (&b"must-revalidate"[..], &b"0"[..]),
            (b"max-age=10, must-revalidate", b"10"),
            (b"s-maxage=0", b"0"),
        ] {
            let resp = ok_with(&[("cache-control", cc), ("age", age)]);
            assert!(!kept(&c, &resp), "{}", String::from_utf8_lossy(cc));
        }
        // A plain max-age does not stop a stale answer from being served.
        c.store(l(), &ok_with(&[("cache-control", b"max-age=1")]), t0);
        assert!(c.get(&l(), at(30), StaleReason::Rejected).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_that_refuse_cached_answers_are_honoured() {
        let c = cache(ServeStale::new(Duration::from_secs(60)));
        let req = |headers: &[(&'static str, &[u8])]| {
            let mut r = get("http://h.test/");
            for &(name, value) in headers {
                r.headers_mut()
                    .append(name, HeaderValue::from_bytes(value).unwrap());
            }
            r
        };
        for headers in [
            &[("cache-control", &b"NO-CACHE"[..])][..],
            &[("cache-control", b"no-store")],
            &[("cache-control", b"min-fresh=5")],
            &[("cache-control", b"max-age=60, no-cache=\"x\"")],
            &[("cache-control", b"max-age=60, x=caf\xe9")],
            &[("cache-control", b"max-age=later")],
            &[
                ("cache-control", b"max-age=60"),
                ("cache-control", b"no store"),
            ],
            &[("pragma", b"no-cache")],
            &[("pragma", b"No-Cache, x=1")],
            &[("pragma", b"no cache")],
        ] {
            assert!(c.lookup(&req(headers)).is_none(), "{headers:?}");
        }
        // Pragma is only read without a Cache-Control (RFC 9111 5.4).
        let both = req(&[("cache-control", b"max-age=60"), ("pragma", b"no-cache")]);
        assert!(c.lookup(&both).is_some());

        // max-age bounds the age of what the request accepts; the answer stays for others.
        let t0 = Instant::now();
        c.store(c.lookup(&get("http://h.test/")).unwrap(), &ok("x"), t0);
        let at = t0 + Duration::from_secs(5);
        let young = req(&[("cache-control", b"max-age=5")]);
        let younger = req(&[("cache-control", b"max-age=9, max-age=4")]);
        assert!(
            c.get(&c.lookup(&young).unwrap(), at, StaleReason::Rejected)
                .is_some()
        );
        assert!(
            c.get(&c.lookup(&younger).unwrap(), at, StaleReason::Rejected)
                .is_none()
        );
        assert!(
            c.get(
                &c.lookup(&get("http://h.test/")).unwrap(),
                at,
                StaleReason::Rejected
            )
            .is_some()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ignore_cache_control_stores_private_but_never_set_cookie() {
        let c = cache(ServeStale::new(Duration::from_secs(60)).ignore_cache_control(true));
        let now = Instant::now();
        let mut private = ok("p");
        private
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
        c.store(c.lookup(&get("http://h.test/p")).unwrap(), &private, now);
        let mut cookie = ok("c");
        cookie
            .headers_mut()
            .insert(SET_COOKIE, HeaderValue::from_static("a=b"));
        c.store(c.lookup(&get("http://h.test/c")).unwrap(), &cookie, now);
        assert_eq!(c.usage().0, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_answer_that_cannot_be_kept_removes_the_older_one() {
        let c = cache(ServeStale::new(Duration::from_secs(60)));
        let now = Instant::now();
        let l = || c.lookup(&get("http://h.test/")).unwrap();
        c.store(l(), &ok("old"), now);
        assert_eq!(c.usage().0, 1);
        c.store(l(), &response(404, ""), now);
        assert_eq!(c.usage(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn vary_is_honoured() {
        let c = cache(ServeStale::new(Duration::from_secs(60)));
        let now = Instant::now();
        let mut resp = ok("gz");
        resp.headers_mut()
            .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
        let gz = || with(get("http://h.test/"), "accept-encoding", "gzip");
        c.store(c.lookup(&gz()).unwrap(), &resp, now);
        let found = |req: Request| {
            c.get(&c.lookup(&req).unwrap(), now, StaleReason::Rejected)
                .is_some()
        };
        assert!(found(gz()));
        assert!(!found(get("http://h.test/")));
        assert!(!found(with(get("http://h.test/"), "accept-encoding", "br")));
    }

    #[tokio::test(start_paused = true)]
    async fn lru_is_bounded_by_entries_and_bytes() {
        let now = Instant::now();
        let c = cache(ServeStale::new(Duration::from_secs(60)).max_entries(2));
        let l = |p: &str| c.lookup(&get(&format!("http://h.test/{p}"))).unwrap();
        c.store(l("a"), &ok("a"), now);
        c.store(l("b"), &ok("b"), now);
        // Using "a" makes "b" the least recently used.
        assert!(c.get(&l("a"), now, StaleReason::Rejected).is_some());
        c.store(l("c"), &ok("c"), now);
        assert_eq!(c.usage().0, 2);
        assert!(c.get(&l("b"), now, StaleReason::Rejected).is_none());
        assert!(c.get(&l("a"), now, StaleReason::Rejected).is_some());
        assert!(c.get(&l("c"), now, StaleReason::Rejected).is_some());

        let big = Bytes::from(vec![b'x'; 1000]);
        let c = cache(ServeStale::new(Duration::from_secs(60)).max_bytes(2500));
        let l = |p: &str| c.lookup(&get(&format!("http://h.test/{p}"))).unwrap();
        for p in ["1", "2", "3"] {
            c.store(l(p), &response(200, big.clone()), now);
            assert!(c.usage().1 <= 2500);
        }
        assert_eq!(c.usage().0, 2);
        assert!(c.get(&l("1"), now, StaleReason::Rejected).is_none());
        // An answer larger than the whole budget is never kept.
        c.store(l("huge"), &response(200, vec![0u8; 3000]), now);
        assert!(c.get(&l("huge"), now, StaleReason::Rejected).is_none());
        assert_eq!(c.usage().0, 2);
    }

    /// A fleet store in memory: the last answer put under each name, and what was removed.
    #[derive(Debug, Default)]
    struct Recorder {
        kept: Mutex<HashMap<u128, Bytes>>,
        puts: Mutex<usize>,
        removed: Mutex<Vec<u128>>,
    }

    impl StaleStore for Recorder {
        fn naming_key(&self) -> [u64; 4] {
            [7, 7, 7, 7]
        }
        fn put(&self, _: &str, name: u128, answer: Bytes, _: Duration) {
            *self.puts.lock().unwrap() += 1;
            self.kept.lock().unwrap().insert(name, answer);
        }
        fn remove(&self, _: &str, name: u128) {
            self.kept.lock().unwrap().remove(&name);
            self.removed.lock().unwrap().push(name);
        }
        fn fetch(&self, circuit: &str, sink: Weak<dyn StaleSink>) {
            let sink = sink.upgrade().unwrap();
            for (name, answer) in self.kept.lock().unwrap().iter() {
                sink.adopt(circuit, *name, answer, Duration::from_secs(2));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_cache_uploads_once_a_second_removes_what_it_held_and_adopts_by_its_rules() {
        let store = Arc::new(Recorder::default());
        let shared = || cache(ServeStale::new(Duration::from_secs(60)).share(store.clone()));
        let (a, b) = (Arc::new(shared()), Arc::new(shared()));
        let url = "http://h.test/a";
        let l = |c: &StaleCache| c.lookup(&get(url)).unwrap();
        let t0 = Instant::now();
        a.store_in(l(&a), &ok("v1"), t0, "h");
        a.store_in(l(&a), &ok("v2"), t0 + Duration::from_millis(100), "h");
        assert_eq!(*store.puts.lock().unwrap(), 1, "once in the same second");
        a.store_in(l(&a), &ok("v3"), t0 + Duration::from_millis(1100), "h");
        assert_eq!(*store.puts.lock().unwrap(), 2);

        // Names agree across replicas: B adopts A's answer and serves it, aged.
        store.fetch("h", Arc::downgrade(&b) as Weak<dyn StaleSink>);
        let resp = b
            .get(&l(&b), Instant::now(), StaleReason::Rejected)
            .unwrap();
        assert_eq!(resp.headers()[AGE], "2");
        assert_eq!(resp.into_body().text().await.unwrap(), "v3");
        // By its own max age: 2 s old is too old for a replica that serves 1 s.
        let young = Arc::new(cache(
            ServeStale::new(Duration::from_secs(1)).share(store.clone()),
        ));
        store.fetch("h", Arc::downgrade(&young) as Weak<dyn StaleSink>);
        assert_eq!(young.usage().0, 0, "older than its max age");
        // Nor what cannot be read.
        young.adopt("h", 1, b"not an answer", Duration::ZERO);
        assert_eq!(young.usage().0, 0);
        // A newer answer of its own is not replaced by an older one from the fleet.
        b.store_in(l(&b), &ok("mine"), Instant::now(), "h");
        store.fetch("h", Arc::downgrade(&b) as Weak<dyn StaleSink>);
        let resp = b
            .get(&l(&b), Instant::now(), StaleReason::Rejected)
            .unwrap();
        assert_eq!(resp.into_body().text().await.unwrap(), "mine");

        // An answer that may not be kept removes the fleet's copy where one was held...
        a.store_in(l(&a), &response(404, ""), Instant::now(), "h");
        assert_eq!(store.removed.lock().unwrap().len(), 1);
        // ...and costs the store nothing where none was.
        let c = shared();
        c.store_in(l(&c), &response(404, ""), Instant::now(), "h");
        assert_eq!(store.removed.lock().unwrap().len(), 1);

        // By its own reading of `Cache-Control`: an answer kept from another replica that
        // ignores it (an older version of the crate, say) is refused.
        let strict = Arc::new(shared());
        let mut private = ok("p");
        private
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let entry = strict.head(&l(&strict), &private, Instant::now());
        assert!(entry.is_none(), "no-store, by its own reading");
        let blob = answer::encode(&AnswerRef {
            status: StatusCode::OK,
            version: Version::HTTP_11,
            headers: private.headers(),
            body: &Bytes::from_static(b"p"),
            base_age: 0,
            lifetime: u64::MAX,
            vary: &[],
            vary_hash: 0,
            url_len: url.len(),
        })
        .unwrap();
        strict.adopt("h", l(&strict).key.0, &blob, Duration::ZERO);
        assert_eq!(strict.usage().0, 0, "no-store, refused on adoption");
    }

    /// A replica that ignores `Cache-Control` keeps `no-store` and `private` answers for
    /// itself: they never reach the fleet's store, and they take the place of what it had
    /// shared for their key.
    #[tokio::test(start_paused = true)]
    async fn answers_kept_against_their_cache_control_are_never_shared() {
        let store = Arc::new(Recorder::default());
        let lax = cache(
            ServeStale::new(Duration::from_secs(60))
                .ignore_cache_control(true)
                .share(store.clone()),
        );
        let url = "http://h.test/a";
        let lookup = || lax.lookup(&get(url)).unwrap();
        lax.store_in(lookup(), &ok("public"), Instant::now(), "h");
        assert_eq!(
            store.kept.lock().unwrap().len(),
            1,
            "a plain answer is shared"
        );
        for (i, value) in [
            "no-store",
            "private",
            "max-age=60, private",
            "no-cache",
            "max-age=\"x",
        ]
        .into_iter()
        .enumerate()
        {
            let mut resp = ok("secret");
            resp.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static(value));
            let at = Instant::now() + Duration::from_secs(2 * (i as u64 + 1));
            lax.store_in(lookup(), &resp, at, "h");
            assert!(store.kept.lock().unwrap().is_empty(), "{value}: not shared");
            let served = lax.get(&lookup(), at, StaleReason::Rejected).unwrap();
            assert_eq!(
                served.into_body().text().await.unwrap(),
                "secret",
                "{value}: kept here"
            );
        }
        assert_eq!(*store.puts.lock().unwrap(), 1);
        assert_eq!(
            store.removed.lock().unwrap().len(),
            1,
            "the shared copy withdrawn once"
        );
    }
}
