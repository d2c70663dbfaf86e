//! URLs by RFC 3986: the one check and normal form that every request URL passes through before
//! either backend sees it, and the resolution of a redirect's `Location`.
//!
//! `http::Uri` accepts more than a client can send safely (`:99999` as a port, `0x7f.1` as a
//! host) and reqwest re-parses every URL with the WHATWG parser of the `url` crate while ureq
//! sends it as it is. So the URL is put into one normal form here, the one both libraries send
//! unchanged, and whatever the two would read differently is refused:
//!
//! * scheme `http` or `https`; a host; a port from 1 to 65535, left out when it is the default;
//! * the host in lower case; an IPv6 literal in its shortest form; a host that ends in a number
//!   must be a dotted-decimal IPv4 address (`1.2.3`, `0x7f.1` and `010.0.0.1` are refused: the
//!   system resolver and the `url` crate read them as addresses that differ from what a reader
//!   of the URL sees); no percent-encoded host, no IPv6 zone;
//! * dot segments removed from the path (RFC 3986 section 5.2.4, with `%2e` read as `.`, as
//!   RFC 3986 section 6.2.2.2 allows and the `url` crate does);
//! * bytes that RFC 3986 does not allow in a URL but `http::Uri` keeps (`"`, `{`, `}`, `\`, `'` in
//!   the query, any non-ASCII byte) percent-encoded;
//! * the userinfo taken out, for [`prepare`](super::prepare) to turn into credentials.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::Ipv6Addr;

use http::Uri;

/// A request URL in normal form.
pub(crate) struct Target<'a> {
    /// The URL to send, when it differs from the one given.
    pub(crate) uri: Option<Uri>,
    /// The userinfo of the URL given (`user:password`, still percent-encoded), if any.
    pub(crate) userinfo: Option<&'a str>,
}

/// Checks `uri` and puts it into normal form (see the module docs); the error says what is wrong.
pub(crate) fn normalize(uri: &Uri) -> Result<Target<'_>, &'static str> {
    let scheme = match uri.scheme_str() {
        None => return Err("URL is relative: it needs a scheme and a host"),
        Some(s) if s.eq_ignore_ascii_case("http") => "http",
        Some(s) if s.eq_ignore_ascii_case("https") => "https",
        Some(_) => return Err("URL scheme must be http or https"),
    };
    let authority = uri.authority().ok_or("URL has no host")?.as_str();
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, rest)) => (Some(userinfo), rest),
        None => (None, authority),
    };
    let (host, port) = split_host_port(host_port)?;
    let host = normal_host(host)?;
    let port = normal_port(port, if scheme == "https" { 443 } else { 80 })?;
    let path = normal_path(uri.path());
    let query = uri.query().map(normal_query);

    let changed = userinfo.is_some()
        || scheme != uri.scheme_str().unwrap_or_default()
        || matches!(host, Cow::Owned(_))
        || matches!(port, Some(Cow::Owned(_)))
        || matches!(path, Cow::Owned(_))
        || matches!(query, Some(Cow::Owned(_)))
        // An empty `host:` port, or one that was dropped as the default.
        || host_port.len() != host.len() + port.as_ref().map_or(0, |p| p.len() + 1);
    if !changed {
        return Ok(Target {
            uri: None,
            userinfo,
        });
    }
    let mut text = String::with_capacity(authority.len() + path.len() + 16);
    text.push_str(scheme);
    text.push_str("://");
    text.push_str(&host);
    if let Some(port) = &port {
        text.push(':');
        text.push_str(port);
    }
    text.push_str(&path);
    if let Some(query) = &query {
        text.push('?');
        text.push_str(query);
    }
    let uri = text.parse::<Uri>().map_err(|_| "URL is not valid")?;
    Ok(Target {
        uri: Some(uri),
        userinfo,
    })
}

fn split_host_port(host_port: &str) -> Result<(&str, Option<&str>), &'static str> {
    if host_port.starts_with('[') {
        let end = host_port
            .find(']')
            .ok_or("URL has an unclosed IPv6 literal")?;
        let (host, rest) = host_port.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("URL has text after its IPv6 literal"),
            },
        };
    }
    Ok(match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    })
}

