//! The metrics, through the `metrics` facade (feature `metrics`).
//!
//! Each function here is what a layer calls at the moment something happens. Without the
//! feature they are empty and vanish; with it and no recorder installed, the facade's no-op
//! recorder takes them. The resilience events are rare (a retry, a hedge, a state change), so
//! only the per-exchange duration is on the hot path, and it is built to allocate little.

#[cfg(feature = "metrics")]
pub use enabled::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use disabled::*;

#[cfg(feature = "metrics")]
mod enabled {
    use ::metrics::{Label, Unit};
    use http::{Method, Uri};
    use tokio::time::Instant;

    use super::super::names::{
        ERROR_TYPE, EVENT_NAME, HTTP_CLIENT_REQUEST_DURATION, HTTP_REQUEST_METHOD,
        HTTP_RESPONSE_STATUS_CODE, LIMIT_WAIT_DURATION, RESILIENCE_EVENTS, SERVER_ADDRESS,
        SERVER_PORT,
    };
    use super::super::spans::{method_name, server_address, server_port};
    use crate::breaker::State;
    use crate::{Error, Response};

    /// Describes http-doer's metrics (unit and help text) to the recorder installed now.
    ///
    /// The `metrics` facade hands a description to the recorder in place when it is made, so
    /// call this after installing one: the Prometheus exporter then prints the `# HELP` lines
    /// and knows that the durations are in seconds.
    ///
    /// ```
    /// // After `PrometheusBuilder::new().install_recorder()` or the like:
    /// http_doer::telemetry::describe_metrics();
    /// ```
    pub fn describe_metrics() {
        ::metrics::describe_histogram!(
            HTTP_CLIENT_REQUEST_DURATION,
            Unit::Seconds,
            "Duration of HTTP client requests (each attempt and hedge copy)."
        );
        ::metrics::describe_counter!(
            RESILIENCE_EVENTS,
            Unit::Count,
            "What http-doer's resilience layers did: retries, hedges, breaker changes, rejections, stale answers, limiter waits."
        );
        ::metrics::describe_histogram!(
            LIMIT_WAIT_DURATION,
            Unit::Seconds,
            "How long a rate or concurrency limiter held a call before letting it go."
        );
    }

    /// What an exchange's duration needs from its request, taken before the request goes.
    pub(crate) struct Timing {
        start: Instant,
        method: &'static str,
        uri: Option<Uri>,
    }

    /// Whether a recorder is installed (globally or for this thread).
    ///
    /// The duration's attributes cost a few allocations per exchange (a label list, the host),
    /// which the facade's no-op recorder would throw away, so they are built only for a real
    /// recorder. The facade does not say which recorder is in place, but its no-op recorder is
    /// a zero-sized type, and a recorder that records anything holds state. A zero-sized
    /// recorder of one's own (one that forwards to statics) would be taken for none: give it a
    /// field.
    fn recorder_installed() -> bool {
        ::metrics::with_recorder(|r| std::mem::size_of_val(r) != 0)
    }

    /// Starts timing an exchange; `server` says whether to keep the server's address and port.
    pub(crate) fn start(method: &Method, uri: &Uri, server: bool) -> Option<Timing> {
        (super::super::is_enabled() && recorder_installed()).then(|| Timing {
            start: Instant::now(),
            method: method_name(method),
            // A `Uri` clone is reference counts, not a copy of the text.
            uri: server.then(|| uri.clone()),
        })
    }

