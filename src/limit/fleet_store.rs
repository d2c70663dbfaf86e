//! [`FleetStore`]: a [`MemoryStore`] whose server pauses reach the whole fleet.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::pacing::DEFAULT_MAX_PAUSE;
use super::store::{LimitStore, MemoryStore, Pace};
use crate::fleet::{PauseSink, PauseStore};

/// A [`MemoryStore`] that shares the pauses a server asks for with every replica of a fleet:
/// when one replica's [`RateLimiting`](super::RateLimiting) gets a 429 (see
/// [`LimitStore::refused`]), every replica holds that key's calls for the time the server
/// named, instead of each one spending a call of its own to hear the same 429.
///
/// What stays local: the rate (each replica keeps its own [`Rate`](super::Rate): give each
/// its share of the server's), and what a replica reads from the quota fields of its own
/// answers (pacing a nearly spent quota, pausing a spent one until its reset). A replica that
/// was not listening when a pause was sent (starting, or reconnecting) does not learn of it.
///
/// The calls are those of any store: synchronous, never waiting on the network. A pause goes
/// to the fleet on the side, for what is left of it when it is sent; one from the fleet is
/// applied when it arrives, for at most [`DEFAULT_MAX_PAUSE`](super::DEFAULT_MAX_PAUSE), and
/// only to a key this store holds or has room for (whoever can publish to the fleet could name
/// any pause, of any key). Keys travel to the fleet's store as they are: name a key by a hash
/// if it holds a secret (see [`RateLimiting::key_by`](super::RateLimiting::key_by)).
///
/// ```no_run
/// use http_doer::fleet::RedisFleet;
/// use http_doer::limit::{FleetStore, MemoryStore, Rate, RateLimiting};
/// use http_doer::testing::ScriptedDoer;
/// use std::sync::Arc;
///
/// # async fn run() -> Result<(), http_doer::Error> {
/// let fleet = RedisFleet::connect("redis://127.0.0.1:6379")?;
/// // 100 calls a second for the fleet's 4 replicas: 25 each; a 429 pauses all four.
/// let store = FleetStore::new(MemoryStore::new(Rate::per_second(25)), Arc::new(fleet));
/// let limited = RateLimiting::new(ScriptedDoer::new(), Rate::unlimited()).store(store);
/// # let _ = limited; Ok(()) }
/// ```
pub struct FleetStore {
    local: MemoryStore,
    fleet: Arc<dyn PauseStore>,
    /// This store's id in the fleet's store, so its own pauses are not handed back to it.
    id: u64,
}

impl FleetStore {
    /// `local`, with its pauses shared through `fleet`.
    pub fn new(local: MemoryStore, fleet: Arc<dyn PauseStore>) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<FleetStore>| {
            let sink: Weak<dyn PauseSink> = me.clone();
            let id = fleet.attach_pauses(sink);
            FleetStore { local, fleet, id }
        })
    }

    /// The store of this replica's own state.
    pub fn local(&self) -> &MemoryStore {
        &self.local
    }
}

impl LimitStore for FleetStore {
    fn acquire(&self, key: &str) -> Result<(), Duration> {
        self.local.acquire(key)
    }

    fn pause(&self, key: &str, wait: Duration) {
        self.local.pause(key, wait);
    }

    fn refused(&self, key: &str, wait: Duration) {
        self.local.pause(key, wait);
        self.fleet.paused(self.id, key, wait);
    }

    fn pace(&self, key: &str, pace: Option<Pace>) {
        self.local.pace(key, pace);
    }
}

impl PauseSink for FleetStore {
    fn paused(&self, key: &str, wait: Duration) {
        // Whoever can publish to the fleet could name any pause, for any key: none lasts
        // longer than a server's own may by default, and a full store takes no new key from
        // the fleet (a paused key is busy, so it would be kept past the bound).
        if self.local.has_room_for(key) {
            self.local.pause(key, wait.min(DEFAULT_MAX_PAUSE));
        }
    }
}

