//! Streaming 1 GiB down and up over loopback: each backend, and the README's stack, against the
//! raw library's own streaming API, with throughput and peak memory, in one run (issue #11,
//! point 7).
//!
//! One loopback server (hyper, HTTP/1.1, on its own thread and current-thread runtime, bound to
//! 127.0.0.1) generates and drains bodies without holding them: a download is one static 64 KiB
//! piece sent again and again (`Content-Length` set), an upload is read frame by frame and only
//! counted; the server answers an upload with the count and with how the request was framed.
//! The client runtime is current-thread, as in `benches/backends.rs`, and the client side only
//! counts bytes. Cases, each one transfer of `HTTP_DOER_STREAM_BYTES` bytes (default 1 GiB):
//!
//! * `down/reqwest_raw`: the `reqwest::Client` that `ReqwestDoer::new()` built,
//!   `get(url).timeout(30 s).send()`, then `Response::chunk()` until the end.
//! * `down/reqwest_doer`: `ReqwestDoer::new()`, the request marked `ResponseMode::Streamed`,
//!   then `Body::chunk()`.
//! * `down/stack`: the README's "stack to copy" over its own `ReqwestDoer::new()` (Logging,
//!   Retrying with a 10 s total timeout, Hedging, Breaker with serve-stale, Signing with a
//!   Bearer token), the same streamed request and `Body::chunk()`.
//! * `down/ureq_raw`: the `ureq::Agent` that `UreqDoer::new()` built, `get(url).call()`, then
//!   `into_body().into_reader()` read 64 KiB at a time, all on `spawn_blocking`, as an async
//!   caller of ureq must.
//! * `down/ureq_doer`: `UreqDoer::new()`, streamed, `Body::chunk()`.
//! * `up/...`: the same five clients PUT a generated body with `Content-Length` set (the
//!   common case for object storage, and the framing both libraries send alike): raw reqwest
//!   with `reqwest::Body::wrap_stream` of a generator stream; the Doers and the stack with
//!   `Body::replayable` of the same generator (the kind a retry can resend); raw ureq with
//!   `SendBody::from_owned_reader` of a reader that copies the same piece into ureq's buffer.
//!   The response (the server's count) is read whole.
//!
//! Each raw library runs through the very client or agent its wrapper's `new()` built (same
//! configuration and pool; raw reqwest gets the 30 s timeout the wrapper sets), so a ratio
//! measures what http-doer adds on the path of a streamed body.
//!
//! **Throughput.** Criterion measures every case (`Throughput::Bytes`, flat sampling, its minimum
//! of 10 samples of one transfer each after a one-transfer warm-up; the size is in the group's
//! name, so criterion compares a run only with earlier runs of the same size). The summary at the
//! end takes the very per-transfer times of those samples: median and min-max throughput, and the
//! ratio of the medians to the raw library's. A case criterion did not run (filtered out: `cargo
//! bench -p http-doer-benches --bench streaming -- none` skips criterion) is timed here instead, 5
//! transfers. Cases run one after another, so a machine whose load drifts skews that ratio; the
//! summary therefore also pairs each wrapped case with its raw library, 5 rounds of back-to-back
//! transfers in alternating order, and judges the throughput target on the median of those paired
//! ratios.
//!
//! **Peak memory.** Each case is run once more in a fresh child process (this binary, started
//! with `HTTP_DOER_STREAM_RSS_CASE` set), so no case inherits another's heap. The child starts
//! the server and the clients, makes one 1 MiB transfer of the same case (pool, runtime
//! threads, lazy statics warmed), resets its peak RSS (`5` into `/proc/self/clear_refs`), reads
//! `VmRSS` (the idle baseline), makes the full transfer and reads `VmHWM`. The peak is the
//! whole process: the server and its buffers, both runtimes, blocking-pool threads, and the
//! binary's resident pages; the delta over the idle baseline is what the transfer itself costs
//! on both sides.
//!
//! The stack's serve-stale cache (16 MiB by default) tees and keeps a streamed GET answer that
//! fits in it: at 1 GiB nothing is teed (the declared length is over the bound), but with
//! `HTTP_DOER_STREAM_BYTES` under 16 MiB `down/stack` copies the whole body into the cache,
//! and its throughput and peak show that copy.
//!
//! `cargo bench -p http-doer-benches --bench streaming` uses 1 GiB;
//! `HTTP_DOER_STREAM_BYTES=16777216 cargo bench ...` checks it quickly; under `cargo test
//! --benches` (criterion's test mode) the default is 4 MiB. The figures are only as steady as the
//! machine: pin it (`taskset -c 0`) and keep it quiet.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::io::{self, Read};
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput};
use http::header::CONTENT_LENGTH;
use http_body_util::{BodyExt, Either, Full};
use http_doer::hedging::HedgeReport;
use http_doer::{Body, Doer, ReqwestDoer, ResponseMode, UreqDoer};
use hyper::body::{Frame, Incoming, SizeHint};
use tokio::runtime::Runtime;

