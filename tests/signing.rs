//! Signing: published vectors (RFC 9421 Appendix B, RFC 9530, RFC 7617, the AWS SigV4 test
//! suite), secrecy of every signer, and signatures checked by a real loopback server.
//!
//! The vectors are copied in `/work/shared/vectors/signing.md` and `tests/data/`; each test
//! names the section it reproduces.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{AUTHORIZATION, CONTENT_TYPE, DATE, WWW_AUTHENTICATE};
use http_doer::signing::{
    ApiKey, Basic, Bearer, Component, ContentDigest, DigestAlgorithm, HttpSignature, Resent,
    Signer, Token,
};
use http_doer::testing::ScriptedDoer;
use http_doer::{Body, Doer, DoerExt, ErrorKind, Request, Signing};

/// RFC 9421, Appendix B.1.5: `test-shared-secret`, base64 of the 64-byte HMAC key.
const TEST_SHARED_SECRET: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

/// RFC 9421, Appendix B.2: `created` of every example signature.
const B2_CREATED: u64 = 1_618_884_473;

/// RFC 9421, Appendix B.2: the test request.
fn rfc9421_b2_request() -> Request {
    http::Request::post("https://example.com/foo?param=Value&Pet=dog")
        .header("host", "example.com")
        .header(DATE, "Tue, 20 Apr 2021 02:07:55 GMT")
        .header(CONTENT_TYPE, "application/json")
        .header(
            "content-digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        )
        .header("content-length", "18")
        .body(Body::from(r#"{"hello": "world"}"#))
        .unwrap()
}

fn at(secs: u64) -> impl Fn() -> SystemTime + Send + Sync + 'static {
    move || UNIX_EPOCH + Duration::from_secs(secs)
}

fn header<'a>(req: &'a Request, name: &str) -> &'a str {
    req.headers()[name].to_str().unwrap()
}

#[tokio::test]
async fn rfc9421_b25_hmac_sha256() {
    let key = STANDARD.decode(TEST_SHARED_SECRET).unwrap();
    assert_eq!(key.len(), 64);
    let signer = HttpSignature::hmac_sha256(&key)
        .label("sig-b25")
        .key_id("test-shared-secret")
        .components([
            Component::Header(DATE),
            Component::Authority,
            Component::Header(CONTENT_TYPE),
        ])
        .clock(at(B2_CREATED));
    let mut req = rfc9421_b2_request();

    let expected_base = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
\"@authority\": example.com\n\
\"content-type\": application/json\n\
\"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\"";
    assert_eq!(signer.signature_base(&req).unwrap(), expected_base);

    signer.sign(&mut req).await.unwrap();
    assert_eq!(
        header(&req, "signature-input"),
        r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#
    );
    assert_eq!(
        header(&req, "signature"),
        "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"
    );
    assert!(req.headers()["signature"].is_sensitive());
}

#[cfg(feature = "ed25519")]
mod ed25519_vectors {
    use super::*;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    /// RFC 9421, Appendix B.1.4: `test-key-ed25519`, PKCS#8 private and SPKI public key.
    const PRIVATE_PEM_BODY: &str =
        "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF";
    const PUBLIC_PEM_BODY: &str = "MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=";
    const SEED_HEX: &str = "9f8362f87a484a954e6e740c5b4c0e84229139a20aa8ab56ff66586f6a7d29c5";

    /// The last 32 bytes of an Ed25519 PKCS#8 or SPKI document are the key.
    fn last_32(pem_body: &str) -> [u8; 32] {
        let der = STANDARD.decode(pem_body).unwrap();
        der[der.len() - 32..].try_into().unwrap()
    }

    #[tokio::test]
    async fn rfc9421_b26_ed25519() {
        let seed = last_32(PRIVATE_PEM_BODY);
        let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, SEED_HEX);

        let signer = HttpSignature::ed25519(seed)
            .label("sig-b26")
            .key_id("test-key-ed25519")
            .components(
                [
                    "date",
                    "@method",
                    "@path",
                    "@authority",
                    "content-type",
                    "content-length",
                ]
                .map(|c| c.parse::<Component>().unwrap()),
            )
            .clock(at(B2_CREATED));
        let mut req = rfc9421_b2_request();

