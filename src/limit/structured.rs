//! The IETF `RateLimit` and `RateLimit-Policy` fields as RFC 9651 Lists of Items with
//! parameters, read by the crate's one Structured Field parser ([`crate::sf`]) and kept to
//! what the quota needs.
//!
//! The parse is all or nothing, as RFC 9651 asks: a field with any syntax error is ignored as a
//! whole, so a half-understood quota never paces a client.

use crate::sf;

/// A bare item; the kinds the quota fields do not use are kept as [`Bare::Other`].
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Bare {
    Integer(i64),
    String(String),
    Token(String),
    Other,
}

/// One member of a List: its value (an inner list is [`Bare::Other`]) and its parameters.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Item {
    pub(crate) value: Bare,
    pub(crate) params: Vec<(String, Bare)>,
}

impl Item {
    /// The value of parameter `key`, if present (the last one wins, as RFC 9651 says).
    pub(crate) fn param(&self, key: &str) -> Option<&Bare> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Parameter `key` as a non-negative integer.
    pub(crate) fn uint(&self, key: &str) -> Option<u64> {
        match self.param(key)? {
            Bare::Integer(n) => u64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// The item's name: its value when it is a String or a Token.
    pub(crate) fn name(&self) -> Option<&str> {
        match &self.value {
            Bare::String(s) | Bare::Token(s) => Some(s),
            _ => None,
        }
    }
}

/// The most members read from one field: a server sends a handful of policies, and a field
/// that names thousands is not worth the allocation.
pub(super) const MAX_MEMBERS: usize = 64;

/// The most parameters kept on one member, for the same reason.
pub(super) const MAX_PARAMS: usize = 32;

/// Parses `input` as a List; `None` on any syntax error or past the bounds above.
pub(crate) fn parse_list(input: &[u8]) -> Option<Vec<Item>> {
    let members = sf::list(std::str::from_utf8(input).ok()?, MAX_MEMBERS, MAX_PARAMS)?;
    members
        .into_iter()
        .map(|member| {
            let (value, params) = match member {
                sf::Value::Item(bare, params) => (kept(bare), params),
                sf::Value::InnerList(_, params) => (Bare::Other, params),
            };
            if params.len() > MAX_PARAMS {
                return None;
            }
            let params = params.into_iter().map(|(k, v)| (k, kept(v))).collect();
            Some(Item { value, params })
        })
        .collect()
}

/// The part of a bare item the quota fields use.
fn kept(bare: sf::Bare) -> Bare {
    match bare {
        sf::Bare::Integer(n) => Bare::Integer(n),
        sf::Bare::String(s) => Bare::String(s),
        sf::Bare::Token(t) => Bare::Token(t),
        _ => Bare::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(n: i64) -> Bare {
        Bare::Integer(n)
    }

    #[test]
    fn the_draft_examples() {
        let items = parse_list(br#""default";q=100;w=60"#).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].name(), Some("default"));
        assert_eq!(items[0].param("q"), Some(&int(100)));
        assert_eq!(items[0].uint("w"), Some(60));
        let items = parse_list(br#""default";r=50;t=30, "daily";r=1000;t=3600"#).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].name(), Some("daily"));
        assert_eq!(items[1].uint("t"), Some(3600));
        let items = parse_list(br#""peak";q=10;qu="requests";pk=:cHsdsRa894==:;w=1"#).unwrap();
        assert_eq!(items[0].uint("w"), Some(1));
        assert_eq!(items[0].param("qu"), Some(&Bare::String("requests".into())));
    }

    #[test]
    fn other_shapes_are_read_or_refused_whole() {
        assert_eq!(parse_list(b"").unwrap(), vec![]);
        assert_eq!(parse_list(b"   ").unwrap(), vec![]);
        let items = parse_list(b"tok;a;b=?1, (1 2);x=1, 4.5, @17, ?0").unwrap();
        assert_eq!(items.len(), 5);
        assert_eq!(items[0].name(), Some("tok"));
        assert_eq!(items[1].uint("x"), Some(1));
        assert_eq!(items[0].param("a"), Some(&Bare::Other));
        for bad in [
            &b"a,"[..],
            b",a",
            b"\"open",
            b"a;Q=1",
            b"1234567890123456",
            b"1.2345",
            b"a;b=\"\\x\"",
            b"a b",
            b"(1 2",
            b"-",
            b"?2",
        ] {
            assert_eq!(parse_list(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn negative_values_are_not_unsigned() {
        let items = parse_list(b"a;r=-3").unwrap();
        assert_eq!(items[0].param("r"), Some(&int(-3)));
        assert_eq!(items[0].uint("r"), None);
    }

    #[test]
    fn bounds_refuse_huge_fields() {
        let many = vec!["a"; MAX_MEMBERS + 1].join(",");
        assert_eq!(parse_list(many.as_bytes()), None);
        let params = format!("a{}", ";k=1".repeat(MAX_PARAMS + 1));
        assert_eq!(parse_list(params.as_bytes()), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn bare() -> impl Strategy<Value = Bare> {
            prop_oneof![
                (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(Bare::Integer),
                "[ -!#-\\[\\]-~]{0,12}".prop_map(Bare::String),
                "[a-zA-Z*][a-zA-Z0-9!#$%&'*+.^_`|~:/-]{0,8}".prop_map(Bare::Token),
            ]
        }

        fn write_bare(b: &Bare) -> String {
            match b {
                Bare::Integer(n) => n.to_string(),
                Bare::String(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
                Bare::Token(t) => t.clone(),
                Bare::Other => unreachable!("not generated"),
            }
        }

        fn item() -> impl Strategy<Value = Item> {
            (
                bare(),
                proptest::collection::vec(("[a-z*][a-z0-9_.*-]{0,6}", bare()), 0..4),
            )
                .prop_map(|(value, params)| Item { value, params })
        }

        proptest! {
            /// No bytes a server can send make the parser panic.
            #[test]
            fn any_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
                let _ = parse_list(&bytes);
            }

            /// Text built from the grammar's own pieces is safe too (reaches deeper paths).
            #[test]
            fn grammar_soup_is_safe(s in "[a-z0-9\"=;,()?:@*. \\\\-]{0,60}") {
                let _ = parse_list(s.as_bytes());
            }

            /// A serialized list reads back as it was written.
            #[test]
            fn lists_round_trip(items in proptest::collection::vec(item(), 0..5), ows in "[ \t]{0,2}") {
                let text = items
                    .iter()
                    .map(|i| {
                        let mut s = write_bare(&i.value);
                        for (k, v) in &i.params {
                            s.push_str(&format!(";{k}={}", write_bare(v)));
                        }
                        s
                    })
                    .collect::<Vec<_>>()
                    .join(&format!("{ows},{ows}"));
                prop_assert_eq!(parse_list(text.as_bytes()), Some(items));
            }
        }
    }
}
