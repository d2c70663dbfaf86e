//! [`Timeout`]: a deadline for one call, and the deadline engine that
//! [`Retrying`](crate::Retrying)'s `attempt_timeout` and `total_timeout` share with it.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::doer::Execute;
use crate::{Doer, Error, ErrorKind, Request, Response};

/// A [`Doer`] that fails a call with [`ErrorKind::Timeout`] when the wrapped Doer has not
/// answered within a set time.
///
/// # What the deadline covers
///
/// The call: from `execute` until the response is returned. With the backends' default
/// [`ResponseMode::Buffered`](crate::ResponseMode::Buffered) that is the whole exchange, body
/// included, because the backend reads the body before it returns. With
/// [`ResponseMode::Streamed`](crate::ResponseMode::Streamed) it is the head: the response is
/// returned as it came, its body not wrapped, and the body is then read at its reader's pace.
/// A server that stalls mid-body is still cut, by the backend's own timeout, which covers the
/// whole exchange, body included (30 s unless set).
///
/// This is the rule of every decorator in the crate (`Retrying`'s `attempt_timeout` and
/// `total_timeout` run on the same code), and of tower's `Timeout`: a decorator bounds what
/// it waits for. Once the call has returned, how fast the body goes is the reader's choice (a
/// proxy relaying to a slow client, a download written to disk); a deadline chosen for the
/// answer's arrival would cut such a reader, not a slow server.
///
/// # Errors
///
/// When the deadline passes first, an [`ErrorKind::Timeout`] error (so
/// [`Error::is_timeout`] is true) that names the deadline and its length, and the request's
/// URL, redacted: `timed out: call timeout of 2s passed (https://api.test/slow)`. Otherwise
/// the wrapped Doer's outcome, untouched.
///
/// # Behaviour
///
/// * **No task.** The wrapped call runs inside the caller's future; when the deadline passes
///   it is dropped, which cancels it (ReqwestDoer closes the connection; UreqDoer's blocking
///   thread finishes the exchange within its own timeout, and the answer is discarded). Dropping the call's
///   future drops everything at once.
/// * **Fast answers untouched.** The wrapped call is polled once before any timer exists: an
///   answer ready then reads no clock and arms no timer. Otherwise the clock starts at that
///   first poll.
/// * **`None`** (as in `Timeout::new(inner, None)`) sets no deadline: every call goes straight
///   to the wrapped Doer, so a stack built from an optional setting keeps one type.
/// * **Where it sits** decides what it bounds: outside [`Retrying`](crate::Retrying) the whole
///   retried call, as `total_timeout` does (but without its care to return the last outcome
///   rather than sleep into the deadline); inside it, each attempt, as `attempt_timeout` does,
///   its `Timeout` error retried like any other for idempotent requests.
///
/// ```
/// use std::time::Duration;
/// use http_doer::{Body, Doer, DoerExt, testing::{ScriptedDoer, response}};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let backend = ScriptedDoer::new()
///     .then_after(Duration::from_millis(100), Ok(response(200, "quick")))
///     .then_after(Duration::from_secs(5), Ok(response(200, "late")));
/// let doer = backend.timeout(Duration::from_secs(2));
///
/// let get = || http::Request::get("https://api.test/slow").body(Body::empty()).unwrap();
/// assert_eq!(doer.execute(get()).await.unwrap().status(), 200);
/// let err = doer.execute(get()).await.unwrap_err();
/// assert!(err.is_timeout());
/// assert_eq!(err.to_string(), "timed out: call timeout of 2s passed (https://api.test/slow)");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct Timeout<D> {
    inner: D,
    timeout: Option<Duration>,
}

/// The name a [`Timeout`]'s deadline goes by in its error.
const CALL: &str = "call timeout";

impl<D> Timeout<D> {
    /// Wraps `inner` so that each call must answer within `timeout`; `None` sets no deadline.
    pub fn new(inner: D, timeout: impl Into<Option<Duration>>) -> Self {
        Timeout {
            inner,
            timeout: timeout.into(),
        }
    }

    /// The deadline of each call, if any.
    pub fn duration(&self) -> Option<Duration> {
        self.timeout
    }

    /// The wrapped Doer.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }

    /// The wrapped Doer, mutably.
    pub fn get_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Unwraps the inner Doer.
    pub fn into_inner(self) -> D {
        self.inner
    }
}

// Written out rather than with `#[async_trait]`, so that a `Timeout` without a deadline hands
// back the inner Doer's own future, with no box of its own.
impl<D: Doer> Doer for Timeout<D> {
    fn execute<'life0, 'async_trait>(&'life0 self, req: Request) -> Execute<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let Some(limit) = self.timeout else {
            return self.inner.execute(req);
        };
        let uri = req.uri().clone();
        let call = self.inner.execute(req);
        Box::pin(async move {
            let mut deadline = Deadline::new(CALL, limit);
            within(call, [Some(&mut deadline)], &uri).await
        })
    }
}

/// How far ahead a deadline too far to represent is put: 30 years, as tokio does.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `wait` after `now`, or 30 years after it when that cannot be represented: a wait too long
/// to add is a very long wait, never none.
pub(crate) fn after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// A limit on how long something may take, whose clock starts the first time it is needed
/// (so a call answered at once never reads the clock).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    name: &'static str,
    limit: Duration,
    end: Option<Instant>,
    passed: bool,
}

impl Deadline {
    /// A deadline of `limit`, called `name` in its error; its clock has not started.
    pub(crate) fn new(name: &'static str, limit: Duration) -> Self {
        Deadline {
            name,
            limit,
            end: None,
            passed: false,
        }
    }

