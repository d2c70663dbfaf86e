//! The clock `governor` runs on here: `tokio::time`, so that paused time drives the limiter
//! as it drives the sleeps, and tests never wait for real.

use governor::clock::Clock;
use governor::nanos::Nanos;
use tokio::time::Instant;

/// Nanoseconds since the store was made, on tokio's clock.
///
/// governor's own clocks (`quanta`, `std::time::Instant`) do not see tokio's paused time, and
/// its `until_ready` sleeps on `futures-timer`, which paused time does not advance either; so
/// the limiter reads this clock and the decorator sleeps with `tokio::time::sleep`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokioClock {
    base: Instant,
}

impl TokioClock {
    pub(crate) fn new() -> Self {
        TokioClock {
            base: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        // Saturates at zero for a reading before `base`, and at 584 years.
        let since = Instant::now().saturating_duration_since(self.base);
        Nanos::from(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_time() {
        let clock = TokioClock::new();
        let t0 = clock.now();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let elapsed = Duration::from(clock.now()) - Duration::from(t0);
        assert_eq!(elapsed, Duration::from_millis(1500));
    }
}
