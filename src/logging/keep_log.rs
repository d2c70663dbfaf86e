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
/// 2025-03-01T12:00:00.042Z GET https://api.test/items?api_key=REDACTED attempt=2 status=503 elapsed=12.1ms request_bytes=0 response_bytes=52
/// 2025-03-01T12:00:01.007Z POST https://api.test/orders error=Timeout elapsed=30.0s request_bytes=112 "timed out (https://api.test/orders)"
/// 2025-03-01T12:00:02.311Z GET https://files.test/big.iso status=200 elapsed=41.7s request_bytes=0 response_bytes=734003200 body=complete
/// ```
///
/// A size is left out when it is not known (a stream of unknown length), never shown as `0`.
/// The line of a streamed response is written when its head arrives, with `body=streaming`,
/// and brought up to date when the body ends (see [`StreamedBody`]), if the line is still in
/// the log by then.
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
    /// The id the next pushed entry gets; the entries held have the ids just below it.
    next_id: u64,
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
                next_id: 0,
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

    /// Adds `entry`, and returns an id to [`update`](Self::update) it by.
    pub(crate) fn push(&self, entry: LogEntry) -> u64 {
        let mut ring = self.lock();
        let id = ring.next_id;
        ring.next_id += 1;
        if ring.capacity == 0 {
            ring.dropped += 1;
            return id;
        }
        if ring.entries.len() >= ring.capacity {
            ring.entries.pop_front();
            ring.dropped += 1;
        }
        ring.entries.push_back(entry);
        id
    }

    /// Changes the entry pushed as `id` with `change`, if it is still held (newer entries may
    /// have pushed it out, or the log may have been cleared).
    pub(crate) fn update(&self, id: u64, change: impl FnOnce(&mut LogEntry)) {
        let mut ring = self.lock();
        let first = ring.next_id - ring.entries.len() as u64;
        if let Some(index) = id.checked_sub(first)
            && let Some(entry) = ring.entries.get_mut(index as usize)
        {
            change(entry);
        }
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
    /// How long the exchange took. For a streamed response: until its head arrived, then,
    /// once its body ended, until that end.
    pub elapsed: Duration,
    /// The request body's size in bytes, when known: a stream of unknown length (with no
    /// `Content-Length`) is `None`, not `0`.
    pub request_bytes: Option<u64>,
    /// The response body's size in bytes, when known. For a streamed response: its declared
    /// length (if its head gave one) while it is read, then the bytes its reader took.
    pub response_bytes: Option<u64>,
    /// For a streamed response, where its body is; `None` for a buffered one, or no response.
    pub streamed: Option<StreamedBody>,
}

/// Where a streamed response body is, in a [`LogEntry`] and a [`Record`](super::Record).
///
/// A streamed response is logged when its head arrives, before its body is read; the body's
/// end is reported after it (see [`Logging`](super::Logging#bodies-by-kind)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamedBody {
    /// Not ended yet: the head arrived, the body is being read.
    Reading,
    /// Read to its end.
    Complete,
    /// Its read failed (the connection was cut, the exchange timed out, the body was shorter
    /// or longer than its declared length).
    Failed {
        /// The error's kind.
        kind: ErrorKind,
        /// The error and its causes (`{:#}`), redacted (see [`Error`](crate::Error)).
        message: String,
    },
    /// Dropped by its reader before its end (a caller that stopped reading, a retry layer
    /// that dropped an answer it will retry).
    Dropped,
}

/// How an exchange in a [`KeepLog`] ended: a response's status, or an error.
///
/// The crate's one `Outcome`; how a breaker counts a call is its
/// [`Verdict`](crate::breaker::Verdict).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A response with this status (any status: 4xx and 5xx are responses too).
    Status(StatusCode),
    /// No usable response.
    Error {
        /// The error's kind.
        kind: ErrorKind,
        /// The error and its causes (`{:#}`), redacted (see [`Error`](crate::Error)).
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
            Outcome::Status(s) => write!(f, " status={}", s.as_u16())?,
            Outcome::Error { kind, .. } => write!(f, " error={kind:?}")?,
        }
        write!(f, " elapsed={:.1?}", self.elapsed)?;
        if let Some(n) = self.request_bytes {
            write!(f, " request_bytes={n}")?;
        }
        if let Some(n) = self.response_bytes {
            write!(f, " response_bytes={n}")?;
        }
        // Debug quoting keeps a message with a newline or a quote on one line.
        match &self.streamed {
            None => {}
            Some(StreamedBody::Reading) => f.write_str(" body=streaming")?,
            Some(StreamedBody::Complete) => f.write_str(" body=complete")?,
            Some(StreamedBody::Dropped) => f.write_str(" body=dropped")?,
            Some(StreamedBody::Failed { kind, message }) => {
                write!(f, " body=failed body_error={kind:?} {message:?}")?;
            }
        }
        if let Outcome::Error { message, .. } = &self.outcome {
            write!(f, " {message:?}")?;
        }
        Ok(())
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
            request_bytes: None,
            response_bytes: None,
            streamed: None,
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
    fn sizes_and_a_streamed_body_are_on_the_line_when_known() {
        let mut e = entry(0, Outcome::Status(StatusCode::OK));
        e.request_bytes = Some(0);
        e.response_bytes = None;
        e.streamed = Some(StreamedBody::Reading);
        assert!(
            e.to_string()
                .ends_with(" status=200 elapsed=12.3ms request_bytes=0 body=streaming"),
            "{e}"
        );
        e.response_bytes = Some(7);
        e.streamed = Some(StreamedBody::Failed {
            kind: ErrorKind::Timeout,
            message: "timed out".into(),
        });
        assert!(
            e.to_string().ends_with(
                " request_bytes=0 response_bytes=7 body=failed body_error=Timeout \"timed out\""
            ),
            "{e}"
        );
        let mut err = entry(
            0,
            Outcome::Error {
                kind: ErrorKind::Connect,
                message: "refused".into(),
            },
        );
        err.request_bytes = Some(3);
        assert!(
            err.to_string()
                .ends_with(" error=Connect elapsed=12.3ms request_bytes=3 \"refused\""),
            "{err}"
        );
    }

    #[test]
    fn an_entry_is_updated_by_its_id_while_it_is_held() {
        let log = KeepLog::new(2);
        let first = log.push(entry(1, Outcome::Status(StatusCode::OK)));
        let second = log.push(entry(2, Outcome::Status(StatusCode::OK)));
        log.update(second, |e| e.response_bytes = Some(22));
        log.update(first, |e| e.response_bytes = Some(11));
        let sizes: Vec<_> = log.entries().iter().map(|e| e.response_bytes).collect();
        assert_eq!(sizes, [Some(11), Some(22)]);
        // Pushed out, then cleared: an update finds nothing and changes nothing.
        let third = log.push(entry(3, Outcome::Status(StatusCode::OK)));
        log.update(first, |e| e.response_bytes = Some(99));
        let sizes: Vec<_> = log.entries().iter().map(|e| e.response_bytes).collect();
        assert_eq!(sizes, [Some(22), None]);
        log.clear();
        let fourth = log.push(entry(4, Outcome::Status(StatusCode::OK)));
        log.update(third, |e| e.response_bytes = Some(99));
        log.update(fourth + 1, |e| e.response_bytes = Some(99));
        assert_eq!(log.entries()[0].response_bytes, None);
        let none = KeepLog::new(0);
        let id = none.push(entry(5, Outcome::Status(StatusCode::OK)));
        none.update(id, |_| unreachable!("nothing is kept"));
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
