//! [`SigV4`]: AWS Signature Version 4 through the official `aws-sigv4` crate.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest,
    SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderName, HeaderValue};
use sha2::Sha256;

use super::digest::hash_ahead;
use super::util::{signing_error, wire_uri};
use super::{Clock, Signer, SystemClock};
use crate::{Error, ErrorKind, Request};

const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");

/// Signs requests with AWS Signature Version 4 (feature `aws-sigv4`), in the headers
/// (`Authorization`, `X-Amz-Date`, and `X-Amz-Security-Token` for temporary credentials).
///
/// The signature itself is computed by AWS's own `aws-sigv4` crate. For most services the path
/// is normalized and double-encoded; for S3 (the services `s3`, `s3-object-lambda`,
/// `s3-outposts`, `s3express`) it is encoded once and not normalized, as S3 checks it and as
/// `aws-sdk-s3` signs. The body is hashed into the canonical request;
/// [`sign_payload_header`](Self::sign_payload_header) adds `X-Amz-Content-SHA256`, which S3
/// requires. The URL signed is the one the crate's backends send (their normal form: a quote
/// in the query, or a brace in the path, percent-encoded), not the one written. Time comes
/// from an injectable [`clock`](Self::clock).
///
/// # Bodies
///
/// SigV4 signs a hash of the payload, which the server checks against the body it receives:
///
/// | body | payload hash signed |
/// |---|---|
/// | buffered | the SHA-256 of its bytes |
/// | replayable stream ([`Body::from_file`](crate::Body::from_file), [`Body::replayable`](crate::Body::replayable)) | the SHA-256 of the stream, read once ahead from a copy, chunk by chunk (never gathered in memory); the body is then sent from its start. Its content must not change between the two reads. |
/// | one-shot stream | `UNSIGNED-PAYLOAD`, and `X-Amz-Content-SHA256: UNSIGNED-PAYLOAD` is added and signed (whatever [`sign_payload_header`](Self::sign_payload_header) says) so the server knows |
///
/// `UNSIGNED-PAYLOAD` is accepted by S3 (and services built on its protocol), not by most
/// other AWS services, which reject such a request: send them a buffered or replayable body.
/// [`unsigned_payload_for_streams`](Self::unsigned_payload_for_streams) signs replayable
/// streams as `UNSIGNED-PAYLOAD` too, so that a large file sent to S3 is read only once.
/// The streaming signature (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: `aws-chunked` encoding, one
/// signature per chunk) is not implemented: the `aws-sigv4` crate does not offer it, and S3,
/// the service that takes it, takes `UNSIGNED-PAYLOAD` too.
///
/// Re-signing replaces the headers an earlier signature added. The `aws-sigv4` crate logs the
/// canonical request (session token included) at `TRACE`; http-doer silences those events
/// while it signs, so a verbose subscriber never sees a credential. `Authorization` and
/// `X-Amz-Security-Token` are marked sensitive, and `Debug` shows only the access key id.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use http_doer::{Body, signing::{SigV4, Signer}};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // Credentials and timestamp from the AWS SigV4 test suite (get-vanilla).
/// let signer = SigV4::new(
///     "AKIDEXAMPLE",
///     "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
///     "us-east-1",
///     "service",
/// )
/// .clock(|| UNIX_EPOCH + Duration::from_secs(1_440_938_160));
/// let mut req = http::Request::get("https://example.amazonaws.com/").body(Body::empty()).unwrap();
/// signer.sign(&mut req).await?;
/// assert_eq!(req.headers()["x-amz-date"], "20150830T123600Z");
/// assert!(req.headers()["authorization"].to_str().unwrap().ends_with(
///     "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
/// ));
/// # Ok::<(), http_doer::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct SigV4 {
    credentials: Credentials,
    // The same credentials in the form aws-sigv4 signs with, built once.
    identity: Identity,
    region: String,
    service: String,
    settings: SigningSettings,
    clock: Arc<dyn Clock>,
    unsigned_streams: bool,
}

/// What SigV4 signs as the payload.
enum Payload {
    /// The buffered body's bytes, hashed by `aws-sigv4`.
    Buffered,
    /// The hex SHA-256 of a streamed body, read ahead.
    Hash(String),
    /// `UNSIGNED-PAYLOAD`.
    Unsigned,
}

