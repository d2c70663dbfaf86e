//! [`RedisFleet`]: the fleet's circuits, stale answers, retry budgets and servers' pauses in
//! Redis.
//!
//! One task ([`worker`]) sends every command, in order, each bounded by a timeout; another
//! ([`listener`]) listens on the fleet's pub/sub channel and pings it every second. Callers only ever push onto a bounded
//! queue (a full queue drops the news, counted in [`RedisStats::dropped`]), and read what
//! these tasks left in memory.
//!
//! Keys, under a prefix ([`DEFAULT_PREFIX`]):
//!
//! | key | what |
//! |---|---|
//! | `{prefix}:circuits` | the pub/sub channel: `o <replica> <breaker> <ms> <circuit>` (opened for ms), `c ...` (closed), `p <replica> <store> <ms> <key>` (a server's pause) |
//! | `{prefix}:state:<circuit>` | the whole open period in ms, expiring when it ends: read by a replica that starts, or comes back |
//! | `{prefix}:open` | the circuits whose state was set, so that a replica that starts reads those states and no other key; a circuit leaves it when it closes, or when a replica that starts finds its state expired |
//! | `{prefix}:lease:<circuit>` | the probe lease: the holder's id, expiring after one open period |
//! | `{prefix}:fails:<circuit>` | the fleet's failures in a row, expiring after the breaker's window |
//! | `{prefix}:stale:<h>:<name>` | a sealed answer, expiring at its max age; `<h>`, `<name>`: keyed hashes |
//! | `{prefix}:stale-idx:<h>` | the answers of one circuit |
//! | `{prefix}:stale-lru`, `-size`, `-bytes`, `-seq` | the fleet-wide bound on answers and bytes |
//! | `{prefix}:budget:<name>` | each replica's retry-budget counts over the last second |

mod key;
mod listener;
mod scripts;
mod worker;

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redis::Client;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

pub use key::FleetKey;

use super::{
    BudgetCounts, BudgetStore, CircuitSink, CircuitStore, PauseSink, PauseStore, ProbeLease,
    StaleHasher, StaleSink, StaleStore, Trip,
};
use crate::{Error, ErrorKind};

/// The prefix of every key and channel, unless set otherwise: `http-doer`.
pub const DEFAULT_PREFIX: &str = "http-doer";

/// How long a Redis command may take before the fleet counts Redis as out of reach and every
/// breaker behaves as if alone: 250 ms. No call waits on it; only sharing does.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// News queued for Redis: 4096; past that, new news is dropped (counted in
/// [`RedisStats::dropped`]).
const QUEUE: usize = 4096;

/// How long a replica waits for the answer to its lease request before asking again.
const LEASE_ASK: Duration = Duration::from_millis(50);

/// The most open circuits this replica keeps probe leases for: as many circuits as a breaker
/// keeps by default. News past it (a flood on the channel) is not kept: those circuits' probes
/// are then this replica's own decision, as with Redis out of reach.
const MAX_LEASES: usize = crate::breaker::DEFAULT_MAX_CIRCUITS;

/// How long a budget's hash lives unrenewed, in ms; an entry older than that is a replica
/// that is gone.
const BUDGET_LIFE_MS: u64 = 5000;

/// The longest pause a message on the channel may hand a rate limiter: the longest a server's
/// own may be by default.
const LONGEST_PAUSE: Duration = crate::limit::DEFAULT_MAX_PAUSE;

/// The longest period this replica believes a lease or an open period from Redis: what a
/// message or a key says can be any number, and an `Instant` past its range panics.
const LONGEST: Duration = Duration::from_secs(30 * 365 * 86_400);

/// The fleet-wide bound on stale answers kept in Redis; past it, the least recently stored
/// go first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleBound {
    /// The most answers kept: 10 000 by default.
    pub max_entries: usize,
    /// The most bytes kept (sealed answers): 256 MiB by default.
    pub max_bytes: usize,
}

impl Default for StaleBound {
    fn default() -> Self {
        StaleBound {
            max_entries: 10_000,
            max_bytes: 256 << 20,
        }
    }
}

