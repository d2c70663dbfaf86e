//! `UreqDoer::new()` keeps its 30 s timeout without starting a thread per call.
//!
//! ureq's own resolver bounds every name lookup by spawning a thread whenever a timeout is
//! set, even for an IP address on a pooled connection. Such a thread lives only while it looks
//! the name up, so counting threads before and after is not enough: a sampler counts them
//! (`Threads:` in `/proc/self/status`) all through the calls, and no count may exceed the one
//! the process settled at after warming up. The runtime has one blocking thread, so that the
//! count of a correct client cannot move at all. This file holds one test, so that no other
//! test starts threads in the same process meanwhile.

#![cfg(all(feature = "ureq", target_os = "linux"))]

#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use http_doer::{Body, Doer, UreqDoer};

fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

async fn get(doer: &UreqDoer, url: &str) {
    let req = http::Request::get(url).body(Body::empty()).unwrap();
    let resp = doer.execute(req).await.expect("an answer");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().bytes().await.unwrap().len(), 13);
}

#[test]
fn no_thread_is_started_per_call_by_address_or_by_name() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(1)
        .build()
        .unwrap();
    rt.block_on(async {
        let server = support::server::start().await;
        let by_address = server.url("/bytes/13");
        let by_name = by_address.replace("127.0.0.1", "localhost");
        let doer = UreqDoer::new();
        assert!(doer.agent().config().timeouts().global.is_some());
        // Warm up: the pooled connections, the blocking thread, the one lookup thread.
        for url in [&by_address, &by_name] {
            for _ in 0..5 {
                get(&doer, url).await;
            }
        }
        let settled = threads();

        let (stop, most) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let sampler = std::thread::spawn({
            let (stop, most) = (stop.clone(), most.clone());
            move || {
                // Bounded, in case the calls below hang and the test is killed late.
                for _ in 0..10_000_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    most.fetch_max(threads(), Ordering::Relaxed);
                }
            }
        });
        for _ in 0..100 {
            get(&doer, &by_address).await;
            get(&doer, &by_name).await;
        }
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        // The sampler itself is one more thread.
        let most = most.load(Ordering::Relaxed);
        assert!(
            most <= settled + 1,
            "{most} threads at most, {settled} settled"
        );
        assert_eq!(threads(), settled, "after the calls");
    });
}
