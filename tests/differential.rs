//! Differential test: generated requests and server behaviours, each run through `ReqwestDoer`
//! and `UreqDoer` against the same loopback server, which records every request byte for byte.
//! For each case, what the server received and what the caller got must be the same on both
//! backends, or both must refuse with the same `ErrorKind`.
//!
//! Each case's body is handed over buffered, as a one-shot stream or as a replayable stream, and
//! its response asked for buffered or streamed, so every kind goes through the same checks.
//!
//! The generator is seeded, so a run is repeatable; the count is 300 cases by default and
//! `HTTP_DOER_DIFF_CASES` raises it (`HTTP_DOER_DIFF_SEED` changes the seed).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_doer::{Body, Doer, ErrorKind, Request, ReqwestDoer, ResponseMode, UreqDoer};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does with the first request of a case; every later request (a redirect's
/// next hop) gets a plain 200.
#[derive(Clone, Debug)]
enum Behaviour {
    Ok,
    Status(u16),
    Redirect(u16, String),
    ManyHeaders(usize),
    Garbage,
}

/// One request as the server read it: the request line, the headers (lower-case names, in the
/// order sent within each name) and the body.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    line: String,
    headers: BTreeMap<String, Vec<Vec<u8>>>,
    body: Vec<u8>,
    port: u16,
}

/// What the caller got: the status, the headers the server wrote and the body; or the kind.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Response(u16, Vec<(String, String)>, Vec<u8>),
    Error(ErrorKind),
}

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<Seen>>>);

struct Server {
    port: u16,
    log: Log,
    behaviour: Arc<Mutex<Behaviour>>,
}

async fn server(log: Log) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let behaviour = Arc::new(Mutex::new(Behaviour::Ok));
    let (b, l) = (behaviour.clone(), log.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, port, l.clone(), b.clone()));
        }
    });
    Server {
        port,
        log,
        behaviour,
    }
}

