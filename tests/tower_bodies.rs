//! Bodies through the tower adapters: a foreign empty body (hyper's `Incoming` of a GET,
//! `Empty`, an empty `Full`) is the buffered empty body, which retries and hedges resend; and
//! a stream partly read reports what is left of it, so hyper frames the rest right.

#[allow(dead_code)]
mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use http_doer::retrying::{Attempts, Backoff};
use http_doer::testing::{doer_fn, response};
use http_doer::tower::{from_service, service};
use http_doer::{Body, Doer, DoerExt, ReqwestDoer, ResponseMode};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::ServiceExt;

use support::Loopback;

/// A hyper server that answers 503 to its first request and 200 to the rest.
async fn busy_once(hits: Arc<AtomicUsize>) -> Loopback {
    Loopback::serve(move |stream| {
        let hits = hits.clone();
        async move {
            let svc = hyper::service::service_fn(move |_req: http::Request<Incoming>| {
                let n = hits.fetch_add(1, Ordering::SeqCst);
                async move {
                    let status = if n == 0 { 503 } else { 200 };
                    let resp = http::Response::builder()
                        .status(status)
                        .body(Full::new(Bytes::from("ok")))
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        }
    })
    .await
}

#[tokio::test]
async fn a_get_with_an_empty_foreign_body_is_retried_through_the_service() {
    for label in ["Body::empty()", "Full::new(empty)", "Empty"] {
        let hits = Arc::new(AtomicUsize::new(0));
        let server = busy_once(hits.clone()).await;
        let stack = ReqwestDoer::new()
            .retrying()
            .backoff(Backoff::constant(Duration::from_millis(1)));
        let svc = service(stack);
        let builder = http::Request::get(server.url("/"));
        let resp = match label {
            "Body::empty()" => svc.oneshot(builder.body(Body::empty()).unwrap()).await,
            "Full::new(empty)" => {
                svc.oneshot(builder.body(Full::new(Bytes::new())).unwrap())
                    .await
            }
            _ => {
                svc.oneshot(builder.body(Empty::<Bytes>::new()).unwrap())
                    .await
            }
        }
        .unwrap();
        assert_eq!(
            (resp.status().as_u16(), hits.load(Ordering::SeqCst)),
            (200, 2),
            "{label}: attempts {:?}",
            resp.extensions().get::<Attempts>()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_get_with_an_empty_foreign_body_is_hedged_through_the_service() {
    for label in ["Body::empty()", "Empty"] {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let slow_first = doer_fn(move |req: http_doer::Request| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let _ = req.into_body().bytes().await?;
                if n == 0 {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                Ok(response(200, "ok"))
            }
        });
        let svc = service(slow_first.hedging().fixed_delay(Duration::from_millis(50)));
        let builder = http::Request::get("http://api.test/");
        let started = tokio::time::Instant::now();
        let resp = match label {
            "Body::empty()" => svc.oneshot(builder.body(Body::empty()).unwrap()).await,
            _ => {
                svc.oneshot(builder.body(Empty::<Bytes>::new()).unwrap())
                    .await
            }
        }
        .unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{label}: not hedged, took {:?} with {} call(s)",
            started.elapsed(),
            calls.load(Ordering::SeqCst)
        );
    }
}

/// Three 4-byte chunks, of exactly 12 bytes as a `Content-Length` would say.
struct Three(u8);

impl http_body::Body for Three {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0 == 3 {
            return Poll::Ready(None);
        }
        let c = b"abc"[self.0 as usize];
        self.0 += 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![c; 4])))))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(12 - 4 * u64::from(self.0))
    }
}

/// A streamed response of 12 bytes, its first chunk already read.
async fn partly_read() -> Body {
    let svc = tower::service_fn(|_req: http::Request<Body>| async {
        Ok::<_, Infallible>(http::Response::new(Three(0)))
    });
    let doer = from_service(svc).response_mode(ResponseMode::Streamed);
    let req = http::Request::get("http://api.test/")
        .body(Body::empty())
        .unwrap();
    let mut body = doer.execute(req).await.unwrap().into_body();
    assert_eq!(body.chunk().await.unwrap().unwrap(), "aaaa");
    body
}

#[tokio::test]
async fn the_size_hint_of_a_partly_read_stream_is_what_is_left() {
    let body = partly_read().await;
    assert_eq!(http_body::Body::size_hint(&body).exact(), Some(8));
}

#[tokio::test]
async fn the_rest_of_a_partly_read_stream_uploads_through_hyper() {
    let server = Loopback::serve(|stream| async move {
        let svc = hyper::service::service_fn(|req: http::Request<Incoming>| async move {
            let got = req.into_body().collect().await.map(|c| c.to_bytes());
            let text = match got {
                Ok(b) => b,
                Err(_) => Bytes::from("broken"),
            };
            Ok::<_, Infallible>(http::Response::new(Full::new(text)))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    })
    .await;
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let doer = from_service(client);
    let req = http::Request::post(server.url("/upload"))
        .body(partly_read().await)
        .unwrap();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(5), doer.execute(req))
        .await
        .expect("no hang");
    let text = resp.unwrap().into_body().text().await.unwrap();
    assert_eq!(text, "bbbbcccc");
}
