//! [`SigV4`]: AWS Signature Version 4 through the official `aws-sigv4` crate.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SessionTokenMode, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderName, HeaderValue};

use super::util::signing_error;
use super::{Clock, Signer, SystemClock};
use crate::{Error, ErrorKind, Request};

const X_AMZ_DATE: HeaderName = HeaderName::from_static("x-amz-date");
const X_AMZ_SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
const X_AMZ_CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");

/// Signs requests with AWS Signature Version 4 (feature `aws-sigv4`), in the headers
/// (`Authorization`, `X-Amz-Date`, and `X-Amz-Security-Token` for temporary credentials).
///
/// The signature itself is computed by AWS's own `aws-sigv4` crate, with its defaults for
/// services other than S3: the path is normalized and double-encoded, the body is hashed into
/// the canonical request. [`sign_payload_header`](Self::sign_payload_header) adds
/// `X-Amz-Content-SHA256`, which S3 requires. Time comes from an injectable
/// [`clock`](Self::clock).
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
        SigV4 {
            identity: credentials.clone().into(),
            credentials,
            region: region.into(),
            service: service.into(),
            settings: SigningSettings::default(),
            clock: Arc::new(SystemClock),
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

    /// The clock for `X-Amz-Date`; default [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The headers to add, computed by `aws-sigv4`, without touching `req`.
    fn instructions(&self, req: &Request) -> Result<Vec<(HeaderName, HeaderValue)>, Error> {
        // aws-sigv4 panics on a URL without a host; refuse it here instead.
        if req.uri().host().is_none() {
            return Err(signing_error("SigV4 needs an absolute URL"));
        }
        let body = req
            .body()
            .as_bytes()
            .ok_or_else(|| signing_error("SigV4 needs a buffered body"))?;
        let headers = req
            .headers()
            .iter()
            .map(|(name, value)| Ok((name.as_str(), value.to_str()?)))
            .collect::<Result<Vec<_>, http::header::ToStrError>>()
            .map_err(|_| signing_error("SigV4 cannot sign a header value that is not ASCII"))?;
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            uri,
            headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| Error::new(ErrorKind::Signing, e))?;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(&self.service)
            .time(self.clock.now())
            .settings(self.settings.clone())
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

#[async_trait]
impl Signer for SigV4 {
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        // Headers of an earlier signature would otherwise be signed as ordinary headers.
        let headers = req.headers_mut();
        headers.remove(http::header::AUTHORIZATION);
        headers.remove(X_AMZ_DATE);
        headers.remove(X_AMZ_SECURITY_TOKEN);
        if self.settings.payload_checksum_kind == PayloadChecksumKind::XAmzSha256 {
            headers.remove(X_AMZ_CONTENT_SHA256);
        }
        for (name, value) in self.instructions(req)? {
            req.headers_mut().insert(name, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;
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
        let mut twice = crate::testing::copy_request(&once);
        signer.sign(&mut twice).await.unwrap();
        assert_eq!(once.headers(), twice.headers());
        for name in ["authorization", "x-amz-security-token"] {
            assert!(twice.headers()[name].is_sensitive(), "{name}");
            assert_eq!(twice.headers().get_all(name).iter().count(), 1);
        }
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
