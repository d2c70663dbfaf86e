//! The grammar of the fields serve-stale reads: `Cache-Control` and `Pragma` (RFC 9111 5.2 and
//! 5.4), `Vary` (RFC 9110 12.5.5) and `Age` (RFC 9111 5.1), all lists by RFC 9110 5.6.1.
//!
//! Every parser here returns `None` for a value that does not follow the grammar, and the
//! callers take that as "do not cache". A parser that skips what it cannot read fails open:
//! `no-store, x="caf\xe9"` read as "no directives", or `Vary: accept language` read as "varies on
//! nothing", hands one request's answer to another.
//!
//! Several field lines form one list (RFC 9110 5.3); each line must parse on its own, so a
//! quoted string split across two lines makes the field unreadable rather than joined.

use http::{HeaderName, HeaderValue};

/// One cache directive (or pragma directive, which has the same shape).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Directive {
    /// In lower case: directive names are case-insensitive.
    pub(crate) name: String,
    /// The argument, without its quotes and quoted-pair escapes. Bytes, not text: a quoted
    /// string may hold obs-text.
    pub(crate) value: Option<Vec<u8>>,
}

impl Directive {
    /// The argument as delta-seconds, given as a token or a quoted string (RFC 9111 5.2 asks
    /// recipients to accept both); `None` when absent or not digits.
    pub(crate) fn seconds(&self) -> Option<u64> {
        delta_seconds(self.value.as_deref()?)
    }
}

/// The directives of all the lines of a `Cache-Control` or `Pragma` field, in order:
/// `#( token [ "=" ( token / quoted-string ) ] )`.
pub(crate) fn directives<'a>(
    lines: impl IntoIterator<Item = &'a HeaderValue>,
) -> Option<Vec<Directive>> {
    let mut found = Vec::new();
    list(lines, |c| {
        let name = c.token()?;
        let value = if c.eat(b'=') {
            Some(if c.eat(b'"') {
                c.quoted_rest()?
            } else {
                c.token()?.to_vec()
            })
        } else {
            None
        };
        let name = name.iter().map(|&b| char::from(b.to_ascii_lowercase()));
        found.push(Directive {
            name: name.collect(),
            value,
        });
        Some(())
    })?;
    Some(found)
}

/// The field names a `Vary` field lists (`#( "*" / field-name )`), or `None` when it lists `*`
/// (the answer varies on more than the request's fields) or does not parse.
pub(crate) fn vary<'a>(
    lines: impl IntoIterator<Item = &'a HeaderValue>,
) -> Option<Vec<HeaderName>> {
    tokens(lines)?
        .into_iter()
        .map(|t| match t {
            b"*" => None,
            _ => HeaderName::from_bytes(t).ok(),
        })
        .collect()
}

/// The seconds an `Age` field gives: its first member, as RFC 9111 5.1 says of a list-valued
/// `Age`. `None` when it has no member or does not parse: the caller cannot tell how old the
/// answer is, and taking it as new would make a stale answer look fresh.
pub(crate) fn age<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Option<u64> {
    delta_seconds(tokens(lines)?.first()?)
}

/// `1*DIGIT`. A value too large to hold is the largest there is, as RFC 9111 1.2.2 asks: an
/// overflow must never wrap to a small age.
fn delta_seconds(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

fn tokens<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Option<Vec<&'a [u8]>> {
    let mut found = Vec::new();
    list(lines, |c| {
        found.push(c.token()?);
        Some(())
    })?;
    Some(found)
}

/// Runs `element` on each element of `#element` in every line, as a recipient must read a list
/// (RFC 9110 5.6.1): `[ element ] *( OWS "," OWS [ element ] )`, so empty elements are
/// allowed. `element` must consume exactly one element or fail.
fn list<'a>(
    lines: impl IntoIterator<Item = &'a HeaderValue>,
    mut element: impl FnMut(&mut Cursor<'a>) -> Option<()>,
) -> Option<()> {
    for line in lines {
        let mut c = Cursor(line.as_bytes());
        loop {
            c.ows();
            if c.0.is_empty() {
                break;
            }
            if c.eat(b',') {
                continue;
            }
            element(&mut c)?;
            c.ows();
            if !c.0.is_empty() && !c.eat(b',') {
                return None;
            }
        }
    }
    Some(())
}

