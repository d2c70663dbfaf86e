//! The store seam: [`LimitStore`], and [`MemoryStore`], the in-process store built on
//! `governor`.

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use governor::clock::Clock;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use super::Rate;
use super::clock::TokioClock;

/// Keys a [`MemoryStore`] keeps, unless set otherwise: 4096. Past it, idle keys (a full burst
/// available, no pause or pacing from the server) are dropped to make room, which loses
/// nothing: an idle key and a new one behave the same. Busy keys are kept even past the bound.
pub const DEFAULT_MAX_KEYS: usize = 4096;

/// The server's pacing of a key: one call every `interval`, for `until` from now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// The time between two calls.
    pub interval: Duration,
    /// How long the pacing lasts (until the server's window resets).
    pub until: Duration,
}

/// Where [`RateLimiting`](super::RateLimiting) keeps its state: per key, the local rate's
/// cell, and what the server asked (a pause, a pace).
///
/// [`MemoryStore`] keeps it in the process; [`FleetStore`](super::FleetStore) shares a 429's
/// pause with a fleet. A store that shared the rate itself would run the GCRA in one script
/// that hands out places in batches, given out locally: a script call per `acquire` would wait
/// on the network.
///
/// The calls are synchronous and cannot fail, as the crate's rule for shared state says: a
/// healthy call never waits on the network for the store, and a store that fails never fails a
/// call. A networked store answers from what it holds locally and syncs on the side; when it
/// cannot reach its backend it admits the call rather than refuse it.
///
/// Waits are durations from now, so a store with its own clock (a Redis server's `TIME`) can
/// answer without agreeing with the process on what an instant is.
pub trait LimitStore: Send + Sync + fmt::Debug + 'static {
    /// One call of `key` asks to go now: `Ok` takes its place, `Err` says how long until a
    /// place might be free (it is not reserved: the caller asks again then).
    fn acquire(&self, key: &str) -> Result<(), Duration>;

    /// Every caller of `key` must wait `wait` from now: a server's 429, or a quota spent down
    /// to its reserve until its reset. A pause already running that ends later is kept.
    fn pause(&self, key: &str, wait: Duration);

    /// A 429 asked every caller of `key` to wait `wait` (its `Retry-After`, the quota's reset,
    /// or [`DEFAULT_PAUSE_ON_429`](super::DEFAULT_PAUSE_ON_429)). By default a
    /// [`pause`](Self::pause); a store shared by a fleet tells the other replicas too, which
    /// it does not for a quota this replica spent.
    fn refused(&self, key: &str, wait: Duration) {
        self.pause(key, wait);
    }

    /// The server's quota for `key` is nearly spent: pace calls as `pace` says, or, with
    /// `None`, stop pacing (the quota has room again).
    fn pace(&self, key: &str, pace: Option<Pace>);
}

/// The in-process [`LimitStore`]: a GCRA cell per key (the arithmetic is `governor`'s, on
/// cells this store holds, read on tokio's clock), and the server's pause and pace per key.
///
/// A call under the limit takes a read lock on the key map and one compare-and-swap on its
/// key's cell; the server's part is behind a flag and costs nothing until a server sends a
/// 429 or a nearly spent quota for that key.
///
/// ```
/// use std::sync::Arc;
/// use http_doer::limit::{LimitStore, MemoryStore, Rate};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let store = MemoryStore::new(Rate::per_second(2)).max_keys(100);
/// assert!(store.acquire("https://api.test").is_ok());
/// let wait = store.acquire("https://api.test").unwrap_err();
/// assert_eq!(wait, std::time::Duration::from_millis(500));
/// assert!(store.acquire("https://other.test").is_ok(), "each key has its own cell");
/// # });
/// ```
pub struct MemoryStore {
    rate: Rate,
    gcra: Option<RateLimiter<Cell, Cells, TokioClock>>,
    clock: TokioClock,
    keys: RwLock<HashMap<String, Cell>>,
    max_keys: usize,
}

impl MemoryStore {
    /// An empty store for `rate`, keeping up to [`DEFAULT_MAX_KEYS`] keys.
    pub fn new(rate: Rate) -> Self {
        let clock = TokioClock::new();
        MemoryStore {
            rate,
            gcra: rate
                .quota()
                .map(|quota: Quota| RateLimiter::new(quota, Cells, clock)),
            clock,
            keys: RwLock::new(HashMap::new()),
            max_keys: DEFAULT_MAX_KEYS,
        }
    }

