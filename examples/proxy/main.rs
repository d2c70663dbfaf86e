//! A resilient reverse proxy built from http-doer, configured like retter.
//!
//! ```sh
//! RETTER_BACKEND_BASEURL=http://127.0.0.1:3000 cargo run --example proxy
//! ```
//!
//! Settings come from `RETTER_*` environment variables (printed at start, see the README);
//! logs go to stderr, filtered by `RUST_LOG` (default `info`). Ctrl-C (or SIGTERM) stops
//! accepting and lets in-flight requests finish within `RETTER_SERVER_TIMEOUT_GRACESHUT`.

mod app;
mod config;
mod stack;

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
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

    let proxy = match app::Proxy::bind(config.clone()).await {
        Ok(proxy) => proxy,
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
