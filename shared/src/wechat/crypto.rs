//! WXBizMsgCrypt: the AES-256-CBC envelope WeChat uses in compatible and safe mode, and that
//! the Dialogue Open Platform reuses.
//!
//! `FullStr = random(16) ‖ u32_be(len(msg)) ‖ msg ‖ receive_id`, padded with PKCS#7 over a
//! **32-byte** block (not AES's 16), encrypted with key = base64(EncodingAESKey + "="),
//! IV = key[..16], then base64-encoded.

use aes::{Aes256Dec, Aes256Enc};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, InnerIvInit, KeyInit};
use subtle::ConstantTimeEq;

const WX_BLOCK: usize = 32;

/// A decrypted envelope: its buffer, and where the message and the receive-id are in it.
struct Opened {
    buf: Vec<u8>,
    msg: std::ops::Range<usize>,
    rid: std::ops::Range<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("encoding_aes_key must be 43 characters of [A-Za-z0-9] (got {0} characters)")]
    BadKeyLength(usize),
    #[error("encoding_aes_key is not valid base64")]
    BadKey,
    #[error("the Encrypt field is not valid base64")]
    BadBase64,
    #[error("the ciphertext length {0} is not a whole number of AES blocks")]
    BadCiphertextLength(usize),
    #[error(
        "decryption produced invalid padding: the message was encrypted with another EncodingAESKey"
    )]
    BadPadding,
    #[error(
        "the decrypted buffer is malformed (declared message length {declared}, buffer {actual} bytes)"
    )]
    BadBuffer { declared: usize, actual: usize },
    #[error("the decrypted message is not UTF-8")]
    NotUtf8,
    #[error("the decrypted receive-id does not match this account's appid")]
    ReceiveIdMismatch,
}

/// One EncodingAESKey, decoded once: a config key of this type is checked and decoded as
/// the document is read.
#[derive(Clone, serde::Deserialize)]
#[serde(try_from = "crate::support::secret::Secret")]
pub struct MsgCrypt {
    key: [u8; 32],
    /// The AES key schedules, expanded once here rather than on every message.
    enc: Aes256Enc,
    dec: Aes256Dec,
}

impl std::fmt::Debug for MsgCrypt {
    // The key is a secret: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MsgCrypt(<redacted>)")
    }
}

impl TryFrom<crate::support::secret::Secret> for MsgCrypt {
    type Error = CryptoError;

    fn try_from(key: crate::support::secret::Secret) -> Result<Self, CryptoError> {
        Self::new(key.expose())
    }
}

impl MsgCrypt {
    pub fn new(encoding_aes_key: &str) -> Result<Self, CryptoError> {
        if encoding_aes_key.len() != 43
            || !encoding_aes_key.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(CryptoError::BadKeyLength(encoding_aes_key.chars().count()));
        }
        let mut padded = String::with_capacity(44);
        padded.push_str(encoding_aes_key);
        padded.push('=');
        // The 43rd character carries 2 spare bits that strict decoders reject when they are
        // not zero; WeChat's own keys have arbitrary spare bits, so decode leniently.
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let bytes = engine.decode(padded).map_err(|_| CryptoError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        let enc = Aes256Enc::new_from_slice(&key).map_err(|_| CryptoError::BadKey)?;
        let dec = Aes256Dec::new_from_slice(&key).map_err(|_| CryptoError::BadKey)?;
        Ok(Self { key, enc, dec })
    }

    fn iv(&self) -> &[u8] {
        &self.key[..16]
    }

    /// Decrypts a base64 `Encrypt` field and checks that its receive-id equals `receive_id`
    /// (the appid for Official Accounts and Mini Programs).
    pub fn decrypt(&self, encrypt_b64: &str, receive_id: &str) -> Result<String, CryptoError> {
        let Opened { mut buf, msg, rid } = self.open(encrypt_b64)?;
        if !bool::from(buf[rid].ct_eq(receive_id.as_bytes())) {
            return Err(CryptoError::ReceiveIdMismatch);
        }
        // The message moved to the front of its own buffer and checked UTF-8: no copy.
        buf.truncate(msg.end);
        buf.drain(..msg.start);
        String::from_utf8(buf).map_err(|_| CryptoError::NotUtf8)
    }

