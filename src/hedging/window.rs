//! A lock-free latency histogram over a rotating window of two halves.
//!
//! Recording a sample is three relaxed atomic adds (its bucket, its group, the half's total) and
//! a `fetch_max`, so many calls can record at
//! once without a lock. The window is two halves: samples go into the current half; when it
//! holds `half_samples` samples, or has been open for `half_period`, the older half is cleared
//! and becomes the current one. A percentile therefore always sees between one and two halves of
//! recent samples, and a burst of traffic rotates the window by count, so the first answers of a
//! cold start count at once instead of waiting for a clock period to pass (tower's hedge waits a
//! whole period before its first hedge).
//!
//! Buckets are log-linear: exact below 64 µs, then 32 buckets per power of two, so a percentile
//! is at most 1/32 (about 3%) above the sample it stands for: a percentile is reported as the
//! *largest* value of its bucket, so rounding makes a hedge wait slightly longer, never
//! shorter, than the samples say.
//!
//! Rotation races with recording: a sample recorded into a half while another thread clears it
//! may be lost. That is a statistic losing one sample in a hundred at worst, never a wrong type
//! or a panic, and it keeps the hot path free of locks.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Largest power of two kept apart; larger samples (over 4.5 minutes) share the top bucket.
const MAX_EXP: u32 = 27;
const MAX_MICROS: u64 = (1 << (MAX_EXP + 1)) - 1;
const BUCKETS: usize = (2 * SUB + (MAX_EXP - SUB_BITS) as u64 * SUB) as usize;

/// The bucket of a sample in microseconds.
fn index(micros: u64) -> usize {
    let v = micros.min(MAX_MICROS);
    if v < 2 * SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let shift = exp - SUB_BITS;
    let sub = (v >> shift) - SUB;
    (2 * SUB + u64::from(shift - 1) * SUB + sub) as usize
}

/// The largest sample, in microseconds, that falls into bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < 2 * SUB {
        return i;
    }
    let shift = (i - 2 * SUB) / SUB + 1;
    let sub = (i - 2 * SUB) % SUB;
    ((SUB + sub + 1) << shift) - 1
}

/// Buckets per group: a group's count lets a percentile scan skip its buckets at once, so a
/// read costs at most a few dozen loads, not one per bucket below an outlier.
const GROUP: usize = SUB as usize;
const GROUPS: usize = BUCKETS.div_ceil(GROUP);

struct Half {
    buckets: Box<[AtomicU32]>,
    /// The sums of `buckets`, by runs of [`GROUP`].
    groups: Box<[AtomicU32]>,
    total: AtomicU32,
    /// One past the highest bucket used, so a percentile scan can start there.
    top: AtomicUsize,
}

impl Half {
    fn new() -> Self {
        Half {
            buckets: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            groups: (0..GROUPS).map(|_| AtomicU32::new(0)).collect(),
            total: AtomicU32::new(0),
            top: AtomicUsize::new(0),
        }
    }

    fn clear(&self) {
        let top = self.top.swap(0, Relaxed);
        for b in &self.buckets[..top.min(BUCKETS)] {
            b.store(0, Relaxed);
        }
        for g in &self.groups[..top.div_ceil(GROUP).min(GROUPS)] {
            g.store(0, Relaxed);
        }
        self.total.store(0, Relaxed);
    }
}

/// Recent latencies, for the adaptive delay.
pub(crate) struct LatencyWindow {
    halves: [Half; 2],
    /// Counts rotations; the current half is `halves[epoch % 2]`.
    epoch: AtomicUsize,
    half_samples: u32,
    half_period: Duration,
    base: Instant,
    /// When the current half was opened, in nanoseconds since `base`.
    opened: AtomicU64,
}

impl LatencyWindow {
    /// A window of about `samples` samples and at most `period`, each split in two halves.
    pub(crate) fn new(samples: u32, period: Duration) -> Self {
        LatencyWindow {
            halves: [Half::new(), Half::new()],
            epoch: AtomicUsize::new(0),
            half_samples: (samples / 2).max(1),
            half_period: (period / 2).max(Duration::from_millis(1)),
            base: Instant::now(),
            opened: AtomicU64::new(0),
        }
    }

