//! The Doer stack in front of the backend, outermost first:
//!
//! `Logging` → `Retrying` (safe requests only) → `Breaker` (serve-stale for GET/HEAD, keyed per
//! session) → `Telemetry` (a client span and `http.client.request.duration` per attempt) →
//! `ReqwestDoer`.
//!
//! Retrying sits outside the breaker so that a refusal (`BreakerOpen`) ends the call at once
//! (Retrying never retries it) and a stale answer, being a 200, is never retried either;
//! Logging sits outside everything so there is one log event per client request. The breaker
//! logs its own changes of state (target `http_doer::breaker`).
//!
//! With `RETTER_REDIS_URL`, the breaker shares its circuit with every proxy on the same Redis
//! (and prefix): one proxy that finds the backend down opens the circuit of all, one probes
//! for all, and one's successful probe closes it for all. With `RETTER_FLEET_KEY` too, the
//! stale answers are shared, encrypted with that key.

use std::sync::Arc;
use std::time::Duration;

use http_doer::breaker::{ServeStale, StaleAnswer, host_key};
use http_doer::fleet::RedisFleet;
use http_doer::retrying::{Backoff, Jitter};
use http_doer::{Breaker, Doer, Logging, ReqwestDoer, Response, ResponseMode, Retrying, Telemetry};

use crate::config::Config;

/// The first wait before a retry; doubled each retry up to [`MAX_RETRY_DELAY`], each wait
/// drawn between half and all of it ("equal jitter"), so retries of many clients spread out.
///
/// A proxy answers someone who is waiting: the library's 1 s default suits a batch job, not a
/// page load.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The longest wait between two attempts, `Retry-After` included.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// The stack, and a handle on its breaker to report the circuit's state.
pub struct Stack {
    /// Every request goes through this.
    pub doer: Arc<dyn Doer>,
    breaker: Breaker<Telemetry<ReqwestDoer>>,
    circuit: String,
}

/// Where an answer came from, as the `X-Cache` header says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The backend answered this request.
    Backend,
    /// The breaker answered with the last good answer to the same request of the same session.
    Stale,
    /// No answer from either: the proxy's own error page.
    None,
}

impl Source {
    /// The response's source: [`Source::Stale`] when the breaker marked it.
    pub fn of(resp: &Response) -> Self {
        if resp.extensions().get::<StaleAnswer>().is_some() {
            Source::Stale
        } else {
            Source::Backend
        }
    }

    /// `backend`, `stale` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Backend => "backend",
            Source::Stale => "stale",
            Source::None => "none",
        }
    }
}

impl Stack {
    /// Builds the stack for `config`.
    pub fn new(config: &Config) -> Self {
        let fleet = fleet(config);
        let mut stale = ServeStale::new(config.cache_ttl)
            .max_entries(config.cache_max_entries)
            .max_bytes(config.cache_max_bytes)
            .on_failure(config.cache_on_failure)
            // The client's Host, forwarded as X-Forwarded-Host: a backend that serves several
            // sites renders a page per host, and one site's page must not reach another's.
            .key_header(http::HeaderName::from_static("x-forwarded-host"));
        // Without a key, the fleet keeps no answers: they would leave the process in clear.
        if let (Some(fleet), Some(_)) = (&fleet, &config.fleet_key) {
            stale = stale.share(Arc::new(fleet.clone()));
        }
        let mut breaker = Breaker::new(Telemetry::new(backend_doer(config)))
            .consecutive_failures(config.consecutive_fail)
            .failure_rate(config.fail_rate, config.min_calls)
            .window(config.window)
            .open_duration(config.open_duration)
            .serve_stale(stale);
        if let Some(fleet) = fleet {
            breaker = breaker.fleet(Arc::new(fleet));
        }
        let retrying = Retrying::new(breaker.clone())
            .max_retries(config.retry_max)
            .backoff(
                Backoff::exponential(FIRST_RETRY_DELAY)
                    .max_delay(MAX_RETRY_DELAY)
                    .jitter(Jitter::Equal),
            )
            .max_delay(MAX_RETRY_DELAY)
            .total_timeout(config.write_timeout);
        Stack {
            doer: Arc::new(Logging::new(retrying)),
            breaker,
            circuit: host_key(&config.backend),
        }
    }

    /// The state of the backend's circuit now: `closed`, `open` or `half-open`.
    pub fn circuit(&self) -> &'static str {
        self.breaker.state(&self.circuit).as_str()
    }

    /// How many answers the serve-stale cache holds now.
    pub fn stale_answers(&self) -> usize {
        self.breaker.stale_usage().0
    }
}

/// The fleet on `RETTER_REDIS_URL`, if set. It does not wait for Redis: a proxy whose Redis
/// is down starts, acts alone, and joins the others when Redis answers. Must be called within
/// the runtime, which runs the fleet's tasks.
fn fleet(config: &Config) -> Option<RedisFleet> {
    let url = config.redis_url.as_ref()?;
    let mut builder = RedisFleet::builder(url.expose()).prefix(config.redis_prefix.as_str());
    if let Some(key) = &config.fleet_key {
        builder = builder.key(key.clone());
    }
    match builder.connect() {
        Ok(fleet) => Some(fleet),
        Err(e) => {
            // The error names what is wrong, never the URL's password.
            tracing::error!(target: "proxy", redis = %url, error = %e, "cannot use RETTER_REDIS_URL: this proxy acts alone");
            None
        }
    }
}

/// The backend client: no redirects followed (the client sees them), no system proxy (the
/// backend is named explicitly), and the configured timeout and body limit.
fn backend_doer(config: &Config) -> ReqwestDoer {
    // http-doer builds reqwest without a crypto provider of its own (ring is shared with ureq),
    // so an application that builds its own reqwest client installs one, once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let built = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(config.backend_timeout)
        // The client's own timeout, not one set on each request: in reqwest a request's own
        // timeout costs three allocations a call.
        .timeout(config.backend_timeout)
        .build();
    // Should that client fail to build, the default one has no timeout: set it per request.
    let per_request = built.is_err().then_some(config.backend_timeout);
    ReqwestDoer::with_client(built.unwrap_or_default())
        // Answers stream through the proxy rather than being held whole.
        .response_mode(ResponseMode::Streamed)
        .max_redirects(0)
        .timeout(per_request)
        .max_body_size(config.backend_max_body)
}
