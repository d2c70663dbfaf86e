//! [`FleetKey`]: the operator's secret, and what is derived from it: the key that seals
//! stale bodies (XChaCha20-Poly1305) and the key that names them.

use std::fmt;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::{Error, ErrorKind};

/// The first byte of a sealed blob: the format, so a later one can be told apart.
const SEAL_V1: u8 = 1;
const NONCE_LEN: usize = 24;

/// The operator's 256-bit secret for answers shared through Redis: bodies (and headers, URLs)
/// are encrypted and authenticated with a key derived from it, and their names in Redis are
/// keyed hashes made with another, so a dump of Redis shows neither data nor which URL or user
/// an entry belongs to. Every replica must be given the same key. Its `Debug` shows nothing.
///
/// ```
/// use http_doer::fleet::FleetKey;
///
/// let key = FleetKey::from_hex(&"ab".repeat(32)).unwrap();
/// assert!(FleetKey::from_hex("too short").is_err());
/// assert_eq!(format!("{key:?}"), "FleetKey(..)");
/// ```
#[derive(Clone)]
pub struct FleetKey {
    seal: [u8; 32],
    names: [u8; 32],
}

impl FleetKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(secret: [u8; 32]) -> FleetKey {
        FleetKey {
            seal: derive(&secret, b"http-doer fleet: seal stale answers v1"),
            names: derive(&secret, b"http-doer fleet: name stale answers v1"),
        }
    }

    /// The key from 64 hexadecimal digits.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when `hex` is not 64 hexadecimal digits.
    pub fn from_hex(hex: &str) -> Result<FleetKey, Error> {
        let hex = hex.trim().as_bytes();
        let mut secret = [0u8; 32];
        if hex.len() != 64 {
            return Err(bad_key());
        }
        for (i, pair) in hex.chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(h), Some(l)) => secret[i] = (h * 16 + l) as u8,
                _ => return Err(bad_key()),
            }
        }
        Ok(FleetKey::from_bytes(secret))
    }

    /// The key from 64 hexadecimal digits or the standard base64 of 32 bytes (what
    /// `openssl rand -hex 32` or `openssl rand -base64 32` print).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidRequest`] when `text` is neither.
    pub fn parse(text: &str) -> Result<FleetKey, Error> {
        let text = text.trim();
        if text.len() == 64 {
            return FleetKey::from_hex(text);
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| bad_key())?;
        let secret: [u8; 32] = bytes.try_into().map_err(|_| bad_key())?;
        Ok(FleetKey::from_bytes(secret))
    }

    /// The SipHash keys that name answers.
    pub(crate) fn naming_key(&self) -> [u64; 4] {
        let mut out = [0u64; 4];
        for (i, chunk) in self.names.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            out[i] = u64::from_le_bytes(word);
        }
        out
    }

    /// Encrypts and authenticates `plain`, bound to `slot` (its name in Redis: a blob moved
    /// to another name does not open).
    pub(crate) fn seal(&self, slot: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
        let cipher = XChaCha20Poly1305::new((&self.seal).into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: slot,
                },
            )
            .ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEAL_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// Opens what [`seal`](Self::seal) made for `slot`; `None` if it was altered, moved, or
    /// sealed with another key.
    pub(crate) fn open(&self, slot: &[u8], blob: &[u8]) -> Option<Vec<u8>> {
        let (&version, rest) = blob.split_first()?;
        if version != SEAL_V1 || rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new((&self.seal).into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: slot,
                },
            )
            .ok()
    }
}

fn derive(secret: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

fn bad_key() -> Error {
    Error::from(ErrorKind::InvalidRequest)
        .with_message("a fleet key is 32 bytes: 64 hexadecimal digits, or their base64")
}

impl fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FleetKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_open_only_with_the_key_and_the_slot() {
        let key = FleetKey::from_bytes([7; 32]);
        let blob = key.seal(b"slot-a", b"alice's balance").unwrap();
        assert!(!blob.windows(5).any(|w| w == b"alice"));
        assert_eq!(key.open(b"slot-a", &blob).unwrap(), b"alice's balance");
        assert!(
            key.open(b"slot-b", &blob).is_none(),
            "moved to another name"
        );
        assert!(
            FleetKey::from_bytes([8; 32])
                .open(b"slot-a", &blob)
                .is_none()
        );
        let mut tampered = blob.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(key.open(b"slot-a", &tampered).is_none());
        assert!(key.open(b"slot-a", &[]).is_none());
        assert!(key.open(b"slot-a", &[1, 2, 3]).is_none());
    }

    #[test]
    fn parses_hex_and_base64_and_refuses_the_rest() {
        let hex = "0f".repeat(32);
        let b64 = base64::engine::general_purpose::STANDARD.encode([0x0f; 32]);
        let (a, b) = (
            FleetKey::parse(&hex).unwrap(),
            FleetKey::parse(&b64).unwrap(),
        );
        assert_eq!(a.naming_key(), b.naming_key());
        assert!(FleetKey::parse("zz").is_err());
        assert!(FleetKey::parse(&"g".repeat(64)).is_err());
        assert!(
            FleetKey::parse(&base64::engine::general_purpose::STANDARD.encode([1; 31])).is_err()
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// What Redis hands back is opened without a panic, and never opens unless sealed.
            #[test]
            fn open_never_panics(blob in proptest::collection::vec(any::<u8>(), 0..128)) {
                prop_assert!(FleetKey::from_bytes([7; 32]).open(b"slot", &blob).is_none());
            }

            #[test]
            fn what_is_sealed_opens(plain in proptest::collection::vec(any::<u8>(), 0..256)) {
                let key = FleetKey::from_bytes([7; 32]);
                let blob = key.seal(b"slot", &plain).unwrap();
                prop_assert_eq!(key.open(b"slot", &blob), Some(plain));
            }

            /// An operator's text: any of it is read or refused, without a panic.
            #[test]
            fn parse_never_panics(text in any::<String>()) {
                let _ = FleetKey::parse(&text);
            }

            #[test]
            fn hex_and_base64_read_back(secret in any::<[u8; 32]>()) {
                use std::fmt::Write as _;
                let hex = secret.iter().fold(String::new(), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                });
                let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
                let want = FleetKey::from_bytes(secret).naming_key();
                prop_assert_eq!(FleetKey::parse(&hex).unwrap().naming_key(), want);
                prop_assert_eq!(FleetKey::parse(&b64).unwrap().naming_key(), want);
            }
        }
    }
}
