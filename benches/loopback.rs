//! The loopback server the backend benchmarks (`backends`, `allocs`) call: hyper, HTTP/1.1
//! keep-alive, a fixed 13-byte answer, on its own thread and current-thread runtime.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Starts the server; returns its address. `on_start` runs first on the server's thread (the
/// allocation count uses it to leave the server's allocations out).
pub fn start(on_start: fn()) -> std::net::SocketAddr {
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
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"hello, world\n"),
                    )))
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::spawn(conn);
            }
        });
    });
    addr
}
