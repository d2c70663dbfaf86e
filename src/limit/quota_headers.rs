//! The quota a server publishes in its answers: the IETF `RateLimit-Policy` and `RateLimit`
//! fields (draft-ietf-httpapi-ratelimit-headers), and the common `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining`, `X-RateLimit-Reset` headers (GitHub, and the older drafts'
//! `RateLimit-Limit`/`-Remaining`/`-Reset` without the `X-`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use super::structured::{Bare, Item, MAX_MEMBERS, MAX_PARAMS, parse_list};
use crate::sf;

/// What one answer said about the quota of its key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerQuota {
    /// Calls allowed per window (`q` of the policy, `X-RateLimit-Limit`), when sent.
    pub limit: Option<u64>,
    /// Calls left in the current window (`r`, `X-RateLimit-Remaining`).
    pub remaining: u64,
    /// Time until the window resets and the quota is whole again (`t`, `X-RateLimit-Reset`),
    /// when sent.
    pub reset: Option<Duration>,
    /// The length of the policy's window (`w`), when sent.
    pub window: Option<Duration>,
}

/// Reads the quota published in `headers`; `now` is the wall-clock time, to read a reset sent
/// as a Unix time.
///
/// * **IETF fields first.** `RateLimit: "default";r=50;t=30` gives the remaining calls and the
///   reset; the `RateLimit-Policy` item of the same name (`"default";q=100;w=60`) gives the
///   limit and window. When several policies are listed, the most restrictive one counts: the
///   one with nothing left, or else the one whose remaining calls must be spread thinnest
///   (the longest reset per remaining call). A policy whose quota unit (`qu`) is not
///   `"requests"` (bytes, concurrent requests) is skipped. A field that is not a valid
///   Structured Field list is ignored whole, unless it is the Dictionary of drafts 7 and
///   earlier (`RateLimit: limit=100, remaining=50, reset=30`, the window as the `w` of
///   `RateLimit-Policy: 100;w=60`).
/// * **Otherwise `X-RateLimit-*`**, or the older drafts' `RateLimit-Limit`,
///   `RateLimit-Remaining`, `RateLimit-Reset`: non-negative integers (the first list member,
///   so `100, 100;w=60` is 100; a count's fraction is dropped, so Reddit's `598.0` is 598). The reset is read as seconds from now when it is small, and as
///   a Unix time when it is past 10<sup>9</sup> (September 2001: no window is 31 years long),
///   in milliseconds past 10<sup>12</sup>; a fraction is allowed (`1700000000.5`). A Unix time
///   already past is a reset of zero.
///
/// `None` when no remaining count is published, or it is not a number: without it there is
/// nothing to pace by.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http_doer::limit::quota_headers::{self, ServerQuota};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("ratelimit-policy", r#""default";q=100;w=60"#.parse().unwrap());
/// headers.insert("ratelimit", r#""default";r=50;t=30"#.parse().unwrap());
/// assert_eq!(
///     quota_headers::parse(&headers, SystemTime::now()),
///     Some(ServerQuota {
///         limit: Some(100),
///         remaining: 50,
///         reset: Some(Duration::from_secs(30)),
///         window: Some(Duration::from_secs(60)),
///     })
/// );
/// ```
pub fn parse(headers: &HeaderMap, now: SystemTime) -> Option<ServerQuota> {
    if headers.is_empty() {
        return None;
    }
    if let Some(quota) = ietf(headers) {
        return Some(quota);
    }
    for [limit, remaining, reset_at] in LEGACY {
        let Some(remaining) = headers
            .get(remaining)
            .and_then(|v| leading_uint(v.as_bytes()))
        else {
            continue;
        };
        return Some(ServerQuota {
            limit: headers.get(limit).and_then(|v| leading_uint(v.as_bytes())),
            remaining,
            reset: headers.get(reset_at).and_then(|v| reset(v.as_bytes(), now)),
            window: None,
        });
    }
    None
}

