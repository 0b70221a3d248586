//! Secrets at rest: a record's secret (an authorizer's refresh token) is sealed with
//! AES-256-GCM under the install's data key before it is stored, bound to the record it
//! belongs to (its key is the associated data), so a sealed value copied onto another
//! record does not open. Where the data key comes from is the store's business (a local
//! key file, or KMS's envelope on AWS); this module only seals and opens.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::secret::Secret;

/// The format's version: `v1:` then base64 of nonce (12 bytes) ‖ ciphertext ‖ tag.
const PREFIX: &str = "v1:";
const NONCE: usize = 12;

/// One answer for every way a sealed value fails to open: no oracle for its parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a sealed secret does not open with this install's data key (another install's, or corrupt)"
)]
pub struct SealError;

#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    // The data key is the secret of every sealed value: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<redacted>)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            cipher: Aes256Gcm::new_from_slice(key).expect("a 32-byte key"),
        }
    }

    /// `secret` sealed for the record `context` (a fresh random nonce each time).
    pub fn seal(&self, secret: &Secret, context: &str) -> String {
        let mut nonce = [0u8; NONCE];
        rand::fill(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("AES-GCM seals any length a record holds");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// The secret `sealed` holds, if it was sealed for `context` under this key.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Secret, SealError> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|r| r.len() > NONCE)
            .ok_or(SealError)?;
        let (nonce, body) = raw.split_at(NONCE);
        let nonce: [u8; NONCE] = nonce.try_into().map_err(|_| SealError)?;
        let plain = self
            .cipher
            .decrypt(
                (&nonce).into(),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| SealError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test Case 14 of the GCM specification (McGrew and Viega, "The Galois/Counter Mode
    /// of Operation", NIST's modes page): the cipher underneath is the standard one.
    #[test]
    fn the_cipher_is_standard_aes_256_gcm() {
        let key = [0u8; 32];
        let cipher = Aes256Gcm::new_from_slice(&key).unwrap();
        let out = cipher.encrypt((&[0u8; 12]).into(), &[0u8; 16][..]).unwrap();
        assert_eq!(
            crate::support::hex::hex_lower(&out),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
        );
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_record_and_key() {
        let sealer = Sealer::new(&[7u8; 32]);
        let secret = Secret::new("refresh-token-value");
        let sealed = sealer.seal(&secret, "authorizer#wxA");
        assert!(!sealed.contains("refresh-token-value"));
        assert_ne!(
            sealed,
            sealer.seal(&secret, "authorizer#wxA"),
            "fresh nonce"
        );
        assert_eq!(
            sealer.open(&sealed, "authorizer#wxA").unwrap().expose(),
            "refresh-token-value"
        );
        assert_eq!(sealer.open(&sealed, "authorizer#wxB"), Err(SealError));
        assert_eq!(
            Sealer::new(&[8u8; 32]).open(&sealed, "authorizer#wxA"),
            Err(SealError)
        );
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 3;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            sealer.open(std::str::from_utf8(&flipped).unwrap(), "authorizer#wxA"),
            Err(SealError)
        );
        assert_eq!(sealer.open("v1:", "authorizer#wxA"), Err(SealError));
        assert!(!format!("{sealer:?}").contains('7'));
    }
}