/// The host in lower case, an IPv6 literal in its shortest form.
fn normal_host(host: &str) -> Result<Cow<'_, str>, &'static str> {
    if host.is_empty() {
        return Err("URL has no host");
    }
    if let Some(literal) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        if literal.contains('%') {
            return Err("URL has an IPv6 zone, which is not supported");
        }
        let addr: Ipv6Addr = literal
            .parse()
            .map_err(|_| "URL host is not a valid IPv6 address")?;
        let text = format!("[{}]", ipv6_text(addr));
        return Ok(if text == host {
            Cow::Borrowed(host)
        } else {
            Cow::Owned(text)
        });
    }
    // RFC 3986 reg-name, without percent-encoding: the `url` crate would decode it and the
    // system resolver would not, so the two backends would look up different names.
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b);
    if let Some(&b) = host.as_bytes().iter().find(|&&b| !allowed(b)) {
        return Err(if b == b'%' {
            "URL host is percent-encoded, which is not supported"
        } else {
            "URL host has a character that is not allowed in a host name"
        });
    }
    if host.split('.').any(|label| {
        label.len() > 4 && label[..4].eq_ignore_ascii_case("xn--") && !is_a_label(&label[4..])
    }) {
        return Err("URL host has an xn-- label that is not valid punycode");
    }
    if ends_in_number(host) && !is_dotted_decimal(host) {
        return Err("URL host looks like an IPv4 address but is not four decimal numbers");
    }
    Ok(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// Whether `encoded` (an `xn--` label without its prefix) decodes by RFC 3492 to a name with at
/// least one non-ASCII character, as an IDNA A-label must; the `url` crate refuses any other, and
/// the system resolver would look it up as it is.
fn is_a_label(encoded: &str) -> bool {
    const BASE: u32 = 36;
    let (basic, digits) = match encoded.rfind('-') {
        // An encoder writes the delimiter only after basic code points.
        Some(0) => return false,
        Some(i) => (&encoded[..i], &encoded[i + 1..]),
        None => ("", encoded),
    };
    if digits.is_empty() || !basic.is_ascii() {
        return false;
    }
    let mut output: Vec<u32> = basic.chars().map(u32::from).collect();
    let (mut n, mut bias, mut i) = (128u32, 72u32, 0u32);
    let mut bytes = digits.bytes().peekable();
    while bytes.peek().is_some() {
        let old_i = i;
        let mut w = 1u32;
        let mut k = BASE;
        loop {
            let digit = match bytes.next() {
                Some(b @ b'a'..=b'z') => u32::from(b - b'a'),
                Some(b @ b'A'..=b'Z') => u32::from(b - b'A'),
                Some(b @ b'0'..=b'9') => u32::from(b - b'0') + 26,
                _ => return false,
            };
            let Some(next) = digit.checked_mul(w).and_then(|d| i.checked_add(d)) else {
                return false;
            };
            i = next;
            let t = if k <= bias {
                1
            } else if k >= bias + 26 {
                26
            } else {
                k - bias
            };
            if digit < t {
                break;
            }
            let Some(next) = w.checked_mul(BASE - t) else {
                return false;
            };
            w = next;
            k += BASE;
        }
        let len = output.len() as u32 + 1;
        bias = adapt(i - old_i, len, old_i == 0);
        let Some(next) = n.checked_add(i / len) else {
            return false;
        };
        n = next;
        i %= len;
        if char::from_u32(n).is_none() {
            return false;
        }
        output.insert(i as usize, n);
        i += 1;
    }
    // Beyond RFC 3492, IDNA refuses much (UTS 46); a label of letters and digits with inner
    // hyphens is what real names use, and what the `url` crate accepts.
    let decoded: Vec<char> = output.iter().filter_map(|&c| char::from_u32(c)).collect();
    decoded.iter().any(|c| !c.is_ascii())
        && decoded
            .iter()
            .all(|&c| c == '-' || (c.is_alphanumeric() && !c.is_uppercase()))
        && decoded.first() != Some(&'-')
        && decoded.last() != Some(&'-')
}

fn adapt(delta: u32, len: u32, first: bool) -> u32 {
    let mut delta = if first { delta / 700 } else { delta / 2 };
    delta += delta / len;
    let mut k = 0;
    while delta > ((36 - 1) * 26) / 2 {
        delta /= 36 - 1;
        k += 36;
    }
    k + (36 * delta) / (delta + 38)
}

/// The WHATWG rule for hosts that are read as IPv4 addresses: the last label (ignoring one
/// trailing dot) is a decimal or `0x` hex number.
fn ends_in_number(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or(host);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Four decimal numbers from 0 to 255 without leading zeros, the only IPv4 form both backends
/// read alike.
fn is_dotted_decimal(host: &str) -> bool {
    // Counted as it goes rather than collected: every call to an IPv4 host passes here.
    let mut parts = 0;
    host.split('.').all(|p| {
        parts += 1;
        parts <= 4
            && !p.is_empty()
            && p.len() <= 3
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p.len() == 1 || !p.starts_with('0'))
            && p.parse::<u16>().is_ok_and(|n| n <= 255)
    }) && parts == 4
}

/// RFC 5952 text without the dotted IPv4 tail, as the `url` crate writes it.
fn ipv6_text(addr: Ipv6Addr) -> String {
    let seg = addr.segments();
    // The longest run of two or more zero segments, the first of equals.
    let (mut best, mut run) = ((0, 0), (0, 0));
    for (i, &s) in seg.iter().enumerate() {
        if s == 0 {
            run = if run.1 == 0 {
                (i, 1)
            } else {
                (run.0, run.1 + 1)
            };
            if run.1 > best.1 {
                best = run;
            }
        } else {
            run = (0, 0);
        }
    }
    let mut out = String::with_capacity(39);
    let mut i = 0;
    while i < 8 {
        if best.1 >= 2 && i == best.0 {
            out.push_str(if i == 0 { "::" } else { ":" });
            i += best.1;
            continue;
        }
        let _ = write!(out, "{:x}", seg[i]);
        if i < 7 {
            out.push(':');
        }
        i += 1;
    }
    out
}

/// The port as a number from 1 to 65535, or `None` when empty or the scheme's default.
fn normal_port(port: Option<&str>, default: u16) -> Result<Option<Cow<'_, str>>, &'static str> {
    let Some(port) = port.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("URL port is not a number");
    }
    let digits = port.trim_start_matches('0');
    let n = match digits.len() {
        0 => 0,
        1..=5 => digits.parse::<u32>().unwrap_or(u32::MAX),
        _ => u32::MAX,
    };
    if n == 0 || n > 65535 {
        return Err("URL port is out of range (1 to 65535)");
    }
    Ok(if n == u32::from(default) {
        None
    } else if digits.len() == port.len() {
        Some(Cow::Borrowed(port))
    } else {
        Some(Cow::Owned(digits.to_owned()))
    })
}