    /// The instant it passes; the clock starts now if it had not.
    fn end(&mut self) -> Instant {
        let limit = self.limit;
        *self.end.get_or_insert_with(|| after(Instant::now(), limit))
    }

    /// Whether a wait of `wait` from now would end at or after the deadline.
    pub(crate) fn reached_by(&mut self, wait: Duration) -> bool {
        let end = self.end();
        Instant::now()
            .checked_add(wait)
            .is_none_or(|wake| wake >= end)
    }

    /// Whether [`within`] saw this deadline pass.
    pub(crate) fn passed(&self) -> bool {
        self.passed
    }

    /// The error that says this deadline passed during a request to `uri`.
    fn error(&self, uri: &http::Uri) -> Error {
        Error::from(ErrorKind::Timeout)
            .with_message(format!("{self} passed"))
            .with_url(uri)
    }
}

/// Awaits `call` until it answers or the earliest of `deadlines` passes (on a tie, the first
/// listed), which is then marked [`passed`](Deadline::passed) and named in the error.
///
/// `call` is polled once before any clock is read: an answer ready then costs no timer.
/// Otherwise the deadlines whose clock has not started start it now. `call` is dropped when a
/// deadline passes; no task is spawned.
pub(crate) async fn within<F, const N: usize>(
    mut call: F,
    deadlines: [Option<&mut Deadline>; N],
    uri: &http::Uri,
) -> Result<Response, Error>
where
    F: Future<Output = Result<Response, Error>> + Unpin,
{
    if let Poll::Ready(out) = poll_fn(|cx| Poll::Ready(Pin::new(&mut call).poll(cx))).await {
        return out;
    }
    let mut earliest: Option<&mut Deadline> = None;
    for deadline in deadlines.into_iter().flatten() {
        let end = deadline.end();
        if earliest.as_mut().is_none_or(|e| end < e.end()) {
            earliest = Some(deadline);
        }
    }
    let Some(deadline) = earliest else {
        return call.await;
    };
    match tokio::time::timeout_at(deadline.end(), call).await {
        Ok(out) => out,
        Err(_) => {
            deadline.passed = true;
            Err(deadline.error(uri))
        }
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {:?}", self.name, self.limit)
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;

    use super::*;
    use crate::testing::response;

    fn uri() -> http::Uri {
        "https://user:pw@api.test/x?token=s3cr3t".parse().unwrap()
    }

    type Call = crate::doer::Execute<'static>;

    fn answer_after(wait: Duration) -> Call {
        Box::pin(async move {
            tokio::time::sleep(wait).await;
            Ok(response(200, ""))
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_earliest_deadline_wins_and_a_tie_goes_to_the_first() {
        let start = Instant::now();
        let mut total = Deadline::new("total timeout", Duration::from_secs(3));
        let mut attempt = Deadline::new("attempt timeout", Duration::from_secs(1));
        let never: Call = Box::pin(pending());
        let err = within(never, [Some(&mut total), Some(&mut attempt)], &uri())
            .await
            .unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert!(err.is_timeout() && err.to_string().contains("attempt timeout of 1s"));
        assert!(attempt.passed() && !total.passed());

        let mut total = Deadline::new("total timeout", Duration::from_secs(1));
        let mut attempt = Deadline::new("attempt timeout", Duration::from_secs(1));
        let never: Call = Box::pin(pending());
        let err = within(never, [Some(&mut total), Some(&mut attempt)], &uri())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("total timeout of 1s"), "{err}");
        assert!(total.passed() && !attempt.passed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_started_deadline_keeps_its_end() {
        let start = Instant::now();
        let mut total = Deadline::new("total timeout", Duration::from_secs(3));
        within(
            answer_after(Duration::from_secs(2)),
            [Some(&mut total)],
            &uri(),
        )
        .await
        .unwrap();
        assert!(!total.passed());
        within(
            answer_after(Duration::from_secs(2)),
            [Some(&mut total)],
            &uri(),
        )
        .await
        .unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_ready_at_once_starts_no_clock() {
        let mut d = Deadline::new("call timeout", Duration::from_secs(1));
        let ready: Call = Box::pin(async { Ok(response(204, "")) });
        let resp = within(ready, [Some(&mut d)], &uri()).await.unwrap();
        assert_eq!((resp.status().as_u16(), d.end), (204, None));
        let none: [Option<&mut Deadline>; 1] = [None];
        let resp = within(answer_after(Duration::from_secs(9)), none, &uri()).await;
        assert!(resp.is_ok(), "no deadline, no limit");
    }

    #[tokio::test(start_paused = true)]
    async fn huge_limits_and_waits_do_not_overflow() {
        let mut d = Deadline::new("total timeout", Duration::MAX);
        assert!(!d.reached_by(Duration::from_secs(3600)));
        assert!(d.reached_by(Duration::MAX));
        let mut d = Deadline::new("total timeout", Duration::from_secs(10));
        assert!(!d.reached_by(Duration::from_secs(9)));
        assert!(
            d.reached_by(Duration::from_secs(10)),
            "a wait ending at it reaches it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_error_names_the_deadline_and_redacts_the_url() {
        let mut d = Deadline::new("call timeout", Duration::from_millis(1500));
        let never: Call = Box::pin(pending());
        let err = within(never, [Some(&mut d)], &uri()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out: call timeout of 1.5s passed (https://api.test/x?token=REDACTED)"
        );
        assert_eq!(d.to_string(), "call timeout of 1.5s");
    }
}
