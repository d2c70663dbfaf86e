//! [`HttpSignature`]: RFC 9421 HTTP Message Signatures.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use http::header::HeaderMap;
use http::{HeaderName, HeaderValue, Method};
use sha2::Sha256;

use super::digest::{CONTENT_DIGEST, DigestAlgorithm, set_content_digest};
use super::util::{signing_error, wire_uri};
use super::{Clock, Signer, SystemClock};
use crate::sf;
use crate::{Error, Request};

const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
const SIGNATURE: HeaderName = HeaderName::from_static("signature");

/// The label of an [`HttpSignature`] unless [`HttpSignature::label`] sets another: `sig1`, as
/// in RFC 9421's examples.
pub const DEFAULT_LABEL: &str = "sig1";

/// The largest structured-field integer (RFC 8941, section 3.3.1): 15 digits, a date some 31
/// million years from now.
const SF_INTEGER_MAX: u64 = 999_999_999_999_999;

/// A component of a request that an [`HttpSignature`] covers (RFC 9421 section 2).
///
/// Parse one from its RFC name (`"@method"`, `"content-type"`) or build it directly.
///
/// ```
/// use http_doer::signing::Component;
///
/// assert_eq!("@authority".parse::<Component>().unwrap(), Component::Authority);
/// assert_eq!(
///     "Content-Type".parse::<Component>().unwrap(),
///     Component::Header(http::header::CONTENT_TYPE),
/// );
/// assert!("@status".parse::<Component>().is_err(), "a response component");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Component {
    /// `@method`: the method, `POST`.
    Method,
    /// `@target-uri`: the absolute target URI, `https://example.com/foo?param=Value`.
    TargetUri,
    /// `@authority`: host and non-default port, lower-cased, `example.com`; from the `Host`
    /// header when the request sets one, else from the URL.
    Authority,
    /// `@scheme`: `https`.
    Scheme,
    /// `@request-target`: the request-line target, `/foo?param=Value` (the authority for
    /// `CONNECT`). Proxies may rewrite it; prefer `@path` and `@query`.
    RequestTarget,
    /// `@path`: the absolute path, `/foo` (`/` when empty).
    Path,
    /// `@query`: the query with its `?`, `?param=Value` (`?` alone when there is none).
    Query,
    /// A header field: all its values, trimmed and joined with `, `. Signing fails if the
    /// request does not have it.
    Header(HeaderName),
}

impl Component {
    /// The component's name in the signature base: `@method`, `content-type`.
    pub fn name(&self) -> &str {
        match self {
            Component::Method => "@method",
            Component::TargetUri => "@target-uri",
            Component::Authority => "@authority",
            Component::Scheme => "@scheme",
            Component::RequestTarget => "@request-target",
            Component::Path => "@path",
            Component::Query => "@query",
            Component::Header(name) => name.as_str(),
        }
    }
}

impl From<HeaderName> for Component {
    fn from(name: HeaderName) -> Self {
        Component::Header(name)
    }
}

impl FromStr for Component {
    type Err = Error;

    /// A derived component (`@method`, `@target-uri`, `@authority`, `@scheme`,
    /// `@request-target`, `@path`, `@query`) or a header name, case-insensitive. Component
    /// parameters (`;sf`, `;key`, ...) and response components are not supported.
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "@method" => Component::Method,
            "@target-uri" => Component::TargetUri,
            "@authority" => Component::Authority,
            "@scheme" => Component::Scheme,
            "@request-target" => Component::RequestTarget,
            "@path" => Component::Path,
            "@query" => Component::Query,
            _ if s.starts_with('@') => {
                return Err(signing_error(format!(
                    "unsupported derived component {s:?}"
                )));
            }
            _ => Component::Header(
                HeaderName::from_bytes(s.as_bytes())
                    .map_err(|_| signing_error(format!("{s:?} is not a component name")))?,
            ),
        })
    }
}

/// The signing key and its algorithm.
#[derive(Clone)]
enum Key {
    // The keyed state, computed once, so each signature costs only the message's blocks.
    Hmac(Hmac<Sha256>),
    #[cfg(feature = "ed25519")]
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl Key {
    fn alg(&self) -> &'static str {
        match self {
            Key::Hmac(_) => "hmac-sha256",
            #[cfg(feature = "ed25519")]
            Key::Ed25519(_) => "ed25519",
        }
    }

    fn sign_into(&self, base: &[u8], out: &mut String) {
        match self {
            Key::Hmac(mac) => {
                let tag = mac.clone().chain_update(base).finalize().into_bytes();
                STANDARD.encode_string(tag, out);
            }
            #[cfg(feature = "ed25519")]
            Key::Ed25519(key) => {
                use ed25519_dalek::Signer as _;
                STANDARD.encode_string(key.sign(base).to_bytes(), out);
            }
        }
    }
}

type NonceFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Signs requests with RFC 9421 HTTP Message Signatures: `Signature-Input` and `Signature`.
///
/// Algorithms: `hmac-sha256` ([`hmac_sha256`](Self::hmac_sha256)) and `ed25519`
/// (`ed25519`, feature `ed25519`). The caller picks the covered
/// [`components`](Self::components) (default `@method` and `@target-uri`), the label
/// (default `sig1`), and the parameters: `created` (on by default, from an injectable
/// [`clock`](Self::clock)), `expires`, `keyid`, `alg`, `nonce`, `tag`. With
/// [`content_digest`](Self::content_digest), an RFC 9530 `Content-Digest` of the body is set
/// first and covered.
///
/// Every call signs anew (a new `created`, a new nonce). Signing a request that already
/// carries signatures replaces the member with this signer's label in `Signature-Input` and
/// `Signature` and keeps the others byte for byte, so a proxy's or another signer's signature
/// survives; a field line that is not a valid structured-field dictionary (RFC 8941) is
/// dropped, as no verifier could read it. `Signature` is marked sensitive; `Debug` shows no
/// key.
///
/// The URL components (`@path`, `@query`, `@target-uri`, `@authority`, ...) are taken from
/// the URL the crate's backends send (their normal form: a quote in the query, or a brace in
/// the path, percent-encoded; dot segments removed), not from the one written, so the
/// signature covers what the server receives. Signing fails, rather than sign what a verifier
/// would not see, when a covered path or query holds bytes beyond ASCII (percent-encode
/// them), when a port is not a number from 0 to 65535, or when a `Host` header holds
/// userinfo.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use http_doer::{Body, signing::{Component, HttpSignature, Signer}};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let signer = HttpSignature::hmac_sha256(b"a shared secret of enough length")
///     .label("sig-b25")
///     .key_id("test-shared-secret")
///     .components([
///         Component::Header(http::header::DATE),
///         Component::Authority,
///         Component::Header(http::header::CONTENT_TYPE),
///     ])
///     .clock(|| UNIX_EPOCH + Duration::from_secs(1_618_884_473));
/// let mut req = http::Request::post("https://example.com/foo?param=Value&Pet=dog")
///     .header("date", "Tue, 20 Apr 2021 02:07:55 GMT")
///     .header("content-type", "application/json")
///     .body(Body::from(r#"{"hello": "world"}"#))
///     .unwrap();
/// signer.sign(&mut req).await?;
/// assert_eq!(
///     req.headers()["signature-input"],
///     r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#,
/// );
/// assert!(req.headers()["signature"].to_str().unwrap().starts_with("sig-b25=:"));
/// # Ok::<(), http_doer::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct HttpSignature {
    key: Key,
    key_error: Option<&'static str>,
    label: String,
    components: Vec<Component>,
    key_id: Option<String>,
    include_alg: bool,
    created: bool,
    expires_after: Option<Duration>,
    nonce: Option<NonceFn>,
    tag: Option<String>,
    digest: Option<DigestAlgorithm>,
    clock: Arc<dyn Clock>,
    prepared: Prepared,
}

