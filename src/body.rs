//! [`Body`]: the bytes of a request or a response.

use std::fmt;

use bytes::Bytes;

use crate::{Error, ErrorKind};

/// The body of a [`Request`](crate::Request) or a [`Response`](crate::Response).
///
/// Bodies are buffered: a `Body` holds its bytes in a [`Bytes`], so cloning one is O(1) and a
/// retry or a hedge resends exactly the same bytes. The type is opaque so that a streaming
/// variant can be added later without breaking callers; that is why reading it is `async`
/// ([`bytes`](Body::bytes), [`text`](Body::text)) while the synchronous accessors
/// ([`as_bytes`](Body::as_bytes), [`len`](Body::len)) return `Option`.
///
/// ```
/// use http_doer::Body;
///
/// let body = Body::from("hello");
/// assert_eq!(body.len(), Some(5));
/// assert_eq!(body.as_bytes().map(|b| &b[..]), Some(&b"hello"[..]));
/// assert!(Body::empty().is_empty());
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Body {
    bytes: Bytes,
}

impl Body {
    /// An empty body.
    pub const fn empty() -> Self {
        Body {
            bytes: Bytes::new(),
        }
    }

    /// The buffered bytes, or `None` for a body that is not buffered (none is, today).
    pub fn as_bytes(&self) -> Option<&Bytes> {
        Some(&self.bytes)
    }

    /// The exact length in bytes, when it is known without reading the body.
    pub fn len(&self) -> Option<u64> {
        Some(self.bytes.len() as u64)
    }

    /// Whether the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Reads the whole body.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        Ok(self.bytes)
    }

    /// Reads the whole body as UTF-8 text; invalid UTF-8 is an [`ErrorKind::Decode`] error.
    pub async fn text(self) -> Result<String, Error> {
        let bytes = self.bytes().await?;
        match std::str::from_utf8(&bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(Error::new(ErrorKind::Decode, e).with_message("body is not valid UTF-8")),
        }
    }

    /// Serializes `value` as a JSON body.
    ///
    /// The body carries no headers: set `Content-Type: application/json` on the request.
    #[cfg(feature = "json")]
    pub fn from_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        serde_json::to_vec(value).map(Body::from).map_err(|e| {
            Error::new(ErrorKind::InvalidRequest, e).with_message("cannot encode JSON body")
        })
    }

    /// Reads the whole body and parses it as JSON into `T`.
    ///
    /// Bad JSON, or JSON of another shape, is an [`ErrorKind::Decode`] error that names the line
    /// and column.
    #[cfg(feature = "json")]
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(ErrorKind::Decode, e).with_message("body is not the expected JSON")
        })
    }
}

// Bodies can hold secrets (tokens in a form, a password in JSON), so Debug shows the size only.
impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Body({} bytes)", self.bytes.len())
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body { bytes }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body {
            bytes: Bytes::from(v),
        }
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body {
            bytes: Bytes::from(s),
        }
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body {
            bytes: Bytes::from_static(s.as_bytes()),
        }
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Self {
        Body {
            bytes: Bytes::from_static(s),
        }
    }
}

impl From<()> for Body {
    fn from(_: ()) -> Self {
        Body::empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conversions_keep_bytes() {
        assert_eq!(
            Body::from(Bytes::from_static(b"a")).bytes().await.unwrap(),
            "a"
        );
        assert_eq!(
            Body::from(vec![0u8, 255]).bytes().await.unwrap(),
            &[0u8, 255][..]
        );
        assert_eq!(Body::from(String::from("s")).text().await.unwrap(), "s");
        assert_eq!(Body::from(&b"\x00\x01"[..]).len(), Some(2));
        assert_eq!(Body::from(()).len(), Some(0));
        assert!(Body::default().is_empty());
    }

    #[test]
    fn clone_shares_the_buffer() {
        let a = Body::from(vec![7u8; 1024]);
        let b = a.clone();
        assert_eq!(
            a.as_bytes().unwrap().as_ptr(),
            b.as_bytes().unwrap().as_ptr()
        );
    }

    #[tokio::test]
    async fn invalid_utf8_is_a_decode_error() {
        let err = Body::from(vec![0xff, 0xfe]).text().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
    }

    #[test]
    fn debug_hides_content() {
        let s = format!("{:?}", Body::from("password=hunter2"));
        assert_eq!(s, "Body(16 bytes)");
    }

    #[cfg(feature = "json")]
    #[tokio::test]
    async fn json_round_trip_and_bad_json() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct T {
            a: u32,
        }
        let body = Body::from_json(&T { a: 1 }).unwrap();
        assert_eq!(body.clone().text().await.unwrap(), r#"{"a":1}"#);
        assert_eq!(body.json::<T>().await.unwrap(), T { a: 1 });
        let err = Body::from("{not json").json::<T>().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
