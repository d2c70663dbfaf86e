//! Structured Field Values (RFC 9651, formerly RFC 8941): the one parser of them in the crate,
//! used by HTTP Message Signatures (`Signature-Input`, `Signature`: Dictionaries whose members'
//! exact text is signed) and by the quota fields (`RateLimit`, `RateLimit-Policy`: Lists).
//!
//! The parse is all or nothing, as RFC 9651 asks: a field with any syntax error is refused
//! whole. Every field value it reads comes from a server or a caller, so it is property-tested
//! against any input (see the tests of its two users).
//!
//! Written here rather than taken from the `sfv` crate: `sfv` parses into values and
//! serializes them anew, which would rewrite other signers' members, and a verifier checks
//! those bytes, so a Dictionary member's exact span is kept ([`Member::text`]).

use base64::Engine as _;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// RFC 8941 section 4.2.7: parsers should accept missing padding and non-zero pad bits.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// A bare item. Decimals are in thousandths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Bare {
    Integer(i64),
    Decimal(i64),
    String(String),
    Token(String),
    Bytes(Vec<u8>),
    Boolean(bool),
    Date(i64),
    DisplayString(String),
}

pub(crate) type Params = Vec<(String, Bare)>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Item(Bare, Params),
    InnerList(Vec<(Bare, Params)>, Params),
}

/// One member of a dictionary: its key, its exact text (`key=value;params`, without the
/// surrounding whitespace and commas) and what that text means.
#[derive(Debug)]
pub(crate) struct Member<'a> {
    pub key: &'a str,
    pub text: &'a str,
    pub value: Value,
}

/// The members of the dictionary field value `s` (RFC 8941 section 4.2.2), in order, or
/// `None` if `s` is not one. Leading and trailing spaces and tabs are dropped first, as
/// they are not part of a field value.
pub(crate) fn dictionary(s: &str) -> Option<Vec<Member<'_>>> {
    dictionary_within(s, usize::MAX, usize::MAX)
}

/// [`dictionary`], refused as soon as it has more than `max` members (or an inner list more
/// than `max` items), or an item more than `max_params` parameters: nothing past the bounds
/// is allocated.
pub(crate) fn dictionary_within(s: &str, max: usize, max_params: usize) -> Option<Vec<Member<'_>>> {
    members(s, max, max_params, |p| {
        let start = p.i;
        let key = p.key()?;
        let value = if p.eat(b'=') {
            p.item_or_inner_list()?
        } else {
            Value::Item(Bare::Boolean(true), p.params()?)
        };
        Some(Member {
            key,
            text: &p.s[start..p.i],
            value,
        })
    })
}

/// The members of the list field value `s` (RFC 9651 section 4.2.1), in order, or `None` if
/// `s` is not one. Leading and trailing spaces and tabs are dropped first, as they are not
/// part of a field value. Refused too, as soon as it has more than `max` members, an inner
/// list more than `max` items, or an item more than `max_params` parameters: nothing past the
/// bounds is allocated.
pub(crate) fn list(s: &str, max: usize, max_params: usize) -> Option<Vec<Value>> {
    members(s, max, max_params, Parser::item_or_inner_list)
}