/// What does not change between signatures, serialized once.
#[derive(Clone, Default)]
struct Prepared {
    // Why this configuration cannot sign, if it cannot.
    invalid: Option<String>,
    // The covered components, with content-digest added when the digest step is on.
    components: Vec<Component>,
    // `"name": ` for each component, in order.
    prefixes: Vec<String>,
    // `("a" "b")`.
    inner_list: String,
    // `;keyid="..";alg=".."`, which follow created and expires.
    after_times: String,
    // `;tag=".."`, which follows the nonce.
    after_nonce: String,
}

impl HttpSignature {
    fn with_key(key: Key) -> Self {
        HttpSignature {
            key,
            key_error: None,
            label: DEFAULT_LABEL.to_owned(),
            components: vec![Component::Method, Component::TargetUri],
            key_id: None,
            include_alg: false,
            created: true,
            expires_after: None,
            nonce: None,
            tag: None,
            digest: None,
            clock: Arc::new(SystemClock),
            prepared: Prepared::default(),
        }
        .prepare()
    }

    /// Signs with `hmac-sha256` and the shared secret `key` (the raw bytes, not base64). An
    /// empty key is refused when signing.
    pub fn hmac_sha256(key: impl AsRef<[u8]>) -> Self {
        let key = key.as_ref();
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts a key of any length");
        let mut s = Self::with_key(Key::Hmac(mac));
        if key.is_empty() {
            s.key_error = Some("the HMAC key is empty");
        }
        s
    }

    /// Signs with `ed25519` (RFC 8032) and the 32-byte private key `seed`.
    #[cfg(feature = "ed25519")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ed25519")))]
    pub fn ed25519(seed: [u8; 32]) -> Self {
        Self::with_key(Key::Ed25519(Box::new(
            ed25519_dalek::SigningKey::from_bytes(&seed),
        )))
    }

    /// The signature's label in `Signature-Input` and `Signature`; default [`DEFAULT_LABEL`]
    /// (`sig1`). It must be
    /// a structured-field key: lower-case letters, digits, `_`, `-`, `.`, `*`, starting with a
    /// letter or `*`.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self.prepare()
    }

    /// The covered components, in order; default `@method`, `@target-uri`. Duplicates are
    /// refused when signing.
    pub fn components(mut self, components: impl IntoIterator<Item = Component>) -> Self {
        self.components = components.into_iter().collect();
        self.prepare()
    }

    /// The `keyid` parameter, which tells the verifier which key to use.
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self.prepare()
    }

    /// Whether to add the `alg` parameter (`hmac-sha256`, `ed25519`); default `false`, as the
    /// verifier usually knows the algorithm from the key.
    pub fn include_alg(mut self, on: bool) -> Self {
        self.include_alg = on;
        self.prepare()
    }

    /// Whether to add the `created` parameter, the signing time in Unix seconds; default
    /// `true`.
    pub fn created(mut self, on: bool) -> Self {
        self.created = on;
        self
    }

    /// Adds the `expires` parameter, `validity` after the signing time (at most the largest
    /// structured-field integer, 999 999 999 999 999, so `Duration::MAX` means "never").
    pub fn expires_after(mut self, validity: Duration) -> Self {
        self.expires_after = Some(validity);
        self
    }

    /// Adds a `nonce` parameter, 128 random bits (base64url) from the thread's
    /// cryptographically secure generator, new for each signature. Not seedable on purpose: a
    /// predictable nonce is no nonce. Tests can fix it with [`nonce_with`](Self::nonce_with).
    pub fn random_nonce(mut self) -> Self {
        self.nonce = Some(Arc::new(|| {
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
        }));
        self
    }

    /// Adds a `nonce` parameter made by `nonce` for each signature (for example one the server
    /// handed out).
    pub fn nonce_with(mut self, nonce: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.nonce = Some(Arc::new(nonce));
        self
    }

    /// Adds the `tag` parameter, which names the application profile of the signature.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self.prepare()
    }

    /// Sets `Content-Digest` (RFC 9530) with `algorithm` before signing, and covers it (it is
    /// added to the components unless they already name it).
    pub fn content_digest(mut self, algorithm: DigestAlgorithm) -> Self {
        self.digest = Some(algorithm);
        self.prepare()
    }

    /// The clock for `created` and `expires`; default [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn prepare(mut self) -> Self {
        let mut p = Prepared::default();
        let mut invalid = |msg: String| {
            p.invalid.get_or_insert(msg);
        };
        if !is_sf_key(&self.label) {
            invalid(format!("{:?} is not a valid signature label", self.label));
        }
        let mut components = self.components.clone();
        if self.digest.is_some() && !components.contains(&Component::Header(CONTENT_DIGEST)) {
            components.push(Component::Header(CONTENT_DIGEST));
        }
        for (i, c) in components.iter().enumerate() {
            if components[..i].contains(c) {
                invalid(format!("component {:?} is covered twice", c.name()));
            }
        }
        let mut after_times = String::new();
        if let Some(key_id) = &self.key_id
            && !push_param(&mut after_times, "keyid", key_id)
        {
            invalid("the keyid is not printable ASCII".to_owned());
        }
        if self.include_alg {
            push_param(&mut after_times, "alg", self.key.alg());
        }
        let mut after_nonce = String::new();
        if let Some(tag) = &self.tag
            && !push_param(&mut after_nonce, "tag", tag)
        {
            invalid("the tag is not printable ASCII".to_owned());
        }
        let names: Vec<String> = components
            .iter()
            .map(|c| format!("\"{}\"", c.name()))
            .collect();
        p.inner_list = format!("({})", names.join(" "));
        p.prefixes = names.into_iter().map(|n| n + ": ").collect();
        p.components = components;
        p.after_times = after_times;
        p.after_nonce = after_nonce;
        self.prepared = p;
        self
    }

    /// The signature base (RFC 9421 section 2.5) that signing `req` now would sign, and the
    /// `@signature-params` value; `req` is not changed, so a covered `Content-Digest` must
    /// already be set. Useful to debug a verifier that disagrees.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Signing`](crate::ErrorKind::Signing) error, as [`sign`](Signer::sign)
    /// would return: an empty key, an invalid label or a duplicated component, a covered
    /// component the request lacks, or a clock before 1970.
    pub fn signature_base(&self, req: &Request) -> Result<String, Error> {
        self.base(req, None).map(|(base, _)| base)
    }

    /// The signature base and the signature parameters, with `nonce` if one was made already.
    fn base(&self, req: &Request, nonce: Option<&str>) -> Result<(String, String), Error> {
        let p = &self.prepared;
        if let Some(why) = self.key_error {
            return Err(signing_error(why));
        }
        if let Some(why) = &p.invalid {
            return Err(signing_error(why.clone()));
        }
        let now = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| signing_error("the clock is before 1970"))?
            .as_secs();
        let mut params = String::with_capacity(p.inner_list.len() + 96);
        params.push_str(&p.inner_list);
        if self.created {
            if now > SF_INTEGER_MAX {
                return Err(signing_error(
                    "the clock is past what a structured-field integer holds",
                ));
            }
            push_int(&mut params, "created", now);
        }
        if let Some(validity) = self.expires_after {
            let expires = now.saturating_add(validity.as_secs()).min(SF_INTEGER_MAX);
            push_int(&mut params, "expires", expires);
        }
        params.push_str(&p.after_times);
        if let Some(nonce) = nonce
            && !push_param(&mut params, "nonce", nonce)
        {
            return Err(signing_error("the nonce is not printable ASCII"));
        }
        params.push_str(&p.after_nonce);

        let mut base = String::with_capacity(256);
        for (component, prefix) in p.components.iter().zip(&p.prefixes) {
            base.push_str(prefix);
            push_value(&mut base, component, req)?;
            base.push('\n');
        }
        base.push_str("\"@signature-params\": ");
        base.push_str(&params);
        Ok((base, params))
    }
}

