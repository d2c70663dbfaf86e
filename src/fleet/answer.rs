//! The bytes a serve-stale answer travels as between replicas, through a
//! [`StaleStore`](super::StaleStore): status, version, headers and body, with what the cache
//! needs to serve it by the same rules (its age and lifetime, its `Vary` and the keyed hash of
//! the request headers it names). Never the URL or the request's credentials: the answer's
//! name (a keyed hash) stands for them.
//!
//! A store that leaves the process seals these bytes (see [`FleetKey`](super::FleetKey)), so
//! what [`decode`] reads was written by a replica with the fleet's key; it still checks every
//! length and value, and refuses what the cache would never have kept (`Set-Cookie`, a status
//! other than 2xx, a `206`).

use bytes::{BufMut, Bytes};
use http::header::SET_COOKIE;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};

/// The format's first byte, so a later format can be told apart (and refused by this one).
const FORMAT_V1: u8 = 1;

/// An answer as a replica shares it; borrowed from its cache entry to be encoded.
pub(crate) struct AnswerRef<'a> {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
    /// The `Age` it came with, in seconds.
    pub(crate) base_age: u64,
    /// The age, in seconds, from which it may no longer be served.
    pub(crate) lifetime: u64,
    pub(crate) vary: &'a [HeaderName],
    pub(crate) vary_hash: u128,
    /// The length of its URL, which its size in a cache counts (the URL itself is not sent).
    pub(crate) url_len: usize,
}

/// An answer another replica shared, decoded.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) base_age: u64,
    pub(crate) lifetime: u64,
    pub(crate) vary: Vec<HeaderName>,
    pub(crate) vary_hash: u128,
    pub(crate) url_len: usize,
}

fn version_byte(v: Version) -> u8 {
    match v {
        Version::HTTP_09 => 0,
        Version::HTTP_10 => 1,
        Version::HTTP_2 => 3,
        Version::HTTP_3 => 4,
        _ => 2,
    }
}

fn version_of(b: u8) -> Option<Version> {
    Some(match b {
        0 => Version::HTTP_09,
        1 => Version::HTTP_10,
        2 => Version::HTTP_11,
        3 => Version::HTTP_2,
        4 => Version::HTTP_3,
        _ => return None,
    })
}

/// Lengths are `u32`: a header, or a body, past 4 GiB is not shared (no cache keeps one).
fn len32(n: usize) -> Option<u32> {
    u32::try_from(n).ok()
}

/// The answer as bytes; `None` when a part is too long to encode.
pub(crate) fn encode(a: &AnswerRef<'_>) -> Option<Vec<u8>> {
    let header_bytes: usize = a
        .headers
        .iter()
        .map(|(n, v)| 8 + n.as_str().len() + v.len())
        .sum();
    let vary_bytes: usize = a.vary.iter().map(|n| 4 + n.as_str().len()).sum();
    let mut out = Vec::with_capacity(64 + header_bytes + vary_bytes + a.body.len());
    out.put_u8(FORMAT_V1);
    out.put_u16(a.status.as_u16());
    out.put_u8(version_byte(a.version));
    out.put_u64(a.base_age);
    out.put_u64(a.lifetime);
    out.put_u128(a.vary_hash);
    out.put_u64(a.url_len as u64);
    out.put_u32(len32(a.vary.len())?);
    for name in a.vary {
        out.put_u32(len32(name.as_str().len())?);
        out.put_slice(name.as_str().as_bytes());
    }
    out.put_u32(len32(a.headers.len())?);
    for (name, value) in a.headers {
        out.put_u32(len32(name.as_str().len())?);
        out.put_slice(name.as_str().as_bytes());
        out.put_u32(len32(value.len())?);
        out.put_slice(value.as_bytes());
    }
    out.put_u32(len32(a.body.len())?);
    out.put_slice(a.body);
    Some(out)
}

