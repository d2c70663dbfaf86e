//! The names http-doer's spans and metrics go by: OpenTelemetry semantic-convention names where
//! one exists (HTTP client spans and metrics, semconv 1.26 and later), `http_doer.*` for what
//! the conventions do not cover (what the resilience layers did), and the recommended buckets.
//!
//! Metric names are written the OpenTelemetry way, with dots. Exporters that cannot take dots
//! rewrite them: `metrics-exporter-prometheus` with `with_recommended_naming(true)` renders
//! `http.client.request.duration` as `http_client_request_duration_seconds` and
//! `http_doer.resilience.events` as `http_doer_resilience_events_total`, the names an
//! OpenTelemetry collector's Prometheus exporter gives them too. Attribute names get the same
//! treatment (`http_request_method`, `event_name`).

/// `tracing` target of every span of this module, for filters: `http_doer::telemetry=info`.
pub const TARGET: &str = "http_doer::telemetry";

/// Attribute: the request method (`GET`), or `_OTHER` for a method the conventions do not list.
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// Attribute: the method as sent, set only when [`HTTP_REQUEST_METHOD`] is `_OTHER`.
pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
/// Attribute: the response status code, as an integer.
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// Attribute: the HTTP version of the answer, as the conventions write it (`1.1`, `2`, `3`).
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
/// Attribute: how many times this request was sent before (retries and hedge copies), set
/// when it is at least 1.
pub const HTTP_REQUEST_RESEND_COUNT: &str = "http.request.resend_count";
/// Attribute: the host the request was sent to (from the URI, no userinfo).
pub const SERVER_ADDRESS: &str = "server.address";
/// Attribute: the port, the URI's or the scheme's default.
pub const SERVER_PORT: &str = "server.port";
/// Attribute (spans only): the URL, redacted by [`redact::uri`](crate::redact::uri).
pub const URL_FULL: &str = "url.full";
/// Attribute: why the request failed: the status code as a string for a status of 400 or
/// more, else a [`error_type`](super::error_type) value such as `timeout`.
pub const ERROR_TYPE: &str = "error.type";
/// Attribute of [`RESILIENCE_EVENTS`]: which event (see the `EVENT_*` constants).
pub const EVENT_NAME: &str = "event.name";

/// Histogram, in seconds: how long each exchange took, from the request handed to the layer
/// below [`Telemetry`](super::Telemetry) to its response or error: with the default
/// `ResponseMode::Buffered` the whole exchange, body included; with `ResponseMode::Streamed`,
/// the head. Attributes:
/// [`HTTP_REQUEST_METHOD`], [`SERVER_ADDRESS`], [`SERVER_PORT`] (both can be turned off),
/// [`HTTP_RESPONSE_STATUS_CODE`], [`ERROR_TYPE`].
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http.client.request.duration";

/// Counter: what the resilience layers did, one per event, by [`EVENT_NAME`] (and, for a
/// retry, the [`ERROR_TYPE`] of the outcome that was retried). The shape of Polly's
/// `resilience.polly.strategy.events`: one series per event, one query for all of them.
pub const RESILIENCE_EVENTS: &str = "http_doer.resilience.events";

/// Histogram, in seconds: how long a limiter held a call before letting it go, by
/// [`EVENT_NAME`] ([`EVENT_RATE_LIMIT_WAIT`] or [`EVENT_CONCURRENCY_LIMIT_WAIT`]).
pub const LIMIT_WAIT_DURATION: &str = "http_doer.limit.wait.duration";

/// Event: `Retrying` sends an attempt again; [`ERROR_TYPE`] says why (`503`, `timeout`...).
pub const EVENT_RETRY: &str = "retry";
/// Event: the retry budget refused a retry.
pub const EVENT_RETRY_BUDGET_EXHAUSTED: &str = "retry_budget_exhausted";
/// Event: `Hedging` sent an extra copy, because the copies before it were slow (past the
/// hedging delay) or had failed.
pub const EVENT_HEDGE_SENT: &str = "hedge_sent";
/// Event: an extra copy answered first (the original lost), including an answer made by a
/// layer below `Hedging` (the breaker's stale answer).
pub const EVENT_HEDGE_WON: &str = "hedge_won";
/// Event: the hedge budget refused an extra copy.
pub const EVENT_HEDGE_BUDGET_EXHAUSTED: &str = "hedge_budget_exhausted";
/// Event: a circuit opened.
pub const EVENT_BREAKER_OPENED: &str = "breaker_opened";
/// Event: a circuit went half-open (probing).
pub const EVENT_BREAKER_HALF_OPENED: &str = "breaker_half_opened";
/// Event: a circuit closed again.
pub const EVENT_BREAKER_CLOSED: &str = "breaker_closed";
/// Event: an open (or busy half-open) circuit refused a call.
pub const EVENT_BREAKER_REJECTED: &str = "breaker_rejected";
/// Event: the breaker answered with a stale copy of the last good response.
pub const EVENT_STALE_ANSWER: &str = "stale_answer";
/// Event: `RateLimiting` held a call until its rate allowed it.
pub const EVENT_RATE_LIMIT_WAIT: &str = "rate_limit_wait";
/// Event: `RateLimiting` refused a call whose place was further away than its `max_wait`.
pub const EVENT_RATE_LIMIT_REJECTED: &str = "rate_limit_rejected";
/// Event: `ConcurrencyLimit` queued a call until a slot freed.
pub const EVENT_CONCURRENCY_LIMIT_WAIT: &str = "concurrency_limit_wait";
/// Event: `ConcurrencyLimit` refused a call (queue full, or no slot within its `max_wait`).
pub const EVENT_CONCURRENCY_LIMIT_REJECTED: &str = "concurrency_limit_rejected";

/// The bucket bounds, in seconds, that the semantic conventions recommend for
/// [`HTTP_CLIENT_REQUEST_DURATION`] (5 ms to 10 s). The `metrics` facade leaves buckets to the
/// exporter: give these to it, as `PrometheusBuilder::set_buckets_for_metric` takes them.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
