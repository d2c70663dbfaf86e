//! One hedged call: copies raced inside the caller's own future.
//!
//! Nothing is spawned. Every copy is a future owned by [`Race`], polled from the call's task;
//! when a winner arrives (or the caller drops the call) the other copies are dropped on the
//! spot, which cancels them: their connections close and nothing outlives the call. That is
//! also why a copy can borrow the inner Doer instead of needing an `Arc` or `'static`.
//!
//! Most calls are won by the original on its first poll (a cache, a fast host). Such a call
//! pays for nothing it turns out not to need: the original is polled before it is queued (no
//! list of copies is allocated), and the timer is only made once a copy is still pending after
//! its first poll; the delay (a percentile of the latency window) is read once per call, for
//! its `HedgeReport`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::Config;
use super::report::{Counters, HedgeReport, add};
use crate::doer::{Execute, copy_request};
use crate::{Doer, Error, ErrorKind, Request, Response};

struct InFlight<'a> {
    /// 0 for the original, 1 for the first hedge, ...
    n: u32,
    started: Instant,
    fut: Execute<'a>,
}

/// The state of one hedged call.
pub(super) struct Race<'a, D> {
    inner: &'a D,
    config: &'a Config,
    counters: &'a Counters,
    /// The template every copy is made from.
    req: Request,
    /// The delay between copies, read once, when first needed.
    delay: Option<Duration>,
    pending: Vec<InFlight<'a>>,
    sent: u32,
    /// When the newest copy was sent, while its timer is still to be set: it is set once that
    /// copy has been polled and is pending, so a copy that answers at once costs no timer.
    unarmed: Option<Instant>,
    /// Fires when the newest copy has been pending for the delay.
    timer: Option<Pin<Box<Sleep>>>,
    /// A copy failed: send the next one without waiting out the delay.
    launch_now: bool,
    /// No more copies for this call: the budget said no, or an error no copy can fix.
    stop: bool,
    /// The best failure so far: the first unacceptable response, else the first error.
    /// Boxed: rare, and the race lies in every call's future.
    failed_response: Option<Box<(u32, Response)>>,
    failed_error: Option<Error>,
    finished: bool,
}

impl<'a, D: Doer> Race<'a, D> {
    pub(super) fn new(
        inner: &'a D,
        config: &'a Config,
        counters: &'a Counters,
        req: Request,
    ) -> Self {
        Race {
            inner,
            config,
            counters,
            req,
            delay: None,
            pending: Vec::new(),
            sent: 0,
            unarmed: None,
            timer: None,
            launch_now: false,
            stop: false,
            failed_response: None,
            failed_error: None,
            finished: false,
        }
    }

    /// Drives the race: the winner, or the best failure once every copy has failed.
    pub(super) fn poll_race(&mut self, cx: &mut Context<'_>) -> Poll<Result<Response, Error>> {
        // Every pending copy has just been polled: no need to poll them again at once.
        let mut just_polled = false;
        if self.sent == 0 {
            // The original, polled before it is queued: when it answers at once, acceptably,
            // the call is over without a list of copies or a timer.
            let mut original = self.launch();
            match original.fut.as_mut().poll(cx) {
                Poll::Ready(result) => {
                    if let Some(won) = self.settle(original, result) {
                        return Poll::Ready(Ok(won));
                    }
                }
                Poll::Pending => self.pending.push(original),
            }
            just_polled = true;
        }
        loop {
            if !std::mem::take(&mut just_polled)
                && let Some(won) = self.poll_copies(cx)
            {
                return Poll::Ready(Ok(won));
            }
            if let Some(sent_at) = self.unarmed.take() {
                self.arm(sent_at);
            }
            if self.launch_now {
                self.launch_now = false;
                if self.try_launch() {
                    continue;
                }
            }
            if self.pending.is_empty() {
                return Poll::Ready(self.give_up());
            }
            let Some(timer) = self.timer.as_mut() else {
                return Poll::Pending;
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The newest copy is overdue: hedge it (which re-arms or clears the timer), then
            // poll the new copy at once.
            self.try_launch();
        }
    }

    /// Polls every pending copy; returns the winner, if one arrived.
    fn poll_copies(&mut self, cx: &mut Context<'_>) -> Option<Response> {
        let mut i = 0;
        while i < self.pending.len() {
            let Poll::Ready(result) = self.pending[i].fut.as_mut().poll(cx) else {
                i += 1;
                continue;
            };
            let copy = self.pending.swap_remove(i);
            if let Some(won) = self.settle(copy, result) {
                return Some(won);
            }
        }
        None
    }

    /// Takes the answer of `copy`: the winner's response, or `None` after keeping a failure.
    fn settle(&mut self, copy: InFlight<'a>, result: Result<Response, Error>) -> Option<Response> {
        match result {
            Ok(resp) if (self.config.acceptable)(&resp) => return Some(self.win(copy, resp)),
            Ok(resp) => {
                if self.failed_response.is_none() {
                    self.failed_response = Some(Box::new((copy.n, resp)));
                }
            }
            Err(err) => {
                if !another_copy_could_help(&err) {
                    self.stop = true;
                }
                if self.failed_error.is_none() {
                    self.failed_error = Some(err);
                }
            }
        }
        add(&self.counters.failed_copies, 1);
        self.launch_now = true;
        None
    }

    /// The delay between copies, read when first needed.
    fn delay_at(&mut self, now: Instant) -> Duration {
        *self
            .delay
            .get_or_insert_with(|| self.config.delay.current_at(now))
    }

    /// Sends the next copy if the copy limit, the budget and earlier errors allow.
    fn try_launch(&mut self) -> bool {
        if self.stop || self.sent >= self.config.max_copies {
            self.timer = None;
            self.unarmed = None;
            return false;
        }
        if let Some(bucket) = &self.config.bucket
            && !bucket.try_withdraw()
        {
            add(&self.counters.budget_denied, 1);
            crate::telemetry::event(crate::telemetry::names::EVENT_HEDGE_BUDGET_EXHAUSTED);
            self.stop = true;
            self.timer = None;
            self.unarmed = None;
            return false;
        }
        tracing::debug!(
            copy = self.sent,
            delay = ?self.delay.unwrap_or_default(),
            method = %self.req.method(),
            url = %crate::redact::uri(self.req.uri()),
            "hedging: sending another copy",
        );
        crate::telemetry::event(crate::telemetry::names::EVENT_HEDGE_SENT);
        let copy = self.launch();
        self.pending.push(copy);
        true
    }

    /// Sends a copy, the original included, to be polled (and queued) by the caller; the
    /// timer for the next copy is set once this one has been polled (see `unarmed`).
    fn launch(&mut self) -> InFlight<'a> {
        let req = copy_request(&self.req);
        let started = Instant::now();
        let copy = InFlight {
            n: self.sent,
            started,
            fut: self.inner.execute(req),
        };
        self.sent += 1;
        add(&self.counters.copies_sent, 1);
        self.unarmed = Some(started);
        copy
    }

