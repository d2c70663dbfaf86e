//! The edges of HTTP/1.1 where the two backends once differed: raw-TCP loopback servers write
//! hand-made bytes, and both backends, sent the same request, must answer or refuse alike
//! (an early answer to an `Expect: 100-continue` upload, `Transfer-Encoding` over
//! `Content-Length`, a connect cut by the exchange timeout, a failed upload's cause).
#![cfg(feature = "ureq")]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_doer::{Body, Doer, ErrorKind, ReqwestDoer, ResponseMode, UreqDoer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Reads one request head (byte by byte, bounded in count and time).
async fn read_head(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    for _ in 0..65536 {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(1)) => buf.push(b[0]),
            _ => break,
        }
        if buf.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    buf
}

/// A server that answers every connection, once its request head is read, with `reply`, then
/// holds the connection open (reading nothing) for `hold`.
async fn raw(reply: &'static [u8], hold: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_head(&mut s).await;
                let _ = s.write_all(reply).await;
                tokio::time::sleep(hold).await;
                let _ = s.shutdown().await;
            });
        }
    });
    format!("http://{addr}/")
}

fn both(timeout: Duration, mode: ResponseMode) -> [(&'static str, Box<dyn Doer>); 2] {
    [
        (
            "reqwest",
            Box::new(ReqwestDoer::new().timeout(timeout).response_mode(mode)),
        ),
        (
            "ureq",
            Box::new(UreqDoer::new().timeout(timeout).response_mode(mode)),
        ),
    ]
}

/// RFC 9112 section 6.3: Transfer-Encoding overrides Content-Length. Both libraries read this
/// answer as chunked ("ok"), but UreqDoer judges the body by the Content-Length it ignores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_encoding_overrides_content_length_on_both_backends() {
    const SMALL: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 100\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    const BIG: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 50000000\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    let mut failures = Vec::new();
    for reply in [SMALL, BIG] {
        let url = raw(reply, Duration::ZERO).await;
        for mode in [ResponseMode::Buffered, ResponseMode::Streamed] {
            for (name, doer) in both(Duration::from_secs(5), mode) {
                let req = http::Request::get(&url).body(Body::empty()).unwrap();
                let got = match doer.execute(req).await {
                    Err(e) => Err(e.kind()),
                    Ok(resp) => resp.into_body().bytes().await.map_err(|e| e.kind()),
                };
                if got != Ok(Bytes::from_static(b"ok")) {
                    let cl = if reply == SMALL { 100 } else { 50_000_000 };
                    failures.push(format!("{name} {mode:?} (content-length {cl}): {got:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A connect that hangs (the listener's backlog is full) past an exchange timeout shorter than
/// the 10 s connect timeout: the same request, the same kind on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_cut_by_the_exchange_timeout_is_one_kind_on_both_backends() {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = sock.listen(0).unwrap();
    let addr = full.local_addr().unwrap();
    // Fill the accept queue (never accepted), so that the next SYN is dropped.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await
        {
            fillers.push(c);
        }
    }
    // The queue is full: a plain connect now hangs.
    let probe = tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await;
    assert!(probe.is_err(), "the accept queue is not full: {probe:?}");
    let mut kinds = Vec::new();
    // Shorter than the SYN's first retransmission (1 s), and than the 10 s connect timeout;
    // ten calls each, since ureq's kind is chosen by a millisecond's rounding.
    for _ in 0..10 {
        for (name, doer) in both(Duration::from_millis(300), ResponseMode::Buffered) {
            let req = http::Request::post(format!("http://{addr}/"))
                .body(Body::from("x"))
                .unwrap();
            let start = Instant::now();
            let err = doer.execute(req).await.expect_err("nothing accepts");
            assert!(start.elapsed() < Duration::from_secs(3), "{name}");
            kinds.push((name, err.kind()));
        }
    }
    drop((full, fillers));
    assert!(
        kinds.iter().all(|(_, kind)| *kind == kinds[0].1),
        "{kinds:?}"
    );
}

/// A server that refuses an upload at once (`Expect: 100-continue` asked for it) and keeps the
/// connection open, as a keep-alive server does: the 413 is the answer on both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_refusal_of_an_expect_continue_upload_is_returned_not_timed_out() {
    let url = raw(
        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig",
        Duration::from_secs(8),
    )
    .await;
    let mut failures = Vec::new();
    for (name, doer) in both(Duration::from_secs(3), ResponseMode::Buffered) {
        let req = http::Request::put(&url)
            .header("expect", "100-continue")
            .body(Body::from("payload"))
            .unwrap();
        let start = Instant::now();
        match doer.execute(req).await {
            Ok(resp) if resp.status() == 413 => {}
            Ok(resp) => failures.push(format!("{name}: {}", resp.status())),
            Err(e) => failures.push(format!(
                "{name}: {:?} after {:?}: {e}",
                e.kind(),
                start.elapsed()
            )),
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// An upload stream that fails midway: both backends keep the caller's own error, and its
/// cause, in the error chain a reporter prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_keeps_its_cause_on_both_backends() {
    let url = raw(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        Duration::from_millis(500),
    )
    .await;
    let mut failures = Vec::new();
    for (name, doer) in both(Duration::from_secs(3), ResponseMode::Buffered) {
        let items: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"first-part")),
            Err(std::io::Error::other("disk gone")),
        ];
        let req = http::Request::put(&url)
            .body(Body::from_stream(futures_util::stream::iter(items)))
            .unwrap();
        let err = doer.execute(req).await.expect_err("the body failed");
        let shown = format!("{err:#}");
        if err.kind() != ErrorKind::Body || !shown.contains("disk gone") {
            failures.push(format!("{name}: {:?}: {shown}", err.kind()));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
