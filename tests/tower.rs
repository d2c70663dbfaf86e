//! tower, both ways, over real loopback servers: tower-http layers over and under the README
//! stack, hyper-util's client as a Doer, errors across the boundary, bodies streamed through
//! both adapters in bounded memory, and our decorators as a `ServiceBuilder` layer.

#[allow(dead_code)]
mod support;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use http_doer::hedging::Hedge;
use http_doer::retrying::{Attempts, Backoff};
use http_doer::signing::Bearer;
use http_doer::testing::{ScriptedDoer, doer_fn, response};
use http_doer::tower::{DoerService, ServiceDoer, from_service, service};
use http_doer::{Body, Doer, DoerExt, Error, ErrorKind, Request, ReqwestDoer, ResponseMode};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http::follow_redirect::{FollowRedirectLayer, RequestUri};
use tower_http::set_header::SetRequestHeaderLayer;

use support::Loopback;
use support::faults::{self, Fault};

type ResBody = BoxBody<Bytes, Infallible>;

/// hyper-util's legacy client over plain HTTP, sending our `Body`.
fn hyper_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A hyper server on a free loopback port that answers every request with `handle`.
async fn serve<F, Fut>(handle: F) -> Loopback
where
    F: Fn(http::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<ResBody>> + Send + 'static,
{
    Loopback::serve(move |stream| {
        let handle = handle.clone();
        async move {
            let svc = hyper::service::service_fn(move |req| {
                let answer = handle(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            // An error only means the client went away, which some tests do on purpose.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        }
    })
    .await
}

fn answer(status: u16, body: impl Into<Bytes>) -> http::Response<ResBody> {
    let mut resp = http::Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
    resp
}

fn header(value: &'static str) -> HeaderValue {
    HeaderValue::from_static(value)
}

/// The value the echo server saw for `name`, from its `x-echo-<name>` answer header.
fn echoed<'a>(resp: &'a http_doer::Response, name: &str) -> Option<&'a str> {
    resp.headers()
        .get(format!("x-echo-{name}"))
        .and_then(|v| v.to_str().ok())
}

/// How much the first of two counters ran ahead of the second, at most.
#[derive(Default)]
struct Lead {
    ahead: AtomicU64,
    behind: AtomicU64,
    max: AtomicU64,
}

impl Lead {
    fn ahead(&self, n: u64) {
        let ahead = self.ahead.fetch_add(n, Ordering::SeqCst) + n;
        let lead = ahead.saturating_sub(self.behind.load(Ordering::SeqCst));
        self.max.fetch_max(lead, Ordering::SeqCst);
    }

    fn behind(&self, n: u64) {
        self.behind.fetch_add(n, Ordering::SeqCst);
    }
}

const STREAM_TOTAL: u64 = 256 * 1024 * 1024;
const STREAM_CHUNK: usize = 64 * 1024;
/// What may be in flight between the two ends: loopback socket buffers (Linux autotunes a
/// receive buffer up to `tcp_rmem`'s 32 MiB maximum, a send buffer to 4 MiB) and hyper's own
/// buffers fit under it; a body buffered whole anywhere on the way would not.
const STREAM_BOUND: u64 = STREAM_TOTAL / 4;

// (a) ---------------------------------------------------------------------------------------

/// The README's stack to copy (serve-stale and a total deadline included), over each backend.
#[tokio::test]
async fn a_tower_http_layer_over_the_readme_stack_reaches_the_server() {
    let server = support::server::start().await;
    let backends: [(&str, Box<dyn http_doer::Doer>); 2] = [
        ("reqwest", Box::new(ReqwestDoer::new())),
        ("ureq", Box::new(http_doer::UreqDoer::new())),
    ];
    for (name, backend) in backends {
        let stack = backend
            .signing(Bearer::new("tok-over").unwrap())
            .breaker()
            .serve_stale(http_doer::breaker::ServeStale::new(Duration::from_secs(
                300,
            )))
            .hedging()
            .retrying()
            .total_timeout(Duration::from_secs(10))
            .logging();
        let svc = ServiceBuilder::new()
            .layer(SetRequestHeaderLayer::overriding(
                HeaderName::from_static("x-over"),
                header("tower-http"),
            ))
            .service(service(stack));

        let req = http::Request::get(server.url("/echo"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = svc.oneshot(req).await.unwrap();

        assert_eq!(resp.status(), 200, "{name}");
        assert_eq!(echoed(&resp, "x-over"), Some("tower-http"), "{name}");
        assert_eq!(
            echoed(&resp, "authorization"),
            Some("Bearer tok-over"),
            "{name}"
        );
        assert_eq!(
            resp.extensions().get::<Attempts>(),
            Some(&Attempts(1)),
            "{name}"
        );
    }
}

// (b) ---------------------------------------------------------------------------------------

/// `/flaky`: 503 the first time, then a 302 to `/landing`, which echoes the headers it got.
async fn flaky_then_redirect(hits: Arc<[AtomicUsize; 2]>) -> Loopback {
    serve(move |req| {
        let hits = hits.clone();
        async move {
            match req.uri().path() {
                "/flaky" if hits[0].fetch_add(1, Ordering::SeqCst) == 0 => answer(503, "down"),
                "/flaky" => {
                    let mut resp = answer(302, "");
                    resp.headers_mut()
                        .insert(http::header::LOCATION, header("/landing"));
                    resp
                }
                "/landing" => {
                    hits[1].fetch_add(1, Ordering::SeqCst);
                    let mut resp = answer(200, "landed");
                    for name in ["x-under", "authorization"] {
                        if let Some(v) = req.headers().get(name) {
                            let echo = HeaderName::try_from(format!("x-echo-{name}")).unwrap();
                            resp.headers_mut().insert(echo, v.clone());
                        }
                    }
                    resp
                }
                _ => answer(404, ""),
            }
        }
    })
    .await
}

#[tokio::test]
async fn tower_http_layers_under_the_readme_stack_around_hyper_util() {
    let hits = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let server = flaky_then_redirect(hits.clone()).await;
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(SetRequestHeaderLayer::overriding(
            HeaderName::from_static("x-under"),
            header("tower-http"),
        ))
        .service(hyper_client());
    let stack = from_service(client)
        .signing(Bearer::new("tok-under").unwrap())
        .breaker()
        .serve_stale(http_doer::breaker::ServeStale::new(Duration::from_secs(
            300,
        )))
        .hedging()
        .retrying()
        .backoff(Backoff::constant(Duration::ZERO))
        .total_timeout(Duration::from_secs(10))
        .logging();

    let mut req = http::Request::get(server.url("/flaky"))
        .body(Body::empty())
        .unwrap();
    // Hedging resends a fast 503 at once by itself; out of it, the retry is Retrying's.
    req.extensions_mut().insert(Hedge::OptOut);
    let resp = stack.execute(req).await.unwrap();

    assert_eq!(resp.status(), 200);
    assert_eq!(resp.extensions().get::<Attempts>(), Some(&Attempts(2)));
    let landed = resp.extensions().get::<RequestUri>().map(|u| u.0.path());
    assert_eq!(landed, Some("/landing"), "the redirect was followed");
    assert_eq!(echoed(&resp, "x-under"), Some("tower-http"));
    assert_eq!(echoed(&resp, "authorization"), Some("Bearer tok-under"));
    assert_eq!(resp.into_body().text().await.unwrap(), "landed");
    assert_eq!(hits[0].load(Ordering::SeqCst), 2, "503, then the redirect");
    assert_eq!(hits[1].load(Ordering::SeqCst), 1);
}

// (c) ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_doer_error_passes_through_services_and_back_unchanged() {
    let original = || {
        Error::from(ErrorKind::BreakerOpen)
            .with_message("scripted refusal")
            .with_retry_after(Duration::from_secs(7))
    };
    let expected = original().to_string();
    let doer = ScriptedDoer::new()
        .then(Err(original()))
        .then(Err(original()))
        .then(Err(original()));

    // Doer -> Service, under a tower layer that boxes every error (tower's `Timeout`).
    let svc = ServiceBuilder::new()
        .timeout(Duration::from_secs(60))
        .service(service(doer.clone()));
    let req = http::Request::get("http://api.test/")
        .body(Body::empty())
        .unwrap();
    let boxed = svc.clone().oneshot(req).await.unwrap_err();
    let err = boxed
        .downcast::<Error>()
        .expect("our Error, boxed by tower");
    assert_eq!(
        (err.kind(), err.to_string()),
        (ErrorKind::BreakerOpen, expected.clone())
    );

    // ... -> Doer again: the same Error comes back out of the box.
    let req = http::Request::get("http://api.test/")
        .body(Body::empty())
        .unwrap();
    let err = from_service(svc).execute(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BreakerOpen);
    assert_eq!(err.to_string(), expected);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));

    // Doer -> Service -> Doer with nothing between: the Error is never boxed at all.
    let req = http::Request::get("http://api.test/")
        .body(Body::empty())
        .unwrap();
    let err = from_service(service(doer.clone()))
        .execute(req)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.to_string()),
        (ErrorKind::BreakerOpen, expected)
    );
    assert_eq!(doer.calls(), 3);
}

