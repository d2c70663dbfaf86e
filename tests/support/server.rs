//! A small hyper server for ordinary exchanges (HTTP/1.1, keep-alive).
//!
//! Routes:
//! * `/echo` (and any path below it): 200; the body is the request body, and every request header comes back as
//!   `x-echo-<name>` (all values, in order), with `x-echo-method` and `x-echo-uri`.
//! * `/status/{code}`: that status, with a short body unless the status forbids one.
//! * `/bytes/{n}`: `n` bytes of [`pattern`] with a `Content-Length`.
//! * `/chunked/{n}`: `n` bytes of [`pattern`] in 16 KiB chunks, without a `Content-Length`.
//! * `/gzip`: [`GZIP_HELLO`] with `Content-Encoding: gzip`, whatever the request accepts.
//! * `/redirect/{n}`: `302` to `/redirect/{n-1}`; `/redirect/0` is `/echo`.
//! * `/to?status={s}&url={u}` (and any path below `/to`): status `s` with `Location: u` (`u` is the rest of the query).
//! * `/headers/{n}`: 200 with `n` header lines in all (`x-h0` ... and `content-length`).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Bytes, Frame, Incoming};
use hyper::header::{CONTENT_ENCODING, HeaderName, HeaderValue, LOCATION};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::Loopback;

type ResBody = BoxBody<Bytes, Infallible>;

/// Starts the server on a free loopback port.
pub async fn start() -> Loopback {
    Loopback::serve(|stream| async move {
        let io = TokioIo::new(stream);
        // An error only means the client went away, which tests do on purpose.
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service_fn(route))
            .await;
    })
    .await
}

/// "hello", gzip-compressed (a stored deflate block), as `/gzip` sends it.
pub const GZIP_HELLO: &[u8] = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\x01\x05\x00\xfa\xffhello\x86\xa6\x10\x36\x05\x00\x00\x00";

/// The deterministic bytes served by `/bytes` and `/chunked`: every byte value, cycling.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

async fn route(req: Request<Incoming>) -> Result<Response<ResBody>, Infallible> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let resp = match segments.as_slice() {
        ["echo", ..] => echo(req).await,
        ["status", code] => status(code.parse().unwrap_or(400)),
        ["bytes", n] => full(StatusCode::OK, pattern(n.parse().unwrap_or(0))),
        ["chunked", n] => chunked(n.parse().unwrap_or(0)),
        ["gzip"] => {
            let mut resp = full(StatusCode::OK, GZIP_HELLO);
            let gzip = HeaderValue::from_static("gzip");
            resp.headers_mut().insert(CONTENT_ENCODING, gzip);
            resp
        }
        ["redirect", "0"] => echo(req).await,
        ["redirect", n] => {
            let next = n.parse::<u32>().map_or(0, |n| n.saturating_sub(1));
            redirect(302, &format!("/redirect/{next}"))
        }
        ["headers", n] => {
            let mut resp = full(StatusCode::OK, "");
            let n: usize = n.parse().unwrap_or(0);
            // hyper adds `content-length` itself: one line of the `n`.
            for i in 0..n.saturating_sub(1) {
                let name = HeaderName::from_bytes(format!("x-h{i}").as_bytes()).expect("a name");
                resp.headers_mut().insert(name, HeaderValue::from(i));
            }
            resp
        }
        ["to", ..] => {
            let query = req.uri().query().unwrap_or("");
            let code = query
                .strip_prefix("status=")
                .and_then(|q| q.get(..3))
                .and_then(|c| c.parse().ok())
                .unwrap_or(302);
            redirect(code, query.split_once("url=").map_or("/", |(_, u)| u))
        }
        _ => status(404),
    };
    Ok(resp)
}

async fn echo(req: Request<Incoming>) -> Response<ResBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut resp = full(StatusCode::OK, body);
    let headers = resp.headers_mut();
    headers.insert("x-echo-method", value(parts.method.as_str()));
    headers.insert("x-echo-uri", value(&parts.uri.to_string()));
    for (name, v) in &parts.headers {
        let echoed = HeaderName::from_bytes(format!("x-echo-{name}").as_bytes())
            .expect("a header name with a prefix is still a header name");
        headers.append(echoed, v.clone());
    }
    // hyper itself leaves the body out of a HEAD response, keeping its Content-Length.
    resp
}

fn status(code: u16) -> Response<ResBody> {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    let body = if matches!(code.as_u16(), 204 | 304) {
        Vec::new()
    } else {
        format!("status {}", code.as_u16()).into_bytes()
    };
    full(code, body)
}

fn redirect(code: u16, location: &str) -> Response<ResBody> {
    let mut resp = status(code);
    resp.headers_mut().insert(LOCATION, value(location));
    resp
}

fn full(code: StatusCode, body: impl Into<Bytes>) -> Response<ResBody> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = code;
    resp
}

fn chunked(n: usize) -> Response<ResBody> {
    let body = Chunks {
        rest: Bytes::from(pattern(n)),
    };
    Response::new(body.boxed())
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("a printable header value")
}

/// A body of unknown length, so hyper sends it with `Transfer-Encoding: chunked`.
struct Chunks {
    rest: Bytes,
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.rest.len().min(16 * 1024);
        let chunk = self.rest.split_to(n);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}
