//! TLS for outbound connections: rustls on ring (Cargo.toml says why not aws-lc), and one
//! client configuration for every reqwest client.

use std::sync::{LazyLock, Once};

/// Makes ring the process's rustls provider. Every client builder calls it first, because
/// reqwest without a provider feature refuses to build a client (it would panic).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already installed, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The rustls configuration every reqwest client shares: the system's root certificates
/// (so `SSL_CERT_FILE` / `SSL_CERT_DIR` add a private CA), read once per process. Left to
/// itself reqwest reads and parses them again for each client it builds, and a Lambda
/// builds two at init: that was most of a cold start's time.
pub(crate) fn client_config() -> rustls::ClientConfig {
    static CONFIG: LazyLock<rustls::ClientConfig> = LazyLock::new(|| {
        install();
        let found = rustls_native_certs::load_native_certs();
        if !found.errors.is_empty() {
            tracing::warn!(
                errors = found.errors.len(),
                "some system root certificates could not be read"
            );
        }
        let mut roots = rustls::RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!("no system root certificates: every HTTPS call will fail");
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // As reqwest offers on its own: HTTP/2 where the server takes it, else 1.1.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    });
    CONFIG.clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_builds_once_the_provider_is_installed() {
        super::install();
        super::install();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        let config = super::client_config();
        assert_eq!(config.alpn_protocols[0], b"h2");
        assert!(
            reqwest::Client::builder()
                .tls_backend_preconfigured(config)
                .build()
                .is_ok()
        );
    }
}
