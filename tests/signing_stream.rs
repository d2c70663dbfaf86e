//! Signing and streamed request bodies: a Content-Digest over a replayable stream is read
//! ahead and equals the buffered one (RFC 9530 vectors), a one-shot stream is refused with the
//! reason, SigV4 signs a replayable stream's real hash and a one-shot one as
//! `UNSIGNED-PAYLOAD`, and a rejected one-shot upload is not resent.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use http::StatusCode;
use http::header::WWW_AUTHENTICATE;
use http_doer::retrying::Backoff;
use http_doer::signing::{Bearer, ContentDigest, DigestAlgorithm, HttpSignature, Resent, Token};
use http_doer::testing::{doer_fn, response};
use http_doer::{Body, Doer, DoerExt, ErrorKind, Request, ReqwestDoer};

/// A temp file holding `content`, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, content: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!(
            "http-doer-signing-stream-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A stream of fixed chunks.
fn chunks(parts: &[&'static str]) -> impl Stream<Item = Result<Bytes, std::io::Error>> + use<> {
    let parts: Vec<_> = parts
        .iter()
        .map(|p| Ok(Bytes::from_static(p.as_bytes())))
        .collect();
    futures_util::stream::iter(parts)
}

/// What a test server received: each `Content-Digest` and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A server that reads each body whole, checks its `Content-Digest` against the bytes it
/// got, and answers with the scripted statuses (then 200), the body's length as the body.
fn digest_checking_server(statuses: Vec<u16>) -> (impl Doer + Clone, Received) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let statuses = Arc::new(Mutex::new(statuses.into_iter()));
    let record = seen.clone();
    let doer = doer_fn(move |req: Request| {
        let record = record.clone();
        let status = statuses.lock().unwrap().next().unwrap_or(200);
        async move {
            let header = req.headers()["content-digest"].to_str().unwrap().to_owned();
            let body = req.into_body().bytes().await?;
            let algorithm = if header.starts_with("sha-512") {
                DigestAlgorithm::Sha512
            } else {
                DigestAlgorithm::Sha256
            };
            assert_eq!(
                algorithm.field_value(&body),
                header.as_str(),
                "digest of what arrived"
            );
            record.lock().unwrap().push((header, body.to_vec()));
            Ok(response(status, body.len().to_string()))
        }
    });
    (doer, seen)
}

#[tokio::test]
async fn a_replayable_stream_is_digested_as_the_same_bytes_buffered_rfc_9530() {
    // RFC 9530 / RFC 9421 section 7.2.8 vectors (see vectors/signing.md).
    let hello = r#"{"hello": "world"}"#;
    let cases = [
        (
            DigestAlgorithm::Sha256,
            hello.to_owned(),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
        ),
        (
            DigestAlgorithm::Sha512,
            hello.to_owned(),
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        ),
        (
            DigestAlgorithm::Sha256,
            format!("{hello}\n"),
            "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:",
        ),
    ];
    for (i, (algorithm, content, expected)) in cases.into_iter().enumerate() {
        let file = TempFile::new(&format!("vector-{i}"), content.as_bytes());
        let leaked: &'static str = Box::leak(content.clone().into_boxed_str());
        let (server, seen) = digest_checking_server(vec![]);
        let doer = server.signing(ContentDigest::new(algorithm));
        let bodies = [
            Body::from(content.clone()),
            Body::from_file(&file.0).unwrap(),
            // Cut in uneven chunks, so the hash runs over several updates.
            Body::replayable(move || chunks(&[&leaked[..3], &leaked[3..11], &leaked[11..]])),
        ];
        for body in bodies {
            let req = http::Request::post("https://example.com/foo")
                .body(body)
                .unwrap();
            let resp = doer.execute(req).await.unwrap();
            assert_eq!(
                resp.into_body().text().await.unwrap(),
                content.len().to_string()
            );
        }
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        for (header, body) in seen.iter() {
            assert_eq!(header, expected);
            assert_eq!(body, content.as_bytes(), "sent whole, from its start");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_retried_upload_from_a_file_is_digested_and_sent_whole_on_every_attempt() {
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let file = TempFile::new("retried", &content);
    let (server, seen) = digest_checking_server(vec![503]);
    let doer = server
        .signing(ContentDigest::sha256())
        .retrying()
        .backoff(Backoff::constant(Duration::ZERO))
        .no_budget();
    let req = http::Request::put("https://h.test/upload")
        .body(Body::from_file(&file.0).unwrap())
        .unwrap();
    let resp = doer.execute(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "a 503, then a 200");
    assert!(seen.iter().all(|(_, body)| *body == content));
    assert_eq!(seen[0].0, seen[1].0);
    assert_eq!(
        seen[0].0,
        DigestAlgorithm::Sha256.field_value(&content),
        "the digest of the file"
    );
}

#[tokio::test]
async fn a_one_shot_stream_with_a_content_digest_is_a_signing_error_and_nothing_is_sent() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let server = doer_fn(move |_req: Request| {
        counter.fetch_add(1, Ordering::SeqCst);
        async { Ok(response(200, "")) }
    });
    let one_shot = || {
        http::Request::post("https://api.test/upload?token=t0k")
            .body(Body::from_stream(chunks(&["a", "b"])))
            .unwrap()
    };
    let digest = server.clone().signing(ContentDigest::sha256());
    let signature = server.signing(
        HttpSignature::hmac_sha256(b"a shared secret of enough length")
            .content_digest(DigestAlgorithm::Sha512),
    );
    for err in [
        digest.execute(one_shot()).await.unwrap_err(),
        signature.execute(one_shot()).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Signing);
        let msg = err.to_string();
        assert!(
            msg.contains("cannot compute the Content-Digest of a one-shot body stream"),
            "{msg}"
        );
        assert!(msg.contains("read twice"), "{msg}");
        assert!(
            msg.contains("Body::from_file") && msg.contains("Body::replayable"),
            "{msg}"
        );
        assert!(msg.contains("buffered"), "{msg}");
        assert!(!msg.contains("t0k"), "{msg}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing is sent");
}

#[tokio::test]
async fn over_loopback_a_file_upload_arrives_with_the_digest_of_its_bytes() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    let content: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let file = TempFile::new("loopback", &content);
    let doer = ReqwestDoer::new().signing(ContentDigest::sha512());
    let req = http::Request::put(format!("{}/obj", server.uri()))
        .body(Body::from_file(&file.0).unwrap())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), doer.execute(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 201);
    let received = server.received_requests().await.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, content);
    assert_eq!(
        received[0].headers["content-digest"],
        DigestAlgorithm::Sha512.field_value(&content)
    );
}