    fn nanos_since_base(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Rotates by time: once when the current half is older than a half period, twice (so
    /// both halves are cleared) when it is older than two, so stale latencies are forgotten.
    fn rotate_if_old(&self, now: Instant) {
        let opened = self.opened.load(Relaxed);
        let age = self.nanos_since_base(now).saturating_sub(opened);
        let half = u64::try_from(self.half_period.as_nanos()).unwrap_or(u64::MAX);
        if age >= half {
            let epoch = self.epoch.load(Relaxed);
            if self.rotate(epoch, now) && age >= half.saturating_mul(2) {
                self.rotate(epoch + 1, now);
            }
        }
    }

    /// Moves from `epoch` to the next one, clearing the older half; false if another thread
    /// rotated first.
    fn rotate(&self, epoch: usize, now: Instant) -> bool {
        let next = epoch.wrapping_add(1);
        if self
            .epoch
            .compare_exchange(epoch, next, Relaxed, Relaxed)
            .is_err()
        {
            return false;
        }
        self.halves[next % 2].clear();
        self.opened.store(self.nanos_since_base(now), Relaxed);
        true
    }

    /// Records one latency, now.
    #[cfg(test)]
    pub(crate) fn record(&self, latency: Duration) {
        self.record_at(latency, Instant::now());
    }

    /// Records one latency at `now`, the time already read: a call that has just read the
    /// clock for the latency need not read it again.
    pub(crate) fn record_at(&self, latency: Duration, now: Instant) {
        self.rotate_if_old(now);
        let epoch = self.epoch.load(Relaxed);
        let half = &self.halves[epoch % 2];
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let i = index(micros);
        half.buckets[i].fetch_add(1, Relaxed);
        half.groups[i / GROUP].fetch_add(1, Relaxed);
        half.top.fetch_max(i + 1, Relaxed);
        if half.total.fetch_add(1, Relaxed) + 1 >= self.half_samples {
            self.rotate(epoch, now);
        }
    }

    /// How many samples the window holds.
    pub(crate) fn len(&self) -> u64 {
        self.len_at(Instant::now())
    }

    fn len_at(&self, now: Instant) -> u64 {
        self.rotate_if_old(now);
        self.halves
            .iter()
            .map(|h| u64::from(h.total.load(Relaxed)))
            .sum()
    }

    /// [`percentile_at`](Self::percentile_at) now.
    #[cfg(test)]
    pub(crate) fn percentile(&self, q: f64, min_samples: u64) -> Option<Duration> {
        self.percentile_at(q, min_samples, Instant::now())
    }

    /// The `q` quantile (nearest rank) of the samples in the window at `now` (the time already
    /// read), or `None` with fewer than `min_samples` samples.
    pub(crate) fn percentile_at(&self, q: f64, min_samples: u64, now: Instant) -> Option<Duration> {
        let n = self.len_at(now);
        if n == 0 || n < min_samples {
            return None;
        }
        // Nearest rank: the smallest sample with at least q·n samples at or below it, found by
        // counting down from the top, which is short for the high percentiles used here.
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let from_top = n - rank + 1;
        let [a, b] = &self.halves;
        let top = a.top.load(Relaxed).max(b.top.load(Relaxed)).min(BUCKETS);
        let mut seen = 0u64;
        for g in (0..top.div_ceil(GROUP)).rev() {
            let group = u64::from(a.groups[g].load(Relaxed)) + u64::from(b.groups[g].load(Relaxed));
            if seen + group < from_top {
                seen += group;
                continue;
            }
            // The rank falls in this group (unless a rotation moved the counts under us: then
            // the scan goes on below, as one bucket by bucket would).
            for i in (g * GROUP..top.min((g + 1) * GROUP)).rev() {
                seen +=
                    u64::from(a.buckets[i].load(Relaxed)) + u64::from(b.buckets[i].load(Relaxed));
                if seen >= from_top {
                    return Some(Duration::from_micros(upper(i)));
                }
            }
        }
        // Only reachable while a rotation races with this read: the counts moved under us.
        (top > 0).then(|| Duration::from_micros(upper(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1000.0)
    }

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..100_000u64).chain([1 << 20, (1 << 27) + 5, MAX_MICROS, u64::MAX]) {
            let i = index(v);
            assert!(i >= last || v > 100_000, "index went down at {v}");
            last = i;
            assert!(i < BUCKETS, "{v} -> {i}");
            let hi = upper(i);
            // The bucket's largest value maps back into the same bucket: no creeping upward.
            assert_eq!(index(hi), i, "v={v} i={i} hi={hi}");
            if v <= MAX_MICROS {
                assert!(hi >= v, "upper {hi} below sample {v}");
                assert!(
                    (hi - v) as f64 <= v as f64 / SUB as f64 + 1.0,
                    "v={v} hi={hi}"
                );
            }
        }
        assert_eq!(index(MAX_MICROS), BUCKETS - 1);
    }

    #[tokio::test(start_paused = true)]
    async fn percentile_needs_the_warm_up_count() {
        let w = LatencyWindow::new(200, Duration::from_secs(60));
        for _ in 0..19 {
            w.record(ms(2.0));
        }
        assert_eq!(w.percentile(0.95, 20), None);
        w.record(ms(2.0));
        let p = w.percentile(0.95, 20).unwrap();
        assert!(p >= ms(2.0) && p <= ms(2.07), "{p:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn p95_uses_nearest_rank() {
        let w = LatencyWindow::new(1000, Duration::from_secs(60));
        for i in 1..=100 {
            w.record(Duration::from_micros(i * 100));
        }
        // Rank 95 of 100 is the 95th smallest: 9.5 ms, reported as the top of its bucket.
        let p = w.percentile(0.95, 1).unwrap();
        assert!(p >= ms(9.5) && p < ms(9.5) * 33 / 32, "{p:?}");
        let p50 = w.percentile(0.5, 1).unwrap();
        assert!(p50 >= ms(5.0) && p50 < ms(5.0) * 33 / 32, "{p50:?}");
        assert_eq!(
            w.percentile(1.0, 1).unwrap(),
            w.percentile(0.999, 1).unwrap()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn grouped_scan_finds_the_same_rank_as_a_scan_of_every_bucket() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(17);
        for round in 0..20 {
            let w = LatencyWindow::new(100_000, Duration::from_secs(3600));
            let mut samples: Vec<u64> = (0..200 + round * 10)
                .map(|_| match rng.random_range(0..10) {
                    // Mostly fast, some slow, an outlier now and then: the shapes of real tails.
                    0 => rng.random_range(0..=MAX_MICROS),
                    1..=2 => rng.random_range(1_000..200_000),
                    _ => rng.random_range(0..300),
                })
                .collect();
            for &us in &samples {
                w.record(Duration::from_micros(us));
            }
            samples.sort_unstable();
            for q in [0.01, 0.5, 0.9, 0.95, 0.99, 1.0] {
                let n = samples.len() as u64;
                let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
                let want = Duration::from_micros(upper(index(samples[rank as usize - 1])));
                assert_eq!(w.percentile(q, 1), Some(want), "round {round}, q {q}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rotates_by_count_and_forgets_the_oldest_half() {
        let w = LatencyWindow::new(20, Duration::from_secs(60));
        for _ in 0..10 {
            w.record(ms(50.0));
        }
        // The 10 slow samples sit in the previous half now; 10 fast ones fill the next half
        // and rotate again, which drops the slow ones.
        assert!(w.percentile(0.5, 1).unwrap() >= ms(50.0));
        for _ in 0..10 {
            w.record(ms(1.0));
        }
        assert_eq!(w.len(), 10);
        assert!(w.percentile(1.0, 1).unwrap() < ms(1.1));
    }

    #[tokio::test(start_paused = true)]
    async fn rotates_by_time_and_empties_when_stale() {
        let w = LatencyWindow::new(1000, Duration::from_secs(10));
        for _ in 0..30 {
            w.record(ms(3.0));
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        // One half period passed: the samples moved to the previous half, still counted.
        assert_eq!(w.len(), 30);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(w.len(), 0);
        for _ in 0..5 {
            w.record(ms(3.0));
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(w.len(), 0, "two half periods of silence clear both halves");
        assert_eq!(w.percentile(0.95, 1), None);
    }

    #[test]
    fn concurrent_records_are_counted() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let w = std::sync::Arc::new(LatencyWindow::new(1_000_000, Duration::from_secs(3600)));
        std::thread::scope(|s| {
            for t in 0..4 {
                let w = w.clone();
                let handle = rt.handle().clone();
                s.spawn(move || {
                    let _g = handle.enter();
                    for i in 0..1000 {
                        w.record(Duration::from_micros(t * 1000 + i));
                    }
                });
            }
        });
        assert_eq!(w.len(), 4000);
    }
}
