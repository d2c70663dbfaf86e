//! [`KeepLog`]: a bounded in-memory log of exchanges, readable as text.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};

use crate::ErrorKind;

/// A bounded in-memory log of the exchanges a [`Logging`](super::Logging) saw: Go pester's
/// `KeepLog`/`LogString`, with status codes and a size bound.
///
/// It keeps the last `capacity` exchanges, oldest first; older lines are dropped and counted
/// ([`dropped`](KeepLog::dropped)). Clones share the same log, so keep one clone to read it
/// while a `Logging` deep in a stack writes to another. Its `Display` is the whole log as text,
/// one line per exchange:
///
/// ```text
/// 2025-03-01T12:00:00.042Z GET https://api.test/items?api_key=REDACTED attempt=2 status=503 elapsed=12.1ms
/// 2025-03-01T12:00:01.007Z POST https://api.test/orders error=Timeout elapsed=30.0s "timed out (https://api.test/orders)"
/// ```
///
/// Every line is built from redacted parts: the URL without userinfo and with secret query
/// values replaced, and an error's `Display`, which is redacted too. No header or body is kept.
///
/// ```
/// use http_doer::{Body, Doer, DoerExt, logging::KeepLog, testing::ScriptedDoer};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let log = KeepLog::new(2);
/// let doer = ScriptedDoer::new().then_status(500).then_status(200).then_status(204);
/// let doer = doer.logging().keep_log(log.clone());
/// for _ in 0..3 {
///     let req = http::Request::get("http://api.test/x?token=t0k").body(Body::empty()).unwrap();
///     doer.execute(req).await.unwrap();
/// }
/// assert_eq!(log.len(), 2);
/// assert_eq!(log.dropped(), 1);
/// let text = log.to_string();
/// assert!(text.contains("GET http://api.test/x?token=REDACTED status=200"));
/// assert!(!text.contains("t0k"));
/// # });
/// ```
#[derive(Clone)]
pub struct KeepLog {
    ring: Arc<Mutex<Ring>>,
}

struct Ring {
    entries: VecDeque<LogEntry>,
    capacity: usize,
    dropped: u64,
}

impl KeepLog {
    /// An empty log that keeps the last `capacity` exchanges (`0` keeps none, only counts).
    pub fn new(capacity: usize) -> Self {
        KeepLog {
            ring: Arc::new(Mutex::new(Ring {
                // Grown on demand: a huge capacity must not allocate up front.
                entries: VecDeque::new(),
                capacity,
                dropped: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // Every update leaves the ring consistent, so a panic elsewhere while the lock was held
        // does not make its content wrong.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many exchanges the log keeps at most.
    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// How many exchanges the log holds now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the log holds no exchange.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many older exchanges were dropped to stay within the capacity.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Copies of the kept exchanges, oldest first.
    pub fn entries(&self) -> Vec<LogEntry> {
        self.lock().entries.iter().cloned().collect()
    }

    /// Forgets every kept exchange and resets the dropped count.
    pub fn clear(&self) {
        let mut ring = self.lock();
        ring.entries.clear();
        ring.dropped = 0;
    }

    pub(crate) fn push(&self, entry: LogEntry) {
        let mut ring = self.lock();
        if ring.capacity == 0 {
            ring.dropped += 1;
            return;
        }
        if ring.entries.len() >= ring.capacity {
            ring.entries.pop_front();
            ring.dropped += 1;
        }
        ring.entries.push_back(entry);
    }
}

impl fmt::Display for KeepLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.lock();
        if ring.dropped > 0 {
            writeln!(f, "({} earlier exchanges dropped)", ring.dropped)?;
        }
        for entry in &ring.entries {
            writeln!(f, "{entry}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeepLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ring = self.lock();
        f.debug_struct("KeepLog")
            .field("len", &ring.entries.len())
            .field("capacity", &ring.capacity)
            .field("dropped", &ring.dropped)
            .finish()
    }
}

/// One exchange in a [`KeepLog`]. Its `Display` is one line of the log's text.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogEntry {
    /// Wall-clock time at which the exchange started.
    pub time: SystemTime,
    /// The request method.
    pub method: Method,
    /// The request URL, redacted ([`redact::uri`](crate::redact::uri)).
    pub url: String,
    /// The number of the attempt that produced the outcome, when the layers below told
    /// (see [`Logging`](super::Logging#attempt-numbers)).
    pub attempt: Option<u32>,
    /// The status received, or the error.
    pub outcome: Outcome,
    /// How long the exchange took.
    pub elapsed: Duration,
}

/// How an exchange in a [`KeepLog`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A response with this status (any status: 4xx and 5xx are responses too).
    Status(StatusCode),
    /// No usable response.
    Error {
        /// The error's kind.
        kind: ErrorKind,
        /// The error's `Display`, which is redacted (see [`Error`](crate::Error)).
        message: String,
    },
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_rfc3339(f, self.time)?;
        write!(f, " {} {}", self.method, self.url)?;
        if let Some(n) = self.attempt {
            write!(f, " attempt={n}")?;
        }
        match &self.outcome {
            Outcome::Status(s) => write!(f, " status={} elapsed={:.1?}", s.as_u16(), self.elapsed),
            // Debug quoting keeps a message with a newline or a quote on one line.
            Outcome::Error { kind, message } => {
                write!(
                    f,
                    " error={kind:?} elapsed={:.1?} {message:?}",
                    self.elapsed
                )
            }
        }
    }
}

/// Writes `t` as an RFC 3339 UTC timestamp with milliseconds (times before 1970 as the epoch).
fn write_rfc3339(f: &mut fmt::Formatter<'_>, t: SystemTime) -> fmt::Result {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let sod = secs % 86_400;
    write!(
        f,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        since.subsec_millis()
    )
}

/// Year, month and day of the `days`-th day after 1970-01-01, in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(secs: u64, outcome: Outcome) -> LogEntry {
        LogEntry {
            time: UNIX_EPOCH + Duration::from_millis(secs * 1000 + 42),
            method: Method::GET,
            url: "https://api.test/x?key=REDACTED".into(),
            attempt: Some(2),
            outcome,
            elapsed: Duration::from_micros(12_345),
        }
    }