impl fmt::Debug for HttpSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .prepared
            .components
            .iter()
            .map(Component::name)
            .collect();
        f.debug_struct("HttpSignature")
            .field("alg", &self.key.alg())
            .field("key", &crate::redact::REDACTED)
            .field("label", &self.label)
            .field("key_id", &self.key_id)
            .field("components", &names)
            .field("created", &self.created)
            .field("expires_after", &self.expires_after)
            .field("nonce", &self.nonce.is_some())
            .field("content_digest", &self.digest)
            .finish()
    }
}

#[async_trait]
impl Signer for HttpSignature {
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        if let Some(algorithm) = self.digest {
            set_content_digest(req, algorithm).await?;
        }
        let nonce = self.nonce.as_ref().map(|make| make());
        let (base, params) = self.base(req, nonce.as_deref())?;

        let mut signature = String::with_capacity(self.label.len() + 92);
        signature.push_str(&self.label);
        signature.push_str("=:");
        self.key.sign_into(base.as_bytes(), &mut signature);
        signature.push(':');

        let mut input = String::with_capacity(self.label.len() + 1 + params.len());
        input.push_str(&self.label);
        input.push('=');
        input.push_str(&params);

        let headers = req.headers_mut();
        let input = replace_member(headers, SIGNATURE_INPUT, &self.label, input);
        let signature = replace_member(headers, SIGNATURE, &self.label, signature);
        let mut signature = HeaderValue::try_from(signature)
            .map_err(|_| signing_error("cannot keep the other signatures of this request"))?;
        signature.set_sensitive(true);
        let input = HeaderValue::try_from(input)
            .map_err(|_| signing_error("cannot keep the other signatures of this request"))?;
        headers.insert(SIGNATURE_INPUT, input);
        headers.insert(SIGNATURE, signature);
        Ok(())
    }
}

/// `member` appended to the dictionary members of `name` in `headers` whose key is not
/// `label`, each kept byte for byte.
///
/// A field line that is not a valid dictionary (not ASCII, an unclosed string, a stray comma)
/// is dropped: a verifier cannot read it either, as a structured field that fails to parse
/// fails as a whole (RFC 8941, section 4.2), and keeping it would make this signature
/// unreadable too. (Splitting on commas instead let a string left open in one member swallow
/// the next one, this signer's among them.)
fn replace_member(headers: &HeaderMap, name: HeaderName, label: &str, member: String) -> String {
    let mut kept = String::new();
    for value in headers.get_all(&name) {
        let Some(members) = value.to_str().ok().and_then(sf::dictionary) else {
            tracing::debug!(
                field = name.as_str(),
                "dropping a field line that is not a structured-field dictionary"
            );
            continue;
        };
        for m in members.iter().filter(|m| m.key != label) {
            kept.push_str(m.text);
            kept.push_str(", ");
        }
    }
    if kept.is_empty() {
        return member;
    }
    kept.push_str(&member);
    kept
}

/// Appends the value of `component` in `req`, as RFC 9421 section 2 defines it.
fn push_value(out: &mut String, component: &Component, req: &Request) -> Result<(), Error> {
    // What the backend will send, not what the caller wrote; bytes beyond ASCII are still
    // refused below (the caller is asked to percent-encode them).
    let raw_ascii = req
        .uri()
        .path_and_query()
        .is_none_or(|pq| pq.as_str().is_ascii());
    let wire = if raw_ascii {
        wire_uri(req.uri())
    } else {
        std::borrow::Cow::Borrowed(req.uri())
    };
    let uri: &http::Uri = &wire;
    let start = out.len();
    match component {
        Component::Method => out.push_str(req.method().as_str()),
        Component::Authority => push_authority(out, req, uri)?,
        Component::Scheme => push_scheme(out, uri)?,
        Component::TargetUri => {
            push_scheme(out, uri)?;
            out.push_str("://");
            push_authority(out, req, uri)?;
            push_path(out, uri);
            if let Some(q) = uri.query() {
                out.push('?');
                out.push_str(q);
            }
        }
        Component::RequestTarget if req.method() == Method::CONNECT => {
            push_authority(out, req, uri)?;
        }
        Component::RequestTarget => {
            push_path(out, uri);
            if let Some(q) = uri.query() {
                out.push('?');
                out.push_str(q);
            }
        }
        Component::Path => push_path(out, uri),
        Component::Query => {
            out.push('?');
            out.push_str(uri.query().unwrap_or(""));
        }
        Component::Header(name) => {
            let mut values = req.headers().get_all(name).iter().peekable();
            if values.peek().is_none() {
                return Err(signing_error(format!(
                    "the covered header {:?} is missing",
                    name.as_str()
                )));
            }
            for (i, value) in values.enumerate() {
                let value = value.to_str().map_err(|_| {
                    signing_error(format!(
                        "the covered header {:?} is not ASCII",
                        name.as_str()
                    ))
                })?;
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(value.trim_matches([' ', '\t']));
            }
            return Ok(());
        }
    }
    // A derived value is visible ASCII and spaces (RFC 9421, section 2.5), but `http` lets
    // other bytes into a path or query: a verifier would read them as the percent-encoding
    // a client sends, so the signature could not match.
    if !out.as_bytes()[start..]
        .iter()
        .all(|b| (0x20..=0x7e).contains(b))
    {
        return Err(signing_error(
            "the URL is not ASCII: percent-encode it before signing",
        ));
    }
    Ok(())
}

fn push_scheme(out: &mut String, uri: &http::Uri) -> Result<(), Error> {
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| signing_error("the URL has no scheme"))?;
    out.extend(scheme.chars().map(|c| c.to_ascii_lowercase()));
    Ok(())
}

/// Host, lower-cased, and port unless it is the scheme's default (RFC 9110 section 4.2.3);
/// never the userinfo. A `Host` header set on the request wins over the URL, as it is what an
/// HTTP/1.1 server sees; it may not hold userinfo (RFC 9110 section 7.2). A port that is not
/// a number from 0 to 65535 is an error (`http` would drop it); an empty one (`h:`) is none.
fn push_authority(out: &mut String, req: &Request, uri: &http::Uri) -> Result<(), Error> {
    let from_header = match req.headers().get(http::header::HOST) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|h| !h.contains('@'))
                .and_then(|h| h.parse::<http::uri::Authority>().ok())
                .ok_or_else(|| signing_error("the Host header is not a valid authority"))?,
        ),
        None => None,
    };
    let authority = match &from_header {
        Some(a) => a,
        None => uri
            .authority()
            .ok_or_else(|| signing_error("the URL has no authority"))?,
    };
    let host = authority.host();
    out.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    if let Some(port) = port_of(authority)? {
        let default = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
            Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
            _ => None,
        };
        if default != Some(port) {
            out.push(':');
            out.push_str(&port.to_string());
        }
    }
    Ok(())
}

