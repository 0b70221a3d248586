//! TLSSigAPIv2 UserSig: HMAC-SHA256 over a content string, a JSON document, zlib, and
//! base64 with `+/=` mapped to `*-_` (the four official SDKs agree on this).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use serde_json::json;
use std::io::Write;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// `TLS.sig`: standard base64 of the HMAC over the content string.
pub(crate) fn hmac_sig(
    key: &str,
    identifier: &str,
    sdkappid: u64,
    time: i64,
    expire: i64,
) -> String {
    let content = format!(
        "TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    let mut mac = match HmacSha256::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(content.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

fn to_url(b64: &str) -> String {
    b64.chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            c => c,
        })
        .collect()
}

/// A UserSig for `identifier`, valid `expire` seconds from `time`.
pub(crate) fn generate(
    key: &str,
    sdkappid: u64,
    identifier: &str,
    time: i64,
    expire: i64,
) -> String {
    let doc = json!({
        "TLS.ver": "2.0",
        "TLS.identifier": identifier,
        "TLS.sdkappid": sdkappid,
        "TLS.expire": expire,
        "TLS.time": time,
        "TLS.sig": hmac_sig(key, identifier, sdkappid, time, expire),
    });
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = z.write_all(doc.to_string().as_bytes());
    let compressed = z.finish().unwrap_or_default();
    to_url(&STANDARD.encode(compressed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::io::Read;

    /// Why a UserSig does not verify (the tests' round trip; wxdesk only generates them).
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    enum SigError {
        #[error("not a UserSig: {0}")]
        Malformed(&'static str),
        #[error("UserSig is for another SDKAppID")]
        SdkAppIdMismatch,
        #[error("UserSig is for another identifier")]
        IdentifierMismatch,
        #[error("UserSig has expired")]
        Expired,
        #[error("UserSig signature does not match")]
        SigMismatch,
    }

    fn from_url(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                '*' => '+',
                '-' => '/',
                '_' => '=',
                c => c,
            })
            .collect()
    }

    /// Decodes a UserSig to its JSON document (no checks).
    fn decode(usersig: &str) -> Result<Value, SigError> {
        let compressed = STANDARD
            .decode(from_url(usersig))
            .map_err(|_| SigError::Malformed("bad base64"))?;
        let mut json = Vec::new();
        flate2::read::ZlibDecoder::new(compressed.as_slice())
            .take(64 * 1024)
            .read_to_end(&mut json)
            .map_err(|_| SigError::Malformed("bad zlib"))?;
        serde_json::from_slice(&json).map_err(|_| SigError::Malformed("bad JSON"))
    }

    /// Verifies like the Go SDK's VerifyUserSig: appid, identifier, expiry, then the HMAC.
    fn verify(
        key: &str,
        sdkappid: u64,
        identifier: &str,
        usersig: &str,
        now: i64,
    ) -> Result<(), SigError> {
        let doc = decode(usersig)?;
        let num = |k: &str| {
            doc.get(k)
                .and_then(|v| {
                    v.as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                })
                .ok_or(SigError::Malformed("missing field"))
        };
        if num("TLS.sdkappid")? != sdkappid as i64 {
            return Err(SigError::SdkAppIdMismatch);
        }
        if doc.get("TLS.identifier").and_then(Value::as_str) != Some(identifier) {
            return Err(SigError::IdentifierMismatch);
        }
        let (time, expire) = (num("TLS.time")?, num("TLS.expire")?);
        if now > time + expire {
            return Err(SigError::Expired);
        }
        let want = hmac_sig(key, identifier, sdkappid, time, expire);
        let got = doc.get("TLS.sig").and_then(Value::as_str).unwrap_or("");
        if crate::config::Secret::new(want).matches(got) {
            Ok(())
        } else {
            Err(SigError::SigMismatch)
        }
    }

    const KEY: &str = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e";

    #[test]
    fn independent_vector() {
        // computed with the official Python implementation, tencentyun/tls-sig-api-v2-python (TLSSigAPIv2.py).
        assert_eq!(
            hmac_sig(KEY, "xiaojun", 1_400_000_000, 1_700_000_000, 15_552_000),
            "LvA7d/Iw7gSsnskvVzBDPOCCDbuNCw4GHwTC0bip+B4="
        );
        let python = "eJyrVgrxCdYrSy1SslJQMtIzUNJRAItkpqTmlWSmZUIkKjIT87NK82CSxSnZiQUFmSlAKUMTAyiAyqVWFGQWpYJkTE1NjRDiJZm5YFFzNPXFmekgG3zKHM1T9D3LzdODi-OKs8vCqpxcAvydnV2SSv2cy03cPcpDnA2SMgu0nUxslWoBHdYzUg__";
        assert_eq!(
            verify(KEY, 1_400_000_000, "xiaojun", python, 1_700_000_001),
            Ok(())
        );
        assert_eq!(
            verify(
                KEY,
                1_400_000_000,
                "xiaojun",
                python,
                1_700_000_000 + 15_552_001
            ),
            Err(SigError::Expired)
        );
        assert_eq!(
            verify(KEY, 1_400_000_001, "xiaojun", python, 1_700_000_001),
            Err(SigError::SdkAppIdMismatch)
        );
        assert_eq!(
            verify(KEY, 1_400_000_000, "admin", python, 1_700_000_001),
            Err(SigError::IdentifierMismatch)
        );
        assert_eq!(
            verify(
                &KEY.replace('5', "6"),
                1_400_000_000,
                "xiaojun",
                python,
                1_700_000_001
            ),
            Err(SigError::SigMismatch)
        );
    }

    #[test]
    fn round_trip() {
        let sig = generate(KEY, 1_400_000_000, "administrator", 1_800_000_000, 86_400);
        assert!(!sig.contains(['+', '/', '=']));
        assert_eq!(
            verify(KEY, 1_400_000_000, "administrator", &sig, 1_800_000_100),
            Ok(())
        );
        let doc = decode(&sig).unwrap();
        assert_eq!(doc["TLS.ver"], "2.0");
        assert_eq!(doc["TLS.expire"], 86_400);
        assert!(decode("not*a*sig").is_err());
    }
}
