//! A resilient reverse proxy built from http-doer, configured like retter.
//!
//! ```sh
//! RETTER_BACKEND_BASEURL=http://127.0.0.1:3000 cargo run --example proxy
//! ```
//!
//! Settings come from `RETTER_*` environment variables (printed at start, see the README);
//! logs go to stderr, filtered by `RUST_LOG` (default `info`). Ctrl-C (or SIGTERM) stops
//! accepting and lets in-flight requests finish within `RETTER_SERVER_TIMEOUT_GRACESHUT`.
//!
//! `GET /metrics` is answered by the proxy itself, in the Prometheus text format: the duration
//! of every attempt sent to the backend (`http_client_request_duration_seconds`, with the
//! semantic conventions' buckets) and what the resilience layers did
//! (`http_doer_resilience_events_total`, by `event_name`).

// Every request allocates a few dozen small blocks across hyper, reqwest and the stack; under
// load glibc's allocator took 4 % of the proxy's time (its consolidation pass among it), and
// mimalloc raised throughput by 5 % (`scripts/proxy-load.sh`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod app;
mod config;
mod metrics;
mod stack;

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    match runtime() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("proxy: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// One worker thread per CPU the proxy may run on (or `TOKIO_WORKER_THREADS`, as with
/// `#[tokio::main]`); on a single CPU (a container limited to one, or `taskset -c 0`), a
/// single-threaded runtime, which spares the hand-offs between the thread that waits on `main`
/// and the one worker (4 % more requests a second on one CPU).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let mut builder = if cpus == 1 && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build()
}

async fn run() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let config = match config::Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("proxy: {e}");
            return ExitCode::from(2);
        }
    };
    println!("http-doer proxy, settings (RETTER_* environment variables):");
    print!(
        "{}",
        config.describe(|name| std::env::var_os(name).is_some())
    );
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .collect();
    for name in config::Config::unknown_vars(names.iter().map(String::as_str)) {
        println!("  {name} is not a setting of this proxy (a typo?)");
    }

    let prometheus = match metrics::install() {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("proxy: cannot install the metrics recorder: {e}");
            return ExitCode::from(1);
        }
    };
    let proxy = match app::Proxy::bind(config.clone()).await {
        Ok(proxy) => proxy.serve_metrics(move || prometheus.render()),
        Err(e) => {
            eprintln!("proxy: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(1);
        }
    };
    println!(
        "listening on http://{}, forwarding to {}",
        proxy.local_addr(),
        http_doer::redact::uri(&config.backend)
    );
    let stopped = proxy.run(shutdown_signal()).await;
    if stopped.unfinished > 0 {
        eprintln!(
            "proxy: {} connection(s) still busy after the grace period were closed",
            stopped.unfinished
        );
    }
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM on Unix (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling here: never resolve rather than stop at once.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