#[tokio::test]
async fn a_refused_connection_from_hyper_util_is_connect_and_retried() {
    // `refused_url` ends with a slash.
    let url = format!("{}secret?api_key=s3cr3t-q", faults::refused_url());
    let doer = from_service(hyper_client())
        .retrying()
        .max_retries(2)
        .backoff(Backoff::constant(Duration::ZERO));
    // A POST: only an error that proves the request never left lets Retrying resend it.
    let req = http::Request::post(&url)
        .header(http::header::AUTHORIZATION, "Bearer hunter2-h")
        .body(Body::from("payload"))
        .unwrap();

    let err = doer.execute(req).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Connect, "{err:?}");
    assert!(err.is_connect());
    assert_eq!(err.attempts(), Some(3), "{err}");
    for text in [err.to_string(), format!("{err:?}"), format!("{err:#}")] {
        assert!(
            !text.contains("s3cr3t-q") && !text.contains("hunter2-h"),
            "{text}"
        );
    }
    assert!(
        err.to_string().contains("/secret?api_key=REDACTED"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_tower_timeout_layer_elapsed_is_a_timeout_and_retried() {
    let server = faults::start(Fault::Stall).await;
    let client = ServiceBuilder::new()
        .timeout(Duration::from_secs(5))
        .service(hyper_client());
    let doer = from_service(client)
        .retrying()
        .max_retries(1)
        .backoff(Backoff::constant(Duration::ZERO));
    let req = http::Request::get(server.url("/"))
        .body(Body::empty())
        .unwrap();

    let err = doer.execute(req).await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(err.is_timeout());
    assert_eq!(err.attempts(), Some(2), "a GET that timed out is retried");
}

#[tokio::test]
async fn a_response_over_the_limit_is_too_large_unless_streamed() {
    let server = support::server::start().await;
    let doer = from_service(hyper_client()).max_body_size(1000);

    let get = || {
        http::Request::get(server.url("/chunked/5000"))
            .body(Body::empty())
            .unwrap()
    };
    let err = doer.execute(get()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err:?}");

    let mut req = get();
    req.extensions_mut().insert(ResponseMode::Streamed);
    let body = doer.execute(req).await.unwrap().into_body();
    assert!(body.is_stream());
    assert_eq!(body.bytes().await.unwrap_err().kind(), ErrorKind::TooLarge);

    let whole = doer.execute(
        http::Request::get(server.url("/bytes/1000"))
            .body(Body::empty())
            .unwrap(),
    );
    let body = whole.await.unwrap().into_body();
    assert!(!body.is_stream(), "read whole by default");
    assert_eq!(body.bytes().await.unwrap(), support::server::pattern(1000));
}

/// A service whose readiness fails as a refused connection would.
#[derive(Clone)]
struct NeverReady;

impl Service<Request> for NeverReady {
    type Response = http::Response<Body>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<http::Response<Body>, std::io::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Err(std::io::ErrorKind::ConnectionRefused.into()))
    }

    fn call(&mut self, _req: Request) -> Self::Future {
        std::future::ready(Ok(http::Response::new(Body::empty())))
    }
}