/// What a [`RedisFleet`] has done so far; see [`RedisFleet::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisStats {
    /// Commands (or scripts) that succeeded.
    pub ok: u64,
    /// Commands that failed or timed out.
    pub failed: u64,
    /// News dropped because the queue to Redis was full.
    pub dropped: u64,
    /// Well-formed messages received on the fleet's channel (others are ignored and not
    /// counted), this replica's own echoes included.
    pub received: u64,
}

/// Breaker circuits, serve-stale answers, retry budgets and the pauses servers ask for, shared
/// by the replicas of a fleet through Redis (feature `redis`). It implements [`CircuitStore`],
/// [`StaleStore`], [`BudgetStore`] and [`PauseStore`]; clones share one connection and one
/// pair of tasks.
///
/// Nothing a call does waits on Redis: a breaker pushes news onto a queue and reads what the
/// fleet said from memory. If Redis is down, slow, restarted or cut off, each breaker behaves
/// as it would alone, and sharing resumes by itself when Redis answers again.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use http_doer::{Breaker, Retrying, breaker::ServeStale, retrying::RetryBudget};
/// use http_doer::fleet::{FleetKey, RedisFleet, share_budget};
/// use http_doer::testing::ScriptedDoer;
///
/// # async fn run() -> Result<(), http_doer::Error> {
/// // The same secret on every replica (64 hex digits or base64: `openssl rand -hex 32`).
/// let key = FleetKey::parse(&std::env::var("FLEET_KEY").unwrap_or_default())?;
/// let fleet = RedisFleet::builder("redis://127.0.0.1:6379")
///     .prefix("orders")
///     .key(key)
///     .connect()?;
/// let budget = RetryBudget::default();
/// share_budget(&budget, Arc::new(fleet.clone()), "payments-api");
/// let stale = ServeStale::new(Duration::from_secs(300)).share(Arc::new(fleet.clone()));
/// let breaker = Breaker::new(ScriptedDoer::new()).serve_stale(stale).fleet(Arc::new(fleet));
/// let stack = Retrying::new(breaker).budget(budget);
/// # let _ = stack; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisFleet {
    inner: Arc<Inner>,
}

/// Settings of a [`RedisFleet`]; see [`RedisFleet::builder`].
pub struct RedisFleetBuilder {
    url: String,
    prefix: String,
    key: Option<FleetKey>,
    bound: StaleBound,
    timeout: Duration,
}

// By hand: the URL may carry the Redis password, and the key is a secret.
impl fmt::Debug for RedisFleetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFleetBuilder")
            .field("url", &"..")
            .field("prefix", &self.prefix)
            .field("key", &self.key)
            .field("bound", &self.bound)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisFleetBuilder {
    /// The prefix of every key and channel (default [`DEFAULT_PREFIX`]); fleets that must not
    /// share, on one Redis, need different prefixes.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The key that seals stale answers. Without one, answers are not shared (a store that
    /// leaves the process never holds them in clear).
    pub fn key(mut self, key: FleetKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The fleet-wide bound on stale answers (default [`StaleBound::default`]).
    pub fn stale_bound(mut self, bound: StaleBound) -> Self {
        self.bound = bound;
        self
    }

    /// How long a Redis command may take (default [`DEFAULT_REDIS_TIMEOUT`]; `None`: that
    /// default).
    pub fn timeout(mut self, d: impl Into<Option<Duration>>) -> Self {
        self.timeout = d.into().unwrap_or(DEFAULT_REDIS_TIMEOUT);
        self
    }

    /// Starts the fleet's tasks. It does not wait for Redis: a replica whose Redis is down
    /// starts, behaves as if alone, and joins the fleet when Redis answers.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when the URL is not a Redis URL. Must be called within a
    /// tokio runtime, which runs the tasks.
    pub fn connect(self) -> Result<RedisFleet, Error> {
        let bad = |e: redis::RedisError| {
            Error::from(ErrorKind::InvalidRequest)
                .with_message(format!("Redis URL refused: {}", e.category()))
        };
        let client = Client::open(self.url.as_str()).map_err(bad)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(self.timeout))
            .set_connection_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(bad)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let naming = self.key.as_ref().map(FleetKey::naming_key);
        let inner = Arc::new(Inner {
            prefix: self.prefix,
            replica: rand::random::<u64>() | 1,
            key: self.key,
            naming: StaleHasher::pair(naming.unwrap_or_else(rand::random)).0,
            bound: self.bound,
            timeout: self.timeout,
            conn,
            tx,
            up: AtomicBool::new(false),
            sinks: Mutex::new(Vec::new()),
            pause_sinks: Mutex::new(Vec::new()),
            next_sink: AtomicU64::new(1),
            leases: Mutex::new(HashMap::new()),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
        });
        tokio::spawn(worker::work(Arc::downgrade(&inner), inner.conn.clone(), rx));
        tokio::spawn(listener::listen(Arc::downgrade(&inner), client));
        Ok(RedisFleet { inner })
    }
}