impl SigV4 {
    /// Long-term credentials (an access key id and a secret access key) for `service` in
    /// `region` (for example `"s3"`, `"eu-west-1"`).
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        region: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        let credentials =
            Credentials::new(access_key_id, secret_access_key, None, None, "http-doer");
        let service = service.into();
        let mut settings = SigningSettings::default();
        // S3 canonicalizes the path as it arrives: encoded once, not normalized (as aws-sdk-s3
        // signs); every other service encodes it twice.
        if matches!(
            service.as_str(),
            "s3" | "s3-object-lambda" | "s3-outposts" | "s3express"
        ) {
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        SigV4 {
            identity: credentials.clone().into(),
            credentials,
            region: region.into(),
            service,
            settings,
            clock: Arc::new(SystemClock),
            unsigned_streams: false,
        }
    }

    /// Temporary credentials: also sends and signs `X-Amz-Security-Token: <token>`.
    pub fn session_token(mut self, token: impl Into<String>) -> Self {
        self.credentials = Credentials::new(
            self.credentials.access_key_id(),
            self.credentials.secret_access_key(),
            Some(token.into()),
            None,
            "http-doer",
        );
        self.identity = self.credentials.clone().into();
        self
    }

    /// Whether the session token is part of the signature (default `true`). Some services want
    /// it added after signing instead (the test suite's `post-sts-header-after` case).
    pub fn sign_session_token(mut self, on: bool) -> Self {
        self.settings.session_token_mode = if on {
            SessionTokenMode::Include
        } else {
            SessionTokenMode::Exclude
        };
        self
    }

    /// Whether to add and sign `X-Amz-Content-SHA256` with the body's hash; default `false`.
    /// S3 requires it.
    pub fn sign_payload_header(mut self, on: bool) -> Self {
        self.settings.payload_checksum_kind = if on {
            PayloadChecksumKind::XAmzSha256
        } else {
            PayloadChecksumKind::NoHeader
        };
        self
    }

    /// Whether every streamed body, replayable ones too, is signed as `UNSIGNED-PAYLOAD`
    /// (default `false`: a replayable stream is read ahead and its hash signed; see
    /// [Bodies](Self#bodies)). For S3, where it saves reading a large upload twice.
    pub fn unsigned_payload_for_streams(mut self, on: bool) -> Self {
        self.unsigned_streams = on;
        self
    }

    /// What to sign as the payload of `req`, reading a replayable stream ahead to hash it.
    async fn payload(&self, req: &Request) -> Result<Payload, Error> {
        let body = req.body();
        Ok(if body.as_bytes().is_some() {
            Payload::Buffered
        } else if body.is_replayable() && !self.unsigned_streams {
            let hash = hash_ahead::<Sha256>(body, "SigV4 payload hash").await?;
            Payload::Hash(hex(&hash))
        } else {
            Payload::Unsigned
        })
    }

    /// The clock for `X-Amz-Date`; default [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The headers to add, computed by `aws-sigv4`, without touching `req`.
    fn instructions(
        &self,
        req: &Request,
        payload: &Payload,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, Error> {
        let mut settings = self.settings.clone();
        let body = match payload {
            Payload::Buffered => SignableBody::Bytes(req.body().as_bytes().map_or(&[], |b| b)),
            Payload::Hash(hash) => SignableBody::Precomputed(hash.clone()),
            Payload::Unsigned => {
                // The server must be told the payload is unsigned, else it hashes the body.
                settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
                SignableBody::UnsignedPayload
            }
        };
        let headers = req
            .headers()
            .iter()
            .map(|(name, value)| Ok((name.as_str(), value.to_str()?)))
            .collect::<Result<Vec<_>, http::header::ToStrError>>()
            .map_err(|_| signing_error("SigV4 cannot sign a header value that is not ASCII"))?;
        // What the backend will send (its normal form), not what the caller wrote.
        let uri = wire_uri(req.uri()).to_string();
        let signable = SignableRequest::new(req.method().as_str(), uri, headers.into_iter(), body)
            .map_err(|e| Error::new(ErrorKind::Signing, e))?;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(&self.service)
            .time(self.clock.now())
            .settings(settings)
            .build()
            .map_err(|e| Error::new(ErrorKind::Signing, e))?
            .into();
        // aws-sigv4 traces the canonical request, which holds the session token and every
        // signed header; keep those events from any subscriber.
        let output =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                sign(signable, &params)
            })
            .map_err(|e| Error::new(ErrorKind::Signing, e))?;
        let (instructions, _signature) = output.into_parts();
        let (headers, _query) = instructions.into_parts();
        headers
            .into_iter()
            .map(|h| {
                let invalid =
                    || signing_error(format!("SigV4 produced an invalid {} header", h.name()));
                let name = HeaderName::from_bytes(h.name().as_bytes()).map_err(|_| invalid())?;
                let mut value = HeaderValue::from_str(h.value()).map_err(|_| invalid())?;
                value.set_sensitive(
                    h.sensitive()
                        || name == http::header::AUTHORIZATION
                        || name == X_AMZ_SECURITY_TOKEN,
                );
                Ok((name, value))
            })
            .collect()
    }
}

