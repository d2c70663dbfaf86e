//! The breaker's side of a [`CircuitStore`]: what it tells the fleet, and what it does with
//! what the fleet tells it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;
use super::events::StateChange;
use super::policy::Policy;
use super::state::State;
use crate::fleet::{CircuitSink, CircuitStore, ProbeLease, Trip};

/// One breaker's link to its fleet store.
pub(crate) type Link = Arc<FleetLink>;

pub(crate) struct FleetLink {
    store: Arc<dyn CircuitStore>,
    /// This breaker's id in the store, set once it is attached.
    id: OnceLock<u64>,
    /// Circuits whose failures this breaker added to the fleet's count since their last
    /// success: a success on one of them resets the count. `dirty` is their number, read by
    /// every success without a lock (it is 0 while all is well).
    dirty: AtomicUsize,
    failing: Mutex<HashSet<Arc<str>>>,
}

impl FleetLink {
    pub(crate) fn new(store: Arc<dyn CircuitStore>) -> Link {
        Arc::new(FleetLink {
            store,
            id: OnceLock::new(),
            dirty: AtomicUsize::new(0),
            failing: Mutex::new(HashSet::new()),
        })
    }

    pub(crate) fn attach(&self, sink: std::sync::Weak<dyn CircuitSink>) {
        let id = self.store.attach(sink);
        let _ = self.id.set(id);
    }

    fn id(&self) -> u64 {
        self.id.get().copied().unwrap_or(0)
    }

    /// Tells the fleet of one of this breaker's own changes (not of one the fleet made).
    pub(crate) fn tell(&self, change: &StateChange) {
        if change.remote {
            return;
        }
        match (change.from, change.to) {
            (_, State::Open) => {
                let open_for = change.open_for.unwrap_or(Duration::ZERO);
                self.store.opened(self.id(), &change.key, open_for);
            }
            (State::HalfOpen | State::Open, State::Closed) => {
                self.store.closed(self.id(), &change.key)
            }
            _ => {}
        }
    }

    /// A call of `key` failed.
    pub(crate) fn failed(&self, key: &Arc<str>, trip: Trip) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if failing.insert(key.clone()) {
            self.dirty.store(failing.len(), Ordering::Relaxed);
        }
        drop(failing);
        self.store.failed(self.id(), key, trip);
    }

    /// A call of `key` succeeded: one relaxed load unless this breaker has failures counted
    /// in the fleet.
    #[inline]
    pub(crate) fn succeeded(&self, key: &Arc<str>) {
        if self.dirty.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        if failing.remove(key) {
            self.dirty.store(failing.len(), Ordering::Relaxed);
            drop(failing);
            self.store.recovered(self.id(), key);
        }
    }

    pub(crate) fn probe(&self, key: &str) -> ProbeLease {
        self.store.probe(key)
    }
}

impl CircuitSink for Shared {
    fn opened(&self, key: &str, remaining: Duration) {
        let circuit = self
            .find(key)
            .unwrap_or_else(|| self.insert(key.to_owned()));
        circuit.force_open(remaining, Instant::now(), &self.config.policy, &self.events);
    }

    fn closed(&self, key: &str) {
        if let Some(circuit) = self.find(key) {
            circuit.force_close(Instant::now(), &self.config.policy, &self.events);
        }
    }
}

/// What makes the fleet open a circuit on its count: this breaker's run of failures, its
/// first open period, and its window as the count's life.
pub(crate) fn trip(policy: &Policy) -> Trip {
    Trip {
        threshold: policy.consecutive_failures,
        open_for: policy.open_duration(0),
        window: policy.window,
    }
}
