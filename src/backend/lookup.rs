//! The name resolver `UreqDoer::new()` gives its agent: a lookup bounded by the exchange's
//! timeout without a new thread for every call.
//!
//! ureq resolves the host before it looks in its connection pool, so every call resolves,
//! pooled connection or not. Its `DefaultResolver` bounds a lookup by spawning a thread as soon
//! as any timeout is set (and `UreqDoer` always has one by default): one thread per call, even
//! for `127.0.0.1`, which tripled the cost of a loopback call. Here an IP literal needs no
//! lookup at all (std parses it), and a name is looked up on a thread that is kept for the next
//! lookup, so the timeout still bounds the wait. Up to [`MAX_LIVE`] such threads live at once,
//! each waiting [`KEEP_ALIVE`] for its next name, so concurrent callers reuse them too. Past
//! that (a burst of more lookups at once, or a system resolver that hangs), a lookup runs on
//! the calling thread as ureq's does without a timeout: bounded by the system resolver's own
//! timeouts, not the call's.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use std::{io, thread};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;
use ureq::unversioned::transport::time::Duration as UreqDuration;

/// How long a lookup thread waits for the next name before it ends: tokio's keep-alive for its
/// blocking threads, so a client that calls every few seconds keeps its one thread.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The most lookup threads alive at once, busy or waiting. A lookup that outlives its caller's
/// timeout keeps its thread until the system resolver answers, so a resolver that hangs would
/// otherwise cost a new thread on every call; past this many, lookups run on their callers'
/// threads.
const MAX_LIVE: usize = 64;

/// Lookup threads started since the process began, for tests that prove they are reused.
static STARTED: AtomicU64 = AtomicU64::new(0);

/// Lookup threads alive now, busy or waiting; at most [`MAX_LIVE`].
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The lookup threads waiting for a name, newest last.
static IDLE: Mutex<Vec<Idle>> = Mutex::new(Vec::new());

type Job = (String, mpsc::SyncSender<io::Result<Vec<SocketAddr>>>);

struct Idle {
    id: u64,
    jobs: mpsc::Sender<Job>,
}

fn idle() -> MutexGuard<'static, Vec<Idle>> {
    // The list stays consistent whatever panicked while it was held: push and remove only.
    IDLE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Resolves like ureq's `DefaultResolver`, with the same timeout, without its thread per call.
#[derive(Debug, Default)]
pub(crate) struct Lookup;

impl Resolver for Lookup {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        // Without a timeout, ureq's resolver already looks up on the calling thread; an IP
        // literal is parsed by std, never looked up, so there is nothing to bound.
        if timeout.after.is_not_happening() || uri.host().is_some_and(is_ip_literal) {
            let now = NextTimeout {
                after: UreqDuration::NotHappening,
                ..timeout
            };
            return DefaultResolver::default().resolve(uri, config, now);
        }
        let addr = uri
            .scheme()
            .zip(uri.authority())
            .and_then(|(scheme, authority)| DefaultResolver::host_and_port(scheme, authority))
            .ok_or_else(|| ureq::Error::BadUri(format!("{uri} names no host and port")))?;
        let found = lookup(addr, *timeout.after).map_err(|e| match e {
            Failed::Io(e) => ureq::Error::Io(e),
            Failed::TimedOut => ureq::Error::Timeout(timeout.reason),
        })?;
        let mut out = self.empty();
        for addr in config.ip_family().keep_wanted(found.into_iter()) {
            if out.try_push(addr).is_err() {
                break;
            }
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

fn is_ip_literal(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok()
}

enum Failed {
    Io(io::Error),
    TimedOut,
}

/// Looks `addr` ("host:port") up on a waiting lookup thread, or a new one, within `timeout`.
/// A lookup that outlives its caller finishes on its thread, which then waits for the next.
fn lookup(addr: String, timeout: Duration) -> Result<Vec<SocketAddr>, Failed> {
    #[cfg(test)]
    tests::LOOKUPS.with(|n| n.set(n.get() + 1));
    let (reply, answer) = mpsc::sync_channel(1);
    let mut job = (addr, reply);
    // Bounded: every turn takes one thread off the list, and nothing else is added to it here.
    loop {
        let Some(worker) = idle().pop() else {
            match spawn(job) {
                Ok(()) => break,
                Err(Spawn::Busy((addr, _))) => {
                    return addr
                        .to_socket_addrs()
                        .map(Iterator::collect)
                        .map_err(Failed::Io);
                }
                Err(Spawn::Failed(e)) => return Err(Failed::Io(e)),
            }
        };
        match worker.jobs.send(job) {
            Ok(()) => break,
            // That thread has just ended; try the next one.
            Err(mpsc::SendError(back)) => job = back,
        }
    }
    match answer.recv_timeout(timeout) {
        Ok(found) => found.map_err(Failed::Io),
        Err(RecvTimeoutError::Timeout) => Err(Failed::TimedOut),
        Err(RecvTimeoutError::Disconnected) => Err(Failed::Io(io::Error::other(
            "the name lookup thread ended without an answer",
        ))),
    }
}

/// Why [`spawn`] started no thread.
enum Spawn {
    /// [`MAX_LIVE`] threads are alive: the job, back.
    Busy(Job),
    /// The system would not start one.
    Failed(io::Error),
}

/// Starts a lookup thread for `job`, unless [`MAX_LIVE`] are alive already.
fn spawn(job: Job) -> Result<(), Spawn> {
    let taken = LIVE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
        (live < MAX_LIVE).then_some(live + 1)
    });
    if taken.is_err() {
        return Err(Spawn::Busy(job));
    }
    let id = STARTED.fetch_add(1, Ordering::Relaxed);
    let started = thread::Builder::new()
        .name("http-doer-dns".into())
        .spawn(move || {
            // Counted out however the thread ends, a panic included.
            struct Live;
            impl Drop for Live {
                fn drop(&mut self) {
                    LIVE.fetch_sub(1, Ordering::AcqRel);
                }
            }
            let _live = Live;
            work(id, job)
        });
    if let Err(e) = started {
        LIVE.fetch_sub(1, Ordering::AcqRel);
        return Err(Spawn::Failed(e));
    }
    Ok(())
}

