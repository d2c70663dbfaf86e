//! The redirect follower and the URL normal form, over a raw loopback server that records
//! each request line and header block: both backends put the same line on the wire for odd
//! targets and Locations; a credential `Signing` added (marked sensitive, whatever its
//! header's name) never goes to another origin; a POST turned into a GET loses every header
//! that described its body.
#![cfg(feature = "ureq")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_doer::{Body, Doer, Request, ReqwestDoer, UreqDoer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
struct Seen {
    line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

type Script = Arc<dyn Fn(&Seen) -> Vec<u8> + Send + Sync>;

#[derive(Clone)]
struct Raw {
    port: u16,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl Raw {
    async fn start(script: impl Fn(&Seen) -> Vec<u8> + Send + Sync + 'static) -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let script: Script = Arc::new(script);
        let l = log.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, l.clone(), script.clone()));
            }
        });
        Raw { port, log }
    }
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
    fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>, script: Script) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return,
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 1 << 20 {
            return;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if let Some(len) = len {
        while rest.len() < len {
            match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => rest.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
    } else if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        while !rest.windows(5).any(|w| w == b"0\r\n\r\n") {
            match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => rest.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
    }
    let seen = Seen {
        line,
        headers,
        body: rest,
    };
    let out = script(&seen);
    log.lock().unwrap().push(seen);
    let _ = stream.write_all(&out).await;
    let _ = stream.shutdown().await;
}

fn ok() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_vec()
}

fn redirect(status: u16, location: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} Moved\r\nLocation: ").into_bytes();
    out.extend_from_slice(location);
    out.extend_from_slice(b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    out
}

fn backends() -> Vec<(&'static str, Box<dyn Doer>)> {
    vec![
        (
            "reqwest",
            Box::new(ReqwestDoer::new().timeout(Duration::from_secs(10))),
        ),
        (
            "ureq",
            Box::new(UreqDoer::new().timeout(Duration::from_secs(10))),
        ),
    ]
}

fn get(url: &str) -> Request {
    http::Request::get(url).body(Body::empty()).unwrap()
}

/// Both backends put the same request line on the wire for URLs with bytes that the normal
/// form leaves alone.
#[tokio::test]
async fn both_backends_put_the_same_request_line_on_the_wire() {
    let server = Raw::start(|_| ok()).await;
    let paths = [
        "/p?q=<a>",
        "/p?q=`x`",
        "/p?q={a}|b^c\\d",
        "/p?q=[1]",
        "/a[1]/b",
        "/a^b/c|d",
        "/a`b",
        "/%zz/x?y=%",
        "/p?a=#b",
        "/p?a#b",
        "",
        "?x",
        "/p?",
        "/p;x/..;/y",
        "/p/%2E%2E/q",
        "/p/%2e%2f..%2fq",
    ];
    let mut report = Vec::new();
    for path in paths {
        let url = server.url(path);
        let mut lines = Vec::new();
        for (name, doer) in backends() {
            let before = server.seen().len();
            let Ok(uri) = url.parse::<http::Uri>() else {
                lines.push(format!("{name}: http::Uri refuses"));
                continue;
            };
            let req = http::Request::get(uri).body(Body::empty()).unwrap();
            match doer.execute(req).await {
                Ok(_) => {
                    let seen = server.seen();
                    lines.push(format!("{name}: {}", seen[before].line));
                }
                Err(e) => lines.push(format!("{name}: error {:?}", e.kind())),
            }
        }
        let same = lines
            .iter()
            .map(|l| l.split_once(": ").unwrap().1)
            .collect::<Vec<_>>();
        let mark = if same[0] == same[1] { "  " } else { "!!" };
        report.push(format!("{mark} {path:?} -> {lines:?}"));
    }
    assert!(
        !report.iter().any(|l| l.starts_with("!!")),
        "\n{}",
        report.join("\n")
    );
}