/// The port of `authority`: `None` when it has none or an empty one, an error when it is not
/// a number that fits a `u16`.
fn port_of(authority: &http::uri::Authority) -> Result<Option<u16>, Error> {
    if let Some(port) = authority.port_u16() {
        return Ok(Some(port));
    }
    let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    match host_port.get(authority.host().len()..) {
        None | Some("" | ":") => Ok(None),
        Some(_) => Err(signing_error("the port is not a number from 0 to 65535")),
    }
}

fn push_path(out: &mut String, uri: &http::Uri) {
    match uri.path() {
        "" => out.push('/'),
        path => out.push_str(path),
    }
}

fn push_int(out: &mut String, name: &str, value: u64) {
    use std::fmt::Write as _;
    let _ = write!(out, ";{name}={value}");
}

/// Appends `;name="value"` as a structured-field string; `false` if `value` cannot be one.
fn push_param(out: &mut String, name: &str, value: &str) -> bool {
    if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return false;
    }
    out.push(';');
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    true
}

/// Whether `s` is a structured-field key (RFC 8941 section 3.1.2).
fn is_sf_key(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'*'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*'))
}

#[cfg(test)]
mod tests {
    use super::sf::{Bare, Member, Params, Value};
    use super::*;
    use crate::Body;
    use proptest::prelude::*;
    use std::time::SystemTime;

    fn at(secs: u64) -> impl Fn() -> SystemTime + Send + Sync + 'static {
        move || UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn req(uri: &str) -> Request {
        http::Request::get(uri).body(Body::empty()).unwrap()
    }

    fn base_of(components: &[&str], r: &Request) -> String {
        let comps = components.iter().map(|c| c.parse().unwrap());
        let signer = HttpSignature::hmac_sha256(b"k")
            .components(comps)
            .created(false);
        let base = signer.signature_base(r).unwrap();
        base.lines().next().unwrap().to_owned()
    }