#[tokio::test]
async fn a_readiness_error_is_classified_too() {
    let req = http::Request::get("http://api.test/ready")
        .body(Body::empty())
        .unwrap();
    let err = from_service(NeverReady).execute(req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err:?}");
    assert_eq!(err.url(), Some("http://api.test/ready"));
}

#[tokio::test]
async fn a_service_not_ready_at_once_wakes_the_caller_when_it_is() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let opened = gate.clone();
    let svc = ServiceBuilder::new()
        .concurrency_limit(1)
        .service(tower::service_fn(move |req: Request| {
            let gate = gate.clone();
            async move {
                if req.uri().path() == "/first" {
                    gate.notified().await;
                }
                let path = req.uri().path().to_owned();
                Ok::<_, Infallible>(http::Response::new(Body::from(path)))
            }
        }));
    let doer = from_service(svc);
    let get = |path: &str| {
        http::Request::get(format!("http://api.test{path}"))
            .body(Body::empty())
            .unwrap()
    };

    // The first call holds the one permit until it is answered; the second waits for it.
    let first = doer.execute(get("/first"));
    let mut second = doer.execute(get("/second"));
    let wakes = Arc::new(Wakes::default());
    let waker = std::task::Waker::from(wakes.clone());
    let polled = second.as_mut().poll(&mut Context::from_waker(&waker));
    assert!(polled.is_pending(), "no permit yet");

    // The first frees the permit: the wake-up the second registered must reach its caller.
    opened.notify_one();
    assert_eq!(
        first.await.unwrap().into_body().text().await.unwrap(),
        "/first"
    );
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        1,
        "woken when the permit came back"
    );
    let second = second.await.unwrap();
    assert_eq!(second.into_body().text().await.unwrap(), "/second");
}

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Wakes(AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// (d) ---------------------------------------------------------------------------------------

/// A Service made of both adapters: hyper-util's client as a Doer, offered as a Service.
fn both_ways() -> DoerService<ServiceDoer<Client<HttpConnector, Body>>> {
    service(from_service(hyper_client()))
}

#[tokio::test]
async fn a_large_upload_streams_through_both_adapters() {
    let lead = Arc::new(Lead::default());
    let server = {
        let lead = lead.clone();
        serve(move |req| {
            let lead = lead.clone();
            async move {
                let mut body = req.into_body();
                let mut total = 0u64;
                while let Some(frame) = body.frame().await {
                    let Ok(data) = frame.map(Frame::into_data) else {
                        return answer(400, "the upload failed");
                    };
                    let n = data.map_or(0, |d| d.len() as u64);
                    total += n;
                    lead.behind(n);
                }
                answer(200, total.to_string())
            }
        })
        .await
    };

    // A request body that is not ours (`StreamBody`), made only as it is read.
    let chunk = Bytes::from(vec![7u8; STREAM_CHUNK]);
    let producer = lead.clone();
    let chunks = (0..STREAM_TOTAL / STREAM_CHUNK as u64).map(move |_| {
        producer.ahead(chunk.len() as u64);
        Ok::<_, Infallible>(Frame::data(chunk.clone()))
    });
    let req = http::Request::post(server.url("/upload"))
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();

    let resp = both_ways().oneshot(req).await.unwrap();

    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.into_body().text().await.unwrap(),
        STREAM_TOTAL.to_string()
    );
    let max = lead.max.load(Ordering::SeqCst);
    assert!(
        max <= STREAM_BOUND,
        "{max} bytes were made ahead of the server's reads"
    );
}

