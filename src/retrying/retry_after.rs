//! The `Retry-After` header (RFC 9110, section 10.2.3): delta-seconds or an HTTP-date.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use http::header::RETRY_AFTER;

/// How long the server asked the client to wait, from the first `Retry-After` header in
/// `headers`, relative to the wall-clock time `now`.
///
/// * `"120"` (delta-seconds) is 120 s; a number too large for a `u64` saturates.
/// * An HTTP-date (`"Fri, 31 Dec 1999 23:59:59 GMT"`, and the two obsolete forms) is the time
///   left until then; a date already past is `Some(Duration::ZERO)`: retry now.
/// * No header, an empty value, a negative number, a fraction, a sign, or anything else that
///   is not one of the two forms is `None`, so the caller falls back to its own backoff.
///
/// Only the first header counts when there are several. Surrounding spaces are ignored.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http_doer::retrying::retry_after;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("retry-after", "7".parse().unwrap());
/// assert_eq!(retry_after::parse(&headers, SystemTime::now()), Some(Duration::from_secs(7)));
/// headers.insert("retry-after", "soon".parse().unwrap());
/// assert_eq!(retry_after::parse(&headers, SystemTime::now()), None);
/// ```
pub fn parse(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: only overflow can fail, and a huge wait is still a wait (clamped later).
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// go-retryablehttp's `testStaticTime`: "now" is 1999-12-31 23:59:57 UTC.
    fn static_now() -> SystemTime {
        httpdate::parse_http_date("Fri, 31 Dec 1999 23:59:57 GMT").unwrap()
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(RETRY_AFTER, v.parse().unwrap());
        }
        h
    }

    /// go-retryablehttp's `TestParseRetryAfterHeader` table, case for case.
    #[test]
    fn go_retryablehttp_table() {
        let cases: [(&str, &[&str], Option<u64>); 9] = [
            ("seconds", &["2"], Some(2)),
            ("date", &["Fri, 31 Dec 1999 23:59:59 GMT"], Some(2)),
            ("past-date", &["Fri, 31 Dec 1999 23:59:00 GMT"], Some(0)),
            ("nil", &[], None),
            ("two-headers", &["2", "3"], Some(2)),
            ("empty", &[""], None),
            ("negative", &["-2"], None),
            ("bad-date", &["Fri, 32 Dec 1999 23:59:59 GMT"], None),
            ("bad-date-format", &["badbadbad"], None),
        ];
        for (name, values, want) in cases {
            let got = parse(&headers(values), static_now());
            assert_eq!(got, want.map(Duration::from_secs), "{name}");
        }
    }

    #[test]
    fn obsolete_date_forms_are_accepted() {
        for v in ["Friday, 31-Dec-99 23:59:59 GMT", "Fri Dec 31 23:59:59 1999"] {
            assert_eq!(
                parse(&headers(&[v]), static_now()),
                Some(Duration::from_secs(2)),
                "{v}"
            );
        }
    }

    #[test]
    fn stray_forms_fall_back() {
        for v in ["+5", "1.5", "5s", "0x10", "1e3", "- 2"] {
            assert_eq!(parse(&headers(&[v]), static_now()), None, "{v}");
        }
    }

    #[test]
    fn spaces_zero_and_huge_values() {
        let now = static_now();
        assert_eq!(parse(&headers(&[" 7 "]), now), Some(Duration::from_secs(7)));
        assert_eq!(parse(&headers(&["0"]), now), Some(Duration::ZERO));
        assert_eq!(
            parse(&headers(&["99999999999999999999999"]), now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn non_ascii_value_falls_back() {
        let mut h = HeaderMap::new();
        h.insert(
            RETRY_AFTER,
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(parse(&h, static_now()), None);
    }
}