impl RedisFleet {
    /// The settings for a fleet on the Redis at `url` (`redis://[user:pass@]host:port[/db]`).
    pub fn builder(url: impl Into<String>) -> RedisFleetBuilder {
        RedisFleetBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            key: None,
            bound: StaleBound::default(),
            timeout: DEFAULT_REDIS_TIMEOUT,
        }
    }

    /// A fleet on the Redis at `url` with the defaults, sharing circuits and retry budgets
    /// (stale answers need a [key](RedisFleetBuilder::key)).
    ///
    /// # Errors
    ///
    /// As [`RedisFleetBuilder::connect`].
    pub fn connect(url: impl Into<String>) -> Result<RedisFleet, Error> {
        RedisFleet::builder(url).connect()
    }

    /// Whether Redis answered the last command in time.
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Relaxed)
    }

    /// What it has done so far.
    pub fn stats(&self) -> RedisStats {
        let i = &*self.inner;
        RedisStats {
            ok: i.ok.load(Relaxed),
            failed: i.failed.load(Relaxed),
            dropped: i.dropped.load(Relaxed),
            received: i.received.load(Relaxed),
        }
    }
}

impl fmt::Debug for RedisFleet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisFleet")
            .field("prefix", &self.inner.prefix)
            .field("up", &self.is_up())
            .field("shares_stale", &self.inner.key.is_some())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Inner {
    prefix: String,
    replica: u64,
    key: Option<FleetKey>,
    /// Hashes circuit keys into the names of their stale indexes.
    naming: StaleHasher,
    bound: StaleBound,
    timeout: Duration,
    conn: ConnectionManager,
    tx: mpsc::Sender<Job>,
    up: AtomicBool,
    sinks: Mutex<Vec<(u64, Weak<dyn CircuitSink>)>>,
    pause_sinks: Mutex<Vec<(u64, Weak<dyn PauseSink>)>>,
    next_sink: AtomicU64,
    leases: Mutex<HashMap<String, Lease>>,
    ok: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
}

/// What this replica knows of an open circuit's probing.
struct Lease {
    /// The end of the fleet's open period.
    open_until: Instant,
    /// How long a lease lasts: one open period.
    ttl: Duration,
    holder: Holder,
    /// When a lease request was last sent.
    asked: Option<Instant>,
}

impl Lease {
    /// Whether the entry still says something at `now`: the circuit is open, or a lease is
    /// held or being asked for.
    fn live(&self, now: Instant) -> bool {
        now < self.open_until
            || self.asked.is_some_and(|at| now < at + LEASE_ASK)
            || match self.holder {
                Holder::Mine(until) | Holder::Theirs(until) => now < until,
                Holder::Unknown => false,
            }
    }
}

#[derive(Clone, Copy)]
enum Holder {
    Unknown,
    Mine(Instant),
    Theirs(Instant),
}