/// The path with dot segments removed and the bytes RFC 3986 forbids percent-encoded.
fn normal_path(path: &str) -> Cow<'_, str> {
    let encoded = encode(path, |b| {
        matches!(b, b'"' | b'{' | b'}' | b'\\') || b >= 0x80
    });
    if !has_dot_segment(&encoded) {
        return encoded;
    }
    Cow::Owned(remove_dot_segments(&encoded, is_dot, is_dot_dot))
}

fn normal_query(query: &str) -> Cow<'_, str> {
    encode(query, |b| b == b'\'' || b == b'"' || b >= 0x80)
}

fn encode(s: &str, escape: impl Fn(u8) -> bool) -> Cow<'_, str> {
    if !s.bytes().any(&escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for &b in s.as_bytes() {
        if escape(b) {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(b as char);
        }
    }
    Cow::Owned(out)
}

fn is_dot(seg: &str) -> bool {
    seg == "." || seg.eq_ignore_ascii_case("%2e")
}

fn is_dot_dot(seg: &str) -> bool {
    seg == ".."
        || seg.eq_ignore_ascii_case(".%2e")
        || seg.eq_ignore_ascii_case("%2e.")
        || seg.eq_ignore_ascii_case("%2e%2e")
}

fn has_dot_segment(path: &str) -> bool {
    (path.contains('.') || path.contains("%2"))
        && path.split('/').any(|s| is_dot(s) || is_dot_dot(s))
}

