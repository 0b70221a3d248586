//! A desk's menu (TUIKit branch menu or rating request) as the customer sees it, and the
//! customer's pick as the desk expects it back. Official Accounts get WeChat's `msgmenu`
//! (a click comes back as a text with `bizmsgmenuid`, "客服消息" msgmenu,
//! developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html);
//! Mini Programs cannot receive `msgmenu`, so they get numbered lines and the customer
//! answers with the number. The offered menu is kept per customer until answered.

use serde_json::{Value, json};

use super::tuikit::{Menu, MenuOption, rating_chosen};
use crate::wechat::kf::KfMessage;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Offered {
    /// Tells this menu's clicks from an older menu's.
    pub tag: String,
    pub rating: bool,
    pub menu: Menu,
}

impl Offered {
    pub(crate) fn new(menu: Menu, rating: bool) -> Offered {
        Offered {
            tag: format!("{:06x}", rand::random::<u32>() & 0xff_ffff),
            rating,
            menu,
        }
    }

    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub(crate) fn decode(s: &str) -> Option<Offered> {
        serde_json::from_str(s).ok()
    }

    fn id(&self, i: usize) -> String {
        format!("{}-{}", self.tag, i + 1)
    }

    /// The menu for the customer: `msgmenu`, or numbered text where it cannot be shown.
    pub(crate) fn to_kf(&self, openid: &str, numbered: bool) -> KfMessage {
        if numbered {
            let mut lines = vec![self.menu.head.clone()];
            lines.extend(
                self.menu
                    .options
                    .iter()
                    .enumerate()
                    .map(|(i, o)| format!("{}. {}", i + 1, o.content)),
            );
            lines.push(self.menu.tail.clone());
            lines.push("(Reply with the number of your choice.)".into());
            lines.retain(|l| !l.trim().is_empty());
            return KfMessage::text(openid, &lines.join("\n"));
        }
        let list: Vec<Value> = self
            .menu
            .options
            .iter()
            .enumerate()
            .map(|(i, o)| json!({ "id": self.id(i), "content": o.content }))
            .collect();
        KfMessage {
            touser: openid.to_owned(),
            msgtype: "msgmenu".into(),
            content: json!({
                "head_content": self.menu.head,
                "list": list,
                "tail_content": self.menu.tail,
            }),
            kf_account: None,
            link: None,
        }
    }

    /// The option a customer's message picks: a click on this menu (`bizmsgmenuid`), or
    /// a bare number where the menu went as numbered text.
    pub(crate) fn picked(
        &self,
        text: &str,
        bizmsgmenuid: Option<&str>,
        numbered: bool,
    ) -> Option<&MenuOption> {
        let index = match bizmsgmenuid {
            Some(id) => id
                .strip_prefix(&format!("{}-", self.tag))?
                .parse::<usize>()
                .ok()?,
            None if numbered => text.trim().parse::<usize>().ok()?,
            None => return None,
        };
        self.menu.options.get(index.checked_sub(1)?)
    }

    /// The pick as the customer's IM message: a branch option as its text (what TUIKit
    /// sends on a tap), a rating as the plugin's "rating chosen" message.
    pub(crate) fn answer_body(&self, option: &MenuOption) -> Value {
        if self.rating {
            let session = self.menu.session.as_deref().unwrap_or("");
            json!([{ "MsgType": "TIMCustomElem", "MsgContent": {
                "Data": rating_chosen(option, session),
                "Desc": format!("[Rating] {}", option.content),
                "Ext": "",
            }}])
        } else {
            json!([{ "MsgType": "TIMTextElem", "MsgContent": { "Text": option.content } }])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu() -> Menu {
        Menu {
            head: "Rate us".into(),
            options: vec![
                MenuOption {
                    id: "1".into(),
                    content: "Bad".into(),
                },
                MenuOption {
                    id: "5".into(),
                    content: "Great".into(),
                },
            ],
            tail: String::new(),
            session: Some("s1".into()),
        }
    }

    #[test]
    fn a_click_on_this_menu_picks_and_an_older_menus_click_does_not() {
        let o = Offered::new(menu(), true);
        let kf = o.to_kf("oU", false);
        assert_eq!(kf.msgtype, "msgmenu");
        let id = kf.content["list"][1]["id"].as_str().unwrap().to_owned();
        assert_eq!(o.picked("Great", Some(&id), false).unwrap().id, "5");
        assert!(o.picked("Great", Some("000000-2"), false).is_none());
        assert!(
            o.picked("2", None, false).is_none(),
            "a number means nothing beside a msgmenu"
        );
    }

    #[test]
    fn numbered_menus_take_the_number() {
        let o = Offered::new(menu(), false);
        let kf = o.to_kf("oU", true);
        assert_eq!(
            kf.text_content(),
            Some("Rate us\n1. Bad\n2. Great\n(Reply with the number of your choice.)")
        );
        assert_eq!(o.picked(" 2 ", None, true).unwrap().content, "Great");
        assert!(o.picked("3", None, true).is_none());
        assert!(o.picked("0", None, true).is_none());
        assert!(o.picked("thanks", None, true).is_none());
    }

    #[test]
    fn picks_go_back_as_the_desk_expects() {
        let rating = Offered::new(menu(), true);
        let body = rating.answer_body(&rating.menu.options[1]);
        let data: Value =
            serde_json::from_str(body[0]["MsgContent"]["Data"].as_str().unwrap()).unwrap();
        assert_eq!(
            (data["src"].as_str(), data["menuSelected"]["id"].as_str()),
            (Some("10"), Some("5"))
        );
        let branch = Offered::new(menu(), false);
        let body = branch.answer_body(&branch.menu.options[0]);
        assert_eq!(body[0]["MsgContent"]["Text"], "Bad");
        assert_eq!(Offered::decode(&branch.encode()), Some(branch));
    }
}
