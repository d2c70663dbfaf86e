//! The loopback server the benchmarks call: hyper, HTTP/1.1 keep-alive, on its own thread and
//! current-thread runtime; [`start`] answers a fixed 13 bytes (`backends`, `allocs`), [`serve`]
//! whatever its handler says (`streaming`).

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Starts the server; returns its address. `on_start` runs first on the server's thread (the
/// allocation count uses it to leave the server's allocations out).
pub fn start(on_start: fn()) -> std::net::SocketAddr {
    serve(on_start, |_req| async {
        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
            b"hello, world\n",
        ))))
    })
}

/// Starts a server that answers every request with `handle`, on its own thread and
/// current-thread runtime, HTTP/1.1 keep-alive, `TCP_NODELAY`; returns its address.
pub fn serve<F, Fut, B>(on_start: fn(), handle: F) -> std::net::SocketAddr
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = Result<hyper::Response<B>, std::convert::Infallible>>
        + Send
        + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    listener.set_nonblocking(true).expect("non-blocking");
    std::thread::spawn(move || {
        on_start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle));
                tokio::spawn(conn);
            }
        });
    });
    addr
}
