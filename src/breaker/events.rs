//! State changes: the hook, the `tracing` events, and their order.
//!
//! A transition is decided under its circuit's lock, but the hook must not run under that lock
//! (a hook that reads the breaker's state would deadlock). So transitions are queued under the
//! lock, in the order they happen, and delivered after it is released by whichever thread gets
//! the delivery lock; the others leave their events to it. The hook therefore sees every change
//! once, in order, never two at a time, and may read the breaker.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use super::state::State;

/// A circuit changed state; passed to [`Breaker::on_state_change`](super::Breaker::on_state_change).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange {
    /// The circuit's key (by default the origin, `scheme://host[:port]`).
    pub key: Arc<str>,
    /// The state it left.
    pub from: State,
    /// The state it entered.
    pub to: State,
    /// The circuit's generation after the change: it grows by one at every change, so the
    /// changes of one circuit can be put in order.
    pub generation: u64,
    /// Whether the fleet made this change (another replica's news, through a
    /// [`CircuitStore`](crate::fleet::CircuitStore)) rather than this breaker's own calls.
    pub remote: bool,
    /// When opened: for how long.
    pub(crate) open_for: Option<std::time::Duration>,
}

pub(crate) type Hook = Arc<dyn Fn(&StateChange) + Send + Sync>;

/// Called with a circuit's key when it opens from closed: a shared stale cache fetches the
/// fleet's answers for it.
pub(crate) type OnOpen = Arc<dyn Fn(&str) + Send + Sync>;

pub(crate) struct Events {
    hook: Option<Hook>,
    /// Where this breaker's own changes are told to the fleet.
    fleet: Option<super::fleet::Link>,
    on_open: Option<OnOpen>,
    queue: Mutex<VecDeque<StateChange>>,
    /// Length of `queue`, readable without its lock: almost every call finds it at zero and
    /// leaves without touching a shared lock.
    queued: AtomicUsize,
    delivering: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking hook must not disable the breaker for good.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Events {
    pub(crate) fn new(hook: Option<Hook>, fleet: Option<super::fleet::Link>) -> Self {
        Events {
            hook,
            fleet,
            on_open: None,
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            delivering: Mutex::new(()),
        }
    }

    /// Calls `f` (if any) when a circuit opens from closed.
    pub(crate) fn on_open(mut self, f: Option<OnOpen>) -> Self {
        self.on_open = f;
        self
    }

    /// Queues a change; called under the circuit's lock so the queue keeps the real order.
    pub(crate) fn push(&self, change: StateChange) {
        let mut queue = lock(&self.queue);
        queue.push_back(change);
        self.queued.store(queue.len(), Ordering::Release);
    }

    fn pop(&self) -> Option<StateChange> {
        let mut queue = lock(&self.queue);
        let change = queue.pop_front();
        self.queued.store(queue.len(), Ordering::Release);
        change
    }

    /// Delivers queued changes, unless another thread is already doing it; called with no
    /// circuit lock held.
    pub(crate) fn deliver(&self) {
        // The thread that queued a change sees its own store; others' changes are delivered
        // by their own threads.
        if self.queued.load(Ordering::Acquire) == 0 {
            return;
        }
        loop {
            // Pairs with the fence after the unlock below: either this thread sees the lock
            // free, or its holder sees this thread's change in `queued`.
            fence(Ordering::SeqCst);
            let guard = match self.delivering.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                // The thread that holds it delivers ours too: it checks the queue again after
                // letting go (below).
                Err(TryLockError::WouldBlock) => return,
            };
            while let Some(change) = self.pop() {
                emit(&change);
                if let Some(fleet) = &self.fleet {
                    fleet.tell(&change);
                }
                if let Some(on_open) = &self.on_open
                    && change.from == State::Closed
                    && change.to == State::Open
                {
                    on_open(&change.key);
                }
                crate::telemetry::breaker_state(change.to);
                if let Some(hook) = &self.hook {
                    hook(&change);
                }
            }
            drop(guard);
            // A change pushed after the last pop but before the unlock found the delivery lock
            // taken and left; look again so it is not stranded.
            fence(Ordering::SeqCst);
            if self.queued.load(Ordering::Acquire) == 0 {
                return;
            }
        }
    }
}

fn emit(change: &StateChange) {
    let key = &*change.key;
    let (from, to, generation) = (change.from.as_str(), change.to.as_str(), change.generation);
    match change.to {
        State::Open => tracing::warn!(
            target: "http_doer::breaker",
            key, from, to, generation, "circuit opened"
        ),
        State::HalfOpen => tracing::info!(
            target: "http_doer::breaker",
            key, from, to, generation, "circuit half-open: probing"
        ),
        State::Closed => tracing::info!(
            target: "http_doer::breaker",
            key, from, to, generation, "circuit closed"
        ),
    }
}
