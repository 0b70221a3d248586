//! Udesk's "simulated WeChat middleware" channel (Udesk, "WeChat simulated middleware", https://www.udeskglobal.com/doc/thirdparty/simulate_weixin, section 1): POST the customer's message
//! as WeChat XML to the channel URL; Udesk answers "" or a passive-reply XML, which goes
//! back to WeChat unchanged. The other direction, Udesk calling our "simulated WeChat
//! domain", is `gateway`.

use std::time::Duration;

use async_trait::async_trait;

use super::{Desk, DeskError, DeskReply};
use crate::wechat::message::Message;
use crate::wechat::xml::Doc;

pub(crate) struct UdeskWechat {
    client: reqwest::Client,
    url: String,
}

impl UdeskWechat {
    pub(crate) fn new(client: reqwest::Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }
}

/// Judges a desk answer: empty or `success` → nothing to say; a `<xml>` document with a
/// MsgType → a passive reply; anything else (an HTML error page served with 200, say)
/// must not reach the customer's screen.
pub(crate) fn judge_answer(body: &str) -> Result<DeskReply, DeskError> {
    let trimmed = body.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("success") {
        return Ok(DeskReply::Empty);
    }
    match Doc::parse_xml(trimmed) {
        Ok(doc) if doc.get("MsgType").is_some_and(|t| !t.is_empty()) => {
            Ok(DeskReply::Passive(trimmed.to_owned()))
        }
        Ok(_) => Err(DeskError::UnexpectedAnswer("XML without MsgType".into())),
        Err(e) => Err(DeskError::UnexpectedAnswer(e.to_string())),
    }
}

#[async_trait]
impl Desk for UdeskWechat {
    async fn check(&self) -> Result<String, String> {
        let answer = crate::support::outbound::send(
            self.client.get(&self.url),
            Duration::from_secs(5),
            crate::support::outbound::MAX_ANSWER_BYTES,
        )
        .await
        .map_err(|e| format!("cannot reach the desk URL: {e}"))?;
        match answer.status {
            s if s < 500 => Ok(format!("the desk URL answered HTTP {s}")),
            s => Err(format!("the desk URL answered HTTP {s}")),
        }
    }

    async fn forward(
        &self,
        _msg: &Message,
        xml: &str,
        timeout: Duration,
    ) -> Result<DeskReply, DeskError> {
        // The channel URL carries Udesk's channel token: `outbound::send` keeps it out of
        // errors.
        let req = self
            .client
            .post(&self.url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(xml.to_owned());
        let answer = crate::support::outbound::send(
            req,
            timeout,
            crate::support::outbound::MAX_ANSWER_BYTES,
        )
        .await?;
        if !(200..300).contains(&answer.status) {
            return Err(DeskError::Status(answer.status));
        }
        judge_answer(&String::from_utf8_lossy(&answer.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_the_documented_answers() {
        assert_eq!(judge_answer("").unwrap(), DeskReply::Empty);
        assert_eq!(judge_answer("  success\n").unwrap(), DeskReply::Empty);
        // The documentation's example return.
        let seed = "<xml>\n  <ToUserName><![CDATA[toUser]]></ToUserName>\n  <FromUserName><![CDATA[fromUser]]></FromUserName>\n  \
                    <CreateTime>12345678</CreateTime>\n  <MsgType><![CDATA[text]]></MsgType>\n  <Content><![CDATA[Hello]]></Content>\n</xml>";
        assert!(
            matches!(judge_answer(seed).unwrap(), DeskReply::Passive(x) if x.contains("Hello"))
        );
        assert!(judge_answer("<html><body>502 Bad Gateway</body></html>").is_err());
        assert!(judge_answer("<xml><Content>x</Content></xml>").is_err());
        assert!(judge_answer("{\"ok\":true}").is_err());
    }
}
