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
    use std::cell::RefCell;
    use std::sync::Arc;

    use ::metrics::{Key, Label, Level, Metadata, Unit};
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
        origin: Option<Arc<Origin>>,
    }

    /// The server's address and port labels, with the URI text they were read from.
    struct Origin {
        scheme: Option<String>,
        authority: Option<String>,
        /// Whether a later URI may reuse these labels (false: `authority` was not kept).
        reusable: bool,
        labels: Vec<Label>,
    }

    impl Origin {
        fn new(uri: &Uri) -> Self {
            let mut labels = Vec::with_capacity(2);
            if let Some(host) = server_address(uri) {
                labels.push(Label::new(SERVER_ADDRESS, host.to_owned()));
            }
            if let Some(port) = server_port(uri) {
                labels.push(port_label(port));
            }
            // An authority with userinfo (a credential) is not kept: this origin lives on in
            // a thread-local, so a URI with a credential makes its labels anew each time.
            let authority = uri.authority().map(|a| a.as_str());
            let reusable = !authority.is_some_and(|a| a.contains('@'));
            Origin {
                scheme: uri.scheme_str().map(str::to_owned),
                authority: authority.filter(|_| reusable).map(str::to_owned),
                reusable,
                labels,
            }
        }

        /// Whether `uri` makes the same labels: the same scheme and authority, as text.
        fn is_of(&self, uri: &Uri) -> bool {
            self.reusable
                && self.scheme.as_deref() == uri.scheme_str()
                && self.authority.as_deref() == uri.authority().map(|a| a.as_str())
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Outcome {
        Status(u16),
        Error(&'static str),
    }

    /// The last duration key this thread built, with what it was built from.
    struct LastKey {
        method: &'static str,
        origin: Option<Arc<Origin>>,
        outcome: Outcome,
        key: Key,
    }

    thread_local! {
        // Calls from one thread mostly go to one host with one outcome: the labels (the
        // host's text among them) are built once, and the key handed to the recorder by
        // reference. The recorder is asked on every call, whichever it is: one that looks
        // like the facade's no-op (a zero-sized one of the caller's own) still gets every
        // duration.
        static LAST_KEY: RefCell<Option<LastKey>> = const { RefCell::new(None) };
    }

    static DURATION_METADATA: Metadata<'static> =
        Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

    /// The labels of `uri`'s server: the last key's when it has the same, else new ones.
    fn origin_of(uri: &Uri) -> Arc<Origin> {
        let last = LAST_KEY.with(|last| {
            let last = last.try_borrow().ok()?;
            let origin = last.as_ref()?.origin.as_ref()?;
            origin.is_of(uri).then(|| origin.clone())
        });
        last.unwrap_or_else(|| Arc::new(Origin::new(uri)))
    }

    /// Starts timing an exchange; `server` says whether to keep the server's address and port.
    pub(crate) fn start(method: &Method, uri: &Uri, server: bool) -> Option<Timing> {
        begin(prepare(method, uri, server))
    }

    /// What [`begin`] needs of a request, taken before the request goes.
    pub(crate) struct Labels {
        method: &'static str,
        origin: Option<Arc<Origin>>,
    }

    /// The first half of [`start`]: what the duration needs of the request, without the clock.
    pub(crate) fn prepare(method: &Method, uri: &Uri, server: bool) -> Option<Labels> {
        super::super::is_enabled().then(|| Labels {
            method: method_name(method),
            origin: server.then(|| origin_of(uri)),
        })
    }

    /// The second half of [`start`]: starts the clock.
    pub(crate) fn begin(labels: Option<Labels>) -> Option<Timing> {
        labels.map(|l| Timing {
            start: Instant::now(),
            method: l.method,
            origin: l.origin,
        })
    }

    fn build_key(method: &'static str, origin: Option<&Origin>, outcome: Outcome) -> Key {
        let mut labels = Vec::with_capacity(5);
        labels.push(Label::from_static_parts(HTTP_REQUEST_METHOD, method));
        if let Some(origin) = origin {
            labels.extend(origin.labels.iter().cloned());
        }
        match outcome {
            Outcome::Status(code) => {
                labels.push(Label::new(HTTP_RESPONSE_STATUS_CODE, status_text(code)));
                if code >= 400 {
                    labels.push(Label::new(ERROR_TYPE, status_text(code)));
                }
            }
            Outcome::Error(kind) => labels.push(Label::from_static_parts(ERROR_TYPE, kind)),
        }
        Key::from_parts(HTTP_CLIENT_REQUEST_DURATION, labels)
    }

    /// Records `http.client.request.duration` for an exchange that ended with `outcome`.
    pub(crate) fn finish(timing: Option<Timing>, outcome: Result<&Response, &Error>) {
        let Some(t) = timing else { return };
        let seconds = t.start.elapsed().as_secs_f64();
        let outcome = match outcome {
            Ok(resp) => Outcome::Status(resp.status().as_u16()),
            Err(err) => Outcome::Error(super::super::error_type(err.kind())),
        };
        let record = |key: &Key| {
            ::metrics::with_recorder(|r| r.register_histogram(key, &DURATION_METADATA))
                .record(seconds);
        };
        LAST_KEY.with(|last| {
            // A recorder that records an exchange of its own through this crate, from inside
            // `register_histogram`, finds the key borrowed: its duration gets a key of its own.
            let Ok(mut last) = last.try_borrow_mut() else {
                return record(&build_key(t.method, t.origin.as_deref(), outcome));
            };
            let same = last.as_ref().is_some_and(|c| {
                c.method == t.method
                    && c.outcome == outcome
                    && match (&c.origin, &t.origin) {
                        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                        (None, None) => true,
                        _ => false,
                    }
            });
            if !same {
                *last = Some(LastKey {
                    key: build_key(t.method, t.origin.as_deref(), outcome),
                    method: t.method,
                    origin: t.origin,
                    outcome,
                });
            }
            if let Some(cached) = last.as_ref() {
                record(&cached.key);
            }
        });
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

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn an_origin_with_a_credential_is_neither_kept_nor_reused() {
            let uri: Uri = "https://u:s3cr3t@api.test/".parse().unwrap();
            let origin = Origin::new(&uri);
            assert!(origin.authority.is_none(), "the credential was kept");
            assert!(!origin.is_of(&uri));
            let plain: Uri = "https://api.test/".parse().unwrap();
            assert!(Origin::new(&plain).is_of(&plain));
            assert!(!origin.is_of(&plain));
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod disabled {
    use http::{Method, Uri};

    use crate::breaker::State;
    use crate::{Error, Response};

    pub(crate) struct Timing;

    pub(crate) struct Labels;

    #[inline(always)]
    pub(crate) fn start(_: &Method, _: &Uri, _: bool) -> Option<Timing> {
        None
    }

    #[inline(always)]
    pub(crate) fn prepare(_: &Method, _: &Uri, _: bool) -> Option<Labels> {
        None
    }

    #[inline(always)]
    pub(crate) fn begin(_: Option<Labels>) -> Option<Timing> {
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

#[cfg(all(test, feature = "metrics"))]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use ::metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    use crate::testing::{doer_fn, response};
    use crate::{Body, Doer, DoerExt, Request};

    static RECORDED: AtomicU64 = AtomicU64::new(0);
    static LAST_STATUS: AtomicU64 = AtomicU64::new(0);
    static LAST_SERVER: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

    struct Forward;

    impl HistogramFn for Forward {
        fn record(&self, _: f64) {
            RECORDED.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A recorder with no state of its own: it forwards to statics, and is zero-sized like the
    /// facade's no-op recorder.
    struct ToStatics;

    impl Recorder for ToStatics {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::noop()
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }

        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let status = key
                .labels()
                .find(|l| l.key() == "http.response.status_code")
                .and_then(|l| l.value().parse().ok())
                .unwrap_or(0);
            LAST_STATUS.store(status, Ordering::SeqCst);
            let label = |name: &str| {
                key.labels()
                    .find(|l| l.key() == name)
                    .map_or(String::new(), |l| l.value().to_owned())
            };
            *LAST_SERVER.lock().unwrap() =
                format!("{}:{}", label("server.address"), label("server.port"));
            Histogram::from_arc(Arc::new(Forward))
        }
    }

    #[test]
    fn a_zero_sized_recorder_gets_every_duration_with_its_own_labels() {
        assert_eq!(std::mem::size_of::<ToStatics>(), 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let doer = doer_fn(|req: Request| async move {
            let status = if req.uri().path() == "/missing" {
                404
            } else {
                200
            };
            Ok(response(status, ""))
        })
        .telemetry();
        let get = |url: &str| http::Request::get(url).body(Body::empty()).unwrap();
        let calls = [
            ("https://api.test/a", 200, "api.test:443"),
            ("https://api.test/a", 200, "api.test:443"),
            ("https://api.test/missing", 404, "api.test:443"),
            ("http://other.test:8080/a", 200, "other.test:8080"),
            ("https://api.test/a", 200, "api.test:443"),
        ];
        ::metrics::with_local_recorder(&ToStatics, || {
            rt.block_on(async {
                for (n, (url, status, server)) in calls.into_iter().enumerate() {
                    doer.execute(get(url)).await.unwrap();
                    assert_eq!(RECORDED.load(Ordering::SeqCst), n as u64 + 1);
                    // The key a cached one would be mistaken for changes with each label.
                    assert_eq!(LAST_STATUS.load(Ordering::SeqCst), status);
                    assert_eq!(*LAST_SERVER.lock().unwrap(), server);
                }
            })
        });
    }
}
