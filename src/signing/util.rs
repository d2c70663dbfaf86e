//! Small helpers shared by the signers.

use std::borrow::Cow;

use http::HeaderValue;

use crate::{Error, ErrorKind};

/// An [`ErrorKind::Signing`] error with a message. Messages never quote a secret.
pub(crate) fn signing_error(message: impl Into<Cow<'static, str>>) -> Error {
    Error::from(ErrorKind::Signing).with_message(message)
}

/// The URL as this crate's backends put it on the wire (their normal form: dot segments
/// removed, `"`, `{`, `}`, `\\`, `'` and non-ASCII bytes percent-encoded, an IPv6 literal in its
/// shortest form, no userinfo), so that a signature covers what the server receives. A URL the
/// backends would refuse is returned as it is.
pub(crate) fn wire_uri(uri: &http::Uri) -> Cow<'_, http::Uri> {
    #[cfg(any(feature = "reqwest", feature = "ureq"))]
    if let Ok(crate::backend::uri::Target {
        uri: Some(normal), ..
    }) = crate::backend::uri::normalize(uri)
    {
        return Cow::Owned(normal);
    }
    Cow::Borrowed(uri)
}

/// A header value that HTTP/2 and HTTP/3 encoders must never index, and that `http`'s `Debug`
/// prints as `Sensitive`.
pub(crate) fn sensitive(bytes: &[u8], what: &'static str) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::from_bytes(bytes)
        .map_err(|_| signing_error(format!("{what} is not a valid header value")))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Splits a list field on the commas that are not inside a quoted string (RFC 9110 lists,
/// RFC 8941 dictionaries).
pub(crate) fn split_outside_quotes(s: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut pieces = Vec::new();
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pieces.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(&s[start..]);
    pieces.into_iter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_only() {
        let parts: Vec<_> = split_outside_quotes(r#"a="x,\"y", b, c="""#).collect();
        assert_eq!(parts, [r#"a="x,\"y""#, " b", r#" c="""#]);
        assert_eq!(split_outside_quotes("").collect::<Vec<_>>(), [""]);
    }

    #[test]
    fn sensitive_values_are_marked_and_checked() {
        assert!(sensitive(b"ok", "x").unwrap().is_sensitive());
        let err = sensitive(b"a\nb", "the key").unwrap_err();
        assert!(err.is_signing());
        assert_eq!(
            err.to_string(),
            "signing failed: the key is not a valid header value"
        );
    }
}