impl fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetStore")
            .field("local", &self.local)
            .field("fleet", &self.fleet)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::limit::Rate;

    /// A fleet in one process: every pause goes to every attached store but its sender.
    #[derive(Debug, Default)]
    struct Room {
        sinks: Mutex<Vec<(u64, Weak<dyn PauseSink>)>>,
        sent: Mutex<Vec<(u64, String, Duration)>>,
    }

    impl PauseStore for Room {
        fn attach_pauses(&self, sink: Weak<dyn PauseSink>) -> u64 {
            let mut sinks = self.sinks.lock().unwrap();
            let id = sinks.len() as u64 + 1;
            sinks.push((id, sink));
            id
        }

        fn paused(&self, from: u64, key: &str, wait: Duration) {
            self.sent.lock().unwrap().push((from, key.to_owned(), wait));
            let sinks = self.sinks.lock().unwrap().clone();
            for (id, sink) in sinks {
                if let (true, Some(sink)) = (id != from, sink.upgrade()) {
                    sink.paused(key, wait);
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_heard_by_one_replica_holds_the_key_on_every_replica() {
        let room = Arc::new(Room::default());
        let a = FleetStore::new(MemoryStore::new(Rate::unlimited()), room.clone());
        let b = FleetStore::new(MemoryStore::new(Rate::unlimited()), room.clone());
        assert!(b.acquire("https://api.test").is_ok());

        a.refused("https://api.test", Duration::from_secs(3));
        assert_eq!(
            room.sent.lock().unwrap().as_slice(),
            [(1, "https://api.test".to_owned(), Duration::from_secs(3))],
            "sent once, by its id"
        );
        for store in [&a, &b] {
            assert_eq!(
                store.acquire("https://api.test"),
                Err(Duration::from_secs(3))
            );
            assert!(
                store.acquire("https://other.test").is_ok(),
                "other keys go on"
            );
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(
            b.acquire("https://api.test").is_ok(),
            "the pause ends everywhere"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pacing_and_the_rate_stay_each_replicas_own() {
        let room = Arc::new(Room::default());
        let a = FleetStore::new(MemoryStore::new(Rate::per_second(1)), room.clone());
        let b = FleetStore::new(MemoryStore::new(Rate::per_second(1)), room.clone());
        let pace = Pace {
            interval: Duration::from_secs(10),
            until: Duration::from_secs(60),
        };
        a.pace("k", Some(pace));
        assert!(a.acquire("k").is_ok());
        assert!(a.acquire("k").is_err(), "a paces itself");
        assert!(b.acquire("k").is_ok(), "b's place is its own");
        // A quota this replica spent pauses it alone, until the reset.
        a.pause("q", Duration::from_secs(5));
        assert!(a.acquire("q").is_err());
        assert!(b.acquire("q").is_ok(), "b's quota is its own");
        assert!(room.sent.lock().unwrap().is_empty(), "neither is sent");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_from_the_fleet_lasts_at_most_the_default_max_pause() {
        let room = Arc::new(Room::default());
        let a = FleetStore::new(MemoryStore::new(Rate::unlimited()), room.clone());
        a.paused("k", Duration::from_millis(u64::MAX));
        assert_eq!(a.acquire("k"), Err(DEFAULT_MAX_PAUSE));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_store_gets_nothing_and_breaks_nothing() {
        let room = Arc::new(Room::default());
        let a = FleetStore::new(MemoryStore::new(Rate::unlimited()), room.clone());
        let gone = FleetStore::new(MemoryStore::new(Rate::unlimited()), room.clone());
        let weak = Arc::downgrade(&gone);
        drop(gone);
        a.refused("k", Duration::from_secs(1));
        assert!(a.acquire("k").is_err());
        assert!(
            weak.upgrade().is_none(),
            "the fleet kept no strong hold on it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_store_takes_no_new_key_from_the_fleet() {
        let room = Arc::new(Room::default());
        let a = FleetStore::new(
            MemoryStore::new(Rate::unlimited()).max_keys(2),
            room.clone(),
        );
        assert!(a.acquire("k1").is_ok() && a.acquire("k2").is_ok());
        a.paused("k2", Duration::from_secs(9));
        a.paused("k3", Duration::from_secs(9));
        assert_eq!(
            a.acquire("k2"),
            Err(Duration::from_secs(9)),
            "a key it holds is paused"
        );
        assert_eq!(a.local().len(), 2, "no cell made for a key from the fleet");
    }
}