        let expected_base = "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
\"@method\": POST\n\
\"@path\": /foo\n\
\"@authority\": example.com\n\
\"content-type\": application/json\n\
\"content-length\": 18\n\
\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\"";
        assert_eq!(signer.signature_base(&req).unwrap(), expected_base);

        signer.sign(&mut req).await.unwrap();
        assert_eq!(
            header(&req, "signature-input"),
            r#"sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#
        );
        let expected = "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:";
        assert_eq!(header(&req, "signature"), expected);

        // And the RFC's public key verifies it.
        let public = VerifyingKey::from_bytes(&last_32(PUBLIC_PEM_BODY)).unwrap();
        let sig = STANDARD
            .decode(
                expected
                    .trim_start_matches("sig-b26=:")
                    .trim_end_matches(':'),
            )
            .unwrap();
        let sig = Signature::from_slice(&sig).unwrap();
        assert!(public.verify(expected_base.as_bytes(), &sig).is_ok());
    }

    #[test]
    fn debug_hides_the_private_key() {
        let seed = last_32(PRIVATE_PEM_BODY);
        let s = format!("{:?}", HttpSignature::ed25519(seed));
        assert!(s.contains("ed25519") && s.contains("REDACTED"), "{s}");
        let seed_bytes = format!("{seed:?}");
        assert!(!s.contains(&seed_bytes[1..20]), "{s}");
    }
}

#[tokio::test]
async fn rfc9530_content_digest_vectors() {
    // RFC 9421 section 7.2.8 / RFC 9530: `{"hello": "world"}`, 18 bytes.
    let body = r#"{"hello": "world"}"#;
    let cases = [
        (
            body,
            ContentDigest::sha256(),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        ),
        (
            body,
            ContentDigest::sha512(),
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        ),
        // The same body followed by LF, 19 bytes.
        (
            "{\"hello\": \"world\"}\n",
            ContentDigest::sha256(),
            "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:",
        ),
    ];
    for (body, digest, expected) in cases {
        let mut req = http::Request::post("https://example.com/")
            .body(Body::from(body))
            .unwrap();
        digest.sign(&mut req).await.unwrap();
        assert_eq!(header(&req, "content-digest"), expected);
    }
    // RFC 9421 Appendix B.2: the test request's Content-Digest is the sha-512 above.
    let b2 = rfc9421_b2_request();
    assert_eq!(
        DigestAlgorithm::Sha512.field_value(b2.body().as_bytes().unwrap()),
        b2.headers()["content-digest"]
    );
}

#[tokio::test]
async fn rfc7617_basic_vectors() {
    // RFC 7617 section 2 and section 2.1 (UTF-8).
    for (user, password, expected) in [
        (
            "Aladdin",
            "open sesame",
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        ),
        ("test", "123\u{a3}", "Basic dGVzdDoxMjPCow=="),
    ] {
        let mut req = http::Request::get("https://example.com/")
            .body(Body::empty())
            .unwrap();
        Basic::new(user, password)
            .unwrap()
            .sign(&mut req)
            .await
            .unwrap();
        assert_eq!(header(&req, "authorization"), expected);
        assert!(req.headers()[AUTHORIZATION].is_sensitive());
    }
    // RFC 7617 section 2: a user-id containing a colon is invalid.
    let err = Basic::new("Alad:din", "open sesame").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Signing);
    assert!(!err.to_string().contains("sesame"), "{err}");
}

#[tokio::test]
async fn every_execute_signs_anew() {
    // A clock that moves one second per reading: a cached signature would repeat `created`.
    let tick = Arc::new(AtomicU64::new(B2_CREATED));
    let clock = {
        let tick = Arc::clone(&tick);
        move || UNIX_EPOCH + Duration::from_secs(tick.fetch_add(1, Ordering::SeqCst))
    };
    let server = ScriptedDoer::new().then_status(503).then_status(200);
    let doer = server
        .clone()
        .signing(HttpSignature::hmac_sha256(b"k").clock(clock));
    let req = http::Request::get("https://api.test/")
        .body(Body::empty())
        .unwrap();
    // What an outer retry does: send a copy of the same request again.
    doer.execute(http_doer::testing::copy_request(&req))
        .await
        .unwrap();
    doer.execute(req).await.unwrap();
    let sent = server.requests();
    let created: Vec<_> = sent.iter().map(|r| header(r, "signature-input")).collect();
    assert_eq!(
        created,
        [
            r#"sig1=("@method" "@target-uri");created=1618884473"#,
            r#"sig1=("@method" "@target-uri");created=1618884474"#,
        ]
    );
    assert_ne!(header(&sent[0], "signature"), header(&sent[1], "signature"));
}