/// RFC 3986 section 5.2.4, with what counts as `.` and `..` given.
fn remove_dot_segments(
    path: &str,
    is_dot: impl Fn(&str) -> bool,
    is_dot_dot: impl Fn(&str) -> bool,
) -> String {
    // Segments are kept as a stack; `input` is read one segment at a time, as the RFC's
    // buffer-based algorithm does, which gives the same output.
    let absolute = path.starts_with('/');
    let body = if absolute { &path[1..] } else { path };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        let dot_dot = is_dot_dot(seg);
        if dot_dot {
            out.pop();
        }
        if dot_dot || is_dot(seg) {
            // A path that ends in a dot segment names a directory: keep its slash.
            if i == last {
                out.push("");
            }
        } else {
            out.push(seg);
        }
    }
    let mut result = String::with_capacity(path.len());
    if absolute {
        result.push('/');
    }
    result.push_str(&out.join("/"));
    result
}

/// The five components of a URI reference (RFC 3986 appendix B).
struct Parts<'a> {
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

fn parts(s: &str) -> Parts<'_> {
    let (s, fragment) = match s.split_once('#') {
        Some((s, f)) => (s, Some(f)),
        None => (s, None),
    };
    let (s, query) = match s.split_once('?') {
        Some((s, q)) => (s, Some(q)),
        None => (s, None),
    };
    let (scheme, s) = match s.split_once(':') {
        Some((scheme, rest)) if is_scheme(scheme) => (Some(scheme), rest),
        _ => (None, s),
    };
    let (authority, path) = match s.strip_prefix("//") {
        Some(rest) => {
            let end = rest.find('/').unwrap_or(rest.len());
            (Some(&rest[..end]), &rest[end..])
        }
        None => (None, s),
    };
    Parts {
        scheme,
        authority,
        path,
        query,
        fragment,
    }
}