#[allow(dead_code)]
mod instant;
#[allow(dead_code)]
mod loopback;

/// The size of each transfer, in bytes.
const SIZE_VAR: &str = "HTTP_DOER_STREAM_BYTES";
const DEFAULT_SIZE: u64 = 1 << 30;
/// The default size in criterion's test mode (`cargo test --benches`).
const TEST_MODE_SIZE: u64 = 4 << 20;
/// Set in a child process: the case whose peak RSS it measures.
const RSS_CASE_VAR: &str = "HTTP_DOER_STREAM_RSS_CASE";
/// The warm-up transfer a child makes before it measures.
const WARM_BYTES: u64 = 1 << 20;

/// The generated content: one 64 KiB piece, sent again and again (a static, so every copy of
/// the `Bytes` is free).
const PIECE: usize = 64 * 1024;
static PATTERN: [u8; PIECE] = [0x5a; PIECE];

/// The timeout each wrapper sets per exchange by default, set on the raw reqwest requests too
/// (ureq's agent carries it in its config).
const TIMEOUT: Duration = http_doer::backend::DEFAULT_TIMEOUT;

/// Criterion's minimum number of samples; the summary's own timing when criterion did not run;
/// the rounds of the paired comparison.
const SAMPLES: usize = 10;
const OWN_RUNS: usize = 5;
const PAIRED_ROUNDS: usize = 5;

/// The targets.
const RATIO_TARGET: f64 = 0.95;
const RSS_TARGET_MIB: f64 = 32.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Down,
    Up,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    RawReqwest,
    ReqwestDoer,
    Stack,
    RawUreq,
    UreqDoer,
}

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    dir: Dir,
    via: Via,
}

impl Case {
    /// The raw library this case is compared with.
    fn raw(self) -> Via {
        match self.via {
            Via::RawReqwest | Via::ReqwestDoer | Via::Stack => Via::RawReqwest,
            Via::RawUreq | Via::UreqDoer => Via::RawUreq,
        }
    }

    fn index_of(dir: Dir, via: Via) -> usize {
        CASES
            .iter()
            .position(|c| c.dir == dir && c.via == via)
            .expect("every direction has every client")
    }
}

const fn case(name: &'static str, dir: Dir, via: Via) -> Case {
    Case { name, dir, via }
}

const CASES: [Case; 10] = [
    case("down/reqwest_raw", Dir::Down, Via::RawReqwest),
    case("down/reqwest_doer", Dir::Down, Via::ReqwestDoer),
    case("down/stack", Dir::Down, Via::Stack),
    case("down/ureq_raw", Dir::Down, Via::RawUreq),
    case("down/ureq_doer", Dir::Down, Via::UreqDoer),
    case("up/reqwest_raw", Dir::Up, Via::RawReqwest),
    case("up/reqwest_doer", Dir::Up, Via::ReqwestDoer),
    case("up/stack", Dir::Up, Via::Stack),
    case("up/ureq_raw", Dir::Up, Via::RawUreq),
    case("up/ureq_doer", Dir::Up, Via::UreqDoer),
];

