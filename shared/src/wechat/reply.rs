//! The encrypted envelope around pushes and passive replies in compatible/safe mode, in
//! the push's own format (XML for Official Accounts, XML or JSON for Mini Programs).

use super::crypto::MsgCrypt;
use super::message::Format;
use super::signature::msg_signature;
use super::xml::Doc;

/// The body WeChat expects when there is nothing to say: no retry, nothing shown.
pub const SUCCESS: &str = "success";

/// Pulls the `Encrypt` field out of an encrypted push body.
pub fn encrypt_field(body: &str, format: Format) -> Option<String> {
    // The envelope is nearly always flat: its ciphertext is then found without a Doc.
    if format == Format::Xml
        && let Some(found) = super::xml::flat_field(body, "Encrypt")
    {
        return found.filter(|s| !s.is_empty()).map(str::to_owned);
    }
    let doc = match format {
        Format::Xml => Doc::parse_xml(body).ok()?,
        Format::Json => Doc::parse_json(body).ok()?,
    };
    doc.get("Encrypt")
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Encrypts a passive reply and wraps it as WeChat expects: Encrypt, MsgSignature over the
/// reply's own TimeStamp and Nonce.
pub fn encrypt_reply(
    plaintext: &str,
    format: Format,
    crypt: &MsgCrypt,
    token: &str,
    appid: &str,
    timestamp: &str,
    nonce: &str,
) -> String {
    let encrypt = crypt.encrypt(plaintext, appid);
    wrap_encrypted(&encrypt, format, token, timestamp, nonce)
}

pub(crate) fn wrap_encrypted(
    encrypt: &str,
    format: Format,
    token: &str,
    timestamp: &str,
    nonce: &str,
) -> String {
    let signature = msg_signature(token, timestamp, nonce, encrypt);
    // Written straight out (no Doc or JSON value to build and drop): the envelope is the
    // same four fields on every reply.
    let mut out = String::with_capacity(encrypt.len() + nonce.len() + timestamp.len() + 160);
    match format {
        Format::Xml => {
            out.push_str("<xml>");
            super::xml::write_element(&mut out, "Encrypt", encrypt, true);
            super::xml::write_element(&mut out, "MsgSignature", &signature, true);
            super::xml::write_element(&mut out, "TimeStamp", timestamp, false);
            super::xml::write_element(&mut out, "Nonce", nonce, true);
            out.push_str("</xml>");
        }
        Format::Json => {
            out.push_str("{\"Encrypt\":");
            push_json_string(&mut out, encrypt);
            out.push_str(",\"MsgSignature\":\"");
            out.push_str(&signature);
            out.push_str("\",\"Nonce\":");
            push_json_string(&mut out, nonce);
            out.push_str(",\"TimeStamp\":");
            // A numeric timestamp as a number, as WeChat sends it; anything else a string.
            match timestamp.parse::<i64>() {
                Ok(n) => {
                    use std::fmt::Write;
                    let _ = write!(out, "{n}");
                }
                Err(_) => push_json_string(&mut out, timestamp),
            }
            out.push('}');
        }
    }
    out
}

/// Bytes a JSON string holds as they are: base64, digits and letters, which is all a
/// ciphertext or nonce ever is. A table, not a per-byte `match`: the ciphertext is
/// several hundred bytes.
const PLAIN_JSON: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric()
            || matches!(b as u8, b'+' | b'/' | b'=' | b'-' | b'_');
        b += 1;
    }
    t
};

/// `s` as a JSON string, appended to `out`; anything beyond the plain bytes goes through
/// serde_json's escaping.
fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| PLAIN_JSON[b as usize]) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

/// A passive text reply to the customer who sent `msg`.
pub(crate) fn passive_text(msg: &super::message::Message, content: &str, now_secs: i64) -> String {
    let mut d = super::xml::Doc::default();
    d.push("ToUserName", super::xml::Value::text(&msg.from_user));
    d.push("FromUserName", super::xml::Value::text(&msg.to_user));
    d.push("CreateTime", super::xml::Value::number(now_secs));
    d.push("MsgType", super::xml::Value::text("text"));
    d.push("Content", super::xml::Value::text(content));
    d.to_xml()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::xml::Value;

    /// The envelope written straight out is what the Doc and JSON value made of it, byte
    /// for byte, with a nonce and timestamp that need escaping too.
    #[test]
    fn envelope_matches_the_document_form() {
        for (ts, nonce) in [("1713424427", "415670741"), ("17x", "a]]>b<&\"c\\")] {
            let sig = msg_signature("tok", ts, nonce, "ENC+/=");
            let mut doc = Doc::default();
            doc.push("Encrypt", Value::text("ENC+/="));
            doc.push("MsgSignature", Value::text(sig.clone()));
            doc.push("TimeStamp", Value::number(ts));
            doc.push("Nonce", Value::text(nonce));
            assert_eq!(
                wrap_encrypted("ENC+/=", Format::Xml, "tok", ts, nonce),
                doc.to_xml()
            );
            let ts_value: serde_json::Value = ts
                .parse::<i64>()
                .map(Into::into)
                .unwrap_or_else(|_| ts.into());
            let json = serde_json::json!({
                "Encrypt": "ENC+/=", "MsgSignature": sig, "TimeStamp": ts_value, "Nonce": nonce,
            });
            assert_eq!(
                wrap_encrypted("ENC+/=", Format::Json, "tok", ts, nonce),
                json.to_string()
            );
        }
    }

    #[test]
    fn official_json_reply_envelope() {
        let enc = "ELGduP2YcVatjqIS+eZbp80MNLoAUWvzzyJxgGzxZO/5sAvd070Bs6qrLARC9nVHm48Y4hyRbtzve1L32tmxSQ==";
        let body = wrap_encrypted(enc, Format::Json, "AAAAA", "1713424427", "415670741");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["Encrypt"], enc);
        assert_eq!(
            v["MsgSignature"],
            "1b9339964ed2e271e7c7b6ff2b0ef902fc94dea1"
        );
        assert_eq!(v["TimeStamp"], 1713424427);
        assert_eq!(v["Nonce"], "415670741");
    }

    #[test]
    fn xml_reply_envelope_round_trips() {
        let crypt = MsgCrypt::new(&"A".repeat(43)).unwrap();
        let body = encrypt_reply(
            "<xml><MsgType>text</MsgType></xml>",
            Format::Xml,
            &crypt,
            "tok",
            "wxapp",
            "1700000000",
            "n1",
        );
        let doc = Doc::parse_xml(&body).unwrap();
        let enc = doc.get("Encrypt").unwrap();
        assert_eq!(
            doc.get("MsgSignature").unwrap(),
            msg_signature("tok", "1700000000", "n1", enc)
        );
        assert_eq!(doc.get("TimeStamp"), Some("1700000000"));
        assert_eq!(
            crypt.decrypt(enc, "wxapp").unwrap(),
            "<xml><MsgType>text</MsgType></xml>"
        );
        assert_eq!(encrypt_field(&body, Format::Xml).as_deref(), Some(enc));
    }
}