async fn serve(mut stream: TcpStream, port: u16, log: Log, behaviour: Arc<Mutex<Behaviour>>) {
    let Some(seen) = read_request(&mut stream, port).await else {
        return;
    };
    let head_only = seen.line.starts_with("HEAD ");
    let first = {
        let mut log = log.0.lock().unwrap();
        log.push(seen);
        log.iter().filter(|s| s.port == port).count() == 1
    };
    let behaviour = if first {
        behaviour.lock().unwrap().clone()
    } else {
        Behaviour::Ok
    };
    let mut out = Vec::new();
    let body: &[u8] = b"answer";
    match &behaviour {
        Behaviour::Ok => out.extend_from_slice(b"HTTP/1.1 200 OK\r\nx-answer: ok\r\n"),
        Behaviour::Status(code) => {
            out.extend_from_slice(format!("HTTP/1.1 {code} Whatever\r\n").as_bytes())
        }
        Behaviour::Redirect(code, location) => {
            out.extend_from_slice(format!("HTTP/1.1 {code} Moved\r\nLocation: ").as_bytes());
            out.extend_from_slice(location.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Behaviour::ManyHeaders(n) => {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            for i in 0..*n {
                out.extend_from_slice(format!("x-h{i}: {i}\r\n").as_bytes());
            }
        }
        Behaviour::Garbage => {
            let _ = stream.write_all(b"\x00\x01 not http\r\n\r\n").await;
            return;
        }
    }
    let no_body = head_only || matches!(behaviour, Behaviour::Status(204 | 304));
    if !matches!(behaviour, Behaviour::Status(204 | 304)) {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    if !no_body {
        out.extend_from_slice(body);
    }
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

/// Reads more of the body into `rest`; `None` when the peer closed or went quiet.
async fn read_more(stream: &mut TcpStream, rest: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk))
        .await
        .ok()?
        .ok()?;
    (n > 0).then(|| rest.extend_from_slice(&chunk[..n]))
}

/// Reads one request: the head, then a body framed by Content-Length or chunked.
async fn read_request(stream: &mut TcpStream, port: u16) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 256 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = buf[..head_end].to_vec();
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = String::from_utf8_lossy(lines.next()?).into_owned();
    let mut headers: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for l in lines {
        let colon = l.iter().position(|&b| b == b':')?;
        let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
        let value = l[colon + 1..].trim_ascii().to_vec();
        headers.entry(name).or_default().push(value);
    }
    let body = if let Some(len) = headers.get("content-length") {
        let len: usize = String::from_utf8_lossy(&len[0]).parse().ok()?;
        while rest.len() < len {
            read_more(stream, &mut rest).await?;
        }
        rest[..len].to_vec()
    } else if headers.contains_key("transfer-encoding") {
        while !rest.windows(5).any(|w| w == b"0\r\n\r\n") {
            read_more(stream, &mut rest).await?;
        }
        dechunk(&rest)
    } else {
        Vec::new()
    };
    Some(Seen {
        line,
        headers,
        body,
        port,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(&String::from_utf8_lossy(&data[..i]), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[i + 2..(i + 2 + size).min(data.len())]);
        data = &data[(i + 4 + size).min(data.len())..];
    }
    out
}

/// One generated case: the parts of a request, rebuilt for each backend, and a behaviour.
#[derive(Clone, Debug)]
struct Case {
    method: &'static str,
    url: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    body_kind: BodyKind,
    response_mode: ResponseMode,
    behaviour: Behaviour,
}

/// How the case's body is handed to the backend: the same bytes, as a buffer or a stream.
#[derive(Clone, Copy, Debug)]
enum BodyKind {
    Buffered,
    OneShot,
    Replayable,
}

impl Case {
    fn request(&self) -> Option<Request> {
        let mut b = http::Request::builder().method(self.method).uri(&self.url);
        for (name, value) in &self.headers {
            b = b.header(*name, http::HeaderValue::from_bytes(value).ok()?);
        }
        let bytes = bytes::Bytes::from(self.body.clone());
        let body = match self.body_kind {
            BodyKind::Buffered => Body::from(bytes),
            BodyKind::OneShot => Body::from_stream(halves(bytes)),
            BodyKind::Replayable => Body::replayable(move || halves(bytes.clone())),
        };
        let mut req = b.body(body).ok()?;
        req.extensions_mut().insert(self.response_mode);
        Some(req)
    }
}

/// `bytes` as a stream of two chunks (an empty body as no chunk at all).
fn halves(
    bytes: bytes::Bytes,
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> {
    let mid = bytes.len() / 2;
    let parts = [bytes.slice(..mid), bytes.slice(mid..)];
    futures_util::stream::iter(parts.into_iter().filter(|p| !p.is_empty()).map(Ok))
}

fn pick<T: Clone>(rng: &mut SmallRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())].clone()
}

/// `usual` most of the time, one of `odd` with probability `p`: each case stays mostly valid, so
/// that odd parts are tried one or two at a time and most cases reach the server.
fn rarely<T: Clone>(rng: &mut SmallRng, p: f64, usual: T, odd: &[T]) -> T {
    if rng.random_bool(p) {
        pick(rng, odd)
    } else {
        usual
    }
}

fn generate(rng: &mut SmallRng, port: u16, other: u16) -> Case {
    let method = pick(
        rng,
        &[
            "GET", "GET", "GET", "GET", "HEAD", "POST", "POST", "PUT", "PATCH", "DELETE",
            "OPTIONS", "TRACE", "PURGE", "PROPFIND", "REPORT", "M-SEARCH", "CONNECT",
        ],
    );
    let userinfo = rarely(
        rng,
        0.2,
        "",
        &["alice:pw@", "al%40ce:p%3Aw@", "user@", ":pw@"],
    );
    let host = rarely(
        rng,
        0.1,
        "127.0.0.1",
        &["127.1", "0x7f.0.0.1", "0177.0.0.1"],
    );
    let port_text = rarely(
        rng,
        0.15,
        format!("{port}"),
        &[format!("0{port}"), "99999".to_owned(), "0".to_owned()],
    );
    let segments = rng.random_range(0..4);
    let mut path = String::new();
    for _ in 0..segments {
        path.push('/');
        path.push_str(pick(
            rng,
            &[
                "a", "b-c", ".", "..", "%2e", "%2E%2e", "%41%42", "x{y}", "q\"t", "sl\\sh", "é",
                "~u", "a;b=c", "",
            ],
        ));
    }
    if path.is_empty() || rng.random_bool(0.3) {
        path.push('/');
    }
    let query = pick(
        rng,
        &[
            "",
            "",
            "?a=1&b=2",
            "?it's",
            "?k=%20v",
            "?api_key=s3cr3t",
            "?é=ü",
            "?",
        ],
    );
    let url = format!("http://{userinfo}{host}:{port_text}{path}{query}");

    let body_len = pick(rng, &[0usize, 0, 4, 40]);
    let body: Vec<u8> = (0..body_len).map(|i| b'a' + (i % 26) as u8).collect();
    let mut headers: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for _ in 0..rng.random_range(0..4) {
        let usual = ("x-plain", b"value".to_vec());
        let header = rarely(
            rng,
            0.3,
            usual,
            &[
                ("x-plain", b"second value".to_vec()),
                ("x-empty", b"".to_vec()),
                ("x-obs-text", b"caf\xe9 \xff".to_vec()),
                ("x-tab", b"a\tb".to_vec()),
                ("content-length", body_len.to_string().into_bytes()),
                ("content-length", b"5".to_vec()),
                ("content-length", b"+5".to_vec()),
                ("transfer-encoding", b"chunked".to_vec()),
                ("host", format!("127.0.0.1:{port}").into_bytes()),
                ("host", format!("127.0.0.1:0{port}").into_bytes()),
                ("host", b"other.test".to_vec()),
                ("connection", b"close".to_vec()),
                ("connection", b"upgrade".to_vec()),
                ("upgrade", b"websocket".to_vec()),
                ("user-agent", b"custom/1".to_vec()),
                ("accept", b"text/plain".to_vec()),
                ("authorization", b"Bearer tok".to_vec()),
                ("cookie", b"a=b".to_vec()),
                ("expect", b"100-continue".to_vec()),
            ],
        );
        headers.push(header);
    }
    let location = pick(
        rng,
        &[
            "../c".to_owned(),
            "".to_owned(),
            "?only=query".to_owned(),
            "/abs/./path/../x".to_owned(),
            "x y".to_owned(),
            "/caf\u{e9}".to_owned(),
            format!("//127.0.0.1:{other}/cross"),
            format!("http://evil:pw@127.0.0.1:{other}/userinfo"),
            format!("http://127.0.0.1:{port}/same"),
            "http://127.0.0.1:99999/".to_owned(),
            "ftp://127.0.0.1/file".to_owned(),
            "javascript:alert(1)".to_owned(),
            "data:text/plain,hi".to_owned(),
            "http:relative".to_owned(),
            "#frag".to_owned(),
        ],
    );
    let behaviour = match rng.random_range(0..10) {
        0..=2 => Behaviour::Ok,
        3 => Behaviour::Status(pick(rng, &[204, 404, 503, 418])),
        4..=7 => Behaviour::Redirect(pick(rng, &[301, 302, 303, 307, 308]), location),
        8 => Behaviour::ManyHeaders(pick(rng, &[90, 99, 101, 127, 200])),
        _ => Behaviour::Garbage,
    };
    let body_kind = pick(
        rng,
        &[BodyKind::Buffered, BodyKind::OneShot, BodyKind::Replayable],
    );
    let response_mode = pick(rng, &[ResponseMode::Buffered, ResponseMode::Streamed]);
    Case {
        method,
        url,
        headers,
        body,
        body_kind,
        response_mode,
        behaviour,
    }
}

async fn run(doer: &dyn Doer, case: &Case) -> Got {
    let Some(req) = case.request() else {
        return Got::Error(ErrorKind::InvalidRequest);
    };
    match doer.execute(req).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let mut headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                .collect();
            headers.sort();
            let body = resp.into_body().bytes().await.map(|b| b.to_vec());
            match body {
                Ok(body) => Got::Response(status, headers, body),
                Err(e) => Got::Error(e.kind()),
            }
        }
        Err(e) => Got::Error(e.kind()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_send_and_refuse_alike() {
    let count: usize = std::env::var("HTTP_DOER_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("HTTP_DOER_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let log = Log::default();
    let main = server(log.clone()).await;
    let other = server(log.clone()).await;
    let timeout = Some(Duration::from_secs(5));
    let reqwest = ReqwestDoer::new().timeout(timeout);
    let ureq = UreqDoer::new().timeout(timeout);
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut sent, mut refused, mut mismatches) = (0, 0, Vec::new());
    for i in 0..count {
        let case = generate(&mut rng, main.port, other.port);
        *main.behaviour.lock().unwrap() = case.behaviour.clone();
        let mut outcomes = Vec::new();
        for doer in [&reqwest as &dyn Doer, &ureq] {
            main.log.0.lock().unwrap().clear();
            let got = run(doer, &case).await;
            let seen = std::mem::take(&mut *main.log.0.lock().unwrap());
            outcomes.push((got, seen));
        }
        let (a, b) = (&outcomes[0], &outcomes[1]);
        if a != b {
            mismatches.push(format!(
                "case {i}: {case:?}\n  reqwest: {:?}\n     ureq: {:?}",
                a, b
            ));
        } else if matches!(a.0, Got::Error(ErrorKind::InvalidRequest)) && a.1.is_empty() {
            refused += 1;
        } else {
            sent += 1;
        }
    }
    let _ = other.log;
    println!("{count} cases: {sent} sent alike, {refused} refused alike by both");
    assert!(
        mismatches.is_empty(),
        "{} of {count} cases differ:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The generator must exercise both sides: requests sent and requests refused.
    assert!(
        sent > count / 4 && refused > count / 10,
        "{sent} sent, {refused} refused"
    );
}