/// Reads what [`encode`] wrote; `None` for anything else, or for an answer no cache keeps.
pub(crate) fn decode(bytes: &[u8]) -> Option<Answer> {
    let mut r = Reader(bytes);
    if r.u8()? != FORMAT_V1 {
        return None;
    }
    let status = StatusCode::from_u16(r.u16()?).ok()?;
    if !status.is_success() || status == StatusCode::PARTIAL_CONTENT {
        return None;
    }
    let version = version_of(r.u8()?)?;
    let base_age = r.u64()?;
    let lifetime = r.u64()?;
    let vary_hash = u128::from_be_bytes(r.take(16)?.try_into().ok()?);
    let url_len = usize::try_from(r.u64()?).ok()?;
    let n = r.u32()? as usize;
    // Each element takes at least four bytes: a count larger than what is left is a lie.
    if n > r.0.len() / 4 {
        return None;
    }
    let mut vary = Vec::with_capacity(n);
    for _ in 0..n {
        vary.push(HeaderName::from_bytes(r.chunk()?).ok()?);
    }
    let n = r.u32()? as usize;
    if n > r.0.len() / 8 {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(n);
    for _ in 0..n {
        let name = HeaderName::from_bytes(r.chunk()?).ok()?;
        let value = HeaderValue::from_bytes(r.chunk()?).ok()?;
        headers.append(name, value);
    }
    if headers.contains_key(SET_COOKIE) {
        return None;
    }
    let body = Bytes::copy_from_slice(r.chunk()?);
    if !r.0.is_empty() {
        return None;
    }
    Some(Answer {
        status,
        version,
        headers,
        body,
        base_age,
        lifetime,
        vary,
        vary_hash,
        url_len,
    })
}

/// Checked reads: every one returns `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A `u32` length, then that many bytes.
    fn chunk(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(headers: &HeaderMap) -> Vec<u8> {
        let vary = [HeaderName::from_static("accept")];
        encode(&AnswerRef {
            status: StatusCode::OK,
            version: Version::HTTP_2,
            headers,
            body: b"the body",
            base_age: 3,
            lifetime: u64::MAX,
            vary: &vary,
            vary_hash: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
            url_len: 42,
        })
        .unwrap()
    }

    #[test]
    fn an_answer_survives_the_trip_and_a_damaged_one_is_refused() {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("text/plain"));
        headers.append("x-many", HeaderValue::from_static("1"));
        headers.append("x-many", HeaderValue::from_static("2"));
        let bytes = sample(&headers);
        let a = decode(&bytes).unwrap();
        assert_eq!((a.status, a.version), (StatusCode::OK, Version::HTTP_2));
        assert_eq!(a.headers, headers);
        assert_eq!(&a.body[..], b"the body");
        assert_eq!((a.base_age, a.lifetime, a.url_len), (3, u64::MAX, 42));
        assert_eq!(a.vary, [HeaderName::from_static("accept")]);
        assert_eq!(a.vary_hash, 0x0123_4567_89ab_cdef_0011_2233_4455_6677);
        // Every truncation, and anything appended, is refused without a panic.
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end]).is_none(), "cut at {end}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_none());
        // A count that claims more than the bytes hold.
        let mut lying = bytes.clone();
        lying[1 + 2 + 1 + 8 + 8 + 16 + 8..][..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&lying).is_none());
        let mut other_format = bytes;
        other_format[0] = 2;
        assert!(decode(&other_format).is_none());
    }

    #[test]
    fn what_no_cache_keeps_is_refused() {
        let mut cookie = HeaderMap::new();
        cookie.append(SET_COOKIE, HeaderValue::from_static("sid=1"));
        assert!(decode(&sample(&cookie)).is_none());
        let mut bytes = sample(&HeaderMap::new());
        for status in [206u16, 500, 304, 99] {
            bytes[1..3].copy_from_slice(&status.to_be_bytes());
            assert!(decode(&bytes).is_none(), "{status}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = HeaderName> {
            "[a-z][a-z0-9-]{0,15}"
                .prop_filter("no Set-Cookie", |n| n != "set-cookie")
                .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
        }

        fn value() -> impl Strategy<Value = HeaderValue> {
            proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..24)
                .prop_map(|v| HeaderValue::from_bytes(&v).unwrap())
        }

        fn version() -> impl Strategy<Value = Version> {
            prop_oneof![
                Just(Version::HTTP_09),
                Just(Version::HTTP_10),
                Just(Version::HTTP_11),
                Just(Version::HTTP_2),
                Just(Version::HTTP_3),
            ]
        }

        proptest! {
            /// Whatever Redis hands back (garbage, or a valid answer altered anywhere): no panic.
            #[test]
            fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = decode(&bytes);
            }

            #[test]
            fn decode_never_panics_on_an_altered_answer(
                at in any::<prop::sample::Index>(),
                with in any::<u8>(),
                cut in any::<prop::sample::Index>(),
            ) {
                let mut bytes = sample(&HeaderMap::new());
                let i = at.index(bytes.len());
                bytes[i] = with;
                bytes.truncate(cut.index(bytes.len() + 1));
                let _ = decode(&bytes);
            }

            /// Every answer a cache keeps reads back as it was written.
            #[test]
            fn every_answer_survives_the_trip(
                status in 200u16..300,
                version in version(),
                headers in proptest::collection::vec((name(), value()), 0..8),
                body in proptest::collection::vec(any::<u8>(), 0..256),
                base_age in any::<u64>(),
                lifetime in any::<u64>(),
                vary in proptest::collection::vec(name(), 0..4),
                vary_hash in any::<u128>(),
                url_len in any::<u32>(),
            ) {
                prop_assume!(status != 206);
                let status = StatusCode::from_u16(status).unwrap();
                let mut map = HeaderMap::new();
                for (n, v) in headers {
                    map.append(n, v);
                }
                let bytes = encode(&AnswerRef {
                    status,
                    version,
                    headers: &map,
                    body: &body,
                    base_age,
                    lifetime,
                    vary: &vary,
                    vary_hash,
                    url_len: url_len as usize,
                })
                .unwrap();
                let a = decode(&bytes).unwrap();
                prop_assert_eq!((a.status, a.version), (status, version));
                prop_assert_eq!(&a.headers, &map);
                prop_assert_eq!(&a.body[..], &body[..]);
                prop_assert_eq!((a.base_age, a.lifetime), (base_age, lifetime));
                prop_assert_eq!(&a.vary, &vary);
                prop_assert_eq!((a.vary_hash, a.url_len), (vary_hash, url_len as usize));
            }
        }
    }
}
