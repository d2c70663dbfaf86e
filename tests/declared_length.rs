//! A body's declared length (a server's `Content-Length`, an `http_body` size hint) is only a
//! hint: with a huge `ServeStale::max_bytes` (or no body limit at all), nothing may reserve
//! memory by it up front. Each case runs in a child process, because a failed allocation
//! aborts the whole process (no panic to catch).

use std::collections::VecDeque;
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_doer::breaker::ServeStale;
use http_doer::testing::ScriptedDoer;
use http_doer::{Body, Breaker, Doer};

/// A body that declares `declared` bytes (as a server's `Content-Length` does) and sends a few.
struct Declared {
    frames: VecDeque<Bytes>,
    declared: u64,
}

impl http_body::Body for Declared {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.frames.pop_front().map(|b| Ok(Frame::data(b))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.declared)
    }
}

fn declared(n: u64) -> Body {
    Body::from_http_body(Declared {
        frames: VecDeque::from([Bytes::from_static(b"ab"), Bytes::from_static(b"cd")]),
        declared: n,
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// The cases, run by the child process.
fn case(name: &str) {
    rt().block_on(async {
        match name {
            "stale_max_bytes_huge" => {
                for max_bytes in [usize::MAX, 1 << 45] {
                    let mut resp = http::Response::new(declared(1 << 44));
                    *resp.status_mut() = http::StatusCode::OK;
                    let breaker = Breaker::new(ScriptedDoer::new().then(Ok(resp)))
                        .serve_stale(ServeStale::new(Duration::from_secs(60)).max_bytes(max_bytes));
                    let req = http::Request::get("https://api.test/x")
                        .body(Body::empty())
                        .unwrap();
                    let resp = tokio::time::timeout(Duration::from_secs(5), breaker.execute(req))
                        .await
                        .expect("no hang")
                        .unwrap();
                    let _ = resp.into_body().bytes().await;
                }
            }
            "bytes_no_limit" => {
                let out = tokio::time::timeout(Duration::from_secs(5), declared(1 << 44).bytes())
                    .await
                    .expect("no hang");
                // A body shorter than it said: its 4 bytes, or an error; never an abort.
                if let Ok(b) = out {
                    assert_eq!(&b[..], b"abcd");
                }
            }
            other => panic!("unknown case {other}"),
        }
    });
}

fn run_in_child(name: &str) {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("CONFIG_CASE", name)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "case {name}: child died: {:?}\nstderr: {stderr}",
        out.status
    );
}

#[test]
fn child() {
    if let Ok(name) = std::env::var("CONFIG_CASE") {
        case(&name);
    }
}

#[test]
fn serve_stale_with_a_huge_max_bytes_does_not_reserve_the_declared_length() {
    run_in_child("stale_max_bytes_huge");
}

#[test]
fn body_bytes_without_a_limit_does_not_reserve_the_declared_length() {
    run_in_child("bytes_no_limit");
}
