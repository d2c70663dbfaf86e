//! TLS for the reqwest backend: rustls with ring, the crypto provider ureq uses.
//!
//! reqwest's default `rustls` feature brings aws-lc-rs, ureq's brings ring, and compiling both
//! doubles the cost of a first build (aws-lc-sys is a large C library). http-doer builds reqwest
//! with `rustls-no-provider`, so ring is the only provider; reqwest then has none to fall back
//! on and panics building a client unless one is installed process-wide. Rather than install
//! one (a library must not: an application's own `install_default` would then fail), the
//! configuration is built here and handed to reqwest, as ureq does for itself: the process
//! default provider if the application installed one, ring otherwise.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// What `reqwest::ClientBuilder::build` would configure with a provider of its own: the
/// platform's certificate verifier, TLS 1.2 and 1.3, HTTP/2 offered over ALPN. `None` when the
/// application installed a process default, which reqwest then uses itself (so reqwest's own
/// TLS settings keep working).
pub(crate) fn reqwest_config() -> Option<Result<rustls::ClientConfig, rustls::Error>> {
    if CryptoProvider::get_default().is_some() {
        return None;
    }
    Some(ring_config())
}

/// The configuration with ring, whatever the process default.
pub(crate) fn ring_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // reqwest sets ALPN itself only on configurations it builds; without `h2` here an HTTPS
    // server would never be asked for HTTP/2.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_config_offers_h2_then_http1() {
        let config = ring_config().expect("the platform's root certificates load");
        assert_eq!(config.alpn_protocols, [&b"h2"[..], b"http/1.1"]);
    }
}
