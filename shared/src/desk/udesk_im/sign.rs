//! Udesk's message-interface signature (Udesk, "Method of Accessing WeChat via Messaging Interface", https://www.udeskglobal.com/doc/thirdparty/weixin, part II) and its local-time timestamps.
//!
//! `sign = UPPER(hex(MD5("number=<n>&email=<e>&timestamp=<t>&<key>")))`, values signed raw
//! (they are URL-encoded only in the query), `timestamp` the local time as
//! `YYYYMMDDHHmmss`.

use md5::{Digest, Md5};

use crate::config::Secret;

pub fn sign(number: &str, email: &str, timestamp: &str, key: &Secret) -> String {
    let mut h = Md5::new();
    h.update(format!("number={number}&email={email}&timestamp={timestamp}&").as_bytes());
    h.update(key.expose().as_bytes());
    crate::support::hex::hex_lower(&h.finalize()).to_ascii_uppercase()
}

/// The signed query: `number=…&email=…&timestamp=…&sign=…`, values URL-encoded.
pub fn signed_query(number: &str, email: &str, timestamp: &str, key: &Secret) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("number", number)
        .append_pair("email", email)
        .append_pair("timestamp", timestamp)
        .append_pair("sign", &sign(number, email, timestamp, key))
        .finish()
}

/// Whether a presented sign is right, compared in constant time.
pub fn verify(number: &str, email: &str, timestamp: &str, presented: &str, key: &Secret) -> bool {
    Secret::new(sign(number, email, timestamp, key)).matches(&presented.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_example_sign() {
        // The page's example parameters with the key `mysecret`; the figure was computed
        // independently (from the rule on the Udesk page above) and again with Python's hashlib.
        let key = Secret::new("mysecret");
        assert_eq!(
            sign("13574221234", "894733082@qq.com", "20151124141451", &key),
            "BB39DD501EE22BC3559AE5D42CCC9B22"
        );
        assert!(verify(
            "13574221234",
            "894733082@qq.com",
            "20151124141451",
            "bb39dd501ee22bc3559ae5d42ccc9b22",
            &key
        ));
        assert!(!verify(
            "13574221234",
            "x@y",
            "20151124141451",
            "BB39DD501EE22BC3559AE5D42CCC9B22",
            &key
        ));
        // Values are signed raw and URL-encoded in the query.
        assert_eq!(
            signed_query("", "a+b@c.d", "20151124141451", &key),
            format!(
                "number=&email=a%2Bb%40c.d&timestamp=20151124141451&sign={}",
                sign("", "a+b@c.d", "20151124141451", &key)
            )
        );
    }
}
