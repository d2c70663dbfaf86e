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
use super::util::{signing_error, split_outside_quotes};
use super::{Clock, Signer, SystemClock};
use crate::{Error, Request};

const SIGNATURE_INPUT: HeaderName = HeaderName::from_static("signature-input");
const SIGNATURE: HeaderName = HeaderName::from_static("signature");

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
/// `Signature` and keeps the others, so a proxy's or another signer's signature survives.
/// `Signature` is marked sensitive; `Debug` shows no key.
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
            label: "sig1".to_owned(),
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

    /// The signature's label in `Signature-Input` and `Signature`; default `sig1`. It must be
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

    /// Adds the `expires` parameter, `validity` after the signing time.
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
            push_int(&mut params, "created", now);
        }
        if let Some(validity) = self.expires_after {
            push_int(
                &mut params,
                "expires",
                now.saturating_add(validity.as_secs()),
            );
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
            set_content_digest(req, algorithm)?;
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
/// `label`.
fn replace_member(headers: &HeaderMap, name: HeaderName, label: &str, member: String) -> String {
    let mut kept = String::new();
    for value in headers.get_all(&name) {
        // A field that is not ASCII cannot be a structured field; drop it rather than fail.
        let Ok(value) = value.to_str() else { continue };
        for m in split_outside_quotes(value).map(str::trim) {
            let key = m.split(['=', ';']).next().unwrap_or("");
            if !m.is_empty() && key != label {
                kept.push_str(m);
                kept.push_str(", ");
            }
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
    let uri = req.uri();
    match component {
        Component::Method => out.push_str(req.method().as_str()),
        Component::Authority => push_authority(out, req)?,
        Component::Scheme => push_scheme(out, uri)?,
        Component::TargetUri => {
            push_scheme(out, uri)?;
            out.push_str("://");
            push_authority(out, req)?;
            push_path(out, uri);
            if let Some(q) = uri.query() {
                out.push('?');
                out.push_str(q);
            }
        }
        Component::RequestTarget if req.method() == Method::CONNECT => {
            push_authority(out, req)?;
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
        }
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
/// HTTP/1.1 server sees.
fn push_authority(out: &mut String, req: &Request) -> Result<(), Error> {
    let uri = req.uri();
    let from_header = match req.headers().get(http::header::HOST) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|h| h.parse::<http::uri::Authority>().ok())
                .ok_or_else(|| signing_error("the Host header is not a valid authority"))?,
        ),
        None => None,
    };
    let (host, port) = match &from_header {
        Some(a) => (a.host(), a.port_u16()),
        None => (
            uri.host()
                .ok_or_else(|| signing_error("the URL has no authority"))?,
            uri.port_u16(),
        ),
    };
    out.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    if let Some(port) = port {
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
    use super::*;
    use crate::Body;
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
}