#[tokio::test]
async fn no_signer_debug_prints_a_secret() {
    let secret = "S3CR3T-value-42";
    let debugs = [
        format!("{:?}", Bearer::new(secret).unwrap()),
        format!(
            "{:?}",
            Bearer::from_source(|| async { Ok(Token::new("S3CR3T-value-42")) })
        ),
        format!("{:?}", Token::new(secret)),
        format!("{:?}", Basic::new(secret, secret).unwrap()),
        format!("{:?}", ApiKey::header("x-api-key", secret).unwrap()),
        format!("{:?}", ApiKey::query("api_key", secret).unwrap()),
        format!("{:?}", HttpSignature::hmac_sha256(secret).key_id("kid")),
        format!(
            "{:?}",
            Signing::new(ScriptedDoer::new(), Bearer::new(secret).unwrap()).signer()
        ),
        #[cfg(feature = "aws-sigv4")]
        format!(
            "{:?}",
            http_doer::signing::SigV4::new("AKID", secret, "us-east-1", "s3").session_token(secret)
        ),
    ];
    for d in debugs {
        assert!(!d.contains(secret), "{d}");
    }
}

#[tokio::test]
async fn secret_headers_are_sensitive() {
    let mut req = http::Request::get("https://api.test/")
        .body(Body::empty())
        .unwrap();
    Bearer::new("t").unwrap().sign(&mut req).await.unwrap();
    assert!(req.headers()[AUTHORIZATION].is_sensitive());
    ApiKey::header("x-api-key", "k")
        .unwrap()
        .sign(&mut req)
        .await
        .unwrap();
    assert!(req.headers()["x-api-key"].is_sensitive());
    HttpSignature::hmac_sha256(b"k")
        .sign(&mut req)
        .await
        .unwrap();
    assert!(req.headers()["signature"].is_sensitive());
    // http's Debug of a sensitive value hides it.
    assert!(!format!("{:?}", req.headers()).contains("Bearer t"));
}

#[cfg(feature = "aws-sigv4")]
mod sigv4 {
    use super::*;
    use http_doer::signing::SigV4;
    use std::path::Path;