/// `left` bytes of the pattern, 64 KiB at a time: as a stream (the upload generators) and as
/// an `http_body::Body` of exact size (the server's download body).
struct Generated {
    left: u64,
}

impl Generated {
    fn new(len: u64) -> Self {
        Generated { left: len }
    }

    fn next_piece(&mut self) -> Option<Bytes> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(PIECE as u64) as usize;
        self.left -= n as u64;
        Some(Bytes::from_static(&PATTERN[..n]))
    }
}

impl futures_core::Stream for Generated {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.next_piece().map(Ok))
    }
}

impl hyper::body::Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.next_piece().map(|piece| Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// The same content as a blocking reader, for ureq: each read copies into ureq's buffer, as
/// reading a file would.
struct GeneratedReader {
    left: u64,
}

impl Read for GeneratedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.left.min(buf.len().min(PIECE) as u64) as usize;
        buf[..n].copy_from_slice(&PATTERN[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Starts the loopback server on its own thread and runtime; returns its address.
///
/// `GET /down/<n>` answers `n` generated bytes; `PUT /up` drains the request body and answers
/// the number of bytes it read, with `x-framing: length` or `chunked`.
fn start_server() -> std::net::SocketAddr {
    loopback::serve(|| {}, serve)
}

type ServerBody = Either<Generated, Full<Bytes>>;

async fn serve(req: hyper::Request<Incoming>) -> Result<hyper::Response<ServerBody>, Infallible> {
    let answer = |status: u16, body: ServerBody| {
        let mut resp = hyper::Response::new(body);
        *resp.status_mut() = hyper::StatusCode::from_u16(status).expect("a status");
        resp
    };
    if let Some(n) = req.uri().path().strip_prefix("/down/") {
        return Ok(match n.parse::<u64>() {
            Ok(n) => answer(200, Either::Left(Generated::new(n))),
            Err(_) => answer(400, Either::Right(Full::default())),
        });
    }
    if req.uri().path() != "/up" {
        return Ok(answer(404, Either::Right(Full::default())));
    }
    let framing = if req.headers().contains_key(CONTENT_LENGTH) {
        "length"
    } else {
        "chunked"
    };
    let mut body = req.into_body();
    let mut count: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => count += frame.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => return Ok(answer(400, Either::Right(Full::default()))),
        }
    }
    let mut resp = answer(200, Either::Right(Full::new(count.to_string().into())));
    resp.headers_mut()
        .insert("x-framing", http::HeaderValue::from_static(framing));
    Ok(resp)
}

struct Fixture {
    base: String,
    rt: Runtime,
    reqwest: reqwest::Client,
    reqwest_doer: ReqwestDoer,
    stack: Arc<dyn Doer>,
    agent: ureq::Agent,
    ureq_doer: UreqDoer,
    /// Per case: the time per transfer of every criterion sample (and warm-up) of it.
    samples: RefCell<Vec<Vec<Duration>>>,
    /// Streamed downloads through the stack that Hedging answered with a second copy sent.
    hedged: Cell<u32>,
}

impl Fixture {
    fn new() -> Self {
        let base = format!("http://{}", start_server());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a client runtime");
        let reqwest_doer = ReqwestDoer::new();
        let ureq_doer = UreqDoer::new();
        Fixture {
            base,
            rt,
            reqwest: reqwest_doer.client().clone(),
            reqwest_doer,
            stack: readme_stack(),
            agent: ureq_doer.agent().clone(),
            ureq_doer,
            samples: RefCell::new(vec![Vec::new(); CASES.len()]),
            hedged: Cell::new(0),
        }
    }

    /// One transfer of `size` bytes; panics unless every byte arrived.
    async fn transfer(&self, case: Case, size: u64) {
        let got = match case.dir {
            Dir::Down => self.download(case.via, size).await,
            Dir::Up => {
                let (framing, got) = self.upload(case.via, size).await;
                assert_eq!(
                    framing, "length",
                    "{}: the upload was not length-framed",
                    case.name
                );
                got
            }
        };
        assert_eq!(got, size, "{}: bytes transferred", case.name);
    }

    async fn download(&self, via: Via, size: u64) -> u64 {
        let url = format!("{}/down/{size}", self.base);
        match via {
            Via::RawReqwest => {
                let resp = self.reqwest.get(&url).timeout(TIMEOUT).send().await;
                let mut resp = resp.expect("an answer");
                assert!(resp.status().is_success(), "{}", resp.status());
                let mut n = 0;
                while let Some(chunk) = resp.chunk().await.expect("a chunk") {
                    n += chunk.len() as u64;
                }
                n
            }
            Via::ReqwestDoer => self.download_through(&self.reqwest_doer, url).await,
            Via::Stack => self.download_through(&*self.stack, url).await,
            Via::UreqDoer => self.download_through(&self.ureq_doer, url).await,
            Via::RawUreq => {
                let agent = self.agent.clone();
                let task = tokio::task::spawn_blocking(move || {
                    let resp = agent.get(&url).call().expect("an answer");
                    assert!(resp.status().is_success(), "{}", resp.status());
                    let mut reader = resp.into_body().into_reader();
                    let mut buf = vec![0; PIECE];
                    let mut n = 0;
                    loop {
                        match reader.read(&mut buf) {
                            Ok(0) => return n,
                            Ok(read) => n += read as u64,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => panic!("a chunk: {e}"),
                        }
                    }
                });
                task.await.expect("a blocking task")
            }
        }
    }

    async fn download_through(&self, doer: &dyn Doer, url: String) -> u64 {
        let mut req = http::Request::get(url)
            .body(Body::empty())
            .expect("a request");
        req.extensions_mut().insert(ResponseMode::Streamed);
        let resp = doer.execute(req).await.expect("an answer");
        assert!(resp.status().is_success(), "{}", resp.status());
        if resp
            .extensions()
            .get::<HedgeReport>()
            .is_some_and(|h| h.copies_sent > 1)
        {
            self.hedged.set(self.hedged.get() + 1);
        }
        let mut body = resp.into_body();
        let mut n = 0;
        while let Some(chunk) = body.chunk().await.expect("a chunk") {
            n += chunk.len() as u64;
        }
        n
    }

    /// The server's framing and count for one upload.
    async fn upload(&self, via: Via, size: u64) -> (String, u64) {
        let url = format!("{}/up", self.base);
        let (framing, count) = match via {
            Via::RawReqwest => {
                let req = self
                    .reqwest
                    .put(&url)
                    .timeout(TIMEOUT)
                    .header(CONTENT_LENGTH, size)
                    .body(reqwest::Body::wrap_stream(Generated::new(size)));
                let resp = req.send().await.expect("an answer");
                assert!(resp.status().is_success(), "{}", resp.status());
                let framing = framing_of(resp.headers());
                (framing, resp.text().await.expect("a count"))
            }
            Via::ReqwestDoer => upload_through(&self.reqwest_doer, url, size).await,
            Via::Stack => upload_through(&*self.stack, url, size).await,
            Via::UreqDoer => upload_through(&self.ureq_doer, url, size).await,
            Via::RawUreq => {
                let agent = self.agent.clone();
                let task = tokio::task::spawn_blocking(move || {
                    let body = ureq::SendBody::from_owned_reader(GeneratedReader { left: size });
                    let resp = agent.put(&url).header(CONTENT_LENGTH, size).send(body);
                    let mut resp = resp.expect("an answer");
                    assert!(resp.status().is_success(), "{}", resp.status());
                    let framing = framing_of(resp.headers());
                    (framing, resp.body_mut().read_to_string().expect("a count"))
                });
                task.await.expect("a blocking task")
            }
        };
        (framing, count.trim().parse().expect("a number"))
    }

    /// The time `iters` transfers of case `idx` take; each sample's time per transfer is kept.
    async fn time_async(&self, idx: usize, iters: u64) -> Duration {
        let size = size();
        let start = Instant::now();
        for _ in 0..iters {
            self.transfer(CASES[idx], size).await;
        }
        let elapsed = start.elapsed();
        self.samples.borrow_mut()[idx].push(elapsed.div_f64(iters as f64));
        elapsed
    }

    /// The per-transfer times of case `idx` for the summary: criterion's samples, or
    /// [`OWN_RUNS`] timed here when criterion did not run it.
    fn times(&self, idx: usize) -> (Vec<Duration>, &'static str) {
        let recorded = self.samples.borrow()[idx].clone();
        if recorded.len() >= SAMPLES {
            // Criterion's warm-up calls come first; its samples are the last ones.
            return (recorded[recorded.len() - SAMPLES..].to_vec(), "criterion");
        }
        let size = size();
        let own = (0..OWN_RUNS)
            .map(|_| {
                self.rt.block_on(async {
                    let start = Instant::now();
                    self.transfer(CASES[idx], size).await;
                    start.elapsed()
                })
            })
            .collect();
        (own, "own runs")
    }
}

async fn upload_through(doer: &dyn Doer, url: String, size: u64) -> (String, String) {
    let req = http::Request::put(url)
        .header(CONTENT_LENGTH, size)
        .body(Body::replayable(move || Generated::new(size)))
        .expect("a request");
    let resp = doer.execute(req).await.expect("an answer");
    assert!(resp.status().is_success(), "{}", resp.status());
    let framing = framing_of(resp.headers());
    (framing, resp.into_body().text().await.expect("a count"))
}

fn framing_of(headers: &http::HeaderMap) -> String {
    let framing = headers.get("x-framing").and_then(|v| v.to_str().ok());
    framing.unwrap_or("?").to_owned()
}

/// The README's "stack to copy", as it is written there, over its own `ReqwestDoer::new()`.
fn readme_stack() -> Arc<dyn Doer> {
    Arc::from(instant::readme_stack(ReqwestDoer::new()))
}

/// The transfer size: `HTTP_DOER_STREAM_BYTES`, else 1 GiB (4 MiB in criterion's test mode).
fn size() -> u64 {
    if let Ok(v) = std::env::var(SIZE_VAR) {
        return v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SIZE_VAR} must be a number of bytes, not {v:?}"));
    }
    if bench_mode() {
        DEFAULT_SIZE
    } else {
        TEST_MODE_SIZE
    }
}