/// A lookup thread: answers `job`, then waits up to [`KEEP_ALIVE`] for the next one.
fn work(id: u64, mut job: Job) {
    loop {
        let (addr, reply) = job;
        let found = addr.to_socket_addrs().map(Iterator::collect);
        // Back on the list before the answer goes, so that a caller's next lookup finds this
        // thread rather than starting another.
        let (jobs, next) = mpsc::channel();
        // Every live thread may wait on the list (there are at most MAX_LIVE of them).
        idle().push(Idle { id, jobs });
        // The caller may have given up waiting; the thread is still good for the next one.
        let _ = reply.send(found);
        job = match next.recv_timeout(KEEP_ALIVE) {
            Ok(job) => job,
            Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {
                let mut idle = idle();
                if let Some(at) = idle.iter().position(|w| w.id == id) {
                    idle.swap_remove(at);
                    return;
                }
                drop(idle);
                // A caller took this thread off the list just as the wait ended: its name is
                // on the way (or its sender gone, if the send failed).
                match next.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// Lookups this thread handed to a lookup thread (or made itself).
        pub(super) static LOOKUPS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    /// The tests that count the threads started run one at a time.
    static COUNTING: Mutex<()> = Mutex::new(());

    fn counting() -> MutexGuard<'static, ()> {
        COUNTING.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn resolve(uri: &str) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let timeout = NextTimeout {
            after: UreqDuration::Exact(Duration::from_secs(30)),
            ..NextTimeout::default()
        };
        Lookup.resolve(&uri.parse().unwrap(), &Config::default(), timeout)
    }

    #[test]
    fn ip_literals_are_not_looked_up() {
        for uri in [
            "http://127.0.0.1:8080/",
            "http://[::1]/x",
            "https://10.0.0.1/",
        ] {
            let found = resolve(uri).unwrap();
            assert_eq!(found.len(), 1, "{uri}");
        }
        assert_eq!(resolve("http://127.0.0.1:8080/").unwrap()[0].port(), 8080);
        assert_eq!(resolve("http://[::1]/").unwrap()[0].port(), 80);
        assert_eq!(LOOKUPS.with(|n| n.get()), 0, "std parsed them all");
        resolve("http://localhost:9/").unwrap();
        assert_eq!(LOOKUPS.with(|n| n.get()), 1, "a name is looked up");
    }

    #[test]
    fn concurrent_callers_reuse_the_lookup_threads() {
        let _one_at_a_time = counting();
        let before = STARTED.load(Ordering::Relaxed);
        let callers: Vec<_> = (0..16)
            .map(|_| {
                thread::spawn(|| {
                    for _ in 0..20 {
                        assert!(!resolve("http://localhost:9/").unwrap().is_empty());
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
        // At most one thread per caller at once (and one for the other tests of the module),
        // not one per lookup: 320 lookups.
        let started = STARTED.load(Ordering::Relaxed) - before;
        assert!(started <= 18, "{started} threads started");
    }

    #[test]
    fn names_reuse_one_lookup_thread() {
        let _one_at_a_time = counting();
        let before = STARTED.load(Ordering::Relaxed);
        for _ in 0..20 {
            let found = resolve("http://localhost:9/").unwrap();
            assert!(found.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
        }
        // One thread for twenty sequential lookups (the other test may start one too).
        assert!(STARTED.load(Ordering::Relaxed) <= before + 2);
    }
}