    #[test]
    fn derived_components() {
        let r = req("https://User:Pw@WWW.Example.com:443/a%20b/c?x=1&y=%2F");
        assert_eq!(base_of(&["@method"], &r), r#""@method": GET"#);
        assert_eq!(
            base_of(&["@authority"], &r),
            r#""@authority": www.example.com"#
        );
        assert_eq!(base_of(&["@scheme"], &r), r#""@scheme": https"#);
        assert_eq!(
            base_of(&["@target-uri"], &r),
            r#""@target-uri": https://www.example.com/a%20b/c?x=1&y=%2F"#
        );
        assert_eq!(
            base_of(&["@request-target"], &r),
            r#""@request-target": /a%20b/c?x=1&y=%2F"#
        );
        assert_eq!(base_of(&["@path"], &r), r#""@path": /a%20b/c"#);
        assert_eq!(base_of(&["@query"], &r), r#""@query": ?x=1&y=%2F"#);

        let plain = req("http://h.test:8080");
        assert_eq!(
            base_of(&["@authority"], &plain),
            r#""@authority": h.test:8080"#
        );
        assert_eq!(base_of(&["@path"], &plain), r#""@path": /"#);
        assert_eq!(base_of(&["@query"], &plain), r#""@query": ?"#);
        assert_eq!(
            base_of(&["@target-uri"], &req("http://h.test:80/")),
            r#""@target-uri": http://h.test/"#
        );
        let connect = http::Request::connect("http://proxy.test:8443")
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            base_of(&["@request-target"], &connect),
            r#""@request-target": proxy.test:8443"#
        );
    }

    #[test]
    fn an_explicit_host_header_is_the_authority() {
        let mut r = req("https://10.0.0.7/x");
        r.headers_mut()
            .insert("host", HeaderValue::from_static("API.Example.com:443"));
        assert_eq!(
            base_of(&["@authority"], &r),
            r#""@authority": api.example.com"#
        );
        assert_eq!(
            base_of(&["@target-uri"], &r),
            r#""@target-uri": https://api.example.com/x"#
        );
        r.headers_mut()
            .insert("host", HeaderValue::from_static("a b"));
        let signer = HttpSignature::hmac_sha256(b"k").components([Component::Authority]);
        assert!(signer.signature_base(&r).unwrap_err().is_signing());
    }

    #[test]
    fn header_values_are_trimmed_and_joined() {
        let r = http::Request::get("http://h.test/")
            .header("x-list", "  a ")
            .header("x-list", "b,c")
            .body(Body::empty())
            .unwrap();
        assert_eq!(base_of(&["x-list"], &r), r#""x-list": a, b,c"#);
    }

    #[test]
    fn missing_or_non_ascii_headers_are_errors() {
        let signer =
            HttpSignature::hmac_sha256(b"k").components([Component::Header(http::header::DATE)]);
        let err = signer.signature_base(&req("http://h.test/")).unwrap_err();
        assert!(
            err.is_signing() && err.to_string().contains("\"date\""),
            "{err}"
        );
        let mut r = req("http://h.test/");
        r.headers_mut()
            .insert("date", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert!(signer.signature_base(&r).unwrap_err().is_signing());
    }

    #[test]
    fn relative_urls_cannot_cover_the_authority() {
        let signer = HttpSignature::hmac_sha256(b"k");
        assert!(
            signer
                .signature_base(&req("/only/path"))
                .unwrap_err()
                .is_signing()
        );
    }

    #[test]
    fn parameters_in_order_with_escaping() {
        let signer = HttpSignature::hmac_sha256(b"k")
            .components([])
            .key_id(r#"my "key"\1"#)
            .include_alg(true)
            .expires_after(Duration::from_secs(300))
            .nonce_with(|| "n-1".to_owned())
            .tag("app")
            .clock(at(1000));
        let (_, params) = signer.base(&req("http://h.test/"), Some("n-1")).unwrap();
        assert_eq!(
            params,
            r#"();created=1000;expires=1300;keyid="my \"key\"\\1";alg="hmac-sha256";nonce="n-1";tag="app""#
        );
    }

    #[test]
    fn bad_configurations_are_refused_when_signing() {
        let r = req("http://h.test/");
        for signer in [
            HttpSignature::hmac_sha256(b""),
            HttpSignature::hmac_sha256(b"k").label("Sig"),
            HttpSignature::hmac_sha256(b"k").label(""),
            HttpSignature::hmac_sha256(b"k").key_id("caf\u{e9}"),
            HttpSignature::hmac_sha256(b"k").tag("a\nb"),
            HttpSignature::hmac_sha256(b"k").components([Component::Path, Component::Path]),
            HttpSignature::hmac_sha256(b"k")
                .components([Component::Header(CONTENT_DIGEST)])
                .content_digest(DigestAlgorithm::Sha256)
                .components([Component::Path, Component::Path]),
        ] {
            assert!(
                signer.signature_base(&r).unwrap_err().is_signing(),
                "{signer:?}"
            );
        }
        // The empty-key refusal survives later builder calls.
        let signer = HttpSignature::hmac_sha256(b"").label("ok");
        assert!(signer.signature_base(&r).is_err());
        assert!(
            HttpSignature::hmac_sha256(b"k")
                .clock(|| UNIX_EPOCH - Duration::from_secs(1))
                .signature_base(&r)
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_bad_nonce_is_refused() {
        let signer = HttpSignature::hmac_sha256(b"k").nonce_with(|| "\u{e9}".to_owned());
        assert!(
            signer
                .sign(&mut req("http://h.test/"))
                .await
                .unwrap_err()
                .is_signing()
        );
    }

    #[tokio::test]
    async fn random_nonces_differ() {
        let signer = HttpSignature::hmac_sha256(b"k").random_nonce();
        let mut inputs = Vec::new();
        for _ in 0..2 {
            let mut r = req("http://h.test/");
            signer.sign(&mut r).await.unwrap();
            inputs.push(r.headers()["signature-input"].to_str().unwrap().to_owned());
        }
        assert_ne!(inputs[0], inputs[1]);
        assert!(inputs[0].contains(";nonce=\""), "{}", inputs[0]);
    }

    #[tokio::test]
    async fn content_digest_is_set_and_covered() {
        let signer = HttpSignature::hmac_sha256(b"k")
            .components([Component::Method])
            .content_digest(DigestAlgorithm::Sha512)
            .created(false);
        let mut r = http::Request::post("http://h.test/")
            .body(Body::from(r#"{"hello": "world"}"#))
            .unwrap();
        signer.sign(&mut r).await.unwrap();
        assert_eq!(
            r.headers()["signature-input"],
            r#"sig1=("@method" "content-digest")"#
        );
        assert!(
            r.headers()["content-digest"]
                .to_str()
                .unwrap()
                .starts_with("sha-512=:WZDPaVn")
        );
    }

    #[tokio::test]
    async fn re_signing_replaces_its_label_and_keeps_others() {
        let signer = HttpSignature::hmac_sha256(b"k").label("mine").clock(at(5));
        let mut r = http::Request::get("http://h.test/")
            .header(
                "signature-input",
                r#"proxy=("@method");created=1;keyid="a,b""#,
            )
            .header("signature-input", r#"mine=("@path");created=2"#)
            .header("signature", "proxy=:cHJveHk=:, mine=:b2xk:")
            .body(Body::empty())
            .unwrap();
        signer.sign(&mut r).await.unwrap();
        signer.sign(&mut r).await.unwrap();
        let inputs: Vec<_> = r.headers().get_all("signature-input").iter().collect();
        assert_eq!(
            inputs,
            [
                r#"proxy=("@method");created=1;keyid="a,b", mine=("@method" "@target-uri");created=5"#
            ]
        );
        let sigs: Vec<_> = r.headers().get_all("signature").iter().collect();
        assert_eq!(sigs.len(), 1);
        let sig = sigs[0].to_str().unwrap();
        assert!(sig.starts_with("proxy=:cHJveHk=:, mine=:"), "{sig}");
        assert!(!sig.contains("b2xk"), "{sig}");
        assert!(sigs[0].is_sensitive());
    }

    #[test]
    fn debug_prints_no_key() {
        let s = format!(
            "{:?}",
            HttpSignature::hmac_sha256(b"hmac-key-bytes").key_id("kid")
        );
        assert!(!s.contains("hmac-key-bytes") && s.contains("kid"), "{s}");
    }

    #[test]
    fn component_names_round_trip() {
        for name in [
            "@method",
            "@target-uri",
            "@authority",
            "@scheme",
            "@request-target",
            "@path",
            "@query",
            "x-custom",
        ] {
            assert_eq!(name.parse::<Component>().unwrap().name(), name);
        }
        assert!("@query-param".parse::<Component>().is_err());
        assert!("bad name".parse::<Component>().is_err());
        assert_eq!(
            Component::from(http::header::DATE),
            Component::Header(http::header::DATE)
        );
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// The members of a dictionary that must parse.
    fn members(s: &str) -> Vec<Member<'_>> {
        match sf::dictionary(s) {
            Some(m) => m,
            None => panic!("not a structured-field dictionary: {s:?}"),
        }
    }

    /// Canonical RFC 8941 serialization, to check the parser against.
    fn ser_bare(b: &Bare, out: &mut String) {
        use std::fmt::Write as _;
        match b {
            Bare::Integer(n) => write!(out, "{n}").unwrap(),
            Bare::Decimal(t) => {
                let sign = if *t < 0 { "-" } else { "" };
                let (int, frac) = (t.unsigned_abs() / 1000, t.unsigned_abs() % 1000);
                let frac = format!("{frac:03}");
                let frac = frac.trim_end_matches('0');
                let frac = if frac.is_empty() { "0" } else { frac };
                write!(out, "{sign}{int}.{frac}").unwrap();
            }
            Bare::String(s) => {
                out.push('"');
                for c in s.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
            Bare::Token(t) => out.push_str(t),
            Bare::Bytes(b) => write!(out, ":{}:", STANDARD.encode(b)).unwrap(),
            Bare::Boolean(b) => out.push_str(if *b { "?1" } else { "?0" }),
            Bare::Date(n) => write!(out, "@{n}").unwrap(),
            Bare::DisplayString(s) => {
                out.push_str("%\"");
                for b in s.bytes() {
                    if b == b'%' || b == b'"' || !(0x20..=0x7e).contains(&b) {
                        write!(out, "%{b:02x}").unwrap();
                    } else {
                        out.push(char::from(b));
                    }
                }
                out.push('"');
            }
        }
    }

    fn ser_params(params: &Params, out: &mut String) {
        for (key, value) in params {
            out.push(';');
            out.push_str(key);
            if *value != Bare::Boolean(true) {
                out.push('=');
                ser_bare(value, out);
            }
        }
    }

    fn ser_member(key: &str, value: &Value) -> String {
        let mut out = key.to_owned();
        match value {
            Value::Item(Bare::Boolean(true), params) => ser_params(params, &mut out),
            Value::Item(bare, params) => {
                out.push('=');
                ser_bare(bare, &mut out);
                ser_params(params, &mut out);
            }
            Value::InnerList(items, params) => {
                out.push_str("=(");
                for (i, (bare, item_params)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    ser_bare(bare, &mut out);
                    ser_params(item_params, &mut out);
                }
                out.push(')');
                ser_params(params, &mut out);
            }
        }
        out
    }

    fn sf_key() -> impl Strategy<Value = String> {
        "[a-z*][a-z0-9_.*-]{0,5}"
    }

    fn bare() -> impl Strategy<Value = Bare> {
        const MAX: i64 = 999_999_999_999_999;
        prop_oneof![
            (-MAX..=MAX).prop_map(Bare::Integer),
            (-MAX..=MAX).prop_map(Bare::Decimal),
            "[ -~]{0,8}".prop_map(Bare::String),
            "[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]{0,6}".prop_map(Bare::Token),
            proptest::collection::vec(any::<u8>(), 0..10).prop_map(Bare::Bytes),
            any::<bool>().prop_map(Bare::Boolean),
            (-MAX..=MAX).prop_map(Bare::Date),
            "\\PC{0,4}".prop_map(Bare::DisplayString),
        ]
    }

    fn params() -> impl Strategy<Value = Params> {
        proptest::collection::vec((sf_key(), bare()), 0..3)
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            (bare(), params()).prop_map(|(b, p)| Value::Item(b, p)),
            (
                proptest::collection::vec((bare(), params()), 0..4),
                params()
            )
                .prop_map(|(items, p)| Value::InnerList(items, p)),
        ]
    }

    /// Dictionary members, some with the signer's label `sig1`, spread over one to three
    /// field lines with every form of whitespace RFC 8941 allows around the commas.
    fn field_lines() -> impl Strategy<Value = (Vec<(String, Value)>, Vec<String>)> {
        let key = prop_oneof![sf_key(), Just("sig1".to_owned()), Just("proxy".to_owned())];
        (
            proptest::collection::vec((key, value()), 1..6),
            proptest::collection::vec(
                prop_oneof![Just(","), Just(", "), Just(" ,\t"), Just("\t,  ")],
                6,
            ),
            proptest::collection::vec(any::<bool>(), 6),
            prop_oneof![Just(""), Just(" "), Just("\t ")],
        )
            .prop_map(|(members, seps, breaks, pad)| {
                let mut lines = vec![String::new()];
                for (i, (key, value)) in members.iter().enumerate() {
                    let line = lines.last_mut().unwrap();
                    if !line.is_empty() {
                        line.push_str(seps[i]);
                    }
                    line.push_str(&ser_member(key, value));
                    if breaks[i] && i + 1 < members.len() {
                        lines.push(String::new());
                    }
                }
                let lines = lines
                    .into_iter()
                    .map(|l| format!("{pad}{l}{pad}"))
                    .collect();
                (members, lines)
            })
    }

    /// Bytes that look like structured fields, so that fuzzing goes past the first byte.
    fn dictionary_like() -> impl Strategy<Value = Vec<u8>> {
        const PIECES: [&[u8]; 20] = [
            b"sig1",
            b"proxy",
            b"=",
            b"(",
            b")",
            b"\"",
            b"\\",
            b",",
            b";",
            b":",
            b"?1",
            b"1.5",
            b"-12",
            b" ",
            b"\t",
            b"a",
            b"@",
            b"%",
            b"\xc3\xa9",
            b"cHJveHk=",
        ];
        let piece = proptest::sample::select(&PIECES[..]);
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(piece, 0..16).prop_map(|p| p.concat()),
        ]
    }

    fn signer_at(secs: u64) -> HttpSignature {
        HttpSignature::hmac_sha256(b"k")
            .key_id("kid")
            .clock(at(secs))
    }

    /// The signer's own member, as `base` makes it.
    fn own_input(signer: &HttpSignature, r: &Request) -> String {
        let (_, params) = signer.base(r, None).unwrap();
        format!("{}={params}", signer.label)
    }

    /// The only line of `name`, which every signature leaves as one line.
    fn one_line<'a>(r: &'a Request, name: &str) -> &'a str {
        let lines: Vec<_> = r.headers().get_all(name).iter().collect();
        assert_eq!(lines.len(), 1, "{name}: {lines:?}");
        lines[0].to_str().unwrap()
    }

    #[test]
    fn dictionary_parser_by_rfc_8941() {
        let ok = [
            ("", 0),
            ("  ", 0),
            ("a=?0, b, c; foo=bar", 3),
            ("rating=1.5, feelings=(joy sadness)", 2),
            ("a=(1 2), b=3, c=4;aa=bb, d=(5 6);valid", 4),
            ("foo=:cHJldGVuZCB0aGlzIGlzIGJpbmFyeSBjb250ZW50Lg==:", 1),
            ("foo=:cHJldGVuZCB0aGlzIGlzIGJpbmFyeSBjb250ZW50Lg:", 1),
            ("en=\"Applepie\", da=:w4ZibGV0w6ZydGUK:", 2),
            ("a=1,b=2", 2),
            ("a=1\t,\tb=2", 2),
            ("a=( 1  2 )", 1),
            ("a=()", 1),
            ("a=-999999999999999, b=999999999999.999", 2),
            ("a=\"\\\"\\\\\"", 1),
            ("a=*t:/x, b=Tok", 2),
            ("a=@1659578233, b=%\"f%c3%bc%c3%bc\"", 2),
            ("a=1, a=2", 2),
            (r#"sig1=("@method" "@target-uri");created=1;keyid="a,b""#, 1),
        ];
        for (s, n) in ok {
            assert_eq!(members(s).len(), n, "{s:?}");
        }
        let bad = [
            "a=1,",
            ",a=1",
            "a=1,,b=2",
            "a=1 b=2",
            "A=1",
            "1a=1",
            "a=\"unterminated",
            "a=\"bad\\escape\"",
            "a=\"tab\there\"",
            "a=1.2345",
            "a=1.",
            "a=1234567890123456",
            "a=1234567890123.5",
            "a=-",
            "a=(1 2",
            "a=(1,2)",
            "a=(1)(2)",
            "a=?2",
            "a=:abc$:",
            "a=:YQ",
            "a=:Y=Q=:",
            "a=@1.5",
            "a=%\"%C3%BC\"",
            "a=%\"%ff\"",
            "a=%abc",
            "a=caf\u{e9}",
            "a;b=",
            "a; =1",
            "a=",
            "a=1;",
        ];
        for s in bad {
            assert!(sf::dictionary(s).is_none(), "{s:?}");
        }
        let m = members(r#"x=(1 "two";p=?0 :AQI=:);q=4.50"#);
        assert_eq!(m[0].key, "x");
        assert_eq!(
            m[0].value,
            Value::InnerList(
                vec![
                    (Bare::Integer(1), vec![]),
                    (
                        Bare::String("two".into()),
                        vec![("p".into(), Bare::Boolean(false))]
                    ),
                    (Bare::Bytes(vec![1, 2]), vec![]),
                ],
                vec![("q".into(), Bare::Decimal(4500))]
            )
        );
    }

    /// The defect that split-on-commas had: a string left open in another member swallowed
    /// this signer's member, so the new `Signature-Input` could not be parsed at all.
    #[tokio::test]
    async fn a_line_that_is_not_a_dictionary_is_dropped() {
        let signer = signer_at(5);
        let mut r = http::Request::get("http://h.test/")
            .header("signature-input", r#"proxy=("@method");keyid="open"#)
            .header("signature-input", r#"other=("@path");created=1"#)
            .header("signature", "proxy=:cHJveHk=:, trailing,")
            .body(Body::empty())
            .unwrap();
        signer.sign(&mut r).await.unwrap();
        let input = one_line(&r, "signature-input");
        assert_eq!(
            input,
            format!(
                r#"other=("@path");created=1, sig1=("@method" "@target-uri");created=5;keyid="kid""#
            )
        );
        let sig = one_line(&r, "signature");
        assert!(sig.starts_with("sig1=:"), "{sig}");
        assert_eq!(members(sig).len(), 1);
    }

    #[tokio::test]
    async fn integers_stay_structured_field_integers() {
        let mut r = req("http://h.test/");
        let forever = signer_at(1_000).expires_after(Duration::MAX);
        forever.sign(&mut r).await.unwrap();
        assert!(
            one_line(&r, "signature-input")
                .ends_with(";created=1000;expires=999999999999999;keyid=\"kid\""),
            "{}",
            one_line(&r, "signature-input")
        );
        let far = signer_at(SF_INTEGER_MAX + 1);
        assert!(far.sign(&mut r).await.unwrap_err().is_signing());
        let far_but_not_created = signer_at(u64::MAX / 2)
            .created(false)
            .expires_after(Duration::from_secs(1));
        far_but_not_created.sign(&mut r).await.unwrap();
        assert!(
            one_line(&r, "signature-input").ends_with(";expires=999999999999999;keyid=\"kid\"")
        );
    }

    #[test]
    fn urls_and_hosts_that_cannot_be_signed() {
        let signer = HttpSignature::hmac_sha256(b"k").components([Component::TargetUri]);
        // `http` accepts bytes beyond ASCII in a path and a query, and drops a port that does
        // not fit a u16.
        for uri in [
            "http://h.test/caf\u{e9}",
            "http://h.test/?q=caf\u{e9}",
            "http://h.test:99999/",
            "http://h.test:65536/",
        ] {
            let r = req(uri);
            let err = signer.signature_base(&r).unwrap_err();
            assert!(err.is_signing(), "{uri}: {err}");
        }
        // An empty port is no port, leading zeros are the number.
        assert_eq!(
            base_of(&["@authority"], &req("http://h.test:/")),
            r#""@authority": h.test"#
        );
        assert_eq!(
            base_of(&["@authority"], &req("https://h.test:0443/")),
            r#""@authority": h.test"#
        );
        assert_eq!(
            base_of(&["@authority"], &req("https://h.test:08443/")),
            r#""@authority": h.test:8443"#
        );
        // The Host header has no userinfo.
        let mut r = req("https://h.test/");
        r.headers_mut()
            .insert("host", HeaderValue::from_static("user:pw@h.test"));
        let signer = HttpSignature::hmac_sha256(b"k").components([Component::Authority]);
        assert!(signer.signature_base(&r).unwrap_err().is_signing());
    }

    /// The `@authority` that RFC 9421 and RFC 9110 describe, worked out from the text of the
    /// authority: lower case, no userinfo, no default or empty port, a port as a number.
    fn expected_authority(authority: &str, scheme: &str) -> Option<String> {
        let host_port = authority.rsplit('@').next().unwrap();
        let (host, port) = match host_port.rfind(':') {
            Some(i) if !host_port[i..].contains(']') => (&host_port[..i], &host_port[i + 1..]),
            _ => (host_port, ""),
        };
        let host = host.to_ascii_lowercase();
        if port.is_empty() {
            return Some(host);
        }
        let port: u16 = port.parse().ok()?;
        let default = match scheme {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        };
        Some(if default == Some(port) {
            host
        } else {
            format!("{host}:{port}")
        })
    }

    /// URLs with every odd part: userinfo, case, IPv6, empty and out-of-range ports, bytes
    /// beyond ASCII, and any query.
    fn odd_url() -> impl Strategy<Value = String> {
        (
            prop_oneof![Just("http"), Just("https"), Just("HTTPS"), Just("ftp")],
            proptest::option::of("[a-z]{1,4}(:[a-z0-9]{0,4})?@"),
            prop_oneof!["[A-Za-z0-9.-]{1,10}", Just("[::1]".to_owned())],
            proptest::option::of("[0-9]{0,6}"),
            "(/[A-Za-z0-9%._~!$&'()*+,;=:@\u{e9}-]{0,6}){0,3}",
            proptest::option::of("[ -~\u{e9}]{0,12}"),
        )
            .prop_map(|(scheme, user, host, port, path, query)| {
                let mut u = format!("{scheme}://{}{host}", user.unwrap_or_default());
                if let Some(port) = port {
                    u.push(':');
                    u.push_str(&port);
                }
                u.push_str(&path);
                if let Some(q) = query {
                    u.push('?');
                    u.push_str(&q);
                }
                u
            })
    }

    proptest! {
        /// Whatever a request already carries in `Signature-Input` and `Signature` (any
        /// bytes, several lines), signing never panics and never fails for it; each field
        /// ends as one valid dictionary: the members of the lines that were valid
        /// dictionaries, minus this signer's label, byte for byte and in order, then this
        /// signer's member, once.
        #[test]
        fn existing_signature_fields_of_any_bytes(
            inputs in proptest::collection::vec(dictionary_like(), 0..3),
            sigs in proptest::collection::vec(dictionary_like(), 0..3),
        ) {
            let signer = signer_at(1_618_884_473);
            let mut r = req("https://example.com/foo?param=Value");
            for (name, lines) in [("signature-input", &inputs), ("signature", &sigs)] {
                for line in lines.iter() {
                    if let Ok(v) = HeaderValue::from_bytes(line) {
                        r.headers_mut().append(name, v);
                    }
                }
            }
            let kept = |name: &str| -> Vec<String> {
                r.headers()
                    .get_all(name)
                    .iter()
                    .filter_map(|v| sf::dictionary(v.to_str().ok()?))
                    .flatten()
                    .filter(|m| m.key != "sig1")
                    .map(|m| m.text.to_owned())
                    .collect()
            };
            let (kept_inputs, kept_sigs) = (kept("signature-input"), kept("signature"));
            let own = own_input(&signer, &r);
            block_on(signer.sign(&mut r)).unwrap();

            let input = members(one_line(&r, "signature-input"));
            let texts: Vec<&str> = input.iter().map(|m| m.text).collect();
            let mut want: Vec<&str> = kept_inputs.iter().map(String::as_str).collect();
            want.push(&own);
            prop_assert_eq!(texts, want);

            let sig = members(one_line(&r, "signature"));
            let (last, others) = sig.split_last().unwrap();
            prop_assert_eq!(last.key, "sig1");
            prop_assert!(matches!(last.value, Value::Item(Bare::Bytes(ref b), _) if b.len() == 32));
            let others: Vec<&str> = others.iter().map(|m| m.text).collect();
            prop_assert_eq!(others, kept_sigs.iter().map(String::as_str).collect::<Vec<_>>());
        }

        /// The parser itself: any text, no panic; what it accepts, it reads again the same
        /// from the members' texts alone, joined with `, `.
        #[test]
        fn dictionary_parser_is_total(
            text in prop_oneof![
                any::<String>(),
                dictionary_like().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            ],
        ) {
            if let Some(parsed) = sf::dictionary(&text) {
                let texts: Vec<&str> = parsed.iter().map(|m| m.text).collect();
                let joined = texts.join(", ");
                let again = members(&joined);
                prop_assert_eq!(again.len(), parsed.len());
                for (a, b) in again.iter().zip(&parsed) {
                    prop_assert_eq!((a.key, a.text, &a.value), (b.key, b.text, &b.value));
                }
            }
        }

        /// Valid dictionaries of any shape are read back as what they mean, and signing keeps
        /// every member of another label as it was written.
        #[test]
        fn valid_dictionaries_are_kept_byte_for_byte(
            (members_in, lines) in field_lines(),
        ) {
            let joined = lines.join(", ");
            let parsed = members(&joined);
            prop_assert_eq!(parsed.len(), members_in.len());
            for (m, (key, value)) in parsed.iter().zip(&members_in) {
                prop_assert_eq!(m.key, key.as_str());
                prop_assert_eq!(&m.value, value);
                prop_assert_eq!(m.text, ser_member(key, value));
            }

            let signer = signer_at(7);
            let mut r = req("http://h.test/");
            for line in &lines {
                r.headers_mut().append("signature-input", HeaderValue::from_str(line).unwrap());
                r.headers_mut().append("signature", HeaderValue::from_str(line).unwrap());
            }
            let own = own_input(&signer, &r);
            block_on(signer.sign(&mut r)).unwrap();
            let others: Vec<String> = members_in
                .iter()
                .filter(|(key, _)| key != "sig1")
                .map(|(key, value)| ser_member(key, value))
                .collect();
            let input = one_line(&r, "signature-input");
            let mut want = others.clone();
            want.push(own);
            prop_assert_eq!(input, want.join(", "));
            let sig = members(one_line(&r, "signature"));
            let (last, kept) = sig.split_last().unwrap();
            prop_assert_eq!(last.key, "sig1");
            prop_assert_eq!(kept.iter().map(|m| m.text.to_owned()).collect::<Vec<_>>(), others);
        }

        /// Covered values from outside (any header bytes, any Host, any URL `http` accepts):
        /// no panic; a base of exactly one line per component plus the parameters, all of it
        /// ASCII without control characters; the `@authority` RFC 9421 describes.
        #[test]
        fn covered_values_from_outside(
            url in prop_oneof![odd_url(), "\\PC{0,30}"],
            host in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
            value in proptest::collection::vec(any::<u8>(), 0..20),
            more in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        ) {
            let Ok(uri) = url.parse::<http::Uri>() else { return Ok(()) };
            let mut r = http::Request::post(uri.clone()).body(Body::empty()).unwrap();
            if let Some(Ok(h)) = host.as_deref().map(HeaderValue::from_bytes) {
                r.headers_mut().insert("host", h);
            }
            let Ok(v) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            r.headers_mut().insert("x-v", v);
            if let Some(Ok(v)) = more.as_deref().map(HeaderValue::from_bytes) {
                r.headers_mut().append("x-v", v);
            }
            let all = [
                "@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path",
                "@query", "x-v",
            ];
            for c in all {
                let signer = HttpSignature::hmac_sha256(b"k")
                    .components([c.parse().unwrap()])
                    .clock(at(1));
                let Ok(base) = signer.signature_base(&r) else { continue };
                let lines: Vec<&str> = base.split('\n').collect();
                prop_assert_eq!(lines.len(), 2, "{}", base);
                prop_assert!(
                    base.bytes().all(|b| b == b'\n' || b == b'\t' || (0x20..=0x7e).contains(&b)),
                    "{:?}", base
                );
                let params = lines[1].strip_prefix("\"@signature-params\": ").unwrap();
                prop_assert_eq!(members(&format!("sig1={params}")).len(), 1);
                if c == "@authority" && !r.headers().contains_key("host") {
                    let want = expected_authority(
                        uri.authority().unwrap().as_str(),
                        &uri.scheme_str().unwrap_or_default().to_ascii_lowercase(),
                    );
                    prop_assert_eq!(Some(lines[0].strip_prefix("\"@authority\": ").unwrap()), want.as_deref());
                }
            }
            // The errors are the ones expected, and no other.
            let authority_ok = match r.headers().get("host") {
                Some(h) => h.to_str().ok().filter(|h| !h.contains('@')).and_then(|h| {
                    let a = h.parse::<http::uri::Authority>().ok()?;
                    expected_authority(a.as_str(), uri.scheme_str().unwrap_or(""))
                }).is_some(),
                None => uri.authority().is_some_and(|a| {
                    expected_authority(a.as_str(), uri.scheme_str().unwrap_or("")).is_some()
                }),
            };
            let ascii = |s: &str| s.bytes().all(|b| (0x20..=0x7e).contains(&b));
            let path_ok = ascii(uri.path()) && uri.query().is_none_or(ascii);
            let signer = HttpSignature::hmac_sha256(b"k")
                .components([Component::Path, Component::Query])
                .clock(at(1));
            prop_assert_eq!(signer.signature_base(&r).is_ok(), path_ok);
            let signer = HttpSignature::hmac_sha256(b"k")
                .components([Component::Authority])
                .clock(at(1));
            prop_assert_eq!(signer.signature_base(&r).is_ok(), authority_ok);
        }

        /// Component identifiers: any text parses or is refused without a panic, and a parsed
        /// one names itself in a form that parses back to it and is a valid `sf-string`.
        #[test]
        fn component_identifiers_round_trip(
            name in prop_oneof!["\\PC{0,12}", "@?[A-Za-z-]{0,12}", any::<String>()],
        ) {
            if let Ok(c) = name.parse::<Component>() {
                let n = c.name();
                prop_assert_eq!(n.parse::<Component>().unwrap(), c.clone());
                prop_assert!(!n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
                prop_assert!(!n.bytes().any(|b| b.is_ascii_uppercase()), "{}", n);
                let input = format!("sig1=(\"{n}\")");
                let m = members(&input);
                prop_assert_eq!(&m[0].value, &Value::InnerList(vec![(Bare::String(n.to_owned()), vec![])], vec![]));
            }
        }

        /// Any label, key id, tag, nonce, clock and validity: signing fails cleanly or writes a
        /// `Signature-Input` that parses back to exactly those parameters.
        #[test]
        fn parameters_parse_back(
            label in prop_oneof!["[a-z*][a-z0-9_.*-]{0,6}", "\\PC{0,6}"],
            key_id in "\\PC{0,10}",
            tag in proptest::option::of("[ -~]{0,10}"),
            nonce in proptest::option::of("\\PC{0,10}"),
            now in prop_oneof![0u64..4_000_000_000, 0u64..(1 << 62)],
            validity in proptest::option::of(any::<u64>()),
        ) {
            let mut signer = HttpSignature::hmac_sha256(b"k")
                .label(label.clone())
                .key_id(key_id.clone())
                .include_alg(true)
                .clock(move || UNIX_EPOCH + Duration::from_secs(now));
            if let Some(tag) = &tag {
                signer = signer.tag(tag.clone());
            }
            if let Some(nonce) = &nonce {
                let nonce = nonce.clone();
                signer = signer.nonce_with(move || nonce.clone());
            }
            if let Some(v) = validity {
                signer = signer.expires_after(Duration::from_secs(v));
            }
            let mut r = req("http://h.test/");
            let printable = |s: &str| s.bytes().all(|b| (0x20..=0x7e).contains(&b));
            let should_sign = is_sf_key(&label)
                && printable(&key_id)
                && tag.as_deref().is_none_or(printable)
                && nonce.as_deref().is_none_or(printable)
                && now <= SF_INTEGER_MAX;
            match block_on(signer.sign(&mut r)) {
                Err(e) => {
                    prop_assert!(e.is_signing());
                    prop_assert!(!should_sign, "{}", e);
                }
                Ok(()) => {
                    prop_assert!(should_sign);
                    let input = one_line(&r, "signature-input");
                    let m = members(input);
                    prop_assert_eq!(m.len(), 1);
                    prop_assert_eq!(m[0].key, label.as_str());
                    let Value::InnerList(items, params) = &m[0].value else {
                        panic!("{input}");
                    };
                    prop_assert_eq!(items.len(), 2);
                    let mut want = vec![("created".to_owned(), Bare::Integer(now as i64))];
                    if let Some(v) = validity {
                        let expires = now.saturating_add(v).min(SF_INTEGER_MAX);
                        want.push(("expires".to_owned(), Bare::Integer(expires as i64)));
                    }
                    want.push(("keyid".to_owned(), Bare::String(key_id.clone())));
                    want.push(("alg".to_owned(), Bare::String("hmac-sha256".to_owned())));
                    if let Some(nonce) = nonce {
                        want.push(("nonce".to_owned(), Bare::String(nonce)));
                    }
                    if let Some(tag) = tag {
                        want.push(("tag".to_owned(), Bare::String(tag)));
                    }
                    prop_assert_eq!(params, &want);
                }
            }
        }
    }
}