/// Whether criterion will benchmark (`cargo bench`), not test (`cargo test --benches`) or list.
fn bench_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A `/proc/self/status` field, in KiB (Linux only).
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// In a child process: the idle RSS and the peak RSS of one transfer of the case, in KiB.
fn rss_child(name: &str) {
    let case = *CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("unknown case {name:?}"));
    let f = Fixture::new();
    f.rt.block_on(f.transfer(case, WARM_BYTES));
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let idle = status_kib("VmRSS:").expect("VmRSS");
    f.rt.block_on(f.transfer(case, size()));
    let peak = status_kib("VmHWM:").expect("VmHWM");
    println!("rss {idle} {peak}");
}

/// Idle and peak RSS in KiB, measured in a child process.
#[derive(Clone, Copy)]
struct Rss {
    idle: u64,
    peak: u64,
}

fn measure_rss(case: Case) -> Option<Rss> {
    let exe = std::env::current_exe().ok()?;
    let out = Command::new(exe)
        .env(RSS_CASE_VAR, case.name)
        .env(SIZE_VAR, size().to_string())
        .output()
        .ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("rss "));
    let parsed = line.and_then(|l| {
        let mut it = l.split_whitespace().map(|n| n.parse::<u64>().ok());
        Some(Rss {
            idle: it.next()??,
            peak: it.next()??,
        })
    });
    if parsed.is_none() {
        eprintln!(
            "{}: the RSS child failed ({}):\n{}",
            case.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parsed
}

fn rss_table() -> Vec<Option<Rss>> {
    println!(
        "peak RSS, one {:.0} MiB transfer per case, each in a fresh child process \
         (server + client, after a 1 MiB warm-up transfer):",
        mib(size())
    );
    println!(
        "  {:<18} {:>9} {:>9} {:>9}",
        "case", "idle MiB", "peak MiB", "delta MiB"
    );
    CASES
        .iter()
        .map(|&case| {
            let rss = measure_rss(case);
            match rss {
                Some(r) => println!(
                    "  {:<18} {:>9.1} {:>9.1} {:>+9.1}",
                    case.name,
                    r.idle as f64 / 1024.0,
                    r.peak as f64 / 1024.0,
                    (r.peak as f64 - r.idle as f64) / 1024.0
                ),
                None => println!("  {:<18} {:>9}", case.name, "failed"),
            }
            rss
        })
        .collect()
}

/// Checks every case end to end with a small body before anything is timed.
fn sanity(f: &Fixture) {
    for &case in &CASES {
        f.rt.block_on(f.transfer(case, WARM_BYTES + 12_345));
    }
}

fn criterion_benches(c: &mut Criterion, f: &Fixture) {
    // The size is in the group's name, so criterion compares a run only with runs of its size.
    let size = size();
    let group_name = if size.is_multiple_of(1 << 20) {
        format!("streaming_{}MiB", size >> 20)
    } else {
        format!("streaming_{size}B")
    };
    let mut group = c.benchmark_group(group_name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(100))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Bytes(size));
    for (idx, case) in CASES.iter().enumerate() {
        group.bench_function(case.name, |b| {
            b.to_async(&f.rt)
                .iter_custom(|iters| f.time_async(idx, iters))
        });
    }
    group.finish();
}

fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

/// Paired comparison of case `idx` with its raw library: [`PAIRED_ROUNDS`] rounds of a batch of
/// raw and a batch of wrapped transfers (one transfer per batch at 1 GiB; at least 256 MiB a
/// batch for smaller sizes, in `cargo bench`), the order flipped every round, so that the load of a shared
/// machine, which drifts over seconds, hits both alike. Sorted ratios of raw time to wrapped
/// time, one per round.
fn paired(f: &Fixture, idx: usize) -> Vec<f64> {
    let case = CASES[idx];
    let raw = CASES[Case::index_of(case.dir, case.raw())];
    let size = size();
    // Criterion's test mode (`cargo test --benches`) only checks that it runs: one each.
    let batch = if bench_mode() {
        (256_u64 << 20).div_ceil(size.max(1)).max(1)
    } else {
        1
    };
    let time = |c: Case| {
        f.rt.block_on(async {
            let start = Instant::now();
            for _ in 0..batch {
                f.transfer(c, size).await;
            }
            start.elapsed()
        })
    };
    let mut ratios: Vec<f64> = (0..PAIRED_ROUNDS)
        .map(|round| {
            let (r, w) = if round % 2 == 0 {
                let r = time(raw);
                (r, time(case))
            } else {
                let w = time(case);
                (time(raw), w)
            };
            r.as_secs_f64() / w.as_secs_f64()
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios
}

fn summary(f: &Fixture, rss: &[Option<Rss>]) {
    let size = size();
    let mb_per_s = |d: Duration| size as f64 / d.as_secs_f64() / 1e6;
    let times: Vec<(Vec<Duration>, &str)> = (0..CASES.len())
        .map(|idx| {
            let (mut t, source) = f.times(idx);
            t.sort();
            (t, source)
        })
        .collect();
    let pairs: Vec<Option<Vec<f64>>> = (0..CASES.len())
        .map(|idx| {
            let case = CASES[idx];
            (case.via != case.raw()).then(|| paired(f, idx))
        })
        .collect();
    println!();
    println!("streaming {:.0} MiB over loopback, one run:", mib(size));
    println!(
        "  MB/s: 10^6 bytes/s, median (min-max) over the transfers in `timing`; ratio: raw \
         median time / case median time, from those same transfers;"
    );
    println!(
        "  paired: median (min-max) of {PAIRED_ROUNDS} rounds of raw and wrapped transfers \
         back to back; peak/delta: VmHWM of a fresh process making one transfer \
         (server included), and its rise over the idle RSS;"
    );
    println!(
        "  targets: paired ratio >= {RATIO_TARGET} (criterion's ratio when there is no \
         paired one) and peak < {RSS_TARGET_MIB} MiB."
    );
    println!(
        "  {:<18} {:>20} {:>6} {:>20} {:>8} {:>8}  {:<13} verdict",
        "case", "MB/s (min-max)", "ratio", "paired (min-max)", "peak MiB", "delta", "timing"
    );
    for (idx, case) in CASES.iter().enumerate() {
        let (t, source) = &times[idx];
        let med = median(t);
        let raw_idx = Case::index_of(case.dir, case.raw());
        let ratio = median(&times[raw_idx].0).as_secs_f64() / med.as_secs_f64();
        let range = format!(
            "{:.0} ({:.0}-{:.0})",
            mb_per_s(med),
            mb_per_s(t[t.len() - 1]),
            mb_per_s(t[0])
        );
        let (paired_text, judged) = match &pairs[idx] {
            Some(p) => (
                format!("{:.3} ({:.3}-{:.3})", p[p.len() / 2], p[0], p[p.len() - 1]),
                p[p.len() / 2],
            ),
            None => ("-".to_owned(), ratio),
        };
        let (peak, delta) = match rss[idx] {
            Some(r) => (
                format!("{:.1}", r.peak as f64 / 1024.0),
                format!("{:+.1}", (r.peak as f64 - r.idle as f64) / 1024.0),
            ),
            None => ("n/a".into(), "n/a".into()),
        };
        let mut verdict = Vec::new();
        if raw_idx != idx && judged < RATIO_TARGET {
            verdict.push("MISS throughput");
        }
        if rss[idx].is_none_or(|r| r.peak as f64 / 1024.0 >= RSS_TARGET_MIB) {
            verdict.push("MISS memory");
        }
        let verdict = if !bench_mode() {
            // `cargo test --benches`: an unoptimised build and a small size prove nothing.
            "(test mode: no verdict)".to_owned()
        } else if verdict.is_empty() {
            "ok".to_owned()
        } else {
            verdict.join(", ")
        };
        println!(
            "  {:<18} {range:>20} {ratio:>6.3} {paired_text:>20} {peak:>8} {delta:>8}  {:<13} {verdict}",
            case.name,
            format!("{source} x{}", t.len()),
        );
    }
    if f.hedged.get() > 0 {
        println!(
            "  note: Hedging sent a second copy for {} streamed download(s) of the stack",
            f.hedged.get()
        );
    }
}

fn main() {
    if let Ok(name) = std::env::var(RSS_CASE_VAR) {
        rss_child(&name);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let f = Fixture::new();
    if std::env::args().any(|a| a == "--list") {
        criterion_benches(&mut c, &f);
        return;
    }
    sanity(&f);
    let rss = rss_table();
    criterion_benches(&mut c, &f);
    c.final_summary();
    summary(&f, &rss);
}