    /// Sets the timer for the next copy, due the delay after the newest one was sent at
    /// `sent_at`, or sends it at once (a zero delay), or none (no copy left to send).
    fn arm(&mut self, sent_at: Instant) {
        if self.stop || self.sent >= self.config.max_copies {
            self.timer = None;
            return;
        }
        let delay = self.delay_at(sent_at);
        if delay.is_zero() {
            self.launch_now = true;
            return;
        }
        // A delay too long to add (`Duration::MAX`, "never hedge") sets no timer.
        match (sent_at.checked_add(delay), self.timer.as_mut()) {
            (None, _) => self.timer = None,
            (Some(deadline), Some(timer)) => timer.as_mut().reset(deadline),
            (Some(deadline), None) => {
                self.timer = Some(Box::pin(tokio::time::sleep_until(deadline)))
            }
        }
    }

    fn win(&mut self, copy: InFlight<'a>, mut resp: Response) -> Response {
        // One clock read for the latency, the window's rotation and the delay of the report.
        let now = Instant::now();
        // Read before this answer counts, as if read when the call began.
        self.delay_at(now);
        if let Some(window) = self.config.delay.window() {
            window.record_at(now.saturating_duration_since(copy.started), now);
        }
        self.cancel_pending();
        let wins = if copy.n == 0 {
            &self.counters.original_wins
        } else {
            crate::telemetry::event(crate::telemetry::names::EVENT_HEDGE_WON);
            &self.counters.hedge_wins
        };
        add(wins, 1);
        resp.extensions_mut().insert(self.report(copy.n));
        self.finished = true;
        resp
    }

    /// Every copy failed: the best failure, a response before an error.
    fn give_up(&mut self) -> Result<Response, Error> {
        self.finished = true;
        if let Some(failed) = self.failed_response.take() {
            let (n, mut resp) = *failed;
            resp.extensions_mut().insert(self.report(n));
            return Ok(resp);
        }
        let err = self.failed_error.take().unwrap_or_else(|| {
            Error::from(ErrorKind::Other)
                .with_message("hedging ended without an answer")
                .with_url(self.req.uri())
        });
        Err(err.with_attempts(self.sent))
    }

    fn report(&self, winner: u32) -> HedgeReport {
        HedgeReport {
            copies_sent: self.sent,
            winner,
            delay: self.delay.unwrap_or_else(|| self.config.delay.current()),
        }
    }

    /// Drops every pending copy, which cancels it.
    fn cancel_pending(&mut self) {
        // Most calls have none pending: no write to a counter every call shares.
        if !self.pending.is_empty() {
            add(&self.counters.cancelled_copies, self.pending.len() as u64);
            self.pending.clear();
        }
    }
}

impl<D> Drop for Race<'_, D> {
    fn drop(&mut self) {
        if !self.finished {
            add(&self.counters.caller_cancelled, 1);
            add(&self.counters.cancelled_copies, self.pending.len() as u64);
        }
    }
}

/// Whether a copy failing with `err` leaves any hope for another copy: a request that cannot
/// be sent, signed or accepted as it is fails the same way every time, and an open breaker
/// refuses every copy alike.
fn another_copy_could_help(err: &Error) -> bool {
    !matches!(
        err.kind(),
        ErrorKind::InvalidRequest
            | ErrorKind::Tls
            | ErrorKind::TooLarge
            | ErrorKind::Redirect
            | ErrorKind::BreakerOpen
            | ErrorKind::Signing
    )
}
