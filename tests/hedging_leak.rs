//! Hedging leaks nothing: after 10,000 hedged calls over loopback, in which a tenth of the
//! originals stall until their hedge wins and they are cancelled, the process's open file
//! descriptors and the runtime's live tasks are back to where they started.
//!
//! Alone in its binary, so no other test opens sockets or spawns tasks meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_doer::hedging::HedgeBudget;
use http_doer::{Body, Doer, DoerExt, ReqwestDoer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

const CALLS: usize = 10_000;
const STALL_EVERY: u64 = 10;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable on Linux")
        .count()
}

fn live_tasks() -> usize {
    Handle::current().metrics().num_alive_tasks()
}

/// A keep-alive HTTP/1.1 server. Every `STALL_EVERY`th request it receives stalls until the
/// client closes the connection (or 10 s pass); the others get `200 ok` at once.
async fn serve(listener: TcpListener) {
    let arrivals = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(connection(stream, arrivals.clone()));
    }
}

async fn connection(mut stream: TcpStream, arrivals: Arc<AtomicU64>) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        // Read one request head; the client sends GETs without a body.
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        if arrivals
            .fetch_add(1, Ordering::SeqCst)
            .is_multiple_of(STALL_EVERY)
        {
            // Wait for the client to hang up: the cancelled copy closes its connection.
            let hung_up = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk));
            if let Ok(Ok(0) | Err(_)) = hung_up.await {
                return;
            }
        }
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn ten_thousand_hedged_calls_leave_no_fd_and_no_task_behind() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/item", listener.local_addr().unwrap());
    tokio::spawn(serve(listener));
    tokio::task::yield_now().await;

    let fds_before = open_fds();
    let tasks_before = live_tasks();

    let hedged = ReqwestDoer::new()
        .hedging()
        .fixed_delay(Duration::from_millis(2))
        .budget(HedgeBudget::unlimited());
    let started = std::time::Instant::now();
    for i in 0..CALLS {
        let req = http::Request::get(&url).body(Body::empty()).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), hedged.execute(req))
            .await
            .unwrap_or_else(|_| panic!("call {i} took over 10 s"))
            .unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        assert_eq!(resp.status(), 200);
    }
    let elapsed = started.elapsed();
    let stats = hedged.stats();
    assert_eq!(stats.calls, CALLS as u64);
    // About one original in ten stalled: each was hedged, and cancelled when its hedge won.
    let expected = CALLS as u64 / STALL_EVERY;
    assert!(stats.hedge_wins >= expected * 8 / 10, "{stats:?}");
    assert!(stats.cancelled_copies >= expected * 8 / 10, "{stats:?}");
    assert_eq!(stats.caller_cancelled, 0);
    drop(hedged);

    // Closing sockets and ending connection tasks takes a few turns of the runtime; wait for
    // it, but boundedly.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (fds, tasks) = (open_fds(), live_tasks());
        if fds == fds_before && tasks == tasks_before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leak after {CALLS} calls in {elapsed:?}: fds {fds_before} -> {fds}, \
             tasks {tasks_before} -> {tasks}; {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