/// The comma-separated members of a List or a Dictionary, each read by `member`.
fn members<'a, T>(
    s: &'a str,
    max: usize,
    max_params: usize,
    mut member: impl FnMut(&mut Parser<'a>) -> Option<T>,
) -> Option<Vec<T>> {
    let s = s.trim_matches([' ', '\t']);
    let mut p = Parser {
        s,
        i: 0,
        max,
        max_params,
    };
    let mut members = Vec::new();
    while !p.done() {
        if members.len() >= max {
            return None;
        }
        members.push(member(&mut p)?);
        p.skip_ows();
        if p.done() {
            break;
        }
        if !p.eat(b',') {
            return None;
        }
        p.skip_ows();
        if p.done() {
            return None; // A trailing comma.
        }
    }
    Some(members)
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
    /// The most members, and items of an inner list.
    max: usize,
    /// The most parameters of one item.
    max_params: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.i += usize::from(hit);
        hit
    }

    /// The next byte, consumed.
    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// Consumes bytes while `f` holds; returns them.
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        // Only ASCII bytes are taken, so `start..i` are char boundaries.
        &self.s[start..self.i]
    }

    /// RFC 8941 section 4.2.3.3.
    fn key(&mut self) -> Option<&'a str> {
        if !matches!(self.peek()?, b'a'..=b'z' | b'*') {
            return None;
        }
        Some(
            self.take_while(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')),
        )
    }

    /// RFC 8941 section 4.2.1.1.
    fn item_or_inner_list(&mut self) -> Option<Value> {
        if !self.eat(b'(') {
            let bare = self.bare()?;
            return Some(Value::Item(bare, self.params()?));
        }
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.eat(b')') {
                return Some(Value::InnerList(items, self.params()?));
            }
            if items.len() >= self.max {
                return None;
            }
            let bare = self.bare()?;
            items.push((bare, self.params()?));
            if !matches!(self.peek()?, b' ' | b')') {
                return None;
            }
        }
    }

    /// RFC 8941 section 4.2.3.2.
    fn params(&mut self) -> Option<Params> {
        let mut params = Vec::new();
        while self.eat(b';') {
            if params.len() >= self.max_params {
                return None;
            }
            self.skip_sp();
            let key = self.key()?.to_owned();
            let value = if self.eat(b'=') {
                self.bare()?
            } else {
                Bare::Boolean(true)
            };
            params.push((key, value));
        }
        Some(params)
    }

    /// RFC 8941 section 4.2.3.1, with RFC 9651's Date and Display String.
    fn bare(&mut self) -> Option<Bare> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string().map(Bare::String),
            b'*' | b'A'..=b'Z' | b'a'..=b'z' => Some(Bare::Token(self.token().to_owned())),
            b':' => self.bytes(),
            b'?' => {
                self.i += 1;
                match self.bump()? {
                    b'0' => Some(Bare::Boolean(false)),
                    b'1' => Some(Bare::Boolean(true)),
                    _ => None,
                }
            }
            b'@' => {
                self.i += 1;
                match self.number()? {
                    Bare::Integer(n) => Some(Bare::Date(n)),
                    _ => None,
                }
            }
            b'%' => {
                self.i += 1;
                self.display_string()
            }
            _ => None,
        }
    }

    /// RFC 8941 section 4.2.4: at most 15 digits, or 12 and 3 after the point.
    fn number(&mut self) -> Option<Bare> {
        let negative = self.eat(b'-');
        if !self.peek()?.is_ascii_digit() {
            return None;
        }
        let int = self.take_while(|b| b.is_ascii_digit());
        if !self.eat(b'.') {
            if int.len() > 15 {
                return None;
            }
            let n: i64 = int.parse().ok()?;
            return Some(Bare::Integer(if negative { -n } else { n }));
        }
        let frac = self.take_while(|b| b.is_ascii_digit());
        if int.len() > 12 || frac.is_empty() || frac.len() > 3 {
            return None;
        }
        let thousandths = format!("{int}{frac:0<3}").parse::<i64>().ok()?;
        Some(Bare::Decimal(if negative {
            -thousandths
        } else {
            thousandths
        }))
    }

    /// RFC 8941 section 4.2.5.
    fn string(&mut self) -> Option<String> {
        self.i += 1; // The opening quote.
        let mut out = String::new();
        loop {
            match self.bump()? {
                b'\\' => match self.bump()? {
                    c @ (b'"' | b'\\') => out.push(char::from(c)),
                    _ => return None,
                },
                b'"' => return Some(out),
                c @ 0x20..=0x7e => out.push(char::from(c)),
                _ => return None,
            }
        }
    }

    /// RFC 8941 section 4.2.6.
    fn token(&mut self) -> &'a str {
        self.take_while(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&b))
    }

    /// RFC 8941 section 4.2.7.
    fn bytes(&mut self) -> Option<Bare> {
        self.i += 1; // The opening colon.
        let b64 = self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
        if !self.eat(b':') {
            return None;
        }
        LENIENT_BASE64.decode(b64).ok().map(Bare::Bytes)
    }

    /// RFC 9651 section 4.2.10.
    fn display_string(&mut self) -> Option<Bare> {
        if !self.eat(b'"') {
            return None;
        }
        let mut bytes = Vec::new();
        loop {
            match self.bump()? {
                b'%' => {
                    let hex = |b: u8| match b {
                        b'0'..=b'9' => Some(b - b'0'),
                        b'a'..=b'f' => Some(b - b'a' + 10),
                        _ => None,
                    };
                    let high = hex(self.bump()?)?;
                    let low = hex(self.bump()?)?;
                    bytes.push((high << 4) | low);
                }
                b'"' => return String::from_utf8(bytes).ok().map(Bare::DisplayString),
                c @ 0x20..=0x7e => bytes.push(c),
                _ => return None,
            }
        }
    }
}
