//! What counts as a failure of the host.

use std::sync::Arc;

use crate::{Error, ErrorKind, Response};

/// How one finished call counts towards its circuit: the classifier's verdict on it (see
/// [`Breaker::classify`](super::Breaker::classify)).
///
/// Formerly `Outcome`, renamed because [`logging::Outcome`](crate::logging::Outcome), how a logged
/// exchange ended, is another idea.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The host answered well: resets the run of consecutive failures; in half-open, a
    /// successful probe.
    Success,
    /// The host is in trouble: counts towards tripping; in half-open, reopens the circuit.
    Failure,
    /// Says nothing about the host's health (a mistake of the caller, say): not counted at
    /// all. In half-open, the probe's slot is freed for another probe.
    Ignored,
}

/// A classifier; see [`Breaker::classify`](super::Breaker::classify).
pub(crate) type Classifier = Arc<dyn Fn(&Result<Response, Error>) -> Verdict + Send + Sync>;

/// The default classification: transport errors, timeouts and 5xx responses are failures.
///
/// * `Err` of kind [`Connect`](ErrorKind::Connect), [`Tls`](ErrorKind::Tls) (the host's
///   certificate or TLS setup is broken), [`Timeout`](ErrorKind::Timeout),
///   [`Transport`](ErrorKind::Transport), [`Body`](ErrorKind::Body) or
///   [`Other`](ErrorKind::Other) (an unknown error is assumed to be the host's): **failure**.
/// * `Err` that is the caller's or the client's own business, and says nothing about the
///   host's health ([`InvalidRequest`](ErrorKind::InvalidRequest),
///   [`Signing`](ErrorKind::Signing), [`Redirect`](ErrorKind::Redirect),
///   [`TooLarge`](ErrorKind::TooLarge), [`Decode`](ErrorKind::Decode), and
///   [`BreakerOpen`](ErrorKind::BreakerOpen) from another breaker): **ignored**.
/// * A response with a 5xx status: **failure**. Any other status, 4xx included: **success**
///   (the host is up and answering; 429 is a matter for a retrying layer and its
///   `Retry-After`, not a sign that the host is down). Add 429 or 408 with a custom
///   classifier that calls this one:
///
/// ```
/// use http_doer::breaker::{Verdict, default_verdict};
///
/// let classify = |result: &Result<http_doer::Response, http_doer::Error>| match result {
///     Ok(resp) if resp.status() == 429 => Verdict::Failure,
///     other => default_verdict(other),
/// };
/// # let _ = classify;
/// ```
pub fn default_verdict(result: &Result<Response, Error>) -> Verdict {
    match result {
        Ok(resp) if resp.status().is_server_error() => Verdict::Failure,
        Ok(_) => Verdict::Success,
        Err(err) => match err.kind() {
            ErrorKind::Connect
            | ErrorKind::Tls
            | ErrorKind::Timeout
            | ErrorKind::Transport
            | ErrorKind::Body
            | ErrorKind::Other => Verdict::Failure,
            _ => Verdict::Ignored,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::response;

    #[test]
    fn statuses() {
        for (status, want) in [
            (200, Verdict::Success),
            (204, Verdict::Success),
            (304, Verdict::Success),
            (404, Verdict::Success),
            (429, Verdict::Success),
            (500, Verdict::Failure),
            (502, Verdict::Failure),
            (503, Verdict::Failure),
            (599, Verdict::Failure),
        ] {
            assert_eq!(default_verdict(&Ok(response(status, ""))), want, "{status}");
        }
    }

    #[test]
    fn error_kinds() {
        for (kind, want) in [
            (ErrorKind::Connect, Verdict::Failure),
            (ErrorKind::Timeout, Verdict::Failure),
            (ErrorKind::Transport, Verdict::Failure),
            (ErrorKind::Body, Verdict::Failure),
            (ErrorKind::Other, Verdict::Failure),
            (ErrorKind::InvalidRequest, Verdict::Ignored),
            (ErrorKind::Signing, Verdict::Ignored),
            (ErrorKind::Redirect, Verdict::Ignored),
            (ErrorKind::TooLarge, Verdict::Ignored),
            (ErrorKind::Decode, Verdict::Ignored),
            (ErrorKind::BreakerOpen, Verdict::Ignored),
        ] {
            assert_eq!(default_verdict(&Err(Error::from(kind))), want, "{kind:?}");
        }
    }
}
