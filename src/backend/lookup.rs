//! The name resolver `UreqDoer::new()` gives its agent: a lookup bounded by the exchange's
//! timeout without a new thread for every call.
//!
//! ureq resolves the host before it looks in its connection pool, so every call resolves,
//! pooled connection or not. Its `DefaultResolver` bounds a lookup by spawning a thread as soon
//! as any timeout is set (and `UreqDoer` always has one by default): one thread per call, even
//! for `127.0.0.1`, which tripled the cost of a loopback call. Here an IP literal needs no
//! lookup at all (std parses it), and a name is looked up on a thread that is kept for the next
//! lookup, so the timeout still bounds the wait. At most [`MAX_LIVE`] such threads live at once,
//! however long the system resolver hangs.

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

/// The most lookup threads kept waiting; more run only while more lookups run at once.
const MAX_IDLE: usize = 4;

/// The most lookup threads alive at once. A lookup that outlives its caller's timeout keeps
/// its thread until the system resolver answers, so a resolver that hangs would otherwise cost
/// a new thread on every call; past this many, a call fails at once as a failed lookup.
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
    let (reply, answer) = mpsc::sync_channel(1);
    let mut job = (addr, reply);
    // Bounded: every turn takes one thread off the list, and nothing else is added to it here.
    loop {
        let Some(worker) = idle().pop() else {
            spawn(job)?;
            break;
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

/// Starts a lookup thread for `job`, unless [`MAX_LIVE`] are alive already.
fn spawn(job: Job) -> Result<(), Failed> {
    let taken = LIVE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
        (live < MAX_LIVE).then_some(live + 1)
    });
    if taken.is_err() {
        // Worded as std words a failed lookup, so the call is a connect error: nothing was sent.
        return Err(Failed::Io(io::Error::other(format!(
            "failed to lookup address information: {MAX_LIVE} name lookups are already under way"
        ))));
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
        return Err(Failed::Io(e));
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
        let kept = {
            let mut idle = idle();
            let room = idle.len() < MAX_IDLE;
            if room {
                idle.push(Idle { id, jobs });
            }
            room
        };
        // The caller may have given up waiting; the thread is still good for the next one.
        let _ = reply.send(found);
        if !kept {
            return;
        }
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

    fn resolve(uri: &str) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let timeout = NextTimeout {
            after: UreqDuration::Exact(Duration::from_secs(30)),
            ..NextTimeout::default()
        };
        Lookup.resolve(&uri.parse().unwrap(), &Config::default(), timeout)
    }

    #[test]
    fn ip_literals_are_not_looked_up() {
        let before = STARTED.load(Ordering::Relaxed);
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
        // Other tests of this module may start one lookup thread at the same time.
        assert!(STARTED.load(Ordering::Relaxed) <= before + 1);
    }

    #[test]
    fn names_reuse_one_lookup_thread() {
        let before = STARTED.load(Ordering::Relaxed);
        for _ in 0..20 {
            let found = resolve("http://localhost:9/").unwrap();
            assert!(found.iter().all(|a| a.ip().is_loopback() && a.port() == 9));
        }
        // One thread for twenty sequential lookups (the other test may start one too).
        assert!(STARTED.load(Ordering::Relaxed) <= before + 2);
    }
}