/// What is left of a line.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn eat(&mut self, b: u8) -> bool {
        match self.0.split_first() {
            Some((&first, rest)) if first == b => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }

    fn ows(&mut self) {
        while self.eat(b' ') || self.eat(b'\t') {}
    }

    fn token(&mut self) -> Option<&'a [u8]> {
        let n = self.0.iter().take_while(|&&b| is_tchar(b)).count();
        let (token, rest) = self.0.split_at(n);
        self.0 = rest;
        (n > 0).then_some(token)
    }

    /// The rest of a quoted-string whose opening quote is eaten, unescaped.
    fn quoted_rest(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    let (&escaped, rest) = self.0.split_first()?;
                    if !is_quoted_pair_char(escaped) {
                        return None;
                    }
                    self.0 = rest;
                    out.push(escaped);
                }
                _ if is_qdtext(b) => out.push(b),
                _ => return None,
            }
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text`
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// What may follow a backslash: `HTAB / SP / VCHAR / obs-text`.
fn is_quoted_pair_char(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    fn value(bytes: &[u8]) -> HeaderValue {
        HeaderValue::from_bytes(bytes).unwrap()
    }

    fn parse(bytes: &[u8]) -> Option<Vec<Directive>> {
        directives([&value(bytes)])
    }

    fn names(bytes: &[u8]) -> Option<Vec<String>> {
        Some(parse(bytes)?.into_iter().map(|d| d.name).collect())
    }

    #[test]
    fn reads_the_grammar() {
        let got = parse(b"No-Store, max-age=60 ,private=\"Set-Cookie, a\\\"b\"").unwrap();
        let want = [
            ("no-store", None),
            ("max-age", Some(&b"60"[..])),
            ("private", Some(&b"Set-Cookie, a\"b"[..])),
        ];
        assert_eq!(got.len(), want.len());
        for (d, (name, arg)) in got.iter().zip(want) {
            assert_eq!((d.name.as_str(), d.value.as_deref()), (name, arg));
        }
        // Empty elements and OWS, over several lines.
        let lines = [value(b" , ,no-cache,\t,"), value(b""), value(b"public")];
        let got: Vec<String> = directives(&lines)
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(got, ["no-cache", "public"]);
        // obs-text is allowed inside a quoted string, so the directive next to it is read.
        assert_eq!(
            names(b"no-store, x-ext=\"caf\xe9\"").unwrap(),
            ["no-store", "x-ext"]
        );
    }

    #[test]
    fn refuses_what_the_grammar_forbids() {
        for bad in [
            &b"no-store, x-ext=caf\xe9"[..], // obs-text outside a quoted string
            b"no-store\xe9",
            b"no store",
            b"max-age = 60",
            b"max-age=",
            b"=60",
            b"private=\"open",
            b"private=\"a\"b",
            b"no-store; max-age=1",
            b"\"no-store\"",
            b"a=\"\\",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        // A quoted string split over two lines does not join them.
        assert_eq!(directives(&[value(b"x=\"a,"), value(b"b\"")]), None);
    }

    #[test]
    fn delta_seconds_never_wraps() {
        let d = |v: &[u8]| age([&value(v)]);
        assert_eq!(d(b"0"), Some(0));
        assert_eq!(d(b" 42 "), Some(42));
        assert_eq!(d(b"7, 100"), Some(7));
        assert_eq!(d(b"99999999999999999999999999"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"+5",
            b"-1",
            b"1.5",
            b"1e3",
            b"5 s",
            b"0x10",
            b"\xe9",
        ] {
            assert_eq!(d(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn vary_lists_field_names() {
        let v = |b: &[u8]| vary([&value(b)]);
        assert_eq!(
            v(b"Accept-Encoding,, accept-language ,").unwrap(),
            ["accept-encoding", "accept-language"]
        );
        assert_eq!(v(b"").unwrap(), Vec::<HeaderName>::new());
        for bad in [
            &b"accept language"[..],
            b"accept, *",
            b"accept\xe9",
            b"a;b",
            b"\"a\"",
        ] {
            assert_eq!(v(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    // ---- properties ----------------------------------------------------------------------------

    const TCHARS: &[u8] =
        b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

    /// Bytes a header value may hold that are neither in a token, nor OWS, nor `,` or `=`:
    /// outside a quoted string the grammar has no place for them.
    fn not_in_a_token() -> impl Strategy<Value = u8> {
        let separators: Vec<u8> = b"\"()/:;<>?@[\\]{}".to_vec();
        prop_oneof![select(separators), 0x80u8..=0xff]
    }

    fn token() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(select(TCHARS), 1..10)
    }

    #[derive(Clone, Debug)]
    enum Arg {
        None,
        Token(Vec<u8>),
        Quoted(Vec<u8>),
    }

    fn arg() -> impl Strategy<Value = Arg> {
        let quotable = prop_oneof![select(vec![b'\t', b' ']), 0x21u8..=0x7e, 0x80u8..=0xff];
        prop_oneof![
            Just(Arg::None),
            token().prop_map(Arg::Token),
            prop::collection::vec(quotable, 0..10).prop_map(Arg::Quoted),
        ]
    }

    fn render(name: &[u8], arg: &Arg) -> Vec<u8> {
        let mut out = name.to_vec();
        match arg {
            Arg::None => {}
            Arg::Token(t) => {
                out.push(b'=');
                out.extend_from_slice(t);
            }
            Arg::Quoted(q) => {
                out.extend_from_slice(b"=\"");
                for &b in q {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
        }
        out
    }

    /// How the text before an element looks: OWS (spaces and tabs), extra empty elements, or a
    /// new field line.
    #[derive(Clone, Debug)]
    struct Gap {
        ows: u8,
        empties: u8,
        new_line: bool,
    }

    fn gap() -> impl Strategy<Value = Gap> {
        (0u8..3, 0u8..3, prop::bool::weighted(0.2)).prop_map(|(ows, empties, new_line)| Gap {
            ows,
            empties,
            new_line,
        })
    }

    fn ows(n: u8) -> Vec<u8> {
        (0..n)
            .map(|i| if i % 2 == 0 { b' ' } else { b'\t' })
            .collect()
    }

    /// Field lines holding `elements`, laid out by `gaps` (one per element, and one after).
    fn lines(elements: &[Vec<u8>], gaps: &[Gap]) -> Vec<HeaderValue> {
        let mut lines = vec![Vec::new()];
        for (i, gap) in gaps.iter().enumerate() {
            if gap.new_line && i > 0 {
                lines.push(Vec::new());
            }
            let line = lines.last_mut().unwrap();
            let first = i == 0 || gap.new_line;
            line.extend(ows(gap.ows));
            if !first && i < elements.len() || gap.empties > 0 {
                line.push(b',');
            }
            for _ in 1..gap.empties {
                line.extend(ows(gap.ows));
                line.push(b',');
            }
            line.extend(ows(gap.ows));
            if let Some(element) = elements.get(i) {
                line.extend_from_slice(element);
            }
        }
        lines.iter().map(|l| value(l)).collect()
    }

    fn directive_list() -> impl Strategy<Value = (Vec<(Vec<u8>, Arg)>, Vec<Gap>)> {
        prop::collection::vec((token(), arg()), 0..8).prop_flat_map(|items| {
            let n = items.len() + 1;
            (Just(items), prop::collection::vec(gap(), n))
        })
    }

    fn no_store() -> impl Strategy<Value = Vec<u8>> {
        (prop::collection::vec(any::<bool>(), 8), arg()).prop_map(|(upper, arg)| {
            let name: Vec<u8> = b"no-store"
                .iter()
                .zip(upper)
                .map(|(&b, up)| if up { b.to_ascii_uppercase() } else { b })
                .collect();
            render(&name, &arg)
        })
    }

    /// Mostly the bytes that matter to the grammar, so that near-valid values are common.
    fn any_value() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            any::<u8>(),
            select(b" \t,=\"\\*09aZ-".to_vec()),
            select(TCHARS),
        ];
        prop::collection::vec(byte, 0..40)
    }

    proptest! {
        #[test]
        fn no_panic_on_any_bytes(bytes in any_value()) {
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                let _ = directives([&v]);
                let _ = vary([&v]);
                let _ = age([&v]);
            }
        }

        #[test]
        fn directives_round_trip((items, gaps) in directive_list()) {
            let elements: Vec<Vec<u8>> = items.iter().map(|(n, a)| render(n, a)).collect();
            let parsed = directives(&lines(&elements, &gaps));
            let want: Vec<Directive> = items
                .iter()
                .map(|(name, arg)| Directive {
                    name: String::from_utf8(name.to_ascii_lowercase()).unwrap(),
                    value: match arg {
                        Arg::None => None,
                        Arg::Token(v) | Arg::Quoted(v) => Some(v.clone()),
                    },
                })
                .collect();
            prop_assert_eq!(parsed, Some(want));
        }

        #[test]
        fn a_forbidden_byte_makes_directives_unreadable(
            (items, gaps) in directive_list(),
            bad in prop_oneof![not_in_a_token(), select(vec![b' ', b'\t'])],
            halves in (token(), token()),
            arg in arg(),
            at in any::<prop::sample::Index>(),
        ) {
            let mut elements: Vec<Vec<u8>> = items.iter().map(|(n, a)| render(n, a)).collect();
            let mut name = halves.0;
            name.push(bad);
            name.extend(halves.1);
            elements.insert(at.index(elements.len() + 1), render(&name, &arg));
            let mut gaps = gaps;
            gaps.push(Gap { ows: 0, empties: 0, new_line: false });
            prop_assert_eq!(directives(&lines(&elements, &gaps)), None);
        }

        #[test]
        fn no_store_anywhere_in_a_valid_list_is_found(
            (items, gaps) in directive_list(),
            no_store in no_store(),
            at in any::<prop::sample::Index>(),
        ) {
            let mut elements: Vec<Vec<u8>> = items.iter().map(|(n, a)| render(n, a)).collect();
            elements.insert(at.index(elements.len() + 1), no_store);
            let mut gaps = gaps;
            gaps.push(Gap { ows: 1, empties: 0, new_line: false });
            let found = directives(&lines(&elements, &gaps)).unwrap();
            prop_assert!(found.iter().any(|d| d.name == "no-store"));
        }

        #[test]
        fn vary_round_trips(
            names in prop::collection::vec(token(), 0..8),
            gaps in prop::collection::vec(gap(), 9),
        ) {
            prop_assume!(names.iter().all(|n| n != b"*"));
            let want: Vec<HeaderName> =
                names.iter().map(|n| HeaderName::from_bytes(n).unwrap()).collect();
            prop_assert_eq!(vary(&lines(&names, &gaps[..=names.len()])), Some(want));
        }

        #[test]
        fn vary_with_a_forbidden_byte_or_a_star_is_unreadable(
            names in prop::collection::vec(token(), 1..8),
            gaps in prop::collection::vec(gap(), 9),
            bad in not_in_a_token(),
            at in any::<prop::sample::Index>(),
            star in any::<prop::sample::Index>(),
        ) {
            let good = lines(&names, &gaps[..=names.len()]);
            // Anywhere in the text: Vary has no quoted strings, so nothing can hold it.
            let mut broken: Vec<Vec<u8>> = good.iter().map(|v| v.as_bytes().to_vec()).collect();
            let line = &mut broken[0];
            line.insert(at.index(line.len() + 1), bad);
            let broken: Vec<HeaderValue> = broken.iter().map(|l| value(l)).collect();
            prop_assert_eq!(vary(&broken), None);

            let mut starred = names.clone();
            starred.insert(star.index(names.len() + 1), b"*".to_vec());
            prop_assert_eq!(vary(&lines(&starred, &gaps[..=starred.len()])), None);
        }
    }
}
