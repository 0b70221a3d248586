//! What Tencent's desk UI says in custom messages (TencentCloud/TIMSDK): TUIKit's C2C typing
//! state (`{"businessID":"user_typing_status","typingStatus":1}`, sent online-only) and the
//! customer-service plugin's messages (`TUICustomerServicePlugin`: `{"customerServicePlugin":0,
//! "src":"<n>", ...}`, fields as its `TUICustomerServiceMessageParser` reads them). Pure: the
//! desk decides what each becomes for the customer.

use serde_json::{Value, json};

/// The plugin's `src` values ("TUIConstants.TUICustomerServicePlugin").
mod src {
    pub(super) const RATING: &str = "9";
    pub(super) const RATING_CHOSEN: &str = "10";
    pub(super) const TYPING: &str = "12";
    pub(super) const BRANCH: &str = "15";
    pub(super) const END: &str = "19";
    pub(super) const TIMEOUT: &str = "20";
    pub(super) const CARD: &str = "22";
}

/// Options of one menu that reach the customer; the rest are dropped with a log line.
pub(crate) const MAX_OPTIONS: usize = 10;
/// Characters of one option, head or tail that reach the customer.
const MAX_TEXT: usize = 200;

/// One custom element, as the desk meant it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Custom {
    /// The agent started (true) or stopped typing.
    Typing(bool),
    /// Options for the customer to pick one of (src 15): the pick goes back as its text.
    Branch(Menu),
    /// A satisfaction rating request (src 9): the pick goes back as a src 10 message.
    Rating(Menu),
    /// A product card (src 22).
    Card {
        title: String,
        description: String,
        picture: String,
        url: String,
    },
    /// The session ended or timed out (src 19, 20).
    End,
    /// A plugin message that is not for the customer's eyes (settings, hello, a rating
    /// already given, ...).
    Hidden,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Menu {
    pub head: String,
    pub options: Vec<MenuOption>,
    pub tail: String,
    /// The rating request's session, sent back with the pick.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct MenuOption {
    /// The desk's id (a rating's score); a branch option's is its position.
    pub id: String,
    pub content: String,
}

/// A custom element's `Data` as TUIKit meant it; None when it is not one of TUIKit's.
pub(crate) fn parse(data: &str) -> Option<Custom> {
    let v: Value = serde_json::from_str(data).ok()?;
    if v.get("businessID").and_then(Value::as_str) == Some("user_typing_status") {
        return Some(Custom::Typing(
            v.get("typingStatus").and_then(Value::as_i64) == Some(1),
        ));
    }
    v.get("customerServicePlugin")?;
    let src = match v.get("src")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // The plugin nests some objects as JSON strings (its parser reads them with optString).
    let object = |k: &str| match v.get(k) {
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).unwrap_or(Value::Null),
        Some(o) => o.clone(),
        None => Value::Null,
    };
    Some(match src.as_str() {
        src::TYPING => Custom::Typing(true),
        src::BRANCH => Custom::Branch(branch(&object("content"))),
        src::RATING => Custom::Rating(rating(&object("menuContent"))),
        src::CARD => {
            let c = object("content");
            Custom::Card {
                title: text(&c, "header"),
                description: text(&c, "desc"),
                picture: text(&c, "pic"),
                url: text(&c, "url"),
            }
        }
        src::END | src::TIMEOUT => Custom::End,
        _ => Custom::Hidden,
    })
}

fn text(v: &Value, k: &str) -> String {
    let s = match v.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    s.chars().take(MAX_TEXT).collect()
}

fn branch(c: &Value) -> Menu {
    let options = items(c, "items")
        .enumerate()
        .map(|(i, item)| MenuOption {
            id: (i + 1).to_string(),
            content: text(item, "content"),
        })
        .collect();
    Menu {
        head: text(c, "header"),
        options,
        tail: text(c, "tail"),
        session: None,
    }
}

fn rating(c: &Value) -> Menu {
    let mut options: Vec<MenuOption> = items(c, "menu")
        .map(|item| MenuOption {
            id: text(item, "id"),
            content: text(item, "content"),
        })
        .collect();
    // The plugin shows scores in id order.
    options.sort_by_key(|o| o.id.parse::<i64>().unwrap_or(i64::MAX));
    Menu {
        head: text(c, "head"),
        options,
        tail: text(c, "tail"),
        session: Some(text(c, "sessionId")),
    }
}

fn items<'a>(c: &'a Value, k: &str) -> impl Iterator<Item = &'a Value> {
    c.get(k)
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|i| {
            i.get("content")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.trim().is_empty())
        })
        .take(MAX_OPTIONS)
}

/// What the customer's pick of a rating option tells the desk: the plugin's own "rating
/// chosen" message (`TUICustomerServicePresenter.sendEvaluationMessage`).
pub(crate) fn rating_chosen(option: &MenuOption, session: &str) -> String {
    json!({
        "customerServicePlugin": 0,
        "src": src::RATING_CHOSEN,
        "menuSelected": { "id": option.id, "content": option.content, "sessionId": session },
    })
    .to_string()
}