impl fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4")
            .field("access_key_id", &self.credentials.access_key_id())
            .field("secret_access_key", &crate::redact::REDACTED)
            .field("region", &self.region)
            .field("service", &self.service)
            .finish()
    }
}

/// Lowercase hex, as SigV4 writes a payload hash.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
}

#[async_trait]
impl Signer for SigV4 {
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        // aws-sigv4 panics on a URL without a host; refuse it here, before reading any body.
        if req.uri().host().is_none() {
            return Err(signing_error("SigV4 needs an absolute URL"));
        }
        let payload = self.payload(req).await?;
        // Headers of an earlier signature would otherwise be signed as ordinary headers.
        let headers = req.headers_mut();
        headers.remove(http::header::AUTHORIZATION);
        headers.remove(X_AMZ_DATE);
        headers.remove(X_AMZ_SECURITY_TOKEN);
        if self.settings.payload_checksum_kind == PayloadChecksumKind::XAmzSha256
            || matches!(payload, Payload::Unsigned)
        {
            headers.remove(X_AMZ_CONTENT_SHA256);
        }
        for (name, value) in self.instructions(req, &payload)? {
            req.headers_mut().insert(name, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;
    use sha2::Digest as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, UNIX_EPOCH};

    fn signer() -> SigV4 {
        SigV4::new("AKIDEXAMPLE", "secret-key-value", "us-east-1", "service")
            .clock(|| UNIX_EPOCH + Duration::from_secs(1_440_938_160))
    }

    #[tokio::test]
    async fn relative_urls_are_refused_not_panicked_on() {
        let mut req = http::Request::get("/x").body(Body::empty()).unwrap();
        assert!(signer().sign(&mut req).await.unwrap_err().is_signing());
    }

    #[tokio::test]
    async fn non_ascii_headers_are_refused() {
        let mut req = http::Request::get("https://h.test/")
            .header("x-name", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap())
            .body(Body::empty())
            .unwrap();
        assert!(signer().sign(&mut req).await.unwrap_err().is_signing());
    }

    #[tokio::test]
    async fn an_invalid_session_token_is_an_error_not_a_panic() {
        let signer = signer().session_token("bad\ntoken");
        let mut req = http::Request::get("https://h.test/")
            .body(Body::empty())
            .unwrap();
        assert!(signer.sign(&mut req).await.unwrap_err().is_signing());
    }

    #[tokio::test]
    async fn re_signing_replaces_the_previous_signature() {
        let signer = signer().session_token("tok").sign_payload_header(true);
        let mut once = http::Request::put("https://h.test/k")
            .body(Body::from("x"))
            .unwrap();
        signer.sign(&mut once).await.unwrap();
        let mut twice = crate::doer::copy_request(&once);
        signer.sign(&mut twice).await.unwrap();
        assert_eq!(once.headers(), twice.headers());
        for name in ["authorization", "x-amz-security-token"] {
            assert!(twice.headers()[name].is_sensitive(), "{name}");
            assert_eq!(twice.headers().get_all(name).iter().count(), 1);
        }
    }

    /// A replayable body of `parts`, counting how often it is opened.
    fn replayable(parts: &'static [&'static [u8]], opens: Arc<AtomicUsize>) -> Body {
        Body::replayable(move || {
            opens.fetch_add(1, Ordering::SeqCst);
            chunks(parts)
        })
    }

