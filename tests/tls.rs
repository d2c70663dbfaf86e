//! Both backends speak TLS with the one crypto provider compiled in (ring): their clients build
//! without a provider installed by the application, and an `https` URL leads to a handshake.
//!
//! With no network and no certificate to trust, the server here is a loopback listener that
//! answers a ClientHello with plain-text garbage: the client must have sent a TLS handshake
//! record, and the call must fail as a TLS error, not panic.

use std::net::SocketAddr;
use std::time::Duration;

use http_doer::{Body, Doer, ErrorKind, ReqwestDoer, UreqDoer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A bound on the whole exchange, should a client wait on the listener instead of failing.
const BOUND: Duration = Duration::from_secs(10);

/// The first bytes of a TLS record carrying a handshake message: content type 22, then a
/// legacy record version 3.x.
const HANDSHAKE_RECORD: [u8; 2] = [0x16, 0x03];

/// Accepts one connection, hands over the first bytes the client sent, answers with text that
/// is not TLS and closes.
async fn garbage_server() -> (SocketAddr, oneshot::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (first_bytes, rx) = oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 512];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        buf.truncate(n);
        let _ = first_bytes.send(buf);
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello, not TLS at all")
            .await;
    });
    (addr, rx)
}

async fn handshake_with_garbage(doer: &dyn Doer, name: &str) {
    let (addr, first_bytes) = garbage_server().await;
    let req = http::Request::get(format!("https://{addr}/"))
        .body(Body::empty())
        .unwrap();
    let result = tokio::time::timeout(BOUND, doer.execute(req))
        .await
        .unwrap_or_else(|_| panic!("{name}: no answer within {BOUND:?}"));
    let err = match result {
        Ok(resp) => panic!("{name}: a plain-text answer over https succeeded: {resp:?}"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), ErrorKind::Tls, "{name}: {err:#}");
    let sent = first_bytes.await.expect("the client connected");
    assert!(
        sent.starts_with(&HANDSHAKE_RECORD),
        "{name}: the client did not open with a TLS handshake: {sent:02x?}"
    );
}

#[tokio::test]
async fn reqwest_attempts_a_tls_handshake() {
    handshake_with_garbage(&ReqwestDoer::new(), "ReqwestDoer").await;
}

#[tokio::test]
async fn ureq_attempts_a_tls_handshake() {
    handshake_with_garbage(&UreqDoer::new(), "UreqDoer").await;
}
