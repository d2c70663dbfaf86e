//! [`ApiKey`]: a key in a header or a query parameter.

use std::fmt;

use async_trait::async_trait;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::Signer;
use super::util::{sensitive, signing_error};
use crate::{Error, Request};

/// Everything but RFC 3986 unreserved characters is percent-encoded in a query component.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Adds an API key, in a header (`X-Api-Key: <key>`) or a query parameter (`?api_key=<key>`).
///
/// A header is the better place: query strings end up in server and proxy logs. A header value
/// is marked sensitive. In the query, an existing parameter of the same name is replaced, and
/// name and key are percent-encoded; pick a parameter name that
/// [`redact::is_secret_param`](crate::redact::is_secret_param) recognises (`api_key`, `key`,
/// `token`, ...) so that http-doer's own errors and logs hide the key. `Debug` shows the
/// parameter or header name, never the key.
///
/// ```
/// use http_doer::{Doer, DoerExt, signing::ApiKey, testing::ScriptedDoer};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let server = ScriptedDoer::new().then_status(200).then_status(200);
/// let in_header = server.clone().signing(ApiKey::header("x-api-key", "k-123")?);
/// let in_query = server.clone().signing(ApiKey::query("api_key", "k 456")?);
/// let req = || http::Request::get("https://api.test/v1?page=2").body(().into()).unwrap();
/// in_header.execute(req()).await?;
/// in_query.execute(req()).await?;
/// let sent = server.requests();
/// assert_eq!(sent[0].headers()["x-api-key"], "k-123");
/// assert_eq!(sent[1].uri(), "https://api.test/v1?page=2&api_key=k%20456");
/// # Ok::<(), http_doer::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct ApiKey {
    place: Place,
}

#[derive(Clone)]
enum Place {
    Header(HeaderName, HeaderValue),
    Query { name: String, pair: String },
}

impl ApiKey {
    /// The key in the header `name`, which replaces any value the request had.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Signing`](crate::ErrorKind::Signing) error when `name` is not a valid
    /// header name or `key` cannot be a header value.
    pub fn header(name: impl AsRef<str>, key: impl AsRef<str>) -> Result<Self, Error> {
        let name = HeaderName::from_bytes(name.as_ref().as_bytes())
            .map_err(|_| signing_error("invalid API key header name"))?;
        let value = sensitive(key.as_ref().as_bytes(), "the API key")?;
        Ok(ApiKey {
            place: Place::Header(name, value),
        })
    }

    /// The key in the query parameter `name`, which replaces any parameter of that name.
    ///
    /// Errors coming back through [`Signing`](crate::Signing) name the URL without the key.
    /// A [`Logging`](crate::Logging) placed *below* `Signing` sees the signed URL, and redacts
    /// the key only when [`redact::is_secret_param`](crate::redact::is_secret_param) knows the
    /// name (`api_key`, `key`, `token`, ...): keep `Logging` above `Signing`, as recommended.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Signing`](crate::ErrorKind::Signing) error when `name` is empty.
    pub fn query(name: impl AsRef<str>, key: impl AsRef<str>) -> Result<Self, Error> {
        let name = name.as_ref();
        if name.is_empty() {
            return Err(signing_error("an API key parameter needs a name"));
        }
        let encoded_name = utf8_percent_encode(name, QUERY_COMPONENT).to_string();
        let pair = format!(
            "{encoded_name}={}",
            utf8_percent_encode(key.as_ref(), QUERY_COMPONENT)
        );
        Ok(ApiKey {
            place: Place::Query {
                name: name.to_owned(),
                pair,
            },
        })
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::Header(name, _) => write!(f, "ApiKey {{ header: {name:?}, .. }}"),
            Place::Query { name, .. } => write!(f, "ApiKey {{ query: {name:?}, .. }}"),
        }
    }
}

#[async_trait]
impl Signer for ApiKey {
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        match &self.place {
            Place::Header(name, value) => {
                req.headers_mut().insert(name.clone(), value.clone());
            }
            Place::Query { name, pair } => {
                *req.uri_mut() = with_param(req.uri(), name, pair)?;
            }
        }
        Ok(())
    }

    fn sign_now(&self, req: &mut Request) -> Option<Result<(), Error>> {
        // In the query, the key changes the URI: `sign` it is, so errors get the caller's URL.
        let Place::Header(name, value) = &self.place else {
            return None;
        };
        req.headers_mut().insert(name.clone(), value.clone());
        Some(Ok(()))
    }
}

/// `uri` with every `name=...` parameter removed and `pair` appended.
fn with_param(uri: &Uri, name: &str, pair: &str) -> Result<Uri, Error> {
    let mut query = String::with_capacity(uri.query().map_or(0, str::len) + pair.len() + 1);
    for kept in uri.query().unwrap_or("").split('&').filter(|p| {
        let key = p.split('=').next().unwrap_or("");
        !p.is_empty() && percent_decode_str(key).decode_utf8_lossy() != name
    }) {
        query.push_str(kept);
        query.push('&');
    }
    query.push_str(pair);
    let path_and_query = format!("{}?{query}", uri.path());
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(path_and_query)
            .map_err(|_| signing_error("cannot add the API key to this URL"))?,
    );
    Uri::from_parts(parts).map_err(|_| signing_error("cannot add the API key to this URL"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Body;

    fn req(uri: &str) -> Request {
        http::Request::get(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn query_key_replaces_an_existing_parameter_and_keeps_the_rest() {
        let key = ApiKey::query("api_key", "new/+&=key").unwrap();
        let mut r = req("http://h.test/p?a=1&api_key=old&b=2&api%5Fkey=old2");
        key.sign(&mut r).await.unwrap();
        key.sign(&mut r).await.unwrap();
        assert_eq!(
            r.uri(),
            "http://h.test/p?a=1&b=2&api_key=new%2F%2B%26%3Dkey"
        );
    }

    #[tokio::test]
    async fn query_key_on_a_url_without_query() {
        let key = ApiKey::query("key", "k").unwrap();
        let mut r = req("http://h.test");
        key.sign(&mut r).await.unwrap();
        assert_eq!(r.uri(), "http://h.test/?key=k");
    }

    #[tokio::test]
    async fn header_key_is_sensitive_and_replaces() {
        let key = ApiKey::header("X-Api-Key", "k1").unwrap();
        let mut r = http::Request::get("http://h.test/")
            .header("x-api-key", "old")
            .body(Body::empty())
            .unwrap();
        key.sign(&mut r).await.unwrap();
        let values: Vec<_> = r.headers().get_all("x-api-key").iter().collect();
        assert_eq!(values, ["k1"]);
        assert!(values[0].is_sensitive());
    }

    #[test]
    fn bad_names_and_keys_are_refused() {
        assert!(ApiKey::header("bad name", "k").unwrap_err().is_signing());
        assert!(ApiKey::header("x-k", "k\n").unwrap_err().is_signing());
        assert!(ApiKey::query("", "k").unwrap_err().is_signing());
    }

    #[test]
    fn debug_shows_the_name_only() {
        let h = format!("{:?}", ApiKey::header("x-api-key", "s3cr3t").unwrap());
        let q = format!("{:?}", ApiKey::query("key", "s3cr3t").unwrap());
        assert_eq!(h, r#"ApiKey { header: "x-api-key", .. }"#);
        assert_eq!(q, r#"ApiKey { query: "key", .. }"#);
    }
}
