//! [`ContentDigest`]: RFC 9530 `Content-Digest` of the request body.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use sha2::digest::Output;
use sha2::{Digest, Sha256, Sha512};

use super::Signer;
use super::util::signing_error;
use crate::{Body, Error, ErrorKind, Request};

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
        match self {
            DigestAlgorithm::Sha256 => self.field_of(&Sha256::digest(body)),
            DigestAlgorithm::Sha512 => self.field_of(&Sha512::digest(body)),
        }
    }

    /// The `Content-Digest` field value for a replayable streamed `body`, read ahead once.
    async fn field_value_of_stream(self, body: &Body) -> Result<HeaderValue, Error> {
        const WHAT: &str = "Content-Digest";
        Ok(match self {
            DigestAlgorithm::Sha256 => self.field_of(&hash_ahead::<Sha256>(body, WHAT).await?),
            DigestAlgorithm::Sha512 => self.field_of(&hash_ahead::<Sha512>(body, WHAT).await?),
        })
    }

    fn field_of(self, hash: &[u8]) -> HeaderValue {
        let mut out = String::with_capacity(100);
        out.push_str(self.as_str());
        out.push_str("=:");
        STANDARD.encode_string(hash, &mut out);
        out.push(':');
        HeaderValue::try_from(out).expect("base64 and the algorithm name are visible ASCII")
    }
}

/// The hash of a streamed body, for a signer that must send it before the body (`what`:
/// `Content-Digest`, a SigV4 payload hash).
///
/// A replayable stream is read once ahead, from a copy ([`Body::try_clone`]), chunk by chunk
/// into the hasher: it is never gathered in memory, and the body itself is left untouched to
/// be sent from its start. A one-shot stream cannot be: reading it here would leave nothing
/// to send, so it is an [`ErrorKind::Signing`] error that says so.
pub(crate) async fn hash_ahead<H: Digest>(body: &Body, what: &str) -> Result<Output<H>, Error> {
    let Some(mut copy) = body.try_clone() else {
        return Err(signing_error(format!(
            "cannot compute the {what} of a one-shot body stream: the hash is sent before the \
             body, so the body would have to be read twice; send a replayable body \
             (Body::from_file, Body::replayable) or a buffered one"
        )));
    };
    let mut hasher = H::new();
    loop {
        match copy.chunk().await {
            Ok(Some(chunk)) => hasher.update(&chunk),
            Ok(None) => return Ok(hasher.finalize()),
            Err(e) => {
                return Err(Error::new(ErrorKind::Signing, e)
                    .with_message(format!("cannot read the body ahead to compute its {what}")));
            }
        }
    }
}

/// Sets `Content-Digest` (RFC 9530) to the hash of the request body, replacing any earlier
/// value.
///
/// The header goes before the body, so the whole body is hashed before it is sent:
///
/// | body | the digest |
/// |---|---|
/// | buffered | hashed in memory: exactly the bytes that will be sent |
/// | replayable stream ([`Body::from_file`], [`Body::replayable`]) | read once ahead, from a copy, chunk by chunk (never gathered in memory), then sent from its start; the content must be the same every time it is opened (a file changed in between is sent with a digest the server rejects) |
/// | one-shot stream ([`Body::from_stream`], [`Body::from_reader`], ...) | an [`ErrorKind::Signing`] error, and nothing is sent: it would have to be read twice |
///
/// The read-ahead runs on every signing, so inside `Retrying` a replayable body is read twice
/// per attempt: once for the digest, once to send it.
///
/// To sign the digest with an RFC 9421 signature, use
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

/// Sets the `Content-Digest` of `req` with `algorithm`, reading a replayable stream ahead
/// (see [`ContentDigest`]).
pub(crate) async fn set_content_digest(
    req: &mut Request,
    algorithm: DigestAlgorithm,
) -> Result<(), Error> {
    let value = match req.body().as_bytes() {
        Some(bytes) => algorithm.field_value(bytes),
        None => algorithm.field_value_of_stream(req.body()).await?,
    };
    req.headers_mut().insert(CONTENT_DIGEST, value);
    Ok(())
}

#[async_trait]
impl Signer for ContentDigest {
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        set_content_digest(req, self.algorithm).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    /// A replayable body of `parts`, opened anew for every read, counting its opens.
    fn replayable(parts: &'static [&'static str], opens: Arc<AtomicUsize>) -> Body {
        Body::replayable(move || {
            opens.fetch_add(1, Ordering::SeqCst);
            let mut parts = parts.iter();
            futures_util::stream::iter(std::iter::from_fn(move || {
                parts
                    .next()
                    .map(|p| Ok::<_, std::io::Error>(bytes::Bytes::from_static(p.as_bytes())))
            }))
        })
    }

    #[tokio::test]
    async fn a_replayable_stream_is_read_ahead_and_left_whole_to_send() {
        // RFC 9530 / RFC 9421 section 7.2.8: `{"hello": "world"}`, here in three chunks.
        let opens = Arc::new(AtomicUsize::new(0));
        let parts: &'static [&'static str] = &[r#"{"hello""#, ": ", r#""world"}"#];
        for (signer, expected) in [
            (
                ContentDigest::sha256(),
                "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            ),
            (
                ContentDigest::sha512(),
                "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
            ),
        ] {
            let mut req = http::Request::post("http://h.test/")
                .body(replayable(parts, opens.clone()))
                .unwrap();
            signer.sign(&mut req).await.unwrap();
            assert_eq!(req.headers()["content-digest"], expected);
            // The request still holds the whole body, from its start.
            assert_eq!(
                req.into_body().text().await.unwrap(),
                r#"{"hello": "world"}"#
            );
        }
        assert_eq!(
            opens.load(Ordering::SeqCst),
            4,
            "one read ahead and one send each"
        );
    }

    #[tokio::test]
    async fn a_one_shot_stream_is_refused_with_the_reason_and_left_unread() {
        let part = Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"data"));
        let mut req = http::Request::post("http://h.test/")
            .body(Body::from_stream(futures_util::stream::iter(
                std::iter::once(part),
            )))
            .unwrap();
        let err = ContentDigest::sha256().sign(&mut req).await.unwrap_err();
        assert!(err.is_signing());
        let msg = err.to_string();
        for needed in [
            "one-shot",
            "read twice",
            "Body::from_file",
            "Body::replayable",
        ] {
            assert!(msg.contains(needed), "{needed} in {msg}");
        }
        assert!(req.headers().get("content-digest").is_none());
        assert_eq!(req.into_body().bytes().await.unwrap(), "data");
    }

    #[tokio::test]
    async fn a_stream_that_fails_while_read_ahead_is_a_signing_error_with_its_cause() {
        let failing = Body::replayable(|| {
            futures_util::stream::iter(std::iter::once(Err::<bytes::Bytes, _>(
                std::io::Error::other("disk gone"),
            )))
        });
        let mut req = http::Request::post("http://h.test/").body(failing).unwrap();
        let err = ContentDigest::sha256().sign(&mut req).await.unwrap_err();
        assert!(err.is_signing());
        assert!(err.to_string().contains("read the body ahead"), "{err}");
        let cause = std::error::Error::source(&err).unwrap();
        assert!(
            format!("{cause}").contains("disk gone") || format!("{cause:?}").contains("disk gone")
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