/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`
fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Resolves the reference `reference` against the absolute URI `base`, exactly as RFC 3986
/// section 5.2 says (the strict parser: `http:g` keeps its own scheme), and recomposes the
/// result (section 5.3), fragment included.
pub(crate) fn resolve(base: &str, reference: &str) -> String {
    let dots = |s: &str| remove_dot_segments(s, |seg| seg == ".", |seg| seg == "..");
    let b = parts(base);
    let r = parts(reference);
    // RFC 3986 5.2.2, with its two branches that take the reference's own authority and
    // path folded into one: the scheme is the reference's when it has one, else the base's.
    let scheme = r.scheme.or(b.scheme);
    let (authority, owned_path, query) = if r.scheme.is_some() || r.authority.is_some() {
        (r.authority, dots(r.path), r.query)
    } else if r.path.is_empty() {
        (b.authority, b.path.to_owned(), r.query.or(b.query))
    } else if r.path.starts_with('/') {
        (b.authority, dots(r.path), r.query)
    } else {
        (b.authority, dots(&merge(&b, r.path)), r.query)
    };
    let path = owned_path.as_str();
    let mut out = String::with_capacity(base.len() + reference.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push(':');
    }
    if let Some(authority) = authority {
        out.push_str("//");
        out.push_str(authority);
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    if let Some(fragment) = r.fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// RFC 3986 section 5.2.3.
fn merge(base: &Parts<'_>, path: &str) -> String {
    if base.authority.is_some() && base.path.is_empty() {
        return format!("/{path}");
    }
    match base.path.rfind('/') {
        Some(i) => format!("{}{path}", &base.path[..=i]),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 3986 section 5.4: every normal and abnormal example.
    #[test]
    fn rfc3986_reference_resolution_examples() {
        let base = "http://a/b/c/d;p?q";
        let cases = [
            // 5.4.1 normal examples
            ("g:h", "g:h"),
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q#s"),
            ("g#s", "http://a/b/c/g#s"),
            ("g?y#s", "http://a/b/c/g?y#s"),
            (";x", "http://a/b/c/;x"),
            ("g;x", "http://a/b/c/g;x"),
            ("g;x?y#s", "http://a/b/c/g;x?y#s"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            // 5.4.2 abnormal examples
            ("../../../g", "http://a/g"),
            ("../../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            (".g", "http://a/b/c/.g"),
            ("g..", "http://a/b/c/g.."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("./g/.", "http://a/b/c/g/"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("g;x=1/./y", "http://a/b/c/g;x=1/y"),
            ("g;x=1/../y", "http://a/b/c/y"),
            ("g?y/./x", "http://a/b/c/g?y/./x"),
            ("g?y/../x", "http://a/b/c/g?y/../x"),
            ("g#s/./x", "http://a/b/c/g#s/./x"),
            ("g#s/../x", "http://a/b/c/g#s/../x"),
            ("http:g", "http:g"),
        ];
        for (reference, want) in cases {
            assert_eq!(resolve(base, reference), want, "{reference:?}");
        }
    }

    #[test]
    fn remove_dot_segments_matches_the_rfc_examples() {
        let dots = |s: &str| remove_dot_segments(s, |x| x == ".", |x| x == "..");
        // Section 5.2.4's two worked examples.
        assert_eq!(dots("/a/b/c/./../../g"), "/a/g");
        assert_eq!(dots("mid/content=5/../6"), "mid/6");
        assert_eq!(dots("/.."), "/");
        assert_eq!(dots("/a/.."), "/");
        assert_eq!(dots("/a/b/."), "/a/b/");
    }

    fn norm(s: &str) -> Result<String, &'static str> {
        let uri: Uri = s.parse().unwrap();
        let target = normalize(&uri)?;
        Ok(target.uri.unwrap_or(uri).to_string())
    }

    #[test]
    fn normal_form() {
        let cases = [
            ("http://h.test/", "http://h.test/"),
            ("HTTP://H.Test:80/x", "http://h.test/x"),
            ("https://h.test:443/", "https://h.test/"),
            ("http://h.test:/x", "http://h.test/x"),
            ("http://h.test:0080/x", "http://h.test/x"),
            ("http://h.test:08080/x", "http://h.test:8080/x"),
            ("http://u:p@h.test/x", "http://h.test/x"),
            ("http://h.test/a/./b/../c", "http://h.test/a/c"),
            ("http://h.test/a/%2e%2E/c", "http://h.test/c"),
            ("http://h.test/a\"{b}\\", "http://h.test/a%22%7Bb%7D%5C"),
            ("http://h.test/x?a='b'", "http://h.test/x?a=%27b%27"),
            (
                "http://[::FFFF:1.2.3.4]:8080/",
                "http://[::ffff:102:304]:8080/",
            ),
            ("http://[0:0:0:0:0:0:0:1]/", "http://[::1]/"),
            ("http://127.0.0.1:99/", "http://127.0.0.1:99/"),
        ];
        for (given, want) in cases {
            assert_eq!(norm(given).unwrap(), want, "{given}");
        }
        let unchanged: Uri = "http://h.test:8080/a/b?c=d".parse().unwrap();
        assert!(normalize(&unchanged).unwrap().uri.is_none());
    }

    #[test]
    fn refusals() {
        for bad in [
            "/relative",
            "ftp://h.test/",
            "http://h.test:99999/",
            "http://h.test:0/",
            "http://h.test:+80/",
            "http://1.2.3/",
            "http://0x7f.1/",
            "http://010.0.0.1/",
            "http://256.0.0.1/",
            "http://h.test.123/",
            "http://[fe80::1%25eth0]/",
        ] {
            let Ok(uri) = bad.parse::<Uri>() else {
                continue;
            };
            assert!(normalize(&uri).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn malformed_a_labels_are_refused() {
        for bad in [
            "http://xn--a/",
            "http://xn---0aa/",
            "http://xn--abc-/",
            "http://x.xn--zz9999999/",
        ] {
            assert!(normalize(&bad.parse().unwrap()).is_err(), "{bad}");
        }
        normalize(&"http://xn--mnchen-3ya.de/".parse().unwrap()).unwrap();
    }

    #[test]
    fn userinfo_is_taken_out() {
        let uri: Uri = "http://alice:p%40ss@h.test/".parse().unwrap();
        let target = normalize(&uri).unwrap();
        assert_eq!(target.userinfo, Some("alice:p%40ss"));
        assert_eq!(target.uri.unwrap().to_string(), "http://h.test/");
    }

    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9-]{1,8}(\\.[a-zA-Z][a-zA-Z0-9-]{0,6}){0,2}",
            "[0-9]{1,3}(\\.[0-9]{1,3}){0,4}",
            "0[xX][0-9a-f]{1,4}(\\.[0-9]{1,3}){0,3}",
            (any::<[u16; 8]>()).prop_map(|s| format!("[{}]", Ipv6Addr::from(s))),
            Just("[::1]".to_owned()),
            "[a-zA-Z0-9!$&'()*+,;=_~.-]{1,8}",
            // Real IDN names only: a random A-label that is valid punycode may still break
            // IDNA's bidi rules, which ReqwestDoer refuses and UreqDoer looks up (see README).
            prop_oneof![
                Just("xn--mnchen-3ya.de"),
                Just("xn--fiqs8s"),
                Just("xn--mgbh0fb.xn--kgbechtv")
            ]
            .prop_map(str::to_owned),
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                "[a-zA-Z0-9_~!$&()*+,;=:@-]{0,5}",
                Just(".".to_owned()),
                Just("..".to_owned()),
                Just("%2e".to_owned()),
                Just("%2E%2e".to_owned()),
                Just(".%2e".to_owned()),
                "[\"{}\\\\|^\\[\\]é%]{1,3}",
            ],
            0..6,
        )
        .prop_map(|segs| format!("/{}", segs.join("/")))
    }

    proptest! {
        /// Whatever `normalize` accepts, the `url` crate (reqwest's parser) reads as the same
        /// URL and writes back byte for byte, so reqwest sends what ureq sends.
        #[test]
        fn accepted_urls_are_what_the_url_crate_would_send(
            scheme in prop_oneof![Just("http"), Just("HTTPS")],
            host in host(),
            port in proptest::option::of(prop_oneof![0u32..70000, Just(80), Just(443)]),
            path in path(),
            query in proptest::option::of("[a-zA-Z0-9=&'\"/?%é-]{0,8}"),
        ) {
            let mut s = format!("{scheme}://{host}");
            if let Some(port) = port {
                s.push_str(&format!(":{port}"));
            }
            s.push_str(&path);
            if let Some(q) = &query {
                s.push('?');
                s.push_str(q);
            }
            let Ok(uri) = s.parse::<Uri>() else { return Ok(()) };
            if let Ok(target) = normalize(&uri) {
                let sent = target.uri.unwrap_or(uri).to_string();
                let parsed = url::Url::parse(&sent);
                prop_assert!(parsed.is_ok(), "{s} -> {sent}: url refuses it");
                let parsed = parsed.unwrap();
                prop_assert_eq!(parsed.as_str(), sent.as_str(), "{}", s);
                // Idempotent.
                prop_assert_eq!(norm(&sent).unwrap(), sent);
            }
        }

        #[test]
        fn normalize_never_panics(s in "\\PC{0,40}") {
            if let Ok(uri) = s.parse::<Uri>() {
                let _ = normalize(&uri);
            }
        }

        #[test]
        fn resolve_never_panics_and_removes_dot_segments(
            reference in "[a-z./?#:;=%@-]{0,20}",
        ) {
            let out = resolve("http://a/b/c/d;p?q", &reference);
            let path = parts(&out).path;
            if parts(&reference).scheme.is_none() {
                prop_assert!(!path.split('/').any(|s| s == "." || s == ".."), "{out}");
            }
        }
    }
}
