//! The `echo` desk: no desk at all. Each customer text is answered with a passive reply
//! carrying the text back (after `prefix`); anything else gets `success`. For trying
//! wxdesk with the example config alone, and for `wxdesk-local simulate` to check a
//! deployment end to end.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Desk, DeskError, DeskReply};
use crate::support::clock::Clock;
use crate::wechat::message::Message;
use crate::wechat::reply::passive_text;

pub(crate) struct Echo {
    prefix: String,
    clock: Arc<dyn Clock>,
}

impl Echo {
    pub(crate) fn new(prefix: String, clock: Arc<dyn Clock>) -> Self {
        Self { prefix, clock }
    }
}

#[async_trait]
impl Desk for Echo {
    async fn forward(
        &self,
        msg: &Message,
        _xml: &str,
        _timeout: Duration,
    ) -> Result<DeskReply, DeskError> {
        if msg.msg_type() != "text" {
            return Ok(DeskReply::Empty);
        }
        let text = format!("{}{}", self.prefix, msg.doc.text("Content"));
        Ok(DeskReply::Passive(passive_text(
            msg,
            &text,
            self.clock.unix_secs(),
        )))
    }

    async fn check(&self) -> Result<String, String> {
        Ok("the echo desk answers in-process".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::clock::FixedClock;
    use crate::wechat::xml::Doc;

    #[tokio::test]
    async fn texts_come_back_as_passive_replies() {
        let desk = Echo::new(
            "echo: ".into(),
            Arc::new(FixedClock::at_secs(1_700_000_000)),
        );
        let msg = Message::parse(
            "<xml><ToUserName>gh</ToUserName><FromUserName>oUser</FromUserName>\
             <CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi</Content>\
             <MsgId>1</MsgId></xml>",
        )
        .unwrap();
        let DeskReply::Passive(xml) = desk.forward(&msg, "", Duration::ZERO).await.unwrap() else {
            panic!("a text gets a passive reply")
        };
        let doc = Doc::parse_xml(&xml).unwrap();
        assert_eq!(doc.get("Content"), Some("echo: hi"));
        assert_eq!(doc.get("ToUserName"), Some("oUser"));
        let image = Message::parse(
            "<xml><ToUserName>gh</ToUserName><FromUserName>oUser</FromUserName>\
             <CreateTime>1</CreateTime><MsgType>image</MsgType><MediaId>m</MediaId>\
             <MsgId>2</MsgId></xml>",
        )
        .unwrap();
        assert_eq!(
            desk.forward(&image, "", Duration::ZERO).await.unwrap(),
            DeskReply::Empty
        );
    }
}