    /// Reads `request.txt` of a test-suite case: request line, `Name:value` headers, blank
    /// line, body. The Host header becomes the URL's authority, as a client would send it.
    fn parse_request(text: &str) -> Request {
        let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
        let mut lines = head.lines();
        let mut line = lines.next().unwrap().split(' ');
        let (method, target) = (line.next().unwrap(), line.next().unwrap());
        let mut builder = http::Request::builder().method(method);
        let mut host = None;
        for l in lines {
            let (name, value) = l.split_once(':').unwrap();
            if name.eq_ignore_ascii_case("host") {
                host = Some(value.to_owned());
            } else {
                builder = builder.header(name, value);
            }
        }
        builder
            .uri(format!("https://{}{target}", host.unwrap()))
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    /// The headers of `header-signed-request.txt`, names lower-cased.
    fn signed_headers(text: &str) -> Vec<(String, String)> {
        text.lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.to_ascii_lowercase(), v.to_owned())
            })
            .filter(|(n, _)| n != "host")
            .collect()
    }

    #[tokio::test]
    async fn sigv4_test_suite() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/aws-sigv4");
        let cases = [
            "get-vanilla",
            "get-vanilla-with-session-token",
            "get-vanilla-query-order-key-case",
            "post-x-www-form-urlencoded",
            "post-sts-header-after",
        ];
        for case in cases {
            let read = |f: &str| std::fs::read_to_string(dir.join(case).join(f)).unwrap();
            let ctx: serde_json::Value = serde_json::from_str(&read("context.json")).unwrap();
            // Every case signs at this instant.
            assert_eq!(ctx["timestamp"], "2015-08-30T12:36:00Z", "{case}");
            assert_eq!(ctx["normalize"], true, "{case}");
            let creds = &ctx["credentials"];
            let mut signer = SigV4::new(
                creds["access_key_id"].as_str().unwrap(),
                creds["secret_access_key"].as_str().unwrap(),
                ctx["region"].as_str().unwrap(),
                ctx["service"].as_str().unwrap(),
            )
            .clock(at(1_440_938_160))
            .sign_payload_header(ctx["sign_body"] == true)
            .sign_session_token(ctx["omit_session_token"] != true);
            if let Some(token) = creds["token"].as_str() {
                signer = signer.session_token(token);
            }

            let mut req = parse_request(&read("request.txt"));
            let before = req.headers().clone();
            signer.sign(&mut req).await.unwrap();

            let expected = signed_headers(&read("header-signed-request.txt"));
            for (name, value) in &expected {
                assert_eq!(
                    req.headers()
                        .get(name.as_str())
                        .map(|v| v.to_str().unwrap()),
                    Some(value.as_str()),
                    "{case}: {name}"
                );
            }
            let added = req.headers().len() - before.len();
            let expected_added = expected.len() - before.len();
            assert_eq!(added, expected_added, "{case}: {:?}", req.headers());
        }
    }

    /// Captures everything a subscriber at TRACE sees while `f` runs.
    fn capture_trace(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn sigv4_keeps_aws_traces_with_the_session_token_from_subscribers() {
        let token = "SESSION-TOKEN-abc123";
        let signer = SigV4::new("AKID", "SECRET-xyz", "us-east-1", "service")
            .session_token(token)
            .clock(at(1_440_938_160));

        // The risk is real: aws-sigv4 itself traces the canonical request, token included.
        let direct = capture_trace(|| {
            use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
            let creds = aws_credential_types::Credentials::new(
                "AKID",
                "SECRET-xyz",
                Some(token.to_owned()),
                None,
                "test",
            );
            let identity = creds.into();
            let params = aws_sigv4::sign::v4::SigningParams::builder()
                .identity(&identity)
                .region("us-east-1")
                .name("service")
                .time(at(1_440_938_160)())
                .settings(SigningSettings::default())
                .build()
                .unwrap()
                .into();
            let req = SignableRequest::new(
                "GET",
                "https://h.test/",
                std::iter::empty(),
                SignableBody::Bytes(b""),
            )
            .unwrap();
            sign(req, &params).unwrap();
        });
        assert!(
            direct.contains(token),
            "aws-sigv4 no longer traces it: {direct}"
        );

        // Through http-doer, nothing of it reaches the subscriber.
        let ours = capture_trace(|| {
            let mut req = http::Request::get("https://h.test/")
                .header("x-api-key", "APIKEY-789")
                .body(Body::empty())
                .unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(signer.sign(&mut req)).unwrap();
            assert_eq!(req.headers()["x-amz-security-token"], token);
        });
        for secret in [token, "SECRET-xyz", "APIKEY-789"] {
            assert!(!ours.contains(secret), "{secret} in {ours}");
        }
    }
}