#[tokio::test]
async fn a_rejected_one_shot_upload_is_not_resent_and_a_replayable_one_is() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    // Reads the body whole, then rejects the first token.
    let server = doer_fn(move |req: Request| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let token = req.headers()["authorization"].to_str().unwrap().to_owned();
            let body = req.into_body().bytes().await?;
            assert_eq!(body, "ab", "the body arrives whole");
            let mut resp = response(200, "");
            if token.ends_with("token-1") || token.ends_with("token-3") {
                *resp.status_mut() = StatusCode::UNAUTHORIZED;
                resp.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
            }
            Ok(resp)
        }
    });
    let fetches = Arc::new(AtomicU32::new(0));
    let counter = fetches.clone();
    let bearer = Bearer::from_source(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(Token::new(format!("token-{n}")).expires_in(Duration::from_secs(3600))) }
    })
    .resend_on_invalid_token(true);
    let doer = server.signing(bearer);

    // One-shot: the first send took the body; the 401 comes back as it is.
    let req = http::Request::post("https://api.test/up")
        .body(Body::from_stream(chunks(&["a", "b"])))
        .unwrap();
    let resp = doer.execute(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.extensions().get::<Resent>().is_none());
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The stale token was still dropped: the next request fetches token-2 and succeeds.
    // Then token-3 is rejected, and a replayable body is resent with token-4.
    let req = http::Request::post("https://api.test/up")
        .body(Body::from("ab"))
        .unwrap();
    assert_eq!(doer.execute(req).await.unwrap().status(), 200);
    doer.signer().invalidate();
    let req = http::Request::post("https://api.test/up")
        .body(Body::replayable(|| chunks(&["a", "b"])))
        .unwrap();
    let resp = doer.execute(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.extensions().get::<Resent>().is_some());
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(fetches.load(Ordering::SeqCst), 4);
}

#[cfg(feature = "aws-sigv4")]
#[tokio::test]
async fn sigv4_signs_a_replayable_stream_with_its_hash_and_a_one_shot_as_unsigned_payload() {
    use http_doer::signing::SigV4;
    use sha2::{Digest, Sha256};
    use std::time::UNIX_EPOCH;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let server = doer_fn(move |req: Request| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.bytes().await?;
            record.lock().unwrap().push((parts.headers, body));
            Ok(response(200, ""))
        }
    });
    let signer = SigV4::new("AKIDEXAMPLE", "secret-key-value", "us-east-1", "s3")
        .sign_payload_header(true)
        .clock(|| UNIX_EPOCH + Duration::from_secs(1_440_938_160));
    let doer = server.signing(signer);
    let content = "hello, streamed world";
    let file = TempFile::new("sigv4", content.as_bytes());
    let put = |body: Body| {
        http::Request::put("https://bucket.s3.amazonaws.com/key")
            .body(body)
            .unwrap()
    };
    for body in [
        Body::from(content),
        Body::from_file(&file.0).unwrap(),
        Body::from_stream(chunks(&["hello, ", "streamed world"])),
    ] {
        doer.execute(put(body)).await.unwrap();
    }
    let seen = seen.lock().unwrap();
    let hash: String = Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let payload: Vec<_> = seen
        .iter()
        .map(|(h, _)| h["x-amz-content-sha256"].to_str().unwrap())
        .collect();
    assert_eq!(payload, [hash.as_str(), hash.as_str(), "UNSIGNED-PAYLOAD"]);
    // The file is signed exactly as the same bytes buffered; every body arrives whole.
    assert_eq!(seen[0].0["authorization"], seen[1].0["authorization"]);
    assert_ne!(seen[0].0["authorization"], seen[2].0["authorization"]);
    assert!(seen.iter().all(|(_, body)| body == content));
    for (headers, _) in seen.iter() {
        let auth = headers["authorization"].to_str().unwrap();
        assert!(auth.contains("x-amz-content-sha256"), "{auth}");
    }
}