    /// Records `http.client.request.duration` for an exchange that ended with `outcome`.
    pub(crate) fn finish(timing: Option<Timing>, outcome: Result<&Response, &Error>) {
        let Some(t) = timing else { return };
        let seconds = t.start.elapsed().as_secs_f64();
        let mut labels = Vec::with_capacity(5);
        labels.push(Label::from_static_parts(HTTP_REQUEST_METHOD, t.method));
        if let Some(uri) = &t.uri {
            if let Some(host) = server_address(uri) {
                labels.push(Label::new(SERVER_ADDRESS, host.to_owned()));
            }
            if let Some(port) = server_port(uri) {
                labels.push(port_label(port));
            }
        }
        match outcome {
            Ok(resp) => {
                let code = resp.status().as_u16();
                labels.push(Label::new(HTTP_RESPONSE_STATUS_CODE, status_text(code)));
                if code >= 400 {
                    labels.push(Label::new(ERROR_TYPE, status_text(code)));
                }
            }
            Err(err) => labels.push(Label::from_static_parts(
                ERROR_TYPE,
                super::super::error_type(err.kind()),
            )),
        }
        ::metrics::histogram!(HTTP_CLIENT_REQUEST_DURATION, labels).record(seconds);
    }

    fn port_label(port: u16) -> Label {
        match port {
            443 => Label::from_static_parts(SERVER_PORT, "443"),
            80 => Label::from_static_parts(SERVER_PORT, "80"),
            _ => Label::new(SERVER_PORT, port.to_string()),
        }
    }

    /// A status code as a label value, without an allocation for the common ones.
    fn status_text(code: u16) -> ::metrics::SharedString {
        let known = match code {
            200 => "200",
            201 => "201",
            202 => "202",
            204 => "204",
            206 => "206",
            301 => "301",
            302 => "302",
            304 => "304",
            400 => "400",
            401 => "401",
            403 => "403",
            404 => "404",
            408 => "408",
            409 => "409",
            429 => "429",
            500 => "500",
            502 => "502",
            503 => "503",
            504 => "504",
            _ => return code.to_string().into(),
        };
        known.into()
    }

    /// Counts one resilience event.
    pub(crate) fn event(name: &'static str) {
        if super::super::is_enabled() {
            ::metrics::counter!(RESILIENCE_EVENTS, EVENT_NAME => name).increment(1);
        }
    }

    /// Counts a retry of `outcome`, by its `error.type`.
    pub(crate) fn retry(outcome: Result<&Response, &Error>) {
        if !super::super::is_enabled() {
            return;
        }
        let reason = match outcome {
            Ok(resp) => status_text(resp.status().as_u16()),
            Err(err) => super::super::error_type(err.kind()).into(),
        };
        ::metrics::counter!(
            RESILIENCE_EVENTS,
            EVENT_NAME => super::super::names::EVENT_RETRY,
            ERROR_TYPE => reason
        )
        .increment(1);
    }

    /// Counts a breaker's change of state, by the state entered.
    pub(crate) fn breaker_state(to: State) {
        use super::super::names::{
            EVENT_BREAKER_CLOSED, EVENT_BREAKER_HALF_OPENED, EVENT_BREAKER_OPENED,
        };
        event(match to {
            State::Open => EVENT_BREAKER_OPENED,
            State::HalfOpen => EVENT_BREAKER_HALF_OPENED,
            State::Closed => EVENT_BREAKER_CLOSED,
        });
    }

    /// Counts a limiter's wait (`event` names which) and records how long it was.
    pub(crate) fn limit_wait(event_name: &'static str, waited: std::time::Duration) {
        if super::super::is_enabled() && !waited.is_zero() {
            event(event_name);
            ::metrics::histogram!(LIMIT_WAIT_DURATION, EVENT_NAME => event_name)
                .record(waited.as_secs_f64());
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod disabled {
    use http::{Method, Uri};

    use crate::breaker::State;
    use crate::{Error, Response};

    pub(crate) struct Timing;

    #[inline(always)]
    pub(crate) fn start(_: &Method, _: &Uri, _: bool) -> Option<Timing> {
        None
    }

    #[inline(always)]
    pub(crate) fn finish(_: Option<Timing>, _: Result<&Response, &Error>) {}

    #[inline(always)]
    pub(crate) fn event(_: &'static str) {}

    #[inline(always)]
    pub(crate) fn retry(_: Result<&Response, &Error>) {}

    #[inline(always)]
    pub(crate) fn breaker_state(_: State) {}

    #[inline(always)]
    pub(crate) fn limit_wait(_: &'static str, _: std::time::Duration) {}
}
