//! A program with no async runtime calling HTTP through `http_doer::blocking::Client`, over
//! ureq with retries: `cargo run --example blocking`.
//!
//! It starts a tiny loopback server on a plain thread: `/flaky` answers 503 once, then 200;
//! `/big` answers 3 MiB, read through `std::io::Read` in bounded memory.

use std::error::Error;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use http_doer::blocking::Client;
use http_doer::retrying::Backoff;
use http_doer::{Attempts, Body, DoerExt, ResponseMode, UreqDoer};

/// How many connections the server answers before its thread ends.
const CONNECTIONS: usize = 8;
const BIG: usize = 3 * 1024 * 1024;

fn main() -> Result<(), Box<dyn Error>> {
    let base = serve()?;

    // The stack a sync program gets: ureq on the client's own small runtime, no second HTTP
    // stack, and the crate's decorators over it.
    let stack = UreqDoer::new()
        .retrying()
        .backoff(Backoff::constant(Duration::from_millis(50)));
    let client = Client::new(stack)?;

    let resp = client.get(format!("{base}/flaky"))?;
    let attempts = resp.extensions().get::<Attempts>().map_or(1, |a| a.0);
    println!(
        "GET /flaky -> {} after {attempts} attempt(s): {:?}",
        resp.status(),
        resp.into_body().text()?
    );

    // One request streamed: the body is read as it arrives, whatever its size.
    let mut req = http::Request::get(format!("{base}/big")).body(Body::empty())?;
    req.extensions_mut().insert(ResponseMode::Streamed);
    let mut body = client.execute(req)?.into_body();
    let copied = std::io::copy(&mut body, &mut std::io::sink())?;
    println!("GET /big -> {copied} bytes read through std::io::Read");

    // A port nothing listens on: an error with a kind a program can match on.
    let closed = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    match client.get(format!("http://{closed}/")) {
        Ok(resp) => println!("{closed} answered {}", resp.status()),
        Err(e) => println!("GET {closed} -> {:?}: {e:#}", e.kind()),
    }
    Ok(())
}

/// Starts the server on a free loopback port and returns its base URL.
fn serve() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        let mut flaky_calls = 0;
        for stream in listener.incoming().take(CONNECTIONS) {
            // A failed connection only costs that one answer.
            let _ = stream.and_then(|s| answer(s, &mut flaky_calls));
        }
    });
    Ok(base)
}

fn answer(stream: TcpStream, flaky_calls: &mut usize) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The rest of the head, up to its blank line (bounded: 100 lines at most).
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("/");
    let mut out = stream;
    match path {
        "/flaky" => {
            *flaky_calls += 1;
            if *flaky_calls == 1 {
                respond(&mut out, "503 Service Unavailable", b"busy")
            } else {
                respond(&mut out, "200 OK", b"hello after a retry")
            }
        }
        "/big" => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\nConnection: close\r\n\r\n"
            )?;
            let mut content = std::io::repeat(b'x').take(BIG as u64);
            std::io::copy(&mut content, &mut out).map(|_| ())
        }
        _ => respond(&mut out, "404 Not Found", b"no such page"),
    }
}

fn respond(out: &mut TcpStream, status: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)
}
