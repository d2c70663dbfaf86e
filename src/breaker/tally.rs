//! Closed-state tallies, spread over stripes so that threads calling the same host do not
//! fight over one lock or one cache line.
//!
//! Each thread records its successes in its own stripe (a small lock on its own cache line),
//! so two threads calling one healthy host share no written memory but the circuit's reference
//! count. Each stripe carries the generation it counts for: a transition (under the circuit's
//! lock) moves every stripe to the new generation, one stripe lock at a time, so an outcome
//! that finds its stripe in another generation is late and is not counted, exactly as if one
//! lock guarded everything. Failures, which may trip the circuit, are recorded under the
//! circuit's lock and read every stripe. A success can trip it too, on the failure rate (it can
//! bring the window to its minimum of calls, and old successes leave the window as it rolls
//! on), but the window only changes by what is recorded until its next bucket begins: so once
//! the circuit's lock has found that successes alone cannot trip it, successes skip the check
//! until the next bucket or failure, and a healthy host's circuit is looked at about once per
//! bucket. A success that races a failure may be looked at by the next check rather than its
//! own. A call holds its circuit through its stripe's [`Handle`], so not even a reference count
//! is shared.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::policy::Window;
use super::state::Circuit;

const STRIPES: usize = 4;

/// No bucket of the window: `Window`'s buckets never count that far.
const UNCHECKED: u64 = u64::MAX;

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
    /// The bucket of the window in which successes alone were found unable to trip the
    /// circuit, or `UNCHECKED` after a failure or a change of state.
    checked: Padded<AtomicU64>,
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
            checked: Padded(AtomicU64::new(UNCHECKED)),
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

    /// A success of a call admitted in `generation`; takes no circuit lock. Returns the bucket
    /// of the window it fell in when the trip rules must look at the window (then tell
    /// [`checked`](Self::checked) if successes alone cannot trip the circuit), and `None` when
    /// they need not, or when that generation is over (the success is then counted late).
    pub(crate) fn success(&self, generation: u64, now: Instant) -> Option<u64> {
        let mut stripe = self.lock(stripe_index());
        if stripe.generation != generation {
            stripe.late += 1;
            return None;
        }
        stripe.successes += 1;
        let bucket = stripe.window.record(now, false);
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
        (self.checked.load(Ordering::Acquire) != bucket).then_some(bucket)
    }

    /// Successes alone cannot trip the circuit within `bucket`, by the window as it is now;
    /// called under the circuit's lock.
    pub(crate) fn checked(&self, bucket: u64) {
        self.checked.store(bucket, Ordering::Release);
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
        // Before it is recorded, so that the successes after it look at the window again.
        self.checked.store(UNCHECKED, Ordering::Release);
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
        self.checked.store(UNCHECKED, Ordering::Release);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successes_look_at_the_window_once_per_bucket_and_after_each_failure() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let tally = Tally::new(t0, Duration::from_secs(30)); // 3 s buckets
        assert_eq!(tally.success(0, t0), Some(0));
        assert_eq!(tally.success(0, t0), Some(0)); // not checked yet
        tally.checked(0);
        assert_eq!(tally.success(0, at(2_999)), None);
        assert_eq!(tally.success(0, at(3_000)), Some(1));
        tally.checked(1);
        assert_eq!(tally.success(0, at(3_001)), None);
        tally.failure(0, at(3_002));
        assert_eq!(tally.success(0, at(3_003)), Some(1));
        tally.checked(1);
        tally.reset(1);
        assert_eq!(tally.success(1, at(3_004)), Some(1));
        // A success of an older generation is late and looks at nothing.
        assert_eq!(tally.success(0, at(3_005)), None);
        assert_eq!(tally.lifetime().late, 1);
    }
}
