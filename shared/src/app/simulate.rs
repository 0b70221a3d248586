//! `wxdesk-local simulate`: plays WeChat against a running wxdesk — the local server or a
//! deployed API — for one account. Sends a text push signed with the account's token (and
//! encrypted, with `msg_signature`, when the account has an `encoding_aes_key`), checks
//! and decrypts the answer as WeChat would, and says what the customer would see. How a
//! newcomer sees one message go through, and how an operator checks a deployment.

use std::time::Duration;

use crate::config::AppConfig;
use crate::support::hex::hex_lower;
use crate::support::outbound::{MAX_ANSWER_BYTES, http_client, send};
use crate::support::url::with_query;
use crate::wechat::signature::{matches, msg_signature, push_signature};
use crate::wechat::xml::{Doc, Value};

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, String),
    #[error("wxdesk answered HTTP {0}: {1}")]
    Status(u16, String),
    #[error(
        "the answer's MsgSignature does not match: the account's token differs from the server's"
    )]
    BadSignature,
    #[error(
        "cannot decrypt the answer ({0}): the account's encoding_aes_key differs from the server's"
    )]
    Decrypt(String),
    #[error("the answer is neither `success` nor WeChat XML: {0}")]
    Garbled(String),
}

/// What WeChat got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `success` (or empty): nothing shown now; an agent answers later.
    Success,
    /// A passive reply, decrypted when the push was encrypted.
    Reply {
        xml: String,
        content: Option<String>,
    },
}

/// Sends one text push from `openid` to `base_url` (`http://127.0.0.1:8080`, or the
/// deployed API's URL) for `app`, signed at `now_secs`.
pub async fn simulate(
    app: &AppConfig,
    base_url: &str,
    openid: &str,
    text: &str,
    now_secs: i64,
) -> Result<Outcome, SimulateError> {
    let ts = now_secs.to_string();
    let mut r = [0u8; 8];
    rand::fill(&mut r);
    let nonce = hex_lower(&r);
    let msg_id = u64::from_be_bytes(r) >> 1;
    let mut push = Doc::default();
    push.push("ToUserName", Value::text("gh_simulate"));
    push.push("FromUserName", Value::text(openid));
    push.push("CreateTime", Value::number(now_secs));
    push.push("MsgType", Value::text("text"));
    push.push("Content", Value::text(text));
    push.push("MsgId", Value::text(msg_id.to_string()));
    let plain = push.to_xml();
    let token = app.token.expose();
    let mut query = vec![
        ("signature", push_signature(token, &ts, &nonce)),
        ("timestamp", ts.clone()),
        ("nonce", nonce.clone()),
        ("openid", openid.to_owned()),
    ];
    let crypt = app.encoding_aes_key.as_ref();
    let body = match crypt {
        Some(crypt) => {
            let encrypt = crypt.encrypt(&plain, &app.appid);
            query.push(("encrypt_type", "aes".into()));
            query.push(("msg_signature", msg_signature(token, &ts, &nonce, &encrypt)));
            let mut d = Doc::default();
            d.push("ToUserName", Value::text("gh_simulate"));
            d.push("Encrypt", Value::text(encrypt));
            d.to_xml()
        }
        None => plain,
    };
    let params: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = with_query(
        &format!("{}/wechat/{}", base_url.trim_end_matches('/'), app.appid),
        &params,
    );
    let req = http_client()
        .post(&url)
        .header(http::header::CONTENT_TYPE, "text/xml")
        .body(body);
    // WeChat waits 5 s; give a cold Lambda a little more.
    let answer = send(req, Duration::from_secs(8), MAX_ANSWER_BYTES)
        .await
        .map_err(|e| SimulateError::Unreachable(base_url.to_owned(), e.to_string()))?;
    let text = String::from_utf8_lossy(&answer.bytes).into_owned();
    if answer.status != 200 {
        return Err(SimulateError::Status(answer.status, text));
    }
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "success" {
        return Ok(Outcome::Success);
    }
    let doc = Doc::parse_xml(trimmed).map_err(|_| SimulateError::Garbled(text.clone()))?;
    let xml = match (doc.get("Encrypt").filter(|e| !e.is_empty()), crypt) {
        (Some(encrypt), Some(crypt)) => {
            let expected = msg_signature(
                token,
                doc.get("TimeStamp").unwrap_or(""),
                doc.get("Nonce").unwrap_or(""),
                encrypt,
            );
            if !matches(&expected, doc.get("MsgSignature").unwrap_or("")) {
                return Err(SimulateError::BadSignature);
            }
            crypt
                .decrypt(encrypt, &app.appid)
                .map_err(|e| SimulateError::Decrypt(e.to_string()))?
        }
        (Some(_), None) => {
            return Err(SimulateError::Garbled(
                "an encrypted answer to a plaintext push".into(),
            ));
        }
        (None, _) => trimmed.to_owned(),
    };
    let content = Doc::parse_xml(&xml)
        .ok()
        .and_then(|d| d.get("Content").map(str::to_owned));
    Ok(Outcome::Reply { xml, content })
}
