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
}

pub(crate) type Hook = Arc<dyn Fn(&StateChange) + Send + Sync>;

pub(crate) struct Events {
    hook: Option<Hook>,
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
    pub(crate) fn new(hook: Option<Hook>) -> Self {
        Events {
            hook,
            queue: Mutex::new(VecDeque::new()),
            queued: AtomicUsize::new(0),
            delivering: Mutex::new(()),
        }
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