/// A response body of `total` bytes made only as hyper asks for it.
struct Produced {
    left: u64,
    chunk: Bytes,
    lead: Arc<Lead>,
}

impl hyper::body::Body for Produced {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64);
        self.left -= n;
        self.lead.ahead(n);
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }
}

#[tokio::test]
async fn a_large_download_streams_through_both_adapters() {
    let lead = Arc::new(Lead::default());
    let server = {
        let lead = lead.clone();
        serve(move |_req| {
            let body = Produced {
                left: STREAM_TOTAL,
                chunk: Bytes::from(vec![9u8; STREAM_CHUNK]),
                lead: lead.clone(),
            };
            async move { http::Response::new(body.boxed()) }
        })
        .await
    };

    let mut req = http::Request::get(server.url("/download"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(ResponseMode::Streamed);
    let resp = both_ways().oneshot(req).await.unwrap();

    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut total = 0u64;
    while let Some(chunk) = body.chunk().await.unwrap() {
        total += chunk.len() as u64;
        lead.behind(chunk.len() as u64);
    }
    assert_eq!(total, STREAM_TOTAL);
    let max = lead.max.load(Ordering::SeqCst);
    assert!(
        max <= STREAM_BOUND,
        "{max} bytes were sent ahead of the caller's reads"
    );
}

// (e) ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_layer_puts_our_decorators_inside_a_service_builder() {
    let hits = Arc::new(AtomicUsize::new(0));
    let server = {
        let hits = hits.clone();
        serve(move |req| {
            let first = hits.fetch_add(1, Ordering::SeqCst) == 0;
            let seen = [req.headers().get("x-outer"), req.headers().get("x-inner")]
                .map(|v| v.map_or("-", |v| v.to_str().unwrap_or("?")).to_owned());
            async move {
                if first {
                    answer(503, "down")
                } else {
                    answer(200, seen.join(","))
                }
            }
        })
        .await
    };

    let svc = ServiceBuilder::new()
        .layer(SetRequestHeaderLayer::overriding(
            HeaderName::from_static("x-outer"),
            header("outer"),
        ))
        .layer(http_doer::tower::layer(|doer| {
            doer.retrying()
                .backoff(Backoff::constant(Duration::ZERO))
                .breaker()
        }))
        .layer(SetRequestHeaderLayer::overriding(
            HeaderName::from_static("x-inner"),
            header("inner"),
        ))
        .service(hyper_client());

    let req = http::Request::get(server.url("/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = svc.clone().oneshot(req).await.unwrap();

    assert_eq!(resp.status(), 200);
    assert_eq!(resp.extensions().get::<Attempts>(), Some(&Attempts(2)));
    assert_eq!(resp.into_body().text().await.unwrap(), "outer,inner");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_service_is_always_ready_and_callable_by_hand() {
    let doer =
        doer_fn(|req: Request| async move { Ok(response(200, req.uri().path().to_owned())) });
    let mut svc = service(doer);
    let ready = ServiceExt::<Request>::ready(&mut svc).await.unwrap();
    let req = http::Request::get("http://api.test/by-hand")
        .body(Body::empty())
        .unwrap();
    let resp = ready.call(req).await.unwrap();
    assert_eq!(resp.into_body().text().await.unwrap(), "/by-hand");
}

#[test]
fn the_adapters_reach_their_inner_and_print_it() {
    let mut svc = service(ScriptedDoer::new().then_status(204));
    assert!(svc.get_mut().is_some(), "not shared yet");
    let clone = svc.clone();
    assert!(svc.get_mut().is_none(), "shared with its clone");
    assert_eq!(clone.get_ref().remaining(), 1);
    drop(clone);
    assert_eq!(
        Arc::try_unwrap(svc.into_inner())
            .ok()
            .map(|d| d.remaining()),
        Some(1)
    );

    let shared: Arc<dyn Doer> = ScriptedDoer::new().logging().shared();
    let _from_arc: DoerService<dyn Doer> = DoerService::from(shared);

    let mut doer = from_service(tower::service_fn(|_req: Request| async {
        Ok::<_, Infallible>(http::Response::new(Body::empty()))
    }));
    let _: &mut _ = doer.get_mut();
    let _ = doer.clone().into_inner();
    let printed = format!("{:?}", from_service(hyper_client()).max_body_size(5));
    assert!(
        printed.starts_with("ServiceDoer") && printed.contains("max_body_size: 5"),
        "{printed}"
    );
    let layer = http_doer::tower::layer(|doer: ServiceDoer<Client<HttpConnector, Body>>| doer);
    assert_eq!(format!("{layer:?}"), "DoerLayer { .. }");
}