    fn chunks(
        parts: &'static [&'static [u8]],
    ) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
        futures_util::stream::iter(parts.iter().map(|p| Ok(bytes::Bytes::from_static(p))))
    }

    fn put(body: Body) -> Request {
        http::Request::put("https://h.test/k").body(body).unwrap()
    }

    #[tokio::test]
    async fn a_replayable_stream_is_signed_with_its_real_hash_as_if_buffered() {
        let opens = Arc::new(AtomicUsize::new(0));
        let with_header = signer().sign_payload_header(true);
        let mut buffered = put(Body::from("hello, world"));
        with_header.sign(&mut buffered).await.unwrap();
        let mut streamed = put(replayable(&[b"hello", b", ", b"world"], opens.clone()));
        with_header.sign(&mut streamed).await.unwrap();
        assert_eq!(buffered.headers(), streamed.headers());
        assert_eq!(
            streamed.headers()["x-amz-content-sha256"],
            hex(&Sha256::digest(b"hello, world"))
        );
        assert_eq!(opens.load(Ordering::SeqCst), 1, "read ahead once");
        assert_eq!(streamed.into_body().bytes().await.unwrap(), "hello, world");
        assert_eq!(opens.load(Ordering::SeqCst), 2);

        // Without the header, the hash is still what is signed.
        let mut buffered = put(Body::from("hello, world"));
        signer().sign(&mut buffered).await.unwrap();
        let mut streamed = put(replayable(&[b"hello, world"], opens.clone()));
        signer().sign(&mut streamed).await.unwrap();
        assert_eq!(buffered.headers(), streamed.headers());
        assert!(streamed.headers().get("x-amz-content-sha256").is_none());
    }

    #[tokio::test]
    async fn a_one_shot_stream_is_signed_as_unsigned_payload_and_left_unread() {
        let one_shot = || {
            let parts: &'static [&'static [u8]] = &[b"hello, world"];
            Body::from_stream(chunks(parts))
        };
        for header_on in [false, true] {
            let sigv4 = signer().sign_payload_header(header_on);
            let mut req = put(one_shot());
            sigv4.sign(&mut req).await.unwrap();
            assert_eq!(req.headers()["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
            let auth = req.headers()["authorization"].to_str().unwrap().to_owned();
            assert!(
                auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date"),
                "{auth}"
            );
            // Re-signing keeps one header, and the same signature.
            sigv4.sign(&mut req).await.unwrap();
            assert_eq!(
                req.headers().get_all("x-amz-content-sha256").iter().count(),
                1
            );
            assert_eq!(req.headers()["authorization"], auth.as_str());
            assert_eq!(req.into_body().bytes().await.unwrap(), "hello, world");
        }
        // The signature differs from the one over the real hash.
        let mut unsigned = put(one_shot());
        signer().sign(&mut unsigned).await.unwrap();
        let mut hashed = put(Body::from("hello, world"));
        signer().sign(&mut hashed).await.unwrap();
        assert_ne!(
            unsigned.headers()["authorization"],
            hashed.headers()["authorization"]
        );
    }

    #[tokio::test]
    async fn unsigned_payload_for_streams_skips_the_read_ahead() {
        let opens = Arc::new(AtomicUsize::new(0));
        let sigv4 = signer().unsigned_payload_for_streams(true);
        let mut req = put(replayable(&[b"big"], opens.clone()));
        sigv4.sign(&mut req).await.unwrap();
        assert_eq!(req.headers()["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
        assert_eq!(opens.load(Ordering::SeqCst), 0);
        // A buffered body is still hashed.
        let mut req = put(Body::from("small"));
        sigv4.sign(&mut req).await.unwrap();
        assert!(req.headers().get("x-amz-content-sha256").is_none());
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn debug_shows_the_key_id_only() {
        let s = format!("{:?}", signer().session_token("session-tok"));
        assert!(s.contains("AKIDEXAMPLE"), "{s}");
        assert!(
            !s.contains("secret-key-value") && !s.contains("session-tok"),
            "{s}"
        );
    }
}
