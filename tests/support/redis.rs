//! A real Redis for the fleet tests: `redis-server` started as a child on a free loopback port
//! (no persistence), or the one `HTTP_DOER_REDIS_URL` names (CI starts one). A test that needs
//! Redis fails, loudly, when neither is there: it never skips.
//!
//! Also a TCP proxy between a client and Redis that can pass bytes, delay every reply, or
//! blackhole the link (a partition), switched at run time.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HOW_TO_INSTALL: &str = "these tests need a real Redis: install `redis-server` \
    (Debian/Ubuntu: `apt-get install -y redis-server`; macOS: `brew install redis`) or set \
    HTTP_DOER_REDIS_URL=redis://127.0.0.1:PORT to a running one";

/// A `redis-server` child; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
}

/// A free loopback port.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits (up to 10 s) until it accepts.
    pub fn start() -> RedisServer {
        RedisServer::on(free_port())
    }

    /// Starts `redis-server` on `port`.
    pub fn on(port: u16) -> RedisServer {
        let mut server = RedisServer { child: None, port };
        server.restart();
        server
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it (its data is gone: no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .args(["--port", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): {HOW_TO_INSTALL}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while StdStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The URL of a Redis for one test (which uses a key prefix of its own): `HTTP_DOER_REDIS_URL`,
/// or a `redis-server` child that lives as long as the guard returned with it.
pub fn shared_url() -> (String, Option<RedisServer>) {
    if let Ok(url) = std::env::var("HTTP_DOER_REDIS_URL") {
        return (url, None);
    }
    let server = RedisServer::start();
    (server.url(), Some(server))
}

/// A unique key prefix for one test.
pub fn prefix(test: &str) -> String {
    format!("t-{test}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// What the [`Proxy`] does with bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Pass = 0,
    /// Every chunk from Redis is held 500 ms.
    Slow = 1,
    /// Nothing goes through either way; connections stay open (a partition).
    Blackhole = 2,
}

/// A loopback TCP proxy to Redis whose behaviour can be switched.
pub struct Proxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn to(port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let m = mode.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let m = m.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", port)).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, m.clone(), false), pipe(sr, cw, m, true));
                });
            }
        });
        Proxy { addr, mode, task }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<AtomicU8>,
    replies: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(n) = from.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        match mode.load(Ordering::SeqCst) {
            1 if replies => tokio::time::sleep(Duration::from_millis(500)).await,
            // A partition: the bytes are lost.
            2 => continue,
            _ => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
