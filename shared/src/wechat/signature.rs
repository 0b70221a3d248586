//! The SHA-1 signatures WeChat puts on every push (`signature`) and on encrypted bodies
//! (`msg_signature`): sha1 over the byte-wise sorted parts, joined with no separator.

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::support::hex::hex_lower;

/// Lower-case hex SHA-1 of the parts after sorting them byte-wise.
pub fn sign(parts: &[&str]) -> String {
    // WeChat signs three or four parts: sorted on the stack, not in a fresh Vec.
    let mut stack = [""; 4];
    let mut heap;
    let sorted: &mut [&str] = if parts.len() <= stack.len() {
        stack[..parts.len()].copy_from_slice(parts);
        &mut stack[..parts.len()]
    } else {
        heap = parts.to_vec();
        &mut heap
    };
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for part in sorted.iter() {
        hasher.update(part.as_bytes());
    }
    hex_lower(&hasher.finalize())
}

/// `signature` of a push or of the URL verification: sha1(sort(token, timestamp, nonce)).
pub fn push_signature(token: &str, timestamp: &str, nonce: &str) -> String {
    sign(&[token, timestamp, nonce])
}

/// `msg_signature` of an encrypted body: sha1(sort(token, timestamp, nonce, Encrypt)).
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    sign(&[token, timestamp, nonce, encrypt])
}

/// Compares a received hex signature with the expected one in constant time, ignoring
/// the hex case (WeChat sends lower case; some proxies upper-case query values).
pub fn matches(expected_lower_hex: &str, received: &str) -> bool {
    if expected_lower_hex.len() != received.len() {
        return false;
    }
    // Lower-cased byte by byte and every difference folded in (no branch on the values),
    // then one constant-time test of the result.
    let diff = expected_lower_hex
        .bytes()
        .zip(received.bytes())
        .fold(0u8, |acc, (e, r)| acc | (e ^ r.to_ascii_lowercase()));
    diff.ct_eq(&0).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Official example, developers.weixin.qq.com /miniprogram/dev/framework/server-ability/message-push.html
    #[test]
    fn official_url_verification_vector() {
        let sig = push_signature("AAAAA", "1714036504", "1514711492");
        assert_eq!(sig, "f464b24fc39322e44b38aa78f5edd27bd1441696");
        assert!(matches(&sig, "f464b24fc39322e44b38aa78f5edd27bd1441696"));
        assert!(matches(&sig, "F464B24FC39322E44B38AA78F5EDD27BD1441696"));
        assert!(!matches(&sig, "f464b24fc39322e44b38aa78f5edd27bd1441697"));
        assert!(!matches(&sig, "f464"));
    }

    #[test]
    fn official_plain_push_vector() {
        assert_eq!(
            push_signature("AAAAA", "1714037059", "486452656"),
            "899cf89e464efb63f54ddac96b0a0a235f53aa78"
        );
    }

    #[test]
    fn official_encrypted_push_signatures() {
        let encrypt = include_str!("../../../tests/fixtures/official_vector_encrypt.txt").trim();
        assert_eq!(
            msg_signature("AAAAA", "1714112445", "415670741", encrypt),
            "046e02f8204d34f8ba5fa3b1db94908f3df2e9b3"
        );
        // In safe mode `signature` is still sha1(token, timestamp, nonce).
        assert_eq!(
            push_signature("AAAAA", "1714112445", "415670741"),
            "6c5c811b55cc85e0e1b54100749188c20beb3f5d"
        );
    }
}