/// The limit, remaining and reset headers of the common form, then of the older drafts.
const LEGACY: [[&str; 3]; 2] = [
    [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ],
    ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"],
];

/// The `RateLimit` and `RateLimit-Policy` fields; `None` when `RateLimit` is absent or invalid.
fn ietf(headers: &HeaderMap) -> Option<ServerQuota> {
    let Some(limits) = list(headers, "ratelimit") else {
        return draft_7(headers);
    };
    let policies = list(headers, "ratelimit-policy").unwrap_or_default();
    let mut best: Option<ServerQuota> = None;
    for item in &limits {
        let Some(remaining) = item.uint("r") else {
            continue;
        };
        let policy = item
            .name()
            .and_then(|name| policies.iter().rev().find(|p| p.name() == Some(name)));
        if policy.is_some_and(|p| !counts_requests(p)) {
            continue;
        }
        let quota = ServerQuota {
            limit: policy.and_then(|p| p.uint("q")),
            remaining,
            reset: item.uint("t").map(Duration::from_secs),
            window: policy.and_then(|p| p.uint("w")).map(Duration::from_secs),
        };
        if best.is_none_or(|b| tighter(&quota, &b)) {
            best = Some(quota);
        }
    }
    best
}

/// The form of drafts 7 and earlier, which servers still send: one Dictionary,
/// `RateLimit: limit=100, remaining=50, reset=30`, and the window as the `w` of the policy's
/// first item, `RateLimit-Policy: 100;w=60`. `None` without a remaining count.
fn draft_7(headers: &HeaderMap) -> Option<ServerQuota> {
    let mut lines = headers.get_all("ratelimit").iter();
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return None;
    };
    let members = sf::dictionary_within(line.to_str().ok()?, MAX_MEMBERS, MAX_PARAMS)?;
    let uint = |key: &str| match members.iter().rev().find(|m| m.key == key)?.value {
        sf::Value::Item(sf::Bare::Integer(n), _) => u64::try_from(n).ok(),
        _ => None,
    };
    let window = list(headers, "ratelimit-policy")
        .and_then(|policies| policies.first()?.uint("w"))
        .map(Duration::from_secs);
    Some(ServerQuota {
        limit: uint("limit"),
        remaining: uint("remaining")?,
        reset: uint("reset").map(Duration::from_secs),
        window,
    })
}

/// Whether the policy counts requests (the default unit).
fn counts_requests(policy: &Item) -> bool {
    match policy.param("qu") {
        None => true,
        Some(Bare::String(unit)) | Some(Bare::Token(unit)) => unit == "requests",
        Some(_) => false,
    }
}

/// Whether `a` leaves less room than `b`: nothing left first, then the longest reset per
/// remaining call.
fn tighter(a: &ServerQuota, b: &ServerQuota) -> bool {
    let spread = |q: &ServerQuota| match q.remaining {
        0 => u128::MAX,
        r => q.reset.unwrap_or_default().as_nanos() / u128::from(r),
    };
    spread(a) > spread(b)
}

/// All field lines of `name`, joined with commas as RFC 9651 says, parsed as a List.
fn list(headers: &HeaderMap, name: &str) -> Option<Vec<Item>> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    let Some(second) = lines.next() else {
        return parse_list(first.as_bytes());
    };
    let mut joined = first.as_bytes().to_vec();
    for line in std::iter::once(second).chain(lines) {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    parse_list(&joined)
}

/// The most digits read of a plain number: any `u64` has at most 20.
const MAX_DIGITS: usize = 20;