/// The same for Location values: each backend follows the same Location to the same line.
#[tokio::test]
async fn both_backends_follow_a_location_to_the_same_request_line() {
    let locations: Vec<&[u8]> = vec![
        b"/t?q=<a>",
        b"/t?q=`x`",
        b"/t?q={a}|b",
        b"/t[1]",
        b"/t^x",
        b"/t/%zz",
        b"/t\\x",
        b"\\\\127.0.0.1\\x",
        b"/t?a=#b",
        b"/t#f?x",
        b"/t?\x7f",
        b"http:/t",
        b"/t%",
        b"/t\"q",
        b"/t?'",
    ];
    let mut report = Vec::new();
    for location in locations {
        let loc = location.to_vec();
        let server = Raw::start(move |seen| {
            if seen.line.starts_with("GET /start") {
                redirect(302, &loc)
            } else {
                ok()
            }
        })
        .await;
        let mut lines = Vec::new();
        for (name, doer) in backends() {
            let before = server.seen().len();
            match doer.execute(get(&server.url("/start"))).await {
                Ok(resp) => {
                    let seen = server.seen();
                    let line = seen.get(before + 1).map(|s| s.line.clone());
                    lines.push(format!("{name}: {} {line:?}", resp.status()));
                }
                Err(e) => lines.push(format!("{name}: error {:?}", e.kind())),
            }
        }
        let same = lines
            .iter()
            .map(|l| l.split_once(": ").unwrap().1)
            .collect::<Vec<_>>();
        let mark = if same[0] == same[1] { "  " } else { "!!" };
        report.push(format!(
            "{mark} {:?} -> {lines:?}",
            String::from_utf8_lossy(location)
        ));
    }
    assert!(
        !report.iter().any(|l| l.starts_with("!!")),
        "\n{}",
        report.join("\n")
    );
}

/// An API key that `Signing` put in a header (marked sensitive) must not go to another origin
/// on a redirect, whatever the header's name: Honeycomb's `X-Honeycomb-Team`, JFrog's
/// `X-JFrog-Art-Api`, Coinbase's `CB-ACCESS-PASSPHRASE` are real API-key headers.
#[tokio::test]
async fn signed_api_key_headers_stay_on_their_origin() {
    use http_doer::DoerExt;
    use http_doer::signing::ApiKey;
    for header in [
        "x-honeycomb-team",
        "x-jfrog-art-api",
        "cb-access-passphrase",
    ] {
        let other = Raw::start(|_| ok()).await;
        let target = other.url("/landing");
        let first = Raw::start(move |_| redirect(302, target.as_bytes())).await;
        for (name, doer) in backends() {
            let doer = doer.signing(ApiKey::header(header, "s3cr3t-key-123").unwrap());
            let resp = doer.execute(get(&first.url("/start"))).await.unwrap();
            assert_eq!(resp.status(), 200, "{name}");
            let seen = other.seen();
            let last = seen.last().expect("the redirect was followed");
            let leaked = last.headers.iter().find(|(n, _)| n == header);
            assert!(
                leaked.is_none(),
                "{name}: {leaked:?} sent to another origin"
            );
        }
    }
}

/// A POST turned into a GET by a 303 "loses its body and the headers that described it"
/// (src/backend/redirect.rs; RFC 9110 section 15.4 lists Content-Encoding, Content-Language,
/// Content-Location, Content-Type, Content-Length, Digest and Last-Modified). `Content-Digest`
/// is what `Signing` adds to describe a body (RFC 9530).
#[tokio::test]
async fn a_post_turned_into_get_loses_every_content_header() {
    let server = Raw::start(|seen| {
        if seen.line.starts_with("POST /start") {
            redirect(303, b"/next")
        } else {
            ok()
        }
    })
    .await;
    for (name, doer) in backends() {
        let req = http::Request::post(server.url("/start"))
            .header("content-type", "application/json")
            .header(
                "content-digest",
                "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            )
            .header("content-language", "en")
            .header("content-location", "/docs/1")
            .header(
                "digest",
                "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
            )
            .header("last-modified", "Tue, 15 Nov 1994 12:45:26 GMT")
            .body(Body::from("{\"a\":1}"))
            .unwrap();
        let resp = doer.execute(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{name}");
        let seen = server.seen();
        let last = seen.last().unwrap();
        assert!(last.line.starts_with("GET /next"), "{name}: {}", last.line);
        let kept: Vec<_> = last
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("content-") || n == "digest" || n == "last-modified")
            .collect();
        assert!(
            kept.is_empty(),
            "{name}: the GET still describes the old body: {kept:?}"
        );
        assert!(last.body.is_empty(), "{name}: the GET carries a body");
    }
}
