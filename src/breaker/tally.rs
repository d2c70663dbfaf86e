//! Closed-state tallies, spread over stripes so that threads calling the same host do not
//! fight over one lock or one cache line.
//!
//! Each thread records its successes in its own stripe (a small lock on its own cache line),
//! so two threads calling one healthy host share no written memory but the circuit's reference
//! count. Each stripe carries the generation it counts for: a transition (under the circuit's
//! lock) moves every stripe to the new generation, one stripe lock at a time, so an outcome
//! that finds its stripe in another generation is late and is not counted, exactly as if one
//! lock guarded everything. Failures, which may trip the circuit, are recorded under the
//! circuit's lock and read every stripe. A call holds its circuit through its stripe's
//! [`Handle`], so not even a reference count is shared.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::policy::Window;
use super::state::Circuit;

const STRIPES: usize = 4;

/// Keeps `T` on cache lines of its own (128 bytes: x86 prefetches lines in pairs).
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

struct Stripe {
    generation: u64,
    window: Window,
    successes: u64,
    failures: u64,
    ignored: u64,
    late: u64,
}

/// Lifetime counts kept by the stripes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Lifetime {
    pub(crate) successes: u64,
    pub(crate) failures: u64,
    pub(crate) ignored: u64,
    pub(crate) late: u64,
}

pub(crate) struct Tally {
    /// Failures in a row: `generation << 32 | count` (the low 32 bits of the generation).
    consecutive: Padded<AtomicU64>,
    stripes: [Padded<Mutex<Stripe>>; STRIPES],
}

fn pack(generation: u64, count: u32) -> u64 {
    generation << 32 | u64::from(count)
}

fn unpack(word: u64, generation: u64) -> u32 {
    // A count left from another generation is zero in this one.
    if word >> 32 == generation & 0xffff_ffff {
        word as u32
    } else {
        0
    }
}

/// What a call holds on to while it runs: one of its circuit's per-stripe handles.
///
/// Each thread clones the handle of its own stripe, whose reference count sits on cache lines
/// of its own, so two threads calling one host never write to the same `Arc` count; the
/// circuit's own count only changes when a handle is made or dropped.
#[repr(align(128))]
pub(crate) struct Handle(Arc<Circuit>);

impl Deref for Handle {
    type Target = Circuit;
    fn deref(&self) -> &Circuit {
        &self.0
    }
}

/// A circuit and its handles, as kept in the breaker's map.
pub(crate) struct Handles([Arc<Handle>; STRIPES]);

impl Handles {
    pub(crate) fn new(circuit: Circuit) -> Self {
        let circuit = Arc::new(circuit);
        Handles(std::array::from_fn(|_| Arc::new(Handle(circuit.clone()))))
    }

    /// The handle of this thread's stripe.
    pub(crate) fn mine(&self) -> Arc<Handle> {
        self.0[stripe_index()].clone()
    }

    pub(crate) fn circuit(&self) -> &Circuit {
        &self.0[0]
    }

    /// Whether a call, or a thread's cache, holds the circuit.
    pub(crate) fn in_use(&self) -> bool {
        self.0.iter().any(|h| Arc::strong_count(h) > 1)
    }
}

/// This thread's stripe.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

impl Tally {
    pub(crate) fn new(origin: Instant, window: Duration) -> Self {
        Tally {
            consecutive: Padded(AtomicU64::new(pack(0, 0))),
            stripes: std::array::from_fn(|_| {
                Padded(Mutex::new(Stripe {
                    generation: 0,
                    window: Window::new(origin, window),
                    successes: 0,
                    failures: 0,
                    ignored: 0,
                    late: 0,
                }))
            }),
        }
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Stripe> {
        // No user code runs under this lock; recover from a poisoned one.
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A success of a call admitted in `generation`; takes no circuit lock. Returns false
    /// (and counts it late) if that generation is over.
    pub(crate) fn success(&self, generation: u64, now: Instant) -> bool {
        let mut stripe = self.lock(stripe_index());
        if stripe.generation != generation {
            stripe.late += 1;
            return false;
        }
        stripe.successes += 1;
        stripe.window.record(now, false);
        // Reset the run of failures, but only write when there is one: a healthy host's
        // calls then only read this line.
        let mut word = self.consecutive.load(Ordering::Acquire);
        while unpack(word, generation) != 0 {
            match self.consecutive.compare_exchange_weak(
                word,
                pack(generation, 0),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(seen) => word = seen,
            }
        }
        true
    }

    /// An ignored outcome of a call admitted in `generation`.
    pub(crate) fn ignored(&self, generation: u64) {
        let mut stripe = self.lock(stripe_index());
        if stripe.generation == generation {
            stripe.ignored += 1;
        } else {
            stripe.late += 1;
        }
    }

    /// A failure in the current generation; called under the circuit's lock. Returns the
    /// failures in a row and the window's successes and failures, for the trip rules.
    pub(crate) fn failure(&self, generation: u64, now: Instant) -> (u32, u64, u64) {
        {
            let mut stripe = self.lock(stripe_index());
            stripe.failures += 1;
            stripe.window.record(now, true);
        }
        let mut word = self.consecutive.load(Ordering::Acquire);
        let consecutive = loop {
            let next = unpack(word, generation).saturating_add(1);
            match self.consecutive.compare_exchange_weak(
                word,
                pack(generation, next),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break next,
                Err(seen) => word = seen,
            }
        };
        let (ok, failed) = self.window(now);
        (consecutive, ok, failed)
    }

    /// Failures in a row in `generation`.
    pub(crate) fn consecutive(&self, generation: u64) -> u32 {
        unpack(self.consecutive.load(Ordering::Acquire), generation)
    }

    /// Successes and failures in the window; called under the circuit's lock, so every stripe
    /// is in the current generation.
    pub(crate) fn window(&self, now: Instant) -> (u64, u64) {
        (0..STRIPES).fold((0, 0), |(ok, failed), i| {
            let (o, f) = self.lock(i).window.totals(now);
            (ok + o, failed + f)
        })
    }

    /// Starts `generation` with nothing counted; called under the circuit's lock, before the
    /// new state is published.
    pub(crate) fn reset(&self, generation: u64) {
        self.consecutive
            .store(pack(generation, 0), Ordering::Release);
        for i in 0..STRIPES {
            let mut stripe = self.lock(i);
            stripe.generation = generation;
            stripe.window.clear();
        }
    }

    pub(crate) fn lifetime(&self) -> Lifetime {
        (0..STRIPES).fold(Lifetime::default(), |sum, i| {
            let s = self.lock(i);
            Lifetime {
                successes: sum.successes + s.successes,
                failures: sum.failures + s.failures,
                ignored: sum.ignored + s.ignored,
                late: sum.late + s.late,
            }
        })
    }
}
