//! A raw TCP server that misbehaves on purpose, one way per server.
//!
//! Each connection first reads the request head (so a reset is never caused by unread request
//! bytes), then does what its [`Fault`] says. A reset is a real TCP RST: the socket is closed
//! with `SO_LINGER` set to zero.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Loopback;

/// How the server misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Reads the request and never answers, holding the connection open.
    Stall,
    /// Sends half of a response head, then resets the connection.
    ResetMidHeaders,
    /// Sends a head announcing 1000 bytes and 100 of them, then resets the connection.
    ResetMidBody,
    /// Sends a head announcing 1000 bytes and 100 of them, then holds the connection open.
    StallMidBody,
    /// Sends a head announcing 1000 bytes and 100 of them, then closes cleanly (FIN).
    TruncatedBody,
    /// Answers with bytes that are not HTTP, then closes.
    Garbage,
}

const HALF_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/pl";
const SHORT_BODY_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
const GARBAGE: &[u8] = b"\x00\x01 this is not HTTP at all \xff\xfe\r\n\r\n";

/// Starts a server on a free loopback port that answers every connection with `fault`.
pub async fn start(fault: Fault) -> Loopback {
    Loopback::serve(move |stream| serve(stream, fault)).await
}

/// A URL on a loopback port that nothing listens on: the port was bound, then released.
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    format!("http://{addr}/")
}

async fn serve(mut stream: TcpStream, fault: Fault) {
    // Errors only mean the client went away first, which every fault allows.
    if read_head(&mut stream).await.is_err() {
        return;
    }
    let _ = match fault {
        Fault::Stall => drain(&mut stream).await,
        Fault::ResetMidHeaders => reset_after(stream, HALF_HEAD).await,
        Fault::ResetMidBody => reset_after(stream, &short_body()).await,
        Fault::StallMidBody => match stream.write_all(&short_body()).await {
            Ok(()) => drain(&mut stream).await,
            Err(e) => Err(e),
        },
        Fault::TruncatedBody => close_after(stream, &short_body()).await,
        Fault::Garbage => close_after(stream, GARBAGE).await,
    };
}

fn short_body() -> Vec<u8> {
    let mut out = SHORT_BODY_HEAD.to_vec();
    out.extend_from_slice(&[b'x'; 100]);
    out
}

/// Reads until the end of the request head (a blank line), at most 64 KiB.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// Reads and discards until the client closes, keeping the connection open until then.
async fn drain(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

async fn reset_after(mut stream: TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await?;
    // The bytes are already in the client's receive queue, which Linux delivers before it
    // reports the reset: the client sees them, then the RST.
    stream.set_zero_linger()?;
    drop(stream);
    Ok(())
}

async fn close_after(mut stream: TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.shutdown().await
}
