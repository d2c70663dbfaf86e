//! The breaker's side of a [`CircuitStore`]: what it tells the fleet, and what it does with
//! what the fleet tells it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;
use super::events::StateChange;
use super::policy::Policy;
use super::state::{Circuit, State};
use crate::fleet::{CircuitSink, CircuitStore, ProbeLease, Trip};

/// One breaker's link to its fleet store.
pub(crate) type Link = Arc<FleetLink>;

pub(crate) struct FleetLink {
    store: Arc<dyn CircuitStore>,
    /// This breaker's id in the store, set once it is attached.
    id: OnceLock<u64>,
}

impl FleetLink {
    pub(crate) fn new(store: Arc<dyn CircuitStore>) -> Link {
        Arc::new(FleetLink {
            store,
            id: OnceLock::new(),
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

    /// A call of `circuit` failed.
    pub(crate) fn failed(&self, circuit: &Circuit, trip: Trip) {
        circuit.fleet_failure();
        self.store.failed(self.id(), circuit.key(), trip);
    }

    /// A call of `circuit` succeeded: one relaxed load of the circuit's own flag, unless its
    /// failures are counted in the fleet (then the fleet's count starts again). A host that
    /// stays down costs the others nothing.
    #[inline]
    pub(crate) fn succeeded(&self, circuit: &Circuit) {
        if circuit.fleet_success() {
            self.store.recovered(self.id(), circuit.key());
        }
    }

    pub(crate) fn probe(&self, key: &str) -> ProbeLease {
        self.store.probe(key)
    }
}

impl CircuitSink for Shared {
    fn opened(&self, key: &str, remaining: Duration) {
        // A host this replica has not called gets a circuit too (its first call is refused
        // at once), but only within `max_circuits`: the news comes from a channel anyone with
        // access to Redis can publish on.
        let circuit = self
            .find(key)
            .or_else(|| self.insert_within(key.to_owned(), true));
        match circuit {
            Some(c) => c.force_open(remaining, Instant::now(), &self.config.policy, &self.events),
            None => tracing::debug!(
                target: "http_doer::breaker",
                key,
                "the fleet opened a circuit this breaker has no room for; not kept"
            ),
        }
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