    /// The most keys kept before idle ones are dropped (see [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, n: usize) -> Self {
        self.max_keys = n;
        self
    }

    /// The local rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Whether a pause of `key` would keep no more keys than the bound: `key` is kept already,
    /// or there is room for it.
    pub(crate) fn has_room_for(&self, key: &str) -> bool {
        {
            let keys = read(&self.keys);
            if keys.len() < self.max_keys || keys.contains_key(key) {
                return true;
            }
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let now = self.clock.now();
        keys.retain(|_, cell| !cell.idle(now));
        keys.len() < self.max_keys || keys.contains_key(key)
    }

    /// How many keys are kept now.
    pub fn len(&self) -> usize {
        read(&self.keys).len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cell of `key`, made (and room made for it) if new.
    fn cell(&self, key: &str) -> Cell {
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(cell) = keys.get(key) {
            return cell.clone();
        }
        if keys.len() >= self.max_keys {
            let now = self.clock.now();
            keys.retain(|_, cell| !cell.idle(now));
        }
        keys.entry(key.to_owned()).or_default().clone()
    }

    /// Admits one call on `cell`: the server's pause and pace first, then the local rate.
    fn admit(&self, cell: &Cell) -> Result<(), Duration> {
        if !cell.0.gated.load(Ordering::Acquire) {
            return self.take(cell);
        }
        let mut server = lock(&cell.0.server);
        let now = Instant::now();
        let waited = server.wait(now);
        if waited.is_none() {
            self.take(cell)?;
            server.took(now);
        }
        if server.is_idle() {
            cell.0.gated.store(false, Ordering::Release);
        }
        waited.map_or(Ok(()), Err)
    }

    /// Takes a place of the local rate.
    fn take(&self, cell: &Cell) -> Result<(), Duration> {
        let Some(gcra) = &self.gcra else {
            return Ok(());
        };
        gcra.check_key(cell)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Runs `f` on the server state of `key`, under its lock, and raises or drops its flag.
    fn with_server(&self, key: &str, f: impl FnOnce(&mut Server, Instant)) {
        // The read guard must be gone before `cell` takes the write lock.
        let known = read(&self.keys).get(key).cloned();
        let cell = known.unwrap_or_else(|| self.cell(key));
        let mut server = lock(&cell.0.server);
        f(&mut server, Instant::now());
        cell.0.gated.store(!server.is_idle(), Ordering::Release);
    }
}

impl LimitStore for MemoryStore {
    fn acquire(&self, key: &str) -> Result<(), Duration> {
        if let Some(cell) = read(&self.keys).get(key) {
            return self.admit(cell);
        }
        let cell = self.cell(key);
        self.admit(&cell)
    }

    fn pause(&self, key: &str, wait: Duration) {
        self.with_server(key, |server, now| {
            let until = crate::timeout::after(now, wait);
            server.paused_until = server.paused_until.max(Some(until));
        });
    }

    fn pace(&self, key: &str, pace: Option<Pace>) {
        let Some(pace) = pace else {
            // Lifting a pace that is not there is the common case: no lock for it.
            let gated = read(&self.keys)
                .get(key)
                .is_some_and(|c| c.0.gated.load(Ordering::Acquire));
            if gated {
                self.with_server(key, |server, _| server.pace = None);
            }
            return;
        };
        self.with_server(key, |server, now| {
            let next = server.pace.map_or(now, |p| p.next);
            server.pace = Some(Paced {
                interval: pace.interval,
                until: crate::timeout::after(now, pace.until),
                next,
            });
        });
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("rate", &self.rate)
            .field("keys", &self.len())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One key's state. Shared by pointer: governor is handed the cell itself as its key, so a
/// call looks the key up once, in the store's map, and governor never hashes it again.
#[derive(Clone, Default)]
struct Cell(Arc<Entry>);

#[derive(Default)]
struct Entry {
    /// governor's theoretical arrival time, in nanoseconds of the limiter's clock; 0: unused.
    tat: AtomicU64,
    /// Whether `server` holds a pause or a pace: read without the lock on every call.
    gated: AtomicBool,
    server: Mutex<Server>,
}

impl Cell {
    /// Whether dropping this cell changes nothing: nobody holds it, its burst is whole and the
    /// server asked nothing of it.
    fn idle(&self, now: Nanos) -> bool {
        Arc::strong_count(&self.0) == 1
            && self.0.tat.load(Ordering::Acquire) <= u64::from(now)
            && self.server_idle()
    }

    /// Whether the server asks nothing of this cell now: a pause or pace that has run out is
    /// cleared here (and the flag dropped), not only by the key's next call.
    fn server_idle(&self) -> bool {
        if !self.0.gated.load(Ordering::Acquire) {
            return true;
        }
        let mut server = lock(&self.0.server);
        let _ = server.wait(Instant::now());
        let idle = server.is_idle();
        if idle {
            self.0.gated.store(false, Ordering::Release);
        }
        idle
    }
}

impl PartialEq for Cell {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Cell {}

impl Hash for Cell {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state);
    }
}

/// governor's state store over the cells: the cell is the key, and holds its own state.
struct Cells;

impl StateStore for Cells {
    type Key = Cell;

    // governor's own in-memory state, `InMemoryState::measure_and_replace_one`, does the
    // same compare-and-swap loop; it is not public.
    fn measure_and_replace<T, F, E>(&self, key: &Cell, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let tat = &key.0.tat;
        let mut prev = tat.load(Ordering::Acquire);
        loop {
            let seen = (prev != 0).then(|| Nanos::from(prev));
            let (result, next) = f(seen)?;
            match tat.compare_exchange_weak(prev, next.into(), Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(result),
                Err(now) => prev = now,
            }
        }
    }
}

/// What the server asked of a key.
#[derive(Default)]
struct Server {
    paused_until: Option<Instant>,
    pace: Option<Paced>,
}

#[derive(Clone, Copy)]
struct Paced {
    interval: Duration,
    until: Instant,
    /// When the next call may go.
    next: Instant,
}

impl Server {
    /// How long a call must wait now, if it must; clears what has run out.
    fn wait(&mut self, now: Instant) -> Option<Duration> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Some(until - now);
            }
            self.paused_until = None;
        }
        if let Some(pace) = self.pace {
            if now >= pace.until {
                self.pace = None;
            } else if pace.next > now {
                // The pace ends at `until`: a call never waits past it.
                return Some(pace.next.min(pace.until) - now);
            }
        }
        None
    }

    /// A call went at `now`: the next one waits an interval.
    fn took(&mut self, now: Instant) {
        if let Some(pace) = &mut self.pace {
            let from = pace.next.max(now);
            pace.next = crate::timeout::after(from, pace.interval);
        }
    }

    fn is_idle(&self) -> bool {
        self.paused_until.is_none() && self.pace.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_too_long_to_add_is_a_long_pause_not_none() {
        let store = MemoryStore::new(Rate::unlimited());
        store.pause("k", Duration::MAX);
        let wait = store.acquire("k").unwrap_err();
        assert!(wait > Duration::from_secs(86_400 * 365), "{wait:?}");
    }

    const KEY: &str = "https://api.test";

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test(start_paused = true)]
    async fn the_local_rate_with_a_burst() {
        let store = MemoryStore::new(Rate::per_second(10).burst(2));
        assert!(store.acquire(KEY).is_ok());
        assert!(store.acquire(KEY).is_ok());
        assert_eq!(store.acquire(KEY), Err(ms(100)));
        tokio::time::advance(ms(100)).await;
        assert!(store.acquire(KEY).is_ok());
        assert_eq!(store.acquire(KEY), Err(ms(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_call_then_ends() {
        let store = MemoryStore::new(Rate::unlimited());
        store.pause(KEY, ms(2000));
        store.pause(KEY, ms(500)); // a shorter pause does not cut the longer one
        assert_eq!(store.acquire(KEY), Err(ms(2000)));
        assert!(store.acquire("https://other.test").is_ok());
        tokio::time::advance(ms(2000)).await;
        assert!(store.acquire(KEY).is_ok());
        let cell = read(&store.keys).get(KEY).unwrap().clone();
        assert!(!cell.0.gated.load(Ordering::Acquire), "flag dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pace_spreads_calls_until_it_runs_out_or_is_lifted() {
        let store = MemoryStore::new(Rate::unlimited());
        let pace = Pace {
            interval: ms(300),
            until: ms(1000),
        };
        store.pace(KEY, Some(pace));
        assert!(store.acquire(KEY).is_ok());
        assert_eq!(store.acquire(KEY), Err(ms(300)));
        tokio::time::advance(ms(300)).await;
        assert!(store.acquire(KEY).is_ok());
        store.pace(KEY, Some(pace)); // a fresh answer keeps the schedule
        assert_eq!(store.acquire(KEY), Err(ms(300)));
        store.pace(KEY, None);
        assert!(store.acquire(KEY).is_ok());
        store.pace(KEY, Some(pace));
        tokio::time::advance(ms(1000)).await;
        assert!(
            store.acquire(KEY).is_ok() && store.acquire(KEY).is_ok(),
            "ran out"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_make_room_busy_ones_stay() {
        let store = MemoryStore::new(Rate::per_second(1)).max_keys(2);
        store.acquire("a").unwrap();
        store.acquire("b").unwrap();
        store.acquire("c").unwrap();
        assert_eq!(
            store.len(),
            3,
            "a and b are busy for a second: kept past the bound"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        store.pause("d", ms(10));
        assert_eq!(store.len(), 1, "a, b and c were idle");
        store.acquire("e").unwrap();
        assert_eq!(store.len(), 2, "d is paused: kept");
        assert!(!store.is_empty());
    }

    #[test]
    fn debug_shows_the_settings() {
        let store = MemoryStore::new(Rate::per_second(3));
        let text = format!("{store:?}");
        assert!(
            text.contains("MemoryStore") && text.contains("keys: 0"),
            "{text}"
        );
    }
}
