//! [`Clock`]: where signers read wall-clock time.

use std::time::SystemTime;

/// Wall-clock time for signatures (`created`, `expires`, `X-Amz-Date`).
///
/// Signatures carry absolute time that a server checks against its own clock, so they use
/// [`SystemTime`], not `tokio::time`. Tests inject a fixed or stepping clock; a closure
/// `Fn() -> SystemTime` is a clock.
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use http_doer::signing::Clock;
///
/// let fixed = || UNIX_EPOCH + Duration::from_secs(1_618_884_473);
/// assert_eq!(fixed.now(), UNIX_EPOCH + Duration::from_secs(1_618_884_473));
/// ```
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's clock, [`SystemTime::now`]; the default of every signer.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F: Fn() -> SystemTime + Send + Sync> Clock for F {
    fn now(&self) -> SystemTime {
        self()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_is_now() {
        let before = SystemTime::now();
        let now = SystemClock.now();
        assert!(now >= before && now <= SystemTime::now());
    }
}