    /// Decrypts without judging the receive-id; returns (message, receive_id).
    pub fn decrypt_raw(&self, encrypt_b64: &str) -> Result<(String, String), CryptoError> {
        let Opened { buf, msg, rid } = self.open(encrypt_b64)?;
        let text = |r: std::ops::Range<usize>| {
            std::str::from_utf8(&buf[r])
                .map(str::to_owned)
                .map_err(|_| CryptoError::NotUtf8)
        };
        Ok((text(msg)?, text(rid)?))
    }

    /// The decrypted buffer with the message's and the receive-id's places in it (the
    /// receive-id checked UTF-8, the message not yet).
    fn open(&self, encrypt_b64: &str) -> Result<Opened, CryptoError> {
        let mut buf = STANDARD
            .decode(encrypt_b64.trim())
            .map_err(|_| CryptoError::BadBase64)?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err(CryptoError::BadCiphertextLength(buf.len()));
        }
        let dec = cbc::Decryptor::<Aes256Dec>::inner_iv_slice_init(self.dec.clone(), self.iv())
            .map_err(|_| CryptoError::BadKey)?;
        let plain_len = dec
            .decrypt_padded::<NoPadding>(&mut buf)
            .map_err(|_| CryptoError::BadCiphertextLength(0))?
            .len();
        let plain = &buf[..plain_len];
        let pad = *plain.last().ok_or(CryptoError::BadPadding)? as usize;
        if !(1..=WX_BLOCK).contains(&pad)
            || pad > plain.len()
            || !plain[plain.len() - pad..]
                .iter()
                .all(|&b| b as usize == pad)
        {
            return Err(CryptoError::BadPadding);
        }
        let content = &plain[..plain.len() - pad];
        if content.len() < 20 {
            return Err(CryptoError::BadBuffer {
                declared: 0,
                actual: content.len(),
            });
        }
        let declared =
            u32::from_be_bytes([content[16], content[17], content[18], content[19]]) as usize;
        let rest = &content[20..];
        if declared > rest.len() {
            return Err(CryptoError::BadBuffer {
                declared,
                actual: content.len(),
            });
        }
        // The receive-id is compared as bytes; the message is checked UTF-8 where it is taken.
        std::str::from_utf8(&rest[declared..]).map_err(|_| CryptoError::NotUtf8)?;
        let start = 20;
        let end = content.len();
        Ok(Opened {
            buf,
            msg: start..start + declared,
            rid: start + declared..end,
        })
    }

    /// Encrypts `msg` for `receive_id` with a fresh random 16-byte prefix.
    pub fn encrypt(&self, msg: &str, receive_id: &str) -> String {
        let mut random = [0u8; 16];
        rand::fill(&mut random);
        self.encrypt_with_random(msg, receive_id, &random)
    }

    /// Deterministic form of [`encrypt`](Self::encrypt), for published test vectors.
    pub(crate) fn encrypt_with_random(
        &self,
        msg: &str,
        receive_id: &str,
        random: &[u8; 16],
    ) -> String {
        let len = 16 + 4 + msg.len() + receive_id.len();
        let pad = WX_BLOCK - len % WX_BLOCK;
        let mut buf = Vec::with_capacity(len + pad);
        buf.extend_from_slice(random);
        buf.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        buf.extend_from_slice(msg.as_bytes());
        buf.extend_from_slice(receive_id.as_bytes());
        buf.resize(len + pad, pad as u8);
        let enc = cbc::Encryptor::<Aes256Enc>::inner_iv_slice_init(self.enc.clone(), self.iv())
            .expect("the iv is 16 bytes");
        let total = buf.len();
        let ct = enc
            .encrypt_padded::<NoPadding>(&mut buf, total)
            .expect("buffer is a whole number of 32-byte blocks");
        STANDARD.encode(ct)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const APPID: &str = "wxba5fad812f8e6fb9";

    fn official_encrypt() -> &'static str {
        include_str!("../../../tests/fixtures/official_vector_encrypt.txt").trim()
    }

    #[test]
    fn decrypts_the_official_push_vector() {
        let crypt = MsgCrypt::new(KEY).unwrap();
        assert_eq!(crypt.key, [0u8; 32]);
        let msg = crypt.decrypt(official_encrypt(), APPID).unwrap();
        assert_eq!(
            msg,
            r#"{"ToUserName":"gh_97417a04a28d","FromUserName":"o9AgO5Kd5ggOC-bXrbNODIiE3bGY","CreateTime":1714112445,"MsgType":"event","Event":"debug_demo","debug_str":"hello world"}"#
        );
        assert_eq!(msg.len(), 167);
    }

    #[test]
    fn reproduces_the_official_reply_vector() {
        let crypt = MsgCrypt::new(KEY).unwrap();
        let random: [u8; 16] = *b"707722b803182950";
        let enc = crypt.encrypt_with_random(r#"{"demo_resp":"good luck"}"#, APPID, &random);
        assert_eq!(
            enc,
            "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ=="
        );
        assert_eq!(
            crate::wechat::signature::msg_signature("AAAAA", "1713424427", "415670741", &enc),
            "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1"
        );
    }

    #[test]
    fn rejects_a_foreign_receive_id() {
        let crypt = MsgCrypt::new(KEY).unwrap();
        assert_eq!(
            crypt.decrypt(official_encrypt(), "wx0000000000000000"),
            Err(CryptoError::ReceiveIdMismatch)
        );
    }

    #[test]
    fn wrong_key_is_a_clear_error_not_a_panic() {
        let other = MsgCrypt::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        let err = other.decrypt(official_encrypt(), APPID).unwrap_err();
        assert!(
            matches!(
                err,
                CryptoError::BadPadding
                    | CryptoError::BadBuffer { .. }
                    | CryptoError::NotUtf8
                    | CryptoError::ReceiveIdMismatch
            ),
            "{err:?}"
        );
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(
            MsgCrypt::new("short"),
            Err(CryptoError::BadKeyLength(5))
        ));
        assert!(matches!(
            MsgCrypt::new(&"A".repeat(42).add_char('!')),
            Err(CryptoError::BadKeyLength(43))
        ));
        let crypt = MsgCrypt::new(KEY).unwrap();
        assert_eq!(
            crypt.decrypt("not base64!!", APPID),
            Err(CryptoError::BadBase64)
        );
        assert_eq!(
            crypt.decrypt("AAAA", APPID),
            Err(CryptoError::BadCiphertextLength(3))
        );
        assert_eq!(
            crypt.decrypt("", APPID),
            Err(CryptoError::BadCiphertextLength(0))
        );
    }

    #[test]
    fn round_trip_pads_to_32_byte_blocks() {
        let crypt = MsgCrypt::new(KEY).unwrap();
        for len in [0usize, 1, 11, 12, 13, 44, 100, 1000] {
            let msg = "x".repeat(len);
            let enc = crypt.encrypt(&msg, APPID);
            let raw = STANDARD.decode(&enc).unwrap();
            assert_eq!(raw.len() % 32, 0, "len {len}");
            assert_eq!(crypt.decrypt(&enc, APPID).unwrap(), msg);
        }
        // A message whose FullStr is already aligned gets a whole extra 32-byte pad block.
        let aligned = "y".repeat(64 - 20 - APPID.len());
        let raw = STANDARD.decode(crypt.encrypt(&aligned, APPID)).unwrap();
        assert_eq!(raw.len(), 96);
    }

    trait AddChar {
        fn add_char(self, c: char) -> String;
    }
    impl AddChar for String {
        fn add_char(mut self, c: char) -> String {
            self.push(c);
            self
        }
    }
}