enum Job {
    Opened {
        from: u64,
        key: String,
        /// When the open period ends: news sent late (a queue behind a slow Redis) opens the
        /// others for what is left of it, or not at all.
        until: Instant,
        /// The whole open period, kept in the stored state: the probe lease of a replica that
        /// reads it lasts that long, not only what was left when it read it.
        period: Duration,
    },
    Closed {
        from: u64,
        key: String,
    },
    Failed {
        key: String,
        trip: Trip,
    },
    Recovered {
        key: String,
    },
    Acquire {
        key: String,
        ttl: Duration,
    },
    Paused {
        from: u64,
        key: String,
        /// When the pause ends: a pause sent late (the queue, a slow Redis) is sent for what
        /// is left of it, or not at all.
        until: Instant,
    },
    Put {
        circuit: String,
        name: u128,
        answer: Bytes,
        ttl: Duration,
    },
    Remove {
        circuit: String,
        name: u128,
    },
    Fetch {
        circuit: String,
        sink: Weak<dyn StaleSink>,
    },
    Resync,
}

/// The sinks still alive, with their ids (dead ones are forgotten), collected so that they are
/// called outside the lock: a sink may call back into the fleet.
fn live<T: ?Sized>(sinks: &Mutex<Vec<(u64, Weak<T>)>>) -> Vec<(u64, Arc<T>)> {
    let mut sinks = lock(sinks);
    sinks.retain(|(_, s)| s.strong_count() > 0);
    sinks
        .iter()
        .filter_map(|(id, s)| Some((*id, s.upgrade()?)))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn send(&self, job: Job) {
        if self.tx.try_send(job).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    fn key(&self, what: &str, circuit: &str) -> String {
        format!("{}:{what}:{circuit}", self.prefix)
    }

    /// The index of open circuits (see the module's table of keys).
    fn open_index(&self) -> String {
        format!("{}:open", self.prefix)
    }

    fn channel(&self) -> String {
        format!("{}:circuits", self.prefix)
    }

    /// Marks the link up or down; a link that comes back resyncs.
    fn mark(&self, ok: bool) {
        if ok {
            self.ok.fetch_add(1, Relaxed);
        } else {
            self.failed.fetch_add(1, Relaxed);
        }
        let was = self.up.swap(ok, Relaxed);
        if ok && !was {
            self.send(Job::Resync);
        }
        if !ok && was {
            tracing::warn!(
                target: "http_doer::fleet",
                "Redis out of reach: breakers act alone until it answers"
            );
        }
    }

    fn sinks(&self) -> Vec<(u64, Arc<dyn CircuitSink>)> {
        live(&self.sinks)
    }

    /// A circuit is open fleet-wide until `remaining` from now. The probe lease is asked for
    /// only by a replica that wants to probe ([`CircuitStore::probe`], when a call comes after
    /// the open period): a replica with no calls for the host never takes the lease from one
    /// that has them, which would leave the host unprobed for a whole lease.
    ///
    /// The entries are bounded by [`MAX_LEASES`].
    fn note_open(&self, key: &str, remaining: Duration) {
        self.note_open_for(key, remaining, remaining);
    }

    /// [`note_open`](Self::note_open), of a circuit whose whole open period (the life of its
    /// probe lease) is `period`.
    fn note_open_for(&self, key: &str, remaining: Duration, period: Duration) {
        let now = Instant::now();
        let remaining = remaining.min(LONGEST);
        let lease = Lease {
            open_until: now + remaining,
            ttl: period.max(remaining).min(LONGEST).max(LEASE_ASK),
            holder: Holder::Unknown,
            asked: None,
        };
        let mut leases = lock(&self.leases);
        if let Some(l) = leases.get_mut(key) {
            if l.open_until < lease.open_until {
                *l = lease;
            }
            return;
        }
        if leases.len() >= MAX_LEASES {
            leases.retain(|_, l| l.live(now));
            if leases.len() >= MAX_LEASES {
                tracing::debug!(
                    target: "http_doer::fleet",
                    key,
                    "too many open circuits to keep probe leases for; not kept"
                );
                return;
            }
        }
        leases.insert(key.to_owned(), lease);
    }

    fn deliver(&self, skip: u64, f: impl Fn(&dyn CircuitSink)) {
        for (id, sink) in self.sinks() {
            if id != skip {
                f(&*sink);
            }
        }
    }

    /// Hands a pause to every live rate-limiter store but `skip` (the one that sent it).
    fn deliver_pause(&self, skip: u64, key: &str, wait: Duration) {
        for (id, sink) in live(&self.pause_sinks) {
            if id != skip {
                sink.paused(key, wait);
            }
        }
    }

    fn stale_names(&self, circuit: &str, name: u128) -> (String, String) {
        let h = self.naming.hash_one(circuit);
        (
            format!("{}:stale:{h:016x}:{name:032x}", self.prefix),
            format!("{}:stale-idx:{h:016x}", self.prefix),
        )
    }
}

impl CircuitStore for RedisFleet {
    fn attach(&self, sink: Weak<dyn CircuitSink>) -> u64 {
        let id = self.inner.next_sink.fetch_add(1, Relaxed);
        {
            let mut sinks = lock(&self.inner.sinks);
            sinks.retain(|(_, s)| s.strong_count() > 0);
            sinks.push((id, sink));
        }
        // A breaker made while circuits are open learns of them.
        self.inner.send(Job::Resync);
        id
    }

    fn opened(&self, from: u64, key: &str, open_for: Duration) {
        self.inner.note_open(key, open_for);
        self.inner.send(Job::Opened {
            from,
            key: key.to_owned(),
            until: crate::timeout::after(Instant::now(), open_for),
            period: open_for,
        });
    }

    fn closed(&self, from: u64, key: &str) {
        lock(&self.inner.leases).remove(key);
        self.inner.send(Job::Closed {
            from,
            key: key.to_owned(),
        });
    }

    fn failed(&self, _from: u64, key: &str, trip: Trip) {
        if trip.threshold > 0 {
            self.inner.send(Job::Failed {
                key: key.to_owned(),
                trip,
            });
        }
    }

    fn recovered(&self, _from: u64, key: &str) {
        self.inner.send(Job::Recovered {
            key: key.to_owned(),
        });
    }

    fn probe(&self, key: &str) -> ProbeLease {
        let inner = &*self.inner;
        if !inner.up.load(Relaxed) {
            return ProbeLease::Local;
        }
        let now = Instant::now();
        let mut leases = lock(&inner.leases);
        let Some(lease) = leases.get_mut(key) else {
            return ProbeLease::Local;
        };
        if now < lease.open_until {
            return ProbeLease::Elsewhere(lease.open_until - now);
        }
        match lease.holder {
            Holder::Mine(until) if now < until => return ProbeLease::Held,
            Holder::Theirs(until) if now < until => return ProbeLease::Elsewhere(until - now),
            _ => {}
        }
        if lease.asked.is_none_or(|at| now >= at + LEASE_ASK) {
            lease.asked = Some(now);
            let ttl = lease.ttl;
            drop(leases);
            inner.send(Job::Acquire {
                key: key.to_owned(),
                ttl,
            });
        }
        ProbeLease::Elsewhere(LEASE_ASK)
    }
}

impl PauseStore for RedisFleet {
    fn attach_pauses(&self, sink: Weak<dyn PauseSink>) -> u64 {
        let id = self.inner.next_sink.fetch_add(1, Relaxed);
        let mut sinks = lock(&self.inner.pause_sinks);
        sinks.retain(|(_, s)| s.strong_count() > 0);
        sinks.push((id, sink));
        id
    }

    fn paused(&self, from: u64, key: &str, wait: Duration) {
        let now = Instant::now();
        self.inner.send(Job::Paused {
            from,
            key: key.to_owned(),
            until: crate::timeout::after(now, wait),
        });
    }
}

impl StaleStore for RedisFleet {
    fn naming_key(&self) -> [u64; 4] {
        match &self.inner.key {
            Some(key) => key.naming_key(),
            None => rand::random(),
        }
    }

    fn put(&self, circuit: &str, name: u128, answer: Bytes, ttl: Duration) {
        if self.inner.key.is_some() {
            self.inner.send(Job::Put {
                circuit: circuit.to_owned(),
                name,
                answer,
                ttl,
            });
        }
    }

    fn remove(&self, circuit: &str, name: u128) {
        if self.inner.key.is_some() {
            self.inner.send(Job::Remove {
                circuit: circuit.to_owned(),
                name,
            });
        }
    }

    fn fetch(&self, circuit: &str, sink: Weak<dyn StaleSink>) {
        if self.inner.key.is_some() {
            self.inner.send(Job::Fetch {
                circuit: circuit.to_owned(),
                sink,
            });
        }
    }
}

#[async_trait::async_trait]
impl BudgetStore for RedisFleet {
    async fn exchange(&self, name: &str, mine: BudgetCounts) -> Option<BudgetCounts> {
        let inner = &*self.inner;
        let key = inner.key("budget", name);
        let now_ms = unix_ms();
        let mut conn = inner.conn.clone();
        let mut pipe = redis::pipe();
        pipe.hset(
            &key,
            inner.replica,
            format!("{} {} {now_ms}", mine.firsts, mine.retries),
        )
        .ignore()
        .pexpire(&key, BUDGET_LIFE_MS as i64)
        .ignore()
        .hgetall(&key);
        // Raw fields and values: whoever can write to Redis can write anything there, and one
        // bad entry must cost only itself, not the whole exchange (nor mark the link down).
        let result: Result<(Vec<(Vec<u8>, Vec<u8>)>,), _> =
            match timeout(inner.timeout, pipe.query_async(&mut conn)).await {
                Ok(r) => r,
                Err(_) => {
                    inner.mark(false);
                    return None;
                }
            };
        let Ok((all,)) = result else {
            inner.mark(false);
            return None;
        };
        inner.mark(true);
        let mut others = BudgetCounts::default();
        let mut gone = Vec::new();
        for (field, value) in all {
            let Some((replica, firsts, retries, at)) = budget_entry(&field, &value) else {
                continue;
            };
            // A replica silent for as long as the hash lives unrenewed is gone: its entry is
            // dropped, or the hash, renewed by the live ones, would keep every replica that
            // ever ran (each deploy, each restart adds one).
            if now_ms.saturating_sub(at) > BUDGET_LIFE_MS {
                gone.push(field);
                continue;
            }
            // A replica that stopped reporting (gone, or cut off) no longer counts.
            if replica == inner.replica || now_ms.abs_diff(at) > 2000 {
                continue;
            }
            // Saturating: whoever can write to Redis can write any number here.
            others.firsts = others.firsts.saturating_add(firsts);
            others.retries = others.retries.saturating_add(retries);
        }
        if !gone.is_empty() {
            // Best effort: a failure costs nothing but a later try.
            let mut forget = redis::cmd("HDEL");
            forget.arg(&key).arg(gone);
            let _ = timeout(inner.timeout, forget.query_async::<()>(&mut conn)).await;
        }
        Some(others)
    }
}

/// One replica's entry of a shared budget, as [`BudgetStore::exchange`] writes it: the
/// replica's id as the field, `"<firsts> <retries> <unix ms>"` as the value; `None` for
/// anything else.
fn budget_entry(field: &[u8], value: &[u8]) -> Option<(u64, u64, u64, u64)> {
    let number = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
    let replica = number(field)?;
    let mut parts = value.split(|&b| b == b' ');
    let (firsts, retries, at) = (
        number(parts.next()?)?,
        number(parts.next()?)?,
        number(parts.next()?)?,
    );
    parts
        .next()
        .is_none()
        .then_some((replica, firsts, retries, at))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn a_budget_entry_never_panics(
            field in proptest::collection::vec(proptest::num::u8::ANY, 0..24),
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let _ = budget_entry(&field, &value);
        }

        #[test]
        fn what_a_replica_writes_reads_back(replica: u64, firsts: u64, retries: u64, at: u64) {
            let value = format!("{firsts} {retries} {at}");
            proptest::prop_assert_eq!(
                budget_entry(replica.to_string().as_bytes(), value.as_bytes()),
                Some((replica, firsts, retries, at))
            );
        }
    }

    #[test]
    fn other_budget_entries_are_refused() {
        for (field, value) in [
            ("x", "1 2 3"),
            ("1", "1 2"),
            ("1", "1 2 3 4"),
            ("1", "-1 2 3"),
            ("1", ""),
        ] {
            assert_eq!(
                budget_entry(field.as_bytes(), value.as_bytes()),
                None,
                "{field} {value}"
            );
        }
    }
}
