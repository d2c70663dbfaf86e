//! The state machine of one circuit: closed, open, half-open, with generations.
//!
//! Every change of state starts a new generation. A call is admitted in one generation and its
//! outcome only counts if the circuit is still in that generation when it returns (gobreaker's
//! rule): a slow call started before the circuit opened cannot close it, or trip it again.
//!
//! Admitting a call into a closed circuit, and rejecting one at an open circuit before its
//! deadline, read two atomics and take no lock; a closed-state success or ignored outcome takes
//! only the calling thread's stripe lock (see `tally`), except for the successes that must look
//! at the failure rate (about one per bucket of the window, and the ones after a failure);
//! everything else (failures, changes of state, probes) takes the circuit's short lock.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::classify::Verdict;
use super::events::{Events, StateChange};
use super::policy::Policy;
use super::tally::{Padded, Tally};

/// The state of a circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls are refused at once (or answered from the stale cache) until the open period
    /// ends.
    Open,
    /// A limited number of probes go through; the rest are refused. Enough successful probes
    /// close the circuit; one failed probe opens it again.
    HalfOpen,
}

impl State {
    /// `"closed"`, `"open"` or `"half-open"`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }

    fn code(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    fn from_code(code: u64) -> State {
        match code & 3 {
            0 => State::Closed,
            1 => State::Open,
            _ => State::HalfOpen,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lifetime counts of one circuit (they never reset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    /// Calls that returned a success.
    pub successes: u64,
    /// Calls that returned a failure.
    pub failures: u64,
    /// Calls whose outcome was [`Verdict::Ignored`].
    pub ignored: u64,
    /// Calls refused because the circuit was open or its probe slots were taken (whether or
    /// not a stale answer was served instead).
    pub rejected: u64,
    /// Calls dropped by their caller before they returned: neither success nor failure.
    pub cancelled: u64,
    /// Outcomes that arrived after the circuit had changed state since the call began, and
    /// were therefore not counted.
    pub late: u64,
    /// Half-open probes that did not return within the probe timeout and gave up their slot.
    pub abandoned_probes: u64,
}

/// What a circuit looks like at one instant; see [`Breaker::snapshot`](super::Breaker::snapshot).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The circuit's key.
    pub key: Arc<str>,
    /// Its state.
    pub state: State,
    /// Its generation: the number of state changes so far.
    pub generation: u64,
    /// Failures in a row since the last success (closed state).
    pub consecutive_failures: u32,
    /// Successes within the rolling window (closed state).
    pub window_successes: u64,
    /// Failures within the rolling window (closed state).
    pub window_failures: u64,
    /// Half-open probes still in flight, including those of an earlier half-open period
    /// (each holds its slot until it returns, is dropped, or times out).
    pub probes_in_flight: u32,
    /// When open: how long until a probe is let through.
    pub retry_after: Option<Duration>,
    /// Lifetime counts.
    pub counts: Counts,
}

/// What [`Circuit::admit`] decided.
pub(crate) enum Admission {
    /// Go ahead; report the outcome with this ticket.
    Admitted(Ticket),
    /// Refused; a probe may be let through after this long.
    Rejected(Duration),
}

/// The generation a call was admitted in, and its probe slot if it is a probe.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    generation: u64,
    probe: Option<u64>,
}

impl Ticket {
    pub(crate) fn is_probe(&self) -> bool {
        self.probe.is_some()
    }
}

pub(crate) struct Circuit {
    /// Read by every call, written only at a change of state: on lines of its own, away from
    /// the `Arc`'s reference count and the locks.
    hot: Padded<Hot>,
    tally: Tally,
    core: Padded<Mutex<Core>>,
    key: Arc<str>,
    origin: Instant,
    rejected: AtomicU64,
    cancelled: AtomicU64,
}

struct Hot {
    /// `generation << 2 | state`, written under `core`'s lock, read without it.
    word: AtomicU64,
    /// When open: the end of the open period, in nanoseconds since `origin`.
    open_until: AtomicU64,
    /// A failure of this circuit went into the fleet's count and no success has reset it
    /// since: read by every success of a breaker in a fleet, on the line it reads anyway.
    fleet_failed: AtomicBool,
}

struct Core {
    state: State,
    generation: u64,
    open_until: Instant,
    /// Failed half-open periods in a row, for a growing open duration.
    reopens: u32,
    /// Probes in flight, of this generation or an earlier one: id and start. A probe holds
    /// its slot until it returns, is dropped, or times out, even if the circuit has reopened
    /// since, so the host sees no more than the allowed number of probes at once, except that a
    /// timed-out or dropped probe frees its slot while the host may still be working on it.
    probes: Vec<(u64, Instant)>,
    probe_successes: u32,
    next_probe: u64,
    counts: Counts,
    /// Set while a change the fleet decided is applied, so it is not told back to the fleet.
    remote: bool,
}

impl Core {
    /// Frees probe `id`'s slot; false if it had none left (abandoned after the timeout).
    fn remove_probe(&mut self, id: u64) -> bool {
        match self.probes.iter().position(|&(p, _)| p == id) {
            Some(slot) => {
                self.probes.swap_remove(slot);
                true
            }
            None => false,
        }
    }
}

fn pack(generation: u64, state: State) -> u64 {
    generation << 2 | state.code()
}

/// `start + d`, or `None` when that is past what an `Instant` can hold (never, in effect).
fn deadline(start: Instant, d: Duration) -> Option<Instant> {
    start.checked_add(d)
}

impl Circuit {
    /// Notes a failure counted by the fleet; whether none was noted since the last success.
    pub(crate) fn fleet_failure(&self) -> bool {
        !self.hot.fleet_failed.swap(true, Ordering::AcqRel)
    }

    /// Notes a success; whether it ends a run of failures the fleet counted.
    pub(crate) fn fleet_success(&self) -> bool {
        self.hot.fleet_failed.load(Ordering::Relaxed)
            && self.hot.fleet_failed.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn new(key: Arc<str>, now: Instant, policy: &Policy) -> Self {
        Circuit {
            hot: Padded(Hot {
                word: AtomicU64::new(pack(0, State::Closed)),
                open_until: AtomicU64::new(0),
                fleet_failed: AtomicBool::new(false),
            }),
            tally: Tally::new(now, policy.window),
            key,
            origin: now,
            rejected: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            core: Padded(Mutex::new(Core {
                state: State::Closed,
                generation: 0,
                open_until: now,
                reopens: 0,
                probes: Vec::new(),
                probe_successes: 0,
                next_probe: 0,
                counts: Counts::default(),
                remote: false,
            })),
        }
    }

    pub(crate) fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// The state as last written, without applying the passage of time; cheap.
    pub(crate) fn quick_state(&self) -> State {
        State::from_code(self.hot.word.load(Ordering::Acquire))
    }

    /// Whether the circuit is refusing calls now: open, and within its open period. Any
    /// other circuit with no call in flight can be dropped at the bound without harm: a closed
    /// one loses its counts, one whose open period is over would only have let a probe through.
    pub(crate) fn holds_calls_back(&self, now: Instant) -> bool {
        self.quick_state() == State::Open
            && self.nanos(now) < self.hot.open_until.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // No user code runs under this lock, so poisoning cannot leave `Core` half-updated;
        // recover rather than wedge the host.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Decides whether a call may go through now. A closed circuit admits without reading the
    /// clock.
    pub(crate) fn admit(&self, policy: &Policy, events: &Events) -> Admission {
        let word = self.hot.word.load(Ordering::Acquire);
        match State::from_code(word) {
            State::Closed => {
                return Admission::Admitted(Ticket {
                    generation: word >> 2,
                    probe: None,
                });
            }
            State::Open => {
                let until = self.hot.open_until.load(Ordering::Acquire);
                let at = self.nanos(Instant::now());
                if at < until {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Admission::Rejected(Duration::from_nanos(until - at));
                }
            }
            State::HalfOpen => {}
        }
        let now = Instant::now();
        let mut core = self.lock();
        self.refresh(&mut core, now, policy, events);
        let admission = match core.state {
            State::Closed => Admission::Admitted(Ticket {
                generation: core.generation,
                probe: None,
            }),
            State::Open => Admission::Rejected(core.open_until.saturating_duration_since(now)),
            State::HalfOpen => {
                let used = core.probes.len() as u64 + u64::from(core.probe_successes);
                if used < u64::from(policy.half_open_probes.max(1)) {
                    let id = core.next_probe;
                    core.next_probe += 1;
                    core.probes.push((id, now));
                    Admission::Admitted(Ticket {
                        generation: core.generation,
                        probe: Some(id),
                    })
                } else {
                    // A slot frees at the latest when the oldest probe times out.
                    let wait = core
                        .probes
                        .iter()
                        .filter_map(|&(_, start)| deadline(start, policy.probe_timeout))
                        .map(|d| d.saturating_duration_since(now))
                        .min()
                        .unwrap_or(policy.probe_timeout);
                    Admission::Rejected(wait)
                }
            }
        };
        drop(core);
        if matches!(admission, Admission::Rejected(_)) {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        events.deliver();
        admission
    }

    /// Records the outcome of an admitted call. Returns the generation the circuit is in once
    /// the outcome is counted (the ticket's own for a closed-state call; the next one when a
    /// probe changed the state), or `None` when the outcome came too late to count.
    pub(crate) fn record(
        &self,
        ticket: Ticket,
        outcome: Verdict,
        now: Instant,
        policy: &Policy,
        events: &Events,
    ) -> Option<u64> {
        if ticket.probe.is_none() {
            // The common case: no circuit lock (see `tally`).
            match outcome {
                Verdict::Success => {
                    if let Some(bucket) = self.tally.success(ticket.generation, now) {
                        self.check_rate(ticket.generation, bucket, now, policy, events);
                    }
                    return Some(ticket.generation);
                }
                Verdict::Ignored => {
                    self.tally.ignored(ticket.generation);
                    return Some(ticket.generation);
                }
                Verdict::Failure => {}
            }
        }
        let mut core = self.lock();
        // A probe gives its slot back whatever its generation (see `Core::probes`).
        let held_slot = match ticket.probe {
            Some(id) => core.remove_probe(id),
            None => true,
        };
        if core.generation != ticket.generation || !held_slot {
            // From an older generation, or a probe abandoned after the probe timeout.
            core.counts.late += 1;
            return None;
        }
        match (core.state, ticket.probe) {
            // Only failures get here in closed state.
            (State::Closed, None) => {
                let (consecutive, ok, failed) = self.tally.failure(core.generation, now);
                if policy.should_trip(consecutive, ok, failed) {
                    self.set_state(&mut core, State::Open, now, policy, events);
                }
            }
            (State::HalfOpen, Some(_)) => match outcome {
                Verdict::Success => {
                    core.counts.successes += 1;
                    core.probe_successes += 1;
                    if core.probe_successes >= policy.half_open_probes.max(1) {
                        self.set_state(&mut core, State::Closed, now, policy, events);
                    }
                }
                Verdict::Failure => {
                    core.counts.failures += 1;
                    self.set_state(&mut core, State::Open, now, policy, events);
                }
                Verdict::Ignored => core.counts.ignored += 1,
            },
            // Tickets are only issued in closed or half-open, and every change of state
            // starts a new generation, so this is an outcome from another generation.
            _ => core.counts.late += 1,
        }
        let generation = core.generation;
        drop(core);
        events.deliver();
        Some(generation)
    }

    /// A failure found after the call's outcome was recorded (a streamed body that failed
    /// after its probe's head was counted), counted in `generation`, the one that outcome left
    /// the circuit in, if it is still the current one: in closed state as any failure (towards
    /// the run and the rate); in half-open (more probes to go) as a failed probe, which opens
    /// the circuit again. From another generation it is late.
    pub(crate) fn record_failure_after(
        &self,
        generation: u64,
        now: Instant,
        policy: &Policy,
        events: &Events,
    ) {
        let mut core = self.lock();
        if core.generation != generation {
            core.counts.late += 1;
            return;
        }
        match core.state {
            State::Closed => {
                let (consecutive, ok, failed) = self.tally.failure(core.generation, now);
                if policy.should_trip(consecutive, ok, failed) {
                    self.set_state(&mut core, State::Open, now, policy, events);
                }
            }
            State::HalfOpen => {
                core.counts.failures += 1;
                self.set_state(&mut core, State::Open, now, policy, events);
            }
            // An open circuit starts a new generation when it closes or probes again.
            State::Open => core.counts.late += 1,
        }
        drop(core);
        events.deliver();
    }

    /// After a closed-state success that may trip the circuit on the failure rate (see `tally`).
    fn check_rate(
        &self,
        generation: u64,
        bucket: u64,
        now: Instant,
        policy: &Policy,
        events: &Events,
    ) {
        let mut core = self.lock();
        // A later generation has counts of its own; a closed-state ticket's generation that is
        // still current is still closed.
        if core.generation != generation {
            return;
        }
        let (ok, failed) = self.tally.window(now);
        if policy.rate_trips(ok, failed) {
            self.set_state(&mut core, State::Open, now, policy, events);
        } else if !policy.successes_may_trip(ok, failed) {
            self.tally.checked(bucket);
        }
        drop(core);
        events.deliver();
    }

    /// A call admitted with `ticket` was dropped by its caller: it frees its probe slot and
    /// counts as neither success nor failure.
    pub(crate) fn cancel(&self, ticket: Ticket) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
        if let Some(id) = ticket.probe {
            self.lock().remove_probe(id);
        }
    }

    /// The state now, after applying the passage of time.
    pub(crate) fn state(&self, now: Instant, policy: &Policy, events: &Events) -> State {
        let mut core = self.lock();
        self.refresh(&mut core, now, policy, events);
        let state = core.state;
        drop(core);
        events.deliver();
        state
    }

    pub(crate) fn snapshot(&self, now: Instant, policy: &Policy, events: &Events) -> Snapshot {
        let mut core = self.lock();
        self.refresh(&mut core, now, policy, events);
        let (window_successes, window_failures) = self.tally.window(now);
        let lifetime = self.tally.lifetime();
        let snapshot = Snapshot {
            key: self.key.clone(),
            state: core.state,
            generation: core.generation,
            consecutive_failures: self.tally.consecutive(core.generation),
            window_successes,
            window_failures,
            probes_in_flight: core.probes.len() as u32,
            retry_after: (core.state == State::Open)
                .then(|| core.open_until.saturating_duration_since(now)),
            counts: Counts {
                successes: core.counts.successes + lifetime.successes,
                failures: core.counts.failures + lifetime.failures,
                ignored: core.counts.ignored + lifetime.ignored,
                late: core.counts.late + lifetime.late,
                rejected: self.rejected.load(Ordering::Relaxed),
                cancelled: self.cancelled.load(Ordering::Relaxed),
                abandoned_probes: core.counts.abandoned_probes,
            },
        };
        drop(core);
        events.deliver();
        snapshot
    }

    /// Applies the passage of time: the end of an open period, and probes that timed out.
    fn refresh(&self, core: &mut Core, now: Instant, policy: &Policy, events: &Events) {
        if core.state == State::Open && now >= core.open_until {
            self.set_state(core, State::HalfOpen, now, policy, events);
        }
        if core.state == State::HalfOpen {
            let before = core.probes.len();
            core.probes
                .retain(|&(_, start)| match deadline(start, policy.probe_timeout) {
                    Some(d) => now < d,
                    None => true,
                });
            let abandoned = (before - core.probes.len()) as u64;
            if abandoned > 0 {
                core.counts.abandoned_probes += abandoned;
                tracing::warn!(
                    target: "http_doer::breaker",
                    key = &*self.key,
                    abandoned,
                    timeout_ms = policy.probe_timeout.as_millis() as u64,
                    "half-open probe did not return in time; its slot goes to the next call"
                );
            }
        }
    }

    fn set_state(
        &self,
        core: &mut Core,
        to: State,
        now: Instant,
        policy: &Policy,
        events: &Events,
    ) {
        let from = core.state;
        core.generation += 1;
        core.state = to;
        core.probe_successes = 0;
        let mut open_for = None;
        match to {
            State::Open => {
                if from == State::HalfOpen {
                    core.reopens = core.reopens.saturating_add(1);
                }
                let open_for = *open_for.insert(policy.open_duration(core.reopens));
                // Far enough to mean "until further notice" if the sum overflows.
                core.open_until = deadline(now, open_for)
                    .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600));
                self.hot
                    .open_until
                    .store(self.nanos(core.open_until), Ordering::Release);
            }
            State::HalfOpen => {}
            State::Closed => core.reopens = 0,
        }
        // Before the new state is published, so no call of the new generation can find a
        // stripe still in the old one.
        self.tally.reset(core.generation);
        self.hot
            .word
            .store(pack(core.generation, to), Ordering::Release);
        events.push(StateChange {
            key: self.key.clone(),
            from,
            to,
            generation: core.generation,
            remote: core.remote,
            open_for,
        });
    }

    /// The fleet opened this circuit for `remaining` (see [`crate::fleet`]): a closed or
    /// half-open circuit opens until then; an open one stays open at least that long.
    pub(crate) fn force_open(
        &self,
        remaining: Duration,
        now: Instant,
        policy: &Policy,
        events: &Events,
    ) {
        let mut core = self.lock();
        self.refresh(&mut core, now, policy, events);
        let opened = core.state != State::Open;
        if opened {
            core.remote = true;
            self.set_state(&mut core, State::Open, now, policy, events);
            core.remote = false;
        }
        // The fleet's open period, not this replica's, so every replica probes together.
        if let Some(until) = deadline(now, remaining)
            && (opened || until > core.open_until)
        {
            core.open_until = until;
            self.hot
                .open_until
                .store(self.nanos(until), Ordering::Release);
        }
        drop(core);
        events.deliver();
    }

    /// The fleet closed this circuit: its probes succeeded on another replica.
    pub(crate) fn force_close(&self, now: Instant, policy: &Policy, events: &Events) {
        let mut core = self.lock();
        if core.state != State::Closed {
            core.remote = true;
            self.set_state(&mut core, State::Closed, now, policy, events);
            core.remote = false;
        }
        drop(core);
        events.deliver();
    }

    /// Takes back a probe the fleet does not allow (another replica holds the probe lease):
    /// its slot is freed and the call counts as rejected.
    pub(crate) fn unadmit(&self, ticket: Ticket) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        if let Some(id) = ticket.probe {
            self.lock().remove_probe(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::{Failure, Success};

    fn rate(ratio: f64, min_calls: u32) -> Policy {
        Policy {
            consecutive_failures: 0,
            failure_ratio: Some(ratio),
            min_calls,
            ..Policy::default()
        }
    }

    /// Runs `outcomes` through closed-state calls at `at`.
    fn run(c: &Circuit, policy: &Policy, at: Instant, outcomes: &[Verdict]) {
        let events = Events::new(None, None);
        for &outcome in outcomes {
            let Admission::Admitted(ticket) = c.admit(policy, &events) else {
                panic!("refused");
            };
            c.record(ticket, outcome, at, policy, &events);
        }
    }

    #[test]
    fn a_success_that_brings_the_window_to_its_minimum_trips_on_the_rate() {
        let policy = rate(0.5, 5);
        let t0 = Instant::now();
        let c = Circuit::new("k".into(), t0, &policy);
        run(&c, &policy, t0, &[Failure, Failure, Failure, Success]);
        assert_eq!(c.quick_state(), State::Closed);
        run(&c, &policy, t0, &[Success]);
        assert_eq!(c.quick_state(), State::Open);
    }

    #[test]
    fn a_success_trips_on_the_rate_once_old_successes_leave_the_window() {
        let policy = rate(0.5, 3);
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let c = Circuit::new("k".into(), t0, &policy);
        run(&c, &policy, t0, &[Success; 4]);
        run(&c, &policy, at(20), &[Failure, Failure, Failure]); // 3 of 7
        run(&c, &policy, at(20), &[Success]); // 3 of 8
        assert_eq!(c.quick_state(), State::Closed);
        // At 31 s the successes of 0 s have left the window: 3 of 5.
        run(&c, &policy, at(31), &[Success]);
        assert_eq!(c.quick_state(), State::Open);
    }

    #[test]
    fn successes_under_the_rate_keep_it_closed() {
        let policy = rate(0.6, 4);
        let t0 = Instant::now();
        let c = Circuit::new("k".into(), t0, &policy);
        run(
            &c,
            &policy,
            t0,
            &[Failure, Success, Success, Failure, Success],
        );
        run(&c, &policy, t0, &[Success; 20]);
        assert_eq!(c.quick_state(), State::Closed);
        // Consecutive failures are reset by a success, whatever the rate.
        let policy = Policy {
            failure_ratio: None,
            consecutive_failures: 2,
            ..Policy::default()
        };
        let c = Circuit::new("k".into(), t0, &policy);
        run(
            &c,
            &policy,
            t0,
            &[Failure, Success, Failure, Success, Failure],
        );
        assert_eq!(c.quick_state(), State::Closed);
        run(&c, &policy, t0, &[Failure]);
        assert_eq!(c.quick_state(), State::Open);
    }
}
