//! [`Basic`]: RFC 7617 HTTP Basic authentication.

use std::fmt;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use http::header::AUTHORIZATION;

use super::Signer;
use super::util::{sensitive, signing_error};
use crate::{Error, Request};

/// Sets `Authorization: Basic <base64(user-id:password)>` (RFC 7617).
///
/// The user-id and password are encoded as UTF-8 (RFC 7617's `charset="UTF-8"`, which every
/// current server expects). A user-id containing `:` cannot be told apart from the password
/// and is refused, as are control characters in either; both with [`ErrorKind::Signing`].
/// The header value is computed once and marked sensitive; `Debug` shows neither part (some
/// services, Stripe for one, put a secret key in the user-id).
///
/// [`ErrorKind::Signing`]: crate::ErrorKind::Signing
///
/// ```
/// use http_doer::{ErrorKind, signing::Basic};
///
/// assert!(Basic::new("Aladdin", "open sesame").is_ok());
/// assert_eq!(Basic::new("a:b", "pw").unwrap_err().kind(), ErrorKind::Signing);
/// ```
#[derive(Clone)]
pub struct Basic {
    value: HeaderValue,
}

impl Basic {
    /// Credentials for `user_id` and `password`.
    ///
    /// # Errors
    ///
    /// An [`ErrorKind::Signing`](crate::ErrorKind::Signing) error when `user_id` contains `:`
    /// or either contains a control character, which RFC 7617 forbids.
    pub fn new(user_id: impl AsRef<str>, password: impl AsRef<str>) -> Result<Self, Error> {
        let (user_id, password) = (user_id.as_ref(), password.as_ref());
        if user_id.contains(':') {
            return Err(signing_error(
                "a Basic user-id must not contain ':' (RFC 7617)",
            ));
        }
        if user_id
            .chars()
            .chain(password.chars())
            .any(char::is_control)
        {
            return Err(signing_error(
                "Basic credentials must not contain control characters (RFC 7617)",
            ));
        }
        let mut value = String::with_capacity(6 + (user_id.len() + password.len() + 3) * 4 / 3);
        value.push_str("Basic ");
        STANDARD.encode_string(format!("{user_id}:{password}"), &mut value);
        Ok(Basic {
            value: sensitive(value.as_bytes(), "Basic credentials")?,
        })
    }
}

impl fmt::Debug for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Basic { .. }")
    }
}

#[async_trait]
impl Signer for Basic {
    async fn sign(&self, req: &mut Request) -> Result<(), Error> {
        req.headers_mut().insert(AUTHORIZATION, self.value.clone());
        Ok(())
    }

    fn sign_now(&self, req: &mut Request) -> Option<Result<(), Error>> {
        req.headers_mut().insert(AUTHORIZATION, self.value.clone());
        Some(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Body, ErrorKind};

    #[tokio::test]
    async fn replaces_an_earlier_authorization() {
        let basic = Basic::new("u", "p").unwrap();
        let mut req = http::Request::get("http://h.test/")
            .header(AUTHORIZATION, "Bearer old")
            .body(Body::empty())
            .unwrap();
        basic.sign(&mut req).await.unwrap();
        basic.sign(&mut req).await.unwrap();
        let values: Vec<_> = req.headers().get_all(AUTHORIZATION).iter().collect();
        assert_eq!(values, ["Basic dTpw"]);
        assert!(values[0].is_sensitive());
    }

    #[test]
    fn refuses_control_characters() {
        for (u, p) in [("a\u{7}", "p"), ("u", "p\r\nX-Evil: 1"), ("u", "\0")] {
            assert_eq!(Basic::new(u, p).unwrap_err().kind(), ErrorKind::Signing);
        }
        // A ':' in the password is fine: only the first ':' separates.
        assert!(Basic::new("u", "p:q").is_ok());
    }

    #[test]
    fn debug_hides_both_parts() {
        let s = format!("{:?}", Basic::new("sk_live_user", "hunter2").unwrap());
        assert!(!s.contains("sk_live") && !s.contains("hunter2"), "{s}");
    }
}
