//! Streamed bodies at their edges, over both backends on loopback: a server's huge declared
//! length read whole, a streamed response forwarded as an upload through `Retrying`, and a
//! file that grew since `Body::from_file` was made.

#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::time::Duration;

use http_doer::{Body, Doer, ErrorKind, ReqwestDoer, ResponseMode, UreqDoer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::Loopback;

fn backends() -> Vec<(&'static str, Arc<dyn Doer>)> {
    vec![
        (
            "reqwest",
            Arc::new(
                ReqwestDoer::new()
                    .response_mode(ResponseMode::Streamed)
                    .max_body_size(1024),
            ),
        ),
        (
            "ureq",
            Arc::new(
                UreqDoer::new()
                    .response_mode(ResponseMode::Streamed)
                    .max_body_size(1024),
            ),
        ),
    ]
}

async fn read_head(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") && buf.len() < 64 * 1024 {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        buf.push(byte[0]);
    }
}

/// A server that declares a huge Content-Length, then sends two small pieces apart, then holds.
async fn huge_length_server() -> Loopback {
    Loopback::serve(|mut stream| async move {
        read_head(&mut stream).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 18000000000000000000\r\n\r\n";
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(b"first").await;
        let _ = stream.flush().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stream.write_all(b"second").await;
        let _ = stream.flush().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    })
    .await
}

/// A streamed response whose head declares a length far over `max_body_size`: `bytes()` must
/// end with `TooLarge` (or a body error), never a panic. It reserves the declared length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_declared_length_is_too_large_not_a_panic() {
    let server = huge_length_server().await;
    let mut failures = Vec::new();
    for (name, doer) in backends() {
        let req = http::Request::get(server.url("/"))
            .body(Body::empty())
            .unwrap();
        let resp = doer.execute(req).await.expect(name);
        let read = tokio::spawn(resp.into_body().bytes());
        let result = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("bounded");
        match result {
            Ok(Err(e)) if matches!(e.kind(), ErrorKind::TooLarge | ErrorKind::Body) => {}
            Ok(Err(e)) => failures.push(format!("{name}: {e:#}")),
            Ok(Ok(bytes)) => failures.push(format!("{name}: read {} bytes", bytes.len())),
            Err(join) => failures.push(format!("{name}: bytes() panicked: {join}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------------------------------------
// A streamed download forwarded as an upload through Retrying.

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

async fn up_down_server() -> Loopback {
    Loopback::serve(|stream| async move {
        let service = service_fn(|req: hyper::Request<Incoming>| async move {
            let reply = if req.uri().path() == "/download" {
                "0123456789".repeat(1000)
            } else {
                let got = req.into_body().collect().await.map(|b| b.to_bytes().len());
                format!("received {got:?}")
            };
            Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                bytes::Bytes::from(reply),
            )))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}

/// The Body docs list "a streamed response" among the one-shot bodies: "sent once; resent
/// only if no byte of it was taken". Forwarded as a request body through `Retrying`, it must
/// be sent (once), as a `Body::from_stream` is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_forwarded_through_retrying_is_sent() {
    let server = up_down_server().await;
    let mut failures = Vec::new();
    for (name, doer) in backends() {
        let down = http::Request::get(server.url("/download"))
            .body(Body::empty())
            .unwrap();
        let download = doer.execute(down).await.expect(name).into_body();
        assert!(download.is_stream());
        let retrying = http_doer::Retrying::new(doer.clone());
        let up = http::Request::put(server.url("/upload"))
            .body(download)
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), retrying.execute(up))
            .await
            .expect("bounded");
        match resp {
            Ok(resp) => {
                let text = resp.into_body().text().await.unwrap();
                assert_eq!(text, "received Ok(10000)", "{name}");
            }
            Err(e) => failures.push(format!("{name}: the upload failed: {e:#}")),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The same without Retrying, for comparison: the backend alone sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_forwarded_directly_is_sent() {
    let server = up_down_server().await;
    for (name, doer) in backends() {
        let down = http::Request::get(server.url("/download"))
            .body(Body::empty())
            .unwrap();
        let download = doer.execute(down).await.expect(name).into_body();
        let up = http::Request::put(server.url("/upload"))
            .body(download)
            .unwrap();
        let resp = doer.execute(up).await.expect(name);
        let text = resp.into_body().text().await.unwrap();
        assert_eq!(text, "received Ok(10000)", "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// A file that grows between `from_file` and the send.

/// `Body::from_file`: "if the file is a different size when an attempt reads it, that attempt
/// fails with ErrorKind::Body instead of sending a body its Content-Length contradicts".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_grew_since_from_file_fails_the_attempt() {
    let server = up_down_server().await;
    let dir = std::env::temp_dir().join(format!("body-hunt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for start in [0usize, 64 * 1024] {
        for (name, doer) in backends() {
            let path = dir.join(format!("grows-{start}-{name}"));
            std::fs::write(&path, vec![b'a'; start]).unwrap();
            let body = Body::from_file(&path).unwrap();
            assert_eq!(body.len(), Some(start as u64));
            // The file grows before the send.
            std::fs::write(&path, vec![b'a'; start + 100]).unwrap();
            let up = http::Request::put(server.url("/upload"))
                .body(body)
                .unwrap();
            let result = tokio::time::timeout(Duration::from_secs(10), doer.execute(up))
                .await
                .expect("bounded");
            match result {
                Err(e) if e.kind() == ErrorKind::Body => {}
                Err(e) => failures.push(format!("{name} {start}: {e:#}")),
                Ok(resp) => {
                    let text = resp.into_body().text().await.unwrap();
                    failures.push(format!("{name} {start}: sent, no error; server: {text}"));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---------------------------------------------------------------------------------------------
// A streamed body dropped while the server is silent.
