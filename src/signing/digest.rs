//! [`ContentDigest`]: RFC 9530 `Content-Digest` of the request body.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use sha2::{Digest as _, Sha256, Sha512};

use super::Signer;
use super::util::signing_error;
use crate::{Error, Request};

/// `Content-Digest`, as a [`HeaderName`](http::HeaderName).
pub(crate) const CONTENT_DIGEST: http::HeaderName = http::HeaderName::from_static("content-digest");

/// A hash algorithm of the RFC 9530 registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// `sha-256`.
    Sha256,
    /// `sha-512`.
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm's key in a `Content-Digest` field: `sha-256` or `sha-512`.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha-256",
            DigestAlgorithm::Sha512 => "sha-512",
        }
    }

    /// The `Content-Digest` field value for `body`: `sha-256=:<base64>:`.
    pub fn field_value(self, body: &[u8]) -> HeaderValue {
        let mut out = String::with_capacity(100);
        out.push_str(self.as_str());
        out.push_str("=:");
        match self {
            DigestAlgorithm::Sha256 => STANDARD.encode_string(Sha256::digest(body), &mut out),
            DigestAlgorithm::Sha512 => STANDARD.encode_string(Sha512::digest(body), &mut out),
        }
        out.push(':');
        HeaderValue::try_from(out).expect("base64 and the algorithm name are visible ASCII")
    }
}

/// Sets `Content-Digest` (RFC 9530) to the hash of the request body, replacing any earlier
/// value.
///
/// The body is buffered, so the digest is of exactly the bytes that will be sent. To sign the
/// digest with an RFC 9421 signature, use
/// [`HttpSignature::content_digest`](super::HttpSignature::content_digest), which computes it
/// first and covers it.
///
/// ```
/// use http_doer::{Body, signing::{ContentDigest, Signer}};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut req = http::Request::post("https://api.test/").body(Body::from(r#"{"hello": "world"}"#)).unwrap();
/// ContentDigest::sha256().sign(&mut req).await?;
/// assert_eq!(req.headers()["content-digest"], "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:");
/// # Ok::<(), http_doer::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentDigest {
    algorithm: DigestAlgorithm,
}

impl ContentDigest {
    /// A digest with `algorithm`.
    pub fn new(algorithm: DigestAlgorithm) -> Self {
        ContentDigest { algorithm }
    }

    /// A `sha-256` digest.
    pub fn sha256() -> Self {
        Self::new(DigestAlgorithm::Sha256)
    }

    /// A `sha-512` digest.
    pub fn sha512() -> Self {
        Self::new(DigestAlgorithm::Sha512)
    }
}

/// Sets the `Content-Digest` of `req` with `algorithm`.
pub(crate) fn set_content_digest(
    req: &mut Request,
    algorithm: DigestAlgorithm,
) -> Result<(), Error> {
    let value = match req.body().as_bytes() {
        Some(bytes) => algorithm.field_value(bytes),
        None => return Err(signing_error("cannot digest a body that is not buffered")),
    };
    req.headers_mut().insert(CONTENT_DIGEST, value);
    Ok(())
}

#[async_trait]
impl Signer for ContentDigest {
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        set_content_digest(req, self.algorithm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;

    #[tokio::test]
    async fn replaces_a_stale_digest() {
        let mut req = http::Request::put("http://h.test/")
            .header("content-digest", "sha-256=:stale:")
            .body(Body::from(""))
            .unwrap();
        ContentDigest::sha256().sign(&mut req).await.unwrap();
        let values: Vec<_> = req.headers().get_all("content-digest").iter().collect();
        // SHA-256 of the empty string.
        assert_eq!(
            values,
            ["sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"]
        );
    }

    #[test]
    fn names() {
        assert_eq!(DigestAlgorithm::Sha256.as_str(), "sha-256");
        assert_eq!(DigestAlgorithm::Sha512.as_str(), "sha-512");
        assert_eq!(
            ContentDigest::sha512(),
            ContentDigest::new(DigestAlgorithm::Sha512)
        );
    }
}
