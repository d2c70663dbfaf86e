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
/// Dates are read by the `httpdate` crate, so they carry its limits: a date before 1970 is
/// `None` (the caller's own backoff, not "retry now"), and a two-digit RFC 850 year is read
/// with a fixed pivot (70-99 are 19xx) rather than RFC 9110's 50-years-from-now rule. Servers
/// send the IMF-fixdate form, which has neither problem.
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

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::time::UNIX_EPOCH;

        fn value(v: &str) -> HeaderMap {
            let mut h = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_str(v) {
                h.insert(RETRY_AFTER, v);
            }
            h
        }

        proptest! {
            /// No bytes a server can send make `parse` panic or overflow.
            #[test]
            fn any_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..40),
                                  now in 0u64..=253_402_300_799) {
                let mut h = HeaderMap::new();
                if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                    h.insert(RETRY_AFTER, v);
                    let _ = parse(&h, UNIX_EPOCH + Duration::from_secs(now));
                }
            }

            /// Delta-seconds round trip, surrounding spaces allowed; past `u64` saturates.
            #[test]
            fn seconds_round_trip(secs in any::<u64>(), pad in "[ \t]{0,2}") {
                let got = parse(&value(&format!("{pad}{secs}{pad}")), static_now());
                prop_assert_eq!(got, Some(Duration::from_secs(secs)));
                let huge = parse(&value(&format!("{secs}0000000000000000000000")), static_now());
                prop_assert_eq!(huge, Some(Duration::from_secs(u64::MAX)));
            }

            /// An IMF-fixdate is the time left until then, or zero once past.
            #[test]
            fn dates_round_trip(when in 0u64..=253_402_300_799, now in 0u64..=253_402_300_799) {
                let when_t = UNIX_EPOCH + Duration::from_secs(when);
                let now_t = UNIX_EPOCH + Duration::from_secs(now);
                let got = parse(&value(&httpdate::fmt_http_date(when_t)), now_t);
                prop_assert_eq!(got, Some(Duration::from_secs(when.saturating_sub(now))));
            }

            /// Signs, fractions and lists are not delta-seconds.
            #[test]
            fn signed_or_fractional_numbers_fall_back(n in any::<u32>(), m in any::<u8>()) {
                for v in [format!("-{n}"), format!("+{n}"), format!("{n}.{m}"), format!("{n}, {m}")] {
                    prop_assert_eq!(parse(&value(&v), static_now()), None, "{}", v);
                }
            }
        }
    }
}