/// What a customer's message must carry for TUIKit to send typing states back to them
/// (TUIKit's `MessageFeature`, read from `CloudCustomData`), and which account they wrote
/// to, for the agent.
pub(crate) fn customer_data(appid: &str, account: Option<&str>) -> String {
    let mut shop = json!({ "appid": appid });
    if let Some(name) = account {
        shop["name"] = json!(name);
    }
    json!({ "messageFeature": { "needTyping": 1, "version": 1 }, "wxdesk": { "account": shop } })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typing_states_as_tuikit_sends_them() {
        let on = r#"{"businessID":"user_typing_status","typingStatus":1,"version":1,"userAction":14,"actionParam":"EIMAMSG_InputStatus_Ing"}"#;
        let off = r#"{"businessID":"user_typing_status","typingStatus":0,"version":1,"userAction":0,"actionParam":"EIMAMSG_InputStatus_End"}"#;
        assert_eq!(parse(on), Some(Custom::Typing(true)));
        assert_eq!(parse(off), Some(Custom::Typing(false)));
        assert_eq!(
            parse(r#"{"customerServicePlugin":0,"src":"12"}"#),
            Some(Custom::Typing(true))
        );
    }

    #[test]
    fn a_branch_menu_keeps_its_options_in_order() {
        let data = r#"{"customerServicePlugin":0,"src":"15","content":{"header":"What do you need?","items":[{"content":"Order status","desc":""},{"content":"Returns"},{"content":"  "}],"tail":"Pick one"}}"#;
        let Some(Custom::Branch(m)) = parse(data) else {
            panic!("not a branch menu")
        };
        assert_eq!(m.head, "What do you need?");
        assert_eq!(m.tail, "Pick one");
        let contents: Vec<_> = m.options.iter().map(|o| o.content.as_str()).collect();
        assert_eq!(contents, ["Order status", "Returns"]);
        assert_eq!(m.options[1].id, "2");
    }

    #[test]
    fn a_rating_request_sorts_scores_and_keeps_its_session() {
        let data = r#"{"customerServicePlugin":0,"src":"9","menuContent":{"head":"Rate us","type":2,"menu":[{"id":"2","content":"Good"},{"id":"1","content":"Bad"}],"sessionId":"s-77","tail":"Thanks","expireTime":1700000000}}"#;
        let Some(Custom::Rating(m)) = parse(data) else {
            panic!("not a rating")
        };
        assert_eq!(m.options[0].content, "Bad");
        assert_eq!(m.session.as_deref(), Some("s-77"));
        let back: Value = serde_json::from_str(&rating_chosen(&m.options[1], "s-77")).unwrap();
        assert_eq!(back["src"], "10");
        assert_eq!(back["menuSelected"]["id"], "2");
        assert_eq!(back["menuSelected"]["sessionId"], "s-77");
    }

    #[test]
    fn cards_ends_and_the_rest() {
        let card = r#"{"customerServicePlugin":0,"src":"22","content":{"header":"Blue mug","desc":"12 oz","pic":"https://cdn.example/m.png","url":"https://shop.example/m"}}"#;
        assert!(
            matches!(parse(card), Some(Custom::Card { ref url, .. }) if url == "https://shop.example/m")
        );
        assert_eq!(
            parse(r#"{"customerServicePlugin":0,"src":"19"}"#),
            Some(Custom::End)
        );
        assert_eq!(
            parse(r#"{"customerServicePlugin":0,"src":20}"#),
            Some(Custom::End)
        );
        assert_eq!(
            parse(r#"{"customerServicePlugin":0,"src":"23","content":{}}"#),
            Some(Custom::Hidden)
        );
        assert_eq!(parse(r#"{"hello":1}"#), None);
        assert_eq!(parse("not json"), None);
    }

    #[test]
    fn menus_are_bounded() {
        let items: Vec<Value> = (0..50)
            .map(|i| json!({"content": "x".repeat(500) + &i.to_string()}))
            .collect();
        let data =
            json!({"customerServicePlugin":0,"src":"15","content":{"header":"h","items":items}})
                .to_string();
        let Some(Custom::Branch(m)) = parse(&data) else {
            panic!()
        };
        assert_eq!(m.options.len(), MAX_OPTIONS);
        assert!(
            m.options
                .iter()
                .all(|o| o.content.chars().count() == MAX_TEXT)
        );
    }

    #[test]
    fn customer_messages_ask_for_typing_and_name_the_account() {
        let v: Value = serde_json::from_str(&customer_data("wxA", Some("Blue Shop"))).unwrap();
        assert_eq!(v["messageFeature"]["needTyping"], 1);
        assert_eq!(v["messageFeature"]["version"], 1);
        assert_eq!(v["wxdesk"]["account"]["appid"], "wxA");
        assert_eq!(v["wxdesk"]["account"]["name"], "Blue Shop");
    }
}
