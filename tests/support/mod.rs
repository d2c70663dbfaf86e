//! Loopback servers for the conformance suite.

pub mod faults;
pub mod server;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A server on a free loopback port that hands each connection to a handler; it stops
/// accepting when dropped.
pub struct Loopback {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Loopback {
    /// Binds `127.0.0.1:0` and serves every connection with `handle`, each on its own task.
    pub async fn serve<F, Fut>(handle: F) -> Self
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream));
            }
        });
        Loopback { addr, accept }
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
