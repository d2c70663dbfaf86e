//! State a fleet of replicas shares: breaker circuits, serve-stale answers, the retry budget
//! and the pauses servers ask for, each through a small store trait; [`RedisFleet`] (feature
//! `redis`) implements all four on Redis.
//!
//! * [`CircuitStore`]: where a [`Breaker`](crate::Breaker) tells the fleet that a circuit
//!   opened, closed or saw a failure, and learns what the others saw ([`CircuitSink`]); and
//!   who may probe a half-open circuit ([`ProbeLease`]);
//! * [`StaleStore`]: where serve-stale answers are kept for every replica ([`StaleSink`]);
//! * [`BudgetStore`]: where replicas exchange the counts of their retry budgets;
//! * [`PauseStore`]: where the pauses a server asks of a rate limiter with a 429 reach every
//!   replica ([`PauseSink`], [`FleetStore`](crate::limit::FleetStore));
//! * [`share_budget`]: the loop that exchanges one [`RetryBudget`](crate::retrying::RetryBudget)'s counts every
//!   [100 ms](DEFAULT_BUDGET_EXCHANGE).
//!
//! Without a store, everything stays in the process, as it always has.
//!
//! # The rule every store keeps
//!
//! A healthy call never waits on the network, and a store that fails never fails a call. The
//! calls of [`CircuitStore`] and [`StaleStore`] are synchronous and return at once: a
//! networked store queues the work for a task of its own and answers from what it holds in
//! memory. When it cannot reach its backend, [`CircuitStore::probe`] answers
//! [`ProbeLease::Local`] and each replica's breaker behaves as it would alone.
//!
//! # What is shared, and what stays local
//!
//! * **Opening** is shared: a replica whose circuit trips tells the others, which open theirs
//!   for the rest of its open period (a replica that starts later reads the stored state).
//! * **Failures in a row** are counted fleet-wide: each failure adds one to the fleet's count
//!   for the circuit, and a success on a replica that had failed resets it. When the count
//!   reaches the threshold, the circuit opens everywhere, so a host that goes down costs the
//!   fleet about one threshold of failures, not one per replica. The **failure rate** stays
//!   local: it needs every call counted, and a healthy call must not touch the network.
//! * **Probing** is fleet-wide: when the open period ends, the first replica with a call for
//!   the host takes the probe lease (a lock with an expiry of one probe interval, so a crashed
//!   holder cannot keep it; a replica with no calls never asks, so it cannot hold the probe
//!   back), and only it lets probes through; the others keep refusing (or serving stale answers) until
//!   its probes close the circuit, which **closes it everywhere**, or fail, which opens it
//!   everywhere again.
//! * **Stale answers** ([`ServeStale::share`](crate::breaker::ServeStale::share)) stored by
//!   one replica can be served by every other, under the same rules and keys as in one
//!   process; a circuit that opens fetches its answers from the store in the background, so
//!   serving one never waits either, and a replica started during an outage serves what the
//!   others kept.
//! * **Pauses** a server asks of a rate limiter ([`FleetStore`](crate::limit::FleetStore)): a
//!   429 heard by one replica pauses that key on every replica, for what is left of the time
//!   the server named. The rate, and what a replica reads from its own answers' quota fields,
//!   stay its own; a replica that was not listening when the pause was sent does not learn of
//!   it (it will hear its own 429).

pub(crate) mod answer;
mod budget;
mod hasher;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;

pub use budget::{BudgetCounts, DEFAULT_BUDGET_EXCHANGE, share_budget};
pub(crate) use hasher::StaleHasher;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{
    DEFAULT_PREFIX, DEFAULT_REDIS_TIMEOUT, FleetKey, RedisFleet, RedisFleetBuilder, RedisStats,
    StaleBound,
};

/// Who may let a probe through a half-open circuit, as the store knows now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeLease {
    /// The store has no say (no fleet news of this circuit, or its backend is out of reach):
    /// the breaker probes as it would alone.
    Local,
    /// This replica holds the fleet's lease: its probes go through.
    Held,
    /// Another replica holds it, or it is being asked for: refuse, and try again after this.
    Elsewhere(Duration),
}

/// What makes the fleet open a circuit on its failures in a row; passed with each failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trip {
    /// Failures in a row, fleet-wide, that open the circuit (0: never on the count).
    pub threshold: u32,
    /// How long a circuit opened by the fleet's count stays open.
    pub open_for: Duration,
    /// How long the count lives without a new failure.
    pub window: Duration,
}