/// A non-negative count, the first member of a comma list, surrounding spaces allowed. A
/// fraction is allowed and dropped (Reddit sends `598.0`): part of a call is no call.
fn leading_uint(value: &[u8]) -> Option<u64> {
    let first = value.split(|&b| b == b',').next()?;
    // The older drafts allowed `100;w=60`: the number is before the parameters.
    let first = first.split(|&b| b == b';').next()?.trim_ascii();
    match first.iter().position(|&b| b == b'.') {
        Some(dot) => {
            let frac = &first[dot + 1..];
            let whole_frac = !frac.is_empty() && frac.len() <= MAX_DIGITS;
            (whole_frac && frac.iter().all(u8::is_ascii_digit))
                .then(|| digits(&first[..dot]))
                .flatten()
        }
        None => digits(first),
    }
}

fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > MAX_DIGITS || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Past this, a reset is a Unix time in seconds (2001-09-09), not seconds from now.
const EPOCH_SECONDS_FROM: u64 = 1_000_000_000;

/// Past this, a reset is a Unix time in milliseconds.
const EPOCH_MILLIS_FROM: u64 = 1_000_000_000_000;

/// A reset: seconds from now, or a Unix time (seconds or milliseconds), maybe with a fraction.
fn reset(value: &[u8], now: SystemTime) -> Option<Duration> {
    let value = value.trim_ascii();
    let (whole, frac) = match value.iter().position(|&b| b == b'.') {
        Some(dot) if dot + 1 == value.len() => return None,
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    let whole = digits(whole)?;
    let frac_nanos = if frac.is_empty() {
        0
    } else {
        // Nanoseconds from the first nine digits of the fraction; the rest is noise.
        let nine = &frac[..frac.len().min(9)];
        if frac.len() > MAX_DIGITS || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = digits(nine)?;
        let scale = 10u64.pow(9 - u32::try_from(nine.len()).unwrap_or(9));
        n * scale
    };
    let at = if whole >= EPOCH_MILLIS_FROM {
        Duration::from_millis(whole)
    } else if whole >= EPOCH_SECONDS_FROM {
        Duration::from_secs(whole) + Duration::from_nanos(frac_nanos)
    } else {
        return Some(Duration::from_secs(whole) + Duration::from_nanos(frac_nanos));
    };
    let when = UNIX_EPOCH.checked_add(at)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// 2023-11-14 22:13:20 UTC.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn secs(n: u64) -> Option<Duration> {
        Some(Duration::from_secs(n))
    }

    #[test]
    fn the_ietf_fields_with_their_policy() {
        let h = headers(&[
            (
                "ratelimit-policy",
                r#""burst";q=100;w=60, "daily";q=1000;w=86400"#,
            ),
            ("ratelimit", r#""burst";r=50;t=30, "daily";r=5;t=3600"#),
        ]);
        let q = parse(&h, now()).unwrap();
        assert_eq!(
            q,
            ServerQuota {
                limit: Some(1000),
                remaining: 5,
                reset: secs(3600),
                window: secs(86400)
            },
            "5 calls over an hour is tighter than 50 over 30 s"
        );
        let h = headers(&[("ratelimit", r#""a";r=50;t=30, "b";r=0;t=1"#)]);
        assert_eq!(parse(&h, now()).unwrap().remaining, 0, "nothing left wins");
        let h = headers(&[("ratelimit", r#""a";r=7"#)]);
        assert_eq!(
            parse(&h, now()),
            Some(ServerQuota {
                remaining: 7,
                ..Default::default()
            })
        );
    }

    #[test]
    fn policies_of_other_units_are_skipped_and_lines_are_joined() {
        let h = headers(&[
            (
                "ratelimit-policy",
                r#""bytes";q=10000;qu="content-bytes";w=1"#,
            ),
            ("ratelimit-policy", r#""calls";q=10;w=1"#),
            ("ratelimit", r#""bytes";r=0;t=1"#),
            ("ratelimit", r#""calls";r=4;t=1"#),
        ]);
        let q = parse(&h, now()).unwrap();
        assert_eq!((q.limit, q.remaining), (Some(10), 4));
    }

    #[test]
    fn an_invalid_ietf_field_falls_back_to_the_x_headers() {
        let h = headers(&[
            ("ratelimit", r#""default";r=50;t=30,"#),
            ("x-ratelimit-limit", "60"),
            ("x-ratelimit-remaining", "12"),
            ("x-ratelimit-reset", "20"),
        ]);
        let q = parse(&h, now()).unwrap();
        assert_eq!((q.limit, q.remaining, q.reset), (Some(60), 12, secs(20)));
    }

    #[test]
    fn x_ratelimit_reset_as_delta_or_unix_time() {
        let q = |reset: &str| {
            let h = headers(&[("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", reset)]);
            parse(&h, now()).unwrap().reset
        };
        assert_eq!(q("30"), secs(30));
        assert_eq!(q("1700000042"), secs(42), "GitHub's Unix time");
        assert_eq!(q("1699999000"), secs(0), "already past");
        assert_eq!(q("1700000042000"), secs(42), "milliseconds");
        assert_eq!(q("1700000001.5"), Some(Duration::from_millis(1500)));
        assert_eq!(q("2.25"), Some(Duration::from_millis(2250)));
        for bad in ["-1", "soon", "1e3", "", "1.", "1.x"] {
            assert_eq!(q(bad), None, "{bad}");
        }
    }

    #[test]
    fn reddits_counts_with_a_fraction() {
        let h = headers(&[
            ("x-ratelimit-used", "2"),
            ("x-ratelimit-remaining", "598.0"),
            ("x-ratelimit-reset", "372"),
        ]);
        let q = parse(&h, now()).unwrap();
        assert_eq!((q.limit, q.remaining, q.reset), (None, 598, secs(372)));
        let remaining = |v: &str| {
            let h = headers(&[("x-ratelimit-remaining", v)]);
            parse(&h, now()).map(|q| q.remaining)
        };
        assert_eq!(remaining("9.99"), Some(9), "part of a call is no call");
        for bad in ["1.", ".5", "1.2.3", "1.-2", "1.5e3"] {
            assert_eq!(remaining(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_draft_7_dictionary_form() {
        let h = headers(&[
            ("ratelimit", "limit=100, remaining=50, reset=30"),
            ("ratelimit-policy", "100;w=60, 1000;w=3600"),
        ]);
        let q = parse(&h, now()).unwrap();
        assert_eq!(
            q,
            ServerQuota {
                limit: Some(100),
                remaining: 50,
                reset: secs(30),
                window: secs(60),
            }
        );
        let alone = headers(&[("ratelimit", "remaining=0, reset=5")]);
        let q = parse(&alone, now()).unwrap();
        assert_eq!(
            (q.limit, q.remaining, q.reset, q.window),
            (None, 0, secs(5), None)
        );
        for bad in [
            "limit=100, reset=30",
            "remaining=-1",
            "remaining=1.5",
            "remaining=\"5\"",
            "remaining=5,",
        ] {
            let h = headers(&[("ratelimit", bad)]);
            assert_eq!(parse(&h, now()), None, "{bad}");
        }
    }

    #[test]
    fn the_older_drafts_and_their_list_forms() {
        let h = headers(&[
            ("ratelimit-limit", "100, 100;w=60"),
            ("ratelimit-remaining", " 9 "),
            ("ratelimit-reset", "50"),
        ]);
        let q = parse(&h, now()).unwrap();
        assert_eq!((q.limit, q.remaining, q.reset), (Some(100), 9, secs(50)));
    }

    #[test]
    fn nothing_to_pace_by() {
        assert_eq!(parse(&HeaderMap::new(), now()), None);
        let h = headers(&[("x-ratelimit-limit", "60"), ("x-ratelimit-reset", "5")]);
        assert_eq!(parse(&h, now()), None, "no remaining count");
        let h = headers(&[("x-ratelimit-remaining", "lots")]);
        assert_eq!(parse(&h, now()), None);
        let h = headers(&[("ratelimit", r#""a";t=5"#)]);
        assert_eq!(parse(&h, now()), None, "an item without r");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40),
                "[0-9a-z\"=;,. -]{0,30}".prop_map(String::into_bytes),
            ]
        }

        /// 2100-01-01, as a Unix time.
        const YEAR_2100: u64 = 4_102_444_800;

        const NAMES: [&str; 8] = [
            "ratelimit",
            "ratelimit-policy",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
        ];

        proptest! {
            /// No header values a server can send make `parse` panic or overflow.
            #[test]
            fn any_values_are_safe(values in proptest::collection::vec((0..NAMES.len(), value()), 0..6),
                                   now_s in any::<u64>()) {
                let mut h = HeaderMap::new();
                for (name, v) in values {
                    if let Ok(v) = http::HeaderValue::from_bytes(&v) {
                        h.append(NAMES[name], v);
                    }
                }
                let now = UNIX_EPOCH.checked_add(Duration::from_secs(now_s)).unwrap_or(UNIX_EPOCH);
                let _ = parse(&h, now);
            }

            /// The IETF fields round-trip their numbers.
            #[test]
            fn ietf_round_trip(q in 0u64..=999_999_999_999_999, w in 0u64..=999_999_999_999_999,
                               r in 0u64..=999_999_999_999_999, t in 0u64..=999_999_999_999_999) {
                let h = headers(&[
                    ("ratelimit-policy", &format!("\"p\";q={q};w={w}")),
                    ("ratelimit", &format!("\"p\";r={r};t={t}")),
                ]);
                prop_assert_eq!(parse(&h, now()), Some(ServerQuota {
                    limit: Some(q), remaining: r, reset: secs(t), window: secs(w),
                }));
            }

            /// The draft-7 Dictionary round-trips, in any order of its members, with its
            /// policy's window.
            #[test]
            fn draft_7_round_trip(l in 0u64..=999_999_999_999_999, r in 0u64..=999_999_999_999_999,
                                  t in 0u64..=999_999_999_999_999, w in 0u64..=999_999_999_999_999,
                                  turn in 0usize..3, ows in "[ \t]{0,2}") {
                let mut members = [format!("limit={l}"), format!("remaining={r}"), format!("reset={t}")];
                members.rotate_left(turn);
                let h = headers(&[
                    ("ratelimit", &members.join(&format!(",{ows}"))),
                    ("ratelimit-policy", &format!("{l};w={w}")),
                ]);
                prop_assert_eq!(parse(&h, now()), Some(ServerQuota {
                    limit: Some(l), remaining: r, reset: secs(t), window: secs(w),
                }));
            }

            /// X-RateLimit numbers round-trip; a delta reset below 10^9 is read as seconds.
            #[test]
            fn x_headers_round_trip(l in any::<u64>(), r in any::<u64>(), t in 0u64..EPOCH_SECONDS_FROM) {
                let h = headers(&[
                    ("x-ratelimit-limit", &l.to_string()),
                    ("x-ratelimit-remaining", &r.to_string()),
                    ("x-ratelimit-reset", &t.to_string()),
                ]);
                prop_assert_eq!(parse(&h, now()), Some(ServerQuota {
                    limit: Some(l), remaining: r, reset: secs(t), window: None,
                }));
            }

            /// A Unix-time reset is the time left until then, or zero once past.
            #[test]
            fn unix_resets_round_trip(at in EPOCH_SECONDS_FROM..YEAR_2100,
                                      now_s in EPOCH_SECONDS_FROM..YEAR_2100) {
                let h = headers(&[("x-ratelimit-remaining", "1"), ("x-ratelimit-reset", &at.to_string())]);
                let now = UNIX_EPOCH + Duration::from_secs(now_s);
                prop_assert_eq!(parse(&h, now).unwrap().reset, secs(at.saturating_sub(now_s)));
            }
        }
    }
}
