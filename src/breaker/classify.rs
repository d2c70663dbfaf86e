//! What counts as a failure of the host.

use std::sync::Arc;

use crate::{Error, ErrorKind, Response};

/// How one finished call counts towards its circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
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
pub(crate) type Classifier = Arc<dyn Fn(&Result<Response, Error>) -> Outcome + Send + Sync>;

/// The default classification: transport errors, timeouts and 5xx responses are failures.
///
/// * `Err` of kind [`Connect`](ErrorKind::Connect), [`Timeout`](ErrorKind::Timeout),
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
/// use http_doer::breaker::{Outcome, default_outcome};
///
/// let classify = |result: &Result<http_doer::Response, http_doer::Error>| match result {
///     Ok(resp) if resp.status() == 429 => Outcome::Failure,
///     other => default_outcome(other),
/// };
/// # let _ = classify;
/// ```
pub fn default_outcome(result: &Result<Response, Error>) -> Outcome {
    match result {
        Ok(resp) if resp.status().is_server_error() => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(err) => match err.kind() {
            ErrorKind::Connect
            | ErrorKind::Timeout
            | ErrorKind::Transport
            | ErrorKind::Body
            | ErrorKind::Other => Outcome::Failure,
            _ => Outcome::Ignored,
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
            (200, Outcome::Success),
            (204, Outcome::Success),
            (304, Outcome::Success),
            (404, Outcome::Success),
            (429, Outcome::Success),
            (500, Outcome::Failure),
            (502, Outcome::Failure),
            (503, Outcome::Failure),
            (599, Outcome::Failure),
        ] {
            assert_eq!(default_outcome(&Ok(response(status, ""))), want, "{status}");
        }
    }

    #[test]
    fn error_kinds() {
        for (kind, want) in [
            (ErrorKind::Connect, Outcome::Failure),
            (ErrorKind::Timeout, Outcome::Failure),
            (ErrorKind::Transport, Outcome::Failure),
            (ErrorKind::Body, Outcome::Failure),
            (ErrorKind::Other, Outcome::Failure),
            (ErrorKind::InvalidRequest, Outcome::Ignored),
            (ErrorKind::Signing, Outcome::Ignored),
            (ErrorKind::Redirect, Outcome::Ignored),
            (ErrorKind::TooLarge, Outcome::Ignored),
            (ErrorKind::Decode, Outcome::Ignored),
            (ErrorKind::BreakerOpen, Outcome::Ignored),
        ] {
            assert_eq!(default_outcome(&Err(Error::from(kind))), want, "{kind:?}");
        }
    }
}
