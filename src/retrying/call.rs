//! One call through [`Retrying`]: the first attempt, then the retry loop, each attempt within
//! the deadlines.

use std::time::{Duration, SystemTime};

use super::{Attempts, Decision, Delays, MaxRetries, Retrying, default_classifier, retry_after};
use crate::doer::{Execute, copy_request};
use crate::timeout::{Deadline, within};
use crate::{Doer, Error, Request, Response};

/// The names the two deadlines go by in their errors.
const TOTAL: &str = "total timeout";
const ATTEMPT: &str = "attempt timeout";

impl<D: Doer> Retrying<D> {
    // Most calls end with their first attempt, so this future is kept small (it is allocated
    // and moved on every call): the retry loop, with its timer, is boxed and entered only when
    // a retry is due.
    async fn call(&self, mut req: Request) -> Result<Response, Error> {
        crate::telemetry::count_sends(&mut req);
        req.body_mut().make_shareable();
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        let max_retries = req
            .extensions()
            .get::<MaxRetries>()
            .map_or(self.max_retries, |m| m.0);
        let mut total = self.total_timeout.map(|limit| Deadline::new(TOTAL, limit));
        if max_retries == 0 {
            return finish(self.attempt(req, total.as_mut()).await, 1);
        }
        let outcome = self.attempt(copy_request(&req), total.as_mut()).await;
        match self.decide(&req, 1, &outcome, total.as_ref()) {
            Decision::Stop => finish(outcome, 1),
            decision => Box::pin(self.retry(req, outcome, decision, max_retries, total)).await,
        }
    }

    /// The retry loop, entered after attempt 1 produced `outcome` and `decision` said retry.
    async fn retry(
        &self,
        req: Request,
        mut outcome: Result<Response, Error>,
        mut decision: Decision,
        max_retries: u32,
        mut total: Option<Deadline>,
    ) -> Result<Response, Error> {
        let mut delays: Option<Delays> = None;
        let mut attempt: u32 = 1;
        loop {
            if !req.body().can_resend() {
                tracing::debug!(attempt, "not retrying: the one-shot request body was sent");
                return finish(outcome.map_err(not_resent), attempt);
            }
            // Retry n always takes the n-th backoff delay, even when another wait is used, so
            // the backoff keeps growing with the number of retries.
            let backoff = delays
                .get_or_insert_with(|| self.backoff.delays(self.seeds.take()))
                .next()
                .unwrap_or_default();
            let wait = match decision {
                Decision::RetryAfter(wait) => wait,
                _ => self.server_wait(&outcome).unwrap_or(backoff),
            }
            .min(self.max_delay);
            // A wait into the deadline could only end in a bare timeout: the caller is better
            // served by this outcome (a 503 and its Retry-After), now.
            if total.as_mut().is_some_and(|t| t.reached_by(wait))
                || self.budget.as_ref().is_some_and(|b| !b.try_withdraw())
            {
                return finish(outcome, attempt);
            }
            crate::telemetry::retry(outcome.as_ref());
            match &outcome {
                Ok(resp) => {
                    tracing::debug!(attempt, status = resp.status().as_u16(), ?wait, "retrying")
                }
                Err(err) => tracing::debug!(attempt, error = %err.kind(), ?wait, "retrying"),
            }
            // Free the failed response (and close a streamed one) before waiting.
            drop(outcome);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            attempt = attempt.saturating_add(1);
            if attempt > max_retries {
                // No retry can follow, so the request itself goes, without a copy.
                return finish(self.attempt(req, total.as_mut()).await, attempt);
            }
            outcome = self.attempt(copy_request(&req), total.as_mut()).await;
            decision = self.decide(&req, attempt, &outcome, total.as_ref());
            if decision == Decision::Stop {
                return finish(outcome, attempt);
            }
        }
    }

    /// Hands `req` to the inner Doer, within the attempt timeout and the total deadline. An
    /// untimed attempt is the inner Doer's own future, with no box or timer of ours.
    fn attempt<'a>(&'a self, req: Request, total: Option<&'a mut Deadline>) -> Execute<'a> {
        if total.is_none() && self.attempt_timeout.is_none() {
            return self.inner.execute(req);
        }
        let uri = req.uri().clone();
        let call = self.inner.execute(req);
        let attempt_timeout = self.attempt_timeout;
        Box::pin(async move {
            let mut own = attempt_timeout.map(|limit| Deadline::new(ATTEMPT, limit));
            within(call, [total, own.as_mut()], &uri).await
        })
    }

    /// Whether to retry `outcome`: never once the total deadline passed, else as the
    /// classifier says.
    fn decide(
        &self,
        req: &Request,
        attempt: u32,
        outcome: &Result<Response, Error>,
        total: Option<&Deadline>,
    ) -> Decision {
        if total.is_some_and(Deadline::passed) {
            return Decision::Stop;
        }
        match &self.classifier {
            Some(classify) => classify(req, attempt, outcome.as_ref()),
            None => default_classifier(req, attempt, outcome.as_ref()),
        }
    }

    /// The server's `Retry-After`, on the statuses it is meant for.
    fn server_wait(&self, outcome: &Result<Response, Error>) -> Option<Duration> {
        match outcome {
            Ok(resp) if self.honor_retry_after && matches!(resp.status().as_u16(), 429 | 503) => {
                retry_after::parse(resp.headers(), SystemTime::now())
            }
            _ => None,
        }
    }
}

/// The error of an attempt that would have been retried but for its one-shot body.
fn not_resent(err: Error) -> Error {
    err.context("not retried: the one-shot request body was already sent")
}

/// Labels the outcome with the number of attempts made.
fn finish(outcome: Result<Response, Error>, attempts: u32) -> Result<Response, Error> {
    match outcome {
        Ok(mut resp) => {
            resp.extensions_mut().insert(Attempts(attempts));
            Ok(resp)
        }
        Err(err) => Err(err.with_attempts(attempts)),
    }
}

// Written out rather than with `#[async_trait]`, whose wrapper future would hold the request
// twice (once captured, once as a local), making every call's allocation larger.
impl<D: Doer> Doer for Retrying<D> {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.call(req))
    }
}
