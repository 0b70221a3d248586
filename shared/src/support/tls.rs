//! TLS for outbound connections: rustls on ring (Cargo.toml says why not aws-lc).

use std::sync::Once;

/// Makes ring the process's rustls provider. Every client builder calls it first, because
/// reqwest without a provider feature refuses to build a client (it would panic).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means a provider is already installed, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_builds_once_the_provider_is_installed() {
        super::install();
        super::install();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        assert!(reqwest::Client::builder().build().is_ok());
    }
}