/// Where a breaker learns what the fleet decided; implemented by the breaker, called by a
/// [`CircuitStore`] from its own task. Neither call may block for long: each takes one
/// circuit's lock briefly.
pub trait CircuitSink: Send + Sync {
    /// Circuit `key` opened somewhere in the fleet; it stays open for `remaining`. `key` comes
    /// from the fleet's channel, which anyone who can publish on it writes: a sink should make
    /// no more circuits for it than it would bound on its own (a [`Breaker`](crate::Breaker)
    /// makes none past its `max_circuits`).
    fn opened(&self, key: &str, remaining: Duration);
    /// Circuit `key` closed somewhere in the fleet (its probes succeeded).
    fn closed(&self, key: &str);
}

/// Where a [`Breaker`](crate::Breaker)'s circuits meet the fleet's; see the
/// [module docs](self). Every call returns at once and never fails.
pub trait CircuitStore: Send + Sync + fmt::Debug + 'static {
    /// Registers a breaker: news from the fleet goes to `sink` while it lives. Returns the id
    /// the breaker passes with its own news, so they are not sent back to it.
    fn attach(&self, sink: Weak<dyn CircuitSink>) -> u64;
    /// Circuit `key` of breaker `from` opened (tripped, or a probe failed) for `open_for`.
    fn opened(&self, from: u64, key: &str, open_for: Duration);
    /// Circuit `key` of breaker `from` closed: its probes succeeded.
    fn closed(&self, from: u64, key: &str);
    /// A call of circuit `key` failed on breaker `from`: one more for the fleet's count.
    fn failed(&self, from: u64, key: &str, trip: Trip);
    /// A call of circuit `key` succeeded on breaker `from` after it had failed: the fleet's
    /// count starts again.
    fn recovered(&self, from: u64, key: &str);
    /// Whether this replica may probe half-open circuit `key` now.
    fn probe(&self, key: &str) -> ProbeLease;
}

/// Where a breaker's serve-stale cache takes in answers fetched from a [`StaleStore`].
pub trait StaleSink: Send + Sync {
    /// An answer for circuit `circuit`, named `name`, as [`StaleStore::put`] was given it,
    /// kept for `age` already. What cannot be read, or may not be served, is dropped.
    fn adopt(&self, circuit: &str, name: u128, answer: &[u8], age: Duration);
}

/// Where serve-stale answers are kept for the whole fleet; see the [module docs](self). Every
/// call returns at once and never fails. Answers are opaque bytes here; a store that leaves
/// the process must seal them (encrypt and authenticate), as [`RedisFleet`] does.
pub trait StaleStore: Send + Sync + fmt::Debug + 'static {
    /// The key of the hash that names answers, the same on every replica (a per-process
    /// random key would give each replica its own names). Derived from a secret, so a name
    /// tells nothing of the URL or credentials behind it.
    fn naming_key(&self) -> [u64; 4];
    /// Keeps `answer`, named `name`, of circuit `circuit`, for `ttl`.
    fn put(&self, circuit: &str, name: u128, answer: Bytes, ttl: Duration);
    /// Forgets the answer named `name` (a newer answer may not be kept).
    fn remove(&self, circuit: &str, name: u128);
    /// Fetches every answer kept for `circuit` into `sink`, in the background.
    fn fetch(&self, circuit: &str, sink: Weak<dyn StaleSink>);
}

/// Where a rate limiter's store takes in the pauses other replicas heard from a server.
pub trait PauseSink: Send + Sync {
    /// Every caller of `key` should wait `wait` from now: another replica got a 429 that asked
    /// for it. `key` and `wait` come from the fleet's channel, which anyone who can publish on
    /// it writes: [`RedisFleet`] caps `wait` at
    /// [`DEFAULT_MAX_PAUSE`](crate::limit::DEFAULT_MAX_PAUSE), and a sink should take no more
    /// keys than it would bound on its own.
    fn paused(&self, key: &str, wait: Duration);
}

/// Where the pauses a server asks for with a 429 are shared with the whole fleet, so that every replica waits, not only the one that was told; see
/// [`limit::FleetStore`](crate::limit::FleetStore). Every call returns at once and never fails.
pub trait PauseStore: Send + Sync + fmt::Debug + 'static {
    /// Registers a store: pauses from the fleet go to `sink` while it lives. Returns the id the
    /// store passes with its own pauses, so they are not sent back to it.
    fn attach_pauses(&self, sink: Weak<dyn PauseSink>) -> u64;
    /// Store `from` got a 429 that paused `key` for `wait`: tell the fleet.
    fn paused(&self, from: u64, key: &str, wait: Duration);
}

/// Where replicas exchange the counts of a shared retry budget; see [`share_budget`].
#[async_trait::async_trait]
pub trait BudgetStore: Send + Sync + fmt::Debug + 'static {
    /// Publishes `mine`, this replica's counts over the last second for budget `name`, and
    /// returns the sum of the other replicas' (`None` when the store cannot tell: the budget
    /// then counts this replica alone).
    async fn exchange(&self, name: &str, mine: BudgetCounts) -> Option<BudgetCounts>;
}

impl fmt::Debug for dyn CircuitSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CircuitSink")
    }
}
