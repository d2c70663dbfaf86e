//! Serve-stale: the last good answer to a safe request, kept to answer with while the host is
//! unavailable.
//!
//! The cache is private to one [`Breaker`](super::Breaker) but shared by all its callers, so
//! its key carries everything that can make two users' answers differ: the method, the full
//! URL, and the values of the credential headers (`Authorization`, `Proxy-Authorization`,
//! `Cookie`, and any header [`redact::is_secret_header`] flags, such as `X-Api-Key`) plus the
//! headers the caller names, hashed with a per-process random key (two SipHash-1-3 keys, 128
//! bits) so no credential is kept in memory. The URL itself is kept redacted
//! ([`redact::uri`]: no userinfo, no secret query values) and enters the key in full only
//! through the hash. The response's own `Vary` is honoured too.
//!
//! What may be stored and served follows what a shared cache may do (RFC 9111), read by the
//! parsers of [`cache_control`](super::cache_control): a field that does not parse forbids
//! caching, as if it said the strictest thing it could.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AGE, CACHE_CONTROL, PRAGMA, RANGE, SET_COOKIE, VARY};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use tokio::time::Instant;

use super::cache_control;
use crate::{Body, Request, Response, redact};

/// Default bound on the number of answers kept: 1024.
pub const DEFAULT_STALE_MAX_ENTRIES: usize = 1024;

/// Default bound on the bytes kept (bodies, headers and URLs): 16 MiB.
pub const DEFAULT_STALE_MAX_BYTES: usize = 16 * 1024 * 1024;

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
    /// honoured.
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

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct StaleKey {
    method: Method,
    /// The URL, redacted.
    url: String,
    /// Hash of the credential and key headers, and of the full URL.
    secrets: u128,
}

/// What a request needs to find, or store, its answer.
pub(crate) struct Lookup {
    key: StaleKey,
    /// The request's headers, for the stored response's `Vary`.
    headers: HeaderMap,
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
}

impl Pending {
    /// The most body bytes the answer may have and still be kept.
    pub(crate) fn room(&self) -> usize {
        self.room
    }
}

pub(crate) struct StaleCache {
    config: ServeStale,
    hashers: (RandomState, RandomState),
    lru: Mutex<Lru>,
}

impl StaleCache {
    pub(crate) fn new(config: ServeStale) -> Self {
        StaleCache {
            config,
            hashers: (RandomState::new(), RandomState::new()),
            lru: Mutex::new(Lru::default()),
        }
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
        let max_age = request_max_age(req.headers())?;
        let key_headers = &self.config.key_headers;
        let credentials = self.hash_headers(req.headers(), |name| {
            redact::is_secret_header(name) || key_headers.contains(name)
        });
        // The URL is kept redacted (no userinfo, no secret query values); the full URL goes
        // into the hash, so two URLs that differ only in a secret still get two entries.
        let full_url = self.hashers.0.hash_one(req.uri().to_string());
        let secrets = credentials ^ u128::from(full_url);
        Some(Lookup {
            key: StaleKey {
                method: method.clone(),
                url: redact::uri(req.uri()),
                secrets,
            },
            headers: req.headers().clone(),
            ranged: req.headers().contains_key(RANGE),
            max_age,
        })
    }

    /// A 128-bit keyed hash of the picked headers, by name then in order of appearance.
    fn hash_headers(&self, headers: &HeaderMap, pick: impl Fn(&HeaderName) -> bool) -> u128 {
        let mut picked: Vec<(&str, &[u8])> = headers
            .iter()
            .filter(|(name, _)| pick(name))
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        // Stable: values of one header keep their order, which can matter.
        picked.sort_by(|a, b| a.0.cmp(b.0));
        let high = self.hashers.0.hash_one(&picked);
        let low = self.hashers.1.hash_one(&picked);
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
            if self.hash_headers(&lookup.headers, |name| vary.contains(name)) != entry.vary_hash {
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

    /// Keeps `resp`, the successful answer to the request of `lookup`, if it may be kept, and
    /// otherwise forgets any older answer for the same key.
    pub(crate) fn store(&self, lookup: Lookup, resp: &Response, now: Instant) {
        let entry = self.head(&lookup, resp, now).and_then(|mut entry| {
            let body = resp.body().as_bytes()?;
            entry.with_body(body.clone(), self.config.max_bytes)?;
            Some(entry)
        });
        let mut lru = self.lock();
        match entry {
            Some(entry) => lru.insert(
                lookup.key,
                entry,
                self.config.max_entries,
                self.config.max_bytes,
            ),
            None => lru.remove(&lookup.key),
        }
    }

    /// Starts keeping `resp`, the successful answer to the request of `lookup`, whose body is
    /// a stream: decides from its head, now, whether it may be kept, and returns what
    /// [`finish`](Self::finish) needs once the body has ended, with the most body bytes it may
    /// have. An answer whose head forbids keeping it forgets any older answer at once, as
    /// [`store`](Self::store) does.
    pub(crate) fn begin(&self, lookup: Lookup, resp: &Response, now: Instant) -> Option<Pending> {
        match self.head(&lookup, resp, now) {
            Some(entry) => Some(Pending {
                room: self.config.max_bytes.saturating_sub(entry.size),
                key: lookup.key,
                entry,
            }),
            None => {
                self.lock().remove(&lookup.key);
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
        let Pending { key, mut entry, .. } = pending;
        let kept = body.and_then(|body| entry.with_body(body, self.config.max_bytes));
        let mut lru = self.lock();
        if lru
            .map
            .get(&key)
            .is_some_and(|newer| newer.stored_at > entry.stored_at)
        {
            return;
        }
        match kept {
            Some(()) => lru.insert(key, entry, self.config.max_entries, self.config.max_bytes),
            None => lru.remove(&key),
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
        let size = header_bytes + lookup.key.url.len() + 128;
        if size > self.config.max_bytes {
            return None;
        }
        let vary_hash = if vary.is_empty() {
            0
        } else {
            self.hash_headers(&lookup.headers, |name| vary.contains(name))
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
        })
    }

    /// Answers kept, and their size in bytes.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let lru = self.lock();
        (lru.map.len(), lru.bytes)
    }
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
    map: HashMap<Arc<StaleKey>, Entry>,
    /// Recency: tick of last use to key; the first is the least recently used.
    order: BTreeMap<u64, Arc<StaleKey>>,
    next_tick: u64,
    bytes: usize,
}

impl Lru {
    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    fn get(&mut self, key: &StaleKey) -> Option<&Entry> {
        let tick = self.tick();
        let (shared_key, entry) = self.map.get_key_value(key)?;
        let shared_key = shared_key.clone();
        let old = entry.tick;
        self.order.remove(&old);
        self.order.insert(tick, shared_key);
        let entry = self.map.get_mut(key)?;
        entry.tick = tick;
        Some(entry)
    }

    fn remove(&mut self, key: &StaleKey) {
        if let Some(entry) = self.map.remove(key) {
            self.order.remove(&entry.tick);
            self.bytes -= entry.size;
        }
    }

    fn insert(&mut self, key: StaleKey, mut entry: Entry, max_entries: usize, max_bytes: usize) {
        self.remove(&key);
        if max_entries == 0 {
            return;
        }
        let key = Arc::new(key);
        entry.tick = self.tick();
        self.bytes += entry.size;
        self.order.insert(entry.tick, key.clone());
        self.map.insert(key, entry);
        while self.map.len() > max_entries || self.bytes > max_bytes {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(gone) = self.map.remove(&*oldest) {
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
}
