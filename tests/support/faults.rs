//! A raw TCP server that misbehaves on purpose, one way per server.
//!
//! Each connection first reads the request head (so a reset is never caused by unread request
//! bytes), then does what its [`Fault`] says. A reset is a real TCP RST: the socket is closed
//! with `SO_LINGER` set to zero.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

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

/// A fault server on a free loopback port; stops accepting when dropped.
pub struct FaultServer {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl FaultServer {
    /// Starts a server that answers every connection with `fault`.
    pub async fn start(fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, fault));
            }
        });
        FaultServer { addr, accept }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
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
