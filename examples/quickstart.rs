//! The README's main command: `cargo run --example quickstart`.
//!
//! Starts a small HTTP server on a free loopback port, in this process, then calls it through
//! both backends and prints what happened. No internet needed; it ends in about a second.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use http_doer::{Body, Doer, ReqwestDoer, UreqDoer};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = start_server().await?;
    println!("http-doer quickstart: local server on http://{addr}\n");

    let backends: [(&str, Box<dyn Doer>); 2] = [
        ("reqwest", Box::new(ReqwestDoer::new())),
        ("ureq", Box::new(UreqDoer::new())),
    ];
    for (name, doer) in &backends {
        println!("{name}:");
        for (method, path, body) in [
            ("GET", "/hello", ""),
            ("POST", "/echo", "ping"),
            ("GET", "/missing", ""),
        ] {
            let req = http::Request::builder()
                .method(method)
                .uri(format!("http://{addr}{path}"))
                .body(Body::from(body))?;
            let started = Instant::now();
            let resp = doer.execute(req).await?;
            let status = resp.status();
            let text = resp.into_body().text().await?;
            println!(
                "  {method:<4} {path:<9} -> {status} {text:?} in {:.1} ms",
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        let refused = http::Request::get("http://127.0.0.1:1/").body(Body::empty())?;
        let err = doer
            .execute(refused)
            .await
            .expect_err("nothing listens on port 1");
        println!(
            "  GET  127.0.0.1:1  -> error kind {:?}: {err}\n",
            err.kind()
        );
    }
    println!("done");
    Ok(())
}

/// A tiny hyper server: `/hello` greets, `/echo` returns the request body, anything else is 404.
async fn start_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let (status, body) = match req.uri().path() {
                        "/hello" => (200, Bytes::from_static(b"hello from the local server")),
                        "/echo" => {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            (200, body.unwrap_or_default())
                        }
                        _ => (404, Bytes::from_static(b"not here")),
                    };
                    let resp = hyper::Response::builder()
                        .status(status)
                        .body(Full::new(body));
                    Ok::<_, Infallible>(resp.expect("a valid response"))
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                let _ = conn.await;
            });
        }
    });
    Ok(addr)
}
