//! The blocking client's own runtime, and the one way into it: [`Runtime::block_on`], which
//! never panics where tokio's would.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use crate::{Error, ErrorKind};

/// What a call made from inside an async task gets instead of tokio's panic.
const IN_ASYNC_MESSAGE: &str = "http_doer::blocking::Client was called from inside an async \
    runtime, where blocking would stall every task of that thread: use the async Doer \
    (`client.get_ref().execute(req).await`), or make the call in `tokio::task::spawn_blocking`";

/// A current-thread tokio runtime, made once per client and shut down without waiting.
pub(super) struct Runtime {
    /// `None` only while it is being shut down in `drop`.
    rt: Option<tokio::runtime::Runtime>,
}

impl Runtime {
    /// A current-thread runtime with every driver the crate's backends use (timers, and the
    /// I/O driver when reqwest brings tokio's `net`).
    pub(super) fn new() -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("http-doer-blocking")
            .build()
            .map_err(|e| {
                Error::new(ErrorKind::Other, e)
                    .with_message("cannot start the blocking client's runtime")
            })?;
        Ok(Runtime { rt: Some(rt) })
    }

    /// Runs `fut` to completion on this runtime, blocking the calling thread.
    ///
    /// The calling thread drives the runtime itself (its timers, its I/O, the tasks spawned on
    /// it) while it waits; several threads may wait at once, and they take turns driving it.
    pub(super) fn block_on<F>(&self, fut: F) -> Result<F::Output, Error>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let Some(rt) = &self.rt else {
            return Err(Error::from(ErrorKind::Other).with_message("the runtime is shut down"));
        };
        // No tokio context on this thread: plain sync code, where `block_on` is always allowed.
        if tokio::runtime::Handle::try_current().is_err() {
            return Ok(rt.block_on(fut));
        }
        if in_async_task() {
            return Err(Error::from(ErrorKind::Other).with_message(IN_ASYNC_MESSAGE));
        }
        // A tokio context, but no task running: `spawn_blocking`, `block_in_place`, a
        // `Handle::enter` guard, where tokio allows blocking, or a task that opted out of
        // budgeting with `tokio::task::unconstrained`, where tokio's `block_on` would panic.
        // They cannot be told apart, so the runtime is driven from a thread of its own, which
        // works in all of them (and, in the last, blocks that task's worker, as it asked).
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("http-doer-blocking-call".into())
                .spawn_scoped(scope, || rt.block_on(fut))
                .map_err(|e| {
                    Error::new(ErrorKind::Other, e)
                        .with_message("cannot start a thread to block on")
                })?;
            // A panic of the future is the caller's, as it would be on the direct path.
            worker
                .join()
                .map_err(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // A plain drop waits for the blocking pool, and panics when that happens inside an
        // async context (a client dropped at the end of a `#[tokio::test]`). Not waiting is
        // safe: a ureq exchange still under way ends by its own timeout, its result unread.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Whether the calling thread is polling a tokio task or a `block_on` future, where tokio
/// forbids blocking and its `block_on` panics.
///
/// tokio has no public question for this. Its cooperative budget answers it: tokio sets a
/// budget around every poll of a task or a `block_on` future and leaves it unconstrained
/// everywhere else (plain threads, `spawn_blocking`, `block_in_place`). A constrained budget
/// runs out after at most 255 steps (it is a `u8`); an unconstrained one never does. The probe
/// may spend the caller's budget, which only makes that task yield at its next await point,
/// and the caller gets an error anyway.
fn in_async_task() -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..=u8::MAX {
        match tokio::task::coop::poll_proceed(&mut cx) {
            Poll::Ready(step) => step.made_progress(),
            Poll::Pending => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_threads_and_blocking_threads_are_not_async() {
        assert!(!in_async_task());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        assert!(!in_async_task(), "a Handle::enter guard allows blocking");
    }

    #[tokio::test]
    async fn a_task_is_async() {
        assert!(in_async_task());
        let in_blocking = tokio::task::spawn_blocking(in_async_task).await.unwrap();
        assert!(!in_blocking);
        let spawned = tokio::spawn(async { in_async_task() }).await.unwrap();
        assert!(spawned);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn block_on_runs_on_a_thread_of_its_own_where_tokio_would_panic() {
        let rt = Runtime::new().unwrap();
        let out = tokio::task::unconstrained(async { rt.block_on(async { 7 }) }).await;
        assert_eq!(out.unwrap(), 7);
        let err = rt.block_on(async { 7 }).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Other);
        drop(rt);
    }
}