/// A server's own RFC 9421 verification of an hmac-sha256 signature labelled `sig1`, from the
/// request as it arrived: independent of the signer's code.
fn verify_on_server(received: &wiremock::Request, key: &[u8]) -> Result<(), String> {
    use hmac::{Hmac, Mac};
    let get = |name: &str| -> Result<String, String> {
        let values: Vec<_> = received
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().map(|s| s.trim().to_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        if values.is_empty() {
            return Err(format!("no {name} header"));
        }
        Ok(values.join(", "))
    };
    let input = get("signature-input")?;
    let params = input
        .strip_prefix("sig1=")
        .ok_or("no sig1 in Signature-Input")?;
    let list = &params[1..params.find(')').ok_or("no inner list")?];
    let mut base = String::new();
    for name in list.split(' ').map(|c| c.trim_matches('"')) {
        let url = &received.url;
        let value = match name {
            "@method" => received.method.to_string(),
            "@authority" => get("host")?,
            "@path" => url.path().to_owned(),
            "@query" => format!("?{}", url.query().unwrap_or("")),
            "@target-uri" => match url.query() {
                Some(q) => format!("http://{}{}?{q}", get("host")?, url.path()),
                None => format!("http://{}{}", get("host")?, url.path()),
            },
            header => get(header)?,
        };
        base.push_str(&format!("\"{name}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {params}"));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(base.as_bytes());
    let expected = format!("sig1=:{}:", STANDARD.encode(mac.finalize().into_bytes()));
    if get("signature")? != expected {
        return Err(format!("signature mismatch over\n{base}"));
    }
    // The digest covers the bytes that arrived.
    if let Ok(digest) = get("content-digest") {
        let actual = DigestAlgorithm::Sha256.field_value(&received.body);
        if digest != actual.to_str().unwrap() {
            return Err("content-digest mismatch".to_owned());
        }
    }
    Ok(())
}

#[tokio::test]
async fn loopback_server_verifies_the_hmac_signature_it_received() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/orders"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;

    let key = b"loopback shared secret, 32 bytes";
    let doer = http_doer::ReqwestDoer::new().signing(
        HttpSignature::hmac_sha256(key)
            .components(
                ["@method", "@authority", "@path", "@query", "content-type"]
                    .map(|c| c.parse::<Component>().unwrap()),
            )
            .content_digest(DigestAlgorithm::Sha256)
            .key_id("loopback")
            .expires_after(Duration::from_secs(60)),
    );
    let req = http::Request::post(format!("{}/orders?dry_run=true", server.uri()))
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"item": 42}"#))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), doer.execute(req))
        .await
        .expect("loopback answers within 10 s")
        .unwrap();
    assert_eq!(resp.status(), 201);

    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    verify_on_server(&received[0], key).unwrap();
    // A wrong key does not verify: the check above is not vacuous.
    assert!(verify_on_server(&received[0], b"another key").is_err());
    let input = received[0].headers["signature-input"].to_str().unwrap();
    assert!(input.contains(r#""content-digest");created="#), "{input}");
    assert!(input.contains(r#";keyid="loopback""#), "{input}");
}

#[tokio::test]
async fn loopback_invalid_token_is_refreshed_and_resent_once() {
    use wiremock::matchers::{header as has_header, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(has_header("authorization", "Bearer token-2"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).insert_header(
            WWW_AUTHENTICATE.as_str(),
            r#"Bearer realm="api", error="invalid_token""#,
        ))
        .mount(&server)
        .await;

    let fetches = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&fetches);
    let bearer = Bearer::from_source(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(Token::new(format!("token-{n}")).expires_in(Duration::from_secs(3600))) }
    })
    .resend_on_invalid_token(true);
    let doer = http_doer::ReqwestDoer::new().signing(bearer);
    let req = || {
        http::Request::post(format!("{}/pay", server.uri()))
            .body(Body::from("amount=1"))
            .unwrap()
    };

    let resp = tokio::time::timeout(Duration::from_secs(10), doer.execute(req()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.extensions().get::<Resent>().is_some());
    let received = server.received_requests().await.unwrap();
    let tokens: Vec<_> = received
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(tokens, ["Bearer token-1", "Bearer token-2"]);
    assert!(received.iter().all(|r| r.body == b"amount=1"));

    // The new token is cached: the next request goes out once, with it.
    let resp = doer.execute(req()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.extensions().get::<Resent>().is_none());
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn accessors_debug_and_the_old_marker_name() {
    let mut doer = ScriptedDoer::new()
        .then_status(200)
        .signing(Bearer::new("s3cr3t-token").unwrap());
    assert_eq!(doer.get_mut().calls(), 0);
    let debug = format!("{doer:?}");
    assert!(
        debug.starts_with("Signing { inner: ScriptedDoer"),
        "{debug}"
    );
    assert!(!debug.contains("s3cr3t"), "{debug}");

    let mut resp = doer
        .execute(
            http::Request::get("https://api.test/")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    // Old code that names the marker, as a type or as a value, still compiles.
    #[allow(deprecated)]
    {
        use http_doer::signing::Resigned;
        assert!(resp.extensions().get::<Resigned>().is_none());
        resp.extensions_mut().insert(Resigned);
    }
    assert_eq!(resp.extensions().get::<Resent>(), Some(&Resent));
    #[allow(deprecated)]
    let calls = doer.inner().calls();
    assert_eq!(calls, 1);
    assert_eq!(doer.get_ref().calls(), 1);
    assert_eq!(doer.into_inner().calls(), 1);
}