    #[test]
    fn line_format_with_status_and_with_error() {
        let ok = entry(
            1_709_164_800,
            Outcome::Status(StatusCode::SERVICE_UNAVAILABLE),
        );
        assert_eq!(
            ok.to_string(),
            "2024-02-29T00:00:00.042Z GET https://api.test/x?key=REDACTED attempt=2 status=503 elapsed=12.3ms"
        );
        let mut err = entry(
            0,
            Outcome::Error {
                kind: ErrorKind::Connect,
                message: "connect error: \"refused\"\nnext".into(),
            },
        );
        err.attempt = None;
        assert_eq!(
            err.to_string(),
            r#"1970-01-01T00:00:00.042Z GET https://api.test/x?key=REDACTED error=Connect elapsed=12.3ms "connect error: \"refused\"\nnext""#
        );
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn dates_agree_with_httpdate() {
        // Leap days, century rules (2000 leap, 2100 not), year ends, and a spread of others.
        let mut times = vec![
            0u64,
            951_782_400,
            951_868_799,
            978_307_199,
            1_709_164_800,
            4_107_542_400,
            4_102_444_799,
            253_402_300_799,
        ];
        times.extend((0..2000u64).map(|i| i * 126_144_007));
        for secs in times {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let http = httpdate::fmt_http_date(t); // "Thu, 29 Feb 2024 00:00:00 GMT"
            let ours = entry(0, Outcome::Status(StatusCode::OK));
            let line = LogEntry { time: t, ..ours }.to_string();
            let (y, m, d) = civil_from_days(secs / 86_400);
            let month = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ][m as usize - 1];
            assert!(
                http.contains(&format!("{d:02} {month} {y} ")),
                "{secs}: {http} vs {line}"
            );
            assert!(http.contains(&line[11..19]), "{secs}: {http} vs {line}");
        }
    }

    #[test]
    fn ring_keeps_the_newest_and_counts_the_dropped() {
        let log = KeepLog::new(3);
        let other = log.clone();
        for i in 0..5 {
            other.push(entry(i, Outcome::Status(StatusCode::OK)));
        }
        assert_eq!(log.len(), 3);
        assert_eq!(log.dropped(), 2);
        let secs: Vec<u64> = log
            .entries()
            .iter()
            .map(|e| e.time.duration_since(UNIX_EPOCH).unwrap().as_secs())
            .collect();
        assert_eq!(secs, [2, 3, 4]);
        let text = log.to_string();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(
            text.starts_with("(2 earlier exchanges dropped)\n"),
            "{text}"
        );
        assert_eq!(
            format!("{log:?}"),
            "KeepLog { len: 3, capacity: 3, dropped: 2 }"
        );
        log.clear();
        assert!(other.is_empty() && other.dropped() == 0 && other.to_string().is_empty());
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let log = KeepLog::new(0);
        log.push(entry(1, Outcome::Status(StatusCode::OK)));
        assert!(log.is_empty());
        assert_eq!(log.dropped(), 1);
        assert_eq!(log.capacity(), 0);
    }
}
